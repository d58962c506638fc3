//! The async server: an accept task, and the connections in a few
//! long-lived tasks (one per core, see `group.rs`), on smol's global
//! executor (multi-threaded) or on an executor the application runs.
//! On Linux and Android a connection's socket, plain or under TLS, waits
//! in its group's epoll instance (see `edge.rs`); elsewhere in async-io.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use async_io::{Async, Timer};
use bytes::Bytes;
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use futures_rustls::TlsAcceptor;
use smol::Task;
use ws_proto::api::tls;
use ws_proto::api::{
    bind_error, in_lent_callback, lend_received, owned_received, CallbackId, ClientConnection,
    ConnectionTable, Error, Received, Refusal, Registry, ServerEvent, ServerEventKind,
    ServerOptions, View,
};
use ws_proto::{Accept, CloseCode, CloseInfo, Config, MessageRef, Reply};

use crate::accept::{answer, read_upgrade};
use crate::client::{timeout, MaybeTls};
use crate::group::Group;
use crate::socket::Sender;

/// Room for undelivered events before connections wait.
const EVENT_QUEUE: usize = 1024;

type Conn = Sender<ServerStream>;

/// A server connection's stream: TCP registered in its group's epoll
/// instance, plain or under TLS (Linux and Android, see `edge.rs`), or as
/// async-io waits for it (elsewhere).
enum ServerStream {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    Grouped(crate::edge::GroupTcp),
    #[cfg(any(target_os = "linux", target_os = "android"))]
    GroupedTls(Box<futures_rustls::server::TlsStream<crate::edge::GroupTcp>>),
    Other(MaybeTls),
}

impl ServerStream {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            #[cfg(any(target_os = "linux", target_os = "android"))]
            ServerStream::Grouped(s) => s.poll_read_ready(cx),
            // Decrypted bytes or the peer's close_notify in the session
            // need no socket: ready. Otherwise the session reads only
            // what the socket brings.
            #[cfg(any(target_os = "linux", target_os = "android"))]
            ServerStream::GroupedTls(s) => {
                let (sock, session) = s.get_ref();
                if session.wants_read() {
                    sock.poll_read_ready(cx)
                } else {
                    Poll::Ready(Ok(()))
                }
            }
            ServerStream::Other(s) => s.poll_read_ready(cx),
        }
    }
}

impl AsyncRead for ServerStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            #[cfg(any(target_os = "linux", target_os = "android"))]
            ServerStream::Grouped(s) => s.poll_read(cx, buf),
            #[cfg(any(target_os = "linux", target_os = "android"))]
            ServerStream::GroupedTls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            ServerStream::Other(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ServerStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            #[cfg(any(target_os = "linux", target_os = "android"))]
            ServerStream::Grouped(s) => s.poll_write(cx, buf),
            #[cfg(any(target_os = "linux", target_os = "android"))]
            ServerStream::GroupedTls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            ServerStream::Other(s) => Pin::new(s).poll_write(cx, buf),
        }
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            #[cfg(any(target_os = "linux", target_os = "android"))]
            ServerStream::Grouped(s) => s.poll_write_vectored(cx, bufs),
            #[cfg(any(target_os = "linux", target_os = "android"))]
            ServerStream::GroupedTls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
            ServerStream::Other(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            #[cfg(any(target_os = "linux", target_os = "android"))]
            ServerStream::Grouped(_) => Poll::Ready(Ok(())),
            #[cfg(any(target_os = "linux", target_os = "android"))]
            ServerStream::GroupedTls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            ServerStream::Other(s) => Pin::new(s).poll_flush(cx),
        }
    }
    /// Shuts down the TCP write side (a TLS session sends close_notify
    /// first).
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            #[cfg(any(target_os = "linux", target_os = "android"))]
            ServerStream::Grouped(s) => Pin::new(s).poll_close(cx),
            #[cfg(any(target_os = "linux", target_os = "android"))]
            ServerStream::GroupedTls(s) => Pin::new(s.as_mut()).poll_close(cx),
            ServerStream::Other(s) => Pin::new(s).poll_close(cx),
        }
    }
}

struct Shared {
    options: ServerOptions,
    /// `options.config`, shared by every connection (a pointer each rather
    /// than a copy of 144 bytes, with permessage-deflate).
    config: Arc<Config>,
    tls: Option<TlsAcceptor>,
    /// The lock order is a connection's lock, then this one (a lent
    /// callback may list the connections): nothing may take a
    /// connection's lock while holding this one.
    conns: Mutex<ConnectionTable<Conn>>,
    callbacks: Registry<ServerEventKind, ServerEvent>,
    events: Mutex<Option<async_channel::Sender<ServerEvent>>>,
    /// `events` is set: a server driven by callbacks alone skips its lock
    /// for every event.
    has_events: AtomicBool,
    stopping: AtomicBool,
    /// The tasks that run the connections, each given the next connection
    /// in turn.
    groups: Vec<Group>,
    next_group: AtomicUsize,
    /// Closed when every group's task has ended.
    groups_done: async_channel::Receiver<()>,
    /// Where the tasks run: `None` is smol's global executor.
    executor: Option<Arc<smol::Executor<'static>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn spawn<T: Send + 'static>(
        &self,
        fut: impl std::future::Future<Output = T> + Send + 'static,
    ) -> Task<T> {
        match &self.executor {
            Some(ex) => ex.spawn(fut),
            None => smol::spawn(fut),
        }
    }

