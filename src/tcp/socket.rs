//! One TCP connection: the transmission control block (TCB) and the RFC 9293
//! state machine.
//!
//! The socket is sans-IO. Input arrives through [`Tcb::process`] (one parsed
//! segment) and [`Tcb::handle_timeout`]; output is pulled with
//! [`Tcb::dispatch`], which describes the next segment to send (its payload
//! stays in the send buffer; the interface copies it into the packet).
//! [`Tcb::poll_at`] tells when the next timer fires.
//!
//! Sequence numbers are plain `u32` here, compared with the wrapping helpers
//! [`seq_lt`] and friends (RFC 9293 3.4: arithmetic modulo 2^32).

use super::buffer::{Assembler, RingBuffer};
use super::congestion::{Ack, CongestionControl, Cubic, NewReno, Phase};
use super::recovery::Scoreboard;
use super::rtt::RttEstimator;
use super::{CongestionAlgorithm, Readiness, State, TcpConfig, TcpError};
use crate::iface::{DropReason, Stats};
use crate::time::{Duration, Instant};
use std::net::SocketAddrV4;
use std::sync::Arc;

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;

/// `a < b` in sequence space.
#[inline]
pub fn seq_lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}
#[inline]
pub fn seq_le(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) <= 0
}
#[inline]
pub fn seq_gt(a: u32, b: u32) -> bool {
    seq_lt(b, a)
}
#[inline]
pub fn seq_ge(a: u32, b: u32) -> bool {
    seq_le(b, a)
}
/// `b - a` as a distance (a <= b assumed).
#[inline]
pub fn seq_dist(a: u32, b: u32) -> u32 {
    b.wrapping_sub(a)
}

/// A parsed incoming segment, as the state machine needs it.
#[derive(Clone, Copy, Debug)]
pub struct SegmentIn<'a> {
    pub flags: u8,
    pub seq: u32,
    pub ack: u32,
    pub window: u16,
    pub mss: Option<u16>,
    pub window_scale: Option<u8>,
    pub sack_permitted: bool,
    pub sack_ranges: [Option<(u32, u32)>; 3],
    pub timestamp: Option<(u32, u32)>,
    pub payload: &'a [u8],
}

impl SegmentIn<'_> {
    fn has(&self, f: u8) -> bool {
        self.flags & f != 0
    }
    /// SEG.LEN: payload plus SYN and FIN (RFC 9293 3.4).
    pub fn seg_len(&self) -> u32 {
        self.payload.len() as u32 + self.has(SYN) as u32 + self.has(FIN) as u32
    }
}

/// The next segment a socket wants to send. The payload is
/// `send buffer[payload_offset .. payload_offset + payload_len]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SegmentOut {
    pub flags: u8,
    pub seq: u32,
    pub ack: u32,
    pub window: u16,
    pub mss: Option<u16>,
    pub window_scale: Option<u8>,
    pub sack_permitted: bool,
    pub sack_ranges: [Option<(u32, u32)>; 3],
    pub timestamp: Option<(u32, u32)>,
    pub payload_offset: usize,
    pub payload_len: usize,
    /// This segment resends sequence space already sent once.
    pub retransmission: bool,
}

/// What processing one segment asks the interface to do besides updating the socket.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Reaction {
    /// Send a RST not tied to the socket's own sequence state: (seq, ack, flags).
    pub rst: Option<(u32, u32, u8)>,
    /// A passive connection reached ESTABLISHED: move it to the accept queue.
    pub established: bool,
    /// The segment was dropped for this reason (counted by the caller).
    pub drop: Option<DropReason>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    Retransmit,
    DelayedAck,
    Persist,
    Keepalive,
    TimeWait,
    FinWait2,
    /// RACK reordering-window timer (RFC 8985 6.3).
    Rack,
    /// Tail loss probe timer (RFC 8985 7.2).
    Tlp,
}
const TIMERS: usize = 8;

/// RFC 8985 7.2: worst-case delayed ACK time added to the PTO when only
/// one segment is in flight.
const WC_DEL_ACK: Duration = Duration::from_millis(200);

/// What a tail loss probe sends (RFC 8985 7.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TlpProbe {
    /// One segment of new data, ignoring cwnd.
    NewData,
    /// The last segment sent, again.
    Retransmit(u32, u32),
}

/// The transmission control block.
#[derive(Debug)]
pub struct Tcb {
    pub(crate) state: State,
    pub(crate) local: SocketAddrV4,
    pub(crate) remote: SocketAddrV4,
    passive: bool,
    /// The stack's settings, shared by all its connections (one pointer
    /// instead of a 176-byte copy each); `set_keepalive` copies on write.
    cfg: Arc<TcpConfig>,

    // Send sequence variables (RFC 9293 3.3.1).
    iss: u32,
    snd_una: u32,
    snd_nxt: u32,
    /// Highest sequence number sent + 1 (SND.NXT before any go-back-N).
    snd_max: u32,
    snd_wnd: u32,
    max_snd_wnd: u32,
    snd_wl1: u32,
    snd_wl2: u32,
    /// Shift applied to windows the peer advertises.
    snd_wscale: u8,
    /// Send MSS (peer's MSS option, clipped to our link).
    mss: u32,
    send_buf: RingBuffer,
    /// The application closed the write side: a FIN follows the queued data.
    fin_queued: bool,
    /// SND.UNA value that means "our FIN is acknowledged" (FIN seq + 1), once sent.
    fin_acked_seq: Option<u32>,
    /// Our link's MSS (MTU - 40); the send MSS never exceeds it.
    link_mss: u32,
    /// The peer offered window scaling in its SYN.
    wscale_negotiated: bool,
    /// Largest payload one outgoing segment may carry when the device does
    /// TCP segmentation offload (0: no offload, segments are at most one MSS).
    tso_max: usize,

    // Receive sequence variables.
    irs: u32,
    rcv_nxt: u32,
    /// Right edge of the window last advertised (never moves left).
    rcv_adv: u32,
    /// Shift we apply to windows we advertise.
    rcv_wscale: u8,
    recv_buf: RingBuffer,
    assembler: Assembler,
    /// Sequence number of a FIN that arrived ahead of missing data.
    pending_fin: Option<u32>,
    /// The peer's FIN has been received in order.
    fin_received: bool,
    /// Most recently received out-of-order range (for the first SACK block).
    last_ooo: Option<(u32, u32)>,
    /// A duplicate segment arrived: report it as the first SACK block of
    /// the next ACK (RFC 2883 D-SACK).
    dsack_pending: Option<(u32, u32)>,
    /// ACKs owed for earlier out-of-order segments of the same burst,
    /// (ACK number, SACK blocks) as they were then; sent before the ACK for
    /// the latest state. See `snapshot_sack_ack`. (Boxed: 8 bytes in the
    /// TCB, allocated only during bursts of out-of-order segments.)
    #[allow(clippy::box_collection)]
    sack_acks: Option<Box<Vec<SackAck>>>,

    // Options.
    ts_enabled: bool,
    ts_recent: u32,
    ts_offset: u32,
    /// TSval of a duplicate data segment (entirely below RCV.NXT) that
    /// arrived since the last ACK, if newer than TS.Recent: that ACK
    /// echoes it instead (`dup_echo`). Every segment sent resets it to
    /// TS.Recent (no separate flag: the TCB size is pinned).
    ts_echo_dup: u32,
    last_ack_sent: u32,
    sack_enabled: bool,
    pub(crate) nagle: bool,

    // ACK generation.
    ack_now: bool,
    /// In-order bytes received since we last sent an ACK.
    unacked_bytes: usize,

    // Retransmission and congestion.
    rtt: RttEstimator,
    rtt_probe: Option<(u32, Instant)>,
    retries: u32,
    cc: Box<dyn CongestionControl>,
    dup_acks: u32,
    /// Recovery point (RFC 6582 `recover`, RFC 6675 `RecoveryPoint`), when
    /// in fast recovery.
    recover: Option<u32>,
    /// SND.MAX when the last retransmission timeout fired, until it is
    /// acknowledged: no fast recovery before that (RFC 6675 5.1, RFC 6582 4.1).
    rto_recover: Option<u32>,
    /// The sender's SACK scoreboard and RACK state (used when SACK was
    /// negotiated; otherwise NewReno recovery runs).
    sb: Scoreboard,
    /// A tail loss probe is due.
    tlp_now: Option<TlpProbe>,
    /// TLP episode (RFC 8985 7.4): SND.MAX after the probe, and whether the
    /// probe was a retransmission and whether a D-SACK showed it unneeded.
    tlp_high: Option<u32>,
    tlp_rtx: bool,
    tlp_dsack: bool,
    /// The last loss episode (a fast recovery or a timeout), for undo
    /// (RFC 3708 / RFC 4015, Linux "undo"): its retransmissions, how many
    /// of them D-SACKs (RFC 2883) and timestamp echoes (RFC 3522 Eifel
    /// detection) showed unneeded, and SND.MAX when it began. If either
    /// count covers every retransmission, the episode was spurious and its
    /// reduction is undone. Valid until the next episode begins.
    episode_rtx: u32,
    episode_dsacks: u32,
    episode_eifel: u32,
    episode_high: u32,
    /// The last RTT sample from timestamps covered data up to here
    /// (one TS sample per RTT).
    ts_sample_seq: u32,
    /// TSval of our latest retransmission while its echo is awaited: a
    /// TSecr older than it was caused by an earlier copy (whose ACK may
    /// have been lost), so it is no RTT sample (RFC 8985 6.2 step 2).
    retx_tsval: u32,
    retx_tsval_pending: bool,
    /// TIME-WAIT's 2*MSL timer was restarted (a retransmitted FIN): its
    /// deadline is no longer the one the stack's TIME-WAIT queue holds.
    tw_restarted: bool,
    /// Receive-buffer auto-tuning: the current window target, and the
    /// bytes read by the application at the start of the measurement.
    rcv_space: usize,
    rcv_space_mark: u64,
    rcv_space_time: Instant,
    /// Send the first unacknowledged segment again now (fast retransmit).
    retransmit_una: bool,
    /// Send a zero-window probe now (persist timer expired).
    zwp_now: bool,
    /// A zero-window probe byte is outstanding.
    probe_outstanding: bool,
    /// Zero-window probes sent without any ACK coming back.
    probes_unanswered: u32,
    /// Send a keepalive probe now.
    keepalive_now: bool,
    persist_backoff: u8,
    /// The SWS override timeout expired: send a short segment now.
    sws_override: bool,
    keepalive_probes_sent: u32,
    last_activity: Instant,

    timers: [Option<Instant>; TIMERS],

    // Bookkeeping.
    pub(crate) error: Option<TcpError>,
    rst_pending: bool,
    challenge_pending: bool,
    /// The application released its handle (close/abort).
    pub(crate) orphaned: bool,
    pub(crate) bytes_in: u64,
    pub(crate) bytes_out: u64,
    pub(crate) retransmissions: u64,
    /// Something the application can observe changed.
    pub(crate) notify: bool,
    /// Set by the stack when all connections' buffers together are over
    /// the memory budget: the receive window then offers only space that
    /// is already allocated (and never moves its right edge left).
    pub(crate) mem_pressure: bool,
}

/// An ACK owed for an out-of-order segment: its ACK number and SACK blocks.
type SackAck = (u32, [Option<(u32, u32)>; 3]);

/// At most this many such ACKs wait per connection; past it, later
/// out-of-order segments of a burst share ACKs again.
const MAX_SACK_ACKS: usize = 8;

/// Largest window that fits the 16-bit field with scaling (RFC 7323 2.3).
const MAX_WINDOW: u32 = (1 << 30) - 1;

/// A connection in TIME-WAIT reduced to what answering its segments
/// needs (RFC 9293 3.10.7.4 TIME-WAIT, RFC 7323 PAWS, RFC 6191 reuse):
/// ~150 bytes where the TCB is ~840 plus a congestion controller. The
/// interface keeps this for a TIME-WAIT connection nobody holds (as
/// Linux's `inet_timewait_sock`), and rebuilds a TCB from it
/// ([`Tcb::from_time_wait`]) when a segment arrives, so the rules for
/// TIME-WAIT have one implementation: the TCB's.
#[derive(Clone, Debug)]
pub struct TimeWaitState {
    pub local: SocketAddrV4,
    pub remote: SocketAddrV4,
    /// When 2*MSL is over.
    pub expires: Instant,
    iss: u32,
    irs: u32,
    snd_nxt: u32,
    snd_wnd: u32,
    max_snd_wnd: u32,
    snd_wl1: u32,
    snd_wl2: u32,
    pub rcv_nxt: u32,
    rcv_adv: u32,
    rcv_space: u32,
    ts_recent: u32,
    ts_offset: u32,
    ts_echo_dup: u32,
    last_ack_sent: u32,
    pub mss: u32,
    fin_acked_seq: Option<u32>,
    snd_wscale: u8,
    rcv_wscale: u8,
    flags: u8,
    // For the connection list (`iface::ConnInfo`), as they were.
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub retransmissions: u64,
    /// `u32::MAX`: no RTT sample was taken.
    pub srtt_us: u32,
    pub rto_us: u32,
    pub cwnd: u32,
    pub ssthresh: u32,
    pub cc_phase: &'static str,
}

const TW_PASSIVE: u8 = 1;
const TW_WSCALE: u8 = 2;
const TW_TS: u8 = 4;
const TW_SACK: u8 = 8;
const TW_RESTARTED: u8 = 16;

impl TimeWaitState {
    /// Has a retransmitted FIN restarted 2*MSL?
    pub fn restarted(&self) -> bool {
        self.flags & TW_RESTARTED != 0
    }
    /// The receive window the connection last advertised.
    pub fn recv_window(&self) -> u32 {
        self.rcv_adv.wrapping_sub(self.rcv_nxt).min(MAX_WINDOW)
    }
}

fn new_cc(alg: CongestionAlgorithm, mss: u32) -> Box<dyn CongestionControl> {
    match alg {
        CongestionAlgorithm::NewReno => Box::new(NewReno::new(mss)),
        CongestionAlgorithm::Cubic => Box::new(Cubic::new(mss)),
    }
}

