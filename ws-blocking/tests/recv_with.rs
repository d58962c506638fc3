//! `recv_with`: messages lent from what was read, on loopback with the
//! blocking client. (That lending reads every input as `recv` does is
//! ws-proto's `readers_agree` property; that it does not allocate is
//! ws-proto's `lent_messages` test.)

mod common;

use std::net::TcpListener;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::direct;
use ws_blocking::{CloseCode, Error, Message, MessageRef, Receiver, Sender};
use ws_test_support::{answer_lent, take_lent, Reply};

/// Runs `server` on the server's side of one connection from a client that
/// `client` drives, each in a thread; fails if they take more than 20 s
/// (a deadlock would otherwise hang the test).
fn with_pair<T: Send + 'static>(
    server: impl FnOnce(Sender, Receiver) -> T + Send + 'static,
    client: impl FnOnce(ws_blocking::WebSocket) + Send + 'static,
) -> T {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://127.0.0.1:{}/", l.local_addr().unwrap().port());
    let (server_done, server_result) = mpsc::channel();
    thread::spawn(move || {
        let (tcp, _) = l.accept().unwrap();
        let (tx, rx) = ws_blocking::accept(tcp).unwrap().split();
        let _ = server_done.send(server(tx, rx));
    });
    let (client_done, client_result) = mpsc::channel();
    thread::spawn(move || {
        client(ws_blocking::WebSocket::connect_with(&url, &direct()).unwrap());
        let _ = client_done.send(());
    });
    let limit = Instant::now() + Duration::from_secs(20);
    let left = || limit.saturating_duration_since(Instant::now());
    client_result
        .recv_timeout(left())
        .expect("the client did not finish (a deadlock?)");
    server_result
        .recv_timeout(left())
        .expect("the server did not finish (a deadlock?)")
}

#[test]
fn a_server_echoes_lent_messages_of_every_size_and_sees_the_close() {
    echo_every_size(false);
}

/// The same echo answered from inside the lend (`recv_with_reply`): no
/// buffer of the server's own.
#[test]
fn a_server_answers_lent_messages_of_every_size_from_inside_the_lend() {
    echo_every_size(true);
}

fn echo_every_size(inside: bool) {
    let big_text = "grüße, 世界! ".repeat(20_000);
    let big_binary: Vec<u8> = (0..300_000u32).map(|i| (i * 7) as u8).collect();
    let sent = vec![
        Message::Text("héllo".into()),
        Message::Binary(vec![1, 2, 3].into()),
        Message::Text(big_text),
        Message::Binary(big_binary.into()),
        Message::Text(String::new()),
        Message::Text("x".repeat(3000)),
    ];
    let (code, reason, pings) = with_pair(
        move |tx, mut rx| {
            // One buffer for every message: what a lent message is copied
            // into to be sent back.
            let mut buf = Vec::new();
            let mut pings = 0;
            loop {
                let reply = if inside {
                    rx.recv_with_reply(|m, reply| answer_lent(m, reply, &mut pings))
                        .unwrap()
                } else {
                    rx.recv_with(|m| take_lent(m, &mut buf, &mut pings))
                        .unwrap()
                };
                match reply {
                    Reply::Text => tx.send_text(std::str::from_utf8(&buf).unwrap()).unwrap(),
                    Reply::Binary => tx.send_binary(&buf).unwrap(),
                    Reply::Nothing => {}
                    Reply::Closed(code, reason) => {
                        assert!(matches!(rx.recv_with(|_| ()), Err(Error::Closed)));
                        return (code, reason, pings);
                    }
                }
            }
        },
        move |mut ws| {
            ws.ping(b"p").unwrap();
            for m in &sent {
                match m {
                    Message::Text(t) => ws.send_text(t).unwrap(),
                    Message::Binary(b) => ws.send_binary(b).unwrap(),
                    _ => unreachable!(),
                }
            }
            let mut echoed = Vec::new();
            while echoed.len() < sent.len() {
                if let m @ (Message::Text(_) | Message::Binary(_)) = ws.recv().unwrap() {
                    echoed.push(m);
                }
            }
            assert_eq!(echoed, sent);
            ws.close(CloseCode::NORMAL, "bye").unwrap();
            while !matches!(ws.recv(), Ok(Message::Closed(_)) | Err(_)) {}
        },
    );
    assert_eq!(
        (code, reason.as_str(), pings),
        (CloseCode::NORMAL, "bye", 1)
    );
}

/// An answer from inside the lend is written before `recv_with_reply`
/// returns: the server then waits for the client to have it, without
/// receiving again.
#[test]
fn an_answer_from_inside_the_lend_leaves_without_another_receive() {
    let (got_tx, got_rx) = mpsc::channel::<()>();
    with_pair(
        move |tx, mut rx| {
            for _ in 0..3 {
                rx.recv_with_reply(|m, reply| match m {
                    MessageRef::Text(t) => reply.send_text(&t.to_uppercase()).unwrap(),
                    other => panic!("{other:?}"),
                })
                .unwrap();
                // Not receiving until the client has the answer.
                got_rx.recv_timeout(Duration::from_secs(20)).unwrap();
            }
            drop(tx);
        },
        move |mut ws| {
            for word in ["one", "two", "three"] {
                ws.send_text(word).unwrap();
                assert_eq!(ws.recv().unwrap(), Message::Text(word.to_uppercase()));
                got_tx.send(()).unwrap();
            }
        },
    );
}

#[test]
fn sending_on_the_connection_inside_the_closure_panics_and_the_message_stays() {
    with_pair(
        |tx, mut rx| {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                rx.recv_with(|_| tx.send_text("inside"))
            }));
            assert!(r.is_err(), "no panic");
            // The connection still works, and the message was not lost.
            let text = rx
                .recv_with(|m| match m {
                    MessageRef::Text(t) => t.to_string(),
                    other => panic!("{other:?}"),
                })
                .unwrap();
            tx.send_text(&text).unwrap();
        },
        |mut ws| {
            ws.send_text("once").unwrap();
            assert_eq!(ws.recv().unwrap(), Message::Text("once".into()));
        },
    );
}
