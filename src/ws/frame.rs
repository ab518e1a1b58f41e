//! The WebSocket frame header (RFC 6455 section 5.2).
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
//! |     Extended payload length continued, if payload len == 127  |
//! + - - - - - - - - - - - - - - - +-------------------------------+
//! |                               |Masking-key, if MASK set to 1  |
//! +-------------------------------+-------------------------------+
//! | Masking-key (continued)       |          Payload Data         |
//! +-------------------------------- - - - - - - - - - - - - - - - +
//! ```
//!
//! A header is 2 to 14 bytes. [`FrameHeader::parse`] is a push parser: given
//! too few bytes it returns `Ok(None)` ("need more") and consumes nothing.
//! Only the rules that can be checked from the header *alone* live here;
//! rules that need connection state (RSV1 with permessage-deflate,
//! continuation without a start, size limits) are in
//! [`connection`](super::connection).

use super::WsError;

/// Frame opcodes (RFC 6455 section 5.2, section 11.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpCode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl OpCode {
    /// Decode the 4-bit opcode; 0x3-0x7 and 0xB-0xF are reserved.
    pub fn from_u8(v: u8) -> Result<OpCode, WsError> {
        Ok(match v {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            other => return Err(WsError::ReservedOpcode(other)),
        })
    }
    pub fn as_u8(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }
    /// Control frames have the high opcode bit set (section 5.5).
    pub fn is_control(self) -> bool {
        matches!(self, OpCode::Close | OpCode::Ping | OpCode::Pong)
    }
}

/// A parsed frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub fin: bool,
    pub rsv1: bool,
    pub rsv2: bool,
    pub rsv3: bool,
    pub opcode: OpCode,
    /// The masking key, if the MASK bit was set.
    pub mask: Option<[u8; 4]>,
    pub payload_len: u64,
}

/// The largest possible header: 2 + 8 (64-bit length) + 4 (mask).
pub const MAX_HEADER_LEN: usize = 14;

impl FrameHeader {
    /// Parse a header from the start of `buf`.
    ///
    /// Returns `Ok(None)` if `buf` is too short, `Ok(Some((header, len)))`
    /// with the header length otherwise. Checks: reserved opcodes, control
    /// frames that are fragmented or longer than 125 bytes (section 5.5),
    /// and a 64-bit length with its most significant bit set (section
    /// 5.2). Non-minimal length encodings are accepted (the RFC says
    /// "the minimal number of bytes MUST be used", but rejecting them
    /// gains nothing and tungstenite/browsers accept them too).
    pub fn parse(buf: &[u8]) -> Result<Option<(FrameHeader, usize)>, WsError> {
        if buf.len() < 2 {
            return Ok(None);
        }
        let b0 = buf[0];
        let b1 = buf[1];
        let opcode = OpCode::from_u8(b0 & 0x0f)?;
        let fin = b0 & 0x80 != 0;
        let masked = b1 & 0x80 != 0;
        let len7 = b1 & 0x7f;
        if opcode.is_control() {
            if !fin {
                return Err(WsError::FragmentedControlFrame);
            }
            if len7 > 125 {
                return Err(WsError::ControlFrameTooLong);
            }
        }
        let (payload_len, mut pos) = match len7 {
            126 => {
                if buf.len() < 4 {
                    return Ok(None);
                }
                (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4)
            }
            127 => {
                if buf.len() < 10 {
                    return Ok(None);
                }
                let mut b = [0u8; 8];
                b.copy_from_slice(&buf[2..10]);
                let len = u64::from_be_bytes(b);
                if len & (1 << 63) != 0 {
                    return Err(WsError::LengthMsbSet);
                }
                (len, 10)
            }
            n => (u64::from(n), 2),
        };
        let mask = if masked {
            if buf.len() < pos + 4 {
                return Ok(None);
            }
            let k = [buf[pos], buf[pos + 1], buf[pos + 2], buf[pos + 3]];
            pos += 4;
            Some(k)
        } else {
            None
        };
        let header = FrameHeader {
            fin,
            rsv1: b0 & 0x40 != 0,
            rsv2: b0 & 0x20 != 0,
            rsv3: b0 & 0x10 != 0,
            opcode,
            mask,
            payload_len,
        };
        Ok(Some((header, pos)))
    }

