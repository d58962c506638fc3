//! TLS on loopback with certificates generated in the test (rcgen): a
//! custom CA, a client certificate with an encrypted key, an untrusted
//! certificate rejected then accepted with skip-verification, a wrong host
//! name rejected, missing files reported before any I/O.

mod common;

use std::time::Duration;

use common::{direct, local_options, pki, start, tls_options, Pki, CLIENT_KEY_PASSWORD};
use ws_blocking::{
    ClientCert, ClientOptions, CloseCode, Error, Message, Server, ServerCert, ServerEvent,
    ServerEventKind, WebSocket,
};

fn tls_echo(p: &Pki, client_ca: bool) -> Server {
    let mut o = tls_options(p);
    if client_ca {
        o.client_ca = Some(p.ca.clone());
    }
    let server = start(o);
    let h = server.handle();
    server.on(ServerEventKind::MessageReceive, move |ev| {
        if let ServerEvent::Message(c, Message::Text(t)) = ev {
            let _ = h.send_text(c, t);
        }
    });
    server
}

fn trusting(p: &Pki) -> ClientOptions {
    let mut o = direct();
    o.ca_path = Some(p.ca.clone());
    o
}

fn round_trip(ws: &mut WebSocket) {
    ws.send_text("over tls").unwrap();
    assert_eq!(ws.recv().unwrap(), Message::Text("over tls".into()));
}

#[test]
fn wss_with_a_custom_ca() {
    let p = pki();
    let server = tls_echo(&p, false);
    let port = server.local_addr().port();
    let mut ws =
        WebSocket::connect_with(&format!("wss://localhost:{port}/"), &trusting(&p)).unwrap();
    round_trip(&mut ws);
    // A large message crosses many TLS records.
    let big = "z".repeat(300_000);
    ws.send_text(&big).unwrap();
    assert_eq!(ws.recv().unwrap(), Message::Text(big));
    let closed = ws.close_and_wait(CloseCode::NORMAL, "tls bye").unwrap();
    assert!(matches!(closed, Message::Closed(c) if c.is_clean()));
}

#[test]
fn untrusted_certificate_is_rejected_then_accepted_with_skip_verification() {
    let p = pki();
    let server = tls_echo(&p, false);
    let url = format!("wss://localhost:{}/", server.local_addr().port());
    // The system store does not know our CA.
    let e = WebSocket::connect_with(&url, &direct()).unwrap_err();
    assert!(matches!(e, Error::Tls(_)), "{e}");
    // Another CA does not vouch for it either.
    let mut o = direct();
    o.ca_path = Some(p.other_ca.clone());
    assert!(matches!(
        WebSocket::connect_with(&url, &o).unwrap_err(),
        Error::Tls(_)
    ));
    let mut o = direct();
    o.skip_server_cert_verification = true;
    let mut ws = WebSocket::connect_with(&url, &o).unwrap();
    round_trip(&mut ws);
}

#[test]
fn wrong_host_name_is_rejected() {
    let p = pki();
    let server = tls_echo(&p, false);
    // The certificate names `localhost`, not 127.0.0.1 (the spec's reference
    // implementation would accept this; we do not).
    let url = format!("wss://127.0.0.1:{}/", server.local_addr().port());
    let e = WebSocket::connect_with(&url, &trusting(&p)).unwrap_err();
    match &e {
        Error::Tls(m) => assert!(
            m.to_lowercase().contains("name") || m.contains("NotValidForName"),
            "{m}"
        ),
        other => panic!("{other}"),
    }
    let mut o = trusting(&p);
    o.skip_server_cert_verification = true;
    assert!(WebSocket::connect_with(&url, &o).is_ok());
}

