//! Buffers grown for large messages: kept while large messages keep coming
//! (the echoes do not allocate them anew), and given back by each side on
//! its own once they stop for `Config::release_buffers_after` (the
//! receiver drives the connection's timer while it waits). Measured as the
//! process's live heap, on loopback sockets.

mod common;

use common::{direct, listen, run};

use async_io::Timer;
use futures_lite::future;
use ws_smol::{Accept, CloseCode, Message};
use ws_test_support::{hold_config, live_bytes, Live, HOLD};

#[global_allocator]
static GLOBAL: Live = Live;

const SIZE: usize = 200_000;

#[test]
fn large_message_buffers_are_kept_while_busy_and_given_back_when_idle() {
    let (l, url) = listen();
    let server = std::thread::spawn(move || {
        run(async move {
            let (tcp, _) = l.accept().await.unwrap();
            let mut ws = ws_smol::accept_with(tcp, hold_config(), |_| Ok(Accept::new()))
                .await
                .unwrap();
            loop {
                match ws.recv().await {
                    Ok(Message::Binary(b)) => ws.send_binary(&b).await.unwrap(),
                    Ok(Message::Closed(_)) | Err(_) => break,
                    Ok(_) => {}
                }
            }
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
        for _ in 0..10 {
            echo(SIZE).await;
        }
        let busy = live_bytes() - base;
        // The client's input and output, the server's: kept for the next.
        assert!(
            busy > 2 * SIZE as isize,
            "{busy} bytes held after large messages"
        );
        // Both receivers wait (the client's here, for nothing) past the
        // hold: their timers give the buffers back.
        let waited = future::or(async { Some(ws.recv().await) }, async {
            Timer::after(HOLD * 4).await;
            None
        })
        .await;
        assert!(waited.is_none(), "{waited:?}");
        let idle = live_bytes() - base;
        assert!(idle < 16 << 10, "{idle} bytes held once idle");
        ws.close(CloseCode::NORMAL, "").await.unwrap();
        while !matches!(ws.recv().await, Ok(Message::Closed(_)) | Err(_)) {}
    });
    server.join().unwrap();
}
