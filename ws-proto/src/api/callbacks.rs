//! The spec's `on(type, callback)` / `off(type, callback?)` registry.

use std::sync::Arc;

/// Identifies one registered callback, for [`Callbacks::off`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CallbackId(u64);

/// A registered callback. `Fn + Send + Sync` so that adapters can call it
/// from many connection threads at once without holding a lock.
pub type Callback<E> = std::sync::Arc<dyn Fn(&E) + Send + Sync>;

/// Callbacks per event kind `K` (the adapters use an enum: open, message,
/// close, error, dataEnd, headerReceive; or connect, messageReceive, close,
/// error), each called with the event `E`.
///
/// `on` returns an id; `off(kind, Some(id))` removes one callback,
/// `off(kind, None)` every callback of that kind, as in the spec. Callbacks
/// run in registration order.
///
/// The list is shared copy-on-write: [`emit_shared`] takes a reference to
/// it under the lock (no allocation per event) and `on`/`off` copy it only
/// while such a snapshot is in use.
pub struct Callbacks<K, E> {
    next: u64,
    entries: Arc<Entries<K, E>>,
}

type Entries<K, E> = Vec<(CallbackId, K, Callback<E>)>;

impl<K, E> Default for Callbacks<K, E> {
    fn default() -> Self {
        Callbacks {
            next: 0,
            entries: Arc::new(Vec::new()),
        }
    }
}

impl<K, E> std::fmt::Debug for Callbacks<K, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Callbacks")
            .field("registered", &self.entries.len())
            .finish()
    }
}

impl<K: PartialEq + Copy, E> Callbacks<K, E> {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `f` for events of `kind`.
    pub fn on(&mut self, kind: K, f: impl Fn(&E) + Send + Sync + 'static) -> CallbackId {
        let id = CallbackId(self.next);
        self.next += 1;
        Arc::make_mut(&mut self.entries).push((id, kind, Arc::new(f)));
        id
    }

    /// Removes the callback `id` of `kind`, or every callback of `kind`.
    /// Returns how many were removed.
    pub fn off(&mut self, kind: K, id: Option<CallbackId>) -> usize {
        let hit =
            |(i, k, _): &(CallbackId, K, Callback<E>)| *k == kind && id.is_none_or(|id| id == *i);
        if !self.entries.iter().any(hit) {
            return 0;
        }
        let before = self.entries.len();
        let entries = Arc::make_mut(&mut self.entries);
        entries.retain(|e| !hit(e));
        before - entries.len()
    }

    /// Number of callbacks for `kind`.
    pub fn count(&self, kind: K) -> usize {
        self.entries.iter().filter(|(_, k, _)| *k == kind).count()
    }

    /// The callbacks of `kind`, to call after releasing whatever lock
    /// guards the registry (so a callback may call `on`/`off`).
    pub fn handlers(&self, kind: K) -> Vec<Callback<E>> {
        self.entries
            .iter()
            .filter(|(_, k, _)| *k == kind)
            .map(|(_, _, f)| f.clone())
            .collect()
    }

    /// Calls every callback of `kind` with `event`.
    pub fn emit(&self, kind: K, event: &E) {
        emit_all(&self.entries, kind, event);
    }
}

fn emit_all<K: PartialEq, E>(entries: &Entries<K, E>, kind: K, event: &E) {
    for (_, k, f) in entries {
        if *k == kind {
            f(event);
        }
    }
}

/// Calls the callbacks of `kind` in a registry shared between threads,
/// without holding its lock while they run (so a callback may call
/// `on`/`off`, and several connections may call theirs at once).
pub fn emit_shared<K: PartialEq + Copy, E>(
    registry: &std::sync::Mutex<Callbacks<K, E>>,
    kind: K,
    event: &E,
) {
    // A reference to the current list, not a copy of it: one atomic
    // increment per event. `on`/`off` called meanwhile (by a callback, or
    // another thread) copy the list and leave this one as it was.
    let entries = registry
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entries
        .clone();
    emit_all(&entries, kind, event);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Kind {
        Open,
        Message,
    }

    #[test]
    fn on_off_one_or_all() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut cb: Callbacks<Kind, String> = Callbacks::new();
        let l = log.clone();
        let a = cb.on(Kind::Message, move |e| {
            l.lock().unwrap().push(format!("a:{e}"))
        });
        let l = log.clone();
        cb.on(Kind::Message, move |e| {
            l.lock().unwrap().push(format!("b:{e}"))
        });
        let l = log.clone();
        cb.on(Kind::Open, move |e| {
            l.lock().unwrap().push(format!("open:{e}"))
        });
        cb.emit(Kind::Message, &"1".to_string());
        cb.emit(Kind::Open, &"x".to_string());
        assert_eq!(cb.off(Kind::Message, Some(a)), 1);
        assert_eq!(
            cb.off(Kind::Open, Some(a)),
            0,
            "an id only removes its own kind"
        );
        cb.emit(Kind::Message, &"2".to_string());
        assert_eq!(cb.off(Kind::Message, None), 1);
        cb.emit(Kind::Message, &"3".to_string());
        assert_eq!(*log.lock().unwrap(), ["a:1", "b:1", "open:x", "b:2"]);
        assert_eq!(cb.count(Kind::Open), 1);
        assert_eq!(cb.handlers(Kind::Open).len(), 1);
        assert!(cb.handlers(Kind::Message).is_empty());
    }

    #[test]
    fn a_callback_may_change_the_registry_while_it_runs() {
        let reg: Arc<Mutex<Callbacks<Kind, u32>>> = Arc::new(Mutex::new(Callbacks::new()));
        let log = Arc::new(Mutex::new(Vec::new()));
        let (r, l) = (reg.clone(), log.clone());
        let first = reg.lock().unwrap().on(Kind::Message, move |e| {
            l.lock().unwrap().push(format!("first:{e}"));
            if *e == 1 {
                // Runs while emit_shared walks the list: the new callback
                // and the removal take effect from the next event on.
                let l2 = l.clone();
                let mut reg = r.lock().unwrap();
                reg.on(Kind::Message, move |e| {
                    l2.lock().unwrap().push(format!("added:{e}"))
                });
                reg.off(Kind::Message, Some(CallbackId(1)));
            }
        });
        let l = log.clone();
        reg.lock().unwrap().on(Kind::Message, move |e| {
            l.lock().unwrap().push(format!("second:{e}"))
        });
        emit_shared(&reg, Kind::Message, &1);
        emit_shared(&reg, Kind::Message, &2);
        reg.lock().unwrap().off(Kind::Message, Some(first));
        emit_shared(&reg, Kind::Message, &3);
        assert_eq!(
            *log.lock().unwrap(),
            ["first:1", "second:1", "first:2", "added:2", "added:3"]
        );
        assert_eq!(reg.lock().unwrap().off(Kind::Open, None), 0);
        assert_eq!(reg.lock().unwrap().count(Kind::Message), 1);
    }
}
