//! Masking (RFC 6455 §5.3), word at a time so the compiler vectorises it.

/// XORs `buf` with `mask`, starting at byte `offset` of the mask cycle.
///
/// "Octet i of the transformed data ("transformed-octet-i") is the XOR of
/// octet i of the original data ("original-octet-i") with octet at index
/// i modulo 4 of the masking key ("masking-key-octet-j")" (§5.3). `offset` is
/// the number of payload bytes of the frame already masked before `buf`, so a
/// payload can be unmasked piece by piece. Applying the same mask twice gives
/// the input back.
#[inline]
pub fn apply_mask(buf: &mut [u8], mask: [u8; 4], offset: usize) {
    let (rot, word) = mask_rotated_word(mask, offset);
    if buf.len() < SHORT {
        return apply_mask_short(buf, rot, word);
    }
    // 64 bytes a turn: the compiler unrolls the inner loop into whole
    // vector registers, so the loop's own instructions are paid once per
    // 64 bytes rather than per 16 or 32.
    let mut blocks = buf.chunks_exact_mut(64);
    for block in &mut blocks {
        xor_words(block, word);
    }
    let rest = blocks.into_remainder();
    let words = rest.len() & !7;
    let (head, tail) = rest.split_at_mut(words);
    xor_words(head, word);
    for (i, b) in tail.iter_mut().enumerate() {
        *b ^= rot[i & 3];
    }
}

/// XORs each whole 8-byte word of `buf` with `word`.
#[inline(always)]
fn xor_words(buf: &mut [u8], word: u64) {
    for chunk in buf.chunks_exact_mut(8) {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(w) ^ word).to_ne_bytes());
    }
}

/// Payloads shorter than this are masked by [`apply_mask_short`]: the
/// vectorised loop's setup costs more than such a payload's few words.
const SHORT: usize = 32;

/// [`apply_mask`] for fewer than [`SHORT`] bytes, straight-line: the
/// last 8 bytes as one word, and before them the whole words from the
/// start that it does not wholly cover (under 8 bytes: the last 4 and the
/// first 4). The last word is read before the others change and written
/// after them, masked from the original bytes, so the bytes both cover end
/// up masked once. (A loop of words, then 4 bytes, then single bytes cost a
/// 16-byte payload 52 instructions with the call.)
#[inline]
fn apply_mask_short(buf: &mut [u8], rot: [u8; 4], word: u64) {
    let n = buf.len();
    if let Some(last) = buf.last_chunk::<8>() {
        let (_, last_word) = mask_rotated_word(rot, n - 8);
        let last = (u64::from_ne_bytes(*last) ^ last_word).to_ne_bytes();
        for at in [0, 8, 16] {
            if n > at + 8 {
                if let Some(w) = buf
                    .get_mut(at..at + 8)
                    .and_then(|w| <&mut [u8; 8]>::try_from(w).ok())
                {
                    *w = (u64::from_ne_bytes(*w) ^ word).to_ne_bytes();
                }
            }
        }
        if let Some(w) = buf.last_chunk_mut::<8>() {
            *w = last;
        }
    } else if let Some(last) = buf.last_chunk::<4>() {
        let (last_rot, _) = mask_rotated_word(rot, n - 4);
        let last = (u32::from_ne_bytes(*last) ^ u32::from_ne_bytes(last_rot)).to_ne_bytes();
        if let Some(w) = buf.first_chunk_mut::<4>() {
            *w = (u32::from_ne_bytes(*w) ^ u32::from_ne_bytes(rot)).to_ne_bytes();
        }
        if let Some(w) = buf.last_chunk_mut::<4>() {
            *w = last;
        }
    } else {
        for (b, m) in buf.iter_mut().zip(rot) {
            *b ^= m;
        }
    }
}

