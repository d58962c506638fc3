//! The system proxy from the environment. Its own test binary (one test)
//! because it sets process-wide environment variables.

mod common;

use common::{local_options, start, tinyproxy};
use ws_blocking::{ClientOptions, Message, Proxy, ServerEvent, ServerEventKind, WebSocket};

#[test]
fn http_proxy_and_no_proxy_from_the_environment() {
    let proxy = tinyproxy(None);
    let server = start(local_options());
    let h = server.handle();
    server.on(ServerEventKind::MessageReceive, move |ev| {
        if let ServerEvent::Message(c, Message::Text(t)) = ev {
            let _ = h.send_text(c, t);
        }
    });
    let port = server.local_addr().port();
    let url = format!("ws://127.0.0.1:{port}/env");
    std::env::set_var("http_proxy", format!("http://127.0.0.1:{}", proxy.port));
    std::env::remove_var("no_proxy");
    std::env::remove_var("NO_PROXY");
    let mut o = ClientOptions::default();
    assert_eq!(o.proxy, Proxy::System, "the system proxy is the default");
    o.handshake_timeout = Some(std::time::Duration::from_secs(5));
    let mut ws = WebSocket::connect_with(&url, &o).unwrap();
    ws.send_text("via env").unwrap();
    assert_eq!(ws.recv().unwrap(), Message::Text("via env".into()));
    let connects = |log: &str| log.matches(&format!("CONNECT 127.0.0.1:{port}")).count();
    assert_eq!(connects(&proxy.log_text()), 1);
    // no_proxy sends it direct: the proxy sees nothing more.
    std::env::set_var("no_proxy", "localhost,127.0.0.1");
    let mut ws = WebSocket::connect_with(&url, &o).unwrap();
    ws.send_text("direct").unwrap();
    assert_eq!(ws.recv().unwrap(), Message::Text("direct".into()));
    assert_eq!(connects(&proxy.log_text()), 1);
    // Proxy::NoProxy ignores the environment.
    std::env::remove_var("no_proxy");
    o.proxy = Proxy::NoProxy;
    assert!(WebSocket::connect_with(&url, &o).is_ok());
    assert_eq!(connects(&proxy.log_text()), 1);
    std::env::remove_var("http_proxy");
}
