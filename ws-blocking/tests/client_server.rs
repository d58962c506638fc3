//! Client and server on loopback: messages, halves on two threads,
//! streaming, closing, every server operation and limit, the event APIs and
//! the error codes.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use common::{direct, echo_server, eventually, local_options, start};
use ws_blocking::{
    ClientEvent, ClientEventKind, CloseCode, Error, ErrorCode, Event, EventClient, Message,
    MessageKind, Server, ServerEvent, ServerEventKind, WebSocket,
};

fn url(server: &Server) -> String {
    format!("ws://{}/", server.local_addr())
}

#[test]
fn echo_text_binary_ping_and_clean_close() {
    let server = echo_server(local_options());
    let mut ws = WebSocket::connect_with(&url(&server), &direct()).unwrap();
    assert_eq!(ws.response().unwrap().status, 101);
    ws.send_text("héllo").unwrap();
    assert_eq!(ws.recv().unwrap(), Message::Text("héllo".into()));
    ws.send_binary(&[0, 1, 2, 255]).unwrap();
    assert_eq!(
        ws.recv().unwrap(),
        Message::Binary(vec![0, 1, 2, 255].into())
    );
    ws.ping(b"p").unwrap();
    assert_eq!(ws.recv().unwrap(), Message::Pong("p".into()));
    match ws.close_and_wait(CloseCode::NORMAL, "bye").unwrap() {
        Message::Closed(c) => {
            assert!(c.is_clean());
            assert_eq!(c.code, CloseCode::NORMAL);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn sender_threads_and_receiver_never_interleave_frames() {
    let server = echo_server(local_options());
    let ws = WebSocket::connect_with(&url(&server), &direct()).unwrap();
    let (tx, mut rx) = ws.split();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for i in 0..200 {
                    // Sizes vary so frames of different threads would tear
                    // if writes interleaved.
                    let msg = format!("{t}:{i}:{}", "x".repeat((i * 37) % 3000));
                    tx.send_text(&msg).unwrap();
                }
            })
        })
        .collect();
    let mut seen = vec![0usize; 4];
    for _ in 0..800 {
        match rx.recv().unwrap() {
            Message::Text(t) => {
                let mut parts = t.splitn(3, ':');
                let th: usize = parts.next().unwrap().parse().unwrap();
                let i: usize = parts.next().unwrap().parse().unwrap();
                assert_eq!(i, seen[th], "thread {th}'s messages arrive in order");
                assert_eq!(parts.next().unwrap().len(), (i * 37) % 3000);
                seen[th] += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(seen, [200; 4]);
    tx.close(CloseCode::NORMAL, "").unwrap();
    assert!(matches!(rx.recv().unwrap(), Message::Closed(_)));
    assert!(matches!(rx.recv(), Err(Error::Closed)));
}

#[test]
fn huge_message_streams_in_bounded_chunks() {
    // 40 MiB streamed out in 1 MiB pieces and read back as chunk events
    // of at most read_chunk_size (plus what one read brings).
    let server = echo_server(local_options());
    let mut ws = WebSocket::connect_with(&url(&server), &direct()).unwrap();
    let piece: Vec<u8> = (0..1 << 20).map(|i| (i % 253) as u8).collect();
    let tx = ws.sender();
    let writer = std::thread::spawn(move || {
        for i in 0..40 {
            tx.send_chunk(MessageKind::Binary, &piece, i == 39).unwrap();
        }
    });
    let mut total = 0usize;
    let mut chunks = 0;
    let mut biggest = 0;
    loop {
        match ws.recv_event().unwrap() {
            Some(Event::Binary { data, fin }) => {
                for (j, b) in data.iter().enumerate() {
                    if *b != ((total + j) % (1 << 20) % 253) as u8 {
                        panic!("byte {} corrupted", total + j);
                    }
                }
                total += data.len();
                chunks += 1;
                biggest = biggest.max(data.len());
                if fin {
                    break;
                }
            }
            other => panic!("{other:?}"),
        }
    }
    writer.join().unwrap();
    assert_eq!(total, 40 << 20);
    assert!(chunks >= 40, "{chunks} chunks");
    // A chunk is handed out whole only when its frame is already buffered;
    // frames are 1 MiB here, so no chunk can be larger.
    assert!(biggest <= 1 << 20, "biggest chunk {biggest}");
}

#[test]
fn urls_are_checked_before_any_io() {
    let long = format!("ws://localhost/{}", "a".repeat(2048));
    for (u, code) in [
        (long.as_str(), ErrorCode::UrlError),
        ("http://localhost/", ErrorCode::UrlError),
        ("ws://", ErrorCode::UrlError),
        ("ws://localhost/#frag", ErrorCode::UrlError),
    ] {
        let e = WebSocket::connect_with(u, &direct()).unwrap_err();
        assert_eq!(e.code(), code, "{u}: {e}");
        assert_eq!(e.code().code(), 2_302_001);
    }
    let mut o = direct();
    o.headers.push(("Bad\r\nHeader".into(), "x".into()));
    let e = WebSocket::connect_with("ws://localhost/", &o).unwrap_err();
    assert_eq!(e.code().code(), 401);
}

#[test]
fn handshake_timeout_on_a_silent_server() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    // Silent until the test is done (or 10 s): a timeout that fires late
    // must still meet silence, not an end.
    let (done, wait) = mpsc::channel::<()>();
    let keep = std::thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        let _ = wait.recv_timeout(Duration::from_secs(10));
        drop(s);
    });
    let mut o = direct();
    o.handshake_timeout = Some(Duration::from_millis(300));
    let start = Instant::now();
    let e = WebSocket::connect_with(&format!("ws://{addr}/"), &o).unwrap_err();
    assert!(matches!(e, Error::Timeout), "{e}");
    assert_eq!(e.code().code(), 2_302_999);
    // Well before the 30 s default; loose for a loaded machine.
    assert!(start.elapsed() < Duration::from_secs(5));
    drop(done);
    keep.join().unwrap();
}

