//! A client-side connection fed arbitrary bytes in arbitrary splits, with
//! arbitrary timer ticks and local commands: no panic, no event after Closed,
//! output and buffering bounded by the configured limits, closed and finished
//! within the close timeout after EOF.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ws_fuzz::{decode_steps, run_connection};
use ws_proto::Role;

fuzz_target!(|data: &[u8]| {
    run_connection(Role::Client, decode_steps(data));
});
