//! The spec's event-style client: `on`/`off` callbacks for open, message,
//! close, error, dataEnd and headerReceive, built on the pull API.

use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use ws_proto::api::{CallbackId, Callbacks, ClientOptions, Error};
use ws_proto::{CloseCode, Event, Headers, Message};

use crate::client::WebSocket;
use crate::socket::Sender;

/// The kinds of [`ClientEvent`], for [`EventClient::on`] / [`EventClient::off`].
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

/// An event of an [`EventClient`].
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

type Registry = Arc<Mutex<Callbacks<ClientEventKind, ClientEvent>>>;

fn emit(registry: &Registry, ev: ClientEvent) {
    let handlers = registry
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .handlers(ev.kind());
    for h in handlers {
        h(&ev);
    }
}

struct Live {
    tx: Sender,
    reader: Option<JoinHandle<()>>,
}

/// A client in the spec's style (`createWebSocket`): register callbacks,
/// then [`connect`](Self::connect); events arrive on a reader thread.
#[derive(Default)]
pub struct EventClient {
    callbacks: Registry,
    live: Mutex<Option<Live>>,
}

impl std::fmt::Debug for EventClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventClient").finish()
    }
}

impl EventClient {
    /// A client with no callbacks and no connection.
    pub fn new() -> Self {
        Self::default()
    }

    fn live(&self) -> MutexGuard<'_, Option<Live>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a callback (`on`). It runs on the reader thread.
    pub fn on(
        &self,
        kind: ClientEventKind,
        f: impl Fn(&ClientEvent) + Send + Sync + 'static,
    ) -> CallbackId {
        self.callbacks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .on(kind, f)
    }

    /// Removes one callback, or every callback of a kind (`off`).
    pub fn off(&self, kind: ClientEventKind, id: Option<CallbackId>) -> usize {
        self.callbacks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .off(kind, id)
    }

    /// Connects (`connect`): emits `headerReceive` then `open` and starts the
    /// reader thread, or emits `error` and returns it. Fails with
    /// [`Error::AlreadyConnected`] (2302003) while a connection is open.
    pub fn connect(&self, url: &str, options: &ClientOptions) -> Result<(), Error> {
        let mut live = self.live();
        if let Some(l) = live.as_ref() {
            if l.reader.as_ref().is_some_and(|r| !r.is_finished()) {
                return Err(Error::AlreadyConnected);
            }
        }
        let ws = match WebSocket::connect_with(url, options) {
            Ok(ws) => ws,
            Err(e) => {
                emit(&self.callbacks, ClientEvent::Error(Arc::new(e.clone())));
                return Err(e);
            }
        };
        let response = ws.response().clone();
        let (tx, mut rx) = ws.split();
        emit(
            &self.callbacks,
            ClientEvent::HeaderReceive(response.headers),
        );
        emit(
            &self.callbacks,
            ClientEvent::Open {
                status: response.status,
                reason: response.reason,
            },
        );
        let registry = self.callbacks.clone();
        let reader = std::thread::Builder::new()
            .name("ws-events".into())
            .spawn(move || loop {
                match rx.recv_event() {
                    Ok(Some(Event::Text { data, fin })) => {
                        let text = String::from_utf8_lossy(&data).into_owned();
                        emit(&registry, ClientEvent::Message(Message::Text(text)));
                        if fin {
                            emit(&registry, ClientEvent::DataEnd);
                        }
                    }
                    Ok(Some(Event::Binary { data, fin })) => {
                        emit(&registry, ClientEvent::Message(Message::Binary(data)));
                        if fin {
                            emit(&registry, ClientEvent::DataEnd);
                        }
                    }
                    Ok(Some(Event::Closed(info))) => {
                        if let Some(e) = info.error {
                            emit(
                                &registry,
                                ClientEvent::Error(Arc::new(Error::Connection(e))),
                            );
                        }
                        emit(
                            &registry,
                            ClientEvent::Close {
                                code: info.code,
                                reason: info.reason,
                            },
                        );
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => return,
                    Err(e) => {
                        emit(&registry, ClientEvent::Error(Arc::new(e)));
                        return;
                    }
                }
            })?;
        *live = Some(Live {
            tx,
            reader: Some(reader),
        });
        Ok(())
    }

    fn sender(&self) -> Result<Sender, Error> {
        self.live()
            .as_ref()
            .map(|l| l.tx.clone())
            .ok_or(Error::Closed)
    }

    /// Sends a text message (`send`).
    pub fn send_text(&self, text: &str) -> Result<(), Error> {
        self.sender()?.send_text(text)
    }

    /// Sends a binary message (`send`).
    pub fn send_binary(&self, data: &[u8]) -> Result<(), Error> {
        self.sender()?.send_binary(data)
    }

    /// Starts the closing handshake (`close`; the spec's defaults are
    /// [`CloseCode::NORMAL`] and ""). The `close` event follows.
    pub fn close(&self, code: CloseCode, reason: &str) -> Result<(), Error> {
        self.sender()?.close(code, reason)
    }

    /// Waits until the reader thread ends (after the `close` event).
    pub fn wait(&self) {
        let reader = self.live().as_mut().and_then(|l| l.reader.take());
        if let Some(r) = reader {
            let _ = r.join();
        }
    }
}
