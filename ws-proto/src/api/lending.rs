//! The guard both adapters put around a `recv_with` closure: the closure
//! runs while the connection's lock is held, and that lock is not
//! reentrant, so the closure must not use the same connection's sender.
//! Such a call would wait for itself forever; the adapters check
//! [`is_lending`] before taking the lock and panic instead.

use std::cell::Cell;

thread_local! {
    /// The lock (its address) whose connection lends a message to a
    /// closure on this thread.
    static LENDING: Cell<*const ()> = const { Cell::new(std::ptr::null()) };
}

/// Marks `lock` as lending on this thread until dropped (also when the
/// closure panics).
#[derive(Debug)]
pub struct Lending(*const ());

impl Lending {
    /// Marks the lock at `lock` as lending.
    pub fn enter<T>(lock: *const T) -> Lending {
        Lending(LENDING.replace(lock as *const ()))
    }
}

impl Drop for Lending {
    fn drop(&mut self) {
        LENDING.set(self.0);
    }
}

/// Whether a closure on this thread is being lent a message by the
/// connection whose lock is `lock`.
#[inline]
pub fn is_lending<T>(lock: *const T) -> bool {
    LENDING.get() == lock as *const ()
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
                let _inner = Lending::enter(&b);
                assert!(is_lending(&b) && !is_lending(&a));
            }
            assert!(is_lending(&a));
        }
        assert!(!is_lending(&a));
        let r = std::panic::catch_unwind(|| {
            let _g = Lending::enter(&a);
            panic!("closure");
        });
        assert!(r.is_err() && !is_lending(&a));
    }
}
