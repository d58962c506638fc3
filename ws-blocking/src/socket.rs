//! One WebSocket connection over a blocking socket: the run loop of the
//! sans-IO core, split into a cloneable [`Sender`] and a [`Receiver`].
//!
//! The connection state lives behind one mutex, held only briefly; the
//! socket's write side behind another, held while writing. Whoever queues
//! frames also writes them; bytes are taken from the state while the write
//! lock is held, so frames from many threads never interleave or reorder.
//! The receiver reads the socket without either lock, then takes the state
//! lock to feed the bytes in, so it keeps reading while a sender is blocked
//! writing to a slow peer.

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ws_proto::api::tls::rustls;
use ws_proto::api::{
    assert_not_lending, copied_in, lent_once, messages_in, Error, Lending, Receive,
};
use ws_proto::{
    CloseCode, Connection, Event, Message, MessageKind, MessageRef, Reply, State, Transmit,
};

/// The longest a receiver sleeps in `read` before it looks at the timers
/// again (a Close queued by another thread starts a close timeout that the
/// blocked reader must notice).
const WAKE: Duration = Duration::from_secs(1);

/// How soon the receiver tries again to write what the socket would not
/// take without blocking.
const RETRY_WRITE: Duration = Duration::from_millis(2);

/// Bytes read from the socket per call.
const READ_SIZE: usize = 16 << 10;

/// Bytes read per call once a read filled the buffer (large messages, or
/// many small ones queued): fewer reads per message. Back to `READ_SIZE`
/// when a read waits out its timeout, or after `SMALL_READS` reads in a
/// row of less than `READ_SIZE`.
const READ_SIZE_BUSY: usize = 64 << 10;
const SMALL_READS: u8 = 16;

/// Output buffers larger than this go back to the connection once written
/// (`Connection::reuse_output`) instead of being dropped or kept here.
const KEEP_OUT: usize = 4 << 10;

/// The protocol state and the TLS session, if any.
pub(crate) struct Inner {
    pub(crate) conn: Connection,
    tls: Option<Box<rustls::Connection>>,
    plain: Vec<u8>,
    broken: Option<io::ErrorKind>,
}

impl Inner {
    /// Moves every queued byte into `out`, encrypting it when TLS is on.
    /// Returns whether the write side must be shut down after `out`.
    fn take_output(&mut self, out: &mut Vec<u8>) -> bool {
        let mut shutdown = false;
        loop {
            match self.conn.poll_transmit(&mut self.plain) {
                Transmit::Data(_) => {
                    match &mut self.tls {
                        // Handed over whole when `out` is empty (it usually
                        // is): no copy.
                        None if out.is_empty() => std::mem::swap(out, &mut self.plain),
                        None => out.extend_from_slice(&self.plain),
                        Some(tls) => encrypt(tls, &self.plain, out),
                    }
                    if self.plain.capacity() > KEEP_OUT {
                        // Copied or encrypted: back to the connection as
                        // it was, for its next large message.
                        let plain = std::mem::take(&mut self.plain);
                        self.conn.reuse_output(Instant::now(), plain);
                    } else {
                        self.plain.clear();
                    }
                }
                Transmit::Shutdown => {
                    if let Some(tls) = &mut self.tls {
                        tls.send_close_notify();
                    }
                    shutdown = true;
                }
                Transmit::Nothing => break,
            }
        }
        if let Some(tls) = &mut self.tls {
            // Alerts and handshake records the session produced itself.
            while tls.wants_write() {
                if tls.write_tls(out).is_err() {
                    break;
                }
            }
        }
        shutdown
    }

    /// Like [`take_output`](Self::take_output) on plain TCP, with the
    /// payloads the connection took over left in their own memory: each in
    /// `owned` with its place in `out` (`Connection::poll_transmit_owned`).
    fn take_output_owned(&mut self, out: &mut Vec<u8>, owned: &mut Vec<(usize, Bytes)>) -> bool {
        let mut shutdown = false;
        loop {
            match self.conn.poll_transmit_owned(out, owned) {
                Transmit::Data(_) => {}
                Transmit::Shutdown => shutdown = true,
                Transmit::Nothing => return shutdown,
            }
        }
    }