#[test]
fn a_non_101_answer_carries_status_and_body() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let t = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 2048];
        let _ = s.read(&mut buf).unwrap();
        s.write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 7\r\n\r\ndenied!")
            .unwrap();
    });
    let e = WebSocket::connect_with(&format!("ws://{addr}/"), &direct()).unwrap_err();
    match e {
        Error::Handshake(ws_proto::HandshakeError::Status { status, body, .. }) => {
            assert_eq!((status, body.as_slice()), (403, &b"denied!"[..]));
        }
        other => panic!("{other}"),
    }
    t.join().unwrap();
}

#[test]
fn server_lists_sends_and_closes_one_connection() {
    let mut o = local_options();
    o.protocol = Some("chat".into());
    let server = start(o);
    let events = server.events();
    let mut opts = direct();
    opts.protocols = vec!["other".into(), "chat".into()];
    let mut a = WebSocket::connect_with(&url(&server), &opts).unwrap();
    let mut b = WebSocket::connect_with(&url(&server), &direct()).unwrap();
    assert_eq!(a.protocol(), Some("chat"));
    assert_eq!(b.protocol(), None);
    let mut conns = Vec::new();
    while conns.len() < 2 {
        if let Some(ServerEvent::Connect(c)) = events.recv_timeout(Duration::from_secs(5)) {
            conns.push(c);
        }
    }
    // Events of two connections may arrive in either order; ids follow
    // the accept order.
    conns.sort_by_key(|c| c.id);
    assert_eq!(server.connections(), conns);
    // Send to each by its id.
    server.send_text(&conns[0], "to a").unwrap();
    server.send_binary(&conns[1], b"to b").unwrap();
    assert_eq!(a.recv().unwrap(), Message::Text("to a".into()));
    assert_eq!(b.recv().unwrap(), Message::Binary("to b".into()));
    // A message arrives as an event with its connection.
    a.send_text("from a").unwrap();
    loop {
        match events
            .recv_timeout(Duration::from_secs(5))
            .expect("message event")
        {
            ServerEvent::Message(c, Message::Text(t)) => {
                assert_eq!((c, t.as_str()), (conns[0], "from a"));
                break;
            }
            _ => continue,
        }
    }
    // Close one: it sees our code and reason; the other stays.
    server.close(&conns[0], CloseCode(4000), "kicked").unwrap();
    match a.recv().unwrap() {
        Message::Closed(c) => assert_eq!((c.code, c.reason.as_str()), (CloseCode(4000), "kicked")),
        other => panic!("{other:?}"),
    }
    loop {
        if let Some(ServerEvent::Close(c, code, _)) = events.recv_timeout(Duration::from_secs(5)) {
            assert_eq!((c, code), (conns[0], CloseCode(4000)));
            break;
        }
    }
    eventually("the list to drop the closed one", || {
        server.connections() == vec![conns[1]]
    });
    let e = server.send_text(&conns[0], "gone").unwrap_err();
    assert_eq!(e.code().code(), 2_302_006);
    assert_eq!(
        server
            .close(&conns[0], CloseCode::NORMAL, "")
            .unwrap_err()
            .code(),
        ErrorCode::NoSuchConnection
    );
    b.send_text("still here").unwrap();
}

