//! The host: one IPv4 address on one link.
//!
//! [`Stack`] validates incoming IPv4 packets, reassembles fragments, answers
//! ICMP echo, demultiplexes TCP segments to connections, answers segments for
//! closed ports with RST (and other protocols with ICMP unreachable), and
//! counts every drop with its reason ([`stats`]). It also owns the table of
//! TCP connections and offers the socket API the applications use.
//!
//! ## Calling order (sans-IO)
//! 1. `handle_packet(now, bytes)` for every packet the device delivered;
//! 2. `handle_timeout(now)` (cheap when nothing is due);
//! 3. the application uses the socket API (`poll_event`, `accept`, `recv`, `send`, ...);
//! 4. `poll_transmit(now, buf)` until it returns `None`, sending each packet.
//!
//! Then sleep until `poll_at()` or until the device has input.

pub mod fragment;
pub mod stats;
pub mod syncookie;
mod tracing;
pub use tracing::LadderTarget;

use crate::hash::{FastHash, FastMap};
use crate::phy::RxMeta;
use crate::rand::Rng;
use crate::tcp::isn::IsnGenerator;
use crate::tcp::socket::{SegmentIn, SegmentOut, Tcb, TimeWaitState, ACK, FIN, RST, SYN};
use crate::tcp::{Event, ListenerHandle, Readiness, SocketHandle, State, TcpConfig, TcpError};
use crate::time::{Duration, Instant};
use crate::timer::TimerQueue;
use crate::wire::{
    self, DstUnreachable, Icmpv4Packet, Icmpv4Repr, IpProtocol, Ipv4Packet, Ipv4Repr, SeqNumber,
    TcpFlags, TcpPacket, TcpRepr, WireError,
};
use fragment::{FragError, Reassembler};
pub use stats::{DropReason, Stats};
use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddrV4};

/// Host-wide settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// The stack's own address.
    pub addr: Ipv4Addr,
    /// Largest IPv4 packet the link carries.
    pub mtu: usize,
    /// Largest packet handed to the device when it segments for us (TSO).
    pub max_tso_size: Option<usize>,
    /// The device completes outgoing TCP checksums
    /// ([`crate::phy::DeviceCaps::tx_checksum_offload`]): emit partial ones.
    pub tx_checksum_offload: bool,
    /// Defaults for new TCP sockets.
    pub tcp: TcpConfig,
    /// Maximum simultaneous TCP connections (all states but LISTEN).
    pub max_connections: usize,
    /// Memory for IPv4 fragment reassembly (bytes, all datagrams).
    pub max_fragment_memory: usize,
    /// Reassembly timeout (RFC 791 suggests 15 s; Linux uses 30 s).
    pub fragment_timeout: Duration,
    /// TTL of packets we originate.
    pub ttl: u8,
    /// Control packets (RST, ICMP) queued for output at most; more are dropped.
    pub max_control_queue: usize,
    /// Connections kept in TIME-WAIT at most; past it the oldest is
    /// recycled early (like Linux's `tcp_max_tw_buckets`). TIME-WAIT
    /// connections do not count against `max_connections`.
    pub max_time_wait: usize,
    /// Keep a TIME-WAIT connection that the application let go of as a
    /// compact record ([`TimeWaitState`], ~150 bytes) instead of its whole
    /// TCB, and rebuild the TCB when a segment arrives for it. Off: every
    /// TIME-WAIT connection keeps its TCB (for comparison; same packets).
    pub compact_time_wait: bool,
    /// Half-open (SYN-RECEIVED) connections kept at most, all listeners
    /// together (each listener also keeps at most its backlog). Beyond
    /// this, SYNs are answered with SYN cookies (or dropped without them).
    pub max_half_open: usize,
    /// Answer SYNs with SYN cookies (RFC 4987) when the half-open queue is
    /// full, instead of dropping them ([`syncookie`]).
    pub syn_cookies: bool,
    /// Budget for the buffers of all connections together (bytes actually
    /// allocated by send and receive ring buffers). Over it, new
    /// connections are refused and receive windows stop growing.
    pub max_buffer_memory: usize,
}

impl Config {
    pub fn new(addr: Ipv4Addr) -> Self {
        Config {
            addr,
            mtu: 1500,
            max_tso_size: None,
            tx_checksum_offload: false,
            tcp: TcpConfig::default(),
            max_connections: 200_000,
            max_fragment_memory: 4 * 1024 * 1024,
            fragment_timeout: Duration::from_secs(30),
            ttl: 64,
            max_control_queue: 1024,
            max_time_wait: 65_536,
            compact_time_wait: true,
            max_half_open: 4096,
            syn_cookies: true,
            max_buffer_memory: 512 * 1024 * 1024,
        }
    }
}

/// The resource limits a user sets on the command line (`ustack serve
/// --max-half-open ... --tcp-max-retries ...`); `None` keeps the default
/// of [`Config`] / [`TcpConfig`]. See docs/reliability.md for the defaults
/// and what happens at each limit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    pub max_half_open: Option<usize>,
    pub syn_cookies: Option<bool>,
    pub max_buffer_memory: Option<usize>,
    pub recv_buffer: Option<usize>,
    pub send_buffer: Option<usize>,
    pub max_retries: Option<u32>,
}

impl Limits {
    /// Write the limits that are set into `config`.
    pub fn apply(&self, config: &mut Config) {
        if let Some(v) = self.max_half_open {
            config.max_half_open = v;
        }
        if let Some(v) = self.syn_cookies {
            config.syn_cookies = v;
        }
        if let Some(v) = self.max_buffer_memory {
            config.max_buffer_memory = v;
        }
        if let Some(v) = self.recv_buffer {
            config.tcp.recv_buffer = v.max(1);
        }
        if let Some(v) = self.send_buffer {
            config.tcp.send_buffer = v.max(1);
        }
        if let Some(v) = self.max_retries {
            config.tcp.max_retries = v;
        }
    }
}

/// A snapshot of one connection, for `/api/stats`, the dashboard and tests.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    pub handle: SocketHandle,
    pub local: SocketAddrV4,
    pub remote: SocketAddrV4,
    pub state: State,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub srtt_us: Option<u64>,
    pub rto_us: u64,
    pub cwnd: u32,
    pub ssthresh: u32,
    pub send_window: u32,
    pub recv_window: u32,
    pub retransmissions: u64,
    pub mss: u32,
    /// Congestion-control phase: `slow_start`, `css` (RFC 9406 Conservative
    /// Slow Start), `congestion_avoidance`, `recovery` (fast recovery) or
    /// `loss` (after a retransmission timeout).
    pub cc_phase: &'static str,
}

/// Who answers for a connection slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Owner {
    /// Embryonic or waiting in a listener's accept queue.
    Listener(u16),
    /// The application holds the handle.
    App,
    /// The application let go; the slot is freed when the connection ends.
    Released,
}

struct Slot {
    generation: u32,
    tcb: Option<Tcb>,
    owner: Owner,
    in_map: bool,
    /// Counted in `Stack::time_wait` and listed in `tw_queue`.
    in_tw: bool,
    in_tx: bool,
    event_queued: bool,
    half_open: bool,
    scheduled: Option<Instant>,
    /// Buffer bytes this connection had allocated at the last accounting.
    mem: usize,
}

struct Listener {
    backlog: usize,
    accept_queue: VecDeque<SocketHandle>,
    half_open: usize,
    /// When this listener last answered a SYN with a cookie: only then are
    /// ACKs checked as cookies (see [`syncookie`]).
    last_cookie: Option<Instant>,
}

/// (remote address, remote port, local port): the local address is always ours.
type ConnKey = (u32, u16, u16);

fn conn_key(local: SocketAddrV4, remote: SocketAddrV4) -> ConnKey {
    (u32::from(*remote.ip()), remote.port(), local.port())
}

/// RFC 6191 / RFC 1122 4.2.2.13: a new SYN (no ACK, no RST) above RCV.NXT
/// reopens a connection in TIME-WAIT.
fn reopens_time_wait(seg: &SegmentIn, rcv_nxt: u32) -> bool {
    seg.flags & (SYN | ACK | RST) == SYN && crate::tcp::socket::seq_gt(seg.seq, rcv_nxt)
}

/// A demultiplexing entry (or `tw_queue` entry) with this bit set names a
/// compact TIME-WAIT record in `Stack::tw_records`, not a slot.
const TW_TAG: u32 = 1 << 31;

/// A TIME-WAIT connection kept as a compact record (see
/// [`Config::compact_time_wait`]).
struct TwRecord {
    generation: u32,
    /// The slot the connection had, and its generation there: the
    /// connection's id in traces and its handle in the connection list
    /// (no longer usable by an application: the slot moved on).
    trace_id: u32,
    trace_generation: u32,
    state: TimeWaitState,
}

/// RFC 5961 section 7: a global budget of challenge ACKs per second.
struct ChallengeLimiter {
    window_start: Instant,
    sent: u32,
}

