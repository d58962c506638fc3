//! The server's connections run in a few long-lived tasks, "groups" (one
//! per core by default), not in a task each.
//!
//! A connection's wake-up (its socket became readable, a sender queued a
//! message) then costs a push onto its group's ready list under an
//! uncontended lock, and the group's task is scheduled once for every
//! connection that became ready meanwhile. A task per connection goes
//! through the executor's queues at every wake-up (with async-executor,
//! two pushes and two pops of its concurrent queues and the task's state
//! changes): in the benchmarks the groups run 8-12% fewer instructions per
//! echo at 100 connections x 20 B and at 10 x 1 KiB (callgrind,
//! BENCHMARKS.md session 14). The event loop per core of uWebSockets,
//! nginx or Node is the same design.
//!
//! A group polls each connection that was woken, at most [`BUDGET`]
//! polls before it yields to the other tasks of its executor. A
//! connection whose future panics (an application callback that panics)
//! is dropped, which closes its socket; the other connections of its group
//! go on.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};

use futures_lite::future::poll_fn;

/// A connection's future.
pub(crate) type ConnFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Polls a group makes before it lets the executor run other tasks.
const BUDGET: usize = 256;

/// Adds connections to a group; cheap to clone.
#[derive(Clone)]
pub(crate) struct Group {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    /// The epoll instance of the group's TCP sockets (see `edge.rs`);
    /// none if the kernel would not make one.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    io: Option<Arc<crate::edge::GroupIo>>,
}

#[derive(Default)]
struct State {
    /// Connections woken since the group last took this list.
    ready: Vec<usize>,
    /// Connections added since then.
    incoming: Vec<ConnFuture>,
    /// The group's task while it waits (taken by the wake that ends the wait).
    waker: Option<Waker>,
    /// No more connections come: the task ends once its connections have.
    closed: bool,
    /// The task has ended: what is added now is dropped.
    finished: bool,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Inner {
    /// Wakes the group's task if it waits.
    fn notify(state: MutexGuard<'_, State>, state_waker: impl FnOnce(&mut State) -> Option<Waker>) {
        let mut state = state;
        let w = state_waker(&mut state);
        drop(state);
        if let Some(w) = w {
            w.wake();
        }
    }
}

/// The waker of one connection of a group: puts it on the ready list.
struct SlotWaker {
    index: usize,
    /// On the ready list and not polled since: a second wake adds nothing.
    queued: AtomicBool,
    group: Arc<Inner>,
}

impl Wake for SlotWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.queued.swap(true, Ordering::AcqRel) {
            return;
        }
        let index = self.index;
        Inner::notify(lock(&self.group.state), |s| {
            s.ready.push(index);
            s.waker.take()
        });
    }
}

struct Slot {
    future: ConnFuture,
    waker: Arc<SlotWaker>,
    /// `waker` as a `Waker`, made once.
    handle: Waker,
}

impl Group {
    /// A group and the future that runs its connections (to spawn as a
    /// task); the future ends after [`close`](Self::close) once every
    /// connection has ended.
    pub(crate) fn new() -> (Group, impl Future<Output = ()> + Send + 'static) {
        let inner = Arc::new(Inner {
            state: Mutex::new(State::default()),
            #[cfg(any(target_os = "linux", target_os = "android"))]
            io: crate::edge::GroupIo::new().ok(),
        });
        let group = Group {
            inner: inner.clone(),
        };
        (group, run(inner))
    }

    /// Runs `future` in this group; gives it back if the group's task has
    /// ended (after [`close`](Self::close)).
    pub(crate) fn add(&self, future: ConnFuture) -> Result<(), ConnFuture> {
        let s = lock(&self.inner.state);
        if s.finished {
            return Err(future);
        }
        Inner::notify(s, |s| {
            s.incoming.push(future);
            s.waker.take()
        });
        Ok(())
    }

    /// The epoll instance to register the group's TCP sockets in.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    pub(crate) fn io(&self) -> Option<&Arc<crate::edge::GroupIo>> {
        self.inner.io.as_ref()
    }

    /// No more connections: the group's task ends once its connections
    /// have.
    pub(crate) fn close(&self) {
        Inner::notify(lock(&self.inner.state), |s| {
            s.closed = true;
            s.waker.take()
        });
    }
}

