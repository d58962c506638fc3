//! The events of the spec's callback APIs, shared by both adapters.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::assemble::{Message, MessageRef};
use crate::close::CloseCode;
use crate::connection::Reply;
use crate::event::{CloseInfo, Event};
use crate::handshake::http::Headers;

use super::{Error, Registry, View};

/// The kinds of [`ClientEvent`], for the adapters' `EventClient::on` / `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientEventKind {
    /// [`ClientEvent::Open`].
    Open,
    /// [`ClientEvent::Message`].
    Message,
    /// [`ClientEvent::Close`].
    Close,
    /// [`ClientEvent::Error`].
    Error,
    /// [`ClientEvent::DataEnd`].
    DataEnd,
    /// [`ClientEvent::HeaderReceive`].
    HeaderReceive,
}

/// An event of an adapter's `EventClient` (the spec's client events).
#[derive(Debug, Clone)]
pub enum ClientEvent {
    /// The connection is open (`open`): the handshake's status and reason.
    Open {
        /// HTTP status (101).
        status: u16,
        /// Reason phrase.
        reason: String,
    },
    /// The handshake response's headers (`headerReceive`), before `Open`.
    HeaderReceive(Headers),
    /// A piece of a message (`message`): [`Message::Text`] (valid UTF-8 on
    /// its own) or [`Message::Binary`]. A large message arrives in several
    /// pieces; [`ClientEvent::DataEnd`] follows its last piece.
    Message(Message),
    /// The message whose pieces came before is complete (`dataEnd`).
    DataEnd,
    /// The connection closed (`close`): code and reason.
    Close {
        /// Close code (1005: none given; 1006: no closing handshake).
        code: CloseCode,
        /// Reason.
        reason: String,
    },
    /// Something failed (`error`).
    Error(Arc<Error>),
}

impl ClientEvent {
    /// This event's kind.
    pub fn kind(&self) -> ClientEventKind {
        match self {
            ClientEvent::Open { .. } => ClientEventKind::Open,
            ClientEvent::HeaderReceive(_) => ClientEventKind::HeaderReceive,
            ClientEvent::Message(_) => ClientEventKind::Message,
            ClientEvent::DataEnd => ClientEventKind::DataEnd,
            ClientEvent::Close { .. } => ClientEventKind::Close,
            ClientEvent::Error(_) => ClientEventKind::Error,
        }
    }
}

/// One client connection of a server (`WebSocketConnection`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientConnection {
    /// Unique per server, in accept order.
    pub id: u64,
    /// The client's address and port.
    pub addr: SocketAddr,
}

/// What happens on a server.
#[derive(Debug, Clone)]
pub enum ServerEvent {
    /// A client completed the opening handshake (`connect`).
    Connect(ClientConnection),
    /// A whole message arrived (`messageReceive`): text or binary.
    Message(ClientConnection, Message),
    /// A connection ended (`close`): code and reason.
    Close(ClientConnection, CloseCode, String),
    /// Something failed (`error`): a refused or failed handshake, a
    /// connection error. The connection is `None` before the handshake.
    Error(Option<ClientConnection>, Arc<Error>),
}

/// The kinds of [`ServerEvent`], for the adapters' `Server::on` / `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServerEventKind {
    /// [`ServerEvent::Connect`].
    Connect,
    /// [`ServerEvent::Message`].
    MessageReceive,
    /// [`ServerEvent::Close`].
    Close,
    /// [`ServerEvent::Error`].
    Error,
}

impl ServerEvent {
    /// This event's kind.
    pub fn kind(&self) -> ServerEventKind {
        match self {
            ServerEvent::Connect(_) => ServerEventKind::Connect,
            ServerEvent::Message(..) => ServerEventKind::MessageReceive,
            ServerEvent::Close(..) => ServerEventKind::Close,
            ServerEvent::Error(..) => ServerEventKind::Error,
        }
    }
}