/// A control packet waiting for output (RST or ICMP), built on demand.
#[derive(Clone, Debug)]
enum Control {
    Rst {
        remote: SocketAddrV4,
        local_port: u16,
        seq: u32,
        ack: u32,
        flags: u8,
    },
    /// A stateless SYN-ACK carrying a SYN cookie (RFC 4987 3.6).
    CookieSynAck {
        remote: SocketAddrV4,
        local_port: u16,
        seq: u32,
        ack: u32,
        window: u16,
        mss: u16,
        window_scale: Option<u8>,
        sack: bool,
        timestamp: Option<(u32, u32)>,
    },
    EchoReply {
        dst: Ipv4Addr,
        ident: u16,
        seq_no: u16,
        data: Vec<u8>,
    },
    Unreachable {
        dst: Ipv4Addr,
        code: DstUnreachable,
        quote: Vec<u8>,
    },
}

/// The whole stack: interface plus TCP connections.
pub struct Stack {
    config: Config,
    /// `config.tcp`, shared with every connection.
    tcp: std::sync::Arc<TcpConfig>,
    stats: Stats,
    seed: u64,
    rng: Rng,
    isn: IsnGenerator,
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// Generation of a slot pushed anew at the end of `slots`: above that of
    /// every slot [`Stack::trim_memory`] removed, so an old handle to a
    /// removed index never matches the new slot there.
    next_generation: u32,
    live: usize,
    /// Connections in TIME-WAIT, and their slots oldest first (entries may be stale).
    time_wait: usize,
    /// TIME-WAIT connections in the order they entered it, with their
    /// 2*MSL deadline (the same duration for all, so the queue is sorted):
    /// they expire from here, not from `timers`. Tens of thousands of
    /// TIME-WAIT entries (a server closing first under `ab`) in the heap,
    /// most of them stale after recycling, made every heap operation
    /// cache-missing and the WebSocket p99 twice as long for a minute.
    tw_queue: VecDeque<(u32, u32, Instant)>,
    /// Compact TIME-WAIT records (counted in `live` and `time_wait`), and
    /// their free entries.
    tw_records: Vec<Option<TwRecord>>,
    tw_free: Vec<u32>,
    tw_generation: u32,
    conns: FastMap<ConnKey, u32>,
    listeners: FastMap<u16, Listener>,
    events: VecDeque<Event>,
    tx_queue: VecDeque<u32>,
    /// Connection deadlines: (slot index, generation), lazily deleted.
    timers: TimerQueue<(u32, u32)>,
    control: VecDeque<Control>,
    frags: Reassembler,
    challenge: ChallengeLimiter,
    ip_ident: u16,
    next_port: u16,
    scratch: Vec<u8>,
    /// Test hook: every new connection uses this ISS (see `set_isn_for_test`).
    isn_override: Option<u32>,
    /// Buffer bytes allocated by all connections (sum of `Slot::mem`).
    buffer_mem: usize,
    /// Event trace and transition history (off unless switched on).
    trace: crate::trace::Tracer,
}

const EPHEMERAL_FIRST: u16 = 49152;

/// TIME-WAIT connections ended per [`Stack::handle_timeout`] call at most
/// (~0.7 µs each; see there).
pub const TIME_WAIT_EXPIRY_BATCH: usize = 16;

/// The wire form of a segment a connection dispatched.
fn segment_repr<'a>(tcb: &Tcb, seg: &SegmentOut, payload: &'a [u8]) -> TcpRepr<'a> {
    TcpRepr {
        src_port: tcb.local.port(),
        dst_port: tcb.remote.port(),
        flags: TcpFlags(seg.flags),
        seq_number: SeqNumber(seg.seq),
        ack_number: SeqNumber(if seg.flags & ACK != 0 { seg.ack } else { 0 }),
        window_len: seg.window,
        urgent_at: 0,
        max_seg_size: seg.mss,
        window_scale: seg.window_scale,
        sack_permitted: seg.sack_permitted,
        sack_ranges: seg.sack_ranges,
        timestamp: seg.timestamp,
        payload,
    }
}

