//! Memory a permessage-deflate connection holds, counted by a global
//! allocator: bounded with context takeover, nothing extra when idle
//! without it. `cargo test -p ws-proto --test deflate_memory -- --nocapture`
//! prints the figures quoted in the `deflate` module documentation.
#![cfg(feature = "deflate")]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use ws_proto::{
    Accept, ClientHandshake, ClientRequest, Config, Connection, DeflateConfig, Event, Incoming,
    ServerHandshake, Transmit,
};

mod common;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if common::counted() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if common::counted() {
            LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        }
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if common::counted() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if common::counted() {
            LIVE.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The allocator is global: one measurement at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn pair(client: Option<DeflateConfig>, server: Option<DeflateConfig>) -> (Connection, Connection) {
    let now = Instant::now();
    let mut cc = Config::default();
    cc.deflate = client;
    let mut sc = Config::default();
    sc.deflate = server;
    let req = ClientRequest::new("ws://localhost/").unwrap();
    let mut hs = ClientHandshake::new(&req, cc, [3; 32]).unwrap();
    let mut sh = ServerHandshake::new(sc);
    let Some(Incoming::Upgrade(up)) = sh.handle_data(hs.request()).unwrap() else {
        panic!()
    };
    let mut resp = Vec::new();
    let server = up.accept(now, &Accept::new(), &mut resp).unwrap();
    let (_, client) = hs.handle_data(now, &resp).unwrap().unwrap();
    (client, server)
}

/// Moves `from`'s output to `to`; the text bytes `to` received.
fn drain(from: &mut Connection, to: &mut Connection) -> usize {
    let mut wire = Vec::new();
    while let Transmit::Data(_) = from.poll_transmit(&mut wire) {}
    to.handle_data(Instant::now(), &wire);
    let mut got = 0;
    while let Some(e) = to.poll_event() {
        if let Event::Text { data, .. } = e {
            got += data.len();
        }
    }
    got
}

/// Bytes a server connection holds after a few compressed messages each
/// way, beyond what it held right after the handshake.
fn held_after_traffic(server_cfg: DeflateConfig, client_cfg: DeflateConfig) -> isize {
    let _g = common::measure(&SERIAL);
    let (mut client, mut server) = pair(Some(client_cfg), Some(server_cfg));
    let msg = "{\"id\": 12345, \"name\": \"a JSON-like message\", \"tags\": [1, 2, 3]} ".repeat(30);
    // The client's side of the traffic is built before counting.
    client.send_text(&msg).unwrap();
    let mut wire = Vec::new();
    while let Transmit::Data(_) = client.poll_transmit(&mut wire) {}
    let before = LIVE.load(Ordering::Relaxed);
    for _ in 0..3 {
        server.handle_data(Instant::now(), &wire);
        while server.poll_event().is_some() {}
        server.send_text(&msg).unwrap();
        let mut out = Vec::new();
        while let Transmit::Data(_) = server.poll_transmit(&mut out) {}
    }
    let held = LIVE.load(Ordering::Relaxed) - before;
    assert!(server.deflate().is_some());
    drop(client);
    held
}

#[test]
fn deflate_memory_per_connection_is_bounded() {
    let on = DeflateConfig {
        threshold: 0,
        ..DeflateConfig::default()
    };
    let takeover = held_after_traffic(on.clone(), on.clone());
    let no_takeover = held_after_traffic(
        DeflateConfig {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            ..on.clone()
        },
        on.clone(),
    );
    let small = held_after_traffic(
        DeflateConfig {
            server_max_window_bits: 9,
            client_max_window_bits: 9,
            ..on.clone()
        },
        on.clone(),
    );
    println!("deflate memory held by a server connection after traffic:");
    println!("  context takeover, 15-bit windows: {takeover} bytes");
    println!("  context takeover, 9-bit windows:  {small} bytes");
    println!("  no context takeover:              {no_takeover} bytes");
    // One compressor and one decompressor: about 420 KiB at 15 bits with
    // zlib-rs (its hash table has a fixed 64 Ki entries).
    assert!(takeover < 512 << 10, "{takeover}");
    assert!(takeover > 200 << 10, "contexts are kept: {takeover}");
    assert!(small < takeover, "{small} vs {takeover}");
    // Contexts are dropped after each message: an idle connection holds
    // no deflate memory.
    assert!(no_takeover < 4 << 10, "{no_takeover}");

    // Before any compressed message, negotiating costs almost nothing.
    let _g = common::measure(&SERIAL);
    let before = LIVE.load(Ordering::Relaxed);
    let (mut c, mut s) = pair(Some(on.clone()), Some(on));
    c.send_uncompressed(ws_proto::MessageKind::Text, b"hi")
        .unwrap();
    assert_eq!(drain(&mut c, &mut s), 2);
    let with = LIVE.load(Ordering::Relaxed) - before;
    drop((c, s));
    let before = LIVE.load(Ordering::Relaxed);
    let (mut c, mut s) = pair(None, None);
    c.send_text("hi").unwrap();
    assert_eq!(drain(&mut c, &mut s), 2);
    let without = LIVE.load(Ordering::Relaxed) - before;
    println!("  a pair before any compressed message: {with} bytes (without deflate: {without})");
    assert!(with - without < 1024, "{with} vs {without}");
}
