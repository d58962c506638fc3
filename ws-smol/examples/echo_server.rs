//! Echoes every text and binary message; runs until killed; handles
//! thousands of connections.
//! `cargo run --release -p ws-smol --example echo_server -- 127.0.0.1:9001`

use std::net::SocketAddr;

use ws_smol::{DeflateConfig, Message, Server, ServerEvent, ServerEventKind, ServerOptions};

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
        // The callback runs where the connection runs: each echo is queued
        // before that connection reads its next frame.
        let handle = server.handle();
        server.on(ServerEventKind::MessageReceive, move |event| match event {
            ServerEvent::Message(conn, Message::Text(t)) => {
                let _ = handle.queue_text(conn, t);
            }
            // A binary message goes back as it came in: the `Bytes` is
            // shared (from 2 KiB on, uncompressed, it is written from the
            // memory it was read into, not copied).
            ServerEvent::Message(conn, Message::Binary(b)) => {
                let _ = handle.queue_bytes(conn, b.clone());
            }
            _ => {}
        });
        futures_lite::future::pending::<()>().await;
        Ok(())
    })
}
