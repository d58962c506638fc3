//! `send_owned` / `send_text_owned`: the same bytes on the wire as
//! `send_text` / `send_binary`, whichever way the output is taken
//! (`poll_transmit`, which copies, or `poll_transmit_owned`, which hands
//! large server payloads out in their own `Bytes`), and those payloads are
//! really not copied.

use std::time::Instant;

use bytes::Bytes;
use proptest::prelude::*;
use ws_proto::{CloseCode, Config, Connection, MessageKind, Role, SendError, Transmit, OWNED_MIN};

#[derive(Debug, Clone)]
enum Op {
    /// A message, sent owned by one connection and borrowed by the other.
    Send {
        text: bool,
        len: usize,
    },
    Ping(u8),
    /// Take what is queued so far (positions of the owned payloads left
    /// must follow).
    Drain,
    Close,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (any::<bool>(), prop_oneof![0..64usize, OWNED_MIN - 2..OWNED_MIN + 2, 3000..70_000usize])
            .prop_map(|(text, len)| Op::Send { text, len }),
        1 => any::<u8>().prop_map(|n| Op::Ping(n % 126)),
        2 => Just(Op::Drain),
        1 => Just(Op::Close),
    ]
}

fn payload(text: bool, len: usize, salt: usize) -> Vec<u8> {
    if text {
        // Multibyte text, cut back to a code point boundary.
        let s: String = "añ€𝄞".chars().cycle().take(len).collect();
        let mut end = len.min(s.len());
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.as_bytes()[..end].to_vec()
    } else {
        (0..len).map(|i| (i * 31 + salt) as u8).collect()
    }
}

/// How a connection's output is taken.
#[derive(Clone, Copy)]
enum Take {
    Copy,
    Owned,
}

fn drain(conn: &mut Connection, take: Take, wire: &mut Vec<u8>) {
    loop {
        let mut buf = Vec::new();
        let mut owned = None;
        let t = match take {
            Take::Copy => conn.poll_transmit(&mut buf),
            Take::Owned => conn.poll_transmit_owned(&mut buf, &mut owned),
        };
        let n = buf.len() + owned.as_ref().map_or(0, Bytes::len);
        wire.extend_from_slice(&buf);
        if let Some(b) = owned {
            wire.extend_from_slice(&b);
        }
        match t {
            Transmit::Data(d) => assert_eq!(d, n, "Data counts both buffers"),
            Transmit::Shutdown | Transmit::Nothing => {
                assert_eq!(n, 0);
                return;
            }
        }
    }
}

fn run(role: Role, fragment: usize, ops: &[Op]) {
    let mut config = Config::default();
    config.send_fragment_size = fragment;
    let now = Instant::now();
    let seed = [7; 32];
    // Borrowed sends, copied out; owned sends copied out; owned sends
    // taken owned.
    let mut conns = [
        Connection::new(role, config.clone(), now, seed),
        Connection::new(role, config.clone(), now, seed),
        Connection::new(role, config, now, seed),
    ];
    let takes = [Take::Copy, Take::Copy, Take::Owned];
    let mut wires = [Vec::new(), Vec::new(), Vec::new()];
    for (salt, op) in ops.iter().enumerate() {
        let mut results = Vec::new();
        for (i, conn) in conns.iter_mut().enumerate() {
            results.push(match op {
                Op::Send { text, len } => {
                    let data = payload(*text, *len, salt);
                    let kind = if *text {
                        MessageKind::Text
                    } else {
                        MessageKind::Binary
                    };
                    match (i, text) {
                        (0, true) => conn.send_text(std::str::from_utf8(&data).unwrap()),
                        (0, false) => conn.send_binary(&data),
                        (1, true) => conn.send_text_owned(String::from_utf8(data).unwrap()),
                        _ => conn.send_owned(kind, Bytes::from(data)),
                    }
                }
                Op::Ping(n) => conn.ping(&vec![1; *n as usize]),
                Op::Drain => {
                    drain(conn, takes[i], &mut wires[i]);
                    Ok(())
                }
                Op::Close => conn.close(now, CloseCode::NORMAL, "bye"),
            });
        }
        // Refused (after the close) alike.
        assert!(
            results.iter().all(|r| *r == results[0]),
            "{op:?}: {results:?}"
        );
        let amounts: Vec<usize> = conns.iter().map(Connection::buffered_amount).collect();
        assert!(
            amounts.iter().all(|&a| a == amounts[0]),
            "buffered_amount after {op:?}: {amounts:?}"
        );
    }
    for (i, conn) in conns.iter_mut().enumerate() {
        drain(conn, takes[i], &mut wires[i]);
        assert_eq!(conn.buffered_amount(), 0);
        assert!(!conn.has_output());
    }
    assert!(wires[0] == wires[1], "owned, copied out: differs");
    assert!(wires[0] == wires[2], "owned, taken owned: differs");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn owned_sends_put_the_same_bytes_on_the_wire(
        client in any::<bool>(),
        fragment in prop_oneof![Just(100usize), Just(OWNED_MIN), Just(5000), Just(16 << 20)],
        ops in proptest::collection::vec(op(), 1..24),
    ) {
        let role = if client { Role::Client } else { Role::Server };
        run(role, fragment, &ops);
    }
}

