//! Table A: the codec in memory, same binary, same run.
//!
//! `codec [--quick]` prints markdown tables: decode (masked frames in, whole
//! messages out of `Connection::poll_message`, server role) and encode (server and client role) for
//! ws-proto and tungstenite over an in-memory stream, next to the ceilings
//! measured in the same run (memcpy, an in-place XOR unmask: the faster
//! of two word-wise loops,
//! `std::str::from_utf8`, and simdutf8, the SIMD validator ws-proto uses,
//! alone); then the same decode input fed in 1 B, 7 B,
//! 1460 B and 64 KiB pieces.
//! Each figure is the median of 5 samples (30 ms each with `--quick`,
//! 200 ms without), and a row's columns are sampled in turns (see
//! `Case::times`).
//! `codec --callgrind` adds instructions per message for the small sizes,
//! counted by valgrind's callgrind (the binary runs itself under it with
//! `--count CASE ITERS`).

use std::hint::black_box;
use std::io::{Read, Write};
use std::process::Command;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ws_bench::client_frame;
use ws_proto::{Config, Connection, MessageKind, Role};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Binary,
    Ascii,
    Multibyte,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Binary => "binary",
            Kind::Ascii => "ASCII text",
            Kind::Multibyte => "multibyte text",
        }
    }
    fn opcode(self) -> u8 {
        if self == Kind::Binary {
            2
        } else {
            1
        }
    }
}

fn payload(kind: Kind, size: usize) -> Vec<u8> {
    match kind {
        Kind::Binary => (0..size)
            .map(|i| (i.wrapping_mul(2654435761) >> 11) as u8)
            .collect(),
        Kind::Ascii => (0..size).map(|i| b"abcdefghij klmnop, "[i % 19]).collect(),
        Kind::Multibyte => {
            let unit = "Grüße, 世界! Привет мир 🌍 ";
            let mut s = String::new();
            while s.len() < size {
                s.push_str(unit);
            }
            let mut cut = size;
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            s.truncate(cut);
            s.into_bytes()
        }
    }
}

/// How many messages one iteration handles: about 4 MiB of payload.
fn count_for(size: usize) -> usize {
    ((4 << 20) / size.max(1)).clamp(4, 200_000)
}

fn big_config() -> Config {
    let mut c = Config::default();
    c.max_frame_size = 64 << 20;
    c.max_message_size = 64 << 20;
    c.send_fragment_size = 64 << 20;
    c.read_chunk_size = 64 << 20;
    c
}

fn tung_config() -> tungstenite::protocol::WebSocketConfig {
    tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(64 << 20))
        .max_frame_size(Some(64 << 20))
}

/// An in-memory stream for tungstenite: reads hand out `feed` bytes at a
/// time; writes are discarded (counted).
struct Mem<'a> {
    data: &'a [u8],
    pos: usize,
    feed: usize,
    written: usize,
}

