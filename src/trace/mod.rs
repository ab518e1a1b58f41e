//! The connection event log behind `ustack serve --trace FILE`.
//!
//! A capture (`--pcap`) shows what crossed the wire. A trace shows what the
//! stack *thought* about it: for every TCP connection, each segment in and
//! out with the decision taken (accepted, out of order, duplicate, out of
//! window, dropped and why, retransmitted), each state transition (RFC 9293
//! section 3.3.2), each timer that fired (retransmission, persist, delayed
//! ACK, keepalive, TIME-WAIT, FIN-WAIT-2) and each change of the congestion
//! window or slow-start threshold (RFC 5681).
//!
//! ## Sans-IO
//! The core ([`crate::iface::Stack`]) records [`TraceEvent`]s into a bounded
//! in-memory queue of this module's [`Tracer`] when tracing is switched on
//! (`Stack::set_tracing(true)`); the runtime drains the queue
//! (`Stack::drain_trace`) once per loop turn and writes one JSON object per
//! line ([`TraceEvent::write_json`]). When tracing is off, each hook costs a
//! single branch. Events are derived at the interface level (the segment in,
//! the TCB's state before and after each call, the timers due), so the TCP
//! state machine itself knows nothing about tracing.
//!
//! ## The file format (JSON lines)
//! The first line describes the run; every other line is one event. All
//! values are scalars (see [`json`]); `t_us` is microseconds since the
//! runtime started, `wall_us` in the first line is the wall-clock time
//! (UNIX epoch, microseconds) of `t_us = 0`.
//!
//! ```text
//! {"ev":"trace_start","version":1,"addr":"10.0.0.2","seed":1,"wall_us":1735689600000000}
//! {"t_us":1520,"ev":"seg","dir":"in","id":0,"local":"10.0.0.2:80","remote":"10.0.0.1:40000","flags":"SYN","seq":1234,"ack":0,"win":64240,"len":0,"mss":1460,"wscale":7,"sack_ok":true,"tsval":1,"tsecr":0,"decision":"accepted"}
//! {"t_us":1520,"ev":"state","id":0,"local":"10.0.0.2:80","remote":"10.0.0.1:40000","from":"LISTEN","to":"SYN-RECEIVED"}
//! {"t_us":1520,"ev":"cc","id":0,"local":"10.0.0.2:80","remote":"10.0.0.1:40000","cwnd":14600,"ssthresh":-1}
//! {"t_us":1530,"ev":"seg","dir":"out",...,"flags":"SYN,ACK",...,"decision":"sent"}
//! {"t_us":201530,"ev":"timer","id":0,...,"timer":"rto"}
//! ```
//!
//! | `ev` | fields |
//! |---|---|
//! | `seg` | `dir` (`in`/`out`), `flags`, `seq`, `ack`, `win` (the raw 16-bit field), `len` (payload bytes), options when present (`mss`, `wscale`, `sack_ok`, `tsval`/`tsecr`, `sack` as `"L-R L-R"`), `decision` (in: `accepted`, `out_of_order`, `duplicate`, `sacked`, `out_of_window`, `dropped` with `reason`; out: `sent`, `retransmitted`) |
//! | `state` | `from`, `to` (RFC 9293 state names) |
//! | `timer` | `timer`: `rto`, `delayed_ack`, `persist`, `keepalive`, `time_wait`, `fin_wait2` |
//! | `cc` | `cwnd`, `ssthresh` (bytes; `-1` = infinite) after a change |
//! | `lost` | `count`: events dropped because the queue was full |
//!
//! `id`, `local` and `remote` name the connection (`id` is the number
//! `/api/stats` shows; it is `null` for segments that belong to no
//! connection, such as a RST for a closed port). `ustack ladder FILE.jsonl`
//! draws the segments of a trace like those of a pcap.
//!
//! ## Live ladders
//! The same segment hooks feed [`segments`], a small bounded recording of
//! recent segments (with payload prefixes) kept while a dashboard looks,
//! from which [`crate::ladder::live`] draws the ladder of a live connection.

