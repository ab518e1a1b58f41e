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
///
/// # Memory
///
/// zlib state is big: a compressor with a 32 KiB window holds about
/// 270 KiB, a decompressor about 40 KiB once it has inflated something.
/// Held per connection, that is ~300 KiB for every idle WebSocket that
/// negotiated compression. So the state is only there while it is needed:
///
/// * **without context takeover** in a direction (the LZ77 window is reset
///   after every message, so nothing has to survive between messages), the
///   state is borrowed from a small per-thread pool for one message and
///   given back, reset, when the message ends. An idle connection then
///   holds no zlib state at all. The web service negotiates this by
///   default (see [`WsConfig::deflate_context_takeover`]);
/// * **with context takeover** the window is part of the protocol state and
///   is kept, but it is created only when the first message in that
///   direction is compressed or inflated.
///
/// A pooled compressor that has been reset produces exactly the bytes a
/// fresh one would, so the pool changes no output.
///
/// [`WsConfig::deflate_context_takeover`]: super::WsConfig::deflate_context_takeover
pub struct DeflateCodec {
    params: DeflateParams,
    /// Compressor: kept between messages only with server context takeover.
    /// (Boxed, like the decompressor: flate2's handles are ~150 bytes
    /// each, and the codec sits in every connection that negotiated
    /// deflate; this way it is 24 bytes.)
    compress: Option<Box<Compress>>,
    /// Decompressor: kept between messages only with client context
    /// takeover; otherwise held from the first byte of a compressed
    /// message to its end.
    decompress: Option<Box<Decompress>>,
}

impl core::fmt::Debug for DeflateCodec {
    fn fmt(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
        f.debug_struct("DeflateCodec")
            .field("params", &self.params)
            .field("compress", &self.compress.is_some())
            .field("decompress", &self.decompress.is_some())
            .finish()
    }
}

/// Idle zlib states kept per thread for connections without context
/// takeover (more are dropped). A message is compressed in one call, so
/// one compressor per window size is in use at a time; decompressors are
/// held while a compressed message is arriving, which many connections
/// may do at once, and those beyond the pool are simply freed afterwards.
const POOL_MAX: usize = 8;

#[derive(Default)]
struct Pool {
    /// (window bits, compressor), reset.
    compress: Vec<(u8, Box<Compress>)>,
    /// Reset decompressors (always 15 window bits). Boxed in the pool too:
    /// they move between the pool and codecs without being copied.
    #[allow(clippy::vec_box)]
    decompress: Vec<Box<Decompress>>,
}

thread_local! {
    static POOL: core::cell::RefCell<Pool> = core::cell::RefCell::new(Pool::default());
}

fn take_compressor(bits: u8) -> Box<Compress> {
    POOL.with(|p| {
        let mut p = p.borrow_mut();
        let i = p.compress.iter().position(|(b, _)| *b == bits);
        i.map(|i| p.compress.swap_remove(i).1)
    })
    .unwrap_or_else(|| {
        Box::new(Compress::new_with_window_bits(
            Compression::fast(),
            false,
            bits,
        ))
    })
}

fn give_compressor(bits: u8, mut c: Box<Compress>) {
    c.reset();
    POOL.with(|p| {
        let mut p = p.borrow_mut();
        if p.compress.len() < POOL_MAX {
            p.compress.push((bits, c));
        }
    });
}

/// Drop the idle zlib states this thread keeps (the runtime's idle trim,
/// via the web service). Returns the bytes released, estimated with
/// zlib's own figures: `2^(bits+2) + 2^(memLevel+9)` per compressor
/// (memLevel 8), `2^15 + 7 KiB` per decompressor.
pub fn trim_pool() -> usize {
    POOL.with(|p| {
        let p = std::mem::take(&mut *p.borrow_mut());
        let c: usize = p
            .compress
            .iter()
            .map(|(bits, _)| (1usize << (bits + 2)) + (1 << 17))
            .sum();
        c + p.decompress.len() * ((1 << 15) + 7 * 1024)
    })
}

fn take_decompressor() -> Box<Decompress> {
    POOL.with(|p| p.borrow_mut().decompress.pop())
        .unwrap_or_else(|| Box::new(Decompress::new_with_window_bits(false, 15)))
}

fn give_decompressor(mut d: Box<Decompress>) {
    d.reset(false);
    POOL.with(|p| {
        let mut p = p.borrow_mut();
        if p.decompress.len() < POOL_MAX {
            p.decompress.push(d);
        }
    });
}

impl DeflateCodec {
    /// A codec for the agreed parameters. No zlib state is allocated yet.
    pub fn new(params: DeflateParams) -> Self {
        DeflateCodec {
            params,
            compress: None,
            decompress: None,
        }
    }

    /// Whether zlib state is held now (compressor, decompressor).
    pub fn holds_state(&self) -> (bool, bool) {
        (self.compress.is_some(), self.decompress.is_some())
    }

    fn window_bits(&self) -> u8 {
        self.params.server_max_window_bits.clamp(9, 15)
    }

    pub fn params(&self) -> DeflateParams {
        self.params
    }

