//! Incremental, fail-fast UTF-8 validation (RFC 6455 §8.1).
//!
//! "When an endpoint is to interpret a byte stream as UTF-8 but finds that
//! the byte stream is not, in fact, a valid UTF-8 stream, that endpoint MUST
//! _Fail the WebSocket Connection_." The validator is fed a message in pieces
//! split anywhere, even inside a code point, and reports an error at the first
//! piece that contains a byte no valid continuation could follow, not at the
//! end of the message.

/// Bytes checked and copied at a time by [`Utf8Validator::feed_into`]:
/// well inside the first-level data cache.
const FEED_BLOCK: usize = 16 << 10;

/// simdutf8 runs its SIMD check on 64 bytes at a time and hands anything
/// shorter to std's validator; [`check`] pads non-ASCII text of
/// [`PAD_FROM`] bytes or more to this size.
pub(crate) const SHORT: usize = 64;

/// Scratch room for [`check`] to copy short input into (made there when
/// needed).
pub(crate) type Pad = Option<[u8; SHORT]>;

/// `bytes` as a `&str` if they are UTF-8: a view of `bytes`, or for text
/// of [`PAD_FROM`] to 63 bytes that is not ASCII, of its copy in `pad`.
///
/// simdutf8 gives input under 64 bytes to std's validator, which takes
/// branches per code point: in the codec benchmark (`codec --count
/// Multibyte 63 DecodeProto`, callgrind) a 63-byte message of text in
/// mixed widths took 1 285 instructions to decode, most of them std's
/// check. Such text is copied into a block of zeros in `pad` and the
/// whole block is checked by SIMD: 734 instructions, and 35-45% less
/// time (BENCHMARKS.md, session 23). Zeros are ASCII, so the block is
/// UTF-8 exactly when `bytes` are (a code point cut off at the end is
/// followed by a zero, which cannot continue it), and the end of `bytes`
/// is a code point boundary in it.
///
/// Shorter text, and ASCII, stays with std's check: checked that way,
/// 16-byte messages took about 30% longer than with std's check (ASCII and
/// multibyte) and 40-byte ASCII about 20%, though the 16-byte ones ran
/// 12-17% fewer instructions; most likely a stall after the copy (the
/// block's wide loads waiting for the copy's narrower stores).
#[inline]
pub(crate) fn check<'a>(bytes: &'a [u8], pad: &'a mut Pad) -> Option<&'a str> {
    let n = bytes.len();
    if n >= SHORT {
        return simdutf8::basic::from_utf8(bytes).ok();
    }
    if n < PAD_FROM {
        return std::str::from_utf8(bytes).ok();
    }
    check_padded(bytes, pad)
}

/// [`check`] for 48 to 63 bytes, out of line: the common short messages
/// take the path above without this one's frame.
#[inline(never)]
fn check_padded<'a>(bytes: &'a [u8], pad: &'a mut Pad) -> Option<&'a str> {
    if words_ascii(bytes) {
        return std::str::from_utf8(bytes).ok();
    }
    let n = bytes.len();
    let pad = pad.insert([0; SHORT]);
    pad[..n].copy_from_slice(bytes);
    simdutf8::basic::from_utf8(&pad[..]).ok().map(|s| &s[..n])
}

/// Shorter text stays with std's check (see [`check`]).
const PAD_FROM: usize = 48;
// `words_ascii` reads the words below `PAD_FROM` and the last 16 bytes:
// together all of any length from `PAD_FROM` to `SHORT - 1`.
const _: () = assert!(PAD_FROM % 8 == 0 && PAD_FROM + 16 >= SHORT - 1 && PAD_FROM < SHORT);

/// Whether `bytes` ([`PAD_FROM`] to 63 of them) are ASCII: the words from
/// the start up to `PAD_FROM` and the last two, which overlap them.
#[inline]
fn words_ascii(bytes: &[u8]) -> bool {
    let n = bytes.len();
    let word = |i: usize| match bytes[i..i + 8] {
        [a, b, c, d, e, f, g, h] => u64::from_le_bytes([a, b, c, d, e, f, g, h]),
        _ => 0,
    };
    let mut high = word(n - 16) | word(n - 8);
    for i in (0..PAD_FROM).step_by(8) {
        high |= word(i);
    }
    high & 0x8080_8080_8080_8080 == 0
}

/// Whether `bytes` are UTF-8 ([`check`] without keeping the text).
#[inline]
pub(crate) fn is_valid(bytes: &[u8]) -> bool {
    check(bytes, &mut None).is_some()
}

