//! Incremental UTF-8 validation for text messages (RFC 6455 sections 5.6 and
//! 8.1).
//!
//! A text message may be split across frames, and a frame across TCP reads,
//! so a multi-byte character can be cut anywhere. [`Utf8Validator`] keeps the
//! (at most three) bytes of an unfinished character between calls and reports
//! an error as soon as a byte can no longer start or continue a valid
//! character: an endpoint should fail the connection *fast*, without waiting
//! for the rest of the message (Autobahn section 6.4 checks this).
//!
//! The heavy lifting is done by `core::str::from_utf8`, which distinguishes
//! "invalid" (`error_len() == Some(_)`) from "valid so far but cut short"
//! (`error_len() == None`), and checks the second byte ranges (no overlongs,
//! no surrogates, nothing above U+10FFFF) as soon as that byte is seen.

/// Where validation failed: the index of the first offending byte, counted
/// from the start of everything fed since the last [`Utf8Validator::reset`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Utf8Error {
    pub position: usize,
}

/// Validates a byte stream piece by piece.
#[derive(Debug, Default, Clone)]
pub struct Utf8Validator {
    /// Bytes of a character that is not complete yet (0..=3 of them).
    pending: [u8; 4],
    pending_len: usize,
    /// Bytes fed so far (for error positions).
    fed: usize,
}

/// Length of the character that starts with `b` (only called on bytes that
/// `from_utf8` has already accepted as a valid start).
fn char_width(b: u8) -> usize {
    match b {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    }
}

impl Utf8Validator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Forget everything (start of a new message).
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    /// True when the input so far ends on a character boundary.
    pub fn is_complete(&self) -> bool {
        self.pending_len == 0
    }

    /// Feed the next piece. Errors at the first byte that makes the stream
    /// invalid, even when the character it belongs to is not complete.
    pub fn feed(&mut self, mut data: &[u8]) -> Result<(), Utf8Error> {
        let base = self.fed;
        self.fed += data.len();
        let mut consumed = 0usize;
        if self.pending_len > 0 {
            // Finish the pending character with bytes from `data`.
            let width = char_width(self.pending[0]);
            let take = (width - self.pending_len).min(data.len());
            let mut tmp = [0u8; 4];
            tmp[..self.pending_len].copy_from_slice(&self.pending[..self.pending_len]);
            tmp[self.pending_len..self.pending_len + take].copy_from_slice(&data[..take]);
            let total = self.pending_len + take;
            match core::str::from_utf8(&tmp[..total]) {
                Ok(_) => self.pending_len = 0,
                Err(e) if e.error_len().is_none() => {
                    self.pending = tmp;
                    self.pending_len = total;
                    return Ok(());
                }
                Err(e) => {
                    // The pending lead byte is valid, so the culprit is the
                    // first byte after the maximal invalid prefix.
                    let bad = e.valid_up_to() + e.error_len().unwrap_or(1);
                    let old = self.pending_len;
                    return Err(Utf8Error {
                        position: (base + bad).saturating_sub(old),
                    });
                }
            }
            data = &data[take..];
            consumed = take;
        }
        match core::str::from_utf8(data) {
            Ok(_) => Ok(()),
            Err(e) => match e.error_len() {
                None => {
                    let tail = &data[e.valid_up_to()..];
                    self.pending[..tail.len()].copy_from_slice(tail);
                    self.pending_len = tail.len();
                    Ok(())
                }
                Some(len) => {
                    // A byte that can never start a character is itself the
                    // culprit; after a valid lead byte, the culprit is the
                    // first byte that does not continue it.
                    let vut = e.valid_up_to();
                    let lead_ok = matches!(data.get(vut), Some(0xc2..=0xf4));
                    let bad = if lead_ok { vut + len } else { vut };
                    Err(Utf8Error {
                        position: base + consumed + bad,
                    })
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(parts: &[&[u8]]) -> Result<bool, Utf8Error> {
        let mut v = Utf8Validator::new();
        for p in parts {
            v.feed(p)?;
        }
        Ok(v.is_complete())
    }

    #[test]
    fn valid_split_at_every_byte() {
        let s = "κόσμε€𝄞a".as_bytes();
        for i in 0..=s.len() {
            for j in i..=s.len() {
                assert_eq!(
                    feed_all(&[&s[..i], &s[i..j], &s[j..]]),
                    Ok(true),
                    "split {i} {j}"
                );
            }
        }
        // Cut inside a character: valid so far, not complete.
        assert_eq!(feed_all(&[&s[..1]]), Ok(false));
    }

    #[test]
    fn fails_fast_on_bad_continuation_before_char_ends() {
        // Autobahn 6.3.1-like: "κόσμε" then ED A0 80 (a surrogate). The
        // error is known at A0, before the character would be complete.
        let mut v = Utf8Validator::new();
        v.feed("κόσμε".as_bytes()).unwrap();
        assert!(v.feed(&[0xed]).is_ok());
        let e = v.feed(&[0xa0]).unwrap_err();
        assert!(e.position >= 11, "{e:?}");
    }

    #[test]
    fn invalid_lead_bytes() {
        assert!(feed_all(&[&[0xff]]).is_err());
        assert!(feed_all(&[&[0xc0, 0x80]]).is_err()); // overlong
        assert!(feed_all(&[&[0xf4, 0x90]]).is_err()); // > U+10FFFF, known at 2nd byte
        assert!(feed_all(&[b"ab", &[0x80]]).is_err());
        assert_eq!(feed_all(&[&[0xf0], &[0x90], &[0x80], &[0x80]]), Ok(true));
        assert!(feed_all(&[&[0xf0], &[0x90], &[0x80], &[0x41]]).is_err());
    }

    #[test]
    fn error_position_is_first_bad_byte() {
        let e = feed_all(&[b"hello", &[0xff], b"x"]).unwrap_err();
        assert_eq!(e.position, 5);
        let e = feed_all(&[b"hi", &[0xe2, 0x82], b"A"]).unwrap_err();
        assert_eq!(e.position, 4);
    }
}
