//! ws-proto's `mask_into` (the copy and XOR in one pass that text
//! decoding runs block by block) against the 8-byte-word loop it used
//! until session 28 and `memcpy`, for blocks of 1-16 KiB: the experiment
//! behind BENCHMARKS.md's "Text unmasked 128 bytes at a time" (session
//! 28). Prints GB/s per way and size, each row measured twice.
//!
//! `taskset -c 1 cargo run --release -p ws-bench --bin mask_into`

use std::hint::black_box;

use ws_bench::gbs;

const MASK: [u8; 4] = [0x12, 0x34, 0x56, 0x78];

/// The loop before session 28: 8-byte words, then single bytes.
fn words(dst: &mut [u8], src: &[u8], mask: [u8; 4]) {
    let w = u64::from(u32::from_ne_bytes(mask));
    let word = w | w << 32;
    let mut d = dst.chunks_exact_mut(8);
    let mut s = src.chunks_exact(8);
    for (d, s) in (&mut d).zip(&mut s) {
        let mut w = [0u8; 8];
        w.copy_from_slice(s);
        d.copy_from_slice(&(u64::from_ne_bytes(w) ^ word).to_ne_bytes());
    }
    for (i, (d, s)) in d.into_remainder().iter_mut().zip(s.remainder()).enumerate() {
        *d = s ^ mask[i & 3];
    }
}

fn main() {
    println!("| block | 8-byte words | ws-proto `mask_into` | memcpy |");
    println!("|---|---|---|---|");
    for size in [1usize << 10, 4 << 10, 16 << 10] {
        let src: Vec<u8> = (0..size).map(|i| (i * 7) as u8).collect();
        let (mut a, mut b) = (vec![0u8; size], vec![0u8; size]);
        words(&mut a, &src, MASK);
        ws_proto::mask::mask_into(&mut b, &src, MASK, 0);
        assert_eq!(a, b);
        let iters = (2usize << 30) / size;
        for _ in 0..2 {
            // The mask and phase as the decoder has them: known at run time.
            let x = gbs(size, iters, || {
                words(black_box(&mut a), black_box(&src), black_box(MASK))
            });
            let y = gbs(size, iters, || {
                ws_proto::mask::mask_into(
                    black_box(&mut b),
                    black_box(&src),
                    black_box(MASK),
                    black_box(0),
                )
            });
            let z = gbs(size, iters, || {
                black_box(&mut b).copy_from_slice(black_box(&src))
            });
            println!("| {} KiB | {x:.1} | {y:.1} | {z:.1} |", size >> 10);
        }
    }
}
