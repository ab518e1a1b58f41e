//! permessage-deflate (RFC 7692): negotiation and the compressor pair.
//!
//! With this extension a data message's payload is compressed with raw
//! DEFLATE (RFC 1951) and the first frame of the message has RSV1 set. The
//! sender flushes with a "sync flush", which ends the output with the empty
//! stored block `00 00 ff ff`; those four bytes are removed before sending
//! and re-appended by the receiver (section 7.2.1, 7.2.2).
//!
//! "Context takeover" means the LZ77 window carries over from one message to
//! the next, so a repeated message compresses to a few bytes. Either side
//! can ask the other to reset its window after every message
//! (`*_no_context_takeover`) or to use a smaller window
//! (`*_max_window_bits`, 8..=15), which bounds the memory the peer needs.
//!
//! Backend: flate2 with the pure-Rust `zlib-rs` backend, because the default
//! miniz_oxide backend has no window-size API. zlib cannot *compress* with
//! a 256-byte window (raw deflate with window bits 8 is rejected), so an
//! offer that requires `server_max_window_bits=8` is declined and the next
//! offer is tried (section 7.1.2.1 allows declining). Inflating always uses
//! a 32 KiB window, which decodes streams made with any smaller window.

use super::WsError;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The parameters agreed in the handshake (section 7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateParams {
    /// We (the server) reset our compressor after every message.
    pub server_no_context_takeover: bool,
    /// The client resets its compressor after every message.
    pub client_no_context_takeover: bool,
    /// The LZ77 window we compress with, 9..=15.
    pub server_max_window_bits: u8,
    /// The window the client promised to stay within (informational: we
    /// always inflate with 15 bits).
    pub client_max_window_bits: u8,
}

impl Default for DeflateParams {
    fn default() -> Self {
        DeflateParams {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
        }
    }
}

/// Why an offer was declined (kept for logs and tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OfferDecline {
    UnknownParameter(String),
    DuplicateParameter(String),
    BadValue(String),
    UnsupportedWindowBits(u8),
}

/// One extension in a `Sec-WebSocket-Extensions` list: name and parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtensionOffer {
    pub name: String,
    pub params: Vec<(String, Option<String>)>,
}

/// Parse all `Sec-WebSocket-Extensions` header values (RFC 6455 section
/// 9.1): `ext, ext; p; p=v; p="v"`. Malformed elements are skipped.
pub fn parse_extensions<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Vec<ExtensionOffer> {
    let mut out = Vec::new();
    for v in values {
        let Ok(s) = core::str::from_utf8(v) else {
            continue;
        };
        for ext in split_outside_quotes(s, ',') {
            let mut parts = split_outside_quotes(ext, ';').into_iter();
            let name = parts.next().unwrap_or("").trim();
            if name.is_empty() {
                continue;
            }
            let mut params = Vec::new();
            for p in parts {
                let p = p.trim();
                if p.is_empty() {
                    continue;
                }
                match p.split_once('=') {
                    Some((k, v)) => {
                        let v = v.trim();
                        let v = v
                            .strip_prefix('"')
                            .and_then(|v| v.strip_suffix('"'))
                            .unwrap_or(v);
                        params.push((k.trim().to_ascii_lowercase(), Some(v.to_string())));
                    }
                    None => params.push((p.to_ascii_lowercase(), None)),
                }
            }
            out.push(ExtensionOffer {
                name: name.to_ascii_lowercase(),
                params,
            });
        }
    }
    out
}

fn split_outside_quotes(s: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    for (i, c) in s.char_indices() {
        if c == '"' {
            quoted = !quoted;
        } else if c == sep && !quoted {
            parts.push(&s[start..i]);
            start = i + 1;
        }
    }
    parts.push(&s[start..]);
    parts
}

fn window_bits(v: &str) -> Option<u8> {
    if v.is_empty() || v.len() > 2 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse::<u8>().ok().filter(|b| (8..=15).contains(b))
}

/// Decide on one permessage-deflate offer (section 7.1). `Ok` gives the
/// parameters we will use; `Err` declines this offer.
pub fn accept_offer(offer: &ExtensionOffer) -> Result<DeflateParams, OfferDecline> {
    let mut p = DeflateParams::default();
    let mut seen: Vec<&str> = Vec::new();
    for (k, v) in &offer.params {
        if seen.contains(&k.as_str()) {
            return Err(OfferDecline::DuplicateParameter(k.clone()));
        }
        seen.push(k);
        match (k.as_str(), v) {
            ("server_no_context_takeover", None) => p.server_no_context_takeover = true,
            ("client_no_context_takeover", None) => p.client_no_context_takeover = true,
            ("server_max_window_bits", Some(v)) => {
                let bits = window_bits(v).ok_or_else(|| OfferDecline::BadValue(k.clone()))?;
                if bits < 9 {
                    return Err(OfferDecline::UnsupportedWindowBits(bits));
                }
                p.server_max_window_bits = bits;
            }
            // The client says it can limit its window; with no value we
            // leave it at 15 and do not answer the parameter.
            ("client_max_window_bits", None) => {}
            ("client_max_window_bits", Some(v)) => {
                p.client_max_window_bits =
                    window_bits(v).ok_or_else(|| OfferDecline::BadValue(k.clone()))?;
            }
            _ => return Err(OfferDecline::UnknownParameter(k.clone())),
        }
    }
    Ok(p)
}