impl Stack {
    pub fn new(config: Config, seed: u64) -> Stack {
        let mut rng = Rng::derive(seed, "stack");
        let isn = IsnGenerator::new(rng.next_u64(), rng.next_u64());
        let next_port = EPHEMERAL_FIRST + rng.below((u16::MAX - EPHEMERAL_FIRST) as u64) as u16;
        let ip_ident = rng.next_u32() as u16;
        Stack {
            frags: Reassembler::new(config.max_fragment_memory, config.fragment_timeout),
            tcp: std::sync::Arc::new(config.tcp.clone()),
            config,
            stats: Stats::default(),
            seed,
            rng,
            isn,
            slots: Vec::new(),
            free: Vec::new(),
            next_generation: 0,
            live: 0,
            time_wait: 0,
            tw_queue: VecDeque::new(),
            tw_records: Vec::new(),
            tw_free: Vec::new(),
            tw_generation: 0,
            // Keyed from the seed (its own stream: the stack's other
            // random choices stay as they were).
            conns: FastHash::map(Rng::derive(seed, "demux").next_u64()),
            listeners: FastHash::map(Rng::derive(seed, "listeners").next_u64()),
            events: VecDeque::new(),
            tx_queue: VecDeque::new(),
            timers: TimerQueue::new(),
            control: VecDeque::new(),
            challenge: ChallengeLimiter {
                window_start: Instant::ZERO,
                sent: 0,
            },
            ip_ident,
            next_port,
            scratch: Vec::new(),
            isn_override: None,
            buffer_mem: 0,
            trace: crate::trace::Tracer::default(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }
    pub fn stats(&self) -> &Stats {
        &self.stats
    }
    pub fn seed(&self) -> u64 {
        self.seed
    }
    /// Test hook: make every new connection's initial send sequence number
    /// `isn` (e.g. just below 2^32 to test wrap-around), instead of the
    /// RFC 6528 generator. Never use outside tests: predictable ISNs open
    /// the door to blind spoofing attacks.
    #[doc(hidden)]
    pub fn set_isn_for_test(&mut self, isn: Option<u32>) {
        self.isn_override = isn;
    }

    fn new_iss(&self, now: Instant, local: SocketAddrV4, remote: SocketAddrV4) -> u32 {
        self.isn_override
            .unwrap_or_else(|| self.isn.isn(now, local, remote))
    }

    /// Live TCP connections (all states but LISTEN, including TIME-WAIT).
    pub fn connection_count(&self) -> usize {
        self.live
    }

    /// Entries in the timer heap, stale ones included (TIME-WAIT
    /// connections are not there: they expire from their own queue).
    pub fn timer_entries(&self) -> usize {
        self.timers.len()
    }

    /// Connections in TIME-WAIT.
    pub fn time_wait_count(&self) -> usize {
        self.time_wait
    }

    /// Of those, how many are kept as compact records
    /// ([`Config::compact_time_wait`]) rather than whole TCBs.
    pub fn time_wait_records(&self) -> usize {
        self.tw_records.len() - self.tw_free.len()
    }

    /// The link MSS: what fits in one packet after IPv4 and TCP headers.
    fn link_mss(&self) -> u32 {
        (self.config.mtu.saturating_sub(40)).clamp(64, 65495) as u32
    }

    /// Largest TCP payload of one packet handed to a TSO device (room left
    /// for IPv4, TCP and 40 bytes of options), or 0 without offload.
    fn tso_payload(&self) -> usize {
        match self.config.max_tso_size {
            Some(max) if max > self.config.mtu => max.min(65535).saturating_sub(20 + 60),
            _ => 0,
        }
    }

    // ================================================================ input

    /// Input: one IPv4 packet from the device.
    pub fn handle_packet(&mut self, now: Instant, packet: &[u8]) {
        self.handle_packet_with(now, packet, RxMeta::default())
    }

    /// Input with what the device knows about the packet: with
    /// `meta.checksum_verified` the TCP checksum is not summed again (the
    /// IPv4 header checksum always is: it is cheap and the device says
    /// nothing about it).
    pub fn handle_packet_with(&mut self, now: Instant, packet: &[u8], meta: RxMeta) {
        self.stats.packets_in += 1;
        self.stats.bytes_in += packet.len() as u64;
        self.trace.now = now;
        let traced = if self.trace.wants_segments() {
            self.trace_in_pre(packet)
        } else {
            None
        };
        let result = self.ipv4_input(now, packet, meta.checksum_verified);
        if let Some(pre) = traced {
            self.trace_in_post(pre, &result);
        }
        if let Err(reason) = result {
            self.stats.count_drop(reason);
            log::trace!("drop ({reason}): {}", wire::PrettyPacket(packet));
        }
    }

    fn ipv4_input(
        &mut self,
        now: Instant,
        packet: &[u8],
        l4_verified: bool,
    ) -> Result<(), DropReason> {
        let ip = Ipv4Packet::new_checked(packet).map_err(ip_drop_reason)?;
        if !ip.verify_checksum() {
            return Err(DropReason::BadIpChecksum);
        }
        let src = ip.src_addr();
        let dst = ip.dst_addr();
        if dst != self.config.addr {
            return Err(DropReason::NotForUs);
        }
        // RFC 1122 3.2.1.3: never accept a source that is not a unicast host.
        if src.is_unspecified()
            || src.is_broadcast()
            || src.is_multicast()
            || src == self.config.addr
        {
            return Err(DropReason::BadSourceAddr);
        }
        let protocol = u8::from(ip.protocol());
        if ip.more_frags() || ip.frag_offset() != 0 {
            let off = ip.frag_offset() as usize;
            return match self.frags.push(
                now,
                src,
                dst,
                protocol,
                ip.ident(),
                off,
                ip.more_frags(),
                ip.payload(),
            ) {
                Ok(Some(datagram)) => {
                    self.stats.fragments_reassembled += 1;
                    // The reassembled datagram's first 8 bytes quote the first fragment.
                    self.transport_input(now, src, dst, protocol, &datagram, packet, true, false)
                }
                Ok(None) => Ok(()),
                Err(FragError::Overlap) => Err(DropReason::FragmentOverlap),
                Err(FragError::NoMemory) => Err(DropReason::FragmentNoMemory),
                Err(_) => Err(DropReason::FragmentInvalid),
            };
        }
        let payload = ip.payload();
        self.transport_input(now, src, dst, protocol, payload, packet, false, l4_verified)
    }

    #[allow(clippy::too_many_arguments)]
    fn transport_input(
        &mut self,
        now: Instant,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        protocol: u8,
        payload: &[u8],
        original: &[u8],
        reassembled: bool,
        l4_verified: bool,
    ) -> Result<(), DropReason> {
        match IpProtocol::from(protocol) {
            IpProtocol::Tcp => self.tcp_input(now, src, dst, payload, l4_verified),
            IpProtocol::Icmp => self.icmp_input(src, payload),
            IpProtocol::Udp => {
                // No UDP service: port unreachable (RFC 1122 3.2.2.1, 4.1.3.1).
                if !reassembled {
                    self.queue_unreachable(src, DstUnreachable::PortUnreachable, original);
                }
                Err(DropReason::UnknownProtocol)
            }
            IpProtocol::Unknown(_) => {
                // RFC 1122 3.2.2.1: protocol unreachable.
                if !reassembled {
                    self.queue_unreachable(src, DstUnreachable::ProtoUnreachable, original);
                }
                Err(DropReason::UnknownProtocol)
            }
        }
    }

    fn queue_unreachable(&mut self, dst: Ipv4Addr, code: DstUnreachable, original: &[u8]) {
        let Ok(ip) = Ipv4Packet::new_checked(original) else {
            return;
        };
        // The quote: the original header and the first 8 bytes of its payload (RFC 792).
        let n = (ip.header_len() + 8)
            .min(original.len())
            .min(ip.total_len() as usize);
        self.push_control(Control::Unreachable {
            dst,
            code,
            quote: original[..n].to_vec(),
        });
        self.stats.icmp_unreachables_sent += 1;
    }

    fn push_control(&mut self, c: Control) {
        if self.control.len() >= self.config.max_control_queue {
            self.stats.count_drop(DropReason::TcpNoMemory);
            return;
        }
        self.control.push_back(c);
    }

    fn icmp_input(&mut self, src: Ipv4Addr, payload: &[u8]) -> Result<(), DropReason> {
        let pkt = Icmpv4Packet::new_checked(payload).map_err(|_| DropReason::BadIcmp)?;
        let repr = Icmpv4Repr::parse(&pkt).map_err(|_| DropReason::BadIcmp)?;
        match repr {
            Icmpv4Repr::EchoRequest {
                ident,
                seq_no,
                data,
            } => {
                self.push_control(Control::EchoReply {
                    dst: src,
                    ident,
                    seq_no,
                    data: data.to_vec(),
                });
                self.stats.icmp_echo_replies += 1;
                Ok(())
            }
            // Errors about our connections are soft errors (RFC 1122 4.2.3.9):
            // TCP keeps retransmitting; we only count them.
            _ => Err(DropReason::IcmpIgnored),
        }
    }

    fn tcp_input(
        &mut self,
        now: Instant,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        payload: &[u8],
        verified: bool,
    ) -> Result<(), DropReason> {
        let pkt = TcpPacket::new_checked(payload).map_err(|e| match e {
            WireError::Truncated => DropReason::Truncated,
            _ => DropReason::BadTcpHeader,
        })?;
        let repr = TcpRepr::parse(&pkt, src, dst, !verified).map_err(|e| match e {
            WireError::BadChecksum => DropReason::BadTcpChecksum,
            WireError::Truncated => DropReason::Truncated,
            _ => DropReason::BadTcpHeader,
        })?;
        self.stats.tcp_segments_in += 1;
        if repr.src_port == 0 || repr.dst_port == 0 {
            return Err(DropReason::BadTcpHeader);
        }
        let seg = SegmentIn {
            flags: repr.flags.0,
            seq: repr.seq_number.0,
            ack: repr.ack_number.0,
            window: repr.window_len,
            mss: repr.max_seg_size,
            window_scale: repr.window_scale,
            sack_permitted: repr.sack_permitted,
            sack_ranges: repr.sack_ranges,
            timestamp: repr.timestamp,
            payload: repr.payload,
        };
        let remote = SocketAddrV4::new(src, repr.src_port);
        let key: ConnKey = (u32::from(src), repr.src_port, repr.dst_port);

        let mut mapped = self.conns.get(&key).copied();
        if let Some(entry) = mapped.filter(|&e| e & TW_TAG != 0) {
            // A compact TIME-WAIT record: the reopen rule below, or the TCB
            // is rebuilt to process the segment.
            let r = entry & !TW_TAG;
            let rcv_nxt = self.tw_records[r as usize]
                .as_ref()
                .expect("mapped record")
                .state
                .rcv_nxt;
            mapped = if reopens_time_wait(&seg, rcv_nxt) {
                self.end_time_wait_record(r);
                None
            } else {
                Some(self.expand_time_wait(now, r))
            };
        }
        if let Some(idx) = mapped {
            let reopen = {
                let tcb = self.slots[idx as usize]
                    .tcb
                    .as_ref()
                    .expect("mapped slot has a TCB");
                tcb.state == State::TimeWait && reopens_time_wait(&seg, tcb.rcv_nxt())
            };
            if reopen {
                self.slots[idx as usize]
                    .tcb
                    .as_mut()
                    .expect("tcb")
                    .abort_silently();
                self.after_op(idx);
            } else {
                return self.socket_input(now, idx, &seg);
            }
        }

        // No connection: a listener, or RST (RFC 9293 3.10.7.1 and 3.10.7.2).
        if seg.flags & RST != 0 {
            return Err(DropReason::TcpNoListener);
        }
        let Some(listener) = self.listeners.get(&repr.dst_port) else {
            self.reply_rst(remote, repr.dst_port, &seg);
            return Err(DropReason::TcpNoListener);
        };
        if seg.flags & ACK != 0 {
            // The ACK of a SYN-ACK we sent as a cookie, if it checks out.
            if seg.flags & SYN == 0 && listener.last_cookie.is_some() {
                if let Some(result) = self.cookie_ack(now, key, remote, repr.dst_port, &seg) {
                    return result;
                }
            }
            // An ACK to a listener: <SEQ=SEG.ACK><CTL=RST>.
            self.reply_rst(remote, repr.dst_port, &seg);
            return Err(DropReason::TcpBadAck);
        }
        if seg.flags & SYN == 0 || seg.flags & FIN != 0 {
            return Err(DropReason::TcpInvalidFlags);
        }
        // Limits, in order: the accept queue (the application is not keeping
        // up: drop, the client retries), the half-open queue (a SYN flood:
        // cookies), the connection table and the buffer memory budget.
        if listener.accept_queue.len() >= listener.backlog {
            return Err(DropReason::TcpBacklogFull);
        }
        let half_open_total: usize = self.listeners.values().map(|l| l.half_open).sum();
        if listener.half_open >= listener.backlog || half_open_total >= self.config.max_half_open {
            if self.config.syn_cookies {
                self.send_cookie(now, remote, repr.dst_port, &seg);
                return Ok(());
            }
            return Err(DropReason::TcpHalfOpenFull);
        }
        if self.active_connections() >= self.config.max_connections {
            return Err(DropReason::TcpTooManyConnections);
        }
        if self.over_memory_budget() {
            return Err(DropReason::TcpMemoryBudget);
        }
        let local = SocketAddrV4::new(self.config.addr, repr.dst_port);
        let iss = self.new_iss(now, local, remote);
        let mut tcb = Tcb::accept_syn(now, &self.tcp, local, remote, iss, self.link_mss(), &seg);
        tcb.set_tso(self.tso_payload());
        let idx = self.insert(tcb, Owner::Listener(repr.dst_port), true);
        if let Some(l) = self.listeners.get_mut(&repr.dst_port) {
            l.half_open += 1;
        }
        self.slots[idx as usize].half_open = true;
        self.conns.insert(key, idx);
        self.slots[idx as usize].in_map = true;
        self.after_op(idx);
        Ok(())
    }

    /// The buffers of all connections use more than the budget.
    fn over_memory_budget(&self) -> bool {
        self.buffer_mem >= self.config.max_buffer_memory
    }

    /// Answer a SYN statelessly with a SYN cookie (RFC 4987 3.6).
    fn send_cookie(
        &mut self,
        now: Instant,
        remote: SocketAddrV4,
        local_port: u16,
        syn: &SegmentIn,
    ) {
        let local = SocketAddrV4::new(self.config.addr, local_port);
        let peer_mss = syn.mss.unwrap_or(536);
        let (cookie, _) = syncookie::make(&self.isn, now, local, remote, syn.seq, peer_mss);
        let tcp = &self.config.tcp;
        // Options are only kept when the timestamp option can carry them.
        let ts_on = tcp.timestamps && syn.timestamp.is_some();
        let wscale_on = ts_on && tcp.window_scaling && syn.window_scale.is_some();
        let sack_on = ts_on && tcp.sack && syn.sack_permitted;
        let timestamp = syn.timestamp.filter(|_| ts_on).map(|(tsval, _)| {
            let ours = (now.total_millis() as u32).wrapping_add(Tcb::ts_offset_for_iss(cookie));
            let opts = syncookie::TsOptions {
                wscale: syn.window_scale.filter(|_| wscale_on),
                sack: sack_on,
            };
            (syncookie::encode_ts(ours, opts), tsval)
        });
        let mut our_wscale = 0u8;
        while our_wscale < 14 && (tcp.recv_buffer >> our_wscale) > 65535 {
            our_wscale += 1;
        }
        let c = Control::CookieSynAck {
            remote,
            local_port,
            seq: cookie,
            ack: syn.seq.wrapping_add(1),
            window: tcp.recv_buffer.min(65535) as u16,
            mss: (tcp.mss as u32).min(self.link_mss()) as u16,
            window_scale: wscale_on.then_some(our_wscale),
            sack: sack_on,
            timestamp,
        };
        self.push_control(c);
        self.stats.tcp_syn_cookies_sent += 1;
        if let Some(l) = self.listeners.get_mut(&local_port) {
            l.last_cookie = Some(now);
        }
    }

    /// An ACK arrived for a listener that sent cookies recently: if its
    /// acknowledgment number is a valid cookie, create the connection
    /// (ESTABLISHED, into the accept queue) and process the ACK on it.
    /// `None`: not a cookie (the caller answers with RST).
    fn cookie_ack(
        &mut self,
        now: Instant,
        key: ConnKey,
        remote: SocketAddrV4,
        port: u16,
        seg: &SegmentIn,
    ) -> Option<Result<(), DropReason>> {
        let listener = self.listeners.get(&port)?;
        let recent = listener.last_cookie.is_some_and(|t| {
            now.saturating_duration_since(t)
                < Duration::from_secs(
                    syncookie::COUNTER_PERIOD_SECS * syncookie::MAX_AGE_PERIODS as u64,
                )
        });
        if !recent || !self.config.syn_cookies {
            return None;
        }
        let local = SocketAddrV4::new(self.config.addr, port);
        let irs = seg.seq.wrapping_sub(1);
        let iss = seg.ack.wrapping_sub(1);
        let mss = syncookie::check(&self.isn, now, local, remote, irs, iss)?;
        // A valid cookie. Still subject to the other limits: when one is
        // hit the ACK is dropped and the client's retransmission retries.
        if listener.accept_queue.len() >= listener.backlog {
            return Some(Err(DropReason::TcpBacklogFull));
        }
        if self.live >= self.config.max_connections {
            return Some(Err(DropReason::TcpTooManyConnections));
        }
        if self.over_memory_budget() {
            return Some(Err(DropReason::TcpMemoryBudget));
        }
        // Rebuild the SYN the cookie stands for.
        let opts = seg.timestamp.map(|(_, tsecr)| syncookie::decode_ts(tsecr));
        let syn = SegmentIn {
            flags: SYN,
            seq: irs,
            ack: 0,
            window: seg.window,
            mss: Some(mss),
            window_scale: opts.and_then(|o| o.wscale),
            sack_permitted: opts.is_some_and(|o| o.sack),
            sack_ranges: [None; 3],
            timestamp: seg.timestamp.map(|(tsval, _)| (tsval, 0)),
            payload: &[],
        };
        let mut tcb = Tcb::accept_syn(now, &self.tcp, local, remote, iss, self.link_mss(), &syn);
        tcb.set_tso(self.tso_payload());
        tcb.syn_ack_sent_as_cookie();
        let idx = self.insert(tcb, Owner::Listener(port), true);
        self.conns.insert(key, idx);
        self.slots[idx as usize].in_map = true;
        self.stats.tcp_syn_cookies_accepted += 1;
        let result = self.socket_input(now, idx, seg);
        // The ACK always completes the handshake (it is in sequence and
        // acknowledges the cookie); should it ever not, the connection has
        // no SYN-ACK to retransmit and no timer: drop it rather than leak.
        if let Some(t) = self.slots[idx as usize].tcb.as_mut() {
            if t.state() == State::SynReceived {
                t.abort_silently();
                self.after_op(idx);
            }
        }
        Some(result)
    }

    fn socket_input(&mut self, now: Instant, idx: u32, seg: &SegmentIn) -> Result<(), DropReason> {
        let slot = &mut self.slots[idx as usize];
        let tcb = slot.tcb.as_mut().expect("mapped slot has a TCB");
        let reaction = tcb.process(now, seg, &mut self.stats);
        if tcb.take_challenge() {
            // RFC 5961 7: at most `challenge_ack_limit` per second, all connections.
            let lim = &mut self.challenge;
            if now.saturating_duration_since(lim.window_start) >= Duration::from_secs(1) {
                lim.window_start = now;
                lim.sent = 0;
            }
            if lim.sent < self.config.tcp.challenge_ack_limit {
                lim.sent += 1;
                self.stats.tcp_challenge_acks += 1;
                tcb.ack_now();
            }
        }
        let remote = tcb.remote;
        let local_port = tcb.local.port();
        let owner = slot.owner;
        let generation = slot.generation;
        if let Some((seq, ack, flags)) = reaction.rst {
            self.push_control(Control::Rst {
                remote,
                local_port,
                seq,
                ack,
                flags,
            });
            self.stats.tcp_rsts_sent += 1;
        }
        if reaction.established {
            if let Owner::Listener(port) = owner {
                let handle = SocketHandle {
                    index: idx,
                    generation,
                };
                if let Some(l) = self.listeners.get_mut(&port) {
                    l.accept_queue.push_back(handle);
                    self.events.push_back(Event::Incoming(ListenerHandle(port)));
                }
            }
        }
        self.after_op(idx);
        match reaction.drop {
            Some(r) => Err(r),
            None => Ok(()),
        }
    }

    /// RST in reply to a segment that has no connection (RFC 9293 3.10.7.1).
    fn reply_rst(&mut self, remote: SocketAddrV4, local_port: u16, seg: &SegmentIn) {
        if seg.flags & RST != 0 {
            return;
        }
        let c = if seg.flags & ACK != 0 {
            Control::Rst {
                remote,
                local_port,
                seq: seg.ack,
                ack: 0,
                flags: RST,
            }
        } else {
            Control::Rst {
                remote,
                local_port,
                seq: 0,
                ack: seg.seq.wrapping_add(seg.seg_len()),
                flags: RST | ACK,
            }
        };
        self.push_control(c);
        self.stats.tcp_rsts_sent += 1;
    }

    // =============================================================== timers

    /// Run expired timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.trace.now = now;
        while let Some((at, (idx, gen))) = self.timers.pop_due(now) {
            let Some(slot) = self.slots.get_mut(idx as usize) else {
                continue;
            };
            if slot.generation != gen || slot.scheduled != Some(at) {
                continue; // stale entry
            }
            slot.scheduled = None;
            if let Some(tcb) = slot.tcb.as_mut() {
                if self.trace.full() {
                    tracing::trace_timers(&mut self.trace, idx, tcb, now);
                }
                tcb.handle_timeout(now, &mut self.stats);
            }
            self.after_op(idx);
        }
        // TIME-WAIT expiry, oldest first, a few per call: after a burst of
        // short connections (ab: ~45,000 a second) they all come due 2*MSL
        // later at the same rate, and a runtime that wakes once a
        // millisecond would otherwise end ~45 of them in one go (~30 µs)
        // while a packet waits. What is left stays due (`poll_at`), so the
        // runtime comes back at once, between reads of the device. Ending
        // a TIME-WAIT a little late is harmless: 2*MSL is a minimum.
        let mut ended = 0;
        while let Some(&(idx, gen, at)) = self.tw_queue.front() {
            if at > now || ended == TIME_WAIT_EXPIRY_BATCH {
                break;
            }
            self.tw_queue.pop_front();
            if idx & TW_TAG != 0 {
                // A record's deadline never moves (a restart makes a new one).
                if self.tw_record_alive(idx & !TW_TAG, gen) {
                    ended += 1;
                    self.end_time_wait_record(idx & !TW_TAG);
                }
                continue;
            }
            let Some(slot) = self.slots.get_mut(idx as usize) else {
                continue;
            };
            if slot.generation != gen || !slot.in_tw {
                continue; // recycled or left TIME-WAIT
            }
            let Some(tcb) = slot.tcb.as_mut() else {
                continue;
            };
            ended += 1;
            tcb.handle_timeout(now, &mut self.stats);
            if tcb.state() == State::TimeWait {
                // Restarted by a retransmitted FIN: the heap has its new
                // deadline; it stays listed here for recycling.
                let at = tcb.poll_at().unwrap_or(now);
                self.tw_queue.push_back((idx, gen, at));
            }
            self.after_op(idx);
        }
        let expired = self.frags.expire(now);
        for _ in 0..expired {
            self.stats.count_drop(DropReason::FragmentTimeout);
        }
    }

    /// When `handle_timeout` must next be called.
    pub fn poll_at(&self) -> Option<Instant> {
        let t = self.timers.next_deadline();
        let tw = self.tw_queue.front().map(|&(_, _, at)| at);
        crate::time::min_deadline(crate::time::min_deadline(t, tw), self.frags.poll_at())
    }

    // =============================================================== output

    /// Output: write the next packet into `buf` (at least the MTU) and
    /// return its length; `None` when nothing is waiting.
    #[must_use]
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        self.trace.now = now;
        if let Some(c) = self.control.pop_front() {
            let n = self.emit_control(&c, buf);
            if self.trace.wants_segments() {
                self.trace_out(&buf[..n.min(buf.len())], None, false);
            }
            self.count_out(n);
            return Some(n);
        }
        while let Some(&idx) = self.tx_queue.front() {
            let i = idx as usize;
            let seg = match self.slots[i].tcb.as_mut() {
                Some(tcb) => tcb.dispatch(now, &mut self.stats),
                None => None,
            };
            match seg {
                Some(seg) => {
                    let n = self.emit_segment(i, &seg, buf);
                    if self.trace.wants_segments() {
                        self.trace_out(&buf[..n.min(buf.len())], Some(idx), seg.retransmission);
                    }
                    self.count_out(n);
                    // Round robin: the socket goes to the back if it has more.
                    self.tx_queue.pop_front();
                    self.slots[i].in_tx = false;
                    self.after_op(idx);
                    return Some(n);
                }
                None => {
                    self.tx_queue.pop_front();
                    self.slots[i].in_tx = false;
                    self.after_op_no_tx(idx);
                }
            }
        }
        None
    }

