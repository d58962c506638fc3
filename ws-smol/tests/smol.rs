//! ws-smol on loopback: messages, Stream/Sink, halves on two tasks,
//! cancellation safety, streaming, keepalive, server operations and limits,
//! TLS and a real tinyproxy.

mod common;

use common::{direct, run};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_io::Timer;
use futures_lite::{future, StreamExt};
use futures_sink::Sink;
use ws_smol::{
    ClientCert, ClientEvent, ClientEventKind, CloseCode, Error, Event, HttpProxy, Message,
    MessageKind, Proxy, Server, ServerCert, ServerEvent, ServerEventKind, ServerOptions,
};
use ws_test_support::{not_listening, pki, tinyproxy, CLIENT_KEY_PASSWORD};

fn local() -> ServerOptions {
    let mut o = ServerOptions::default();
    o.ip = [127, 0, 0, 1].into();
    o.port = 0;
    o
}

/// An echo server answering from the MessageReceive callback.
async fn echo(options: ServerOptions) -> Server {
    let server = Server::start(options).await.unwrap();
    let h = server.handle();
    server.on(ServerEventKind::MessageReceive, move |ev| {
        if let ServerEvent::Message(c, m) = ev {
            let _ = match m {
                Message::Text(t) => h.queue_text(c, t),
                Message::Binary(b) => h.queue_binary(c, b),
                _ => Ok(()),
            };
        }
    });
    server
}

fn url(s: &Server) -> String {
    format!("ws://{}/", s.local_addr())
}

/// Waits until `f` holds (the enclosing `run` bounds the time).
async fn eventually(f: impl Fn() -> bool) {
    while !f() {
        Timer::after(Duration::from_millis(5)).await;
    }
}

#[test]
fn echo_stream_and_sink() {
    run(async {
        let server = echo(local()).await;
        let mut ws = ws_smol::connect_with(&url(&server), &direct())
            .await
            .unwrap();
        assert_eq!(ws.response().unwrap().status, 101);
        ws.send_text("héllo").await.unwrap();
        assert_eq!(ws.recv().await.unwrap(), Message::Text("héllo".into()));
        // Sink and Stream.
        let mut sink = ws.sender();
        future::poll_fn(|cx| std::pin::Pin::new(&mut sink).poll_ready(cx))
            .await
            .unwrap();
        std::pin::Pin::new(&mut sink)
            .start_send(Message::Binary(vec![1, 2, 3].into()))
            .unwrap();
        future::poll_fn(|cx| std::pin::Pin::new(&mut sink).poll_flush(cx))
            .await
            .unwrap();
        assert_eq!(
            ws.next().await.unwrap().unwrap(),
            Message::Binary(vec![1, 2, 3].into())
        );
        ws.ping(b"p").await.unwrap();
        assert_eq!(ws.recv().await.unwrap(), Message::Pong("p".into()));
        match ws.close_and_wait(CloseCode::NORMAL, "bye").await.unwrap() {
            Message::Closed(c) => assert!(c.is_clean()),
            other => panic!("{other:?}"),
        }
    });
}

#[test]
fn halves_in_two_tasks_never_interleave() {
    run(async {
        let server = echo(local()).await;
        let ws = ws_smol::connect_with(&url(&server), &direct())
            .await
            .unwrap();
        let (tx, mut rx) = ws.split();
        let writers: Vec<_> = (0..4)
            .map(|t| {
                let tx = tx.clone();
                smol::spawn(async move {
                    for i in 0..200usize {
                        let msg = format!("{t}:{i}:{}", "x".repeat((i * 37) % 3000));
                        tx.send_text(&msg).await.unwrap();
                    }
                })
            })
            .collect();
        let mut seen = [0usize; 4];
        for _ in 0..800 {
            match rx.recv().await.unwrap() {
                Message::Text(t) => {
                    let mut p = t.splitn(3, ':');
                    let th: usize = p.next().unwrap().parse().unwrap();
                    let i: usize = p.next().unwrap().parse().unwrap();
                    assert_eq!(i, seen[th]);
                    assert_eq!(p.next().unwrap().len(), (i * 37) % 3000);
                    seen[th] += 1;
                }
                other => panic!("{other:?}"),
            }
        }
        for w in writers {
            w.await;
        }
        assert_eq!(seen, [200; 4]);
    });
}

#[test]
fn dropping_recv_futures_loses_nothing() {
    run(async {
        let server = echo(local()).await;
        let mut ws = ws_smol::connect_with(&url(&server), &direct())
            .await
            .unwrap();
        let tx = ws.sender();
        // A 4 MiB message arrives while recv() futures are started and
        // dropped every 100 microseconds.
        let big: Vec<u8> = (0..4 << 20).map(|i| (i % 251) as u8).collect();
        let expected = big.clone();
        let sender = smol::spawn(async move { tx.send_binary(&big).await.unwrap() });
        let mut cancelled = 0;
        let got = loop {
            let r = future::or(async { Some(ws.recv().await) }, async {
                Timer::after(Duration::from_micros(100)).await;
                None
            })
            .await;
            match r {
                Some(m) => break m.unwrap(),
                None => cancelled += 1,
            }
        };
        sender.await;
        assert!(cancelled > 0, "no recv was cancelled");
        assert_eq!(got, Message::Binary(expected.into()));
    });
}

