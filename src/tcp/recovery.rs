//! The sender's loss-recovery scoreboard: RFC 6675 SACK-based recovery,
//! RFC 8985 RACK time-based loss detection, RFC 2883 D-SACK recognition.
//!
//! The scoreboard is a list of the segments in flight, in sequence order,
//! covering `[SND.UNA, SND.MAX)`. Each remembers when it was (last) sent and
//! three marks:
//!
//! * `sacked`: the receiver reported it in a SACK block (RFC 2018);
//! * `lost`: deemed lost, by RFC 6675 `IsLost` (DupThresh SACKed segments
//!   or more than (DupThresh-1)*SMSS SACKed bytes above it), by RACK (a
//!   segment sent *later* was delivered, and this one is older than
//!   RACK.rtt + reordering window), or by a retransmission timeout;
//! * `retrans`: a retransmission of it is in flight.
//!
//! From these, RFC 6675's `pipe` (bytes presumed in the network) is
//!
//! ```text
//! pipe = sum over un-SACKed segments of  (not lost ? len : 0) + (retrans ? len : 0)
//! ```
//!
//! and `NextSeg` rule 1 is "the first lost, un-SACKed segment not yet
//! retransmitted". The socket sends while `cwnd - pipe >= 1 SMSS`: holes
//! first, never a SACKed range, then new data.
//!
//! Memory is bounded: at most [`MAX_SEGMENTS`] entries. When the list is
//! full, new data is merged into the last entry and SACK blocks no longer
//! split entries (loss marking gets coarser, never wrong).

use super::socket::{seq_ge, seq_gt, seq_le, seq_lt};
use crate::time::{Duration, Instant};
use std::collections::VecDeque;

/// Upper bound on scoreboard entries per connection.
pub const MAX_SEGMENTS: usize = 4096;
/// RFC 6675 / RFC 5681 DupThresh.
pub const DUP_THRESH: u32 = 3;

/// One transmitted segment (sequence space `[start, end)`; a FIN counts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SentSeg {
    pub start: u32,
    pub end: u32,
    /// When it was last (re)transmitted.
    pub xmit: Instant,
    pub sacked: bool,
    pub lost: bool,
    /// A retransmission is in flight.
    pub retrans: bool,
    /// It was retransmitted at least once (RTT samples from it are ambiguous).
    pub ever_retrans: bool,
}

crate::spare_pool!(SentSeg);

impl SentSeg {
    fn len(&self) -> u32 {
        self.end.wrapping_sub(self.start)
    }
    /// Contribution to RFC 6675 `pipe`.
    fn pipe(&self) -> u32 {
        if self.sacked {
            0
        } else {
            (if self.lost { 0 } else { self.len() }) + (if self.retrans { self.len() } else { 0 })
        }
    }
    fn needs_rtx(&self) -> bool {
        self.lost && !self.retrans && !self.sacked
    }
}

/// What one ACK told the scoreboard.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AckInfo {
    /// The first SACK block was a D-SACK (RFC 2883): a duplicate arrived.
    pub dsack: Option<(u32, u32)>,
    /// Bytes newly marked SACKed by this ACK.
    pub newly_sacked: u32,
    /// RFC 6937 DeliveredData: bytes this ACK newly showed delivered,
    /// cumulatively (not SACKed before) or selectively.
    pub delivered: u32,
    /// RTT of the most recently sent segment this ACK newly delivered that
    /// was never retransmitted (what Linux hands congestion control as
    /// `ca_rtt`; RFC 9406's `currRTT`).
    pub rtt: Option<Duration>,
}

/// RFC 8985 6.2 step 4: the reordering window grows by min_RTT/4 for every
/// round trip with a D-SACK, and returns to min_RTT/4 after this many
/// recoveries without one.
pub const REO_WND_PERSIST: u8 = 16;