    /// [`Self::poll_transmit`] without copying payload: the headers (IPv4 +
    /// TCP, or a whole control packet) are written into `buf` and their
    /// length returned with the payload as up to two slices of the
    /// connection's send buffer; the packet is `buf[..len]` followed by the
    /// slices (a device writes them with one `writev`, see
    /// [`crate::phy::Device::send_parts`]). While segments are traced the
    /// whole packet is built in `buf` instead (the slices are empty).
    #[must_use]
    pub fn poll_transmit_parts(
        &mut self,
        now: Instant,
        buf: &mut [u8],
    ) -> Option<(usize, [&[u8]; 2])> {
        if !self.control.is_empty() || self.trace.wants_segments() {
            return self
                .poll_transmit(now, buf)
                .map(|n| (n, [&[][..], &[][..]]));
        }
        while let Some(&idx) = self.tx_queue.front() {
            let i = idx as usize;
            let seg = match self.slots[i].tcb.as_mut() {
                Some(tcb) => tcb.dispatch(now, &mut self.stats),
                None => None,
            };
            match seg {
                Some(seg) => {
                    let hl = self.emit_segment_headers(i, &seg, buf);
                    self.count_out(hl + seg.payload_len);
                    self.tx_queue.pop_front();
                    self.slots[i].in_tx = false;
                    self.after_op(idx);
                    // (after_op never frees a connection that just sent data)
                    let parts = match self.slots[i].tcb.as_ref() {
                        Some(tcb) if seg.payload_len > 0 => {
                            let (a, b) = tcb.send_slices(seg.payload_offset, seg.payload_len);
                            [a, b]
                        }
                        _ => [&[][..], &[][..]],
                    };
                    return Some((hl, parts));
                }
                None => {
                    self.tx_queue.pop_front();
                    self.slots[i].in_tx = false;
                    self.after_op_no_tx(idx);
                }
            }
        }
        None
    }

