//! The server handshake fed arbitrary bytes in arbitrary splits: it accepts,
//! or returns a documented error with an HTTP answer; it never holds more
//! than the head limit plus one piece; the accepted connection gets the bytes
//! after the head.
#![no_main]

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use ws_fuzz::Reader;
use ws_proto::{Accept, Config, Incoming, ServerHandshake};

fuzz_target!(|data: &[u8]| {
    let mut r = Reader::new(data);
    let mut config = Config::default();
    config.max_head_size = 64 + r.u8() as usize * 8;
    config.max_headers = 1 + (r.u8() % 32) as usize;
    let mut hs = ServerHandshake::new(config);
    let mut fed = 0usize;
    while !r.is_empty() {
        let n = r.u8() as usize + 1;
        let piece = r.bytes(n);
        fed += piece.len();
        match hs.handle_data(piece) {
            Ok(None) => continue,
            Ok(Some(Incoming::Upgrade(u))) => {
                assert!(!u.key().is_empty());
                let offered = u.protocols().first().cloned();
                let mut out = Vec::new();
                let accept = match offered {
                    Some(p) => Accept::new().protocol(p),
                    None => Accept::new(),
                };
                let mut conn = u
                    .accept(Instant::now(), &accept, &mut out)
                    .expect("an offered protocol is accepted");
                assert!(out.starts_with(b"HTTP/1.1 101 "));
                assert!(conn.buffered_input() <= fed);
                while conn.poll_event().is_some() {}
                return;
            }
            Ok(Some(Incoming::Http(req))) => {
                let mut out = Vec::new();
                req.respond(404, &[], b"not here", &mut out)
                    .expect("a valid response");
                assert!(out.starts_with(b"HTTP/1.1 404 "));
                return;
            }
            Err(e) => {
                let status = e
                    .http_status()
                    .expect("every server-side error has a status");
                let mut out = Vec::new();
                e.write_response(&mut out);
                assert!(out.starts_with(format!("HTTP/1.1 {status} ").as_bytes()));
                // Later input is refused, not parsed.
                assert!(hs.handle_data(b"\r\n\r\n").is_err());
                return;
            }
        }
    }
    let _ = hs.handle_eof();
});
