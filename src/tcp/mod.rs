//! TCP (RFC 9293): the state machine, windows, retransmission, congestion
//! control, and the types of the socket API.
//!
//! The socket API itself is on [`crate::iface::Stack`] (`listen`, `accept`,
//! `connect`, `send`, `recv`, `shutdown`, `close`, `abort`, `readiness`,
//! `poll_event`): HTTP and WebSocket reach TCP through it and nothing else.

pub mod buffer;
pub mod congestion;
pub mod isn;
pub mod recovery;
pub mod rtt;
pub mod socket;

use core::fmt;
use core::time::Duration;

/// A connection's handle. Index plus generation, so a stale handle to a
/// freed-and-reused slot is refused rather than aliased.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SocketHandle {
    pub(crate) index: u32,
    pub(crate) generation: u32,
}

impl SocketHandle {
    /// A stable small number for display (the slot index).
    pub fn id(&self) -> u32 {
        self.index
    }
}

impl fmt::Debug for SocketHandle {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "#{}.{}", self.index, self.generation)
    }
}

/// A listening socket's handle.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct ListenerHandle(pub(crate) u16);

impl ListenerHandle {
    pub fn port(&self) -> u16 {
        self.0
    }
}

/// The eleven states of RFC 9293 section 3.3.2.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum State {
    Closed,
    Listen,
    SynSent,
    SynReceived,
    Established,
    FinWait1,
    FinWait2,
    CloseWait,
    Closing,
    LastAck,
    TimeWait,
}

impl State {
    pub fn name(&self) -> &'static str {
        match self {
            State::Closed => "CLOSED",
            State::Listen => "LISTEN",
            State::SynSent => "SYN-SENT",
            State::SynReceived => "SYN-RECEIVED",
            State::Established => "ESTABLISHED",
            State::FinWait1 => "FIN-WAIT-1",
            State::FinWait2 => "FIN-WAIT-2",
            State::CloseWait => "CLOSE-WAIT",
            State::Closing => "CLOSING",
            State::LastAck => "LAST-ACK",
            State::TimeWait => "TIME-WAIT",
        }
    }
    /// RFC 9293: the synchronized states are ESTABLISHED and later.
    pub fn is_synchronized(&self) -> bool {
        !matches!(
            self,
            State::Closed | State::Listen | State::SynSent | State::SynReceived
        )
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Errors of the socket API. Each names what went wrong.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
pub enum TcpError {
    #[error("operation would block")]
    WouldBlock,
    #[error("invalid or stale socket handle")]
    InvalidHandle,
    #[error("connection refused (RST in reply to SYN)")]
    ConnectionRefused,
    #[error("connection reset by peer")]
    ConnectionReset,
    #[error("connection aborted: retransmission limit reached")]
    TimedOut,
    #[error("connection aborted locally")]
    Aborted,
    #[error("socket is not connected / not in a state that allows this")]
    NotConnected,
    #[error("the write side was already shut down")]
    WriteClosed,
    #[error("port already in use")]
    AddrInUse,
    #[error("no free ephemeral port")]
    NoPortsAvailable,
    #[error("connection limit reached")]
    TooManyConnections,
}

/// What an application may do with a socket now.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Readiness {
    /// `recv` would return data, or EOF (`Ok(0)`), or an error.
    pub readable: bool,
    /// `send` would accept at least one byte.
    pub writable: bool,
    /// The peer sent FIN and every byte before it has been read.
    pub read_closed: bool,
    /// The connection is fully closed (normally or by error); the handle
    /// should be `close`d to release it.
    pub closed: bool,
    /// Why the connection ended abnormally, if it did.
    pub error: Option<TcpError>,
}

/// Something the application should look at. Delivered by
/// `Stack::poll_event`; a handle may appear more than once.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Event {
    /// A listener has a connection ready to `accept`.
    Incoming(ListenerHandle),
    /// The socket's readiness may have changed (data, window, FIN, RST).
    Socket(SocketHandle),
}

