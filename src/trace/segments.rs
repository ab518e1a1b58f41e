//! A bounded recording of recent TCP segments, for the ladder diagram of a
//! *live* connection (the dashboard, `GET /api/ladder`).
//!
//! `ustack ladder` draws a connection from a file (a pcap or a `--trace`
//! log). The dashboard wants the same drawing for a connection that is
//! running now, without a capture. This module keeps what that needs: for
//! each TCP segment in and out, its header (as a [`SegInfo`], with the
//! stack's decision), which connection it belongs to, when, and the first
//! [`PAYLOAD_PREFIX`] bytes of its payload (enough for
//! [`crate::ladder::app`] to recognize HTTP heads and WebSocket frames).
//! [`crate::ladder::live`] turns the records into the ladder model, so the
//! live diagram is classified and drawn by the same code as a pcap.
//!
//! ## What it costs, and why it is built this way
//!
//! The stack is meant to hold 100,000 idle connections at a few KiB each, so
//! nothing here is per connection:
//!
//! * **Off unless someone looks.** The recording is *armed* only while a
//!   dashboard is connected ([`SegmentLog::set_on`], called by the web
//!   service for `/ws/stats` subscribers), while a connection is watched, or
//!   for [`ON_DEMAND`] after a `GET /api/ladder`. Disarmed, the stack's hooks
//!   cost one comparison per packet and the log holds no memory.
//! * **One small ring for everybody** ([`RECENT_CAPACITY`] records): armed,
//!   every segment of every connection goes there, oldest dropped first. A
//!   connection selected *after* its handshake still has it, as long as the
//!   ring has not wrapped (at dashboard rates it has not).
//! * **A ring of its own for a selected connection** ([`SegmentLog::watch`],
//!   at most [`MAX_WATCHES`]): the connection the dashboard shows keeps its
//!   first [`OPENING`] records (the handshake) and its latest
//!   [`WATCH_CAPACITY`], however busy the other connections are; the records
//!   in between are counted, not kept.
//!
//! Worst case, with every ring full of payload prefixes: (1024 + 4 x 1032)
//! records x (at most 160 + 512) bytes, about 3.5 MB, and only while
//! someone looks.
//! Payload buffers of dropped records are reused, so a full ring records
//! without allocating.

use super::SegInfo;
use crate::tcp::SocketHandle;
use crate::time::{Duration, Instant};
use std::cell::Cell;
use std::collections::VecDeque;
use std::net::SocketAddrV4;

/// Records of all connections kept while armed.
pub const RECENT_CAPACITY: usize = 1024;
/// Latest records kept per watched connection.
pub const WATCH_CAPACITY: usize = 1024;
/// First records kept per watched connection (the handshake).
pub const OPENING: usize = 8;
/// Connections watched at once.
pub const MAX_WATCHES: usize = 4;
/// Payload bytes kept per segment.
pub const PAYLOAD_PREFIX: usize = 512;
/// How long a `GET /api/ladder` keeps the recording armed.
pub const ON_DEMAND: Duration = Duration::from_secs(60);

/// One recorded segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegRecord {
    /// Recording order, from 1 (the diagram's "frame" number).
    pub n: u64,
    pub t: Instant,
    /// The connection, `None` for segments that belong to none (a RST for
    /// a closed port, a SYN-ACK carrying a SYN cookie).
    pub conn: Option<SocketHandle>,
    pub local: SocketAddrV4,
    pub remote: SocketAddrV4,
    pub seg: SegInfo,
    /// The first bytes of the payload (`seg.len` is the whole length).
    pub payload: Vec<u8>,
}

impl SegRecord {
    /// Does this segment belong to connection `conn` between `local` and
    /// `remote`? Segments of no connection are matched by their addresses.
    pub fn belongs_to(
        &self,
        conn: SocketHandle,
        local: SocketAddrV4,
        remote: SocketAddrV4,
    ) -> bool {
        match self.conn {
            Some(c) => c == conn,
            None => self.local == local && self.remote == remote,
        }
    }
}