#[test]
fn stop_closes_every_connection_then_the_listener() {
    let mut server = echo_server(local_options());
    let events = server.events();
    let addr = server.local_addr();
    // Each client reads on its own thread, as an application would, so it
    // answers the server's Close.
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let mut ws = WebSocket::connect_with(&url(&server), &direct()).unwrap();
            std::thread::spawn(move || loop {
                if let Message::Closed(info) = ws.recv().unwrap() {
                    return info;
                }
            })
        })
        .collect();
    eventually("three connections", || server.connections().len() == 3);
    let t = Instant::now();
    server.stop().unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "stop took {:?}",
        t.elapsed()
    );
    for r in readers {
        let info = r.join().unwrap();
        assert_eq!(info.code, CloseCode::GOING_AWAY);
        assert!(info.is_clean(), "{info:?}");
    }
    assert!(server.connections().is_empty());
    assert!(ws_test_support::not_listening(&addr), "still listening");
    server.stop().unwrap();
    // The event iterator ends after the stop, having seen three closes.
    let closes = events
        .filter(|e| matches!(e, ServerEvent::Close(..)))
        .count();
    assert_eq!(closes, 3);
}

#[test]
fn max_clients_refuses_with_503_and_keeps_the_others() {
    let mut o = local_options();
    o.max_clients = 2;
    let server = echo_server(o);
    let mut a = WebSocket::connect_with(&url(&server), &direct()).unwrap();
    let _b = WebSocket::connect_with(&url(&server), &direct()).unwrap();
    match WebSocket::connect_with(&url(&server), &direct()).unwrap_err() {
        Error::Handshake(ws_proto::HandshakeError::Status { status, .. }) => {
            assert_eq!(status, 503)
        }
        other => panic!("{other}"),
    }
    a.send_text("unaffected").unwrap();
    assert_eq!(a.recv().unwrap(), Message::Text("unaffected".into()));
    // A slot frees when one leaves.
    a.close_and_wait(CloseCode::NORMAL, "").unwrap();
    eventually("the slot to free", || {
        WebSocket::connect_with(&url(&server), &direct()).is_ok()
    });
}

#[test]
fn a_panicking_callback_drops_only_its_connection_and_frees_its_place() {
    let mut o = local_options();
    o.max_clients = 2;
    let server = start(o);
    let h = server.handle();
    server.on(ServerEventKind::MessageReceive, move |ev| {
        if let ServerEvent::Message(c, Message::Text(t)) = ev {
            assert!(t != "panic", "an application callback panicked");
            let _ = h.send_text(c, t);
        }
    });
    // Keepalive bounds the wait below if the connection were left open
    // with no one serving it.
    let mut bounded = direct();
    bounded.config.keepalive_interval = Some(Duration::from_secs(1));
    bounded.config.keepalive_timeout = Duration::from_secs(2);
    let mut a = WebSocket::connect_with(&url(&server), &bounded).unwrap();
    let mut b = WebSocket::connect_with(&url(&server), &direct()).unwrap();
    a.send_text("panic").unwrap();
    // The server dropped a's connection: no close handshake.
    match a.recv() {
        Ok(Message::Closed(c)) => assert_eq!(c.code, CloseCode::ABNORMAL),
        Err(_) => {}
        Ok(other) => panic!("{other:?}"),
    }
    for i in 0..10 {
        b.send_text(&format!("b{i}")).unwrap();
        assert_eq!(b.recv().unwrap(), Message::Text(format!("b{i}")));
    }
    // a's place is free again (max_clients is 2).
    eventually("a's place to free", || server.connections().len() == 1);
    let mut c = WebSocket::connect_with(&url(&server), &direct()).unwrap();
    c.send_text("c").unwrap();
    assert_eq!(c.recv().unwrap(), Message::Text("c".into()));
}

