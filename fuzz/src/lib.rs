//! Shared drivers for the fuzz targets: a connection fed arbitrary bytes,
//! ticks and commands, and a client/server pair driven by arbitrary
//! operations, each checking the invariants the core promises.
//!
//! Inputs are decoded with a small byte grammar (see [`Reader`],
//! [`decode_steps`], [`decode_pair_steps`]) rather than `arbitrary`, so that
//! seeds can be written by hand: a seed of RFC 6455 frames is the frames
//! behind one length byte.

use std::time::{Duration, Instant};

use ws_proto::{
    Accept, Assembler, ClientHandshake, ClientRequest, CloseCode, CloseInfo, Config, Connection,
    DeflateConfig, Event, Incoming, Message, MessageKind, MessageRef, Reply, Role, SendError,
    ServerHandshake, State, Transmit,
};

/// A permessage-deflate configuration from one byte: the context-takeover
/// flags and window sizes 8-15 of both sides.
pub fn deflate_config(b: u8, c: u8) -> DeflateConfig {
    DeflateConfig {
        level: (c >> 4) as u32 % 10,
        threshold: 0,
        server_no_context_takeover: b & 1 != 0,
        client_no_context_takeover: b & 2 != 0,
        server_max_window_bits: 8 + ((b >> 2) & 7),
        client_max_window_bits: 8 + ((b >> 5) & 7),
    }
}

/// A client and a server connection that negotiated permessage-deflate
/// through a real handshake (small limits), each offering/accepting with
/// its own configuration.
pub fn deflate_pair(
    now: Instant,
    client: DeflateConfig,
    server: DeflateConfig,
) -> (Connection, Connection) {
    let mut cc = small_config();
    cc.deflate = Some(client);
    let mut sc = small_config();
    sc.deflate = Some(server);
    let req = ClientRequest::new("ws://localhost/").unwrap();
    let mut hs = ClientHandshake::new(&req, cc, [1; 32]).unwrap();
    let mut sh = ServerHandshake::new(sc);
    let Ok(Some(Incoming::Upgrade(up))) = sh.handle_data(hs.request()) else {
        panic!("our own request is an upgrade")
    };
    let mut resp = Vec::new();
    let server = up.accept(now, &Accept::new(), &mut resp).unwrap();
    let (_, client) = hs.handle_data(now, &resp).unwrap().unwrap();
    assert_eq!(client.deflate(), server.deflate(), "both ends agree");
    (client, server)
}

/// Small limits so the fuzzer reaches them.
pub fn small_config() -> Config {
    let mut c = Config::default();
    c.max_frame_size = 4096;
    c.max_message_size = 16 << 10;
    c.max_fragments = 64;
    c.read_chunk_size = 256;
    c.send_fragment_size = 1000;
    c.keepalive_interval = Some(Duration::from_millis(500));
    c.keepalive_timeout = Duration::from_millis(300);
    c.close_timeout = Some(Duration::from_millis(1000));
    c.release_buffers_after = Duration::from_millis(300);
    c
}

/// A command from the local application.
#[derive(Debug, Clone)]
pub enum Command {
    Text(String),
    Binary(Vec<u8>),
    Chunk {
        text: bool,
        data: Vec<u8>,
        fin: bool,
    },
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close {
        code: u16,
        reason: String,
    },
}

