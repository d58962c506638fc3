//! Buffers grown for large messages: kept while large messages keep coming
//! (the echoes do not allocate them anew), and given back by each side on
//! its own once they stop for `Config::release_buffers_after` (the
//! receiver's read wakes for the connection's timer). Measured as the
//! process's live heap, on loopback sockets.

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{direct, echo_server, local_options};
use ws_blocking::{CloseCode, Message, WebSocket};
use ws_test_support::{hold_config, live_bytes, Live, HOLD};

#[global_allocator]
static GLOBAL: Live = Live;

const SIZE: usize = 200_000;

#[test]
fn large_message_buffers_are_kept_while_busy_and_given_back_when_idle() {
    let mut server_options = local_options();
    server_options.config = hold_config();
    let server = echo_server(server_options);
    let mut options = direct();
    options.config = hold_config();
    let url = format!("ws://{}/", server.local_addr());
    let (tx, mut rx) = WebSocket::connect_with(&url, &options).unwrap().split();
    // The receiver on a thread of its own, blocked in `recv` when idle.
    let (got, echoes) = mpsc::channel();
    let reader = std::thread::spawn(move || loop {
        let m = rx.recv();
        let end = !matches!(m, Ok(Message::Binary(_)));
        got.send(m).unwrap();
        if end {
            return;
        }
    });
    let echo = |len: usize| {
        let payload: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
        tx.send_binary(&payload).unwrap();
        match echoes.recv_timeout(Duration::from_secs(10)).unwrap() {
            Ok(Message::Binary(b)) => assert!(b == payload),
            other => panic!("{other:?}"),
        }
    };
    // Small first: each side's read buffer and small buffers exist.
    echo(100);
    let base = live_bytes();
    // The client's input and output, the server's: kept for the next,
    // seen after most echoes (a look could come past the hold on a
    // stalled machine; buffers given back after each message could still
    // be seen now and then, in the server's thread).
    let mut held = Vec::new();
    for _ in 0..10 {
        echo(SIZE);
        held.push(live_bytes() - base);
    }
    let kept = held.iter().filter(|&&b| b > 2 * SIZE as isize).count();
    assert!(kept >= 7, "{held:?} bytes held after large messages");
    // Both receivers wait past the hold: their timers give the buffers
    // back (looked at every quarter hold, for at most 10 s).
    let start = Instant::now();
    let idle = loop {
        std::thread::sleep(HOLD / 4);
        let idle = live_bytes() - base;
        if idle < 16 << 10 || start.elapsed() > Duration::from_secs(10) {
            break idle;
        }
    };
    assert!(idle < 16 << 10, "{idle} bytes held once idle");
    tx.close(CloseCode::NORMAL, "").unwrap();
    let end = echoes.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(matches!(end, Ok(Message::Closed(_))), "{end:?}");
    reader.join().unwrap();
}