#[test]
fn max_connections_per_ip_refuses_with_429_per_address() {
    let mut o = local_options();
    o.max_connections_per_ip = 1;
    let server = echo_server(o);
    let port = server.local_addr().port();
    let _a = WebSocket::connect_with(&format!("ws://127.0.0.1:{port}/"), &direct()).unwrap();
    match WebSocket::connect_with(&format!("ws://127.0.0.1:{port}/"), &direct()).unwrap_err() {
        Error::Handshake(ws_proto::HandshakeError::Status { status, .. }) => {
            assert_eq!(status, 429)
        }
        other => panic!("{other}"),
    }
    // Another client address (127.0.0.2 is loopback too) is counted apart.
    let mut other = socket_from([127, 0, 0, 2], server.local_addr());
    other
        .write_all(
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .unwrap();
    let mut buf = [0u8; 12];
    other
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    other.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"HTTP/1.1 101");
    eventually("two connections from two addresses", || {
        let mut ips: Vec<_> = server.connections().iter().map(|c| c.addr.ip()).collect();
        ips.sort();
        ips == [
            std::net::IpAddr::from([127, 0, 0, 1]),
            std::net::IpAddr::from([127, 0, 0, 2]),
        ]
    });
}

/// A TCP connection from a chosen loopback source address.
fn socket_from(src: [u8; 4], to: SocketAddr) -> TcpStream {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.bind(&SocketAddr::from((src, 0)).into()).unwrap();
    s.connect(&to.into()).unwrap();
    s.into()
}

#[test]
fn silent_client_is_dropped_after_the_handshake_timeout() {
    let mut o = local_options();
    o.handshake_timeout = Duration::from_millis(300);
    o.max_clients = 1;
    let server = start(o);
    let events = server.events();
    let mut silent = TcpStream::connect(server.local_addr()).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let t = Instant::now();
    let mut buf = [0u8; 16];
    // The server gives up and closes: read returns 0 (or a reset; not the
    // read's own timeout, which the bound below rules out).
    let n = silent.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0);
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(
        matches!(events.recv_timeout(Duration::from_secs(5)), Some(ServerEvent::Error(None, e)) if matches!(*e, Error::Timeout))
    );
    // The slot is free again.
    eventually("the slot to free", || {
        WebSocket::connect_with(&url(&server), &direct()).is_ok()
    });
}

#[test]
fn callbacks_on_and_off() {
    let server = start(local_options());
    let connects = Arc::new(AtomicUsize::new(0));
    let c = connects.clone();
    let id = server.on(ServerEventKind::Connect, move |_| {
        c.fetch_add(1, Ordering::SeqCst);
    });
    let closes = Arc::new(Mutex::new(Vec::new()));
    let c = closes.clone();
    server.on(ServerEventKind::Close, move |ev| {
        if let ServerEvent::Close(_, code, reason) = ev {
            c.lock().unwrap().push((*code, reason.clone()));
        }
    });
    let ws = WebSocket::connect_with(&url(&server), &direct()).unwrap();
    eventually("connect callback", || connects.load(Ordering::SeqCst) == 1);
    assert_eq!(server.off(ServerEventKind::Connect, Some(id)), 1);
    let ws2 = WebSocket::connect_with(&url(&server), &direct()).unwrap();
    eventually("second connection", || server.connections().len() == 2);
    assert_eq!(
        connects.load(Ordering::SeqCst),
        1,
        "removed callback not called"
    );
    ws.close_and_wait(CloseCode(3001), "done").unwrap();
    eventually("close callback", || closes.lock().unwrap().len() == 1);
    assert_eq!(
        closes.lock().unwrap()[0],
        (CloseCode(3001), "done".to_string())
    );
    assert_eq!(server.off(ServerEventKind::Close, None), 1);
    drop(ws2);
}

