//! The adapters' error type and the spec's numeric error codes.

use std::fmt;
use std::io;

use crate::api::proxy::ProxyError;
use crate::error::{BuildError, ConnectionError, HandshakeError, SendError};

/// The numeric error codes of the `@ohos.net.webSocket` API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// 401: parameter error.
    InvalidParameter,
    /// 2302001: WebSocket URL error.
    UrlError,
    /// 2302002: certificate file does not exist.
    CertFileMissing,
    /// 2302003: the WebSocket connection already exists.
    AlreadyConnected,
    /// 2302004: cannot listen on the address.
    ListenAddress,
    /// 2302005: cannot listen on the port.
    ListenPort,
    /// 2302006: the connection does not exist.
    NoSuchConnection,
    /// 2302999: internal (other) error.
    Internal,
}

impl ErrorCode {
    /// The number.
    pub fn code(self) -> u32 {
        match self {
            ErrorCode::InvalidParameter => 401,
            ErrorCode::UrlError => 2_302_001,
            ErrorCode::CertFileMissing => 2_302_002,
            ErrorCode::AlreadyConnected => 2_302_003,
            ErrorCode::ListenAddress => 2_302_004,
            ErrorCode::ListenPort => 2_302_005,
            ErrorCode::NoSuchConnection => 2_302_006,
            ErrorCode::Internal => 2_302_999,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.code().fmt(f)
    }
}

/// Everything that can go wrong in an adapter, with its cause.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A bad URL: unparsable, not `ws`/`wss`, longer than
    /// [`MAX_URL_LEN`](crate::api::MAX_URL_LEN), a fragment. Found before
    /// any I/O.
    Url(String),
    /// An invalid argument: a header that would break the request, an
    /// invalid subprotocol name, a close code that may not be sent.
    InvalidParameter(String),
    /// A certificate or key file is missing or unreadable.
    CertFile {
        /// The file.
        path: std::path::PathBuf,
        /// Why it could not be used.
        source: io::Error,
    },
    /// A certificate or key could not be used (bad PEM, wrong password, a
    /// key that does not match).
    Certificate(String),
    /// `connect` on a client that is already connected.
    AlreadyConnected,
    /// The server cannot listen on the address.
    ListenAddress(io::Error),
    /// The server cannot listen on the port (in use, or no permission).
    ListenPort(io::Error),
    /// No connection with that id (closed, or never there).
    NoSuchConnection,
    /// A server refused a connection over its limits, answering `status`
    /// (503: too many clients; 429: too many from one address).
    Refused {
        /// The client.
        peer: std::net::SocketAddr,
        /// The HTTP status it was answered.
        status: u16,
    },
    /// A socket error.
    Io(io::Error),
    /// The TLS handshake or session failed (including an untrusted
    /// certificate or a wrong host name).
    Tls(String),
    /// The proxy refused or botched the tunnel.
    Proxy(ProxyError),
    /// The opening handshake failed (for a non-101 answer, what the server
    /// said is inside).
    Handshake(HandshakeError),
    /// A command was refused (see [`SendError`]).
    Send(SendError),
    /// The connection failed after the handshake: the peer broke the
    /// protocol, a keepalive or close timeout, TCP closed without a Close.
    Connection(ConnectionError),
    /// Connecting or the handshake took longer than allowed.
    Timeout,
    /// The connection is closed.
    Closed,
    /// A server's handle was asked to send, or to look at a connection,
    /// from inside a callback that is lent a message (`on_message_lent`).
    /// That callback runs while its connection is locked: waiting there
    /// for another connection's lock could deadlock with that
    /// connection's own lent callback. Answer through the callback's
    /// `Reply`, or send from an owned callback (`on`).
    InLentCallback,
}

impl Error {
    /// The spec's numeric code.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::Url(_) => ErrorCode::UrlError,
            Error::InvalidParameter(_) | Error::Send(SendError::InvalidCloseCode(_)) => {
                ErrorCode::InvalidParameter
            }
            Error::Send(SendError::ControlPayloadTooLong(_)) => ErrorCode::InvalidParameter,
            Error::CertFile { .. } => ErrorCode::CertFileMissing,
            Error::AlreadyConnected => ErrorCode::AlreadyConnected,
            Error::ListenAddress(_) => ErrorCode::ListenAddress,
            Error::ListenPort(_) => ErrorCode::ListenPort,
            Error::NoSuchConnection => ErrorCode::NoSuchConnection,
            _ => ErrorCode::Internal,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Url(m) => write!(f, "invalid URL: {m}"),
            Error::InvalidParameter(m) => write!(f, "invalid parameter: {m}"),
            Error::CertFile { path, source } => {
                write!(f, "certificate file {}: {source}", path.display())
            }
            Error::Certificate(m) => write!(f, "certificate error: {m}"),
            Error::AlreadyConnected => f.write_str("already connected"),
            Error::ListenAddress(e) => write!(f, "cannot listen on the address: {e}"),
            Error::ListenPort(e) => write!(f, "cannot listen on the port: {e}"),
            Error::NoSuchConnection => f.write_str("no such connection"),
            Error::Refused { peer, status } => {
                write!(f, "refused {peer} with {status} (over a limit)")
            }
            Error::Io(e) => write!(f, "I/O error: {e}"),
            Error::Tls(m) => write!(f, "TLS error: {m}"),
            Error::Proxy(e) => write!(f, "proxy error: {e}"),
            Error::Handshake(e) => write!(f, "handshake failed: {e}"),
            Error::Send(e) => write!(f, "{e}"),
            Error::Connection(e) => write!(f, "connection failed: {e}"),
            Error::Timeout => f.write_str("timed out"),
            Error::Closed => f.write_str("the connection is closed"),
            Error::InLentCallback => f.write_str(
                "a server's handle was used inside a lent message callback; \
                 answer through its Reply, or use an owned callback",
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::CertFile { source, .. } => Some(source),
            Error::ListenAddress(e) | Error::ListenPort(e) | Error::Io(e) => Some(e),
            Error::Proxy(e) => Some(e),
            Error::Handshake(e) => Some(e),
            Error::Send(e) => Some(e),
            Error::Connection(e) => Some(e),
            _ => None,
        }
    }
}