/// A connection with a ring of its own.
#[derive(Debug)]
struct Watch {
    conn: SocketHandle,
    local: SocketAddrV4,
    remote: SocketAddrV4,
    /// Viewers that asked for it; at 0 it is kept until the room is needed.
    users: u32,
    /// Order of the last `watch` call, for eviction.
    used: u64,
    opening: Vec<SegRecord>,
    tail: VecDeque<SegRecord>,
    /// Records dropped between `opening` and `tail`.
    dropped: u64,
}

/// The recorded segments of one connection, oldest first.
#[derive(Debug, Clone, Default)]
pub struct Recorded<'a> {
    pub records: Vec<&'a SegRecord>,
    /// How many of `records` are the connection's first ones (the
    /// handshake) kept apart ([`OPENING`]) ...
    pub opening: usize,
    /// ... and how many records were dropped between them and the rest.
    pub dropped: u64,
    /// The connection has a ring of its own ([`SegmentLog::watch`]).
    pub watched: bool,
}

/// The recorder; see the module documentation.
#[derive(Debug, Default)]
pub struct SegmentLog {
    /// A dashboard is connected.
    on: bool,
    /// Sum of the watches' `users`.
    users: u32,
    /// Armed until then by an on-demand request (a `&self` call, hence the Cell).
    asked_until: Cell<Option<Instant>>,
    recent: VecDeque<SegRecord>,
    /// Connections selected; recent segments of them are not in `recent`.
    watches: Vec<Watch>,
    next_n: u64,
    watch_calls: u64,
}

impl SegmentLog {
    /// Is the recording armed at `now`?
    #[inline]
    pub fn armed(&self, now: Instant) -> bool {
        self.on || self.users > 0 || self.asked_until.get().is_some_and(|t| now < t)
    }

    /// Arm (a dashboard is connected) or disarm. Disarmed and not armed on
    /// demand, the records are freed.
    pub fn set_on(&mut self, on: bool, now: Instant) {
        self.on = on;
        if !self.armed(now) {
            self.recent = VecDeque::new();
            self.watches.clear();
        }
    }

    /// Keep the recording armed for [`ON_DEMAND`] from `now` (callable
    /// through a shared reference: answering `GET /api/ladder`).
    pub fn ask(&self, now: Instant) {
        self.asked_until.set(Some(now + ON_DEMAND));
    }

    /// Records held (all rings).
    pub fn records(&self) -> usize {
        self.recent.len()
            + self
                .watches
                .iter()
                .map(|w| w.opening.len() + w.tail.len())
                .sum::<usize>()
    }

    /// Record a segment (the caller checked [`SegmentLog::armed`]).
    pub fn record(
        &mut self,
        t: Instant,
        conn: Option<SocketHandle>,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        seg: SegInfo,
        payload: &[u8],
    ) {
        self.next_n += 1;
        let n = self.next_n;
        let payload = &payload[..payload.len().min(PAYLOAD_PREFIX)];
        let watch = self
            .watches
            .iter_mut()
            .find(|w| record_matches(conn, local, remote, w));
        // Reuse the payload buffer of the record that falls out of the ring.
        let (ring, cap) = match watch {
            Some(w) if w.opening.len() < OPENING && w.tail.is_empty() && w.dropped == 0 => {
                w.opening
                    .push(new_record(n, t, conn, local, remote, seg, payload, None));
                return;
            }
            Some(w) => {
                if w.tail.len() >= WATCH_CAPACITY {
                    w.dropped += 1;
                }
                (&mut w.tail, WATCH_CAPACITY)
            }
            None => (&mut self.recent, RECENT_CAPACITY),
        };
        let reuse = if ring.len() >= cap {
            ring.pop_front().map(|r| r.payload)
        } else {
            None
        };
        ring.push_back(new_record(n, t, conn, local, remote, seg, payload, reuse));
    }

    /// Fill in the decision (and the connection, if the segment created
    /// it) of the segment recorded last, once the stack has processed it.
    /// `n` is [`SegmentLog::last_n`] taken right after recording it.
    pub fn set_decision(&mut self, n: u64, decision: super::Decision, conn: Option<SocketHandle>) {
        let last = self
            .recent
            .back_mut()
            .into_iter()
            .chain(
                self.watches
                    .iter_mut()
                    .filter_map(|w| w.tail.back_mut().or(w.opening.last_mut())),
            )
            .find(|r| r.n == n);
        if let Some(r) = last {
            r.seg.decision = decision;
            if r.conn.is_none() {
                r.conn = conn;
            }
        }
    }