/// RFC 6937 Proportional Rate Reduction, one recovery episode: during
/// recovery the sender sends in proportion to what is delivered, so that
/// cwnd reaches ssthresh at the end of recovery without a burst at the
/// start (halving at once) or a stall (NewReno waiting for half the window
/// of duplicate ACKs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Prr {
    /// FlightSize when recovery started (RecoverFS).
    pub recover_fs: u32,
    /// Target window: the controller's ssthresh.
    pub ssthresh: u32,
    /// Bytes delivered during recovery (prr_delivered).
    pub delivered: u64,
    /// `Scoreboard::sent_bytes` when recovery started (prr_out is the
    /// difference).
    pub out_base: u64,
}

/// The scoreboard plus the RACK state (RFC 8985 6.1).
#[derive(Debug, Default)]
pub struct Scoreboard {
    segs: VecDeque<SentSeg>,
    /// Cached `pipe` and number of segments waiting for retransmission.
    pipe: u32,
    lost_pending: u32,
    sacked_bytes: u32,
    /// RACK.xmit_ts / RACK.end_seq: the most recently sent segment known delivered.
    rack_xmit: Option<Instant>,
    rack_end: u32,
    /// RACK.rtt: RTT of that segment.
    rack_rtt: Duration,
    /// Lowest RTT seen (RACK's min_RTT).
    min_rtt: Option<Duration>,
    /// RACK.fack: highest sequence number known delivered.
    fack: Option<u32>,
    /// A segment was delivered after a later one without being retransmitted.
    reordering_seen: bool,
    /// RFC 8985 6.2 step 4: RACK.reo_wnd_mult, RACK.reo_wnd_persist,
    /// RACK.dsack_round.
    reo_wnd_mult: u8,
    reo_wnd_persist: u8,
    dsack_round: Option<u32>,
    /// Bytes (sequence numbers) sent or resent so far: RFC 6937 prr_out is
    /// the growth of this during recovery.
    sent_bytes: u64,
    /// The current recovery episode's PRR state.
    prr: Option<Prr>,
}

impl Scoreboard {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn is_empty(&self) -> bool {
        self.segs.is_empty()
    }
    pub fn len(&self) -> usize {
        self.segs.len()
    }
    pub fn segments(&self) -> impl Iterator<Item = &SentSeg> {
        self.segs.iter()
    }
    /// RFC 6675 `pipe`.
    pub fn pipe(&self) -> u32 {
        self.pipe
    }
    /// Segments marked lost and not yet retransmitted.
    pub fn lost_pending(&self) -> u32 {
        self.lost_pending
    }
    pub fn sacked_bytes(&self) -> u32 {
        self.sacked_bytes
    }
    pub fn reordering_seen(&self) -> bool {
        self.reordering_seen
    }
    pub fn min_rtt(&self) -> Option<Duration> {
        self.min_rtt
    }
    /// End of the last segment (SND.MAX as the scoreboard knows it).
    pub fn high(&self) -> Option<u32> {
        self.segs.back().map(|s| s.end)
    }

    /// Give the segment list's memory back when nothing is outstanding, so
    /// an idle connection holds none (the RACK state is kept).
    pub fn release_if_empty(&mut self) {
        if self.segs.is_empty() && self.segs.capacity() > 0 {
            // (to the per-thread spares: the next burst takes it back)
            crate::spare::give_deque(std::mem::take(&mut self.segs));
        }
    }

    /// Forget everything (the connection restarted its sequence space).
    pub fn clear(&mut self) {
        self.segs.clear();
        self.shrink();
        self.recount();
    }

    /// An idle connection keeps no scoreboard memory: once everything is
    /// acknowledged, a list that grew large gives its allocation back.
    fn shrink(&mut self) {
        if self.segs.is_empty() && self.segs.capacity() > 16 {
            crate::spare::give_deque(std::mem::take(&mut self.segs));
        }
    }

    fn recount(&mut self) {
        (self.pipe, self.lost_pending, self.sacked_bytes) = self.counted();
    }

    /// (pipe, segments needing retransmission, SACKed bytes), counted.
    fn counted(&self) -> (u32, u32, u32) {
        let (mut pipe, mut lost, mut sacked) = (0u32, 0u32, 0u32);
        for s in &self.segs {
            pipe = pipe.saturating_add(s.pipe());
            lost += s.needs_rtx() as u32;
            if s.sacked {
                sacked = sacked.saturating_add(s.len());
            }
        }
        (pipe, lost, sacked)
    }

