//! The server side of the opening handshake on a TCP stream the
//! application accepted itself: [`accept`] and [`accept_with`].
//! [`Server`](crate::Server) runs the same handshake for its connections
//! (through TLS when configured).

use std::io::{self, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ws_proto::api::tls::rustls;
use ws_proto::api::{Error, ServerOptions};
use ws_proto::{Accept, Config, HandshakeError, Incoming, ServerHandshake, UpgradeRequest};

use crate::client::{read_until, WebSocket};
use crate::socket::{split, Receiver, Sender};

/// Writes handshake bytes, through TLS or not.
pub(crate) fn hs_write(
    sock: &mut TcpStream,
    tls: &mut Option<rustls::ServerConnection>,
    data: &[u8],
) -> io::Result<()> {
    match tls {
        None => sock.write_all(data),
        Some(t) => {
            let mut s = rustls::Stream::new(t, sock);
            s.write_all(data)?;
            s.flush()
        }
    }
}

/// Reads the opening request by `deadline` (`timer` is the socket, for
/// read timeouts), through the TLS session if any. An upgrade request
/// comes back; anything else is answered here: a malformed or
/// unacceptable request with its status (400, 405, 426, 431, 505) and an
/// error, an ordinary HTTP request with 426 and `None`.
pub(crate) fn read_upgrade(
    sock: &mut TcpStream,
    tls: &mut Option<rustls::ServerConnection>,
    timer: &TcpStream,
    deadline: Option<Instant>,
    config: Arc<Config>,
) -> Result<Option<Box<UpgradeRequest>>, Error> {
    let mut hs = ServerHandshake::new(config);
    let mut step = |data: Option<&[u8]>| match data {
        Some(d) => hs.handle_data(d).map_err(Error::from),
        None => Err(Error::Handshake(hs.handle_eof())),
    };
    let incoming = match tls {
        None => read_until(sock, timer, deadline, &mut step),
        Some(t) => read_until(
            &mut rustls::Stream::new(t, sock),
            timer,
            deadline,
            &mut step,
        ),
    };
    match incoming {
        Ok(Incoming::Upgrade(u)) => Ok(Some(u)),
        Ok(Incoming::Http(req)) => {
            let mut out = Vec::new();
            req.respond_websocket_only(&mut out);
            let _ = hs_write(sock, tls, &out);
            Ok(None)
        }
        Err(e) => {
            if let Error::Handshake(h) = &e {
                let mut out = Vec::new();
                h.write_response(&mut out);
                let _ = hs_write(sock, tls, &out);
            }
            Err(e)
        }
    }
}

/// Answers `upgrade` with 101 as `accept` says, then splits the
/// connection.
pub(crate) fn answer(
    mut sock: TcpStream,
    mut tls: Option<rustls::ServerConnection>,
    upgrade: Box<UpgradeRequest>,
    accept: &Accept,
) -> Result<(Sender, Receiver), Error> {
    let mut out = Vec::new();
    let conn = upgrade.accept(Instant::now(), accept, &mut out)?;
    hs_write(&mut sock, &mut tls, &out).map_err(Error::from_stream)?;
    sock.set_read_timeout(None)?;
    Ok(split(conn, sock, tls.map(rustls::Connection::from))?)
}

/// Runs the server side of the opening handshake on an accepted TCP
/// stream, with default [`Config`] limits, no subprotocol, and the default
/// handshake timeout of [`ServerOptions`] (30 s); see [`accept_with`].
pub fn accept(sock: TcpStream) -> Result<WebSocket, Error> {
    let timeout = ServerOptions::default().handshake_timeout;
    accept_with(sock, Config::shared_default(), Some(timeout), |_| {
        Ok(Accept::new())
    })
}

/// Runs the server side of the opening handshake on an accepted TCP
/// stream: reads the client's request (within `config`'s head limits and
/// `timeout`: a silent client fails with [`Error::Timeout`]), lets `decide`
/// look at it (path, query, headers, `Origin`, the offered subprotocols)
/// and either accept it, choosing a subprotocol and extra response
/// headers with [`Accept`], or refuse it with an HTTP status.
///
/// Errors: a request that is not a valid upgrade is answered with its
/// status (400, 405, 426, 431 or 505) and returned as
/// [`Error::Handshake`]; an ordinary HTTP request gets 426 and
/// [`HandshakeError::Upgrade`]; a refusal is sent with the status and an
/// empty body and returned as [`HandshakeError::Refused`].
///
/// `config` may be a `Config` or an `Arc<Config>`: connections accepted
/// with clones of one `Arc` share it (a pointer each, where a `Config` of
/// their own is 144 bytes with permessage-deflate built in).
pub fn accept_with<F>(
    mut sock: TcpStream,
    config: impl Into<Arc<Config>>,
    timeout: Option<Duration>,
    decide: F,
) -> Result<WebSocket, Error>
where
    F: FnOnce(&UpgradeRequest) -> Result<Accept, u16>,
{
    let config = config.into();
    let timer = sock.try_clone()?;
    timer.set_write_timeout(timeout)?;
    let deadline = timeout.map(|t| Instant::now() + t);
    let mut tls = None;
    let Some(upgrade) = read_upgrade(&mut sock, &mut tls, &timer, deadline, config)? else {
        return Err(Error::Handshake(HandshakeError::Upgrade));
    };
    match decide(&upgrade) {
        Ok(accept) => {
            let (tx, rx) = answer(sock, None, upgrade, &accept)?;
            Ok(WebSocket::from_halves(tx, rx))
        }
        Err(status) => {
            let mut out = Vec::new();
            upgrade.reject(status, &[], b"", &mut out)?;
            let _ = sock.write_all(&out);
            let _ = sock.shutdown(Shutdown::Write);
            Err(Error::Handshake(HandshakeError::Refused(status)))
        }
    }
}