/// The group's task.
async fn run(inner: Arc<Inner>) {
    let mut slots: Vec<Option<Slot>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut live = 0usize;
    let mut batch: Vec<usize> = Vec::new();
    let mut incoming: Vec<ConnFuture> = Vec::new();
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let mut collect = crate::edge::Collect::default();
    // The last collection found several sockets ready: collect again at
    // once when the list runs out, as more likely came in meanwhile.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let mut eager = false;
    poll_fn(|cx| {
        let mut polled = 0;
        // The sockets' events were collected, or their wait armed, since
        // the list last had connections.
        let mut io_done = false;
        // Running: the wakes until this poll ends need not schedule the
        // task (its waker is stored again before it waits).
        lock(&inner.state).waker = None;
        loop {
            {
                let mut s = lock(&inner.state);
                std::mem::swap(&mut batch, &mut s.ready);
                std::mem::swap(&mut incoming, &mut s.incoming);
                if batch.is_empty() && incoming.is_empty() {
                    if s.closed && live == 0 {
                        s.finished = true;
                        return Poll::Ready(());
                    }
                    #[cfg(any(target_os = "linux", target_os = "android"))]
                    if let (Some(io), false) = (&inner.io, io_done) {
                        drop(s);
                        // Eager, or a socket was added (its event waits in
                        // the instance): collect before arming the wait.
                        let added = io.take_added();
                        let mut got = if eager || added {
                            io.collect(&mut collect)
                        } else {
                            0
                        };
                        // async-io reports the epoll instance readable once
                        // per arming: collect until it is armed again.
                        while got == 0 && io.poll_ready(cx) {
                            got = io.collect(&mut collect);
                        }
                        eager = got > 1;
                        io_done = got == 0;
                        // A collection counts toward the budget: sockets
                        // that keep receiving while their connections do
                        // not read (a reply waiting for room) would
                        // otherwise keep the group collecting in one poll.
                        polled += 1;
                        if polled >= BUDGET {
                            eager = false;
                            cx.waker().wake_by_ref();
                            return Poll::Pending;
                        }
                        continue;
                    }
                    let _ = io_done;
                    match &s.waker {
                        Some(w) if w.will_wake(cx.waker()) => {}
                        _ => s.waker = Some(cx.waker().clone()),
                    }
                    return Poll::Pending;
                }
            }
            io_done = false;
            for future in incoming.drain(..) {
                let index = free.pop().unwrap_or_else(|| {
                    slots.push(None);
                    slots.len() - 1
                });
                let waker = Arc::new(SlotWaker {
                    index,
                    queued: AtomicBool::new(true),
                    group: inner.clone(),
                });
                let handle = Waker::from(waker.clone());
                slots[index] = Some(Slot {
                    future,
                    waker,
                    handle,
                });
                live += 1;
                batch.push(index);
            }
            for index in batch.drain(..) {
                // A wake from a connection that ended (its slot is free or
                // taken by another since) polls nothing, or the new one once
                // more: futures allow that.
                let Some(slot) = slots.get_mut(index).and_then(Option::as_mut) else {
                    continue;
                };
                slot.waker.queued.store(false, Ordering::Release);
                let mut ccx = Context::from_waker(&slot.handle);
                let done = catch_unwind(AssertUnwindSafe(|| slot.future.as_mut().poll(&mut ccx)))
                    .map_or(true, |p| p.is_ready());
                if done {
                    slots[index] = None;
                    free.push(index);
                    live -= 1;
                }
                polled += 1;
            }
            if polled >= BUDGET {
                // Let the executor's other tasks run; what is ready waits
                // on the list. The sockets' events are collected now (no
                // wait): the list may never run out while a connection
                // keeps waking itself (a peer that floods it), and the
                // group's other sockets would never be heard. The next
                // collection after the list runs out waits for async-io
                // to report the epoll instance readable: a group that kept
                // finding its sockets ready would otherwise never let the
                // reactor turn, and timers, accepts and other sockets wait
                // for that turn.
                #[cfg(any(target_os = "linux", target_os = "android"))]
                {
                    if let Some(io) = &inner.io {
                        io.collect(&mut collect);
                    }
                    eager = false;
                }
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    /// Counts the wakes of the group's task.
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_wake_from_another_thread_polls_the_connection_once() {
        let (group, task) = Group::new();
        let mut task = Box::pin(task);
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let task_waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&task_waker);
        let polls = Arc::new(AtomicUsize::new(0));
        let waker = Arc::new(Mutex::new(None::<Waker>));
        let (p, w) = (polls.clone(), waker.clone());
        let _ = group.add(Box::pin(poll_fn(move |cx| {
            if p.fetch_add(1, Ordering::SeqCst) == 2 {
                return Poll::Ready(());
            }
            *w.lock().unwrap() = Some(cx.waker().clone());
            Poll::Pending
        })));
        assert!(task.as_mut().poll(&mut cx).is_pending());
        assert_eq!(polls.load(Ordering::SeqCst), 1);
        for round in 1..=2 {
            let w = waker.lock().unwrap().take().unwrap();
            // Twice before the group runs: the second finds it queued.
            std::thread::spawn(move || {
                w.wake_by_ref();
                w.wake();
            })
            .join()
            .unwrap();
            assert_eq!(count.0.load(Ordering::SeqCst), round);
            assert!(task.as_mut().poll(&mut cx).is_pending());
            assert_eq!(polls.load(Ordering::SeqCst), 1 + round);
        }
        // The connection has ended; the group waits for more until closed.
        assert!(task.as_mut().poll(&mut cx).is_pending());
        group.close();
        assert_eq!(count.0.load(Ordering::SeqCst), 3);
        assert!(task.as_mut().poll(&mut cx).is_ready());
        // Added after the end: given back, not lost.
        assert!(group.add(Box::pin(async {})).is_err());
    }

    #[test]
    fn a_panicking_connection_is_dropped_and_the_others_go_on() {
        let (group, task) = Group::new();
        let finished = Arc::new(AtomicUsize::new(0));
        let _ = group.add(Box::pin(async {
            panic!("an application callback panicked")
        }));
        for _ in 0..2 {
            let f = finished.clone();
            let _ = group.add(Box::pin(async move {
                async_io::Timer::after(Duration::from_millis(5)).await;
                f.fetch_add(1, Ordering::SeqCst);
            }));
        }
        group.close();
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        smol::block_on(task);
        std::panic::set_hook(hook);
        assert_eq!(finished.load(Ordering::SeqCst), 2);
    }

    /// A group, its task, its epoll instance, and a loopback pair: the
    /// peer's side and ours (non-blocking, not registered yet).
    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[allow(clippy::type_complexity)]
    fn group_and_pair() -> (
        Group,
        Pin<Box<dyn Future<Output = ()> + Send>>,
        Arc<crate::edge::GroupIo>,
        std::net::TcpStream,
        std::net::TcpStream,
    ) {
        let (group, task) = Group::new();
        let io = group.io().expect("an epoll instance").clone();
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let peer = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let ours = l.accept().unwrap().0;
        ours.set_nonblocking(true).unwrap();
        (group, Box::pin(task), io, peer, ours)
    }

    /// A connection that always wakes itself again keeps the ready list
    /// from running out; the group's other sockets must still be heard.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn a_connection_that_never_waits_does_not_deafen_the_others() {
        use std::io::Write;
        let (group, mut task, io, mut peer, ours) = group_and_pair();
        let ours = io.register(ours).ok().unwrap();
        let got = Arc::new(AtomicUsize::new(0));
        let g = got.clone();
        let _ = group.add(Box::pin(async move {
            let mut buf = [0u8; 8];
            let n = poll_fn(|cx| ours.poll_read(cx, &mut buf)).await.unwrap();
            g.store(n, Ordering::SeqCst);
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let _ = group.add(Box::pin(poll_fn(move |cx| {
            if s.load(Ordering::SeqCst) {
                return Poll::Ready(());
            }
            cx.waker().wake_by_ref();
            Poll::Pending
        })));
        group.close();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let task_waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&task_waker);
        // Both polled once; the reader waits for its socket.
        assert!(task.as_mut().poll(&mut cx).is_pending());
        assert_eq!(got.load(Ordering::SeqCst), 0);
        peer.write_all(b"abc").unwrap();
        let end = std::time::Instant::now() + Duration::from_secs(5);
        while got.load(Ordering::SeqCst) == 0 {
            assert!(
                std::time::Instant::now() < end,
                "the reader was never woken while its neighbour spun"
            );
            assert!(task.as_mut().poll(&mut cx).is_pending());
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(got.load(Ordering::SeqCst), 3);
        stop.store(true, Ordering::SeqCst);
        assert!(task.as_mut().poll(&mut cx).is_ready());
    }

    /// A connection registers its socket in the group's instance without
    /// collecting (its first read comes first); the group must take the
    /// event of adding it before it waits, or that event would end the
    /// wait at once.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn the_group_collects_the_event_of_a_socket_added_before_it_waits() {
        let (group, mut task, io, _peer, ours) = group_and_pair();
        let conn_io = io.clone();
        let _ = group.add(Box::pin(async move {
            let ours = conn_io.register(ours).ok().unwrap();
            let mut buf = [0u8; 8];
            let _ = poll_fn(|cx| ours.poll_read(cx, &mut buf)).await;
        }));
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let task_waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&task_waker);
        // The connection registered its socket and waits for a request.
        assert!(task.as_mut().poll(&mut cx).is_pending());
        assert_eq!(io.registered(), 1);
        assert!(!io.take_added());
        assert_eq!(io.collect(&mut crate::edge::Collect::default()), 0);
        group.close();
    }

    #[test]
    fn yields_to_other_tasks_after_its_budget() {
        // A connection that is always ready again, until another task of
        // the same thread stops it: without the budget the group's task
        // would never return, and that task never run.
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let (group, task) = Group::new();
            let stop = Arc::new(AtomicBool::new(false));
            let spins = Arc::new(AtomicUsize::new(0));
            let (s, n) = (stop.clone(), spins.clone());
            let _ = group.add(Box::pin(poll_fn(move |cx| {
                if s.load(Ordering::SeqCst) {
                    return Poll::Ready(());
                }
                n.fetch_add(1, Ordering::SeqCst);
                cx.waker().wake_by_ref();
                Poll::Pending
            })));
            group.close();
            let ex = smol::LocalExecutor::new();
            let t = ex.spawn(task);
            smol::block_on(ex.run(async {
                while spins.load(Ordering::SeqCst) <= BUDGET {
                    futures_lite::future::yield_now().await;
                }
                stop.store(true, Ordering::SeqCst);
                t.await
            }));
            let _ = done_tx.send(spins.load(Ordering::SeqCst));
        });
        let spins = done_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the group's task never let the other task run");
        assert!(spins > BUDGET);
    }
}
