//! `Stack::poll_transmit_parts` (headers in the caller's buffer, payload as
//! slices of the send buffer) must put exactly the bytes on the wire that
//! `poll_transmit` does. Two identical worlds (same seeds, same inputs) run
//! a transfer that wraps the send ring, lossy, with and without checksum
//! offload; one transmits with `poll_transmit`, the other with the parts
//! joined; every packet must be equal.
use std::net::{Ipv4Addr, SocketAddrV4};
use ustack::iface::{Config, Stack};
use ustack::time::{Duration, Instant};

struct World {
    a: Stack,
    b: Stack,
    now: Instant,
    buf: Vec<u8>,
    parts: bool,
    wire: Vec<Vec<u8>>,
}

impl World {
    fn new(parts: bool, offload: bool) -> World {
        let mut ca = Config::new(Ipv4Addr::new(10, 0, 0, 1));
        ca.tcp.send_buffer = 10_000; // small: the ring wraps often
        ca.tx_checksum_offload = offload;
        let mut cb = Config::new(Ipv4Addr::new(10, 0, 0, 2));
        cb.tx_checksum_offload = offload;
        World {
            a: Stack::new(ca, 1),
            b: Stack::new(cb, 2),
            now: Instant::ZERO,
            buf: vec![0; 65536],
            parts,
            wire: Vec::new(),
        }
    }

    fn out(&mut self, from_a: bool) -> Option<Vec<u8>> {
        let s = if from_a { &mut self.a } else { &mut self.b };
        if self.parts {
            let (n, [x, y]) = s.poll_transmit_parts(self.now, &mut self.buf)?;
            let mut p = self.buf[..n].to_vec();
            p.extend_from_slice(x);
            p.extend_from_slice(y);
            Some(p)
        } else {
            let n = s.poll_transmit(self.now, &mut self.buf)?;
            Some(self.buf[..n].to_vec())
        }
    }

    /// Move packets both ways, dropping about 5 % of a's data packets
    /// (chosen by a fixed hash of the packet number).
    fn step(&mut self) {
        for s in [&mut self.a, &mut self.b] {
            if s.poll_at().is_some_and(|t| t <= self.now) {
                s.handle_timeout(self.now);
            }
        }
        for from_a in [true, false] {
            while let Some(p) = self.out(from_a) {
                let k = self.wire.len();
                self.wire.push(p.clone());
                let h = (k as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
                let drop = from_a && p.len() > 100 && h.is_multiple_of(20);
                if drop {
                    continue;
                }
                // Packets with partial checksums are delivered as a device
                // with checksum offload would: marked verified.
                let meta = ustack::phy::RxMeta {
                    checksum_verified: true,
                };
                if from_a {
                    self.b.handle_packet_with(self.now, &p, meta);
                } else {
                    self.a.handle_packet_with(self.now, &p, meta);
                }
            }
        }
        let next = [self.a.poll_at(), self.b.poll_at()]
            .into_iter()
            .flatten()
            .min();
        self.now = match next {
            Some(t) if t > self.now => t.min(self.now + Duration::from_millis(50)),
            _ => self.now + Duration::from_millis(1),
        };
    }
}

fn run(parts: bool, offload: bool) -> (Vec<Vec<u8>>, Vec<u8>) {
    let mut w = World::new(parts, offload);
    let l = w.b.listen(80, 8).unwrap();
    let h =
        w.a.connect(w.now, SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 80))
            .unwrap();
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let mut sent = 0;
    let mut got = Vec::new();
    let mut server = None;
    let mut rbuf = vec![0u8; 65536];
    for _ in 0..1_000_000 {
        if sent < data.len() {
            if let Ok(n) = w.a.send(h, &data[sent..(sent + 3_333).min(data.len())]) {
                sent += n;
            }
        }
        if server.is_none() {
            server = w.b.accept(l);
        }
        if let Some(s) = server {
            while let Ok(n) = w.b.recv(s, &mut rbuf) {
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&rbuf[..n]);
            }
        }
        if got.len() == data.len() {
            break;
        }
        w.step();
    }
    assert_eq!(
        got.len(),
        data.len(),
        "whole stream delivered (sent {sent}, now {:?}, sender {:?}, {} packets)",
        w.now,
        w.a.info(h),
        w.wire.len()
    );
    assert!(got == data, "stream intact");
    (w.wire, got)
}

#[test]
fn parts_put_the_same_bytes_on_the_wire() {
    for offload in [false, true] {
        let (copy, _) = run(false, offload);
        let (parts, _) = run(true, offload);
        assert!(
            copy.iter().filter(|p| p.len() > 1000).count() >= 200,
            "a real transfer ({} packets)",
            copy.len()
        );
        // Lost segments were sent again (data packets from a with a
        // sequence number seen before).
        let mut seqs: Vec<[u8; 4]> = copy
            .iter()
            .filter(|p| p.len() > 100 && p[12..16] == [10, 0, 0, 1])
            .map(|p| [p[24], p[25], p[26], p[27]])
            .collect();
        let n = seqs.len();
        seqs.sort();
        seqs.dedup();
        assert!(
            n - seqs.len() >= 5,
            "retransmissions happened ({})",
            n - seqs.len()
        );
        assert_eq!(
            copy.len(),
            parts.len(),
            "same number of packets (offload {offload})"
        );
        for (i, (x, y)) in copy.iter().zip(&parts).enumerate() {
            assert_eq!(x, y, "packet {i} differs (offload {offload})");
        }
    }
}