pub mod json;
pub mod segments;

use crate::iface::DropReason;
use crate::tcp::State;
use crate::time::Instant;
use crate::wire::{IpProtocol, Ipv4Packet, TcpPacket, TcpRepr};
use std::collections::VecDeque;
use std::fmt::Write;
use std::net::SocketAddrV4;

/// Events held in memory between two drains at most; more are counted as lost.
pub const QUEUE_LIMIT: usize = 65_536;
/// State transitions kept for `/api/stats` (all connections together).
pub const HISTORY_LIMIT: usize = 64;

/// Direction of a segment, seen from the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    In,
    Out,
}

/// What the stack did with a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// In: processed normally.
    Accepted,
    /// In: data beyond RCV.NXT, queued until the hole is filled (and a duplicate ACK sent).
    OutOfOrder,
    /// In: data entirely below RCV.NXT (already received): only re-acknowledged.
    Duplicate,
    /// In: an acceptable ACK carrying SACK blocks (RFC 2018).
    Sacked,
    /// In: not acceptable (RFC 9293 3.10.7.4): outside the receive window.
    OutOfWindow,
    /// In: dropped for this reason (counted in `/api/stats` drops).
    Dropped(DropReason),
    /// Out: first transmission.
    Sent,
    /// Out: resends sequence space already sent (RTO or fast retransmit).
    Retransmitted,
}

impl Decision {
    pub fn label(&self) -> &'static str {
        match self {
            Decision::Accepted => "accepted",
            Decision::OutOfOrder => "out_of_order",
            Decision::Duplicate => "duplicate",
            Decision::Sacked => "sacked",
            Decision::OutOfWindow => "out_of_window",
            Decision::Dropped(_) => "dropped",
            Decision::Sent => "sent",
            Decision::Retransmitted => "retransmitted",
        }
    }
}

/// The TCP header of a traced segment (no payload: only its length).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegInfo {
    pub dir: Dir,
    pub flags: u8,
    pub seq: u32,
    pub ack: u32,
    /// The raw window field.
    pub win: u16,
    pub len: u32,
    pub mss: Option<u16>,
    pub wscale: Option<u8>,
    pub sack_ok: bool,
    pub sack: [Option<(u32, u32)>; 3],
    pub ts: Option<(u32, u32)>,
    pub decision: Decision,
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Segment(SegInfo),
    State {
        from: State,
        to: State,
    },
    /// A timer fired; the name as in the module table.
    Timer(&'static str),
    Congestion {
        cwnd: u32,
        ssthresh: u32,
    },
    /// Events lost to a full queue since the last drain.
    Lost(u64),
}

/// One line of the trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceEvent {
    pub t: Instant,
    /// The connection's number (slot index, as in `/api/stats`), if any.
    pub id: Option<u32>,
    pub local: SocketAddrV4,
    pub remote: SocketAddrV4,
    pub kind: EventKind,
}

/// A state transition kept for the dashboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub t: Instant,
    pub id: u32,
    pub local: SocketAddrV4,
    pub remote: SocketAddrV4,
    pub from: State,
    pub to: State,
}

/// What the tracer last saw of a connection slot.
#[derive(Debug, Clone, Copy)]
struct Mark {
    generation: u32,
    state: State,
    cwnd: u32,
    ssthresh: u32,
}

/// The recorder owned by the stack. Two switches: `full` (every event into
/// the queue, for `--trace`) and `history` (only state transitions into a
/// small ring, for `/api/stats`).
#[derive(Debug, Default)]
pub struct Tracer {
    full: bool,
    history: bool,
    /// The latest time the stack was given (socket API calls carry no time).
    pub now: Instant,
    queue: VecDeque<TraceEvent>,
    lost: u64,
    marks: Vec<Option<Mark>>,
    transitions: VecDeque<Transition>,
    /// The recent segments for live ladder diagrams ([`segments`]).
    pub segments: segments::SegmentLog,
}

