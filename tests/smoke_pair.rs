//! Two ustack stacks joined back to back with a virtual clock: the
//! simplest end-to-end check of the core (handshake, data both ways, close).
use std::net::{Ipv4Addr, SocketAddrV4};
use ustack::iface::{Config, Stack};
use ustack::tcp::State;
use ustack::time::{Duration, Instant};

struct Pair {
    a: Stack,
    b: Stack,
    now: Instant,
    buf: Vec<u8>,
}

impl Pair {
    fn new() -> Pair {
        let a = Stack::new(Config::new(Ipv4Addr::new(10, 0, 0, 1)), 1);
        let b = Stack::new(Config::new(Ipv4Addr::new(10, 0, 0, 2)), 2);
        Pair {
            a,
            b,
            now: Instant::ZERO,
            buf: vec![0; 65536],
        }
    }
    /// Move packets until both sides are quiet; then advance to the next timer.
    fn step(&mut self) -> usize {
        let mut moved = 0;
        loop {
            let mut any = false;
            while let Some(n) = self.a.poll_transmit(self.now, &mut self.buf) {
                let p = self.buf[..n].to_vec();
                self.b.handle_packet(self.now, &p);
                any = true;
                moved += 1;
            }
            while let Some(n) = self.b.poll_transmit(self.now, &mut self.buf) {
                let p = self.buf[..n].to_vec();
                self.a.handle_packet(self.now, &p);
                any = true;
                moved += 1;
            }
            if !any {
                break;
            }
        }
        moved
    }
    fn advance(&mut self, d: Duration) {
        self.now += d;
        self.a.handle_timeout(self.now);
        self.b.handle_timeout(self.now);
    }
    /// One short connection from `a` to `b`'s listener `l` (connection
    /// number `i`), closed by the server first, so `b`'s side ends in
    /// TIME-WAIT.
    fn server_closed_connection(&mut self, l: ustack::tcp::ListenerHandle, i: usize) {
        let c = self
            .a
            .connect(self.now, SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 80))
            .unwrap();
        self.step();
        let s = self
            .b
            .accept(l)
            .unwrap_or_else(|| panic!("connection {i} accepted"));
        self.b.close(s);
        self.step();
        let mut rbuf = [0u8; 64];
        assert_eq!(self.a.recv(c, &mut rbuf), Ok(0));
        self.a.close(c);
        self.step();
    }
}

#[test]
fn handshake_transfer_close() {
    let mut p = Pair::new();
    let l = p.b.listen(80, 16).unwrap();
    let c =
        p.a.connect(p.now, SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 80))
            .unwrap();
    p.step();
    assert_eq!(p.a.state(c), Some(State::Established));
    let s = p.b.accept(l).expect("accepted");
    assert_eq!(p.b.state(s), Some(State::Established));

    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    let mut sent = 0;
    let mut got = Vec::new();
    let mut rbuf = vec![0u8; 65536];
    for _ in 0..100_000 {
        if sent < data.len() {
            if let Ok(n) = p.a.send(c, &data[sent..]) {
                sent += n;
            }
        }
        p.step();
        loop {
            match p.b.recv(s, &mut rbuf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&rbuf[..n]),
                Err(_) => break,
            }
        }
        if got.len() == data.len() {
            break;
        }
        p.advance(Duration::from_millis(1));
    }
    assert_eq!(got.len(), data.len());
    assert!(got == data);

    // Close from A; B reads EOF then closes.
    p.a.shutdown(c).unwrap();
    p.step();
    assert_eq!(p.b.recv(s, &mut rbuf), Ok(0));
    assert_eq!(p.b.state(s), Some(State::CloseWait));
    p.b.close(s);
    p.step();
    assert_eq!(p.a.state(c), Some(State::TimeWait));
    p.a.close(c);
    p.advance(Duration::from_secs(61));
    p.step();
    assert_eq!(p.a.connection_count(), 0);
    assert_eq!(p.b.connection_count(), 0);
}

#[test]
fn refused_on_closed_port() {
    let mut p = Pair::new();
    let c =
        p.a.connect(p.now, SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 9))
            .unwrap();
    p.step();
    let r = p.a.readiness(c);
    assert!(r.closed);
    assert_eq!(r.error, Some(ustack::tcp::TcpError::ConnectionRefused));
}

/// TIME-WAIT is bounded: past `max_time_wait` the oldest is recycled, and
/// TIME-WAIT connections do not count against `max_connections`, so a
/// server closing many short connections keeps accepting new ones.
#[test]
fn time_wait_is_bounded_and_does_not_block_new_connections() {
    let mut p = Pair::new();
    let mut cfg = Config::new(Ipv4Addr::new(10, 0, 0, 2));
    cfg.max_time_wait = 3;
    cfg.max_connections = 4;
    p.b = Stack::new(cfg, 2);
    let l = p.b.listen(80, 16).unwrap();
    for i in 0..10 {
        p.server_closed_connection(l, i);
        assert!(
            p.b.time_wait_count() <= 3,
            "time-wait {}",
            p.b.time_wait_count()
        );
        p.advance(Duration::from_millis(10));
    }
    assert_eq!(p.b.time_wait_count(), 3);
    assert_eq!(p.b.stats().tcp_time_wait_recycled, 7);
    assert_eq!(
        p.b.stats()
            .drops(ustack::iface::DropReason::TcpTooManyConnections),
        0
    );
}

/// After a burst of short connections their TIME-WAITs all come due together
/// 2*MSL later; one `handle_timeout` ends at most `TIME_WAIT_EXPIRY_BATCH`
/// of them (so a packet never waits behind all of them), the rest stay due
/// (`poll_at` is not in the future), and further calls end them all.
#[test]
fn time_wait_expiry_is_spread_over_calls() {
    use ustack::iface::TIME_WAIT_EXPIRY_BATCH;
    let mut p = Pair::new();
    let l = p.b.listen(80, 256).unwrap();
    let n = 3 * TIME_WAIT_EXPIRY_BATCH + 5;
    for i in 0..n {
        p.server_closed_connection(l, i);
    }
    assert_eq!(p.b.time_wait_count(), n);
    // Past 2*MSL (all entered TIME-WAIT at the same instant).
    let two_msl = 2 * ustack::tcp::TcpConfig::default().msl;
    p.now += two_msl + Duration::from_millis(1);
    let mut calls = 0;
    while p.b.time_wait_count() > 0 {
        let before = p.b.time_wait_count();
        assert!(
            p.b.poll_at().is_some_and(|t| t <= p.now),
            "TIME-WAITs left ({before}) but not due"
        );
        p.b.handle_timeout(p.now);
        let ended = before - p.b.time_wait_count();
        assert!(
            (1..=TIME_WAIT_EXPIRY_BATCH).contains(&ended),
            "one call ended {ended} of {before}"
        );
        calls += 1;
    }
    assert_eq!(calls, n.div_ceil(TIME_WAIT_EXPIRY_BATCH));
    assert_eq!(p.b.connection_count(), 0);
}