/// The (rotated) mask twice over, for a word at a time.
#[inline]
fn mask_word(rot: [u8; 4]) -> u64 {
    u64::from_ne_bytes([
        rot[0], rot[1], rot[2], rot[3], rot[0], rot[1], rot[2], rot[3],
    ])
}

/// The mask as seen from payload byte `offset`.
#[inline]
fn mask_rotated(mask: [u8; 4], offset: usize) -> [u8; 4] {
    let s = offset & 3;
    [
        mask[s],
        mask[(s + 1) & 3],
        mask[(s + 2) & 3],
        mask[(s + 3) & 3],
    ]
}

/// [`mask_rotated`] and [`mask_word`] in registers, for
/// [`apply_mask`]: a rotation instead of four byte loads and a dozen
/// shifts, which would cost a short payload more than its XOR. (The
/// block-wise copies keep the byte form: with it the compiler lays out
/// their vector loops better.)
#[inline]
fn mask_rotated_word(mask: [u8; 4], offset: usize) -> ([u8; 4], u64) {
    let rot = u32::from_le_bytes(mask)
        .rotate_right(8 * (offset & 3) as u32)
        .to_le_bytes();
    // The same four bytes in both halves, whatever the byte order.
    let r = u64::from(u32::from_ne_bytes(rot));
    (rot, r | r << 32)
}

/// Inputs shorter than this are copied, then masked in place.
const BLOCK: usize = 512;

/// Appends `src` masked with `mask` (starting at byte `offset` of the mask
/// cycle) to `dst`.
///
/// Short inputs are copied and then masked in place. Longer ones are masked
/// 128 bytes at a time and each block appended
/// ([`ByteSink::append_masked`]): `src` is read once and `dst` written
/// once (but for the last bytes, fewer than a block), where copying first
/// and masking in place would pass over `dst` twice. The same code serves
/// a `BytesMut` ([`extend_masked_at`]), which the input buffers are.
#[inline]
pub fn extend_masked(dst: &mut Vec<u8>, src: &[u8], mask: [u8; 4]) {
    if src.len() < BLOCK {
        // Small frames (most of them): inlined, phase 0.
        append_then_mask(dst, src, mask, 0);
    } else {
        extend_masked_at(dst, src, mask, 0);
    }
}

/// Appends `src`, then masks it in place: the way for short inputs.
#[inline]
fn append_then_mask<B: ByteSink>(dst: &mut B, src: &[u8], mask: [u8; 4], offset: usize) {
    let start = dst.held();
    dst.append(src);
    apply_mask(dst.tail_mut(start), mask, offset);
}

/// Writes `src` masked with `mask` (from byte `offset` of the mask cycle)
/// into `dst`, which must have the same length: a copy and the XOR in one
/// pass.
///
/// 128 bytes at a time, each block masked as an array by value and
/// stored whole (as [`ByteSink::append_masked`] does), then 8 bytes at a
/// time: for 1-16 KiB 1.0-1.6x the speed of 8-byte words alone (median
/// 1.4x, the `mask_into` bench), and 3-4% fewer instructions to decode
/// 16-64 KiB of text (BENCHMARKS.md, session 28).
#[inline]
pub fn mask_into(dst: &mut [u8], src: &[u8], mask: [u8; 4], offset: usize) {
    assert_eq!(dst.len(), src.len());
    let rot = mask_rotated(mask, offset);
    let word = mask_word(rot);
    let mut d = dst.chunks_exact_mut(MASK_BLOCK);
    let mut s = src.chunks_exact(MASK_BLOCK);
    if src.len() >= MASK_BLOCK {
        let pattern = mask_pattern(word);
        for (d, s) in (&mut d).zip(&mut s) {
            let Ok(mut block) = <[u8; MASK_BLOCK]>::try_from(s) else {
                unreachable!("chunks_exact")
            };
            for i in 0..MASK_BLOCK {
                block[i] ^= pattern[i];
            }
            d.copy_from_slice(&block);
        }
    }
    // Every block is a multiple of 4 bytes: the phase is unchanged.
    let (dst, src) = (d.into_remainder(), s.remainder());
    let mut d = dst.chunks_exact_mut(8);
    let mut s = src.chunks_exact(8);
    for (d, s) in (&mut d).zip(&mut s) {
        let mut w = [0u8; 8];
        w.copy_from_slice(s);
        d.copy_from_slice(&(u64::from_ne_bytes(w) ^ word).to_ne_bytes());
    }
    for (i, (d, s)) in d.into_remainder().iter_mut().zip(s.remainder()).enumerate() {
        *d = s ^ rot[i & 3];
    }
}