/// Flag names, as the trace writes them (`SYN,ACK`).
pub fn flag_names(flags: u8) -> String {
    const NAMES: [(u8, &str); 8] = [
        (0x02, "SYN"),
        (0x01, "FIN"),
        (0x04, "RST"),
        (0x08, "PSH"),
        (0x10, "ACK"),
        (0x20, "URG"),
        (0x40, "ECE"),
        (0x80, "CWR"),
    ];
    let v: Vec<&str> = NAMES
        .iter()
        .filter(|(b, _)| flags & b != 0)
        .map(|(_, n)| *n)
        .collect();
    v.join(",")
}

/// The inverse of [`flag_names`]; `None` on an unknown name.
pub fn parse_flag_names(s: &str) -> Option<u8> {
    let mut f = 0u8;
    for n in s.split(',').filter(|n| !n.is_empty()) {
        f |= match n {
            "FIN" => 0x01,
            "SYN" => 0x02,
            "RST" => 0x04,
            "PSH" => 0x08,
            "ACK" => 0x10,
            "URG" => 0x20,
            "ECE" => 0x40,
            "CWR" => 0x80,
            _ => return None,
        };
    }
    Some(f)
}

/// Read the TCP header of an IPv4 packet (not a fragment), without checking
/// the checksum (a corrupted segment is traced too, with its drop reason).
/// Returns (source, destination, header).
pub fn parse_tcp(packet: &[u8]) -> Option<(SocketAddrV4, SocketAddrV4, TcpRepr<'_>)> {
    let ip = Ipv4Packet::new_checked(packet).ok()?;
    if ip.protocol() != IpProtocol::Tcp || ip.more_frags() || ip.frag_offset() != 0 {
        return None;
    }
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    let hl = ip.header_len();
    let end = (ip.total_len() as usize).min(packet.len());
    let tcp_bytes = packet.get(hl..end)?;
    let pkt = TcpPacket::new_checked(tcp_bytes).ok()?;
    let repr = TcpRepr::parse(&pkt, src, dst, false).ok()?;
    Some((
        SocketAddrV4::new(src, repr.src_port),
        SocketAddrV4::new(dst, repr.dst_port),
        repr,
    ))
}

impl SegInfo {
    pub fn from_repr(dir: Dir, r: &TcpRepr, decision: Decision) -> SegInfo {
        SegInfo {
            dir,
            flags: r.flags.0,
            seq: r.seq_number.0,
            ack: r.ack_number.0,
            win: r.window_len,
            len: r.payload.len() as u32,
            mss: r.max_seg_size,
            wscale: r.window_scale,
            sack_ok: r.sack_permitted,
            sack: r.sack_ranges,
            ts: r.timestamp,
            decision,
        }
    }
}

impl Tracer {
    /// Is any recording on? (the one branch every hook takes)
    #[inline]
    pub fn active(&self) -> bool {
        self.full || self.history
    }
    /// Is the full event log on?
    #[inline]
    pub fn full(&self) -> bool {
        self.full
    }
    /// Does anything want the segments in and out (the event log, or the
    /// segment recording for live ladders)? The stack's segment hooks run
    /// only then.
    #[inline]
    pub fn wants_segments(&self) -> bool {
        self.full || self.segments.armed(self.now)
    }
    pub fn set_full(&mut self, on: bool) {
        self.full = on;
        if !on {
            self.queue.clear();
        }
    }
    pub fn set_history(&mut self, on: bool) {
        self.history = on;
    }

    /// Queue an event (full tracing only); returns its position in the
    /// queue, for [`Tracer::set_decision`].
    pub fn push(&mut self, ev: TraceEvent) -> Option<usize> {
        if !self.full {
            return None;
        }
        if self.queue.len() >= QUEUE_LIMIT {
            self.lost += 1;
            return None;
        }
        self.queue.push_back(ev);
        Some(self.queue.len() - 1)
    }

