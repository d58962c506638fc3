//! permessage-deflate (RFC 7692): negotiation on both sides, the codec
//! inside the connection, and the limits.
#![cfg(feature = "deflate")]

mod common;

use std::time::Instant;

use common::Pair;
use flate2::{Compress, Compression, FlushCompress};
use ws_proto::frame::{FrameHeader, OpCode};
use ws_proto::handshake::http::accept_key;
use ws_proto::mask::apply_mask;
use ws_proto::{
    Accept, ClientHandshake, ClientRequest, CloseCode, Config, Connection, ConnectionError,
    DeflateConfig, DeflateParams, Event, HandshakeError, Incoming, Message, MessageKind,
    ProtocolError, ServerHandshake, Transmit,
};

fn cfg(deflate: Option<DeflateConfig>) -> Config {
    let mut c = Config::default();
    c.deflate = deflate;
    c
}

fn on() -> DeflateConfig {
    DeflateConfig {
        threshold: 0,
        ..DeflateConfig::default()
    }
}

fn header_value(head: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(head);
    text.split("\r\n").find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
    })
}

struct Negotiated {
    offer: Option<String>,
    answer: Option<String>,
    pair: Pair,
}

/// A full opening handshake between a client and a server configuration.
fn handshake(client: Config, server: Config, accept: Accept) -> Negotiated {
    let now = Instant::now();
    let req = ClientRequest::new("ws://example.com/chat").unwrap();
    let mut hs = ClientHandshake::new(&req, client, [1; 32]).unwrap();
    let request = hs.request().to_vec();
    let mut sh = ServerHandshake::new(server);
    let Some(Incoming::Upgrade(up)) = sh.handle_data(&request).unwrap() else {
        panic!("not an upgrade")
    };
    let mut response = Vec::new();
    let sconn = up.accept(now, &accept, &mut response).unwrap();
    let (_, cconn) = hs.handle_data(now, &response).unwrap().unwrap();
    Negotiated {
        offer: header_value(&request, "sec-websocket-extensions"),
        answer: header_value(&response, "sec-websocket-extensions"),
        pair: Pair::from_connections(now, cconn, sconn),
    }
}

/// What a client configured with `client` makes of a 101 answer carrying
/// `extensions`.
fn client_sees(
    client: DeflateConfig,
    extensions: &str,
) -> Result<Option<DeflateParams>, HandshakeError> {
    let req = ClientRequest::new("ws://example.com/").unwrap();
    let mut hs = ClientHandshake::new(&req, cfg(Some(client)), [2; 32]).unwrap();
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\nSec-WebSocket-Extensions: {extensions}\r\n\r\n",
        accept_key(hs.key().as_bytes())
    );
    hs.handle_data(Instant::now(), response.as_bytes())
        .map(|r| r.unwrap().1.deflate().copied())
}

/// What a server configured with `server` answers to `offer`.
fn server_answers(server: DeflateConfig, offer: &str) -> (Option<String>, Option<DeflateParams>) {
    let request = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Extensions: {offer}\r\n\r\n"
    );
    let mut sh = ServerHandshake::new(cfg(Some(server)));
    let Some(Incoming::Upgrade(up)) = sh.handle_data(request.as_bytes()).unwrap() else {
        panic!("not an upgrade")
    };
    let mut out = Vec::new();
    let conn = up.accept(Instant::now(), &Accept::new(), &mut out).unwrap();
    (
        header_value(&out, "sec-websocket-extensions"),
        conn.deflate().copied(),
    )
}

fn params(snct: bool, cnct: bool, sbits: u8, cbits: u8) -> DeflateParams {
    DeflateParams {
        server_no_context_takeover: snct,
        client_no_context_takeover: cnct,
        server_max_window_bits: sbits,
        client_max_window_bits: cbits,
    }
}

