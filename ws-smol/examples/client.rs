//! Sends each line of standard input as a text message and prints what
//! arrives. `cargo run -p ws-smol --example client -- ws://127.0.0.1:9001`

use futures_lite::io::{AsyncBufReadExt, BufReader};
use futures_lite::StreamExt;
use ws_smol::{CloseCode, Message};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "ws://127.0.0.1:9001".into());
    smol::block_on(async {
        let ws = ws_smol::connect(&url).await?;
        if let Some(r) = ws.response() {
            eprintln!(
                "connected: {} {} (protocol {:?})",
                r.status, r.reason, r.protocol
            );
        }
        let (tx, mut rx) = ws.split();
        let printer = smol::spawn(async move {
            while let Some(m) = rx.next().await {
                match m {
                    Ok(Message::Text(t)) => println!("{t}"),
                    Ok(Message::Binary(b)) => println!("<{} bytes>", b.len()),
                    Ok(Message::Closed(c)) => eprintln!("closed: {} {:?}", c.code, c.reason),
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        });
        let mut lines = BufReader::new(smol::Unblock::new(std::io::stdin())).lines();
        while let Some(line) = lines.next().await {
            tx.send_text(&line?).await?;
        }
        tx.close(CloseCode::NORMAL, "").await?;
        printer.await;
        Ok(())
    })
}