impl Tcb {
    fn new(
        now: Instant,
        cfg: &Arc<TcpConfig>,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        iss: u32,
        mss: u32,
        passive: bool,
    ) -> Tcb {
        let cc = new_cc(cfg.congestion, mss);
        // Window scale we will ask for: enough to advertise the whole buffer.
        let mut rcv_wscale = 0u8;
        while rcv_wscale < 14 && (cfg.recv_buffer >> rcv_wscale) > 65535 {
            rcv_wscale += 1;
        }
        Tcb {
            state: State::Closed,
            local,
            remote,
            passive,
            cfg: Arc::clone(cfg),
            iss,
            snd_una: iss,
            snd_nxt: iss,
            snd_max: iss,
            snd_wnd: 0,
            max_snd_wnd: 0,
            snd_wl1: 0,
            snd_wl2: 0,
            snd_wscale: 0,
            mss,
            send_buf: RingBuffer::new(cfg.send_buffer),
            fin_queued: false,
            fin_acked_seq: None,
            link_mss: mss,
            tso_max: 0,
            wscale_negotiated: false,
            irs: 0,
            rcv_nxt: 0,
            rcv_adv: 0,
            rcv_wscale: if cfg.window_scaling { rcv_wscale } else { 0 },
            recv_buf: RingBuffer::new(cfg.recv_buffer.min(MAX_WINDOW as usize)),
            assembler: Assembler::new(),
            pending_fin: None,
            fin_received: false,
            last_ooo: None,
            dsack_pending: None,
            sack_acks: None,
            ts_enabled: false,
            ts_recent: 0,
            ts_echo_dup: 0,
            ts_offset: Tcb::ts_offset_for_iss(iss),
            last_ack_sent: 0,
            sack_enabled: false,
            nagle: cfg.nagle,
            ack_now: false,
            unacked_bytes: 0,
            rtt: RttEstimator::new(cfg.rto_initial, cfg.rto_min, cfg.rto_max),
            rtt_probe: None,
            retries: 0,
            cc,
            dup_acks: 0,
            recover: None,
            rto_recover: None,
            sb: Scoreboard::new(),
            tlp_now: None,
            tlp_high: None,
            tlp_rtx: false,
            tlp_dsack: false,
            episode_rtx: 0,
            episode_dsacks: 0,
            episode_eifel: 0,
            episode_high: iss,
            ts_sample_seq: iss,
            retx_tsval: 0,
            retx_tsval_pending: false,
            tw_restarted: false,
            rcv_space: cfg
                .recv_buffer_initial
                .clamp(1, cfg.recv_buffer.clamp(1, MAX_WINDOW as usize)),
            rcv_space_mark: 0,
            rcv_space_time: now,
            retransmit_una: false,
            zwp_now: false,
            probe_outstanding: false,
            probes_unanswered: 0,
            keepalive_now: false,
            persist_backoff: 0,
            sws_override: false,
            keepalive_probes_sent: 0,
            last_activity: now,
            timers: [None; TIMERS],
            error: None,
            rst_pending: false,
            challenge_pending: false,
            orphaned: false,
            bytes_in: 0,
            bytes_out: 0,
            retransmissions: 0,
            notify: false,
            mem_pressure: false,
        }
    }

    /// Active open (RFC 9293 3.10.1): a SYN goes out on the next dispatch.
    pub fn connect(
        now: Instant,
        cfg: &Arc<TcpConfig>,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        iss: u32,
        mss: u32,
    ) -> Tcb {
        let mut t = Tcb::new(now, cfg, local, remote, iss, mss, false);
        t.set_state(State::SynSent);
        t
    }

    /// Passive open: a SYN arrived at a listener (RFC 9293 3.10.7.2). The
    /// caller has checked it carries SYN, no ACK and no RST.
    pub fn accept_syn(
        now: Instant,
        cfg: &Arc<TcpConfig>,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        iss: u32,
        link_mss: u32,
        seg: &SegmentIn,
    ) -> Tcb {
        let mut t = Tcb::new(now, cfg, local, remote, iss, link_mss, true);
        t.irs = seg.seq;
        t.rcv_nxt = seg.seq.wrapping_add(1);
        t.negotiate_options(seg, link_mss);
        t.update_send_window(seg);
        t.snd_wl1 = seg.seq;
        t.snd_wl2 = iss;
        t.rcv_adv = t.rcv_nxt.wrapping_add(t.recv_window_raw());
        if let Some((tsval, _)) = seg.timestamp {
            t.ts_recent = tsval;
            t.ts_echo_dup = tsval;
        }
        t.set_state(State::SynReceived);
        t
    }

    /// SYN cookies (RFC 4987 3.6, see `iface::syncookie`): the SYN-ACK
    /// with ISS = the cookie was sent statelessly by the listener, so this
    /// TCB (built by `accept_syn` from the SYN the cookie describes) is
    /// marked as having sent it; the returning ACK then completes the
    /// handshake through the normal SYN-RECEIVED processing.
    pub fn syn_ack_sent_as_cookie(&mut self) {
        self.snd_nxt = self.iss.wrapping_add(1);
        self.snd_max = self.snd_nxt;
    }

    /// The TSval this connection would send at `now` (SYN cookies encode
    /// options in its low bits; see `iface::syncookie`).
    pub fn ts_offset_for_iss(iss: u32) -> u32 {
        iss.rotate_left(13)
    }

    fn negotiate_options(&mut self, seg: &SegmentIn, link_mss: u32) {
        // MSS (RFC 9293 3.7.1): default 536 when the option is absent.
        let peer_mss = seg.mss.map(|m| m as u32).unwrap_or(536).max(64);
        self.mss = peer_mss.min(link_mss);
        // Window scaling applies only when both sides sent the option (RFC 7323 2.2).
        match seg.window_scale {
            Some(ws) if self.cfg.window_scaling => {
                self.snd_wscale = ws.min(14);
                self.wscale_negotiated = true;
            }
            _ => {
                self.snd_wscale = 0;
                self.rcv_wscale = 0;
            }
        }
        self.ts_enabled = self.cfg.timestamps && seg.timestamp.is_some();
        self.sack_enabled = self.cfg.sack && seg.sack_permitted;
        self.cc.restart(self.smss());
    }

    // ---------------------------------------------------------------- state

    fn set_state(&mut self, s: State) {
        if self.state != s {
            log::debug!("{} -> {}: {} -> {}", self.local, self.remote, self.state, s);
            self.state = s;
            self.notify = true;
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// Enter CLOSED with an optional error; all timers stop.
    fn close_with(&mut self, err: Option<TcpError>) {
        if self.error.is_none() {
            self.error = err;
        }
        self.timers = [None; TIMERS];
        // Nothing is sent from CLOSED but a RST (set by `abort` after this):
        // a pending ACK, probe or retransmission would keep the connection
        // "wanting to dispatch" forever and its slot would never be freed
        // (found by fuzzing: an exact RST right after a challenge ACK).
        self.ack_now = false;
        self.zwp_now = false;
        self.keepalive_now = false;
        self.retransmit_una = false;
        self.sws_override = false;
        self.set_state(State::Closed);
        self.notify = true;
        // Nothing but a RST (set by the caller) may leave a closed connection.
        self.ack_now = false;
        self.zwp_now = false;
        self.keepalive_now = false;
        self.retransmit_una = false;
        self.challenge_pending = false;
        self.sack_acks = None;
    }

    // ----------------------------------------------------------- app calls

    pub fn send(&mut self, data: &[u8]) -> Result<usize, TcpError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        match self.state {
            State::SynSent | State::SynReceived | State::Established | State::CloseWait => {}
            State::Closed | State::Listen => return Err(TcpError::NotConnected),
            _ => return Err(TcpError::WriteClosed),
        }
        if self.fin_queued {
            return Err(TcpError::WriteClosed);
        }
        if data.is_empty() {
            return Ok(0);
        }
        let n = self.send_buf.enqueue(data);
        if n == 0 {
            return Err(TcpError::WouldBlock);
        }
        Ok(n)
    }

    /// [`Tcb::send`] in place: `fill` writes up to `max` bytes directly into
    /// the send buffer (see [`RingBuffer::enqueue_with`]: it may be offered
    /// less than `max` where the ring wraps). Returns the bytes queued.
    pub fn send_with(
        &mut self,
        max: usize,
        fill: impl FnOnce(&mut [u8]) -> usize,
    ) -> Result<usize, TcpError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        match self.state {
            State::SynSent | State::SynReceived | State::Established | State::CloseWait => {}
            State::Closed | State::Listen => return Err(TcpError::NotConnected),
            _ => return Err(TcpError::WriteClosed),
        }
        if self.fin_queued {
            return Err(TcpError::WriteClosed);
        }
        if max == 0 {
            return Ok(0);
        }
        if self.send_buf.window() == 0 {
            return Err(TcpError::WouldBlock);
        }
        Ok(self.send_buf.enqueue_with(max, fill))
    }

    pub fn send_capacity(&self) -> usize {
        match self.state {
            State::SynSent | State::SynReceived | State::Established | State::CloseWait
                if !self.fin_queued && self.error.is_none() =>
            {
                self.send_buf.window()
            }
            _ => 0,
        }
    }

    /// The payload bytes of an outgoing segment (up to two slices: the
    /// send buffer is a ring).
    pub fn send_slices(&self, offset: usize, len: usize) -> (&[u8], &[u8]) {
        self.send_buf.slices(offset, len)
    }

    /// Drop the connection without sending anything (a TIME-WAIT connection
    /// replaced by a new incarnation, RFC 6191).
    pub fn abort_silently(&mut self) {
        self.close_with(None);
        self.rst_pending = false;
        self.orphaned = true;
    }

    /// Bytes queued but not yet acknowledged.
    pub fn send_queued(&self) -> usize {
        self.send_buf.len()
    }

    pub fn recv(&mut self, buf: &mut [u8]) -> Result<usize, TcpError> {
        if !self.recv_buf.is_empty() {
            let n = self.recv_buf.dequeue(buf);
            self.recv_buf.release_if_empty(!self.assembler.is_empty());
            // Reading may open the window enough to tell the peer (RFC 1122 4.2.3.3).
            if self.window_update_due() {
                self.ack_now = true;
            }
            return Ok(n);
        }
        if buf.is_empty() {
            return Ok(0);
        }
        if self.fin_received {
            return Ok(0);
        }
        if let Some(e) = self.error {
            return Err(e);
        }
        match self.state {
            State::Closed | State::Listen => Err(TcpError::NotConnected),
            _ => Err(TcpError::WouldBlock),
        }
    }

    pub fn recv_queued(&self) -> usize {
        self.recv_buf.len()
    }

    /// Close the sending side (RFC 9293 3.10.4 CLOSE while data may still arrive).
    pub fn shutdown(&mut self) -> Result<(), TcpError> {
        match self.state {
            State::SynSent | State::SynReceived => {
                // RFC 9293 3.10.4 (SYN-RECEIVED): "queue for processing after
                // entering ESTABLISHED state". Half-closing before the
                // handshake ends must neither lose queued data nor the
                // chance to read the peer's reply: the FIN follows once
                // the connection is established.
                self.fin_queued = true;
                Ok(())
            }
            State::Established => {
                self.fin_queued = true;
                self.set_state(State::FinWait1);
                Ok(())
            }
            State::CloseWait => {
                self.fin_queued = true;
                self.set_state(State::LastAck);
                Ok(())
            }
            State::Closed | State::Listen => Err(self.error.unwrap_or(TcpError::NotConnected)),
            // Already closing.
            _ => Ok(()),
        }
    }

    /// Abort (RFC 9293 3.10.5): send RST if synchronized, enter CLOSED.
    pub fn abort(&mut self) {
        let send_rst = matches!(
            self.state,
            State::SynReceived
                | State::Established
                | State::FinWait1
                | State::FinWait2
                | State::CloseWait
                | State::Closing
                | State::LastAck
        );
        self.close_with(Some(TcpError::Aborted));
        self.rst_pending = send_rst;
    }

    /// The application released the handle. Unread data makes it an abort
    /// (RFC 1122 4.2.2.13 / RFC 2525 "failure to RST on close with data pending").
    pub fn release(&mut self) {
        self.orphaned = true;
        if self.state == State::Closed {
            return;
        }
        if !self.recv_buf.is_empty() {
            self.abort();
            return;
        }
        if self.state == State::SynSent && self.send_buf.is_empty() {
            // RFC 9293 3.10.4 CLOSE in SYN-SENT: delete the TCB.
            self.close_with(None);
            return;
        }
        let _ = self.shutdown();
        if self.state == State::FinWait2 {
            self.set_timer(
                Timer::FinWait2,
                self.last_activity + self.cfg.fin_wait2_timeout,
            );
        }
    }

    pub fn readiness(&self) -> Readiness {
        let closed = self.state == State::Closed;
        Readiness {
            readable: !self.recv_buf.is_empty() || self.fin_received || self.error.is_some(),
            writable: self.send_capacity() > 0,
            read_closed: self.fin_received && self.recv_buf.is_empty(),
            closed,
            error: self.error,
        }
    }

    pub fn set_keepalive(&mut self, now: Instant, idle: Option<Duration>) {
        Arc::make_mut(&mut self.cfg).keepalive = idle;
        self.keepalive_probes_sent = 0;
        match idle {
            Some(d) if self.state.is_synchronized() => self.set_timer(Timer::Keepalive, now + d),
            _ => self.timers[Timer::Keepalive as usize] = None,
        }
    }

    // ---------------------------------------------------------- statistics