/// Sends `texts` both ways through a negotiated pair and checks they arrive
/// intact and compressed (RSV1 on the wire).
fn exchange(pair: &mut Pair, texts: &[String]) {
    for t in texts {
        pair.client.conn.send_text(t).unwrap();
        let mut wire = Vec::new();
        assert!(matches!(
            pair.client.conn.poll_transmit(&mut wire),
            Transmit::Data(_)
        ));
        assert_eq!(wire[0] & 0x40, 0x40, "client frame has RSV1");
        pair.server.conn.handle_data(pair.now, &wire);
        pair.run();
        pair.server.conn.send_text(t).unwrap();
        pair.run();
    }
    let got: Vec<&Message> = pair.server.messages.iter().collect();
    assert_eq!(got.len(), texts.len());
    for (m, t) in got.iter().zip(texts) {
        assert_eq!(**m, Message::Text(t.clone()));
    }
    let back: Vec<&Message> = pair.client.messages.iter().collect();
    for (m, t) in back.iter().zip(texts) {
        assert_eq!(**m, Message::Text(t.clone()));
    }
}

fn sample_texts() -> Vec<String> {
    vec![
        "Hello, compressed world! ".repeat(20),
        "Grüße, 世界, мир — 🌍 ".repeat(50),
        String::new(),
        (0..20_000)
            .map(|i| char::from(b'a' + (i * 7 % 26) as u8))
            .collect(),
    ]
}

#[test]
fn negotiation_matrix() {
    let texts = sample_texts();
    // (client config, server config, expected offer, expected answer, params)
    let cases: Vec<(DeflateConfig, DeflateConfig, &str, &str, DeflateParams)> = vec![
        (
            on(),
            on(),
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate",
            params(false, false, 15, 15),
        ),
        (
            DeflateConfig {
                server_no_context_takeover: true,
                ..on()
            },
            on(),
            "permessage-deflate; server_no_context_takeover; client_max_window_bits",
            "permessage-deflate; server_no_context_takeover",
            params(true, false, 15, 15),
        ),
        (
            DeflateConfig {
                client_no_context_takeover: true,
                ..on()
            },
            on(),
            "permessage-deflate; client_no_context_takeover; client_max_window_bits",
            "permessage-deflate; client_no_context_takeover",
            params(false, true, 15, 15),
        ),
        (
            DeflateConfig {
                server_max_window_bits: 10,
                ..on()
            },
            on(),
            "permessage-deflate; server_max_window_bits=10; client_max_window_bits",
            "permessage-deflate; server_max_window_bits=10",
            params(false, false, 10, 15),
        ),
        (
            DeflateConfig {
                client_max_window_bits: 11,
                ..on()
            },
            on(),
            "permessage-deflate; client_max_window_bits=11",
            "permessage-deflate; client_max_window_bits=11",
            params(false, false, 15, 11),
        ),
        // The server's own preferences, which it may state unasked.
        (
            on(),
            DeflateConfig {
                server_max_window_bits: 12,
                server_no_context_takeover: true,
                ..on()
            },
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=12",
            params(true, false, 12, 15),
        ),
        (
            on(),
            DeflateConfig {
                client_max_window_bits: 9,
                client_no_context_takeover: true,
                ..on()
            },
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate; client_no_context_takeover; client_max_window_bits=9",
            params(false, true, 15, 9),
        ),
        // 8 bits: zlib compresses with 9 and never reaches back past 250.
        (
            DeflateConfig {
                server_max_window_bits: 8,
                client_max_window_bits: 8,
                ..on()
            },
            on(),
            "permessage-deflate; server_max_window_bits=8; client_max_window_bits=8",
            "permessage-deflate; server_max_window_bits=8; client_max_window_bits=8",
            params(false, false, 8, 8),
        ),
    ];
    for (client, server, offer, answer, expected) in cases {
        let mut n = handshake(cfg(Some(client)), cfg(Some(server)), Accept::new());
        assert_eq!(n.offer.as_deref(), Some(offer));
        assert_eq!(n.answer.as_deref(), Some(answer), "offer {offer}");
        assert_eq!(n.pair.client.conn.deflate(), Some(&expected));
        assert_eq!(n.pair.server.conn.deflate(), Some(&expected));
        exchange(&mut n.pair, &texts);
    }
}