    /// Fill in the decision of a segment queued before it was processed
    /// (so the segment comes before the state change it causes), and its
    /// connection number if the segment created the connection.
    pub fn set_decision(&mut self, pos: usize, decision: Decision, id: Option<u32>) {
        if let Some(ev) = self.queue.get_mut(pos) {
            if let EventKind::Segment(s) = &mut ev.kind {
                s.decision = decision;
            }
            if ev.id.is_none() {
                ev.id = id;
            }
        }
    }

    /// Move all queued events to `out` (oldest first).
    pub fn drain(&mut self, out: &mut Vec<TraceEvent>) {
        out.extend(self.queue.drain(..));
        if self.lost > 0 {
            let any = SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 0);
            out.push(TraceEvent {
                t: self.now,
                id: None,
                local: any,
                remote: any,
                kind: EventKind::Lost(self.lost),
            });
            self.lost = 0;
        }
    }

    /// Compare a connection with what was last seen of it: record a state
    /// transition and a congestion-window change if there was one. Called by
    /// the stack after every operation on a connection.
    #[allow(clippy::too_many_arguments)]
    pub fn observe(
        &mut self,
        idx: u32,
        generation: u32,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        state: State,
        cwnd: u32,
        ssthresh: u32,
    ) {
        let i = idx as usize;
        if self.marks.len() <= i {
            self.marks.resize(i + 1, None);
        }
        let prev = match self.marks[i] {
            Some(m) if m.generation == generation => Some(m),
            _ => None,
        };
        self.marks[i] = Some(Mark {
            generation,
            state,
            cwnd,
            ssthresh,
        });
        let from = match prev {
            Some(m) => m.state,
            // A new connection: a passive one is born in SYN-RECEIVED, out
            // of LISTEN (a simultaneous open passes SYN-SENT first).
            None if state == State::SynReceived => State::Listen,
            None => State::Closed,
        };
        let t = self.now;
        let id = Some(idx);
        if from != state {
            if self.history {
                if self.transitions.len() >= HISTORY_LIMIT {
                    self.transitions.pop_front();
                }
                self.transitions.push_back(Transition {
                    t,
                    id: idx,
                    local,
                    remote,
                    from,
                    to: state,
                });
            }
            self.push(TraceEvent {
                t,
                id,
                local,
                remote,
                kind: EventKind::State { from, to: state },
            });
        }
        if prev.is_none_or(|m| m.cwnd != cwnd || m.ssthresh != ssthresh) && state != State::Closed {
            self.push(TraceEvent {
                t,
                id,
                local,
                remote,
                kind: EventKind::Congestion { cwnd, ssthresh },
            });
        }
    }

    /// Slot `idx` (generation `generation`) holds a connection already in
    /// `state`, as observed before under another slot (a compacted
    /// TIME-WAIT connection rebuilt to process a segment): remember the
    /// state without recording a transition.
    pub fn resume(&mut self, idx: u32, generation: u32, state: State) {
        let i = idx as usize;
        if self.marks.len() <= i {
            self.marks.resize(i + 1, None);
        }
        self.marks[i] = Some(Mark {
            generation,
            state,
            cwnd: 0,
            ssthresh: 0,
        });
    }

    /// A transition of a connection that no longer has a slot (a compacted
    /// TIME-WAIT connection ending): `id` is the slot it had.
    pub fn transition_detached(
        &mut self,
        id: u32,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        from: State,
        to: State,
    ) {
        let t = self.now;
        if self.history {
            if self.transitions.len() >= HISTORY_LIMIT {
                self.transitions.pop_front();
            }
            self.transitions.push_back(Transition {
                t,
                id,
                local,
                remote,
                from,
                to,
            });
        }
        self.push(TraceEvent {
            t,
            id: Some(id),
            local,
            remote,
            kind: EventKind::State { from, to },
        });
    }

    /// The latest state transitions, oldest first.
    pub fn transitions(&self) -> impl Iterator<Item = &Transition> {
        self.transitions.iter()
    }
}

