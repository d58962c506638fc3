//! The readiness of a group's TCP sockets (plain, or under a server's
//! TLS), from an epoll instance of the group's own where each socket is
//! registered once, edge triggered (Linux and Android).
//!
//! async-io registers a socket one-shot: every wait for readability
//! re-arms it with an `epoll_ctl`, a system call per echo on top of the
//! read and the write, which a server pays in kernel time (BENCHMARKS.md,
//! session 26: ws-proto on tokio's reactor, which registers sockets once,
//! ran 1.1x fastwebsockets where ws-smol on async-io ran 0.8x). A group
//! instead collects the events of all its sockets with one `epoll_wait` on
//! its own instance, and async-io waits for that instance: one re-arm per
//! wait of the group, however many of its sockets became ready meanwhile.
//!
//! Each registration keeps a readable flag, set by the events and cleared
//! by a read that finds the socket drained, and a waker per direction (a
//! write always tries first, and waits after `EAGAIN`). A tick counts the
//! events, so that an event that comes in while a read or write finds
//! nothing is not lost: it tries again instead of waiting. Once the peer's
//! end or an error was seen (no event follows it, edge triggered) the
//! socket stays ready. Events are collected only by the group's task, while
//! a sender of any task may write; the flags and wakers are under a lock of
//! their own.

use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::net::TcpStream;
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use async_io::Async;
use rustix::event::{epoll, Timespec};
use rustix::io::Errno;
use rustix::net::{RecvFlags, SendAncillaryBuffer, SendFlags};

/// Events collected per `epoll_wait`.
const EVENTS: usize = 256;

/// A group's epoll instance and its registrations.
pub(crate) struct GroupIo {
    ep: Async<OwnedFd>,
    table: Mutex<Table>,
    /// A socket was added since the group last asked: its event is in
    /// the instance.
    added: AtomicBool,
}

/// Registrations by slot; an event's data is the slot and the
/// registration's generation, so that an event for a socket gone does not
/// wake the one that took its slot.
#[derive(Default)]
struct Table {
    slots: Vec<Option<(u32, Arc<Registration>)>>,
    free: Vec<usize>,
    generation: u32,
}

#[derive(Default)]
struct Registration {
    /// Events so far (also in `state`, read here without the lock).
    tick: AtomicU64,
    state: Mutex<Flags>,
}

struct Flags {
    tick: u64,
    readable: bool,
    /// The peer shut down its side, or the socket failed (`EPOLLRDHUP`,
    /// `EPOLLHUP`, `EPOLLERR`): readable for good, as a read that returns
    /// less than asked may have left the end (or the error) behind it, and
    /// no other event will come.
    read_end: bool,
    /// The socket hung up or failed (`EPOLLHUP`, `EPOLLERR`): writable for
    /// good (a write reports the error).
    write_end: bool,
    read_waker: Option<Waker>,
    write_waker: Option<Waker>,
}

impl Default for Flags {
    /// Readable until a read finds out (a write always tries first).
    fn default() -> Self {
        Flags {
            tick: 0,
            readable: true,
            read_end: false,
            write_end: false,
            read_waker: None,
            write_waker: None,
        }
    }
}