    fn count_out(&mut self, n: usize) {
        self.stats.packets_out += 1;
        self.stats.bytes_out += n as u64;
    }

    fn next_ident(&mut self) -> u16 {
        self.ip_ident = self.ip_ident.wrapping_add(1);
        self.ip_ident
    }

    fn ip_repr(&mut self, dst: Ipv4Addr, protocol: IpProtocol) -> Ipv4Repr {
        Ipv4Repr {
            src_addr: self.config.addr,
            dst_addr: dst,
            protocol,
            payload_len: 0,
            ttl: self.config.ttl,
            ident: self.next_ident(),
            dont_frag: true,
        }
    }

    fn emit_control(&mut self, c: &Control, buf: &mut [u8]) -> usize {
        match c {
            Control::Rst {
                remote,
                local_port,
                seq,
                ack,
                flags,
            } => {
                let ip = self.ip_repr(*remote.ip(), IpProtocol::Tcp);
                let mut tcp = TcpRepr::new(
                    *local_port,
                    remote.port(),
                    SeqNumber(*seq),
                    TcpFlags(*flags),
                );
                tcp.ack_number = SeqNumber(*ack);
                self.stats.tcp_segments_out += 1;
                wire::emit_ipv4_tcp_with(buf, &ip, &tcp, self.config.tx_checksum_offload)
            }
            Control::CookieSynAck {
                remote,
                local_port,
                seq,
                ack,
                window,
                mss,
                window_scale,
                sack,
                timestamp,
            } => {
                let ip = self.ip_repr(*remote.ip(), IpProtocol::Tcp);
                let mut tcp = TcpRepr::new(
                    *local_port,
                    remote.port(),
                    SeqNumber(*seq),
                    TcpFlags(SYN | ACK),
                );
                tcp.ack_number = SeqNumber(*ack);
                tcp.window_len = *window;
                tcp.max_seg_size = Some(*mss);
                tcp.window_scale = *window_scale;
                tcp.sack_permitted = *sack;
                tcp.timestamp = *timestamp;
                self.stats.tcp_segments_out += 1;
                wire::emit_ipv4_tcp_with(buf, &ip, &tcp, self.config.tx_checksum_offload)
            }
            Control::EchoReply {
                dst,
                ident,
                seq_no,
                data,
            } => {
                let ip = self.ip_repr(*dst, IpProtocol::Icmp);
                let room = buf.len().saturating_sub(28);
                let data = &data[..data.len().min(room)];
                wire::emit_ipv4_icmp(
                    buf,
                    &ip,
                    &Icmpv4Repr::EchoReply {
                        ident: *ident,
                        seq_no: *seq_no,
                        data,
                    },
                )
            }
            Control::Unreachable { dst, code, quote } => {
                let ip = self.ip_repr(*dst, IpProtocol::Icmp);
                wire::emit_ipv4_icmp(
                    buf,
                    &ip,
                    &Icmpv4Repr::DstUnreachable {
                        code: *code,
                        header: quote,
                    },
                )
            }
        }
    }

    /// The headers of `seg` (see [`Self::poll_transmit_parts`]).
    fn emit_segment_headers(&mut self, i: usize, seg: &SegmentOut, buf: &mut [u8]) -> usize {
        let ident = self.next_ident();
        let tcb = self.slots[i]
            .tcb
            .as_ref()
            .expect("dispatching slot has a TCB");
        let ip = Ipv4Repr {
            src_addr: self.config.addr,
            dst_addr: *tcb.remote.ip(),
            protocol: IpProtocol::Tcp,
            payload_len: 0,
            ttl: self.config.ttl,
            ident,
            dont_frag: true,
        };
        let (a, b) = tcb.send_slices(seg.payload_offset, seg.payload_len);
        let repr = segment_repr(tcb, seg, &[]);
        wire::emit_ipv4_tcp_headers(buf, &ip, &repr, [a, b], self.config.tx_checksum_offload)
    }

    fn emit_segment(&mut self, i: usize, seg: &SegmentOut, buf: &mut [u8]) -> usize {
        let ident = self.next_ident();
        let tcb = self.slots[i]
            .tcb
            .as_ref()
            .expect("dispatching slot has a TCB");
        let ip = Ipv4Repr {
            src_addr: self.config.addr,
            dst_addr: *tcb.remote.ip(),
            protocol: IpProtocol::Tcp,
            payload_len: 0,
            ttl: self.config.ttl,
            ident,
            dont_frag: true,
        };
        let (a, b) = tcb.send_slices(seg.payload_offset, seg.payload_len);
        let payload: &[u8] = if b.is_empty() {
            a
        } else {
            self.scratch.clear();
            self.scratch.extend_from_slice(a);
            self.scratch.extend_from_slice(b);
            &self.scratch
        };
        let repr = segment_repr(tcb, seg, payload);
        wire::emit_ipv4_tcp_with(buf, &ip, &repr, self.config.tx_checksum_offload)
    }

    // ========================================================== bookkeeping

    fn insert(&mut self, tcb: Tcb, owner: Owner, _passive: bool) -> u32 {
        self.live += 1;
        let slot = Slot {
            generation: self.next_generation,
            tcb: Some(tcb),
            owner,
            in_map: false,
            in_tx: false,
            event_queued: false,
            half_open: false,
            in_tw: false,
            scheduled: None,
            mem: 0,
        };
        if let Some(idx) = self.free.pop() {
            let s = &mut self.slots[idx as usize];
            let generation = s.generation.wrapping_add(1);
            *s = Slot { generation, ..slot };
            idx
        } else {
            self.slots.push(slot);
            (self.slots.len() - 1) as u32
        }
    }

    /// After anything touched a socket: queue events, output and timers,
    /// and free it if it is finished.
    fn after_op(&mut self, idx: u32) {
        self.after_op_inner(idx, true)
    }

