//! The async client: a handshake over any stream, and `connect` over TCP,
//! an HTTP proxy tunnel and TLS.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_io::{Async, Timer};
use bytes::Bytes;
use futures_core::Stream;
use futures_io::{AsyncRead, AsyncWrite};
use futures_lite::AsyncWriteExt;
use futures_rustls::{client, server, TlsConnector};
use futures_sink::Sink;
use ws_proto::api::proxy::{self, ProxyConnect, ProxyError};
use ws_proto::api::tls;
use ws_proto::api::{ClientOptions, Error};
use ws_proto::{
    ClientHandshake, ClientRequest, CloseCode, Config, Event, Message, MessageKind, MessageRef,
    Reply, Response,
};

use crate::socket::{halves, Receiver, Sender};

/// A TCP stream, plain or inside TLS (client or server side). The TLS
/// sessions are boxed so that a plain connection does not carry their size.
pub enum MaybeTls {
    /// Plain TCP.
    Plain(Async<std::net::TcpStream>),
    /// A client's TLS session.
    Client(Box<client::TlsStream<Async<std::net::TcpStream>>>),
    /// A server's TLS session.
    Server(Box<server::TlsStream<Async<std::net::TcpStream>>>),
}

impl MaybeTls {
    /// Waits for readability of a plain TCP stream without reading. A TLS
    /// session may hold decrypted bytes the socket no longer shows, so it
    /// is always ready: the read itself decides.
    pub(crate) fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            MaybeTls::Plain(s) => s.poll_readable(cx),
            MaybeTls::Client(_) | MaybeTls::Server(_) => Poll::Ready(Ok(())),
        }
    }
}

impl std::fmt::Debug for MaybeTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MaybeTls::Plain(_) => "MaybeTls::Plain",
            MaybeTls::Client(_) => "MaybeTls::Client",
            MaybeTls::Server(_) => "MaybeTls::Server",
        })
    }
}

/// Runs `$e` on the stream inside (`$plain` instead for plain TCP, when
/// given).
macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        delegate!($self, $s => $e, $s => $e)
    };
    ($self:ident, $p:ident => $plain:expr, $s:ident => $e:expr) => {
        match $self.get_mut() {
            MaybeTls::Plain($p) => $plain,
            MaybeTls::Client(b) => {
                let $s = b.as_mut();
                $e
            }
            MaybeTls::Server(b) => {
                let $s = b.as_mut();
                $e
            }
        }
    };
}

impl AsyncRead for MaybeTls {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => plain::poll_read(s, cx, buf), s => Pin::new(s).poll_read(cx, buf))
    }
}

/// Reads and writes of plain TCP as system calls of their own (rustix's),
/// not through the C library's `recv` and `send`: those are thread
/// cancellation points, and each wraps its call in two more calls (about
/// 115 instructions per echo of the C library's, against 15). The waits are
/// async-io's, as `Async<TcpStream>`'s own reads and writes make them.
/// (Linux and Android: elsewhere rustix has no `MSG_NOSIGNAL`, and std's
/// reads and writes are used.)
#[cfg(any(target_os = "linux", target_os = "android"))]
mod plain {
    use std::io::{self, IoSlice};
    use std::net::TcpStream;
    use std::task::{ready, Context, Poll};

    use async_io::Async;
    use rustix::io::Errno;
    use rustix::net::{RecvFlags, SendAncillaryBuffer, SendFlags};

