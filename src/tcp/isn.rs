//! Initial sequence numbers (RFC 6528):
//! `ISN = M + F(localip, localport, remoteip, remoteport, secretkey)`,
//! where M is a 4-microsecond timer and F a keyed hash. F here is
//! SipHash-2-4 with a 128-bit secret drawn from the seeded RNG at start-up.
//! The clock is the caller's `now`, so the core stays deterministic.

use crate::time::Instant;
use std::net::SocketAddrV4;

#[derive(Clone, Debug)]
pub struct IsnGenerator {
    k0: u64,
    k1: u64,
}

impl IsnGenerator {
    pub fn new(k0: u64, k1: u64) -> Self {
        IsnGenerator { k0, k1 }
    }

    pub fn isn(&self, now: Instant, local: SocketAddrV4, remote: SocketAddrV4) -> u32 {
        let mut msg = [0u8; 12];
        msg[0..4].copy_from_slice(&local.ip().octets());
        msg[4..6].copy_from_slice(&local.port().to_be_bytes());
        msg[6..10].copy_from_slice(&remote.ip().octets());
        msg[10..12].copy_from_slice(&remote.port().to_be_bytes());
        let f = siphash24(self.k0, self.k1, &msg) as u32;
        let m = (now.total_micros() / 4) as u32;
        m.wrapping_add(f)
    }

    /// A keyed 32-bit hash of arbitrary data (for SYN cookies and the like).
    pub fn hash(&self, data: &[u8]) -> u64 {
        siphash24(self.k0 ^ 0x5a5a, self.k1, data)
    }
}

/// SipHash-2-4 (Aumasson & Bernstein).
pub fn siphash24(k0: u64, k1: u64, data: &[u8]) -> u64 {
    let mut v0 = 0x736f6d6570736575u64 ^ k0;
    let mut v1 = 0x646f72616e646f6du64 ^ k1;
    let mut v2 = 0x6c7967656e657261u64 ^ k0;
    let mut v3 = 0x7465646279746573u64 ^ k1;
    #[inline]
    fn round(v0: &mut u64, v1: &mut u64, v2: &mut u64, v3: &mut u64) {
        *v0 = v0.wrapping_add(*v1);
        *v1 = v1.rotate_left(13);
        *v1 ^= *v0;
        *v0 = v0.rotate_left(32);
        *v2 = v2.wrapping_add(*v3);
        *v3 = v3.rotate_left(16);
        *v3 ^= *v2;
        *v0 = v0.wrapping_add(*v3);
        *v3 = v3.rotate_left(21);
        *v3 ^= *v0;
        *v2 = v2.wrapping_add(*v1);
        *v1 = v1.rotate_left(17);
        *v1 ^= *v2;
        *v2 = v2.rotate_left(32);
    }
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let m = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        v3 ^= m;
        round(&mut v0, &mut v1, &mut v2, &mut v3);
        round(&mut v0, &mut v1, &mut v2, &mut v3);
        v0 ^= m;
    }
    let rem = chunks.remainder();
    let mut last = (data.len() as u64) << 56;
    for (i, b) in rem.iter().enumerate() {
        last |= (*b as u64) << (8 * i);
    }
    v3 ^= last;
    round(&mut v0, &mut v1, &mut v2, &mut v3);
    round(&mut v0, &mut v1, &mut v2, &mut v3);
    v0 ^= last;
    v2 ^= 0xff;
    for _ in 0..4 {
        round(&mut v0, &mut v1, &mut v2, &mut v3);
    }
    v0 ^ v1 ^ v2 ^ v3
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn siphash_reference_vector() {
        // From the SipHash paper, appendix A: key 00..0f, message 00..0e.
        let k0 = u64::from_le_bytes([0, 1, 2, 3, 4, 5, 6, 7]);
        let k1 = u64::from_le_bytes([8, 9, 10, 11, 12, 13, 14, 15]);
        let msg: Vec<u8> = (0..15).collect();
        assert_eq!(siphash24(k0, k1, &msg), 0xa129ca6149be45e5);
    }

    #[test]
    fn isn_depends_on_tuple_and_clock() {
        let g = IsnGenerator::new(1, 2);
        let a = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 80);
        let b = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 5000);
        let c = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 5001);
        let t = Instant::from_secs(1);
        assert_eq!(g.isn(t, a, b), g.isn(t, a, b));
        assert_ne!(g.isn(t, a, b), g.isn(t, a, c));
        // The clock component advances one per 4 microseconds.
        assert_eq!(
            g.isn(t + core::time::Duration::from_micros(400), a, b),
            g.isn(t, a, b).wrapping_add(100)
        );
        assert_ne!(IsnGenerator::new(3, 4).isn(t, a, b), g.isn(t, a, b));
    }
}
