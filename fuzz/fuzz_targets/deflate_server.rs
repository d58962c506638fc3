//! A server connection with permessage-deflate negotiated, fed arbitrary
//! bytes, ticks and commands: compressed frames with garbage DEFLATE data,
//! RSV1 where it does not belong, bombs against the small message limit.
//! Never a panic, never more than the limits in memory.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ws_fuzz::{decode_steps, deflate_config, deflate_pair, run_connection_with};

fuzz_target!(|data: &[u8]| {
    let [a, rest @ ..] = data else { return };
    let now = std::time::Instant::now();
    let (_, server) = deflate_pair(now, deflate_config(*a, 0x60), deflate_config(*a, 0x60));
    run_connection_with(server, now, decode_steps(rest));
});
