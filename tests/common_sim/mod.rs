//! Shared helpers for the simulated-network tests: two ustack stacks over a
//! [`World`], and a bidirectional transfer application that checks
//! byte-exact delivery and a clean close.
#![allow(dead_code)]

pub mod script;

use std::net::{Ipv4Addr, SocketAddrV4};
use ustack::iface::{Config, Stack};
use ustack::phy::sim::{LinkConfig, World};
use ustack::rand::Rng;
use ustack::tcp::{SocketHandle, TcpError};
use ustack::time::{Duration, Instant};

pub const A_ADDR: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
pub const B_ADDR: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
pub const PORT: u16 = 80;

pub type Pair = World<Stack, Stack>;

/// A stack config with a short MSL so TIME-WAIT ends quickly in tests.
pub fn config(addr: Ipv4Addr) -> Config {
    let mut c = Config::new(addr);
    c.tcp.msl = Duration::from_secs(1);
    c
}

pub fn pair_with(ca: Config, cb: Config, ab: LinkConfig, ba: LinkConfig, seed: u64) -> Pair {
    let a = Stack::new(ca, seed.wrapping_mul(2).wrapping_add(1));
    let b = Stack::new(cb, seed.wrapping_mul(2).wrapping_add(2));
    World::new(a, b, ab, ba, seed)
}

pub fn pair(link: LinkConfig, seed: u64) -> Pair {
    pair_with(config(A_ADDR), config(B_ADDR), link.clone(), link, seed)
}

/// Deterministic pseudo-random payload.
pub fn payload(seed: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    Rng::derive(seed, "payload").fill(&mut v);
    v
}

/// One side of a bidirectional transfer: send `to_send`, shut down the write
/// side, read until EOF, then close.
#[derive(Debug, Default)]
pub struct Side {
    pub handle: Option<SocketHandle>,
    pub to_send: Vec<u8>,
    pub sent: usize,
    pub received: Vec<u8>,
    pub shut: bool,
    pub eof: bool,
    pub closed: bool,
    pub error: Option<TcpError>,
    /// An echo server: everything received is queued for sending back, and
    /// the write side is shut only after the peer's EOF.
    pub echo: bool,
}

impl Side {
    pub fn new(to_send: Vec<u8>) -> Side {
        Side {
            to_send,
            ..Default::default()
        }
    }

    /// Do whatever the socket allows now.
    pub fn pump(&mut self, st: &mut Stack) {
        let Some(h) = self.handle else { return };
        if self.closed {
            return;
        }
        while self.sent < self.to_send.len() {
            match st.send(h, &self.to_send[self.sent..]) {
                Ok(n) => self.sent += n,
                Err(TcpError::WouldBlock) => break,
                Err(e) => {
                    self.error = Some(e);
                    break;
                }
            }
        }
        if self.sent == self.to_send.len()
            && !self.shut
            && self.error.is_none()
            && (self.eof || !self.echo)
        {
            match st.shutdown(h) {
                Ok(()) => self.shut = true,
                Err(e) => self.error = Some(e),
            }
        }
        let mut buf = [0u8; 16384];
        while !self.eof {
            match st.recv(h, &mut buf) {
                Ok(0) => self.eof = true,
                Ok(n) => {
                    self.received.extend_from_slice(&buf[..n]);
                    if self.echo {
                        self.to_send.extend_from_slice(&buf[..n]);
                    }
                }
                Err(TcpError::WouldBlock) => break,
                Err(e) => {
                    self.error = Some(e);
                    break;
                }
            }
        }
        while self.sent < self.to_send.len() && self.error.is_none() {
            match st.send(h, &self.to_send[self.sent..]) {
                Ok(n) => self.sent += n,
                Err(TcpError::WouldBlock) => break,
                Err(e) => self.error = Some(e),
            }
        }
        if self.sent == self.to_send.len() && !self.shut && self.error.is_none() && self.eof {
            match st.shutdown(h) {
                Ok(()) => self.shut = true,
                Err(e) => self.error = Some(e),
            }
        }
        if self.eof && self.shut && !self.closed {
            st.close(h);
            self.closed = true;
        }
    }
}