#[test]
fn client_certificate_with_an_encrypted_key() {
    let p = pki();
    let server = tls_echo(&p, true);
    let events = server.events();
    let url = format!("wss://localhost:{}/", server.local_addr().port());
    let mut o = trusting(&p);
    o.client_cert = Some(ClientCert {
        cert_path: p.client_cert.clone(),
        key_path: p.client_key_encrypted.clone(),
        key_password: Some(CLIENT_KEY_PASSWORD.into()),
    });
    let mut ws = WebSocket::connect_with(&url, &o).unwrap();
    round_trip(&mut ws);
    // Without a certificate the server refuses the TLS handshake.
    let e = WebSocket::connect_with(&url, &trusting(&p)).unwrap_err();
    assert!(
        matches!(e, Error::Tls(_) | Error::Io(_) | Error::Handshake(_)),
        "{e}"
    );
    let refused = std::iter::from_fn(|| events.recv_timeout(Duration::from_secs(5)))
        .any(|ev| matches!(ev, ServerEvent::Error(None, e) if matches!(*e, Error::Tls(_))));
    assert!(refused, "the server reports the failed TLS handshake");
    // A wrong password fails before any I/O, with a certificate error.
    let mut bad = o.clone();
    bad.client_cert.as_mut().unwrap().key_password = Some("wrong".into());
    assert!(matches!(
        WebSocket::connect_with(&url, &bad).unwrap_err(),
        Error::Certificate(_)
    ));
    let mut none = o.clone();
    none.client_cert.as_mut().unwrap().key_password = None;
    assert!(matches!(
        WebSocket::connect_with(&url, &none).unwrap_err(),
        Error::Certificate(_)
    ));
}

#[test]
fn missing_certificate_files_are_2302002() {
    let p = pki();
    let mut o = direct();
    o.ca_path = Some(p.dir.0.join("no-such-ca.pem"));
    let e = WebSocket::connect_with("wss://localhost:1/", &o).unwrap_err();
    assert_eq!(e.code().code(), 2_302_002, "{e}");
    let mut so = local_options();
    so.cert = Some(ServerCert {
        cert_path: p.dir.0.join("missing.pem"),
        key_path: p.server_key.clone(),
    });
    assert_eq!(Server::start(so).unwrap_err().code().code(), 2_302_002);
    let mut o = direct();
    o.client_cert = Some(ClientCert {
        cert_path: p.client_cert.clone(),
        key_path: p.dir.0.join("missing.key"),
        key_password: None,
    });
    o.ca_path = Some(p.ca.clone());
    assert_eq!(
        WebSocket::connect_with("wss://localhost:1/", &o)
            .unwrap_err()
            .code()
            .code(),
        2_302_002
    );
}

/// Megabytes arriving while the client is not reading: its next reads are
/// full, more ciphertext than rustls takes before its plaintext is read
/// out. Until session 12 the rest of such a read was dropped, which broke
/// the TLS stream (1006 at the third message).
#[test]
fn a_burst_read_in_large_reads_comes_through_whole() {
    let p = pki();
    let server = start(tls_options(&p));
    let h = server.handle();
    let burst = || -> Vec<Message> {
        let noise: Vec<u8> = (0..3u32 << 20)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        vec![
            Message::Binary(noise.into()),
            Message::Text("small".into()),
            Message::Text("grüße 世界 ".repeat(150_000)),
        ]
    };
    server.on(ServerEventKind::MessageReceive, move |ev| {
        if let ServerEvent::Message(c, Message::Text(_)) = ev {
            for m in burst() {
                match m {
                    Message::Binary(b) => h.send_binary(c, &b).unwrap(),
                    Message::Text(t) => h.send_text(c, &t).unwrap(),
                    _ => unreachable!(),
                }
            }
        }
    });
    let url = format!("wss://localhost:{}/", server.local_addr().port());
    let mut ws = WebSocket::connect_with(&url, &trusting(&p)).unwrap();
    ws.send_text("go").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    for (i, want) in burst().into_iter().enumerate() {
        let got = ws.recv().unwrap();
        assert!(
            got == want,
            "message {i} differs: {}",
            match &got {
                Message::Closed(c) => format!("{c:?}"),
                _ => "other data".into(),
            }
        );
    }
}