    pub(super) fn poll_read(
        s: &Async<TcpStream>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            match rustix::net::recv(s, &mut *buf, RecvFlags::empty()) {
                Ok((n, _)) => return Poll::Ready(Ok(n)),
                Err(Errno::AGAIN) => ready!(s.poll_readable(cx))?,
                Err(Errno::INTR) => {}
                Err(e) => return Poll::Ready(Err(e.into())),
            }
        }
    }

    /// `MSG_NOSIGNAL`: a peer gone gives `EPIPE`, not `SIGPIPE`, as std's
    /// writes do.
    pub(super) fn poll_write(
        s: &Async<TcpStream>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        poll_sent(s, cx, || rustix::net::send(s, buf, SendFlags::NOSIGNAL))
    }

    /// The owned payloads' gathered write: `sendmsg`, `MSG_NOSIGNAL` too.
    pub(super) fn poll_write_vectored(
        s: &Async<TcpStream>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        // At most the kernel's limit of buffers per call (UIO_MAXIOV), as
        // std's writev takes: more would fail with EMSGSIZE.
        let bufs = &bufs[..bufs.len().min(1024)];
        poll_sent(s, cx, || {
            let mut none = SendAncillaryBuffer::default();
            rustix::net::sendmsg(s, bufs, &mut none, SendFlags::NOSIGNAL)
        })
    }

    /// Sends with `send` until it takes something, waiting for
    /// writability while the socket is full.
    fn poll_sent(
        s: &Async<TcpStream>,
        cx: &mut Context<'_>,
        mut send: impl FnMut() -> rustix::io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        loop {
            match send() {
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(Errno::AGAIN) => ready!(s.poll_writable(cx))?,
                Err(Errno::INTR) => {}
                Err(e) => return Poll::Ready(Err(e.into())),
            }
        }
    }
}

/// Elsewhere plain TCP reads and writes are async-io's own.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
mod plain {
    use std::io::{self, IoSlice};
    use std::net::TcpStream;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use async_io::Async;
    use futures_io::{AsyncRead, AsyncWrite};

    pub(super) fn poll_read(
        s: &mut Async<TcpStream>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(s).poll_read(cx, buf)
    }

    pub(super) fn poll_write(
        s: &mut Async<TcpStream>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(s).poll_write(cx, buf)
    }

    pub(super) fn poll_write_vectored(
        s: &mut Async<TcpStream>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(s).poll_write_vectored(cx, bufs)
    }
}

impl AsyncWrite for MaybeTls {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => plain::poll_write(s, cx, buf), s => Pin::new(s).poll_write(cx, buf))
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        delegate!(
            self,
            s => plain::poll_write_vectored(s, cx, bufs),
            s => Pin::new(s).poll_write_vectored(cx, bufs)
        )
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => Pin::new(s).poll_flush(cx))
    }
    /// Flushes (a TLS session also sends close_notify), then shuts down the
    /// TCP write side: `Async<TcpStream>`'s own `poll_close` only flushes.
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = match this {
            MaybeTls::Plain(s) => Pin::new(s).poll_close(cx),
            MaybeTls::Client(s) => Pin::new(s.as_mut()).poll_close(cx),
            MaybeTls::Server(s) => Pin::new(s.as_mut()).poll_close(cx),
        };
        if r.is_ready() {
            let tcp = match this {
                MaybeTls::Plain(s) => s.get_ref(),
                MaybeTls::Client(s) => s.get_ref().0.get_ref(),
                MaybeTls::Server(s) => s.get_ref().0.get_ref(),
            };
            let _ = tcp.shutdown(std::net::Shutdown::Write);
        }
        r
    }
}

/// An async WebSocket: receive with [`recv`](Self::recv) (or as a
/// [`Stream`]) while other tasks send through [`sender`](Self::sender)
/// clones (or the [`Sink`]); or [`split`](Self::split) it.
///
/// Generic over any `futures::AsyncRead + AsyncWrite` stream, so it runs on
/// smol, async-std, or tokio through a compat layer.
pub struct WebSocket<S> {
    tx: Sender<S>,
    rx: Receiver<S>,
    response: Option<Response>,
}

impl<S> std::fmt::Debug for WebSocket<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocket").finish()
    }
}

