//! The connection state machine, tested as a client/server pair on a virtual
//! clock and with hand-made frames.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{seed, Pair};
use ws_proto::frame::{FrameHeader, OpCode};
use ws_proto::mask::apply_mask;
use ws_proto::{
    CloseCode, Config, Connection, ConnectionError, Event, Initiator, Message, MessageKind,
    ProtocolError, Role, SendError, State, Transmit,
};

/// A frame as a client would send it (masked), with raw control over the bits.
fn client_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x11, 0x22, 0x33, 0x44];
    let mut out = Vec::new();
    let fin = b0 & 0x80 != 0;
    let rsv = (b0 >> 4) & 7;
    let opcode = match b0 & 0xf {
        0 => OpCode::Continuation,
        1 => OpCode::Text,
        2 => OpCode::Binary,
        8 => OpCode::Close,
        9 => OpCode::Ping,
        10 => OpCode::Pong,
        other => {
            // Reserved opcodes: encode by hand.
            out.push(b0 & 0xf0 | other);
            out.push(0x80 | payload.len() as u8);
            out.extend_from_slice(&mask);
            let mut p = payload.to_vec();
            apply_mask(&mut p, mask, 0);
            out.extend_from_slice(&p);
            return out;
        }
    };
    FrameHeader {
        fin,
        rsv,
        opcode,
        mask: Some(mask),
        len: payload.len() as u64,
    }
    .encode(&mut out);
    let mut p = payload.to_vec();
    apply_mask(&mut p, mask, 0);
    out.extend_from_slice(&p);
    out
}

fn server_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let opcode = OpCode::from_u8(b0 & 0xf).unwrap();
    FrameHeader {
        fin: b0 & 0x80 != 0,
        rsv: (b0 >> 4) & 7,
        opcode,
        mask: None,
        len: payload.len() as u64,
    }
    .encode(&mut out);
    out.extend_from_slice(payload);
    out
}

fn server() -> (Connection, Instant) {
    let now = Instant::now();
    (
        Connection::new(Role::Server, Config::default(), now, seed(0)),
        now,
    )
}

fn drain(conn: &mut Connection) -> (Vec<Event>, Vec<u8>, bool) {
    let mut events = Vec::new();
    while let Some(e) = conn.poll_event() {
        events.push(e);
    }
    let mut out = Vec::new();
    let mut shutdown = false;
    loop {
        match conn.poll_transmit(&mut out) {
            Transmit::Data(_) => {}
            Transmit::Shutdown => shutdown = true,
            Transmit::Nothing => break,
        }
    }
    (events, out, shutdown)
}

/// Feeds `input` to a fresh server and returns the close it ended with.
fn server_fails_with(input: &[u8]) -> (ws_proto::CloseInfo, Vec<u8>) {
    let (mut s, now) = server();
    s.handle_data(now, input);
    let (events, out, shutdown) = drain(&mut s);
    let closed = match events.last() {
        Some(Event::Closed(c)) => c.clone(),
        other => panic!("expected Closed, got {other:?} in {events:?}"),
    };
    assert!(shutdown, "a failed connection shuts down");
    assert_eq!(s.state(), State::Closed);
    (closed, out)
}

fn close_code_on_wire(out: &[u8]) -> u16 {
    // The last frame a server wrote: 0x88, len, code.
    let pos = out.iter().rposition(|&b| b == 0x88).expect("a close frame");
    u16::from_be_bytes([out[pos + 2], out[pos + 3]])
}

#[test]
fn rfc_5_7_masked_hello_to_server() {
    let (mut s, now) = server();
    s.handle_data(
        now,
        &[
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ],
    );
    assert_eq!(
        s.poll_event(),
        Some(Event::Text {
            data: Bytes::from_static(b"Hello"),
            fin: true
        })
    );
    assert_eq!(s.poll_event(), None);
}