impl TraceEvent {
    /// Append this event as one JSON object (no newline).
    pub fn write_json(&self, o: &mut String) {
        let _ = write!(o, "{{\"t_us\":{},\"ev\":", self.t.total_micros());
        o.push_str(match self.kind {
            EventKind::Segment(_) => "\"seg\"",
            EventKind::State { .. } => "\"state\"",
            EventKind::Timer(_) => "\"timer\"",
            EventKind::Congestion { .. } => "\"cc\"",
            EventKind::Lost(_) => "\"lost\"",
        });
        if let EventKind::Segment(s) = &self.kind {
            o.push_str(if s.dir == Dir::In {
                ",\"dir\":\"in\""
            } else {
                ",\"dir\":\"out\""
            });
        }
        match self.id {
            Some(id) => {
                let _ = write!(o, ",\"id\":{id}");
            }
            None => o.push_str(",\"id\":null"),
        }
        if !matches!(self.kind, EventKind::Lost(_)) {
            let _ = write!(
                o,
                ",\"local\":\"{}\",\"remote\":\"{}\"",
                self.local, self.remote
            );
        }
        match &self.kind {
            EventKind::Segment(s) => {
                let _ = write!(
                    o,
                    ",\"flags\":\"{}\",\"seq\":{},\"ack\":{},\"win\":{},\"len\":{}",
                    flag_names(s.flags),
                    s.seq,
                    s.ack,
                    s.win,
                    s.len
                );
                if let Some(m) = s.mss {
                    let _ = write!(o, ",\"mss\":{m}");
                }
                if let Some(w) = s.wscale {
                    let _ = write!(o, ",\"wscale\":{w}");
                }
                if s.sack_ok {
                    o.push_str(",\"sack_ok\":true");
                }
                if let Some((v, e)) = s.ts {
                    let _ = write!(o, ",\"tsval\":{v},\"tsecr\":{e}");
                }
                let blocks: Vec<String> = s
                    .sack
                    .iter()
                    .flatten()
                    .map(|(l, r)| format!("{l}-{r}"))
                    .collect();
                if !blocks.is_empty() {
                    let _ = write!(o, ",\"sack\":\"{}\"", blocks.join(" "));
                }
                let _ = write!(o, ",\"decision\":\"{}\"", s.decision.label());
                if let Decision::Dropped(r) = s.decision {
                    let _ = write!(o, ",\"reason\":\"{}\"", r.label());
                }
            }
            EventKind::State { from, to } => {
                let _ = write!(o, ",\"from\":\"{}\",\"to\":\"{}\"", from.name(), to.name());
            }
            EventKind::Timer(name) => {
                let _ = write!(o, ",\"timer\":\"{name}\"");
            }
            EventKind::Congestion { cwnd, ssthresh } => {
                let ss = if *ssthresh == u32::MAX {
                    -1
                } else {
                    i64::from(*ssthresh)
                };
                let _ = write!(o, ",\"cwnd\":{cwnd},\"ssthresh\":{ss}");
            }
            EventKind::Lost(n) => {
                let _ = write!(o, ",\"count\":{n}");
            }
        }
        o.push('}');
    }
}

