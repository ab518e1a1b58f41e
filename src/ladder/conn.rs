//! Following one TCP connection through a capture: relative sequence
//! numbers, window scaling, and the analysis behind the diagram's marks
//! (retransmission, duplicate ACK, zero window, ...).
//!
//! The analysis looks at the segments in capture order, as one observer at
//! one point of the path saw them, with the same heuristics Wireshark's
//! "TCP analysis" uses (simplified). Each heuristic is described on
//! [`Tag`]. They are heuristics: a capture taken at the receiver cannot know
//! that a segment was lost before it.

use super::app::{self, WsFollower};
use crate::wire::{SeqNumber, TcpFlags, TcpRepr};
use std::net::SocketAddrV4;
use std::time::Duration;

/// Segments kept per connection; later ones are counted, not stored.
pub const MAX_STORED_SEGMENTS: usize = 100_000;
/// Sequence holes remembered per direction (for out-of-order detection).
const MAX_HOLES: usize = 64;

/// A mark on a segment. The text rendering shows [`Tag::label`]; the SVG
/// colours the arrow by [`Tag::class`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tag {
    /// Data (or SYN/FIN) whose sequence range was already sent: the sender
    /// timed out or fast-retransmitted (RFC 6298, RFC 5681 section 3.2).
    Retransmission,
    /// Data that fills a hole left by a later segment: the network reordered
    /// it, or the capture missed the first copy.
    OutOfOrder,
    /// Data starting after the highest byte seen so far: the bytes in
    /// between were not captured (lost before the capture point).
    PrevNotCaptured,
    /// The n-th ACK repeating the previous ACK number and window while the
    /// peer has data outstanding (RFC 5681 section 2, "duplicate
    /// acknowledgment"); three of them trigger fast retransmit.
    DupAck(u32),
    /// The sender advertises a zero receive window (RFC 9293 3.8.6).
    ZeroWindow,
    /// A probe of the peer's zero window: one new byte at the window edge,
    /// or (as Linux sends them) an empty segment one byte before it
    /// (RFC 9293 3.8.6.1).
    ZeroWindowProbe,
    /// A pure ACK that only changes the window (e.g. reopening after zero).
    WindowUpdate,
    /// An empty or one-byte segment one byte before the next sequence
    /// number: the peer must answer with an ACK (RFC 9293 3.8.4, RFC 1122
    /// 4.2.3.6).
    KeepAlive,
    /// The segment resets the connection (RFC 9293 3.5.2).
    Rst,
}

/// How a segment is drawn, in order of precedence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    Rst,
    Retransmission,
    OutOfOrder,
    ZeroWindow,
    DupAck,
    WindowUpdate,
    KeepAlive,
    Handshake,
    Normal,
}

impl Tag {
    /// The mark as text, e.g. `RETRANS` or `DUP-ACK #2`.
    pub fn label(&self) -> String {
        match self {
            Tag::Retransmission => "RETRANS".into(),
            Tag::OutOfOrder => "OUT-OF-ORDER".into(),
            Tag::PrevNotCaptured => "PREV-NOT-CAPTURED".into(),
            Tag::DupAck(n) => format!("DUP-ACK #{n}"),
            Tag::ZeroWindow => "ZERO-WINDOW".into(),
            Tag::ZeroWindowProbe => "ZERO-WINDOW-PROBE".into(),
            Tag::WindowUpdate => "WINDOW-UPDATE".into(),
            Tag::KeepAlive => "KEEPALIVE".into(),
            Tag::Rst => "RST".into(),
        }
    }

    /// The drawing class of the mark.
    pub fn class(&self) -> Class {
        match self {
            Tag::Retransmission => Class::Retransmission,
            Tag::OutOfOrder | Tag::PrevNotCaptured => Class::OutOfOrder,
            Tag::DupAck(_) => Class::DupAck,
            Tag::ZeroWindow | Tag::ZeroWindowProbe => Class::ZeroWindow,
            Tag::WindowUpdate => Class::WindowUpdate,
            Tag::KeepAlive => Class::KeepAlive,
            Tag::Rst => Class::Rst,
        }
    }
}

