//! The blocking client.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use ws_proto::api::proxy::{self, ProxyConnect, ProxyError};
use ws_proto::api::{ClientOptions, Error, MAX_URL_LEN};
use ws_proto::{ClientHandshake, ClientRequest, CloseCode, Event, Message, MessageKind, Response};

use crate::socket::{split, Receiver, Sender};

/// A connected WebSocket client: receive with [`recv`](Self::recv) while
/// other threads send through [`sender`](Self::sender) clones, or
/// [`split`](Self::split) it.
#[derive(Debug)]
pub struct WebSocket {
    tx: Sender,
    rx: Receiver,
    response: Response,
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
        let request = build_request(url, options)?;
        if request.is_tls() {
            return Err(Error::Tls(
                "wss:// is not supported by this build yet".into(),
            ));
        }
        let connect_deadline = options.connect_timeout.map(|t| Instant::now() + t);
        let env = |k: &str| std::env::var(k).ok();
        let via = proxy::select(
            &options.proxy,
            request.host(),
            request.port(),
            request.is_tls(),
            &env,
        )?;
        let (mut sock, mut leftover) = match &via {
            None => (
                tcp_connect(request.host(), request.port(), connect_deadline)?,
                Vec::new(),
            ),
            Some(p) => {
                let mut sock = tcp_connect(&p.host, p.port, connect_deadline)?;
                let mut step = ProxyConnect::new(request.host(), request.port(), p);
                sock.write_all(step.request())?;
                let rest = read_until(&mut sock, connect_deadline, |data| match data {
                    Some(d) => step.handle_data(d).map_err(Error::from),
                    None => Err(Error::Proxy(ProxyError::Closed)),
                })?;
                (sock, rest)
            }
        };
        let hs_deadline = options.handshake_timeout.map(|t| Instant::now() + t);
        let mut hs = ClientHandshake::new(&request, options.config.clone(), rand::random())?;
        sock.write_all(hs.request())?;
        let now = Instant::now();
        let first = std::mem::take(&mut leftover);
        let done = if first.is_empty() {
            None
        } else {
            hs.handle_data(now, &first)?
        };
        let (response, conn) = match done {
            Some(d) => d,
            None => read_until(&mut sock, hs_deadline, |data| match data {
                Some(d) => hs.handle_data(Instant::now(), d).map_err(Error::from),
                None => Err(Error::Handshake(hs.handle_eof())),
            })?,
        };
        sock.set_read_timeout(None)?;
        let (tx, rx) = split(conn, sock)?;
        Ok(WebSocket { tx, rx, response })
    }

    /// The server's handshake response: status, reason, headers, chosen
    /// subprotocol (the spec's `open` and `headerReceive`).
    pub fn response(&self) -> &Response {
        &self.response
    }

    /// The subprotocol the server chose.
    pub fn protocol(&self) -> Option<&str> {
        self.response.protocol.as_deref()
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

    /// Sends one piece of a streamed message.
    pub fn send_chunk(&self, kind: MessageKind, data: &[u8], fin: bool) -> Result<(), Error> {
        self.tx.send_chunk(kind, data, fin)
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

/// The URL and option checks that need no I/O.
pub(crate) fn build_request(url: &str, options: &ClientOptions) -> Result<ClientRequest, Error> {
    if url.chars().count() > MAX_URL_LEN {
        return Err(Error::Url(format!("longer than {MAX_URL_LEN} characters")));
    }
    let mut request = ClientRequest::new(url)?;
    for p in &options.protocols {
        request = request.protocol(p.clone());
    }
    if let Some(o) = &options.origin {
        request = request.origin(o.clone());
    }
    for (n, v) in &options.headers {
        request = request.header(n, v)?;
    }
    Ok(request)
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

/// Reads and feeds `step` until it yields, the deadline passes, or EOF
/// (fed as `None`; the step then returns its error).
pub(crate) fn read_until<T>(
    sock: &mut TcpStream,
    deadline: Option<Instant>,
    mut step: impl FnMut(Option<&[u8]>) -> Result<Option<T>, Error>,
) -> Result<T, Error> {
    let mut buf = [0u8; 4096];
    loop {
        sock.set_read_timeout(remaining(deadline)?)?;
        let n = match sock.read(&mut buf) {
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
            Err(e) => return Err(e.into()),
        };
        if let Some(t) = step(Some(&buf[..n]))? {
            return Ok(t);
        }
    }
}
