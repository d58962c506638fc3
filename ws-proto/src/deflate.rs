//! permessage-deflate (RFC 7692): negotiation and the per-message codec.
//!
//! Turn it on with [`Config::deflate`](crate::Config::deflate): a client then
//! offers it, a server accepts an offer it can honour. Whether it was
//! negotiated, and with which parameters, is
//! [`Connection::deflate`](crate::Connection::deflate).
//!
//! # Library
//!
//! Deflate is done by `flate2` on its `zlib-rs` backend: a pure-Rust port of
//! zlib, so the build needs no C compiler, with zlib's window-size control
//! (`miniz_oxide`, flate2's default, always uses a 32 KiB window and cannot
//! honour `max_window_bits`). A 256-byte window (8 bits) is not supported by
//! zlib's compressor; a 512-byte window is used instead, which is still
//! valid for a peer that asked for 8 bits because zlib never emits a match
//! further back than the window size minus 262 bytes (250 here).
//!
//! # Memory
//!
//! The contexts are created on the first compressed message in each
//! direction, so a connection that negotiated deflate but never compressed
//! holds nothing more. Measured with a counting allocator
//! (`cargo test -p ws-proto --test deflate_memory -- --nocapture`), a
//! connection that compressed in both directions holds:
//!
//! | setting | bytes held |
//! |---|---|
//! | context takeover, 15-bit windows (the default) | about 420 KiB |
//! | context takeover, 9-bit windows | about 290 KiB |
//! | no context takeover (both directions) | about 1 KiB |
//!
//! zlib-rs's compressor has a fixed 128 KiB hash table and a 64 KiB
//! pending buffer whatever the window, which is why small windows save less
//! than the window size suggests. Without context takeover each context is
//! dropped after its message (there is nothing worth keeping), so an idle
//! connection holds no deflate memory, at the cost of setting a context up
//! again per message. One reusable output buffer of at most 64 KiB is kept
//! per connection; a larger one is released after its message. Received
//! messages are inflated into chunks of at most
//! [`Config::read_chunk_size`](crate::Config::read_chunk_size).

use std::fmt;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use crate::connection::Role;
use crate::error::BuildError;
use crate::handshake::extensions::ExtensionItem;

/// The extension token.
pub const NAME: &str = "permessage-deflate";

/// The four bytes a sync flush ends with; removed from every compressed
/// message and added back before inflating (RFC 7692 §7.2.1, §7.2.2).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Largest output buffer kept between messages.
const KEEP_SCRATCH: usize = 64 << 10;

/// What to offer or accept, and how to compress.
///
/// The window and context-takeover fields are named after the RFC 7692
/// parameters and read from each side's point of view:
///
/// | field | as a client | as a server |
/// |---|---|---|
/// | `server_max_window_bits` | below 15: asks the server to use at most this window (a response that does not is refused) | the largest window we compress with |
/// | `client_max_window_bits` | the largest window we compress with (the server may ask for less) | below 15: requires the client to use at most this; an offer that cannot agree is declined |
/// | `server_no_context_takeover` | asks the server to reset its context after each message (a response that does not is refused) | we reset ours after each message |
/// | `client_no_context_takeover` | we reset ours after each message, and say so | asks the client to reset its context |
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeflateConfig {
    /// zlib compression level, 0 (store) to 9 (smallest). Default 6.
    pub level: u32,
    /// Whole messages shorter than this many bytes are sent uncompressed.
    /// Default 64. Streamed messages ([`send_chunk`](crate::Connection::send_chunk))
    /// are compressed whatever their size.
    pub threshold: usize,
    /// See the table. 8 to 15; default 15.
    pub server_max_window_bits: u8,
    /// See the table. 8 to 15; default 15.
    pub client_max_window_bits: u8,
    /// See the table. Default false.
    pub server_no_context_takeover: bool,
    /// See the table. Default false.
    pub client_no_context_takeover: bool,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        DeflateConfig {
            level: 6,
            threshold: 64,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
            server_no_context_takeover: false,
            client_no_context_takeover: false,
        }
    }
}

