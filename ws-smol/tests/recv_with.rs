//! `recv_with`: messages lent from what was read, on loopback with
//! ws-smol's client. (That lending reads every input as `recv` does is
//! ws-proto's `readers_agree` property; that it does not allocate is
//! ws-proto's `lent_messages` test.)

mod common;

use common::{direct, listen, run};
use std::net::{TcpListener, TcpStream};

use async_io::Async;
use futures_lite::future;
use ws_smol::{CloseCode, Error, Message, MessageRef, Receiver, Sender};
use ws_test_support::{answer_lent, take_lent, Reply};

type Tcp = Async<TcpStream>;

/// An answer from inside the lend leaves as `recv_with_reply` returns: the
/// server then waits for the client to have it, without receiving again.
#[test]
fn an_answer_from_inside_the_lend_leaves_without_another_receive() {
    run(async {
        let (l, url) = listen();
        let (got_tx, got_rx) = smol::channel::bounded::<()>(1);
        let server = smol::spawn(async move {
            let (tx, mut rx) = accept_one(l).await;
            for _ in 0..3 {
                rx.recv_with_reply(|m, reply| match m {
                    MessageRef::Text(t) => reply.send_text(&t.to_uppercase()).unwrap(),
                    other => panic!("{other:?}"),
                })
                .await
                .unwrap();
                // Not receiving until the client has the answer: a
                // deadlock if it waits for the next receive.
                got_rx.recv().await.unwrap();
            }
            drop(tx);
        });
        let mut ws = ws_smol::connect_with(&url, &direct()).await.unwrap();
        for word in ["one", "two", "three"] {
            ws.send_text(word).await.unwrap();
            assert_eq!(ws.recv().await.unwrap(), Message::Text(word.to_uppercase()));
            got_tx.send(()).await.unwrap();
        }
        server.await;
    })
}

/// The server's side of one connection.
async fn accept_one(l: Async<TcpListener>) -> (Sender<Tcp>, Receiver<Tcp>) {
    let (tcp, _) = l.accept().await.unwrap();
    ws_smol::accept(tcp).await.unwrap().split()
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
    run(async {
        let (l, url) = listen();
        let server = smol::spawn(async move {
            let (tx, mut rx) = accept_one(l).await;
            // One buffer for every message: what a lent message is copied
            // into to be sent back.
            let mut buf = Vec::new();
            let mut pings = 0;
            loop {
                let reply = if inside {
                    rx.recv_with_reply(|m, reply| answer_lent(m, reply, &mut pings))
                        .await
                        .unwrap()
                } else {
                    rx.recv_with(|m| take_lent(m, &mut buf, &mut pings))
                        .await
                        .unwrap()
                };
                match reply {
                    Reply::Text => tx
                        .send_text(std::str::from_utf8(&buf).unwrap())
                        .await
                        .unwrap(),
                    Reply::Binary => tx.send_binary(&buf).await.unwrap(),
                    Reply::Nothing => {}
                    Reply::Closed(code, reason) => {
                        // Then the end.
                        assert!(matches!(rx.recv_with(|_| ()).await, Err(Error::Closed)));
                        return (code, reason, pings);
                    }
                }
            }
        });
        let mut ws = ws_smol::connect_with(&url, &direct()).await.unwrap();
        let big_text = "grüße, 世界! ".repeat(20_000);
        let big_binary: Vec<u8> = (0..300_000u32).map(|i| (i * 7) as u8).collect();
        let sent = [
            Message::Text("héllo".into()),
            Message::Binary(vec![1, 2, 3].into()),
            Message::Text(big_text.clone()),
            Message::Binary(big_binary.clone().into()),
            Message::Text(String::new()),
            Message::Text("x".repeat(3000)),
        ];
        ws.ping(b"p").await.unwrap();
        for m in &sent {
            match m {
                Message::Text(t) => ws.send_text(t).await.unwrap(),
                Message::Binary(b) => ws.send_binary(b).await.unwrap(),
                _ => unreachable!(),
            }
        }
        let mut echoed = Vec::new();
        while echoed.len() < sent.len() {
            if let m @ (Message::Text(_) | Message::Binary(_)) = ws.recv().await.unwrap() {
                echoed.push(m);
            }
        }
        assert_eq!(echoed, sent);
        ws.close(CloseCode::NORMAL, "bye").await.unwrap();
        // The server's Close, then the end of TCP.
        while !matches!(ws.recv().await, Ok(Message::Closed(_)) | Err(_)) {}
        drop(ws);
        let (code, reason, pings) = server.await;
        assert_eq!(
            (code, reason.as_str(), pings),
            (CloseCode::NORMAL, "bye", 1)
        );
    })
}

#[test]
fn sending_on_the_connection_inside_the_closure_panics_and_the_message_stays() {
    run(async {
        let (l, url) = listen();
        let server = smol::spawn(async move {
            let (tx, mut rx) = accept_one(l).await;
            // A deadlock would hang here (the test's time limit fails it).
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                future::block_on(rx.recv_with(|_| tx.queue_text("inside")))
            }));
            assert!(r.is_err(), "no panic");
            // The connection still works, and the message was not lost.
            let text = rx
                .recv_with(|m| match m {
                    MessageRef::Text(t) => t.to_string(),
                    other => panic!("{other:?}"),
                })
                .await
                .unwrap();
            tx.send_text(&text).await.unwrap();
        });
        let mut ws = ws_smol::connect_with(&url, &direct()).await.unwrap();
        ws.send_text("once").await.unwrap();
        assert_eq!(ws.recv().await.unwrap(), Message::Text("once".into()));
        server.await;
    })
}
