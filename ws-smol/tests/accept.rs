//! `accept` / `accept_with`: the server handshake on a stream the
//! application accepted itself (plain TCP and TLS), against ws-smol's client
//! and raw bytes, on loopback.

mod common;

use common::{direct, run};
use std::net::{TcpListener, TcpStream};

use async_io::Async;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use ws_proto::api::tls;
use ws_smol::{Accept, CloseCode, Config, Error, HandshakeError, Message, ServerCert};
use ws_test_support::pki;

fn listen() -> (Async<TcpListener>, u16) {
    let l = Async::<TcpListener>::bind(([127, 0, 0, 1], 0)).unwrap();
    let port = l.get_ref().local_addr().unwrap().port();
    (l, port)
}

/// Echoes text and binary until the close; the close's code and reason.
async fn echo<S>(ws: &mut ws_smol::WebSocket<S>) -> (CloseCode, String)
where
    S: futures_io::AsyncRead + futures_io::AsyncWrite + Unpin,
{
    loop {
        match ws.recv().await.unwrap() {
            Message::Text(t) => ws.send_text(&t).await.unwrap(),
            Message::Binary(b) => ws.send_binary(&b).await.unwrap(),
            Message::Closed(c) => return (c.code, c.reason),
            _ => {}
        }
    }
}

/// What `accept_with`'s callback saw of the request.
#[derive(Debug, Default, PartialEq)]
struct Seen {
    path: String,
    query: Option<String>,
    token: Option<String>,
    protocols: Vec<String>,
}

#[test]
fn accept_with_sees_the_request_chooses_a_subprotocol_or_refuses() {
    run(async {
        let (listener, port) = listen();
        let server = smol::spawn(async move {
            let mut seen = Vec::new();
            let mut results = Vec::new();
            for _ in 0..2 {
                let (tcp, _) = listener.accept().await.unwrap();
                let mut s = Seen::default();
                let r = ws_smol::accept_with(tcp, Config::default(), |req| {
                    s = Seen {
                        path: req.path().to_string(),
                        query: req.query().map(str::to_string),
                        token: req.headers().get_str("x-token").map(str::to_string),
                        protocols: req.protocols().to_vec(),
                    };
                    if s.token.as_deref() != Some("let-me-in") {
                        return Err(403);
                    }
                    Ok(Accept::new()
                        .protocol("chat.v2")
                        .header("x-served-by", "accept_with"))
                })
                .await;
                seen.push(s);
                results.push(match r {
                    Ok(mut ws) => Ok(echo(&mut ws).await),
                    Err(e) => Err(e),
                });
            }
            (seen, results)
        });

        let mut o = direct();
        o.protocols = vec!["chat.v1".into(), "chat.v2".into()];
        o.headers = vec![("X-Token".into(), "let-me-in".into())];
        let url = format!("ws://127.0.0.1:{port}/rooms/7?user=ana");
        let mut ws = ws_smol::connect_with(&url, &o).await.unwrap();
        assert_eq!(ws.protocol(), Some("chat.v2"));
        let served = ws.response().unwrap().headers.get_str("x-served-by");
        assert_eq!(served, Some("accept_with"));
        ws.send_text("héllo").await.unwrap();
        assert_eq!(ws.recv().await.unwrap(), Message::Text("héllo".into()));
        let big: Vec<u8> = (0..100_000u32).map(|i| (i * 7) as u8).collect();
        ws.send_binary(&big).await.unwrap();
        assert_eq!(ws.recv().await.unwrap(), Message::Binary(big.into()));
        let closed = ws.close_and_wait(CloseCode::NORMAL, "bye").await.unwrap();
        assert!(matches!(closed, Message::Closed(_)));

        // Without the token: refused with 403, which the client reports.
        o.headers.clear();
        match ws_smol::connect_with(&url, &o).await.unwrap_err() {
            Error::Handshake(HandshakeError::Status { status, .. }) => assert_eq!(status, 403),
            e => panic!("{e}"),
        }

        let (seen, results) = server.await;
        let want = Seen {
            path: "/rooms/7".into(),
            query: Some("user=ana".into()),
            token: Some("let-me-in".into()),
            protocols: vec!["chat.v1".into(), "chat.v2".into()],
        };
        assert_eq!(seen[0], want);
        assert_eq!(seen[1].token, None);
        match &results[0] {
            Ok((code, reason)) => {
                assert_eq!(*code, CloseCode::NORMAL);
                assert_eq!(reason, "bye");
            }
            Err(e) => panic!("{e}"),
        }
        assert!(matches!(
            results[1],
            Err(Error::Handshake(HandshakeError::Refused(403)))
        ));
    });
}

/// Sends `request` raw and returns the answer (read to the end) and what
/// `accept` returned.
async fn raw(request: &[u8]) -> (String, Error) {
    let (listener, port) = listen();
    let server = smol::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        ws_smol::accept(tcp).await.map(drop).unwrap_err()
    });
    let mut c = Async::<TcpStream>::connect(([127, 0, 0, 1], port))
        .await
        .unwrap();
    c.write_all(request).await.unwrap();
    let mut answer = String::new();
    c.read_to_string(&mut answer).await.unwrap();
    (answer, server.await)
}

#[test]
fn a_request_that_is_not_an_upgrade_is_answered_and_fails() {
    run(async {
        // An ordinary HTTP request: 426 with the version we speak.
        let (answer, e) = raw(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 426 "), "{answer}");
        assert!(answer.contains("Sec-WebSocket-Version: 13\r\n"), "{answer}");
        assert!(
            matches!(e, Error::Handshake(HandshakeError::Upgrade)),
            "{e}"
        );
        // A malformed head: 400.
        let (answer, e) = raw(b"GET / HTTP/1.1\r\nno colon here\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
        assert!(
            matches!(e, Error::Handshake(HandshakeError::Malformed(_))),
            "{e}"
        );
        // An upgrade without a key: 400 too.
        let (answer, e) = raw(b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
        assert!(matches!(e, Error::Handshake(HandshakeError::Key)), "{e}");
    });
}

#[test]
fn accept_runs_over_a_tls_stream_the_application_accepted() {
    run(async {
        let p = pki();
        let config = tls::server_config(
            &ServerCert {
                cert_path: p.server_cert.clone(),
                key_path: p.server_key.clone(),
            },
            None,
        )
        .unwrap();
        let acceptor = futures_rustls::TlsAcceptor::from(config);
        let (listener, port) = listen();
        let server = smol::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let tls = acceptor.accept(tcp).await.unwrap();
            let mut ws = ws_smol::accept(tls).await.unwrap();
            echo(&mut ws).await
        });
        let mut o = direct();
        o.ca_path = Some(p.ca.clone());
        let mut ws = ws_smol::connect_with(&format!("wss://localhost:{port}/"), &o)
            .await
            .unwrap();
        for i in 0..20 {
            ws.send_text(&format!("m{i}")).await.unwrap();
            assert_eq!(ws.recv().await.unwrap(), Message::Text(format!("m{i}")));
        }
        ws.close_and_wait(CloseCode::GOING_AWAY, "done")
            .await
            .unwrap();
        assert_eq!(server.await, (CloseCode::GOING_AWAY, "done".to_string()));
    });
}