#[test]
fn declined_when_either_side_does_not_want_it() {
    for (client, server, accept) in [
        (None, Some(on()), Accept::new()),
        (Some(on()), None, Accept::new()),
        (Some(on()), Some(on()), Accept::new().without_deflate()),
    ] {
        let offered = client.is_some();
        let mut n = handshake(cfg(client), cfg(server), accept);
        assert_eq!(n.offer.is_some(), offered);
        assert_eq!(n.answer, None);
        assert_eq!(n.pair.client.conn.deflate(), None);
        assert_eq!(n.pair.server.conn.deflate(), None);
        n.pair.client.conn.send_text(&"x".repeat(500)).unwrap();
        let mut wire = Vec::new();
        let _ = n.pair.client.conn.poll_transmit(&mut wire);
        assert_eq!(wire[0] & 0x70, 0, "no RSV bit without the extension");
    }
    // A server that requires a small client window declines a client that
    // cannot limit its window (no client_max_window_bits in the offer).
    let strict = DeflateConfig {
        client_max_window_bits: 10,
        ..on()
    };
    assert_eq!(
        server_answers(strict.clone(), "permessage-deflate"),
        (None, None)
    );
    assert_eq!(
        server_answers(strict, "permessage-deflate; client_max_window_bits=12").1,
        Some(params(false, false, 15, 10))
    );
}

#[test]
fn server_declines_invalid_offers_and_takes_the_first_valid_one() {
    for bad in [
        "permessage-deflate; foo",
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; client_max_window_bits=7",
        "permessage-deflate; client_max_window_bits=010",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; client_max_window_bits; client_max_window_bits=9",
        "permessage-deflate; server_no_context_takeover=1",
        "x-webkit-deflate-frame",
        "permessage-deflate; =",
    ] {
        assert_eq!(server_answers(on(), bad), (None, None), "{bad}");
    }
    let (answer, p) = server_answers(
        on(),
        "permessage-deflate; server_max_window_bits=99, permessage-deflate; server_max_window_bits=\"11\"",
    );
    assert_eq!(
        answer.as_deref(),
        Some("permessage-deflate; server_max_window_bits=11")
    );
    assert_eq!(p, Some(params(false, false, 11, 15)));
}

#[test]
fn client_rejects_responses_that_break_its_offer() {
    let bad = |client: DeflateConfig, ext: &str| {
        assert!(
            matches!(client_sees(client, ext), Err(HandshakeError::Extension(_))),
            "{ext} should be refused"
        );
    };
    for ext in [
        "permessage-deflate; foo",
        "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; server_max_window_bits=08",
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; client_max_window_bits",
        "permessage-deflate; client_no_context_takeover=yes",
        "permessage-deflate, permessage-deflate",
        "x-webkit-deflate-frame",
        "permessage-deflate; server_max_window_bits=\"1",
    ] {
        bad(on(), ext);
    }
    let asks_small_server = DeflateConfig {
        server_max_window_bits: 10,
        ..on()
    };
    bad(asks_small_server.clone(), "permessage-deflate");
    bad(
        asks_small_server.clone(),
        "permessage-deflate; server_max_window_bits=12",
    );
    assert_eq!(
        client_sees(
            asks_small_server,
            "permessage-deflate; server_max_window_bits=9"
        )
        .unwrap(),
        Some(params(false, false, 9, 15))
    );
    bad(
        DeflateConfig {
            server_no_context_takeover: true,
            ..on()
        },
        "permessage-deflate",
    );
    bad(
        DeflateConfig {
            client_max_window_bits: 10,
            ..on()
        },
        "permessage-deflate; client_max_window_bits=12",
    );
    // What a server may say unasked is accepted.
    assert_eq!(
        client_sees(
            on(),
            "permessage-deflate; client_no_context_takeover; server_no_context_takeover; client_max_window_bits=9"
        )
        .unwrap(),
        Some(params(true, true, 15, 9))
    );
    // A client that did not offer refuses the extension.
    let req = ClientRequest::new("ws://example.com/").unwrap();
    let mut hs = ClientHandshake::new(&req, cfg(None), [2; 32]).unwrap();
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
        accept_key(hs.key().as_bytes())
    );
    assert!(matches!(
        hs.handle_data(Instant::now(), response.as_bytes()),
        Err(HandshakeError::Extension(_))
    ));
}

