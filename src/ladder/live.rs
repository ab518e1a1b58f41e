//! The ladder model of a *live* connection: the segments the running stack
//! recorded ([`crate::trace::segments`]) go through the same
//! [`Connection`] analysis as the segments of a pcap, so the dashboard's
//! diagram has the same relative numbers, the same marks (retransmission,
//! duplicate ACK, zero-window probe, window update, ...) and the same
//! HTTP / WebSocket labels as `ustack ladder`, plus the stack's own
//! decision on each segment (out of window, dropped and why, ...).
//!
//! The stack records segments at its own interface, above the device
//! chain: incoming segments as they reached the stack (one that `--impair`
//! dropped on the way in is absent), outgoing ones as the stack sent them
//! (one that `--impair` then dropped is present, followed by its
//! retransmission). It is the stack's view, like a `--trace` file, with
//! the payload prefixes that let the HTTP / WebSocket labels work.

use super::conn::decision_note;
use super::{Connection, Segment, Skipped, Trace};
use crate::trace::segments::{Recorded, SegRecord};
use crate::trace::{Decision, Dir};
use crate::wire::{SeqNumber, TcpFlags, TcpRepr};
use std::net::SocketAddrV4;

/// Segments drawn by default: the first few, then the latest.
pub const DEFAULT_MAX: usize = 150;

/// The sender and receiver of a record.
fn ends(r: &SegRecord) -> (SocketAddrV4, SocketAddrV4) {
    match r.seg.dir {
        Dir::In => (r.remote, r.local),
        Dir::Out => (r.local, r.remote),
    }
}

/// Build the diagram of one connection (`local` ↔ `remote`) from its
/// records, keeping at most `max` segments: the first ones recorded (the
/// handshake) and the latest, with the gap marked
/// ([`Segment::skipped_before`]).
pub fn trace(rec: &Recorded, local: SocketAddrV4, remote: SocketAddrV4, max: usize) -> Trace {
    let max = max.max(1);
    // The client sent the SYN; without one, the lower port is the server's
    // (the rule `ustack ladder` uses for captures).
    let (client, server) = match rec.records.first() {
        Some(r) if r.seg.flags & 0x02 != 0 => {
            let (src, dst) = ends(r);
            if r.seg.flags & 0x10 == 0 {
                (src, dst)
            } else {
                (dst, src)
            }
        }
        _ if local.port() < remote.port() => (remote, local),
        _ => (local, remote),
    };
    let start = rec.records.first().map_or(0, |r| nanos(r));
    let mut c = Connection::new(client, server, start);
    for r in &rec.records {
        let (src, dst) = ends(r);
        let s = &r.seg;
        let tcp = TcpRepr {
            src_port: src.port(),
            dst_port: dst.port(),
            flags: TcpFlags(s.flags),
            seq_number: SeqNumber(s.seq),
            ack_number: SeqNumber(s.ack),
            window_len: s.win,
            urgent_at: 0,
            max_seg_size: s.mss,
            window_scale: s.wscale,
            sack_permitted: s.sack_ok,
            sack_ranges: s.sack,
            timestamp: s.ts,
            payload: &r.payload,
        };
        let frame = usize::try_from(r.n.saturating_sub(1)).unwrap_or(usize::MAX - 1);
        if let Some(seg) = c.push(frame, nanos(r), src == client, &tcp, s.len as usize) {
            let reason = match s.decision {
                Decision::Dropped(why) => Some(why.label()),
                _ => None,
            };
            seg.decision = decision_note(s.decision.label(), reason);
        }
    }
    // The gap the recorder left after the opening of a watched connection.
    if rec.dropped > 0 {
        if let Some(seg) = c.segments.get_mut(rec.opening) {
            seg.skipped_before += rec.dropped;
        }
    }
    let head = if rec.watched {
        rec.opening
    } else {
        crate::trace::segments::OPENING
    };
    trim(&mut c.segments, head, max);
    Trace {
        link_type: 0,
        records: rec.records.len(),
        connections: vec![c],
        skipped: Skipped::default(),
        start_nanos: start,
        live: true,
    }
}

fn nanos(r: &SegRecord) -> u64 {
    r.t.total_micros().saturating_mul(1000)
}

