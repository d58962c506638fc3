//! Properties checked with proptest.

mod common;

use std::time::Instant;

use bytes::Bytes;
use common::{pieces, seed, Pair};
use proptest::prelude::*;
use ws_proto::frame::{FrameHeader, OpCode};
use ws_proto::mask::apply_mask;
use ws_proto::utf8::Utf8Validator;
use ws_proto::{
    Assembler, CloseCode, Config, Connection, Event, Message, MessageKind, Role, Transmit,
};

#[derive(Debug, Clone)]
enum Op {
    Text(String),
    Binary(Vec<u8>),
    /// A text message streamed in pieces split at arbitrary byte offsets.
    ChunkedText(String, Vec<usize>),
    Ping(Vec<u8>),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        ".{0,40}".prop_map(Op::Text),
        proptest::collection::vec(any::<u8>(), 0..300).prop_map(Op::Binary),
        (".{0,60}", proptest::collection::vec(0usize..64, 0..6))
            .prop_map(|(s, c)| Op::ChunkedText(s, c)),
        proptest::collection::vec(any::<u8>(), 0..=125).prop_map(Op::Ping),
    ]
}

/// Messages of up to 20 000 bytes, large ones mostly, and small ones.
fn large_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (4000usize..20_000, any::<u8>()).prop_map(|(len, k)| {
            Op::Binary((0..len).map(|i| (i as u8).wrapping_mul(k | 1) ^ (i >> 8) as u8).collect())
        }),
        2 => (1usize..1500, 0usize..3).prop_map(|(n, pick)| {
            Op::Text(["Grüße, 世界! 🌍 ", "ascii text, ", "a"][pick].repeat(n))
        }),
        1 => op(),
    ]
}

/// The bytes a client produces for `ops`, followed by a Close.
fn client_bytes(ops: &[Op], fragment: usize) -> Vec<u8> {
    let now = Instant::now();
    let mut cfg = Config::default();
    cfg.send_fragment_size = fragment;
    let mut c = Connection::new(Role::Client, cfg, now, seed(5));
    for op in ops {
        match op {
            Op::Text(s) => c.send_text(s).unwrap(),
            Op::Binary(b) => c.send_binary(b).unwrap(),
            Op::ChunkedText(s, cuts) => {
                let bytes = s.as_bytes();
                let mut last = 0;
                let mut cuts: Vec<usize> = cuts
                    .iter()
                    .map(|c| c.min(&bytes.len()).to_owned())
                    .collect();
                cuts.sort();
                for cut in cuts {
                    c.send_chunk(MessageKind::Text, &bytes[last..cut], false)
                        .unwrap();
                    last = cut;
                }
                c.send_chunk(MessageKind::Text, &bytes[last..], true)
                    .unwrap();
            }
            Op::Ping(p) => c.ping(p).unwrap(),
        }
    }
    c.close(now, CloseCode::NORMAL, "end").unwrap();
    let mut out = Vec::new();
    while let Transmit::Data(_) = c.poll_transmit(&mut out) {}
    out
}

/// How the server side takes its input apart.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Reader {
    /// `poll_event` and an `Assembler`.
    Events,
    /// `poll_message`.
    Messages,
    /// Both, switching after each message (the documented rule: a
    /// message's chunks all go to one reader).
    Mixed,
}

/// Feeds `input` to a server in pieces cut at `cuts`; returns the whole
/// messages and the bytes the server wrote.
fn server_sees(input: &[u8], cuts: &[usize], chunk_size: usize) -> (Vec<Message>, Vec<u8>) {
    server_reads(input, cuts, chunk_size, Reader::Events, 0)
}

/// [`server_sees`] with a choice of reader; piece `i` goes in through
/// `handle_bytes` when bit `i % 64` of `owned` is set, else `handle_data`.
fn server_reads(
    input: &[u8],
    cuts: &[usize],
    chunk_size: usize,
    reader: Reader,
    owned: u64,
) -> (Vec<Message>, Vec<u8>) {
    let now = Instant::now();
    let mut cfg = Config::default();
    cfg.read_chunk_size = chunk_size;
    let mut s = Connection::new(Role::Server, cfg, now, seed(0));
    let mut asm = Assembler::new();
    let mut msgs = Vec::new();
    let mut out = Vec::new();
    for (i, piece) in pieces(input, cuts).into_iter().enumerate() {
        if owned >> (i % 64) & 1 == 1 {
            s.handle_bytes(now, bytes::BytesMut::from(piece));
        } else {
            s.handle_data(now, piece);
        }
        loop {
            let data_msgs = msgs
                .iter()
                .filter(|m| matches!(m, Message::Text(_) | Message::Binary(_)))
                .count();
            if reader == Reader::Messages || reader == Reader::Mixed && data_msgs % 2 == 1 {
                match s.poll_message() {
                    Some(m) => {
                        msgs.push(m);
                        continue;
                    }
                    None => break,
                }
            }
            let Some(ev) = s.poll_event() else {
                break;
            };
            if let Event::Text { data, .. } = &ev {
                assert!(
                    std::str::from_utf8(data).is_ok(),
                    "text chunk not UTF-8 on its own"
                );
            }
            if let Some(m) = asm.push(ev) {
                msgs.push(m);
            }
        }
        while s.poll_transmit(&mut out) != Transmit::Nothing {}
    }
    (msgs, out)
}