#[test]
fn dropped_send_future_still_delivers_the_whole_message() {
    run(async {
        let server = echo(local()).await;
        let mut ws = ws_smol::connect_with(&url(&server), &direct())
            .await
            .unwrap();
        let big = "y".repeat(16 << 20);
        // Poll the send once, then drop it: the message is queued whole.
        let finished = future::or(async { ws.send_text(&big).await.map(|_| true) }, async {
            Ok(false)
        })
        .await
        .unwrap();
        assert!(!finished, "16 MiB cannot be written in one poll");
        ws.send_text("after").await.unwrap();
        assert_eq!(ws.recv().await.unwrap(), Message::Text(big));
        assert_eq!(ws.recv().await.unwrap(), Message::Text("after".into()));
    });
}

#[test]
fn streaming_a_huge_message_in_chunks() {
    run(async {
        let server = echo(local()).await;
        let mut ws = ws_smol::connect_with(&url(&server), &direct())
            .await
            .unwrap();
        let piece = vec![7u8; 1 << 20];
        let tx = ws.sender();
        let w = smol::spawn(async move {
            for i in 0..20 {
                tx.send_chunk(MessageKind::Binary, &piece, i == 19)
                    .await
                    .unwrap();
            }
        });
        let mut total = 0;
        let mut biggest = 0;
        loop {
            match ws.recv_event().await.unwrap() {
                Some(Event::Binary { data, fin }) => {
                    total += data.len();
                    biggest = biggest.max(data.len());
                    if fin {
                        break;
                    }
                }
                other => panic!("{other:?}"),
            }
        }
        w.await;
        assert_eq!(total, 20 << 20);
        assert!(biggest <= 1 << 20);
    });
}

#[test]
fn keepalive_and_close_timeout_are_driven_by_timers() {
    run(async {
        // A server that completes the handshake and then stays silent.
        let listener = async_net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let silent = smol::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut hs = ws_proto::ServerHandshake::new(ws_proto::Config::default());
            let mut buf = vec![0u8; 4096];
            let up = loop {
                let n = futures_lite::AsyncReadExt::read(&mut s, &mut buf)
                    .await
                    .unwrap();
                if let Some(ws_proto::Incoming::Upgrade(u)) = hs.handle_data(&buf[..n]).unwrap() {
                    break u;
                }
            };
            let mut out = Vec::new();
            let _c = up
                .accept(Instant::now(), &Default::default(), &mut out)
                .unwrap();
            futures_lite::AsyncWriteExt::write_all(&mut s, &out)
                .await
                .unwrap();
            Timer::after(Duration::from_secs(5)).await;
            drop(s);
        });
        let mut o = direct();
        o.config.keepalive_interval = Some(Duration::from_millis(100));
        o.config.keepalive_timeout = Duration::from_millis(200);
        let mut ws = ws_smol::connect_with(&format!("ws://{addr}/"), &o)
            .await
            .unwrap();
        let t = Instant::now();
        match ws.recv().await.unwrap() {
            Message::Closed(c) => assert_eq!(c.code, CloseCode::INTERNAL_ERROR),
            other => panic!("{other:?}"),
        }
        // Well before the 30 s default; loose for a loaded machine.
        assert!(t.elapsed() < Duration::from_secs(5));
        drop(silent);
    });
}

#[test]
fn a_broadcast_of_one_bytes_reaches_every_client_whole() {
    run(async {
        let server = Server::start(local()).await.unwrap();
        let events = server.events();
        let mut clients = Vec::new();
        for _ in 0..3 {
            clients.push(
                ws_smol::connect_with(&url(&server), &direct())
                    .await
                    .unwrap(),
            );
        }
        let mut conns = Vec::new();
        while conns.len() < 3 {
            if let ServerEvent::Connect(c) = events.recv().await.unwrap() {
                conns.push(c);
            }
        }
        // One payload for all (taken over by each connection, shared), and
        // a small one (copied) after it.
        let blob: ws_smol::Bytes = (0..(1u32 << 20) + 1)
            .map(|i| (i.wrapping_mul(40_503) >> 11) as u8)
            .collect::<Vec<u8>>()
            .into();
        let h = server.handle();
        for (i, c) in conns.iter().enumerate() {
            if i == 0 {
                h.queue_bytes(c, blob.clone()).unwrap();
            } else {
                h.send_bytes(c, blob.clone()).await.unwrap();
            }
            h.send_bytes(c, ws_smol::Bytes::from_static(b"end"))
                .await
                .unwrap();
        }
        for ws in &mut clients {
            assert!(ws.recv().await.unwrap() == Message::Binary(blob.clone()));
            assert_eq!(ws.recv().await.unwrap(), Message::Binary(b"end"[..].into()));
        }
    });
}

/// Past the events queue's 1024, a connection waits for room: nothing is
/// dropped or reordered.
#[test]
fn events_past_a_full_queue_wait_and_arrive_in_order() {
    run(async {
        let server = Server::start(local()).await.unwrap();
        let events = server.events();
        let ws = ws_smol::connect_with(&url(&server), &direct())
            .await
            .unwrap();
        const N: usize = 1500;
        for i in 0..N {
            ws.send_text(&i.to_string()).await.unwrap();
        }
        // Let the queue fill while no one reads it.
        eventually(|| events.len() == events.capacity().unwrap()).await;
        let mut next = 0;
        while next < N {
            match events.recv().await.unwrap() {
                ServerEvent::Message(_, Message::Text(t)) => {
                    assert_eq!(t, next.to_string());
                    next += 1;
                }
                ServerEvent::Connect(_) => assert_eq!(next, 0),
                other => panic!("{other:?}"),
            }
        }
    });
}