    pub fn srtt(&self) -> Option<Duration> {
        self.rtt.srtt()
    }
    pub fn rto(&self) -> Duration {
        self.rtt.rto()
    }
    pub fn cwnd(&self) -> u32 {
        self.cc.cwnd()
    }
    /// The congestion-control phase, for stats and traces (see
    /// `ConnInfo::cc_phase`).
    pub fn cc_phase(&self) -> &'static str {
        if self.recover.is_some() {
            "recovery"
        } else if self.rto_recover.is_some() {
            "loss"
        } else {
            self.cc.phase().name()
        }
    }
    pub fn ssthresh(&self) -> u32 {
        self.cc.ssthresh()
    }
    pub fn send_window(&self) -> u32 {
        self.snd_wnd
    }
    pub fn recv_window(&self) -> u32 {
        self.recv_window_raw()
    }
    /// Payload per segment: the MSS less the options every segment carries
    /// (RFC 6691 / RFC 9293 3.7.1: the MSS counts data only, so the
    /// timestamp and SACK options come out of it).
    fn effective_mss(&self) -> usize {
        let mut opts = if self.ts_enabled { 12 } else { 0 };
        if self.sack_enabled && (!self.assembler.is_empty() || self.dsack_pending.is_some()) {
            let blocks =
                (self.assembler.ranges().len() + self.dsack_pending.is_some() as usize).min(3);
            opts += 4 + 8 * blocks;
        }
        (self.mss as usize).saturating_sub(opts).max(1)
    }

    /// Let segments carry up to `max_payload` bytes (device TSO).
    pub fn set_tso(&mut self, max_payload: usize) {
        self.tso_max = max_payload;
    }

    pub fn mss(&self) -> u32 {
        self.mss
    }
    /// SMSS for congestion control (RFC 5681 2: the largest segment we
    /// send, without options): the MSS less the timestamp option every
    /// segment carries. Counting cwnd in MSS-with-options units left a
    /// runt (1460 - 1448 = 12 bytes) beside each full segment at cwnd = 1.
    fn smss(&self) -> u32 {
        self.mss
            .saturating_sub(if self.ts_enabled { 12 } else { 0 })
            .max(1)
    }
    /// Memory held by the buffers.
    pub fn memory(&self) -> usize {
        self.send_buf.allocated() + self.recv_buf.allocated()
    }
    pub fn snd_una(&self) -> u32 {
        self.snd_una
    }
    pub fn rcv_nxt(&self) -> u32 {
        self.rcv_nxt
    }

    // --------------------------------------------------------------- timers

    fn set_timer(&mut self, t: Timer, at: Instant) {
        self.timers[t as usize] = Some(at);
    }
    fn clear_timer(&mut self, t: Timer) {
        self.timers[t as usize] = None;
    }
    fn timer(&self, t: Timer) -> Option<Instant> {
        self.timers[t as usize]
    }

    /// When `handle_timeout` must next be called.
    pub fn poll_at(&self) -> Option<Instant> {
        // (a plain minimum over the table, with "unset" as the largest
        // value: branch-free, and called after every operation on a socket)
        let min = self
            .timers
            .iter()
            .map(|t| t.map_or(u64::MAX, |at| at.total_micros()))
            .min()
            .unwrap_or(u64::MAX);
        (min != u64::MAX).then(|| Instant::from_micros(min))
    }

    /// In TIME-WAIT with the 2*MSL deadline set on entry (not restarted):
    /// the stack expires it from its FIFO of TIME-WAIT connections instead
    /// of its timer heap (see `iface::Stack::handle_timeout`).
    pub(crate) fn time_wait_fixed(&self) -> bool {
        self.state == State::TimeWait && !self.tw_restarted
    }

    /// A TIME-WAIT connection the application let go of, with nothing
    /// left to send, as the compact state the interface keeps instead of
    /// this TCB ([`TimeWaitState`]). `None` for any other connection.
    pub fn time_wait_state(&self) -> Option<TimeWaitState> {
        if self.state != State::TimeWait
            || !self.orphaned
            || self.wants_dispatch()
            || self.error.is_some()
            || self.snd_una != self.snd_max
            || self.snd_nxt != self.snd_max
            || !self.send_buf.is_empty()
            || !self.recv_buf.is_empty()
            || !self.assembler.is_empty()
            || self.dsack_pending.is_some()
            || self.sack_acks.is_some()
        {
            return None;
        }
        let expires = self.timer(Timer::TimeWait)?;
        let flags = [
            (self.passive, TW_PASSIVE),
            (self.wscale_negotiated, TW_WSCALE),
            (self.ts_enabled, TW_TS),
            (self.sack_enabled, TW_SACK),
            (self.tw_restarted, TW_RESTARTED),
        ]
        .iter()
        .fold(0, |f, &(on, bit)| if on { f | bit } else { f });
        Some(TimeWaitState {
            local: self.local,
            remote: self.remote,
            expires,
            iss: self.iss,
            irs: self.irs,
            snd_nxt: self.snd_nxt,
            snd_wnd: self.snd_wnd,
            max_snd_wnd: self.max_snd_wnd,
            snd_wl1: self.snd_wl1,
            snd_wl2: self.snd_wl2,
            rcv_nxt: self.rcv_nxt,
            rcv_adv: self.rcv_adv,
            rcv_space: self.rcv_space.min(u32::MAX as usize) as u32,
            ts_recent: self.ts_recent,
            ts_offset: self.ts_offset,
            ts_echo_dup: self.ts_echo_dup,
            last_ack_sent: self.last_ack_sent,
            mss: self.mss,
            fin_acked_seq: self.fin_acked_seq,
            snd_wscale: self.snd_wscale,
            rcv_wscale: self.rcv_wscale,
            flags,
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out,
            retransmissions: self.retransmissions,
            srtt_us: self
                .srtt()
                .map_or(u32::MAX, |d| d.as_micros().min(u32::MAX as u128 - 1) as u32),
            rto_us: self.rto().as_micros().min(u32::MAX as u128) as u32,
            cwnd: self.cwnd(),
            ssthresh: self.ssthresh(),
            cc_phase: self.cc_phase(),
        })
    }

    /// The TCB that [`Tcb::time_wait_state`] was taken from, rebuilt in
    /// TIME-WAIT to process a segment: the same sequence numbers, windows,
    /// options, timestamps (TS.Recent, our clock's offset) and 2*MSL
    /// deadline; fresh (empty) buffers and congestion state, which
    /// TIME-WAIT does not use.
    pub fn from_time_wait(now: Instant, cfg: &Arc<TcpConfig>, s: &TimeWaitState) -> Tcb {
        let mut t = Tcb::new(
            now,
            cfg,
            s.local,
            s.remote,
            s.iss,
            s.mss,
            s.flags & TW_PASSIVE != 0,
        );
        t.irs = s.irs;
        t.snd_una = s.snd_nxt;
        t.snd_nxt = s.snd_nxt;
        t.snd_max = s.snd_nxt;
        t.snd_wnd = s.snd_wnd;
        t.max_snd_wnd = s.max_snd_wnd;
        t.snd_wl1 = s.snd_wl1;
        t.snd_wl2 = s.snd_wl2;
        t.snd_wscale = s.snd_wscale;
        t.rcv_wscale = s.rcv_wscale;
        t.wscale_negotiated = s.flags & TW_WSCALE != 0;
        t.rcv_nxt = s.rcv_nxt;
        t.rcv_adv = s.rcv_adv;
        t.rcv_space = s.rcv_space as usize;
        t.ts_enabled = s.flags & TW_TS != 0;
        t.ts_recent = s.ts_recent;
        t.ts_offset = s.ts_offset;
        t.ts_echo_dup = s.ts_echo_dup;
        t.last_ack_sent = s.last_ack_sent;
        t.sack_enabled = s.flags & TW_SACK != 0;
        t.fin_queued = true;
        t.fin_acked_seq = s.fin_acked_seq;
        t.fin_received = true;
        t.tw_restarted = s.flags & TW_RESTARTED != 0;
        t.bytes_in = s.bytes_in;
        t.bytes_out = s.bytes_out;
        t.retransmissions = s.retransmissions;
        t.orphaned = true;
        t.episode_high = s.snd_nxt;
        t.ts_sample_seq = s.snd_nxt;
        t.set_timer(Timer::TimeWait, s.expires);
        t.state = State::TimeWait;
        t
    }

    /// Names of the timers due at `now`, in the order `handle_timeout` runs
    /// them (read-only; for the event trace, see [`crate::trace`]).
    pub fn due_timers(&self, now: Instant) -> impl Iterator<Item = &'static str> + '_ {
        self.timers
            .iter()
            .enumerate()
            .filter(move |(_, t)| t.is_some_and(|at| at <= now))
            .map(|(i, _)| match i {
                x if x == Timer::Retransmit as usize => "rto",
                x if x == Timer::DelayedAck as usize => "delayed_ack",
                x if x == Timer::Persist as usize => "persist",
                x if x == Timer::Keepalive as usize => "keepalive",
                x if x == Timer::TimeWait as usize => "time_wait",
                _ => "fin_wait2",
            })
    }

    /// Does the socket have a segment to send right now? (cheap check used
    /// to decide whether to queue it for transmission)
    pub fn wants_dispatch(&self) -> bool {
        if self.state == State::Closed {
            return self.rst_pending;
        }
        self.rst_pending
            || self.ack_now
            || self.zwp_now
            || self.keepalive_now
            || self.retransmit_una
            || match self.state {
                State::SynSent | State::SynReceived => self.snd_nxt == self.iss,
                State::Established
                | State::CloseWait
                | State::FinWait1
                | State::Closing
                | State::LastAck => {
                    self.has_sendable() || self.tlp_now.is_some() || self.sack_retransmit_due()
                }
                _ => false,
            }
    }

    fn has_sendable(&self) -> bool {
        let unsent = self.unsent_offset();
        (unsent < self.send_buf.len()) || (self.fin_queued && !self.fin_sent())
    }

    /// Offset into the send buffer of the next byte to send (synchronized
    /// states only: the SYN is acknowledged, so SND.UNA is the first byte).
    fn unsent_offset(&self) -> usize {
        seq_dist(self.snd_una, self.snd_nxt) as usize
    }

    /// Sequence number our FIN has (or will have).
    fn fin_seq(&self) -> u32 {
        self.snd_una.wrapping_add(self.send_buf.len() as u32)
    }

    fn fin_sent(&self) -> bool {
        self.fin_queued && seq_gt(self.snd_nxt, self.fin_seq())
    }

    /// Our FIN was sent and SND.UNA has moved past it.
    fn our_fin_acked(&self) -> bool {
        self.fin_queued && self.fin_acked_seq == Some(self.snd_una)
    }

    pub fn handle_timeout(&mut self, now: Instant, stats: &mut Stats) {
        for i in 0..TIMERS {
            let Some(at) = self.timers[i] else { continue };
            if at > now {
                continue;
            }
            self.timers[i] = None;
            match i {
                x if x == Timer::Retransmit as usize => self.on_rto(now, stats),
                x if x == Timer::DelayedAck as usize => self.ack_now = true,
                x if x == Timer::Persist as usize => self.on_persist(now, stats),
                x if x == Timer::Keepalive as usize => self.on_keepalive(now, stats),
                x if x == Timer::TimeWait as usize => {
                    // 2*MSL passed (RFC 9293 3.10.8).
                    self.close_with(None);
                }
                x if x == Timer::FinWait2 as usize && self.state == State::FinWait2 => {
                    self.close_with(Some(TcpError::TimedOut));
                }
                x if x == Timer::Rack as usize
                    && self.sack_enabled
                    && self.state.is_synchronized() =>
                {
                    self.detect_losses(now, stats);
                }
                x if x == Timer::Tlp as usize
                    && self.sack_enabled
                    && self.state.is_synchronized() =>
                {
                    self.on_tlp(now, stats);
                }
                _ => {}
            }
            if self.state == State::Closed {
                return;
            }
        }
    }

    /// RFC 9293 3.8.6.1: the persist timer expired; probe the zero window
    /// with one byte of new data. A peer that keeps answering (with a zero
    /// window) is never given up on; one that stops answering is, after
    /// `max_retries` unanswered probes.
    fn on_persist(&mut self, now: Instant, stats: &mut Stats) {
        if self.snd_wnd > 0 && !self.probe_outstanding {
            // The window is open: this was the sender-SWS override timeout.
            self.sws_override = true;
            return;
        }
        if self.probes_unanswered >= self.cfg.max_retries {
            stats.tcp_connections_timed_out += 1;
            self.close_with(Some(TcpError::TimedOut));
            self.rst_pending = true;
            return;
        }
        self.probes_unanswered += 1;
        self.persist_backoff = (self.persist_backoff + 1).min(10);
        stats.tcp_zero_window_probes += 1;
        if self.probe_outstanding {
            self.snd_nxt = self.snd_una; // send the same byte again
        }
        self.zwp_now = true;
        self.arm_persist(now);
    }

    fn arm_persist(&mut self, now: Instant) {
        let d = self
            .rtt
            .rto()
            .saturating_mul(1 << self.persist_backoff.min(6));
        let d = d.clamp(Duration::from_millis(200), Duration::from_secs(60));
        self.set_timer(Timer::Persist, now + d);
    }

    /// Start or stop the persist timer after the send window changed.
    fn update_persist(&mut self, now: Instant) {
        let waiting = self.snd_wnd == 0
            && (self.send_buf.len() > self.unsent_offset() || self.probe_outstanding);
        if waiting {
            if self.timer(Timer::Persist).is_none() && self.timer(Timer::Retransmit).is_none() {
                self.arm_persist(now);
            }
        } else {
            self.clear_timer(Timer::Persist);
            self.persist_backoff = 0;
            self.probes_unanswered = 0;
            // RFC 6298 5.1: data outstanding means a running retransmission
            // timer. A timeout into a zero window handed the flight to the
            // persist timer (`on_rto`); once the window opens again, the
            // flight is the retransmission timer's again (without this, a
            // flight the peer dropped while its window was closed was never
            // resent: found by fuzzing).
            if self.snd_una != self.snd_max
                && self.state.is_synchronized()
                && self.timer(Timer::Retransmit).is_none()
            {
                self.set_timer(Timer::Retransmit, now + self.rtt.rto());
            }
        }
    }

    fn on_rto(&mut self, now: Instant, stats: &mut Stats) {
        if self.snd_una == self.snd_max {
            return; // nothing outstanding
        }
        if self.state.is_synchronized() && self.snd_wnd == 0 && !self.send_buf.is_empty() {
            // The peer closed its window: this is the persist timer's job,
            // not a loss (RFC 9293 3.8.6.1). Only when there is data to
            // probe with: a lone FIN outstanding is retransmitted (with
            // back-off and the retry limit) like any segment; before this
            // check it was resent every RTO_min forever, without back-off
            // and without ever timing out (found by fuzzing).
            self.snd_nxt = self.snd_una;
            self.probe_outstanding = false;
            self.update_persist(now);
            return;
        }
        self.retries += 1;
        let limit = if self.state.is_synchronized() {
            self.cfg.max_retries
        } else {
            self.cfg.max_syn_retries
        };
        if self.retries > limit {
            // RFC 9293 3.8.3 / RFC 1122 4.2.3.5: R2 reached, abort.
            log::debug!(
                "{} -> {}: retransmission limit reached, aborting",
                self.local,
                self.remote
            );
            stats.tcp_connections_timed_out += 1;
            let send_rst = self.state.is_synchronized() || self.state == State::SynReceived;
            self.close_with(Some(TcpError::TimedOut));
            self.rst_pending = send_rst;
            return;
        }
        stats.tcp_rto_timeouts += 1;
        let flight = seq_dist(self.snd_una, self.snd_max);
        if self.state.is_synchronized() {
            self.cc.on_rto(now, flight, self.smss());
        }
        self.rtt.back_off();
        self.rtt_probe = None; // Karn
                               // With timestamps an ACK of the retransmission gives a valid RTT
                               // sample (RFC 7323 4: TSecr echoes the copy that arrived), so the
                               // next ACK of new data is sampled and ends the back-off (as in
                               // Linux, which resets it on every valid sample). Waiting for an ACK
                               // beyond the old SND.MAX instead kept the timer doubling through a
                               // whole window of repairs under heavy loss.
        self.ts_sample_seq = self.snd_una;
        if self.recover.take().is_some() {
            // The fast recovery is abandoned for the timeout's.
            self.sb.recovery_ended();
        }
        self.dup_acks = 0;
        self.retransmit_una = false;
        self.tlp_now = None;
        self.tlp_high = None;
        self.clear_timer(Timer::Tlp);
        self.clear_timer(Timer::Rack);
        if self.state.is_synchronized() {
            // RFC 6582 4.1 / RFC 6675 5.1: no fast recovery for losses of
            // data sent before the timeout.
            if self.rto_recover.is_none() {
                // A new loss episode (a backed-off repeat of the timeout
                // belongs to the first one).
                self.start_episode();
            }
            self.rto_recover = Some(self.snd_max);
        }
        let board_ok = self
            .sb
            .segments()
            .next()
            .is_some_and(|s| s.start == self.snd_una)
            && self.sb.high() == Some(self.snd_max);
        if self.sack_enabled && self.state.is_synchronized() && board_ok {
            // RFC 6675 5.1 / RFC 8985 6.3: every un-SACKed segment is lost;
            // the scoreboard resends them one cwnd at a time (slow start),
            // skipping what the receiver holds (unless it reneged).
            self.sb.on_rto();
            return;
        }
        // Go back N: resend from the oldest unacknowledged byte.
        self.sb.clear();
        self.snd_nxt = self.snd_una;
    }

    fn on_keepalive(&mut self, now: Instant, stats: &mut Stats) {
        let Some(idle) = self.cfg.keepalive else {
            return;
        };
        if !self.state.is_synchronized() || self.state == State::TimeWait {
            return;
        }
        if self.keepalive_probes_sent >= self.cfg.keepalive_probes {
            stats.tcp_connections_timed_out += 1;
            self.close_with(Some(TcpError::TimedOut));
            self.rst_pending = true;
            return;
        }
        // RFC 1122 4.2.3.6: a segment with SEG.SEQ = SND.NXT-1 elicits an ACK.
        self.keepalive_probes_sent += 1;
        stats.tcp_keepalive_probes += 1;
        self.keepalive_now = true;
        let _ = idle;
        self.set_timer(Timer::Keepalive, now + self.cfg.keepalive_interval);
    }

    // --------------------------------------------------------------- input

    /// Process one segment addressed to this connection (RFC 9293 3.10.7).
    pub fn process(&mut self, now: Instant, seg: &SegmentIn, stats: &mut Stats) -> Reaction {
        let mut r = Reaction::default();
        match self.state {
            State::Closed | State::Listen => {
                r.drop = Some(DropReason::TcpOther);
                return r;
            }
            State::SynSent => {
                self.process_syn_sent(now, seg, stats, &mut r);
                return r;
            }
            _ => {}
        }
        self.process_synchronized(now, seg, stats, &mut r);
        if self.state.is_synchronized() {
            self.last_activity = now;
            if let Some(idle) = self.cfg.keepalive {
                self.keepalive_probes_sent = 0;
                self.set_timer(Timer::Keepalive, now + idle);
            }
        }
        r
    }

    /// RFC 9293 3.10.7.3: SYN-SENT.
    fn process_syn_sent(
        &mut self,
        now: Instant,
        seg: &SegmentIn,
        stats: &mut Stats,
        r: &mut Reaction,
    ) {
        // First: the ACK bit.
        let ack_ok = if seg.has(ACK) {
            if seq_le(seg.ack, self.iss) || seq_gt(seg.ack, self.snd_max) {
                if !seg.has(RST) {
                    r.rst = Some((seg.ack, 0, RST));
                }
                r.drop = Some(DropReason::TcpBadAck);
                return;
            }
            true
        } else {
            false
        };
        // Second: the RST bit.
        if seg.has(RST) {
            if ack_ok {
                stats.tcp_rsts_received += 1;
                self.close_with(Some(TcpError::ConnectionRefused));
            } else {
                r.drop = Some(DropReason::TcpRstInvalid);
            }
            return;
        }
        // Fourth: the SYN bit.
        if !seg.has(SYN) {
            r.drop = Some(DropReason::TcpInvalidFlags);
            return;
        }
        self.irs = seg.seq;
        self.rcv_nxt = seg.seq.wrapping_add(1);
        let link_mss = self.mss;
        self.negotiate_options(seg, link_mss);
        if let Some((tsval, _)) = seg.timestamp {
            self.ts_recent = tsval;
            self.ts_echo_dup = tsval;
        }
        if ack_ok {
            self.snd_una = seg.ack;
        }
        if seq_gt(self.snd_una, self.iss) {
            // Our SYN is acknowledged: ESTABLISHED.
            self.take_rtt_sample(now, seg);
            self.retries = 0;
            self.clear_timer(Timer::Retransmit);
            self.update_send_window_raw(seg.seq, seg.ack, seg.window as u32);
            self.rcv_adv = self.rcv_nxt.wrapping_add(self.recv_window_raw());
            self.set_state(State::Established);
            stats.tcp_connections_opened += 1;
            self.ack_now = true;
            if self.fin_queued {
                // The application closed its side during the handshake.
                self.set_state(State::FinWait1);
            }
            // Data or FIN on the SYN-ACK is processed as in ESTABLISHED.
            if !seg.payload.is_empty() || seg.has(FIN) {
                let mut rest = *seg;
                rest.flags &= !SYN;
                rest.seq = seg.seq.wrapping_add(1);
                self.process_text_and_fin(now, &rest, stats);
            }
        } else {
            // Simultaneous open (RFC 9293 3.5 figure 8): SYN-RECEIVED, send SYN-ACK.
            self.update_send_window_raw(seg.seq, seg.ack, seg.window as u32);
            self.rcv_adv = self.rcv_nxt.wrapping_add(self.recv_window_raw());
            self.snd_nxt = self.iss; // resend our SYN, now with ACK
            self.set_state(State::SynReceived);
        }
    }

    /// RFC 9293 3.10.7.4: SYN-RECEIVED and the synchronized states.
    fn process_synchronized(
        &mut self,
        now: Instant,
        seg: &SegmentIn,
        stats: &mut Stats,
        r: &mut Reaction,
    ) {
        // A retransmitted SYN in SYN-RECEIVED: answer with the SYN-ACK again.
        if self.state == State::SynReceived && seg.has(SYN) && !seg.has(ACK) && seg.seq == self.irs
        {
            self.snd_nxt = self.iss;
            return;
        }
        // PAWS (RFC 7323 5.3): reject old duplicates by timestamp. Like
        // Linux (TCP_PAWS_WINDOW), a TSval one tick behind TS.Recent is
        // still accepted: segments sent in the same or the next clock tick
        // and reordered by a few hundred microseconds are not old
        // duplicates, and dropping them costs a retransmission each.
        if self.ts_enabled && !seg.has(RST) {
            if let Some((tsval, _)) = seg.timestamp {
                if seq_lt(tsval, self.ts_recent.wrapping_sub(PAWS_WINDOW))
                    && self.state != State::SynReceived
                {
                    self.ack_now = true;
                    r.drop = Some(DropReason::TcpPawsRejected);
                    return;
                }
            }
        }

        // First: sequence number acceptability.
        let rcv_wnd = self.current_rcv_wnd();
        let seg_len = seg.seg_len();
        let acceptable = if seg_len == 0 {
            if rcv_wnd == 0 {
                seg.seq == self.rcv_nxt
            } else {
                in_window(seg.seq, self.rcv_nxt, rcv_wnd)
            }
        } else if rcv_wnd == 0 {
            false
        } else {
            in_window(seg.seq, self.rcv_nxt, rcv_wnd)
                || in_window(seg.seq.wrapping_add(seg_len - 1), self.rcv_nxt, rcv_wnd)
        };
        // A zero window still takes ACKs and RSTs at RCV.NXT (RFC 9293 3.10.7.4 note).
        let zero_window_ack = !acceptable && rcv_wnd == 0 && seg.seq == self.rcv_nxt;
        if !acceptable && !zero_window_ack {
            if self.sack_enabled && !seg.payload.is_empty() && seq_lt(seg.seq, self.rcv_nxt) {
                // An old duplicate: tell the sender (RFC 2883 D-SACK).
                let end = seg.seq.wrapping_add(seg.payload.len() as u32);
                let dend = if seq_lt(end, self.rcv_nxt) {
                    end
                } else {
                    self.rcv_nxt
                };
                self.owe_dsack(seg.seq, dend);
            }
            // A duplicate that ends exactly at RCV.NXT, already ACKed: its
            // TSval becomes TS.Recent, so the duplicate ACK echoes this copy
            // and not the first one (whose ACK was lost). Linux does the same
            // (its window test admits SEG.SEQ+LEN = RCV.WUP); RFC 7323's
            // rule (SEG.SEQ <= Last.ACK.sent) holds. Without it the sender
            // measures an "RTT" from its first copy: seconds under loss.
            if let Some((tsval, _)) = seg.timestamp {
                let end = seg.seq.wrapping_add(seg.payload.len() as u32);
                if self.ts_enabled
                    && !seg.payload.is_empty()
                    && self.last_ack_sent == self.rcv_nxt
                    && seq_ge(tsval, self.ts_recent)
                {
                    if end == self.rcv_nxt {
                        self.ts_recent = tsval;
                    } else if seq_lt(end, self.rcv_nxt)
                        && self.rcv_nxt.wrapping_sub(seg.seq) as usize <= self.cfg.recv_buffer
                    {
                        self.dup_echo(tsval);
                    }
                }
            }
            if !seg.has(RST) {
                if self.state == State::TimeWait && seg.has(FIN) {
                    // A retransmitted FIN: re-ACK and restart the 2*MSL timer.
                    self.set_timer(Timer::TimeWait, now + 2 * self.cfg.msl);
                    self.tw_restarted = true;
                }
                self.ack_now = true;
            }
            r.drop = Some(DropReason::TcpOutOfWindow);
            return;
        }

        // Second: RST (RFC 5961 3.2).
        if seg.has(RST) {
            if seg.seq == self.rcv_nxt {
                stats.tcp_rsts_received += 1;
                match self.state {
                    State::SynReceived if self.passive => {
                        // Back to LISTEN: for us, drop the embryonic connection.
                        self.close_with(Some(TcpError::ConnectionReset));
                    }
                    State::SynReceived => self.close_with(Some(TcpError::ConnectionRefused)),
                    State::Closing | State::LastAck | State::TimeWait => self.close_with(None),
                    _ => {
                        stats.tcp_connections_reset += 1;
                        self.close_with(Some(TcpError::ConnectionReset));
                    }
                }
            } else {
                // In window but not exact: challenge ACK.
                self.challenge_ack(stats);
                r.drop = Some(DropReason::TcpRstInvalid);
            }
            return;
        }

        // Fourth: SYN in a synchronized state (RFC 5961 4.2): challenge ACK.
        if seg.has(SYN) {
            if self.state == State::SynReceived && self.passive {
                // RFC 9293: return to LISTEN. The embryonic connection is dropped.
                self.close_with(None);
                r.drop = Some(DropReason::TcpInvalidFlags);
                return;
            }
            self.challenge_ack(stats);
            r.drop = Some(DropReason::TcpInvalidFlags);
            return;
        }

        // Fifth: the ACK field.
        if !seg.has(ACK) {
            r.drop = Some(DropReason::TcpInvalidFlags);
            return;
        }
        if self.state == State::SynReceived {
            if seq_gt(seg.ack, self.snd_una) && seq_le(seg.ack, self.snd_max) {
                self.take_rtt_sample(now, seg);
                self.snd_una = seg.ack;
                // A retransmitted SYN in the same batch may have rewound
                // SND.NXT to resend the SYN-ACK: the ACK covers it now.
                if seq_lt(self.snd_nxt, self.snd_una) {
                    self.snd_nxt = self.snd_una;
                }
                self.retries = 0;
                self.clear_timer(Timer::Retransmit);
                self.update_send_window_raw(seg.seq, seg.ack, seg.window as u32);
                self.set_state(State::Established);
                if self.passive {
                    stats.tcp_connections_accepted += 1;
                    r.established = true;
                } else {
                    stats.tcp_connections_opened += 1;
                }
                if self.fin_queued {
                    self.set_state(State::FinWait1);
                }
            } else {
                r.rst = Some((seg.ack, 0, RST));
                r.drop = Some(DropReason::TcpBadAck);
                return;
            }
        }
        if !self.process_ack(now, seg, stats, r) {
            return;
        }
        if self.state == State::Closed {
            return;
        }

        // Update TS.Recent (RFC 7323 4.3).
        if self.ts_enabled {
            if let Some((tsval, _)) = seg.timestamp {
                // (never backwards: a TSval inside the PAWS window is
                // accepted but does not lower TS.Recent, as in Linux)
                if seq_le(seg.seq, self.last_ack_sent)
                    && seq_lt(self.last_ack_sent, seg.seq.wrapping_add(seg_len.max(1)))
                    && seq_ge(tsval, self.ts_recent)
                {
                    self.ts_recent = tsval;
                }
            }
        }

        // Sixth/seventh/eighth: URG (in-line, RFC 6093), text, FIN.
        self.process_text_and_fin(now, seg, stats);
    }

    /// RFC 5961 challenge ACK. The interface applies the global rate limit
    /// (RFC 5961 7) through [`Tcb::take_challenge`] before it goes out.
    fn challenge_ack(&mut self, _stats: &mut Stats) {
        self.challenge_pending = true;
    }

    /// Does a challenge ACK wait for the rate limiter? Clears the request.
    pub fn take_challenge(&mut self) -> bool {
        core::mem::take(&mut self.challenge_pending)
    }

    /// Force an ACK out on the next dispatch.
    pub fn ack_now(&mut self) {
        // CLOSED sends nothing but a RST (see `close_with`).
        if self.state != State::Closed {
            self.ack_now = true;
        }
    }

    /// The ACK processing of RFC 9293 3.10.7.4 "fifth". Returns false if
    /// the segment must be dropped.
    fn process_ack(
        &mut self,
        now: Instant,
        seg: &SegmentIn,
        stats: &mut Stats,
        r: &mut Reaction,
    ) -> bool {
        let ack = seg.ack;
        // RFC 5961 5.2: acceptable ACKs are in [SND.UNA - MAX.SND.WND, SND.NXT].
        if seq_gt(ack, self.snd_max) {
            self.ack_now = true;
            r.drop = Some(DropReason::TcpBadAck);
            return false;
        }
        let lower = self.snd_una.wrapping_sub(self.max_snd_wnd.max(1));
        if seq_lt(ack, lower) {
            self.ack_now = true;
            r.drop = Some(DropReason::TcpBadAck);
            return false;
        }

        let old_wnd = self.snd_wnd;
        let advanced = seq_gt(ack, self.snd_una);
        // A duplicate ACK (RFC 5681 2): nothing new acknowledged, no data,
        // no window change, data outstanding.
        // The answer to a zero-window probe is none: it says the window is
        // still closed, not that something was lost.
        let dup = ack == self.snd_una
            && seg.payload.is_empty()
            && !seg.has(SYN)
            && !seg.has(FIN)
            && self.snd_una != self.snd_max
            && !self.probe_outstanding
            && (seg.window as u32) << self.snd_wscale == self.snd_wnd;
        let mut acked = 0;
        let mut rtt_sample = None;
        let flight_before = seq_dist(self.snd_una, self.snd_max);
        if advanced {
            // New data acknowledged.
            acked = seq_dist(self.snd_una, ack);
            rtt_sample = self.take_rtt_sample(now, seg);
            self.probe_outstanding = false;
            let data_acked = (acked as usize).min(self.send_buf.len());
            self.send_buf.consume(data_acked);
            self.send_buf.release_if_empty(false);
            self.snd_una = ack;
            if seq_lt(self.snd_nxt, self.snd_una) {
                self.snd_nxt = self.snd_una;
            }
            self.retries = 0;
            self.persist_backoff = 0;
            self.notify = true; // send space freed
        }
        if dup {
            stats.tcp_dup_acks_received += 1;
        }
        if self.sack_enabled && self.state.is_synchronized() {
            self.sack_recovery_on_ack(now, seg, advanced, dup, acked, flight_before, stats);
        } else if advanced {
            // Congestion control and NewReno recovery (RFC 6582).
            if self.rto_recover.is_some_and(|r| seq_ge(ack, r)) {
                self.rto_recover = None;
            }
            match self.recover {
                Some(recover) if seq_ge(ack, recover) => {
                    let flight = seq_dist(self.snd_una, self.snd_max);
                    self.cc.on_recovery_exit(flight, self.smss());
                    self.recover = None;
                    self.dup_acks = 0;
                }
                Some(_) => {
                    // Partial ACK (RFC 6582 3.2 step 5): retransmit the next
                    // unacknowledged segment; deflate cwnd by the amount
                    // acked, add back one MSS.
                    let c = self
                        .cc
                        .cwnd()
                        .saturating_sub(acked)
                        .saturating_add(self.smss())
                        .max(self.smss());
                    self.cc.set_cwnd(c);
                    self.retransmit_first(stats);
                    stats.tcp_fast_retransmissions += 1;
                }
                None => {
                    self.dup_acks = 0;
                    // Without a scoreboard, the per-ACK RTT for HyStart++
                    // comes from the timestamp echo (or the timed segment).
                    let rtt = self.ts_ack_rtt(now, seg).or(rtt_sample);
                    self.cc_on_ack(now, acked, flight_before, rtt, stats);
                }
            }
        } else if dup {
            self.dup_acks += 1;
            if self.recover.is_some() {
                // RFC 5681 3.2 step 4: inflate by one MSS per duplicate ACK.
                self.cc.set_cwnd(self.cc.cwnd().saturating_add(self.smss()));
            } else if self.dup_acks == 3 && self.rto_recover.is_none() {
                // Fast retransmit (RFC 5681 3.2), unless this loss predates
                // the last timeout (RFC 6582 4.1: after an RTO, duplicate
                // ACKs for go-back-N duplicates are no new loss).
                let flight = seq_dist(self.snd_una, self.snd_max);
                self.cc.on_congestion_event(now, flight, self.smss());
                // RFC 5681 3.2 step 3: cwnd = ssthresh + 3*SMSS.
                self.cc
                    .set_cwnd(self.cc.ssthresh().saturating_add(3 * self.smss()));
                self.recover = Some(self.snd_max);
                self.retransmit_first(stats);
                stats.tcp_fast_retransmissions += 1;
            }
        }
        if advanced {
            // RFC 6298 5.2/5.3: stop the timer when all is acked, else restart it.
            if self.snd_una == self.snd_max {
                self.clear_timer(Timer::Retransmit);
                self.clear_timer(Timer::Tlp);
                self.clear_timer(Timer::Rack);
            } else {
                self.set_timer(Timer::Retransmit, now + self.rtt.rto());
                self.arm_tlp(now);
            }
        }

        // Window update (RFC 9293 3.10.7.4: SND.WL1/SND.WL2 rule).
        if seq_lt(self.snd_wl1, seg.seq) || (self.snd_wl1 == seg.seq && seq_le(self.snd_wl2, ack)) {
            self.update_send_window_raw(seg.seq, ack, seg.window as u32);
            if self.snd_wnd > old_wnd {
                self.notify = true;
            }
        }
        // Any acceptable ACK shows the peer is alive.
        self.probes_unanswered = 0;
        if self.probe_outstanding && self.snd_wnd > 0 {
            // The window opened but the probe byte was not taken: resend it normally.
            self.probe_outstanding = false;
            self.snd_nxt = self.snd_una;
        }
        self.update_persist(now);

        // State changes driven by our FIN being acknowledged.
        let fin_acked = self.our_fin_acked();
        match self.state {
            State::FinWait1 if fin_acked => {
                self.set_state(State::FinWait2);
                if self.orphaned {
                    self.set_timer(Timer::FinWait2, now + self.cfg.fin_wait2_timeout);
                }
            }
            State::Closing if fin_acked => self.enter_time_wait(now),
            State::LastAck if fin_acked => {
                self.close_with(None);
                return false;
            }
            // Only a retransmitted FIN can arrive: ACK it, restart 2*MSL.
            State::TimeWait if seg.has(FIN) => {
                self.ack_now = true;
                self.set_timer(Timer::TimeWait, now + 2 * self.cfg.msl);
                self.tw_restarted = true;
            }
            _ => {}
        }
        true
    }

    /// ACK processing when SACK was negotiated: RFC 6675 loss recovery
    /// driven by the scoreboard, RACK (RFC 8985) loss marking with an
    /// adaptive reordering window, RFC 6937 PRR for the window during
    /// recovery, D-SACK (RFC 2883) and timestamp (RFC 3522) detection of
    /// unneeded retransmissions with undo, and the TLP episode (RFC 8985 7.4).
    #[allow(clippy::too_many_arguments)]
    fn sack_recovery_on_ack(
        &mut self,
        now: Instant,
        seg: &SegmentIn,
        advanced: bool,
        dup: bool,
        acked: u32,
        flight_before: u32,
        stats: &mut Stats,
    ) {
        // RFC 3522 Eifel detection, per hole: the segment at the old
        // SND.UNA was retransmitted, and this ACK, the first to cover it,
        // echoes a timestamp older than that retransmission. The receiver
        // echoes the TSval of the segment that filled its hole (RFC 7323
        // 4.3), so the original arrived: the retransmission was not needed.
        let eifel = advanced
            && self.ts_enabled
            && seg.timestamp.is_some_and(|(_, tsecr)| {
                self.sb.segments().next().is_some_and(|f| {
                    f.ever_retrans
                        && !f.sacked
                        && seq_lt(f.start, self.snd_una)
                        && (self.ts_now(f.xmit).wrapping_sub(tsecr) as i32) > 0
                })
            });
        let info = self.sb.on_ack(now, self.snd_una, &seg.sack_ranges);
        self.sb.release_if_empty();
        if eifel {
            stats.tcp_spurious_retransmits_ts += 1;
            if self.episode_rtx > 0 {
                self.episode_eifel += 1;
            }
            if self.tlp_rtx && self.tlp_high.is_some() {
                self.tlp_dsack = true;
            }
        }
        if let Some((s, e)) = info.dsack {
            stats.tcp_dsacks_received += 1;
            if self.episode_rtx > 0 && seq_le(e, self.episode_high) {
                self.episode_dsacks += 1;
            }
            if self.tlp_rtx && self.tlp_high.is_some_and(|h| seq_le(e, h) && seq_lt(s, h)) {
                self.tlp_dsack = true;
            }
        }
        // RFC 8985 6.2 step 4: a round trip with a D-SACK (or an unneeded
        // retransmission shown by a timestamp) widens the reordering window.
        self.sb
            .update_reo_wnd(self.snd_una, self.snd_max, info.dsack.is_some() || eifel);
        if advanced {
            self.dup_acks = 0;
        } else if dup || info.newly_sacked > 0 {
            // RFC 6675 2: an ACK carrying new SACK information counts as a
            // duplicate ACK even if the window changed.
            self.dup_acks += 1;
        }
        // Leaving recovery at RecoveryPoint (RFC 6675 5 step 5 / RFC 6582).
        if let Some(r) = self.recover {
            if seq_ge(self.snd_una, r) {
                self.recover = None;
                self.sb.recovery_ended();
                if !self.try_undo(stats) {
                    let flight = seq_dist(self.snd_una, self.snd_max);
                    self.cc.on_recovery_exit(flight, self.smss());
                }
            }
        }
        if let Some(r) = self.rto_recover {
            if seq_ge(self.snd_una, r) {
                self.rto_recover = None;
                self.sb.recovery_ended();
            }
        }
        // Late D-SACKs (they follow the ACK that ends the recovery by about
        // a round trip), or a spurious timeout.
        self.try_undo(stats);
        // TLP episode end (RFC 8985 7.4).
        if let Some(h) = self.tlp_high {
            if seq_ge(self.snd_una, h) {
                self.tlp_high = None;
                if self.tlp_rtx
                    && !self.tlp_dsack
                    && self.recover.is_none()
                    && self.rto_recover.is_none()
                {
                    // The probe repaired a real loss: that is a congestion
                    // event, answered once.
                    let flight = seq_dist(self.snd_una, self.snd_max);
                    self.cc.on_congestion_event(now, flight, self.smss());
                    self.cc.on_recovery_exit(flight, self.smss());
                }
            }
        }
        // Loss detection.
        if self.dup_acks >= 3
            && self.recover.is_none()
            && self.rto_recover.is_none()
            && !self.sb.reordering_seen()
        {
            // RFC 5681 / RFC 6675 DupThresh: the first hole is lost.
            self.sb.mark_first_lost();
        }
        let in_recovery = self.recover.is_some();
        let newly_lost = self.detect_losses(now, stats);
        if advanced && self.recover.is_none() {
            // Outside fast recovery cwnd grows; after an RTO this is the
            // slow start back to ssthresh. (After loss detection, as in
            // Linux: the ACK that starts a recovery does not first grow
            // the window that the reduction starts from.)
            self.cc_on_ack(now, acked, flight_before, info.rtt, stats);
        }
        if self.recover.is_some() {
            // RFC 6937: this ACK's share of the reduced rate. The ACK that
            // started the episode counts as delivered in it too.
            if !in_recovery {
                self.sb.prr_add_delivered(info.delivered);
            }
            let sndcnt = self
                .sb
                .prr_sndcnt(info.delivered, advanced, newly_lost > 0, self.smss());
            self.cc.set_cwnd(self.sb.pipe().saturating_add(sndcnt));
        }
    }

    /// RACK's reordering window (RFC 8985 6.2 step 4), see
    /// [`Scoreboard::reo_wnd`].
    fn rack_reo_wnd(&self) -> Duration {
        let in_recovery = self.recover.is_some() || self.rto_recover.is_some();
        self.sb.reo_wnd(in_recovery, self.smss(), self.rtt.srtt())
    }

    /// Run RACK and IsLost, arm the RACK timer, enter recovery if anything
    /// is newly lost (RFC 6675 5 step 4: once per episode). Returns the
    /// number of segments newly marked lost.
    fn detect_losses(&mut self, now: Instant, stats: &mut Stats) -> u32 {
        let reo = self.rack_reo_wnd();
        let dupthresh = !self.sb.reordering_seen();
        let (newly, next) = self.sb.detect_loss(now, reo, dupthresh, self.smss());
        stats.tcp_segments_marked_lost += newly as u64;
        match next {
            Some(t) => self.set_timer(Timer::Rack, t),
            None => self.clear_timer(Timer::Rack),
        }
        if self.sb.lost_pending() > 0 && self.recover.is_none() && self.rto_recover.is_none() {
            let flight = seq_dist(self.snd_una, self.snd_max);
            self.cc.on_congestion_event(now, flight, self.smss());
            self.recover = Some(self.snd_max);
            self.start_episode();
            // RFC 6937: RecoverFS = FlightSize; until an ACK reports
            // deliveries, PRR allows just the fast retransmit.
            self.sb.prr_start(flight, self.cc.ssthresh());
            let sndcnt = self.sb.prr_sndcnt(0, false, true, self.smss());
            self.cc.set_cwnd(self.sb.pipe().saturating_add(sndcnt));
            self.clear_timer(Timer::Tlp);
            stats.tcp_sack_recoveries += 1;
            stats.tcp_fast_retransmissions += 1;
        }
        newly
    }

    /// Arm the tail loss probe (RFC 8985 7.2): PTO = 2*SRTT (+ worst-case
    /// delayed ACK with one segment in flight), never later than the RTO.
    /// Only with SACK (the probe's loss is found through SACK/RACK), outside
    /// recovery, one probe per episode.
    fn arm_tlp(&mut self, now: Instant) {
        if !self.sack_enabled
            || !self.state.is_synchronized()
            || self.recover.is_some()
            || self.rto_recover.is_some()
            || self.tlp_high.is_some()
            || self.snd_una == self.snd_max
        {
            self.clear_timer(Timer::Tlp);
            return;
        }
        let pto = match self.rtt.srtt() {
            Some(srtt) => {
                let mut p = 2 * srtt;
                if seq_dist(self.snd_una, self.snd_max) <= self.smss() {
                    p += WC_DEL_ACK;
                }
                p.max(Duration::from_millis(1))
            }
            None => Duration::from_secs(1),
        };
        let mut at = now + pto;
        if let Some(rto) = self.timer(Timer::Retransmit) {
            if rto <= at {
                self.clear_timer(Timer::Tlp);
                return;
            }
            at = at.min(rto);
        }
        self.set_timer(Timer::Tlp, at);
    }

    /// The probe timeout fired (RFC 8985 7.3).
    fn on_tlp(&mut self, now: Instant, stats: &mut Stats) {
        if self.snd_una == self.snd_max || self.recover.is_some() || self.rto_recover.is_some() {
            return;
        }
        let mss = self.effective_mss() as u32;
        let unsent = self.send_buf.len().saturating_sub(self.unsent_offset());
        let wnd_room =
            (self.snd_wnd as usize).saturating_sub(seq_dist(self.snd_una, self.snd_nxt) as usize);
        let probe = if unsent > 0 && wnd_room > 0 {
            Some(TlpProbe::NewData)
        } else {
            self.sb
                .last_segment(mss)
                .map(|(s, e)| TlpProbe::Retransmit(s, e))
        };
        let Some(p) = probe else { return };
        stats.tcp_tlp_probes += 1;
        self.tlp_now = Some(p);
        self.tlp_rtx = matches!(p, TlpProbe::Retransmit(..));
        self.tlp_dsack = false;
        // RFC 8985 7.3: the RTO is re-armed after the probe is sent.
        self.set_timer(Timer::Retransmit, now + self.rtt.rto());
    }

    /// Send `[s, e)` of the scoreboard again (a hole, a TLP), without
    /// moving SND.NXT.
    fn send_scoreboard_segment(
        &mut self,
        now: Instant,
        s: u32,
        e: u32,
        stats: &mut Stats,
    ) -> Option<SegmentOut> {
        let data_end = self.fin_seq();
        if seq_lt(s, self.snd_una) || seq_gt(e, self.snd_max) {
            return None;
        }
        let len = if seq_lt(s, data_end) {
            seq_dist(s, if seq_lt(e, data_end) { e } else { data_end })
        } else {
            0
        };
        let fin = self.fin_sent() && seq_gt(e, data_end);
        if len == 0 && !fin {
            return None;
        }
        let mut seg = SegmentOut {
            flags: ACK
                | if fin { FIN } else { 0 }
                | if seq_ge(e, data_end) && len > 0 {
                    PSH
                } else {
                    0
                },
            seq: s,
            ack: self.rcv_nxt,
            payload_offset: seq_dist(self.snd_una, s) as usize,
            payload_len: len as usize,
            ..Default::default()
        };
        let saved_nxt = self.snd_nxt;
        self.snd_nxt = s;
        self.after_send(now, &mut seg, len + fin as u32, true, stats);
        if seq_gt(saved_nxt, self.snd_nxt) {
            self.snd_nxt = saved_nxt;
        }
        if self.recover.is_some() || self.rto_recover.is_some() {
            self.episode_rtx += 1;
        }
        Some(seg)
    }

    /// RFC 6675 NextSeg() rule 1 under the pipe rule: a lost segment, if
    /// `cwnd - pipe >= 1 SMSS`.
    fn sack_retransmit_due(&self) -> bool {
        self.sack_enabled
            && self.sb.lost_pending() > 0
            && self
                .sb
                .pipe()
                .saturating_add(self.smss().min(self.effective_mss() as u32))
                <= self.cc.cwnd()
    }

    fn enter_time_wait(&mut self, now: Instant) {
        self.set_state(State::TimeWait);
        self.timers = [None; TIMERS];
        self.set_timer(Timer::TimeWait, now + 2 * self.cfg.msl);
    }

    /// Retransmit the first unacknowledged segment (fast retransmit / partial ACK).
    fn retransmit_first(&mut self, _stats: &mut Stats) {
        self.retransmit_una = true;
        self.rtt_probe = None;
    }

    /// RTT measurement. The timed-segment sampler (RFC 6298 with Karn's
    /// algorithm) has microsecond precision and serves first. With
    /// timestamps (RFC 7323 4) an ACK that advances SND.UNA gives a sample
    /// even when Karn forbids the timed one (after a retransmission): TSecr
    /// echoes the TSval of the segment that caused the ACK. Our TS clock
    /// ticks in milliseconds (RFC 7323 5.4 wants 1 ms - 1 s for PAWS), so a
    /// TS sample is taken at the middle of its millisecond, at most once per
    /// RTT (once the data sent before the last sample is acknowledged).
    /// Returns the sample taken, if any.
    fn take_rtt_sample(&mut self, now: Instant, seg: &SegmentIn) -> Option<Duration> {
        if let Some((seq, sent)) = self.rtt_probe {
            if seq_gt(seg.ack, seq) {
                let r = now - sent;
                self.rtt.sample(r);
                self.rtt_probe = None;
                self.ts_sample_seq = self.snd_max;
                return Some(r);
            }
            return None;
        }
        if !self.ts_enabled || !seq_gt(seg.ack, self.ts_sample_seq) {
            return None;
        }
        if let (true, Some((_, tsecr))) = (self.retx_tsval_pending, seg.timestamp) {
            // The echo predates our latest retransmission: the receiver
            // saw an earlier copy and its ACK of that copy was lost, or it
            // echoes an old TS.Recent for a duplicate (RFC 7323 4.3). Its
            // "RTT" is the time since that copy, seconds under heavy loss,
            // which would inflate SRTT and the RTO. Linux's RACK ignores
            // such samples the same way (tcp_skb_spurious_retrans).
            if seq_lt(tsecr, self.retx_tsval) {
                return None;
            }
            self.retx_tsval_pending = false;
        }
        let r = self.ts_ack_rtt(now, seg)?;
        self.rtt.sample(r);
        self.ts_sample_seq = self.snd_max;
        Some(r)
    }

    /// The RTT an ACK's timestamp echo gives (RFC 7323 4: TSecr is the
    /// TSval of the segment that caused it), to the middle of our
    /// millisecond tick.
    fn ts_ack_rtt(&self, now: Instant, seg: &SegmentIn) -> Option<Duration> {
        if !self.ts_enabled {
            return None;
        }
        let (_, tsecr) = seg.timestamp?;
        let d = self.ts_now(now).wrapping_sub(tsecr);
        ((d as i32) >= 0 && d < 60_000).then(|| Duration::from_micros(d as u64 * 1000 + 500))
    }

    /// Our timestamp clock (RFC 7323 5.4: milliseconds).
    fn ts_now(&self, at: Instant) -> u32 {
        (at.total_millis() as u32).wrapping_add(self.ts_offset)
    }

    /// Feed an ACK of new data to the congestion controller outside
    /// recovery (slow start with HyStart++, or congestion avoidance), and
    /// count HyStart++'s transitions.
    fn cc_on_ack(
        &mut self,
        now: Instant,
        acked: u32,
        in_flight: u32,
        rtt: Option<Duration>,
        stats: &mut Stats,
    ) {
        let before = self.cc.phase();
        self.cc.on_ack(&Ack {
            now,
            acked,
            mss: self.smss(),
            in_flight,
            srtt: self.rtt.srtt().unwrap_or_default(),
            rtt,
            snd_una: self.snd_una,
            snd_nxt: self.snd_max,
        });
        match (before, self.cc.phase()) {
            (Phase::SlowStart, Phase::ConservativeSlowStart) => stats.tcp_hystart_css_entered += 1,
            (Phase::ConservativeSlowStart, Phase::SlowStart) => stats.tcp_hystart_css_resumed += 1,
            (Phase::ConservativeSlowStart, Phase::CongestionAvoidance) => {
                stats.tcp_hystart_css_completed += 1
            }
            _ => {}
        }
    }

    /// A new loss episode begins (fast recovery or a first timeout).
    fn start_episode(&mut self) {
        self.episode_rtx = 0;
        self.episode_dsacks = 0;
        self.episode_eifel = 0;
        self.episode_high = self.snd_max;
    }

    /// Undo the last episode's reduction if every one of its
    /// retransmissions was shown unneeded: by D-SACKs (RFC 2883 4, RFC
    /// 3708) or by timestamp echoes older than the retransmission (RFC
    /// 3522). The response follows RFC 4015 and Linux: the window and
    /// ssthresh from before the episode; after a timeout also no go-back-N
    /// for what was not resent yet.
    ///
    /// During a fast recovery this waits for its end (`sack_recovery_on_ack`
    /// calls it when SND.UNA passes the recovery point, before the window
    /// would be set for the exit); after a timeout it acts at once, so the
    /// rest of the window is not sent again. Returns whether it undid.
    fn try_undo(&mut self, stats: &mut Stats) -> bool {
        if self.episode_rtx == 0
            || self.recover.is_some()
            || (self.episode_dsacks < self.episode_rtx && self.episode_eifel < self.episode_rtx)
        {
            return false;
        }
        self.episode_rtx = 0;
        if !self.cc.undo() {
            return false;
        }
        if self.rto_recover.take().is_some() {
            stats.tcp_spurious_rtos += 1;
            self.sb.undo_rto_marks();
            self.sb.recovery_ended();
        } else {
            stats.tcp_spurious_recoveries += 1;
        }
        true
    }

    fn update_send_window(&mut self, seg: &SegmentIn) {
        // Windows in SYN segments are never scaled (RFC 7323 2.2).
        self.snd_wnd = seg.window as u32;
        self.max_snd_wnd = self.max_snd_wnd.max(self.snd_wnd);
    }

    fn update_send_window_raw(&mut self, seq: u32, ack: u32, raw: u32) {
        self.snd_wnd = raw << self.snd_wscale;
        self.max_snd_wnd = self.max_snd_wnd.max(self.snd_wnd);
        self.snd_wl1 = seq;
        self.snd_wl2 = ack;
    }

    /// Segment text and FIN (RFC 9293 3.10.7.4 seventh and eighth).
    fn process_text_and_fin(&mut self, now: Instant, seg: &SegmentIn, stats: &mut Stats) {
        let accepts_text = matches!(
            self.state,
            State::Established | State::FinWait1 | State::FinWait2
        );
        let mut seq = seg.seq;
        let mut payload = seg.payload;
        let mut fin = seg.has(FIN);

        if !payload.is_empty() && accepts_text && !self.fin_received {
            // RFC 2883: data we already have (below RCV.NXT, or a range the
            // reassembly queue holds) is reported back as a D-SACK.
            if self.sack_enabled && seq_lt(seq, self.rcv_nxt) {
                let end = seq.wrapping_add(payload.len() as u32);
                let dend = if seq_lt(end, self.rcv_nxt) {
                    end
                } else {
                    self.rcv_nxt
                };
                self.owe_dsack(seq, dend);
            }
            // Trim what we already have.
            if seq_lt(seq, self.rcv_nxt) {
                let skip = seq_dist(seq, self.rcv_nxt) as usize;
                if skip >= payload.len() {
                    payload = &[];
                } else {
                    payload = &payload[skip..];
                }
                seq = self.rcv_nxt;
            }
            // Trim to the receive buffer (what lies beyond the window).
            let offset = seq_dist(self.rcv_nxt, seq) as usize;
            let room = self.recv_buf.window().saturating_sub(offset);
            if payload.len() > room {
                payload = &payload[..room];
                fin = false;
            }
            if payload.is_empty() {
                // Entirely duplicate (or no room): ACK at once (RFC 9293 3.10.7.4).
                self.ack_now = true;
            } else if offset == 0 {
                // In order.
                let n = self.recv_buf.enqueue(payload);
                let mut advanced = n as u32;
                self.assembler.shift(n as u32);
                let extra = self.assembler.take_front();
                if extra > 0 {
                    self.recv_buf.commit(extra as usize);
                    advanced += extra;
                    // The remaining ranges are relative to the old RCV.NXT:
                    // move them down by what was just committed.
                    self.assembler.shift(extra);
                    self.assembler.release_if_empty();
                    // A hole was filled: ACK at once (RFC 5681 4.2).
                    self.ack_now = true;
                }
                self.rcv_nxt = self.rcv_nxt.wrapping_add(advanced);
                self.bytes_in += advanced as u64;
                self.rcv_space_adjust(now);
                self.notify = true;
                if !self.assembler.is_empty() {
                    self.ack_now = true;
                }
                self.schedule_ack(now, n);
            } else {
                // Out of order: keep it (bounded), ACK at once with SACK (RFC 5681 4.2, RFC 2018).
                let start = offset as u32;
                let end = start + payload.len() as u32;
                self.snapshot_sack_ack(seq);
                if self.sack_enabled && self.assembler.contains(start, end) {
                    self.owe_dsack(seq, seq.wrapping_add(payload.len() as u32));
                }
                if !self.assembler.contains(start, end) {
                    if self.assembler.add(start, end) {
                        self.recv_buf.write_at(offset, payload);
                    } else {
                        stats.count_drop(DropReason::TcpNoMemory);
                    }
                }
                self.last_ooo = self
                    .assembler
                    .range_containing(start, end)
                    .map(|(s, e)| (self.rcv_nxt.wrapping_add(s), self.rcv_nxt.wrapping_add(e)));
                self.ack_now = true;
            }
        } else if !payload.is_empty() {
            // Text after our side has seen FIN, or in a state that takes none:
            // ignore (RFC 9293 3.10.7.4 seventh), but ACK.
            self.ack_now = true;
        }

        // FIN handling.
        if fin {
            let fin_seq = seg.seq.wrapping_add(seg.payload.len() as u32);
            if self.fin_received {
                // Retransmitted FIN: re-ACK.
                self.ack_now = true;
            } else if fin_seq == self.rcv_nxt {
                self.receive_fin(now);
            } else if seq_gt(fin_seq, self.rcv_nxt) {
                self.pending_fin = Some(fin_seq);
            }
        }
        if let Some(fs) = self.pending_fin {
            if fs == self.rcv_nxt && !self.fin_received {
                self.pending_fin = None;
                self.receive_fin(now);
            }
        }
    }

    /// An out-of-order segment starting at `seq` arrived while the ACK
    /// for an earlier one is still owed (segments of one burst are
    /// processed before anything is sent). RFC 5681 4.2 wants an immediate
    /// ACK for *each* out-of-order segment, and RFC 2018 relies on it: the
    /// first SACK block names the newest segment's block and the others
    /// repeat recent ones, so every block is reported. One ACK for the
    /// whole burst can carry only three blocks, and a sender never learns
    /// of the others: it resends data the receiver holds. So the owed ACK
    /// is kept as it would have been sent and goes out first. A segment
    /// that extends the newest block needs none (the next ACK reports that
    /// block first anyway), as does one when no SACK information is owed.
    ///
    /// The same holds for duplicates (RFC 2883): each gets its D-SACK, so a
    /// duplicate arriving while an earlier one's D-SACK is still owed keeps
    /// that ACK too (see `owe_dsack`).
    fn snapshot_sack_ack(&mut self, seq: u32) {
        if self.assembler.is_empty()
            || self
                .last_ooo
                .is_some_and(|(s, e)| seq_le(s, seq) && seq_le(seq, e))
        {
            return;
        }
        self.keep_owed_ack();
    }

    /// Report `[s, e)` as a D-SACK in the next ACK (RFC 2883), keeping an
    /// ACK still owed for an earlier duplicate.
    fn owe_dsack(&mut self, s: u32, e: u32) {
        if self.dsack_pending.is_some() {
            self.keep_owed_ack();
        }
        self.dsack_pending = Some((s, e));
    }

    /// Queue the ACK that is owed now, as it would be sent now.
    fn keep_owed_ack(&mut self) {
        if !self.sack_enabled || !self.ack_now {
            return;
        }
        if self
            .sack_acks
            .as_ref()
            .is_some_and(|q| q.len() >= MAX_SACK_ACKS)
        {
            return;
        }
        let ack = (self.rcv_nxt, self.sack_blocks());
        self.sack_acks
            .get_or_insert_with(Default::default)
            .push(ack);
        // That ACK carries the pending D-SACK.
        self.dsack_pending = None;
    }

    /// Send the oldest owed out-of-order ACK (see `snapshot_sack_ack`).
    fn dispatch_sack_ack(&mut self, now: Instant, stats: &mut Stats) -> Option<SegmentOut> {
        let q = self.sack_acks.as_mut()?;
        if q.is_empty() {
            self.sack_acks = None;
            return None;
        }
        let (ack, blocks) = q.remove(0);
        if q.is_empty() {
            self.sack_acks = None;
        }
        let dsack = self.dsack_pending;
        let mut seg = SegmentOut {
            flags: ACK,
            seq: self.ack_seq(),
            ..Default::default()
        };
        self.after_send(now, &mut seg, 0, false, stats);
        seg.ack = ack;
        seg.sack_ranges = blocks;
        self.last_ack_sent = ack;
        self.dsack_pending = dsack;
        // The ACK for the current state is still owed.
        self.ack_now = true;
        Some(seg)
    }

    fn receive_fin(&mut self, now: Instant) {
        if !matches!(
            self.state,
            State::SynReceived | State::Established | State::FinWait1 | State::FinWait2
        ) {
            return;
        }
        self.fin_received = true;
        self.rcv_nxt = self.rcv_nxt.wrapping_add(1);
        self.ack_now = true;
        self.notify = true;
        match self.state {
            State::SynReceived | State::Established => self.set_state(State::CloseWait),
            State::FinWait1 => {
                if self.our_fin_acked() {
                    self.enter_time_wait(now);
                } else {
                    self.set_state(State::Closing);
                }
            }
            State::FinWait2 => self.enter_time_wait(now),
            _ => {}
        }
    }

    /// Delayed ACK (RFC 1122 4.2.3.2, RFC 5681 4.2): at least every second
    /// full-sized segment, and within the delayed-ACK timeout.
    fn schedule_ack(&mut self, now: Instant, len: usize) {
        self.unacked_bytes += len;
        if self.unacked_bytes >= 2 * self.smss() as usize {
            self.ack_now = true;
        } else if self.timer(Timer::DelayedAck).is_none() {
            self.set_timer(Timer::DelayedAck, now + self.cfg.delayed_ack);
        }
    }

    // -------------------------------------------------------------- windows

    /// Free receive space, the window we could offer now.
    fn recv_window_raw(&self) -> u32 {
        let mut free = self.recv_buf.window();
        if self.mem_pressure {
            // Over the stack's memory budget: no growth beyond what is
            // allocated (but at least one page, so every connection can
            // still make progress and give memory back).
            let allocated = self
                .recv_buf
                .allocated()
                .max(4096)
                .min(self.recv_buf.capacity());
            free = free.min(allocated.saturating_sub(self.recv_buf.len()));
        }
        let target = self.rcv_space.saturating_sub(self.recv_buf.len());
        (free.min(target) as u32).min(MAX_WINDOW)
    }

    /// Receive-buffer auto-tuning (Linux tcp_rcv_space_adjust): once per
    /// RTT, measure what the application read; if it read more than half
    /// the current target, the window (not the reader) was the limit: the
    /// target becomes twice what was read, up to `recv_buffer`. An idle or
    /// slow reader keeps a small window; a fast one gets the BDP it needs.
    fn rcv_space_adjust(&mut self, now: Instant) {
        let cap = self.recv_buf.capacity().min(MAX_WINDOW as usize);
        if self.rcv_space >= cap {
            return;
        }
        let rtt = self
            .rtt
            .srtt()
            .unwrap_or(Duration::from_millis(100))
            .max(Duration::from_micros(50));
        if now - self.rcv_space_time < rtt {
            return;
        }
        let read = self.bytes_in.saturating_sub(self.recv_buf.len() as u64);
        let copied = read
            .saturating_sub(self.rcv_space_mark)
            .min(usize::MAX as u64 / 4) as usize;
        self.rcv_space_mark = read;
        self.rcv_space_time = now;
        if copied * 2 > self.rcv_space {
            self.rcv_space = (copied * 2).min(cap);
            if self.window_update_due() {
                self.ack_now = true;
            }
        }
    }

    /// The receive window in force for the acceptability test: up to the
    /// right edge we advertised.
    fn current_rcv_wnd(&self) -> u32 {
        let adv = if seq_gt(self.rcv_adv, self.rcv_nxt) {
            seq_dist(self.rcv_nxt, self.rcv_adv)
        } else {
            0
        };
        adv.max(self.recv_window_raw())
    }

    /// Receiver-side SWS avoidance (RFC 1122 4.2.3.3): offer more window only
    /// when it grows by min(buffer/2, MSS).
    fn window_update_due(&self) -> bool {
        // Only what the 16-bit field (scaled) can carry counts: without
        // this cap a 256 kB buffer and no window scaling made every
        // dispatch "due" for an update that could never be advertised,
        // and a socket with held-back data sent pure ACKs without end.
        let new_edge = self
            .rcv_nxt
            .wrapping_add(self.recv_window_raw().min(self.max_advertisable()));
        if !seq_gt(new_edge, self.rcv_adv) {
            return false;
        }
        let grow = seq_dist(self.rcv_adv, new_edge);
        let space = self.rcv_space.min(self.recv_buf.capacity());
        let threshold = ((space / 2) as u32).min(self.mss);
        let cur = if seq_gt(self.rcv_adv, self.rcv_nxt) {
            seq_dist(self.rcv_nxt, self.rcv_adv)
        } else {
            0
        };
        grow >= threshold && (cur < threshold || grow >= (space as u32) / 4)
    }

    /// The largest window the 16-bit field can express with our scale.
    fn max_advertisable(&self) -> u32 {
        (65535u32 << self.rcv_wscale).min(MAX_WINDOW)
    }

    /// The window field for an outgoing segment, never moving the right
    /// edge left; updates RCV.ADV.
    fn advertise_window(&mut self, syn: bool) -> u16 {
        let free = self.recv_window_raw();
        let mut edge = self.rcv_nxt.wrapping_add(free);
        // SWS avoidance: keep the old edge unless the increase is worth it.
        if seq_gt(edge, self.rcv_adv)
            && !self.window_update_due()
            && seq_gt(self.rcv_adv, self.rcv_nxt)
        {
            edge = self.rcv_adv;
        }
        if seq_lt(edge, self.rcv_adv) {
            edge = self.rcv_adv;
        }
        let wnd = seq_dist(self.rcv_nxt, edge);
        if syn {
            let w = wnd.min(65535);
            self.rcv_adv = self.rcv_nxt.wrapping_add(w);
            return w as u16;
        }
        let shift = self.rcv_wscale;
        // Round up so the edge never retreats by the scaling granularity.
        let field = wnd.div_ceil(1 << shift).min(65535);
        let advertised_edge = self.rcv_nxt.wrapping_add(field << shift);
        if seq_gt(advertised_edge, self.rcv_adv) {
            self.rcv_adv = advertised_edge;
        }
        field as u16
    }

    fn sack_blocks(&self) -> [Option<(u32, u32)>; 3] {
        let mut out = [None; 3];
        if !self.sack_enabled {
            return out;
        }
        let mut n = 0;
        if let Some(d) = self.dsack_pending {
            out[0] = Some(d);
            n = 1;
        }
        if self.assembler.is_empty() {
            return out;
        }
        if let Some(first) = self.last_ooo {
            if seq_gt(first.0, self.rcv_nxt) {
                out[n] = Some(first);
                n += 1;
            }
        }
        // Three blocks: what fits beside the timestamp option. Without
        // timestamps four would fit (RFC 2018 3), but the wire type holds three.
        let max = 3;
        for &(s, e) in self.assembler.ranges().iter().rev() {
            if n >= max {
                break;
            }
            let blk = (self.rcv_nxt.wrapping_add(s), self.rcv_nxt.wrapping_add(e));
            if out[..n].contains(&Some(blk)) {
                continue;
            }
            out[n] = Some(blk);
            n += 1;
        }
        out
    }

    /// A copy of data we have already acknowledged arrived (entirely below
    /// RCV.NXT, from within the last receive window): our ACK for it was
    /// probably lost and the peer's retransmission timer sent it again.
    /// The ACK that answers it echoes this copy's TSval once, without
    /// touching TS.Recent (so PAWS state cannot be moved by an old-sequence
    /// segment). RFC 7323 4.3 would echo TS.Recent, the TSval of the
    /// segment that last advanced RCV.NXT, which may be the peer's
    /// *previous* copy of the same data: the peer then measures an "RTT"
    /// that spans its whole backed-off retransmission timeout (41 s seen
    /// under 25 % loss both ways, with a Linux sender, which takes
    /// timestamp samples from ACKs of retransmitted data), its RTO grows
    /// to minutes and the transfer all but stops. RFC 1323 3.4 case 3 gives
    /// the same reason for echoing the segment that fills a hole. (An ACK
    /// that also covers newer in-order data echoes TS.Recent when that is
    /// newer.)
    fn dup_echo(&mut self, tsval: u32) {
        // (The caller checked tsval >= TS.Recent.)
        if !seq_gt(self.ts_echo_dup, self.ts_recent) || seq_gt(tsval, self.ts_echo_dup) {
            self.ts_echo_dup = tsval;
        }
    }

    fn timestamp_option(&mut self, now: Instant) -> Option<(u32, u32)> {
        if self.ts_enabled {
            let mut ecr = self.ts_recent;
            if seq_gt(self.ts_echo_dup, ecr) {
                ecr = self.ts_echo_dup;
            }
            self.ts_echo_dup = self.ts_recent;
            Some((
                (now.total_millis() as u32).wrapping_add(self.ts_offset),
                ecr,
            ))
        } else {
            None
        }
    }

    // -------------------------------------------------------------- output

    /// Build the next segment to send, if any (RFC 9293 3.10 output side,
    /// RFC 1122 4.2.3.4 Nagle and sender SWS avoidance, RFC 5681 windows).
    pub fn dispatch(&mut self, now: Instant, stats: &mut Stats) -> Option<SegmentOut> {
        if self.rst_pending {
            self.rst_pending = false;
            stats.tcp_rsts_sent += 1;
            let seq = self.ack_seq();
            return Some(SegmentOut {
                flags: RST | ACK,
                seq,
                ack: self.rcv_nxt,
                ..Default::default()
            });
        }
        match self.state {
            State::Closed | State::Listen => None,
            State::SynSent => {
                if self.snd_nxt != self.iss {
                    return None;
                }
                let retrans = seq_gt(self.snd_max, self.iss);
                let mut seg = SegmentOut {
                    flags: SYN,
                    seq: self.iss,
                    ..Default::default()
                };
                seg.window = self.advertise_window(true);
                self.add_syn_options(&mut seg, now, true);
                self.after_send(now, &mut seg, 1, retrans, stats);
                Some(seg)
            }
            State::SynReceived if self.snd_nxt == self.iss => {
                let retrans = seq_gt(self.snd_max, self.iss);
                let mut seg = SegmentOut {
                    flags: SYN | ACK,
                    seq: self.iss,
                    ack: self.rcv_nxt,
                    ..Default::default()
                };
                seg.window = self.advertise_window(true);
                self.add_syn_options(&mut seg, now, false);
                self.after_send(now, &mut seg, 1, retrans, stats);
                Some(seg)
            }
            State::SynReceived | State::FinWait2 | State::TimeWait => {
                if let Some(seg) = self.dispatch_sack_ack(now, stats) {
                    return Some(seg);
                }
                self.dispatch_ack_only(now, stats)
            }
            State::Established
            | State::CloseWait
            | State::FinWait1
            | State::Closing
            | State::LastAck => {
                if let Some(seg) = self.dispatch_sack_ack(now, stats) {
                    return Some(seg);
                }
                if let Some(seg) = self.dispatch_data(now, stats) {
                    return Some(seg);
                }
                self.dispatch_ack_only(now, stats)
            }
        }
    }

    fn add_syn_options(&self, seg: &mut SegmentOut, now: Instant, active: bool) {
        seg.mss = Some((self.cfg.mss as u32).min(self.mss_link()) as u16);
        if active {
            if self.cfg.window_scaling {
                seg.window_scale = Some(self.rcv_wscale);
            }
            seg.sack_permitted = self.cfg.sack;
        } else {
            // Answer only with options the peer offered (RFC 7323 1.3, RFC 2018).
            if self.cfg.window_scaling && self.snd_wscale_offered() {
                seg.window_scale = Some(self.rcv_wscale);
            }
            seg.sack_permitted = self.sack_enabled;
        }
        if (active && self.cfg.timestamps) || self.ts_enabled {
            seg.timestamp = Some((
                (now.total_millis() as u32).wrapping_add(self.ts_offset),
                self.ts_recent,
            ));
        }
    }

    fn snd_wscale_offered(&self) -> bool {
        self.wscale_negotiated
    }

    fn mss_link(&self) -> u32 {
        self.link_mss
    }

    /// The sequence number of a segment without data (pure ACK, RST).
    ///
    /// It must be acceptable to the peer (RFC 9293 3.10.7.4 first check:
    /// RCV.NXT =< SEG.SEQ < RCV.NXT+RCV.WND), otherwise the peer drops it
    /// unread, ACK field and all. SND.NXT is wrong after a go-back-N
    /// retransmission rewound it below data the peer already has; the
    /// highest sequence number sent (SND.MAX) is right, unless it lies past
    /// the peer's window (a zero-window probe byte), in which case the right
    /// window edge is (Linux `tcp_acceptable_seq` does the same).
    fn ack_seq(&self) -> u32 {
        if self.snd_una == self.iss && !self.state.is_synchronized() {
            return self.snd_nxt;
        }
        let wnd_end = self.snd_una.wrapping_add(self.snd_wnd);
        if seq_gt(self.snd_max, wnd_end) && seq_ge(wnd_end, self.snd_nxt) {
            wnd_end
        } else {
            self.snd_max
        }
    }

    fn dispatch_ack_only(&mut self, now: Instant, stats: &mut Stats) -> Option<SegmentOut> {
        let window_update = self.state.is_synchronized() && self.window_update_due();
        if !(self.ack_now || window_update || self.keepalive_now || self.zwp_now) {
            return None;
        }
        let mut seq = self.ack_seq();
        if (self.keepalive_now || self.zwp_now) && self.state.is_synchronized() {
            // A keepalive (or a zero-window probe with no data to offer):
            // SEG.SEQ = SND.UNA - 1 elicits an ACK (RFC 1122 4.2.3.6).
            seq = self.snd_una.wrapping_sub(1);
        }
        self.keepalive_now = false;
        self.zwp_now = false;
        let mut seg = SegmentOut {
            flags: ACK,
            seq,
            ack: self.rcv_nxt,
            ..Default::default()
        };
        self.after_send(now, &mut seg, 0, false, stats);
        Some(seg)
    }

    fn dispatch_data(&mut self, now: Instant, stats: &mut Stats) -> Option<SegmentOut> {
        let mss = self.effective_mss();
        // Fast retransmit / partial-ACK retransmission of the first segment.
        if self.retransmit_una {
            self.retransmit_una = false;
            let len = self.send_buf.len().min(mss);
            let fin = self.fin_queued
                && len == self.send_buf.len()
                && seq_gt(self.snd_max, self.fin_seq());
            if len > 0 || fin {
                let mut seg = SegmentOut {
                    flags: ACK | if fin { FIN } else { 0 },
                    seq: self.snd_una,
                    ack: self.rcv_nxt,
                    payload_offset: 0,
                    payload_len: len,
                    ..Default::default()
                };
                let seq_len = len as u32 + fin as u32;
                // Do not move SND.NXT backwards for this one segment.
                let saved_nxt = self.snd_nxt;
                self.snd_nxt = self.snd_una;
                self.after_send(now, &mut seg, seq_len, true, stats);
                if seq_gt(saved_nxt, self.snd_nxt) {
                    self.snd_nxt = saved_nxt;
                }
                return Some(seg);
            }
        }

        // SACK recovery (RFC 6675 5, NextSeg): tail loss probe first, then
        // the holes, then new data, as long as cwnd - pipe >= 1 SMSS.
        let mut tlp_new = false;
        if self.sack_enabled {
            match self.tlp_now.take() {
                Some(TlpProbe::Retransmit(s, e)) => {
                    if let Some(seg) = self.send_scoreboard_segment(now, s, e, stats) {
                        self.tlp_high = Some(self.snd_max);
                        return Some(seg);
                    }
                }
                Some(TlpProbe::NewData) => tlp_new = true,
                None => {}
            }
            if self.sack_retransmit_due() {
                if let Some((s, e)) = self.sb.next_lost(mss as u32) {
                    if let Some(seg) = self.send_scoreboard_segment(now, s, e, stats) {
                        return Some(seg);
                    }
                    // Nothing left to send there (cannot happen while the
                    // scoreboard mirrors the send buffer): forget the mark.
                    self.sb.on_send(now, s, e);
                }
            }
        }
        let unsent = self.unsent_offset();
        let avail = self.send_buf.len().saturating_sub(unsent);
        let in_flight = seq_dist(self.snd_una, self.snd_nxt) as usize;
        let rwnd_room = (self.snd_wnd as usize).saturating_sub(in_flight);
        let usable = if tlp_new {
            // RFC 8985 7.3: the probe ignores cwnd, not the peer's window.
            rwnd_room.min(mss)
        } else if self.sack_enabled {
            // RFC 6675: pipe, not FlightSize, is what cwnd limits.
            rwnd_room.min((self.cc.cwnd() as usize).saturating_sub(self.sb.pipe() as usize))
        } else {
            let wnd = (self.snd_wnd as usize).min(self.cc.cwnd() as usize);
            wnd.saturating_sub(in_flight)
        };
        // With segmentation offload one "segment" may carry many MSS-sized
        // pieces; the device cuts them (TSO). Without it, at most one MSS.
        let seg_max = if self.tso_max > mss {
            self.tso_max / mss * mss
        } else {
            mss
        };
        let mut len = avail.min(seg_max).min(usable);
        let fin_pending = self.fin_queued && !self.fin_sent();
        let mut probe = false;

        if self.zwp_now && avail > 0 && len == 0 {
            // Zero-window probe: one byte of new data beyond the window (RFC 9293 3.8.6.1).
            len = 1;
            probe = true;
            self.zwp_now = false;
        }

        let all_data = unsent + len == self.send_buf.len();
        let fin = fin_pending && all_data;
        let retransmission = seq_lt(self.snd_nxt, self.snd_max);
        let send = if probe || (retransmission || tlp_new) && len > 0 {
            true
        } else if len == 0 {
            fin && (usable > 0 || self.snd_wnd == 0 || avail == 0)
        } else if len >= mss || fin {
            true
        } else if all_data && (in_flight == 0 || !self.nagle) {
            // Nagle (RFC 896): a short segment only when nothing is in flight.
            true
        } else {
            // Sender SWS avoidance (RFC 1122 4.2.3.4): at least half the
            // largest window the peer ever offered.
            self.max_snd_wnd > 0
                && len >= (self.max_snd_wnd as usize) / 2
                && (in_flight == 0 || !self.nagle)
        };

        let send = send || (self.sws_override && len > 0);
        if !send {
            // Data waiting behind a zero window: the persist timer takes over.
            if avail > 0 && self.snd_wnd == 0 {
                self.update_persist(now);
            } else if len > 0 && in_flight == 0 && self.timer(Timer::Persist).is_none() {
                // Held back by sender SWS avoidance with nothing in flight:
                // no ACK will come to clock it out, so RFC 1122 4.2.3.4 (4)
                // wants an override timeout (0.1 - 1 s) after which the
                // short segment goes anyway. It shares the persist slot.
                let d = self
                    .rtt
                    .rto()
                    .clamp(Duration::from_millis(200), Duration::from_secs(1));
                self.set_timer(Timer::Persist, now + d);
            }
            return None;
        }
        self.sws_override = false;
        let mut seg = SegmentOut {
            flags: ACK | if fin { FIN } else { 0 } | if len > 0 && all_data { PSH } else { 0 },
            seq: self.snd_nxt,
            ack: self.rcv_nxt,
            payload_offset: unsent,
            payload_len: len,
            ..Default::default()
        };
        let seq_len = len as u32 + fin as u32;
        if probe {
            // The probe byte is watched by the persist timer, not the
            // retransmission timer: a peer that keeps its window closed but
            // ACKs is not a lost peer.
            self.probe_outstanding = true;
            let rtx = self.timer(Timer::Retransmit);
            self.after_send(now, &mut seg, seq_len, retransmission, stats);
            self.timers[Timer::Retransmit as usize] = rtx;
            return Some(seg);
        }
        self.after_send(now, &mut seg, seq_len, retransmission, stats);
        if tlp_new {
            self.tlp_high = Some(self.snd_max);
        }
        Some(seg)
    }

    /// Common bookkeeping for every segment sent.
    fn after_send(
        &mut self,
        now: Instant,
        seg: &mut SegmentOut,
        seq_len: u32,
        retransmission: bool,
        stats: &mut Stats,
    ) {
        if seg.flags & ACK != 0 {
            if seg.flags & SYN == 0 {
                seg.window = self.advertise_window(false);
            }
            seg.ack = self.rcv_nxt;
            self.last_ack_sent = self.rcv_nxt;
            self.ack_now = false;
            self.unacked_bytes = 0;
            self.clear_timer(Timer::DelayedAck);
        }
        if seg.flags & SYN == 0 {
            seg.timestamp = self.timestamp_option(now);
            seg.sack_ranges = self.sack_blocks();
            self.dsack_pending = None;
        }
        seg.retransmission = retransmission;
        if seq_len > 0 {
            if retransmission {
                stats.tcp_retransmissions += 1;
                self.retransmissions += 1;
                self.rtt_probe = None; // Karn's algorithm
                                       // (also before timestamps are negotiated: a retransmitted SYN)
                if self.cfg.timestamps {
                    self.retx_tsval = self.ts_now(now);
                    self.retx_tsval_pending = true;
                }
            } else if self.rtt_probe.is_none() {
                self.rtt_probe = Some((self.snd_nxt, now));
            }
            self.snd_nxt = self.snd_nxt.wrapping_add(seq_len);
            if seq_gt(self.snd_nxt, self.snd_max) {
                self.bytes_out += seq_dist(self.snd_max, self.snd_nxt) as u64;
                self.snd_max = self.snd_nxt;
            }
            if seg.flags & FIN != 0 {
                self.fin_acked_seq = Some(seg.seq.wrapping_add(seq_len));
            }
            if self.timer(Timer::Retransmit).is_none() {
                self.set_timer(Timer::Retransmit, now + self.rtt.rto());
            }
            self.clear_timer(Timer::Persist);
            if self.sack_enabled && seg.flags & SYN == 0 && self.state.is_synchronized() {
                self.sb.on_send(now, seg.seq, seg.seq.wrapping_add(seq_len));
                if !retransmission && self.timer(Timer::Tlp).is_none() {
                    self.arm_tlp(now);
                }
            }
        }
        stats.tcp_segments_out += 1;
    }
}

