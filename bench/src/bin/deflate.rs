//! The permessage-deflate rows: for each corpus of ws_bench::deflate_corpus,
//! compress every message on a client connection and inflate it on a
//! server connection (negotiated by a real handshake, context takeover,
//! level 6, 15-bit windows). Prints `NAME SIZE_RATIO MB_PER_S`.

use std::time::Instant;

use ws_proto::{
    Accept, ClientHandshake, ClientRequest, Config, Connection, DeflateConfig, Event, Incoming,
    ServerHandshake, Transmit,
};

fn pair() -> (Connection, Connection) {
    let now = Instant::now();
    let mut cfg = Config::default();
    cfg.deflate = Some(DeflateConfig {
        threshold: 0,
        ..DeflateConfig::default()
    });
    let req = ClientRequest::new("ws://localhost/").unwrap();
    let mut hs = ClientHandshake::new(&req, cfg.clone(), [1; 32]).unwrap();
    let mut sh = ServerHandshake::new(cfg);
    let Some(Incoming::Upgrade(up)) = sh.handle_data(hs.request()).unwrap() else {
        panic!("no upgrade")
    };
    let mut resp = Vec::new();
    let server = up.accept(now, &Accept::new(), &mut resp).unwrap();
    let (_, client) = hs.handle_data(now, &resp).unwrap().unwrap();
    assert!(client.deflate().is_some());
    (client, server)
}

fn main() {
    for (name, messages) in ws_bench::deflate_corpus() {
        let raw: usize = messages.iter().map(|m| m.len()).sum();
        let mut best = f64::MAX;
        let mut wire_total = 0;
        for _ in 0..5 {
            let (mut client, mut server) = pair();
            let now = Instant::now();
            let start = Instant::now();
            let mut wire = Vec::new();
            let mut payload = 0usize;
            let mut got = 0usize;
            for m in &messages {
                client.send_text(m).unwrap();
                wire.clear();
                let _ = client.poll_transmit(&mut wire);
                // Payload bytes: the frame minus its header (2 or 4 bytes
                // plus the 4-byte mask).
                let header = if wire[1] & 0x7f == 126 { 8 } else { 6 };
                payload += wire.len() - header;
                server.handle_data(now, &wire);
                while let Some(ev) = server.poll_event() {
                    if let Event::Text { data, .. } = ev {
                        got += data.len();
                    }
                }
                let mut out = Vec::new();
                while let Transmit::Data(_) = server.poll_transmit(&mut out) {}
            }
            assert_eq!(got, raw);
            best = best.min(start.elapsed().as_secs_f64());
            wire_total = payload;
        }
        println!(
            "{name} {:.4} {:.1}",
            wire_total as f64 / raw as f64,
            raw as f64 / best / 1e6
        );
    }
}