/// One TCP segment of a connection, ready to draw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// 1-based record number in the capture file (as Wireshark numbers them).
    pub frame: usize,
    /// Time since the connection's first segment.
    pub time: Duration,
    /// Sent by the client (left column) to the server (right column).
    pub from_client: bool,
    pub flags: TcpFlags,
    /// Sequence number relative to the sender's ISN.
    pub seq: u32,
    /// Acknowledgment number relative to the receiver's ISN (if ACK is set).
    pub ack: Option<u32>,
    /// Payload length (from the IP header, even if the capture cut it).
    pub len: usize,
    /// The advertised window in bytes: scaled (RFC 7323 2.3) when both SYNs
    /// carried a window-scale option, except on SYNs themselves.
    pub window: u32,
    /// Handshake options, e.g. `["mss 1460", "sackOK", "TS", "wscale 7"]`
    /// (only on SYN segments).
    pub options: Vec<String>,
    /// SACK blocks (RFC 2018), relative to the receiver's ISN.
    pub sack: Vec<(u32, u32)>,
    pub tags: Vec<Tag>,
    /// Application content recognized in the payload.
    pub app: Vec<String>,
    /// What the stack itself decided, when the source knows it (a live
    /// recording or a `--trace` file) and it is worth showing: e.g.
    /// `out_of_window`, `dropped: tcp_bad_checksum`, `retransmitted`.
    /// `None` for captures and for ordinary accepted or sent segments.
    pub decision: Option<String>,
    /// Segments of this connection left out just before this one (not
    /// recorded, or cut from the drawing); the diagrams mark the gap.
    pub skipped_before: u64,
}

impl Segment {
    /// `SYN`, `SYN-ACK`, `PSH-ACK`, `FIN-ACK`, `RST-ACK`, ...
    pub fn flag_name(&self) -> String {
        let f = self.flags;
        let mut parts = Vec::new();
        for (on, name) in [
            (f.syn(), "SYN"),
            (f.fin(), "FIN"),
            (f.rst(), "RST"),
            (f.psh(), "PSH"),
            (f.ack(), "ACK"),
            (f.urg(), "URG"),
            (f.ece(), "ECE"),
            (f.cwr(), "CWR"),
        ] {
            if on {
                parts.push(name);
            }
        }
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join("-")
        }
    }

    /// The TCP part of the label: `PSH-ACK seq=1:79 ack=1 win=64256 len=78`.
    pub fn tcp_label(&self) -> String {
        let mut s = self.flag_name();
        if self.len > 0 {
            s.push_str(&format!(
                " seq={}:{}",
                self.seq,
                self.seq.wrapping_add(self.len as u32)
            ));
        } else {
            s.push_str(&format!(" seq={}", self.seq));
        }
        if let Some(a) = self.ack {
            s.push_str(&format!(" ack={a}"));
        }
        s.push_str(&format!(" win={}", self.window));
        if self.len > 0 {
            s.push_str(&format!(" len={}", self.len));
        }
        if !self.options.is_empty() {
            s.push_str(&format!(" [{}]", self.options.join(",")));
        }
        if !self.sack.is_empty() {
            let b: Vec<String> = self.sack.iter().map(|(l, r)| format!("{l}:{r}")).collect();
            s.push_str(&format!(" SACK {}", b.join(",")));
        }
        s
    }

    /// The drawing class: the most important tag, else handshake (SYN, FIN)
    /// or normal.
    pub fn class(&self) -> Class {
        let c = self.tags.iter().map(Tag::class).min();
        match c {
            Some(c) => c,
            None if self.flags.syn() || self.flags.fin() => Class::Handshake,
            None => Class::Normal,
        }
    }
}

/// The note for [`Segment::decision`]: the stack's decision about a segment
/// (as the trace names it: `accepted`, `out_of_window`, `dropped` with a
/// `reason`, `retransmitted`, ...), or `None` for the ordinary ones.
pub fn decision_note(decision: &str, reason: Option<&str>) -> Option<String> {
    match decision {
        "accepted" | "sacked" | "sent" => None,
        "dropped" => Some(format!("dropped: {}", reason.unwrap_or("?"))),
        d => Some(d.to_string()),
    }
}

/// What one direction of the connection has sent so far.
#[derive(Debug, Clone, Default)]
struct Side {
    /// Base of relative sequence numbers: the ISN, or the first sequence
    /// number seen when the SYN was not captured.
    base: Option<SeqNumber>,
    syn_wscale: Option<u8>,
    syn_seen: bool,
    /// One past the highest sequence number sent.
    next: Option<SeqNumber>,
    holes: Vec<(SeqNumber, SeqNumber)>,
    last_seq: Option<SeqNumber>,
    last_ack: Option<SeqNumber>,
    last_win: Option<u32>,
    dup_acks: u32,
    app: AppState,
}

#[derive(Debug, Clone, Default)]
enum AppState {
    /// Looking for HTTP heads at the start of segments.
    #[default]
    Http,
    /// After a 101: following WebSocket frames.
    WebSocket(WsFollower),
    /// Lost track (bytes missing from the capture).
    Lost,
}