    /// Index of the entry containing `seq`.
    fn find(&self, seq: u32) -> Option<usize> {
        // Entries are sorted: binary search on start.
        let i = self.segs.partition_point(|s| seq_le(s.start, seq));
        let i = i.checked_sub(1)?;
        let s = self.segs.get(i)?;
        if seq_lt(seq, s.end) {
            Some(i)
        } else {
            None
        }
    }

    /// Split the entry containing `seq` so an entry starts at `seq`
    /// (no-op at a boundary or when the list is full).
    fn split_at(&mut self, seq: u32) {
        if self.segs.len() >= MAX_SEGMENTS {
            return;
        }
        let Some(i) = self.find(seq) else { return };
        let s = self.segs[i];
        if s.start == seq {
            return;
        }
        let mut right = s;
        right.start = seq;
        self.segs[i].end = seq;
        self.segs.insert(i + 1, right);
    }

    /// A segment `[start, end)` was (re)sent at `now`.
    pub fn on_send(&mut self, now: Instant, start: u32, end: u32) {
        if !seq_lt(start, end) {
            return;
        }
        self.sent_bytes += end.wrapping_sub(start) as u64;
        let high = self.high();
        // Only new data (the common case): the counters are updated in
        // place instead of recounted over the whole window.
        let mut incremental = true;
        // The retransmitted part: everything below the current high end.
        if let Some(h) = high {
            if seq_lt(start, h) {
                incremental = false;
                let rend = if seq_lt(end, h) { end } else { h };
                self.split_at(start);
                self.split_at(rend);
                if let Some(mut i) = self.find(start) {
                    while i < self.segs.len() && seq_lt(self.segs[i].start, rend) {
                        let s = &mut self.segs[i];
                        s.xmit = now;
                        s.retrans = true;
                        s.ever_retrans = true;
                        i += 1;
                    }
                }
            }
        }
        // The new part.
        let new_start = match high {
            Some(h) if seq_gt(h, start) => h,
            _ => start,
        };
        if seq_lt(new_start, end) {
            let seg = SentSeg {
                start: new_start,
                end,
                xmit: now,
                sacked: false,
                lost: false,
                retrans: false,
                ever_retrans: false,
            };
            let full = self.segs.len() >= MAX_SEGMENTS;
            match self.segs.back_mut() {
                Some(last) if full && last.end == new_start => {
                    last.end = end;
                    last.xmit = now;
                    incremental = false;
                }
                _ => {
                    if incremental {
                        self.pipe = self.pipe.saturating_add(seg.pipe());
                    }
                    if self.segs.capacity() == 0 {
                        self.segs = crate::spare::take_deque();
                    }
                    self.segs.push_back(seg);
                }
            }
        }
        if !incremental {
            self.recount();
        }
        debug_assert_eq!(
            (self.pipe, self.lost_pending, self.sacked_bytes),
            self.counted(),
            "incremental counters"
        );
    }

    /// RACK (RFC 8985 6.2 step 2): a segment sent at `xmit` was delivered.
    fn rack_update(&mut self, now: Instant, seg: &SentSeg) {
        let rtt = now - seg.xmit;
        if seg.ever_retrans {
            // Ambiguous: the ACK may be for the original. RFC 8985 6.2:
            // ignore it if it arrived faster than the path can deliver.
            if self.min_rtt.is_some_and(|m| rtt < m) {
                return;
            }
        } else {
            self.min_rtt = Some(self.min_rtt.map_or(rtt, |m| m.min(rtt)));
        }
        let newer = match self.rack_xmit {
            None => true,
            Some(x) => seg.xmit > x || (seg.xmit == x && seq_gt(seg.end, self.rack_end)),
        };
        if newer {
            self.rack_xmit = Some(seg.xmit);
            self.rack_end = seg.end;
            self.rack_rtt = rtt;
        }
        // RFC 8985 6.2 step 3: reordering detection.
        match self.fack {
            Some(f) if seq_lt(seg.end, f) && !seg.ever_retrans => self.reordering_seen = true,
            Some(f) if seq_ge(f, seg.end) => {}
            _ => self.fack = Some(seg.end),
        }
    }

