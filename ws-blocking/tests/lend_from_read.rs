//! A message that lies whole in one read is lent to `recv_with` from the
//! receiver's read buffer itself: it is never copied into the connection,
//! which would show as an allocation of the message's size (the connection
//! gives back a large input buffer when idle, so each such copy allocates
//! anew).

mod common;

use std::net::TcpListener;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use common::direct;
use ws_blocking::{Message, MessageRef};
use ws_test_support::{Largest, LARGEST, MARKED};

#[global_allocator]
static GLOBAL: Largest = Largest;

/// Under the receiver's 16 KiB reads, with the frame's header.
const SIZE: usize = 8 << 10;
const COUNT: usize = 20;

#[test]
fn a_message_whole_in_a_read_is_lent_from_the_read_buffer() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://127.0.0.1:{}/", l.local_addr().unwrap().port());
    // The client on a thread of its own: only the receiving thread is
    // watched. One message in flight: each read holds one whole message.
    let client = thread::spawn(move || {
        let mut ws = ws_blocking::WebSocket::connect_with(&url, &direct()).unwrap();
        for i in 0..COUNT {
            ws.send_binary(&vec![i as u8; SIZE]).unwrap();
            assert_eq!(ws.recv().unwrap(), Message::Text(format!("{i}")));
        }
    });
    let (done, result) = mpsc::channel();
    thread::spawn(move || {
        let (tcp, _) = l.accept().unwrap();
        let (tx, mut rx) = ws_blocking::accept(tcp).unwrap().split();
        for i in 0..COUNT {
            if i == 2 {
                // After the first reads: the receiver's buffer is there.
                LARGEST.store(0, Ordering::Relaxed);
                MARKED.with(|m| m.set(true));
            }
            let ok = rx
                .recv_with(|m| {
                    matches!(m, MessageRef::Binary(b) if b.len() == SIZE && b.iter().all(|&x| x == i as u8))
                })
                .unwrap();
            assert!(ok, "message {i}");
            tx.send_text(&format!("{i}")).unwrap();
        }
        MARKED.with(|m| m.set(false));
        let _ = done.send(LARGEST.load(Ordering::Relaxed));
    });
    let largest = result
        .recv_timeout(Duration::from_secs(20))
        .expect("the server did not finish");
    client.join().unwrap();
    assert!(
        largest < SIZE,
        "{COUNT} messages of {SIZE} bytes received; an allocation of {largest} bytes"
    );
}