/// Runs `fut`, failing with [`Error::Timeout`] after `limit`.
pub(crate) async fn timeout<T>(
    limit: Option<Duration>,
    fut: impl std::future::Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    match limit {
        None => fut.await,
        Some(d) => {
            futures_lite::future::or(fut, async move {
                Timer::after(d).await;
                Err(Error::Timeout)
            })
            .await
        }
    }
}

/// Reads and feeds `step` until it yields; EOF is fed as `None`. Also
/// whether the last read was short (did not fill the buffer): the stream
/// was drained then, so the connection's first read should wait for
/// readiness instead of finding nothing (see `halves`).
pub(crate) async fn read_until<R: AsyncRead + Unpin, T>(
    r: &mut R,
    mut step: impl FnMut(Option<&[u8]>) -> Result<Option<T>, Error>,
) -> Result<(T, bool), Error> {
    loop {
        // Each read goes into the thread's read buffer, taken for the poll
        // alone, and at most HEAD_READ bytes of it (what follows the head
        // in that read is kept for the connection).
        let done = futures_lite::future::poll_fn(|cx| {
            crate::socket::with_scratch(|buf| {
                let buf = &mut buf[..HEAD_READ];
                match Pin::new(&mut *r).poll_read(cx, buf) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {
                        Poll::Ready(Ok(None))
                    }
                    Poll::Ready(Err(e)) => Poll::Ready(Err(Error::from_stream(e))),
                    Poll::Ready(Ok(0)) => Poll::Ready(
                        step(None).and_then(|t| t.map(|t| Some((t, false))).ok_or(Error::Closed)),
                    ),
                    Poll::Ready(Ok(n)) => {
                        Poll::Ready(step(Some(&buf[..n])).map(|t| t.map(|t| (t, n < HEAD_READ))))
                    }
                }
            })
        })
        .await?;
        if let Some(done) = done {
            return Ok(done);
        }
    }
}

