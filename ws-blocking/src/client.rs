//! The blocking client.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use ws_proto::api::proxy::{self, ProxyConnect, ProxyError};
use ws_proto::api::tls::{self, rustls};
use ws_proto::api::{ClientOptions, Error};
use ws_proto::{
    ClientHandshake, CloseCode, Event, Message, MessageKind, MessageRef, Reply, Response,
};

use crate::socket::{split, Receiver, Sender};
use bytes::Bytes;

/// A connected WebSocket client: receive with [`recv`](Self::recv) while
/// other threads send through [`sender`](Self::sender) clones, or
/// [`split`](Self::split) it.
#[derive(Debug)]
pub struct WebSocket {
    tx: Sender,
    rx: Receiver,
    /// The server's response, for a client.
    response: Option<Response>,
}

impl WebSocket {
    /// Connects to a `ws://` URL with default options.
    pub fn connect(url: &str) -> Result<WebSocket, Error> {
        Self::connect_with(url, &ClientOptions::default())
    }

    /// Connects with options: extra headers, subprotocols, Origin, proxy,
    /// timeouts, limits. The URL is checked (length, scheme, host) before
    /// any I/O.
    pub fn connect_with(url: &str, options: &ClientOptions) -> Result<WebSocket, Error> {
        let request = options.request(url)?;
        // Certificate files are checked before any I/O too.
        let tls_config = if request.is_tls() {
            Some(tls::client_config(options)?)
        } else {
            None
        };
        let connect_deadline = options.connect_timeout.map(|t| Instant::now() + t);
        let env = |k: &str| std::env::var(k).ok();
        let via = proxy::select(
            &options.proxy,
            request.host(),
            request.port(),
            request.is_tls(),
            &env,
        )?;
        let (mut sock, leftover) = match &via {
            None => (
                tcp_connect(request.host(), request.port(), connect_deadline)?,
                Vec::new(),
            ),
            Some(p) => {
                let mut sock = tcp_connect(&p.host, p.port, connect_deadline)?;
                let timer = sock.try_clone()?;
                let mut step = ProxyConnect::new(request.host(), request.port(), p);
                sock.write_all(step.request())?;
                let rest = read_until(&mut sock, &timer, connect_deadline, |data| match data {
                    Some(d) => step.handle_data(d).map_err(Error::from),
                    None => Err(Error::Proxy(ProxyError::Closed)),
                })?;
                (sock, rest)
            }
        };
        let timer = sock.try_clone()?;
        let deadline = options.handshake_timeout.map(|t| Instant::now() + t);
        let mut hs = ClientHandshake::new(&request, options.config.clone(), rand::random())?;
        let (response, conn, tls) = match tls_config {
            None => {
                let (r, c) = handshake(&mut sock, &timer, deadline, &mut hs, leftover)?;
                (r, c, None)
            }
            Some(config) => {
                if !leftover.is_empty() {
                    return Err(Error::Proxy(ProxyError::Malformed(
                        ws_proto::HandshakeError::Malformed(
                            "the proxy sent data before the TLS handshake".into(),
                        ),
                    )));
                }
                let name = tls::server_name(request.host())?;
                let mut tls = rustls::ClientConnection::new(config, name)
                    .map_err(|e| Error::Tls(e.to_string()))?;
                let (r, c) = handshake(
                    &mut rustls::Stream::new(&mut tls, &mut sock),
                    &timer,
                    deadline,
                    &mut hs,
                    Vec::new(),
                )?;
                (r, c, Some(rustls::Connection::from(tls)))
            }
        };
        sock.set_read_timeout(None)?;
        let (tx, rx) = split(conn, sock, tls)?;
        Ok(WebSocket {
            tx,
            rx,
            response: Some(response),
        })
    }

    /// A server's side of a connection ([`accept`](crate::accept)).
    pub(crate) fn from_halves(tx: Sender, rx: Receiver) -> WebSocket {
        WebSocket {
            tx,
            rx,
            response: None,
        }
    }

    /// The server's handshake response, for a client: status, reason,
    /// headers, chosen subprotocol (the spec's `open` and
    /// `headerReceive`). `None` on a server's side.
    pub fn response(&self) -> Option<&Response> {
        self.response.as_ref()
    }

    /// The subprotocol the server chose (for a client).
    pub fn protocol(&self) -> Option<&str> {
        self.response.as_ref().and_then(|r| r.protocol.as_deref())
    }

    /// A sender for other threads.
    pub fn sender(&self) -> Sender {
        self.tx.clone()
    }

    /// Splits into a sender (cloneable) and the receiver.
    pub fn split(self) -> (Sender, Receiver) {
        (self.tx, self.rx)
    }

    /// The next whole message, ping, pong, or the close; then
    /// [`Error::Closed`].
    pub fn recv(&mut self) -> Result<Message, Error> {
        self.rx.recv()
    }

