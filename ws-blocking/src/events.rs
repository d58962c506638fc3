//! The spec's event-style client: `on`/`off` callbacks for open, message,
//! close, error, dataEnd and headerReceive, built on the pull API.

use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use ws_proto::api::{
    emit_shared, CallbackId, Callbacks, ClientEvent, ClientEventKind, ClientOptions, Error,
};
use ws_proto::CloseCode;

use crate::client::WebSocket;
use crate::socket::Sender;

type Registry = Arc<Mutex<Callbacks<ClientEventKind, ClientEvent>>>;

fn emit(registry: &Registry, ev: ClientEvent) {
    emit_shared(registry, ev.kind(), &ev);
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
        // A client's connection has its response.
        if let Some(response) = ws.response().cloned() {
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
        }
        let (tx, mut rx) = ws.split();
        let registry = self.callbacks.clone();
        let reader = std::thread::Builder::new()
            .name("ws-events".into())
            .spawn(move || loop {
                match rx.recv_event() {
                    Ok(Some(event)) => {
                        for ev in ClientEvent::from_event(event) {
                            emit(&registry, ev);
                        }
                    }
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
