//! A fast keyed hash for the stack's small fixed-size keys (connection
//! 4-tuples, ports, socket handles).
//!
//! The standard library's SipHash-1-3 is built for arbitrary byte strings;
//! for a 64-bit key it costs ~20 ns, and the per-packet path looks up
//! several maps (demultiplexing, the services' connection tables). This is
//! the *folded multiply* construction (as in foldhash / aHash's fallback):
//! each word is mixed with a secret by a 64x64->128-bit multiplication whose
//! halves are XORed. The secret comes from the stack's seed, so the tables'
//! layout — and thus any iteration order — repeats with `--seed`, and a
//! remote peer, who controls ports and addresses but not the secret, cannot
//! aim its keys at one bucket (the reason Rust's default is keyed at all).

use std::hash::{BuildHasher, Hasher};

/// `HashMap` with [`FastHash`].
pub type FastMap<K, V> = std::collections::HashMap<K, V, FastHash>;

const PI: [u64; 4] = [
    0x243f_6a88_85a3_08d3,
    0x1319_8a2e_0370_7344,
    0xa409_3822_299f_31d0,
    0x082e_fa98_ec4e_6c89,
];

#[inline(always)]
fn folded_multiply(a: u64, b: u64) -> u64 {
    let full = (a as u128).wrapping_mul(b as u128);
    (full as u64) ^ ((full >> 64) as u64)
}

/// Builds [`FastHasher`]s keyed with a secret.
#[derive(Clone, Copy, Debug)]
pub struct FastHash {
    k0: u64,
    k1: u64,
}

impl FastHash {
    /// Keyed from `seed` (spread with SplitMix64 so nearby seeds differ).
    pub fn new(seed: u64) -> FastHash {
        let mut s = seed;
        let k0 = crate::rand::splitmix64(&mut s) | 1;
        let k1 = crate::rand::splitmix64(&mut s);
        FastHash { k0, k1 }
    }

    /// An empty map keyed from `seed`.
    pub fn map<K, V>(seed: u64) -> FastMap<K, V> {
        std::collections::HashMap::with_hasher(FastHash::new(seed))
    }
}

impl Default for FastHash {
    /// A fixed key: for tables whose keys a peer does not choose.
    fn default() -> Self {
        FastHash::new(0x5eed)
    }
}

impl BuildHasher for FastHash {
    type Hasher = FastHasher;
    #[inline]
    fn build_hasher(&self) -> FastHasher {
        FastHasher {
            acc: self.k1,
            k0: self.k0,
        }
    }
}

/// The hasher: one folded multiply per word written.
#[derive(Clone, Copy, Debug)]
pub struct FastHasher {
    acc: u64,
    k0: u64,
}

impl Hasher for FastHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        // Not the hot path (keys are integers); 8 bytes at a time.
        for c in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            self.write_u64(u64::from_le_bytes(w) ^ ((c.len() as u64) << 59));
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.write_u64(i as u64);
    }
    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.write_u64(i as u64);
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.write_u64(i as u64);
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.acc = folded_multiply(self.acc ^ i, self.k0 ^ PI[0]);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        folded_multiply(self.acc ^ PI[1], self.k0 ^ PI[2]).rotate_left(23) ^ PI[3]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::Hash;

    fn h<T: Hash>(b: &FastHash, v: T) -> u64 {
        b.hash_one(v)
    }

    #[test]
    fn keyed_and_repeatable() {
        let a = FastHash::new(1);
        let b = FastHash::new(2);
        let key = (0x0a00_0001u32, 40000u16, 80u16);
        assert_eq!(
            h(&a, key),
            h(&FastHash::new(1), key),
            "same seed, same hash"
        );
        assert_ne!(h(&a, key), h(&b, key), "the seed keys the hash");
        assert_ne!(
            h(&a, (1u32, 2u16, 3u16)),
            h(&a, (1u32, 3u16, 2u16)),
            "order matters"
        );
    }

    #[test]
    fn spreads_sequential_ports_over_buckets() {
        // A peer opening connections from consecutive ports must not land in
        // a few buckets: look at the low 10 bits of 4096 consecutive ports.
        let b = FastHash::new(7);
        let mut buckets = [0u32; 1024];
        for port in 40_000u16..44_096 {
            buckets[(h(&b, (0x0a00_0001u32, port, 80u16)) & 1023) as usize] += 1;
        }
        let max = *buckets.iter().max().unwrap();
        assert!(max <= 16, "worst bucket holds {max} of 4096 (mean 4)");
    }

    #[test]
    fn map_works() {
        let mut m: FastMap<(u32, u16, u16), u32> = FastHash::map(3);
        for i in 0..1000u32 {
            m.insert((i, i as u16, 80), i);
        }
        assert!((0..1000u32).all(|i| m[&(i, i as u16, 80)] == i));
    }
}