impl Command {
    /// Applies the command; returns the whole message it completed, if any,
    /// and whether it was accepted.
    pub fn apply(
        &self,
        conn: &mut Connection,
        now: Instant,
        partial: &mut Option<(MessageKind, Vec<u8>)>,
    ) -> (bool, Option<Message>) {
        match self {
            // Odd lengths are sent owned (taken over; from OWNED_MIN on, in
            // the server role, they leave in their own `Bytes`).
            Command::Text(s) => {
                let ok = if s.len() % 2 == 1 {
                    conn.send_text_owned(s.clone()).is_ok()
                } else {
                    conn.send_text(s).is_ok()
                };
                (ok, ok.then(|| Message::Text(s.clone())))
            }
            Command::Binary(b) => {
                let ok = if b.len() % 2 == 1 {
                    conn.send_owned(MessageKind::Binary, bytes::Bytes::from(b.clone()))
                        .is_ok()
                } else {
                    conn.send_binary(b).is_ok()
                };
                (ok, ok.then(|| Message::Binary(b.clone().into())))
            }
            Command::Chunk { text, data, fin } => {
                let kind = if *text {
                    MessageKind::Text
                } else {
                    MessageKind::Binary
                };
                if conn.send_chunk(kind, data, *fin).is_err() {
                    return (false, None);
                }
                let buf = partial.get_or_insert_with(|| (kind, Vec::new()));
                buf.1.extend_from_slice(data);
                if !*fin {
                    return (true, None);
                }
                let (kind, bytes) = partial.take().expect("set above");
                let msg = match kind {
                    MessageKind::Text => {
                        Message::Text(String::from_utf8(bytes).expect("send_chunk checked UTF-8"))
                    }
                    MessageKind::Binary => Message::Binary(bytes.into()),
                };
                (true, Some(msg))
            }
            Command::Ping(p) => (conn.ping(p).is_ok(), None),
            Command::Pong(p) => (conn.pong(p).is_ok(), None),
            Command::Close { code, reason } => {
                let ok = conn.close(now, CloseCode(*code), reason).is_ok();
                if ok {
                    // A streamed message cut by a Close is abandoned.
                    *partial = None;
                }
                (ok, None)
            }
        }
    }
}

/// One side of a connection with the invariants checked on every output.
pub struct Checked {
    pub conn: Connection,
    pub asm: Assembler,
    /// Take whole messages from `Connection::poll_message` instead of
    /// events through `asm`.
    pub whole: bool,
    /// With `whole`: take them lent, from `Connection::poll_message_with`.
    pub lent: bool,
    /// With `lent`: answer each text and binary message with itself from
    /// inside the lend (`Connection::poll_message_reply`); the answers go
    /// to `sent`.
    pub answer: bool,
    /// With `lent`: each read goes in through
    /// `Connection::handle_data_reply`, which lends a message that begins
    /// it from the read itself. With `whole` and not `lent`: through
    /// `Connection::handle_data_message`, which builds that message from
    /// the read.
    pub in_place: bool,
    /// What this side sent, in order: the messages the peer must receive.
    pub sent: Vec<Message>,
    /// Take the output with `poll_transmit_owned` (owned payloads apart).
    pub owned_out: bool,
    pub messages: Vec<Message>,
    pub closed: Option<CloseInfo>,
    pub shut_down: bool,
    /// Bytes this side wrote and the peer has not yet read.
    pub wire: Vec<u8>,
    pub written: u64,
    /// The time of the last input or tick: written output buffers go back
    /// to the connection (`Connection::reuse_output`) stamped with it.
    now: Option<Instant>,
}

impl Checked {
    pub fn new(conn: Connection) -> Self {
        Checked {
            conn,
            asm: Assembler::new(),
            whole: false,
            lent: false,
            answer: false,
            in_place: false,
            sent: Vec::new(),
            owned_out: false,
            messages: Vec::new(),
            closed: None,
            shut_down: false,
            wire: Vec::new(),
            written: 0,
            now: None,
        }
    }

    /// A lent message: answered with itself from inside the lend (with
    /// `answer`; what was answered goes to `sent`), and copied.
    fn lend(
        answer: bool,
        sent: &mut Vec<Message>,
        m: MessageRef<'_>,
        reply: &mut Reply<'_>,
    ) -> Message {
        if answer {
            let answered = match m {
                MessageRef::Text(t) => reply.send_text(t).map(|()| Message::Text(t.to_string())),
                MessageRef::Binary(b) => reply
                    .send_binary(b)
                    .map(|()| Message::Binary(bytes::Bytes::copy_from_slice(b))),
                _ => Err(SendError::Closed),
            };
            // Refused after a Close or during a streamed message, as a
            // send would be.
            if let Ok(a) = answered {
                sent.push(a);
            }
        }
        m.to_message()
    }

