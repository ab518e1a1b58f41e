//! Interoperability with smoltcp (an independent TCP implementation) over
//! the simulated link: ustack server <-> smoltcp client and smoltcp server
//! <-> ustack client, ~1 MB each way at the same time, with and without
//! loss, byte-exact, with a clean close.

mod common_sim;
use common_sim::{payload, Side};
use smoltcp::iface::{Config as SmolConfig, Interface, SocketHandle as SmolHandle, SocketSet};
use smoltcp::phy::{Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::socket::tcp;
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr};
use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddrV4};
use ustack::iface::{Config, Stack};
use ustack::phy::sim::{Endpoint, LinkConfig, World};
use ustack::time::{Duration, Instant};

const US: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const SMOL: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

fn smol_now(t: Instant) -> smoltcp::time::Instant {
    smoltcp::time::Instant::from_micros(t.total_micros() as i64)
}

/// smoltcp's view of the simulated link: two packet queues.
#[derive(Default)]
struct QueueDevice {
    rx: VecDeque<Vec<u8>>,
    tx: VecDeque<Vec<u8>>,
}

struct Rx(Vec<u8>);
struct Tx<'a>(&'a mut VecDeque<Vec<u8>>);

impl RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = vec![0u8; len];
        let r = f(&mut buf);
        self.0.push_back(buf);
        r
    }
}

impl Device for QueueDevice {
    type RxToken<'a> = Rx;
    type TxToken<'a> = Tx<'a>;
    fn receive(&mut self, _t: smoltcp::time::Instant) -> Option<(Rx, Tx<'_>)> {
        let p = self.rx.pop_front()?;
        Some((Rx(p), Tx(&mut self.tx)))
    }
    fn transmit(&mut self, _t: smoltcp::time::Instant) -> Option<Tx<'_>> {
        Some(Tx(&mut self.tx))
    }
    fn capabilities(&self) -> DeviceCapabilities {
        let mut c = DeviceCapabilities::default();
        c.medium = Medium::Ip;
        c.max_transmission_unit = 1500;
        c
    }
}

/// A smoltcp host with one TCP socket, as a sim [`Endpoint`].
struct Smol {
    iface: Interface,
    dev: QueueDevice,
    sockets: SocketSet<'static>,
    sock: SmolHandle,
    next: Option<Instant>,
    now: Instant,
}

impl Smol {
    fn new(seed: u64) -> Smol {
        let mut dev = QueueDevice::default();
        let mut cfg = SmolConfig::new(HardwareAddress::Ip);
        cfg.random_seed = seed;
        let mut iface = Interface::new(cfg, &mut dev, smol_now(Instant::ZERO));
        iface.update_ip_addrs(|a| {
            a.push(IpCidr::new(IpAddress::from(SMOL), 24)).unwrap();
        });
        let mut sockets = SocketSet::new(Vec::new());
        let s = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; 65535]),
            tcp::SocketBuffer::new(vec![0; 65535]),
        );
        let sock = sockets.add(s);
        Smol {
            iface,
            dev,
            sockets,
            sock,
            next: None,
            now: Instant::ZERO,
        }
    }
    fn poll(&mut self, now: Instant) {
        self.now = now;
        self.iface
            .poll(smol_now(now), &mut self.dev, &mut self.sockets);
        self.next = self
            .iface
            .poll_at(smol_now(now), &self.sockets)
            .map(|t| Instant::from_micros(t.total_micros().max(0) as u64));
    }
    fn socket(&mut self) -> &mut tcp::Socket<'static> {
        self.sockets.get_mut::<tcp::Socket>(self.sock)
    }
}

impl Endpoint for Smol {
    fn handle_packet(&mut self, now: Instant, packet: &[u8]) {
        self.dev.rx.push_back(packet.to_vec());
        self.poll(now);
    }
    fn handle_timeout(&mut self, now: Instant) {
        self.poll(now);
    }
    fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        if self.dev.tx.is_empty() {
            self.poll(now);
        }
        let p = self.dev.tx.pop_front()?;
        buf[..p.len()].copy_from_slice(&p);
        Some(p.len())
    }
    fn poll_at(&self) -> Option<Instant> {
        self.next
    }
}

/// The smoltcp side of a transfer: send everything, close, read to EOF.
struct SmolApp {
    to_send: Vec<u8>,
    sent: usize,
    received: Vec<u8>,
    closed: bool,
    eof: bool,
}

impl SmolApp {
    fn pump(&mut self, s: &mut Smol) {
        let now = s.now;
        let sock = s.socket();
        if sock.can_send() && self.sent < self.to_send.len() {
            self.sent += sock.send_slice(&self.to_send[self.sent..]).unwrap_or(0);
        }
        if self.sent == self.to_send.len() && !self.closed && sock.may_send() {
            sock.close();
            self.closed = true;
        }
        while sock.can_recv() {
            let mut buf = [0u8; 8192];
            match sock.recv_slice(&mut buf) {
                Ok(n) if n > 0 => self.received.extend_from_slice(&buf[..n]),
                _ => break,
            }
        }
        if !self.received.is_empty() && !sock.may_recv() && sock.state() != tcp::State::Listen {
            self.eof = true;
        }
        if !sock.may_recv()
            && matches!(
                sock.state(),
                tcp::State::TimeWait | tcp::State::Closed | tcp::State::LastAck
            )
        {
            self.eof = true;
        }
        s.poll(now);
    }
}