#[test]
fn out_of_range_settings_are_refused_before_any_io() {
    let req = ClientRequest::new("ws://example.com/").unwrap();
    for bad in [
        DeflateConfig { level: 10, ..on() },
        DeflateConfig {
            server_max_window_bits: 7,
            ..on()
        },
        DeflateConfig {
            client_max_window_bits: 16,
            ..on()
        },
    ] {
        assert!(matches!(
            ClientHandshake::new(&req, cfg(Some(bad)), [0; 32]),
            Err(ws_proto::BuildError::Deflate(_))
        ));
    }
}

fn negotiated(client: DeflateConfig, server: DeflateConfig) -> Pair {
    handshake(cfg(Some(client)), cfg(Some(server)), Accept::new()).pair
}

/// The frames in `wire` (unmasked payloads): (byte 0, payload).
fn frames(mut wire: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while let Some((h, n)) = FrameHeader::parse(wire).unwrap() {
        let len = h.len as usize;
        let mut p = wire[n..n + len].to_vec();
        if let Some(m) = h.mask {
            apply_mask(&mut p, m, 0);
        }
        let b0 = (h.fin as u8) << 7 | h.rsv << 4 | h.opcode.as_u8();
        out.push((b0, p));
        wire = &wire[n + len..];
    }
    out
}

fn client_wire(pair: &mut Pair) -> Vec<u8> {
    let mut wire = Vec::new();
    while let Transmit::Data(_) = pair.client.conn.poll_transmit(&mut wire) {}
    wire
}

#[test]
fn messages_survive_every_split_of_the_input() {
    let texts = sample_texts();
    let binary: Vec<u8> = (0..300_000u32)
        .map(|i| (i % 251) as u8 ^ (i >> 9) as u8)
        .collect();
    for chunk in [1, 7, 1460, 64 << 10, usize::MAX] {
        let mut pair = negotiated(on(), on());
        pair.chunk = chunk;
        for t in &texts {
            pair.client.conn.send_text(t).unwrap();
        }
        pair.client.conn.send_binary(&binary).unwrap();
        pair.run();
        let mut want: Vec<Message> = texts.iter().cloned().map(Message::Text).collect();
        want.push(Message::Binary(binary.clone().into()));
        assert_eq!(pair.server.messages, want, "split {chunk}");
        // Every text chunk is valid UTF-8 on its own, even when the
        // decompressed output splits a code point.
        for e in &pair.server.events {
            if let Event::Text { data, .. } = e {
                assert!(std::str::from_utf8(data).is_ok());
            }
        }
    }
}