/// `lo <= x < lo + wnd` in sequence space.
fn in_window(x: u32, lo: u32, wnd: u32) -> bool {
    seq_le(lo, x) && seq_lt(x, lo.wrapping_add(wnd))
}
/// How far (in the peer's timestamp ticks) a TSval may lag TS.Recent and
/// still pass PAWS: Linux's `TCP_PAWS_WINDOW`.
const PAWS_WINDOW: u32 = 1;

#[cfg(test)]
mod size_tests {
    /// What one connection costs inline in the stack's slab, x86_64: the
    /// TCB is 840 bytes (the slot adds 40; 752 before HyStart++, PRR and
    /// the loss-episode bookkeeping for undo, +80; +8 for the TSval of the
    /// latest retransmission, which keeps stale echoes out of the RTT; +4 for
    /// the TSval a duplicate's ACK echoes, paid for by a u8 persist back-off). Issue 6 budgets 4096 bytes for
    /// everything an idle WebSocket connection costs (slot, congestion
    /// control box, maps, timer heaps, the web service's state: about
    /// 1.6 KiB measured in total, docs/benchmarks.md), so the TCB may not
    /// grow unnoticed: raise this pin consciously. Shared or rarely used
    /// state goes behind a pointer (the `TcpConfig` is an `Arc`: 176 bytes
    /// per connection saved; ring buffers and the scoreboard's segment
    /// list hold no heap memory while empty).
    #[test]
    fn tcb_size_is_pinned() {
        let n = std::mem::size_of::<super::Tcb>();
        assert!(n <= 840, "size_of::<Tcb>() = {n}");
    }
}

#[cfg(test)]
mod time_wait_size {
    /// The point of a compact TIME-WAIT record (`TimeWaitState`) is its
    /// size next to the TCB's: pinned, like the TCB's.
    #[test]
    fn time_wait_state_is_a_fraction_of_a_tcb() {
        let tw = std::mem::size_of::<super::TimeWaitState>();
        let tcb = std::mem::size_of::<super::Tcb>();
        assert!(tw <= 160, "size_of::<TimeWaitState>() = {tw}");
        assert!(tw * 5 <= tcb, "TimeWaitState {tw} B vs Tcb {tcb} B");
    }
}