/// A connection's thread keeps a view of the callbacks from its first
/// event on; a change made while it is open applies from its next event.
#[test]
fn callbacks_changed_while_a_connection_is_open_apply_to_its_next_event() {
    let server = start(local_options());
    let replier = |tag: &'static str| {
        let h = server.handle();
        move |ev: &ServerEvent| {
            if let ServerEvent::Message(c, Message::Text(t)) = ev {
                h.send_text(c, &format!("{tag}{t}")).unwrap();
            }
        }
    };
    let first = server.on(ServerEventKind::MessageReceive, replier("first:"));
    let mut a = WebSocket::connect_with(&url(&server), &direct()).unwrap();
    let mut say = |text: &str| {
        a.send_text(text).unwrap();
        a.recv().unwrap()
    };
    assert_eq!(say("1"), Message::Text("first:1".into()));
    assert_eq!(server.off(ServerEventKind::MessageReceive, Some(first)), 1);
    server.on(ServerEventKind::MessageReceive, replier("second:"));
    assert_eq!(say("2"), Message::Text("second:2".into()));
    server.on(ServerEventKind::MessageReceive, replier("third:"));
    assert_eq!(say("3"), Message::Text("second:3".into()));
    assert_eq!(a.recv().unwrap(), Message::Text("third:3".into()));
}

/// Runs `f` on a thread of its own; fails if it has not returned after
/// `limit` (a blocking receive that is never answered would hang).
fn within(limit: Duration, f: impl FnOnce() + Send + 'static) {
    let (tx, rx) = std::sync::mpsc::channel();
    let t = std::thread::spawn(move || {
        f();
        let _ = tx.send(());
    });
    match rx.recv_timeout(limit) {
        Ok(()) => t.join().unwrap(),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            std::panic::resume_unwind(t.join().unwrap_err())
        }
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!("not done in {limit:?}"),
    }
}

#[test]
fn lent_callbacks_answer_on_their_connection_and_may_not_lock_others() {
    within(Duration::from_secs(20), || {
        let server = start(local_options());
        let log = Arc::new(Mutex::new(Vec::<String>::new()));
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
                h.send_text(c, &format!("owned:{t}")).unwrap();
            }
        });
        let mut a = WebSocket::connect_with(&url(&server), &direct()).unwrap();
        let mut b = WebSocket::connect_with(&url(&server), &direct()).unwrap();
        // Answered from an owned callback: once the answer is here, both
        // connections' threads are past it, in an owned receive (or about
        // to start a receive: a lent one if the lent callback below is
        // registered before it looks; the answers are the same).
        for ws in [&mut a, &mut b] {
            ws.send_text("zero").unwrap();
            assert_eq!(ws.recv().unwrap(), Message::Text("owned:zero".into()));
        }
        assert_eq!(server.off(ServerEventKind::MessageReceive, Some(first)), 1);
        eventually("the owned callback logged", || {
            log.lock().unwrap().len() == 2
        });
        log.lock().unwrap().clear();
        let (h, l) = (server.handle(), log.clone());
        let lent = server.on_message_lent(move |conn, m, reply| {
            // The handle refuses to lock a connection here: this one, or
            // another, whose own lent callback could be waiting for this.
            let refused = h.connections().iter().all(|c| {
                matches!(h.send_text(c, "no"), Err(Error::InLentCallback))
                    && matches!(h.buffered_amount(c), Err(Error::InLentCallback))
            });
            l.lock()
                .unwrap()
                .push(format!("{} {refused}", ws_test_support::logged("lent", m)));
            let _ = match m {
                ws_blocking::MessageRef::Text(t) => reply.send_text(&format!("{}:{}", conn.id, t)),
                ws_blocking::MessageRef::Binary(d) => reply.send_binary(&d[..d.len() / 2]),
                _ => Ok(()),
            };
        });
        let ids: Vec<u64> = server.connections().iter().map(|c| c.id).collect();
        // Each message's owned callback has run before the next message
        // (on another connection's thread) is sent.
        let logged_up_to =
            |n: usize| eventually("the callbacks logged", || log.lock().unwrap().len() == n);
        a.send_text("one").unwrap();
        assert_eq!(a.recv().unwrap(), Message::Text(format!("{}:one", ids[0])));
        logged_up_to(2);
        b.send_text("two").unwrap();
        assert_eq!(b.recv().unwrap(), Message::Text(format!("{}:two", ids[1])));
        logged_up_to(4);
        a.send_text("three").unwrap();
        assert_eq!(
            a.recv().unwrap(),
            Message::Text(format!("{}:three", ids[0]))
        );
        logged_up_to(6);
        let big: Vec<u8> = (0..300_000u32).map(|i| i as u8).collect();
        a.send_binary(&big).unwrap();
        assert_eq!(
            a.recv().unwrap(),
            Message::Binary(big[..150_000].to_vec().into())
        );
        // The owned callback still gets every message, after the lent one.
        logged_up_to(8);
        assert_eq!(*log.lock().unwrap(), ws_test_support::LENT_THEN_OWNED);
        // With no owned callback, no owned copy is made, unless an events
        // iterator is open: one opened while a connection waits in a lent
        // receive gets that connection's next message.
        assert_eq!(server.off(ServerEventKind::MessageReceive, Some(logger)), 1);
        // The log shows the owned callback has run, not that the
        // connection is done with the message: it forwards it to the events
        // iterator next, and one opened in between would get it. The
        // connection answers this Ping only once it is done.
        a.ping(b"done").unwrap();
        assert_eq!(a.recv().unwrap(), Message::Pong("done".into()));
        let events = server.events();
        a.send_text("four").unwrap();
        assert_eq!(a.recv().unwrap(), Message::Text(format!("{}:four", ids[0])));
        match events.recv_timeout(Duration::from_secs(10)) {
            Some(ServerEvent::Message(c, Message::Text(t))) => {
                assert_eq!((c.id, t.as_str()), (ids[0], "four"))
            }
            other => panic!("{other:?}"),
        }
        // A Ping is answered, and lent to no callback.
        a.ping(b"p").unwrap();
        assert_eq!(a.recv().unwrap(), Message::Pong("p".into()));
        logged_up_to(9);
        // `off` takes it out like any messageReceive callback.
        assert_eq!(server.off(ServerEventKind::MessageReceive, Some(lent)), 1);
        let h = server.handle();
        server.on(ServerEventKind::MessageReceive, move |ev| {
            if let ServerEvent::Message(c, Message::Text(t)) = ev {
                h.send_text(c, &format!("owned:{t}")).unwrap();
            }
        });
        b.send_text("five").unwrap();
        assert_eq!(b.recv().unwrap(), Message::Text("owned:five".into()));
        assert_eq!(log.lock().unwrap().len(), 9, "nothing lent after `off`");
        // `off` with no id takes out every kind of messageReceive callback.
        server.on_message_lent(|_, _, _| {});
        assert_eq!(server.off(ServerEventKind::MessageReceive, None), 2);
    });
}