/// The mask word repeated over [`MASK_BLOCK`] bytes.
#[inline]
fn mask_pattern(word: u64) -> [u8; MASK_BLOCK] {
    let word = word.to_ne_bytes();
    let mut pattern = [0u8; MASK_BLOCK];
    for w in pattern.chunks_exact_mut(8) {
        w.copy_from_slice(&word);
    }
    pattern
}

/// A growable byte buffer [`extend_masked_at`] can append to.
pub trait ByteSink {
    /// Bytes held.
    fn held(&self) -> usize;
    /// Room for `n` more bytes.
    fn reserve_more(&mut self, n: usize);
    /// Appends `s`.
    fn append(&mut self, s: &[u8]);
    /// The bytes from `from` on.
    fn tail_mut(&mut self, from: usize) -> &mut [u8];
    /// Appends `src` masked with `rot` (the mask from `src[0]`'s phase),
    /// with room reserved: [`MASK_BLOCK`] bytes at a time, each masked as
    /// an array by value and appended whole, so each byte of the whole
    /// blocks is stored once into `self`; the last bytes (fewer than a
    /// block) are appended, then masked in place.
    fn append_masked(&mut self, src: &[u8], rot: [u8; 4])
    where
        Self: Sized,
    {
        let pattern = mask_pattern(mask_word(rot));
        let mut blocks = src.chunks_exact(MASK_BLOCK);
        for chunk in &mut blocks {
            let Ok(mut block) = <[u8; MASK_BLOCK]>::try_from(chunk) else {
                unreachable!("chunks_exact")
            };
            for i in 0..MASK_BLOCK {
                block[i] ^= pattern[i];
            }
            self.append(&block);
        }
        // Every block is a multiple of 4 bytes, so the mask phase is unchanged.
        append_then_mask(self, blocks.remainder(), rot, 0);
    }
}

/// Bytes masked at a time by [`ByteSink::append_masked`] and
/// [`mask_into`]: eight 16-byte
/// registers, so that the block can stay in registers until it is
/// appended (it does on x86-64 with SSE2, judged by the speed: through a
/// 512-byte block on the stack, each byte was stored twice, and
/// `extend_masked_at` ran at 42-55 GB/s for 16 KiB-1 MiB against 60-77
/// now on session 19's host; `bench/src/bin/unmask_into.rs`).
const MASK_BLOCK: usize = 128;

macro_rules! byte_sink {
    ($t:ty) => {
        impl ByteSink for $t {
            #[inline]
            fn held(&self) -> usize {
                self.len()
            }
            #[inline]
            fn reserve_more(&mut self, n: usize) {
                self.reserve(n);
            }
            #[inline]
            fn append(&mut self, s: &[u8]) {
                self.extend_from_slice(s);
            }
            #[inline]
            fn tail_mut(&mut self, from: usize) -> &mut [u8] {
                &mut self[from..]
            }
        }
    };
}

byte_sink!(Vec<u8>);
byte_sink!(bytes::BytesMut);