#[test]
fn lent_callbacks_answer_on_their_connection_and_may_not_lock_others() {
    run(async {
        let server = Server::start(local()).await.unwrap();
        let log = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let l = log.clone();
        let logger = server.on(ServerEventKind::MessageReceive, move |ev| {
            if let ServerEvent::Message(_, m) = ev {
                l.lock()
                    .unwrap()
                    .push(ws_test_support::logged("owned", m.view()));
            }
        });
        let h = server.handle();
        let first = server.on(ServerEventKind::MessageReceive, move |ev| {
            if let ServerEvent::Message(c, Message::Text(t)) = ev {
                h.queue_text(c, &format!("owned:{t}")).unwrap();
            }
        });
        let mut a = ws_smol::connect_with(&url(&server), &direct())
            .await
            .unwrap();
        let mut b = ws_smol::connect_with(&url(&server), &direct())
            .await
            .unwrap();
        // An owned answer is written by the connection's next receive, an
        // owned one as no lent callback is registered: once it is here,
        // both connections wait in an owned receive.
        for ws in [&mut a, &mut b] {
            ws.send_text("zero").await.unwrap();
            assert_eq!(ws.recv().await.unwrap(), Message::Text("owned:zero".into()));
        }
        assert_eq!(server.off(ServerEventKind::MessageReceive, Some(first)), 1);
        log.lock().unwrap().clear();
        // Their next message is lent from its owned copy; the ones after
        // it from the read.
        let (h, l) = (server.handle(), log.clone());
        let lent = server.on_message_lent(move |conn, m, reply| {
            // The handle refuses to lock a connection here: this one, or
            // another, whose own lent callback could be waiting for this.
            let refused = h.connections().iter().all(|c| {
                matches!(h.queue_text(c, "no"), Err(Error::InLentCallback))
                    && matches!(h.buffered_amount(c), Err(Error::InLentCallback))
            });
            l.lock()
                .unwrap()
                .push(format!("{} {refused}", ws_test_support::logged("lent", m)));
            let _ = match m {
                ws_smol::MessageRef::Text(t) => reply.send_text(&format!("{}:{}", conn.id, t)),
                ws_smol::MessageRef::Binary(d) => reply.send_binary(&d[..d.len() / 2]),
                _ => Ok(()),
            };
        });
        let ids: Vec<u64> = server.connections().iter().map(|c| c.id).collect();
        // Each message's owned callback has run before the next message
        // (on another connection, maybe another thread) is sent.
        let logged_up_to = |n: usize| {
            let log = log.clone();
            eventually(move || log.lock().unwrap().len() == n)
        };
        a.send_text("one").await.unwrap();
        assert_eq!(
            a.recv().await.unwrap(),
            Message::Text(format!("{}:one", ids[0]))
        );
        logged_up_to(2).await;
        b.send_text("two").await.unwrap();
        assert_eq!(
            b.recv().await.unwrap(),
            Message::Text(format!("{}:two", ids[1]))
        );
        logged_up_to(4).await;
        a.send_text("three").await.unwrap();
        assert_eq!(
            a.recv().await.unwrap(),
            Message::Text(format!("{}:three", ids[0]))
        );
        logged_up_to(6).await;
        let big: Vec<u8> = (0..300_000u32).map(|i| i as u8).collect();
        a.send_binary(&big).await.unwrap();
        assert_eq!(
            a.recv().await.unwrap(),
            Message::Binary(big[..150_000].to_vec().into())
        );
        // The owned callback still gets every message, after the lent one.
        logged_up_to(8).await;
        assert_eq!(*log.lock().unwrap(), ws_test_support::LENT_THEN_OWNED);
        // With no owned callback, no owned copy is made, unless an events
        // stream is open: one opened while a connection waits in a lent
        // receive gets that connection's next message.
        assert_eq!(server.off(ServerEventKind::MessageReceive, Some(logger)), 1);
        // The log shows the owned callback has run, not that the
        // connection is done with the message: it forwards it to the events
        // stream next, and a stream opened in between would get it. The
        // connection answers this Ping only once it is done.
        a.ping(b"done").await.unwrap();
        assert_eq!(a.recv().await.unwrap(), Message::Pong("done".into()));
        let events = server.events();
        a.send_text("four").await.unwrap();
        assert_eq!(
            a.recv().await.unwrap(),
            Message::Text(format!("{}:four", ids[0]))
        );
        match events.recv().await.unwrap() {
            ServerEvent::Message(c, Message::Text(t)) => {
                assert_eq!((c.id, t.as_str()), (ids[0], "four"))
            }
            other => panic!("{other:?}"),
        }
        // A Ping is answered, and lent to no callback.
        a.ping(b"p").await.unwrap();
        assert_eq!(a.recv().await.unwrap(), Message::Pong("p".into()));
        logged_up_to(9).await;
        // `off` takes it out like any messageReceive callback.
        assert_eq!(server.off(ServerEventKind::MessageReceive, Some(lent)), 1);
        let h = server.handle();
        server.on(ServerEventKind::MessageReceive, move |ev| {
            if let ServerEvent::Message(c, Message::Text(t)) = ev {
                h.queue_text(c, &format!("owned:{t}")).unwrap();
            }
        });
        b.send_text("five").await.unwrap();
        assert_eq!(b.recv().await.unwrap(), Message::Text("owned:five".into()));
        assert_eq!(log.lock().unwrap().len(), 9, "nothing lent after `off`");
        // `off` with no id takes out every kind of messageReceive callback.
        server.on_message_lent(|_, _, _| {});
        assert_eq!(server.off(ServerEventKind::MessageReceive, None), 2);
    });
}

