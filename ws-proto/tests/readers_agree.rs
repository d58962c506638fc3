//! `poll_message` (with its one-step path for small whole frames),
//! `poll_message_with` (which lends whole frames in place),
//! `handle_data_reply` (which lends a frame whole at the start of a read
//! from the read itself), `handle_data_message` (which builds that message
//! from the read) and `poll_event` through an `Assembler` read any
//! input the same way: valid or not,
//! whatever the limits, whatever the split. The same messages, the same
//! close (code, error) and the same bytes written back.

use std::time::Instant;

mod common;

use common::pieces;
use proptest::prelude::*;
use ws_proto::{Assembler, Config, Connection, Message, Role, Transmit};

/// One frame as a peer might send it, right or wrong.
#[derive(Debug, Clone)]
struct RawFrame {
    /// FIN, RSV and opcode, any value.
    b0: u8,
    masked: bool,
    long: bool,
    payload: Vec<u8>,
}

fn raw_frame() -> impl Strategy<Value = RawFrame> {
    let b0 = prop_oneof![
        // The common frames, most of the time.
        4 => prop_oneof![Just(0x81u8), Just(0x82), Just(0x01), Just(0x02), Just(0x80), Just(0x00)],
        1 => prop_oneof![Just(0x89u8), Just(0x8a), Just(0x88)],
        1 => any::<u8>(),
    ];
    let payload = prop_oneof![
        3 => ".{0,40}".prop_map(String::into_bytes),
        2 => proptest::collection::vec(any::<u8>(), 0..140),
        1 => Just(vec![0xe2, 0x82]),
        1 => Just(vec![0xac]),
        // Large enough for `handle_data` to unmask on the way in.
        1 => proptest::collection::vec(any::<u8>(), 4000..5000),
        1 => "[a-zé€]{1500,2000}".prop_map(String::into_bytes),
        // Large text: `handle_data` builds the `String` itself.
        1 => "[a-zé€]{4100,4600}".prop_map(String::into_bytes),
    ];
    (
        b0,
        prop::bool::weighted(0.9),
        prop::bool::weighted(0.05),
        payload,
    )
        .prop_map(|(b0, masked, long, payload)| RawFrame {
            b0,
            masked,
            long,
            payload,
        })
}

fn encode(frames: &[RawFrame], masked_role: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        let masked = f.masked == masked_role;
        out.push(f.b0);
        let m = if masked { 0x80 } else { 0 };
        let n = f.payload.len();
        if n < 126 && !f.long {
            out.push(m | n as u8);
        } else {
            // `long`: a 16-bit length even when 7 bits would do (wrong).
            out.push(m | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        let key = [i as u8, 0x5a, 0xc3, 0x17];
        if masked {
            out.extend_from_slice(&key);
            out.extend(f.payload.iter().enumerate().map(|(j, b)| b ^ key[j % 4]));
        } else {
            out.extend_from_slice(&f.payload);
        }
    }
    out
}

#[derive(Clone, Copy, PartialEq)]
enum Reader {
    Events,
    Messages,
    Lent,
    /// Each piece through `handle_data_reply`, then `poll_message_with`.
    InPlace,
    /// Each piece through `handle_data_message`, then `poll_message`.
    InPlaceOwned,
}

fn read(
    role: Role,
    config: &Config,
    input: &[u8],
    cuts: &[usize],
    eof: bool,
    reader: Reader,
) -> (Vec<Message>, Vec<u8>, Vec<(usize, usize)>) {
    let now = Instant::now();
    let mut c = Connection::new(role, config.clone(), now, [3; 32]);
    let mut asm = Assembler::new();
    let mut msgs = Vec::new();
    let mut out = Vec::new();
    // After each piece: how many messages and output bytes so far (a
    // failure is reported as early by each reader).
    let mut progress = Vec::new();
    let pieces = pieces(input, cuts);
    let last = pieces.len();
    for (i, piece) in pieces.into_iter().chain([&[][..]]).enumerate() {
        if i < last && reader == Reader::InPlace {
            let mut read = piece.to_vec();
            msgs.extend(c.handle_data_reply(now, &mut read, |m, _| m.to_message()));
        } else if i < last && reader == Reader::InPlaceOwned {
            let mut read = piece.to_vec();
            msgs.extend(c.handle_data_message(now, &mut read));
        } else if i < last {
            c.handle_data(now, piece);
        } else if eof {
            c.handle_eof(now);
        }
        match reader {
            Reader::Messages | Reader::InPlaceOwned => {
                while let Some(m) = c.poll_message() {
                    msgs.push(m);
                }
            }
            Reader::Lent | Reader::InPlace => {
                while let Some(m) = c.poll_message_with(|m| m.to_message()) {
                    msgs.push(m);
                }
            }
            Reader::Events => {
                while let Some(ev) = c.poll_event() {
                    if let Some(m) = asm.push(ev) {
                        msgs.push(m);
                    }
                }
            }
        }
        while c.poll_transmit(&mut out) != Transmit::Nothing {}
        progress.push((msgs.len(), out.len()));
    }
    (msgs, out, progress)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    #[test]
    fn the_readers_agree_on_any_input(
        frames in proptest::collection::vec(raw_frame(), 0..10),
        server in any::<bool>(),
        cuts in proptest::collection::vec(any::<usize>(), 0..6),
        // Input cut short by this many bytes, then EOF.
        truncate in prop_oneof![4 => Just(None), 1 => (0usize..200).prop_map(Some)],
        limits in (
            prop_oneof![Just(u64::MAX), 0u64..150, 0u64..6000],
            prop_oneof![Just(u64::MAX), 0u64..300, 0u64..12000],
            prop_oneof![Just(usize::MAX), 0usize..4],
            prop_oneof![Just(1usize << 16), 1usize..150, 1usize..6000],
        ),
    ) {
        let (max_frame, max_message, max_fragments, chunk) = limits;
        let mut config = Config::default();
        if max_frame != u64::MAX {
            config.max_frame_size = max_frame;
        }
        if max_message != u64::MAX {
            config.max_message_size = max_message;
        }
        if max_fragments != usize::MAX {
            config.max_fragments = max_fragments as _;
        }
        config.read_chunk_size = chunk;
        let role = if server { Role::Server } else { Role::Client };
        let mut input = encode(&frames, server);
        if let Some(t) = truncate {
            input.truncate(input.len().saturating_sub(t));
        }
        let eof = truncate.is_some();
        let by_events = read(role, &config, &input, &cuts, eof, Reader::Events);
        let by_messages = read(role, &config, &input, &cuts, eof, Reader::Messages);
        let lent = read(role, &config, &input, &cuts, eof, Reader::Lent);
        let in_place = read(role, &config, &input, &cuts, eof, Reader::InPlace);
        let in_place_owned = read(role, &config, &input, &cuts, eof, Reader::InPlaceOwned);
        prop_assert_eq!(&by_messages, &by_events);
        prop_assert_eq!(&lent, &by_events);
        prop_assert_eq!(&in_place, &by_events);
        prop_assert_eq!(in_place_owned, by_events);
    }
}