    /// Process an ACK: cumulative `una` and the SACK blocks (only when SACK
    /// was negotiated). Returns what was new.
    pub fn on_ack(&mut self, now: Instant, una: u32, blocks: &[Option<(u32, u32)>; 3]) -> AckInfo {
        let mut info = AckInfo::default();
        // RFC 2883 D-SACK: the first block reports a duplicate if it lies
        // below the cumulative ACK, or inside the second block, or inside
        // data already SACKed.
        let mut first = 0;
        if let Some((s, e)) = blocks[0] {
            let below_ack = seq_le(e, una);
            // (A first block merely repeating SACKed data is no D-SACK:
            // a receiver repeats its blocks on every ACK.)
            let in_second = blocks[1].is_some_and(|(s2, e2)| seq_le(s2, s) && seq_le(e, e2));
            if seq_lt(s, e) && (below_ack || in_second) {
                info.dsack = Some((s, e));
                first = 1;
                // RFC 8985 6.2 step 4: a D-SACK means the network reorders
                // (or we retransmitted too early): widen the reordering window.
                self.reordering_seen = true;
            }
        }
        // The RTT sample for congestion control: the most recently sent
        // segment newly delivered, never retransmitted.
        let mut rtt_from: Option<Instant> = None;
        let mut sample = |seg: &SentSeg| {
            if !seg.ever_retrans && rtt_from.is_none_or(|x| seg.xmit > x) {
                rtt_from = Some(seg.xmit);
            }
        };
        // Cumulative part (the counters follow each removed or trimmed
        // segment, so an ACK without SACK blocks costs what it removes).
        while let Some(f) = self.segs.front().copied() {
            if seq_le(f.end, una) {
                self.segs.pop_front();
                self.uncount(&f);
                if !f.sacked {
                    info.delivered += f.len();
                    sample(&f);
                    self.rack_update(now, &f);
                }
            } else {
                if seq_lt(f.start, una) {
                    if let Some(front) = self.segs.front_mut() {
                        if !front.sacked {
                            info.delivered += una.wrapping_sub(front.start);
                            sample(front);
                        }
                        front.start = una;
                        let trimmed = *front;
                        self.uncount(&f);
                        self.count(&trimmed);
                    }
                }
                break;
            }
        }
        let any_sack = blocks.iter().skip(first).any(|b| b.is_some());
        // SACK blocks (RFC 2018 / RFC 6675 "Update()").
        for b in blocks.iter().skip(first).flatten() {
            let (mut s, e) = *b;
            let Some(high) = self.high() else { break };
            if !seq_lt(s, e) || seq_le(e, una) || seq_gt(e, high) {
                continue; // bogus, old or beyond what we sent: ignore
            }
            if seq_lt(s, una) {
                s = una;
            }
            self.split_at(s);
            self.split_at(e);
            let Some(mut i) = self.find(s) else { continue };
            while i < self.segs.len() && seq_le(self.segs[i].end, e) {
                let seg = self.segs[i];
                if !seg.sacked {
                    self.segs[i].sacked = true;
                    info.newly_sacked += seg.len();
                    sample(&seg);
                    self.rack_update(now, &seg);
                }
                i += 1;
            }
        }
        info.delivered += info.newly_sacked;
        info.rtt = rtt_from.map(|x| now - x);
        if let Some(p) = self.prr.as_mut() {
            p.delivered += info.delivered as u64;
        }
        self.shrink();
        if any_sack {
            self.recount();
        }
        debug_assert_eq!(
            (self.pipe, self.lost_pending, self.sacked_bytes),
            self.counted(),
            "incremental counters"
        );
        info
    }

