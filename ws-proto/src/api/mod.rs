//! What both adapters (`ws-blocking`, `ws-smol`) share and is not socket
//! I/O: the client options of the `@ohos.net.webSocket` API
//! ([`ClientOptions`]), the proxy decision and the HTTP CONNECT exchange as a
//! sans-IO step ([`proxy`]), the numeric error codes ([`ErrorCode`]), the
//! adapters' error type ([`Error`]), the on/off callback registry
//! ([`Callbacks`]; [`Registry`] for a server, whose connections call theirs
//! without a lock) and the reentrancy guard of `recv_with` ([`Lending`]).
//! Written once here, never copied into each adapter.

mod callbacks;
mod error;
mod events;
mod lending;
mod options;
pub mod proxy;
mod table;
#[cfg(feature = "tls")]
pub mod tls;

pub use callbacks::{emit_shared, Callback, CallbackId, Callbacks, LentCallback, Registry, View};
pub use error::{Error, ErrorCode};
pub use events::{
    lend_received, owned_received, ClientConnection, ClientEvent, ClientEventKind, Received,
    ServerEvent, ServerEventKind,
};
pub use lending::{
    assert_not_lending, copied_in, in_lent_callback, is_lending, lent_each, lent_once, messages_in,
    Lending, Receive,
};
pub use options::{
    ClientCert, ClientOptions, HttpProxy, Proxy, ServerCert, ServerOptions, MAX_URL_LEN,
};
pub use table::{bind_error, ConnectionTable, Refusal};
