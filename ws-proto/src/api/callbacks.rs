//! The spec's `on(type, callback)` / `off(type, callback?)` registry.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::ClientConnection;
use crate::{MessageRef, Reply};

/// Identifies one registered callback, for [`Callbacks::off`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CallbackId(u64);

/// A registered callback. `Fn + Send + Sync` so that adapters can call it
/// from many connection threads at once without holding a lock.
pub type Callback<E> = std::sync::Arc<dyn Fn(&E) + Send + Sync>;

/// A server's callback that is lent each text and binary message of a
/// connection instead of given an owned copy (see
/// [`Registry::on_lent`]): the connection, the message as it lies in the
/// connection's input, and a [`Reply`] that queues answers on that
/// connection.
pub type LentCallback =
    std::sync::Arc<dyn Fn(&ClientConnection, MessageRef<'_>, &mut Reply<'_>) + Send + Sync>;

/// One registered callback: called with an event, or lent a message.
enum Handler<E> {
    Event(Callback<E>),
    Lent(LentCallback),
}

impl<E> Clone for Handler<E> {
    fn clone(&self) -> Self {
        match self {
            Handler::Event(f) => Handler::Event(f.clone()),
            Handler::Lent(f) => Handler::Lent(f.clone()),
        }
    }
}

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

type Entries<K, E> = Vec<(CallbackId, K, Handler<E>)>;

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
        self.add(kind, Handler::Event(Arc::new(f)))
    }

    /// Registers `f` to be lent the messages of events of `kind` (see
    /// [`Registry::on_lent`]).
    pub fn on_lent(
        &mut self,
        kind: K,
        f: impl Fn(&ClientConnection, MessageRef<'_>, &mut Reply<'_>) + Send + Sync + 'static,
    ) -> CallbackId {
        self.add(kind, Handler::Lent(Arc::new(f)))
    }

    fn add(&mut self, kind: K, h: Handler<E>) -> CallbackId {
        let id = CallbackId(self.next);
        self.next += 1;
        Arc::make_mut(&mut self.entries).push((id, kind, h));
        id
    }

    /// Removes the callback `id` of `kind`, or every callback of `kind`.
    /// Returns how many were removed.
    pub fn off(&mut self, kind: K, id: Option<CallbackId>) -> usize {
        let hit =
            |(i, k, _): &(CallbackId, K, Handler<E>)| *k == kind && id.is_none_or(|id| id == *i);
        if !self.entries.iter().any(hit) {
            return 0;
        }
        let before = self.entries.len();
        let entries = Arc::make_mut(&mut self.entries);
        entries.retain(|e| !hit(e));
        before - entries.len()
    }

    /// Number of callbacks for `kind` (lent ones included).
    pub fn count(&self, kind: K) -> usize {
        self.entries.iter().filter(|(_, k, _)| *k == kind).count()
    }

    /// The callbacks of `kind` called with events (not the lent ones), to
    /// call after releasing whatever lock guards the registry (so a
    /// callback may call `on`/`off`).
    pub fn handlers(&self, kind: K) -> Vec<Callback<E>> {
        self.entries
            .iter()
            .filter_map(|(_, k, h)| match h {
                Handler::Event(f) if *k == kind => Some(f.clone()),
                _ => None,
            })
            .collect()
    }

    /// Calls every callback of `kind` with `event`.
    pub fn emit(&self, kind: K, event: &E) {
        emit_all(&self.entries, kind, event);
    }
}

/// Calls the callbacks of `kind` that take events (the lent ones are
/// called by [`View::emit_lent`]).
fn emit_all<K: PartialEq, E>(entries: &Entries<K, E>, kind: K, event: &E) {
    for (_, k, h) in entries {
        if let Handler::Event(f) = h {
            if *k == kind {
                f(event);
            }
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

/// Callbacks that many connections emit to at once (a server's): `on`
/// and `off` take a lock, an event does not.
///
/// Each connection keeps a [`View`] of the list and emits through it. The
/// view takes the lock again only after an `on` or `off`, which bump a
/// version number; otherwise an event costs one atomic load. Emitting
/// through the lock ([`emit_shared`]) costs, per event, a lock and an
/// unlock and a reference count taken and dropped: four atomic
/// read-modify-write operations on cache lines that every core's
/// connections share.
///
/// What `on` and `off` change applies to the events that begin after they
/// return, as with [`emit_shared`]. A view holds the list it last saw until
/// its next event, so the closure of a callback removed by `off` is dropped
/// once every connection has had an event since, or ended.
pub struct Registry<K, E> {
    callbacks: Mutex<Callbacks<K, E>>,
    /// Bumped, under the lock, by every change.
    version: AtomicU64,
}

/// One connection's copy of a [`Registry`]'s list: see there.
pub struct View<K, E> {
    version: u64,
    entries: Arc<Entries<K, E>>,
    /// The list [`emit_lent`](Self::emit_lent) replaced, kept until the
    /// view's next refresh outside the lend: the last reference to a
    /// removed closure is not dropped while a connection is locked.
    retired: Option<Arc<Entries<K, E>>>,
}

impl<K, E> Default for Registry<K, E> {
    fn default() -> Self {
        Registry {
            callbacks: Mutex::new(Callbacks::default()),
            version: AtomicU64::new(0),
        }
    }
}

impl<K, E> std::fmt::Debug for Registry<K, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("callbacks", &*self.lock())
            .finish()
    }
}

impl<K, E> std::fmt::Debug for View<K, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("View")
            .field("version", &self.version)
            .field("registered", &self.entries.len())
            .finish()
    }
}

