//! Errors, split by who is at fault.
//!
//! - [`ProtocolError`]: the peer broke RFC 6455 or a configured limit. The
//!   connection has already queued the Close frame with [`ProtocolError::close_code`].
//! - [`SendError`]: local misuse of a [`Connection`](crate::Connection) command;
//!   nothing was queued.
//! - [`HandshakeError`]: the peer's opening handshake was unacceptable; on a
//!   server [`HandshakeError::http_status`] says what to answer.
//! - [`BuildError`]: local misuse while building a handshake (a bad URL, a header
//!   that would break the request, a subprotocol that was not offered).
//! - [`ConnectionError`]: why a connection ended other than by a clean closing
//!   handshake, carried by [`Event::Closed`](crate::Event::Closed).

use std::fmt;

use crate::close::CloseCode;
use crate::handshake::http::Headers;

/// The peer broke the protocol or one of our limits (RFC 6455 §5-§7).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A server received a frame without a mask: "The server MUST close the
    /// connection upon receiving a frame that is not masked." (§5.1)
    UnmaskedFrame,
    /// A client received a masked frame: "A client MUST close a connection if
    /// it detects a masked frame." (§5.1)
    MaskedFrame,
    /// RSV1-3 set without a negotiated extension that defines them (§5.2).
    ReservedBits(u8),
    /// Opcode 0x3-0x7 or 0xB-0xF (§5.2).
    ReservedOpcode(u8),
    /// The payload length was not encoded in the minimal number of bytes, or
    /// the most significant bit of a 64-bit length was set (§5.2).
    BadLength,
    /// A control frame with more than 125 bytes of payload (§5.5).
    ControlFrameTooLong(u64),
    /// A control frame without FIN: "Control frames themselves MUST NOT be
    /// fragmented." (§5.5)
    FragmentedControlFrame,
    /// A continuation frame with no message in progress (§5.4).
    UnexpectedContinuation,
    /// A new Text or Binary frame while a fragmented message was still in
    /// progress (§5.4).
    ExpectedContinuation,
    /// A Close frame with a one-byte payload (§5.5.1).
    BadClosePayload,
    /// A Close frame whose status code may not appear on the wire (§7.4).
    InvalidCloseCode(u16),
    /// Invalid UTF-8 in a text message or a close reason (§8.1), reported
    /// with close code 1007 as soon as the offending byte arrives.
    InvalidUtf8,
    /// A frame whose announced payload passes [`Config::max_frame_size`](crate::Config::max_frame_size).
    FrameTooLarge {
        /// The announced payload length.
        size: u64,
        /// The configured limit.
        max: u64,
    },
    /// A message whose size passes [`Config::max_message_size`](crate::Config::max_message_size).
    MessageTooLarge {
        /// The message size the offending frame would reach.
        size: u64,
        /// The configured limit.
        max: u64,
    },
    /// A message with more fragments than [`Config::max_fragments`](crate::Config::max_fragments).
    TooManyFragments {
        /// The configured limit.
        max: u32,
    },
    /// A compressed message (permessage-deflate) whose payload is not valid
    /// DEFLATE data; reported with 1007.
    BadCompressedData(String),
}

impl ProtocolError {
    /// The close code this error is reported to the peer with (§7.4.1).
    pub fn close_code(&self) -> CloseCode {
        match self {
            ProtocolError::InvalidUtf8 | ProtocolError::BadCompressedData(_) => {
                CloseCode::INVALID_PAYLOAD
            }
            ProtocolError::FrameTooLarge { .. } | ProtocolError::MessageTooLarge { .. } => {
                CloseCode::TOO_BIG
            }
            ProtocolError::TooManyFragments { .. } => CloseCode::POLICY,
            _ => CloseCode::PROTOCOL_ERROR,
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::UnmaskedFrame => f.write_str("client sent an unmasked frame"),
            ProtocolError::MaskedFrame => f.write_str("server sent a masked frame"),
            ProtocolError::ReservedBits(b) => write!(f, "reserved bits {b:#05b} set"),
            ProtocolError::ReservedOpcode(op) => write!(f, "reserved opcode {op:#x}"),
            ProtocolError::BadLength => f.write_str("payload length not minimally encoded"),
            ProtocolError::ControlFrameTooLong(n) => {
                write!(f, "control frame with {n} bytes of payload (max 125)")
            }
            ProtocolError::FragmentedControlFrame => f.write_str("fragmented control frame"),
            ProtocolError::UnexpectedContinuation => {
                f.write_str("continuation frame without a message in progress")
            }
            ProtocolError::ExpectedContinuation => {
                f.write_str("new data frame while a fragmented message is in progress")
            }
            ProtocolError::BadClosePayload => f.write_str("close frame with a one-byte payload"),
            ProtocolError::InvalidCloseCode(c) => write!(f, "invalid close code {c}"),
            ProtocolError::InvalidUtf8 => f.write_str("invalid UTF-8 in text"),
            ProtocolError::FrameTooLarge { size, max } => {
                write!(f, "frame of {size} bytes exceeds the limit of {max}")
            }
            ProtocolError::MessageTooLarge { size, max } => {
                write!(f, "message of {size} bytes exceeds the limit of {max}")
            }
            ProtocolError::TooManyFragments { max } => {
                write!(f, "message has more than {max} fragments")
            }
            ProtocolError::BadCompressedData(e) => write!(f, "invalid compressed data: {e}"),
        }
    }
}

