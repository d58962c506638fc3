//! The spec's event-style client on smol: `on`/`off` callbacks for open,
//! message, close, error, dataEnd and headerReceive, built on the pull API.

use std::sync::{Arc, Mutex, MutexGuard};

use smol::Task;
use ws_proto::api::{
    emit_shared, CallbackId, Callbacks, ClientEvent, ClientEventKind, ClientOptions, Error,
};
use ws_proto::CloseCode;

use crate::client::{connect_with, MaybeTls};
use crate::socket::Sender;

type Registry = Arc<Mutex<Callbacks<ClientEventKind, ClientEvent>>>;

fn emit(registry: &Registry, ev: ClientEvent) {
    emit_shared(registry, ev.kind(), &ev);
}

struct Live {
    tx: Sender<MaybeTls>,
    reader: Option<Task<()>>,
}

/// A client in the spec's style (`createWebSocket`): register callbacks,
/// then [`connect`](Self::connect); events are delivered by a task on
/// smol's executor.
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

    /// Registers a callback (`on`).
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

    /// Connects (`connect`): emits `headerReceive` then `open` and starts
    /// the event task, or emits `error` and returns it. Fails with
    /// [`Error::AlreadyConnected`] (2302003) while a connection is open.
    pub async fn connect(&self, url: &str, options: &ClientOptions) -> Result<(), Error> {
        if self
            .live()
            .as_ref()
            .is_some_and(|l| l.reader.as_ref().is_some_and(|r| !r.is_finished()))
        {
            return Err(Error::AlreadyConnected);
        }
        let ws = match connect_with(url, options).await {
            Ok(ws) => ws,
            Err(e) => {
                emit(&self.callbacks, ClientEvent::Error(Arc::new(e.clone())));
                return Err(e);
            }
        };
        let response = ws.response().cloned();
        let (tx, mut rx) = ws.split();
        if let Some(r) = response {
            emit(&self.callbacks, ClientEvent::HeaderReceive(r.headers));
            emit(
                &self.callbacks,
                ClientEvent::Open {
                    status: r.status,
                    reason: r.reason,
                },
            );
        }
        let registry = self.callbacks.clone();
        let reader = smol::spawn(async move {
            loop {
                match rx.recv_event().await {
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
            }
        });
        *self.live() = Some(Live {
            tx,
            reader: Some(reader),
        });
        Ok(())
    }

    fn sender(&self) -> Result<Sender<MaybeTls>, Error> {
        self.live()
            .as_ref()
            .map(|l| l.tx.clone())
            .ok_or(Error::Closed)
    }

    /// Sends a text message (`send`).
    pub async fn send_text(&self, text: &str) -> Result<(), Error> {
        self.sender()?.send_text(text).await
    }

    /// Sends a binary message (`send`).
    pub async fn send_binary(&self, data: &[u8]) -> Result<(), Error> {
        self.sender()?.send_binary(data).await
    }

    /// Starts the closing handshake (`close`; the spec's defaults are
    /// [`CloseCode::NORMAL`] and ""). The `close` event follows.
    pub async fn close(&self, code: CloseCode, reason: &str) -> Result<(), Error> {
        self.sender()?.close(code, reason).await
    }

    /// Waits until the event task ends (after the `close` event).
    pub async fn wait(&self) {
        let reader = self.live().as_mut().and_then(|l| l.reader.take());
        if let Some(r) = reader {
            r.await;
        }
    }
}