impl DeflateConfig {
    /// Checks the ranges: level 0-9, window bits 8-15.
    pub fn validate(&self) -> Result<(), BuildError> {
        if self.level > 9 {
            return Err(BuildError::Deflate(format!(
                "level {} is not 0-9",
                self.level
            )));
        }
        for (name, bits) in [
            ("server_max_window_bits", self.server_max_window_bits),
            ("client_max_window_bits", self.client_max_window_bits),
        ] {
            if !(8..=15).contains(&bits) {
                return Err(BuildError::Deflate(format!("{name} {bits} is not 8-15")));
            }
        }
        Ok(())
    }

    /// The offer a client sends (the value of `Sec-WebSocket-Extensions`).
    pub fn client_offer(&self) -> String {
        let mut s = String::from(NAME);
        if self.server_no_context_takeover {
            s.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            s.push_str("; client_no_context_takeover");
        }
        if self.server_max_window_bits < 15 {
            s.push_str(&format!(
                "; server_max_window_bits={}",
                self.server_max_window_bits
            ));
        }
        // Always tell the server it may limit our window.
        if self.client_max_window_bits < 15 {
            s.push_str(&format!(
                "; client_max_window_bits={}",
                self.client_max_window_bits
            ));
        } else {
            s.push_str("; client_max_window_bits");
        }
        s
    }

    /// A client's check of the server's answer to [`client_offer`](Self::client_offer):
    /// the parameters in force, or why the response must fail the connection
    /// (RFC 7692 §5, §7.1).
    pub fn client_accept(&self, item: &ExtensionItem) -> Result<DeflateParams, String> {
        let p = Parsed::from_item(item)?;
        if p.client_max_window_bits == Some(None) {
            return Err("client_max_window_bits without a value in a response".into());
        }
        if self.server_no_context_takeover && !p.server_no_context_takeover {
            return Err("server_no_context_takeover was requested and not accepted".into());
        }
        let server_bits = match p.server_max_window_bits {
            Some(Some(b)) => b,
            Some(None) => return Err("server_max_window_bits without a value".into()),
            None => 15,
        };
        if server_bits > self.server_max_window_bits {
            return Err(format!(
                "server_max_window_bits={server_bits} exceeds the offered {}",
                self.server_max_window_bits
            ));
        }
        // "If a received extension negotiation response includes the
        // client_max_window_bits extension parameter with a value greater
        // than the one offered, the client MUST _Fail the WebSocket
        // Connection_" (a bare offer allows any value).
        let client_bits = match p.client_max_window_bits {
            Some(Some(b)) if b > self.client_max_window_bits => {
                return Err(format!(
                    "client_max_window_bits={b} exceeds the offered {}",
                    self.client_max_window_bits
                ))
            }
            Some(Some(b)) => b,
            _ => self.client_max_window_bits,
        };
        Ok(DeflateParams {
            server_no_context_takeover: p.server_no_context_takeover,
            client_no_context_takeover: p.client_no_context_takeover
                || self.client_no_context_takeover,
            server_max_window_bits: server_bits,
            client_max_window_bits: client_bits,
        })
    }

    /// A server's choice among a client's offers: the first
    /// `permessage-deflate` offer that is valid and that this configuration
    /// can honour, with the response parameters. `None`: decline them all.
    pub fn server_accept(&self, offers: &[ExtensionItem]) -> Option<DeflateParams> {
        offers
            .iter()
            .filter(|o| o.name.eq_ignore_ascii_case(NAME))
            .find_map(|o| self.accept_one(o))
    }

    fn accept_one(&self, offer: &ExtensionItem) -> Option<DeflateParams> {
        let p = Parsed::from_item(offer).ok()?;
        let server_bits = match p.server_max_window_bits {
            // "server_max_window_bits" must have a value in an offer.
            Some(None) => return None,
            Some(Some(b)) => b.min(self.server_max_window_bits),
            None => self.server_max_window_bits,
        };
        let client_bits = match p.client_max_window_bits {
            Some(Some(b)) => b.min(self.client_max_window_bits),
            Some(None) => self.client_max_window_bits,
            // The client cannot limit its window: fine unless we need it to.
            None if self.client_max_window_bits < 15 => return None,
            None => 15,
        };
        Some(DeflateParams {
            server_no_context_takeover: p.server_no_context_takeover
                || self.server_no_context_takeover,
            client_no_context_takeover: p.client_no_context_takeover
                || self.client_no_context_takeover,
            server_max_window_bits: server_bits,
            client_max_window_bits: client_bits,
        })
    }
}

