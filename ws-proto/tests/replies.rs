//! `poll_message_reply`: messages queued from inside the lend are the frames
//! `send_text` / `send_binary` would queue at that point, under the same
//! rules.

mod common;

use std::time::Instant;

use common::{drain, pieces, seed};
use ws_proto::{
    CloseCode, Config, Connection, Message, MessageKind, MessageRef, Reply, Role, SendError,
};

/// Frames as `from` sends them: text, binary, a Ping, a fragmented text
/// message and a large binary message.
fn wire_from(from: Role) -> Vec<u8> {
    let now = Instant::now();
    let mut c = Connection::new(from, Config::default(), now, seed(3));
    c.send_text("hello").unwrap();
    c.send_binary(&[1, 2, 3, 250]).unwrap();
    c.ping(b"are you there").unwrap();
    c.send_text(&"Grüße, 世界! 🌍 ".repeat(40)).unwrap();
    c.send_chunk(MessageKind::Text, "frag".as_bytes(), false)
        .unwrap();
    c.send_chunk(MessageKind::Text, "mented".as_bytes(), true)
        .unwrap();
    let big: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    c.send_binary(&big).unwrap();
    c.send_text("").unwrap();
    drain(&mut c)
}

/// How `echo` answers.
#[derive(Debug, Clone, Copy, PartialEq)]
enum How {
    /// `poll_message`, then the send methods.
    Send,
    /// `handle_data`, then `poll_message_reply`.
    Reply,
    /// `handle_data_reply` with each piece, then `poll_message_reply`.
    InPlace,
}

/// Answers a lent message: itself (a Ping with a text "pong?").
fn answer(m: MessageRef<'_>, reply: &mut Reply<'_>) -> Result<(), SendError> {
    match m {
        MessageRef::Text(t) => reply.send_text(t),
        MessageRef::Binary(b) => reply.send_binary(b),
        MessageRef::Ping(_) => reply.send_text("pong?"),
        _ => Ok(()),
    }
}

/// The bytes `role` writes when it answers every text and binary message
/// with itself (and a Ping with a text "pong?"), fed `input` cut at `cuts`,
/// answering as `how` says.
fn echo(role: Role, config: &Config, input: &[u8], cuts: &[usize], how: How) -> Vec<u8> {
    let now = Instant::now();
    let mut c = Connection::new(role, config.clone(), now, seed(9));
    let mut out = Vec::new();
    for piece in pieces(input, cuts) {
        if how == How::InPlace {
            let mut read = piece.to_vec();
            if let Some(r) = c.handle_data_reply(now, &mut read, answer) {
                r.unwrap();
            }
        } else {
            c.handle_data(now, piece);
        }
        if how != How::Send {
            while let Some(r) = c.poll_message_reply(answer) {
                r.unwrap();
            }
        } else {
            while let Some(m) = c.poll_message() {
                match m {
                    Message::Text(t) => c.send_text(&t).unwrap(),
                    Message::Binary(b) => c.send_binary(&b).unwrap(),
                    Message::Ping(_) => c.send_text("pong?").unwrap(),
                    _ => {}
                }
            }
        }
        out.extend(drain(&mut c));
    }
    out
}

#[test]
fn replies_are_the_frames_the_send_methods_queue() {
    for role in [Role::Server, Role::Client] {
        let peer = if role == Role::Server {
            Role::Client
        } else {
            Role::Server
        };
        let input = wire_from(peer);
        let mut small_fragments = Config::default();
        small_fragments.send_fragment_size = 1000;
        for config in [Config::default(), small_fragments] {
            // Whole (messages lent in place), in pieces (large ones built
            // first, then lent) and a byte at a time at the start.
            for cuts in [vec![], vec![3, 40, 900, 5000, 70_000], (1..64).collect()] {
                let sent = echo(role, &config, &input, &cuts, How::Send);
                assert!(sent.len() > 200_000, "{role:?}");
                for how in [How::Reply, How::InPlace] {
                    let replied = echo(role, &config, &input, &cuts, how);
                    assert_eq!(replied, sent, "{role:?} {how:?} cuts {cuts:?}");
                }
            }
        }
    }
}

#[test]
fn a_reply_is_refused_where_a_send_would_be() {
    let now = Instant::now();
    let input = wire_from(Role::Client);
    // While a streamed message is unfinished.
    let mut s = Connection::new(Role::Server, Config::default(), now, seed(0));
    s.send_chunk(MessageKind::Binary, b"part", false).unwrap();
    s.handle_data(now, &input);
    let r = s.poll_message_reply(|_, reply| reply.send_text("no"));
    assert_eq!(r, Some(Err(SendError::MessageInProgress)));
    // After our Close: the peer's messages are still read, not answered.
    let mut s = Connection::new(Role::Server, Config::default(), now, seed(0));
    s.close(now, CloseCode::NORMAL, "bye").unwrap();
    let before = drain(&mut s);
    s.handle_data(now, &input);
    let r = s.poll_message_reply(|m, reply| {
        assert!(matches!(m, MessageRef::Text("hello")));
        reply.send_binary(b"no")
    });
    assert_eq!(r, Some(Err(SendError::Closing)));
    assert!(drain(&mut s).is_empty(), "nothing queued after {before:?}");
    // After the peer's Close: lent as Closed, and answering fails.
    let mut c = Connection::new(Role::Client, Config::default(), now, seed(1));
    c.close(now, CloseCode::NORMAL, "done").unwrap();
    let close = drain(&mut c);
    let mut s = Connection::new(Role::Server, Config::default(), now, seed(0));
    s.handle_data(now, &close);
    let r = s.poll_message_reply(|m, reply| {
        assert!(matches!(m, MessageRef::Closed(_)));
        reply.send_text("too late")
    });
    assert!(matches!(
        r,
        Some(Err(SendError::Closing | SendError::Closed))
    ));
    // Only the Close answering the peer's went out.
    let out = drain(&mut s);
    assert_eq!(out[0], 0x88, "{out:?}");
    assert_eq!(out.len(), 2 + 2);
}

