//! A client/server pair on a virtual clock, wired back to back in memory.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use ws_proto::{Assembler, Config, Connection, Event, Message, Role, Transmit};

pub struct Side {
    pub conn: Connection,
    pub events: Vec<Event>,
    pub messages: Vec<Message>,
    asm: Assembler,
    /// Bytes written by this side and not yet delivered to the other.
    pub wire: Vec<u8>,
    pub shut_down: bool,
    /// Whether the other side's bytes reach this side (false: a dead peer).
    pub deaf: bool,
}

impl Side {
    fn new(conn: Connection) -> Self {
        Side {
            conn,
            events: Vec::new(),
            messages: Vec::new(),
            asm: Assembler::new(),
            wire: Vec::new(),
            shut_down: false,
            deaf: false,
        }
    }

    /// Drains events, then output. Returns whether anything happened.
    fn pump(&mut self) -> bool {
        let mut progress = false;
        while let Some(ev) = self.conn.poll_event() {
            progress = true;
            if let Some(m) = self.asm.push(ev.clone()) {
                self.messages.push(m);
            }
            self.events.push(ev);
        }
        loop {
            let mut buf = Vec::new();
            match self.conn.poll_transmit(&mut buf) {
                Transmit::Data(n) => {
                    assert_eq!(n, buf.len());
                    assert!(!self.shut_down, "data after shutdown");
                    self.wire.extend_from_slice(&buf);
                    progress = true;
                }
                Transmit::Shutdown => {
                    assert!(!self.shut_down, "shutdown reported twice");
                    self.shut_down = true;
                    progress = true;
                }
                Transmit::Nothing => break,
            }
        }
        progress
    }

    pub fn closed(&self) -> Option<&ws_proto::CloseInfo> {
        self.events.iter().find_map(|e| match e {
            Event::Closed(c) => Some(c),
            _ => None,
        })
    }
}

pub struct Pair {
    pub now: Instant,
    pub client: Side,
    pub server: Side,
    /// Max bytes delivered per `handle_data` call (to test splits).
    pub chunk: usize,
    eof_to_server: bool,
    eof_to_client: bool,
}

/// Everything `c` has queued to write.
pub fn drain(c: &mut Connection) -> Vec<u8> {
    let mut out = Vec::new();
    while let Transmit::Data(_) = c.poll_transmit(&mut out) {}
    out
}

pub fn seed(n: u8) -> [u8; 32] {
    [n; 32]
}

/// `input` cut at `cuts` (any values, taken modulo its length plus one, in
/// order); the pieces cover it all.
pub fn pieces<'a>(input: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    cuts.sort();
    cuts.push(input.len());
    let mut last = 0;
    cuts.into_iter()
        .map(|cut| {
            let piece = &input[last..cut];
            last = cut;
            piece
        })
        .collect()
}

impl Pair {
    pub fn new() -> Self {
        Self::with_configs(Config::default(), Config::default())
    }

    pub fn with_configs(client: Config, server: Config) -> Self {
        let now = Instant::now();
        Pair {
            now,
            client: Side::new(Connection::new(Role::Client, client, now, seed(7))),
            server: Side::new(Connection::new(Role::Server, server, now, seed(0))),
            chunk: usize::MAX,
            eof_to_server: false,
            eof_to_client: false,
        }
    }

    /// A pair from connections made elsewhere (by a handshake).
    pub fn from_connections(now: Instant, client: Connection, server: Connection) -> Self {
        Pair {
            now,
            client: Side::new(client),
            server: Side::new(server),
            chunk: usize::MAX,
            eof_to_server: false,
            eof_to_client: false,
        }
    }

    fn deliver(
        from: &mut Side,
        to: &mut Side,
        now: Instant,
        chunk: usize,
        eof_sent: &mut bool,
    ) -> bool {
        let mut progress = false;
        if !from.wire.is_empty() {
            let bytes = std::mem::take(&mut from.wire);
            if !to.deaf {
                for piece in bytes.chunks(chunk.max(1)) {
                    to.conn.handle_data(now, piece);
                    to.pump();
                }
            }
            progress = true;
        }
        if from.shut_down && !*eof_sent && !to.deaf {
            *eof_sent = true;
            to.conn.handle_eof(now);
            progress = true;
        }
        progress
    }

    /// Runs both sides until neither has anything to do.
    pub fn run(&mut self) {
        for _ in 0..10_000 {
            let mut progress = self.client.pump() | self.server.pump();
            progress |= Self::deliver(
                &mut self.client,
                &mut self.server,
                self.now,
                self.chunk,
                &mut self.eof_to_server,
            );
            progress |= Self::deliver(
                &mut self.server,
                &mut self.client,
                self.now,
                self.chunk,
                &mut self.eof_to_client,
            );
            if !progress {
                return;
            }
        }
        panic!("pair did not settle");
    }

    /// Advances the virtual clock, firing due timers, then settles.
    pub fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        for _ in 0..100_000 {
            let next = [
                self.client.conn.poll_timeout(),
                self.server.conn.poll_timeout(),
            ]
            .into_iter()
            .flatten()
            .filter(|t| *t <= end)
            .min();
            match next {
                Some(t) => {
                    self.now = self.now.max(t);
                    self.client.conn.handle_timeout(self.now);
                    self.server.conn.handle_timeout(self.now);
                    self.run();
                }
                None => {
                    self.now = end;
                    self.client.conn.handle_timeout(self.now);
                    self.server.conn.handle_timeout(self.now);
                    self.run();
                    return;
                }
            }
        }
        panic!("timers did not settle");
    }
}

thread_local! {
    static COUNTED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the counting allocators of these tests count on this thread:
/// only on the thread of a test that measures (see [`measure`]), so that
/// the harness's own allocations (reporting a test that ended, starting
/// the next) never show in a measurement.
pub fn counted() -> bool {
    COUNTED.with(std::cell::Cell::get)
}

/// One measurement at a time: takes `lock`, and counts this thread's
/// allocations from now on.
pub fn measure(lock: &'static std::sync::Mutex<()>) -> std::sync::MutexGuard<'static, ()> {
    let guard = lock.lock().unwrap_or_else(|e| e.into_inner());
    COUNTED.with(|c| c.set(true));
    guard
}