    /// The number of the latest record (0: none yet).
    pub fn last_n(&self) -> u64 {
        self.next_n
    }

    /// Give `conn` a ring of its own, starting with what `recent` has of
    /// it. False if [`MAX_WATCHES`] connections are watched by somebody
    /// (the connection is then drawn from `recent` only).
    pub fn watch(&mut self, conn: SocketHandle, local: SocketAddrV4, remote: SocketAddrV4) -> bool {
        self.watch_calls += 1;
        let used = self.watch_calls;
        if let Some(w) = self.watches.iter_mut().find(|w| w.conn == conn) {
            w.users += 1;
            w.used = used;
            self.users += 1;
            return true;
        }
        if self.watches.len() >= MAX_WATCHES {
            // Evict the least recently selected watch nobody uses.
            let Some(i) = self
                .watches
                .iter()
                .enumerate()
                .filter(|(_, w)| w.users == 0)
                .min_by_key(|(_, w)| w.used)
                .map(|(i, _)| i)
            else {
                return false;
            };
            self.watches.swap_remove(i);
        }
        let mut w = Watch {
            conn,
            local,
            remote,
            users: 1,
            used,
            opening: Vec::new(),
            tail: VecDeque::new(),
            dropped: 0,
        };
        let mut rest = VecDeque::with_capacity(self.recent.len());
        for r in self.recent.drain(..) {
            if r.belongs_to(conn, local, remote) {
                if w.opening.len() < OPENING {
                    w.opening.push(r);
                } else {
                    w.tail.push_back(r);
                }
            } else {
                rest.push_back(r);
            }
        }
        self.recent = rest;
        self.watches.push(w);
        self.users += 1;
        true
    }

    /// A viewer no longer looks at `conn`. Its ring stays (and keeps
    /// recording) until the room is needed for another, or the recording is
    /// switched off.
    pub fn unwatch(&mut self, conn: SocketHandle) {
        if let Some(w) = self.watches.iter_mut().find(|w| w.conn == conn) {
            if w.users > 0 {
                w.users -= 1;
                self.users -= 1;
            }
        }
    }

    /// Is `conn` watched (by anybody, or kept after)?
    pub fn is_watched(&self, conn: SocketHandle) -> bool {
        self.watches.iter().any(|w| w.conn == conn)
    }

    /// The records of a connection, oldest first.
    pub fn of(
        &self,
        conn: SocketHandle,
        local: SocketAddrV4,
        remote: SocketAddrV4,
    ) -> Recorded<'_> {
        let mine = |r: &&SegRecord| r.belongs_to(conn, local, remote);
        if let Some(w) = self.watches.iter().find(|w| w.conn == conn) {
            return Recorded {
                records: w
                    .opening
                    .iter()
                    .filter(mine)
                    .chain(w.tail.iter().filter(mine))
                    .collect(),
                opening: w.opening.iter().filter(mine).count(),
                dropped: w.dropped,
                watched: true,
            };
        }
        // Not watched: the shared ring, and what other rings took by
        // address (a SYN reusing the 4-tuple of a watched, closed connection).
        let mut records: Vec<&SegRecord> = self.recent.iter().filter(mine).collect();
        let before = records.len();
        for w in &self.watches {
            records.extend(w.opening.iter().chain(w.tail.iter()).filter(mine));
        }
        if records.len() > before {
            records.sort_by_key(|r| r.n);
        }
        Recorded {
            records,
            ..Recorded::default()
        }
    }

    /// The latest connection recorded with slot number `id` (and `remote`,
    /// if given): its handle and addresses.
    pub fn find(
        &self,
        id: u32,
        remote: Option<SocketAddrV4>,
    ) -> Option<(SocketHandle, SocketAddrV4, SocketAddrV4)> {
        self.find_by(|c, r| c.id() == id && remote.is_none_or(|a| a == r))
    }

    /// The latest connection recorded whose remote port is `port`.
    pub fn find_port(&self, port: u16) -> Option<(SocketHandle, SocketAddrV4, SocketAddrV4)> {
        self.find_by(|_, r| r.port() == port)
    }

    fn find_by(
        &self,
        pred: impl Fn(SocketHandle, SocketAddrV4) -> bool,
    ) -> Option<(SocketHandle, SocketAddrV4, SocketAddrV4)> {
        // The newest record wins, wherever it is.
        let mut best: Option<(u64, SocketHandle, SocketAddrV4, SocketAddrV4)> = None;
        let newest = self.recent.iter().rev();
        let watched = self
            .watches
            .iter()
            .flat_map(|w| w.tail.iter().rev().chain(w.opening.iter().rev()));
        for r in newest.chain(watched) {
            if let Some(c) = r.conn {
                if pred(c, r.remote) && best.is_none_or(|b| r.n > b.0) {
                    best = Some((r.n, c, r.local, r.remote));
                }
            }
        }
        best.map(|(_, c, l, r)| (c, l, r))
    }
}