/// Splits unmasked server output into (Pong payloads, other frames).
type Frames = Vec<(OpCode, Vec<u8>)>;

fn frames_of(mut out: &[u8]) -> (Vec<Vec<u8>>, Frames) {
    let mut pongs = Vec::new();
    let mut rest = Vec::new();
    while let Ok(Some((h, n))) = FrameHeader::parse(out) {
        let payload = out[n..n + h.len as usize].to_vec();
        out = &out[n + h.len as usize..];
        if h.opcode == OpCode::Pong {
            pongs.push(payload);
        } else {
            rest.push((h.opcode, payload));
        }
    }
    assert!(out.is_empty());
    (pongs, rest)
}

fn expected(ops: &[Op]) -> Vec<Message> {
    let mut v: Vec<Message> = ops
        .iter()
        .map(|op| match op {
            Op::Text(s) | Op::ChunkedText(s, _) => Message::Text(s.clone()),
            Op::Binary(b) => Message::Binary(Bytes::from(b.clone())),
            Op::Ping(p) => Message::Ping(Bytes::from(p.clone())),
        })
        .collect();
    v.push(Message::Closed(ws_proto::CloseInfo {
        code: CloseCode::NORMAL,
        reason: "end".into(),
        initiator: ws_proto::Initiator::Remote,
        error: None,
    }));
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any split of the input gives the same messages, control events and
    /// close, and the same bytes written back.
    #[test]
    fn any_split_gives_the_same_events(
        ops in proptest::collection::vec(op(), 0..12),
        fragment in 1usize..200,
        cuts in proptest::collection::vec(any::<usize>(), 0..40),
        chunk_size in 1usize..100,
    ) {
        let input = client_bytes(&ops, fragment);
        let (whole, whole_out) = server_sees(&input, &[], 1 << 16);
        prop_assert_eq!(&whole, &expected(&ops));
        let (split, split_out) = server_sees(&input, &cuts, chunk_size);
        prop_assert_eq!(&whole, &split);
        // Whole messages from the connection itself, and turns of both.
        for reader in [Reader::Messages, Reader::Mixed] {
            let (msgs, out) = server_reads(&input, &cuts, chunk_size, reader, 0);
            prop_assert_eq!(&whole, &msgs);
            prop_assert_eq!(frames_of(&out).1, frames_of(&split_out).1);
        }
        // Pongs may be coalesced differently (RFC 6455 §5.5.3 lets an
        // endpoint answer only the latest Ping), but the last Pong answers
        // the last Ping, and every other frame is the same.
        let (w_pongs, w_rest) = frames_of(&whole_out);
        let (s_pongs, s_rest) = frames_of(&split_out);
        prop_assert_eq!(w_rest, s_rest);
        prop_assert_eq!(w_pongs.last(), s_pongs.last());
        let last_ping = ops.iter().rev().find_map(|o| match o { Op::Ping(p) => Some(p.clone()), _ => None });
        prop_assert_eq!(s_pongs.last().cloned(), last_ping);
    }

    /// The same with frames large enough for `handle_data` to unmask them
    /// on the way in and to follow their headers itself: any split, with
    /// some pieces handed over through `handle_bytes`, any fragment size,
    /// small frames and Pings between them.
    #[test]
    fn large_frames_any_split_gives_the_same_messages(
        ops in proptest::collection::vec(large_op(), 1..6),
        fragment in prop_oneof![1usize..200, 4000usize..20_000, Just(1 << 20)],
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
        chunk_size in prop_oneof![1usize..100, Just(64 << 10)],
        owned in any::<u64>(),
    ) {
        let input = client_bytes(&ops, fragment);
        let want = expected(&ops);
        let (_, whole_out) = server_reads(&input, &[], 1 << 16, Reader::Events, 0);
        for reader in [Reader::Events, Reader::Messages, Reader::Mixed] {
            for owned in [0, owned] {
                let (msgs, out) = server_reads(&input, &cuts, chunk_size, reader, owned);
                prop_assert_eq!(&msgs, &want, "{:?} owned {:x}", reader, owned);
                prop_assert_eq!(frames_of(&out).1, frames_of(&whole_out).1);
            }
        }
    }

    /// Frame headers round-trip through encode and parse.
    #[test]
    fn header_round_trip(
        fin in any::<bool>(),
        rsv in 0u8..8,
        op in prop::sample::select(vec![OpCode::Continuation, OpCode::Text, OpCode::Binary, OpCode::Close, OpCode::Ping, OpCode::Pong]),
        mask in any::<Option<[u8; 4]>>(),
        len in prop_oneof![0u64..130, 120u64..70_000, 65_530u64..(1u64 << 63)],
        trailing in proptest::collection::vec(any::<u8>(), 0..4),
    ) {
        let h = FrameHeader { fin, rsv, opcode: op, mask, len };
        let mut buf = Vec::new();
        h.encode(&mut buf);
        prop_assert_eq!(buf.len(), h.encoded_len());
        let n = buf.len();
        buf.extend_from_slice(&trailing);
        prop_assert_eq!(FrameHeader::parse(&buf), Ok(Some((h, n))));
    }

    /// Whatever parses re-encodes to the same bytes.
    #[test]
    fn parse_then_encode_is_identity(bytes in proptest::collection::vec(any::<u8>(), 0..16)) {
        if let Ok(Some((h, n))) = FrameHeader::parse(&bytes) {
            let mut out = Vec::new();
            h.encode(&mut out);
            prop_assert_eq!(&out[..], &bytes[..n]);
        }
    }

    /// Masking twice gives the input back, and masking in pieces equals
    /// masking at once.
    #[test]
    fn masking_is_an_involution(
        data in proptest::collection::vec(any::<u8>(), 0..200),
        mask in any::<[u8; 4]>(),
        cut in any::<usize>(),
    ) {
        let mut buf = data.clone();
        apply_mask(&mut buf, mask, 0);
        let mut pieces = buf.clone();
        apply_mask(&mut buf, mask, 0);
        prop_assert_eq!(&buf, &data);
        let cut = cut % (data.len() + 1);
        let (a, b) = pieces.split_at_mut(cut);
        apply_mask(a, mask, 0);
        apply_mask(b, mask, cut);
        prop_assert_eq!(pieces, data);
    }

    /// The incremental validator agrees with `std::str::from_utf8` for any
    /// split, and fails at the first byte after which no continuation could
    /// make the text valid.
    #[test]
    fn utf8_validator_agrees_with_std(
        base in ".{0,30}",
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..3),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        let mut bytes = base.into_bytes();
        for (at, b) in edits {
            if !bytes.is_empty() {
                let i = at % bytes.len();
                bytes[i] = b;
            }
        }
        // Oracle: index of the first byte whose prefix is not a valid prefix.
        let first_bad = (0..bytes.len()).find(|&i| match std::str::from_utf8(&bytes[..=i]) {
            Ok(_) => false,
            Err(e) => e.error_len().is_some(),
        });
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        cuts.sort();
        cuts.push(bytes.len());
        let mut v = Utf8Validator::new();
        let mut last = 0;
        let mut failed_in: Option<(usize, usize)> = None;
        for cut in cuts {
            if v.feed(&bytes[last..cut]).is_err() {
                failed_in = Some((last, cut));
                break;
            }
            last = cut;
        }
        match (first_bad, failed_in) {
            (Some(i), Some((lo, hi))) => prop_assert!(lo <= i && i < hi, "bad byte {} not in piece {}..{}", i, lo, hi),
            (None, None) => prop_assert_eq!(v.finish().is_ok(), std::str::from_utf8(&bytes).is_ok()),
            (a, b) => prop_assert!(false, "oracle {:?} vs validator {:?}", a, b),
        }
    }

    /// Messages sent by either side arrive intact and in order, whatever the
    /// delivery granularity; both sides end closed and clean.
    #[test]
    fn pair_round_trip(
        ops in proptest::collection::vec(op(), 0..10),
        chunk in 1usize..500,
    ) {
        let mut p = Pair::new();
        p.chunk = chunk;
        for op in &ops {
            match op {
                Op::Text(s) | Op::ChunkedText(s, _) => p.server.conn.send_text(s).unwrap(),
                Op::Binary(b) => p.server.conn.send_binary(b).unwrap(),
                Op::Ping(b) => p.server.conn.ping(b).unwrap(),
            }
        }
        p.server.conn.close(p.now, CloseCode::NORMAL, "end").unwrap();
        p.run();
        let mut want = expected(&ops);
        if let Some(Message::Closed(c)) = want.last_mut() {
            c.initiator = ws_proto::Initiator::Remote;
        }
        // Pongs go back to the server, so the client sees exactly the sent ops.
        let got: Vec<Message> = p.client.messages.clone();
        prop_assert_eq!(got, want);
        prop_assert!(p.server.closed().unwrap().is_clean());
        prop_assert!(p.client.conn.is_finished() && p.server.conn.is_finished());
    }
}