    /// An event of no connection: the callbacks through the registry's
    /// lock, then the events stream (see [`forward`](Self::forward)).
    #[must_use]
    fn emit(&self, ev: ServerEvent) -> Option<FullQueue> {
        self.callbacks.emit(ev.kind(), &ev);
        self.forward(ev)
    }

    /// An event of one connection, from its task: the callbacks through
    /// the task's own `view` of them, without a lock (see [`Registry`]),
    /// then the events stream (see [`forward`](Self::forward)).
    #[must_use]
    fn emit_in(
        &self,
        view: &mut View<ServerEventKind, ServerEvent>,
        ev: ServerEvent,
    ) -> Option<FullQueue> {
        view.emit(&self.callbacks, ev.kind(), &ev);
        self.forward(ev)
    }

    /// Queues an event for the events stream, if there is one: at once
    /// while the queue has room, else in the wait it returns, which the
    /// connection awaits. That wait is boxed: it is rare, and its room
    /// (the event and the channel's send) would otherwise be in every
    /// connection's task.
    #[must_use]
    fn forward(&self, ev: ServerEvent) -> Option<FullQueue> {
        if !self.has_events.load(Ordering::Acquire) {
            return None;
        }
        let tx = lock(&self.events).clone()?;
        match tx.try_send(ev) {
            Err(async_channel::TrySendError::Full(ev)) => Some(Box::pin(async move {
                let _ = tx.send(ev).await;
            })),
            // Queued, or no one reads the events any more.
            _ => None,
        }
    }
}

/// An event waiting for room in the events stream's queue.
type FullQueue = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Waits for room for an event, if it found none.
async fn room(wait: Option<FullQueue>) {
    if let Some(w) = wait {
        w.await;
    }
}

/// Sends to, lists and closes the connections of a [`Server`]; cheap to
/// clone.
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
    fn sender(&self, conn: &ClientConnection) -> Result<Conn, Error> {
        if in_lent_callback() {
            // Inside a lent callback, which holds its connection's lock:
            // waiting for another's could deadlock with that one's own
            // lent callback, and its own would wait for itself.
            return Err(Error::InLentCallback);
        }
        lock(&self.shared.conns).get(conn)
    }

    /// Sends a text message to one client (`send`) and waits for the write.
    pub async fn send_text(&self, conn: &ClientConnection, text: &str) -> Result<(), Error> {
        self.sender(conn)?.send_text(text).await
    }

    /// Sends a binary message to one client (`send`).
    pub async fn send_binary(&self, conn: &ClientConnection, data: &[u8]) -> Result<(), Error> {
        self.sender(conn)?.send_binary(data).await
    }

    /// Sends a binary message to one client, taken over by the connection
    /// ([`Sender::send_bytes`](crate::Sender::send_bytes): from
    /// [`OWNED_MIN`](ws_proto::OWNED_MIN) bytes on, unless
    /// permessage-deflate compresses it, written from its own memory). A
    /// `Bytes` sent to many clients that way is shared, not copied for
    /// each.
    pub async fn send_bytes(&self, conn: &ClientConnection, data: Bytes) -> Result<(), Error> {
        self.sender(conn)?.send_bytes(data).await
    }

    /// Queues a text message for one client without waiting (for
    /// callbacks: a reply queued in a `MessageReceive` callback leaves
    /// before that connection reads its next frame). Inside a lent
    /// callback ([`Server::on_message_lent`]) this, like every method
    /// that sends to or looks at a connection, returns
    /// [`Error::InLentCallback`]: answer through its `Reply` there.
    pub fn queue_text(&self, conn: &ClientConnection, text: &str) -> Result<(), Error> {
        self.sender(conn)?.queue_text(text)
    }

    /// Queues a binary message without waiting.
    pub fn queue_binary(&self, conn: &ClientConnection, data: &[u8]) -> Result<(), Error> {
        self.sender(conn)?.queue_binary(data)
    }

    /// Queues a binary message taken over by the connection, without
    /// waiting (see [`send_bytes`](Self::send_bytes)).
    pub fn queue_bytes(&self, conn: &ClientConnection, data: Bytes) -> Result<(), Error> {
        self.sender(conn)?.queue_bytes(data)
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
        lock(&self.shared.conns).list()
    }

    /// Closes one connection with a code and reason (`close`).
    pub async fn close(
        &self,
        conn: &ClientConnection,
        code: CloseCode,
        reason: &str,
    ) -> Result<(), Error> {
        self.sender(conn)?.close(code, reason).await
    }
}

