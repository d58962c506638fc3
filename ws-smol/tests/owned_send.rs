//! `send_bytes` / `send_string` (and the `Sink`, which takes messages
//! over the same way): large payloads leave from their own memory, in one
//! `writev` with their header, on plain TCP and through TLS, in order with
//! copied messages, also when the peer reads slowly and writes stop half
//! way. (That the bytes on the wire are those of `send_binary` is ws-proto's
//! `owned_send` property.)

mod common;

use common::{direct, listen, run};
use std::io::{self, IoSlice};
use std::net::TcpStream;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use async_io::{Async, Timer};
use futures_lite::{future, AsyncRead, AsyncWrite};
use futures_sink::Sink;
use ws_smol::{Bytes, CloseCode, Message, ServerCert, WebSocket};
use ws_test_support::{
    assert_payloads_not_copied, check_done, check_sent_message, owned_send_messages, pki, Largest,
    MARKED,
};

#[global_allocator]
static GLOBAL: Largest = Largest;

/// Owned and copied, large and small, text and binary: 9 MiB in all.
fn messages() -> Vec<Message> {
    owned_send_messages()
}

/// Sends `messages()` (`watched`: the thread's allocations are recorded): owned by `send_bytes` / `send_string` at even
/// places, through the `Sink` at odd ones but the last, copied by
/// `send_text` / `send_binary` last; then closes.
async fn send_all<S: AsyncRead + AsyncWrite + Unpin>(ws: WebSocket<S>, watched: bool) {
    let mut tx = ws.sender();
    let all = messages();
    MARKED.with(|m| m.set(watched));
    let n = all.len();
    for (i, m) in all.into_iter().enumerate() {
        match (i % 2, i + 1 == n, m) {
            (_, true, Message::Text(t)) => tx.send_text(&t).await.unwrap(),
            (0, _, Message::Binary(b)) => tx.send_bytes(b).await.unwrap(),
            (0, _, Message::Text(t)) => tx.send_string(t).await.unwrap(),
            (_, _, m) => sink_send(&mut tx, m).await,
        }
    }
    tx.close(CloseCode::NORMAL, "done").await.unwrap();
    MARKED.with(|m| m.set(false));
    drop(ws);
}

/// Sends through the `Sink`: ready, start, flush.
async fn sink_send<S: AsyncRead + AsyncWrite + Unpin>(tx: &mut ws_smol::Sender<S>, m: Message) {
    future::poll_fn(|cx| std::pin::Pin::new(&mut *tx).poll_ready(cx))
        .await
        .unwrap();
    std::pin::Pin::new(&mut *tx).start_send(m).unwrap();
    future::poll_fn(|cx| std::pin::Pin::new(&mut *tx).poll_flush(cx))
        .await
        .unwrap();
}

/// Receives after a pause (the server's writes fill the socket and stop
/// part way through a payload), checks every message and the close.
async fn receive_all<S: AsyncRead + AsyncWrite + Unpin>(mut ws: WebSocket<S>) {
    Timer::after(Duration::from_millis(200)).await;
    for (i, want) in messages().into_iter().enumerate() {
        check_sent_message(i, &ws.recv().await.unwrap(), &want);
    }
    check_done(ws.recv().await.unwrap());
}

#[test]
fn owned_payloads_arrive_whole_and_in_order_over_tcp() {
    let (l, url) = listen();
    // The server on a thread of its own, whose allocations are watched.
    let server = std::thread::spawn(move || {
        run(async move {
            let (tcp, _): (Async<TcpStream>, _) = l.accept().await.unwrap();
            send_all(ws_smol::accept(tcp).await.unwrap(), true).await;
        })
    });
    run(async {
        let ws = ws_smol::connect_with(&url, &direct()).await.unwrap();
        receive_all(ws).await;
    });
    server.join().unwrap();
    // 7 MiB of payloads (the messages were made before the thread was
    // marked).
    assert_payloads_not_copied();
}