#[test]
fn event_client_reports_every_event_kind() {
    let server = echo_server(local_options());
    let client = EventClient::new();
    let log = Arc::new(Mutex::new(Vec::<String>::new()));
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
                    format!("headers upgrade={}", h.get_str("upgrade").unwrap_or(""))
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
    client.connect(&url(&server), &direct()).unwrap();
    // A second connect while open: 2302003.
    assert_eq!(
        client
            .connect(&url(&server), &direct())
            .unwrap_err()
            .code()
            .code(),
        2_302_003
    );
    client.send_text("hi").unwrap();
    client.send_binary(&[1, 2, 3]).unwrap();
    eventually("echoes", || {
        log.lock()
            .unwrap()
            .iter()
            .filter(|s| *s == "dataEnd")
            .count()
            == 2
    });
    client.close(CloseCode::NORMAL, "").unwrap();
    client.wait();
    let log = log.lock().unwrap().clone();
    assert_eq!(
        log,
        [
            "headers upgrade=websocket",
            "open 101 Switching Protocols",
            "text hi",
            "dataEnd",
            "binary 3",
            "dataEnd",
            "close 1000 ",
        ]
    );
    // Off for every kind: nothing more is reported; a failed connect is
    // still returned.
    let errors = Arc::new(AtomicUsize::new(0));
    let e2 = errors.clone();
    let c2 = EventClient::new();
    c2.on(ClientEventKind::Error, move |_| {
        e2.fetch_add(1, Ordering::SeqCst);
    });
    assert!(c2.connect("ws://127.0.0.1:1/", &direct()).is_err());
    assert_eq!(errors.load(Ordering::SeqCst), 1);
    assert_eq!(c2.off(ClientEventKind::Error, None), 1);
    assert!(c2.connect("ws://127.0.0.1:1/", &direct()).is_err());
    assert_eq!(errors.load(Ordering::SeqCst), 1);
    assert!(matches!(c2.send_text("x"), Err(Error::Closed)));
}