/// A callback taken out by `off` is let go of once its connection has had
/// a message since, also while the connection only lends its messages
/// (one receive then lends all that was read, without returning).
#[test]
fn a_callback_taken_out_is_let_go_of_while_messages_are_lent() {
    run(async {
        let server = Server::start(local()).await.unwrap();
        server.on_message_lent(|_, m, reply| {
            if let ws_smol::MessageRef::Text(t) = m {
                let _ = reply.send_text(t);
            }
        });
        struct SetOnDrop(Arc<std::sync::atomic::AtomicBool>);
        impl Drop for SetOnDrop {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let dropped = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let held = SetOnDrop(dropped.clone());
        let id = server.on(ServerEventKind::Close, move |_| {
            let _ = &held;
        });
        let mut ws = ws_smol::connect_with(&url(&server), &direct())
            .await
            .unwrap();
        ws.send_text("one").await.unwrap();
        assert_eq!(ws.recv().await.unwrap(), Message::Text("one".into()));
        assert_eq!(server.off(ServerEventKind::Close, Some(id)), 1);
        // The connection's view of the callbacks still holds it.
        assert!(!dropped.load(Ordering::SeqCst));
        ws.send_text("two").await.unwrap();
        assert_eq!(ws.recv().await.unwrap(), Message::Text("two".into()));
        eventually(|| dropped.load(Ordering::SeqCst)).await;
    });
}

#[test]
fn server_lists_sends_closes_and_stops() {
    run(async {
        let mut o = local();
        o.protocol = Some("chat".into());
        let mut server = Server::start(o).await.unwrap();
        let events = server.events();
        let mut opts = direct();
        opts.protocols = vec!["chat".into()];
        let mut a = ws_smol::connect_with(&url(&server), &opts).await.unwrap();
        let mut b = ws_smol::connect_with(&url(&server), &direct())
            .await
            .unwrap();
        assert_eq!(a.protocol(), Some("chat"));
        let mut conns = Vec::new();
        while conns.len() < 2 {
            if let ServerEvent::Connect(c) = events.recv().await.unwrap() {
                conns.push(c);
            }
        }
        conns.sort_by_key(|c| c.id);
        assert_eq!(server.connections(), conns);
        server.send_text(&conns[0], "to a").await.unwrap();
        assert_eq!(a.recv().await.unwrap(), Message::Text("to a".into()));
        b.send_text("from b").await.unwrap();
        loop {
            if let ServerEvent::Message(c, Message::Text(t)) = events.recv().await.unwrap() {
                assert_eq!((c, t.as_str()), (conns[1], "from b"));
                break;
            }
        }
        server
            .close(&conns[0], CloseCode(4001), "bye a")
            .await
            .unwrap();
        match a.recv().await.unwrap() {
            Message::Closed(c) => {
                assert_eq!((c.code, c.reason.as_str()), (CloseCode(4001), "bye a"))
            }
            other => panic!("{other:?}"),
        }
        drop(a);
        eventually(|| server.connections() == vec![conns[1]]).await;
        assert_eq!(
            server
                .send_text(&conns[0], "x")
                .await
                .unwrap_err()
                .code()
                .code(),
            2_302_006
        );
        // Stop: b is closed with 1001 while it reads; the listener goes away.
        let reader = smol::spawn(async move {
            loop {
                if let Message::Closed(c) = b.recv().await.unwrap() {
                    return c;
                }
            }
        });
        let addr = server.local_addr();
        server.stop().await.unwrap();
        let c = reader.await;
        assert_eq!(c.code, CloseCode::GOING_AWAY);
        assert!(c.is_clean());
        assert!(not_listening(&addr), "still listening");
        // The event stream ends.
        while events.recv().await.is_ok() {}
    });
}

#[test]
fn limits_refuse_with_503_and_429() {
    run(async {
        let mut o = local();
        o.max_clients = 1;
        let server = echo(o).await;
        let mut a = ws_smol::connect_with(&url(&server), &direct())
            .await
            .unwrap();
        match ws_smol::connect_with(&url(&server), &direct())
            .await
            .unwrap_err()
        {
            Error::Handshake(ws_proto::HandshakeError::Status { status, .. }) => {
                assert_eq!(status, 503)
            }
            other => panic!("{other}"),
        }
        a.send_text("still fine").await.unwrap();
        assert_eq!(a.recv().await.unwrap(), Message::Text("still fine".into()));
        let mut o = local();
        o.max_connections_per_ip = 1;
        let server = echo(o).await;
        let _a = ws_smol::connect_with(&url(&server), &direct())
            .await
            .unwrap();
        match ws_smol::connect_with(&url(&server), &direct())
            .await
            .unwrap_err()
        {
            Error::Handshake(ws_proto::HandshakeError::Status { status, .. }) => {
                assert_eq!(status, 429)
            }
            other => panic!("{other}"),
        }
    });
}

#[test]
fn a_panicking_callback_drops_only_its_connection_and_frees_its_place() {
    run(async {
        let mut o = local();
        o.max_clients = 2;
        let server = Server::start(o).await.unwrap();
        let h = server.handle();
        server.on(ServerEventKind::MessageReceive, move |ev| {
            if let ServerEvent::Message(c, Message::Text(t)) = ev {
                assert!(t != "panic", "an application callback panicked");
                let _ = h.queue_text(c, t);
            }
        });
        // Keepalive bounds the wait below if the connection were left
        // open with no one serving it.
        let mut bounded = direct();
        bounded.config.keepalive_interval = Some(Duration::from_secs(1));
        bounded.config.keepalive_timeout = Duration::from_secs(2);
        let mut a = ws_smol::connect_with(&url(&server), &bounded)
            .await
            .unwrap();
        let mut b = ws_smol::connect_with(&url(&server), &direct())
            .await
            .unwrap();
        a.send_text("panic").await.unwrap();
        // The server dropped a's connection: no close handshake.
        match a.recv().await {
            Ok(Message::Closed(c)) => assert_eq!(c.code, CloseCode::ABNORMAL),
            Err(_) => {}
            Ok(other) => panic!("{other:?}"),
        }
        // b shares a's group (or not) and goes on.
        for i in 0..10 {
            b.send_text(&format!("b{i}")).await.unwrap();
            assert_eq!(b.recv().await.unwrap(), Message::Text(format!("b{i}")));
        }
        // a's place is free again (max_clients is 2).
        eventually(|| server.connections().len() == 1).await;
        let mut c = ws_smol::connect_with(&url(&server), &direct())
            .await
            .unwrap();
        c.send_text("c").await.unwrap();
        assert_eq!(c.recv().await.unwrap(), Message::Text("c".into()));
    });
}

#[test]
fn silent_client_is_dropped_after_the_handshake_timeout() {
    run(async {
        let mut o = local();
        o.handshake_timeout = Duration::from_millis(200);
        let server = Server::start(o).await.unwrap();
        let errors = Arc::new(AtomicUsize::new(0));
        let e = errors.clone();
        server.on(ServerEventKind::Error, move |ev| {
            if let ServerEvent::Error(None, err) = ev {
                if matches!(**err, Error::Timeout) {
                    e.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        let mut s = async_net::TcpStream::connect(server.local_addr())
            .await
            .unwrap();
        let mut buf = [0u8; 8];
        let n = futures_lite::AsyncReadExt::read(&mut s, &mut buf)
            .await
            .unwrap_or(0);
        assert_eq!(n, 0, "the server closes the silent connection");
        eventually(|| errors.load(Ordering::SeqCst) == 1).await;
    });
}

#[test]
fn errors_have_their_codes() {
    run(async {
        let long = format!("ws://localhost/{}", "a".repeat(2048));
        assert_eq!(
            ws_smol::connect_with(&long, &direct())
                .await
                .unwrap_err()
                .code()
                .code(),
            2_302_001
        );
        let server = Server::start(local()).await.unwrap();
        let mut o = local();
        o.port = server.local_addr().port();
        assert_eq!(Server::start(o).await.unwrap_err().code().code(), 2_302_005);
        let mut o = local();
        o.ip = [192, 0, 2, 1].into();
        assert_eq!(Server::start(o).await.unwrap_err().code().code(), 2_302_004);
        let mut o = direct();
        o.headers = vec![("bad name".into(), "v".into())];
        assert_eq!(
            ws_smol::connect_with("ws://localhost/", &o)
                .await
                .unwrap_err()
                .code()
                .code(),
            401
        );
    });
}

#[test]
fn tls_custom_ca_client_cert_and_rejections() {
    run(async {
        let p = pki();
        let mut so = local();
        so.cert = Some(ServerCert {
            cert_path: p.server_cert.clone(),
            key_path: p.server_key.clone(),
        });
        so.client_ca = Some(p.ca.clone());
        let server = echo(so).await;
        let port = server.local_addr().port();
        let mut o = direct();
        o.ca_path = Some(p.ca.clone());
        o.client_cert = Some(ClientCert {
            cert_path: p.client_cert.clone(),
            key_path: p.client_key_encrypted.clone(),
            key_password: Some(CLIENT_KEY_PASSWORD.into()),
        });
        let mut ws = ws_smol::connect_with(&format!("wss://localhost:{port}/"), &o)
            .await
            .unwrap();
        ws.send_text("secure").await.unwrap();
        assert_eq!(ws.recv().await.unwrap(), Message::Text("secure".into()));
        // A message of many TLS records, then many small ones: whatever
        // rustls buffers gets flushed (the write path skips the flush only
        // of a stream whose last flush was ready).
        let big: Vec<u8> = (0..256u32 << 10).map(|i| ((i * 31) >> 3) as u8).collect();
        ws.send_binary(&big).await.unwrap();
        for i in 0..50 {
            ws.send_text(&format!("m{i}")).await.unwrap();
        }
        assert_eq!(ws.recv().await.unwrap(), Message::Binary(big.into()));
        for i in 0..50 {
            assert_eq!(ws.recv().await.unwrap(), Message::Text(format!("m{i}")));
        }
        // Wrong host name, untrusted certificate: refused.
        let e = ws_smol::connect_with(&format!("wss://127.0.0.1:{port}/"), &o)
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Tls(_)), "{e}");
        let mut untrusting = o.clone();
        untrusting.ca_path = Some(p.other_ca.clone());
        assert!(matches!(
            ws_smol::connect_with(&format!("wss://localhost:{port}/"), &untrusting)
                .await
                .unwrap_err(),
            Error::Tls(_)
        ));
        untrusting.skip_server_cert_verification = true;
        assert!(
            ws_smol::connect_with(&format!("wss://127.0.0.1:{port}/"), &untrusting)
                .await
                .is_ok()
        );
    });
}

#[test]
fn tunnel_through_tinyproxy() {
    run(async {
        let proxy = tinyproxy(Some(("bob", "pw")));
        let server = echo(local()).await;
        let mut o = direct();
        let mut hp = HttpProxy::new("127.0.0.1", proxy.port);
        hp.username = Some("bob".into());
        hp.password = Some("pw".into());
        o.proxy = Proxy::Http(hp);
        let mut ws = ws_smol::connect_with(&url(&server), &o).await.unwrap();
        ws.send_text("tunnelled").await.unwrap();
        assert_eq!(ws.recv().await.unwrap(), Message::Text("tunnelled".into()));
        assert!(proxy
            .log_text()
            .contains(&format!("CONNECT 127.0.0.1:{}", server.local_addr().port())));
    });
}

#[test]
fn event_client_reports_every_event_kind() {
    run(async {
        let server = echo(local()).await;
        let client = ws_smol::EventClient::new();
        let log = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        for kind in [
            ClientEventKind::Open,
            ClientEventKind::Message,
            ClientEventKind::Close,
            ClientEventKind::Error,
            ClientEventKind::DataEnd,
            ClientEventKind::HeaderReceive,
        ] {
            let l = log.clone();
            client.on(kind, move |ev| {
                let s = match ev {
                    ClientEvent::Open { status, reason } => format!("open {status} {reason}"),
                    ClientEvent::HeaderReceive(h) => {
                        format!("headers {}", h.get_str("connection").unwrap_or(""))
                    }
                    ClientEvent::Message(Message::Text(t)) => format!("text {t}"),
                    ClientEvent::Message(Message::Binary(b)) => format!("binary {}", b.len()),
                    ClientEvent::Message(other) => format!("{other:?}"),
                    ClientEvent::DataEnd => "dataEnd".into(),
                    ClientEvent::Close { code, reason } => format!("close {code} {reason}"),
                    ClientEvent::Error(e) => format!("error {}", e.code()),
                };
                l.lock().unwrap().push(s);
            });
        }
        client.connect(&url(&server), &direct()).await.unwrap();
        assert_eq!(
            client
                .connect(&url(&server), &direct())
                .await
                .unwrap_err()
                .code()
                .code(),
            2_302_003
        );
        client.send_text("hi").await.unwrap();
        client.send_binary(&[1, 2]).await.unwrap();
        eventually(|| {
            log.lock()
                .unwrap()
                .iter()
                .filter(|s| *s == "dataEnd")
                .count()
                == 2
        })
        .await;
        client.close(CloseCode::NORMAL, "done").await.unwrap();
        client.wait().await;
        assert_eq!(
            *log.lock().unwrap(),
            [
                "headers Upgrade",
                "open 101 Switching Protocols",
                "text hi",
                "dataEnd",
                "binary 2",
                "dataEnd",
                "close 1000 "
            ]
        );
        // The close reports the peer's Close frame: our code echoed, no reason.
        // A failed connect is reported to `error` callbacks and returned;
        // after `off`, only returned.
        let errors = Arc::new(AtomicUsize::new(0));
        let c2 = ws_smol::EventClient::new();
        let e2 = errors.clone();
        c2.on(ClientEventKind::Error, move |_| {
            e2.fetch_add(1, Ordering::SeqCst);
        });
        assert!(c2.connect("ws://127.0.0.1:1/", &direct()).await.is_err());
        assert_eq!(errors.load(Ordering::SeqCst), 1);
        assert_eq!(c2.off(ClientEventKind::Error, None), 1);
        assert!(c2.connect("ws://127.0.0.1:1/", &direct()).await.is_err());
        assert_eq!(errors.load(Ordering::SeqCst), 1);
    });
}

#[test]
fn missing_certificate_files_are_2302002() {
    run(async {
        let mut o = direct();
        o.ca_path = Some("/nonexistent/ca.pem".into());
        assert_eq!(
            ws_smol::connect_with("wss://localhost:1/", &o)
                .await
                .unwrap_err()
                .code()
                .code(),
            2_302_002
        );
        let mut so = local();
        so.cert = Some(ServerCert {
            cert_path: "/nonexistent/cert.pem".into(),
            key_path: "/nonexistent/key.pem".into(),
        });
        assert_eq!(
            Server::start(so).await.unwrap_err().code().code(),
            2_302_002
        );
    });
}

#[test]
fn handshake_timeout_on_a_silent_server_is_2302999() {
    run(async {
        let listener = async_net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hold = smol::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            // Silent until the test ends (it drops this task): a timeout
            // that fires late must still meet silence, not an end.
            let _held = s;
            futures_lite::future::pending::<()>().await;
        });
        let mut o = direct();
        o.handshake_timeout = Some(Duration::from_millis(300));
        let t = Instant::now();
        let e = ws_smol::connect_with(&format!("ws://{addr}/"), &o)
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Timeout), "{e}");
        assert_eq!(e.code().code(), 2_302_999);
        assert!(t.elapsed() < Duration::from_secs(5));
        drop(hold);
    });
}

