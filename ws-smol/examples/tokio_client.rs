//! The ws-smol client on a tokio runtime, through tokio-util's compat layer:
//! the protocol code is runtime-agnostic. Sends one message and prints the
//! reply. `cargo run -p ws-smol --example tokio_client -- ws://127.0.0.1:9001`

use tokio_util::compat::TokioAsyncReadCompatExt;
use ws_smol::{ClientOptions, CloseCode, Message, WebSocket};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "ws://127.0.0.1:9001".into());
    let options = ClientOptions::default();
    let request = options.request(&url)?;
    let tcp = tokio::net::TcpStream::connect((request.host(), request.port())).await?;
    tcp.set_nodelay(true)?;
    let mut ws = WebSocket::handshake(tcp.compat(), &request, options.config.clone()).await?;
    ws.send_text("hello from tokio").await?;
    if let Message::Text(t) = ws.recv().await? {
        println!("{t}");
    }
    ws.close_and_wait(CloseCode::NORMAL, "").await?;
    Ok(())
}