#[test]
fn listen_errors_have_their_codes() {
    let server = start(local_options());
    let mut o = local_options();
    o.port = server.local_addr().port();
    let e = Server::start(o).unwrap_err();
    assert_eq!(e.code().code(), 2_302_005, "{e}");
    let mut o = local_options();
    // TEST-NET-1: not an address of this machine.
    o.ip = [192, 0, 2, 1].into();
    let e = Server::start(o).unwrap_err();
    assert_eq!(e.code().code(), 2_302_004, "{e}");
    let mut o = local_options();
    o.max_clients = 0;
    assert_eq!(Server::start(o).unwrap_err().code().code(), 401);
}

#[test]
fn plain_http_on_the_server_port_gets_an_answer() {
    let server = start(local_options());
    let mut s = TcpStream::connect(server.local_addr()).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 426 "), "{resp}");
    assert!(resp.contains("Sec-WebSocket-Version: 13"));
}

#[test]
fn peer_dropping_tcp_reports_1006() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let t = std::thread::spawn(move || {
        let mut s = accept_upgrade(&listener);
        s.write_all(&[0x81, 0x02, b'h', b'i']).unwrap();
        // Then vanish without a Close.
    });
    let mut ws = WebSocket::connect_with(&format!("ws://{addr}/"), &direct()).unwrap();
    assert_eq!(ws.recv().unwrap(), Message::Text("hi".into()));
    match ws.recv().unwrap() {
        Message::Closed(c) => {
            assert_eq!(c.code, CloseCode::ABNORMAL);
            assert!(!c.is_clean());
        }
        other => panic!("{other:?}"),
    }
    t.join().unwrap();
}

#[test]
fn request_options_reach_the_server() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let t = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let up = read_upgrade(&mut s);
        let seen = (
            up.headers().get_str("x-token").map(str::to_owned),
            up.origin().map(str::to_owned),
            up.protocols().to_vec(),
            up.path().to_owned(),
            up.query().map(str::to_owned),
        );
        let mut out = Vec::new();
        let accept = ws_proto::Accept::new()
            .protocol("v2")
            .header("X-Server", "yes");
        let _conn = up.accept(Instant::now(), &accept, &mut out).unwrap();
        s.write_all(&out).unwrap();
        seen
    });
    let mut o = direct();
    o.headers = vec![("X-Token".into(), "abc123".into())];
    o.origin = Some("https://app.example".into());
    o.protocols = vec!["v2".into(), "v1".into()];
    let ws = WebSocket::connect_with(&format!("ws://{addr}/chat?room=7"), &o).unwrap();
    assert_eq!(ws.protocol(), Some("v2"));
    assert_eq!(
        ws.response().unwrap().headers.get_str("x-server"),
        Some("yes")
    );
    let (token, origin, protocols, path, query) = t.join().unwrap();
    assert_eq!(token.as_deref(), Some("abc123"));
    assert_eq!(origin.as_deref(), Some("https://app.example"));
    assert_eq!(protocols, ["v2", "v1"]);
    assert_eq!((path.as_str(), query.as_deref()), ("/chat", Some("room=7")));
}

#[test]
fn keepalive_detects_a_dead_server() {
    // A server that completes the handshake, then never reads or answers.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (done, wait) = mpsc::channel::<()>();
    let t = std::thread::spawn(move || {
        let s = accept_upgrade(&listener);
        // Silent until the test is done (or 10 s).
        let _ = wait.recv_timeout(Duration::from_secs(10));
        drop(s);
    });
    let mut o = direct();
    o.config.keepalive_interval = Some(Duration::from_millis(200));
    o.config.keepalive_timeout = Duration::from_millis(300);
    let mut ws = WebSocket::connect_with(&format!("ws://{addr}/"), &o).unwrap();
    let start = Instant::now();
    match ws.recv().unwrap() {
        Message::Closed(c) => {
            assert_eq!(c.code, CloseCode::INTERNAL_ERROR);
            assert!(matches!(
                c.error,
                Some(ws_proto::ConnectionError::KeepaliveTimeout)
            ));
        }
        other => panic!("{other:?}"),
    }
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    drop(done);
    t.join().unwrap();
}

