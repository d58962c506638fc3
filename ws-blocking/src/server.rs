//! The blocking server: a thread accepts, a thread per connection.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver as ChanReceiver, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ws_proto::api::tls::{self, rustls};
use ws_proto::api::{
    bind_error, in_lent_callback, lend_received, owned_received, CallbackId, ClientConnection,
    ConnectionTable, Error, Received, Refusal, Registry, ServerEvent, ServerEventKind,
    ServerOptions, View,
};
use ws_proto::{Accept, CloseCode, Config, MessageRef, Reply};

use crate::accept::{answer, read_upgrade};
use crate::socket::Sender;

/// Room for undelivered events before connection threads wait for the
/// application (so a slow consumer bounds memory instead of growing a
/// queue).
const EVENT_QUEUE: usize = 1024;

struct Shared {
    options: ServerOptions,
    /// `options.config`, shared by every connection (a pointer each rather
    /// than a copy of 144 bytes, with permessage-deflate).
    config: Arc<Config>,
    tls: Option<Arc<rustls::ServerConfig>>,
    /// The lock order is a connection's lock, then this one (a lent
    /// callback may list the connections): nothing may take a
    /// connection's lock while holding this one.
    conns: Mutex<ConnectionTable<Sender>>,
    callbacks: Registry<ServerEventKind, ServerEvent>,
    events: Mutex<Option<SyncSender<ServerEvent>>>,
    /// `events` is set: a server driven by callbacks alone skips its lock
    /// for every event.
    has_events: AtomicBool,
    stopping: AtomicBool,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Shared {
    fn conns(&self) -> MutexGuard<'_, ConnectionTable<Sender>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An event of no connection: the callbacks through the registry's
    /// lock, then the events iterator.
    fn emit(&self, ev: ServerEvent) {
        self.callbacks.emit(ev.kind(), &ev);
        self.forward(ev);
    }

    /// An event of one connection, from its thread: the callbacks through
    /// the thread's own `view` of them, without a lock (see [`Registry`]),
    /// then the events iterator.
    fn emit_in(&self, view: &mut View<ServerEventKind, ServerEvent>, ev: ServerEvent) {
        view.emit(&self.callbacks, ev.kind(), &ev);
        self.forward(ev);
    }

    fn forward(&self, ev: ServerEvent) {
        if !self.has_events.load(Ordering::Acquire) {
            return;
        }
        let tx = self
            .events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(tx) = tx {
            // Blocks while the queue is full; fails only when the
            // application dropped the receiver.
            let _ = tx.send(ev);
        }
    }

    /// Whether every connection thread started so far has ended.
    fn connections_done(&self) -> bool {
        self.threads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .all(|t| t.is_finished())
    }

    /// Waits for every connection thread started so far.
    fn join_connections(&self) {
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for t in threads {
            let _ = t.join();
        }
    }
}

/// A running WebSocket server (`WebSocketServer`).
pub struct Server {
    shared: Arc<Shared>,
    handle: ServerHandle,
    addr: SocketAddr,
    accept: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("addr", &self.addr).finish()
    }
}

impl Server {
    /// Starts listening (`start`). Errors: [`Error::ListenAddress`] (2302004)
    /// when the address is not local, [`Error::ListenPort`] (2302005) when
    /// the port is taken or forbidden.
    pub fn start(options: ServerOptions) -> Result<Server, Error> {
        options.validate()?;
        // Certificate problems are reported before listening.
        let tls_config = options
            .cert
            .as_ref()
            .map(|c| tls::server_config(c, options.client_ca.as_deref()))
            .transpose()?;
        let listener = TcpListener::bind((options.ip, options.port)).map_err(bind_error)?;
        let addr = listener.local_addr()?;
        let conns = Mutex::new(ConnectionTable::new(&options));
        let shared = Arc::new(Shared {
            config: Arc::new(options.config.clone()),
            options,
            tls: tls_config,
            conns,
            callbacks: Registry::new(),
            events: Mutex::new(None),
            has_events: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            threads: Mutex::new(Vec::new()),
        });
        let s = shared.clone();
        let accept = std::thread::Builder::new()
            .name("ws-accept".into())
            .spawn(move || accept_loop(listener, s))?;
        Ok(Server {
            handle: ServerHandle {
                shared: shared.clone(),
            },
            shared,
            addr,
            accept: Some(accept),
        })
    }

