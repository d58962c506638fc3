//! Frame headers (RFC 6455 §5.2): pure decode and encode.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-------+-+-------------+-------------------------------+
//! |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
//! |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
//! |N|V|V|V|       |S|             |   (if payload len==126/127)   |
//! | |1|2|3|       |K|             |                               |
//! +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
//! ```

use crate::error::ProtocolError;

/// A frame opcode (§5.2). Reserved opcodes are refused by [`FrameHeader::parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpCode {
    /// 0x0: continuation of a fragmented message.
    Continuation,
    /// 0x1: text (UTF-8).
    Text,
    /// 0x2: binary.
    Binary,
    /// 0x8: connection close.
    Close,
    /// 0x9: ping.
    Ping,
    /// 0xA: pong.
    Pong,
}

impl OpCode {
    /// The 4-bit wire value.
    pub fn as_u8(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xa,
        }
    }

    /// Decodes a 4-bit value; reserved opcodes give an error.
    pub fn from_u8(v: u8) -> Result<OpCode, ProtocolError> {
        Ok(match v {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xa => OpCode::Pong,
            // "%x3-7 are reserved for further non-control frames"
            // "%xB-F are reserved for further control frames"
            other => return Err(ProtocolError::ReservedOpcode(other)),
        })
    }

    /// Control frames have opcodes whose most significant bit is 1 (§5.5).
    pub fn is_control(self) -> bool {
        self.as_u8() & 0x8 != 0
    }
}

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// FIN: "Indicates that this is the final fragment in a message."
    pub fin: bool,
    /// RSV1, RSV2, RSV3 as the three low bits (RSV1 = 0b100).
    pub rsv: u8,
    /// The opcode.
    pub opcode: OpCode,
    /// The masking key, present when the MASK bit is set.
    pub mask: Option<[u8; 4]>,
    /// The payload length.
    pub len: u64,
}

/// Longest possible header: 2 + 8 (64-bit length) + 4 (mask).
pub const MAX_HEADER_LEN: usize = 14;

impl FrameHeader {
    /// Decodes a header from the start of `buf`.
    ///
    /// Returns `Ok(None)` when `buf` does not yet hold the whole header (and
    /// consumes nothing: call again with more bytes), or the header and its
    /// length in bytes. Refuses reserved opcodes and lengths that are not
    /// minimally encoded: "the minimal number of bytes MUST be used to encode
    /// the length" and "the most significant bit MUST be 0" (§5.2). Other
    /// rules (masking by role, RSV bits, control frame size) depend on the
    /// connection and are checked there.
    #[inline]
    pub fn parse(buf: &[u8]) -> Result<Option<(FrameHeader, usize)>, ProtocolError> {
        let (b0, b1) = match buf {
            [b0, b1, ..] => (*b0, *b1),
            _ => return Ok(None),
        };
        let fin = b0 & 0x80 != 0;
        let rsv = (b0 >> 4) & 0x7;
        let opcode = OpCode::from_u8(b0 & 0x0f)?;
        let masked = b1 & 0x80 != 0;
        let (len, mut pos) = match b1 & 0x7f {
            126 => {
                let Some(ext) = buf.get(2..4) else {
                    return Ok(None);
                };
                let len = u16::from_be_bytes([ext[0], ext[1]]) as u64;
                if len < 126 {
                    return Err(ProtocolError::BadLength);
                }
                (len, 4)
            }
            127 => {
                let Some(ext) = buf.get(2..10) else {
                    return Ok(None);
                };
                let mut b = [0u8; 8];
                b.copy_from_slice(ext);
                let len = u64::from_be_bytes(b);
                if len <= 0xffff || len >> 63 != 0 {
                    return Err(ProtocolError::BadLength);
                }
                (len, 10)
            }
            n => (n as u64, 2),
        };
        let mask = if masked {
            let Some(m) = buf.get(pos..pos + 4) else {
                return Ok(None);
            };
            pos += 4;
            Some([m[0], m[1], m[2], m[3]])
        } else {
            None
        };
        Ok(Some((
            FrameHeader {
                fin,
                rsv,
                opcode,
                mask,
                len,
            },
            pos,
        )))
    }

    /// Number of bytes [`encode`](Self::encode) writes.
    pub fn encoded_len(&self) -> usize {
        let ext = match self.len {
            0..=125 => 0,
            126..=0xffff => 2,
            _ => 8,
        };
        2 + ext + if self.mask.is_some() { 4 } else { 0 }
    }