    /// Take one segment's share out of the counters.
    fn uncount(&mut self, s: &SentSeg) {
        self.pipe = self.pipe.saturating_sub(s.pipe());
        self.lost_pending = self.lost_pending.saturating_sub(s.needs_rtx() as u32);
        if s.sacked {
            self.sacked_bytes = self.sacked_bytes.saturating_sub(s.len());
        }
    }

    /// Add one segment's share to the counters.
    fn count(&mut self, s: &SentSeg) {
        self.pipe = self.pipe.saturating_add(s.pipe());
        self.lost_pending += s.needs_rtx() as u32;
        if s.sacked {
            self.sacked_bytes = self.sacked_bytes.saturating_add(s.len());
        }
    }

    /// RFC 8985 6.2 step 4, `RACK_update_reo_wnd()` without the return
    /// value: after each ACK, grow the reordering window once per round
    /// trip that brought a D-SACK (`dsack`: this ACK carried one, or a
    /// timestamp showed a retransmission unneeded); `snd_una` and
    /// `snd_nxt` after the ACK.
    pub fn update_reo_wnd(&mut self, snd_una: u32, snd_nxt: u32, dsack: bool) {
        if self.dsack_round.is_some_and(|r| seq_ge(snd_una, r)) {
            self.dsack_round = None;
        }
        if self.dsack_round.is_none() && dsack {
            self.dsack_round = Some(snd_nxt);
            self.reo_wnd_mult = self.reo_wnd_mult.max(1).saturating_add(1);
            self.reo_wnd_persist = REO_WND_PERSIST;
        }
    }

    /// RFC 8985 6.2 step 4: a fast or RTO recovery ended; after
    /// `REO_WND_PERSIST` of them without a D-SACK the window shrinks back.
    pub fn recovery_ended(&mut self) {
        self.prr = None;
        if self.reo_wnd_persist > 0 {
            self.reo_wnd_persist -= 1;
            if self.reo_wnd_persist == 0 {
                self.reo_wnd_mult = 1;
            }
        }
    }

    /// The reordering window multiplier (RACK.reo_wnd_mult, at least 1).
    pub fn reo_wnd_mult(&self) -> u32 {
        self.reo_wnd_mult.max(1) as u32
    }

    /// RFC 8985 6.2 step 4: RACK.reo_wnd. Zero while no reordering has been
    /// seen and either the sender is in recovery or DupThresh segments are
    /// SACKed (as fast as DupThresh would be), else
    /// `reo_wnd_mult * min_RTT / 4`, at most SRTT.
    pub fn reo_wnd(&self, in_recovery: bool, mss: u32, srtt: Option<Duration>) -> Duration {
        if !self.reordering_seen && (in_recovery || self.sacked_bytes >= DUP_THRESH * mss) {
            return Duration::ZERO;
        }
        let w = self.min_rtt.unwrap_or_default() / 4 * self.reo_wnd_mult();
        match srtt {
            Some(s) => w.min(s),
            None => w,
        }
    }

    /// RFC 6937: a recovery episode starts with `recover_fs` = FlightSize
    /// and the controller's new `ssthresh` as the target.
    pub fn prr_start(&mut self, recover_fs: u32, ssthresh: u32) {
        self.prr = Some(Prr {
            recover_fs: recover_fs.max(1),
            ssthresh,
            delivered: 0,
            out_base: self.sent_bytes,
        });
    }

    pub fn prr(&self) -> Option<&Prr> {
        self.prr.as_ref()
    }

    /// Count `delivered` bytes into the episode (for the ACK that began it,
    /// processed before the episode existed).
    pub fn prr_add_delivered(&mut self, delivered: u32) {
        if let Some(p) = self.prr.as_mut() {
            p.delivered += delivered as u64;
        }
    }