impl Read for Mem<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.feed.min(buf.len()).min(self.data.len() - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Write for Mem<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.written += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// tungstenite's stream for decoding on a long-lived connection: the
/// frames over and over, `feed` bytes a read at most (a read ends at the
/// end of the frames, as each run of ws-proto's decoders feeds them
/// again); writes are discarded.
struct Cycle {
    data: Rc<[u8]>,
    pos: usize,
    feed: usize,
}

impl Read for Cycle {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos == self.data.len() {
            self.pos = 0;
        }
        let n = self.feed.min(buf.len()).min(self.data.len() - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Write for Cycle {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Op {
    DecodeProto,
    /// The same input handed over as owned buffers (`handle_bytes`, the
    /// zero-copy input): only the decode is timed, not making the buffers
    /// (that copy is the socket read's).
    DecodeProtoOwned,
    /// The input read into one buffer, each read split off and handed
    /// over (`handle_bytes`): each piece continues the memory of the one
    /// before, so nothing is copied after the read. Only the decode is
    /// timed (making the pieces is the socket read's copy).
    DecodeProtoRead,
    /// The same, messages lent.
    DecodeProtoReadLent,
    /// Messages lent by `poll_message_with` (no copy or allocation for a
    /// message whole in the input).
    DecodeProtoLent,
    DecodeTung,
    EncodeProtoServer,
    EncodeTungServer,
    EncodeProtoClient,
    EncodeTungClient,
    Memcpy,
    /// The in-place XOR unmask ceiling: the faster of this loop and
    /// `UnmaskProto` (see `Case::times`).
    Unmask,
    /// ws-proto's own in-place unmask, `mask::apply_mask`: the other loop
    /// of the ceiling.
    UnmaskProto,
    FromUtf8,
    /// The SIMD validator ws-proto uses (simdutf8), alone: how fast the
    /// check of multibyte text can be on this CPU.
    Simdutf8,
    HandshakeProto,
    HandshakeTung,
}

/// The mask both unmask ceilings XOR with.
const CEILING_MASK: [u8; 4] = [0x12, 0x34, 0x56, 0x78];

/// Handshakes per run of a handshake case.
const HANDSHAKES: usize = 1000;

const OPS: [Op; 17] = [
    Op::DecodeProto,
    Op::DecodeProtoOwned,
    Op::DecodeProtoRead,
    Op::DecodeProtoReadLent,
    Op::DecodeProtoLent,
    Op::DecodeTung,
    Op::EncodeProtoServer,
    Op::EncodeTungServer,
    Op::EncodeProtoClient,
    Op::EncodeTungClient,
    Op::Memcpy,
    Op::Unmask,
    Op::UnmaskProto,
    Op::FromUtf8,
    Op::Simdutf8,
    Op::HandshakeProto,
    Op::HandshakeTung,
];

/// One case's prepared data.
struct Case {
    kind: Kind,
    size: usize,
    count: usize,
    feed: usize,
    payload: Vec<u8>,
    text: String,
    input: Rc<[u8]>,
    scratch: Vec<u8>,
    request: Vec<u8>,
    /// The decoders' connections, one per op, kept from run to run: a
    /// long-lived connection in its steady state (buffers reused), as a
    /// server's are. Each run feeds the same frames again.
    conns: Vec<(Op, Connection)>,
    /// tungstenite's, likewise, reading the frames over and over.
    tung: Option<tungstenite::WebSocket<Cycle>>,
    /// Time spent in the timed part of an op that excludes its setup.
    timed: Duration,
}

impl Case {
    fn new(kind: Kind, size: usize, count: usize, feed: usize) -> Case {
        let payload = payload(kind, size);
        let frame = client_frame(kind.opcode(), false, &payload);
        let mut input = Vec::with_capacity(frame.len() * count);
        for _ in 0..count {
            input.extend_from_slice(&frame);
        }
        let text = String::from_utf8(payload.clone()).unwrap_or_default();
        Case {
            kind,
            size,
            count,
            feed,
            payload,
            text,
            scratch: vec![0u8; input.len()],
            input: input.into(),
            request: ws_bench::upgrade_request("127.0.0.1:9001", None),
            conns: Vec::new(),
            tung: None,
            timed: Duration::ZERO,
        }
    }

    /// The connection `op` decodes with, taken out of `conns` (put it back
    /// after the run) or made: a reader that has polled before (a text
    /// frame that starts before the first `poll_message` is read as
    /// `poll_event` would, since nothing says which is used).
    fn take_conn(&mut self, op: Op) -> Connection {
        if let Some(i) = self.conns.iter().position(|(o, _)| *o == op) {
            return self.conns.swap_remove(i).1;
        }
        let mut c = Connection::new(Role::Server, big_config(), Instant::now(), [0; 32]);
        if matches!(op, Op::DecodeProtoLent | Op::DecodeProtoReadLent) {
            assert!(c.poll_message_with(|_| ()).is_none());
        } else {
            assert!(c.poll_message().is_none());
        }
        c
    }

    /// Runs `op` once over the case; the messages handled.
    fn run(&mut self, op: Op) -> usize {
        let now = Instant::now();
        match op {
            Op::DecodeProto => {
                // Whole messages as the adapters take them: poll_message.
                let mut c = self.take_conn(op);
                let mut msgs = 0;
                for piece in self.input.chunks(self.feed) {
                    c.handle_data(now, piece);
                    while let Some(m) = c.poll_message() {
                        black_box(&m);
                        msgs += 1;
                    }
                }
                self.conns.push((op, c));
                assert_eq!(msgs, self.count);
                msgs
            }
            Op::DecodeProtoOwned => {
                let pieces: Vec<bytes::BytesMut> = self
                    .input
                    .chunks(self.feed)
                    .map(bytes::BytesMut::from)
                    .collect();
                let mut c = self.take_conn(op);
                let start = Instant::now();
                let mut msgs = 0;
                for piece in pieces {
                    c.handle_bytes(now, piece);
                    while let Some(m) = c.poll_message() {
                        black_box(&m);
                        msgs += 1;
                    }
                }
                self.timed += start.elapsed();
                self.conns.push((op, c));
                assert_eq!(msgs, self.count);
                msgs
            }
            Op::DecodeProtoRead | Op::DecodeProtoReadLent => {
                // The reads into one buffer, each split off: not timed.
                let mut all = bytes::BytesMut::from(&self.input[..]);
                let mut pieces = Vec::with_capacity(all.len() / self.feed.min(all.len()) + 1);
                while !all.is_empty() {
                    pieces.push(all.split_to(self.feed.min(all.len())));
                }
                let mut c = self.take_conn(op);
                let start = Instant::now();
                let mut msgs = 0;
                for piece in pieces {
                    c.handle_bytes(now, piece);
                    if op == Op::DecodeProtoReadLent {
                        while c
                            .poll_message_with(|m| {
                                black_box(m);
                            })
                            .is_some()
                        {
                            msgs += 1;
                        }
                    } else {
                        while let Some(m) = c.poll_message() {
                            black_box(&m);
                            msgs += 1;
                        }
                    }
                }
                self.timed += start.elapsed();
                self.conns.push((op, c));
                assert_eq!(msgs, self.count);
                msgs
            }
            Op::DecodeProtoLent => {
                let mut c = self.take_conn(op);
                let mut msgs = 0;
                for piece in self.input.chunks(self.feed) {
                    c.handle_data(now, piece);
                    while c
                        .poll_message_with(|m| {
                            black_box(m);
                        })
                        .is_some()
                    {
                        msgs += 1;
                    }
                }
                self.conns.push((op, c));
                assert_eq!(msgs, self.count);
                msgs
            }
            Op::DecodeTung => {
                let ws = self.tung.get_or_insert_with(|| {
                    let cycle = Cycle {
                        data: self.input.clone(),
                        pos: 0,
                        feed: self.feed,
                    };
                    tungstenite::WebSocket::from_raw_socket(
                        cycle,
                        tungstenite::protocol::Role::Server,
                        Some(tung_config()),
                    )
                });
                for _ in 0..self.count {
                    black_box(ws.read().expect("tungstenite read"));
                }
                self.count
            }
            Op::EncodeProtoServer | Op::EncodeProtoClient => {
                let role = if op == Op::EncodeProtoServer {
                    Role::Server
                } else {
                    Role::Client
                };
                let mut c = Connection::new(role, big_config(), now, [5; 32]);
                let mut out = Vec::new();
                let mut total = 0;
                for _ in 0..self.count {
                    if self.kind == Kind::Binary {
                        c.send_binary(&self.payload).unwrap();
                    } else {
                        c.send_text(&self.text).unwrap();
                    }
                    out.clear();
                    let _ = c.poll_transmit(&mut out);
                    total += black_box(&out).len();
                }
                assert!(total >= self.count * self.size);
                self.count
            }
            Op::EncodeTungServer | Op::EncodeTungClient => {
                let role = if op == Op::EncodeTungServer {
                    tungstenite::protocol::Role::Server
                } else {
                    tungstenite::protocol::Role::Client
                };
                let mem = Mem {
                    data: &[],
                    pos: 0,
                    feed: 1,
                    written: 0,
                };
                let mut ws =
                    tungstenite::WebSocket::from_raw_socket(mem, role, Some(tung_config()));
                let bin = Bytes::from(self.payload.clone());
                let text = tungstenite::Utf8Bytes::from(self.text.clone());
                for _ in 0..self.count {
                    let m = if self.kind == Kind::Binary {
                        tungstenite::Message::Binary(bin.clone())
                    } else {
                        tungstenite::Message::Text(text.clone())
                    };
                    ws.send(m).expect("tungstenite send");
                }
                assert!(ws.get_ref().written >= self.count * self.size);
                self.count
            }
            Op::Memcpy => {
                self.scratch.copy_from_slice(&self.input);
                black_box(&self.scratch);
                self.count
            }
            Op::Unmask => {
                let [m0, m1, m2, m3] = CEILING_MASK;
                let mask = u64::from_ne_bytes([m0, m1, m2, m3, m0, m1, m2, m3]);
                let mut words = self.scratch.chunks_exact_mut(8);
                for w in &mut words {
                    let v = u64::from_ne_bytes(w.try_into().unwrap()) ^ mask;
                    w.copy_from_slice(&v.to_ne_bytes());
                }
                for (i, b) in words.into_remainder().iter_mut().enumerate() {
                    *b ^= CEILING_MASK[i % 4];
                }
                black_box(&self.scratch);
                self.count
            }
            Op::UnmaskProto => {
                ws_proto::mask::apply_mask(&mut self.scratch, CEILING_MASK, 0);
                black_box(&self.scratch);
                self.count
            }
            Op::FromUtf8 => {
                for _ in 0..self.count {
                    black_box(std::str::from_utf8(black_box(&self.payload)).is_ok());
                }
                self.count
            }
            Op::Simdutf8 => {
                for _ in 0..self.count {
                    black_box(simdutf8::basic::from_utf8(black_box(&self.payload)).is_ok());
                }
                self.count
            }
            Op::HandshakeProto => {
                use ws_proto::handshake::server::{Accept, Incoming, ServerHandshake};
                let config = Config::default();
                let mut out = Vec::new();
                for _ in 0..HANDSHAKES {
                    let mut hs = ServerHandshake::new(config.clone());
                    let Ok(Some(Incoming::Upgrade(u))) = hs.handle_data(black_box(&self.request))
                    else {
                        panic!("ws-proto refused the request");
                    };
                    out.clear();
                    let conn = u.accept(now, &Accept::new(), &mut out).unwrap();
                    black_box((&conn, &out));
                }
                HANDSHAKES
            }
            Op::HandshakeTung => {
                for _ in 0..HANDSHAKES {
                    let mem = Mem {
                        data: black_box(&self.request),
                        pos: 0,
                        feed: usize::MAX,
                        written: 0,
                    };
                    let ws = tungstenite::accept(mem).expect("tungstenite accept");
                    assert!(ws.get_ref().written > 0);
                    black_box(&ws);
                }
                HANDSHAKES
            }
        }
    }

    /// Median nanoseconds per message of each of `ops`, over `samples`
    /// samples of at least `min` each, taken in turns: a sample of each op,
    /// then the next round. This host is shared, and load from elsewhere
    /// comes in spells of a second or more: timed one op after the other,
    /// a spell slowed one column of a row (in one run the unmask ceiling
    /// read 9 GB/s in one row and 23-26 in the rows around it); taken in
    /// turns, it slows one round of every column, and the medians leave
    /// it out.
    ///
    /// The unmask ceiling (`Op::Unmask`) is the faster of two in-place
    /// loops, each sampled in turn with the others: this bench's words and
    /// ws-proto's `apply_mask`. Either alone moved by a third between
    /// builds whose only change was elsewhere (89 against 68 GB/s for the
    /// bench's loop, identical instructions at another alignment; session
    /// 19), which moved every "/ unmask" ratio with it.
    fn times<const N: usize>(&mut self, ops: [Op; N], samples: usize, min: Duration) -> [f64; N] {
        let mut all = ops.to_vec();
        if ops.contains(&Op::Unmask) {
            all.push(Op::UnmaskProto);
        }
        for &op in &all {
            self.run(op); // warm-up
        }
        let mut per_msg: Vec<Vec<f64>> = all.iter().map(|_| Vec::with_capacity(samples)).collect();
        for _ in 0..samples {
            for (k, &op) in all.iter().enumerate() {
                per_msg[k].push(self.sample(op, min));
            }
        }
        let medians: Vec<f64> = per_msg
            .into_iter()
            .map(|mut v| {
                v.sort_by(f64::total_cmp);
                v[v.len() / 2]
            })
            .collect();
        std::array::from_fn(|k| match ops[k] {
            Op::Unmask => medians[k].min(medians[N]),
            _ => medians[k],
        })
    }

    /// Nanoseconds per message of `op` over at least `min`.
    fn sample(&mut self, op: Op, min: Duration) -> f64 {
        self.timed = Duration::ZERO;
        let start = Instant::now();
        let mut msgs = 0;
        while start.elapsed() < min {
            msgs += self.run(op);
        }
        let spent = if matches!(
            op,
            Op::DecodeProtoOwned | Op::DecodeProtoRead | Op::DecodeProtoReadLent
        ) {
            self.timed
        } else {
            start.elapsed()
        };
        spent.as_nanos() as f64 / msgs as f64
    }
}

fn fmt_size(n: usize) -> String {
    match n {
        n if n >= 1 << 20 => format!("{} MiB", n >> 20),
        n if n >= 1 << 10 => format!("{} KiB", n >> 10),
        n => format!("{n} B"),
    }
}

fn gbps(size: usize, ns: f64) -> f64 {
    size as f64 / ns
}

/// The text columns of a decode row with ws-proto at `p` ns/msg: from_utf8
/// GB/s, simdutf8 GB/s, ws-proto / from_utf8 (marked with `mark`) and
/// simdutf8 / from_utf8: the ratio the validator alone reaches, the bound
/// of the decoder's. "-" for binary.
fn utf8_columns(c: &Case, p: f64, [f, s]: [f64; 2], mark: &str) -> [String; 4] {
    if c.kind == Kind::Binary {
        return ["-", "-", "-", "-"].map(String::from);
    }
    [
        format!("{:.2}", gbps(c.size, f)),
        format!("{:.2}", gbps(c.size, s)),
        format!("{mark}{:.2}x{mark}", f / p),
        format!("{:.2}x", f / s),
    ]
}

/// Instructions per message of `op` on a case, by callgrind: the
/// difference between 3 and 1 iterations, so setup cancels out.
fn callgrind(kind: Kind, size: usize, op: Op) -> Option<f64> {
    let exe = std::env::current_exe().ok()?;
    let mut ir = Vec::new();
    for iters in [1usize, 3] {
        let out = std::env::temp_dir().join(format!("codec-cg-{}-{iters}.out", std::process::id()));
        let status = Command::new("valgrind")
            .arg("--tool=callgrind")
            .arg(format!("--callgrind-out-file={}", out.display()))
            .arg(&exe)
            .args([
                "--count",
                &format!("{kind:?}"),
                &size.to_string(),
                &format!("{op:?}"),
                &iters.to_string(),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .ok()?;
        if !status.success() {
            return None;
        }
        let text = std::fs::read_to_string(&out).ok()?;
        let _ = std::fs::remove_file(&out);
        let total: f64 = text
            .lines()
            .find_map(|l| {
                l.strip_prefix("summary: ")
                    .or_else(|| l.strip_prefix("totals: "))
            })?
            .split_whitespace()
            .next()?
            .parse()
            .ok()?;
        ir.push(total);
    }
    let count = match op {
        Op::HandshakeProto | Op::HandshakeTung => HANDSHAKES,
        _ => count_for(size).min(20_000),
    };
    Some((ir[1] - ir[0]) / (2 * count) as f64)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--count") {
        let kind = match args[1].as_str() {
            "Binary" => Kind::Binary,
            "Ascii" => Kind::Ascii,
            _ => Kind::Multibyte,
        };
        let size: usize = args[2].parse().unwrap();
        let op = OPS
            .into_iter()
            .find(|o| format!("{o:?}") == args[3])
            .unwrap();
        let iters: usize = args[4].parse().unwrap();
        // An optional sixth argument: the feed size.
        let feed = args.get(5).map_or(usize::MAX, |f| f.parse().unwrap());
        let mut case = Case::new(kind, size, count_for(size).min(20_000), feed);
        for _ in 0..iters {
            case.run(op);
        }
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let with_callgrind = args.iter().any(|a| a == "--callgrind");
    let (samples, min) = if quick {
        (5, Duration::from_millis(30))
    } else {
        (5, Duration::from_millis(200))
    };
    // `--sizes 16,65536` limits the tables to some payload sizes.
    let sizes: Vec<usize> = match args.iter().position(|a| a == "--sizes") {
        Some(i) => args[i + 1].split(',').map(|x| x.parse().unwrap()).collect(),
        None => vec![16, 1 << 10, 64 << 10, 1 << 20],
    };
    // `--kinds multibyte` (binary, ascii, multibyte; comma-separated)
    // limits the tables to some payloads.
    let kinds: Vec<Kind> = [Kind::Binary, Kind::Ascii, Kind::Multibyte]
        .into_iter()
        .filter(|k| match args.iter().position(|a| a == "--kinds") {
            Some(i) => args[i + 1]
                .split(',')
                .any(|n| k.name().to_lowercase().starts_with(n)),
            None => true,
        })
        .collect();

    // `--tables A1,A7` runs some tables only (all by default).
    let tables: Option<Vec<String>> = args
        .iter()
        .position(|a| a == "--tables")
        .map(|i| args[i + 1].split(',').map(str::to_string).collect());
    let want = |name: &str| tables.as_ref().is_none_or(|t| t.iter().any(|x| x == name));
    // The first case measured ran 30-50% slow in one run of three (the
    // machine settling: clock, page faults of the first allocations):
    // half a second of both decoders first.
    let mut warm = Case::new(Kind::Binary, 16, count_for(16), usize::MAX);
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(500) {
        warm.run(Op::DecodeProto);
        warm.run(Op::DecodeTung);
    }

    if want("A1") {
        println!("### A1. Decode: masked frames in, whole messages out (server role)\n");
        println!("The simdutf8 columns: the SIMD validator ws-proto uses, validating the same payload alone (no unmask, no copy); its speed bounds a decoder that must also unmask and copy.\n");
        println!("| payload | size | ws-proto ns/msg | tungstenite ns/msg | ws-proto / tungstenite msgs/s | ws-proto GB/s | memcpy GB/s | XOR unmask GB/s | from_utf8 GB/s | simdutf8 GB/s | ws-proto / unmask | ws-proto / from_utf8 | simdutf8 / from_utf8 |");
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        for &kind in &kinds {
            for &size in &sizes {
                let mut c = Case::new(kind, size, count_for(size), usize::MAX);
                // Binary rows time the UTF-8 ceilings too (on the same
                // bytes), for one shape of code; their columns print "-".
                let [p, t, m, u, f, v] = c.times(
                    [
                        Op::DecodeProto,
                        Op::DecodeTung,
                        Op::Memcpy,
                        Op::Unmask,
                        Op::FromUtf8,
                        Op::Simdutf8,
                    ],
                    samples,
                    min,
                );
                let [utf, simd, utf_ratio, simd_ratio] = utf8_columns(&c, p, [f, v], "");
                println!(
                "| {} | {} | {:.1} | {:.1} | **{:.2}x** | {:.2} | {:.2} | {:.2} | {} | {} | {:.0}% | {} | {} |",
                kind.name(),
                fmt_size(size),
                p,
                t,
                t / p,
                gbps(size, p),
                gbps(size, m),
                gbps(size, u),
                utf,
                simd,
                100.0 * u / p,
                utf_ratio,
                simd_ratio
            );
            }
        }
    }
    if want("A1b") {
        println!("\n### A1b. Large messages fed in 64 KiB reads, as the adapters read\n");
        println!("The last two columns: the same reads handed over as owned buffers (`handle_bytes`); only the decode is timed, as making each buffer is the copy the socket read does.\n");
        println!("| payload | size | ws-proto ns/msg | tungstenite ns/msg | ws-proto / tungstenite msgs/s | ws-proto GB/s | XOR unmask GB/s | from_utf8 GB/s | simdutf8 GB/s | ws-proto / unmask | ws-proto / from_utf8 | simdutf8 / from_utf8 | owned buffers ns/msg | owned / unmask |");
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        for &kind in &kinds {
            for &size in sizes.iter().filter(|&&s| s >= 64 << 10) {
                let mut c = Case::new(kind, size, count_for(size), 64 << 10);
                let [p, o, t, u, f, v] = c.times(
                    [
                        Op::DecodeProto,
                        Op::DecodeProtoOwned,
                        Op::DecodeTung,
                        Op::Unmask,
                        Op::FromUtf8,
                        Op::Simdutf8,
                    ],
                    samples,
                    min,
                );
                let [utf, simd, utf_ratio, simd_ratio] = utf8_columns(&c, p, [f, v], "**");
                println!(
                "| {} | {} | {:.1} | {:.1} | **{:.2}x** | {:.2} | {:.2} | {} | {} | **{:.0}%** | {} | {} | {:.1} | {:.0}% |",
                kind.name(),
                fmt_size(size),
                p,
                t,
                t / p,
                gbps(size, p),
                gbps(size, u),
                utf,
                simd,
                100.0 * u / p,
                utf_ratio,
                simd_ratio,
                o,
                100.0 * u / o
            );
            }
        }
    }
    if want("A6") {
        println!("\n### A6. Decode, messages lent (`poll_message_with`)\n");
        println!("The same input as A1 (whole) and A1b (64 KiB reads), read with `poll_message_with`: a message whole in the input is lent to a closure as a `&str` / `&[u8]` of the input buffer, unmasked and checked in place (no `String`, no copy, no allocation); others are built as by `poll_message` and lent from there. tungstenite returns owned messages.\n");
        println!("| payload | size | input | lent ns/msg | tungstenite ns/msg | lent / tungstenite msgs/s | lent GB/s | XOR unmask GB/s | from_utf8 GB/s | lent / unmask | lent / from_utf8 |");
        println!("|---|---|---|---|---|---|---|---|---|---|---|");
        for &kind in &kinds {
            for &size in &sizes {
                for feed in [usize::MAX, 64 << 10] {
                    if feed != usize::MAX && size < 64 << 10 {
                        continue;
                    }
                    let mut c = Case::new(kind, size, count_for(size), feed);
                    let [l, t, u, f] = c.times(
                        [
                            Op::DecodeProtoLent,
                            Op::DecodeTung,
                            Op::Unmask,
                            Op::FromUtf8,
                        ],
                        samples,
                        min,
                    );
                    let (utf, ratio) = if kind == Kind::Binary {
                        ("-".to_string(), "-".to_string())
                    } else {
                        (
                            format!("{:.2}", gbps(size, f)),
                            format!("**{:.2}x**", f / l),
                        )
                    };
                    println!(
                    "| {} | {} | {} | {:.1} | {:.1} | **{:.2}x** | {:.2} | {:.2} | {} | **{:.0}%** | {} |",
                    kind.name(),
                    fmt_size(size),
                    if feed == usize::MAX { "whole" } else { "64 KiB reads" },
                    l,
                    t,
                    t / l,
                    gbps(size, l),
                    gbps(size, u),
                    utf,
                    100.0 * u / l,
                    ratio
                );
                }
            }
        }
    }
    if want("A7") {
        println!("\n### A7. Decode from reads into one buffer (zero-copy input)\n");
        println!("The input as an embedder that reads into one `BytesMut` with room reserved hands it over: each read split off and given to `handle_bytes`, so each piece continues the memory of the one before and the connection unmasks the payload and hands the message out in place, never copied after the read. Only the decode is timed (filling the buffer is the socket read's copy); the handle_data column is A1b's path (the input borrowed, copied in) timed in the same run. Owned messages (`poll_message`) and lent ones (`poll_message_with`).\n");
        println!("| payload | size | reads | handle_data ns/msg | handle_bytes owned ns/msg | handle_bytes lent ns/msg | owned GB/s | lent GB/s | XOR unmask GB/s | from_utf8 GB/s | handle_data / unmask | owned / unmask | lent / unmask | handle_data / from_utf8 | owned / from_utf8 | lent / from_utf8 |");
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        for &kind in &kinds {
            for &size in sizes.iter().filter(|&&s| s >= 64 << 10) {
                for feed in [64 << 10, usize::MAX] {
                    let mut c = Case::new(kind, size, count_for(size), feed);
                    let [d, o, l, u, f] = c.times(
                        [
                            Op::DecodeProto,
                            Op::DecodeProtoRead,
                            Op::DecodeProtoReadLent,
                            Op::Unmask,
                            Op::FromUtf8,
                        ],
                        samples,
                        min,
                    );
                    let (utf, rd, ro, rl) = if kind == Kind::Binary {
                        ["-", "-", "-", "-"].map(String::from).into()
                    } else {
                        (
                            format!("{:.2}", gbps(size, f)),
                            format!("{:.2}x", f / d),
                            format!("**{:.2}x**", f / o),
                            format!("**{:.2}x**", f / l),
                        )
                    };
                    println!(
                        "| {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.2} | {:.2} | {:.2} | {} | {:.0}% | **{:.0}%** | **{:.0}%** | {} | {} | {} |",
                        kind.name(),
                        fmt_size(size),
                        if feed == usize::MAX { "one".to_string() } else { fmt_size(feed) },
                        d,
                        o,
                        l,
                        gbps(size, o),
                        gbps(size, l),
                        gbps(size, u),
                        utf,
                        100.0 * u / d,
                        100.0 * u / o,
                        100.0 * u / l,
                        rd,
                        ro,
                        rl
                    );
                }
            }
        }
    }
    if want("A2") {
        println!("\n### A2. Encode (one message, then take the bytes)\n");
        println!("| payload | size | role | ws-proto ns/msg | tungstenite ns/msg | ws-proto / tungstenite msgs/s | ws-proto GB/s |");
        println!("|---|---|---|---|---|---|---|");
        for &kind in &kinds {
            for &size in &sizes {
                let mut c = Case::new(kind, size, count_for(size), usize::MAX);
                for (role, po, to) in [
                    ("server", Op::EncodeProtoServer, Op::EncodeTungServer),
                    (
                        "client (masked)",
                        Op::EncodeProtoClient,
                        Op::EncodeTungClient,
                    ),
                ] {
                    let [p, t] = c.times([po, to], samples, min);
                    println!(
                        "| {} | {} | {} | {:.1} | {:.1} | **{:.2}x** | {:.2} |",
                        kind.name(),
                        fmt_size(size),
                        role,
                        p,
                        t,
                        t / p,
                        gbps(size, p)
                    );
                }
            }
        }
    }
    if want("A3") {
        println!("\n### A3. Decode with the input fed in pieces\n");
        println!("| payload | size | piece | ws-proto ns/msg | tungstenite ns/msg | ws-proto / tungstenite msgs/s |");
        println!("|---|---|---|---|---|---|");
        for (kind, size) in [(Kind::Ascii, 1 << 10), (Kind::Binary, 64 << 10)] {
            if !kinds.contains(&kind) {
                continue;
            }
            for feed in [1usize, 7, 1460, 64 << 10] {
                // Byte-at-a-time feeds are slow: fewer messages per iteration.
                let count = if feed < 100 {
                    (256 << 10) / size
                } else {
                    count_for(size)
                };
                let mut c = Case::new(kind, size, count, feed);
                let [p, t] = c.times([Op::DecodeProto, Op::DecodeTung], samples, min);
                println!(
                    "| {} | {} | {} | {:.1} | {:.1} | **{:.2}x** |",
                    kind.name(),
                    fmt_size(size),
                    fmt_size(feed),
                    p,
                    t,
                    t / p
                );
            }
        }
    }
    if want("A5") {
        println!("\n### A5. The opening handshake, server side, in memory\n");
        println!("Request parsed and checked, 101 response written, connection built (the load generator's request).\n");
        println!("| ws-proto ns/handshake | tungstenite ns/handshake | ws-proto / tungstenite handshakes/s |");
        println!("|---|---|---|");
        {
            let mut c = Case::new(Kind::Binary, 16, HANDSHAKES, usize::MAX);
            let [p, t] = c.times([Op::HandshakeProto, Op::HandshakeTung], samples, min);
            println!("| {p:.0} | {t:.0} | **{:.2}x** |", t / p);
        }
    }
    if with_callgrind && want("A4") {
        println!("\n### A4. Instructions per message (callgrind)\n");
        println!(
            "| payload | size | operation | ws-proto | tungstenite | tungstenite / ws-proto |"
        );
        println!("|---|---|---|---|---|---|");
        for &kind in &kinds {
            for size in [16usize, 1 << 10] {
                for (name, po, to) in [
                    ("decode", Op::DecodeProto, Op::DecodeTung),
                    ("decode lent", Op::DecodeProtoLent, Op::DecodeTung),
                    ("encode server", Op::EncodeProtoServer, Op::EncodeTungServer),
                    ("encode client", Op::EncodeProtoClient, Op::EncodeTungClient),
                ] {
                    let (Some(p), Some(t)) = (callgrind(kind, size, po), callgrind(kind, size, to))
                    else {
                        println!(
                            "| {} | {} | {name} | valgrind failed | | |",
                            kind.name(),
                            fmt_size(size)
                        );
                        continue;
                    };
                    println!(
                        "| {} | {} | {name} | {:.0} | {:.0} | **{:.2}x** |",
                        kind.name(),
                        fmt_size(size),
                        p,
                        t,
                        t / p
                    );
                }
            }
        }
        let hs = (
            callgrind(Kind::Binary, 16, Op::HandshakeProto),
            callgrind(Kind::Binary, 16, Op::HandshakeTung),
        );
        if let (Some(p), Some(t)) = hs {
            println!(
                "| upgrade request | - | server handshake | {p:.0} | {t:.0} | **{:.2}x** |",
                t / p
            );
        }
    }
    let _ = MessageKind::Text;
}