/// Stores `cx`'s waker in `slot`; the one it replaces, if another, comes
/// back to be woken once the lock is let go of: a task whose waker was
/// replaced must poll again to wait with its own (as async-io does; ws-smol's
/// senders rely on it, see `write_owner` in `socket.rs`).
fn replace_waker(slot: &mut Option<Waker>, cx: &Context<'_>) -> Option<Waker> {
    match slot {
        Some(w) if w.will_wake(cx.waker()) => None,
        _ => slot.replace(cx.waker().clone()),
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a group keeps for collecting events: the wakers to wake once the
/// table's lock is let go of. (The events themselves go into an array on
/// the stack: an event holds a raw pointer, which a task may not keep.)
#[derive(Default)]
pub(crate) struct Collect {
    wakers: Vec<Waker>,
}

impl GroupIo {
    /// A new epoll instance, waited for through async-io.
    pub(crate) fn new() -> io::Result<Arc<GroupIo>> {
        let ep = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        Ok(Arc::new(GroupIo {
            ep: Async::new(ep)?,
            table: Mutex::new(Table::default()),
            added: AtomicBool::new(false),
        }))
    }

    /// Registers `sock` (non-blocking), edge triggered; gives it back if
    /// the kernel refuses. The socket is in no other reactor: async-io's
    /// registration would cost two more `epoll_ctl` per connection.
    pub(crate) fn register(self: &Arc<Self>, sock: TcpStream) -> Result<GroupTcp, TcpStream> {
        let reg = Arc::new(Registration::default());
        let mut t = lock(&self.table);
        let slot = t.free.pop().unwrap_or_else(|| {
            t.slots.push(None);
            t.slots.len() - 1
        });
        t.generation = t.generation.wrapping_add(1);
        let generation = t.generation;
        let flags = epoll::EventFlags::IN
            | epoll::EventFlags::OUT
            | epoll::EventFlags::RDHUP
            | epoll::EventFlags::ET;
        let data = epoll::EventData::new_u64((u64::from(generation) << 32) | slot as u64);
        if epoll::add(self.ep.get_ref(), &sock, data, flags).is_err() {
            t.free.push(slot);
            return Err(sock);
        }
        t.slots[slot] = Some((generation, reg.clone()));
        drop(t);
        // Adding a socket raises an event at once (a new socket is
        // writable). The group collects it before it next waits (see
        // `take_added`), not here, where it would delay the connection's
        // first read by a system call: left in the instance while the
        // group waits, it would cost a turn of the reactor to find. Taken
        // late it wakes no read of a request already read: epoll reports
        // a socket's readiness as it is when collected (a sender that
        // found the socket full tries once more, as after any event).
        self.added.store(true, Ordering::Release);
        Ok(GroupTcp {
            io: sock,
            reg,
            group: self.clone(),
            slot,
            generation,
        })
    }

    /// Whether a socket was added since the last call: the group then
    /// collects before it waits, so that the event of adding it does not
    /// end the wait at once.
    pub(crate) fn take_added(&self) -> bool {
        self.added.swap(false, Ordering::AcqRel)
    }

    /// Sockets registered now.
    #[cfg(test)]
    pub(crate) fn registered(&self) -> usize {
        let t = lock(&self.table);
        t.slots.iter().filter(|s| s.is_some()).count()
    }

    /// Whether async-io reports the epoll instance readable; arms it (one
    /// `epoll_ctl`) when not. An error arming it counts as readiness (the
    /// group collects, finding nothing at worst); modifying a registered
    /// epoll instance allocates nothing and cannot fail short of a kernel
    /// fault.
    pub(crate) fn poll_ready(&self, cx: &mut Context<'_>) -> bool {
        self.ep.poll_readable(cx).is_ready()
    }

    /// Collects the events that came in, without waiting, and wakes the
    /// waits they end. Returns how many sockets had events.
    pub(crate) fn collect(&self, c: &mut Collect) -> usize {
        let mut events = [const { MaybeUninit::<epoll::Event>::uninit() }; EVENTS];
        let zero = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // Whatever was added so far is collected now.
        self.added.store(false, Ordering::Release);
        let Ok((events, _)) = epoll::wait(self.ep.get_ref(), &mut events, Some(&zero)) else {
            return 0;
        };
        {
            let t = lock(&self.table);
            for ev in events.iter() {
                let data = ev.data.u64();
                let (slot, generation) = ((data & 0xffff_ffff) as usize, (data >> 32) as u32);
                if let Some(Some((g, reg))) = t.slots.get(slot) {
                    if *g == generation {
                        reg.on_event(ev.flags, &mut c.wakers);
                    }
                }
            }
        }
        for w in c.wakers.drain(..) {
            w.wake();
        }
        events.len()
    }
}

impl Registration {
    fn on_event(&self, flags: epoll::EventFlags, wakers: &mut Vec<Waker>) {
        use epoll::EventFlags as E;
        let mut s = lock(&self.state);
        s.tick += 1;
        self.tick.store(s.tick, Ordering::Release);
        if flags.intersects(E::RDHUP | E::HUP | E::ERR) {
            s.read_end = true;
        }
        if flags.intersects(E::HUP | E::ERR) {
            s.write_end = true;
        }
        if flags.intersects(E::IN | E::RDHUP | E::HUP | E::ERR) {
            s.readable = true;
            wakers.extend(s.read_waker.take());
        }
        if flags.intersects(E::OUT | E::HUP | E::ERR) {
            wakers.extend(s.write_waker.take());
        }
    }

    fn tick(&self) -> u64 {
        self.tick.load(Ordering::Acquire)
    }

    /// After a read or write that found the socket drained or full at
    /// `tick`: waits (a read clears the readable flag), or returns true to
    /// try again when an event came in since. Without `cx` (a read that
    /// returned less than asked) it only clears the flag.
    ///
    /// A socket whose end was seen never waits: it asks for another poll
    /// instead (the kernel answers a read or write there at once, with the
    /// end or the error, so this is not a loop).
    fn wait(&self, read: bool, tick: u64, cx: Option<&mut Context<'_>>) -> bool {
        let mut guard = lock(&self.state);
        if guard.tick != tick {
            return true;
        }
        if (read && guard.read_end) || (!read && guard.write_end) {
            drop(guard);
            if let Some(cx) = cx {
                cx.waker().wake_by_ref();
            }
            return false;
        }
        let s = &mut *guard;
        let waker = if read {
            s.readable = false;
            &mut s.read_waker
        } else {
            &mut s.write_waker
        };
        let replaced = cx.and_then(|cx| replace_waker(waker, cx));
        drop(guard);
        if let Some(w) = replaced {
            w.wake();
        }
        false
    }
}

/// A TCP stream registered in its group's epoll instance (the TLS
/// session of a server's connection reads and writes through it).
pub(crate) struct GroupTcp {
    io: TcpStream,
    reg: Arc<Registration>,
    group: Arc<GroupIo>,
    slot: usize,
    generation: u32,
}

impl Drop for GroupTcp {
    fn drop(&mut self) {
        let mut t = lock(&self.group.table);
        if matches!(t.slots.get(self.slot), Some(Some((g, _))) if *g == self.generation) {
            t.slots[self.slot] = None;
            t.free.push(self.slot);
        }
        // The socket leaves the epoll instance when it is closed, right
        // after this (it is never duplicated): no `epoll_ctl` to delete it.
        // An event of its collected before the close names a slot that is
        // free, or taken under another generation, and is dropped.
    }
}

impl GroupTcp {
    /// Waits until the socket may be readable, without reading.
    pub(crate) fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut s = lock(&self.reg.state);
        if s.readable || s.read_end {
            return Poll::Ready(Ok(()));
        }
        let replaced = replace_waker(&mut s.read_waker, cx);
        drop(s);
        if let Some(w) = replaced {
            w.wake();
        }
        Poll::Pending
    }

    /// Reads with `recv`. A read that returns less than asked left the
    /// socket drained, unless its end was seen (then the end or the error
    /// may still be behind it): it clears the readable flag, so that the
    /// next wait for readability waits for the next event rather than for
    /// a read that finds nothing.
    pub(crate) fn poll_read(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            let tick = self.reg.tick();
            match rustix::net::recv(&self.io, &mut *buf, RecvFlags::empty()) {
                Ok((n, _)) => {
                    if n > 0 && n < buf.len() {
                        self.reg.wait(true, tick, None);
                    }
                    return Poll::Ready(Ok(n));
                }
                Err(Errno::AGAIN) => {
                    if !self.reg.wait(true, tick, Some(cx)) {
                        return Poll::Pending;
                    }
                }
                Err(Errno::INTR) => {}
                Err(e) => return Poll::Ready(Err(e.into())),
            }
        }
    }

    /// `MSG_NOSIGNAL`: a peer gone gives `EPIPE`, not `SIGPIPE`.
    pub(crate) fn poll_write(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_sent(cx, || rustix::net::send(&self.io, buf, SendFlags::NOSIGNAL))
    }

    /// The owned payloads' gathered write: `sendmsg`, at most the kernel's
    /// limit of buffers per call.
    pub(crate) fn poll_write_vectored(
        &self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let bufs = &bufs[..bufs.len().min(1024)];
        self.poll_sent(cx, || {
            let mut none = SendAncillaryBuffer::default();
            rustix::net::sendmsg(&self.io, bufs, &mut none, SendFlags::NOSIGNAL)
        })
    }

    fn poll_sent(
        &self,
        cx: &mut Context<'_>,
        mut send: impl FnMut() -> rustix::io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        loop {
            let tick = self.reg.tick();
            match send() {
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(Errno::AGAIN) => {
                    if !self.reg.wait(false, tick, Some(cx)) {
                        return Poll::Pending;
                    }
                }
                Err(Errno::INTR) => {}
                Err(e) => return Poll::Ready(Err(e.into())),
            }
        }
    }
}

