//! How a server connection places large frames in its input buffers,
//! checked by counting what is allocated while the input arrives: a large
//! frame that begins after another in the same read gets a buffer of its
//! own sized for it (the first frame's buffer is not grown, and the start of
//! the second not copied, when the rest arrives), and in a steady stream of
//! such frames that buffer is the one the frames before left behind.
//!
//! And how long it keeps buffers grown for large messages: while large
//! messages keep coming and going (an echo of each allocates nothing once
//! warm, its output buffer handed back with `reuse_output`), until they
//! have stopped for `Config::release_buffers_after`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ws_proto::{Config, Connection, Message, MessageRef, Role, Transmit};

mod common;

struct Counting;

/// Bytes ever allocated (a grown block counts its growth).
static ALLOCATED: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if common::counted() {
            ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if common::counted() {
            ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
        }
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if common::counted() {
            ALLOCATED.fetch_add(new_size.saturating_sub(layout.size()), Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The allocator is global: one measurement at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn allocated_by(f: impl FnOnce()) -> usize {
    let before = ALLOCATED.load(Ordering::Relaxed);
    f();
    ALLOCATED.load(Ordering::Relaxed) - before
}

fn wire_of(messages: &[Vec<u8>]) -> Vec<u8> {
    let mut client = Connection::new(
        Role::Client,
        Config::default(),
        Instant::now(),
        common::seed(5),
    );
    for m in messages {
        client.send_binary(m).unwrap();
    }
    let mut wire = Vec::new();
    let _ = client.poll_transmit(&mut wire);
    wire
}

fn binary(c: &mut Connection) -> Bytes {
    match c.poll_message() {
        Some(Message::Binary(d)) => d,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_large_frame_after_another_in_the_same_read_gets_a_buffer_sized_for_it() {
    let _serial = common::measure(&SERIAL);
    let a: Vec<u8> = (0..65536u32).map(|i| (i % 251) as u8).collect();
    let b: Vec<u8> = (0..20480u32).map(|i| (i % 241) as u8).collect();
    let wire = wire_of(&[a.clone(), b.clone()]);
    // A's header is 14 bytes, B's 8: the first read holds A, B's header
    // and 5 000 bytes of B (a header is read ahead with 4 KiB in hand).
    let cut = 14 + a.len() + 8 + 5000;
    let now = Instant::now();
    let mut s = Connection::new(Role::Server, Config::default(), now, common::seed(0));
    s.handle_data(now, &wire[..cut]);
    let got_a = binary(&mut s);
    assert_eq!(got_a, a);
    assert_eq!(s.poll_message(), None);
    // A is still held by the application. The rest of B goes where B's
    // start is, in room reserved when B's header was read: appended after
    // A instead, it would need a new block and a copy of B's start.
    let n = allocated_by(|| s.handle_data(now, &wire[cut..]));
    assert!(n < 1024, "{n} bytes allocated for the rest of B");
    assert_eq!(binary(&mut s), b);
    assert_eq!(s.poll_message(), None);
    assert_eq!(s.buffered_input(), 0);
}

#[test]
fn a_stream_of_large_frames_reuses_the_buffers_it_left_behind() {
    let _serial = common::measure(&SERIAL);
    // 64 KiB messages read 64 KiB at a time: every read ends one frame and
    // begins the next.
    let messages: Vec<Vec<u8>> = (0..24u8)
        .map(|k| (0..65536u32).map(|i| (i as u8) ^ k).collect())
        .collect();
    let wire = wire_of(&messages);
    let now = Instant::now();
    let mut s = Connection::new(Role::Server, Config::default(), now, common::seed(0));
    let mut got = Vec::new();
    let mut late = 0;
    for (i, piece) in wire.chunks(64 << 10).enumerate() {
        let n = allocated_by(|| {
            s.handle_data(now, piece);
            while let Some(m) = s.poll_message() {
                match m {
                    Message::Binary(d) => got.push(d.to_vec()),
                    other => panic!("{other:?}"),
                }
            }
        });
        if i >= 4 {
            late += n;
        }
    }
    assert_eq!(got, messages);
    // After the first few reads the input buffers are reused: what is left
    // is a few small bookkeeping blocks per message (and the copies made
    // above to compare), not 64 KiB or more per frame.
    let copies: usize = messages[4..].iter().map(Vec::len).sum();
    let extra = late.saturating_sub(copies);
    assert!(
        extra < 4096 * messages.len(),
        "{extra} bytes allocated beyond the copies"
    );
}

#[test]
fn a_large_frame_handed_over_in_separate_owned_buffers_is_copied_once() {
    let _serial = common::measure(&SERIAL);
    let a: Vec<u8> = (0..(1u32 << 20)).map(|i| (i % 253) as u8).collect();
    let wire = wire_of(std::slice::from_ref(&a));
    // 16 KiB reads, each into a block of its own (not contiguous).
    let pieces: Vec<bytes::BytesMut> = wire.chunks(16 << 10).map(bytes::BytesMut::from).collect();
    let now = Instant::now();
    let mut s = Connection::new(Role::Server, Config::default(), now, common::seed(0));
    let n = allocated_by(|| {
        for piece in pieces {
            s.handle_bytes(now, piece);
        }
    });
    // Room for the frame once (and the start of what may follow it); joined
    // block by block, the input grows by doubling: about twice the frame.
    assert!(
        n < a.len() + (80 << 10),
        "{n} bytes allocated for a 1 MiB frame"
    );
    assert_eq!(binary(&mut s), a);
    assert_eq!(s.poll_message(), None);
}

/// One binary message of `len` bytes as a client sends it.
fn one_message(len: usize, salt: u8) -> Vec<u8> {
    let mut client = Connection::new(
        Role::Client,
        Config::default(),
        Instant::now(),
        common::seed(5),
    );
    let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8 ^ salt).collect();
    client.send_binary(&payload).unwrap();
    let mut wire = Vec::new();
    let _ = client.poll_transmit(&mut wire);
    wire
}

#[derive(Clone, Copy, Debug)]
enum Receive {
    /// `poll_message`, the payload sent back with `send_binary` and dropped.
    Owned,
    /// `poll_message_reply`, answered from inside the lend.
    Lent,
}

/// A server that echoes as ws-smol does: reads of at most 64 KiB, each
/// message sent back, the output taken with an empty buffer, written, and
/// a large one handed back with `reuse_output`.
struct Echo {
    conn: Connection,
    /// The adapter's output buffer.
    out: Vec<u8>,
    receive: Receive,
}

impl Echo {
    fn new(config: Config, now: Instant, receive: Receive) -> Echo {
        Echo {
            conn: Connection::new(Role::Server, config, now, common::seed(0)),
            out: Vec::new(),
            receive,
        }
    }

    /// Feeds `wire` (one message) and returns what the server wrote back.
    fn echo(&mut self, now: Instant, wire: &[u8]) -> usize {
        let mut echoed = 0;
        for piece in wire.chunks(64 << 10) {
            self.conn.handle_data(now, piece);
            loop {
                let got = match self.receive {
                    Receive::Owned => match self.conn.poll_message() {
                        Some(Message::Binary(b)) => {
                            self.conn.send_binary(&b).unwrap();
                            true
                        }
                        Some(other) => panic!("{other:?}"),
                        None => false,
                    },
                    Receive::Lent => self
                        .conn
                        .poll_message_reply(|m, reply| match m {
                            MessageRef::Binary(b) => reply.send_binary(b).unwrap(),
                            other => panic!("{other:?}"),
                        })
                        .is_some(),
                };
                if !got {
                    break;
                }
            }
        }
        while let Transmit::Data(_) = self.conn.poll_transmit(&mut self.out) {
            echoed += self.out.len();
            // "Written": a large buffer goes back as it was, a small one
            // is kept.
            if self.out.capacity() > 4096 {
                self.conn.reuse_output(now, std::mem::take(&mut self.out));
            } else {
                self.out.clear();
            }
        }
        echoed
    }

    /// Input and output capacity held by the connection and the adapter.
    fn held(&self) -> usize {
        self.conn.input_capacity() + self.conn.output_capacity() + self.out.capacity()
    }
}

#[test]
fn a_stream_of_large_echoes_allocates_nothing_once_warm() {
    let _serial = common::measure(&SERIAL);
    for receive in [Receive::Owned, Receive::Lent] {
        for len in [65536, 100_000, 262_144] {
            let wire = one_message(len, 3);
            let t0 = Instant::now();
            let mut s = Echo::new(Config::default(), t0, receive);
            for i in 0..8u64 {
                // One echo every 10 ms, well within the hold.
                let now = t0 + Duration::from_millis(10 * i);
                let n = allocated_by(|| assert_eq!(s.echo(now, &wire), wire.len() - 4));
                if i >= 2 {
                    // Only small bookkeeping, not 64 KiB or more per echo
                    // (given back after each message, the input buffer
                    // and the output would be allocated anew every time).
                    assert!(n < 1024, "{receive:?} {len}: echo {i} allocated {n} bytes");
                }
            }
        }
    }
}

#[test]
fn large_buffers_are_given_back_once_large_messages_stop() {
    let _serial = common::measure(&SERIAL);
    let hold = Config::default().release_buffers_after;
    for receive in [Receive::Owned, Receive::Lent] {
        let wire = one_message(100_000, 1);
        let t0 = Instant::now();
        let mut s = Echo::new(Config::default(), t0, receive);
        assert_eq!(s.conn.poll_timeout(), None, "no timer before");
        let last = t0 + Duration::from_millis(30);
        for i in 0..4u64 {
            s.echo(t0 + Duration::from_millis(10 * i), &wire);
        }
        assert!(s.held() > 100_000, "{receive:?}: {} held", s.held());
        // The connection asks to be woken when the hold ends: that is
        // the only timer without keepalive.
        assert_eq!(s.conn.poll_timeout(), Some(last + hold), "{receive:?}");
        // Early: nothing changes.
        s.conn
            .handle_timeout(last + hold - Duration::from_millis(1));
        assert!(s.held() > 100_000, "{receive:?}");
        s.conn.handle_timeout(last + hold);
        assert!(
            s.held() <= 4096,
            "{receive:?}: {} held after the hold",
            s.held()
        );
        // Nothing more to wake for (no timer that fires at once, forever).
        assert_eq!(s.conn.poll_timeout(), None, "{receive:?}");
        // And a large message later grows them again, and works.
        let later = last + 2 * hold;
        assert_eq!(s.echo(later, &wire), wire.len() - 4);
        assert_eq!(s.conn.poll_timeout(), Some(later + hold));
    }
}

#[test]
fn small_messages_do_not_keep_large_buffers() {
    let _serial = common::measure(&SERIAL);
    let hold = Config::default().release_buffers_after;
    let large = one_message(100_000, 2);
    let small = one_message(100, 2);
    let t0 = Instant::now();
    let mut s = Echo::new(Config::default(), t0, Receive::Owned);
    s.echo(t0, &large);
    assert!(s.held() > 100_000);
    // Small messages, one every 100 ms for longer than the hold: the large
    // buffers are given back at the first idle point past the hold, with
    // no timer needed, and the small messages never extend the hold.
    let mut t = t0;
    while t < t0 + hold + Duration::from_millis(500) {
        t += Duration::from_millis(100);
        assert_eq!(s.echo(t, &small), small.len() - 4);
        if t < t0 + hold {
            assert_eq!(s.conn.poll_timeout(), Some(t0 + hold));
        }
    }
    assert!(s.held() <= 8192, "{} held", s.held());
    assert_eq!(s.conn.poll_timeout(), None);
}

#[test]
fn zero_hold_gives_large_buffers_back_at_once() {
    let _serial = common::measure(&SERIAL);
    let mut config = Config::default();
    config.release_buffers_after = Duration::ZERO;
    let wire = one_message(100_000, 4);
    let t0 = Instant::now();
    for receive in [Receive::Owned, Receive::Lent] {
        let mut s = Echo::new(config.clone(), t0, receive);
        for i in 0..3u64 {
            let now = t0 + Duration::from_millis(10 * i);
            let n = allocated_by(|| assert_eq!(s.echo(now, &wire), wire.len() - 4));
            // Each echo allocates its buffers anew.
            assert!(n > 100_000, "{receive:?}: {n}");
            assert!(s.held() <= 4096, "{receive:?}: {} held", s.held());
            assert_eq!(s.conn.poll_timeout(), None);
        }
    }
}