/// Keep at most `max` segments: the first `head` (at most half of `max`)
/// and the latest; the first one after the cut counts what was cut.
fn trim(segs: &mut Vec<Segment>, head: usize, max: usize) {
    if segs.len() <= max {
        return;
    }
    let head = head.min(max / 2);
    let cut_end = segs.len() - (max - head);
    let carried: u64 = segs[head..cut_end]
        .iter()
        .map(|s| s.skipped_before + 1)
        .sum();
    segs.drain(head..cut_end);
    if let Some(s) = segs.get_mut(head) {
        s.skipped_before += carried;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tcp::SocketHandle;
    use crate::time::Instant;
    use crate::trace::segments::{SegmentLog, OPENING, WATCH_CAPACITY};
    use crate::trace::SegInfo;

    fn seg(dir: Dir, flags: u8, seq: u32, len: u32) -> SegInfo {
        SegInfo {
            dir,
            flags,
            seq,
            ack: 1,
            win: 1000,
            len,
            mss: None,
            wscale: None,
            sack_ok: false,
            sack: [None; 3],
            ts: None,
            decision: Decision::Accepted,
        }
    }

    #[test]
    fn a_long_watched_connection_is_drawn_as_opening_gap_and_latest() {
        let local: SocketAddrV4 = "10.0.0.2:80".parse().unwrap();
        let remote: SocketAddrV4 = "10.0.0.1:40000".parse().unwrap();
        let h = SocketHandle {
            index: 0,
            generation: 0,
        };
        let mut log = SegmentLog::default();
        assert!(log.watch(h, local, remote));
        let t = Instant::ZERO;
        log.record(t, Some(h), local, remote, seg(Dir::In, 0x02, 100, 0), &[]);
        log.record(t, Some(h), local, remote, seg(Dir::Out, 0x12, 900, 0), &[]);
        let total = 3000u32;
        for i in 0..total - 2 {
            log.record(
                t,
                Some(h),
                local,
                remote,
                seg(Dir::Out, 0x10, 901 + 10 * i, 10),
                &[],
            );
        }
        let rec = log.of(h, local, remote);
        assert_eq!(rec.records.len(), OPENING + WATCH_CAPACITY);
        let tr = trace(&rec, local, remote, 50);
        let c = &tr.connections[0];
        assert!(tr.live);
        assert_eq!(c.client, remote);
        assert_eq!(c.segments.len(), 50);
        assert_eq!(c.segments[0].flag_name(), "SYN");
        assert_eq!(c.segments[1].flag_name(), "SYN-ACK");
        // The opening, then one gap, then the latest.
        let gaps: Vec<(usize, u64)> = c
            .segments
            .iter()
            .enumerate()
            .filter(|(_, s)| s.skipped_before > 0)
            .map(|(i, s)| (i, s.skipped_before))
            .collect();
        assert_eq!(gaps, vec![(OPENING, u64::from(total) - 50)]);
        let last = c.segments.last().unwrap();
        assert_eq!(last.seq, 1 + 10 * (total - 3));
        let text = super::super::text::render_connection(&tr, c, 0, 50);
        assert!(
            text.contains(&format!("... {} segments not shown here ...", total - 50)),
            "{text}"
        );
        assert!(
            text.contains(&format!("{} older ones not shown", total - 50)),
            "{text}"
        );
        let svg = super::super::svg::render_connection(&tr, c, 0, 50);
        assert!(svg.contains("segments not shown here"));
    }

    #[test]
    fn without_a_syn_the_lower_port_is_the_server() {
        let local: SocketAddrV4 = "10.0.0.2:7".parse().unwrap();
        let remote: SocketAddrV4 = "10.0.0.1:40000".parse().unwrap();
        let h = SocketHandle {
            index: 1,
            generation: 0,
        };
        let mut log = SegmentLog::default();
        log.set_on(true, Instant::ZERO);
        log.record(
            Instant::ZERO,
            Some(h),
            local,
            remote,
            seg(Dir::Out, 0x18, 5, 3),
            b"abc",
        );
        let tr = trace(&log.of(h, local, remote), local, remote, 10);
        assert_eq!(tr.connections[0].server, local);
        assert!(!tr.connections[0].segments[0].from_client);
        // And an empty recording draws an empty ladder, no panic.
        let tr = trace(&Recorded::default(), local, remote, 10);
        assert!(tr.connections[0].segments.is_empty());
        assert!(
            super::super::svg::render_connection(&tr, &tr.connections[0], 1, 10)
                .ends_with("</svg>\n")
        );
    }
}