/// One TCP connection: the segments between two endpoints, from a SYN (or
/// from the first segment captured) on.
#[derive(Debug, Clone)]
pub struct Connection {
    /// Sender of the first SYN, or of the first segment when no SYN was
    /// captured.
    pub client: SocketAddrV4,
    pub server: SocketAddrV4,
    /// Capture time (nanoseconds since the UNIX epoch) of the first segment.
    pub start_nanos: u64,
    pub segments: Vec<Segment>,
    /// Segments seen (stored or not).
    pub packets: usize,
    /// Payload bytes seen, both directions.
    pub bytes: u64,
    /// Segments not stored because of [`MAX_STORED_SEGMENTS`].
    pub not_stored: usize,
    sides: [Side; 2],
    upgrade_requested: bool,
    /// Both directions have closed (FIN or RST seen): a new SYN on the same
    /// 4-tuple starts a new connection.
    pub(crate) closed: bool,
    fins: [bool; 2],
}

impl Connection {
    pub(crate) fn new(client: SocketAddrV4, server: SocketAddrV4, start_nanos: u64) -> Self {
        Connection {
            client,
            server,
            start_nanos,
            segments: Vec::new(),
            packets: 0,
            bytes: 0,
            not_stored: 0,
            sides: [Side::default(), Side::default()],
            upgrade_requested: false,
            closed: false,
            fins: [false; 2],
        }
    }

    /// Both SYNs carried a window-scale option (RFC 7323 section 1.3).
    fn scaling(&self) -> bool {
        self.sides[0].syn_wscale.is_some() && self.sides[1].syn_wscale.is_some()
    }

    /// Analyze and store one segment. `wire_len` is the payload length from
    /// the IP header; `tcp.payload` may be shorter if the capture cut it.
    /// Returns the stored segment (`None` past [`MAX_STORED_SEGMENTS`]).
    pub(crate) fn push(
        &mut self,
        frame: usize,
        ts_nanos: u64,
        from_client: bool,
        tcp: &TcpRepr,
        wire_len: usize,
    ) -> Option<&mut Segment> {
        self.packets += 1;
        self.bytes += wire_len as u64;
        let (d, o) = if from_client { (0, 1) } else { (1, 0) };
        let f = tcp.flags;
        let seq = tcp.seq_number;
        let ack = tcp.ack_number;

        if f.syn() {
            let side = &mut self.sides[d];
            if !side.syn_seen {
                side.base = Some(seq);
                side.syn_seen = true;
                side.syn_wscale = tcp.window_scale.map(|s| s.min(14));
            }
        }
        if self.sides[d].base.is_none() {
            self.sides[d].base = Some(seq);
        }
        if f.ack() && self.sides[o].base.is_none() {
            self.sides[o].base = Some(ack);
        }
        let scaled_win = if !f.syn() && self.scaling() {
            u32::from(tcp.window_len) << self.sides[d].syn_wscale.unwrap_or(0)
        } else {
            u32::from(tcp.window_len)
        };

        let seg_len = wire_len as u32 + u32::from(f.syn()) + u32::from(f.fin());
        let end = seq.wrapping_add(seg_len);
        let mut tags = Vec::new();
        let peer_window_zero = self.sides[o].last_win == Some(0);
        let side = &self.sides[d];
        let plain = !f.syn() && !f.fin() && !f.rst();
        let mut in_order_new_data = false;

        if f.rst() {
            tags.push(Tag::Rst);
        }
        let keepalive_like =
            plain && wire_len <= 1 && side.next.is_some_and(|n| seq == n.wrapping_sub(1));
        if keepalive_like {
            tags.push(if peer_window_zero {
                Tag::ZeroWindowProbe
            } else {
                Tag::KeepAlive
            });
        } else if plain && wire_len == 1 && peer_window_zero && side.next == Some(seq) {
            tags.push(Tag::ZeroWindowProbe);
        } else if seg_len > 0 {
            match side.next {
                Some(n) if seq < n => {
                    let fills_hole = side.holes.iter().any(|&(l, r)| seq < r && end > l);
                    tags.push(if fills_hole {
                        Tag::OutOfOrder
                    } else {
                        Tag::Retransmission
                    });
                }
                Some(n) if seq > n => tags.push(Tag::PrevNotCaptured),
                _ => in_order_new_data = true,
            }
        }
        if tcp.window_len == 0 && !f.rst() && !tags.contains(&Tag::ZeroWindowProbe) {
            tags.push(Tag::ZeroWindow);
        }
        // Pure ACKs: window updates and duplicate ACKs.
        let pure_ack = plain && seg_len == 0 && f.ack() && !keepalive_like;
        let same_ack = side.last_ack == Some(ack) && side.last_seq == Some(seq);
        let mut dup = false;
        if pure_ack && same_ack {
            if side.last_win != Some(scaled_win) {
                if scaled_win != 0 {
                    tags.push(Tag::WindowUpdate);
                }
            } else if self.sides[o].next.is_some_and(|n| ack < n) {
                dup = true;
            }
        }

        // Update the sender's state.
        let side = &mut self.sides[d];
        if dup {
            side.dup_acks += 1;
            tags.push(Tag::DupAck(side.dup_acks));
        } else if f.ack() && side.last_ack != Some(ack) {
            side.dup_acks = 0;
        }
        // Probes do not advance `next`: the probed byte is sent again when
        // the window opens, and that segment is then in order.
        if seg_len > 0 && !keepalive_like && !tags.contains(&Tag::ZeroWindowProbe) {
            if let Some(n) = side.next {
                if seq > n && side.holes.len() < MAX_HOLES {
                    side.holes.push((n, seq));
                }
            }
            side.holes.retain(|&(l, r)| !(seq <= l && end >= r));
            side.next = Some(side.next.map_or(end, |n| n.max(end)));
        }
        if f.ack() {
            side.last_ack = Some(ack);
        }
        side.last_seq = Some(seq);
        side.last_win = Some(scaled_win);

        // Application content.
        let mut app_labels = Vec::new();
        if wire_len > 0 {
            app_labels = self.recognize(d, o, tcp.payload, wire_len, in_order_new_data);
        } else if tags.contains(&Tag::PrevNotCaptured) {
            self.sides[d].app = AppState::Lost;
        }

        // Closing: both FINs, or a RST.
        if f.fin() {
            self.fins[d] = true;
        }
        if f.rst() || (self.fins[0] && self.fins[1]) {
            self.closed = true;
        }

        if self.segments.len() >= MAX_STORED_SEGMENTS {
            self.not_stored += 1;
            return None;
        }
        let base_d = self.sides[d].base.unwrap_or(seq);
        let base_o = self.sides[o].base.unwrap_or(ack);
        let mut options = Vec::new();
        if f.syn() {
            if let Some(m) = tcp.max_seg_size {
                options.push(format!("mss {m}"));
            }
            if tcp.sack_permitted {
                options.push("sackOK".into());
            }
            if tcp.timestamp.is_some() {
                options.push("TS".into());
            }
            if let Some(w) = tcp.window_scale {
                options.push(format!("wscale {w}"));
            }
        }
        let sack = tcp
            .sack_ranges
            .iter()
            .flatten()
            .map(|&(l, r)| (l.wrapping_sub(base_o.0), r.wrapping_sub(base_o.0)))
            .collect();
        self.segments.push(Segment {
            frame: frame + 1,
            time: Duration::from_nanos(ts_nanos.saturating_sub(self.start_nanos)),
            from_client,
            flags: f,
            seq: seq.0.wrapping_sub(base_d.0),
            ack: f.ack().then(|| ack.0.wrapping_sub(base_o.0)),
            len: wire_len,
            window: scaled_win,
            options,
            sack,
            tags,
            app: app_labels,
            decision: None,
            skipped_before: 0,
        });
        self.segments.last_mut()
    }