/// A running async WebSocket server (`WebSocketServer`).
pub struct Server {
    handle: ServerHandle,
    addr: SocketAddr,
    accept: Option<Task<()>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("addr", &self.addr).finish()
    }
}

impl std::ops::Deref for Server {
    type Target = ServerHandle;
    fn deref(&self) -> &ServerHandle {
        &self.handle
    }
}

impl Server {
    /// Starts listening (`start`). Errors: 2302004 when the address is not
    /// local, 2302005 when the port is taken or forbidden, 2302002 for a
    /// missing certificate file, 401 for zero limits.
    ///
    /// The accept task and the connections run on smol's global
    /// executor, whose threads are not the ones that wait for I/O: each
    /// wake-up crosses threads. See [`start_on`](Self::start_on) for a
    /// server on an executor of your own.
    ///
    /// The connections do not get a task each: they run in one task per
    /// core this process may use (`std::thread::available_parallelism`),
    /// each given the next connection in turn, and a connection's wake-up
    /// is a push onto its task's ready list rather than a trip through the
    /// executor's queues (about 10% fewer instructions per echo in the
    /// benchmarks). So callbacks, like the connections of a single-threaded
    /// executor, share their task with other connections: a callback that
    /// blocks holds those up; hand slow work to a task or thread of its own.
    /// A callback that panics drops its own connection (the socket closes,
    /// its place under the limits is freed), not the others.
    pub async fn start(options: ServerOptions) -> Result<Server, Error> {
        Self::start_with(options, None).await
    }

    /// Starts listening, with the accept task and the connections' tasks
    /// on `executor` instead of smol's global one. Run the executor on the
    /// thread (or threads) of your choice with
    /// `smol::block_on(executor.run(..))`: a thread that runs the executor
    /// inside `block_on` also drives the I/O reactor, so a connection's
    /// read, callback and reply happen on one thread, with no cross-thread
    /// wake-up. One such thread is the single-core server of the
    /// benchmarks (`BENCHMARKS.md`); run `executor.run` on N threads for N
    /// cores.
    ///
    /// ```no_run
    /// use std::sync::Arc;
    /// use ws_smol::{Server, ServerOptions};
    /// let ex = Arc::new(smol::Executor::new());
    /// smol::block_on(ex.run(async {
    ///     let server = Server::start_on(ex.clone(), ServerOptions::default()).await?;
    ///     // ... register callbacks, then wait
    ///     # let _ = server;
    ///     Ok::<(), ws_smol::Error>(())
    /// }))?;
    /// # Ok::<(), ws_smol::Error>(())
    /// ```
    pub async fn start_on(
        executor: Arc<smol::Executor<'static>>,
        options: ServerOptions,
    ) -> Result<Server, Error> {
        Self::start_with(options, Some(executor)).await
    }

