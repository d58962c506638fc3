//! The opening handshake (RFC 6455 §4) as a typestate.
//!
//! - Client: [`ClientHandshake::new`](client::ClientHandshake::new) builds the
//!   upgrade request from a [`ClientRequest`](client::ClientRequest); write
//!   [`request()`](client::ClientHandshake::request) to the transport, then
//!   feed the response bytes to
//!   [`handle_data`](client::ClientHandshake::handle_data) until it yields the
//!   [`Response`](client::Response) and a [`Connection`](crate::Connection).
//! - Server: feed request bytes to
//!   [`ServerHandshake::handle_data`](server::ServerHandshake::handle_data)
//!   until it yields an [`Incoming`](server::Incoming): an upgrade request to
//!   accept or reject, or a plain HTTP request to answer. A handshake error
//!   knows the HTTP answer:
//!   [`HandshakeError::write_response`](crate::HandshakeError::write_response).
//!
//! Both sides parse with `httparse`, only once the whole head has arrived
//! (found by scanning new bytes only, so a byte-at-a-time peer costs linear
//! time), and within [`Config::max_head_size`](crate::Config::max_head_size)
//! and [`Config::max_headers`](crate::Config::max_headers). Bytes that follow
//! the head belong to the WebSocket connection and are handed to it.

pub mod client;
pub mod extensions;
pub mod http;
pub mod server;