    fn after_op_no_tx(&mut self, idx: u32) {
        self.after_op_inner(idx, false)
    }

    fn after_op_inner(&mut self, idx: u32, may_tx: bool) {
        let i = idx as usize;
        let slot = &mut self.slots[i];
        let Some(tcb) = slot.tcb.as_mut() else { return };
        let state = tcb.state();
        // Buffer memory accounting (the budget), and memory pressure: over
        // the budget, receive windows stop growing.
        let mem = tcb.memory();
        self.buffer_mem = self.buffer_mem - slot.mem + mem;
        slot.mem = mem;
        tcb.mem_pressure = self.buffer_mem >= self.config.max_buffer_memory;
        if self.trace.active() {
            // The congestion window is recorded only by the full event log;
            // the transition history (always on) needs the state alone, and
            // reading cwnd costs a cache miss on the controller's box per
            // operation (~1 % of a new connection's CPU).
            let (cwnd, ssthresh) = if self.trace.full() {
                (tcb.cwnd(), tcb.ssthresh())
            } else {
                (0, 0)
            };
            self.trace.observe(
                idx,
                slot.generation,
                tcb.local,
                tcb.remote,
                state,
                cwnd,
                ssthresh,
            );
        }
        // Application events.
        if tcb.notify {
            tcb.notify = false;
            if slot.owner == Owner::App && !slot.event_queued {
                slot.event_queued = true;
                self.events.push_back(Event::Socket(SocketHandle {
                    index: idx,
                    generation: slot.generation,
                }));
            }
        }
        // Half-open accounting.
        if slot.half_open && state != State::SynReceived {
            slot.half_open = false;
            if let Owner::Listener(port) = slot.owner {
                if let Some(l) = self.listeners.get_mut(&port) {
                    l.half_open = l.half_open.saturating_sub(1);
                }
            }
        }
        // TIME-WAIT accounting.
        let mut evict = false;
        if state == State::TimeWait && !slot.in_tw {
            slot.in_tw = true;
            self.time_wait += 1;
            let at = tcb.poll_at().unwrap_or(Instant::ZERO);
            self.tw_queue.push_back((idx, slot.generation, at));
            evict = self.time_wait > self.config.max_time_wait;
        } else if slot.in_tw && state != State::TimeWait {
            slot.in_tw = false;
            self.time_wait -= 1;
        }
        // Output.
        if may_tx && !slot.in_tx && tcb.wants_dispatch() {
            slot.in_tx = true;
            self.tx_queue.push_back(idx);
        }
        // Timers (TIME-WAIT's own deadline is kept by `tw_queue`, and what
        // the heap holds for the slot is stale from now on).
        if tcb.time_wait_fixed() {
            slot.scheduled = None;
        } else if let Some(t) = tcb.poll_at() {
            if slot.scheduled.is_none_or(|s| t < s) {
                slot.scheduled = Some(t);
                self.timers.push(t, (idx, slot.generation));
            }
        }
        // A closed connection leaves the demux table at once...
        if state == State::Closed && slot.in_map {
            slot.in_map = false;
            let key = conn_key(tcb.local, tcb.remote);
            if self.conns.get(&key) == Some(&idx) {
                self.conns.remove(&key);
            }
        }
        // A TIME-WAIT connection nobody holds, with nothing to send, leaves
        // its slot for a compact record (`compact_time_wait`).
        let compact = state == State::TimeWait
            && slot.owner == Owner::Released
            && slot.in_map
            && !slot.in_tx
            && self.config.compact_time_wait
            && !self.trace.full();
        // ...and its slot is freed once nobody can look at it any more.
        let finished = state == State::Closed && !slot.in_tx && !tcb.wants_dispatch();
        let unowned = match slot.owner {
            Owner::Released => true,
            Owner::Listener(_) => !self.in_accept_queue(idx),
            Owner::App => false,
        };
        if finished && unowned {
            self.free_slot(idx);
        }
        if compact {
            self.compact_time_wait(idx);
        }
        if evict {
            self.recycle_oldest_time_wait();
        }
        // Stale entries (from connections gone, deadlines moved) go once
        // they outnumber the live ones (see `crate::timer`). TIME-WAIT
        // connections wait in `tw_queue`, not here.
        let owners = self.live - self.time_wait;
        if self.timers.wants_compaction(owners) {
            let slots = &self.slots;
            self.timers.compact(owners, |at, &(i, g)| {
                slots
                    .get(i as usize)
                    .is_some_and(|s| s.generation == g && s.scheduled == Some(at))
            });
        }
    }

    /// Move the TIME-WAIT connection in slot `idx` (nobody holds it, nothing
    /// to send) into a compact record and free the slot: ~150 bytes instead
    /// of the TCB's ~840 and its congestion controller, and the slot goes
    /// back, warm, to the next connection (under `ab`, 65,536 TIME-WAIT
    /// TCBs were 55 MB, and every new connection took over the coldest).
    /// The connection still counts in `live` and `time_wait`.
    fn compact_time_wait(&mut self, idx: u32) {
        let slot = &self.slots[idx as usize];
        let Some(state) = slot.tcb.as_ref().and_then(Tcb::time_wait_state) else {
            return;
        };
        let key = conn_key(state.local, state.remote);
        if self.conns.get(&key) != Some(&idx) {
            return;
        }
        let generation = self.tw_generation;
        self.tw_generation = generation.wrapping_add(1);
        let expires = state.expires;
        let rec = TwRecord {
            generation,
            trace_id: idx,
            trace_generation: slot.generation,
            state,
        };
        let r = match self.tw_free.pop() {
            Some(r) => {
                self.tw_records[r as usize] = Some(rec);
                r
            }
            None => {
                self.tw_records.push(Some(rec));
                (self.tw_records.len() - 1) as u32
            }
        };
        debug_assert!(r < TW_TAG);
        self.conns.insert(key, r | TW_TAG);
        self.tw_queue.push_back((r | TW_TAG, generation, expires));
        let slot = &mut self.slots[idx as usize];
        slot.tcb = None;
        slot.in_map = false;
        slot.in_tw = false;
        slot.scheduled = None;
        slot.event_queued = false;
        self.buffer_mem -= slot.mem;
        slot.mem = 0;
        self.free.push(idx);
    }

    /// The compact TIME-WAIT record `r` back as a TCB in a slot, to process
    /// a segment (see [`Tcb::from_time_wait`]); after it, the slot is
    /// compacted again if the connection is still in TIME-WAIT. (Its
    /// `tw_queue` entry goes to the back with the old deadline and may end
    /// it a little late: 2*MSL is a minimum.)
    fn expand_time_wait(&mut self, now: Instant, r: u32) -> u32 {
        let rec = self.take_tw_record(r).expect("mapped record");
        let st = &rec.state;
        let key = conn_key(st.local, st.remote);
        let mut tcb = Tcb::from_time_wait(now, &self.tcp, st);
        tcb.set_tso(self.tso_payload());
        let expires = st.expires;
        let idx = self.insert(tcb, Owner::Released, true);
        self.live -= 1; // the same connection, counted once
        let slot = &mut self.slots[idx as usize];
        slot.in_map = true;
        slot.in_tw = true; // already counted in `time_wait`
        let generation = slot.generation;
        self.conns.insert(key, idx);
        self.tw_queue.push_back((idx, generation, expires));
        if self.trace.active() {
            self.trace.resume(idx, generation, State::TimeWait);
        }
        idx
    }

    fn take_tw_record(&mut self, r: u32) -> Option<TwRecord> {
        let rec = self.tw_records.get_mut(r as usize).and_then(Option::take)?;
        self.tw_free.push(r);
        Some(rec)
    }

    fn tw_record_alive(&self, r: u32, generation: u32) -> bool {
        self.tw_records
            .get(r as usize)
            .and_then(Option::as_ref)
            .is_some_and(|rec| rec.generation == generation)
    }

    /// End the compact TIME-WAIT connection `r` (2*MSL over, recycled, or
    /// reopened by a new SYN).
    fn end_time_wait_record(&mut self, r: u32) {
        let Some(rec) = self.take_tw_record(r) else {
            return;
        };
        let st = &rec.state;
        let key = conn_key(st.local, st.remote);
        if self.conns.get(&key) == Some(&(r | TW_TAG)) {
            self.conns.remove(&key);
        }
        self.live -= 1;
        self.time_wait -= 1;
        self.stats.tcp_connections_closed += 1;
        if self.trace.active() {
            self.trace.transition_detached(
                rec.trace_id,
                st.local,
                st.remote,
                State::TimeWait,
                State::Closed,
            );
        }
    }

    /// End the oldest TIME-WAIT connection early (RFC 6191 allows reuse;
    /// Linux does the same past `tcp_max_tw_buckets`). Returns false if
    /// there is none.
    fn recycle_oldest_time_wait(&mut self) -> bool {
        while let Some((idx, generation, _)) = self.tw_queue.pop_front() {
            if idx & TW_TAG != 0 {
                if self.tw_record_alive(idx & !TW_TAG, generation) {
                    self.stats.tcp_time_wait_recycled += 1;
                    self.end_time_wait_record(idx & !TW_TAG);
                    return true;
                }
                continue;
            }
            let slot = &mut self.slots[idx as usize];
            if slot.generation != generation || !slot.in_tw {
                continue; // stale entry
            }
            if let Some(tcb) = slot.tcb.as_mut() {
                tcb.abort_silently();
                self.stats.tcp_time_wait_recycled += 1;
                self.after_op(idx);
                return true;
            }
        }
        false
    }