impl std::error::Error for ProtocolError {}

/// Local misuse of a connection command. Nothing was queued.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendError {
    /// A Close has been sent or received: "After sending a Close frame, the
    /// application MUST NOT send any more data frames." (§5.5.1)
    Closing,
    /// The connection is closed.
    Closed,
    /// `send_text`/`send_binary` while a message started with `send_chunk`
    /// is unfinished; data frames of two messages cannot interleave (§5.4).
    MessageInProgress,
    /// `send_chunk` continued a message with the other kind.
    KindMismatch,
    /// A text chunk that is not UTF-8 (checked across chunks).
    InvalidUtf8,
    /// A text message ended in the middle of a UTF-8 sequence.
    IncompleteUtf8,
    /// A ping or pong payload over 125 bytes, or a close reason over 123
    /// bytes (§5.5).
    ControlPayloadTooLong(usize),
    /// A close code that may not be sent (1004-1006, 1015, outside
    /// 1000-4999, or 1016-2999).
    InvalidCloseCode(u16),
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Closing => f.write_str("the connection is closing"),
            SendError::Closed => f.write_str("the connection is closed"),
            SendError::MessageInProgress => f.write_str("a streamed message is unfinished"),
            SendError::KindMismatch => f.write_str("chunk kind differs from the message's"),
            SendError::InvalidUtf8 => f.write_str("text is not valid UTF-8"),
            SendError::IncompleteUtf8 => f.write_str("text ends inside a UTF-8 sequence"),
            SendError::ControlPayloadTooLong(n) => {
                write!(f, "control payload of {n} bytes is too long")
            }
            SendError::InvalidCloseCode(c) => write!(f, "close code {c} may not be sent"),
        }
    }
}

impl std::error::Error for SendError {}

/// Why a connection ended other than by a clean closing handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionError {
    /// The peer broke the protocol; we sent a Close with its code.
    Protocol(ProtocolError),
    /// Keepalive: nothing arrived within the timeout after our Ping. We sent
    /// a Close with 1011.
    KeepaliveTimeout,
    /// The peer did not answer our Close within the close timeout.
    CloseTimeout,
    /// The peer closed TCP (or the adapter reported end of input) without a
    /// closing handshake.
    Eof,
    /// Our permessage-deflate compressor failed in the middle of a streamed
    /// message (zlib reports this only for a corrupted state); we sent a
    /// Close with 1011.
    Compression(String),
}

impl fmt::Display for ConnectionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectionError::Protocol(e) => write!(f, "protocol error: {e}"),
            ConnectionError::KeepaliveTimeout => f.write_str("keepalive timeout"),
            ConnectionError::CloseTimeout => f.write_str("the peer did not answer our Close"),
            ConnectionError::Eof => f.write_str("connection closed without a closing handshake"),
            ConnectionError::Compression(e) => write!(f, "compressor failed: {e}"),
        }
    }
}

impl std::error::Error for ConnectionError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConnectionError::Protocol(e) => Some(e),
            _ => None,
        }
    }
}

/// The peer's opening handshake was unacceptable (RFC 6455 §4).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The HTTP head could not be parsed.
    Malformed(String),
    /// The HTTP head passed [`Config::max_head_size`](crate::Config::max_head_size).
    HeadTooLarge {
        /// The configured limit.
        max: usize,
    },
    /// The HTTP head has more than [`Config::max_headers`](crate::Config::max_headers) header lines.
    TooManyHeaders {
        /// The configured limit.
        max: usize,
    },
    /// The input ended before the HTTP head was complete.
    Incomplete,
    /// Server: an upgrade request whose method is not GET.
    Method(String),
    /// Server: the request is not HTTP/1.1.
    HttpVersion,
    /// Server: no Host header, or more than one.
    Host,
    /// The Upgrade header lacks the `websocket` token.
    Upgrade,
    /// The Connection header lacks the `Upgrade` token.
    Connection,
    /// Server: Sec-WebSocket-Version is missing or not 13. Answered with 426
    /// and `Sec-WebSocket-Version: 13` (§4.2.2).
    Version(Option<String>),
    /// Server: Sec-WebSocket-Key is missing, repeated, or does not decode to
    /// 16 bytes (§4.2.1).
    Key,
    /// Client: the server answered with a status other than 101. Carries what
    /// it said: status, reason, headers and the body read so far.
    Status {
        /// HTTP status code.
        status: u16,
        /// Reason phrase.
        reason: String,
        /// Response headers (boxed: inline, they would make every
        /// `HandshakeError`, and every adapter error that can hold one,
        /// 40 bytes larger, in each connection's state too).
        headers: Box<Headers>,
        /// Response body read so far (complete when Content-Length was given
        /// and at most `Config::max_error_body`).
        body: Vec<u8>,
    },
    /// Client: Sec-WebSocket-Accept is missing or wrong (§4.1).
    Accept,
    /// Client: the server chose a subprotocol the client did not offer.
    Protocol(String),
    /// Client: the server answered with an extension the client did not
    /// offer.
    Extension(String),
    /// Server: the application refused the upgrade request, answering it
    /// with this status (an adapter's `accept_with`).
    Refused(u16),
}