    /// Feeds bytes read from the socket: straight in (copied, unmasked on
    /// the way in for large frames, with room reserved for the rest of a
    /// frame), or through TLS.
    fn feed(&mut self, now: Instant, data: &[u8]) {
        if self.tls.is_none() {
            self.conn.handle_data(now, data);
            return;
        }
        let mut raw: &[u8] = data;
        while !raw.is_empty() {
            let Some(tls) = &mut self.tls else { return };
            // rustls takes ciphertext only while the plaintext it holds is
            // under its limit (16 KiB): the plaintext goes on into the
            // connection after every turn, or the rest of a large read
            // would be refused, and the stream broken.
            let took = tls.read_tls(&mut raw).unwrap_or(0);
            if tls.process_new_packets().is_err() {
                // A TLS alert or a corrupt record: our alert goes out with
                // the next flush; the connection ends.
                self.conn.handle_eof(now);
                return;
            }
            let moved = self.drain_plaintext(now);
            if took == 0 && moved == 0 {
                // Neither side moves: the session is stuck. Dropping the
                // rest would break the stream; end the connection instead.
                self.conn.handle_eof(now);
                return;
            }
        }
    }

    /// Hands plaintext the TLS session holds to the connection; how many
    /// bytes (or that the peer's close_notify arrived) moved.
    fn drain_plaintext(&mut self, now: Instant) -> usize {
        let Some(tls) = &mut self.tls else { return 0 };
        let mut buf = [0u8; 4096];
        let mut moved = 0;
        loop {
            match tls.reader().read(&mut buf) {
                Ok(0) => {
                    // close_notify: the peer will send nothing more.
                    self.conn.handle_eof(now);
                    return moved + 1;
                }
                Ok(n) => {
                    self.conn.handle_data(now, &buf[..n]);
                    moved += n;
                }
                Err(_) => return moved,
            }
        }
    }
}

/// Encrypts `data` into TLS records appended to `out`.
fn encrypt(tls: &mut rustls::Connection, mut data: &[u8], out: &mut Vec<u8>) {
    while !data.is_empty() {
        match tls.writer().write(data) {
            Ok(n) => data = &data[n..],
            Err(_) => return,
        }
        while tls.wants_write() {
            if tls.write_tls(out).is_err() {
                return;
            }
        }
    }
}

/// The connection's two locks. `state` is held only briefly; `writer` is
/// held while bytes are written (which may block on a slow peer), so the
/// receiver can keep reading meanwhile: two peers that both write bulk data
/// at once do not deadlock.
pub(crate) struct Link {
    state: Mutex<Inner>,
    writer: Mutex<Writer>,
    /// For `abort`: shutting a socket down needs no lock.
    control: TcpStream,
}

type Shared = Arc<Link>;

/// The write side: the socket, and what a writer that must not block left
/// unwritten (it goes out first, before anything taken after it).
struct Writer {
    stream: TcpStream,
    unsent: Vec<u8>,
    /// The write side is to be shut down once `unsent` is written.
    shutdown: bool,
}

impl Writer {
    /// Something is left to write (bytes, or the shutdown after them).
    fn pending(&self) -> bool {
        !self.unsent.is_empty() || self.shutdown
    }
}