#[test]
fn a_compressed_message_split_across_fragments_and_reads() {
    let mut client = cfg(Some(on()));
    client.send_fragment_size = 50;
    let mut server = cfg(Some(on()));
    server.read_chunk_size = 1000;
    let mut pair = handshake(client, server, Accept::new()).pair;
    let text = "Grüße, 世界 🌍 ".repeat(3000);
    pair.client.conn.send_text(&text).unwrap();
    let wire = client_wire(&mut pair);
    let fr = frames(&wire);
    assert!(fr.len() > 4, "{} frames", fr.len());
    assert_eq!(fr[0].0, 0x41, "first frame: Text, RSV1, no FIN");
    assert!(
        fr[1..fr.len() - 1].iter().all(|f| f.0 == 0x00),
        "continuations without RSV1"
    );
    assert_eq!(fr.last().unwrap().0, 0x80);
    // Fed in 3-byte reads.
    for piece in wire.chunks(3) {
        pair.server.conn.handle_data(pair.now, piece);
        pair.run();
    }
    assert_eq!(pair.server.messages, vec![Message::Text(text.clone())]);
    // Decompressed chunks respect read_chunk_size and each is valid UTF-8.
    let chunks: Vec<&bytes::Bytes> = pair
        .server
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Text { data, .. } => Some(data),
            _ => None,
        })
        .collect();
    assert!(chunks
        .iter()
        .all(|c| c.len() <= 1000 && std::str::from_utf8(c).is_ok()));

    // Streamed with send_chunk, compressed as it goes.
    let parts: Vec<String> = (0..40).map(|i| format!("part {i} ").repeat(200)).collect();
    for (i, p) in parts.iter().enumerate() {
        pair.client
            .conn
            .send_chunk(MessageKind::Text, p.as_bytes(), i == parts.len() - 1)
            .unwrap();
    }
    let wire = client_wire(&mut pair);
    let fr = frames(&wire);
    assert_eq!(fr[0].0 & 0x4f, 0x41);
    let payload: usize = fr.iter().map(|f| f.1.len()).sum();
    assert!(
        payload < parts.concat().len() / 10,
        "{payload} bytes on the wire"
    );
    pair.server.conn.handle_data(pair.now, &wire);
    pair.run();
    assert_eq!(pair.server.messages[1], Message::Text(parts.concat()));
}

#[test]
fn context_takeover_across_messages() {
    let msg = "The quick brown fox jumps over the lazy dog. ".repeat(25);
    let sizes = |client: DeflateConfig| {
        let mut pair = negotiated(client, on());
        let mut sizes = Vec::new();
        for _ in 0..3 {
            pair.client.conn.send_text(&msg).unwrap();
            let wire = client_wire(&mut pair);
            sizes.push(frames(&wire)[0].1.len());
            pair.server.conn.handle_data(pair.now, &wire);
            pair.run();
        }
        assert_eq!(pair.server.messages, vec![Message::Text(msg.clone()); 3]);
        sizes
    };
    let takeover = sizes(on());
    // The second copy refers back to the first: a few bytes.
    assert!(takeover[1] < takeover[0] / 3, "{takeover:?}");
    let reset = sizes(DeflateConfig {
        client_no_context_takeover: true,
        ..on()
    });
    assert_eq!(reset[0], reset[1]);
    assert_eq!(reset[1], reset[2]);
    assert_eq!(reset[0], takeover[0]);
}

#[test]
fn threshold_and_per_message_opt_out() {
    let mut pair = negotiated(
        DeflateConfig {
            threshold: 100,
            ..on()
        },
        on(),
    );
    pair.client.conn.send_text(&"a".repeat(99)).unwrap();
    pair.client.conn.send_text(&"a".repeat(100)).unwrap();
    pair.client
        .conn
        .send_uncompressed(MessageKind::Binary, &[7u8; 5000])
        .unwrap();
    pair.client
        .conn
        .send_chunk_uncompressed(MessageKind::Text, b"streamed ", false)
        .unwrap();
    pair.client
        .conn
        .send_chunk(MessageKind::Text, b"plain", true)
        .unwrap();
    assert_eq!(
        pair.client
            .conn
            .send_uncompressed(MessageKind::Text, b"\xff"),
        Err(ws_proto::SendError::InvalidUtf8)
    );
    let wire = client_wire(&mut pair);
    let rsv1: Vec<bool> = frames(&wire).iter().map(|f| f.0 & 0x40 != 0).collect();
    assert_eq!(rsv1, vec![false, true, false, false, false]);
    pair.server.conn.handle_data(pair.now, &wire);
    pair.run();
    assert_eq!(
        pair.server.messages,
        vec![
            Message::Text("a".repeat(99)),
            Message::Text("a".repeat(100)),
            Message::Binary(vec![7u8; 5000].into()),
            Message::Text("streamed plain".into()),
        ]
    );
}