impl HandshakeError {
    /// The HTTP status a server answers this error with, or `None` for errors
    /// that only a client meets.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            HandshakeError::Malformed(_)
            | HandshakeError::Host
            | HandshakeError::Upgrade
            | HandshakeError::Connection
            | HandshakeError::Key
            | HandshakeError::Incomplete => Some(400),
            HandshakeError::HeadTooLarge { .. } | HandshakeError::TooManyHeaders { .. } => {
                Some(431)
            }
            HandshakeError::Method(_) => Some(405),
            HandshakeError::HttpVersion => Some(505),
            HandshakeError::Version(_) => Some(426),
            HandshakeError::Refused(status) => Some(*status),
            HandshakeError::Status { .. }
            | HandshakeError::Accept
            | HandshakeError::Protocol(_)
            | HandshakeError::Extension(_) => None,
        }
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::Malformed(m) => write!(f, "malformed HTTP head: {m}"),
            HandshakeError::HeadTooLarge { max } => write!(f, "HTTP head exceeds {max} bytes"),
            HandshakeError::TooManyHeaders { max } => write!(f, "more than {max} headers"),
            HandshakeError::Incomplete => f.write_str("input ended inside the HTTP head"),
            HandshakeError::Method(m) => write!(f, "method {m} is not GET"),
            HandshakeError::HttpVersion => f.write_str("request is not HTTP/1.1"),
            HandshakeError::Host => f.write_str("missing or repeated Host header"),
            HandshakeError::Upgrade => f.write_str("Upgrade header lacks `websocket`"),
            HandshakeError::Connection => f.write_str("Connection header lacks `Upgrade`"),
            HandshakeError::Version(v) => match v {
                Some(v) => write!(f, "unsupported Sec-WebSocket-Version {v:?}"),
                None => f.write_str("missing Sec-WebSocket-Version"),
            },
            HandshakeError::Key => f.write_str("missing or invalid Sec-WebSocket-Key"),
            HandshakeError::Status { status, reason, .. } => {
                write!(f, "server answered {status} {reason}")
            }
            HandshakeError::Accept => f.write_str("missing or wrong Sec-WebSocket-Accept"),
            HandshakeError::Protocol(p) => write!(f, "server chose unoffered subprotocol {p:?}"),
            HandshakeError::Extension(e) => write!(f, "unacceptable extension response: {e}"),
            HandshakeError::Refused(status) => write!(f, "refused the request with {status}"),
        }
    }
}

impl std::error::Error for HandshakeError {}

/// Local misuse while building a handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BuildError {
    /// The URL does not parse, is not `ws://` or `wss://`, has no host, or
    /// has a fragment (§3: "Fragment identifiers are meaningless in the
    /// context of WebSocket URIs and MUST NOT be used").
    Url(String),
    /// A header name that is not an HTTP token, a value with CR, LF or NUL,
    /// or a header this library manages itself (Host, Upgrade, Connection,
    /// Sec-WebSocket-*).
    Header(String),
    /// A subprotocol name that is not an HTTP token, or (server) one the
    /// client did not offer.
    Protocol(String),
    /// An HTTP status outside 100-999, or 101 used to reject.
    Status(u16),
    /// A permessage-deflate setting out of range (level 0-9, window bits
    /// 8-15).
    Deflate(String),
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::Url(m) => write!(f, "invalid WebSocket URL: {m}"),
            BuildError::Header(m) => write!(f, "invalid header: {m}"),
            BuildError::Protocol(p) => write!(f, "invalid subprotocol {p:?}"),
            BuildError::Deflate(m) => write!(f, "invalid permessage-deflate setting: {m}"),
            BuildError::Status(s) => write!(f, "invalid HTTP status {s}"),
        }
    }
}

impl std::error::Error for BuildError {}