    /// The next whole message, ping, pong, or the close, lent to `f`
    /// without a copy or an allocation when it lies whole in what was read;
    /// then [`Error::Closed`]. See [`Receiver::recv_with`].
    pub fn recv_with<R>(&mut self, f: impl FnOnce(MessageRef<'_>) -> R) -> Result<R, Error> {
        self.rx.recv_with(f)
    }

    /// The next whole message, ping, pong or the close, lent to `f`, which
    /// may answer it through the [`Reply`]; then [`Error::Closed`]. See
    /// [`Receiver::recv_with_reply`].
    pub fn recv_with_reply<R>(
        &mut self,
        f: impl FnOnce(MessageRef<'_>, &mut Reply<'_>) -> R,
    ) -> Result<R, Error> {
        self.rx.recv_with_reply(f)
    }

    /// The next chunk event (for streaming huge messages); `Ok(None)` when
    /// finished.
    pub fn recv_event(&mut self) -> Result<Option<Event>, Error> {
        self.rx.recv_event()
    }

    /// Sends a text message.
    pub fn send_text(&self, text: &str) -> Result<(), Error> {
        self.tx.send_text(text)
    }

    /// Sends a binary message.
    pub fn send_binary(&self, data: &[u8]) -> Result<(), Error> {
        self.tx.send_binary(data)
    }

    /// Sends a binary message whose bytes the connection takes over (see
    /// [`Sender::send_bytes`]).
    pub fn send_bytes(&self, data: Bytes) -> Result<(), Error> {
        self.tx.send_bytes(data)
    }

    /// Sends a text message whose `String` the connection takes over (see
    /// [`Sender::send_string`]).
    pub fn send_string(&self, text: String) -> Result<(), Error> {
        self.tx.send_string(text)
    }

    /// Sends one piece of a streamed message.
    pub fn send_chunk(&self, kind: MessageKind, data: &[u8], fin: bool) -> Result<(), Error> {
        self.tx.send_chunk(kind, data, fin)
    }

    /// Sends a message that is never compressed (see
    /// [`Sender::send_uncompressed`]).
    pub fn send_uncompressed(&self, kind: MessageKind, data: &[u8]) -> Result<(), Error> {
        self.tx.send_uncompressed(kind, data)
    }

    /// The negotiated permessage-deflate parameters, if the server accepted
    /// the offer (turn it on with `options.config.deflate`). The response
    /// header itself is in [`response`](Self::response).
    #[cfg(feature = "deflate")]
    pub fn deflate(&self) -> Option<ws_proto::DeflateParams> {
        self.tx.deflate()
    }

    /// Sends a Ping.
    pub fn ping(&self, payload: &[u8]) -> Result<(), Error> {
        self.tx.ping(payload)
    }

    /// Starts the closing handshake (the spec's defaults: 1000, "").
    pub fn close(&self, code: CloseCode, reason: &str) -> Result<(), Error> {
        self.tx.close(code, reason)
    }

    /// Closes with 1000 and waits for the closing handshake to finish,
    /// discarding messages that arrive meanwhile.
    pub fn close_and_wait(mut self, code: CloseCode, reason: &str) -> Result<Message, Error> {
        self.tx.close(code, reason)?;
        loop {
            let m = self.rx.recv()?;
            if matches!(m, Message::Closed(_)) {
                return Ok(m);
            }
        }
    }
}

/// Resolves `host` and connects to the first address that answers.
pub(crate) fn tcp_connect(
    host: &str,
    port: u16,
    deadline: Option<Instant>,
) -> Result<TcpStream, Error> {
    let addrs: Vec<SocketAddr> = (host, port).to_socket_addrs()?.collect();
    let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{host} has no address"));
    for addr in addrs {
        let r = match remaining(deadline)? {
            Some(t) => TcpStream::connect_timeout(&addr, t),
            None => TcpStream::connect(addr),
        };
        match r {
            Ok(s) => {
                s.set_nodelay(true)?;
                return Ok(s);
            }
            Err(e) => last = e,
        }
    }
    Err(last.into())
}

fn remaining(deadline: Option<Instant>) -> Result<Option<Duration>, Error> {
    match deadline {
        None => Ok(None),
        Some(d) => {
            let left = d.saturating_duration_since(Instant::now());
            if left.is_zero() {
                Err(Error::Timeout)
            } else {
                Ok(Some(left))
            }
        }
    }
}

/// Writes the request, reads the response (through TLS or not).
fn handshake(
    stream: &mut (impl Read + Write),
    timer: &TcpStream,
    deadline: Option<Instant>,
    hs: &mut ClientHandshake,
    leftover: Vec<u8>,
) -> Result<(Response, ws_proto::Connection), Error> {
    timer.set_write_timeout(remaining(deadline)?)?;
    timer.set_read_timeout(remaining(deadline)?)?;
    stream.write_all(hs.request()).map_err(Error::from_stream)?;
    stream.flush().map_err(Error::from_stream)?;
    if !leftover.is_empty() {
        if let Some(done) = hs.handle_data(Instant::now(), &leftover)? {
            return Ok(done);
        }
    }
    read_until(stream, timer, deadline, |data| match data {
        Some(d) => hs.handle_data(Instant::now(), d).map_err(Error::from),
        None => Err(Error::Handshake(hs.handle_eof())),
    })
}

/// Reads and feeds `step` until it yields, the deadline passes, or EOF
/// (fed as `None`; the step then returns its error). `timer` is the socket
/// under `stream`, for read timeouts.
pub(crate) fn read_until<T>(
    stream: &mut impl Read,
    timer: &TcpStream,
    deadline: Option<Instant>,
    mut step: impl FnMut(Option<&[u8]>) -> Result<Option<T>, Error>,
) -> Result<T, Error> {
    let mut buf = [0u8; 4096];
    loop {
        timer.set_read_timeout(remaining(deadline)?)?;
        let n = match stream.read(&mut buf) {
            Ok(0) => return step(None)?.ok_or(Error::Closed),
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(Error::Timeout)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::from_stream(e)),
        };
        if let Some(t) = step(Some(&buf[..n]))? {
            return Ok(t);
        }
    }
}