#[test]
fn a_large_server_payload_leaves_in_its_own_bytes() {
    let mut config = Config::default();
    config.send_fragment_size = 64 << 10;
    let mut conn = Connection::new(Role::Server, config, Instant::now(), [1; 32]);
    let data = Bytes::from(vec![5u8; 200_000]);
    conn.send_binary(b"before").unwrap();
    conn.send_owned(MessageKind::Binary, data.clone()).unwrap();
    conn.send_binary(b"after").unwrap();
    assert_eq!(conn.buffered_amount(), 8 + 3 * 10 + 4 + 200_000 + 7);
    let mut pieces = Vec::new();
    loop {
        let mut buf = Vec::new();
        let mut owned = None;
        if conn.poll_transmit_owned(&mut buf, &mut owned) == Transmit::Nothing {
            break;
        }
        pieces.push((buf, owned));
    }
    // Four fragments of at most 64 KiB, each after its header, then the
    // last frame's bytes.
    assert_eq!(pieces.len(), 5);
    let mut offset = 0;
    for (i, (buf, owned)) in pieces.iter().take(4).enumerate() {
        let owned = owned.as_ref().expect("a payload of its own");
        // The same memory: not copied.
        assert_eq!(owned.as_ptr(), data[offset..].as_ptr(), "fragment {i}");
        offset += owned.len();
        // "before" leads the first buffer; every buffer ends in a header.
        assert!(buf.len() <= 8 + 10 && buf.len() >= 4, "{}", buf.len());
    }
    assert_eq!(offset, data.len());
    assert_eq!(pieces[4].0, [0x82, 5, b'a', b'f', b't', b'e', b'r']);
    assert!(pieces[4].1.is_none());
}

#[test]
fn small_masked_or_invalid_payloads_are_handled_as_before() {
    // Below OWNED_MIN, and the client role: copied; nothing is handed out
    // owned (compressed payloads: tests/deflate.rs).
    for (role, len) in [(Role::Server, OWNED_MIN - 1), (Role::Client, 100_000)] {
        let mut conn = Connection::new(role, Config::default(), Instant::now(), [2; 32]);
        conn.send_owned(MessageKind::Binary, Bytes::from(vec![1; len]))
            .unwrap();
        let mut buf = Vec::new();
        let mut owned = None;
        assert!(matches!(
            conn.poll_transmit_owned(&mut buf, &mut owned),
            Transmit::Data(_)
        ));
        assert!(owned.is_none());
        assert!(buf.len() > len);
    }
    let mut conn = Connection::new(Role::Server, Config::default(), Instant::now(), [3; 32]);
    assert_eq!(
        conn.send_owned(MessageKind::Text, Bytes::from_static(&[0x61, 0xff])),
        Err(SendError::InvalidUtf8)
    );
    assert!(!conn.has_output());
}
