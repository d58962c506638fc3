//! A message that lies whole in one read is lent to `recv_with` from the
//! read buffer itself: it is never copied into the connection, which would
//! show as an allocation of the message's size (the connection gives back a
//! large input buffer when idle, so each such copy allocates anew).

mod common;

use std::net::TcpListener;
use std::sync::atomic::Ordering;

use async_io::Async;
use common::{direct, listen, run};
use ws_smol::{Message, MessageRef};
use ws_test_support::{Largest, LARGEST, MARKED};

#[global_allocator]
static GLOBAL: Largest = Largest;

const SIZE: usize = 16 << 10;
const COUNT: usize = 20;

/// The tests of this file one at a time: `LARGEST` is the process's.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The client, on a thread of its own (only the receiving thread is
/// watched): sends `message(i)` and waits for the answer `i`, `COUNT`
/// times. One message in flight: each read holds one whole message.
fn client(url: String, message: fn(usize) -> Message) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        run(async {
            let mut ws = ws_smol::connect_with(&url, &direct()).await.unwrap();
            for i in 0..COUNT {
                match message(i) {
                    Message::Text(t) => ws.send_text(&t).await.unwrap(),
                    Message::Binary(b) => ws.send_binary(&b).await.unwrap(),
                    other => panic!("{other:?}"),
                }
                assert_eq!(ws.recv().await.unwrap(), Message::Text(format!("{i}")));
            }
        })
    })
}

/// Text of `SIZE` bytes, a letter for each `i`.
fn text(i: usize) -> String {
    char::from(b'a' + i as u8).to_string().repeat(SIZE)
}

#[test]
fn a_message_whole_in_a_read_is_lent_from_the_read_buffer() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (l, url) = listen();
    let client = client(url, |i| Message::Binary(vec![i as u8; SIZE].into()));
    run(receive(l));
    client.join().unwrap();
}

async fn receive(l: Async<TcpListener>) {
    let (tcp, _) = l.accept().await.unwrap();
    let (tx, mut rx) = ws_smol::accept(tcp).await.unwrap().split();
    let mut lent_in_place = 0;
    for i in 0..COUNT {
        if i == 2 {
            // After the first reads: the thread's read buffer is there.
            LARGEST.store(0, Ordering::Relaxed);
            MARKED.with(|m| m.set(true));
        }
        let ok = rx
            .recv_with(|m| matches!(m, MessageRef::Binary(b) if b.len() == SIZE && b.iter().all(|&x| x == i as u8)))
            .await
            .unwrap();
        assert!(ok, "message {i}");
        tx.send_text(&format!("{i}")).await.unwrap();
        lent_in_place += 1;
    }
    MARKED.with(|m| m.set(false));
    let largest = LARGEST.load(Ordering::Relaxed);
    assert!(
        largest < SIZE,
        "{lent_in_place} messages of {SIZE} bytes received; an allocation of {largest} bytes"
    );
}

/// `recv` builds a large text message straight from the read into its
/// `String` (`handle_data`'s direct path; `handle_data_message` leaves
/// frames from 4 KiB on to it): its one allocation is that `String`, of
/// exactly its size. A copy into the connection first would allocate more
/// (the frame's header too).
#[test]
fn recv_builds_a_message_whole_in_a_read_from_the_read_buffer() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (l, url) = listen();
    let client = client(url, |i| Message::Text(text(i)));
    run(async {
        let (tcp, _) = l.accept().await.unwrap();
        let (tx, mut rx) = ws_smol::accept(tcp).await.unwrap().split();
        for i in 0..COUNT {
            if i == 2 {
                LARGEST.store(0, Ordering::Relaxed);
                MARKED.with(|m| m.set(true));
            }
            assert_eq!(
                rx.recv().await.unwrap(),
                Message::Text(text(i)),
                "message {i}"
            );
            tx.send_text(&format!("{i}")).await.unwrap();
        }
        MARKED.with(|m| m.set(false));
    });
    client.join().unwrap();
    let largest = LARGEST.load(Ordering::Relaxed);
    // `text(i)` above is of the same size.
    assert_eq!(largest, SIZE, "an allocation of {largest} bytes");
}