    /// Append the encoded header to `out` (minimal length encoding).
    pub fn emit(&self, out: &mut Vec<u8>) {
        let mut b0 = self.opcode.as_u8();
        if self.fin {
            b0 |= 0x80;
        }
        if self.rsv1 {
            b0 |= 0x40;
        }
        if self.rsv2 {
            b0 |= 0x20;
        }
        if self.rsv3 {
            b0 |= 0x10;
        }
        out.push(b0);
        let m = if self.mask.is_some() { 0x80 } else { 0 };
        if self.payload_len < 126 {
            out.push(m | self.payload_len as u8);
        } else if self.payload_len <= 0xffff {
            out.push(m | 126);
            out.extend_from_slice(&(self.payload_len as u16).to_be_bytes());
        } else {
            out.push(m | 127);
            out.extend_from_slice(&self.payload_len.to_be_bytes());
        }
        if let Some(k) = self.mask {
            out.extend_from_slice(&k);
        }
    }

    /// Length of the encoded header.
    pub fn header_len(&self) -> usize {
        let ext = match self.payload_len {
            0..=125 => 0,
            126..=0xffff => 2,
            _ => 8,
        };
        2 + ext + if self.mask.is_some() { 4 } else { 0 }
    }
}

/// Append a complete unmasked (server-to-client) frame to `out`.
pub fn emit_frame(out: &mut Vec<u8>, opcode: OpCode, rsv1: bool, payload: &[u8]) {
    let h = FrameHeader {
        fin: true,
        rsv1,
        rsv2: false,
        rsv3: false,
        opcode,
        mask: None,
        payload_len: payload.len() as u64,
    };
    out.reserve(h.header_len() + payload.len());
    h.emit(out);
    out.extend_from_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(b: &[u8]) -> (FrameHeader, usize) {
        FrameHeader::parse(b).unwrap().unwrap()
    }

    #[test]
    fn rfc6455_5_7_unmasked_hello() {
        let f = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        let (h, n) = parse(&f);
        assert_eq!(n, 2);
        assert!(h.fin);
        assert_eq!(h.opcode, OpCode::Text);
        assert_eq!(h.mask, None);
        assert_eq!(h.payload_len, 5);
        let mut out = Vec::new();
        emit_frame(&mut out, OpCode::Text, false, b"Hello");
        assert_eq!(out, f);
    }

    #[test]
    fn rfc6455_5_7_masked_hello() {
        let f = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let (h, n) = parse(&f);
        assert_eq!(n, 6);
        assert_eq!(h.mask, Some([0x37, 0xfa, 0x21, 0x3d]));
        let mut out = Vec::new();
        h.emit(&mut out);
        assert_eq!(out, &f[..6]);
    }

    #[test]
    fn rfc6455_5_7_fragments_and_ping() {
        let (h, _) = parse(&[0x01, 0x03, 0x48, 0x65, 0x6c]);
        assert!(!h.fin);
        assert_eq!(h.opcode, OpCode::Text);
        let (h, _) = parse(&[0x80, 0x02, 0x6c, 0x6f]);
        assert!(h.fin);
        assert_eq!(h.opcode, OpCode::Continuation);
        let (h, _) = parse(&[0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        assert_eq!(h.opcode, OpCode::Ping);
        assert_eq!(h.payload_len, 5);
    }

    #[test]
    fn rfc6455_5_7_lengths_256_and_64k() {
        let mut out = Vec::new();
        emit_frame(&mut out, OpCode::Binary, false, &[0u8; 256]);
        assert_eq!(&out[..4], &[0x82, 0x7e, 0x01, 0x00]);
        let mut out = Vec::new();
        emit_frame(&mut out, OpCode::Binary, false, &vec![0u8; 65536]);
        assert_eq!(&out[..10], &[0x82, 0x7f, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00]);
        assert_eq!(parse(&out).0.payload_len, 65536);
        assert_eq!(parse(&out).1, 10);
    }

    #[test]
    fn non_minimal_length_accepted() {
        let (h, n) = parse(&[0x82, 0x7e, 0x00, 0x05]);
        assert_eq!((h.payload_len, n), (5, 4));
    }

    #[test]
    fn truncated_headers_need_more() {
        let full = [0x82, 0xff, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4];
        for i in 0..full.len() {
            assert_eq!(FrameHeader::parse(&full[..i]).unwrap(), None, "prefix {i}");
        }
        assert_eq!(parse(&full).1, 14);
    }

    #[test]
    fn header_rule_violations() {
        assert_eq!(
            FrameHeader::parse(&[0x83, 0x00]),
            Err(WsError::ReservedOpcode(3))
        );
        assert_eq!(
            FrameHeader::parse(&[0x8b, 0x00]),
            Err(WsError::ReservedOpcode(0xb))
        );
        assert_eq!(
            FrameHeader::parse(&[0x09, 0x00]),
            Err(WsError::FragmentedControlFrame)
        );
        assert_eq!(
            FrameHeader::parse(&[0x89, 0x7e]),
            Err(WsError::ControlFrameTooLong)
        );
        assert_eq!(
            FrameHeader::parse(&[0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 0]),
            Err(WsError::LengthMsbSet)
        );
    }
}