/// For a TLS session over the socket (`futures_rustls` reads and writes
/// through these).
impl futures_io::AsyncRead for GroupTcp {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        GroupTcp::poll_read(&self, cx, buf)
    }
}

impl futures_io::AsyncWrite for GroupTcp {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        GroupTcp::poll_write(&self, cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        GroupTcp::poll_write_vectored(&self, cx, bufs)
    }

    /// Nothing is buffered here.
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// Shuts down the write side.
    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        let _ = self.io.shutdown(std::net::Shutdown::Write);
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;
    use std::task::Wake;
    use std::time::{Duration, Instant};

    /// Counts its wakes.
    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    impl Count {
        /// A new count and the waker that counts into it.
        fn waker() -> (Arc<Count>, Waker) {
            let count = Arc::new(Count::default());
            (count.clone(), Waker::from(count))
        }

        fn get(&self) -> usize {
            self.0.load(Ordering::SeqCst)
        }
    }

    /// A loopback pair: our side registered in `io`, the peer's blocking.
    fn pair(io: &Arc<GroupIo>) -> (GroupTcp, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let peer = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (ours, _) = l.accept().unwrap();
        ours.set_nonblocking(true).unwrap();
        let ours = io.register(ours).ok().unwrap();
        (ours, peer)
    }