    /// The address the server listens on (with the port it got for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// A blocking iterator over events from now on. The queue holds at most
    /// 1024 events; connection threads wait while it is full. Call once;
    /// later calls replace the previous iterator.
    pub fn events(&self) -> Events {
        let (tx, rx) = mpsc::sync_channel(EVENT_QUEUE);
        *self.shared.events.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
        self.shared.has_events.store(true, Ordering::Release);
        Events { rx }
    }

    /// Registers a callback (`on`); it runs on the connection's thread.
    pub fn on(
        &self,
        kind: ServerEventKind,
        f: impl Fn(&ServerEvent) + Send + Sync + 'static,
    ) -> CallbackId {
        self.shared.callbacks.on(kind, f)
    }

    /// Registers a callback that is lent each text and binary message
    /// instead of given an owned copy, with a [`Reply`] that answers on the
    /// same connection (a `messageReceive` callback: `off` with
    /// [`ServerEventKind::MessageReceive`] removes it).
    ///
    /// This is the fast path for a server that answers what it receives.
    /// The message is lent from the bytes it came in (no `String` or
    /// buffer allocated for it unless an owned callback or the events
    /// iterator also wants it), and the answer is queued under the lock the
    /// receive already holds, with no lookup of the connection. The
    /// answers are written with the rest of what the read asked for.
    ///
    /// A message that arrived while no lent callback was registered (the
    /// connection was already waiting for it) is lent from its owned copy
    /// instead, and its answers are written right after.
    ///
    /// The callback runs while its connection is locked, so it may not
    /// wait for another connection: the [`ServerHandle`]'s methods that
    /// send to or look at a connection return
    /// [`Error::InLentCallback`] there (and a `Sender` of another
    /// connection, from a client of yours, could deadlock: do not use
    /// one). Answer through the `Reply`, or send to other connections from
    /// an owned callback ([`on`](Self::on)), which runs after the lent
    /// ones. Lent callbacks run in registration order, before the owned
    /// ones.
    ///
    /// ```no_run
    /// # fn run(server: ws_blocking::Server) {
    /// use ws_blocking::MessageRef;
    /// server.on_message_lent(|_conn, m, reply| {
    ///     let _ = match m {
    ///         MessageRef::Text(t) => reply.send_text(t),
    ///         MessageRef::Binary(b) => reply.send_binary(b),
    ///         _ => Ok(()),
    ///     };
    /// });
    /// # }
    /// ```
    pub fn on_message_lent(
        &self,
        f: impl Fn(&ClientConnection, MessageRef<'_>, &mut Reply<'_>) + Send + Sync + 'static,
    ) -> CallbackId {
        self.shared
            .callbacks
            .on_lent(ServerEventKind::MessageReceive, f)
    }

    /// Removes one callback, or all of a kind (`off`). Returns how many.
    ///
    /// A removed callback is not called for events that begin after this
    /// returns. The connections call the callbacks without a lock, each
    /// through its own copy of the list, which it renews at its next event
    /// after a change (see [`Registry`](ws_proto::api::Registry)): so the
    /// closure itself is dropped once every open connection has had an
    /// event since, or has ended.
    pub fn off(&self, kind: ServerEventKind, id: Option<CallbackId>) -> usize {
        self.shared.callbacks.off(kind, id)
    }

    /// A cloneable handle for sending, listing and closing from other
    /// threads and from callbacks.
    pub fn handle(&self) -> ServerHandle {
        ServerHandle {
            shared: self.shared.clone(),
        }
    }

