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
    /// A Ping from the peer (its Pong is owed).
    PeerPing(u8),
    /// One call of the transmit function; the rest stays queued.
    DrainOnce,
    /// Take everything queued so far.
    Drain,
    Close,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (any::<bool>(), prop_oneof![0..64usize, OWNED_MIN - 2..OWNED_MIN + 2, 3000..70_000usize])
            .prop_map(|(text, len)| Op::Send { text, len }),
        1 => any::<u8>().prop_map(|n| Op::Ping(n % 126)),
        1 => any::<u8>().prop_map(|n| Op::PeerPing(n % 126)),
        1 => Just(Op::DrainOnce),
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

/// One call of the transmit function; false once it has nothing more.
fn transmit_once(conn: &mut Connection, take: Take, wire: &mut Vec<u8>) -> bool {
    let mut buf = Vec::new();
    let mut owned = Vec::new();
    let t = match take {
        Take::Copy => conn.poll_transmit(&mut buf),
        Take::Owned => conn.poll_transmit_owned(&mut buf, &mut owned),
    };
    let n = buf.len() + owned.iter().map(|(_, b)| b.len()).sum::<usize>();
    let mut from = 0;
    for (at, payload) in owned {
        assert!(at >= from && at <= buf.len(), "payload position {at}");
        wire.extend_from_slice(&buf[from..at]);
        wire.extend_from_slice(&payload);
        from = at;
    }
    wire.extend_from_slice(&buf[from..]);
    match t {
        Transmit::Data(d) => {
            assert_eq!(d, n, "Data counts both");
            true
        }
        Transmit::Shutdown | Transmit::Nothing => {
            assert_eq!(n, 0);
            false
        }
    }
}

fn drain(conn: &mut Connection, take: Take, wire: &mut Vec<u8>) {
    while transmit_once(conn, take, wire) {}
}

/// A masked Ping from a client, or an unmasked one from a server.
fn ping_frame(role: Role, n: u8) -> Vec<u8> {
    let payload = vec![9u8; n as usize];
    let mut f = vec![0x89];
    if role == Role::Server {
        let key = [1, 2, 3, 4];
        f.push(0x80 | n);
        f.extend_from_slice(&key);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        f.push(n);
        f.extend_from_slice(&payload);
    }
    f
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
                Op::PeerPing(n) => {
                    conn.handle_data(now, &ping_frame(role, *n));
                    while conn.poll_event().is_some() {}
                    Ok(())
                }
                Op::DrainOnce => {
                    transmit_once(conn, takes[i], &mut wires[i]);
                    Ok(())
                }
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
    let mut buf = Vec::new();
    let mut owned = Vec::new();
    assert!(matches!(
        conn.poll_transmit_owned(&mut buf, &mut owned),
        Transmit::Data(n) if n == 8 + 3 * 10 + 4 + 200_000 + 7
    ));
    // Three fragments of 64 KiB handed out as they are, each after its
    // header; the short last one (3 392 bytes) too: not under OWNED_MIN.
    assert_eq!(owned.len(), 4);
    let mut offset = 0;
    let mut header_end = 8 + 10;
    for (i, (at, piece)) in owned.iter().enumerate() {
        // The same memory: not copied.
        assert_eq!(piece.as_ptr(), data[offset..].as_ptr(), "fragment {i}");
        assert_eq!(*at, header_end, "fragment {i}");
        offset += piece.len();
        header_end += if i < 2 { 10 } else { 4 };
    }
    assert_eq!(offset, data.len());
    // "before", the headers and "after" are all that was copied.
    assert_eq!(buf.len(), 8 + 3 * 10 + 4 + 7);
    assert_eq!(
        &buf[buf.len() - 7..],
        [0x82, 5, b'a', b'f', b't', b'e', b'r']
    );
    assert_eq!(
        conn.poll_transmit_owned(&mut buf, &mut owned),
        Transmit::Nothing
    );
}

#[test]
fn a_short_last_fragment_is_copied() {
    let mut config = Config::default();
    config.send_fragment_size = OWNED_MIN;
    let mut conn = Connection::new(Role::Server, config, Instant::now(), [4; 32]);
    conn.send_owned(MessageKind::Binary, Bytes::from(vec![3u8; OWNED_MIN + 1]))
        .unwrap();
    let (mut buf, mut owned) = (Vec::new(), Vec::new());
    let _ = conn.poll_transmit_owned(&mut buf, &mut owned);
    assert_eq!(owned.len(), 1);
    assert_eq!(buf.len(), 4 + 2 + 1);
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
        let mut owned = Vec::new();
        assert!(matches!(
            conn.poll_transmit_owned(&mut buf, &mut owned),
            Transmit::Data(_)
        ));
        assert!(owned.is_empty());
        assert!(buf.len() > len);
    }
    let mut conn = Connection::new(Role::Server, Config::default(), Instant::now(), [3; 32]);
    assert_eq!(
        conn.send_owned(MessageKind::Text, Bytes::from_static(&[0x61, 0xff])),
        Err(SendError::InvalidUtf8)
    );
    assert!(!conn.has_output());
}