fn link(loss: f64) -> LinkConfig {
    LinkConfig {
        latency: Duration::from_millis(10),
        loss,
        bandwidth_bps: Some(50_000_000),
        queue_bytes: 128 * 1024,
        ..Default::default()
    }
}

fn ustack_config() -> Config {
    let mut c = Config::new(US);
    c.tcp.msl = Duration::from_secs(1);
    c
}

/// ustack listens, smoltcp connects.
fn ustack_server(loss: f64, seed: u64) {
    let n = 1_000_000;
    let mut w = World::new(
        Stack::new(ustack_config(), seed),
        Smol::new(seed),
        link(loss),
        link(loss),
        seed,
    );
    let l = w.a.listen(80, 8).unwrap();
    {
        let cx = w.b.iface.context();
        let sock = w.b.sockets.get_mut::<tcp::Socket>(w.b.sock);
        sock.connect(cx, (IpAddress::from(US), 80), 49500).unwrap();
    }
    w.b.poll(Instant::ZERO);
    let mut server = Side::new(payload(seed, n));
    let mut client = SmolApp {
        to_send: payload(seed + 1, n),
        sent: 0,
        received: Vec::new(),
        closed: false,
        eof: false,
    };
    let ok = w.run_until(Instant::from_secs(3600), |w| {
        if server.handle.is_none() {
            server.handle = w.a.accept(l);
        }
        while w.a.poll_event().is_some() {}
        server.pump(&mut w.a);
        client.pump(&mut w.b);
        server.closed && client.eof && client.closed && w.a.connection_count() == 0
    });
    let state = w.b.socket().state();
    assert!(ok, "seed {seed} loss {loss}: did not finish at {:?}: server sent {} recv {} err {:?}; smoltcp sent {} recv {} state {state}; ustack conns {:?}",
        w.now, server.sent, server.received.len(), server.error, client.sent, client.received.len(), w.a.connections().iter().map(|c| c.state).collect::<Vec<_>>());
    assert_eq!(server.error, None);
    assert!(
        server.received == client.to_send,
        "smoltcp -> ustack bytes differ"
    );
    assert!(
        client.received == server.to_send,
        "ustack -> smoltcp bytes differ"
    );
    assert!(
        matches!(state, tcp::State::TimeWait | tcp::State::Closed),
        "smoltcp ends in {state}"
    );
}

/// smoltcp listens, ustack connects.
fn ustack_client(loss: f64, seed: u64) {
    let n = 1_000_000;
    let mut w = World::new(
        Stack::new(ustack_config(), seed),
        Smol::new(seed),
        link(loss),
        link(loss),
        seed,
    );
    w.b.socket().listen(8080).unwrap();
    w.b.poll(Instant::ZERO);
    let mut client = Side::new(payload(seed, n));
    client.handle = Some(w.a.connect(w.now, SocketAddrV4::new(SMOL, 8080)).unwrap());
    let mut server = SmolApp {
        to_send: payload(seed + 1, n),
        sent: 0,
        received: Vec::new(),
        closed: false,
        eof: false,
    };
    let ok = w.run_until(Instant::from_secs(3600), |w| {
        while w.a.poll_event().is_some() {}
        client.pump(&mut w.a);
        server.pump(&mut w.b);
        client.closed && server.eof && server.closed && w.a.connection_count() == 0
    });
    let state = w.b.socket().state();
    assert!(ok, "seed {seed} loss {loss}: did not finish at {:?}: ustack sent {} recv {} err {:?}; smoltcp sent {} recv {} state {state}; ustack conns {:?}",
        w.now, client.sent, client.received.len(), client.error, server.sent, server.received.len(), w.a.connections().iter().map(|c| c.state).collect::<Vec<_>>());
    assert_eq!(client.error, None);
    assert!(
        server.received == client.to_send,
        "ustack -> smoltcp bytes differ"
    );
    assert!(
        client.received == server.to_send,
        "smoltcp -> ustack bytes differ"
    );
    assert!(
        matches!(
            state,
            tcp::State::TimeWait | tcp::State::Closed | tcp::State::LastAck
        ),
        "smoltcp ends in {state}"
    );
}

#[test]
fn ustack_server_smoltcp_client_clean_link() {
    ustack_server(0.0, 1);
}

#[test]
fn ustack_server_smoltcp_client_lossy_link() {
    ustack_server(0.02, 2);
}

#[test]
fn smoltcp_server_ustack_client_clean_link() {
    ustack_client(0.0, 3);
}

#[test]
fn smoltcp_server_ustack_client_lossy_link() {
    ustack_client(0.02, 4);
}
