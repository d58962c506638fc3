//! Sends each line of standard input as a text message and prints what
//! arrives. `cargo run -p ws-blocking --example blocking_client -- ws://127.0.0.1:9001`

use std::io::BufRead;

use ws_blocking::{CloseCode, Message, WebSocket};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "ws://127.0.0.1:9001".into());
    let ws = WebSocket::connect(&url)?;
    if let Some(r) = ws.response() {
        eprintln!(
            "connected: {} {} (protocol {:?})",
            r.status,
            r.reason,
            ws.protocol()
        );
    }
    let (tx, mut rx) = ws.split();
    let printer = std::thread::spawn(move || loop {
        match rx.recv() {
            Ok(Message::Text(t)) => println!("{t}"),
            Ok(Message::Binary(b)) => println!("<{} bytes>", b.len()),
            Ok(Message::Closed(c)) => {
                eprintln!("closed: {} {:?}", c.code, c.reason);
            }
            Ok(_) => {}
            Err(_) => break,
        }
    });
    for line in std::io::stdin().lock().lines() {
        tx.send_text(&line?)?;
    }
    tx.close(CloseCode::NORMAL, "")?;
    let _ = printer.join();
    Ok(())
}
