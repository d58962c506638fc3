//! One WebSocket connection over a blocking socket: the run loop of the
//! sans-IO core, split into a cloneable [`Sender`] and a [`Receiver`].
//!
//! The connection state lives behind one mutex. Whoever queues frames also
//! drains and writes them before releasing the lock, so frames from many
//! threads never interleave or reorder. The receiver reads the socket
//! without holding the lock, then takes it to feed the bytes in.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use ws_proto::api::tls::rustls;
use ws_proto::api::Error;
use ws_proto::{Assembler, CloseCode, Connection, Event, Message, MessageKind, State, Transmit};

/// The longest a receiver sleeps in `read` before it looks at the timers
/// again (a Close queued by another thread starts a close timeout that the
/// blocked reader must notice).
const WAKE: Duration = Duration::from_secs(1);

/// Bytes read from the socket per call.
const READ_SIZE: usize = 16 << 10;

/// The writing half, the TLS session if any, and the protocol state.
pub(crate) struct Inner {
    pub(crate) conn: Connection,
    writer: TcpStream,
    tls: Option<Box<rustls::Connection>>,
    out: Vec<u8>,
    plain: Vec<u8>,
    broken: Option<io::ErrorKind>,
}

impl Inner {
    /// Writes everything the connection queued.
    pub(crate) fn flush(&mut self) -> Result<(), Error> {
        if let Some(kind) = self.broken {
            return Err(Error::Io(kind.into()));
        }
        loop {
            match self.conn.poll_transmit(&mut self.out) {
                Transmit::Data(_) => {
                    let r = match &mut self.tls {
                        None => self.writer.write_all(&self.out),
                        Some(tls) => write_through_tls(tls, &mut self.writer, &self.out),
                    };
                    self.out.clear();
                    if let Err(e) = r {
                        self.broken = Some(e.kind());
                        return Err(e.into());
                    }
                }
                Transmit::Shutdown => {
                    if let Some(tls) = &mut self.tls {
                        tls.send_close_notify();
                        let _ = write_tls(tls, &mut self.writer);
                    }
                    let _ = self.writer.shutdown(Shutdown::Write);
                }
                Transmit::Nothing => return Ok(()),
            }
        }
    }

    /// Feeds bytes read from the socket: straight in, or through TLS.
    fn feed(&mut self, now: Instant, data: &mut BytesMut) {
        let Some(tls) = &mut self.tls else {
            self.conn.handle_bytes(now, data.split());
            return;
        };
        let mut raw: &[u8] = data;
        while !raw.is_empty() {
            match tls.read_tls(&mut raw) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            if tls.process_new_packets().is_err() {
                // A TLS alert or a corrupt record: send our alert, end.
                let _ = write_tls(tls, &mut self.writer);
                self.conn.handle_eof(now);
                data.clear();
                return;
            }
        }
        data.clear();
        let _ = write_tls(tls, &mut self.writer);
        self.drain_plaintext(now);
    }

    /// Hands plaintext the TLS session holds to the connection.
    fn drain_plaintext(&mut self, now: Instant) {
        let Some(tls) = &mut self.tls else { return };
        if self.plain.len() < READ_SIZE {
            self.plain.resize(READ_SIZE, 0);
        }
        loop {
            match tls.reader().read(&mut self.plain) {
                Ok(0) => {
                    // close_notify: the peer will send nothing more.
                    self.conn.handle_eof(now);
                    break;
                }
                Ok(n) => self.conn.handle_data(now, &self.plain[..n]),
                Err(_) => break,
            }
        }
    }
}

/// Encrypts and writes `data`, a buffer-full of records at a time (the
/// session takes only so much plaintext before its records are written).
fn write_through_tls(
    tls: &mut rustls::Connection,
    sock: &mut TcpStream,
    mut data: &[u8],
) -> io::Result<()> {
    while !data.is_empty() {
        let n = tls.writer().write(data)?;
        data = &data[n..];
        write_tls(tls, sock)?;
    }
    Ok(())
}

/// Writes what the TLS session has queued.
fn write_tls(tls: &mut rustls::Connection, sock: &mut TcpStream) -> io::Result<()> {
    while tls.wants_write() {
        tls.write_tls(sock)?;
    }
    Ok(())
}

