//! Helpers for these tests; the adapter-independent ones live in
//! ws-test-support.
// Each test file uses some of these.
#![allow(dead_code, unused_imports)]

use std::time::Duration;

use ws_blocking::{
    ClientOptions, Message, Proxy, Server, ServerCert, ServerEvent, ServerEventKind, ServerOptions,
};
pub use ws_test_support::*;

/// Server options on 127.0.0.1 with a free port.
pub fn local_options() -> ServerOptions {
    let mut o = ServerOptions::default();
    o.ip = [127, 0, 0, 1].into();
    o.port = 0;
    o
}

/// [`local_options`] with the test PKI's server certificate (wss).
pub fn tls_options(p: &Pki) -> ServerOptions {
    let mut o = local_options();
    o.cert = Some(ServerCert {
        cert_path: p.server_cert.clone(),
        key_path: p.server_key.clone(),
    });
    o
}

pub fn start(options: ServerOptions) -> Server {
    Server::start(options).expect("server starts")
}

/// Client options that never use the environment's proxy.
pub fn direct() -> ClientOptions {
    let mut o = ClientOptions::default();
    o.proxy = Proxy::NoProxy;
    o.connect_timeout = Some(Duration::from_secs(5));
    o.handshake_timeout = Some(Duration::from_secs(5));
    o
}

/// An echo server driven by a callback on each connection's thread.
pub fn echo_server(mut options: ServerOptions) -> Server {
    options.config.max_message_size = 256 << 20;
    let server = start(options);
    let h = server.handle();
    server.on(ServerEventKind::MessageReceive, move |ev| {
        if let ServerEvent::Message(c, m) = ev {
            let _ = match m {
                Message::Text(t) => h.send_text(c, t),
                Message::Binary(b) => h.send_binary(c, b),
                _ => Ok(()),
            };
        }
    });
    server
}