    /// RFC 6937 section 3 on an ACK during recovery (after its losses were
    /// marked): how much may be sent now (`sndcnt`); the socket sets
    /// cwnd = pipe + sndcnt. `delivered` is this ACK's DeliveredData (it is
    /// already in `prr_delivered`). While pipe > ssthresh the rate is
    /// reduced in proportion (ssthresh / RecoverFS per byte delivered);
    /// below it, slow start back to ssthresh, bounded by the Slow Start
    /// Reduction Bound (one extra MSS) when the ACK advanced SND.UNA and
    /// marked nothing lost, else by the Conservative Reduction Bound
    /// (Linux's choice, RFC 6937bis "safe ACK"). The first transmission of
    /// the episode (the fast retransmit) is always allowed, and so is one
    /// segment whenever less than one is in the pipe.
    pub fn prr_sndcnt(
        &self,
        delivered: u32,
        una_advanced: bool,
        newly_lost: bool,
        mss: u32,
    ) -> u32 {
        let Some(p) = self.prr else { return 0 };
        let out = self.sent_bytes - p.out_base;
        let pipe = self.pipe as u64;
        let ssthresh = p.ssthresh as u64;
        let sndcnt = if pipe > ssthresh {
            // ceil(prr_delivered * ssthresh / RecoverFS) - prr_out
            (p.delivered * ssthresh)
                .div_ceil(p.recover_fs as u64)
                .saturating_sub(out)
        } else {
            let mut limit = p.delivered.saturating_sub(out);
            if una_advanced && !newly_lost {
                limit = limit.max(delivered as u64) + mss as u64;
            }
            (ssthresh - pipe).min(limit)
        };
        // With (almost) nothing in the network no ACK will come to clock
        // out more: PRR would stall until the RTO (e.g. when the bound is
        // smaller than a segment because what was delivered were short
        // segments, or a zero-window probe byte is all that is in flight).
        let sndcnt = if out == 0 || pipe < mss as u64 {
            sndcnt.max(mss as u64)
        } else {
            sndcnt
        };
        sndcnt.min(u32::MAX as u64) as u32
    }

    /// A retransmission timeout turned out spurious (RFC 4015): forget the
    /// lost marks of segments not yet resent, so transmission continues
    /// with new data instead of going back N.
    pub fn undo_rto_marks(&mut self) {
        for s in self.segs.iter_mut() {
            if s.lost && !s.retrans {
                s.lost = false;
            }
        }
        self.recount();
    }

    /// Is all of `[s, e)` marked SACKed?
    #[allow(dead_code)]
    fn range_sacked(&self, s: u32, e: u32) -> bool {
        let Some(mut i) = self.find(s) else {
            return false;
        };
        let mut at = s;
        while i < self.segs.len() && seq_lt(at, e) {
            let seg = &self.segs[i];
            if !seg.sacked || seq_gt(seg.start, at) {
                return false;
            }
            at = seg.end;
            i += 1;
        }
        seq_ge(at, e)
    }

    /// RFC 5681 3.2 / RFC 6675 5 step 4: DupThresh duplicate ACKs mark the
    /// first un-SACKed segment lost.
    pub fn mark_first_lost(&mut self) {
        if let Some(s) = self.segs.iter_mut().find(|s| !s.sacked) {
            if !s.lost {
                s.lost = true;
                s.retrans = false;
            }
        }
        self.recount();
    }