/// A future that counts how often it is polled.
struct Counted<F> {
    inner: std::pin::Pin<Box<F>>,
    polls: Arc<AtomicUsize>,
}

impl<F: std::future::Future> std::future::Future for Counted<F> {
    type Output = F::Output;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        self.polls.fetch_add(1, Ordering::SeqCst);
        self.inner.as_mut().poll(cx)
    }
}

#[test]
fn blocked_senders_and_receiver_do_not_wake_each_other_in_a_loop() {
    run(async {
        // A server that completes the handshake and then never reads.
        let listener = async_net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stall = smol::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut hs = ws_proto::ServerHandshake::new(ws_proto::Config::default());
            let mut buf = vec![0u8; 4096];
            let up = loop {
                let n = futures_lite::AsyncReadExt::read(&mut s, &mut buf)
                    .await
                    .unwrap();
                if let Some(ws_proto::Incoming::Upgrade(u)) = hs.handle_data(&buf[..n]).unwrap() {
                    break u;
                }
            };
            let mut out = Vec::new();
            let _c = up
                .accept(Instant::now(), &Default::default(), &mut out)
                .unwrap();
            futures_lite::AsyncWriteExt::write_all(&mut s, &out)
                .await
                .unwrap();
            // Held until the test ends (dropping the task drops it): were
            // it closed, the senders would end, and settle, by failing.
            let _held = s;
            futures_lite::future::pending::<()>().await;
        });
        let ws = ws_smol::connect_with(&format!("ws://{addr}/"), &direct())
            .await
            .unwrap();
        let (tx, mut rx) = ws.split();
        let receiver_polls = Arc::new(AtomicUsize::new(0));
        let reader = smol::spawn(Counted {
            inner: Box::pin(async move { while rx.recv().await.is_ok() {} }),
            polls: receiver_polls.clone(),
        });
        let big = vec![0u8; 32 << 20];
        let sender_polls = Arc::new(AtomicUsize::new(0));
        let senders: Vec<_> = (0..2)
            .map(|_| {
                let tx = tx.clone();
                let big = big.clone();
                smol::spawn(Counted {
                    inner: Box::pin(async move {
                        let _ = tx.send_binary(&big).await;
                    }),
                    polls: sender_polls.clone(),
                })
            })
            .collect();
        // Let the socket buffers fill (the senders' polls stop changing,
        // looked at every 100 ms for at most 10 s: a slow machine masks
        // 32 MiB late), then count wake-ups for a while. Senders that wake
        // each other in a loop never settle and fail below.
        let mut last = usize::MAX;
        let mut settled = false;
        for _ in 0..100 {
            Timer::after(Duration::from_millis(100)).await;
            let now = sender_polls.load(Ordering::SeqCst);
            if now == last {
                settled = true;
                break;
            }
            last = now;
        }
        assert!(settled, "the senders polled on for 10 s: {last} polls");
        let (s0, r0) = (
            sender_polls.load(Ordering::SeqCst),
            receiver_polls.load(Ordering::SeqCst),
        );
        Timer::after(Duration::from_millis(500)).await;
        let (s1, r1) = (
            sender_polls.load(Ordering::SeqCst),
            receiver_polls.load(Ordering::SeqCst),
        );
        assert!(
            s1 - s0 < 20,
            "senders polled {} times while blocked",
            s1 - s0
        );
        assert!(r1 - r0 < 20, "receiver polled {} times while idle", r1 - r0);
        drop(senders);
        drop(reader);
        drop(stall);
    });
}