/// The first line of a trace file.
pub fn header_line(addr: std::net::Ipv4Addr, seed: u64, wall_us: u64) -> String {
    format!("{{\"ev\":\"trace_start\",\"version\":1,\"addr\":\"{addr}\",\"seed\":{seed},\"wall_us\":{wall_us}}}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddrV4 {
        s.parse().unwrap()
    }

    #[test]
    fn flags_round_trip() {
        for f in 0..=255u8 {
            assert_eq!(parse_flag_names(&flag_names(f)), Some(f));
        }
        assert_eq!(flag_names(0x12), "SYN,ACK");
        assert_eq!(parse_flag_names("SYN,BOGUS"), None);
    }

    #[test]
    fn segment_line_is_flat_json_with_decision_and_reason() {
        let ev = TraceEvent {
            t: Instant::from_micros(1520),
            id: Some(3),
            local: a("10.0.0.2:80"),
            remote: a("10.0.0.1:40000"),
            kind: EventKind::Segment(SegInfo {
                dir: Dir::In,
                flags: 0x10,
                seq: 7,
                ack: 9,
                win: 512,
                len: 100,
                mss: None,
                wscale: None,
                sack_ok: false,
                sack: [Some((1, 2)), Some((5, 9)), None],
                ts: Some((4, 5)),
                decision: Decision::Dropped(DropReason::TcpPawsRejected),
            }),
        };
        let mut s = String::new();
        ev.write_json(&mut s);
        assert_eq!(
            s,
            "{\"t_us\":1520,\"ev\":\"seg\",\"dir\":\"in\",\"id\":3,\"local\":\"10.0.0.2:80\",\"remote\":\"10.0.0.1:40000\",\
             \"flags\":\"ACK\",\"seq\":7,\"ack\":9,\"win\":512,\"len\":100,\"tsval\":4,\"tsecr\":5,\"sack\":\"1-2 5-9\",\
             \"decision\":\"dropped\",\"reason\":\"tcp_paws_rejected\"}"
        );
        let o = json::parse_line(&s).unwrap();
        assert_eq!(o.str("decision"), Some("dropped"));
    }

    #[test]
    fn observe_records_transitions_and_cwnd_changes_only() {
        let mut t = Tracer::default();
        t.set_full(true);
        t.set_history(true);
        let (l, r) = (a("10.0.0.2:80"), a("10.0.0.1:1"));
        t.observe(0, 0, l, r, State::SynReceived, 100, u32::MAX);
        t.observe(0, 0, l, r, State::SynReceived, 100, u32::MAX); // nothing new
        t.now = Instant::from_millis(5);
        t.observe(0, 0, l, r, State::Established, 200, u32::MAX);
        // The slot reused by a new connection: starts from CLOSED (active open).
        t.observe(0, 1, l, r, State::SynSent, 100, u32::MAX);
        let mut out = Vec::new();
        t.drain(&mut out);
        let kinds: Vec<EventKind> = out.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            vec![
                EventKind::State {
                    from: State::Listen,
                    to: State::SynReceived
                },
                EventKind::Congestion {
                    cwnd: 100,
                    ssthresh: u32::MAX
                },
                EventKind::State {
                    from: State::SynReceived,
                    to: State::Established
                },
                EventKind::Congestion {
                    cwnd: 200,
                    ssthresh: u32::MAX
                },
                EventKind::State {
                    from: State::Closed,
                    to: State::SynSent
                },
                EventKind::Congestion {
                    cwnd: 100,
                    ssthresh: u32::MAX
                },
            ]
        );
        assert_eq!(t.transitions().count(), 3);
        assert_eq!(out[2].t, Instant::from_millis(5));
    }

    #[test]
    fn queue_is_bounded_and_reports_losses() {
        let mut t = Tracer::default();
        t.set_full(true);
        let any = a("0.0.0.0:0");
        let ev = TraceEvent {
            t: Instant::ZERO,
            id: None,
            local: any,
            remote: any,
            kind: EventKind::Timer("rto"),
        };
        for _ in 0..QUEUE_LIMIT + 5 {
            t.push(ev);
        }
        let mut out = Vec::new();
        t.drain(&mut out);
        assert_eq!(out.len(), QUEUE_LIMIT + 1);
        assert_eq!(out.last().unwrap().kind, EventKind::Lost(5));
        // Off: nothing is recorded.
        t.set_full(false);
        assert_eq!(t.push(ev), None);
    }

    #[test]
    fn history_only_keeps_a_bounded_ring_and_no_queue() {
        let mut t = Tracer::default();
        t.set_history(true);
        let (l, r) = (a("10.0.0.2:80"), a("10.0.0.1:1"));
        for g in 0..100u32 {
            t.observe(0, g, l, r, State::SynSent, 1, 1);
        }
        assert_eq!(t.transitions().count(), HISTORY_LIMIT);
        let mut out = Vec::new();
        t.drain(&mut out);
        assert!(out.is_empty());
    }
}
