//! `poll_message_with` lends a message that lies whole in the input without
//! allocating: counted by a global allocator. (That it reads every input as
//! `poll_message` does is `readers_agree`'s property.)

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use ws_proto::{Config, Connection, Message, MessageRef, Role};

mod common;

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if common::counted() {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if common::counted() {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if common::counted() {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The allocator is global: one measurement at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn allocations() -> usize {
    ALLOCATIONS.load(Ordering::Relaxed)
}

/// A masked frame with FIN set, as a client sends it.
fn masked(opcode: u8, payload: &[u8], key: [u8; 4]) -> Vec<u8> {
    let mut out = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    out
}

#[test]
fn small_messages_are_lent_without_allocating() {
    let _serial = common::measure(&SERIAL);
    let text = "héllo wörld €20 ok";
    let binary: Vec<u8> = (0..20u8).collect();
    let mut input = Vec::new();
    for i in 0..1000u32 {
        let key = i.to_be_bytes();
        if i % 2 == 0 {
            input.extend(masked(0x1, text.as_bytes(), key));
        } else {
            input.extend(masked(0x2, &binary, key));
        }
    }
    let now = Instant::now();
    let run = |lend: bool| {
        let mut conn = Connection::new(Role::Server, Config::default(), now, [0; 32]);
        let mut count = 0;
        let same = |m: MessageRef<'_>| match m {
            MessageRef::Text(t) => t == text,
            MessageRef::Binary(b) => b == binary.as_slice(),
            _ => false,
        };
        let mut before = 0;
        for (i, piece) in input.chunks(1460).enumerate() {
            if i == 3 {
                // After the input buffer's first allocations.
                before = allocations();
            }
            conn.handle_data(now, piece);
            if lend {
                while let Some(ok) = conn.poll_message_with(same) {
                    assert!(ok, "a message differs");
                    count += 1;
                }
            } else {
                while let Some(m) = conn.poll_message() {
                    assert!(same(m.view()), "a message differs");
                    count += 1;
                }
            }
        }
        (allocations() - before, count)
    };
    let (lent_allocations, lent) = run(true);
    let (owned_allocations, owned) = run(false);
    assert_eq!((lent, owned), (1000, 1000));
    // The owned reader allocates each text message's String: the counter
    // sees this test's allocations.
    assert!(owned_allocations >= 500, "owned: {owned_allocations}");
    assert_eq!(lent_allocations, 0);
}

#[test]
fn a_large_message_whole_in_the_input_is_lent_in_place() {
    let _serial = common::measure(&SERIAL);
    let text = "grüße, 世界! ".repeat(70_000);
    let input = masked(0x1, text.as_bytes(), [9, 8, 7, 6]);
    let now = Instant::now();
    let mut conn = Connection::new(Role::Server, Config::default(), now, [0; 32]);
    conn.handle_data(now, &input);
    let before = allocations();
    let same = conn.poll_message_with(|m| m == MessageRef::Text(&text));
    let after = allocations();
    assert_eq!(same, Some(true));
    assert_eq!(after - before, 0, "the text was copied");
    assert_eq!(conn.poll_message_with(|_| ()), None);
}

#[test]
fn a_large_message_arriving_in_pieces_is_lent_whole() {
    let _serial = common::measure(&SERIAL);
    let text = "grüße, 世界! ".repeat(20_000);
    let input = masked(0x1, text.as_bytes(), [1, 2, 3, 4]);
    let now = Instant::now();
    let mut conn = Connection::new(Role::Server, Config::default(), now, [0; 32]);
    let mut seen = Vec::new();
    for piece in input.chunks(65536) {
        conn.handle_data(now, piece);
        while let Some(same) = conn.poll_message_with(|m| m == MessageRef::Text(&text)) {
            seen.push(same);
        }
    }
    assert_eq!(seen, [true]);
}

#[test]
fn a_closure_that_panics_leaves_the_message_to_be_lent_again() {
    let _serial = common::measure(&SERIAL);
    let big = "ß".repeat(5000);
    for text in ["short, masked", big.as_str()] {
        let now = Instant::now();
        let mut conn = Connection::new(Role::Server, Config::default(), now, [0; 32]);
        conn.handle_data(now, &masked(0x1, text.as_bytes(), [0xa5, 0x3c, 0x0f, 0xf0]));
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            conn.poll_message_with(|_| panic!("the application's closure fails"))
        }));
        assert!(r.is_err());
        // Not unmasked a second time, not lost.
        assert_eq!(
            conn.poll_message_with(|m| m == MessageRef::Text(text)),
            Some(true)
        );
    }
}

