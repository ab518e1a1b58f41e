//! The host: one IPv4 address on one link.
//!
//! [`Stack`] validates incoming IPv4 packets, reassembles fragments, answers
//! ICMP echo, demultiplexes TCP segments to connections, answers segments for
//! closed ports with RST (and other protocols with ICMP protocol-unreachable),
//! and counts every drop with its reason ([`stats`]).
//!
//! ## Calling order (sans-IO)
//! 1. `handle_packet(now, bytes)` for every packet the device delivered;
//! 2. `handle_timeout(now)` when `now >= poll_at()`;
//! 3. the application uses the socket API (`poll_event`, `accept`, `recv`, `send`, ...);
//! 4. `poll_transmit(now, buf)` until it returns `None`, sending each packet.
//!
//! Then sleep until `poll_at()` or until the device has input.

pub mod fragment;
pub mod stats;

use crate::tcp::{Event, ListenerHandle, Readiness, SocketHandle, State, TcpConfig, TcpError};
use crate::time::Instant;
use std::net::{Ipv4Addr, SocketAddrV4};
pub use stats::{DropReason, Stats};

/// Host-wide settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// The stack's own address.
    pub addr: Ipv4Addr,
    /// Largest IPv4 packet the link carries.
    pub mtu: usize,
    /// Largest packet handed to the device when it segments for us (TSO).
    pub max_tso_size: Option<usize>,
    /// Defaults for new TCP sockets.
    pub tcp: TcpConfig,
    /// Maximum simultaneous TCP connections (all states but LISTEN).
    pub max_connections: usize,
    /// Memory for IPv4 fragment reassembly (bytes, all datagrams).
    pub max_fragment_memory: usize,
    /// Reassembly timeout (RFC 791 suggests 15 s; Linux uses 30 s).
    pub fragment_timeout: core::time::Duration,
    /// TTL of packets we originate.
    pub ttl: u8,
}

impl Config {
    pub fn new(addr: Ipv4Addr) -> Self {
        Config {
            addr,
            mtu: 1500,
            max_tso_size: None,
            tcp: TcpConfig::default(),
            max_connections: 200_000,
            max_fragment_memory: 4 * 1024 * 1024,
            fragment_timeout: core::time::Duration::from_secs(30),
            ttl: 64,
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
}

/// The whole stack: interface plus TCP connections.
pub struct Stack {
    config: Config,
    stats: Stats,
    #[allow(dead_code)]
    seed: u64,
}

impl Stack {
    pub fn new(config: Config, seed: u64) -> Stack {
        Stack { config, stats: Stats::default(), seed }
    }
    pub fn config(&self) -> &Config {
        &self.config
    }
    pub fn stats(&self) -> &Stats {
        &self.stats
    }
    /// Input: one IPv4 packet from the device.
    pub fn handle_packet(&mut self, _now: Instant, packet: &[u8]) {
        self.stats.packets_in += 1;
        self.stats.bytes_in += packet.len() as u64;
    }
    /// Run expired timers.
    pub fn handle_timeout(&mut self, _now: Instant) {}
    /// Output: write the next packet into `buf` (at least `mtu` bytes, or
    /// `max_tso_size` with TSO) and return its length.
    #[must_use]
    pub fn poll_transmit(&mut self, _now: Instant, _buf: &mut [u8]) -> Option<usize> {
        None
    }
    /// When `handle_timeout` must next be called.
    pub fn poll_at(&self) -> Option<Instant> {
        None
    }
    /// Live connections.
    pub fn connections(&self) -> Vec<ConnInfo> {
        Vec::new()
    }

    // ---- socket API ----
    pub fn listen(&mut self, port: u16, _backlog: usize) -> Result<ListenerHandle, TcpError> {
        Ok(ListenerHandle(port))
    }
    pub fn accept(&mut self, _l: ListenerHandle) -> Option<SocketHandle> {
        None
    }
    pub fn connect(&mut self, _now: Instant, _remote: SocketAddrV4) -> Result<SocketHandle, TcpError> {
        Err(TcpError::NotConnected)
    }
    /// Queue bytes for sending; returns how many were taken (maybe fewer than given).
    /// `Err(WouldBlock)` when the send buffer is full.
    pub fn send(&mut self, _h: SocketHandle, _data: &[u8]) -> Result<usize, TcpError> {
        Err(TcpError::InvalidHandle)
    }
    /// Free space in the send buffer.
    pub fn send_capacity(&self, _h: SocketHandle) -> usize {
        0
    }
    /// Read received bytes. `Ok(n > 0)`: data; `Ok(0)`: end of stream (peer FIN);
    /// `Err(WouldBlock)`: nothing yet; other errors: the connection failed.
    pub fn recv(&mut self, _h: SocketHandle, _buf: &mut [u8]) -> Result<usize, TcpError> {
        Err(TcpError::InvalidHandle)
    }
    /// Close the write side (FIN after the queued bytes); reading goes on.
    pub fn shutdown(&mut self, _h: SocketHandle) -> Result<(), TcpError> {
        Err(TcpError::InvalidHandle)
    }
    /// Graceful close and release of the handle. The connection finishes its
    /// close (FIN, TIME-WAIT) on its own; unread received data makes it an abort (RST),
    /// as RFC 1122 4.2.2.13 allows.
    pub fn close(&mut self, _h: SocketHandle) {}
    /// Abort with RST and release the handle.
    pub fn abort(&mut self, _h: SocketHandle) {}
    pub fn readiness(&self, _h: SocketHandle) -> Readiness {
        Readiness::default()
    }
    pub fn state(&self, _h: SocketHandle) -> Option<State> {
        None
    }
    pub fn set_nodelay(&mut self, _h: SocketHandle, _nodelay: bool) {}
    pub fn set_keepalive(&mut self, _h: SocketHandle, _idle: Option<core::time::Duration>) {}
    pub fn local_addr(&self, _h: SocketHandle) -> Option<SocketAddrV4> {
        None
    }
    pub fn remote_addr(&self, _h: SocketHandle) -> Option<SocketAddrV4> {
        None
    }
    /// Next thing for the application to look at.
    pub fn poll_event(&mut self) -> Option<Event> {
        None
    }
}