/// The parameters of a negotiated permessage-deflate; `Display` gives the
/// response's extension item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateParams {
    /// The server resets its compression context after each message.
    pub server_no_context_takeover: bool,
    /// The client resets its compression context after each message.
    pub client_no_context_takeover: bool,
    /// The largest window the server compresses with (8-15).
    pub server_max_window_bits: u8,
    /// The largest window the client compresses with (8-15).
    pub client_max_window_bits: u8,
}

impl fmt::Display for DeflateParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(NAME)?;
        if self.server_no_context_takeover {
            f.write_str("; server_no_context_takeover")?;
        }
        if self.client_no_context_takeover {
            f.write_str("; client_no_context_takeover")?;
        }
        if self.server_max_window_bits < 15 {
            write!(
                f,
                "; server_max_window_bits={}",
                self.server_max_window_bits
            )?;
        }
        if self.client_max_window_bits < 15 {
            write!(
                f,
                "; client_max_window_bits={}",
                self.client_max_window_bits
            )?;
        }
        Ok(())
    }
}

/// The parameters of one extension item, checked for the RFC 7692 §7 rules
/// that do not depend on the side: known names, no duplicates, window bits
/// 8-15, no value on the context-takeover flags.
#[derive(Default)]
struct Parsed {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<Option<u8>>,
    client_max_window_bits: Option<Option<u8>>,
}

impl Parsed {
    fn from_item(item: &ExtensionItem) -> Result<Parsed, String> {
        let mut p = Parsed::default();
        for (key, value) in &item.params {
            let dup = || format!("duplicate parameter {key}");
            match key.to_ascii_lowercase().as_str() {
                "server_no_context_takeover" | "client_no_context_takeover" => {
                    if value.is_some() {
                        return Err(format!("{key} takes no value"));
                    }
                    let flag = if key.eq_ignore_ascii_case("server_no_context_takeover") {
                        &mut p.server_no_context_takeover
                    } else {
                        &mut p.client_no_context_takeover
                    };
                    if *flag {
                        return Err(dup());
                    }
                    *flag = true;
                }
                "server_max_window_bits" | "client_max_window_bits" => {
                    let bits =
                        match value {
                            None => None,
                            Some(v) => Some(parse_bits(v).ok_or_else(|| {
                                format!("{key}={v:?} is not a window size of 8-15")
                            })?),
                        };
                    let slot = if key.eq_ignore_ascii_case("server_max_window_bits") {
                        &mut p.server_max_window_bits
                    } else {
                        &mut p.client_max_window_bits
                    };
                    if slot.is_some() {
                        return Err(dup());
                    }
                    *slot = Some(bits);
                }
                _ => return Err(format!("unknown parameter {key}")),
            }
        }
        Ok(p)
    }
}

/// "1*DIGIT ... the value MUST be an integer in the range 8 to 15 inclusive
/// ... without leading zeros" (RFC 7692 §7.1.2).
fn parse_bits(v: &str) -> Option<u8> {
    if v.is_empty() || v.len() > 2 || v.starts_with('0') || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u8 = v.parse().ok()?;
    (8..=15).contains(&n).then_some(n)
}

/// An inflate failure: the peer sent data that is not valid DEFLATE.
#[derive(Debug)]
pub(crate) struct InflateError(pub(crate) String);

/// What one [`Codec::inflate`] call did.
pub(crate) struct Inflated {
    /// Bytes of `input` consumed.
    pub(crate) consumed: usize,
    /// Bytes appended to the output.
    pub(crate) produced: usize,
    /// The message is complete: all input and the tail were consumed and
    /// every pending output byte was produced.
    pub(crate) done: bool,
}

/// The per-connection codec once permessage-deflate is negotiated.
pub(crate) struct Codec {
    params: DeflateParams,
    level: u32,
    threshold: usize,
    tx_bits: u8,
    rx_bits: u8,
    tx_reset: bool,
    rx_reset: bool,
    compress: Option<Box<Compress>>,
    decompress: Option<Box<Decompress>>,
    /// Compressed output of the message being sent.
    scratch: Vec<u8>,
    /// How much of [`TAIL`] the current received message has been given.
    rx_tail: usize,
}