/// The most a handshake reads at once.
const HEAD_READ: usize = 4096;

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    /// Runs the client handshake for `request` over an established stream
    /// (TCP, TLS, a tunnel, or anything else).
    pub async fn handshake(
        mut stream: S,
        request: &ClientRequest,
        config: Config,
    ) -> Result<WebSocket<S>, Error> {
        let mut hs = ClientHandshake::new(request, config, rand::random())?;
        stream
            .write_all(hs.request())
            .await
            .map_err(Error::from_stream)?;
        stream.flush().await.map_err(Error::from_stream)?;
        let ((response, conn), drained) = read_until(&mut stream, |data| match data {
            Some(d) => hs.handle_data(Instant::now(), d).map_err(Error::from),
            None => Err(Error::Handshake(hs.handle_eof())),
        })
        .await?;
        let (tx, rx) = halves(conn, stream, drained);
        Ok(WebSocket {
            tx,
            rx,
            response: Some(response),
        })
    }

    /// Wraps a connection whose handshake is done (a server's, say).
    pub fn from_connection(conn: ws_proto::Connection, stream: S) -> WebSocket<S> {
        Self::from_parts(conn, stream, false)
    }

    /// Wraps a connection whose handshake's last read from `stream` was
    /// short (`drained`; see `halves`) or not.
    pub(crate) fn from_parts(conn: ws_proto::Connection, stream: S, drained: bool) -> WebSocket<S> {
        let (tx, rx) = halves(conn, stream, drained);
        WebSocket {
            tx,
            rx,
            response: None,
        }
    }

    /// The server's handshake response (for a client): status, reason,
    /// headers and the chosen subprotocol.
    pub fn response(&self) -> Option<&Response> {
        self.response.as_ref()
    }

    /// The subprotocol the server chose.
    pub fn protocol(&self) -> Option<&str> {
        self.response.as_ref().and_then(|r| r.protocol.as_deref())
    }

    /// A sender for other tasks.
    pub fn sender(&self) -> Sender<S> {
        self.tx.clone()
    }

    /// Splits into a cloneable sender and the receiver.
    pub fn split(self) -> (Sender<S>, Receiver<S>) {
        (self.tx, self.rx)
    }

    /// The next whole message, ping, pong or the close; then
    /// [`Error::Closed`]. Cancel-safe.
    pub async fn recv(&mut self) -> Result<Message, Error> {
        self.rx.recv().await
    }

    /// The next whole message, ping, pong or the close, lent to `f`
    /// without a copy or an allocation when it lies whole in what was read;
    /// then [`Error::Closed`]. See [`Receiver::recv_with`].
    pub fn recv_with<'a, R: 'a>(
        &'a mut self,
        f: impl FnOnce(MessageRef<'_>) -> R + 'a,
    ) -> impl Future<Output = Result<R, Error>> + 'a {
        self.rx.recv_with(f)
    }

    /// The next whole message, ping, pong or the close, lent to `f`, which
    /// may answer it through the [`Reply`]; then [`Error::Closed`]. See
    /// [`Receiver::recv_with_reply`].
    pub fn recv_with_reply<'a, R: 'a>(
        &'a mut self,
        f: impl FnOnce(MessageRef<'_>, &mut Reply<'_>) -> R + 'a,
    ) -> impl Future<Output = Result<R, Error>> + 'a {
        self.rx.recv_with_reply(f)
    }

    /// The next chunk event; `None` when finished. Cancel-safe.
    pub async fn recv_event(&mut self) -> Result<Option<Event>, Error> {
        self.rx.recv_event().await
    }

    /// Sends a text message.
    pub async fn send_text(&self, text: &str) -> Result<(), Error> {
        self.tx.send_text(text).await
    }

    /// Sends a binary message.
    pub async fn send_binary(&self, data: &[u8]) -> Result<(), Error> {
        self.tx.send_binary(data).await
    }

    /// Sends a binary message whose bytes the connection takes over
    /// ([`Sender::send_bytes`]: large payloads are not copied).
    pub async fn send_bytes(&self, data: Bytes) -> Result<(), Error> {
        self.tx.send_bytes(data).await
    }

    /// Sends a text message whose `String` the connection takes over
    /// ([`Sender::send_string`]).
    pub async fn send_string(&self, text: String) -> Result<(), Error> {
        self.tx.send_string(text).await
    }

    /// Sends one piece of a streamed message.
    pub async fn send_chunk(&self, kind: MessageKind, data: &[u8], fin: bool) -> Result<(), Error> {
        self.tx.send_chunk(kind, data, fin).await
    }

    /// Sends a message that is never compressed (see
    /// [`Sender::send_uncompressed`]).
    pub async fn send_uncompressed(&self, kind: MessageKind, data: &[u8]) -> Result<(), Error> {
        self.tx.send_uncompressed(kind, data).await
    }

    /// The negotiated permessage-deflate parameters, if the server accepted
    /// the offer (turn it on with `options.config.deflate`). The response
    /// header itself is in [`response`](Self::response).
    #[cfg(feature = "deflate")]
    pub fn deflate(&self) -> Option<ws_proto::DeflateParams> {
        self.tx.deflate()
    }

    /// Sends a Ping.
    pub async fn ping(&self, payload: &[u8]) -> Result<(), Error> {
        self.tx.ping(payload).await
    }

    /// Starts the closing handshake.
    pub async fn close(&self, code: CloseCode, reason: &str) -> Result<(), Error> {
        self.tx.close(code, reason).await
    }

    /// Closes and waits for the closing handshake, discarding messages that
    /// arrive meanwhile.
    pub async fn close_and_wait(mut self, code: CloseCode, reason: &str) -> Result<Message, Error> {
        self.tx.close(code, reason).await?;
        loop {
            let m = self.rx.recv().await?;
            if matches!(m, Message::Closed(_)) {
                return Ok(m);
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Stream for WebSocket<S> {
    type Item = Result<Message, Error>;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.get_mut().rx).poll_next(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Sink<Message> for WebSocket<S> {
    type Error = Error;
    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Pin::new(&mut self.get_mut().tx).poll_ready(cx)
    }
    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), Error> {
        Pin::new(&mut self.get_mut().tx).start_send(item)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Pin::new(&mut self.get_mut().tx).poll_flush(cx)
    }
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Pin::new(&mut self.get_mut().tx).poll_close(cx)
    }
}

/// Connects to a `ws://` or `wss://` URL with default options.
pub async fn connect(url: &str) -> Result<WebSocket<MaybeTls>, Error> {
    // Boxed, as the state of `connect_with` is: the options are about
    // 500 bytes.
    let options = Box::new(ClientOptions::default());
    connect_with(url, &options).await
}

/// Connects with options (headers, subprotocols, CA file, client
/// certificate, skip-verification, proxy, timeouts, limits). The URL and the
/// certificate files are checked before any I/O.
///
/// The future is small (its connecting and handshake state, about 2.6 KB,
/// lives on the heap while they last): a task that awaits it keeps room
/// for it as long as the task lives.
pub async fn connect_with(
    url: &str,
    options: &ClientOptions,
) -> Result<WebSocket<MaybeTls>, Error> {
    Box::pin(connect_boxed(url, options)).await
}

/// [`connect_with`]'s work, whose state is boxed there.
async fn connect_boxed(url: &str, options: &ClientOptions) -> Result<WebSocket<MaybeTls>, Error> {
    let request = options.request(url)?;
    let tls_config = if request.is_tls() {
        Some(tls::client_config(options)?)
    } else {
        None
    };
    let env = |k: &str| std::env::var(k).ok();
    let via = proxy::select(
        &options.proxy,
        request.host(),
        request.port(),
        request.is_tls(),
        &env,
    )?;
    let tcp = timeout(options.connect_timeout, async {
        match &via {
            None => tcp_connect(request.host(), request.port()).await,
            Some(p) => {
                let mut tcp = tcp_connect(&p.host, p.port).await?;
                let mut step = ProxyConnect::new(request.host(), request.port(), p);
                tcp.write_all(step.request())
                    .await
                    .map_err(Error::from_stream)?;
                let (rest, _) = read_until(&mut tcp, |data| match data {
                    Some(d) => step.handle_data(d).map_err(Error::from),
                    None => Err(Error::Proxy(ProxyError::Closed)),
                })
                .await?;
                if !rest.is_empty() {
                    return Err(Error::Proxy(ProxyError::Malformed(
                        ws_proto::HandshakeError::Malformed(
                            "the proxy sent data before the handshake".into(),
                        ),
                    )));
                }
                Ok(tcp)
            }
        }
    })
    .await?;
    timeout(options.handshake_timeout, async {
        let stream = match tls_config {
            None => MaybeTls::Plain(tcp),
            Some(config) => {
                let name = tls::server_name(request.host())?;
                let tls = TlsConnector::from(config)
                    .connect(name, tcp)
                    .await
                    .map_err(Error::from_stream)?;
                MaybeTls::Client(Box::new(tls))
            }
        };
        let ws = WebSocket::handshake(stream, &request, options.config.clone()).await?;
        ws.tx.set_read_ready(MaybeTls::poll_read_ready);
        Ok(ws)
    })
    .await
}

/// Resolves `host` and connects to the first address that answers.
pub(crate) async fn tcp_connect(
    host: &str,
    port: u16,
) -> Result<Async<std::net::TcpStream>, Error> {
    let addrs: Vec<SocketAddr> = async_net::resolve((host, port))
        .await
        .map_err(Error::from_stream)?;
    let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{host} has no address"));
    for addr in addrs {
        match Async::<std::net::TcpStream>::connect(addr).await {
            Ok(s) => {
                let _ = s.get_ref().set_nodelay(true);
                return Ok(s);
            }
            Err(e) => last = e,
        }
    }
    Err(Error::from_stream(last))
}