    /// Stops (`stop`): closes every connection with 1001 (going away), waits
    /// for their closing handshakes (at most the close timeout), then stops
    /// listening. Idempotent.
    pub fn stop(&mut self) -> Result<(), Error> {
        if self.shared.stopping.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        // Connections that finish their handshake from now on are closed
        // at once (see `serve`); the live ones are closed here.
        let live = self.shared.conns().handles();
        for s in &live {
            s.close_nowait(CloseCode::GOING_AWAY, "server stopping");
        }
        // Wait for the closing handshakes, at most the close timeout (plus
        // the handshake timeout for connections still shaking hands); then
        // abort what is left, which unblocks a thread stuck writing to a
        // peer that does not read.
        let grace = self
            .shared
            .options
            .config
            .close_timeout
            .unwrap_or(Duration::from_secs(10))
            + self.shared.options.handshake_timeout;
        let deadline = std::time::Instant::now() + grace;
        while std::time::Instant::now() < deadline && !self.shared.connections_done() {
            std::thread::sleep(Duration::from_millis(10));
        }
        // Not under the table's lock (see `Shared::conns`).
        let live = self.shared.conns().handles();
        for s in live {
            s.abort();
        }
        self.shared.join_connections();
        // Then stop listening: wake the accept loop, which sees `stopping`.
        let wake = match self.addr.ip() {
            ip if ip.is_unspecified() => SocketAddr::new(
                if ip.is_ipv4() {
                    IpAddr::V4(Ipv4Addr::LOCALHOST)
                } else {
                    IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)
                },
                self.addr.port(),
            ),
            _ => self.addr,
        };
        let _ = TcpStream::connect_timeout(&wake, Duration::from_secs(1));
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
        // Handshakes that raced with the stop.
        self.shared.join_connections();
        // End the event iterator: nothing more can happen.
        *self.shared.events.lock().unwrap_or_else(|e| e.into_inner()) = None;
        Ok(())
    }
}

/// Sends to, lists and closes the connections of a [`Server`]; cheap to
/// clone, usable from any thread and from callbacks. A callback runs on the
/// connection's thread, so a reply sent from a `MessageReceive` callback
/// leaves before that connection reads its next frame. Inside a lent
/// callback ([`Server::on_message_lent`]) its methods that send to or look
/// at a connection return [`Error::InLentCallback`]: answer through the
/// callback's `Reply` there.
#[derive(Clone)]
pub struct ServerHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandle").finish()
    }
}

impl ServerHandle {
    fn sender(&self, conn: &ClientConnection) -> Result<Sender, Error> {
        if in_lent_callback() {
            // Inside a lent callback, which holds its connection's lock:
            // waiting for another's could deadlock with that one's own
            // lent callback, and its own would wait for itself.
            return Err(Error::InLentCallback);
        }
        self.shared.conns().get(conn)
    }

    /// Sends a text message to one client (`send`).
    pub fn send_text(&self, conn: &ClientConnection, text: &str) -> Result<(), Error> {
        self.sender(conn)?.send_text(text)
    }

    /// Sends a binary message to one client (`send`).
    pub fn send_binary(&self, conn: &ClientConnection, data: &[u8]) -> Result<(), Error> {
        self.sender(conn)?.send_binary(data)
    }

    /// Sends a binary message to one client, taken over by the connection
    /// ([`Sender::send_bytes`]: from [`OWNED_MIN`](ws_proto::OWNED_MIN)
    /// bytes on, over plain TCP and unless permessage-deflate compresses
    /// it, written from its own memory). A `Bytes` sent to many clients
    /// that way is shared, not copied for each.
    pub fn send_bytes(&self, conn: &ClientConnection, data: Bytes) -> Result<(), Error> {
        self.sender(conn)?.send_bytes(data)
    }

    /// The permessage-deflate parameters negotiated with one client, if any
    /// (turn it on with `options.config.deflate`).
    #[cfg(feature = "deflate")]
    pub fn deflate(
        &self,
        conn: &ClientConnection,
    ) -> Result<Option<ws_proto::DeflateParams>, Error> {
        Ok(self.sender(conn)?.deflate())
    }

    /// Bytes queued for one client and not yet written (its
    /// `bufferedAmount`).
    pub fn buffered_amount(&self, conn: &ClientConnection) -> Result<usize, Error> {
        Ok(self.sender(conn)?.buffered_amount())
    }