    /// Appends the header to `out`, with the length minimally encoded.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut buf = [0u8; MAX_HEADER_LEN];
        let n = self.encode_into(&mut buf);
        out.extend_from_slice(&buf[..n]);
    }

    /// Writes the header into `buf` and returns its length.
    pub fn encode_into(&self, buf: &mut [u8; MAX_HEADER_LEN]) -> usize {
        buf[0] = (self.fin as u8) << 7 | (self.rsv & 0x7) << 4 | self.opcode.as_u8();
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        let mut pos = match self.len {
            0..=125 => {
                buf[1] = mask_bit | self.len as u8;
                2
            }
            126..=0xffff => {
                buf[1] = mask_bit | 126;
                buf[2..4].copy_from_slice(&(self.len as u16).to_be_bytes());
                4
            }
            _ => {
                buf[1] = mask_bit | 127;
                buf[2..10].copy_from_slice(&self.len.to_be_bytes());
                10
            }
        };
        if let Some(m) = self.mask {
            buf[pos..pos + 4].copy_from_slice(&m);
            pos += 4;
        }
        pos
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(b: &[u8]) -> (FrameHeader, usize) {
        FrameHeader::parse(b).unwrap().unwrap()
    }

    #[test]
    fn rfc_5_7_unmasked_hello() {
        // "A single-frame unmasked text message: 0x81 0x05 0x48 0x65 0x6c 0x6c 0x6f"
        let (h, n) = parse_all(&[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        assert_eq!(n, 2);
        assert!(h.fin);
        assert_eq!(h.opcode, OpCode::Text);
        assert_eq!(h.len, 5);
        assert_eq!(h.mask, None);
    }

    #[test]
    fn rfc_5_7_masked_hello_header() {
        let (h, n) = parse_all(&[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f]);
        assert_eq!(n, 6);
        assert_eq!(h.mask, Some([0x37, 0xfa, 0x21, 0x3d]));
        assert_eq!(h.len, 5);
    }

    #[test]
    fn rfc_5_7_fragmented_and_control() {
        // "0x01 0x03 0x48 0x65 0x6c (contains "Hel")", "0x80 0x02 0x6c 0x6f (contains "lo")"
        let (h1, _) = parse_all(&[0x01, 0x03, 0x48, 0x65, 0x6c]);
        assert!(!h1.fin);
        assert_eq!(h1.opcode, OpCode::Text);
        let (h2, _) = parse_all(&[0x80, 0x02, 0x6c, 0x6f]);
        assert!(h2.fin);
        assert_eq!(h2.opcode, OpCode::Continuation);
        // Unmasked Ping "0x89 0x05 0x48 0x65 0x6c 0x6c 0x6f"
        let (p, _) = parse_all(&[0x89, 0x05]);
        assert_eq!(p.opcode, OpCode::Ping);
        assert!(p.opcode.is_control());
        // Masked Pong "0x8a 0x85 0x37 0xfa 0x21 0x3d ..."
        let (q, n) = parse_all(&[0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d]);
        assert_eq!(q.opcode, OpCode::Pong);
        assert_eq!(n, 6);
    }

    #[test]
    fn rfc_5_7_extended_lengths() {
        // "256 bytes binary message in a single unmasked frame: 0x82 0x7E 0x0100"
        let (h, n) = parse_all(&[0x82, 0x7e, 0x01, 0x00]);
        assert_eq!((h.len, n, h.opcode), (256, 4, OpCode::Binary));
        // "64KiB binary message in a single unmasked frame: 0x82 0x7F 0x0000000000010000"
        let (h, n) = parse_all(&[0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0]);
        assert_eq!((h.len, n), (65536, 10));
    }

    #[test]
    fn incomplete_headers_need_more() {
        let full = [0x82, 0xff, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4];
        for n in 0..full.len() {
            assert_eq!(FrameHeader::parse(&full[..n]), Ok(None), "prefix {n}");
        }
        assert!(FrameHeader::parse(&full).unwrap().is_some());
    }

    #[test]
    fn non_minimal_lengths_and_msb_refused() {
        assert_eq!(
            FrameHeader::parse(&[0x82, 126, 0, 125]),
            Err(ProtocolError::BadLength)
        );
        assert_eq!(
            FrameHeader::parse(&[0x82, 127, 0, 0, 0, 0, 0, 0, 0xff, 0xff]),
            Err(ProtocolError::BadLength)
        );
        assert_eq!(
            FrameHeader::parse(&[0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0]),
            Err(ProtocolError::BadLength)
        );
    }

    #[test]
    fn reserved_opcodes_refused() {
        for op in [3u8, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf] {
            assert_eq!(
                FrameHeader::parse(&[0x80 | op, 0]),
                Err(ProtocolError::ReservedOpcode(op))
            );
        }
    }

    #[test]
    fn encode_round_trips_each_length_class() {
        for len in [0u64, 1, 125, 126, 127, 0xffff, 0x1_0000, 1 << 40] {
            for mask in [None, Some([9, 8, 7, 6])] {
                let h = FrameHeader {
                    fin: len % 2 == 0,
                    rsv: 0b101,
                    opcode: OpCode::Binary,
                    mask,
                    len,
                };
                let mut out = Vec::new();
                h.encode(&mut out);
                assert_eq!(out.len(), h.encoded_len());
                assert_eq!(FrameHeader::parse(&out), Ok(Some((h, out.len()))));
            }
        }
    }
}
