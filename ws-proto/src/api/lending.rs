//! The guard both adapters put around a `recv_with` closure: the closure
//! runs while the connection's lock is held, and that lock is not
//! reentrant, so the closure must not use the same connection's sender.
//! Such a call would wait for itself forever; the adapters check
//! [`is_lending`] before taking the lock and panic instead.

use std::cell::{Cell, RefCell};

thread_local! {
    /// How many closures on this thread are being lent a message (nested
    /// `recv_with` calls on other connections count too).
    static DEPTH: Cell<usize> = const { Cell::new(0) };
    /// The locks (their addresses) of the connections lending them.
    static LENDING: RefCell<Vec<*const ()>> = const { RefCell::new(Vec::new()) };
}

/// Marks a connection's lock as lending on this thread until dropped (also
/// when the closure panics).
#[derive(Debug)]
pub struct Lending(());

impl Lending {
    /// Marks the lock at `lock` as lending.
    pub fn enter<T>(lock: *const T) -> Lending {
        LENDING.with_borrow_mut(|l| l.push(lock as *const ()));
        DEPTH.set(DEPTH.get() + 1);
        Lending(())
    }
}

impl Drop for Lending {
    fn drop(&mut self) {
        DEPTH.set(DEPTH.get() - 1);
        LENDING.with_borrow_mut(|l| l.pop());
    }
}

/// Whether a closure on this thread is being lent a message by the
/// connection whose lock is `lock` (directly, or around a nested
/// `recv_with` on another connection).
#[inline]
pub fn is_lending<T>(lock: *const T) -> bool {
    DEPTH.get() != 0 && LENDING.with_borrow(|l| l.contains(&(lock as *const ())))
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
            }
            assert!(is_lending(&a) && !is_lending(&b));
        }
        assert!(!is_lending(&a));
        let r = std::panic::catch_unwind(|| {
            let _g = Lending::enter(&a);
            panic!("closure");
        });
        assert!(r.is_err() && !is_lending(&a));
    }
}
