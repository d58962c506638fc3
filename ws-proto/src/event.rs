//! What a [`Connection`](crate::Connection) reports to the application.

use bytes::Bytes;

use crate::close::CloseCode;
use crate::error::ConnectionError;

/// The kind of a data message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageKind {
    /// UTF-8 text.
    Text,
    /// Binary data.
    Binary,
}

/// Which side started the close.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Initiator {
    /// We did: the application called `close`, or we failed the connection
    /// (protocol error, keepalive timeout).
    Local,
    /// The peer did: it sent a Close first, or it dropped TCP.
    Remote,
}

/// How a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseInfo {
    /// The status code. After a closing handshake it is the code in the
    /// peer's Close frame ([`CloseCode::NO_STATUS`] (1005) if it had none).
    /// When we failed the connection it is the code we sent (1002, 1007,
    /// 1009, 1008, 1011); without any Close frame it is
    /// [`CloseCode::ABNORMAL`] (1006).
    pub code: CloseCode,
    /// The reason from the same Close frame (empty if none).
    pub reason: String,
    /// Who started the close.
    pub initiator: Initiator,
    /// Why the connection ended abnormally; `None` after a clean closing
    /// handshake.
    pub error: Option<ConnectionError>,
}

impl CloseInfo {
    /// Whether the closing handshake completed: both Close frames were
    /// exchanged and nothing failed.
    pub fn is_clean(&self) -> bool {
        self.error.is_none()
    }
}

/// One event out of [`Connection::poll_event`](crate::Connection::poll_event).
///
/// Data arrives as chunks that carry their message kind; continuation frames
/// are never exposed. A message is every chunk up to and including the one
/// with `fin: true`. How a message is cut into chunks depends on how the bytes
/// arrived; the concatenation does not. Use [`Assembler`](crate::Assembler)
/// for whole messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A piece of a text message. `data` is valid UTF-8 on its own: a code
    /// point split across frames or reads is handed out whole, in the later
    /// chunk.
    Text {
        /// The bytes (UTF-8).
        data: Bytes,
        /// Whether this chunk ends the message.
        fin: bool,
    },
    /// A piece of a binary message.
    Binary {
        /// The bytes.
        data: Bytes,
        /// Whether this chunk ends the message.
        fin: bool,
    },
    /// A Ping arrived; the Pong is already queued ("Upon receipt of a Ping
    /// frame, an endpoint MUST send a Pong frame in response", §5.5.2).
    Ping(Bytes),
    /// A Pong arrived.
    Pong(Bytes),
    /// The connection is closed: the last event, reported exactly once.
    Closed(CloseInfo),
}