    /// Input from the peer: through `handle_data_reply` with `in_place`
    /// (and `lent`), `handle_data_message` with `in_place` (and `whole`,
    /// not `lent`), else `handle_data`; then everything is drained.
    pub fn receive(&mut self, now: Instant, data: &mut [u8]) {
        self.now = Some(now);
        if self.whole && !self.lent && self.in_place {
            if let Some(m) = self.conn.handle_data_message(now, data) {
                self.record(m);
            }
        } else if self.lent && self.in_place {
            let (answer, sent) = (self.answer, &mut self.sent);
            if let Some(m) = self
                .conn
                .handle_data_reply(now, data, |m, reply| Self::lend(answer, sent, m, reply))
            {
                self.record(m);
            }
        } else {
            self.conn.handle_data(now, data);
        }
        self.pump();
    }

    fn record(&mut self, m: Message) {
        assert!(self.closed.is_none(), "message after Closed: {m:?}");
        if let Message::Closed(info) = &m {
            assert_eq!(self.conn.state(), State::Closed);
            self.closed = Some(info.clone());
        }
        self.messages.push(m);
    }

    fn pump_messages(&mut self) {
        loop {
            let m = if self.lent {
                let (answer, sent) = (self.answer, &mut self.sent);
                self.conn
                    .poll_message_reply(|m, reply| Self::lend(answer, sent, m, reply))
            } else {
                self.conn.poll_message()
            };
            let Some(m) = m else {
                break;
            };
            self.record(m);
        }
    }

    fn pump_events(&mut self) {
        while let Some(ev) = self.conn.poll_event() {
            assert!(self.closed.is_none(), "event after Closed: {ev:?}");
            if let Event::Text { data, .. } = &ev {
                assert!(std::str::from_utf8(data).is_ok(), "text chunk is not UTF-8");
            }
            if let Event::Closed(info) = &ev {
                assert_eq!(self.conn.state(), State::Closed);
                self.closed = Some(info.clone());
            }
            if let Some(m) = self.asm.push(ev) {
                self.messages.push(m);
            }
        }
    }

    /// Drains events and output, checking: no event after Closed, Closed
    /// exactly once, no data after the shutdown, bounded buffering.
    pub fn pump(&mut self) {
        if self.whole {
            self.pump_messages();
        } else {
            self.pump_events();
        }
        assert!(self.closed.is_some() || self.conn.state() != State::Closed);
        // After draining, at most one partial frame is buffered, and of a
        // data frame at most `read_chunk_size` bytes plus a code point;
        // `poll_message` keeps a one-frame binary message until it is
        // whole (where the assembler would hold it), so up to a frame.
        let config = self.conn.config();
        let frame = if self.whole {
            (config.max_frame_size as usize).max(config.read_chunk_size)
        } else {
            config.read_chunk_size
        };
        let limit = frame + 14 + 125 + 4;
        assert!(
            self.conn.buffered_input() <= limit,
            "buffered {} > {limit}",
            self.conn.buffered_input()
        );
        let mut buf = Vec::new();
        loop {
            let mut owned = Vec::new();
            let t = if self.owned_out {
                self.conn.poll_transmit_owned(&mut buf, &mut owned)
            } else {
                self.conn.poll_transmit(&mut buf)
            };
            match t {
                Transmit::Data(n) => {
                    assert!(!self.shut_down, "data after shutdown");
                    let mut from = 0;
                    let mut total = buf.len();
                    for (at, payload) in owned {
                        assert!(at >= from && at <= buf.len(), "owned payload out of place");
                        self.wire.extend_from_slice(&buf[from..at]);
                        self.wire.extend_from_slice(&payload);
                        total += payload.len();
                        from = at;
                    }
                    self.wire.extend_from_slice(&buf[from..]);
                    assert_eq!(n, total);
                    self.written += n as u64;
                    // Written: handed back as it is, once there is a time.
                    match self.now {
                        Some(now) => self.conn.reuse_output(now, std::mem::take(&mut buf)),
                        None => buf.clear(),
                    }
                }
                Transmit::Shutdown => {
                    assert!(!self.shut_down, "shutdown twice");
                    self.shut_down = true;
                }
                Transmit::Nothing => break,
            }
        }
        if self.conn.is_finished() {
            assert!(
                self.closed.is_some(),
                "finished before Closed was delivered"
            );
        }
    }