#[test]
fn a_message_lent_to_a_closure_that_panics_is_then_polled_owned_unmasked_once() {
    let _serial = common::measure(&SERIAL);
    // Sizes on both sides of the small-frame and small-copy bounds, and
    // both kinds: the owned poll copies or splits a payload the lend has
    // already unmasked in place.
    for len in [1, 16, 100, 128, 129, 1000, 5000] {
        let payload: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
        let text = "ab".repeat(len).chars().take(len).collect::<String>();
        let frames = [
            (
                masked(0x2, &payload, [0xa5, 0x3c, 0x0f, 0xf0]),
                Message::Binary(payload.clone().into()),
            ),
            (
                masked(0x1, text.as_bytes(), [0xa5, 0x3c, 0x0f, 0xf0]),
                Message::Text(text.clone()),
            ),
        ];
        for (frame, want) in frames {
            let now = Instant::now();
            let mut conn = Connection::new(Role::Server, Config::default(), now, [0; 32]);
            conn.handle_data(now, &frame);
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                conn.poll_message_with(|_| panic!("the application's closure fails"))
            }));
            assert!(r.is_err());
            assert_eq!(conn.poll_message(), Some(want), "{len} bytes");
            assert_eq!(conn.poll_message(), None);
        }
    }
}

/// A masked frame with FIN and opcode as given (`b0`), as a client sends it.
fn masked_b0(b0: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = masked(b0 & 0x0f, payload, [7, 7, 1, 2]);
    f[0] = b0;
    f
}

#[test]
fn a_closure_that_panics_on_a_built_message_gets_it_again() {
    let _serial = common::measure(&SERIAL);
    let now = Instant::now();
    let panics = |conn: &mut Connection| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            conn.poll_message_with(|_| panic!("the application's closure fails"))
        }))
        .is_err()
    };
    // A fragmented message (built, then lent), then a Ping: each is lent
    // again after a panic, by either reader.
    let mut conn = Connection::new(Role::Server, Config::default(), now, [0; 32]);
    let mut input = masked_b0(0x01, b"hel");
    input.extend(masked_b0(0x80, b"lo"));
    input.extend(masked_b0(0x89, b"p"));
    conn.handle_data(now, &input);
    assert!(panics(&mut conn));
    assert_eq!(
        conn.poll_message_with(|m| m == MessageRef::Text("hello")),
        Some(true)
    );
    assert!(panics(&mut conn));
    assert_eq!(
        conn.poll_message(),
        Some(ws_proto::Message::Ping(vec![b'p'].into()))
    );
    // Text that `handle_data` built straight into a String (after a
    // `poll_message`), lent from there; the event reader gets it too.
    let mut conn = Connection::new(Role::Server, Config::default(), now, [0; 32]);
    assert!(conn.poll_message().is_none());
    let big = "ß".repeat(5000);
    conn.handle_data(now, &masked(0x1, big.as_bytes(), [1, 2, 3, 4]));
    assert!(panics(&mut conn));
    assert_eq!(
        conn.poll_event(),
        Some(ws_proto::Event::Text {
            data: big.clone().into(),
            fin: true
        })
    );
}

#[test]
fn an_idle_lending_connection_gives_back_its_read_buffer() {
    let _serial = common::measure(&SERIAL);
    let now = Instant::now();
    let mut conn = Connection::new(Role::Server, Config::default(), now, [0; 32]);
    let payload = vec![5u8; 60_000];
    let mut lent = 0;
    for piece in masked(0x2, &payload, [3, 1, 4, 1]).chunks(16 << 10) {
        conn.handle_data(now, piece);
        while let Some(same) = conn.poll_message_with(|m| m == MessageRef::Binary(&payload)) {
            assert!(same);
            lent += 1;
        }
    }
    assert_eq!(lent, 1);
    assert_eq!(conn.buffered_input(), 0);
    // Kept for the next large message a while, then given back at the
    // connection's timer.
    let release = conn.poll_timeout().expect("a timer to give it back");
    assert_eq!(release, now + Config::default().release_buffers_after);
    conn.handle_timeout(release);
    assert!(
        conn.input_capacity() <= 4096,
        "kept {} bytes",
        conn.input_capacity()
    );
}