/// Raw DEFLATE of `data` as a peer would send it: sync flush, tail removed.
fn deflate_raw(data: &[u8], finish: bool) -> Vec<u8> {
    let mut c = Compress::new(Compression::new(9), false);
    let mut out = Vec::with_capacity(data.len() / 2 + 1024);
    let flush = if finish {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    loop {
        let before = c.total_in() as usize;
        c.compress_vec(&data[before..], &mut out, flush).unwrap();
        if c.total_in() as usize == data.len() && out.len() < out.capacity() {
            break;
        }
        out.reserve(out.len().max(1024));
    }
    if !finish {
        assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
        out.truncate(out.len() - 4);
    }
    out
}

fn masked_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut out = Vec::new();
    FrameHeader {
        fin: b0 & 0x80 != 0,
        rsv: (b0 >> 4) & 7,
        opcode: OpCode::from_u8(b0 & 0xf).unwrap(),
        mask: Some(mask),
        len: payload.len() as u64,
    }
    .encode(&mut out);
    let mut p = payload.to_vec();
    apply_mask(&mut p, mask, 0);
    out.extend_from_slice(&p);
    out
}

/// A server with deflate negotiated (default parameters) and `config`.
fn deflate_server(mut config: Config) -> Connection {
    config.deflate = Some(on());
    let request = "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n";
    let mut sh = ServerHandshake::new(config);
    let Some(Incoming::Upgrade(up)) = sh.handle_data(request.as_bytes()).unwrap() else {
        panic!()
    };
    let mut out = Vec::new();
    let conn = up.accept(Instant::now(), &Accept::new(), &mut out).unwrap();
    assert!(conn.deflate().is_some());
    conn
}

/// Feeds `input` in 64 KiB reads; returns the decompressed bytes handed out
/// and how the connection closed.
fn feed(conn: &mut Connection, input: &[u8]) -> (u64, Option<ws_proto::CloseInfo>, usize) {
    let now = Instant::now();
    let mut delivered = 0u64;
    let mut biggest = 0;
    for piece in input.chunks(64 << 10) {
        conn.handle_data(now, piece);
        while let Some(e) = conn.poll_event() {
            match e {
                Event::Binary { data, .. } | Event::Text { data, .. } => {
                    delivered += data.len() as u64;
                    biggest = biggest.max(data.len());
                }
                Event::Closed(c) => return (delivered, Some(c), biggest),
                _ => {}
            }
        }
    }
    (delivered, None, biggest)
}

