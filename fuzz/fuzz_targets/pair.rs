//! A client/server pair driven by an arbitrary sequence of operations (send
//! text / binary / chunk, ping, close, deliver some bytes, advance time, cut
//! the transport): what one side sends in full, the other receives intact and
//! in order, and both sides end closed within the close timeout.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ws_fuzz::{decode_pair_steps, run_pair};

fuzz_target!(|data: &[u8]| {
    run_pair(decode_pair_steps(data));
});