    /// Fires the timer if it is due at `now`.
    pub fn tick(&mut self, now: Instant) {
        self.now = Some(now);
        if let Some(t) = self.conn.poll_timeout() {
            assert!(t >= now - Duration::from_secs(3600));
        }
        self.conn.handle_timeout(now);
        // What was due is done: an adapter that waits for the timer again
        // must not find it due at once (it would spin).
        if let Some(t) = self.conn.poll_timeout() {
            assert!(t > now, "timer still due after handle_timeout");
        }
        self.pump();
    }

    /// Ends the connection from outside (EOF, then time) and checks that it
    /// finishes within the close timeout.
    pub fn finish(&mut self, mut now: Instant) {
        self.conn.handle_eof(now);
        self.pump();
        let timeout = self.conn.config().close_timeout.unwrap_or(Duration::ZERO);
        now += timeout + Duration::from_millis(1);
        self.tick(now);
        assert!(
            self.closed.is_some(),
            "not closed after EOF and the close timeout"
        );
        assert!(
            self.conn.is_finished(),
            "not finished after EOF and the close timeout"
        );
    }
}

/// One step of a single connection's life.
#[derive(Debug)]
pub enum Step {
    Data(Vec<u8>),
    Tick(u16),
    Command(Command),
}

/// Feeds arbitrary bytes, ticks and commands to one connection.
pub fn run_connection(role: Role, steps: Vec<Step>) {
    let now = Instant::now();
    run_connection_with(
        Connection::new(role, small_config(), now, [3; 32]),
        now,
        steps,
    );
}

/// The same with a connection made elsewhere (one that negotiated
/// permessage-deflate, say).
pub fn run_connection_with(conn: Connection, start: Instant, steps: Vec<Step>) {
    let mut now = start;
    let mut side = Checked::new(conn);
    side.whole = !steps.len().is_multiple_of(3);
    side.lent = steps.len() % 3 == 2;
    side.in_place = steps.len() % 4 < 2;
    let mut input = 0u64;
    let mut commanded = 0u64;
    let mut partial = None;
    for step in steps {
        match step {
            Step::Data(mut d) => {
                input += d.len() as u64;
                side.receive(now, &mut d);
            }
            Step::Tick(ms) => {
                now += Duration::from_millis(ms as u64);
                side.tick(now);
            }
            Step::Command(c) => {
                commanded += command_size(&c);
                c.apply(&mut side.conn, now, &mut partial);
                side.pump();
            }
        }
        // Output is bounded by what was asked plus replies to the input
        // (a Pong or Close reply is never larger than twice its cause) plus
        // timer-driven pings and closes.
        let ticks = (now - start).as_millis() as u64 / 100 + 1;
        assert!(
            side.written <= commanded + 2 * input + 20 * ticks + 256,
            "wrote {} for {input} in, {commanded} commanded",
            side.written
        );
    }
    side.finish(now);
}

fn command_size(c: &Command) -> u64 {
    let payload = match c {
        Command::Text(s) => s.len(),
        Command::Binary(b) => b.len(),
        Command::Chunk { data, .. } => data.len(),
        Command::Ping(p) | Command::Pong(p) => p.len(),
        Command::Close { reason, .. } => reason.len() + 2,
    } as u64;
    // Headers: at most 14 bytes per frame of up to send_fragment_size.
    payload + 14 * (payload / 1000 + 1)
}