#[test]
fn a_decompression_bomb_is_refused_with_1009_within_the_limit() {
    // 1 GiB of zeros deflates to about 1 MiB; the default 64 MiB limit
    // stops it after at most 64 MiB of output, handed out in bounded chunks.
    let mut c = Compress::new(Compression::new(9), false);
    let zeros = vec![0u8; 1 << 20];
    let mut bomb = Vec::with_capacity(1_100_000);
    for i in 0..1024 {
        let flush = if i == 1023 {
            FlushCompress::Sync
        } else {
            FlushCompress::None
        };
        let start = c.total_in();
        while c.total_in() - start < zeros.len() as u64 {
            let done = (c.total_in() - start) as usize;
            bomb.reserve(64 << 10);
            c.compress_vec(&zeros[done..], &mut bomb, flush).unwrap();
        }
        if flush == FlushCompress::Sync {
            while bomb.len() == bomb.capacity() {
                bomb.reserve(1024);
                c.compress_vec(&[], &mut bomb, flush).unwrap();
            }
        }
    }
    bomb.truncate(bomb.len() - 4);
    assert!(bomb.len() < 1_100_000, "bomb is {} bytes", bomb.len());
    let mut server = deflate_server(Config::default());
    let (delivered, closed, biggest) = feed(&mut server, &masked_frame(0xc2, &bomb));
    let closed = closed.expect("closed");
    assert_eq!(closed.code, CloseCode::TOO_BIG);
    assert!(matches!(
        closed.error,
        Some(ConnectionError::Protocol(ProtocolError::MessageTooLarge { max, .. })) if max == 64 << 20
    ));
    assert!(delivered <= 64 << 20, "{delivered}");
    assert!(biggest <= 64 << 10);

    // A small limit: 64 MiB of zeros in a 64 KiB frame, limit 1 MiB.
    let mut config = Config::default();
    config.max_message_size = 1 << 20;
    let mut server = deflate_server(config);
    let small_bomb = deflate_raw(&vec![0u8; 64 << 20], false);
    assert!(small_bomb.len() < 100_000);
    let (delivered, closed, _) = feed(&mut server, &masked_frame(0xc2, &small_bomb));
    assert_eq!(closed.expect("closed").code, CloseCode::TOO_BIG);
    assert!(delivered <= 1 << 20);
    // Exactly at the limit is fine.
    let mut config = Config::default();
    config.max_message_size = 1 << 20;
    let mut server = deflate_server(config);
    let (delivered, closed, _) = feed(
        &mut server,
        &masked_frame(0xc2, &deflate_raw(&vec![0u8; 1 << 20], false)),
    );
    assert_eq!(delivered, 1 << 20);
    assert!(closed.is_none());
}

#[test]
fn rsv1_rules_and_bad_data() {
    let z = deflate_raw(b"hello hello hello", false);
    let fails = |input: Vec<u8>, code: CloseCode| {
        let mut s = deflate_server(Config::default());
        let (_, closed, _) = feed(&mut s, &input);
        let closed = closed.expect("closed");
        assert_eq!(closed.code, code, "{closed:?}");
        closed
    };
    // RSV1 on a continuation frame.
    let mut input = masked_frame(0x41, &z[..3]);
    input.extend(masked_frame(0xc0, &z[3..]));
    fails(input, CloseCode::PROTOCOL_ERROR);
    // RSV1 on a control frame.
    fails(masked_frame(0xc9, b"ping"), CloseCode::PROTOCOL_ERROR);
    // RSV2 and RSV3 stay reserved.
    fails(masked_frame(0xa1, &z), CloseCode::PROTOCOL_ERROR);
    fails(masked_frame(0x91, &z), CloseCode::PROTOCOL_ERROR);
    // Not DEFLATE at all.
    let c = fails(masked_frame(0xc2, &[0xff; 40]), CloseCode::INVALID_PAYLOAD);
    assert!(matches!(
        c.error,
        Some(ConnectionError::Protocol(ProtocolError::BadCompressedData(
            _
        )))
    ));
    // Compressed text that is not UTF-8.
    fails(
        masked_frame(0xc1, &deflate_raw(b"abc\xff\xfe", false)),
        CloseCode::INVALID_PAYLOAD,
    );
    // RSV1 without the extension.
    let mut plain = Connection::new(
        ws_proto::Role::Server,
        Config::default(),
        Instant::now(),
        [0; 32],
    );
    let (_, closed, _) = feed(&mut plain, &masked_frame(0xc1, &z));
    assert_eq!(closed.unwrap().code, CloseCode::PROTOCOL_ERROR);
}