#[test]
fn a_peer_that_never_reads_meets_backpressure() {
    run(async {
        // The server echoes from its callback without waiting; the client
        // floods and never reads. The server must stop reading rather than
        // queue every echo: its queued output stays near the pause mark.
        let server = echo(local()).await;
        let events = server.events();
        let ws = ws_smol::connect_with(&url(&server), &direct())
            .await
            .unwrap();
        let conn = loop {
            if let ServerEvent::Connect(c) = events.recv().await.unwrap() {
                break c;
            }
        };
        drop(events);
        let (tx, _never_read) = ws.split();
        let flood = smol::spawn(async move {
            let msg = vec![3u8; 256 << 10];
            while tx.send_binary(&msg).await.is_ok() {}
        });
        // The echoes back up once the client's socket buffers are full.
        // Waited for rather than timed: the server's tasks share smol's
        // global executor with the other tests in this process, which may
        // hold its thread for a while.
        eventually(|| server.buffered_amount(&conn).unwrap() > 0).await;
        let mut most = 0;
        for _ in 0..20 {
            Timer::after(Duration::from_millis(50)).await;
            most = most.max(server.buffered_amount(&conn).unwrap());
        }
        assert!(
            most < 2 << 20,
            "{most} bytes queued for a peer that reads nothing"
        );
        drop(flood);
    });
}

