//! The server side of the opening handshake over a stream the application
//! accepted itself: [`accept`] and [`accept_with`] (what
//! `tokio-tungstenite::accept_async` and `accept_hdr_async` are to tokio).
//! [`Server`](crate::Server) runs the same handshake for its connections.

use std::any::{Any, TypeId};
use std::io;
use std::net::TcpStream;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use async_io::Async;
use futures_io::{AsyncRead, AsyncWrite};
use futures_lite::AsyncWriteExt;
use ws_proto::api::Error;
use ws_proto::{Accept, Config, HandshakeError, Incoming, ServerHandshake, UpgradeRequest};

use crate::client::{read_until, MaybeTls, WebSocket};
use crate::socket::ReadReady;

/// Reads the opening request from `stream`. An upgrade request comes back
/// with whether the last read drained the stream (see `halves`); anything
/// else is answered here: a malformed or unacceptable request with its
/// status (400, 405, 426, 431, 505) and an error, an ordinary HTTP request
/// with 426 and `None`.
pub(crate) async fn read_upgrade<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    config: Arc<Config>,
) -> Result<Option<(Box<UpgradeRequest>, bool)>, Error> {
    let mut hs = ServerHandshake::new(config);
    let incoming = read_until(stream, |data| match data {
        Some(d) => hs.handle_data(d).map_err(Error::from),
        None => Err(Error::Handshake(hs.handle_eof())),
    })
    .await;
    match incoming {
        Ok((Incoming::Upgrade(u), drained)) => Ok(Some((u, drained))),
        Ok((Incoming::Http(req), _)) => {
            let mut out = Vec::new();
            req.respond_websocket_only(&mut out);
            let _ = stream.write_all(&out).await;
            let _ = stream.close().await;
            Ok(None)
        }
        Err(e) => {
            if let Error::Handshake(h) = &e {
                let mut out = Vec::new();
                h.write_response(&mut out);
                let _ = stream.write_all(&out).await;
                let _ = stream.close().await;
            }
            Err(e)
        }
    }
}

/// Answers `upgrade` with 101 as `accept` says and writes the answer; the
/// connection with the stream.
pub(crate) async fn answer<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    upgrade: Box<UpgradeRequest>,
    accept: &Accept,
    drained: bool,
) -> Result<WebSocket<S>, Error> {
    let mut out = Vec::new();
    let conn = upgrade.accept(Instant::now(), accept, &mut out)?;
    stream.write_all(&out).await.map_err(Error::from_stream)?;
    stream.flush().await.map_err(Error::from_stream)?;
    Ok(WebSocket::from_parts(conn, stream, drained))
}

/// Runs the server side of the opening handshake on an accepted stream
/// (plain TCP, TLS, a Unix socket...) with default [`Config`] limits and
/// no subprotocol; see [`accept_with`].
pub async fn accept<S>(stream: S) -> Result<WebSocket<S>, Error>
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    accept_with(stream, Config::shared_default(), |_| Ok(Accept::new())).await
}

/// Runs the server side of the opening handshake on an accepted stream:
/// reads the client's request (within `config`'s head limits), lets
/// `decide` look at it (path, query, headers, `Origin`, the offered
/// subprotocols) and either accept it, choosing a subprotocol and extra
/// response headers with [`Accept`], or refuse it with an HTTP status.
///
/// Errors: a request that is not a valid upgrade is answered with its
/// status (400, 405, 426, 431 or 505) and returned as
/// [`Error::Handshake`]; an ordinary HTTP request gets 426 and
/// [`HandshakeError::Upgrade`]; a refusal is sent with the status and an
/// empty body and returned as [`HandshakeError::Refused`].
///
/// The time a client may take is the caller's to bound (wrap the future
/// in a timeout); [`Server`](crate::Server) applies its
/// `handshake_timeout`. A plain TCP stream (`Async<TcpStream>`, or
/// [`MaybeTls::Plain`]) gets the receive path that waits for readability
/// instead of reading an empty socket.
///
/// The future holds the arguments and a pointer: the handshake's state
/// (the parser, its buffer, the request: about a kilobyte) lives on the
/// heap while it lasts, since a task that awaits this keeps room for it as
/// long as the task lives.
///
/// `config` may be a `Config` or an `Arc<Config>`: connections accepted
/// with clones of one `Arc` share it (a pointer each, where a `Config` of
/// their own is 144 bytes with permessage-deflate built in).
pub async fn accept_with<S, F, C>(stream: S, config: C, decide: F) -> Result<WebSocket<S>, Error>
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
    F: FnOnce(&UpgradeRequest) -> Result<Accept, u16>,
    C: Into<Arc<Config>>,
{
    Box::pin(accept_boxed(stream, config.into(), decide)).await
}

/// [`accept_with`]'s work, whose state is boxed there.
async fn accept_boxed<S, F>(
    mut stream: S,
    config: Arc<Config>,
    decide: F,
) -> Result<WebSocket<S>, Error>
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
    F: FnOnce(&UpgradeRequest) -> Result<Accept, u16>,
{
    let Some((upgrade, drained)) = read_upgrade(&mut stream, config).await? else {
        return Err(Error::Handshake(HandshakeError::Upgrade));
    };
    match decide(&upgrade) {
        Ok(accept) => {
            let ws = answer(stream, upgrade, &accept, drained).await?;
            if let Some(ready) = plain_tcp_ready::<S>() {
                ws.sender().set_read_ready(ready);
            }
            Ok(ws)
        }
        Err(status) => {
            let mut out = Vec::new();
            upgrade.reject(status, &[], b"", &mut out)?;
            let _ = stream.write_all(&out).await;
            let _ = stream.close().await;
            Err(Error::Handshake(HandshakeError::Refused(status)))
        }
    }
}

/// The readiness wait for the stream types known to be plain TCP sockets:
/// `Async<TcpStream>` and [`MaybeTls`] (whose TLS variants are always
/// ready: the session may hold decrypted bytes).
fn plain_tcp_ready<S: 'static>() -> Option<ReadReady<S>> {
    fn poll<S: 'static>(s: &S, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let s: &dyn Any = s;
        if let Some(m) = s.downcast_ref::<MaybeTls>() {
            m.poll_read_ready(cx)
        } else if let Some(t) = s.downcast_ref::<Async<TcpStream>>() {
            t.poll_readable(cx)
        } else {
            Poll::Ready(Ok(()))
        }
    }
    let id = TypeId::of::<S>();
    (id == TypeId::of::<MaybeTls>() || id == TypeId::of::<Async<TcpStream>>()).then_some(poll::<S>)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_tcp_streams_wait_for_readiness() {
        assert!(plain_tcp_ready::<Async<TcpStream>>().is_some());
        assert!(plain_tcp_ready::<MaybeTls>().is_some());
        assert!(plain_tcp_ready::<futures_lite::io::Cursor<Vec<u8>>>().is_none());
    }
}