#[test]
fn peer_variants_final_blocks_empty_messages_and_interleaved_control_frames() {
    let mut s = deflate_server(Config::default());
    let mut input = Vec::new();
    // A message that ends its DEFLATE stream with a final block (RFC 7692
    // §7.2.3.3), then one from a fresh stream.
    input.extend(masked_frame(0xc1, &deflate_raw(b"final block", true)));
    input.extend(masked_frame(0xc1, &deflate_raw(b"next stream", false)));
    // The empty message: one 0x00 byte.
    input.extend(masked_frame(0xc2, &[0x00]));
    // A fragmented compressed message with a Ping in between.
    let z = deflate_raw(&b"fragmented ".repeat(50), false);
    input.extend(masked_frame(0x41, &z[..z.len() / 2]));
    input.extend(masked_frame(0x89, b"hi"));
    input.extend(masked_frame(0x80, &z[z.len() / 2..]));
    // An uncompressed message in between compressed ones.
    input.extend(masked_frame(0x81, b"plain"));
    let now = Instant::now();
    s.handle_data(now, &input);
    let mut asm = ws_proto::Assembler::new();
    let mut got = Vec::new();
    let mut pings = 0;
    while let Some(e) = s.poll_event() {
        if matches!(e, Event::Ping(_)) {
            pings += 1;
        }
        match asm.push(e) {
            Some(Message::Ping(_)) | None => {}
            Some(m) => got.push(m),
        }
    }
    assert_eq!(pings, 1);
    assert_eq!(
        got,
        vec![
            Message::Text("final block".into()),
            Message::Text("next stream".into()),
            Message::Binary(Vec::new().into()),
            Message::Text("fragmented ".repeat(50)),
            Message::Text("plain".into()),
        ]
    );
}

#[test]
fn an_owned_send_is_compressed_like_a_borrowed_one() {
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 7) as u8).collect();
    let mut owned = deflate_server(Config::default());
    let mut borrowed = deflate_server(Config::default());
    owned
        .send_owned(MessageKind::Binary, bytes::Bytes::from(data.clone()))
        .unwrap();
    borrowed.send_binary(&data).unwrap();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let mut payload = Vec::new();
    let _ = owned.poll_transmit_owned(&mut a, &mut payload);
    let _ = borrowed.poll_transmit(&mut b);
    // Compressed into the output buffer (RSV1 set), nothing handed out
    // as it was given.
    assert!(payload.is_empty());
    assert_eq!(a[0], 0xc2);
    assert!(a.len() < data.len() / 10);
    assert_eq!(a, b);
}

#[test]
fn replies_from_a_lend_are_compressed() {
    let mut pair = negotiated(on(), on());
    let texts = sample_texts();
    for t in &texts {
        pair.client.conn.send_text(t).unwrap();
    }
    let wire = client_wire(&mut pair);
    let now = Instant::now();
    let server = &mut pair.server.conn;
    server.handle_data(now, &wire);
    let mut lent = 0;
    while let Some(r) = server.poll_message_reply(|m, reply| match m {
        ws_proto::MessageRef::Text(t) => reply.send_text(t),
        other => panic!("{other:?}"),
    }) {
        r.unwrap();
        lent += 1;
    }
    assert_eq!(lent, texts.len());
    let mut out = Vec::new();
    while let Transmit::Data(_) = server.poll_transmit(&mut out) {}
    let fr = frames(&out);
    assert_eq!(fr.len(), texts.len());
    // RSV1 on each: compressed, and smaller than the texts in all.
    for (b0, _) in &fr {
        assert_eq!(b0 & 0x70, 0x40, "{b0:#x}");
    }
    let sizes = |v: Vec<usize>| v.into_iter().sum::<usize>();
    assert!(
        sizes(fr.iter().map(|f| f.1.len()).collect())
            < sizes(texts.iter().map(String::len).collect())
    );
    let client = &mut pair.client.conn;
    client.handle_data(now, &out);
    let mut got = Vec::new();
    while let Some(m) = client.poll_message() {
        got.push(m);
    }
    let want: Vec<Message> = texts.into_iter().map(Message::Text).collect();
    assert_eq!(got, want);
}