    /// Connections that count against `max_connections` (all but TIME-WAIT).
    fn active_connections(&self) -> usize {
        self.live - self.time_wait
    }

    fn in_accept_queue(&self, idx: u32) -> bool {
        let slot = &self.slots[idx as usize];
        match slot.owner {
            Owner::Listener(port) => self.listeners.get(&port).is_some_and(|l| {
                l.accept_queue
                    .iter()
                    .any(|h| h.index == idx && h.generation == slot.generation)
            }),
            _ => false,
        }
    }

    fn free_slot(&mut self, idx: u32) {
        let slot = &mut self.slots[idx as usize];
        if slot.tcb.take().is_some() {
            self.buffer_mem -= slot.mem;
            slot.mem = 0;
            self.live -= 1;
            if slot.in_tw {
                slot.in_tw = false;
                self.time_wait -= 1;
            }
            self.stats.tcp_connections_closed += 1;
            slot.scheduled = None;
            slot.event_queued = false;
            self.free.push(idx);
        }
    }

    fn tcb(&self, h: SocketHandle) -> Result<&Tcb, TcpError> {
        match self.slots.get(h.index as usize) {
            Some(s) if s.generation == h.generation && s.owner == Owner::App => {
                s.tcb.as_ref().ok_or(TcpError::InvalidHandle)
            }
            _ => Err(TcpError::InvalidHandle),
        }
    }

    fn tcb_mut(&mut self, h: SocketHandle) -> Result<&mut Tcb, TcpError> {
        match self.slots.get_mut(h.index as usize) {
            Some(s) if s.generation == h.generation && s.owner == Owner::App => {
                s.tcb.as_mut().ok_or(TcpError::InvalidHandle)
            }
            _ => Err(TcpError::InvalidHandle),
        }
    }

    /// Live connections.
    pub fn connections(&self) -> Vec<ConnInfo> {
        self.connections_iter().collect()
    }