/// Pick the first acceptable permessage-deflate offer, in the client's
/// order of preference (section 5.1 of RFC 7692).
pub fn negotiate<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Option<DeflateParams> {
    parse_extensions(values)
        .iter()
        .filter(|o| o.name == "permessage-deflate")
        .find_map(|o| accept_offer(o).ok())
}

impl DeflateParams {
    /// The value of our `Sec-WebSocket-Extensions` response header.
    pub fn response_header(&self) -> String {
        let mut s = String::from("permessage-deflate");
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
        if self.client_max_window_bits < 15 {
            s.push_str(&format!(
                "; client_max_window_bits={}",
                self.client_max_window_bits
            ));
        }
        s
    }
}

/// The trailer that a sync flush leaves and section 7.2.1 removes.
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Compressor for outgoing messages and decompressor for incoming ones.
pub struct DeflateCodec {
    params: DeflateParams,
    compress: Compress,
    decompress: Decompress,
}

impl core::fmt::Debug for DeflateCodec {
    fn fmt(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
        f.debug_struct("DeflateCodec")
            .field("params", &self.params)
            .finish()
    }
}

impl DeflateCodec {
    pub fn new(params: DeflateParams) -> Self {
        let bits = params.server_max_window_bits.clamp(9, 15);
        DeflateCodec {
            params,
            compress: Compress::new_with_window_bits(Compression::fast(), false, bits),
            decompress: Decompress::new_with_window_bits(false, 15),
        }
    }

    pub fn params(&self) -> DeflateParams {
        self.params
    }