/// Which congestion controller a socket uses.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum CongestionAlgorithm {
    /// RFC 5681 slow start + congestion avoidance (Reno arithmetic).
    NewReno,
    /// RFC 9438 CUBIC (the default, as in Linux).
    #[default]
    Cubic,
}

impl CongestionAlgorithm {
    pub fn name(&self) -> &'static str {
        match self {
            CongestionAlgorithm::NewReno => "newreno",
            CongestionAlgorithm::Cubic => "cubic",
        }
    }
}

/// Per-socket TCP settings. Defaults follow the RFCs.
#[derive(Clone, Debug)]
pub struct TcpConfig {
    /// Receive buffer (bytes): the largest window a connection may
    /// advertise. The window starts at `recv_buffer_initial` and grows
    /// towards this with the measured throughput (receive-buffer
    /// auto-tuning, like Linux's tcp_rcv_space_adjust).
    pub recv_buffer: usize,
    /// Initial receive window target (bytes, capped by `recv_buffer`).
    pub recv_buffer_initial: usize,
    /// Send buffer (bytes).
    pub send_buffer: usize,
    /// Our MSS when the device does not dictate a smaller one.
    pub mss: u16,
    /// Nagle's algorithm (RFC 896 / RFC 1122 4.2.3.4) on new sockets.
    pub nagle: bool,
    /// Delayed-ACK timeout (RFC 1122 4.2.3.2: at most 500 ms; RFC 9293 says 200 ms).
    pub delayed_ack: Duration,
    /// Lower bound of the RTO (RFC 6298 2.4 says 1 s; Linux uses 200 ms).
    pub rto_min: Duration,
    /// Upper bound of the RTO (RFC 6298 2.5: at least 60 s).
    pub rto_max: Duration,
    /// RTO before any RTT sample (RFC 6298 2.1: 1 s).
    pub rto_initial: Duration,
    /// Retransmissions of one segment before the connection is aborted (R2).
    pub max_retries: u32,
    /// Retransmissions of a SYN before connect fails.
    pub max_syn_retries: u32,
    /// Maximum segment lifetime; TIME-WAIT lasts 2*MSL.
    pub msl: Duration,
    /// Keepalive idle time; `None` = off (RFC 1122 4.2.3.6: off by default).
    pub keepalive: Option<Duration>,
    /// Interval between keepalive probes and how many unanswered probes abort.
    pub keepalive_interval: Duration,
    pub keepalive_probes: u32,
    /// Offer and accept window scaling (RFC 7323).
    pub window_scaling: bool,
    /// Offer and accept timestamps (RFC 7323).
    pub timestamps: bool,
    /// Offer and accept SACK (RFC 2018).
    pub sack: bool,
    /// Congestion controller for new sockets.
    pub congestion: CongestionAlgorithm,
    /// Time a user-timeout-less connection may sit in FIN-WAIT-2 after the
    /// application closed it (Linux's tcp_fin_timeout).
    pub fin_wait2_timeout: Duration,
    /// RFC 5961 challenge ACKs allowed per second (all connections).
    pub challenge_ack_limit: u32,
}

impl Default for TcpConfig {
    fn default() -> Self {
        TcpConfig {
            recv_buffer: 1024 * 1024,
            recv_buffer_initial: 64 * 1024,
            send_buffer: 1024 * 1024,
            mss: 1460,
            nagle: true,
            delayed_ack: Duration::from_millis(40),
            rto_min: Duration::from_millis(200),
            rto_max: Duration::from_secs(60),
            rto_initial: Duration::from_secs(1),
            max_retries: 15,
            max_syn_retries: 6,
            msl: Duration::from_secs(30),
            keepalive: None,
            keepalive_interval: Duration::from_secs(75),
            keepalive_probes: 9,
            window_scaling: true,
            timestamps: true,
            sack: true,
            congestion: CongestionAlgorithm::Cubic,
            fin_wait2_timeout: Duration::from_secs(60),
            challenge_ack_limit: 1000,
        }
    }
}
