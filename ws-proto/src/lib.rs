//! RFC 6455 WebSocket as a sans-IO state machine: bytes in, events and bytes
//! out.
//!
//! This crate owns everything that is protocol: the opening handshake (both
//! sides), framing, masking, UTF-8 validation, fragmentation, control frames,
//! the closing handshake, limits, and the keepalive and close timers. It owns
//! no socket, reads no clock and spawns nothing: time (`now: Instant`) and
//! randomness (a seed) are inputs, so it embeds in any runtime (tokio, smol,
//! an epoll loop, a game engine) and tests run on a virtual clock.
//!
//! # The pieces
//!
//! 1. The opening handshake (RFC 6455 §4) is a typestate. A
//!    [`ClientHandshake`] writes the upgrade request and, fed the response,
//!    yields the [`Response`] (status, headers, chosen subprotocol) and a
//!    [`Connection`]. A [`ServerHandshake`], fed the request, yields an
//!    [`Incoming`]: an [`UpgradeRequest`] to [`accept`](UpgradeRequest::accept)
//!    or [`reject`](UpgradeRequest::reject), or a plain [`HttpRequest`] to
//!    answer, so one port serves pages and WebSockets. Bytes read past the
//!    HTTP head are handed to the connection, never lost.
//! 2. A [`Connection`] has four families of methods:
//!    - getters: [`role`](Connection::role), [`state`](Connection::state)
//!      (Open / Closing / Closed), [`config`](Connection::config),
//!      [`buffered_amount`](Connection::buffered_amount),
//!      [`is_finished`](Connection::is_finished);
//!    - inputs, which never fail (a peer fault becomes an event):
//!      [`handle_data`](Connection::handle_data) (or the zero-copy
//!      [`handle_bytes`](Connection::handle_bytes)),
//!      [`handle_eof`](Connection::handle_eof),
//!      [`handle_timeout`](Connection::handle_timeout) (spurious calls are
//!      no-ops);
//!    - commands, whose error means "nothing was queued":
//!      [`send_text`](Connection::send_text),
//!      [`send_binary`](Connection::send_binary), streaming
//!      [`send_chunk`](Connection::send_chunk), [`ping`](Connection::ping),
//!      [`pong`](Connection::pong), [`close`](Connection::close);
//!    - outputs: [`poll_event`](Connection::poll_event) (or
//!      [`poll_message`](Connection::poll_message)),
//!      [`poll_transmit`](Connection::poll_transmit),
//!      [`poll_timeout`](Connection::poll_timeout).
//! 3. [`Event`]s carry the message kind on every chunk and never expose
//!    continuation frames; text chunks are already valid UTF-8. An
//!    [`Assembler`] turns chunks into whole [`Message`]s; or take whole
//!    messages from [`poll_message`](Connection::poll_message), which
//!    builds a text message's `String` in the pass that validates it; or
//!    have them lent, without a copy when whole in the input, by
//!    [`poll_message_with`](Connection::poll_message_with), or by
//!    [`poll_message_reply`](Connection::poll_message_reply), whose
//!    closure may answer through a [`Reply`];
//!    [`handle_data_reply`](Connection::handle_data_reply) takes a read and
//!    lends the message that begins it from the caller's own buffer (not
//!    even copied into the connection), and
//!    [`handle_data_message`](Connection::handle_data_message) builds a
//!    small one from there.
//! 4. permessage-deflate (RFC 7692), behind the default-on `deflate` cargo
//!    feature, is part of the connection: set
//!    `Config::deflate` on either side and the handshakes negotiate
//!    it; compressed messages then come out of `poll_event` as ordinary
//!    chunks. See the `deflate` module for the parameters,
//!    the limits and the memory it costs.
//!
//! # The run loop
//!
//! **After any input or command: drain [`poll_event`](Connection::poll_event)
//! until `None` (events are parsed lazily, and one may queue a Pong or a
//! Close), then drain [`poll_transmit`](Connection::poll_transmit) and write
//! what it gives (on [`Transmit::Shutdown`], shut down the write side), then
//! arm a timer for [`poll_timeout`](Connection::poll_timeout).** Stop when
//! [`is_finished`](Connection::is_finished) is true. Whoever drains
//! `poll_transmit` writes those bytes before anyone drains again, so frames
//! are never reordered; frames queued by many commands leave in one batch.
//! A buffer `poll_transmit` filled can go back, once written, with
//! [`reuse_output`](Connection::reuse_output): large messages then reuse
//! one output buffer (the connection gives it back, as it does its grown
//! input buffer, once large messages have stopped for
//! [`Config::release_buffers_after`]; its timer is part of `poll_timeout`).
//!
//! An adapter is that loop around its transport. Here the transport is two
//! in-memory pipes between a client and a server, both driven by the crate;
//! the time comes in from the caller's clock (`now`), as it does in every
//! call that needs it:
//!
//! ```
//! use std::time::Instant;
//! use ws_proto::*;
//!
//! fn run_loop(now: Instant) -> Result<(), Box<dyn std::error::Error>> {
//! // Client: build the request (a real adapter writes it to the socket).
//! let request = ClientRequest::new("ws://example.com/chat")?.protocol("chat");
//! let mut client_hs = ClientHandshake::new(&request, Config::default(), [7; 32])?;
//!
//! // Server: feed the request bytes, accept, write the response.
//! let mut server_hs = ServerHandshake::new(Config::default());
//! let Some(Incoming::Upgrade(upgrade)) = server_hs.handle_data(client_hs.request())? else {
//!     panic!("a whole upgrade request was fed");
//! };
//! assert_eq!(upgrade.path(), "/chat");
//! let mut to_client = Vec::new();
//! let mut server = upgrade.accept(now, &Accept::new().protocol("chat"), &mut to_client)?;
//!
//! // Client: feed the response; get the response and the connection.
//! let (response, mut client) = client_hs.handle_data(now, &to_client)?.expect("whole response");
//! assert_eq!(response.protocol.as_deref(), Some("chat"));
//!
//! // The run loop, once around for each side.
//! fn pump(conn: &mut Connection, events: &mut Vec<Event>, wire: &mut Vec<u8>) {
//!     while let Some(event) = conn.poll_event() {
//!         events.push(event);
//!     }
//!     let mut buf = Vec::new();
//!     while let Transmit::Data(_) = conn.poll_transmit(&mut buf) {
//!         wire.extend_from_slice(&buf); // a real adapter writes to its socket
//!         buf.clear();
//!     }
//! }
//! let (mut client_events, mut server_events) = (Vec::new(), Vec::new());
//! let (mut c2s, mut s2c) = (Vec::new(), Vec::new());
//!
//! client.send_text("hello")?;
//! pump(&mut client, &mut client_events, &mut c2s);
//! server.handle_data(now, &std::mem::take(&mut c2s));
//! pump(&mut server, &mut server_events, &mut s2c);
//! assert_eq!(server_events, [Event::Text { data: "hello".into(), fin: true }]);
//!
//! // Closing handshake: the server answers the Close and shuts down first.
//! client.close(now, CloseCode::NORMAL, "bye")?;
//! pump(&mut client, &mut client_events, &mut c2s);
//! server.handle_data(now, &std::mem::take(&mut c2s));
//! pump(&mut server, &mut server_events, &mut s2c);
//! client.handle_data(now, &std::mem::take(&mut s2c));
//! pump(&mut client, &mut client_events, &mut c2s);
//! assert!(matches!(client_events.last(), Some(Event::Closed(info)) if info.is_clean()));
//! assert_eq!(server.state(), State::Closed);
//! Ok(())
//! }
//! ```
//!
//! # Errors say who is at fault
//!
//! - the peer: [`ProtocolError`], each with its close code (1002; 1007 for
//!   bad UTF-8; 1009 for size; 1008 for too many fragments). It is sticky:
//!   the Close frame is already queued and further input is ignored; it
//!   reaches the application inside [`Event::Closed`].
//! - local misuse: [`SendError`] from a command (nothing queued);
//!   [`BuildError`] while building a handshake.
//! - the handshake: [`HandshakeError`], with
//!   [`http_status`](HandshakeError::http_status) for a server to answer.
//!
//! I/O, TLS, URL resolution and proxy errors belong to the adapters.
//!
//! # Limits
//!
//! Every limit is a field of [`Config`] with a documented default:
//!
//! | limit | default | when passed |
//! |---|---|---|
//! | [`max_frame_size`](Config::max_frame_size) | 16 MiB | close 1009 |
//! | [`max_message_size`](Config::max_message_size) | 64 MiB | close 1009 |
//! | [`max_fragments`](Config::max_fragments) | 131 072 | close 1008 |
//! | [`read_chunk_size`](Config::read_chunk_size) | 64 KiB | a partial frame is handed out |
//! | [`max_head_size`](Config::max_head_size) | 16 KiB | HTTP 431 / handshake error |
//! | [`max_headers`](Config::max_headers) | 64 | HTTP 431 / handshake error |
//! | [`keepalive_interval`](Config::keepalive_interval) | off | a Ping is sent |
//! | [`keepalive_timeout`](Config::keepalive_timeout) | 30 s | close 1011 |
//! | [`close_timeout`](Config::close_timeout) | 10 s | closed with 1006 |
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod api;
pub mod assemble;
pub mod close;
pub mod config;
pub mod connection;
#[cfg(feature = "deflate")]
pub mod deflate;
pub mod error;
pub mod event;
pub mod frame;
pub mod handshake;
pub mod mask;
pub mod utf8;

pub use assemble::{Assembler, Message, MessageRef};
pub use close::CloseCode;
pub use config::Config;
pub use connection::{Connection, Reply, Role, State, Transmit, OWNED_MIN};
#[cfg(feature = "deflate")]
pub use deflate::{DeflateConfig, DeflateParams};
pub use error::{BuildError, ConnectionError, HandshakeError, ProtocolError, SendError};
pub use event::{CloseInfo, Event, Initiator, MessageKind};
pub use handshake::client::{ClientHandshake, ClientRequest, Response};
pub use handshake::http::Headers;
pub use handshake::server::{Accept, HttpRequest, Incoming, ServerHandshake, UpgradeRequest};
