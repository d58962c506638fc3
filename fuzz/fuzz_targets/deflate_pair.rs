//! A client/server pair that negotiated permessage-deflate (parameters from
//! the first two bytes), driven like the `pair` target: every message sent
//! in full is inflated back intact and in order, under any splits, context
//! takeover settings and window sizes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ws_fuzz::{decode_pair_steps, deflate_config, deflate_pair, run_pair_with};

fuzz_target!(|data: &[u8]| {
    let [a, b, c, rest @ ..] = data else { return };
    let now = std::time::Instant::now();
    let (client, server) = deflate_pair(now, deflate_config(*a, *c), deflate_config(*b, *c));
    run_pair_with(client, server, now, decode_pair_steps(rest));
});
