//! The client handshake fed an arbitrary response in arbitrary splits (with
//! `{accept}` in the input replaced by the right Sec-WebSocket-Accept, so the
//! fuzzer gets past that check): it completes, or returns a documented error;
//! it never panics.
#![no_main]

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use ws_fuzz::Reader;
use ws_proto::handshake::http::accept_key;
use ws_proto::{ClientHandshake, ClientRequest, Config};

fuzz_target!(|data: &[u8]| {
    let mut r = Reader::new(data);
    let mut config = Config::default();
    config.max_head_size = 64 + r.u8() as usize * 8;
    config.max_headers = 1 + (r.u8() % 32) as usize;
    config.max_error_body = r.u8() as usize;
    let split = r.u8() as usize + 1;
    let request = ClientRequest::new("ws://example.com/chat")
        .unwrap()
        .protocol("chat")
        .protocol("superchat");
    let mut hs = ClientHandshake::new(&request, config, [9; 32]).unwrap();
    let accept = accept_key(hs.key().as_bytes());
    let rest = r.bytes(usize::MAX);
    let mut response = Vec::with_capacity(rest.len());
    let mut i = 0;
    while i < rest.len() {
        if rest[i..].starts_with(b"{accept}") {
            response.extend_from_slice(accept.as_bytes());
            i += 8;
        } else {
            response.push(rest[i]);
            i += 1;
        }
    }
    let now = Instant::now();
    for piece in response.chunks(split) {
        match hs.handle_data(now, piece) {
            Ok(None) => {}
            Ok(Some((resp, mut conn))) => {
                assert_eq!(resp.status, 101);
                if let Some(p) = &resp.protocol {
                    assert!(p == "chat" || p == "superchat");
                }
                while conn.poll_event().is_some() {}
                return;
            }
            Err(e) => {
                let _ = e.to_string();
                assert!(hs.handle_data(now, b"x").is_err());
                return;
            }
        }
    }
    let _ = hs.handle_eof();
});
