//! Blocking WebSocket client and server on `std::net` and threads, built on
//! the sans-IO core `ws-proto`.
//!
//! - [`WebSocket`]: a client. [`WebSocket::connect_with`] takes the options
//!   of the `@ohos.net.webSocket` API ([`ClientOptions`]: headers,
//!   subprotocols, proxy, timeouts). Receive on one thread while others send
//!   through [`Sender`] clones: frames never interleave.
//! - [`accept`] / [`accept_with`]: the server side of the handshake on a
//!   `TcpStream` the application accepted itself, to a [`WebSocket`];
//!   `accept_with` sees the request (path, headers, subprotocols) and
//!   accepts or refuses it.
//! - [`EventClient`]: the spec's event style: `on`/`off` callbacks for
//!   open, message, close, error, dataEnd and headerReceive.
//! - [`Server`]: the spec's `WebSocketServer` ([`ServerOptions`]: address,
//!   port, subprotocol, connection limits, handshake timeout), with events as
//!   a blocking iterator or as on/off callbacks, send, list, close one, stop.
//!
//! Errors are [`Error`], whose [`code`](Error::code) is the spec's number.
//!
//! ```no_run
//! use ws_blocking::{Message, WebSocket};
//! let mut ws = WebSocket::connect("ws://127.0.0.1:9001/")?;
//! ws.send_text("hello")?;
//! if let Message::Text(t) = ws.recv()? {
//!     println!("{t}");
//! }
//! ws.close_and_wait(ws_blocking::CloseCode::NORMAL, "")?;
//! # Ok::<(), ws_blocking::Error>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod accept;
mod client;
mod events;
mod server;
mod socket;

pub use accept::{accept, accept_with};
pub use bytes::Bytes;
pub use client::WebSocket;
pub use events::EventClient;
pub use server::{Events, Server, ServerHandle};
pub use socket::{Receiver, Sender};
pub use ws_proto::api::{
    CallbackId, ClientCert, ClientConnection, ClientEvent, ClientEventKind, ClientOptions, Error,
    ErrorCode, HttpProxy, Proxy, ServerCert, ServerEvent, ServerEventKind, ServerOptions,
};
pub use ws_proto::{
    Accept, CloseCode, CloseInfo, Config, Event, HandshakeError, Headers, Message, MessageKind,
    MessageRef, Reply, Response, State, UpgradeRequest,
};
#[cfg(feature = "deflate")]
pub use ws_proto::{DeflateConfig, DeflateParams};