/// One step of a client/server pair.
#[derive(Debug)]
pub enum PairStep {
    Client(Command),
    Server(Command),
    /// Delivers up to this many bytes from the client to the server.
    ToServer(u16),
    /// Delivers up to this many bytes from the server to the client.
    ToClient(u16),
    Advance(u16),
    /// The transport towards one side breaks: it sees EOF, and gets nothing more.
    Cut {
        to_client: bool,
    },
}

struct Link {
    delivered_eof: bool,
    cut: bool,
}

fn deliver(from: &mut Checked, to: &mut Checked, link: &mut Link, max: usize, now: Instant) {
    if link.cut {
        from.wire.clear();
        return;
    }
    let n = from.wire.len().min(max);
    if n > 0 {
        let mut bytes: Vec<u8> = from.wire.drain(..n).collect();
        to.receive(now, &mut bytes);
    }
    if from.wire.is_empty() && from.shut_down && !link.delivered_eof {
        link.delivered_eof = true;
        to.conn.handle_eof(now);
        to.pump();
    }
}

/// Drives a client/server pair with arbitrary operations, then closes both.
/// Checks: what one side sent arrives intact and in order (a prefix when the
/// transport was cut or a side failed, everything after a clean close), and
/// both sides end closed within the close timeout.
pub fn run_pair(steps: Vec<PairStep>) {
    let now = Instant::now();
    let client = Connection::new(Role::Client, small_config(), now, [1; 32]);
    let mut config = small_config();
    if steps.len().is_multiple_of(3) {
        // Fragments large enough for owned payloads to leave as they are.
        config.send_fragment_size = 4096;
    }
    let server = Connection::new(Role::Server, config, now, [2; 32]);
    run_pair_with(client, server, now, steps);
}

/// The same with connections made elsewhere.
pub fn run_pair_with(client: Connection, server: Connection, start: Instant, steps: Vec<PairStep>) {
    let mut now = start;
    let mut client = Checked::new(client);
    let mut server = Checked::new(server);
    server.whole = true;
    server.lent = steps.len() % 2 == 1;
    server.answer = steps.len() % 5 < 2;
    server.in_place = steps.len() % 7 < 4;
    server.owned_out = steps.len() % 4 < 2;
    let mut to_server = Link {
        delivered_eof: false,
        cut: false,
    };
    let mut to_client = Link {
        delivered_eof: false,
        cut: false,
    };
    let (mut c_partial, mut s_partial) = (None, None);
    for step in steps {
        match step {
            PairStep::Client(c) => {
                if let (_, Some(m)) = c.apply(&mut client.conn, now, &mut c_partial) {
                    client.sent.push(m);
                }
                client.pump();
            }
            PairStep::Server(c) => {
                if let (_, Some(m)) = c.apply(&mut server.conn, now, &mut s_partial) {
                    server.sent.push(m);
                }
                server.pump();
            }
            PairStep::ToServer(n) => {
                deliver(&mut client, &mut server, &mut to_server, n as usize, now)
            }
            PairStep::ToClient(n) => {
                deliver(&mut server, &mut client, &mut to_client, n as usize, now)
            }
            PairStep::Advance(ms) => {
                now += Duration::from_millis(ms as u64 % 2000);
                client.tick(now);
                server.tick(now);
            }
            PairStep::Cut { to_client: tc } => {
                let (link, side) = if tc {
                    (&mut to_client, &mut client)
                } else {
                    (&mut to_server, &mut server)
                };
                if !link.cut {
                    link.cut = true;
                    side.conn.handle_eof(now);
                    side.pump();
                }
            }
        }
    }
    // Wind down: the client closes (if it still can), everything is
    // delivered, and time passes beyond every timeout.
    let _ = client.conn.close(now, CloseCode::NORMAL, "fuzz end");
    client.pump();
    for _ in 0..8 {
        for _ in 0..64 {
            deliver(&mut client, &mut server, &mut to_server, usize::MAX, now);
            deliver(&mut server, &mut client, &mut to_client, usize::MAX, now);
        }
        now += Duration::from_millis(700);
        client.tick(now);
        server.tick(now);
    }
    for (side, name) in [(&client, "client"), (&server, "server")] {
        assert!(side.closed.is_some(), "{name} not closed");
        assert!(side.conn.is_finished(), "{name} not finished");
    }
    check_received(&client.sent, &server.messages);
    check_received(&server.sent, &client.messages);
    let clean = |s: &Checked| s.closed.as_ref().is_some_and(|c| c.is_clean());
    if clean(&client) && clean(&server) && !to_client.cut && !to_server.cut {
        assert_eq!(data_only(&server.messages).len(), client.sent.len());
        assert_eq!(data_only(&client.messages).len(), server.sent.len());
    }
}

