//! The Autobahn|Testsuite client driver.
//! `cargo run --release -p ws-smol --example autobahn_client -- ws://127.0.0.1:9001 AGENT`

use ws_smol::{ClientOptions, DeflateConfig, Message, MessageRef, Proxy};

/// What to do with a lent message.
enum Echo {
    Text,
    Binary,
    Nothing,
    Closed,
}

fn options() -> ClientOptions {
    let mut o = ClientOptions::default();
    o.proxy = Proxy::NoProxy;
    // Offer permessage-deflate (Autobahn cases 12 and 13), and compress
    // every message.
    o.config.deflate = Some(DeflateConfig {
        threshold: 0,
        ..DeflateConfig::default()
    });
    o
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let base = args.next().unwrap_or_else(|| "ws://127.0.0.1:9001".into());
    let agent = args.next().unwrap_or_else(|| "ws-smol".into());
    smol::block_on(async {
        let mut ws = ws_smol::connect_with(&format!("{base}/getCaseCount"), &options()).await?;
        let count: u32 = match ws.recv().await? {
            Message::Text(t) => t.trim().parse()?,
            other => return Err(format!("unexpected {other:?}").into()),
        };
        drop(ws);
        eprintln!("{count} cases");
        for case in 1..=count {
            let url = format!("{base}/runCase?case={case}&agent={agent}");
            let mut ws = match ws_smol::connect_with(&url, &options()).await {
                Ok(ws) => ws,
                Err(e) => {
                    eprintln!("case {case}: connect failed: {e}");
                    continue;
                }
            };
            // Messages are taken lent (`recv_with`), so that the suite
            // judges that reader too (ws-blocking's client takes them
            // owned): each is copied into one buffer and sent back.
            let mut text = String::new();
            let mut binary = Vec::new();
            loop {
                let echo = ws
                    .recv_with(|m| match m {
                        MessageRef::Text(t) => {
                            text.clear();
                            text.push_str(t);
                            Echo::Text
                        }
                        MessageRef::Binary(b) => {
                            binary.clear();
                            binary.extend_from_slice(b);
                            Echo::Binary
                        }
                        MessageRef::Closed(_) => Echo::Closed,
                        MessageRef::Ping(_) | MessageRef::Pong(_) => Echo::Nothing,
                    })
                    .await;
                let sent = match echo {
                    Ok(Echo::Text) => ws.send_text(&text).await,
                    Ok(Echo::Binary) => ws.send_binary(&binary).await,
                    Ok(Echo::Nothing) => Ok(()),
                    Ok(Echo::Closed) | Err(_) => break,
                };
                if sent.is_err() {
                    break;
                }
            }
        }
        let mut ws =
            ws_smol::connect_with(&format!("{base}/updateReports?agent={agent}"), &options())
                .await?;
        while !matches!(ws.recv().await, Ok(Message::Closed(_)) | Err(_)) {}
        eprintln!("reports updated");
        Ok(())
    })
}
