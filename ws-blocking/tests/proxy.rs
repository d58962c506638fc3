//! Tunnels through a real tinyproxy (installed by
//! scripts/install-tinyproxy.sh when missing): explicit proxy, credentials,
//! exclusions, and wss through the tunnel.

mod common;

use common::{direct, local_options, pki, start, tinyproxy};
use ws_blocking::{
    ClientOptions, Error, HttpProxy, Message, Proxy, Server, ServerCert, ServerEvent,
    ServerEventKind, WebSocket,
};

fn echo(server: &Server) {
    let h = server.handle();
    server.on(ServerEventKind::MessageReceive, move |ev| {
        if let ServerEvent::Message(c, Message::Text(t)) = ev {
            let _ = h.send_text(c, t);
        }
    });
}

fn via(port: u16) -> ClientOptions {
    let mut o = direct();
    o.proxy = Proxy::Http(HttpProxy::new("127.0.0.1", port));
    o
}

#[test]
fn ws_through_an_explicit_proxy() {
    let proxy = tinyproxy(None);
    let server = start(local_options());
    echo(&server);
    let url = format!("ws://127.0.0.1:{}/tunnel", server.local_addr().port());
    let mut ws = WebSocket::connect_with(&url, &via(proxy.port)).unwrap();
    ws.send_text("through the tunnel").unwrap();
    assert_eq!(
        ws.recv().unwrap(),
        Message::Text("through the tunnel".into())
    );
    // tinyproxy logged the CONNECT to our server.
    let log = proxy.log_text();
    assert!(
        log.contains(&format!("CONNECT 127.0.0.1:{}", server.local_addr().port())),
        "{log}"
    );
}

#[test]
fn proxy_credentials() {
    let proxy = tinyproxy(Some(("alice", "s3cret")));
    let server = start(local_options());
    echo(&server);
    let url = format!("ws://127.0.0.1:{}/", server.local_addr().port());
    match WebSocket::connect_with(&url, &via(proxy.port)).unwrap_err() {
        Error::Proxy(ws_proto::api::proxy::ProxyError::Status { status, .. }) => {
            assert_eq!(status, 407)
        }
        other => panic!("{other}"),
    }
    let mut o = via(proxy.port);
    if let Proxy::Http(p) = &mut o.proxy {
        p.username = Some("alice".into());
        p.password = Some("s3cret".into());
    }
    let mut ws = WebSocket::connect_with(&url, &o).unwrap();
    ws.send_text("authorised").unwrap();
    assert_eq!(ws.recv().unwrap(), Message::Text("authorised".into()));
}

#[test]
fn excluded_hosts_bypass_the_proxy() {
    // The proxy port refuses connections: only a direct connection can
    // work. Bound but not listening for the whole test, it cannot be
    // handed to another listener meanwhile.
    let dead = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    dead.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    let dead_port = dead.local_addr().unwrap().as_socket().unwrap().port();
    let server = start(local_options());
    echo(&server);
    let url = format!("ws://127.0.0.1:{}/", server.local_addr().port());
    assert!(WebSocket::connect_with(&url, &via(dead_port)).is_err());
    let mut o = via(dead_port);
    if let Proxy::Http(p) = &mut o.proxy {
        p.exclusions = vec!["127.0.0.1".into()];
    }
    let mut ws = WebSocket::connect_with(&url, &o).unwrap();
    ws.send_text("direct").unwrap();
    assert_eq!(ws.recv().unwrap(), Message::Text("direct".into()));
}

#[test]
fn wss_through_the_proxy() {
    let proxy = tinyproxy(None);
    let p = pki();
    let mut so = local_options();
    so.cert = Some(ServerCert {
        cert_path: p.server_cert.clone(),
        key_path: p.server_key.clone(),
    });
    let server = start(so);
    echo(&server);
    let mut o = via(proxy.port);
    o.ca_path = Some(p.ca.clone());
    let url = format!("wss://localhost:{}/", server.local_addr().port());
    let mut ws = WebSocket::connect_with(&url, &o).unwrap();
    ws.send_text("tls in a tunnel").unwrap();
    assert_eq!(ws.recv().unwrap(), Message::Text("tls in a tunnel".into()));
    assert!(proxy
        .log_text()
        .contains(&format!("CONNECT localhost:{}", server.local_addr().port())));
}
