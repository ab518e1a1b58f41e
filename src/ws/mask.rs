//! Client-to-server masking (RFC 6455 section 5.3).
//!
//! Every frame a client sends is XORed with a 4-byte masking key that travels
//! in the frame header: `transformed[i] = original[i] ^ key[i % 4]`. Masking is
//! not encryption; it stops a malicious page from making a browser emit bytes
//! that a confused intermediary could read as another protocol.
//!
//! Payload bytes may arrive in many pieces, so [`apply_mask`] takes the offset
//! of the first byte within the frame payload: the key is rotated to that
//! position, and the bulk is XORed eight bytes at a time.

/// XOR `buf` in place with `key`, where `buf[0]` is byte number `offset` of
/// the frame payload. Applying it twice restores the input.
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    // Rotate the key so that rotated[0] applies to buf[0].
    let r = offset % 4;
    let rotated = [key[r], key[(r + 1) % 4], key[(r + 2) % 4], key[(r + 3) % 4]];
    let word = u64::from_ne_bytes([
        rotated[0], rotated[1], rotated[2], rotated[3], rotated[0], rotated[1], rotated[2],
        rotated[3],
    ]);
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut b = [0u8; 8];
        b.copy_from_slice(chunk);
        let v = u64::from_ne_bytes(b) ^ word;
        chunk.copy_from_slice(&v.to_ne_bytes());
    }
    // The tail is shorter than 8 bytes and starts at a multiple of 8, so the
    // rotated key still lines up with its first byte.
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= rotated[i % 4];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(buf: &mut [u8], key: [u8; 4], offset: usize) {
        for (i, b) in buf.iter_mut().enumerate() {
            *b ^= key[(offset + i) % 4];
        }
    }

    #[test]
    fn rfc6455_5_7_masked_hello() {
        // "Hello" masked with 37 fa 21 3d is 7f 9f 4d 51 58.
        let mut p = [0x7f, 0x9f, 0x4d, 0x51, 0x58];
        apply_mask(&mut p, [0x37, 0xfa, 0x21, 0x3d], 0);
        assert_eq!(&p, b"Hello");
    }

    #[test]
    fn word_path_matches_byte_loop_at_every_offset_and_length() {
        let key = [0x12, 0x34, 0x56, 0x78];
        for len in 0..40 {
            for off in 0..8 {
                let orig: Vec<u8> = (0..len as u8).map(|x| x.wrapping_mul(31)).collect();
                let mut a = orig.clone();
                let mut b = orig.clone();
                apply_mask(&mut a, key, off);
                naive(&mut b, key, off);
                assert_eq!(a, b, "len {len} offset {off}");
            }
        }
    }

    #[test]
    fn split_application_equals_whole() {
        let key = [1, 2, 3, 4];
        let orig: Vec<u8> = (0..100u8).collect();
        let mut whole = orig.clone();
        apply_mask(&mut whole, key, 0);
        let mut parts = orig.clone();
        let (a, b) = parts.split_at_mut(13);
        apply_mask(a, key, 0);
        apply_mask(b, key, 13);
        assert_eq!(whole, parts);
    }
}