    async fn start_with(
        options: ServerOptions,
        executor: Option<Arc<smol::Executor<'static>>>,
    ) -> Result<Server, Error> {
        options.validate()?;
        let tls = options
            .cert
            .as_ref()
            .map(|c| tls::server_config(c, options.client_ca.as_deref()))
            .transpose()?
            .map(TlsAcceptor::from);
        let listener = TcpListener::bind((options.ip, options.port)).map_err(bind_error)?;
        let listener = Async::new(listener)?;
        let addr = listener.get_ref().local_addr()?;
        let conns = Mutex::new(ConnectionTable::new(&options));
        // A group per core that this process may run on: on an executor
        // run by that many threads, the connections spread over them.
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        let (done_tx, groups_done) = async_channel::bounded(1);
        let (groups, runs): (Vec<Group>, Vec<_>) = (0..n)
            .map(|_| {
                let (group, run) = Group::new();
                let done = done_tx.clone();
                (group, async move {
                    run.await;
                    drop(done);
                })
            })
            .unzip();
        drop(done_tx);
        let shared = Arc::new(Shared {
            config: Arc::new(options.config.clone()),
            options,
            tls,
            conns,
            callbacks: Registry::new(),
            events: Mutex::new(None),
            has_events: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            groups,
            next_group: AtomicUsize::new(0),
            groups_done,
            executor,
        });
        for run in runs {
            shared.spawn(run).detach();
        }
        let accept = shared.spawn(accept_loop(listener, shared.clone()));
        Ok(Server {
            handle: ServerHandle { shared },
            addr,
            accept: Some(accept),
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// A cloneable handle for other tasks and callbacks.
    pub fn handle(&self) -> ServerHandle {
        self.handle.clone()
    }

    /// A [`Stream`](futures_core::Stream) of events from now on, with a
    /// queue of 1024 (connections wait while it is full); it ends after
    /// [`stop`](Self::stop).
    pub fn events(&self) -> async_channel::Receiver<ServerEvent> {
        let (tx, rx) = async_channel::bounded(EVENT_QUEUE);
        *lock(&self.handle.shared.events) = Some(tx);
        self.handle.shared.has_events.store(true, Ordering::Release);
        rx
    }

    /// Registers a callback (`on`); it runs in the task that runs the
    /// connection (see [`start`](Self::start)).
    pub fn on(
        &self,
        kind: ServerEventKind,
        f: impl Fn(&ServerEvent) + Send + Sync + 'static,
    ) -> CallbackId {
        self.handle.shared.callbacks.on(kind, f)
    }

    /// Registers a callback that is lent each text and binary message
    /// instead of given an owned copy, with a [`Reply`] that answers on the
    /// same connection (a `messageReceive` callback: `off` with
    /// [`ServerEventKind::MessageReceive`] removes it).
    ///
    /// This is the fast path for a server that answers what it receives.
    /// The message is lent from the bytes it came in (no `String` or
    /// buffer allocated for it unless an owned callback or the events
    /// stream also wants it), and the answer is queued under the lock the
    /// receive already holds, with no lookup of the connection. The
    /// answers leave in one write with the rest of what the read asked
    /// for.
    ///
    /// A message that arrived while no lent callback was registered (the
    /// connection was already waiting for it) is lent from its owned copy
    /// instead, and its answers leave with the connection's next receive.
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
    /// # async fn run(server: ws_smol::Server) {
    /// use ws_smol::MessageRef;
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
        self.handle
            .shared
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
        self.handle.shared.callbacks.off(kind, id)
    }

    /// Stops (`stop`): closes every connection with 1001, waits for their
    /// closing handshakes (at most the close timeout), then stops listening.
    pub async fn stop(&mut self) -> Result<(), Error> {
        let shared = &self.handle.shared;
        if shared.stopping.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let live = lock(&shared.conns).handles();
        for s in &live {
            let _ = s.queue_close(CloseCode::GOING_AWAY, "server stopping");
        }
        for g in &shared.groups {
            g.close();
        }
        while shared.groups_done.recv().await.is_ok() {}
        if let Some(accept) = self.accept.take() {
            accept.cancel().await;
        }
        *lock(&shared.events) = None;
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Without an await: stop accepting and close every connection.
        self.handle.shared.stopping.store(true, Ordering::SeqCst);
        // Not under the table's lock: a lent callback takes that lock
        // while it holds its connection's.
        let live = lock(&self.handle.shared.conns).handles();
        for s in live {
            let _ = s.queue_close(CloseCode::GOING_AWAY, "server stopping");
        }
        // The groups' tasks end once their connections have.
        for g in &self.handle.shared.groups {
            g.close();
        }
        *lock(&self.handle.shared.events) = None;
    }
}

/// An accepted connection before it waits anywhere: on Linux and Android
/// a non-blocking socket in no reactor yet (it is registered only in its
/// group's epoll instance, see `edge.rs`), elsewhere registered with
/// async-io.
#[cfg(any(target_os = "linux", target_os = "android"))]
type Accepted = TcpStream;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
type Accepted = Async<TcpStream>;

/// Accepts a connection that is non-blocking from the start (`accept4`
/// with `SOCK_NONBLOCK`): no `ioctl` to make it so, and no reactor's
/// registration until the connection knows where it waits.
/// (Linux and Android: rustix has no `SOCK_NONBLOCK` for Apple's systems.)
#[cfg(any(target_os = "linux", target_os = "android"))]
async fn accept(listener: &Async<TcpListener>) -> io::Result<(Accepted, SocketAddr)> {
    use rustix::io::Errno;
    use rustix::net::{acceptfrom_with, SocketFlags};
    let (fd, peer) = listener
        .read_with(|l| loop {
            match acceptfrom_with(l, SocketFlags::NONBLOCK | SocketFlags::CLOEXEC) {
                Err(Errno::INTR) => continue,
                r => return r.map_err(io::Error::from),
            }
        })
        .await?;
    let peer = peer
        .and_then(|a| SocketAddr::try_from(a).ok())
        .ok_or_else(|| io::Error::other("accepted a connection without an IP address"))?;
    Ok((TcpStream::from(fd), peer))
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
async fn accept(listener: &Async<TcpListener>) -> io::Result<(Accepted, SocketAddr)> {
    listener.accept().await
}

/// An accepted connection registered with async-io.
fn with_reactor(sock: Accepted) -> io::Result<Async<TcpStream>> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    return Async::new_nonblocking(sock);
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    Ok(sock)
}

async fn accept_loop(listener: Async<TcpListener>, shared: Arc<Shared>) {
    loop {
        let (sock, peer) = match accept(&listener).await {
            Ok(x) => x,
            Err(e) => {
                room(shared.emit(ServerEvent::Error(None, Arc::new(Error::Io(e))))).await;
                Timer::after(Duration::from_millis(10)).await;
                continue;
            }
        };
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let admitted = lock(&shared.conns).admit(peer);
        match admitted {
            Err(Refusal { status, reason }) => {
                shared.spawn(refuse(sock, status, reason)).detach();
                let ev = ServerEvent::Error(None, Arc::new(Error::Refused { peer, status }));
                room(shared.emit(ev)).await;
            }
            Ok(info) => {
                let admitted = Admitted {
                    shared: shared.clone(),
                    info,
                };
                let k = shared.next_group.fetch_add(1, Ordering::Relaxed) % shared.groups.len();
                let io = GroupEpoll::of(&shared.groups[k]);
                let conn = Box::pin(async move {
                    serve(sock, io, &admitted.info, &admitted.shared).await;
                    drop(admitted);
                });
                // Given back when the server stopped meanwhile: dropped
                // unanswered.
                let _ = shared.groups[k].add(conn);
                // The group (woken by the add) usually runs before this
                // task asks for the next connection (on one thread it
                // does): with one client at a time, the accept that finds
                // none and the listener's re-arm (two system calls) then
                // follow the 101 instead of delaying it.
                futures_lite::future::yield_now().await;
            }
        }
    }
}

/// A connection's place in the table, given back however its future ends:
/// done, dropped by its group after a panic (in an application callback),
/// or dropped unrun by a server that stopped.
struct Admitted {
    shared: Arc<Shared>,
    info: ClientConnection,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        lock(&self.shared.conns).release(&self.info);
    }
}

/// Answers an over-limit connection, then reads what the client sends for
/// at most a second so that closing does not reset the answer away.
async fn refuse(sock: Accepted, status: u16, why: &str) {
    let Ok(mut sock) = with_reactor(sock) else {
        return;
    };
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
    let _ = timeout(Some(Duration::from_secs(2)), async {
        sock.write_all(&out).await.map_err(Error::from_stream)?;
        let _ = sock.get_ref().shutdown(std::net::Shutdown::Write);
        let mut buf = [0u8; 1024];
        while sock.read(&mut buf).await.map_err(Error::from_stream)? > 0 {}
        Ok(())
    })
    .await;
}

/// The epoll instance of a connection's group, where there is one.
#[cfg(any(target_os = "linux", target_os = "android"))]
struct GroupEpoll(Option<Arc<crate::edge::GroupIo>>);
#[cfg(not(any(target_os = "linux", target_os = "android")))]
struct GroupEpoll;

impl GroupEpoll {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn of(group: &Group) -> GroupEpoll {
        GroupEpoll(group.io().cloned())
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    fn of(_: &Group) -> GroupEpoll {
        GroupEpoll
    }

