//! The runtime is pluggable: a ws-smol client on tokio (through the compat
//! layer) against a ws-smol server on smol.

use std::time::Duration;

use tokio_util::compat::TokioAsyncReadCompatExt;
use ws_smol::{
    ClientOptions, CloseCode, Message, Server, ServerEvent, ServerEventKind, ServerOptions,
    WebSocket,
};

#[tokio::test(flavor = "current_thread")]
async fn tokio_client_against_smol_server() {
    let mut o = ServerOptions::default();
    o.ip = [127, 0, 0, 1].into();
    let server = smol::block_on(Server::start(o)).unwrap();
    let h = server.handle();
    server.on(ServerEventKind::MessageReceive, move |ev| {
        if let ServerEvent::Message(c, Message::Text(t)) = ev {
            let _ = h.queue_text(c, t);
        }
    });
    let options = ClientOptions::default();
    let request = options
        .request(&format!("ws://{}/", server.local_addr()))
        .unwrap();
    let tcp = tokio::net::TcpStream::connect(server.local_addr())
        .await
        .unwrap();
    let mut ws = WebSocket::handshake(tcp.compat(), &request, options.config.clone())
        .await
        .unwrap();
    ws.send_text("hello from tokio").await.unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(5), ws.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reply, Message::Text("hello from tokio".into()));
    match tokio::time::timeout(
        Duration::from_secs(5),
        ws.close_and_wait(CloseCode::NORMAL, ""),
    )
    .await
    .unwrap()
    .unwrap()
    {
        Message::Closed(c) => assert!(c.is_clean()),
        other => panic!("{other:?}"),
    }
}