#[test]
fn rfc_5_7_unmasked_frames_to_client() {
    let now = Instant::now();
    let mut c = Connection::new(Role::Client, Config::default(), now, seed(1));
    // Fragmented "Hel" + "lo", an unmasked Ping in between.
    c.handle_data(now, &[0x01, 0x03, 0x48, 0x65, 0x6c]);
    c.handle_data(now, &[0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
    c.handle_data(now, &[0x80, 0x02, 0x6c, 0x6f]);
    let (events, out, _) = drain(&mut c);
    assert_eq!(
        events,
        vec![
            Event::Text {
                data: Bytes::from_static(b"Hel"),
                fin: false
            },
            Event::Ping(Bytes::from_static(b"Hello")),
            Event::Text {
                data: Bytes::from_static(b"lo"),
                fin: true
            },
        ]
    );
    // The automatic Pong is masked (client) and carries the Ping's payload.
    let (h, n) = FrameHeader::parse(&out).unwrap().unwrap();
    assert_eq!(h.opcode, OpCode::Pong);
    let mut p = out[n..n + 5].to_vec();
    apply_mask(&mut p, h.mask.expect("client frames are masked"), 0);
    assert_eq!(p, b"Hello");
}

#[test]
fn echo_text_and_binary_between_pair() {
    let mut p = Pair::new();
    p.client.conn.send_text("hello").unwrap();
    p.client.conn.send_binary(&[1, 2, 3]).unwrap();
    p.server.conn.send_text("κόσμε").unwrap();
    p.run();
    assert_eq!(
        p.server.messages,
        vec![
            Message::Text("hello".into()),
            Message::Binary(Bytes::from_static(&[1, 2, 3]))
        ]
    );
    assert_eq!(p.client.messages, vec![Message::Text("κόσμε".into())]);
}

#[test]
fn server_frames_are_unmasked_client_frames_masked() {
    let now = Instant::now();
    let mut c = Connection::new(Role::Client, Config::default(), now, seed(3));
    let (mut s, _) = server();
    c.send_binary(b"abc").unwrap();
    s.send_binary(b"abc").unwrap();
    let (_, cout, _) = drain(&mut c);
    let (_, sout, _) = drain(&mut s);
    assert_eq!(cout[1] & 0x80, 0x80);
    assert_ne!(
        &cout[6..],
        b"abc",
        "masked payload differs from the clear text"
    );
    assert_eq!(sout, [0x82, 0x03, b'a', b'b', b'c']);
}

#[test]
fn masks_are_deterministic_for_a_seed_and_vary_per_frame() {
    let now = Instant::now();
    let mk = || {
        let mut c = Connection::new(Role::Client, Config::default(), now, seed(9));
        c.send_binary(b"x").unwrap();
        c.send_binary(b"x").unwrap();
        drain(&mut c).1
    };
    let a = mk();
    assert_eq!(a, mk());
    assert_ne!(a[2..6], a[9..13], "each frame gets a fresh mask");
}

#[test]
fn server_fails_unmasked_frame_with_1002() {
    let (closed, out) = server_fails_with(&server_frame(0x81, b"hi"));
    assert_eq!(closed.code, CloseCode::PROTOCOL_ERROR);
    assert_eq!(
        closed.error,
        Some(ConnectionError::Protocol(ProtocolError::UnmaskedFrame))
    );
    assert_eq!(closed.initiator, Initiator::Local);
    assert_eq!(close_code_on_wire(&out), 1002);
}

#[test]
fn client_fails_masked_frame_with_1002() {
    let now = Instant::now();
    let mut c = Connection::new(Role::Client, Config::default(), now, seed(1));
    c.handle_data(now, &client_frame(0x82, b"x"));
    let (events, _, _) = drain(&mut c);
    assert!(matches!(
        events.last(),
        Some(Event::Closed(c)) if c.error == Some(ConnectionError::Protocol(ProtocolError::MaskedFrame))
    ));
}

#[test]
fn reserved_bits_and_opcodes_fail_with_1002() {
    for b0 in [0xc1u8, 0xa1, 0x91] {
        let (closed, _) = server_fails_with(&client_frame(b0, b"x"));
        assert_eq!(closed.code, CloseCode::PROTOCOL_ERROR, "{b0:#x}");
        assert!(matches!(
            closed.error,
            Some(ConnectionError::Protocol(ProtocolError::ReservedBits(_)))
        ));
    }
    for op in [3u8, 7, 0xb, 0xf] {
        let (closed, _) = server_fails_with(&client_frame(0x80 | op, b""));
        assert_eq!(
            closed.error,
            Some(ConnectionError::Protocol(ProtocolError::ReservedOpcode(op)))
        );
    }
}

#[test]
fn control_frame_rules() {
    let (closed, _) = server_fails_with(&client_frame(0x09, b"x"));
    assert_eq!(
        closed.error,
        Some(ConnectionError::Protocol(
            ProtocolError::FragmentedControlFrame
        ))
    );
    let (closed, _) = server_fails_with(&client_frame(0x89, &[0u8; 126]));
    assert_eq!(
        closed.error,
        Some(ConnectionError::Protocol(
            ProtocolError::ControlFrameTooLong(126)
        ))
    );
    // 125 bytes is allowed.
    let (mut s, now) = server();
    s.handle_data(now, &client_frame(0x89, &[7u8; 125]));
    assert_eq!(
        s.poll_event(),
        Some(Event::Ping(Bytes::from(vec![7u8; 125])))
    );
}

#[test]
fn continuation_rules() {
    let (closed, _) = server_fails_with(&client_frame(0x80, b"x"));
    assert_eq!(
        closed.error,
        Some(ConnectionError::Protocol(
            ProtocolError::UnexpectedContinuation
        ))
    );
    let mut input = client_frame(0x01, b"a");
    input.extend(client_frame(0x81, b"b"));
    let (closed, _) = server_fails_with(&input);
    assert_eq!(
        closed.error,
        Some(ConnectionError::Protocol(
            ProtocolError::ExpectedContinuation
        ))
    );
}

#[test]
fn control_frames_interleave_with_fragments() {
    let (mut s, now) = server();
    let mut input = client_frame(0x02, b"ab");
    input.extend(client_frame(0x89, b"p"));
    input.extend(client_frame(0x00, b"cd"));
    input.extend(client_frame(0x8a, b"q"));
    input.extend(client_frame(0x80, b"ef"));
    s.handle_data(now, &input);
    let (events, out, _) = drain(&mut s);
    assert_eq!(
        events,
        vec![
            Event::Binary {
                data: Bytes::from_static(b"ab"),
                fin: false
            },
            Event::Ping(Bytes::from_static(b"p")),
            Event::Binary {
                data: Bytes::from_static(b"cd"),
                fin: false
            },
            Event::Pong(Bytes::from_static(b"q")),
            Event::Binary {
                data: Bytes::from_static(b"ef"),
                fin: true
            },
        ]
    );
    assert_eq!(out, [0x8a, 0x01, b'p']);
}

#[test]
fn ping_flood_keeps_one_pong() {
    let (mut s, now) = server();
    let mut input = Vec::new();
    for i in 0..1000u16 {
        input.extend(client_frame(0x89, &i.to_be_bytes()));
    }
    s.handle_data(now, &input);
    let (events, out, _) = drain(&mut s);
    assert_eq!(events.len(), 1000);
    // Only the most recent Ping is answered (RFC 6455 §5.5.3 allows it).
    assert_eq!(out, [0x8a, 0x02, 0x03, 0xe7]);
}

/// Autobahn 6.4.1's frame: valid text, then bytes no UTF-8 can continue,
/// then more text; and where the input is cut: the header, the valid text
/// and two bad bytes.
fn autobahn_6_4_1_frame() -> (Vec<u8>, usize) {
    let mut payload = "κόσμε".as_bytes().to_vec();
    payload.extend_from_slice(&[0xf4, 0x90, 0x80, 0x80]);
    payload.extend_from_slice(b"edited");
    (client_frame(0x81, &payload), 6 + "κόσμε".len() + 2)
}

#[test]
fn invalid_utf8_fails_fast_with_1007() {
    // Autobahn 6.4.1: the bad bytes arrive in the middle of a frame whose end
    // has not arrived; the failure must not wait for the rest.
    let (mut s, now) = server();
    let (frame, cut) = autobahn_6_4_1_frame();
    s.handle_data(now, &frame[..cut]);
    let (events, out, _) = drain(&mut s);
    assert!(
        matches!(
            events.as_slice(),
            [Event::Closed(c)] if c.code == CloseCode::INVALID_PAYLOAD
        ),
        "{events:?}"
    );
    assert_eq!(close_code_on_wire(&out), 1007);
}

#[test]
fn invalid_utf8_across_fragments_and_truncated_at_end() {
    let mut input = client_frame(0x01, "κ".as_bytes());
    input.extend(client_frame(0x00, &[0xce]));
    input.extend(client_frame(0x80, b""));
    let (closed, _) = server_fails_with(&input);
    assert_eq!(closed.code, CloseCode::INVALID_PAYLOAD);
}

#[test]
fn code_point_split_across_frames_is_delivered_whole() {
    let (mut s, now) = server();
    let text = "a€b"; // € is e2 82 ac
    let b = text.as_bytes();
    let mut input = client_frame(0x01, &b[..2]); // "a", e2
    input.extend(client_frame(0x00, &b[2..3])); // 82
    input.extend(client_frame(0x80, &b[3..])); // ac "b"
    s.handle_data(now, &input);
    let (events, _, _) = drain(&mut s);
    let mut joined = Vec::new();
    for e in &events {
        match e {
            Event::Text { data, .. } => {
                assert!(
                    std::str::from_utf8(data).is_ok(),
                    "chunk {data:?} is not UTF-8 on its own"
                );
                joined.extend_from_slice(data);
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(joined, b);
    assert!(matches!(events.last(), Some(Event::Text { fin: true, .. })));
}

#[test]
fn big_frame_streams_in_bounded_chunks() {
    let mut cfg = Config::default();
    cfg.read_chunk_size = 1024;
    let now = Instant::now();
    let mut s = Connection::new(Role::Server, cfg, now, seed(0));
    let payload: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let frame = client_frame(0x82, &payload);
    let mut got = Vec::new();
    let mut max_buffered = 0;
    for piece in frame.chunks(700) {
        s.handle_data(now, piece);
        while let Some(ev) = s.poll_event() {
            match ev {
                Event::Binary { data, .. } => got.extend_from_slice(&data),
                other => panic!("{other:?}"),
            }
        }
        max_buffered = max_buffered.max(s.buffered_input());
    }
    assert_eq!(got, payload);
    assert!(max_buffered < 1024 + 700 + 14, "buffered {max_buffered}");
}

#[test]
fn whole_frame_in_buffer_is_one_chunk() {
    let mut cfg = Config::default();
    cfg.read_chunk_size = 16;
    let now = Instant::now();
    let mut s = Connection::new(Role::Server, cfg, now, seed(0));
    s.handle_data(now, &client_frame(0x82, &[5u8; 1000]));
    let (events, _, _) = drain(&mut s);
    assert_eq!(
        events,
        vec![Event::Binary {
            data: Bytes::from(vec![5u8; 1000]),
            fin: true
        }]
    );
}

#[test]
fn frame_size_limit_fails_before_payload_with_1009() {
    let mut cfg = Config::default();
    cfg.max_frame_size = 100;
    let now = Instant::now();
    let mut s = Connection::new(Role::Server, cfg, now, seed(0));
    // Only the header of a 1 GiB frame: refused at once.
    let mut hdr = Vec::new();
    FrameHeader {
        fin: true,
        rsv: 0,
        opcode: OpCode::Binary,
        mask: Some([1, 2, 3, 4]),
        len: 1 << 30,
    }
    .encode(&mut hdr);
    s.handle_data(now, &hdr);
    let (events, out, _) = drain(&mut s);
    assert!(matches!(
        events.as_slice(),
        [Event::Closed(c)] if c.code == CloseCode::TOO_BIG
            && c.error == Some(ConnectionError::Protocol(ProtocolError::FrameTooLarge { size: 1 << 30, max: 100 }))
    ));
    assert_eq!(close_code_on_wire(&out), 1009);
}

#[test]
fn message_size_limit_counts_all_fragments() {
    let mut cfg = Config::default();
    cfg.max_message_size = 10;
    let now = Instant::now();
    let mut s = Connection::new(Role::Server, cfg, now, seed(0));
    let mut input = client_frame(0x02, &[0; 6]);
    input.extend(client_frame(0x80, &[0; 5]));
    s.handle_data(now, &input);
    let (events, _, _) = drain(&mut s);
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(matches!(&events[1], Event::Closed(c) if c.code == CloseCode::TOO_BIG));
    // Exactly at the limit is fine.
    let mut s = Connection::new(Role::Server, s.config().clone(), now, seed(0));
    let mut input = client_frame(0x02, &[0; 5]);
    input.extend(client_frame(0x80, &[0; 5]));
    s.handle_data(now, &input);
    let (events, _, _) = drain(&mut s);
    assert_eq!(events.len(), 2);
    assert!(matches!(events[1], Event::Binary { fin: true, .. }));
}

#[test]
fn too_many_fragments_fail_with_1008() {
    let mut cfg = Config::default();
    cfg.max_fragments = 3;
    let now = Instant::now();
    let mut s = Connection::new(Role::Server, cfg, now, seed(0));
    let mut input = client_frame(0x02, b"");
    for _ in 0..5 {
        input.extend(client_frame(0x00, b""));
    }
    s.handle_data(now, &input);
    let (events, out, _) = drain(&mut s);
    let closed = match events.last() {
        Some(Event::Closed(c)) => c,
        other => panic!("{other:?}"),
    };
    assert_eq!(closed.code, CloseCode::POLICY);
    assert_eq!(
        closed.error,
        Some(ConnectionError::Protocol(ProtocolError::TooManyFragments {
            max: 3
        }))
    );
    assert_eq!(close_code_on_wire(&out), 1008);
}

#[test]
fn empty_fragments_produce_no_events_until_fin() {
    let (mut s, now) = server();
    let mut input = client_frame(0x01, b"");
    input.extend(client_frame(0x00, b""));
    input.extend(client_frame(0x80, b""));
    s.handle_data(now, &input);
    let (events, _, _) = drain(&mut s);
    assert_eq!(
        events,
        vec![Event::Text {
            data: Bytes::new(),
            fin: true
        }]
    );
}

#[test]
fn close_payload_rules() {
    let (closed, _) = server_fails_with(&client_frame(0x88, &[0x03]));
    assert_eq!(
        closed.error,
        Some(ConnectionError::Protocol(ProtocolError::BadClosePayload))
    );
    for code in [
        0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
    ] {
        let (closed, out) = server_fails_with(&client_frame(0x88, &code.to_be_bytes()));
        assert_eq!(
            closed.error,
            Some(ConnectionError::Protocol(ProtocolError::InvalidCloseCode(
                code
            ))),
            "{code}"
        );
        assert_eq!(close_code_on_wire(&out), 1002);
    }
    let mut bad_reason = 1000u16.to_be_bytes().to_vec();
    bad_reason.extend_from_slice(&[0xce, 0xba, 0xff]);
    let (closed, out) = server_fails_with(&client_frame(0x88, &bad_reason));
    assert_eq!(closed.code, CloseCode::INVALID_PAYLOAD);
    assert_eq!(close_code_on_wire(&out), 1007);
}

#[test]
fn valid_close_codes_are_echoed() {
    for code in [
        1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999,
        4000, 4999,
    ] {
        let (mut s, now) = server();
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(b"bye");
        s.handle_data(now, &client_frame(0x88, &payload));
        let (events, out, shutdown) = drain(&mut s);
        assert_eq!(
            events,
            vec![Event::Closed(ws_proto::CloseInfo {
                code: CloseCode(code),
                reason: "bye".into(),
                initiator: Initiator::Remote,
                error: None
            })]
        );
        assert_eq!(
            out,
            [0x88, 0x02, (code >> 8) as u8, code as u8],
            "echo of {code}"
        );
        assert!(shutdown, "the server shuts TCP first");
    }
}

#[test]
fn empty_close_reports_1005_and_echoes_empty() {
    let (mut s, now) = server();
    s.handle_data(now, &client_frame(0x88, b""));
    let (events, out, _) = drain(&mut s);
    assert!(
        matches!(&events[..], [Event::Closed(c)] if c.code == CloseCode::NO_STATUS && c.is_clean())
    );
    assert_eq!(out, [0x88, 0x00]);
}

#[test]
fn nothing_is_processed_after_close() {
    let (mut s, now) = server();
    let mut input = client_frame(0x88, &1000u16.to_be_bytes());
    input.extend(client_frame(0x81, b"late"));
    input.extend(client_frame(0x89, b"late"));
    s.handle_data(now, &input);
    s.handle_data(now, &client_frame(0x81, b"later"));
    let (events, out, _) = drain(&mut s);
    assert_eq!(events.len(), 1);
    assert!(matches!(events[0], Event::Closed(_)));
    assert_eq!(out, [0x88, 0x02, 0x03, 0xe8]);
    assert_eq!(s.poll_event(), None);
    assert_eq!(s.send_text("x"), Err(SendError::Closed));
}

#[test]
fn clean_close_initiated_by_client() {
    let mut p = Pair::new();
    p.client.conn.send_text("last words").unwrap();
    p.client
        .conn
        .close(p.now, CloseCode::NORMAL, "done")
        .unwrap();
    assert_eq!(p.client.conn.state(), State::Closing);
    assert_eq!(p.client.conn.send_text("x"), Err(SendError::Closing));
    p.run();
    assert_eq!(p.server.messages[0], Message::Text("last words".into()));
    let sc = p.server.closed().unwrap();
    assert_eq!(
        (sc.code, sc.reason.as_str(), sc.initiator),
        (CloseCode::NORMAL, "done", Initiator::Remote)
    );
    let cc = p.client.closed().unwrap();
    assert_eq!(
        (cc.code, cc.initiator, cc.is_clean()),
        (CloseCode::NORMAL, Initiator::Local, true)
    );
    // The server shut TCP first; the client answered the FIN with its own.
    assert!(p.server.shut_down && p.client.shut_down);
    assert!(p.client.conn.is_finished());
    // The server lingers for the client's FIN, which came.
    assert!(p.server.conn.is_finished());
}

#[test]
fn clean_close_initiated_by_server_delivers_everything_sent_before() {
    let mut p = Pair::new();
    for i in 0..10 {
        p.server.conn.send_text(&format!("msg {i}")).unwrap();
    }
    p.server
        .conn
        .close(p.now, CloseCode::GOING_AWAY, "restart")
        .unwrap();
    p.client.conn.send_binary(b"crossing").unwrap();
    p.run();
    assert_eq!(p.client.messages.len(), 11);
    assert_eq!(p.client.messages[9], Message::Text("msg 9".into()));
    // Data the client sent before it saw the server's Close is delivered.
    assert_eq!(
        p.server.messages[0],
        Message::Binary(Bytes::from_static(b"crossing"))
    );
    assert_eq!(p.client.closed().unwrap().code, CloseCode::GOING_AWAY);
    assert_eq!(p.server.closed().unwrap().initiator, Initiator::Local);
    assert!(p.server.conn.is_finished() && p.client.conn.is_finished());
}

#[test]
fn simultaneous_close() {
    let mut p = Pair::new();
    p.client.conn.close(p.now, CloseCode::NORMAL, "c").unwrap();
    p.server
        .conn
        .close(p.now, CloseCode::GOING_AWAY, "s")
        .unwrap();
    p.run();
    let cc = p.client.closed().unwrap();
    let sc = p.server.closed().unwrap();
    assert_eq!(
        (cc.code, cc.initiator),
        (CloseCode::GOING_AWAY, Initiator::Local)
    );
    assert_eq!(
        (sc.code, sc.initiator),
        (CloseCode::NORMAL, Initiator::Local)
    );
    assert!(cc.is_clean() && sc.is_clean());
}

#[test]
fn close_timeout_when_peer_never_answers() {
    let mut cfg = Config::default();
    cfg.close_timeout = Some(Duration::from_secs(3));
    let mut p = Pair::with_configs(cfg.clone(), cfg);
    p.server.deaf = true;
    p.client.conn.close(p.now, CloseCode::NORMAL, "").unwrap();
    p.run();
    assert!(p.client.closed().is_none());
    p.advance(Duration::from_millis(2999));
    assert!(p.client.closed().is_none());
    p.advance(Duration::from_millis(1));
    let cc = p.client.closed().unwrap();
    assert_eq!(cc.code, CloseCode::ABNORMAL);
    assert_eq!(cc.error, Some(ConnectionError::CloseTimeout));
    assert!(p.client.shut_down);
    assert!(p.client.conn.is_finished());
}

#[test]
fn client_lingers_for_server_fin_then_gives_up() {
    let mut cfg = Config::default();
    cfg.close_timeout = Some(Duration::from_secs(2));
    let now = Instant::now();
    let mut c = Connection::new(Role::Client, cfg, now, seed(1));
    c.handle_data(now, &server_frame(0x88, &1000u16.to_be_bytes()));
    let (events, _, shutdown) = drain(&mut c);
    assert!(matches!(events[..], [Event::Closed(_)]));
    assert!(
        !shutdown,
        "the client waits for the server to close TCP first"
    );
    assert!(!c.is_finished());
    assert_eq!(c.poll_timeout(), Some(now + Duration::from_secs(2)));
    c.handle_timeout(now + Duration::from_secs(2));
    let (_, _, shutdown) = drain(&mut c);
    assert!(shutdown && c.is_finished());
}

#[test]
fn eof_without_close_reports_1006_after_buffered_data() {
    let (mut s, now) = server();
    s.handle_data(now, &client_frame(0x81, b"partial line"));
    s.handle_data(now, &client_frame(0x82, b"cut")[..4]);
    s.handle_eof(now);
    let (events, _, shutdown) = drain(&mut s);
    assert_eq!(events.len(), 2);
    assert_eq!(
        events[0],
        Event::Text {
            data: Bytes::from_static(b"partial line"),
            fin: true
        }
    );
    assert!(matches!(&events[1], Event::Closed(c)
        if c.code == CloseCode::ABNORMAL && c.error == Some(ConnectionError::Eof) && c.initiator == Initiator::Remote));
    assert!(shutdown);
    assert!(s.is_finished());
    assert_eq!(s.poll_event(), None);
}

#[test]
fn keepalive_pings_then_times_out_with_1011() {
    let mut cfg = Config::default();
    cfg.keepalive_interval = Some(Duration::from_secs(10));
    cfg.keepalive_timeout = Duration::from_secs(5);
    let mut p = Pair::with_configs(cfg, Config::default());
    // A live peer answers: no failure for a long time.
    p.advance(Duration::from_secs(100));
    assert!(p.client.closed().is_none());
    assert!(
        p.client
            .events
            .iter()
            .filter(|e| matches!(e, Event::Pong(_)))
            .count()
            >= 9
    );
    // A dead peer: one ping, then 1011 after the timeout.
    p.server.deaf = true;
    p.advance(Duration::from_secs(10));
    assert!(p.client.closed().is_none());
    p.advance(Duration::from_secs(5));
    let cc = p.client.closed().expect("keepalive failure");
    assert_eq!(cc.code, CloseCode::INTERNAL_ERROR);
    assert_eq!(cc.error, Some(ConnectionError::KeepaliveTimeout));
}

#[test]
fn keepalive_counts_any_traffic_as_alive() {
    let mut cfg = Config::default();
    cfg.keepalive_interval = Some(Duration::from_secs(10));
    let now = Instant::now();
    let mut s = Connection::new(Role::Server, cfg, now, seed(0));
    assert_eq!(s.poll_timeout(), Some(now + Duration::from_secs(10)));
    s.handle_data(now + Duration::from_secs(8), &client_frame(0x82, b"x"));
    assert_eq!(s.poll_timeout(), Some(now + Duration::from_secs(18)));
    s.handle_timeout(now + Duration::from_secs(9)); // spurious: no-op
    let (_, out, _) = drain(&mut s);
    assert_eq!(out, vec![], "no ping yet");
    s.handle_timeout(now + Duration::from_secs(18));
    let (_, out, _) = drain(&mut s);
    assert_eq!(out[0], 0x89, "keepalive ping sent");
}

#[test]
fn no_timers_by_default_while_open() {
    let (s, _) = server();
    assert_eq!(s.poll_timeout(), None);
}

#[test]
fn send_errors_have_no_side_effects() {
    let (mut s, now) = server();
    assert_eq!(
        s.ping(&[0; 126]),
        Err(SendError::ControlPayloadTooLong(126))
    );
    assert_eq!(
        s.close(now, CloseCode(1005), ""),
        Err(SendError::InvalidCloseCode(1005))
    );
    assert_eq!(
        s.close(now, CloseCode(999), ""),
        Err(SendError::InvalidCloseCode(999))
    );
    assert_eq!(
        s.close(now, CloseCode::NORMAL, &"x".repeat(124)),
        Err(SendError::ControlPayloadTooLong(126))
    );
    s.send_chunk(MessageKind::Text, "ab".as_bytes(), false)
        .unwrap();
    assert_eq!(s.send_text("x"), Err(SendError::MessageInProgress));
    assert_eq!(
        s.send_chunk(MessageKind::Binary, b"x", true),
        Err(SendError::KindMismatch)
    );
    assert_eq!(
        s.send_chunk(MessageKind::Text, &[0xff], true),
        Err(SendError::InvalidUtf8)
    );
    assert_eq!(
        s.send_chunk(MessageKind::Text, &[0xe2, 0x82], true),
        Err(SendError::IncompleteUtf8)
    );
    let before = s.buffered_amount();
    assert_eq!(before, 4, "only the first chunk is queued");
    s.send_chunk(MessageKind::Text, &[0xe2, 0x82], false)
        .unwrap();
    s.send_chunk(MessageKind::Text, &[0xac], true).unwrap();
    let (_, out, _) = drain(&mut s);
    assert_eq!(
        out,
        [0x01, 2, b'a', b'b', 0x00, 2, 0xe2, 0x82, 0x80, 1, 0xac]
    );
    assert!(s.close(now, CloseCode::NORMAL, "").is_ok());
    assert_eq!(s.close(now, CloseCode::NORMAL, ""), Err(SendError::Closing));
    assert_eq!(s.ping(b""), Err(SendError::Closing));
}

#[test]
fn streamed_text_split_inside_code_points_round_trips() {
    let mut p = Pair::new();
    let text = "€𝄞κόσμε€".repeat(50);
    for piece in text.as_bytes().chunks(5) {
        p.client
            .conn
            .send_chunk(MessageKind::Text, piece, false)
            .unwrap();
    }
    p.client
        .conn
        .send_chunk(MessageKind::Text, b"", true)
        .unwrap();
    p.run();
    assert_eq!(p.server.messages, vec![Message::Text(text)]);
}

#[test]
fn outgoing_messages_fragment_at_send_fragment_size() {
    let mut cfg = Config::default();
    cfg.send_fragment_size = 4;
    let mut p = Pair::with_configs(cfg, Config::default());
    p.client.conn.send_text("abcdefghij").unwrap();
    p.run();
    let chunks: Vec<_> = p
        .server
        .events
        .iter()
        .filter(|e| matches!(e, Event::Text { .. }))
        .collect();
    assert_eq!(chunks.len(), 3);
    assert_eq!(p.server.messages, vec![Message::Text("abcdefghij".into())]);
}

#[test]
fn many_messages_leave_in_one_batch() {
    let (mut s, _) = server();
    for _ in 0..100 {
        s.send_binary(&[0u8; 20]).unwrap();
    }
    assert_eq!(s.buffered_amount(), 100 * 22);
    let mut buf = Vec::new();
    assert_eq!(s.poll_transmit(&mut buf), Transmit::Data(2200));
    assert_eq!(buf.len(), 2200);
    assert_eq!(s.poll_transmit(&mut buf), Transmit::Nothing);
    assert_eq!(s.buffered_amount(), 0);
}

#[test]
fn poll_transmit_appends_to_a_nonempty_buffer() {
    let (mut s, _) = server();
    s.send_binary(b"a").unwrap();
    let mut buf = vec![9u8];
    assert_eq!(s.poll_transmit(&mut buf), Transmit::Data(3));
    assert_eq!(buf, [9, 0x82, 1, b'a']);
}

#[test]
fn large_message_round_trip_in_small_pieces() {
    let mut p = Pair::new();
    p.chunk = 1000;
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7) as u8).collect();
    p.client.conn.send_binary(&data).unwrap();
    p.server.conn.send_text(&"ü".repeat(100_000)).unwrap();
    p.run();
    assert_eq!(p.server.messages, vec![Message::Binary(Bytes::from(data))]);
    assert_eq!(p.client.messages, vec![Message::Text("ü".repeat(100_000))]);
}

#[test]
fn one_byte_at_a_time() {
    let mut p = Pair::new();
    p.chunk = 1;
    p.client.conn.send_text("héllo wörld").unwrap();
    p.client.conn.ping(b"hi").unwrap();
    p.client
        .conn
        .close(p.now, CloseCode::NORMAL, "bye")
        .unwrap();
    p.run();
    assert_eq!(p.server.messages[0], Message::Text("héllo wörld".into()));
    assert_eq!(
        p.server.messages[1],
        Message::Ping(Bytes::from_static(b"hi"))
    );
    assert_eq!(
        p.client.messages[0],
        Message::Pong(Bytes::from_static(b"hi"))
    );
    assert!(p.client.closed().unwrap().is_clean());
}

/// Large frames read into one buffer and handed over read by read (each
/// read split off, as an embedder with room reserved does): the pieces
/// join without a copy, and each message, owned or lent, lies in the
/// memory the reads went to.
#[test]
fn large_frames_read_into_one_buffer_are_never_copied() {
    let (mut s, now) = server();
    let payloads: Vec<Vec<u8>> = [300_000usize, 70_000, 5]
        .iter()
        .enumerate()
        .map(|(k, &n)| (0..n).map(|i| (i * 7 + k) as u8).collect())
        .collect();
    let mut wire = Vec::new();
    for p in &payloads {
        wire.extend(client_frame(0x82, p));
    }
    for lent in [false, true] {
        let mut reads = bytes::BytesMut::from(&wire[..]);
        let range = reads.as_ptr_range();
        let mut got = Vec::new();
        assert!(if lent {
            s.poll_message_with(|_| ()).is_none()
        } else {
            s.poll_message().is_none()
        });
        // Reads of odd sizes, cutting headers and payloads anywhere.
        let mut step = 0;
        while !reads.is_empty() {
            step += 1;
            let n = [7_001, 65_536, 3, 40_000][step % 4].min(reads.len());
            s.handle_bytes(now, reads.split_to(n));
            loop {
                let m = if lent {
                    s.poll_message_with(|m| match m {
                        ws_proto::MessageRef::Binary(b) => {
                            (b.to_vec(), range.contains(&b.as_ptr()))
                        }
                        other => panic!("{other:?}"),
                    })
                } else {
                    s.poll_message().map(|m| match m {
                        Message::Binary(b) => (b.to_vec(), range.contains(&b.as_ptr())),
                        other => panic!("{other:?}"),
                    })
                };
                let Some(m) = m else { break };
                got.push(m);
            }
        }
        assert_eq!(got.len(), 3, "lent {lent}");
        for ((data, in_reads), want) in got.iter().zip(&payloads) {
            assert_eq!(data, want, "lent {lent}");
            // Small owned messages are copies of their own (documented);
            // everything else is the memory of the reads.
            let copied = !lent && want.len() <= 128;
            assert_eq!(*in_reads, !copied, "lent {lent}, {} bytes", want.len());
        }
    }
}

#[test]
fn handle_bytes_hands_out_slices_of_the_callers_buffer() {
    let (mut s, now) = server();
    let mut frame = bytes::BytesMut::from(&client_frame(0x82, &[9u8; 300])[..]);
    let payload_ptr = frame[8..].as_ptr();
    s.handle_bytes(now, frame.split());
    match s.poll_event() {
        Some(Event::Binary { data, fin: true }) => {
            assert_eq!(data.len(), 300);
            assert_eq!(data.as_ptr(), payload_ptr, "no copy after the read");
        }
        other => panic!("{other:?}"),
    }
    // poll_message: a larger binary message is a slice of the buffer too;
    // a small one (at most 128 bytes) is a copy of its own, cheaper than
    // sharing the buffer (and it does not keep the buffer alive).
    let mut input = client_frame(0x82, &[7u8; 300]);
    input.extend(client_frame(0x82, &[5u8; 16]));
    let mut input = bytes::BytesMut::from(&input[..]);
    let range = input.as_ptr_range();
    assert_eq!(s.poll_message(), None);
    s.handle_bytes(now, input.split());
    for len in [300, 16] {
        match s.poll_message() {
            Some(Message::Binary(data)) => {
                assert_eq!(data.len(), len);
                assert_eq!(range.contains(&data.as_ptr()), len == 300, "{len}");
            }
            other => panic!("{other:?}"),
        }
    }
    // Pieces split anywhere still join up.
    let whole = client_frame(0x81, "héllo".as_bytes());
    let (a, b) = whole.split_at(5);
    s.handle_bytes(now, bytes::BytesMut::from(a));
    s.handle_bytes(now, bytes::BytesMut::from(b));
    assert_eq!(
        s.poll_event(),
        Some(Event::Text {
            data: Bytes::from("héllo"),
            fin: true
        })
    );
}

#[test]
fn an_idle_connection_gives_back_its_read_buffer() {
    let (mut s, now) = server();
    s.handle_data(now, &client_frame(0x82, &vec![1u8; 60_000]));
    assert!(s.buffered_input() > 0);
    let (events, _, _) = drain(&mut s);
    assert_eq!(events.len(), 1);
    assert_eq!(s.buffered_input(), 0);
    // Kept for the next large message a while, then given back at the
    // connection's timer.
    let release = s.poll_timeout().expect("a timer to give it back");
    assert_eq!(release, now + Config::default().release_buffers_after);
    s.handle_timeout(release);
    assert!(
        s.input_capacity() <= 4096,
        "kept {} bytes",
        s.input_capacity()
    );
}

/// Feeds `wire` to a new server in `piece`-byte reads; the messages, from
/// `poll_message` when `whole`, else from events through an `Assembler`.
fn feed_server(cfg: Config, wire: &[u8], piece: usize, whole: bool) -> Vec<Message> {
    let mut server = Connection::new(Role::Server, cfg, Instant::now(), [0; 32]);
    let mut asm = ws_proto::Assembler::new();
    let mut got = Vec::new();
    for p in wire.chunks(piece) {
        server.handle_data(Instant::now(), p);
        if whole {
            while let Some(m) = server.poll_message() {
                got.push(m);
            }
        }
        while let Some(ev) = server.poll_event() {
            if let Some(m) = asm.push(ev) {
                got.push(m);
            }
        }
    }
    got
}

#[test]
fn large_masked_frames_split_anywhere_are_unmasked_exactly() {
    // Payload that continues a frame is unmasked while it is copied in
    // (512-byte blocks on the stack); every split and mask phase must give
    // the bytes back.
    let binary: Vec<u8> = (0..5000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let text = "Grüße, 世界! 🌍 ".repeat(150);
    let mut cfg = Config::default();
    cfg.send_fragment_size = 1777;
    let mut client = Connection::new(Role::Client, cfg, Instant::now(), common::seed(7));
    client.send_binary(&binary).unwrap();
    client.send_text(&text).unwrap();
    client.send_binary(&binary[..513]).unwrap();
    let mut wire = Vec::new();
    let _ = client.poll_transmit(&mut wire);
    let pieces = [1, 3, 7, 100, 511, 512, 513, 1460, 4096, 5000, wire.len()];
    for (piece, whole) in pieces.iter().flat_map(|&p| [(p, false), (p, true)]) {
        // Events through an Assembler, and poll_message (whose text path
        // unmasks and validates 4 KiB blocks on the stack).
        let got = feed_server(Config::default(), &wire, piece, whole);
        assert_eq!(
            got,
            vec![
                Message::Binary(binary.clone().into()),
                Message::Text(text.clone()),
                Message::Binary(binary[..513].to_vec().into()),
            ],
            "pieces of {piece}, whole {whole}"
        );
    }
}

#[test]
fn large_frames_in_large_reads_are_followed_and_unmasked_on_the_way_in() {
    // With 4 KiB or more in hand, handle_data reads the headers of large
    // frames itself and unmasks their payload as it copies it; the poll
    // path must then leave those bytes alone, also after a text message
    // went straight into its String or a Ping came between.
    let binary: Vec<u8> = (0..15629u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let text = "Grüße, 世界! 🌍 ".repeat(600);
    let cut = (4200..).find(|&i| text.is_char_boundary(i)).unwrap();
    let mut client = Connection::new(
        Role::Client,
        Config::default(),
        Instant::now(),
        common::seed(9),
    );
    client.send_binary(&binary).unwrap();
    client.send_text(&text).unwrap();
    client.ping(b"between").unwrap();
    client.send_binary(&binary[..6871]).unwrap();
    client.send_text(&text[..cut]).unwrap();
    let mut wire = Vec::new();
    let _ = client.poll_transmit(&mut wire);
    let want = vec![
        Message::Binary(binary.clone().into()),
        Message::Text(text.clone()),
        Message::Ping(Bytes::from_static(b"between")),
        Message::Binary(binary[..6871].to_vec().into()),
        Message::Text(text[..cut].to_string()),
    ];
    for piece in [4096, 5000, 8192, 19733, 65536, wire.len()] {
        for (whole, chunk) in [(true, 64 << 10), (false, 64 << 10), (false, 1000)] {
            let mut cfg = Config::default();
            cfg.read_chunk_size = chunk;
            let got = feed_server(cfg, &wire, piece, whole);
            assert_eq!(got, want, "pieces of {piece}, whole {whole}, chunk {chunk}");
        }
    }
}

#[test]
fn poll_message_keeps_a_large_binary_frame_in_the_input_until_it_is_whole() {
    // Handed out in read_chunk_size pieces, the message would be copied
    // into the assembler; kept in the input, it leaves without a copy.
    let payload: Vec<u8> = (0..(1u32 << 20)).map(|i| (i >> 3) as u8).collect();
    let mut client = Connection::new(
        Role::Client,
        Config::default(),
        Instant::now(),
        common::seed(3),
    );
    client.send_binary(&payload).unwrap();
    let mut wire = Vec::new();
    let _ = client.poll_transmit(&mut wire);
    let (mut s, now) = server();
    let mut fed = 0;
    for piece in wire.chunks(64 << 10) {
        s.handle_data(now, piece);
        fed += piece.len();
        if fed < wire.len() {
            assert_eq!(s.poll_message(), None);
            // All the payload so far, not one chunk of it.
            assert!(
                s.buffered_input() + 14 >= fed,
                "{} of {fed}",
                s.buffered_input()
            );
        }
    }
    assert_eq!(s.poll_message(), Some(Message::Binary(payload.into())));
    assert_eq!(s.buffered_input(), 0);
}

#[test]
fn poll_message_fails_fast_on_invalid_utf8_and_builds_split_code_points() {
    // Autobahn 6.4.1 through poll_message: the bad bytes in the middle of a
    // frame whose end has not arrived fail the connection at once.
    let (mut s, now) = server();
    let (frame, cut) = autobahn_6_4_1_frame();
    s.handle_data(now, &frame[..cut]);
    match s.poll_message() {
        Some(Message::Closed(c)) => assert_eq!(c.code, CloseCode::INVALID_PAYLOAD),
        other => panic!("{other:?}"),
    }
    let mut out = Vec::new();
    while s.poll_transmit(&mut out) != Transmit::Nothing {}
    assert_eq!(close_code_on_wire(&out), 1007);

    // The same when the header came first: the rest of the frame then goes
    // straight from the input to the message's text, and the bad bytes
    // fail it with nothing more read.
    let (mut s, now) = server();
    s.handle_data(now, &frame[..6 + 3]);
    assert_eq!(s.poll_message(), None);
    s.handle_data(now, &frame[6 + 3..cut]);
    match s.poll_message() {
        Some(Message::Closed(c)) => assert_eq!(c.code, CloseCode::INVALID_PAYLOAD),
        other => panic!("{other:?}"),
    }
    s.handle_data(now, &frame[cut..]);
    assert_eq!(s.poll_message(), None);

    // A message in three fragments, a code point cut by each boundary, a
    // Ping in between, and the input fed byte by byte.
    let (mut s, now) = server();
    let text = "a€𝄞b";
    let b = text.as_bytes();
    let mut input = client_frame(0x01, &b[..2]);
    input.extend(client_frame(0x89, b"p"));
    input.extend(client_frame(0x00, &b[2..6]));
    input.extend(client_frame(0x80, &b[6..]));
    input.extend(client_frame(0x81, b""));
    let mut got = Vec::new();
    for byte in input.chunks(1) {
        s.handle_data(now, byte);
        while let Some(m) = s.poll_message() {
            got.push(m);
        }
    }
    assert_eq!(
        got,
        vec![
            Message::Ping(Bytes::from_static(b"p")),
            Message::Text(text.into()),
            Message::Text(String::new()),
        ]
    );
}

#[test]
fn large_text_frames_in_one_input_become_strings_in_order() {
    // handle_data reads the header of a large text frame itself when
    // nothing is buffered and builds the String straight from its input,
    // frame after frame; the messages must come out in wire order, with
    // whatever else lies between them, and a broken rule after them must
    // come after them.
    let a = "a".repeat(5000);
    let b = "Grüße, 世界! ".repeat(400);
    let c = "z".repeat(4096);
    let bin: Vec<u8> = (0..6000u32).map(|i| (i * 7) as u8).collect();
    for role in [Role::Server, Role::Client] {
        let frame = |b0: u8, p: &[u8]| match role {
            Role::Server => client_frame(b0, p),
            Role::Client => server_frame(b0, p),
        };
        let mut wire = frame(0x81, a.as_bytes());
        // b in two fragments, a Ping between them.
        wire.extend(frame(0x01, &b.as_bytes()[..4501]));
        wire.extend(frame(0x89, b"p"));
        wire.extend(frame(0x80, &b.as_bytes()[4501..]));
        wire.extend(frame(0x81, c.as_bytes()));
        wire.extend(frame(0x81, a.as_bytes()));
        wire.extend(frame(0x82, &bin));
        wire.extend(frame(0x81, c.as_bytes()));
        wire.extend(frame(0x81, b"small"));
        let want = vec![
            Message::Text(a.clone()),
            Message::Ping(Bytes::from_static(b"p")),
            Message::Text(b.clone()),
            Message::Text(c.clone()),
            Message::Text(a.clone()),
            Message::Binary(bin.clone().into()),
            Message::Text(c.clone()),
            Message::Text("small".into()),
        ];
        for piece in [wire.len(), 4096, 5000, 8192, 10007] {
            let now = Instant::now();
            let mut conn = Connection::new(role, Config::default(), now, seed(1));
            assert_eq!(conn.poll_message(), None);
            let mut got = Vec::new();
            for p in wire.chunks(piece) {
                conn.handle_data(now, p);
                while let Some(m) = conn.poll_message() {
                    got.push(m);
                }
            }
            assert_eq!(got, want, "{role:?}, pieces of {piece}");
            assert_eq!(conn.buffered_input(), 0);
        }

        // Text that went straight into its String was never buffered: the
        // input holds no copy of it.
        let mut texts = frame(0x81, a.as_bytes());
        texts.extend(frame(0x81, c.as_bytes()));
        texts.extend(frame(0x81, a.as_bytes()));
        let now = Instant::now();
        let mut conn = Connection::new(role, Config::default(), now, seed(1));
        // The reader the adapters use; before any poll, nothing says so.
        assert_eq!(conn.poll_message(), None);
        conn.handle_data(now, &texts);
        assert_eq!(conn.input_capacity(), 0, "{role:?}");
        assert_eq!(conn.buffered_input(), 2 * a.len() + c.len());
        assert_eq!(conn.poll_message(), Some(Message::Text(a.clone())));
        assert_eq!(conn.poll_message(), Some(Message::Text(c.clone())));
        assert_eq!(conn.poll_message(), Some(Message::Text(a.clone())));
        assert_eq!(conn.poll_message(), None);

        // Invalid UTF-8 in the second large frame, then a frame over the
        // message limit: the first message, then the 1007, nothing after.
        let mut bad = c.clone().into_bytes();
        bad[4000] = 0xff;
        let mut wire = frame(0x81, a.as_bytes());
        wire.extend(frame(0x81, &bad));
        wire.extend(frame(0x81, c.as_bytes()));
        let mut cfg = Config::default();
        cfg.max_message_size = 5000;
        let mut over = frame(0x81, a.as_bytes());
        over.extend(frame(0x81, c.as_bytes()));
        over.extend(frame(0x81, b.as_bytes()));
        over.extend(frame(0x81, c.as_bytes()));
        for (wire, cfg, code) in [
            (wire, Config::default(), CloseCode::INVALID_PAYLOAD),
            (over, cfg, CloseCode::TOO_BIG),
        ] {
            let now = Instant::now();
            let mut conn = Connection::new(role, cfg, now, seed(1));
            assert_eq!(conn.poll_message(), None);
            conn.handle_data(now, &wire);
            assert_eq!(conn.poll_message(), Some(Message::Text(a.clone())));
            if code == CloseCode::TOO_BIG {
                assert_eq!(conn.poll_message(), Some(Message::Text(c.clone())));
            }
            match conn.poll_message() {
                Some(Message::Closed(info)) => assert_eq!(info.code, code, "{role:?}"),
                other => panic!("{role:?}: {other:?}"),
            }
            assert_eq!(conn.poll_message(), None);
        }
    }
}

#[test]
fn long_masked_text_unmasked_in_blocks_is_the_text_in_pieces_of_any_size() {
    // The direct text path unmasks long pieces in large (16 KiB) blocks and
    // short ones (small reads, a frame's end in the next read) in small
    // blocks, each block at the mask phase where the piece starts.
    // Multibyte text across several large blocks, cut so that pieces land
    // on and beside the block sizes and leave tails of every tier, must
    // come out whole; a broken byte beside a large block's boundary, or
    // elsewhere, must fail the connection.
    let text = "Grüße, 世界! 𝄞 ".repeat(2500);
    assert!(text.len() > 3 * 16384);
    let mut wire = client_frame(0x81, text.as_bytes());
    wire.extend(client_frame(0x81, b"after"));
    let want = vec![Message::Text(text.clone()), Message::Text("after".into())];
    for piece in [
        wire.len(),
        1,
        4093,
        1023,
        1024,
        1025,
        4096,
        16383,
        16384,
        16385,
        16390,
        20000,
        27000,
        32771,
    ] {
        let (mut s, now) = server();
        assert_eq!(s.poll_message(), None);
        let mut got = Vec::new();
        for p in wire.chunks(piece) {
            s.handle_data(now, p);
            while let Some(m) = s.poll_message() {
                got.push(m);
            }
        }
        assert_eq!(got, want, "pieces of {piece}");
    }
    for at in [1023, 1024, 16383, 16384, 16385, 32768, text.len() - 1] {
        let mut bad = text.clone().into_bytes();
        bad[at] = 0xff;
        let wire = client_frame(0x81, &bad);
        for piece in [wire.len(), 1025, 16384] {
            let (mut s, now) = server();
            assert_eq!(s.poll_message(), None);
            let mut closed = None;
            for p in wire.chunks(piece) {
                s.handle_data(now, p);
                while let Some(m) = s.poll_message() {
                    match m {
                        Message::Closed(info) => closed = Some(info.code),
                        other => panic!("{at} {piece}: {other:?}"),
                    }
                }
            }
            assert_eq!(closed, Some(CloseCode::INVALID_PAYLOAD), "{at} {piece}");
        }
    }
}

#[test]
fn has_output_tells_whether_poll_transmit_has_anything() {
    let (mut s, now) = server();
    assert!(!s.has_output());
    s.send_text("hi").unwrap();
    assert!(s.has_output());
    let mut out = Vec::new();
    assert_eq!(s.poll_transmit(&mut out), Transmit::Data(4));
    assert!(!s.has_output());
    assert_eq!(s.poll_transmit(&mut out), Transmit::Nothing);
    // A Ping's Pong is pending until taken.
    s.handle_data(now, &client_frame(0x89, b"p"));
    assert!(matches!(s.poll_event(), Some(Event::Ping(_))));
    assert!(s.has_output());
    out.clear();
    assert_eq!(s.poll_transmit(&mut out), Transmit::Data(3));
    assert!(!s.has_output());
    // The closing handshake: the Close, then the shutdown, each until taken.
    s.handle_data(now, &client_frame(0x88, &1000u16.to_be_bytes()));
    assert!(matches!(s.poll_event(), Some(Event::Closed(_))));
    assert!(s.has_output());
    out.clear();
    assert!(matches!(s.poll_transmit(&mut out), Transmit::Data(_)));
    assert!(s.has_output(), "the shutdown is still to come");
    assert_eq!(s.poll_transmit(&mut out), Transmit::Shutdown);
    assert!(!s.has_output());
    assert_eq!(s.poll_transmit(&mut out), Transmit::Nothing);
}

/// A connection's own state stays small: it is most of what an idle
/// connection costs an adapter (ws-smol's, about 2 KB in all; BENCHMARKS.md
/// table C). A field that makes it larger should be worth its bytes in
/// every connection: raise the bound knowingly. (648 bytes with the
/// default features on 64-bit targets, session 31; 840 with the close
/// information inline and a `Config` of its own rather than an `Arc`.)
#[cfg(all(target_pointer_width = "64", feature = "deflate"))]
#[test]
fn connection_state_stays_small() {
    let size = std::mem::size_of::<Connection>();
    // Some slack for another compiler's layout.
    assert!(size <= 704, "{size}");
}
