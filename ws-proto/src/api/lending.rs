//! The guard both adapters put around a `recv_with` closure: the closure
//! runs while the connection's lock is held, and that lock is not
//! reentrant, so the closure must not use the same connection's sender.
//! Such a call would wait for itself forever; the adapters check
//! [`is_lending`] before taking the lock and panic instead. With it, what
//! their receive loops ask of the connection ([`Receive`]).

use std::cell::{Cell, RefCell};
use std::time::Instant;

use crate::{Connection, Message, MessageRef, Reply};

thread_local! {
    /// The lock (its address) of the connection lending the innermost
    /// closure on this thread; null when none is.
    static TOP: Cell<*const ()> = const { Cell::new(std::ptr::null()) };
    /// The locks of the connections lending enclosing closures (a
    /// `recv_with` nested in another's closure): empty but for nesting, so
    /// the common case is one thread-local cell.
    static OUTER: RefCell<Vec<*const ()>> = const { RefCell::new(Vec::new()) };
    /// A server's lent callbacks run on this thread.
    static IN_LENT_CALLBACK: Cell<bool> = const { Cell::new(false) };
}

/// Marks a connection's lock as lending on this thread until dropped (also
/// when the closure panics).
#[derive(Debug)]
pub struct Lending {
    /// The lock this guard marks.
    lock: *const (),
    /// An enclosing closure's lock went to `OUTER`.
    nested: bool,
}

impl Lending {
    /// Marks the lock at `lock` as lending.
    #[inline]
    pub fn enter<T>(lock: *const T) -> Lending {
        let lock = lock as *const ();
        let outer = TOP.replace(lock);
        let nested = !outer.is_null();
        if nested {
            OUTER.with_borrow_mut(|o| o.push(outer));
        }
        Lending { lock, nested }
    }
}

impl Drop for Lending {
    #[inline]
    fn drop(&mut self) {
        if TOP.get() == self.lock {
            // Guards drop innermost first (also when unwinding).
            let outer = if self.nested {
                OUTER
                    .with_borrow_mut(|o| o.pop())
                    .unwrap_or(std::ptr::null())
            } else {
                std::ptr::null()
            };
            TOP.set(outer);
        } else {
            // An enclosing guard dropped before an inner one (only by hand:
            // the adapters nest them): take its own mark out.
            OUTER.with_borrow_mut(|o| {
                if let Some(i) = o.iter().rposition(|&l| l == self.lock) {
                    o.remove(i);
                }
            });
        }
    }
}

/// Whether a closure on this thread is being lent a message by the
/// connection whose lock is `lock` (directly, or around a nested
/// `recv_with` on another connection).
#[inline]
pub fn is_lending<T>(lock: *const T) -> bool {
    let lock = lock as *const ();
    let top = TOP.get();
    !top.is_null() && (top == lock || OUTER.with_borrow(|o| o.contains(&lock)))
}

/// Whether a server's lent message callback (`on_message_lent`, see
/// [`View::emit_lent`](crate::api::View::emit_lent)) runs on this thread:
/// a server's handle refuses to lock connections there (see
/// [`Error::InLentCallback`](crate::api::Error::InLentCallback)).
#[inline]
pub fn in_lent_callback() -> bool {
    IN_LENT_CALLBACK.get()
}

/// Marks a server's lent callbacks as running on this thread until
/// dropped (also when one panics).
pub(crate) struct LentCallbackGuard {
    outer: bool,
}

impl LentCallbackGuard {
    pub(crate) fn enter() -> LentCallbackGuard {
        LentCallbackGuard {
            outer: IN_LENT_CALLBACK.replace(true),
        }
    }
}

impl Drop for LentCallbackGuard {
    fn drop(&mut self) {
        IN_LENT_CALLBACK.set(self.outer);
    }
}

/// Panics if a closure on this thread is being lent a message by the
/// connection whose lock is `lock` (the adapters call it before taking
/// that lock). The panic is out of line: the check inlines to a compare.
#[inline]
pub fn assert_not_lending<T>(lock: *const T) {
    if is_lending(lock) {
        reentered();
    }
}

#[cold]
#[inline(never)]
fn reentered() -> ! {
    panic!(
        "a Sender of this connection was used inside Receiver::recv_with's closure; \
         copy what you need and send after it returns"
    )
}

/// What an adapter's receive loop asks of the connection: the next item
/// (given `None`), or to take the bytes of a read (given `Some((now,
/// bytes))`), which may give an item at once. Made by [`copied_in`],
/// [`messages_in`], [`lent_once`] and [`lent_each`].
pub trait Receive<T>: FnMut(&mut Connection, Option<(Instant, &mut [u8])>) -> Option<T> {}

impl<T, F: FnMut(&mut Connection, Option<(Instant, &mut [u8])>) -> Option<T>> Receive<T> for F {}