    /// The connected clients (`listAllConnections`), in accept order.
    pub fn connections(&self) -> Vec<ClientConnection> {
        self.shared.conns().list()
    }

    /// Closes one connection with a code and reason (`close`); its `Close`
    /// event follows when the closing handshake ends.
    pub fn close(
        &self,
        conn: &ClientConnection,
        code: CloseCode,
        reason: &str,
    ) -> Result<(), Error> {
        self.sender(conn)?.close(code, reason)
    }
}

impl std::ops::Deref for Server {
    type Target = ServerHandle;
    fn deref(&self) -> &ServerHandle {
        &self.handle
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// Blocking iterator over [`ServerEvent`]s; ends when the server stopped
/// and every connection thread is gone.
#[derive(Debug)]
pub struct Events {
    rx: ChanReceiver<ServerEvent>,
}

impl Events {
    /// Waits at most `timeout` for the next event.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<ServerEvent> {
        self.rx.recv_timeout(timeout).ok()
    }
}

impl Iterator for Events {
    type Item = ServerEvent;
    fn next(&mut self) -> Option<ServerEvent> {
        self.rx.recv().ok()
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            break;
        }
        let sock = match stream {
            Ok(s) => s,
            Err(e) => {
                // EMFILE and friends: report and back off a little.
                shared.emit(ServerEvent::Error(None, Arc::new(Error::Io(e))));
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let Ok(peer) = sock.peer_addr() else { continue };
        // Admission: the limits count handshakes in progress too.
        let admitted = shared.conns().admit(peer);
        let info = match admitted {
            Ok(info) => info,
            Err(Refusal { status, reason }) => {
                // Off the accept thread: the refusal lingers to read the
                // request, so that closing does not reset the answer away.
                let _ = std::thread::Builder::new()
                    .name("ws-refuse".into())
                    .spawn(move || refuse(sock, status, reason));
                shared.emit(ServerEvent::Error(
                    None,
                    Arc::new(Error::Refused { peer, status }),
                ));
                continue;
            }
        };
        let s = shared.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("ws-conn-{peer}"))
            .spawn(move || {
                // A callback that panics ends this connection alone; its
                // place is given back (and its sender let go of, which
                // closes the socket) either way.
                let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    serve(sock, info, &s)
                }));
                s.conns().release(&info);
                drop(served);
            });
        match spawned {
            Ok(h) => {
                let mut threads = shared.threads.lock().unwrap_or_else(|e| e.into_inner());
                threads.retain(|t| !t.is_finished());
                threads.push(h);
            }
            Err(e) => {
                shared.conns().release(&info);
                shared.emit(ServerEvent::Error(None, Arc::new(Error::Io(e))));
            }
        }
    }
}

