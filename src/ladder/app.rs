//! Recognizing application content in TCP payloads, for the labels of the
//! ladder diagram: the HTTP/1.x request line and status line (RFC 9112
//! sections 3 and 4), the WebSocket upgrade (RFC 6455 section 4), and
//! WebSocket frame headers after a `101 Switching Protocols` (RFC 6455
//! section 5.2).
//!
//! This is a *recognizer*, not a parser: it only looks at the start of a
//! segment for an HTTP message head, and it follows WebSocket frame
//! boundaries across in-order segments with a fixed 14-byte header buffer.
//! Nothing here allocates in proportion to the input beyond one short label
//! per segment.

/// Longest request/status line shown, in characters.
const MAX_LINE: usize = 60;
/// Longest text-frame preview shown, in characters.
const MAX_PREVIEW: usize = 20;
/// At most this many WebSocket frames are named per segment.
const MAX_FRAMES_NAMED: usize = 3;

const METHODS: [&str; 9] = [
    "GET ", "POST ", "PUT ", "DELETE ", "HEAD ", "OPTIONS ", "PATCH ", "CONNECT ", "TRACE ",
];

/// What an HTTP message head at the start of a segment says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpHead {
    /// The request line or status line, printable ASCII only.
    pub line: String,
    /// A response, and its status code.
    pub status: Option<u16>,
    /// The head has `Upgrade: websocket`.
    pub websocket_upgrade: bool,
    /// Offset of the first byte after the head's blank line, if the whole
    /// head is in this payload.
    pub body_offset: Option<usize>,
}

/// Recognize an HTTP/1.x request or response head at the start of `p`.
pub fn http_head(p: &[u8]) -> Option<HttpHead> {
    let is_request = METHODS.iter().any(|m| p.starts_with(m.as_bytes()));
    let is_response = p.starts_with(b"HTTP/1.");
    if !is_request && !is_response {
        return None;
    }
    let line_end = find(p, b"\r\n").or_else(|| find(p, b"\n"));
    let first = &p[..line_end.unwrap_or(p.len())];
    if is_request && find(first, b" HTTP/").is_none() {
        return None;
    }
    let status = if is_response {
        // "HTTP/1.1 200 OK": the code is bytes 9..12.
        let code = first.get(9..12)?;
        let s = std::str::from_utf8(code).ok()?;
        Some(s.parse::<u16>().ok()?)
    } else {
        None
    };
    let body_offset = find(p, b"\r\n\r\n").map(|i| i + 4);
    let head = &p[..body_offset.unwrap_or(p.len())];
    let websocket_upgrade = head
        .split(|&b| b == b'\n')
        .skip(1)
        .any(|l| header_is(l, b"upgrade", b"websocket"));
    Some(HttpHead {
        line: printable(first, MAX_LINE),
        status,
        websocket_upgrade,
        body_offset,
    })
}

/// `name: value` (case-insensitive, value may be a comma list).
fn header_is(line: &[u8], name: &[u8], value: &[u8]) -> bool {
    let Some(colon) = line.iter().position(|&b| b == b':') else {
        return false;
    };
    if !line[..colon].trim_ascii().eq_ignore_ascii_case(name) {
        return false;
    }
    line[colon + 1..]
        .split(|&b| b == b',')
        .any(|v| v.trim_ascii().eq_ignore_ascii_case(value))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// At most `max` characters of `b`, non-printable bytes as `.`, with `...`
/// when cut.
pub fn printable(b: &[u8], max: usize) -> String {
    let mut s: String = b
        .iter()
        .take(max)
        .map(|&c| {
            if (0x20..0x7f).contains(&c) {
                c as char
            } else {
                '.'
            }
        })
        .collect();
    if b.len() > max {
        s.push_str("...");
    }
    s
}

/// Follows WebSocket frame boundaries in one direction of a connection.
#[derive(Debug, Clone, Default)]
pub struct WsFollower {
    /// Bytes of a frame header split across segments (at most 14).
    hdr: [u8; 14],
    hdr_len: usize,
    /// Payload bytes of the current frame still to skip.
    skip: u64,
}

/// A decoded WebSocket frame header (RFC 6455 section 5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FrameHead {
    fin: bool,
    opcode: u8,
    mask: Option<[u8; 4]>,
    len: u64,
    header_len: usize,
}