type Shared = Arc<Mutex<Inner>>;

fn lock(shared: &Shared) -> MutexGuard<'_, Inner> {
    // A panic in a user callback must not poison the connection for others.
    shared.lock().unwrap_or_else(|e| e.into_inner())
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
        let mut g = lock(&self.shared);
        let r = f(&mut g.conn)?;
        g.flush()?;
        Ok(r)
    }

    /// Sends a text message.
    pub fn send_text(&self, text: &str) -> Result<(), Error> {
        self.with(|c| c.send_text(text))
    }

    /// Sends a binary message.
    pub fn send_binary(&self, data: &[u8]) -> Result<(), Error> {
        self.with(|c| c.send_binary(data))
    }

    /// Sends one piece of a message streamed in pieces; `fin` ends it.
    pub fn send_chunk(&self, kind: MessageKind, data: &[u8], fin: bool) -> Result<(), Error> {
        self.with(|c| c.send_chunk(kind, data, fin))
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
        lock(&self.shared).conn.buffered_amount()
    }

    /// Open, Closing or Closed.
    pub fn state(&self) -> State {
        lock(&self.shared).conn.state()
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// Closes the socket at once, without a closing handshake.
    pub(crate) fn abort(&self) {
        let _ = lock(&self.shared).writer.shutdown(Shutdown::Both);
    }
}

/// Receives from a connection. There is one per connection.
pub struct Receiver {
    shared: Shared,
    sock: TcpStream,
    buf: BytesMut,
    asm: Assembler,
    done: bool,
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
        loop {
            let deadline = {
                let mut g = lock(&self.shared);
                g.drain_plaintext(Instant::now());
                let ev = g.conn.poll_event();
                // Replies (Pong, Close) leave before the event is handed out.
                let flushed = g.flush();
                if let Some(ev) = ev {
                    return Ok(Some(ev));
                }
                if g.conn.is_finished() || self.done {
                    self.done = true;
                    return Ok(None);
                }
                if let Err(e) = flushed {
                    // The peer is gone; let the core report 1006.
                    g.conn.handle_eof(Instant::now());
                    if g.conn.poll_event().is_none() {
                        return Err(e);
                    }
                    continue;
                }
                g.conn.poll_timeout()
            };
            let now = Instant::now();
            let wait = deadline.map_or(WAKE, |d| d.saturating_duration_since(now).min(WAKE));
            if deadline.is_some_and(|d| d <= now) {
                lock(&self.shared).conn.handle_timeout(now);
                continue;
            }
            self.sock
                .set_read_timeout(Some(wait.max(Duration::from_millis(1))))?;
            if self.buf.capacity() < READ_SIZE {
                self.buf.reserve(READ_SIZE);
            }
            self.buf.resize(READ_SIZE, 0);
            let r = self.sock.read(&mut self.buf);
            let now = Instant::now();
            let mut g = lock(&self.shared);
            match r {
                Ok(0) => {
                    self.buf.clear();
                    g.conn.handle_eof(now);
                }
                Ok(n) => {
                    self.buf.truncate(n);
                    g.feed(now, &mut self.buf);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    self.buf.clear();
                    g.conn.handle_timeout(now);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => self.buf.clear(),
                Err(_) => {
                    self.buf.clear();
                    g.conn.handle_eof(now);
                }
            }
        }
    }

    /// The next whole message (or ping, pong, close). After
    /// [`Message::Closed`], returns [`Error::Closed`].
    pub fn recv(&mut self) -> Result<Message, Error> {
        loop {
            match self.recv_event()? {
                Some(ev) => {
                    if let Some(m) = self.asm.push(ev) {
                        return Ok(m);
                    }
                }
                None => return Err(Error::Closed),
            }
        }
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
    let writer = sock.try_clone()?;
    let shared = Arc::new(Mutex::new(Inner {
        conn,
        writer,
        tls: tls.map(Box::new),
        out: Vec::new(),
        plain: Vec::new(),
        broken: None,
    }));
    let tx = Sender {
        shared: shared.clone(),
        peer,
    };
    Ok((
        tx,
        Receiver {
            shared,
            sock,
            buf: BytesMut::new(),
            asm: Assembler::new(),
            done: false,
        },
    ))
}
