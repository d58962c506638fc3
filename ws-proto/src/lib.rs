//! RFC 6455 WebSocket as a sans-IO state machine.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod assemble;
pub mod close;
pub mod config;
pub mod connection;
pub mod error;
pub mod event;
pub mod frame;
pub mod handshake;
pub mod mask;
pub mod utf8;

pub use assemble::{Assembler, Message};
pub use close::CloseCode;
pub use config::Config;
pub use connection::{Connection, Role, State, Transmit};
pub use error::{BuildError, ConnectionError, HandshakeError, ProtocolError, SendError};
pub use event::{CloseInfo, Event, Initiator, MessageKind};
// TMP pub use handshake::client::{ClientHandshake, ClientRequest, Response};
pub use handshake::http::Headers;
// TMP pub use handshake::server::{Accept, HttpRequest, Incoming, ServerHandshake, UpgradeRequest};
