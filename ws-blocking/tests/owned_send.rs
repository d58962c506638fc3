//! `send_bytes` / `send_string`: on plain TCP large payloads leave from
//! their own memory (a vectored write with their header), in order with
//! copied messages, while the peer is slow to read; through TLS they are
//! encrypted like any other. (That the bytes on the wire are those of
//! `send_binary` is ws-proto's `owned_send` property.)

mod common;

use std::net::TcpListener;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use common::{
    assert_payloads_not_copied, check_done, check_sent_message, direct, owned_send_messages, pki,
    start, tls_options, Largest, MARKED,
};
use ws_blocking::{CloseCode, Message, ServerEvent, ServerEventKind, WebSocket};

#[global_allocator]
static GLOBAL: Largest = Largest;

/// Owned and copied, large and small, text and binary: 9 MiB in all.
fn messages() -> Vec<Message> {
    owned_send_messages()
}

/// Receives after a pause (the server's writes fill the socket and block
/// part way through a payload), checks every message and the close.
fn receive_all(mut ws: WebSocket) {
    thread::sleep(Duration::from_millis(200));
    for (i, want) in messages().iter().enumerate() {
        check_sent_message(i, &ws.recv().unwrap(), want);
    }
    check_done(ws.recv().unwrap());
}

#[test]
fn owned_payloads_arrive_whole_and_in_order_over_tcp() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://127.0.0.1:{}/", l.local_addr().unwrap().port());
    let (done, finished) = mpsc::channel();
    // The server on a thread of its own, whose allocations are watched.
    let server = thread::spawn(move || {
        let (tcp, _) = l.accept().unwrap();
        let ws = ws_blocking::accept(tcp).unwrap();
        let all = messages();
        let n = all.len();
        MARKED.with(|m| m.set(true));
        for (i, m) in all.into_iter().enumerate() {
            // Copied: two small ones and the last; the rest owned.
            match (![1, 3, n - 1].contains(&i), m) {
                (true, Message::Binary(b)) => ws.send_bytes(b).unwrap(),
                (true, Message::Text(t)) => ws.send_string(t).unwrap(),
                (false, Message::Binary(b)) => ws.send_binary(&b).unwrap(),
                (false, Message::Text(t)) => ws.send_text(&t).unwrap(),
                (_, other) => panic!("{other:?}"),
            }
        }
        MARKED.with(|m| m.set(false));
        ws.close(CloseCode::NORMAL, "done").unwrap();
        // Until the client has read everything.
        let _ = finished.recv_timeout(Duration::from_secs(20));
    });
    receive_all(WebSocket::connect_with(&url, &direct()).unwrap());
    done.send(()).unwrap();
    server.join().unwrap();
    // 7 MiB of payloads (the messages were made before the thread was
    // marked).
    assert_payloads_not_copied();
}

#[test]
fn owned_payloads_arrive_whole_and_in_order_over_tls() {
    let p = pki();
    let server = start(tls_options(&p));
    let h = server.handle();
    // The client's "go" has the server send everything, through the
    // handle: owned binary, copied text.
    server.on(ServerEventKind::MessageReceive, move |ev| {
        if let ServerEvent::Message(c, Message::Text(t)) = ev {
            assert_eq!(t, "go");
            for m in messages() {
                match m {
                    Message::Binary(b) => h.send_bytes(c, b).unwrap(),
                    Message::Text(t) => h.send_text(c, &t).unwrap(),
                    other => panic!("{other:?}"),
                }
            }
            h.close(c, CloseCode::NORMAL, "done").unwrap();
        }
    });
    let mut co = direct();
    co.ca_path = Some(p.ca.clone());
    let url = format!("wss://localhost:{}/", server.local_addr().port());
    let ws = WebSocket::connect_with(&url, &co).unwrap();
    ws.send_text("go").unwrap();
    receive_all(ws);
}
