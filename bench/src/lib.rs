//! Shared pieces of the benchmark binaries: memory figures a server prints
//! on request, and the minimal HTTP upgrade the load generator and the
//! hand-written peers speak.

use std::io::{BufRead, Write};

/// Bytes the process has in use from malloc (glibc's `mallinfo2`: heap
/// chunks and mmapped blocks), and its
/// resident set size.
pub fn memory() -> (u64, u64) {
    // SAFETY: mallinfo2 only reads the allocator's counters.
    let info = unsafe { libc::mallinfo2() };
    // In-use heap chunks plus blocks malloc served with mmap (128 KiB and
    // more: zlib contexts, large read buffers).
    let heap = (info.uordblks + info.hblkhd) as u64;
    let rss = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap_or(0)
        * 4096;
    (heap, rss)
}

/// Starts the control thread of a benchmark server: on the line `mem` it
/// prints `mem HEAP RSS`; when stdin closes it ends the process, so a
/// harness that dies leaves no server behind.
pub fn control_thread() {
    std::thread::spawn(|| {
        let stdin = std::io::stdin();
        for line in stdin.lock().lines() {
            let Ok(line) = line else { break };
            if line.trim() == "mem" {
                let (heap, rss) = memory();
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "mem {heap} {rss}");
                let _ = out.flush();
            }
        }
        std::process::exit(0);
    });
}

/// Prints the listening port for the harness.
pub fn announce(port: u16) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "listening {port}");
    let _ = out.flush();
}

/// The upgrade request the load generator sends (fixed key).
pub fn upgrade_request(host: &str, extensions: Option<&str>) -> Vec<u8> {
    let mut r = format!(
        "GET / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    );
    if let Some(e) = extensions {
        r.push_str(&format!("Sec-WebSocket-Extensions: {e}\r\n"));
    }
    r.push_str("\r\n");
    r.into_bytes()
}

/// The 101 answer to a request head, for the hand-written fastwebsockets
/// peer (fastwebsockets' own handshake needs hyper).
pub fn upgrade_response(request: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(request).ok()?;
    let key = text.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim()
            .eq_ignore_ascii_case("sec-websocket-key")
            .then(|| v.trim().to_owned())
    })?;
    Some(
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\n\r\n",
            ws_proto::handshake::http::accept_key(key.as_bytes())
        )
        .into_bytes(),
    )
}

/// Where an HTTP head ends (after the blank line), if it has.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// A masked client frame (fixed mask key) with `payload`.
pub fn client_frame(opcode: u8, rsv1: bool, payload: &[u8]) -> Vec<u8> {
    let mask = [0x12, 0x34, 0x56, 0x78];
    let mut f = vec![0x80 | (rsv1 as u8) << 6 | opcode];
    let n = payload.len();
    if n < 126 {
        f.push(0x80 | n as u8);
    } else if n < 65536 {
        f.push(0x80 | 126);
        f.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        f.push(0x80 | 127);
        f.extend_from_slice(&(n as u64).to_be_bytes());
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// The length of the unmasked frame a server sends back for `n` payload
/// bytes.
pub fn server_frame_len(n: usize) -> usize {
    n + if n < 126 {
        2
    } else if n < 65536 {
        4
    } else {
        10
    }
}

/// The text-heavy corpus of the permessage-deflate rows, generated the same
/// way by scripts/node/deflate_bench.js: (name, messages).
pub fn deflate_corpus() -> Vec<(&'static str, Vec<String>)> {
    const WORDS: [&str; 24] = [
        "the",
        "socket",
        "message",
        "frame",
        "server",
        "client",
        "compress",
        "window",
        "context",
        "takeover",
        "payload",
        "stream",
        "buffer",
        "latency",
        "bytes",
        "close",
        "ping",
        "json",
        "record",
        "value",
        "memory",
        "limit",
        "deflate",
        "connection",
    ];
    let mut seed: u32 = 12345;
    let mut next = move || {
        seed = seed.wrapping_mul(1103515245).wrapping_add(12345);
        (seed >> 16) & 0x7fff
    };
    let json = (0..2000)
        .map(|i| {
            let tags: Vec<String> = (0..(next() % 5 + 1))
                .map(|_| format!("\"{}\"", WORDS[(next() % 24) as usize]))
                .collect();
            format!(
                "{{\"id\":{i},\"user\":\"user{}\",\"action\":\"{}\",\"score\":{},\"tags\":[{}],\"note\":\"{} {} {}\"}}",
                next() % 1000,
                WORDS[(next() % 24) as usize],
                next() % 10000,
                tags.join(","),
                WORDS[(next() % 24) as usize],
                WORDS[(next() % 24) as usize],
                WORDS[(next() % 24) as usize]
            )
        })
        .collect();
    let prose = (0..500)
        .map(|_| {
            let n = 200 + next() % 400;
            let words: Vec<&str> = (0..n).map(|_| WORDS[(next() % 24) as usize]).collect();
            words.join(" ")
        })
        .collect();
    vec![("json", json), ("prose", prose)]
}

/// GB/s of `f` over `size` bytes, run `iters` times after one run to warm
/// up.
pub fn gbs(size: usize, iters: usize, mut f: impl FnMut()) -> f64 {
    f();
    let t = std::time::Instant::now();
    for _ in 0..iters {
        f();
    }
    (size * iters) as f64 / t.elapsed().as_secs_f64() / 1e9
}