fn record_matches(
    conn: Option<SocketHandle>,
    local: SocketAddrV4,
    remote: SocketAddrV4,
    w: &Watch,
) -> bool {
    match conn {
        Some(c) => c == w.conn,
        None => local == w.local && remote == w.remote,
    }
}

#[allow(clippy::too_many_arguments)]
fn new_record(
    n: u64,
    t: Instant,
    conn: Option<SocketHandle>,
    local: SocketAddrV4,
    remote: SocketAddrV4,
    seg: SegInfo,
    payload: &[u8],
    reuse: Option<Vec<u8>>,
) -> SegRecord {
    let mut buf = reuse.unwrap_or_default();
    buf.clear();
    buf.reserve_exact(payload.len());
    buf.extend_from_slice(payload);
    SegRecord {
        n,
        t,
        conn,
        local,
        remote,
        seg,
        payload: buf,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{Decision, Dir};

    fn a(s: &str) -> SocketAddrV4 {
        s.parse().unwrap()
    }
    fn h(index: u32, generation: u32) -> SocketHandle {
        SocketHandle { index, generation }
    }
    const L: &str = "10.0.0.2:80";
    fn seg(seq: u32, len: u32) -> SegInfo {
        SegInfo {
            dir: Dir::In,
            flags: 0x10,
            seq,
            ack: 0,
            win: 100,
            len,
            mss: None,
            wscale: None,
            sack_ok: false,
            sack: [None; 3],
            ts: None,
            decision: Decision::Accepted,
        }
    }
    /// Record `n` segments of connection `c` (remote port = index + 1000).
    fn feed(log: &mut SegmentLog, c: SocketHandle, n: u32) {
        let remote = a(&format!("10.0.0.1:{}", c.index + 1000));
        for i in 0..n {
            log.record(
                Instant::from_micros(u64::from(i)),
                Some(c),
                a(L),
                remote,
                seg(i, 0),
                &[],
            );
        }
    }
    fn seqs(r: &Recorded) -> Vec<u32> {
        r.records.iter().map(|r| r.seg.seq).collect()
    }

    #[test]
    fn off_by_default_and_armed_on_demand_for_a_while() {
        let mut log = SegmentLog::default();
        let t0 = Instant::from_secs(10);
        assert!(!log.armed(t0));
        log.ask(t0);
        assert!(log.armed(t0 + Duration::from_secs(59)));
        assert!(!log.armed(t0 + ON_DEMAND));
        log.set_on(true, t0);
        assert!(log.armed(t0 + Duration::from_secs(3600)));
        feed(&mut log, h(1, 0), 10);
        assert_eq!(log.records(), 10);
        // Switched off after the on-demand period: the records are freed.
        log.set_on(false, t0 + ON_DEMAND);
        assert!(!log.armed(t0 + ON_DEMAND));
        assert_eq!(log.records(), 0);
        assert_eq!(log.recent.capacity(), 0);
    }

    #[test]
    fn the_shared_ring_is_bounded_and_keeps_the_latest() {
        let mut log = SegmentLog::default();
        log.set_on(true, Instant::ZERO);
        let (c1, c2) = (h(1, 0), h(2, 0));
        feed(&mut log, c1, 10);
        feed(&mut log, c2, RECENT_CAPACITY as u32 + 5);
        assert_eq!(log.records(), RECENT_CAPACITY);
        // c1's records were the oldest: gone; c2 keeps its latest.
        let r1 = log.of(c1, a(L), a("10.0.0.1:1001"));
        assert!(r1.records.is_empty());
        let r2 = log.of(c2, a(L), a("10.0.0.1:1002"));
        assert_eq!(r2.records.len(), RECENT_CAPACITY);
        assert_eq!(r2.records[0].seg.seq, 5);
        assert!(!r2.watched);
        // Numbers increase in recording order.
        assert!(r2.records.windows(2).all(|w| w[0].n < w[1].n));
    }

    #[test]
    fn payloads_are_cut_to_the_prefix_and_buffers_reused() {
        let mut log = SegmentLog::default();
        log.set_on(true, Instant::ZERO);
        let big = vec![7u8; 3000];
        for i in 0..(RECENT_CAPACITY + 10) as u32 {
            log.record(
                Instant::ZERO,
                Some(h(0, 0)),
                a(L),
                a("10.0.0.1:1"),
                seg(i, 3000),
                &big,
            );
        }
        let r = log.of(h(0, 0), a(L), a("10.0.0.1:1"));
        assert!(r.records.iter().all(|r| r.payload.len() == PAYLOAD_PREFIX));
        assert!(r.records.iter().all(|r| r.seg.len == 3000));
        assert!(r
            .records
            .iter()
            .all(|r| r.payload.capacity() <= 2 * PAYLOAD_PREFIX));
    }

    #[test]
    fn a_watched_connection_keeps_its_opening_and_latest_whatever_the_others_do() {
        let mut log = SegmentLog::default();
        log.set_on(true, Instant::ZERO);
        let (c1, c2) = (h(1, 0), h(2, 0));
        let r1 = a("10.0.0.1:1001");
        feed(&mut log, c1, 3); // seq 0, 1, 2: the handshake, in the shared ring
        assert!(log.watch(c1, a(L), r1));
        assert!(log.is_watched(c1));
        // Moved out of the shared ring into its own.
        assert_eq!(log.recent.len(), 0);
        // c1 sends 3000 more; c2 floods the shared ring meanwhile.
        for i in 3..3003 {
            log.record(Instant::ZERO, Some(c1), a(L), r1, seg(i, 0), &[]);
            log.record(
                Instant::ZERO,
                Some(c2),
                a(L),
                a("10.0.0.1:1002"),
                seg(i, 0),
                &[],
            );
        }
        let r = log.of(c1, a(L), r1);
        assert!(r.watched);
        assert_eq!(r.opening, OPENING);
        assert_eq!(r.records.len(), OPENING + WATCH_CAPACITY);
        assert_eq!(r.dropped, 3003 - (OPENING + WATCH_CAPACITY) as u64);
        let s = seqs(&r);
        assert_eq!(&s[..OPENING], &(0..OPENING as u32).collect::<Vec<_>>()[..]);
        assert_eq!(*s.last().unwrap(), 3002);
        assert_eq!(s[OPENING], 3003 - WATCH_CAPACITY as u32);
        assert_eq!(log.recent.len(), RECENT_CAPACITY);
        assert_eq!(log.records(), RECENT_CAPACITY + OPENING + WATCH_CAPACITY);
    }

    #[test]
    fn segments_of_no_connection_are_matched_by_address() {
        let mut log = SegmentLog::default();
        log.set_on(true, Instant::ZERO);
        let r = a("10.0.0.1:5000");
        // A cookie SYN-ACK before the connection exists, then the connection.
        log.record(Instant::ZERO, None, a(L), r, seg(0, 0), &[]);
        log.record(
            Instant::ZERO,
            None,
            a(L),
            a("10.0.0.1:6000"),
            seg(9, 0),
            &[],
        );
        log.record(Instant::ZERO, Some(h(4, 2)), a(L), r, seg(1, 0), &[]);
        assert_eq!(seqs(&log.of(h(4, 2), a(L), r)), vec![0, 1]);
        assert!(log.watch(h(4, 2), a(L), r));
        log.record(Instant::ZERO, None, a(L), r, seg(2, 0), &[]);
        assert_eq!(seqs(&log.of(h(4, 2), a(L), r)), vec![0, 1, 2]);
        // The other address's record stayed in the shared ring.
        assert_eq!(log.recent.len(), 1);
    }

    #[test]
    fn a_new_connection_on_the_4_tuple_of_a_watched_one_keeps_its_syn() {
        let mut log = SegmentLog::default();
        log.set_on(true, Instant::ZERO);
        let r = a("10.0.0.1:5000");
        let (old, new) = (h(4, 1), h(4, 2));
        log.record(Instant::ZERO, Some(old), a(L), r, seg(0, 0), &[]);
        assert!(log.watch(old, a(L), r));
        // The old connection closed; a SYN on the same 4-tuple arrives
        // before the stack knows its connection: it is filed by address...
        log.record(Instant::ZERO, None, a(L), r, seg(7, 0), &[]);
        let n = log.last_n();
        // ... and then named: it belongs to the new connection only.
        log.set_decision(n, Decision::Accepted, Some(new));
        log.record(Instant::ZERO, Some(new), a(L), r, seg(8, 0), &[]);
        assert_eq!(seqs(&log.of(old, a(L), r)), vec![0]);
        assert_eq!(seqs(&log.of(new, a(L), r)), vec![7, 8]);
    }

    #[test]
    fn watches_are_bounded_shared_and_evicted_only_when_unused() {
        let mut log = SegmentLog::default();
        let r = |i: u32| a(&format!("10.0.0.1:{}", 1000 + i));
        for i in 0..MAX_WATCHES as u32 {
            assert!(log.watch(h(i, 0), a(L), r(i)));
        }
        // Watching arms the recording.
        assert!(log.armed(Instant::ZERO));
        // A second viewer of the same connection: no new ring.
        assert!(log.watch(h(0, 0), a(L), r(0)));
        assert!(!log.watch(h(9, 0), a(L), r(9)), "all rings in use");
        log.unwatch(h(1, 0));
        assert!(log.watch(h(9, 0), a(L), r(9)), "the unused ring is taken");
        assert!(!log.is_watched(h(1, 0)));
        // Connection 0 has two viewers: one leaving keeps it.
        log.unwatch(h(0, 0));
        assert!(!log.watch(h(8, 0), a(L), r(8)));
        // An unwatched ring is kept (and records) until the room is needed.
        log.unwatch(h(2, 0));
        assert!(log.is_watched(h(2, 0)));
        for i in 0..MAX_WATCHES as u32 {
            log.unwatch(h(i, 0));
        }
        log.unwatch(h(9, 0));
        log.unwatch(h(9, 0)); // once too often: harmless
        assert!(!log.armed(Instant::ZERO));
    }

    #[test]
    fn decisions_are_filled_in_and_connections_found() {
        let mut log = SegmentLog::default();
        log.set_on(true, Instant::ZERO);
        let r = a("10.0.0.1:7000");
        log.record(Instant::ZERO, None, a(L), r, seg(0, 0), &[]);
        let n = log.last_n();
        log.set_decision(n, Decision::OutOfWindow, Some(h(3, 1)));
        let rec = log.of(h(3, 1), a(L), r);
        assert_eq!(rec.records[0].seg.decision, Decision::OutOfWindow);
        assert_eq!(rec.records[0].conn, Some(h(3, 1)));
        assert_eq!(log.find(3, None), Some((h(3, 1), a(L), r)));
        assert_eq!(log.find(3, Some(a("10.0.0.1:1"))), None);
        assert_eq!(log.find_port(7000), Some((h(3, 1), a(L), r)));
        // A later connection in the same slot is the one found.
        log.record(
            Instant::ZERO,
            Some(h(3, 2)),
            a(L),
            a("10.0.0.1:7001"),
            seg(0, 0),
            &[],
        );
        assert_eq!(log.find(3, None).map(|f| f.0), Some(h(3, 2)));
        assert_eq!(log.find(3, Some(r)).map(|f| f.0), Some(h(3, 1)));
    }
}