#[test]
fn owned_payloads_arrive_whole_and_in_order_over_tls() {
    run(async {
        let p = pki();
        let cert = ServerCert {
            cert_path: p.server_cert.clone(),
            key_path: p.server_key.clone(),
        };
        let acceptor = futures_rustls::TlsAcceptor::from(
            ws_proto::api::tls::server_config(&cert, None).unwrap(),
        );
        let (l, url) = listen();
        let server = smol::spawn(async move {
            let (tcp, _) = l.accept().await.unwrap();
            let tls = acceptor.accept(tcp).await.unwrap();
            send_all(ws_smol::accept(tls).await.unwrap(), false).await;
        });
        let mut o = direct();
        o.ca_path = Some(p.ca.clone());
        let ws = ws_smol::connect_with(&url.replace("ws://127.0.0.1", "wss://localhost"), &o)
            .await
            .unwrap();
        receive_all(ws).await;
        server.await;
    });
}

/// A stream that writes at most a few bytes per call (1 to 16 bytes a
/// quarter of the time, else up to 4 KiB), so that writes end inside
/// headers, at their ends and part way through payloads.
struct Trickle {
    inner: Async<TcpStream>,
    state: u32,
}

impl Trickle {
    fn cap(&mut self) -> usize {
        self.state = self
            .state
            .wrapping_mul(1_664_525)
            .wrapping_add(1_013_904_223);
        let r = (self.state >> 8) as usize;
        if r % 4 == 0 {
            1 + r % 16
        } else {
            1 + r % 4096
        }
    }
}

impl AsyncRead for Trickle {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Trickle {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let n = self.cap().min(buf.len());
        Pin::new(&mut self.inner).poll_write(cx, &buf[..n])
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let mut left = self.cap();
        let mut cut = Vec::new();
        for b in bufs {
            if left == 0 {
                break;
            }
            let n = b.len().min(left);
            cut.push(IoSlice::new(&b[..n]));
            left -= n;
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, &cut)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

#[test]
fn owned_payloads_survive_writes_cut_anywhere() {
    run(async {
        let (l, url) = listen();
        let server = smol::spawn(async move {
            let (tcp, _) = l.accept().await.unwrap();
            let stream = Trickle {
                inner: tcp,
                state: 12_345,
            };
            send_all(ws_smol::accept(stream).await.unwrap(), false).await;
        });
        let ws = ws_smol::connect_with(&url, &direct()).await.unwrap();
        receive_all(ws).await;
        server.await;
    });
}

#[test]
fn after_a_write_error_nothing_taken_over_is_kept() {
    run(async {
        let (l, url) = listen();
        let client = smol::spawn(async move {
            let ws = ws_smol::connect_with(&url, &direct()).await.unwrap();
            // Gone without a word: the server's writes fail.
            drop(ws);
        });
        let (tcp, _) = l.accept().await.unwrap();
        let ws = ws_smol::accept(tcp).await.unwrap();
        client.await;
        let blob = Bytes::from(vec![7u8; 1 << 20]);
        let mut sent = 0;
        let error = loop {
            match ws.send_bytes(blob.clone()).await {
                Ok(()) => sent += 1,
                Err(e) => break e,
            }
            assert!(sent < 1000, "writes to a closed peer kept succeeding");
        };
        assert!(matches!(error, ws_smol::Error::Io(_)), "{error}");
        // The connection let go of every copy it had taken over.
        assert!(blob.is_unique());
        // And takes nothing more.
        assert!(ws.send_bytes(blob.clone()).await.is_err());
        assert!(blob.is_unique());
        assert!(ws.sender().buffered_amount() == 0);
        // The Sink refuses too.
        let mut tx = ws.sender();
        assert!(
            future::poll_fn(|cx| std::pin::Pin::new(&mut tx).poll_ready(cx))
                .await
                .is_err()
        );
        assert!(std::pin::Pin::new(&mut tx)
            .start_send(Message::Binary(blob.clone()))
            .is_err());
        assert!(blob.is_unique());
        // The receiver reports the end and then ends (before the fix it
        // waited forever: the shutdown queued after the failure was never
        // taken out).
        let mut ws = ws;
        let mut closed = false;
        loop {
            match ws.recv().await {
                Ok(Message::Closed(_)) => closed = true,
                Ok(_) => {}
                Err(ws_smol::Error::Closed) => break,
                Err(e) => panic!("{e}"),
            }
        }
        assert!(closed);
    });
}