/// A bidirectional transfer between `a` (client) and `b` (server).
pub struct Transfer {
    pub client: Side,
    pub server: Side,
    pub listener: ustack::tcp::ListenerHandle,
}

impl Transfer {
    pub fn start(w: &mut Pair, a_to_b: Vec<u8>, b_to_a: Vec<u8>) -> Transfer {
        let listener = w.b.listen(PORT, 64).expect("listen");
        let mut client = Side::new(a_to_b);
        client.handle = Some(
            w.a.connect(w.now, SocketAddrV4::new(B_ADDR, PORT))
                .expect("connect"),
        );
        Transfer {
            client,
            server: Side::new(b_to_a),
            listener,
        }
    }

    pub fn step(&mut self, w: &mut Pair) {
        if self.server.handle.is_none() {
            self.server.handle = w.b.accept(self.listener);
        }
        while w.a.poll_event().is_some() {}
        while w.b.poll_event().is_some() {}
        self.client.pump(&mut w.a);
        self.server.pump(&mut w.b);
    }

    pub fn done(&self) -> bool {
        (self.client.closed && self.server.closed)
            || self.client.error.is_some()
            || self.server.error.is_some()
    }

    /// Run to completion (both closed and both stacks empty) or `limit`.
    /// Returns a description of what went wrong, if anything.
    pub fn run(&mut self, w: &mut Pair, limit: Duration) -> Result<(), String> {
        let deadline = w.now + limit;
        let finished = w.run_until(deadline, |w| {
            self.step(w);
            self.done() && w.a.connection_count() == 0 && w.b.connection_count() == 0
        });
        let report = format!(
            "t={:?} client: sent {}/{} recv {}/{} shut {} eof {} closed {} err {:?}; \
             server: sent {}/{} recv {}/{} shut {} eof {} closed {} err {:?}; conns a={} b={}; \
             a={:?} b={:?}; link ab {:?} ba {:?}",
            w.now,
            self.client.sent,
            self.client.to_send.len(),
            self.client.received.len(),
            self.server.to_send.len(),
            self.client.shut,
            self.client.eof,
            self.client.closed,
            self.client.error,
            self.server.sent,
            self.server.to_send.len(),
            self.server.received.len(),
            self.client.to_send.len(),
            self.server.shut,
            self.server.eof,
            self.server.closed,
            self.server.error,
            w.a.connection_count(),
            w.b.connection_count(),
            w.a.connections()
                .iter()
                .map(|c| (c.state, c.snd_info()))
                .collect::<Vec<_>>(),
            w.b.connections()
                .iter()
                .map(|c| (c.state, c.snd_info()))
                .collect::<Vec<_>>(),
            w.ab.stats,
            w.ba.stats,
        );
        if !finished {
            return Err(format!("did not finish: {report}"));
        }
        if self.client.error.is_some() || self.server.error.is_some() {
            return Err(format!("socket error: {report}"));
        }
        if self.client.received != self.server.to_send {
            return Err(format!("server->client bytes differ: {report}"));
        }
        if self.server.received != self.client.to_send {
            return Err(format!("client->server bytes differ: {report}"));
        }
        Ok(())
    }
}

/// Short per-connection summary used in failure reports.
pub trait SndInfo {
    fn snd_info(&self) -> String;
}

impl SndInfo for ustack::iface::ConnInfo {
    fn snd_info(&self) -> String {
        format!(
            "in {} out {} cwnd {} swnd {} rwnd {} rto {}us rtx {}",
            self.bytes_in,
            self.bytes_out,
            self.cwnd,
            self.send_window,
            self.recv_window,
            self.rto_us,
            self.retransmissions
        )
    }
}

/// Time `t` seconds after the origin.
pub fn secs(t: u64) -> Instant {
    Instant::from_secs(t)
}
