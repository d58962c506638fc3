//! How a server connection places large frames in its input buffers,
//! checked by counting what is allocated while the input arrives: a large
//! frame that begins after another in the same read gets a buffer of its
//! own sized for it (the first frame's buffer is not grown, and the start of
//! the second not copied, when the rest arrives), and in a steady stream of
//! such frames that buffer is the one the frames before left behind.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use bytes::Bytes;
use ws_proto::{Config, Connection, Message, Role};

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