/// Decode a frame header from the start of `b`, or `None` if more bytes are
/// needed.
fn frame_head(b: &[u8]) -> Option<FrameHead> {
    let b0 = *b.first()?;
    let b1 = *b.get(1)?;
    let masked = b1 & 0x80 != 0;
    let (len, mut n) = match b1 & 0x7f {
        126 => (u64::from(u16::from_be_bytes([*b.get(2)?, *b.get(3)?])), 4),
        127 => {
            let x = b.get(2..10)?;
            let mut a = [0u8; 8];
            a.copy_from_slice(x);
            (u64::from_be_bytes(a), 10)
        }
        l => (u64::from(l), 2),
    };
    let mask = if masked {
        let m = b.get(n..n + 4)?;
        n += 4;
        Some([m[0], m[1], m[2], m[3]])
    } else {
        None
    };
    Some(FrameHead {
        fin: b0 & 0x80 != 0,
        opcode: b0 & 0x0f,
        mask,
        len,
        header_len: n,
    })
}

fn opcode_name(op: u8) -> String {
    match op {
        0 => "cont".into(),
        1 => "text".into(),
        2 => "binary".into(),
        8 => "close".into(),
        9 => "ping".into(),
        10 => "pong".into(),
        o => format!("op={o}"),
    }
}

impl WsFollower {
    /// Feed the next in-order payload bytes; returns the names of the frames
    /// whose header is completed in `p` (empty if none).
    pub fn feed(&mut self, mut p: &[u8]) -> Vec<String> {
        let mut names = Vec::new();
        let mut count = 0usize;
        while !p.is_empty() {
            if self.skip > 0 {
                let n = (p.len() as u64).min(self.skip) as usize;
                self.skip -= n as u64;
                p = &p[n..];
                continue;
            }
            // Accumulate header bytes (up to 14) until the header decodes.
            let take = (self.hdr.len() - self.hdr_len).min(p.len());
            let mut tmp = [0u8; 14];
            tmp[..self.hdr_len].copy_from_slice(&self.hdr[..self.hdr_len]);
            tmp[self.hdr_len..self.hdr_len + take].copy_from_slice(&p[..take]);
            let avail = self.hdr_len + take;
            match frame_head(&tmp[..avail]) {
                None => {
                    // All of p is header so far.
                    self.hdr = tmp;
                    self.hdr_len = avail;
                    break;
                }
                Some(h) => {
                    let used_from_p = h.header_len - self.hdr_len;
                    self.hdr_len = 0;
                    p = &p[used_from_p..];
                    let body_here = &p[..(p.len() as u64).min(h.len) as usize];
                    count += 1;
                    if count <= MAX_FRAMES_NAMED {
                        names.push(describe(&h, body_here));
                    }
                    self.skip = h.len;
                }
            }
        }
        if count > MAX_FRAMES_NAMED {
            names.push(format!("+{} more WS frames", count - MAX_FRAMES_NAMED));
        }
        names
    }
}

impl WsFollower {
    /// Feed the next in-order payload of which only the first `p.len()` of
    /// `total` bytes were captured (a capture's snap length, or the prefix a
    /// live recording keeps). `None` if the frame boundaries are lost: a
    /// frame header lies in the bytes not captured.
    pub fn feed_cut(&mut self, p: &[u8], total: usize) -> Option<Vec<String>> {
        let names = self.feed(p);
        let missing = total.saturating_sub(p.len()) as u64;
        if missing == 0 {
            return Some(names);
        }
        if self.hdr_len == 0 && self.skip >= missing {
            self.skip -= missing;
            Some(names)
        } else {
            None
        }
    }
}

fn unmask(h: &FrameHead, body: &[u8], max: usize) -> Vec<u8> {
    body.iter()
        .take(max)
        .enumerate()
        .map(|(i, &b)| match h.mask {
            Some(m) => b ^ m[i % 4],
            None => b,
        })
        .collect()
}

