//! The `/bytes/N` body: N deterministic pseudo-random bytes, computable at
//! any offset.
//!
//! Byte `i` of the body of `/bytes/N` is byte `i % 8` (little-endian) of
//! the 64-bit word `k = i / 8`, and word `k` is output number `k` of
//! SplitMix64 started in state `N`:
//!
//! ```text
//! GAMMA   = 0x9E3779B97F4A7C15
//! mix(z)  = z ^= z >> 30; z *= 0xBF58476D1CE4E5B9;
//!           z ^= z >> 27; z *= 0x94D049BB133111EB;
//!           z ^ (z >> 31)                       (all mod 2^64)
//! word(k) = mix(N + (k + 1) * GAMMA)            (mod 2^64)
//! byte(i) = (word(i / 8) >> (8 * (i % 8))) & 0xFF
//! ```
//!
//! Because every word depends only on `N` and `k`, any range of the body can
//! be produced without generating what comes before it (this is what makes
//! `Range` requests on `/bytes/N` cheap). docs/http.md has a Python version.

/// SplitMix64's constant increment (the golden ratio in 64-bit fixed point).
pub const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's output function.
#[inline]
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Word `k` of the `/bytes/N` stream.
#[inline]
fn word(n: u64, k: u64) -> u64 {
    mix(n.wrapping_add(k.wrapping_add(1).wrapping_mul(GAMMA)))
}

/// Fill `out` with the bytes of `/bytes/n` starting at byte `offset`.
///
/// The caller is responsible for not reading past `n` (the function itself
/// happily continues the stream beyond it).
pub fn bytes_body(n: u64, offset: u64, out: &mut [u8]) {
    // Unaligned head: the tail of one word.
    let skip = (offset % 8) as usize;
    let mut k = offset / 8;
    let mut out = out;
    if skip != 0 {
        let w = word(n, k).to_le_bytes();
        let take = (8 - skip).min(out.len());
        out[..take].copy_from_slice(&w[skip..skip + take]);
        out = &mut out[take..];
        k = k.wrapping_add(1);
    }
    // Whole words: the hot loop (one SplitMix64 output per 8 bytes).
    let mut chunks = out.chunks_exact_mut(8);
    let mut z = n.wrapping_add(k.wrapping_add(1).wrapping_mul(GAMMA));
    for c in &mut chunks {
        c.copy_from_slice(&mix(z).to_le_bytes());
        z = z.wrapping_add(GAMMA);
        k = k.wrapping_add(1);
    }
    // Tail: the head of one word.
    let rest = chunks.into_remainder();
    if !rest.is_empty() {
        let w = word(n, k).to_le_bytes();
        let len = rest.len();
        rest.copy_from_slice(&w[..len]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_crate_splitmix64() {
        // The stream is exactly crate::rand::splitmix64 started in state N.
        for n in [0u64, 1, 1000, u64::MAX] {
            let mut st = n;
            let mut expect = Vec::new();
            for _ in 0..4 {
                expect.extend_from_slice(&crate::rand::splitmix64(&mut st).to_le_bytes());
            }
            let mut got = vec![0u8; 32];
            bytes_body(n, 0, &mut got);
            assert_eq!(got, expect, "n={n}");
        }
    }

    #[test]
    fn known_vector() {
        // splitmix64 with state 0: first output is 0xE220A8397B1DCDAF.
        let mut got = [0u8; 8];
        bytes_body(0, 0, &mut got);
        assert_eq!(u64::from_le_bytes(got), 0xE220_A839_7B1D_CDAF);
    }

    #[test]
    fn matches_the_python_in_docs() {
        // docs/http.md's Python gives bytes_body(100000, 1000, 4) == 2192ceaf.
        let mut got = [0u8; 4];
        bytes_body(100_000, 1000, &mut got);
        assert_eq!(got, [0x21, 0x92, 0xce, 0xaf]);
    }

    #[test]
    fn any_offset_is_consistent() {
        let n = 10_000_000_000u64;
        let mut whole = vec![0u8; 100];
        bytes_body(n, 0, &mut whole);
        for off in 0..100u64 {
            for len in [0usize, 1, 3, 8, 13] {
                let end = (off as usize + len).min(100);
                let mut part = vec![0u8; end - off as usize];
                bytes_body(n, off, &mut part);
                assert_eq!(&part[..], &whole[off as usize..end], "off={off} len={len}");
            }
        }
        // Far offsets work too (no generation of the prefix).
        let mut a = [0u8; 16];
        bytes_body(n, n - 16, &mut a);
        let mut b = [0u8; 8];
        bytes_body(n, n - 8, &mut b);
        assert_eq!(&a[8..], &b[..]);
    }

    #[test]
    fn different_n_differ() {
        let mut a = [0u8; 32];
        let mut b = [0u8; 32];
        bytes_body(5, 0, &mut a);
        bytes_body(6, 0, &mut b);
        assert_ne!(a, b);
    }
}
