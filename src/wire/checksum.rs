//! The Internet checksum (RFC 1071): the 16-bit one's complement of the one's
//! complement sum of the data taken as big-endian 16-bit words.
//!
//! One's complement addition is associative and commutative and does not
//! care about word size, so we add the data as 32-bit big-endian halves of
//! 8-byte chunks into a 64-bit accumulator (carries pile up in the high bits)
//! and fold the carries back in at the end (RFC 1071 section 2 (C) and 4.1).
//!
//! To checksum a packet made of pieces (pseudo-header, header, payload), add
//! the unfolded sums of the pieces ([`sum`], [`pseudo_header_sum`]) and
//! complement the fold: `!fold(a + b + c)`. Each piece except the last must
//! have an even length, so that the words line up.

use std::net::Ipv4Addr;

/// The unfolded one's complement sum of `data` as big-endian 16-bit words
/// (an odd last byte is padded with a zero byte, RFC 1071 section 4.1).
/// Valid for any input up to many gigabytes without overflow.
pub fn sum(data: &[u8]) -> u64 {
    // RFC 1071 2(B): the one's complement sum does not depend on byte
    // order, so we add the data as *native* (little-endian) 32-bit halves
    // of 8-byte words — no byte swap per word, two independent
    // accumulators the CPU can run in parallel — and swap the folded
    // 16-bit result once at the end. Carries pile up in the high bits of
    // the 64-bit accumulators (safe for gigabytes of input).
    let mut a0: u64 = 0;
    let mut a1: u64 = 0;
    let mut chunks = data.chunks_exact(16);
    for c in &mut chunks {
        let w0 = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        let w1 = u64::from_le_bytes([c[8], c[9], c[10], c[11], c[12], c[13], c[14], c[15]]);
        a0 += (w0 & 0xffff_ffff) + (w0 >> 32);
        a1 += (w1 & 0xffff_ffff) + (w1 >> 32);
    }
    // The tail starts at an even offset: pad it with zeros (RFC 1071 4.1).
    let rest = chunks.remainder();
    let mut tail = [0u8; 16];
    tail[..rest.len()].copy_from_slice(rest);
    let w0 = u64::from_le_bytes([
        tail[0], tail[1], tail[2], tail[3], tail[4], tail[5], tail[6], tail[7],
    ]);
    let w1 = u64::from_le_bytes([
        tail[8], tail[9], tail[10], tail[11], tail[12], tail[13], tail[14], tail[15],
    ]);
    a0 += (w0 & 0xffff_ffff) + (w0 >> 32);
    a1 += (w1 & 0xffff_ffff) + (w1 >> 32);
    let le = fold((a0 & 0xffff_ffff_ffff) + (a0 >> 48) + (a1 & 0xffff_ffff_ffff) + (a1 >> 48));
    u64::from(le.swap_bytes())
}

/// Fold carries until the sum fits in 16 bits (the one's complement sum,
/// not yet complemented).
pub fn fold(mut sum: u64) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// The (unfolded) sum of `a` followed by `b`, as [`sum`] of their
/// concatenation would give, without concatenating: when `a` has an odd
/// length every 16-bit word of `b` straddles a byte boundary, which in one's
/// complement arithmetic is a byte swap of `b`'s folded sum (RFC 1071 2(B)).
pub fn sum_parts(a: &[u8], b: &[u8]) -> u64 {
    let sb = sum(b);
    if a.len().is_multiple_of(2) {
        sum(a) + sb
    } else {
        sum(a) + u64::from(fold(sb).swap_bytes())
    }
}

/// Add already-folded 16-bit sums (for example of separate buffers) and fold.
pub fn combine(sums: &[u16]) -> u16 {
    fold(sums.iter().map(|&s| u64::from(s)).sum())
}

/// The checksum of `data`, complemented and ready to store in a header.
/// A buffer that already contains its correct checksum sums to zero, so
/// `checksum(header) == 0` verifies it.
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum(data))
}

/// The unfolded sum of the TCP/UDP pseudo-header (RFC 9293 section 3.1):
/// source address, destination address, zero, protocol, and `len` (the TCP
/// header plus data length).
pub fn pseudo_header_sum(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, len: u32) -> u32 {
    let s = u32::from(src);
    let d = u32::from(dst);
    (s >> 16)
        + (s & 0xffff)
        + (d >> 16)
        + (d & 0xffff)
        + u32::from(protocol)
        + (len >> 16)
        + (len & 0xffff)
}

/// Incremental update (RFC 1624 equation 3): the new checksum after one
/// 16-bit word of the covered data changed from `old_word` to `new_word`,
/// without summing the data again. `HC' = ~(~HC + ~m + m')`.
pub fn update(old_checksum: u16, old_word: u16, new_word: u16) -> u16 {
    !fold(u64::from(!old_checksum) + u64::from(!old_word) + u64::from(new_word))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sum_of_parts_equals_sum_of_the_whole() {
        let data: Vec<u8> = (0..1001u32).map(|i| (i * 31 + 7) as u8).collect();
        for cut in [0, 1, 2, 3, 500, 501, 999, 1000, 1001] {
            let (a, b) = data.split_at(cut);
            assert_eq!(fold(sum_parts(a, b)), fold(sum(&data)), "cut at {cut}");
        }
    }

    /// Reference implementation: the textbook loop over 16-bit words.
    fn naive(data: &[u8]) -> u16 {
        let mut acc: u32 = 0;
        for c in data.chunks(2) {
            let w = if c.len() == 2 {
                u16::from_be_bytes([c[0], c[1]])
            } else {
                u16::from(c[0]) << 8
            };
            acc += u32::from(w);
            acc = (acc & 0xffff) + (acc >> 16);
        }
        !(acc as u16)
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: the sum of 0001 f203 f4f5 f6f7 is ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&data)), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn odd_length_and_matches_naive() {
        let data: Vec<u8> = (0..1001u32).map(|i| (i * 37 + 11) as u8).collect();
        for n in 0..data.len() {
            assert_eq!(checksum(&data[..n]), naive(&data[..n]), "len {n}");
        }
        assert_eq!(checksum(&[0xab]), !0xab00);
        assert_eq!(checksum(&[]), 0xffff);
    }

    #[test]
    fn all_ones_does_not_overflow() {
        let data = vec![0xffu8; 65536];
        assert_eq!(checksum(&data), naive(&data));
    }

    #[test]
    fn pieces_combine() {
        let a = [1u8, 2, 3, 4, 5, 6];
        let b = [7u8, 8, 9];
        let whole: Vec<u8> = a.iter().chain(b.iter()).copied().collect();
        assert_eq!(!fold(sum(&a) + sum(&b)), checksum(&whole));
        assert_eq!(!combine(&[fold(sum(&a)), fold(sum(&b))]), checksum(&whole));
    }

    #[test]
    fn incremental_update_matches_recompute() {
        // A real IPv4 header; decrement its TTL (TTL and protocol share word 4).
        let mut h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        let c = checksum(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        let old_word = u16::from_be_bytes([h[8], h[9]]);
        h[8] -= 1;
        let new_word = u16::from_be_bytes([h[8], h[9]]);
        let updated = update(c, old_word, new_word);
        h[10..12].copy_from_slice(&[0, 0]);
        assert_eq!(updated, checksum(&h));
    }

    #[test]
    fn pseudo_header() {
        let s = pseudo_header_sum(
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
            6,
            20,
        );
        assert_eq!(s, 0x0a00 + 0x0001 + 0x0a00 + 0x0002 + 6 + 20);
    }
}