fn describe(h: &FrameHead, body: &[u8]) -> String {
    let masked = if h.mask.is_some() { " masked" } else { "" };
    if h.opcode == 8 {
        // Close: a 2-byte status code, then a UTF-8 reason (RFC 6455 5.5.1).
        let b = unmask(h, body, 2 + MAX_PREVIEW + 1);
        let mut s = String::from("WS close");
        if b.len() >= 2 && h.len >= 2 {
            s.push_str(&format!(" {}", u16::from_be_bytes([b[0], b[1]])));
        }
        s.push_str(masked);
        if b.len() > 2 {
            s.push_str(&format!(" \"{}\"", printable(&b[2..], MAX_PREVIEW)));
        }
        return s;
    }
    let fin = if h.fin { " FIN" } else { "" };
    let mut s = format!("WS {}{fin}{masked} len={}", opcode_name(h.opcode), h.len);
    if h.opcode == 1 && !body.is_empty() {
        let b = unmask(h, body, MAX_PREVIEW + 1);
        s.push_str(&format!(" \"{}\"", printable(&b, MAX_PREVIEW)));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_line_and_upgrade() {
        let p =
            b"GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\n\r\n";
        let h = http_head(p).unwrap();
        assert_eq!(h.line, "GET /chat HTTP/1.1");
        assert!(h.websocket_upgrade);
        assert_eq!(h.status, None);
        assert_eq!(h.body_offset, Some(p.len()));
    }

    #[test]
    fn status_line() {
        let p = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x02hi";
        let h = http_head(p).unwrap();
        assert_eq!(h.line, "HTTP/1.1 101 Switching Protocols");
        assert_eq!(h.status, Some(101));
        assert!(h.websocket_upgrade);
        assert_eq!(&p[h.body_offset.unwrap()..], b"\x81\x02hi");
    }

    #[test]
    fn not_http() {
        assert_eq!(http_head(b"GETTING"), None);
        assert_eq!(http_head(b"GET / FTP\r\n"), None);
        assert_eq!(http_head(b"HTTP/1.1 2x0 OK"), None);
        assert_eq!(http_head(b""), None);
        assert_eq!(http_head(b"HTTP/1."), None);
    }

    #[test]
    fn ws_masked_text_rfc6455_example() {
        // RFC 6455 section 5.7: a masked "Hello".
        let mut f = WsFollower::default();
        let names = f.feed(&[
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ]);
        assert_eq!(names, vec!["WS text FIN masked len=5 \"Hello\""]);
    }

    #[test]
    fn ws_header_split_across_segments_and_close() {
        let mut f = WsFollower::default();
        // Unmasked 200-byte binary frame (16-bit length), header split.
        assert!(f.feed(&[0x82, 126]).is_empty());
        assert_eq!(f.feed(&[0, 200, 1, 2, 3]), vec!["WS binary FIN len=200"]);
        assert!(f.feed(&[0u8; 197]).is_empty());
        // Close 1000 "bye", unmasked, then a ping.
        assert_eq!(
            f.feed(&[0x88, 5, 0x03, 0xe8, b'b', b'y', b'e', 0x89, 0]),
            vec!["WS close 1000 \"bye\"", "WS ping FIN len=0"]
        );
    }

    #[test]
    fn ws_many_frames_are_summarized() {
        let mut f = WsFollower::default();
        let names = f.feed(&[0x8a, 0, 0x8a, 0, 0x8a, 0, 0x8a, 0, 0x8a, 0]);
        assert_eq!(names.len(), 4);
        assert_eq!(names[3], "+2 more WS frames");
    }

    #[test]
    fn ws_cut_payload_is_followed_while_the_cut_is_inside_a_frame() {
        // A 1000-byte binary frame of which 100 bytes were captured, then the
        // next frame: followed.
        let mut f = WsFollower::default();
        let mut seg = vec![0x82, 126, 0x03, 0xe8];
        seg.extend_from_slice(&[0; 96]);
        assert_eq!(
            f.feed_cut(&seg, 1004),
            Some(vec!["WS binary FIN len=1000".to_string()])
        );
        assert_eq!(f.feed(&[0x89, 0]), vec!["WS ping FIN len=0"]);
        // Two frames in one segment, the second header beyond the cut: lost.
        let mut f = WsFollower::default();
        assert_eq!(f.feed_cut(&[0x8a, 1, 0], 7), None);
    }

    #[test]
    fn ws_never_panics_on_prefixes() {
        let frame = [0x81u8, 0xff, 0, 0, 0, 0, 0, 0, 0, 9, 1, 2, 3, 4, 5];
        for cut in 0..=frame.len() {
            let mut f = WsFollower::default();
            let _ = f.feed(&frame[..cut]);
            let _ = f.feed(&frame[cut..]);
        }
    }
}