impl<K, E> Registry<K, E> {
    fn lock(&self) -> MutexGuard<'_, Callbacks<K, E>> {
        self.callbacks.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<K: PartialEq + Copy, E> Registry<K, E> {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `f` for events of `kind`.
    pub fn on(&self, kind: K, f: impl Fn(&E) + Send + Sync + 'static) -> CallbackId {
        let mut c = self.lock();
        let id = c.on(kind, f);
        self.version.fetch_add(1, Ordering::Release);
        id
    }

    /// Registers `f` to be lent the message of each event of `kind` that
    /// carries one (a server's text and binary messages), through
    /// [`View::emit_lent`]: the message as it lies in the connection's
    /// input, with no owned copy made for it, and a [`Reply`] that queues
    /// answers on the same connection while the message is lent. `off`
    /// removes it like the others.
    pub fn on_lent(
        &self,
        kind: K,
        f: impl Fn(&ClientConnection, MessageRef<'_>, &mut Reply<'_>) + Send + Sync + 'static,
    ) -> CallbackId {
        let mut c = self.lock();
        let id = c.on_lent(kind, f);
        self.version.fetch_add(1, Ordering::Release);
        id
    }

    /// Removes one callback of `kind`, or all of them; returns how many.
    pub fn off(&self, kind: K, id: Option<CallbackId>) -> usize {
        let mut c = self.lock();
        let n = c.off(kind, id);
        if n > 0 {
            self.version.fetch_add(1, Ordering::Release);
        }
        n
    }

    /// Calls the callbacks of `kind` through the lock (for events that
    /// belong to no connection).
    pub fn emit(&self, kind: K, event: &E) {
        emit_shared(&self.callbacks, kind, event);
    }

    /// A view of the list as it is now.
    pub fn view(&self) -> View<K, E> {
        let c = self.lock();
        View {
            version: self.version.load(Ordering::Relaxed),
            entries: c.entries.clone(),
            retired: None,
        }
    }
}

impl<K: PartialEq + Copy, E> View<K, E> {
    /// Calls the callbacks of `kind` in `registry` (the one this view was
    /// made from), refreshing the view first if the list changed.
    pub fn emit(&mut self, registry: &Registry<K, E>, kind: K, event: &E) {
        self.refresh(registry);
        emit_all(&self.entries, kind, event);
    }

    /// Lends `message` to the lent callbacks of `kind` in `registry` (see
    /// [`Registry::on_lent`]), in registration order, refreshing the view
    /// first if the list changed. The list it replaces is let go of at the
    /// view's next [`lends`](Self::lends) or [`emit`](Self::emit), outside
    /// the lend (see [`has_retired`](Self::has_retired)); until then the
    /// view holds it, and a later change is seen after that refresh (a
    /// lend never drops a list). Returns whether `kind` also has callbacks
    /// that take events, which then want an owned copy
    /// ([`emit`](Self::emit)). While the lent callbacks run,
    /// [`in_lent_callback`](super::in_lent_callback) is true on this
    /// thread.
    pub fn emit_lent(
        &mut self,
        registry: &Registry<K, E>,
        kind: K,
        conn: &ClientConnection,
        message: MessageRef<'_>,
        reply: &mut Reply<'_>,
    ) -> bool {
        if self.retired.is_none() && registry.version.load(Ordering::Acquire) != self.version {
            let old = std::mem::replace(self, registry.view());
            self.retired = Some(old.entries);
        }
        let _guard = super::lending::LentCallbackGuard::enter();
        let mut wants_event = false;
        for (_, k, h) in self.entries.iter() {
            if *k == kind {
                match h {
                    Handler::Event(_) => wants_event = true,
                    Handler::Lent(f) => f(conn, message, reply),
                }
            }
        }
        wants_event
    }