/// [`extend_masked`] into any [`ByteSink`], from byte `offset` of the mask
/// cycle.
pub fn extend_masked_at<B: ByteSink>(dst: &mut B, src: &[u8], mask: [u8; 4], offset: usize) {
    if src.len() < BLOCK {
        append_then_mask(dst, src, mask, offset);
        return;
    }
    dst.reserve_more(src.len());
    dst.append_masked(src, mask_rotated(mask, offset));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(buf: &mut [u8], mask: [u8; 4], offset: usize) {
        for (i, b) in buf.iter_mut().enumerate() {
            *b ^= mask[(i + offset) % 4];
        }
    }

    #[test]
    fn matches_bytewise_definition_for_all_lengths_and_offsets() {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        // The short path, the 64-byte blocks and every remainder after them.
        for len in (0..200).chain([511, 1024, 1031]) {
            for offset in 0..8 {
                let data: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(31)).collect();
                let mut a = data.clone();
                let mut b = data.clone();
                apply_mask(&mut a, mask, offset);
                naive(&mut b, mask, offset);
                assert_eq!(a, b, "len {len} offset {offset}");
            }
        }
    }

    #[test]
    fn extend_masked_matches_the_definition_across_block_sizes() {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        // Around the short-input threshold (512) and whole blocks of 128.
        for len in [
            0,
            1,
            7,
            511,
            512,
            513,
            640,
            641,
            767,
            1024,
            1031,
            1536 + 2,
            4096 + 3,
        ] {
            for offset in 0..4 {
                let data: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
                let mut want = data.clone();
                naive(&mut want, mask, offset);
                // Both sinks, appended after bytes already held.
                let mut got = vec![9u8; 3];
                extend_masked_at(&mut got, &data, mask, offset);
                assert_eq!(&got[..3], &[9, 9, 9]);
                assert_eq!(&got[3..], &want[..], "len {len} offset {offset}");
                let mut got = bytes::BytesMut::from(&[9u8; 3][..]);
                extend_masked_at(&mut got, &data, mask, offset);
                assert_eq!(&got[..3], &[9, 9, 9]);
                assert_eq!(&got[3..], &want[..], "len {len} offset {offset}");
            }
        }
    }

    #[test]
    fn mask_into_matches_the_definition() {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        // Short, then on both sides of one and two whole blocks, then
        // many blocks and a remainder.
        let lens = (0..40).chain(MASK_BLOCK - 9..MASK_BLOCK + 9);
        for len in lens
            .chain(2 * MASK_BLOCK - 1..2 * MASK_BLOCK + 2)
            .chain([1000])
        {
            for offset in 0..8 {
                let data: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(31)).collect();
                let mut want = data.clone();
                naive(&mut want, mask, offset);
                let mut got = vec![0u8; len];
                mask_into(&mut got, &data, mask, offset);
                assert_eq!(got, want, "len {len} offset {offset}");
            }
        }
    }

    #[test]
    fn piecewise_equals_whole() {
        let mask = [1, 2, 3, 4];
        let data: Vec<u8> = (0..100u8).collect();
        let mut whole = data.clone();
        apply_mask(&mut whole, mask, 0);
        let mut pieces = data.clone();
        let (a, rest) = pieces.split_at_mut(7);
        apply_mask(a, mask, 0);
        let (b, c) = rest.split_at_mut(13);
        apply_mask(b, mask, 7);
        apply_mask(c, mask, 20);
        assert_eq!(whole, pieces);
    }

    #[test]
    fn rfc_5_7_masked_hello() {
        // "A single-frame masked text message": 0x81 0x85 0x37 0xfa 0x21 0x3d 0x7f 0x9f 0x4d 0x51 0x58
        let mut payload = [0x7f, 0x9f, 0x4d, 0x51, 0x58];
        apply_mask(&mut payload, [0x37, 0xfa, 0x21, 0x3d], 0);
        assert_eq!(&payload, b"Hello");
        let mut out = Vec::new();
        extend_masked(&mut out, b"Hello", [0x37, 0xfa, 0x21, 0x3d]);
        assert_eq!(out, [0x7f, 0x9f, 0x4d, 0x51, 0x58]);
    }
}
