//! Buffers grown for large messages: kept while large messages keep coming
//! (the echoes do not allocate them anew), and given back by each side on
//! its own once they stop for `Config::release_buffers_after` (the
//! receiver drives the connection's timer while it waits). Measured as the
//! process's live heap, on loopback sockets.

mod common;

use common::{direct, listen, run};

use std::time::{Duration, Instant};

use async_io::Timer;
use futures_lite::future;
use ws_smol::{Accept, CloseCode, MaybeTls, Message, WebSocket};
use ws_test_support::{hold_config, live_bytes, Live, HOLD};

#[global_allocator]
static GLOBAL: Live = Live;

const SIZE: usize = 200_000;
/// Live bytes above those before the large messages that count as idle.
const IDLE: isize = 16 << 10;
/// Messages the server sends unasked.
const PUSHED: usize = 3;

/// Waits with a receive pending (that gets nothing), so that the client's
/// timer can fire, until the live bytes fall below `base + IDLE` or 10 s
/// (30 times the hold) have passed; returns them less `base`.
async fn wait_idle(ws: &mut WebSocket<MaybeTls>, base: isize) -> isize {
    let start = Instant::now();
    loop {
        let waited = future::or(async { Some(ws.recv().await) }, async {
            Timer::after(HOLD / 4).await;
            None
        })
        .await;
        assert!(waited.is_none(), "{waited:?}");
        let idle = live_bytes() - base;
        if idle < IDLE || start.elapsed() > Duration::from_secs(10) {
            return idle;
        }
    }
}

#[test]
fn large_message_buffers_are_kept_while_busy_and_given_back_when_idle() {
    let (l, url) = listen();
    let server = std::thread::spawn(move || {
        run(async move {
            let (tcp, _) = l.accept().await.unwrap();
            let mut ws = ws_smol::accept_with(tcp, hold_config(), |_| Ok(Accept::new()))
                .await
                .unwrap();
            // Pushes from a task of their own while the receiver waits.
            let tx = ws.sender();
            let (go, push) = smol::channel::bounded::<()>(1);
            let pusher = async move {
                while push.recv().await.is_ok() {
                    // Let the receiver go back to waiting first.
                    Timer::after(Duration::from_millis(50)).await;
                    for i in 0..PUSHED {
                        tx.send_binary(&vec![i as u8; SIZE]).await.unwrap();
                    }
                }
            };
            let echo = async move {
                loop {
                    match ws.recv().await {
                        Ok(Message::Binary(b)) => ws.send_binary(&b).await.unwrap(),
                        Ok(Message::Text(t)) if t == "push" => go.send(()).await.unwrap(),
                        Ok(Message::Closed(_)) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
            };
            future::or(echo, pusher).await;
        })
    });
    run(async move {
        let mut options = direct();
        options.config = hold_config();
        let mut ws = ws_smol::connect_with(&url, &options).await.unwrap();
        let mut echo = async |len: usize| {
            let payload: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
            ws.send_binary(&payload).await.unwrap();
            match ws.recv().await.unwrap() {
                Message::Binary(b) => assert!(b == payload),
                other => panic!("{other:?}"),
            }
        };
        // Small first: each side's read buffer and small buffers exist.
        echo(100).await;
        let base = live_bytes();
        // The client's input and output, the server's: kept for the next,
        // seen after most echoes (a look could come past the hold on a
        // stalled machine; buffers given back after each message could still
        // be seen now and then, in the server's thread).
        let mut held = Vec::new();
        for _ in 0..10 {
            echo(SIZE).await;
            held.push(live_bytes() - base);
        }
        let kept = held.iter().filter(|&&b| b > 2 * SIZE as isize).count();
        assert!(kept >= 7, "{held:?} bytes held after large messages");
        // Both receivers wait (the client's here, for nothing) past the
        // hold: their timers give the buffers back.
        let idle = wait_idle(&mut ws, base).await;
        assert!(idle < IDLE, "{idle} bytes held once idle");
        // Large messages sent while the server's receiver waits with no
        // timer armed (nothing was held): the send must get it to arm one.
        ws.send_text("push").await.unwrap();
        for i in 0..PUSHED {
            match ws.recv().await.unwrap() {
                Message::Binary(b) => assert!(b.len() == SIZE && b[0] == i as u8),
                other => panic!("{other:?}"),
            }
        }
        let idle = wait_idle(&mut ws, base).await;
        assert!(idle < IDLE, "{idle} bytes held once idle after the pushes");
        ws.close(CloseCode::NORMAL, "").await.unwrap();
        while !matches!(ws.recv().await, Ok(Message::Closed(_)) | Err(_)) {}
    });
    server.join().unwrap();
}