    /// Whether the view holds a list that [`emit_lent`](Self::emit_lent)
    /// replaced, which it lets go of at its next [`lends`](Self::lends) or
    /// [`emit`](Self::emit): a receive that lends several messages in a
    /// row calls one of them, outside the connection's lock, before it
    /// lends the next, so that callbacks taken out are dropped there, and
    /// not kept while the lending goes on.
    pub fn has_retired(&self) -> bool {
        self.retired.is_some()
    }

    /// Whether `kind` has lent callbacks in `registry` (see
    /// [`Registry::on_lent`]), refreshing the view first if the list
    /// changed: a server receives its next message lent if so, else owned.
    pub fn lends(&mut self, registry: &Registry<K, E>, kind: K) -> bool {
        self.refresh(registry);
        self.entries
            .iter()
            .any(|(_, k, h)| *k == kind && matches!(h, Handler::Lent(_)))
    }

    #[inline]
    fn refresh(&mut self, registry: &Registry<K, E>) {
        if registry.version.load(Ordering::Acquire) != self.version {
            *self = registry.view();
        } else if self.retired.is_some() {
            self.retired = None;
        }
    }
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

    #[test]
    fn a_view_follows_on_and_off_and_lets_go_of_removed_callbacks() {
        let reg: Registry<Kind, u32> = Registry::new();
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut view = reg.view();
        view.emit(&reg, Kind::Message, &0);
        // Registered after the view was made: seen from the next event on.
        let (l, token) = (log.clone(), Arc::new(()));
        let t = token.clone();
        let a = reg.on(Kind::Message, move |e| {
            let _ = &t;
            l.lock().unwrap().push(format!("a:{e}"))
        });
        let l = log.clone();
        reg.on(Kind::Open, move |e| {
            l.lock().unwrap().push(format!("open:{e}"))
        });
        view.emit(&reg, Kind::Message, &1);
        view.emit(&reg, Kind::Open, &2);
        let mut other = reg.view();
        assert_eq!(reg.off(Kind::Message, Some(a)), 1);
        assert_eq!(reg.off(Kind::Message, Some(a)), 0);
        // The registry dropped it; the two views still hold the old list,
        // so the closure (and the token it holds) lives on.
        assert_eq!(Arc::strong_count(&token), 2);
        drop(other);
        assert_eq!(Arc::strong_count(&token), 2, "`view` still holds it");
        view.emit(&reg, Kind::Message, &3);
        assert_eq!(
            Arc::strong_count(&token),
            1,
            "a view lets go at its next event"
        );
        other = reg.view();
        other.emit(&reg, Kind::Open, &4);
        assert_eq!(*log.lock().unwrap(), ["a:1", "open:2", "open:4"]);
    }

    #[test]
    fn a_callback_may_change_the_registry_while_a_view_emits() {
        let reg: Arc<Registry<Kind, u32>> = Arc::new(Registry::new());
        let log = Arc::new(Mutex::new(Vec::new()));
        let (r, l) = (reg.clone(), log.clone());
        let first = reg.on(Kind::Message, move |e| {
            l.lock().unwrap().push(format!("first:{e}"));
            if *e == 1 {
                let l2 = l.clone();
                r.on(Kind::Message, move |e| {
                    l2.lock().unwrap().push(format!("added:{e}"))
                });
                r.off(Kind::Message, Some(CallbackId(1)));
            }
        });
        let l = log.clone();
        reg.on(Kind::Message, move |e| {
            l.lock().unwrap().push(format!("second:{e}"))
        });
        let mut view = reg.view();
        view.emit(&reg, Kind::Message, &1);
        view.emit(&reg, Kind::Message, &2);
        reg.off(Kind::Message, Some(first));
        view.emit(&reg, Kind::Message, &3);
        assert_eq!(
            *log.lock().unwrap(),
            ["first:1", "second:1", "first:2", "added:2", "added:3"]
        );
    }

    #[test]
    fn views_on_many_threads_see_every_event_while_the_list_changes() {
        use std::sync::atomic::AtomicUsize;
        let reg: Arc<Registry<Kind, u32>> = Arc::new(Registry::new());
        let count = Arc::new(AtomicUsize::new(0));
        let c = count.clone();
        reg.on(Kind::Message, move |_| {
            c.fetch_add(1, Ordering::Relaxed);
        });
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let reg = reg.clone();
                std::thread::spawn(move || {
                    let mut view = reg.view();
                    for i in 0..2000 {
                        view.emit(&reg, Kind::Message, &i);
                    }
                })
            })
            .collect();
        for _ in 0..200 {
            let id = reg.on(Kind::Message, |_| {});
            assert_eq!(reg.off(Kind::Message, Some(id)), 1);
        }
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(count.load(Ordering::Relaxed), 8000);
    }
}