/// `bytes` as a `String` if they are UTF-8 (checked once; long text is
/// checked and copied a block at a time, see
/// [`Utf8Validator::feed_into`]).
pub(crate) fn to_string(bytes: &[u8]) -> Option<String> {
    // `check`'s three ways, spelled out rather than called: through
    // `check` this path ran 9 more instructions per 16-byte message and 11
    // per 1 KiB one (callgrind, `codec --count Ascii 16 DecodeProto 3`).
    let n = bytes.len();
    if n < PAD_FROM {
        return std::str::from_utf8(bytes).ok().map(String::from);
    }
    if n < SHORT {
        return check_padded(bytes, &mut None).map(String::from);
    }
    if n <= FEED_BLOCK {
        return simdutf8::basic::from_utf8(bytes).ok().map(String::from);
    }
    to_string_long(bytes)
}

/// [`to_string`] over [`FEED_BLOCK`] bytes, out of line: the shorter
/// messages take the paths above without this one's frame.
#[inline(never)]
fn to_string_long(bytes: &[u8]) -> Option<String> {
    let mut text = String::with_capacity(bytes.len());
    let mut v = Utf8Validator::new();
    v.feed_into(bytes, &mut text).ok()?;
    v.finish().ok()?;
    Some(text)
}

/// The first invalid byte was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Utf8Error;

impl std::fmt::Display for Utf8Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("invalid UTF-8")
    }
}

impl std::error::Error for Utf8Error {}

/// Validates a UTF-8 stream fed in arbitrary pieces.
///
/// The state is the (at most three) bytes of a code point that a piece ended
/// inside of; it is `Copy`, so a caller can try a piece on a copy and commit
/// only on success.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Utf8Validator {
    partial: [u8; 4],
    partial_len: u8,
}

/// Length of the sequence a leading byte starts (0 for a byte that cannot lead).
#[inline]
fn sequence_len(lead: u8) -> usize {
    match lead {
        0x00..=0x7f => 1,
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        _ => 0,
    }
}

/// Bytes at the end of `input` that begin a code point without finishing it
/// (0 to 3): a lead byte among the last three bytes whose sequence runs past
/// the end. Bytes that could never lead are left for validation to refuse.
#[inline]
fn incomplete_tail(input: &[u8]) -> usize {
    let n = input.len();
    for back in 1..=3.min(n) {
        let b = input[n - back];
        if b & 0xc0 != 0x80 {
            // Not a continuation byte: it leads (or is ASCII or invalid).
            let need = sequence_len(b);
            return if need > back { back } else { 0 };
        }
    }
    0
}

impl Utf8Validator {
    /// A validator at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of bytes at the end of the input so far that begin a code point
    /// still waiting for its continuation bytes (0 to 3).
    pub fn pending(&self) -> usize {
        self.partial_len as usize
    }

    /// Whether the input so far ends at a code point boundary.
    pub fn is_complete(&self) -> bool {
        self.partial_len == 0
    }

    /// Feeds the next piece of the stream. Fails as soon as the stream can no
    /// longer be valid UTF-8, whatever follows.
    pub fn feed(&mut self, input: &[u8]) -> Result<(), Utf8Error> {
        self.feed_with(input, |_| {})
    }

    /// Like [`feed`](Self::feed), and appends the text validated so far to
    /// `out`: each byte is checked once, and the checked `&str` is what is
    /// copied (safe code has no other way from bytes to a `String`). A code
    /// point split across pieces is appended once it is complete.
    ///
    /// Long input is checked and copied a block at a time (cut at a code
    /// point boundary when the text is valid), so that the copy reads what
    /// the check has just brought into the cache instead of reading it all
    /// from memory twice.
    pub fn feed_into(&mut self, input: &[u8], out: &mut String) -> Result<(), Utf8Error> {
        let mut rest = input;
        while rest.len() > FEED_BLOCK {
            let mut cut = FEED_BLOCK;
            while cut > FEED_BLOCK - 3 && rest[cut] & 0xc0 == 0x80 {
                cut -= 1;
            }
            let (block, tail) = rest.split_at(cut);
            self.feed_with(block, |s| out.push_str(s))?;
            rest = tail;
        }
        self.feed_with(rest, |s| out.push_str(s))
    }