    /// A plain TCP stream, registered in the group's epoll instance if it
    /// has one, else with async-io.
    fn plain(self, sock: Accepted) -> io::Result<ServerStream> {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        let sock = match self.register(sock) {
            Ok(s) => return Ok(ServerStream::Grouped(s)),
            Err(sock) => sock,
        };
        Ok(ServerStream::Other(MaybeTls::Plain(with_reactor(sock)?)))
    }

    /// A TLS session accepted over the socket, registered in the group's
    /// epoll instance if it has one, else with async-io.
    async fn tls(self, sock: Accepted, acceptor: &TlsAcceptor) -> Result<ServerStream, Error> {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        let sock = match self.register(sock) {
            Ok(s) => {
                let s = acceptor.accept(s).await.map_err(Error::from_stream)?;
                return Ok(ServerStream::GroupedTls(Box::new(s)));
            }
            Err(sock) => sock,
        };
        let sock = with_reactor(sock).map_err(Error::Io)?;
        let s = acceptor.accept(sock).await.map_err(Error::from_stream)?;
        Ok(ServerStream::Other(MaybeTls::Server(Box::new(s))))
    }

    /// The socket registered in the group's epoll instance, or given back
    /// (no instance, or the kernel refused).
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn register(self, sock: Accepted) -> Result<crate::edge::GroupTcp, Accepted> {
        match self.0 {
            Some(io) => io.register(sock),
            None => Err(sock),
        }
    }
}

/// One connection's task: handshake, then its events until it ends.
///
/// Long-lived, so its size is per connection (table C of BENCHMARKS.md):
/// `info` comes by reference (an argument taken by value is kept twice,
/// as the argument and as the local it moves into), and nothing large is
/// kept across a wait for room in the events stream.
async fn serve(sock: Accepted, io: GroupEpoll, info: &ClientConnection, shared: &Arc<Shared>) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let _ = sock.set_nodelay(true);
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = sock.get_ref().set_nodelay(true);
    // Boxed: the handshake's state (TLS accept, parser, buffers) is freed
    // when it ends instead of sizing the connection's long-lived task; a
    // failed one's error is handed on inside, and only the wait for room
    // (a pointer) comes out, so that the box is freed before that wait.
    // In a block: a local's room in the task lasts until its scope ends,
    // even after it was moved from, across every await of the loop below.
    let (tx, mut rx) = 'up: {
        let wait = {
            let done = Box::pin(async {
                let limit = Some(shared.options.handshake_timeout);
                let handshake = timeout(limit, async {
                    let mut stream = match &shared.tls {
                        None => io.plain(sock).map_err(Error::Io)?,
                        Some(acceptor) => io.tls(sock, acceptor).await?,
                    };
                    let Some((upgrade, drained)) =
                        read_upgrade(&mut stream, shared.config.clone()).await?
                    else {
                        return Ok(None);
                    };
                    let mut accept = Accept::new();
                    if let Some(p) = &shared.options.protocol {
                        if upgrade.protocols().iter().any(|o| o == p) {
                            accept = accept.protocol(p.clone());
                        }
                    }
                    answer(stream, upgrade, &accept, drained).await.map(Some)
                })
                .await;
                handshake.map_err(|e| shared.emit(ServerEvent::Error(None, Arc::new(e))))
            })
            .await;
            match done {
                Ok(Some(ws)) => break 'up ws.split(),
                Ok(None) => return,
                Err(wait) => wait,
            }
        };
        room(wait).await;
        return;
    };
    tx.set_read_ready(ServerStream::poll_read_ready);
    lock(&shared.conns).insert(*info, tx.clone());
    if shared.stopping.load(Ordering::SeqCst) {
        let _ = tx.queue_close(CloseCode::GOING_AWAY, "server stopping");
    }
    let mut view = shared.callbacks.view();
    room(shared.emit_in(&mut view, ServerEvent::Connect(*info))).await;
    loop {
        // What was received, its event handed on (or its wait for room
        // made) in a block of its own: the received item (80 bytes) is not
        // kept across the waits below.
        let step = {
            // Lent while lent callbacks are registered, else owned (a large
            // message is then copied once, into its own buffer).
            let (reg, kind) = (&shared.callbacks, ServerEventKind::MessageReceive);
            let got = if view.lends(reg, kind) {
                // Lends all that was read in one poll; returns what the
                // owned callbacks or the events stream want, or the close,
                // and after a lend that found the callbacks changed: the
                // list they replaced is let go of by `lends` above, outside
                // the connection's lock.
                let events = &shared.has_events;
                rx.lend_until(|m, reply| {
                    match lend_received(&mut view, reg, info, m, reply, events) {
                        Received::Nothing if !view.has_retired() => None,
                        r => Some(r),
                    }
                })
                .await
            } else {
                rx.recv().await.map(|m| {
                    owned_received(&mut view, reg, info, m, |f| tx.with_reply(|reply| f(reply)))
                })
            };
            match got {
                // Once per connection: boxed, so that the step stays small.
                Ok(Received::Closed(c)) => Step::Closed(Box::new(c)),
                Ok(Received::Message(m)) => {
                    let ev = ServerEvent::Message(*info, m);
                    Step::Wait(shared.emit_in(&mut view, ev))
                }
                Ok(Received::Nothing) => Step::Wait(None),
                Err(Error::Closed) => break,
                Err(e) => {
                    lock(&shared.conns).remove(info);
                    let ev = ServerEvent::Error(Some(*info), Arc::new(e));
                    Step::Last(shared.emit_in(&mut view, ev))
                }
            }
        };
        match step {
            Step::Wait(wait) => room(wait).await,
            Step::Last(wait) => {
                room(wait).await;
                break;
            }
            Step::Closed(c) => {
                lock(&shared.conns).remove(info);
                let CloseInfo {
                    code,
                    reason,
                    error,
                    ..
                } = *c;
                if let Some(err) = error {
                    let ev = ServerEvent::Error(Some(*info), Arc::new(Error::Connection(err)));
                    room(shared.emit_in(&mut view, ev)).await;
                }
                let ev = ServerEvent::Close(*info, code, reason);
                room(shared.emit_in(&mut view, ev)).await;
            }
        }
    }
    lock(&shared.conns).remove(info);
}