/// A server's registry lends each message to its lent callbacks, in
/// registration order, each answering through the same `Reply`; it tells
/// whether callbacks that take events want an owned copy; `off` removes
/// a lent callback like the others.
#[test]
fn a_registry_lends_messages_to_its_lent_callbacks() {
    use std::sync::{Arc, Mutex};
    use ws_proto::api::{ClientConnection, Registry, ServerEvent, ServerEventKind};
    let now = Instant::now();
    let reg: Registry<ServerEventKind, ServerEvent> = Registry::new();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let first = reg.on_lent(ServerEventKind::MessageReceive, move |conn, m, reply| {
        s.lock().unwrap().push(format!("first {} {m:?}", conn.id));
        if let MessageRef::Text(t) = m {
            reply.send_text(&t.to_uppercase()).unwrap();
        }
    });
    let s = seen.clone();
    reg.on_lent(ServerEventKind::MessageReceive, move |_, m, reply| {
        s.lock().unwrap().push(format!("second {m:?}"));
        if let MessageRef::Binary(b) = m {
            reply.send_binary(&b[1..]).unwrap();
        }
    });
    // Lent callbacks of another kind are not lent messages.
    reg.on_lent(ServerEventKind::Connect, |_, _, _| panic!("not a message"));
    let conn = ClientConnection {
        id: 7,
        addr: "127.0.0.1:9".parse().unwrap(),
    };
    let mut view = reg.view();
    assert!(view.lends(&reg, ServerEventKind::MessageReceive));
    assert!(!view.lends(&reg, ServerEventKind::Close));
    let mut c = Connection::new(Role::Client, Config::default(), now, seed(1));
    c.send_text("hi").unwrap();
    c.send_binary(&[1, 2, 3]).unwrap();
    let mut input = drain(&mut c);
    let mut s = Connection::new(Role::Server, Config::default(), now, seed(0));
    let lend =
        |s: &mut Connection, view: &mut ws_proto::api::View<_, _>, data: Option<&mut [u8]>| {
            let f = |m: MessageRef<'_>, reply: &mut Reply<'_>| {
                view.emit_lent(&reg, ServerEventKind::MessageReceive, &conn, m, reply)
            };
            match data {
                Some(d) => s.handle_data_reply(now, d, f),
                None => s.poll_message_reply(f),
            }
        };
    assert_eq!(lend(&mut s, &mut view, Some(&mut input)), Some(false));
    assert_eq!(lend(&mut s, &mut view, None), Some(false));
    assert_eq!(
        *seen.lock().unwrap(),
        [
            "first 7 Text(\"hi\")",
            "second Text(\"hi\")",
            "first 7 Binary([1, 2, 3])",
            "second Binary([1, 2, 3])"
        ]
    );
    c.handle_data(now, &drain(&mut s));
    assert_eq!(c.poll_message(), Some(Message::Text("HI".into())));
    assert_eq!(c.poll_message(), Some(Message::Binary(vec![2, 3].into())));
    // An owned callback: the view says it wants the event; `off` takes the
    // first lent one out.
    reg.on(ServerEventKind::MessageReceive, |_| {});
    assert_eq!(reg.off(ServerEventKind::MessageReceive, Some(first)), 1);
    seen.lock().unwrap().clear();
    c.send_text("again").unwrap();
    let mut input = drain(&mut c);
    assert_eq!(lend(&mut s, &mut view, Some(&mut input)), Some(true));
    assert_eq!(*seen.lock().unwrap(), ["second Text(\"again\")"]);
    assert!(
        drain(&mut s).is_empty(),
        "only the removed one answered text"
    );
    assert!(view.lends(&reg, ServerEventKind::MessageReceive));
    assert_eq!(reg.off(ServerEventKind::MessageReceive, None), 2);
    assert!(!view.lends(&reg, ServerEventKind::MessageReceive));
}

/// `with_reply` queues what the send methods would, under their rules.
#[test]
fn a_reply_outside_a_lend_queues_what_a_send_would() {
    let now = Instant::now();
    let mut sent = Connection::new(Role::Server, Config::default(), now, seed(0));
    sent.send_text("one").unwrap();
    sent.send_binary(&[2; 300]).unwrap();
    let mut replied = Connection::new(Role::Server, Config::default(), now, seed(0));
    let r = replied.with_reply(|reply| {
        reply.send_text("one")?;
        reply.send_binary(&[2; 300])
    });
    assert_eq!(r, Ok(()));
    assert_eq!(drain(&mut replied), drain(&mut sent));
    replied
        .send_chunk(MessageKind::Text, b"half", false)
        .unwrap();
    let _ = drain(&mut replied);
    assert_eq!(
        replied.with_reply(|reply| reply.send_text("no")),
        Err(SendError::MessageInProgress)
    );
    replied.send_chunk(MessageKind::Text, b"", true).unwrap();
    replied.close(now, CloseCode::NORMAL, "").unwrap();
    let _ = drain(&mut replied);
    assert_eq!(
        replied.with_reply(|reply| reply.send_text("no")),
        Err(SendError::Closing)
    );
    assert!(drain(&mut replied).is_empty());
}
