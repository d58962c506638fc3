//! The Autobahn|Testsuite client driver: asks the fuzzing server for the
//! case count, runs every case as an echo client, then asks for the report.
//! `cargo run --release -p ws-blocking --example blocking_autobahn_client -- ws://127.0.0.1:9001 AGENT`

use ws_blocking::{ClientOptions, DeflateConfig, Error, Message, Proxy, WebSocket};

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
    let agent = args.next().unwrap_or_else(|| "ws-blocking".into());
    let mut ws = WebSocket::connect_with(&format!("{base}/getCaseCount"), &options())?;
    let count: u32 = match ws.recv()? {
        Message::Text(t) => t.trim().parse()?,
        other => return Err(format!("unexpected {other:?}").into()),
    };
    drop(ws);
    eprintln!("{count} cases");
    for case in 1..=count {
        let url = format!("{base}/runCase?case={case}&agent={agent}");
        let mut ws = match WebSocket::connect_with(&url, &options()) {
            Ok(ws) => ws,
            Err(e) => {
                eprintln!("case {case}: connect failed: {e}");
                continue;
            }
        };
        loop {
            match ws.recv() {
                Ok(Message::Text(t)) => {
                    if ws.send_text(&t).is_err() {
                        break;
                    }
                }
                Ok(Message::Binary(b)) => {
                    if ws.send_binary(&b).is_err() {
                        break;
                    }
                }
                Ok(Message::Closed(_)) | Err(Error::Closed) => break,
                Ok(_) => {}
                Err(_) => break,
            }
        }
    }
    let mut ws =
        WebSocket::connect_with(&format!("{base}/updateReports?agent={agent}"), &options())?;
    while !matches!(ws.recv(), Ok(Message::Closed(_)) | Err(_)) {}
    eprintln!("reports updated");
    Ok(())
}