fn data_only(msgs: &[Message]) -> Vec<&Message> {
    msgs.iter()
        .filter(|m| matches!(m, Message::Text(_) | Message::Binary(_)))
        .collect()
}

fn check_received(sent: &[Message], received: &[Message]) {
    let got = data_only(received);
    assert!(got.len() <= sent.len(), "received more than was sent");
    for (i, (g, s)) in got.iter().zip(sent).enumerate() {
        assert_eq!(*g, s, "message {i} differs");
    }
}

/// Reads the fuzz input; every read past the end gives zeros / empty.
pub struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Reader { data }
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                *b
            }
            None => 0,
        }
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.data.len());
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        head
    }

    /// A length byte, then that many bytes (0xff: a u16 length).
    pub fn blob(&mut self) -> &'a [u8] {
        let n = match self.u8() {
            0xff => self.u16() as usize,
            n => n as usize,
        };
        self.bytes(n)
    }

    /// A command: a kind byte (mod 6), then its fields.
    pub fn command(&mut self) -> Command {
        match self.u8() % 6 {
            0 => Command::Text(String::from_utf8_lossy(self.blob()).into_owned()),
            1 => Command::Binary(self.blob().to_vec()),
            2 => {
                let flags = self.u8();
                Command::Chunk {
                    text: flags & 1 != 0,
                    fin: flags & 2 != 0,
                    data: self.blob().to_vec(),
                }
            }
            3 => Command::Ping(self.blob().to_vec()),
            4 => Command::Pong(self.blob().to_vec()),
            _ => Command::Close {
                code: self.u16(),
                reason: String::from_utf8_lossy(self.blob()).into_owned(),
            },
        }
    }
}

/// Connection steps. Each step starts with a byte `op`:
/// `0x00..=0xdf`: `op` bytes of peer data follow (`0xdf`: a u16 length);
/// `0xe0..=0xef`: a tick of `(op - 0xdf) * 100` ms;
/// `0xf0..=0xff`: a local command follows.
pub fn decode_steps(data: &[u8]) -> Vec<Step> {
    let mut r = Reader::new(data);
    let mut steps = Vec::new();
    while !r.is_empty() {
        let op = r.u8();
        steps.push(match op {
            0xdf => {
                let n = r.u16() as usize;
                Step::Data(r.bytes(n).to_vec())
            }
            0x00..=0xde => Step::Data(r.bytes(op as usize).to_vec()),
            0xe0..=0xef => Step::Tick((op - 0xdf) as u16 * 100),
            _ => Step::Command(r.command()),
        });
    }
    steps
}

/// Pair steps: a byte `op % 6` picks client command, server command,
/// deliver to server (u16 bytes), deliver to client (u16 bytes), advance
/// (u16 ms), or cut (next byte odd: towards the client).
pub fn decode_pair_steps(data: &[u8]) -> Vec<PairStep> {
    let mut r = Reader::new(data);
    let mut steps = Vec::new();
    while !r.is_empty() {
        steps.push(match r.u8() % 6 {
            0 => PairStep::Client(r.command()),
            1 => PairStep::Server(r.command()),
            2 => PairStep::ToServer(r.u16()),
            3 => PairStep::ToClient(r.u16()),
            4 => PairStep::Advance(r.u16()),
            _ => PairStep::Cut {
                to_client: r.u8() & 1 == 1,
            },
        });
    }
    steps
}