/// Answers an over-limit connection with an HTTP error, then reads (and
/// drops) what the client sends for at most a second before closing.
fn refuse(mut sock: TcpStream, status: u16, why: &str) {
    let mut out = Vec::new();
    let body = format!("{why}\n");
    if ws_proto::handshake::http::write_response(
        status,
        &[("Retry-After", "1")],
        body.as_bytes(),
        &mut out,
    )
    .is_err()
    {
        return;
    }
    let _ = sock.set_write_timeout(Some(Duration::from_secs(1)));
    let _ = sock.write_all(&out);
    let _ = sock.shutdown(std::net::Shutdown::Write);
    let _ = sock.set_read_timeout(Some(Duration::from_millis(200)));
    let end = Instant::now() + Duration::from_secs(1);
    let mut buf = [0u8; 1024];
    while Instant::now() < end {
        match std::io::Read::read(&mut sock, &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
}

/// One connection: handshake within the timeout, then the receive loop.
fn serve(mut sock: TcpStream, info: ClientConnection, shared: &Arc<Shared>) {
    let _ = sock.set_nodelay(true);
    let timer = match sock.try_clone() {
        Ok(t) => t,
        Err(e) => return shared.emit(ServerEvent::Error(None, Arc::new(e.into()))),
    };
    let _ = timer.set_write_timeout(Some(shared.options.handshake_timeout));
    let deadline = Some(Instant::now() + shared.options.handshake_timeout);
    let mut tls = match &shared.tls {
        None => None,
        Some(cfg) => match rustls::ServerConnection::new(cfg.clone()) {
            Ok(c) => Some(c),
            Err(e) => {
                return shared.emit(ServerEvent::Error(
                    None,
                    Arc::new(Error::Tls(e.to_string())),
                ))
            }
        },
    };
    let upgrade = match read_upgrade(&mut sock, &mut tls, &timer, deadline, shared.config.clone()) {
        Ok(Some(u)) => u,
        Ok(None) => return,
        Err(e) => return shared.emit(ServerEvent::Error(None, Arc::new(e))),
    };
    let mut accept = Accept::new();
    if let Some(p) = &shared.options.protocol {
        if upgrade.protocols().iter().any(|o| o == p) {
            accept = accept.protocol(p.clone());
        }
    }
    let (tx, mut rx) = match answer(sock, tls, upgrade, &accept) {
        Ok(halves) => halves,
        Err(e) => return shared.emit(ServerEvent::Error(None, Arc::new(e))),
    };
    shared.conns().insert(info, tx.clone());
    if shared.stopping.load(Ordering::SeqCst) {
        tx.close_nowait(CloseCode::GOING_AWAY, "server stopping");
    }
    let mut view = shared.callbacks.view();
    shared.emit_in(&mut view, ServerEvent::Connect(info));
    loop {
        // Lent while lent callbacks are registered, else owned (a large
        // message is then copied once, into its own buffer).
        let (reg, kind) = (&shared.callbacks, ServerEventKind::MessageReceive);
        let got = if view.lends(reg, kind) {
            let events = &shared.has_events;
            rx.recv_with_reply(|m, reply| lend_received(&mut view, reg, &info, m, reply, events))
        } else {
            rx.recv().map(|m| {
                owned_received(&mut view, reg, &info, m, |f| {
                    tx.with_reply(|reply| f(reply))
                })
            })
        };
        match got {
            Ok(Received::Closed(c)) => {
                shared.conns().remove(&info);
                if let Some(err) = c.error {
                    let ev = ServerEvent::Error(Some(info), Arc::new(Error::Connection(err)));
                    shared.emit_in(&mut view, ev);
                }
                shared.emit_in(&mut view, ServerEvent::Close(info, c.code, c.reason));
            }
            Ok(Received::Message(m)) => shared.emit_in(&mut view, ServerEvent::Message(info, m)),
            Ok(Received::Nothing) => {}
            Err(Error::Closed) => break,
            Err(e) => {
                shared.conns().remove(&info);
                shared.emit_in(&mut view, ServerEvent::Error(Some(info), Arc::new(e)));
                tx.abort();
                break;
            }
        }
    }
    shared.conns().remove(&info);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every connection holds the server's one configuration: a pointer
    /// each, not a copy (144 bytes) of its own.
    #[test]
    fn connections_share_the_servers_configuration() {
        let mut o = ServerOptions::default();
        o.ip = [127, 0, 0, 1].into();
        o.port = 0;
        let server = Server::start(o).unwrap();
        let config = server.shared.config.clone();
        assert_eq!(Arc::strong_count(&config), 2);
        let mut direct = ws_proto::api::ClientOptions::default();
        direct.proxy = ws_proto::api::Proxy::NoProxy;
        direct.connect_timeout = Some(Duration::from_secs(5));
        direct.handshake_timeout = Some(Duration::from_secs(5));
        let url = format!("ws://{}/", server.local_addr());
        let clients: Vec<_> = (0..3)
            .map(|_| crate::WebSocket::connect_with(&url, &direct).unwrap())
            .collect();
        // Each connection is in the table once its handshake is done.
        let deadline = Instant::now() + Duration::from_secs(5);
        while server.connections().len() < clients.len() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(server.connections().len(), clients.len());
        assert_eq!(Arc::strong_count(&config), 2 + clients.len());
        drop(clients);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Arc::strong_count(&config) != 2 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(Arc::strong_count(&config), 2);
    }
}