/// Accepts one connection and completes its upgrade with the bare core.
fn accept_upgrade(listener: &TcpListener) -> TcpStream {
    let (mut s, _) = listener.accept().unwrap();
    let mut out = Vec::new();
    let _conn = read_upgrade(&mut s)
        .accept(Instant::now(), &Default::default(), &mut out)
        .unwrap();
    s.write_all(&out).unwrap();
    s
}

/// Reads an upgrade request with the bare core, for hand-made servers.
fn read_upgrade(s: &mut TcpStream) -> ws_proto::UpgradeRequest {
    let mut hs = ws_proto::ServerHandshake::new(ws_proto::Config::default());
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).unwrap();
        if let Some(ws_proto::Incoming::Upgrade(u)) = hs.handle_data(&buf[..n]).unwrap() {
            return *u;
        }
    }
}

#[test]
fn bulk_traffic_both_ways_does_not_deadlock() {
    // The client writes 64 MiB in 1 MiB messages while the server echoes
    // each one as it arrives: both sockets fill up in both directions, and
    // only a receiver that reads while its sender is blocked writing keeps
    // things moving.
    let server = echo_server(local_options());
    let ws = WebSocket::connect_with(&url(&server), &direct()).unwrap();
    let (tx, mut rx) = ws.split();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let writer = std::thread::spawn(move || {
            let msg = vec![0x5au8; 1 << 20];
            for _ in 0..64 {
                tx.send_binary(&msg).unwrap();
            }
        });
        let mut got = 0usize;
        while got < 64 {
            match rx.recv().unwrap() {
                Message::Binary(b) => {
                    assert_eq!(b.len(), 1 << 20);
                    got += 1;
                }
                other => panic!("{other:?}"),
            }
        }
        writer.join().unwrap();
        done_tx.send(got).unwrap();
    });
    let got = done_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("deadlocked");
    assert_eq!(got, 64);
}

#[test]
fn a_peer_that_pings_and_never_reads_does_not_stop_the_receiver() {
    // Every Ping asks for a Pong. Once the socket buffers are full, a
    // receiver that blocked writing its Pong would stop reading, and the
    // peer, blocked writing Pings, would never get to its last message.
    const PINGS: usize = 200_000;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let peer = std::thread::spawn(move || {
        let mut s = accept_upgrade(&listener);
        let mut out = Vec::new();
        let mut ping = vec![0x89, 125];
        ping.extend_from_slice(&[7; 125]);
        for _ in 0..PINGS / 100 {
            for _ in 0..100 {
                out.extend_from_slice(&ping);
            }
            s.write_all(&out).unwrap();
            out.clear();
        }
        s.write_all(&[0x81, 0x04, b'd', b'o', b'n', b'e']).unwrap();
        // Never reads; keeps the socket open until the test ends.
        std::thread::sleep(Duration::from_secs(30));
    });
    let ws = WebSocket::connect_with(&format!("ws://{addr}/"), &direct()).unwrap();
    let (_tx, mut rx) = ws.split();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut pings = 0;
        loop {
            match rx.recv() {
                Ok(Message::Ping(_)) => pings += 1,
                Ok(Message::Text(t)) => {
                    let _ = done_tx.send((pings, t));
                    return;
                }
                other => panic!("{other:?}"),
            }
        }
    });
    let (pings, text) = done_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the receiver stopped reading");
    assert_eq!((pings, text.as_str()), (PINGS, "done"));
    drop(peer);
}

#[test]
fn stop_is_bounded_even_with_a_peer_that_never_reads() {
    let mut o = local_options();
    o.config.close_timeout = Some(Duration::from_millis(500));
    // Long enough for the client below to finish its own handshake on a
    // loaded machine.
    o.handshake_timeout = Duration::from_secs(1);
    let mut server = echo_server(o);
    // A client that sends a lot and never reads: the server's echoes fill
    // the socket and its connection thread blocks writing.
    let ws = WebSocket::connect_with(&url(&server), &direct()).unwrap();
    let (tx, _rx_never_read) = ws.split();
    let flooder = std::thread::spawn(move || {
        let msg = vec![1u8; 1 << 20];
        while tx.send_binary(&msg).is_ok() {}
    });
    std::thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    server.stop().unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "stop took {:?}",
        t.elapsed()
    );
    // The aborted connection makes the flooder's writes fail, ending it.
    flooder.join().unwrap();
}