    /// Waits (at most 10 s) until `sock` reports `flags`. A `poll` leaves
    /// the epoll instance's edge to be collected. Loopback usually delivers
    /// within the writer's call, but a loaded machine may defer it.
    fn wait_for(sock: &TcpStream, flags: rustix::event::PollFlags) {
        let mut fds = [rustix::event::PollFd::new(sock, flags)];
        let limit = Timespec {
            tv_sec: 10,
            tv_nsec: 0,
        };
        let n = loop {
            match rustix::event::poll(&mut fds, Some(&limit)) {
                Err(Errno::INTR) => {}
                r => break r.unwrap(),
            }
        };
        assert_eq!(n, 1, "{flags:?} not reported within 10 s");
    }

    /// Collects until `pred` holds, for at most 5 s.
    fn collect_until(io: &GroupIo, mut pred: impl FnMut() -> bool) {
        let mut c = Collect::default();
        let end = Instant::now() + Duration::from_secs(5);
        while !pred() {
            assert!(Instant::now() < end, "no event within 5 s");
            io.collect(&mut c);
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn a_read_waits_for_the_next_event_and_a_short_read_clears_readiness() {
        let io = GroupIo::new().unwrap();
        let (ours, mut peer) = pair(&io);
        let (count, waker) = Count::waker();
        let mut cx = Context::from_waker(&waker);
        let mut buf = [0u8; 64];
        // Nothing to read: the read waits, and so does readiness.
        assert!(ours.poll_read(&mut cx, &mut buf).is_pending());
        assert!(ours.poll_read_ready(&mut cx).is_pending());
        peer.write_all(b"hello").unwrap();
        collect_until(&io, || count.get() > 0);
        assert!(ours.poll_read_ready(&mut cx).is_ready());
        match ours.poll_read(&mut cx, &mut buf) {
            Poll::Ready(Ok(5)) => assert_eq!(&buf[..5], b"hello"),
            other => panic!("{other:?}"),
        }
        // Five bytes of 64: the socket was drained, so readiness waits for
        // the next event without another read.
        assert!(ours.poll_read_ready(&mut cx).is_pending());
        let woken = count.get();
        peer.write_all(b"again").unwrap();
        collect_until(&io, || count.get() > woken);
        assert!(matches!(
            ours.poll_read(&mut cx, &mut buf),
            Poll::Ready(Ok(5))
        ));
        // The peer's close is an event too: the read sees the end.
        assert!(ours.poll_read(&mut cx, &mut buf).is_pending());
        let woken = count.get();
        drop(peer);
        collect_until(&io, || count.get() > woken);
        assert!(matches!(
            ours.poll_read(&mut cx, &mut buf),
            Poll::Ready(Ok(0))
        ));
    }

    #[test]
    fn the_end_behind_a_short_read_is_not_lost() {
        let io = GroupIo::new().unwrap();
        let (ours, mut peer) = pair(&io);
        // The last bytes and the end come in before the group collects:
        // one event for both, and none after it.
        peer.write_all(b"last").unwrap();
        drop(peer);
        wait_for(&ours.io, rustix::event::PollFlags::RDHUP);
        assert_eq!(io.collect(&mut Collect::default()), 1);
        let (_count, waker) = Count::waker();
        let mut cx = Context::from_waker(&waker);
        let mut buf = [0u8; 64];
        assert!(matches!(
            ours.poll_read(&mut cx, &mut buf),
            Poll::Ready(Ok(4))
        ));
        // Four bytes of 64, but the end is still to be read.
        assert!(ours.poll_read_ready(&mut cx).is_ready());
        assert!(matches!(
            ours.poll_read(&mut cx, &mut buf),
            Poll::Ready(Ok(0))
        ));
    }

    #[test]
    fn a_waker_replaced_is_woken() {
        let io = GroupIo::new().unwrap();
        let (ours, _peer) = pair(&io);
        let ((first, w1), (second, w2)) = (Count::waker(), Count::waker());
        let (mut cx1, mut cx2) = (Context::from_waker(&w1), Context::from_waker(&w2));
        // A read wait, then another task's: the first must poll again.
        let mut buf = [0u8; 8];
        assert!(ours.poll_read(&mut cx1, &mut buf).is_pending());
        assert!(ours.poll_read_ready(&mut cx2).is_pending());
        assert_eq!((first.get(), second.get()), (1, 0));
        // The same for writes to a full socket.
        let chunk = vec![7u8; 64 * 1024];
        let mut written = 0usize;
        while ours.poll_write(&mut cx1, &chunk).is_ready() {
            written += 1;
            assert!(written < 1 << 14, "the socket never filled");
        }
        assert!(ours.poll_write(&mut cx2, b"x").is_pending());
        assert_eq!((first.get(), second.get()), (2, 0));
    }

    #[test]
    fn an_event_for_a_socket_gone_does_not_wake_the_one_in_its_slot() {
        let io = GroupIo::new().unwrap();
        let (first, mut first_peer) = pair(&io);
        // A duplicate keeps the first socket open, and so in the epoll
        // instance, after its registration is gone.
        let kept = first.io.try_clone().unwrap();
        drop(first);
        let (second, _peer) = pair(&io);
        // The events of adding both.
        assert_eq!(io.collect(&mut Collect::default()), 2);
        assert_eq!(second.slot, 0);
        let (count, waker) = Count::waker();
        let mut cx = Context::from_waker(&waker);
        let mut buf = [0u8; 8];
        assert!(second.poll_read(&mut cx, &mut buf).is_pending());
        first_peer.write_all(b"stale").unwrap();
        wait_for(&kept, rustix::event::PollFlags::IN);
        assert_eq!(io.collect(&mut Collect::default()), 1);
        assert_eq!(count.get(), 0);
        drop(kept);
    }

    #[test]
    fn adding_a_socket_is_flagged_for_the_group_to_collect_and_wakes_no_read() {
        let io = GroupIo::new().unwrap();
        let (ours, mut peer) = pair(&io);
        // The new socket's event (it is writable) waits in the instance;
        // the group is told to collect it before it waits.
        assert_eq!(ours.reg.tick(), 0);
        assert!(io.take_added());
        assert!(!io.take_added());
        // The first read does not wait for that event.
        let (count, waker) = Count::waker();
        let mut cx = Context::from_waker(&waker);
        let mut buf = [0u8; 64];
        peer.write_all(b"request").unwrap();
        wait_for(&ours.io, rustix::event::PollFlags::IN);
        assert!(matches!(
            ours.poll_read(&mut cx, &mut buf),
            Poll::Ready(Ok(7))
        ));
        // Collected late, the event says what the socket is now (drained,
        // writable): it wakes no read and leaves readiness to the next one.
        assert!(ours.poll_read_ready(&mut cx).is_pending());
        assert_eq!(io.collect(&mut Collect::default()), 1);
        assert_eq!(ours.reg.tick(), 1);
        assert_eq!(count.get(), 0);
        assert!(ours.poll_read_ready(&mut cx).is_pending());
        assert_eq!(io.collect(&mut Collect::default()), 0);
    }

    #[test]
    fn an_event_between_a_read_and_its_wait_is_not_lost() {
        let io = GroupIo::new().unwrap();
        let (ours, _peer) = pair(&io);
        let (_count, waker) = Count::waker();
        let mut cx = Context::from_waker(&waker);
        // A read found nothing at this tick; an event comes in before it
        // waits: it must try again, not clear the flag and sleep.
        let tick = ours.reg.tick();
        ours.reg.on_event(epoll::EventFlags::IN, &mut Vec::new());
        assert!(ours.reg.wait(true, tick, Some(&mut cx)));
        assert!(ours.poll_read_ready(&mut cx).is_ready());
        // Without an event in between it waits.
        let tick = ours.reg.tick();
        assert!(!ours.reg.wait(true, tick, Some(&mut cx)));
        assert!(ours.poll_read_ready(&mut cx).is_pending());
    }

    #[test]
    fn a_write_to_a_full_socket_waits_until_the_peer_reads() {
        let io = GroupIo::new().unwrap();
        let (ours, mut peer) = pair(&io);
        let (count, waker) = Count::waker();
        let mut cx = Context::from_waker(&waker);
        let chunk = vec![7u8; 64 * 1024];
        let mut written = 0usize;
        let full = loop {
            match ours.poll_write(&mut cx, &chunk) {
                Poll::Ready(Ok(n)) => written += n,
                Poll::Ready(Err(e)) => panic!("{e}"),
                Poll::Pending => break written,
            }
            assert!(written < 1 << 30, "the socket never filled");
        };
        assert!(full > 0);
        // The peer reads it all on a thread of its own; the freed room is
        // an event that wakes the writer.
        let reader = std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            let mut got = 0;
            while got < full {
                got += peer.read(&mut buf).unwrap();
            }
            peer
        });
        collect_until(&io, || count.get() > 0);
        assert!(matches!(
            ours.poll_write(&mut cx, b"more"),
            Poll::Ready(Ok(4))
        ));
        drop(reader.join().unwrap());
    }

    #[test]
    fn a_socket_gone_frees_its_slot_for_the_next() {
        let io = GroupIo::new().unwrap();
        let (first, first_peer) = pair(&io);
        assert_eq!(io.registered(), 1);
        drop(first);
        drop(first_peer);
        assert_eq!(io.registered(), 0);
        // The next socket takes the slot under a new generation.
        let (second, mut peer) = pair(&io);
        assert_eq!(io.registered(), 1);
        assert_eq!(second.slot, 0);
        let (count, waker) = Count::waker();
        let mut cx = Context::from_waker(&waker);
        let mut buf = [0u8; 8];
        assert!(second.poll_read(&mut cx, &mut buf).is_pending());
        peer.write_all(b"x").unwrap();
        collect_until(&io, || count.get() > 0);
        assert!(matches!(
            second.poll_read(&mut cx, &mut buf),
            Poll::Ready(Ok(1))
        ));
    }
}