impl fmt::Debug for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Codec")
            .field("params", &self.params)
            .field("compressing", &self.compress.is_some())
            .field("decompressing", &self.decompress.is_some())
            .finish()
    }
}

/// zlib's compressor cannot use a 256-byte window; 9 bits is a valid
/// substitute (see the module documentation). flate2 also wants 9-15 for
/// the decompressor, and a larger window always inflates a smaller one.
fn zlib_bits(bits: u8) -> u8 {
    bits.clamp(9, 15)
}

impl Codec {
    pub(crate) fn new(role: Role, params: DeflateParams, config: &DeflateConfig) -> Codec {
        let (tx_bits, rx_bits, tx_reset, rx_reset) = match role {
            Role::Client => (
                params.client_max_window_bits,
                params.server_max_window_bits,
                params.client_no_context_takeover,
                params.server_no_context_takeover,
            ),
            Role::Server => (
                params.server_max_window_bits,
                params.client_max_window_bits,
                params.server_no_context_takeover,
                params.client_no_context_takeover,
            ),
        };
        Codec {
            params,
            level: config.level,
            threshold: config.threshold,
            tx_bits: zlib_bits(tx_bits),
            // A peer limited to fewer bits still inflates fine with a larger
            // window, but the smaller one saves memory.
            rx_bits: zlib_bits(rx_bits),
            tx_reset,
            rx_reset,
            compress: None,
            decompress: None,
            scratch: Vec::new(),
            rx_tail: 0,
        }
    }

    pub(crate) fn params(&self) -> &DeflateParams {
        &self.params
    }

    /// Whether a whole message of `len` bytes is worth compressing.
    pub(crate) fn wants(&self, len: usize) -> bool {
        len >= self.threshold
    }

    /// Compresses the next piece of an outgoing message into a buffer that
    /// the caller gives back with [`return_scratch`](Self::return_scratch).
    /// `fin`: the message ends here (sync flush, the tail removed, the
    /// context reset or dropped as negotiated). `None` if the compressor
    /// failed, which cannot happen with a valid stream; the caller then
    /// sends the message uncompressed.
    pub(crate) fn compress(&mut self, data: &[u8], fin: bool) -> Option<Vec<u8>> {
        let (level, bits) = (self.level, self.tx_bits);
        let c = self.compress.get_or_insert_with(|| {
            Box::new(Compress::new_with_window_bits(
                Compression::new(level),
                false,
                bits,
            ))
        });
        let mut out = std::mem::take(&mut self.scratch);
        out.clear();
        out.reserve(data.len() / 2 + 64);
        let flush = if fin {
            FlushCompress::Sync
        } else {
            FlushCompress::None
        };
        let mut used = 0usize;
        loop {
            if out.capacity() - out.len() < 32 {
                out.reserve(out.len().max(64));
            }
            let before = c.total_in();
            if c.compress_vec(&data[used..], &mut out, flush).is_err() {
                self.compress = None;
                self.scratch = out;
                return None;
            }
            used += (c.total_in() - before) as usize;
            // Done when all input went in and the flush left room unused.
            if used == data.len() && out.len() < out.capacity() {
                break;
            }
        }
        if fin {
            if out.ends_with(&TAIL) {
                out.truncate(out.len() - 4);
            }
            if out.is_empty() {
                // zlib writes nothing for a sync flush with no new input
                // right after another one (an empty message). The receiver
                // appends the tail, and 0x00 before it makes the empty
                // stored block that a flush would have written.
                out.push(0x00);
            }
            if self.tx_reset {
                self.compress = None;
            }
        }
        Some(out)
    }

    /// Gives back the buffer [`compress`](Self::compress) returned.
    pub(crate) fn return_scratch(&mut self, mut buf: Vec<u8>) {
        if buf.capacity() <= KEEP_SCRATCH {
            buf.clear();
            self.scratch = buf;
        }
    }