    /// The state of every live connection (cheap: nothing is allocated,
    /// unlike [`connections`](Self::connections) with 100,000 of them).
    pub fn connection_states(&self) -> impl Iterator<Item = State> + '_ {
        self.slots
            .iter()
            .filter_map(|s| s.tcb.as_ref().map(|t| t.state()))
            .chain(self.tw_records.iter().flatten().map(|_| State::TimeWait))
    }

    /// Live connections, one by one (see [`connections`](Self::connections)).
    pub fn connections_iter(&self) -> impl Iterator<Item = ConnInfo> + '_ {
        let slots = self.slots.iter().enumerate().filter_map(|(i, s)| {
            let t = s.tcb.as_ref()?;
            Some(ConnInfo {
                handle: SocketHandle {
                    index: i as u32,
                    generation: s.generation,
                },
                local: t.local,
                remote: t.remote,
                state: t.state(),
                bytes_in: t.bytes_in,
                bytes_out: t.bytes_out,
                srtt_us: t.srtt().map(|d| d.as_micros() as u64),
                rto_us: t.rto().as_micros() as u64,
                cwnd: t.cwnd(),
                ssthresh: t.ssthresh(),
                send_window: t.send_window(),
                recv_window: t.recv_window(),
                retransmissions: t.retransmissions,
                mss: t.mss(),
                cc_phase: t.cc_phase(),
            })
        });
        // Compact TIME-WAIT records, as they were when they left their TCB.
        let records = self.tw_records.iter().flatten().map(|rec| {
            let st = &rec.state;
            ConnInfo {
                handle: SocketHandle {
                    index: rec.trace_id,
                    generation: rec.trace_generation,
                },
                local: st.local,
                remote: st.remote,
                state: State::TimeWait,
                bytes_in: st.bytes_in,
                bytes_out: st.bytes_out,
                srtt_us: (st.srtt_us != u32::MAX).then_some(u64::from(st.srtt_us)),
                rto_us: u64::from(st.rto_us),
                cwnd: st.cwnd,
                ssthresh: st.ssthresh,
                send_window: 0,
                recv_window: st.recv_window(),
                retransmissions: st.retransmissions,
                mss: st.mss,
                cc_phase: st.cc_phase,
            }
        });
        slots.chain(records)
    }

    /// Bytes held by all connection buffers (as of each connection's last
    /// activity; kept up to date incrementally).
    pub fn buffer_memory(&self) -> usize {
        self.buffer_mem
    }

    /// Give memory the stack only keeps for reuse back to the allocator:
    /// tables sized for a past peak of connections (the slot table's free
    /// tail, the demux map, queues and the timer heap) shrink when they are
    /// at most a quarter full. Call it when the stack has been idle for a
    /// while (the runtime does); it changes nothing the stack does, and
    /// costs O(live connections). Returns the bytes of table capacity
    /// released.
    pub fn trim_memory(&mut self) -> usize {
        let before = self.table_bytes();
        // The slot table: free slots at the end go (handles are indices, so
        // only the tail can); later slots there start above their generations.
        let mut len = self.slots.len();
        while len > 0 && self.slots[len - 1].tcb.is_none() && !self.slots[len - 1].in_tx {
            len -= 1;
            let g = self.slots[len].generation.wrapping_add(1);
            self.next_generation = self.next_generation.max(g);
        }
        if len < self.slots.len() {
            self.slots.truncate(len);
            let n = len as u32;
            // Free slots only: no live queue refers to them except stale entries.
            self.free.retain(|&i| i < n);
            self.tw_queue.retain(|&(i, _, _)| i & TW_TAG != 0 || i < n);
            self.timers.retain(|_, &(i, _)| i < n);
            self.events
                .retain(|e| !matches!(e, Event::Socket(h) if h.index >= n));
            for l in self.listeners.values_mut() {
                l.accept_queue.retain(|h| h.index < n);
            }
        }
        if self.time_wait == 0 {
            self.tw_queue.clear(); // only stale entries
        }
        // Compact TIME-WAIT records: free entries at the end go.
        while self.tw_records.last().is_some_and(Option::is_none) {
            self.tw_records.pop();
        }
        let nr = self.tw_records.len() as u32;
        self.tw_free.retain(|&r| r < nr);
        // At most a quarter full: shrink (amortized: it takes a fall to a
        // quarter of the capacity, and growth doubles again).
        macro_rules! shrink {
            ($($t:expr),*) => {$(
                if $t.len() < $t.capacity() / 4 {
                    $t.shrink_to_fit();
                }
            )*};
        }
        shrink!(
            self.slots,
            self.free,
            self.conns,
            self.timers,
            self.tw_queue,
            self.tw_records,
            self.tw_free,
            self.tx_queue,
            self.events,
            self.control
        );
        for l in self.listeners.values_mut() {
            shrink!(l.accept_queue);
        }
        self.scratch = Vec::new();
        // And the pool of free ring-buffer storage (crate::tcp::buffer::pool).
        before.saturating_sub(self.table_bytes())
            + crate::tcp::buffer::pool::trim()
            + crate::spare::trim::<crate::tcp::recovery::SentSeg>()
    }

    /// Bytes of free buffer storage kept for reuse (see [`Self::trim_memory`]).
    pub fn pooled_memory(&self) -> usize {
        crate::tcp::buffer::pool::stats().0
    }

    /// Bytes of capacity of the stack's tables (not the connections'
    /// buffers): what [`Stack::trim_memory`] can give back.
    pub fn table_bytes(&self) -> usize {
        use std::mem::size_of;
        self.slots.capacity() * size_of::<Slot>()
            + self.free.capacity() * size_of::<u32>()
            + self.tw_queue.capacity() * size_of::<(u32, u32, Instant)>()
            + self.tw_records.capacity() * size_of::<Option<TwRecord>>()
            + self.tw_free.capacity() * size_of::<u32>()
            // (a hash map's buckets, approximately: key, value and a control byte)
            + self.conns.capacity() * (size_of::<(ConnKey, u32)>() + 1)
            + self.events.capacity() * size_of::<Event>()
            + self.tx_queue.capacity() * size_of::<u32>()
            + self.timers.bytes()
            + self.control.capacity() * size_of::<Control>()
            + self.scratch.capacity()
    }

    /// Half-open (SYN-RECEIVED) connections of all listeners.
    pub fn half_open_count(&self) -> usize {
        self.listeners.values().map(|l| l.half_open).sum()
    }

    // ============================================================ socket API

    /// Listen for connections on `port`, keeping at most `backlog`
    /// connections that are half-open or waiting for `accept`.
    pub fn listen(&mut self, port: u16, backlog: usize) -> Result<ListenerHandle, TcpError> {
        if port == 0 || self.listeners.contains_key(&port) {
            return Err(TcpError::AddrInUse);
        }
        self.listeners.insert(
            port,
            Listener {
                backlog: backlog.max(1),
                accept_queue: VecDeque::new(),
                half_open: 0,
                last_cookie: None,
            },
        );
        Ok(ListenerHandle(port))
    }

    /// Stop listening. Connections already accepted are not affected;
    /// those waiting in the accept queue are reset.
    pub fn unlisten(&mut self, l: ListenerHandle) {
        if let Some(listener) = self.listeners.remove(&l.0) {
            for h in listener.accept_queue {
                if let Some(slot) = self.slots.get_mut(h.index as usize) {
                    if slot.generation == h.generation {
                        if let Some(t) = slot.tcb.as_mut() {
                            t.abort();
                        }
                        slot.owner = Owner::Released;
                        self.after_op(h.index);
                    }
                }
            }
        }
    }

    /// Take the next established connection from the listener's queue.
    pub fn accept(&mut self, l: ListenerHandle) -> Option<SocketHandle> {
        loop {
            let h = self.listeners.get_mut(&l.0)?.accept_queue.pop_front()?;
            let slot = &mut self.slots[h.index as usize];
            if slot.generation != h.generation || slot.tcb.is_none() {
                continue;
            }
            slot.owner = Owner::App;
            // Let the application see whatever already arrived.
            if let Some(t) = slot.tcb.as_mut() {
                t.notify = true;
            }
            self.after_op(h.index);
            return Some(h);
        }
    }

    /// Open a connection to `remote` from a chosen local port (for
    /// simultaneous open, RFC 9293 3.5 figure 8, and tests).
    pub fn connect_from(
        &mut self,
        now: Instant,
        local_port: u16,
        remote: SocketAddrV4,
    ) -> Result<SocketHandle, TcpError> {
        if self.active_connections() >= self.config.max_connections {
            return Err(TcpError::TooManyConnections);
        }
        let key: ConnKey = (u32::from(*remote.ip()), remote.port(), local_port);
        if local_port == 0 || self.conns.contains_key(&key) {
            return Err(TcpError::AddrInUse);
        }
        let local = SocketAddrV4::new(self.config.addr, local_port);
        let iss = self.new_iss(now, local, remote);
        let mut tcb = Tcb::connect(now, &self.tcp, local, remote, iss, self.link_mss());
        tcb.set_tso(self.tso_payload());
        let idx = self.insert(tcb, Owner::App, false);
        self.conns.insert(key, idx);
        self.slots[idx as usize].in_map = true;
        self.after_op(idx);
        Ok(SocketHandle {
            index: idx,
            generation: self.slots[idx as usize].generation,
        })
    }

    /// Open a connection to `remote` (active open) from an ephemeral port.
    pub fn connect(
        &mut self,
        now: Instant,
        remote: SocketAddrV4,
    ) -> Result<SocketHandle, TcpError> {
        if self.active_connections() >= self.config.max_connections {
            return Err(TcpError::TooManyConnections);
        }
        let range = (u16::MAX - EPHEMERAL_FIRST) as u32 + 1;
        let mut port = None;
        for _ in 0..range {
            let p = self.next_port;
            self.next_port = if p == u16::MAX {
                EPHEMERAL_FIRST
            } else {
                p + 1
            };
            let key: ConnKey = (u32::from(*remote.ip()), remote.port(), p);
            if !self.conns.contains_key(&key) && !self.listeners.contains_key(&p) {
                port = Some(p);
                break;
            }
        }
        let port = port.ok_or(TcpError::NoPortsAvailable)?;
        let local = SocketAddrV4::new(self.config.addr, port);
        let iss = self.new_iss(now, local, remote);
        let mut tcb = Tcb::connect(now, &self.tcp, local, remote, iss, self.link_mss());
        tcb.set_tso(self.tso_payload());
        let idx = self.insert(tcb, Owner::App, false);
        self.conns
            .insert((u32::from(*remote.ip()), remote.port(), port), idx);
        self.slots[idx as usize].in_map = true;
        self.after_op(idx);
        Ok(SocketHandle {
            index: idx,
            generation: self.slots[idx as usize].generation,
        })
    }

    /// Queue bytes for sending; returns how many were taken (maybe fewer than given).
    /// `Err(WouldBlock)` when the send buffer is full.
    pub fn send(&mut self, h: SocketHandle, data: &[u8]) -> Result<usize, TcpError> {
        let r = self.tcb_mut(h)?.send(data);
        self.after_op(h.index);
        r
    }

    /// Queue data written in place: `fill` gets (part of) the free space of
    /// the send buffer, at most `max` bytes, and returns how many it wrote.
    /// Saves the copy through an application buffer (`send`) for data the
    /// application generates (an HTTP response body).
    pub fn send_with(
        &mut self,
        h: SocketHandle,
        max: usize,
        fill: impl FnOnce(&mut [u8]) -> usize,
    ) -> Result<usize, TcpError> {
        let r = self.tcb_mut(h)?.send_with(max, fill);
        self.after_op(h.index);
        r
    }

    /// Free space in the send buffer (0 once the write side is closed).
    pub fn send_capacity(&self, h: SocketHandle) -> usize {
        self.tcb(h).map(|t| t.send_capacity()).unwrap_or(0)
    }

    /// Bytes queued for sending and not yet acknowledged.
    pub fn send_queued(&self, h: SocketHandle) -> usize {
        self.tcb(h).map(|t| t.send_queued()).unwrap_or(0)
    }

    /// Read received bytes. `Ok(n > 0)`: data; `Ok(0)`: end of stream (peer FIN);
    /// `Err(WouldBlock)`: nothing yet; other errors: the connection failed.
    pub fn recv(&mut self, h: SocketHandle, buf: &mut [u8]) -> Result<usize, TcpError> {
        let r = self.tcb_mut(h)?.recv(buf);
        self.after_op(h.index);
        r
    }

    /// Bytes waiting to be read.
    pub fn recv_queued(&self, h: SocketHandle) -> usize {
        self.tcb(h).map(|t| t.recv_queued()).unwrap_or(0)
    }

    /// Close the write side (FIN after the queued bytes); reading goes on.
    pub fn shutdown(&mut self, h: SocketHandle) -> Result<(), TcpError> {
        let r = self.tcb_mut(h)?.shutdown();
        self.after_op(h.index);
        r
    }

    /// Graceful close and release of the handle. The connection finishes its
    /// close (FIN, TIME-WAIT) on its own; unread received data makes it an
    /// abort (RST), as RFC 1122 4.2.2.13 allows.
    pub fn close(&mut self, h: SocketHandle) {
        if let Ok(t) = self.tcb_mut(h) {
            t.release();
            self.slots[h.index as usize].owner = Owner::Released;
            self.after_op(h.index);
        }
    }

    /// Abort with RST and release the handle.
    pub fn abort(&mut self, h: SocketHandle) {
        if let Ok(t) = self.tcb_mut(h) {
            t.abort();
            t.orphaned = true;
            self.slots[h.index as usize].owner = Owner::Released;
            self.after_op(h.index);
        }
    }

    pub fn readiness(&self, h: SocketHandle) -> Readiness {
        match self.tcb(h) {
            Ok(t) => t.readiness(),
            Err(e) => Readiness {
                closed: true,
                error: Some(e),
                ..Default::default()
            },
        }
    }

    pub fn state(&self, h: SocketHandle) -> Option<State> {
        self.tcb(h).ok().map(|t| t.state())
    }

    /// Turn Nagle's algorithm off (`true`) or on.
    pub fn set_nodelay(&mut self, h: SocketHandle, nodelay: bool) {
        if let Ok(t) = self.tcb_mut(h) {
            t.nagle = !nodelay;
        }
        self.after_op(h.index);
    }

    /// Keepalive idle time (`None`: off).
    pub fn set_keepalive(&mut self, now: Instant, h: SocketHandle, idle: Option<Duration>) {
        if let Ok(t) = self.tcb_mut(h) {
            t.set_keepalive(now, idle);
        }
        self.after_op(h.index);
    }

    pub fn local_addr(&self, h: SocketHandle) -> Option<SocketAddrV4> {
        self.tcb(h).ok().map(|t| t.local)
    }

    pub fn remote_addr(&self, h: SocketHandle) -> Option<SocketAddrV4> {
        self.tcb(h).ok().map(|t| t.remote)
    }

    /// A snapshot of one connection.
    pub fn info(&self, h: SocketHandle) -> Option<ConnInfo> {
        self.tcb(h).ok()?;
        self.connections().into_iter().find(|c| c.handle == h)
    }

    /// Next thing for the application to look at.
    pub fn poll_event(&mut self) -> Option<Event> {
        let ev = self.events.pop_front()?;
        if let Event::Socket(h) = ev {
            if let Some(slot) = self.slots.get_mut(h.index as usize) {
                if slot.generation == h.generation {
                    slot.event_queued = false;
                }
            }
        }
        Some(ev)
    }

    /// Draw from the stack's seeded generator (for applications that want
    /// reproducible randomness tied to `--seed`).
    pub fn rng(&mut self) -> &mut Rng {
        &mut self.rng
    }
}

fn ip_drop_reason(e: WireError) -> DropReason {
    match e {
        WireError::Truncated => DropReason::Truncated,
        WireError::BadVersion => DropReason::BadVersion,
        WireError::BadHeaderLen => DropReason::BadHeaderLen,
        WireError::BadTotalLen => DropReason::BadTotalLen,
        WireError::BadChecksum => DropReason::BadIpChecksum,
        _ => DropReason::Truncated,
    }
}
