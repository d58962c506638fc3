//! `handle_data_reply`: a message that lies whole at the start of a read,
//! with nothing buffered before it, is lent from the read itself; anything
//! else is as `handle_data` then `poll_message_reply` make it. And
//! `handle_data_message`, which builds that message from the read.

mod common;

use std::ops::Range;
use std::time::Instant;

use common::{drain, seed};
use ws_proto::{CloseCode, Config, Connection, Message, MessageRef, Role};

/// What `from` writes for the messages `send` queues.
fn wire(from: Role, send: impl FnOnce(&mut Connection)) -> Vec<u8> {
    let mut c = Connection::new(from, Config::default(), Instant::now(), seed(5));
    send(&mut c);
    drain(&mut c)
}

fn peer(role: Role) -> Role {
    match role {
        Role::Server => Role::Client,
        Role::Client => Role::Server,
    }
}

/// An owned copy of a lent message, and whether its bytes lay in `read`.
fn seen(m: MessageRef<'_>, read: &Range<usize>) -> (String, bool) {
    let bytes: &[u8] = match m {
        MessageRef::Text(t) => t.as_bytes(),
        MessageRef::Binary(b) => b,
        other => return (format!("{other:?}"), false),
    };
    let at = bytes.as_ptr() as usize;
    let inside = read.contains(&at) && at + bytes.len() <= read.end;
    (String::from_utf8_lossy(bytes).into_owned(), inside)
}

fn range(read: &[u8]) -> Range<usize> {
    let at = read.as_ptr() as usize;
    at..at + read.len()
}

#[test]
fn a_message_whole_in_the_read_is_lent_from_the_read() {
    let now = Instant::now();
    for role in [Role::Server, Role::Client] {
        let big = "x".repeat(100_000);
        let (short, block) = ("é".repeat(25), "é".repeat(32));
        // One non-ASCII byte pair among ASCII, early or in the last
        // words: still the copy.
        let early = format!("{}é{}", "a".repeat(40), "a".repeat(10));
        let late = format!("{}é{}", "a".repeat(50), "a".repeat(5));
        let ascii = "x".repeat(50);
        for text in [
            "hello",
            "Grüße, 世界!",
            &short,
            &early,
            &late,
            &ascii,
            &block,
            &big,
        ] {
            let mut c = Connection::new(role, Config::default(), now, seed(1));
            let mut read = wire(peer(role), |p| p.send_text(text).unwrap());
            let where_ = range(&read);
            let r = c.handle_data_reply(now, &mut read, |m, _| seen(m, &where_));
            // Text of 48 to 63 bytes that is not ASCII is checked (and
            // lent) in a copy on the stack, quicker than std's check.
            let from_read = ![short.as_str(), &early, &late].contains(&text);
            assert_eq!(r, Some((text.to_string(), from_read)), "{role:?}");
            // Nothing was copied in: the connection has no input buffer.
            assert_eq!(c.input_capacity(), 0, "{role:?}");
            assert_eq!(c.buffered_input(), 0);
        }
    }
}

#[test]
fn handle_data_message_builds_a_message_whole_in_the_read_from_the_read() {
    let now = Instant::now();
    for role in [Role::Server, Role::Client] {
        // Up to 4 KiB (a larger frame is unmasked as it is copied in, or
        // straight into its String).
        let kilo = "é".repeat(512);
        for text in ["hello", kilo.as_str()] {
            let mut c = Connection::new(role, Config::default(), now, seed(1));
            let mut read = wire(peer(role), |p| p.send_text(text).unwrap());
            let m = c.handle_data_message(now, &mut read);
            assert_eq!(m, Some(Message::Text(text.into())), "{role:?}");
            // Nothing was copied in: the connection has no input buffer.
            assert_eq!(c.input_capacity(), 0, "{role:?}");
            assert_eq!(c.buffered_input(), 0);
        }
        let mut c = Connection::new(role, Config::default(), now, seed(1));
        let mut read = wire(peer(role), |p| p.send_binary(&[7; 2000]).unwrap());
        let m = c.handle_data_message(now, &mut read);
        assert_eq!(m, Some(Message::Binary(vec![7; 2000].into())), "{role:?}");
        assert_eq!(c.input_capacity(), 0, "{role:?}");
        // What follows it is taken in and comes from the next polls; a
        // message split over reads is built as `poll_message` builds it.
        let mut c = Connection::new(role, Config::default(), now, seed(1));
        let read = wire(peer(role), |p| {
            p.send_binary(&[1; 300]).unwrap();
            p.send_text("second").unwrap();
            p.send_text(&"x".repeat(50_000)).unwrap();
        });
        let cut = read.len() - 20_000;
        let (mut first, mut second) = (read[..cut].to_vec(), read[cut..].to_vec());
        let m = c.handle_data_message(now, &mut first);
        assert_eq!(m, Some(Message::Binary(vec![1; 300].into())), "{role:?}");
        assert_eq!(c.poll_message(), Some(Message::Text("second".into())));
        assert_eq!(c.poll_message(), None);
        assert_eq!(
            c.handle_data_message(now, &mut second),
            Some(Message::Text("x".repeat(50_000)))
        );
        assert_eq!(c.poll_message(), None);
    }
}