    /// Validates `input` after what came before, handing each validated
    /// run of whole code points to `emit`.
    #[inline]
    fn feed_with(&mut self, mut input: &[u8], mut emit: impl FnMut(&str)) -> Result<(), Utf8Error> {
        if self.partial_len > 0 {
            let have = self.partial_len as usize;
            let need = sequence_len(self.partial[0]);
            let take = (need - have).min(input.len());
            let mut seq = self.partial;
            seq[have..have + take].copy_from_slice(&input[..take]);
            let seq_len = have + take;
            match simdutf8::compat::from_utf8(&seq[..seq_len]) {
                Ok(s) => emit(s),
                Err(e) if e.error_len().is_none() => {
                    // Still a valid prefix; the piece was too short to finish it.
                    self.partial = seq;
                    self.partial_len = seq_len as u8;
                    return Ok(());
                }
                Err(_) => return Err(Utf8Error),
            }
            self.partial_len = 0;
            input = &input[take..];
        }
        // Validation up to the last code point boundary, in one pass, so
        // the checked text comes back as a `&str` (`check`: simdutf8's
        // SIMD check, or std's for short pieces); a code point cut off at
        // the end (at most 3 bytes) waits in `partial`.
        let cut = input.len() - incomplete_tail(input);
        match check(&input[..cut], &mut None) {
            Some(s) => emit(s),
            None => return Err(Utf8Error),
        }
        let tail = &input[cut..];
        if !tail.is_empty() {
            // A lead byte and too few continuation bytes: valid so far only
            // if they can still start a code point.
            match simdutf8::compat::from_utf8(tail) {
                Err(e) if e.error_len().is_none() && e.valid_up_to() == 0 => {}
                _ => return Err(Utf8Error),
            }
            self.partial[..tail.len()].copy_from_slice(tail);
            self.partial_len = tail.len() as u8;
        }
        Ok(())
    }

    /// Ends the stream: fails if it stopped inside a code point.
    pub fn finish(&mut self) -> Result<(), Utf8Error> {
        if self.partial_len == 0 {
            Ok(())
        } else {
            Err(Utf8Error)
        }
    }

