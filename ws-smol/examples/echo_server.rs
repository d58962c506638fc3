//! Echoes every text and binary message; runs until killed; handles
//! thousands of connections.
//! `cargo run --release -p ws-smol --example echo_server -- 127.0.0.1:9001`

use std::net::SocketAddr;

use ws_smol::{DeflateConfig, MessageRef, Server, ServerOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".into())
        .parse()?;
    smol::block_on(async {
        let mut options = ServerOptions::default();
        options.ip = addr.ip();
        options.port = addr.port();
        // Load tests come from one address: raise both limits.
        options.max_clients = 10_000;
        options.max_connections_per_ip = 10_000;
        // Accept permessage-deflate when a client offers it (Autobahn cases 12
        // and 13, browsers); compress every echo.
        options.config.deflate = Some(DeflateConfig {
            threshold: 0,
            ..DeflateConfig::default()
        });
        let server = Server::start(options).await?;
        eprintln!("echo server on ws://{}", server.local_addr());
        // The callback runs where the connection runs, lent each message
        // as it lies in what was read: the echo is queued, copied once
        // into the output, before that connection reads its next frame.
        server.on_message_lent(|_conn, m, reply| {
            let _ = match m {
                MessageRef::Text(t) => reply.send_text(t),
                MessageRef::Binary(b) => reply.send_binary(b),
                _ => Ok(()),
            };
        });
        futures_lite::future::pending::<()>().await;
        Ok(())
    })
}