#[test]
fn what_follows_the_lent_message_is_buffered_and_lent_next() {
    let now = Instant::now();
    for role in [Role::Server, Role::Client] {
        let mut c = Connection::new(role, Config::default(), now, seed(1));
        let first = "first".to_string();
        let mut read = wire(peer(role), |p| {
            p.send_text(&first).unwrap();
            p.send_binary(&[b'2'; 3000]).unwrap();
            p.send_text("third").unwrap();
        });
        let where_ = range(&read);
        let r = c.handle_data_reply(now, &mut read, |m, _| seen(m, &where_));
        assert_eq!(r, Some((first, true)), "{role:?}");
        let mut rest = Vec::new();
        while let Some(m) = c.poll_message_with(|m| seen(m, &where_)) {
            rest.push(m);
        }
        assert_eq!(
            rest,
            [
                (String::from_utf8(vec![b'2'; 3000]).unwrap(), false),
                ("third".to_string(), false)
            ],
            "{role:?}"
        );
    }
}

#[test]
fn a_message_not_whole_in_the_read_is_built_as_ever() {
    let now = Instant::now();
    let input = wire(Role::Client, |p| p.send_text(&"é".repeat(3000)).unwrap());
    for cut in [1, 2, 5, 100, input.len() - 1] {
        let mut c = Connection::new(Role::Server, Config::default(), now, seed(1));
        let mut first = input[..cut].to_vec();
        let r = c.handle_data_reply(now, &mut first, |_, _| panic!("nothing is whole yet"));
        assert_eq!(r, None);
        let mut second = input[cut..].to_vec();
        let where_ = range(&second);
        let r = c.handle_data_reply(now, &mut second, |m, _| seen(m, &where_));
        assert_eq!(r, Some(("é".repeat(3000), false)), "cut at {cut}");
    }
}

#[test]
fn text_that_is_not_utf8_fails_the_connection_as_the_polls_do() {
    let now = Instant::now();
    let mut bad = wire(Role::Client, |p| p.send_binary(b"ok \xff\xfe").unwrap());
    // The same frame as text (opcode 1 instead of 2).
    bad[0] = 0x81;
    let good = wire(Role::Client, |p| p.send_text("fine").unwrap());
    for input in [
        [bad.clone(), good.clone()].concat(),
        [good.clone(), bad.clone(), good.clone()].concat(),
    ] {
        let mut lent = Vec::new();
        let mut both = Connection::new(Role::Server, Config::default(), now, seed(1));
        both.handle_data(now, &input);
        while let Some(m) = both.poll_message_reply(|m, _| format!("{m:?}")) {
            lent.push(m);
        }
        let mut in_place = Vec::new();
        let mut c = Connection::new(Role::Server, Config::default(), now, seed(1));
        let mut read = input.clone();
        in_place.extend(c.handle_data_reply(now, &mut read, |m, _| format!("{m:?}")));
        while let Some(m) = c.poll_message_reply(|m, _| format!("{m:?}")) {
            in_place.push(m);
        }
        assert_eq!(in_place, lent);
        assert!(lent.last().unwrap().contains("1007"), "{lent:?}");
        let out = drain(&mut c);
        assert_eq!(out, drain(&mut both));
        // A Close with 1007.
        assert_eq!(&out[..4], &[0x88, 2, 0x03, 0xef]);
    }
}

#[test]
fn a_closure_that_panics_leaves_the_message_to_be_lent_again() {
    let now = Instant::now();
    let big = "ß".repeat(5000);
    for text in ["short", big.as_str()] {
        let mut c = Connection::new(Role::Server, Config::default(), now, seed(1));
        let mut read = wire(Role::Client, |p| {
            p.send_text(text).unwrap();
            p.send_binary(&[9; 5000]).unwrap();
            p.ping(b"still here?").unwrap();
        });
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            c.handle_data_reply(now, &mut read, |_, _| -> () {
                panic!("the application's closure fails")
            })
        }));
        assert!(r.is_err());
        // Not unmasked a second time, not lost, and the rest follows.
        assert_eq!(
            c.poll_message_with(|m| m == MessageRef::Text(text)),
            Some(true)
        );
        assert_eq!(
            c.poll_message_with(|m| m == MessageRef::Binary(&[9; 5000])),
            Some(true)
        );
        assert_eq!(
            c.poll_message_with(|m| m == MessageRef::Ping(b"still here?")),
            Some(true)
        );
        assert_eq!(c.poll_message_with(|_| ()), None);
    }
}

#[test]
fn a_reply_from_the_read_leaves_as_from_the_polls() {
    let now = Instant::now();
    let input = wire(Role::Client, |p| p.send_text("echo me").unwrap());
    let mut c = Connection::new(Role::Server, Config::default(), now, seed(1));
    let mut read = input.clone();
    let r = c.handle_data_reply(now, &mut read, |m, reply| match m {
        MessageRef::Text(t) => reply.send_text(t),
        _ => panic!("{m:?}"),
    });
    assert_eq!(r, Some(Ok(())));
    assert_eq!(
        drain(&mut c),
        wire(Role::Server, |s| s.send_text("echo me").unwrap())
    );
    // And after the peer's Close, as the polls do: no answer, our Close.
    let close = wire(Role::Client, |p| {
        p.close(now, CloseCode::NORMAL, "bye").unwrap()
    });
    let mut read = close.clone();
    let r = c.handle_data_reply(now, &mut read, |m, reply| {
        assert!(matches!(m, MessageRef::Closed(_)), "{m:?}");
        reply.send_text("too late").is_err()
    });
    assert_eq!(r, Some(true));
    assert_eq!(drain(&mut c)[0], 0x88);
}