    /// Loss detection: RACK (RFC 8985 6.2 step 5) with reordering window
    /// `reo_wnd`, plus, if `dupthresh` is set, RFC 6675 `IsLost`. Returns
    /// the number of segments newly marked lost and when RACK must look
    /// again (a segment that will be lost unless acknowledged by then).
    pub fn detect_loss(
        &mut self,
        now: Instant,
        reo_wnd: Duration,
        dupthresh: bool,
        mss: u32,
    ) -> (u32, Option<Instant>) {
        let mut newly = 0;
        let mut timeout: Option<Instant> = None;
        if let Some(rx) = self.rack_xmit {
            let (rack_end, rack_rtt) = (self.rack_end, self.rack_rtt);
            for s in self.segs.iter_mut() {
                if s.sacked || (s.lost && !s.retrans) {
                    continue;
                }
                // Sequence order breaks ties of send time only for
                // original transmissions (a retransmission is sent after
                // higher sequence numbers).
                let sent_before =
                    s.xmit < rx || (s.xmit == rx && !s.ever_retrans && seq_lt(s.end, rack_end));
                if !sent_before {
                    continue;
                }
                let deadline = s.xmit + rack_rtt + reo_wnd;
                if deadline <= now {
                    s.lost = true;
                    s.retrans = false;
                    newly += 1;
                } else {
                    timeout = Some(timeout.map_or(deadline, |t: Instant| t.min(deadline)));
                }
            }
        }
        if dupthresh {
            // IsLost(): walk down from the top counting SACKed data above.
            let (mut bytes, mut count) = (0u32, 0u32);
            for s in self.segs.iter_mut().rev() {
                if s.sacked {
                    bytes = bytes.saturating_add(s.len());
                    count += 1;
                    continue;
                }
                if !s.lost && !s.retrans && (count >= DUP_THRESH || bytes > (DUP_THRESH - 1) * mss)
                {
                    s.lost = true;
                    newly += 1;
                }
            }
        }
        self.recount();
        (newly, timeout)
    }

    /// RFC 6675 NextSeg() rule 1: the first lost, un-SACKed segment not yet
    /// retransmitted, cut to at most `mss` sequence numbers.
    pub fn next_lost(&self, mss: u32) -> Option<(u32, u32)> {
        if self.lost_pending == 0 {
            return None;
        }
        let s = self.segs.iter().find(|s| s.needs_rtx())?;
        let end = if s.len() > mss {
            s.start.wrapping_add(mss)
        } else {
            s.end
        };
        Some((s.start, end))
    }

    /// The last segment sent, cut to its last `mss` sequence numbers (what a
    /// tail loss probe retransmits, RFC 8985 7.3).
    pub fn last_segment(&self, mss: u32) -> Option<(u32, u32)> {
        let s = self.segs.iter().rev().find(|s| !s.sacked)?;
        let start = if s.len() > mss {
            s.end.wrapping_sub(mss)
        } else {
            s.start
        };
        Some((start, s.end))
    }