impl ClientEvent {
    /// The spec's events for one connection event: a message piece (with
    /// `DataEnd` after a message's last piece), or the close (after an
    /// `Error` when the connection ended abnormally). Pings and pongs have
    /// none.
    pub fn from_event(event: Event) -> Vec<ClientEvent> {
        match event {
            Event::Text { data, fin } => {
                // Text chunks are valid UTF-8 on their own.
                let text = String::from_utf8_lossy(&data).into_owned();
                let mut v = vec![ClientEvent::Message(Message::Text(text))];
                if fin {
                    v.push(ClientEvent::DataEnd);
                }
                v
            }
            Event::Binary { data, fin } => {
                let mut v = vec![ClientEvent::Message(Message::Binary(data))];
                if fin {
                    v.push(ClientEvent::DataEnd);
                }
                v
            }
            Event::Closed(info) => {
                let mut v = Vec::new();
                if let Some(e) = info.error {
                    v.push(ClientEvent::Error(Arc::new(Error::Connection(e))));
                }
                v.push(ClientEvent::Close {
                    code: info.code,
                    reason: info.reason,
                });
                v
            }
            Event::Ping(_) | Event::Pong(_) => Vec::new(),
        }
    }
}

/// What a server connection's receive gives its owned callbacks and its
/// events stream ([`lend_received`], [`owned_received`]).
#[derive(Debug)]
pub enum Received {
    /// A text or binary message, owned.
    Message(Message),
    /// The connection closed.
    Closed(CloseInfo),
    /// A Ping or Pong, or a message that only lent callbacks wanted.
    Nothing,
}

/// A server's receive while lent callbacks are registered (see
/// [`Registry::on_lent`](super::Registry::on_lent)), as the closure of a
/// lending receive: a text or binary message is lent to them with the
/// connection's `reply`; an owned copy is made only if an owned callback
/// wants it, or `events` is set (an events stream is open; read when the
/// message is there, not when the receive began).
pub fn lend_received(
    view: &mut View<ServerEventKind, ServerEvent>,
    registry: &Registry<ServerEventKind, ServerEvent>,
    conn: &ClientConnection,
    m: MessageRef<'_>,
    reply: &mut Reply<'_>,
    events: &AtomicBool,
) -> Received {
    match m {
        MessageRef::Text(_) | MessageRef::Binary(_) => {
            let kind = ServerEventKind::MessageReceive;
            let owned = view.emit_lent(registry, kind, conn, m, reply);
            if owned || events.load(Ordering::Acquire) {
                Received::Message(m.to_message())
            } else {
                Received::Nothing
            }
        }
        MessageRef::Closed(c) => Received::Closed(c.clone()),
        MessageRef::Ping(_) | MessageRef::Pong(_) => Received::Nothing,
    }
}

/// A server's owned receive (no lent callbacks were registered when it
/// began): a text or binary message is also lent to the lent callbacks
/// registered while it waited, through `with_reply`, which runs its
/// argument with a `Reply` on the connection.
pub fn owned_received(
    view: &mut View<ServerEventKind, ServerEvent>,
    registry: &Registry<ServerEventKind, ServerEvent>,
    conn: &ClientConnection,
    m: Message,
    with_reply: impl FnOnce(&mut dyn FnMut(&mut Reply<'_>)),
) -> Received {
    match m {
        Message::Text(_) | Message::Binary(_) => {
            let kind = ServerEventKind::MessageReceive;
            if view.lends(registry, kind) {
                with_reply(&mut |reply| {
                    view.emit_lent(registry, kind, conn, m.view(), reply);
                });
            }
            Received::Message(m)
        }
        Message::Closed(c) => Received::Closed(c),
        Message::Ping(_) | Message::Pong(_) => Received::Nothing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ConnectionError;
    use crate::event::{CloseInfo, Initiator};

    #[test]
    fn connection_events_map_to_the_spec_events() {
        let kinds = |e: Event| {
            ClientEvent::from_event(e)
                .iter()
                .map(ClientEvent::kind)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            kinds(Event::Text {
                data: "a".into(),
                fin: false
            }),
            [ClientEventKind::Message]
        );
        assert_eq!(
            kinds(Event::Binary {
                data: "a".into(),
                fin: true
            }),
            [ClientEventKind::Message, ClientEventKind::DataEnd]
        );
        assert!(kinds(Event::Ping("p".into())).is_empty());
        let abnormal = CloseInfo {
            code: CloseCode::ABNORMAL,
            reason: String::new(),
            initiator: Initiator::Remote,
            error: Some(ConnectionError::Eof),
        };
        assert_eq!(
            kinds(Event::Closed(abnormal)),
            [ClientEventKind::Error, ClientEventKind::Close]
        );
    }
}