fn copy_io(e: &io::Error) -> io::Error {
    io::Error::new(e.kind(), e.to_string())
}

/// A copy; an `io::Error` inside is copied as its kind and message.
impl Clone for Error {
    fn clone(&self) -> Self {
        match self {
            Error::Url(m) => Error::Url(m.clone()),
            Error::InvalidParameter(m) => Error::InvalidParameter(m.clone()),
            Error::CertFile { path, source } => Error::CertFile {
                path: path.clone(),
                source: copy_io(source),
            },
            Error::Certificate(m) => Error::Certificate(m.clone()),
            Error::AlreadyConnected => Error::AlreadyConnected,
            Error::ListenAddress(e) => Error::ListenAddress(copy_io(e)),
            Error::ListenPort(e) => Error::ListenPort(copy_io(e)),
            Error::NoSuchConnection => Error::NoSuchConnection,
            Error::Refused { peer, status } => Error::Refused {
                peer: *peer,
                status: *status,
            },
            Error::Io(e) => Error::Io(copy_io(e)),
            Error::Tls(m) => Error::Tls(m.clone()),
            Error::Proxy(e) => Error::Proxy(e.clone()),
            Error::Handshake(e) => Error::Handshake(e.clone()),
            Error::Send(e) => Error::Send(e.clone()),
            Error::Connection(e) => Error::Connection(e.clone()),
            Error::Timeout => Error::Timeout,
            Error::Closed => Error::Closed,
            Error::InLentCallback => Error::InLentCallback,
        }
    }
}

impl Error {
    /// An I/O error from a stream that may be TLS: rustls reports TLS
    /// failures (an untrusted certificate, a wrong host name, an alert) as
    /// `InvalidData`, which becomes [`Error::Tls`]; a timeout becomes
    /// [`Error::Timeout`].
    pub fn from_stream(e: io::Error) -> Error {
        match e.kind() {
            io::ErrorKind::InvalidData => Error::Tls(e.to_string()),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Error::Timeout,
            _ => Error::Io(e),
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::TimedOut {
            Error::Timeout
        } else {
            Error::Io(e)
        }
    }
}

impl From<HandshakeError> for Error {
    fn from(e: HandshakeError) -> Self {
        Error::Handshake(e)
    }
}

impl From<SendError> for Error {
    fn from(e: SendError) -> Self {
        match e {
            SendError::Closed => Error::Closed,
            other => Error::Send(other),
        }
    }
}

impl From<ProxyError> for Error {
    fn from(e: ProxyError) -> Self {
        Error::Proxy(e)
    }
}

impl From<BuildError> for Error {
    fn from(e: BuildError) -> Self {
        match e {
            BuildError::Url(m) => Error::Url(m),
            other => Error::InvalidParameter(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_the_spec() {
        let cases = [
            (Error::Url("x".into()), 2_302_001),
            (
                Error::CertFile {
                    path: "a.pem".into(),
                    source: io::Error::from(io::ErrorKind::NotFound),
                },
                2_302_002,
            ),
            (Error::AlreadyConnected, 2_302_003),
            (
                Error::ListenAddress(io::ErrorKind::AddrNotAvailable.into()),
                2_302_004,
            ),
            (
                Error::ListenPort(io::ErrorKind::AddrInUse.into()),
                2_302_005,
            ),
            (Error::NoSuchConnection, 2_302_006),
            (Error::Timeout, 2_302_999),
            (Error::InvalidParameter("h".into()), 401),
            (Error::from(SendError::InvalidCloseCode(1005)), 401),
            (Error::from(BuildError::Url("u".into())), 2_302_001),
            (Error::from(BuildError::Header("h".into())), 401),
        ];
        for (e, code) in cases {
            assert_eq!(e.code().code(), code, "{e}");
        }
        assert_eq!(
            Error::from(io::Error::from(io::ErrorKind::TimedOut)).code(),
            ErrorCode::Internal
        );
        assert!(matches!(Error::from(SendError::Closed), Error::Closed));
    }
}