/// Writes `buf` with the payloads in `owned` in their places (each after
/// `buf[..at]`), all of it, blocking: vectored writes, as many buffers a
/// turn as the system takes.
fn write_all_parts(stream: &mut TcpStream, buf: &[u8], owned: &[(usize, Bytes)]) -> io::Result<()> {
    let mut parts = Vec::with_capacity(2 * owned.len() + 1);
    let mut from = 0;
    for (at, payload) in owned {
        parts.push(IoSlice::new(&buf[from..*at]));
        parts.push(IoSlice::new(payload));
        from = *at;
    }
    parts.push(IoSlice::new(&buf[from..]));
    parts.retain(|p| !p.is_empty());
    let mut rest = &mut parts[..];
    while !rest.is_empty() {
        match stream.write_vectored(rest) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut rest, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes what `stream` takes without blocking; how much that was.
/// `MSG_DONTWAIT` makes the one call non-blocking: the socket stays
/// blocking for the receiver reading it meanwhile, and no system calls
/// switch it and back. (Linux and Android: elsewhere rustix has no
/// `MSG_NOSIGNAL`.)
#[cfg(any(target_os = "linux", target_os = "android"))]
fn write_nonblocking(stream: &mut TcpStream, buf: &[u8]) -> io::Result<usize> {
    use rustix::io::Errno;
    use rustix::net::SendFlags;
    let mut done = 0;
    while done < buf.len() {
        match rustix::net::send(
            &*stream,
            &buf[done..],
            SendFlags::DONTWAIT | SendFlags::NOSIGNAL,
        ) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => done += n,
            Err(Errno::INTR) => {}
            Err(Errno::AGAIN) => break,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(done)
}

/// Writes what `stream` takes without blocking; how much that was.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn write_nonblocking(stream: &mut TcpStream, buf: &[u8]) -> io::Result<usize> {
    stream.set_nonblocking(true)?;
    let mut done = 0;
    let r = loop {
        if done == buf.len() {
            break Ok(done);
        }
        match stream.write(&buf[done..]) {
            Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(done),
            Err(e) => break Err(e),
        }
    };
    stream.set_nonblocking(false)?;
    r
}

/// One read from plain TCP: rustix's `recv`, a system call of its own,
/// not the C library's, which wraps it in two more calls (it is a thread
/// cancellation point).
#[cfg(any(target_os = "linux", target_os = "android"))]
fn read_plain(stream: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    match rustix::net::recv(stream, buf, rustix::net::RecvFlags::empty()) {
        Ok((n, _)) => Ok(n),
        Err(e) => Err(e.into()),
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn read_plain(mut stream: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    stream.read(buf)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The lock is not reentrant: a `recv_with` closure that sends on its
    // own connection would wait for itself forever. Fail loudly instead.
    assert_not_lending(m);
    // A panic in a user callback must not poison the connection for others.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Writes everything queued. Bytes are taken from the connection while the
/// writer lock is held, so whoever takes them writes them before anyone
/// takes more: frames never reorder. With `wait` false (the receiver, or a
/// close that must not block), a busy writer is left to write what is
/// queued, and otherwise only what the socket takes without blocking is
/// written; the rest waits in `Writer::unsent` for the next flush. A
/// receiver blocked writing would stop reading, and a peer blocked writing
/// to it would then never read what it writes.
fn flush(link: &Link, wait: bool) -> Result<(), Error> {
    let mut buf = Vec::new();
    let mut owned = Vec::new();
    loop {
        let mut w = if wait {
            lock(&link.writer)
        } else {
            match link.writer.try_lock() {
                Ok(w) => w,
                Err(std::sync::TryLockError::WouldBlock) => return Ok(()),
                Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            }
        };
        let shutdown = {
            let mut st = lock(&link.state);
            if buf.capacity() > KEEP_OUT {
                // What was just written, as it was: the connection queues
                // its next large message there (and gives it back once
                // large messages have stopped for a while).
                st.conn
                    .reuse_output(Instant::now(), std::mem::take(&mut buf));
            }
            if let Some(kind) = st.broken {
                // Nothing can be written any more: drop what is queued, so
                // that the connection can still finish.
                buf.clear();
                st.take_output(&mut buf);
                w.unsent = Vec::new();
                w.shutdown = false;
                return Err(Error::Io(kind.into()));
            }
            let mut taken = std::mem::take(&mut w.unsent);
            // A writer that must not block takes nothing more while bytes
            // wait: left in the connection, Pongs coalesce, so a peer that
            // pings and never reads cannot grow this buffer.
            let more = wait || taken.is_empty();
            // A writer that may block writes payloads taken over from their
            // own memory (plain TCP; TLS encrypts them into records anyway).
            // One that must not block copies them in: what the socket does
            // not take waits in `unsent`.
            let shutdown = if more && wait && st.tls.is_none() {
                st.take_output_owned(&mut taken, &mut owned)
            } else {
                more && st.take_output(&mut taken)
            } || w.shutdown;
            buf = taken;
            shutdown
        };
        w.shutdown = false;
        if buf.is_empty() && !shutdown {
            return Ok(());
        }
        let written = if !owned.is_empty() {
            let r = write_all_parts(&mut w.stream, &buf, &owned).map(|()| buf.len());
            // Let go of the payloads at once (their senders may be waiting
            // to reuse them).
            owned.clear();
            r
        } else if wait {
            w.stream.write_all(&buf).map(|()| buf.len())
        } else {
            write_nonblocking(&mut w.stream, &buf)
        };
        match written {
            Err(e) => {
                lock(&link.state).broken = Some(e.kind());
                return Err(e.into());
            }
            Ok(n) if n < buf.len() => {
                // The socket is full: the next flush goes on from here.
                w.unsent = buf.split_off(n);
                w.shutdown = shutdown;
                return Ok(());
            }
            Ok(_) => {}
        }
        // Written. Not cleared: the next pass hands a large buffer back
        // to the connection as it was, or replaces it.
        if shutdown {
            let _ = w.stream.shutdown(Shutdown::Write);
        }
        // More may have been queued while we wrote: look again.
    }
}

/// Bytes a non-blocking flush left for later.
fn unsent(link: &Link) -> bool {
    match link.writer.try_lock() {
        Ok(w) => w.pending(),
        Err(std::sync::TryLockError::Poisoned(p)) => p.get_ref().pending(),
        // A writer is at work: it writes them.
        Err(std::sync::TryLockError::WouldBlock) => false,
    }
}

/// Sends on a connection; clone it to send from several threads.
#[derive(Clone)]
pub struct Sender {
    shared: Shared,
    peer: SocketAddr,
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender").field("peer", &self.peer).finish()
    }
}

impl Sender {
    fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, ws_proto::SendError>,
    ) -> Result<T, Error> {
        let mut g = lock(&self.shared.state);
        let r = f(&mut g.conn)?;
        drop(g);
        flush(&self.shared, true)?;
        Ok(r)
    }

    /// Runs `f` with a [`Reply`] on this connection under its lock, marked
    /// as lending it (as `recv_with_reply`'s closure is), then writes what
    /// it queued without blocking, as the receiver does (the rest goes
    /// with the next receive, which also reports a write that failed): for
    /// a server's lent callbacks given a message that was received owned.
    pub(crate) fn with_reply<R>(&self, f: impl FnOnce(&mut Reply<'_>) -> R) -> R {
        let state: *const Mutex<Inner> = &self.shared.state;
        let mut g = lock(&self.shared.state);
        let r = {
            let _lending = Lending::enter(state);
            g.conn.with_reply(f)
        };
        drop(g);
        let _ = flush(&self.shared, false);
        r
    }

    /// Sends a text message.
    pub fn send_text(&self, text: &str) -> Result<(), Error> {
        self.with(|c| c.send_text(text))
    }

    /// Sends a binary message.
    pub fn send_binary(&self, data: &[u8]) -> Result<(), Error> {
        self.with(|c| c.send_binary(data))
    }

    /// Sends a binary message whose bytes the connection takes over: on
    /// the server side over plain TCP, a payload of at least
    /// [`ws_proto::OWNED_MIN`] bytes that is not compressed is written from
    /// its own memory (a vectored write with its frame header), never
    /// copied into the output buffer ([`Connection::send_owned`]); it is
    /// let go of once written. Otherwise as
    /// [`send_binary`](Self::send_binary). A `Bytes` sent to many
    /// connections this way is shared, not copied for each.
    pub fn send_bytes(&self, data: Bytes) -> Result<(), Error> {
        self.with(|c| c.send_owned(MessageKind::Binary, data))
    }

    /// Sends a text message whose `String` the connection takes over, like
    /// [`send_bytes`](Self::send_bytes).
    pub fn send_string(&self, text: String) -> Result<(), Error> {
        self.with(|c| c.send_text_owned(text))
    }

    /// Sends one piece of a message streamed in pieces; `fin` ends it.
    pub fn send_chunk(&self, kind: MessageKind, data: &[u8], fin: bool) -> Result<(), Error> {
        self.with(|c| c.send_chunk(kind, data, fin))
    }

    /// Sends a message that is never compressed, even with
    /// permessage-deflate negotiated (already-compressed data, or secrets
    /// that must not share a compression context with attacker-chosen data).
    pub fn send_uncompressed(&self, kind: MessageKind, data: &[u8]) -> Result<(), Error> {
        self.with(|c| c.send_uncompressed(kind, data))
    }

    /// The negotiated permessage-deflate parameters, if it is in use.
    #[cfg(feature = "deflate")]
    pub fn deflate(&self) -> Option<ws_proto::DeflateParams> {
        lock(&self.shared.state).conn.deflate().copied()
    }

    /// Sends a Ping (at most 125 bytes).
    pub fn ping(&self, payload: &[u8]) -> Result<(), Error> {
        self.with(|c| c.ping(payload))
    }

    /// Starts the closing handshake with `code` and `reason` (at most 123
    /// bytes). The receiver reports the end as [`Message::Closed`].
    pub fn close(&self, code: CloseCode, reason: &str) -> Result<(), Error> {
        self.with(|c| c.close(Instant::now(), code, reason))
    }

    /// Bytes queued and not yet written (the browser's `bufferedAmount`).
    /// Writes are synchronous, so this is 0 unless a write failed.
    pub fn buffered_amount(&self) -> usize {
        lock(&self.shared.state).conn.buffered_amount()
    }

    /// Open, Closing or Closed.
    pub fn state(&self) -> State {
        lock(&self.shared.state).conn.state()
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// Closes the socket at once, without a closing handshake.
    pub(crate) fn abort(&self) {
        let _ = self.shared.control.shutdown(Shutdown::Both);
    }

    /// Queues a Close and writes it only if no other thread is writing:
    /// never blocks (a sender stuck on a peer that does not read keeps the
    /// write lock; its receiver sends the Close after it).
    pub(crate) fn close_nowait(&self, code: CloseCode, reason: &str) {
        let queued = lock(&self.shared.state)
            .conn
            .close(Instant::now(), code, reason);
        if queued.is_ok() {
            let _ = flush(&self.shared, false);
        }
    }
}

/// Receives from a connection. There is one per connection.
pub struct Receiver {
    shared: Shared,
    sock: TcpStream,
    /// The read buffer (zeroed once, on the first read; grown to
    /// `READ_SIZE_BUSY` while reads fill it).
    buf: Vec<u8>,
    /// Reads in a row of less than `READ_SIZE` into a grown `buf`.
    small_reads: u8,
    done: bool,
    /// The socket's read timeout as this receiver last set it.
    read_timeout: Option<Duration>,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("done", &self.done)
            .finish()
    }
}

impl Receiver {
    /// The next event: a chunk of a message (huge messages stream through
    /// bounded memory), a ping, a pong, or the close. `Ok(None)` once the
    /// connection is finished and the close was reported.
    pub fn recv_event(&mut self) -> Result<Option<Event>, Error> {
        self.recv_next(copied_in(Connection::poll_event))
    }

    /// The run loop around `next` (`Connection::poll_event` or
    /// `Connection::poll_message`, which take the reads too).
    fn recv_next<T>(&mut self, mut next: impl Receive<T>) -> Result<Option<T>, Error> {
        loop {
            let ev = {
                let mut g = lock(&self.shared.state);
                g.drain_plaintext(Instant::now());
                next(&mut g.conn, None)
            };
            // Replies (Pong, Close) leave before the event is returned (a
            // `recv_with` closure runs first); a sender busy writing takes
            // them along.
            let flushed = flush(&self.shared, false);
            if let Some(ev) = ev {
                return Ok(Some(ev));
            }
            let deadline = {
                let mut g = lock(&self.shared.state);
                if g.conn.is_finished() || self.done {
                    drop(g);
                    if !self.done && unsent(&self.shared) {
                        // The last bytes (a Close) still go out; nothing is
                        // read any more, so waiting cannot deadlock.
                        let _ = flush(&self.shared, true);
                    }
                    self.done = true;
                    return Ok(None);
                }
                if let Err(e) = flushed {
                    // The peer is gone; let the core report 1006.
                    g.conn.handle_eof(Instant::now());
                    return match next(&mut g.conn, None) {
                        Some(ev) => Ok(Some(ev)),
                        None => Err(e),
                    };
                }
                g.conn.poll_timeout()
            };
            let now = Instant::now();
            // Bytes a flush could not write without blocking are tried again
            // soon: std has no wait for "readable or writable".
            let wake = if unsent(&self.shared) {
                RETRY_WRITE
            } else {
                WAKE
            };
            let wait = deadline.map_or(wake, |d| d.saturating_duration_since(now).min(wake));
            if deadline.is_some_and(|d| d <= now) {
                lock(&self.shared.state).conn.handle_timeout(now);
                continue;
            }
            let wait = wait.max(Duration::from_millis(1));
            // A system call per read only when the wait must be shorter,
            // or is much longer, than the timeout set: one that fires
            // early finds nothing due and the loop reads again.
            if self
                .read_timeout
                .is_none_or(|set| wait < set || wait > 2 * set)
            {
                self.sock.set_read_timeout(Some(wait))?;
                self.read_timeout = Some(wait);
            }
            if self.small_reads >= SMALL_READS {
                // Not busy any more: the small buffer again.
                self.buf = Vec::new();
                self.small_reads = 0;
            }
            if self.buf.is_empty() {
                self.buf = vec![0; READ_SIZE];
            }
            let r = read_plain(&self.sock, &mut self.buf);
            match r {
                Ok(n) if n == self.buf.len() && n < READ_SIZE_BUSY => {
                    // More is waiting, most likely: read more at a time
                    // (what was read stays at the start).
                    self.buf.resize(READ_SIZE_BUSY, 0);
                    self.small_reads = 0;
                }
                Ok(n) if self.buf.len() > READ_SIZE => {
                    if n >= READ_SIZE {
                        self.small_reads = 0;
                    } else {
                        // Shrunk before the next read once this
                        // reaches `SMALL_READS`.
                        self.small_reads += 1;
                    }
                }
                _ => {}
            }
            let now = Instant::now();
            let mut g = lock(&self.shared.state);
            match r {
                Ok(0) => g.conn.handle_eof(now),
                Ok(n) if g.tls.is_none() => {
                    // A lending receive lends a message that lies whole in
                    // the read from the read buffer.
                    if let Some(ev) = next(&mut g.conn, Some((now, &mut self.buf[..n]))) {
                        drop(g);
                        // Replies leave before the event is returned, as above.
                        let _ = flush(&self.shared, false);
                        return Ok(Some(ev));
                    }
                }
                Ok(n) => g.feed(now, &self.buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    if self.buf.len() > READ_SIZE && wake == WAKE {
                        // Idle: the small buffer again. (Not after the
                        // short waits for a full socket to take more: the
                        // peer is slow to read, not idle.)
                        self.small_reads = SMALL_READS;
                    }
                    g.conn.handle_timeout(now)
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => g.conn.handle_eof(now),
            }
        }
    }

    /// The next whole message (or ping, pong, close). After
    /// [`Message::Closed`], returns [`Error::Closed`].
    /// A text message is checked for UTF-8 once, as it arrives, and built
    /// into its `String` by that pass ([`Connection::poll_message`]); over
    /// plain TCP, a message that lies whole in a read is built from the
    /// read buffer, not copied into the connection first
    /// ([`Connection::handle_data_message`]).
    pub fn recv(&mut self) -> Result<Message, Error> {
        self.recv_next(messages_in())?.ok_or(Error::Closed)
    }

    /// The next whole message (or ping, pong, close), lent to `f`; after
    /// the close, [`Error::Closed`]. A message that lies whole in what was
    /// read is neither copied nor allocated: `f` sees the read buffer,
    /// unmasked and checked in place ([`Connection::poll_message_with`];
    /// non-ASCII text of 48 to 63 bytes is checked in a 64-byte copy on
    /// the stack and lent from there, quicker than std's check in place);
    /// others are built as by [`recv`](Self::recv) and lent from there.
    ///
    /// `f` runs while the connection is locked, so it must not use this
    /// connection's [`Sender`] (on `f`'s own thread that panics, even
    /// inside a nested `recv_with` on another connection, rather than
    /// deadlocking; `f` must not wait for another thread that uses it
    /// either): copy what you need into a buffer of your own and send after
    /// `recv_with` returns. If `f` panics, the message is lent again by
    /// the next call.
    pub fn recv_with<R>(&mut self, f: impl FnOnce(MessageRef<'_>) -> R) -> Result<R, Error> {
        self.recv_lent(|m, _| f(m))
    }

    /// [`recv_with`](Self::recv_with), and `f` may answer: the [`Reply`]
    /// it is given queues whole messages on this connection while the
    /// message is lent ([`Connection::poll_message_reply`]), so a request
    /// answered from the bytes it came in (an echo, say) costs one copy,
    /// not two. The answers are written before this call returns, with the
    /// other replies of what was read (Pongs, a Close); what the socket
    /// does not take at once leaves with the next receive or send. The same
    /// rules as the `Sender`'s sends: after a Close, or while a streamed
    /// message is unfinished, a `Reply` refuses.
    ///
    /// ```no_run
    /// # fn echo(ws: &mut ws_blocking::WebSocket) -> Result<(), ws_blocking::Error> {
    /// use ws_blocking::MessageRef;
    ///
    /// loop {
    ///     ws.recv_with_reply(|m, reply| match m {
    ///         MessageRef::Text(t) => reply.send_text(t).is_ok(),
    ///         MessageRef::Binary(b) => reply.send_binary(b).is_ok(),
    ///         _ => true,
    ///     })?;
    /// }
    /// # }
    /// ```
    pub fn recv_with_reply<R>(
        &mut self,
        f: impl FnOnce(MessageRef<'_>, &mut Reply<'_>) -> R,
    ) -> Result<R, Error> {
        self.recv_lent(f)
    }

    /// Both lending receives.
    fn recv_lent<R>(
        &mut self,
        f: impl FnOnce(MessageRef<'_>, &mut Reply<'_>) -> R,
    ) -> Result<R, Error> {
        let state: *const Mutex<Inner> = &self.shared.state;
        self.recv_next(lent_once(state, f))?
            .map(|(_, r)| r)
            .ok_or(Error::Closed)
    }
}

/// Splits an established connection (and its TLS session) into its halves.
pub(crate) fn split(
    conn: Connection,
    sock: TcpStream,
    tls: Option<rustls::Connection>,
) -> io::Result<(Sender, Receiver)> {
    let peer = sock.peer_addr()?;
    sock.set_write_timeout(None)?;
    let shared = Arc::new(Link {
        state: Mutex::new(Inner {
            conn,
            tls: tls.map(Box::new),
            plain: Vec::new(),
            broken: None,
        }),
        writer: Mutex::new(Writer {
            stream: sock.try_clone()?,
            unsent: Vec::new(),
            shutdown: false,
        }),
        control: sock.try_clone()?,
    });
    let tx = Sender {
        shared: shared.clone(),
        peer,
    };
    Ok((
        tx,
        Receiver {
            shared,
            sock,
            buf: Vec::new(),
            small_reads: 0,
            done: false,
            read_timeout: None,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::sync::mpsc;

    /// A write that must not block, to a peer that reads nothing: it
    /// writes what the socket takes, returns, and leaves the socket
    /// blocking for the receiver.
    #[test]
    fn a_write_that_must_not_block_takes_what_fits_and_returns() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut ours = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (peer, _) = listener.accept().unwrap();
        // Small buffers on both sides, whatever the host's autotuning.
        socket2::SockRef::from(&ours)
            .set_send_buffer_size(64 << 10)
            .unwrap();
        socket2::SockRef::from(&peer)
            .set_recv_buffer_size(64 << 10)
            .unwrap();
        let (done, result) = mpsc::channel();
        let writer = std::thread::spawn(move || {
            let big = vec![7u8; 4 << 20];
            let first = write_nonblocking(&mut ours, &big);
            // Full now: nothing more fits.
            let second = write_nonblocking(&mut ours, &big);
            // Still blocking: a read waits for its timeout.
            ours.set_read_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            let start = Instant::now();
            let read = std::io::Read::read(&mut ours, &mut [0u8; 8]);
            done.send((
                first.unwrap(),
                second.unwrap(),
                read.is_err(),
                start.elapsed(),
            ))
            .unwrap();
        });
        let (first, second, read_failed, waited) = result
            .recv_timeout(Duration::from_secs(10))
            .expect("a write that must not block blocked");
        writer.join().unwrap();
        assert!(first > 0 && first < 4 << 20, "{first}");
        // Room freed after the first write met a full socket (the peer's
        // receive window growing) may take a little more.
        assert!(second < 64 << 10, "{second}");
        assert!(
            read_failed && waited >= Duration::from_millis(40),
            "{waited:?}"
        );
        drop(peer);
    }
}