/// Sends each message and checks its echo.
#[cfg(feature = "deflate")]
async fn echo_each(ws: &mut ws_smol::WebSocket<ws_smol::MaybeTls>, messages: &[Message]) {
    for m in messages {
        match m {
            Message::Text(t) => ws.send_text(t).await.unwrap(),
            Message::Binary(b) => ws.send_binary(b).await.unwrap(),
            _ => unreachable!(),
        }
        assert_eq!(&ws.recv().await.unwrap(), m);
    }
}

/// permessage-deflate through ws-smol: our client and server together, then
/// each against Node's `ws` (the second implementation).
#[cfg(feature = "deflate")]
#[test]
fn permessage_deflate_both_ends_and_interop_with_node_ws() {
    use ws_smol::{DeflateConfig, MessageKind};
    use ws_test_support::{node_client, NodeEcho};
    let on = DeflateConfig {
        threshold: 0,
        ..DeflateConfig::default()
    };
    let messages = vec![
        Message::Text("compress me ".repeat(500)),
        Message::Text(String::new()),
        Message::Binary(vec![42u8; 300_000].into()),
        Message::Text("Grüße 🌍 ".repeat(3000)),
    ];
    run(async {
        let mut options = local();
        options.config.deflate = Some(DeflateConfig {
            client_no_context_takeover: true,
            ..on.clone()
        });
        let server = echo(options).await;
        let mut client = direct();
        client.config.deflate = Some(on.clone());
        let mut ws = ws_smol::connect_with(&url(&server), &client).await.unwrap();
        let p = ws.deflate().expect("negotiated");
        assert!(p.client_no_context_takeover && !p.server_no_context_takeover);
        // The server lists a connection once its task has answered the
        // handshake, which may come after the client reads the answer.
        eventually(|| server.handle().connections().len() == 1).await;
        let conn = server.handle().connections()[0];
        assert_eq!(server.handle().deflate(&conn).unwrap(), Some(p));
        echo_each(&mut ws, &messages).await;
        ws.send_uncompressed(MessageKind::Text, b"as is")
            .await
            .unwrap();
        assert_eq!(ws.recv().await.unwrap(), Message::Text("as is".into()));

        // Our client, Node's server.
        let node = NodeEcho::start("{}");
        let mut ws = ws_smol::connect_with(&node.url(), &client).await.unwrap();
        assert!(ws.deflate().is_some());
        echo_each(&mut ws, &messages).await;
    });
    // Node's client, our server (outside the executor: it blocks).
    let server = smol::block_on(async {
        let mut options = local();
        options.config.deflate = Some(on);
        options.config.max_message_size = 256 << 20;
        echo(options).await
    });
    let addr = server.local_addr();
    let done = std::thread::spawn(move || node_client(&format!("ws://{addr}/"), "{}"));
    // The server's tasks run on smol's global executor.
    let (ok, out) = done.join().unwrap();
    assert!(ok, "node client failed: {out}");
    assert!(out.starts_with("ok permessage-deflate"), "{out}");
    drop(server);
}

