//! Unmasking while copying into a growable buffer, four ways, against
//! `memcpy` and the in-place unmask: the experiment behind BENCHMARKS.md's
//! "Tried and dropped: unmasking straight into the buffer's spare room"
//! (session 7). Prints GB/s per way and size.
//!
//! `taskset -c 1 cargo run --release -p ws-bench --bin unmask_into`

use std::hint::black_box;

use bytes::BytesMut;
use ws_bench::gbs;

const MASK: [u8; 4] = [0x12, 0x34, 0x56, 0x78];

/// Repeats the mask over `N` bytes.
fn pattern<const N: usize>() -> [u8; N] {
    let mut p = [0u8; N];
    for (i, b) in p.iter_mut().enumerate() {
        *b = MASK[i & 3];
    }
    p
}

/// ws-proto's in-place unmask: the ceiling.
fn in_place(buf: &mut [u8]) {
    ws_proto::mask::apply_mask(buf, MASK, 0);
}

/// One store per byte: `extend` from an exact-size iterator, `N` bytes at
/// a time against the repeated mask.
fn extend_chunks<const N: usize, B: Extend<u8>>(dst: &mut B, src: &[u8]) {
    let p = pattern::<N>();
    for c in src.chunks(N) {
        dst.extend(c.iter().zip(&p).map(|(a, m)| a ^ m));
    }
}

fn main() {
    println!("| size | memcpy | ws-proto extend_masked_at into a Vec | the same into a split BytesMut | Vec::extend, 64 B chunks | Vec::extend, 512 B chunks | BytesMut::extend, 512 B | same, split BytesMut | in place |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for size in [16usize << 10, 64 << 10, 256 << 10, 1 << 20] {
        let src: Vec<u8> = (0..size).map(|i| (i * 7) as u8).collect();
        let mut want = src.clone();
        in_place(&mut want);
        let iters = (512 << 20) / size;
        let mut v: Vec<u8> = Vec::with_capacity(size);
        let mut row = Vec::new();
        let mut vec_way = |f: fn(&mut Vec<u8>, &[u8]), check: bool| {
            v.clear();
            f(&mut v, &src);
            assert!(!check || v == want);
            gbs(size, iters, || {
                v.clear();
                f(black_box(&mut v), black_box(&src));
            })
        };
        row.push(vec_way(|d, s| d.extend_from_slice(s), false));
        // ws-proto's way: masked 128 bytes at a time as an array by value
        // (until session 19, 512 bytes into a block on the stack), each
        // block appended.
        row.push(vec_way(
            |d, s| ws_proto::mask::extend_masked_at(d, s, MASK, 0),
            true,
        ));
        // The same into a split BytesMut, as the decoder's input buffers
        // are, after bytes already held.
        {
            let mut b = BytesMut::with_capacity(size + 16);
            b.extend_from_slice(&[0u8; 16]);
            drop(b.split_to(8));
            ws_proto::mask::extend_masked_at(&mut b, &src, MASK, 0);
            assert!(b[8..] == want[..]);
            row.push(gbs(size, iters, || {
                b.truncate(8);
                ws_proto::mask::extend_masked_at(black_box(&mut b), black_box(&src), MASK, 0);
            }));
        }
        row.push(vec_way(extend_chunks::<64, _>, true));
        row.push(vec_way(extend_chunks::<512, _>, true));
        for split in [false, true] {
            let mut b = BytesMut::with_capacity(size + 2);
            if split {
                // Split once: the buffer is shared from then on.
                b.extend_from_slice(&[0, 0]);
                drop(b.split_to(1));
            }
            b.clear();
            extend_chunks::<512, _>(&mut b, &src);
            assert!(b[..] == want[..]);
            let n = if split { iters / 16 + 1 } else { iters };
            row.push(gbs(size, n, || {
                b.clear();
                extend_chunks::<512, _>(black_box(&mut b), black_box(&src));
            }));
        }
        let mut buf = src.clone();
        row.push(gbs(size, iters, || in_place(black_box(&mut buf))));
        let cells: Vec<String> = row.iter().map(|g| format!("{g:.1}")).collect();
        println!("| {} KiB | {} |", size >> 10, cells.join(" | "));
    }
}