    /// Compress one whole message (section 7.2.1): sync flush, then strip
    /// the trailing `00 00 ff ff`.
    pub fn compress_message(&mut self, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len() / 2 + 64);
        let mut input = data;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity().max(1024));
            }
            let before_in = self.compress.total_in();
            let before_out = out.len();
            // A compression error cannot come from our own well-formed use.
            if self
                .compress
                .compress_vec(input, &mut out, FlushCompress::Sync)
                .is_err()
            {
                break;
            }
            let used = (self.compress.total_in() - before_in) as usize;
            input = &input[used.min(input.len())..];
            // Done once all input is in and the flush fitted into `out`.
            if input.is_empty() && out.len() < out.capacity() && out.ends_with(&TAIL) {
                break;
            }
            if used == 0 && out.len() == before_out && out.len() < out.capacity() {
                break;
            }
        }
        if out.ends_with(&TAIL) {
            out.truncate(out.len() - 4);
        }
        if out.is_empty() {
            // An empty stored block (section 7.2.3.6).
            out.push(0x00);
        }
        if self.params.server_no_context_takeover {
            self.compress.reset();
        }
        out
    }

    /// Inflate a piece of a compressed message, appending to `out`. Fails
    /// with [`WsError::MessageTooLarge`] as soon as `out` would exceed
    /// `max`, so a decompression bomb costs at most `max` bytes.
    pub fn decompress_chunk(
        &mut self,
        mut input: &[u8],
        out: &mut Vec<u8>,
        max: usize,
    ) -> Result<(), WsError> {
        loop {
            if out.len() == out.capacity() {
                // Grow geometrically, but never past max + 1 (one byte over
                // the limit is enough to detect it).
                let want = (out.capacity() * 2).max(input.len() * 2).max(4096);
                let cap = want.min(max.saturating_add(1));
                if cap <= out.len() {
                    return Err(WsError::MessageTooLarge { max });
                }
                out.reserve_exact(cap - out.len());
            }
            let before_in = self.decompress.total_in();
            let before_out = out.len();
            let status = self
                .decompress
                .decompress_vec(input, out, FlushDecompress::Sync)
                .map_err(|e| WsError::Inflate(e.to_string()))?;
            if out.len() > max {
                return Err(WsError::MessageTooLarge { max });
            }
            let used = (self.decompress.total_in() - before_in) as usize;
            input = &input[used.min(input.len())..];
            let produced = out.len() - before_out;
            if status == Status::StreamEnd {
                // The sender ended the DEFLATE stream (BFINAL); start fresh
                // for whatever follows.
                self.decompress.reset(false);
                if input.is_empty() {
                    return Ok(());
                }
                continue;
            }
            if input.is_empty() && out.len() < out.capacity() {
                return Ok(());
            }
            if used == 0 && produced == 0 && out.len() < out.capacity() {
                return Err(WsError::Inflate("no progress".into()));
            }
        }
    }

    /// Finish an incoming message: feed the removed `00 00 ff ff` trailer
    /// (section 7.2.2) and reset the window if the client does not keep it.
    pub fn finish_message(&mut self, out: &mut Vec<u8>, max: usize) -> Result<(), WsError> {
        self.decompress_chunk(&TAIL, out, max)?;
        if self.params.client_no_context_takeover {
            self.decompress.reset(false);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offers(s: &str) -> Option<DeflateParams> {
        negotiate([s.as_bytes()])
    }

    #[test]
    fn rfc7692_7_2_3_1_hello_inflates() {
        let mut c = DeflateCodec::new(DeflateParams::default());
        let mut out = Vec::new();
        c.decompress_chunk(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], &mut out, 100)
            .unwrap();
        c.finish_message(&mut out, 100).unwrap();
        assert_eq!(out, b"Hello");
        // Context takeover: the second "Hello" refers back to the first
        // (section 7.2.3.2: f2 00 11 00 00).
        let mut out = Vec::new();
        c.decompress_chunk(&[0xf2, 0x00, 0x11, 0x00, 0x00], &mut out, 100)
            .unwrap();
        c.finish_message(&mut out, 100).unwrap();
        assert_eq!(out, b"Hello");
    }

    #[test]
    fn round_trip_with_and_without_context_takeover() {
        for nct in [false, true] {
            let p = DeflateParams {
                server_no_context_takeover: nct,
                client_no_context_takeover: nct,
                ..Default::default()
            };
            let mut tx = DeflateCodec::new(p);
            let mut rx = DeflateCodec::new(p);
            let msg = b"Hello Hello Hello WebSocket WebSocket".repeat(20);
            let mut sizes = Vec::new();
            for _ in 0..3 {
                let z = tx.compress_message(&msg);
                assert!(!z.ends_with(&TAIL));
                sizes.push(z.len());
                let mut out = Vec::new();
                rx.decompress_chunk(&z, &mut out, 1 << 20).unwrap();
                rx.finish_message(&mut out, 1 << 20).unwrap();
                assert_eq!(out, msg);
            }
            if nct {
                assert_eq!(sizes[0], sizes[1]);
            } else {
                assert!(sizes[1] < sizes[0], "{sizes:?}");
            }
        }
    }

    #[test]
    fn empty_message_compresses_to_something_that_inflates_empty() {
        let mut c = DeflateCodec::new(DeflateParams::default());
        let z = c.compress_message(b"");
        let mut out = Vec::new();
        let mut rx = DeflateCodec::new(DeflateParams::default());
        rx.decompress_chunk(&z, &mut out, 10).unwrap();
        rx.finish_message(&mut out, 10).unwrap();
        assert!(out.is_empty());
    }

    #[test]
    fn decompression_bomb_is_bounded() {
        let mut tx = DeflateCodec::new(DeflateParams::default());
        let z = tx.compress_message(&vec![0u8; 10 << 20]);
        assert!(z.len() < 1 << 20, "{}", z.len());
        let mut rx = DeflateCodec::new(DeflateParams::default());
        let mut out = Vec::new();
        let max = 1 << 20;
        let r = rx.decompress_chunk(&z, &mut out, max);
        assert_eq!(r, Err(WsError::MessageTooLarge { max }));
        assert!(out.capacity() <= max + 1);
    }

    #[test]
    fn negotiation() {
        assert_eq!(offers("permessage-deflate"), Some(DeflateParams::default()));
        let p = offers("permessage-deflate; client_max_window_bits").unwrap();
        assert_eq!(p.response_header(), "permessage-deflate");
        let p =
            offers("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
                .unwrap();
        assert_eq!(
            p.response_header(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        );
        let p = offers("permessage-deflate; server_max_window_bits=10").unwrap();
        assert_eq!(
            p.response_header(),
            "permessage-deflate; server_max_window_bits=10"
        );
        let p = offers("permessage-deflate; client_max_window_bits=\"9\"").unwrap();
        assert_eq!(p.client_max_window_bits, 9);
        // Declined: unknown parameter, bad values, duplicates, window 8.
        assert_eq!(offers("permessage-deflate; foo"), None);
        assert_eq!(
            offers("permessage-deflate; server_max_window_bits=16"),
            None
        );
        assert_eq!(offers("permessage-deflate; server_max_window_bits"), None);
        assert_eq!(
            offers("permessage-deflate; server_no_context_takeover=1"),
            None
        );
        assert_eq!(
            offers("permessage-deflate; server_no_context_takeover; server_no_context_takeover"),
            None
        );
        // The first acceptable offer wins.
        let p = offers(
            "x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=8, \
             permessage-deflate; server_max_window_bits=12",
        )
        .unwrap();
        assert_eq!(p.server_max_window_bits, 12);
        // Offers across several header lines.
        let p = negotiate(["foo".as_bytes(), "permessage-deflate".as_bytes()]);
        assert!(p.is_some());
    }

    #[test]
    fn small_window_compression_round_trips() {
        let p = DeflateParams {
            server_max_window_bits: 9,
            ..Default::default()
        };
        let mut tx = DeflateCodec::new(p);
        let mut rx = DeflateCodec::new(p);
        let msg: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
        let z = tx.compress_message(&msg);
        let mut out = Vec::new();
        rx.decompress_chunk(&z, &mut out, 1 << 20).unwrap();
        rx.finish_message(&mut out, 1 << 20).unwrap();
        assert_eq!(out, msg);
    }
}