/// What `serve` does after receiving, decided before any wait.
enum Step {
    /// Wait for room for the event just handed on, if its queue was full.
    Wait(Option<FullQueue>),
    /// The same, then end: the connection failed.
    Last(Option<FullQueue>),
    /// The connection closed: its events (an error first if it failed).
    Closed(Box<CloseInfo>),
}

#[cfg(all(test, any(target_os = "linux", target_os = "android")))]
mod tests {
    use super::*;
    use ws_proto::Message;

    /// The size of the future `f` returns, without calling it.
    fn output_size<'a, F: std::future::Future>(
        _: impl FnOnce(Accepted, GroupEpoll, &'a ClientConnection, &'a Arc<Shared>) -> F,
    ) -> usize {
        std::mem::size_of::<F>()
    }

    /// A connection's task is per connection for as long as it lives: it
    /// stays small (264 bytes, session 31; 512 while it kept the
    /// handshake's result, a received item and the close information
    /// across its waits, and `info` twice). Raise the bound knowingly.
    #[cfg(target_pointer_width = "64")]
    #[test]
    fn a_connections_task_stays_small() {
        let size = output_size(serve);
        // An eighth of slack: another compiler may lay the future out a
        // little differently.
        assert!(size <= 300, "{size}");
    }

    #[test]
    fn an_accepted_connection_is_non_blocking_and_knows_its_peer() {
        smol::block_on(async {
            let listener = Async::<TcpListener>::bind(([127, 0, 0, 1], 0)).unwrap();
            let addr = listener.get_ref().local_addr().unwrap();
            let client = Async::<TcpStream>::connect(addr).await.unwrap();
            let (sock, peer) = accept(&listener).await.unwrap();
            assert_eq!(peer, client.get_ref().local_addr().unwrap());
            // accept4(SOCK_NONBLOCK): no ioctl needed, and a read finds
            // nothing instead of blocking.
            let flags = rustix::fs::fcntl_getfl(&sock).unwrap();
            assert!(flags.contains(rustix::fs::OFlags::NONBLOCK));
            let mut buf = [0u8; 8];
            let e = std::io::Read::read(&mut &sock, &mut buf).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        })
    }

    /// Fails, rather than hangs, after 10 s.
    async fn bounded<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
        futures_lite::future::or(f, async {
            Timer::after(Duration::from_secs(10)).await;
            panic!("{what}: no answer in 10 s")
        })
        .await
    }

    /// An echo server on loopback, with `cert` (its files) for TLS.
    async fn echo_server(cert: Option<&ws_test_support::Pki>) -> Server {
        let mut o = ServerOptions::default();
        o.ip = [127, 0, 0, 1].into();
        o.port = 0;
        o.cert = cert.map(|pki| ws_proto::api::ServerCert {
            cert_path: pki.server_cert.clone(),
            key_path: pki.server_key.clone(),
        });
        let server = Server::start(o).await.unwrap();
        let h = server.handle();
        server.on(
            ServerEventKind::MessageReceive,
            move |ev: &ServerEvent| match ev {
                ServerEvent::Message(c, Message::Text(t)) => h.queue_text(c, t).unwrap(),
                ServerEvent::Message(c, Message::Binary(b)) => h.queue_binary(c, b).unwrap(),
                _ => {}
            },
        );
        server
    }

    /// Sockets registered in the server's groups' epoll instances.
    fn registered(server: &Server) -> usize {
        let groups = &server.handle.shared.groups;
        groups
            .iter()
            .map(|g| g.io().map_or(0, |io| io.registered()))
            .sum()
    }

    /// Every connection holds the server's one configuration: a pointer
    /// each, not a copy (144 bytes) of its own.
    #[test]
    fn connections_share_the_servers_configuration() {
        smol::block_on(bounded("the test", async {
            let server = echo_server(None).await;
            let config = &server.handle.shared.config;
            assert_eq!(Arc::strong_count(config), 1);
            let mut direct = ws_proto::api::ClientOptions::default();
            direct.proxy = ws_proto::api::Proxy::NoProxy;
            let url = format!("ws://{}/", server.local_addr());
            let mut clients = Vec::new();
            for i in 0..3 {
                let mut c = crate::connect_with(&url, &direct).await.unwrap();
                // Echoed: the server's connection is up.
                c.send_text(&format!("m{i}")).await.unwrap();
                assert_eq!(c.recv().await.unwrap(), Message::Text(format!("m{i}")));
                clients.push(c);
            }
            assert_eq!(Arc::strong_count(config), 1 + clients.len());
            for mut c in clients {
                c.close(CloseCode::NORMAL, "").await.unwrap();
                while !matches!(c.recv().await, Ok(Message::Closed(_)) | Err(_)) {}
            }
            while Arc::strong_count(config) != 1 {
                Timer::after(Duration::from_millis(5)).await;
            }
        }))
    }

    #[test]
    fn a_plain_connection_waits_in_its_groups_epoll_instance() {
        smol::block_on(bounded("the test", async {
            let server = echo_server(None).await;
            let registered = || registered(&server);
            assert_eq!(registered(), 0);
            let mut direct = ws_proto::api::ClientOptions::default();
            direct.proxy = ws_proto::api::Proxy::NoProxy;
            let url = format!("ws://{}/", server.local_addr());
            let mut a = crate::connect_with(&url, &direct).await.unwrap();
            // Echoes through the group's readiness, in both directions
            // (a message larger than the sockets' buffers waits for room).
            for text in ["short".to_string(), "x".repeat(8 << 20)] {
                a.send_text(&text).await.unwrap();
                assert_eq!(a.recv().await.unwrap(), Message::Text(text));
            }
            assert_eq!(registered(), 1);
            a.close(CloseCode::NORMAL, "").await.unwrap();
            while !matches!(a.recv().await, Ok(Message::Closed(_)) | Err(_)) {}
            drop(a);
            // The connection's end gives the slot back.
            while registered() != 0 {
                Timer::after(Duration::from_millis(5)).await;
            }
        }))
    }

    #[test]
    fn a_tls_connection_waits_in_its_groups_epoll_instance() {
        smol::block_on(bounded("the test", async {
            let pki = ws_test_support::pki();
            let server = echo_server(Some(&pki)).await;
            let registered = || registered(&server);
            let mut co = ws_proto::api::ClientOptions::default();
            co.proxy = ws_proto::api::Proxy::NoProxy;
            co.ca_path = Some(pki.ca.clone());
            let url = format!("wss://localhost:{}/", server.local_addr().port());
            let mut a = crate::connect_with(&url, &co).await.unwrap();
            assert_eq!(registered(), 1);
            // One message, then a message larger than the sockets' buffers
            // (waits for room and for data, in TLS records of 16 KiB),
            // then many small ones sent at once (several in one record).
            a.send_text("short").await.unwrap();
            assert_eq!(a.recv().await.unwrap(), Message::Text("short".into()));
            let big: Vec<u8> = (0..8u32 << 20)
                .map(|i| (i.wrapping_mul(31) >> 3) as u8)
                .collect();
            a.send_binary(&big).await.unwrap();
            assert_eq!(a.recv().await.unwrap(), Message::Binary(big.into()));
            let (tx, mut rx) = a.split();
            for i in 0..200 {
                tx.queue_text(&format!("m{i}")).unwrap();
            }
            tx.flush().await.unwrap();
            for i in 0..200 {
                assert_eq!(rx.recv().await.unwrap(), Message::Text(format!("m{i}")));
            }
            assert_eq!(registered(), 1);
            tx.close(CloseCode::NORMAL, "").await.unwrap();
            while !matches!(rx.recv().await, Ok(Message::Closed(_)) | Err(_)) {}
            drop((tx, rx));
            while registered() != 0 {
                Timer::after(Duration::from_millis(5)).await;
            }
        }))
    }

    #[test]
    fn a_close_notify_read_with_the_last_message_ends_a_tls_connection() {
        use futures_lite::{AsyncReadExt, AsyncWriteExt};
        use std::io::Write;
        smol::block_on(bounded("the test", async {
            let pki = ws_test_support::pki();
            let server = echo_server(Some(&pki)).await;
            let mut co = ws_proto::api::ClientOptions::default();
            co.ca_path = Some(pki.ca.clone());
            let config = tls::client_config(&co).unwrap();
            let tcp = Async::<TcpStream>::connect(server.local_addr())
                .await
                .unwrap();
            let name = tls::server_name("localhost").unwrap();
            let mut s = futures_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .unwrap();
            s.write_all(
                b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
                  Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                  Sec-WebSocket-Version: 13\r\n\r\n",
            )
            .await
            .unwrap();
            s.flush().await.unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8];
            while !head.ends_with(b"\r\n\r\n") {
                s.read_exact(&mut byte).await.unwrap();
                head.push(byte[0]);
            }
            assert!(head.starts_with(b"HTTP/1.1 101"));
            // A masked text frame (mask key zero) and close_notify in one
            // write: the server reads both at once, the message in a read
            // that leaves the socket drained, and the session's end with
            // no more from the socket to wake it.
            let session = s.get_mut().1;
            session
                .writer()
                .write_all(&[0x81, 0x85, 0, 0, 0, 0, b'h', b'e', b'l', b'l', b'o'])
                .unwrap();
            session.send_close_notify();
            s.flush().await.unwrap();
            // The echo, then the server's end of the connection.
            let mut got = Vec::new();
            let _ = s.read_to_end(&mut got).await;
            assert_eq!(got, [0x81, 5, b'h', b'e', b'l', b'l', b'o']);
        }))
    }

    #[test]
    fn callbacks_changed_while_a_connection_is_open_apply_to_its_next_event() {
        smol::block_on(bounded("the test", async {
            let mut o = ServerOptions::default();
            o.ip = [127, 0, 0, 1].into();
            o.port = 0;
            let server = Server::start(o).await.unwrap();
            let replier = |tag: &'static str| {
                let h = server.handle();
                move |ev: &ServerEvent| {
                    if let ServerEvent::Message(c, Message::Text(t)) = ev {
                        h.queue_text(c, &format!("{tag}{t}")).unwrap();
                    }
                }
            };
            let first = server.on(ServerEventKind::MessageReceive, replier("first:"));
            let mut direct = ws_proto::api::ClientOptions::default();
            direct.proxy = ws_proto::api::Proxy::NoProxy;
            let url = format!("ws://{}/", server.local_addr());
            let mut a = crate::connect_with(&url, &direct).await.unwrap();
            async fn say<S>(a: &mut crate::WebSocket<S>, text: &str) -> Message
            where
                S: futures_lite::AsyncRead + futures_lite::AsyncWrite + Unpin,
            {
                a.send_text(text).await.unwrap();
                a.recv().await.unwrap()
            }
            assert_eq!(say(&mut a, "1").await, Message::Text("first:1".into()));
            // The connection's task holds a view of the list from its
            // first event on: it sees the change at its next event.
            assert_eq!(server.off(ServerEventKind::MessageReceive, Some(first)), 1);
            server.on(ServerEventKind::MessageReceive, replier("second:"));
            assert_eq!(say(&mut a, "2").await, Message::Text("second:2".into()));
            server.on(ServerEventKind::MessageReceive, replier("third:"));
            assert_eq!(say(&mut a, "3").await, Message::Text("second:3".into()));
            assert_eq!(a.recv().await.unwrap(), Message::Text("third:3".into()));
        }))
    }
}