    /// Inflates the next compressed bytes of a received message into
    /// `out[start..]` (which the caller sized: at most that much is
    /// produced). `last`: `input` reaches the end of the message, so the
    /// tail is fed after it.
    pub(crate) fn inflate(
        &mut self,
        input: &[u8],
        last: bool,
        out: &mut [u8],
    ) -> Result<Inflated, InflateError> {
        let bits = self.rx_bits;
        let d = self
            .decompress
            .get_or_insert_with(|| Box::new(Decompress::new_with_window_bits(false, bits)));
        let mut consumed = 0usize;
        let mut produced = 0usize;
        loop {
            let (src, is_tail) = if consumed < input.len() {
                (&input[consumed..], false)
            } else if last && self.rx_tail < TAIL.len() {
                (&TAIL[self.rx_tail..], true)
            } else {
                (&[][..], false)
            };
            let (in0, out0) = (d.total_in(), d.total_out());
            let status = d
                .decompress(src, &mut out[produced..], FlushDecompress::Sync)
                .map_err(|e| InflateError(e.to_string()))?;
            let used = (d.total_in() - in0) as usize;
            let made = (d.total_out() - out0) as usize;
            if is_tail {
                self.rx_tail += used;
            } else {
                consumed += used;
            }
            produced += made;
            if status == Status::StreamEnd {
                // The peer ended the DEFLATE stream with a final block (RFC
                // 7692 §7.2.3.3): whatever follows starts a new one. The
                // tail completes a sync flush's empty block, whose first
                // bits the peer sent; after a final block there is none.
                d.reset(false);
                if consumed == input.len() {
                    self.rx_tail = TAIL.len();
                }
            }
            let input_left = consumed < input.len() || (last && self.rx_tail < TAIL.len());
            if produced == out.len() {
                // Output full: more may be pending.
                return Ok(Inflated {
                    consumed,
                    produced,
                    done: false,
                });
            }
            if !input_left {
                // Everything went in and room is left: all output is out.
                let done = last;
                if done {
                    self.rx_tail = 0;
                    if self.rx_reset {
                        self.decompress = None;
                    }
                }
                return Ok(Inflated {
                    consumed,
                    produced,
                    done,
                });
            }
            if used == 0 && made == 0 && status != Status::StreamEnd {
                return Err(InflateError("inflate made no progress".into()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(s: &str) -> ExtensionItem {
        let mut h = crate::Headers::new();
        h.push("Sec-WebSocket-Extensions", s.as_bytes());
        crate::handshake::extensions::parse_extensions(&h)
            .unwrap()
            .remove(0)
    }

    #[test]
    fn bits_syntax() {
        assert_eq!(parse_bits("8"), Some(8));
        assert_eq!(parse_bits("15"), Some(15));
        for bad in ["", "7", "16", "08", "1a", "+9", "100"] {
            assert_eq!(parse_bits(bad), None, "{bad}");
        }
    }

    #[test]
    fn offer_round_trips_through_a_server() {
        let client = DeflateConfig {
            server_max_window_bits: 10,
            client_no_context_takeover: true,
            ..DeflateConfig::default()
        };
        let offer = item(&client.client_offer());
        let server = DeflateConfig::default();
        let params = server.server_accept(std::slice::from_ref(&offer)).unwrap();
        assert_eq!(params.server_max_window_bits, 10);
        assert!(params.client_no_context_takeover);
        let agreed = client.client_accept(&item(&params.to_string())).unwrap();
        assert_eq!(agreed, params);
    }

    #[test]
    fn codec_round_trip_with_and_without_takeover() {
        for reset in [false, true] {
            let params = DeflateParams {
                server_no_context_takeover: reset,
                client_no_context_takeover: reset,
                server_max_window_bits: 15,
                client_max_window_bits: 9,
            };
            let cfg = DeflateConfig::default();
            let mut tx = Codec::new(Role::Client, params, &cfg);
            let mut rx = Codec::new(Role::Server, params, &cfg);
            let msg = b"hello hello hello hello hello".repeat(40);
            let mut sizes = Vec::new();
            for _ in 0..3 {
                let z = tx.compress(&msg, true).unwrap();
                sizes.push(z.len());
                let mut out = vec![0u8; msg.len() + 1];
                let r = rx.inflate(&z, true, &mut out).unwrap();
                assert!(r.done);
                assert_eq!(r.consumed, z.len());
                assert_eq!(&out[..r.produced], &msg[..]);
                tx.return_scratch(z);
            }
            if reset {
                assert_eq!(sizes[0], sizes[1]);
                assert!(tx.compress.is_none() && rx.decompress.is_none());
            } else {
                assert!(sizes[1] < sizes[0], "{sizes:?}");
            }
        }
    }
}