    /// Labels for the application content of a payload, of which the
    /// capture has the first `payload.len()` of `wire_len` bytes.
    /// `in_order`: the payload continues the byte stream exactly (WebSocket
    /// frames are only followed on in-order data).
    fn recognize(
        &mut self,
        d: usize,
        o: usize,
        payload: &[u8],
        wire_len: usize,
        in_order: bool,
    ) -> Vec<String> {
        match &mut self.sides[d].app {
            AppState::Lost => Vec::new(),
            AppState::WebSocket(ws) => {
                if !in_order {
                    return Vec::new();
                }
                match ws.feed_cut(payload, wire_len) {
                    Some(names) => names,
                    None => {
                        self.sides[d].app = AppState::Lost;
                        Vec::new()
                    }
                }
            }
            AppState::Http => {
                let Some(h) = app::http_head(payload) else {
                    return Vec::new();
                };
                let mut labels = vec![format!("\"{}\"", h.line)];
                match h.status {
                    None if h.websocket_upgrade => {
                        self.upgrade_requested = true;
                        labels.push("WebSocket upgrade".into());
                    }
                    Some(101) if (h.websocket_upgrade || self.upgrade_requested) && in_order => {
                        labels.push("WebSocket accepted".into());
                        let mut ws = WsFollower::default();
                        // The frames after the head, if the capture has the
                        // whole head; else the frames cannot be followed.
                        let followed = match h.body_offset {
                            Some(off) => {
                                let off = off.min(payload.len());
                                let rest = wire_len.saturating_sub(off);
                                ws.feed_cut(&payload[off..], rest).map(|n| labels.extend(n))
                            }
                            None if payload.len() == wire_len => Some(()),
                            None => None,
                        };
                        self.sides[d].app = match followed {
                            Some(()) => AppState::WebSocket(ws),
                            None => AppState::Lost,
                        };
                        self.sides[o].app = AppState::WebSocket(WsFollower::default());
                    }
                    _ => {}
                }
                labels
            }
        }
    }
}
