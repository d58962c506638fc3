//! `accept` / `accept_with`: the server handshake on a `TcpStream` the
//! application accepted itself, against the blocking client and raw bytes,
//! on loopback.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::direct;
use ws_blocking::{Accept, CloseCode, Config, Error, HandshakeError, Message, WebSocket};

/// Echoes text and binary until the close; its code and reason.
fn echo(ws: &mut WebSocket) -> (CloseCode, String) {
    loop {
        match ws.recv().unwrap() {
            Message::Text(t) => ws.send_text(&t).unwrap(),
            Message::Binary(b) => ws.send_binary(&b).unwrap(),
            Message::Closed(c) => return (c.code, c.reason),
            _ => {}
        }
    }
}

fn listen() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    (l, port)
}

#[test]
fn accept_with_sees_the_request_chooses_a_subprotocol_or_refuses() {
    let (listener, port) = listen();
    let server = thread::spawn(move || {
        let mut out = Vec::new();
        for _ in 0..2 {
            let (tcp, _) = listener.accept().unwrap();
            let mut seen = (String::new(), None, Vec::new());
            let r = ws_blocking::accept_with(
                tcp,
                Config::default(),
                Some(Duration::from_secs(5)),
                |req| {
                    seen = (
                        req.path().to_string(),
                        req.headers().get_str("x-token").map(str::to_string),
                        req.protocols().to_vec(),
                    );
                    if seen.1.as_deref() != Some("let-me-in") {
                        return Err(401);
                    }
                    Ok(Accept::new()
                        .protocol("chat.v2")
                        .header("x-served-by", "blocking"))
                },
            );
            out.push((seen, r.map(|mut ws| echo(&mut ws))));
        }
        out
    });

    let mut o = direct();
    o.protocols = vec!["chat.v1".into(), "chat.v2".into()];
    o.headers = vec![("X-Token".into(), "let-me-in".into())];
    let url = format!("ws://127.0.0.1:{port}/rooms/7");
    let mut ws = WebSocket::connect_with(&url, &o).unwrap();
    assert_eq!(ws.protocol(), Some("chat.v2"));
    let served = ws.response().unwrap().headers.get_str("x-served-by");
    assert_eq!(served, Some("blocking"));
    ws.send_text("héllo").unwrap();
    assert_eq!(ws.recv().unwrap(), Message::Text("héllo".into()));
    let big: Vec<u8> = (0..100_000u32).map(|i| (i * 7) as u8).collect();
    ws.send_binary(&big).unwrap();
    assert_eq!(ws.recv().unwrap(), Message::Binary(big.into()));
    ws.close_and_wait(CloseCode::NORMAL, "bye").unwrap();

    o.headers.clear();
    match WebSocket::connect_with(&url, &o).unwrap_err() {
        Error::Handshake(HandshakeError::Status { status, .. }) => assert_eq!(status, 401),
        e => panic!("{e}"),
    }

    let results = server.join().unwrap();
    let (seen, r) = &results[0];
    assert_eq!(seen.0, "/rooms/7");
    assert_eq!(seen.1.as_deref(), Some("let-me-in"));
    assert_eq!(seen.2, vec!["chat.v1".to_string(), "chat.v2".to_string()]);
    match r {
        Ok((code, reason)) => assert_eq!((*code, reason.as_str()), (CloseCode::NORMAL, "bye")),
        Err(e) => panic!("{e}"),
    }
    let (seen, r) = &results[1];
    assert_eq!(seen.1, None);
    assert!(matches!(
        r,
        Err(Error::Handshake(HandshakeError::Refused(401)))
    ));
}

/// Sends `request` raw; the answer (read to the end) and what `accept`
/// returned.
fn raw(request: &[u8]) -> (String, Error) {
    let (listener, port) = listen();
    let server = thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        ws_blocking::accept(tcp).map(drop).unwrap_err()
    });
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(request).unwrap();
    let mut answer = String::new();
    c.read_to_string(&mut answer).unwrap();
    (answer, server.join().unwrap())
}

#[test]
fn a_request_that_is_not_an_upgrade_is_answered_and_fails() {
    let (answer, e) = raw(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 426 "), "{answer}");
    assert!(answer.contains("Sec-WebSocket-Version: 13\r\n"), "{answer}");
    assert!(
        matches!(e, Error::Handshake(HandshakeError::Upgrade)),
        "{e}"
    );
    let (answer, e) = raw(b"POST / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 405 "), "{answer}");
    assert!(
        matches!(e, Error::Handshake(HandshakeError::Method(_))),
        "{e}"
    );
}

#[test]
fn a_silent_client_times_out() {
    let (listener, port) = listen();
    let _client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (tcp, _) = listener.accept().unwrap();
    let start = Instant::now();
    let e = ws_blocking::accept_with(
        tcp,
        Config::default(),
        Some(Duration::from_millis(200)),
        |_| Ok(Accept::new()),
    )
    .map(drop)
    .unwrap_err();
    assert!(matches!(e, Error::Timeout), "{e}");
    assert!(start.elapsed() < Duration::from_secs(5));
}