    /// Forgets any partial code point, to start a new stream.
    pub fn reset(&mut self) {
        self.partial_len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_split(bytes: &[u8]) -> Option<usize> {
        // Returns the index of the piece (byte) where feeding one byte at a
        // time failed, or None if it did not fail before finish.
        let mut v = Utf8Validator::new();
        for (i, b) in bytes.iter().enumerate() {
            if v.feed(std::slice::from_ref(b)).is_err() {
                return Some(i);
            }
        }
        if v.finish().is_err() {
            return Some(bytes.len());
        }
        None
    }

    #[test]
    fn long_text_checked_a_block_at_a_time_agrees_with_std() {
        // Code points of every length across the block boundaries, at
        // every phase, then one byte broken near each boundary.
        for shift in 0..4 {
            let mut text = "a".repeat(shift);
            while text.len() < 3 * FEED_BLOCK + 100 {
                text.push_str("é€𝄞x");
            }
            assert_eq!(to_string(text.as_bytes()).as_deref(), Some(text.as_str()));
            let mut fed = String::new();
            let mut v = Utf8Validator::new();
            v.feed_into(text.as_bytes(), &mut fed).unwrap();
            v.finish().unwrap();
            assert_eq!(fed, text);
            for edge in [FEED_BLOCK, 2 * FEED_BLOCK] {
                for at in edge - 4..edge + 4 {
                    for bad in [0x80, 0xff, b'a', 0xe2] {
                        let mut bytes = text.clone().into_bytes();
                        bytes[at] = bad;
                        let want = std::str::from_utf8(&bytes).ok();
                        assert_eq!(to_string(&bytes).as_deref(), want, "{shift} {at} {bad:x}");
                    }
                }
            }
        }
    }

    #[test]
    fn valid_multibyte_byte_by_byte() {
        let s = "κόσμε 𝄞 ascii €";
        assert_eq!(check_split(s.as_bytes()), None);
    }

    #[test]
    fn fails_fast_on_first_impossible_byte() {
        // Autobahn 6.4.1: κόσμε then 0xed 0xa0 0x80 (a surrogate): 0xed 0xa0 is
        // already impossible, so the failure comes at the 0xa0.
        let mut bytes = "κόσμε".as_bytes().to_vec();
        let at = bytes.len() + 1;
        bytes.extend_from_slice(&[0xed, 0xa0, 0x80, b'e', b'd']);
        assert_eq!(check_split(&bytes), Some(at));
    }

    #[test]
    fn code_point_above_max_fails_at_second_byte() {
        assert_eq!(check_split(&[0xf4, 0x90, 0x80, 0x80]), Some(1));
        assert_eq!(check_split(&[0xf5]), Some(0));
        assert_eq!(check_split(&[0xc0, 0x80]), Some(0));
    }

    /// Feeds `bytes` cut at `cuts` through `feed_into`; the text, or the
    /// index of the piece that failed.
    fn feed_into_pieces(bytes: &[u8], cuts: &[usize]) -> Result<String, usize> {
        let mut v = Utf8Validator::new();
        let mut out = String::new();
        let mut start = 0;
        for (i, &end) in cuts.iter().chain(std::iter::once(&bytes.len())).enumerate() {
            v.feed_into(&bytes[start..end], &mut out).map_err(|_| i)?;
            start = end;
        }
        v.finish().map_err(|_| cuts.len() + 1)?;
        Ok(out)
    }

    #[test]
    fn feed_into_rebuilds_the_text_and_fails_where_feed_fails() {
        let s = "aκόσμε 𝄞 ascii € \u{10ffff}z";
        let b = s.as_bytes();
        for i in 0..=b.len() {
            for j in i..=b.len() {
                assert_eq!(
                    feed_into_pieces(b, &[i, j]).as_deref(),
                    Ok(s),
                    "cuts {i} {j}"
                );
            }
        }
        // Invalid input fails in the same piece as `feed`, byte by byte.
        for bad in [
            &[0xed, 0xa0, 0x80][..],
            &[0xf4, 0x90, 0x80, 0x80],
            &[0xf5],
            &[0xc0, 0x80],
            &[0x80],
            &[b'a', 0xe2, 0x82, b'b'],
            &[0xe2, 0x82],
            &[0xf0, 0x9d, 0x84],
        ] {
            let cuts: Vec<usize> = (1..bad.len()).collect();
            let by_into = feed_into_pieces(bad, &cuts).err();
            assert_eq!(by_into, check_split(bad), "{bad:x?}");
        }
    }

    #[test]
    fn truncated_sequence_fails_only_at_finish() {
        let mut v = Utf8Validator::new();
        assert!(v.feed(&[b'a', 0xe2, 0x82]).is_ok());
        assert_eq!(v.pending(), 2);
        assert!(!v.is_complete());
        assert_eq!(v.finish(), Err(Utf8Error));
        assert!(v.feed(&[0xac]).is_ok());
        assert!(v.finish().is_ok());
    }

    /// What `check` must answer: std's verdict, and the same text.
    fn agrees_with_std(bytes: &[u8]) {
        let want = std::str::from_utf8(bytes).ok();
        // A pad holding text from before must not change the answer: after
        // a lead byte cut off at the end of `bytes`, `é`'s continuation
        // bytes would complete it.
        let mut pad = [0; SHORT];
        for (i, b) in pad.iter_mut().enumerate() {
            *b = "é".as_bytes()[i % 2];
        }
        assert_eq!(check(bytes, &mut Some(pad)), want, "{bytes:x?}");
        assert_eq!(check(bytes, &mut None), want, "{bytes:x?}");
        assert_eq!(is_valid(bytes), want.is_some(), "{bytes:x?}");
        assert_eq!(to_string(bytes).as_deref(), want, "{bytes:x?}");
        let mut v = Utf8Validator::new();
        let fed = v.feed(bytes).and_then(|()| v.finish());
        assert_eq!(fed.is_ok(), want.is_some(), "{bytes:x?}");
    }

    #[test]
    fn short_text_checked_in_a_padded_block_agrees_with_std() {
        // Every one-byte probe, two-byte probes whose first byte is 0xc0 or
        // above, and three-byte probes whose first byte leads a 3- or
        // 4-byte sequence, at the start, middle and end of short text of
        // lengths around the edges of the padded block's path (47 and 48:
        // std's check or the block; 63 and 64: the block or simdutf8's own
        // check), ASCII or not around them.
        let probes: Vec<Vec<u8>> = (0..=255u8)
            .map(|a| vec![a])
            .chain((0xc0..=0xffu8).flat_map(|a| (0..=255u8).map(move |b| vec![a, b])))
            .collect();
        for len in [0usize, 1, 2, 15, 16, 17, 47, 48, 49, 62, 63, 64, 65] {
            for fill in ["a", "ü", "abcdefghijklmno", "世界", "🌍"] {
                let mut text = fill.repeat(len).into_bytes();
                text.truncate(len);
                agrees_with_std(&text);
                let n = text.len();
                for probe in &probes {
                    for at in [0, n / 2, n.saturating_sub(probe.len())] {
                        let mut t = text.clone();
                        let end = (at + probe.len()).min(t.len());
                        t.splice(at..end, probe.iter().copied());
                        agrees_with_std(&t);
                    }
                }
            }
        }
        for a in 0xe0..=0xffu8 {
            for b in 0x70..=0xc0u8 {
                for c in [0x00, 0x7f, 0x80, 0x9f, 0xa0, 0xbf, 0xc0] {
                    for pre in ["", "x", "Grüße, 世界", "Grüße, 世界! Привет мир 🌍 Grüße,"]
                    {
                        let mut t = pre.as_bytes().to_vec();
                        t.extend_from_slice(&[a, b, c]);
                        agrees_with_std(&t);
                        t.push(0x80);
                        agrees_with_std(&t);
                    }
                }
            }
        }
    }
}