    /// Compress one whole message (section 7.2.1): sync flush, then strip
    /// the trailing `00 00 ff ff`.
    pub fn compress_message(&mut self, data: &[u8]) -> Vec<u8> {
        let bits = self.window_bits();
        let mut c = self
            .compress
            .take()
            .unwrap_or_else(|| take_compressor(bits));
        let out = compress_with(&mut c, data);
        if self.params.server_no_context_takeover {
            give_compressor(bits, c);
        } else {
            self.compress = Some(c);
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
        let d = self.decompress.get_or_insert_with(take_decompressor);
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
            let before_in = d.total_in();
            let before_out = out.len();
            let status = d
                .decompress_vec(input, out, FlushDecompress::Sync)
                .map_err(|e| WsError::Inflate(e.to_string()))?;
            if out.len() > max {
                return Err(WsError::MessageTooLarge { max });
            }
            let used = (d.total_in() - before_in) as usize;
            input = &input[used.min(input.len())..];
            let produced = out.len() - before_out;
            if status == Status::StreamEnd {
                // The sender ended the DEFLATE stream (BFINAL); start fresh
                // for whatever follows.
                d.reset(false);
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
        let r = self.decompress_chunk(&TAIL, out, max);
        if self.params.client_no_context_takeover {
            // Nothing carries over to the next message: give the state back.
            if let Some(d) = self.decompress.take() {
                if r.is_ok() {
                    give_decompressor(d);
                }
            }
        }
        r
    }
}

/// Compress one message with `c` (sync flush, trailer stripped).
fn compress_with(c: &mut Compress, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() / 2 + 64);
    let mut input = data;
    loop {
        if out.capacity() - out.len() < 64 {
            out.reserve(out.capacity().max(1024));
        }
        let before_in = c.total_in();
        let before_out = out.len();
        // A compression error cannot come from our own well-formed use.
        if c.compress_vec(input, &mut out, FlushCompress::Sync)
            .is_err()
        {
            break;
        }
        let used = (c.total_in() - before_in) as usize;
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
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parameters without context takeover in either direction.
    fn no_takeover() -> DeflateParams {
        DeflateParams {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            ..Default::default()
        }
    }

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
    fn idle_trim_empties_the_zlib_pool() {
        // Without context takeover the states go back to the thread's pool
        // after each message; the idle trim drops them (and a later
        // message simply makes new ones).
        let p = no_takeover();
        let (mut tx, mut rx) = (DeflateCodec::new(p), DeflateCodec::new(p));
        let msg = b"pooled zlib state ".repeat(50);
        for round in 0..2 {
            let z = tx.compress_message(&msg);
            let mut out = Vec::new();
            rx.decompress_chunk(&z, &mut out, 1 << 20).unwrap();
            rx.finish_message(&mut out, 1 << 20).unwrap();
            assert_eq!(out, msg, "round {round}");
            assert_eq!(
                (tx.holds_state(), rx.holds_state()),
                ((false, false), (false, false))
            );
            let pooled = POOL.with(|p| {
                let p = p.borrow();
                (p.compress.len(), p.decompress.len())
            });
            assert!(pooled.0 >= 1 && pooled.1 >= 1, "{pooled:?}");
            assert!(trim_pool() >= (1 << 17) + (1 << 15));
            assert_eq!(
                POOL.with(|p| p.borrow().compress.len() + p.borrow().decompress.len()),
                0
            );
            assert_eq!(trim_pool(), 0);
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
    fn no_context_takeover_holds_no_state_between_messages() {
        let p = no_takeover();
        let mut tx = DeflateCodec::new(p);
        let mut rx = DeflateCodec::new(p);
        assert_eq!(tx.holds_state(), (false, false), "nothing before use");
        for i in 0..5 {
            let msg = format!("{i} pooled pooled pooled").repeat(10);
            let z = tx.compress_message(msg.as_bytes());
            assert_eq!(tx.holds_state(), (false, false));
            let mut out = Vec::new();
            rx.decompress_chunk(&z[..z.len() / 2], &mut out, 1 << 20)
                .unwrap();
            assert_eq!(rx.holds_state(), (false, true), "held within a message");
            rx.decompress_chunk(&z[z.len() / 2..], &mut out, 1 << 20)
                .unwrap();
            rx.finish_message(&mut out, 1 << 20).unwrap();
            assert_eq!(rx.holds_state(), (false, false), "given back at its end");
            assert_eq!(out, msg.as_bytes());
        }
        // With context takeover the state is created on first use and kept.
        let mut c = DeflateCodec::new(DeflateParams::default());
        assert_eq!(c.holds_state(), (false, false));
        let z = c.compress_message(b"hello");
        assert_eq!(c.holds_state(), (true, false));
        let mut out = Vec::new();
        c.decompress_chunk(&z, &mut out, 100).unwrap();
        c.finish_message(&mut out, 100).unwrap();
        assert_eq!(c.holds_state(), (true, true));
    }

    #[test]
    fn pooled_compressor_output_equals_a_fresh_one() {
        // The pool must not change a single output byte: a compressor that
        // compressed other data and was reset equals a new one.
        let p = DeflateParams {
            server_no_context_takeover: true,
            server_max_window_bits: 12,
            ..Default::default()
        };
        let other: Vec<u8> = (0..20_000u32).map(|i| (i * 31 % 253) as u8).collect();
        let msg = b"the same message, compressed twice".repeat(30);
        let mut a = DeflateCodec::new(p);
        let _ = a.compress_message(&other); // leaves a used compressor in the pool
        let pooled = DeflateCodec::new(p).compress_message(&msg);
        let mut fresh = Compress::new_with_window_bits(Compression::fast(), false, 12);
        assert_eq!(pooled, compress_with(&mut fresh, &msg));
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