/// For the receives that do not lend: each read is copied into the
/// connection ([`Connection::handle_data`]), and items come from `poll`
/// (`Connection::poll_event` or `Connection::poll_message`).
pub fn copied_in<T>(poll: fn(&mut Connection) -> Option<T>) -> impl Receive<T> {
    move |conn, read| match read {
        Some((now, data)) => {
            conn.handle_data(now, data);
            None
        }
        None => poll(conn),
    }
}

/// For the receives of whole owned messages (`recv`): a message that lies
/// whole at the start of a read is built from the read
/// ([`Connection::handle_data_message`]), never copied into the connection
/// first; the others come from [`Connection::poll_message`].
pub fn messages_in() -> impl Receive<Message> {
    |conn: &mut Connection, read: Option<(Instant, &mut [u8])>| match read {
        Some((now, data)) => conn.handle_data_message(now, data),
        None => conn.poll_message(),
    }
}

/// For `recv_with` and `recv_with_reply`: the next message is lent to `f`
/// (once) while the connection whose lock is `lock` is marked as lending
/// ([`Lending`]); a message that lies whole in a read is lent from the read
/// itself ([`Connection::handle_data_reply`]). The item says whether the
/// message was a Ping, and what `f` returned.
pub fn lent_once<L, R>(
    lock: *const L,
    f: impl FnOnce(MessageRef<'_>, &mut Reply<'_>) -> R,
) -> impl Receive<(bool, R)> {
    let mut f = Some(f);
    lent_each(lock, move |m, reply| {
        let f = f.take().expect("a message is lent once");
        f(m, reply)
    })
}

/// [`lent_once`] for a receive that lends message after message to the
/// same `f` (a server's lent callbacks, one poll lending all that was
/// read): each item is one message, and `f` is called once per item.
pub fn lent_each<L, R>(
    lock: *const L,
    mut f: impl FnMut(MessageRef<'_>, &mut Reply<'_>) -> R,
) -> impl Receive<(bool, R)> {
    // An address, not a pointer: the receive futures that hold this stay
    // `Send`.
    let lock = lock as *const () as usize;
    move |conn, read| {
        let lend = |m: MessageRef<'_>, reply: &mut Reply<'_>| {
            let ping = matches!(m, MessageRef::Ping(_));
            // Marked around `f` only: the polls that find no message (most
            // of them) pay nothing for it.
            let _lending = Lending::enter(lock as *const ());
            (ping, f(m, reply))
        };
        match read {
            Some((now, data)) => conn.handle_data_reply(now, data, lend),
            None => conn.poll_message_reply(lend),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_one_lock_on_one_thread_until_dropped() {
        let (a, b) = (1u8, 2u8);
        assert!(!is_lending(&a));
        {
            let _g = Lending::enter(&a);
            assert!(is_lending(&a) && !is_lending(&b));
            std::thread::scope(|s| {
                s.spawn(|| assert!(!is_lending(&a)));
            });
            {
                // A nested recv_with on another connection: both lend.
                let _inner = Lending::enter(&b);
                assert!(is_lending(&b) && is_lending(&a));
                {
                    // Three deep, the innermost on the outermost's lock.
                    let _third = Lending::enter(&a);
                    assert!(is_lending(&a) && is_lending(&b));
                }
                assert!(is_lending(&b) && is_lending(&a));
            }
            assert!(is_lending(&a) && !is_lending(&b));
        }
        assert!(!is_lending(&a));
        let r = std::panic::catch_unwind(|| {
            let _g = Lending::enter(&a);
            panic!("closure");
        });
        assert!(r.is_err() && !is_lending(&a));
        let r = std::panic::catch_unwind(|| {
            let _g = Lending::enter(&a);
            let _inner = Lending::enter(&b);
            panic!("nested closure");
        });
        assert!(r.is_err() && !is_lending(&a) && !is_lending(&b));
        // Dropped out of order, by hand: both marks go all the same.
        let outer = Lending::enter(&a);
        let inner = Lending::enter(&b);
        drop(outer);
        assert!(!is_lending(&a) && is_lending(&b));
        drop(inner);
        assert!(!is_lending(&a) && !is_lending(&b));
    }

    #[test]
    fn marks_lent_callbacks_on_one_thread_until_dropped() {
        assert!(!in_lent_callback());
        {
            let _g = LentCallbackGuard::enter();
            assert!(in_lent_callback());
            std::thread::scope(|s| {
                s.spawn(|| assert!(!in_lent_callback()));
            });
            {
                let _nested = LentCallbackGuard::enter();
                assert!(in_lent_callback());
            }
            assert!(in_lent_callback(), "an inner guard keeps the outer mark");
        }
        assert!(!in_lent_callback());
        let r = std::panic::catch_unwind(|| {
            let _g = LentCallbackGuard::enter();
            panic!("a lent callback");
        });
        assert!(r.is_err() && !in_lent_callback());
    }
}