    /// Retransmission timeout (RFC 6675 5.1, RFC 8985 6.3): every un-SACKed
    /// segment is lost. SACK is advisory (RFC 2018 8): if the first
    /// outstanding segment is marked SACKed the receiver reneged (it
    /// discarded data it had SACKed), and all SACK marks are dropped.
    pub fn on_rto(&mut self) {
        let reneged = self.segs.front().is_some_and(|s| s.sacked);
        for s in self.segs.iter_mut() {
            if reneged {
                s.sacked = false;
            }
            if !s.sacked {
                s.lost = true;
                s.retrans = false;
            }
        }
        self.recount();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    const MSS: u32 = 100;

    fn t(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    /// Ten segments of 100 bytes from seq 1000, sent 1 ms apart.
    fn board() -> Scoreboard {
        let mut sb = Scoreboard::new();
        for i in 0..10u32 {
            sb.on_send(t(i as u64), 1000 + i * MSS, 1100 + i * MSS);
        }
        sb
    }

    #[test]
    fn pipe_counts_flight_then_sacked_and_lost() {
        let mut sb = board();
        assert_eq!(sb.pipe(), 1000);
        // Segment 0 lost; 1..=4 SACKed.
        let info = sb.on_ack(t(50), 1000, &[Some((1100, 1500)), None, None]);
        assert_eq!(info.newly_sacked, 400);
        assert_eq!(info.dsack, None);
        assert_eq!(sb.pipe(), 600);
        let (n, _) = sb.detect_loss(t(50), Duration::ZERO, true, MSS);
        assert_eq!(n, 1, "IsLost: 4 segments SACKed above");
        assert_eq!(sb.pipe(), 500, "a lost segment leaves the pipe");
        assert_eq!(sb.next_lost(MSS), Some((1000, 1100)));
        sb.on_send(t(51), 1000, 1100);
        assert_eq!(sb.pipe(), 600, "its retransmission enters it");
        assert_eq!(sb.next_lost(MSS), None, "never retransmitted twice");
        // The cumulative ACK covers the hole and the SACKed range.
        sb.on_ack(t(80), 1500, &[None, None, None]);
        assert_eq!(sb.pipe(), 500);
        assert_eq!(sb.len(), 5);
    }

    #[test]
    fn sack_splits_segments_and_never_retransmits_sacked_ranges() {
        let mut sb = Scoreboard::new();
        sb.on_send(t(0), 0, 1000); // one TSO-sized segment
        sb.on_ack(t(10), 0, &[Some((300, 400)), Some((600, 1000)), None]);
        assert_eq!(sb.sacked_bytes(), 500);
        sb.on_rto();
        let mut holes = Vec::new();
        while let Some((s, e)) = sb.next_lost(150) {
            holes.push((s, e));
            sb.on_send(t(20), s, e);
        }
        assert_eq!(holes, vec![(0, 150), (150, 300), (400, 550), (550, 600)]);
    }

    #[test]
    fn dsack_recognised() {
        let mut sb = board();
        // Below the cumulative ACK.
        let i = sb.on_ack(t(20), 1200, &[Some((1000, 1100)), None, None]);
        assert_eq!(i.dsack, Some((1000, 1100)));
        // Inside the second block.
        let i = sb.on_ack(t(20), 1200, &[Some((1400, 1500)), Some((1300, 1600)), None]);
        assert_eq!(i.dsack, Some((1400, 1500)));
        assert_eq!(i.newly_sacked, 300);
        // Repeating a SACKed range is not a D-SACK.
        let i = sb.on_ack(t(21), 1200, &[Some((1300, 1600)), None, None]);
        assert_eq!(i.dsack, None);
        assert_eq!(i.newly_sacked, 0);
    }

    #[test]
    fn rack_marks_by_time_with_reordering_window() {
        let mut sb = board();
        // Segment 9 (sent at 9 ms) SACKed at 29 ms: RACK.rtt = 20 ms.
        sb.on_ack(t(29), 1000, &[Some((1900, 2000)), None, None]);
        // Segment i is lost once now >= i ms + 20 ms + reo_wnd.
        let (n, next) = sb.detect_loss(t(29), Duration::from_millis(5), false, MSS);
        assert_eq!(n, 5, "segments 0..=4 (sent at 0..4 ms) are past i+20+5");
        assert_eq!(next, Some(t(30)), "segment 5 is due at 5+20+5");
        let (n, next) = sb.detect_loss(t(33), Duration::from_millis(5), false, MSS);
        assert_eq!(n, 4);
        assert_eq!(next, None);
    }

    #[test]
    fn reordering_detected_and_rto_reneging() {
        let mut sb = board();
        sb.on_ack(t(20), 1000, &[Some((1100, 1200)), None, None]);
        assert!(!sb.reordering_seen());
        // Segment 0 arrives late, never retransmitted: reordering.
        sb.on_ack(t(21), 1200, &[None, None, None]);
        assert!(sb.reordering_seen());
        // The receiver SACKs 1200..1300 then loses it: an RTO with the first
        // outstanding segment SACKed drops every SACK mark.
        sb.on_ack(t(22), 1200, &[Some((1200, 1300)), Some((1500, 1600)), None]);
        sb.on_rto();
        assert_eq!(sb.sacked_bytes(), 0);
        assert_eq!(sb.next_lost(MSS), Some((1200, 1300)));
    }

    #[test]
    fn bounded() {
        let mut sb = Scoreboard::new();
        for i in 0..(MAX_SEGMENTS as u32 + 100) {
            sb.on_send(t(0), i * 10, i * 10 + 10);
        }
        assert_eq!(sb.len(), MAX_SEGMENTS);
        assert_eq!(sb.high(), Some((MAX_SEGMENTS as u32 + 100) * 10));
        // Hostile SACK blocks (odd boundaries) cannot grow it either.
        for i in 0..1000u32 {
            sb.on_ack(t(1), 0, &[Some((i * 7 + 3, i * 7 + 5)), None, None]);
        }
        assert!(sb.len() <= MAX_SEGMENTS);
    }
}
