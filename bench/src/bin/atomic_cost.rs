//! What one atomic read-modify-write costs on this host, against a plain
//! load-add-store of the same memory: the price behind BENCHMARKS.md's
//! table R (atomics per echo), which an instruction count does not show.
//! Three runs of each loop; prints nanoseconds per operation.
//!
//! `taskset -c 1 cargo run --release -p ws-bench --bin atomic_cost`

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

const N: u64 = 100_000_000;

fn main() {
    let x = AtomicU64::new(0);
    let mut plain = 0u64;
    for _ in 0..3 {
        let t = Instant::now();
        for _ in 0..N {
            // `lock xadd` on x86-64, one after the other on one line.
            black_box(&x).fetch_add(1, Ordering::Relaxed);
        }
        let atomic = t.elapsed().as_secs_f64() / N as f64 * 1e9;
        let t = Instant::now();
        for _ in 0..N {
            // black_box keeps the load and the store in the loop.
            plain = black_box(plain) + 1;
        }
        let ordinary = t.elapsed().as_secs_f64() / N as f64 * 1e9;
        println!(
            "atomic fetch_add {atomic:.2} ns/op, plain add through memory {ordinary:.2} ns/op"
        );
    }
    black_box((x.load(Ordering::Relaxed), plain));
}
