//! Async WebSocket client and server on smol / async-io, built on the
//! sans-IO core `ws-proto`; TLS through futures-rustls.
//!
//! - [`connect`] / [`connect_with`]: a client with the options of the
//!   `@ohos.net.webSocket` API ([`ClientOptions`]: headers, subprotocols,
//!   CA file, client certificate, skip-verification, proxy, timeouts).
//! - [`WebSocket`]: generic over any `futures::AsyncRead + AsyncWrite`
//!   stream ([`WebSocket::handshake`] runs a client handshake over one), a
//!   [`Stream`](futures_core::Stream) of messages and a
//!   [`Sink`](futures_sink::Sink) of messages to send, splittable into a
//!   cloneable [`Sender`] and a [`Receiver`]. `recv()` and `send()` are
//!   cancel-safe: dropping their futures loses no byte and tears no frame.
//!   Keepalive and close timeouts come from ws-proto's timers, driven by
//!   `async_io::Timer`.
//!
//! - [`accept`] / [`accept_with`]: the server side of the handshake on a
//!   stream the application accepted itself (its own listener, TLS or
//!   routing), to a [`WebSocket`]; `accept_with` sees the request (path,
//!   headers, subprotocols) and accepts or refuses it.
//! - [`EventClient`]: the spec's event style: `on`/`off` callbacks for
//!   open, message, close, error, dataEnd and headerReceive.
//! - [`Server`]: the spec's `WebSocketServer` ([`ServerOptions`]: address,
//!   port, TLS, subprotocol, connection limits, handshake timeout), with
//!   events as a `Stream` and as on/off callbacks; send, list, close one,
//!   stop. Runs on smol's multi-threaded global executor, or on an
//!   executor of your own ([`Server::start_on`]), such as one thread that
//!   runs both the tasks and the I/O reactor. On Linux and Android its
//!   connections' sockets (plain or under TLS) are registered once, edge
//!   triggered, in an epoll instance per group of connections, which
//!   async-io waits for: no `epoll_ctl` per message, as async-io's
//!   one-shot registration needs.
//!
//! Errors are [`Error`], shared with `ws-blocking`, whose
//! [`code`](Error::code) is the spec's number.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod accept;
mod client;
#[cfg(any(target_os = "linux", target_os = "android"))]
mod edge;
mod events;
mod group;
mod server;
mod socket;

pub use accept::{accept, accept_with};
/// The owned byte buffer of binary messages (from the `bytes` crate).
pub use bytes::Bytes;
pub use client::{connect, connect_with, MaybeTls, WebSocket};
pub use events::EventClient;
pub use server::{Server, ServerHandle};
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