/// Pipelined input: echoes of a batch leave together, and every Ping of a
/// batch still gets its own Pong (the core keeps one pending Pong, so the
/// adapter must write it before the next Ping is parsed).
#[test]
fn a_batch_of_pings_gets_every_pong_and_echoes_come_back_in_order() {
    use futures_lite::{AsyncReadExt, AsyncWriteExt};
    run(async {
        let server = echo(local()).await;
        let mut s = async_net::TcpStream::connect(server.local_addr())
            .await
            .unwrap();
        s.write_all(
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .await
        .unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut byte).await.unwrap();
            head.push(byte[0]);
        }
        assert!(head.starts_with(b"HTTP/1.1 101"));
        // Ten Pings and ten text messages in one write, masked with a zero
        // key (the payload is then as written).
        let mut batch = Vec::new();
        for i in 0..10u8 {
            batch.extend_from_slice(&[0x89, 0x81, 0, 0, 0, 0, i]);
            batch.extend_from_slice(&[0x81, 0x82, 0, 0, 0, 0, b'm', b'0' + i]);
        }
        s.write_all(&batch).await.unwrap();
        // Expect 10 Pongs (3 bytes each) and 10 echoes (4 bytes each).
        let mut got = vec![0u8; 70];
        s.read_exact(&mut got).await.unwrap();
        let (mut pongs, mut texts) = (Vec::new(), Vec::new());
        let mut rest = &got[..];
        while !rest.is_empty() {
            let len = rest[1] as usize;
            let payload = rest[2..2 + len].to_vec();
            match rest[0] {
                0x8a => pongs.push(payload[0]),
                0x81 => texts.push(payload[1]),
                other => panic!("unexpected frame {other:#x}"),
            }
            rest = &rest[2 + len..];
        }
        assert_eq!(pongs, (0..10).collect::<Vec<u8>>());
        assert_eq!(texts, (b'0'..=b'9').collect::<Vec<u8>>());
    });
}

#[test]
fn start_on_runs_the_server_on_the_callers_executor() {
    // One thread runs the executor inside block_on, so it also drives the
    // reactor: the server's callbacks must run on this very thread (with
    // `Server::start` they run on smol's global executor threads).
    let ex = Arc::new(smol::Executor::new());
    let here = std::thread::current().id();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    run(ex.clone().run(async move {
        let mut server = Server::start_on(ex.clone(), local()).await.unwrap();
        let h = server.handle();
        for kind in [ServerEventKind::Connect, ServerEventKind::MessageReceive] {
            let seen = seen.clone();
            let h = h.clone();
            server.on(kind, move |ev| {
                seen.lock().unwrap().push(std::thread::current().id());
                if let ServerEvent::Message(c, Message::Text(t)) = ev {
                    let _ = h.queue_text(c, t);
                }
            });
        }
        let mut ws = ws_smol::connect_with(&url(&server), &direct())
            .await
            .unwrap();
        for i in 0..20 {
            ws.send_text(&format!("m{i}")).await.unwrap();
            assert_eq!(ws.recv().await.unwrap(), Message::Text(format!("m{i}")));
        }
        ws.close_and_wait(CloseCode::NORMAL, "").await.unwrap();
        server.stop().await.unwrap();
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 21, "one Connect and 20 messages");
        assert!(seen.iter().all(|id| *id == here), "{seen:?} vs {here:?}");
    }));
}
