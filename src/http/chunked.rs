//! A push decoder for the chunked transfer coding (RFC 9112 section 7.1).
//!
//! ```text
//! chunked-body   = *chunk last-chunk trailer-section CRLF
//! chunk          = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
//! chunk-size     = 1*HEXDIG
//! last-chunk     = 1*("0") [ chunk-ext ] CRLF
//! chunk-ext      = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
//! trailer-section = *( field-line CRLF )
//! ```
//!
//! The decoder is fed whatever bytes arrived, in pieces of any size (a chunk
//! boundary may fall anywhere), hands the chunk data out without copying, and
//! stops exactly after the final CRLF so the caller knows where the next
//! pipelined request begins. Every line it has to look at is bounded:
//! chunk-size digits (16, so the size fits a u64), extensions and trailers
//! (a byte budget). Extensions and trailer fields are accepted and ignored,
//! as RFC 9112 7.1.1 / 7.1.2 allow. Line endings must be CRLF: being strict
//! here is a request-smuggling defence.

/// Why a chunked body was rejected. Each variant is a broken rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChunkedError {
    #[error("chunk-size is not 1*HEXDIG")]
    BadChunkSize,
    #[error("chunk-size does not fit in 64 bits")]
    ChunkSizeOverflow,
    #[error("chunk extension or trailer section longer than the limit")]
    LineTooLong,
    #[error("expected CRLF")]
    ExpectedCrlf,
    #[error("control character in chunk extension or trailer")]
    BadCharacter,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum St {
    /// Reading chunk-size hex digits; `digits` seen so far.
    Size {
        size: u64,
        digits: u8,
    },
    /// After the size: BWS or a chunk extension, up to CR.
    Ext {
        size: u64,
    },
    /// Saw CR after the size line; expect LF.
    SizeLf {
        size: u64,
    },
    /// Inside chunk-data.
    Data {
        remaining: u64,
    },
    /// After chunk-data: expect CR then LF.
    DataCr,
    DataLf,
    /// In the trailer section, at the start of a line.
    TrailerLineStart,
    /// Inside a trailer field line.
    TrailerLine,
    /// CR seen inside a trailer line; expect LF.
    TrailerLf,
    /// CR seen on an empty line (the end); expect LF.
    EndLf,
    Done,
}

/// The decoder state. Create one per chunked body.
#[derive(Clone, Debug)]
pub struct ChunkedDecoder {
    st: St,
    /// Bytes of extensions and trailers seen so far (bounded by `max_meta`).
    meta: usize,
    max_meta: usize,
}

impl ChunkedDecoder {
    /// `max_meta` bounds the total bytes of chunk extensions and trailer
    /// fields over the whole body.
    pub fn new(max_meta: usize) -> Self {
        ChunkedDecoder {
            st: St::Size { size: 0, digits: 0 },
            meta: 0,
            max_meta,
        }
    }

    /// True once the last chunk and the trailer section have been read.
    pub fn is_done(&self) -> bool {
        self.st == St::Done
    }

    fn count_meta(&mut self) -> Result<(), ChunkedError> {
        self.meta += 1;
        if self.meta > self.max_meta {
            Err(ChunkedError::LineTooLong)
        } else {
            Ok(())
        }
    }

    /// Decode from `input`, calling `data` for every piece of chunk-data.
    /// Returns how many bytes of `input` were consumed: all of them unless
    /// the body ended inside `input`, in which case the rest belongs to the
    /// next request.
    pub fn decode(
        &mut self,
        input: &[u8],
        data: &mut dyn FnMut(&[u8]),
    ) -> Result<usize, ChunkedError> {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.st {
                St::Done => return Ok(i),
                St::Data { remaining } => {
                    let take = (input.len() - i).min(remaining.min(usize::MAX as u64) as usize);
                    data(&input[i..i + take]);
                    i += take;
                    let remaining = remaining - take as u64;
                    self.st = if remaining == 0 {
                        St::DataCr
                    } else {
                        St::Data { remaining }
                    };
                    continue;
                }
                St::Size { size, digits } => {
                    if let Some(v) = (b as char).to_digit(16) {
                        if digits >= 16 || (digits == 15 && size >> 60 != 0) {
                            return Err(ChunkedError::ChunkSizeOverflow);
                        }
                        self.st = St::Size {
                            size: size << 4 | v as u64,
                            digits: digits + 1,
                        };
                    } else if digits == 0 {
                        return Err(ChunkedError::BadChunkSize);
                    } else if b == b'\r' {
                        self.st = St::SizeLf { size };
                    } else if b == b' ' || b == b'\t' || b == b';' {
                        self.count_meta()?;
                        self.st = St::Ext { size };
                    } else {
                        return Err(ChunkedError::BadChunkSize);
                    }
                }
                St::Ext { size } => {
                    if b == b'\r' {
                        self.st = St::SizeLf { size };
                    } else if b == b'\n' || (b < 0x20 && b != b'\t') || b == 0x7f {
                        return Err(ChunkedError::BadCharacter);
                    } else {
                        self.count_meta()?;
                    }
                }
                St::SizeLf { size } => {
                    if b != b'\n' {
                        return Err(ChunkedError::ExpectedCrlf);
                    }
                    self.st = if size == 0 {
                        St::TrailerLineStart
                    } else {
                        St::Data { remaining: size }
                    };
                }
                St::DataCr => {
                    if b != b'\r' {
                        return Err(ChunkedError::ExpectedCrlf);
                    }
                    self.st = St::DataLf;
                }
                St::DataLf => {
                    if b != b'\n' {
                        return Err(ChunkedError::ExpectedCrlf);
                    }
                    self.st = St::Size { size: 0, digits: 0 };
                }
                St::TrailerLineStart => {
                    if b == b'\r' {
                        self.st = St::EndLf;
                    } else if b == b'\n' || (b < 0x20 && b != b'\t') || b == 0x7f {
                        return Err(ChunkedError::BadCharacter);
                    } else {
                        self.count_meta()?;
                        self.st = St::TrailerLine;
                    }
                }
                St::TrailerLine => {
                    if b == b'\r' {
                        self.st = St::TrailerLf;
                    } else if b == b'\n' || (b < 0x20 && b != b'\t') || b == 0x7f {
                        return Err(ChunkedError::BadCharacter);
                    } else {
                        self.count_meta()?;
                    }
                }
                St::TrailerLf => {
                    if b != b'\n' {
                        return Err(ChunkedError::ExpectedCrlf);
                    }
                    self.st = St::TrailerLineStart;
                }
                St::EndLf => {
                    if b != b'\n' {
                        return Err(ChunkedError::ExpectedCrlf);
                    }
                    self.st = St::Done;
                }
            }
            i += 1;
        }
        Ok(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(pieces: &[&[u8]]) -> Result<(Vec<u8>, usize, bool), ChunkedError> {
        let mut d = ChunkedDecoder::new(1024);
        let mut out = Vec::new();
        let mut used = 0;
        for p in pieces {
            used += d.decode(p, &mut |s| out.extend_from_slice(s))?;
        }
        Ok((out, used, d.is_done()))
    }

    const BODY: &[u8] = b"4\r\nWiki\r\n5;name=val\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-Trailer: yes\r\n\r\n";

    #[test]
    fn wikipedia_example() {
        let (out, used, done) = decode_all(&[BODY]).unwrap();
        assert_eq!(out, b"Wikipedia in\r\n\r\nchunks.");
        assert_eq!(used, BODY.len());
        assert!(done);
    }

    #[test]
    fn split_at_every_byte() {
        for cut in 0..=BODY.len() {
            let (out, used, done) = decode_all(&[&BODY[..cut], &BODY[cut..]]).unwrap();
            assert_eq!(out, b"Wikipedia in\r\n\r\nchunks.", "cut={cut}");
            assert_eq!(used, BODY.len());
            assert!(done);
        }
        // One byte at a time.
        let pieces: Vec<&[u8]> = BODY.chunks(1).collect();
        let (out, _, done) = decode_all(&pieces).unwrap();
        assert_eq!(out, b"Wikipedia in\r\n\r\nchunks.");
        assert!(done);
    }

    #[test]
    fn every_prefix_is_incomplete_not_an_error() {
        for cut in 0..BODY.len() {
            let (_, used, done) = decode_all(&[&BODY[..cut]]).unwrap();
            assert_eq!(used, cut);
            assert!(!done, "cut={cut}");
        }
    }

    #[test]
    fn stops_at_end_of_body() {
        let mut input = b"3\r\nabc\r\n0\r\n\r\n".to_vec();
        input.extend_from_slice(b"GET / HTTP/1.1\r\n");
        let mut d = ChunkedDecoder::new(64);
        let mut out = Vec::new();
        let used = d.decode(&input, &mut |s| out.extend_from_slice(s)).unwrap();
        assert_eq!(used, 13);
        assert_eq!(out, b"abc");
        assert!(d.is_done());
    }

    #[test]
    fn errors() {
        let cases: &[(&[u8], ChunkedError)] = &[
            (b"x\r\n", ChunkedError::BadChunkSize),
            (b"\r\n", ChunkedError::BadChunkSize),
            (b"-1\r\n", ChunkedError::BadChunkSize),
            (b"0x5\r\n", ChunkedError::BadChunkSize),
            (b"10000000000000000\r\n", ChunkedError::ChunkSizeOverflow),
            (b"3\nabc", ChunkedError::BadChunkSize),
            (b"3\r\r", ChunkedError::ExpectedCrlf),
            (b"3\r\nabcX", ChunkedError::ExpectedCrlf),
            (b"3\r\nabc\rX", ChunkedError::ExpectedCrlf),
            (b"3;a\nb\r\n", ChunkedError::BadCharacter),
            (b"0\r\nX: y\n", ChunkedError::BadCharacter),
            (b"0\r\n\rX", ChunkedError::ExpectedCrlf),
        ];
        for (input, err) in cases {
            assert_eq!(
                decode_all(&[input]).unwrap_err(),
                *err,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn largest_size_fits_and_meta_is_bounded() {
        let mut d = ChunkedDecoder::new(8);
        assert!(d.decode(b"FFFFFFFFFFFFFFFF\r\nab", &mut |_| {}).is_ok());
        let mut d = ChunkedDecoder::new(8);
        assert_eq!(
            d.decode(b"1;aaaaaaaaaaaa", &mut |_| {}),
            Err(ChunkedError::LineTooLong)
        );
        let mut d = ChunkedDecoder::new(8);
        assert_eq!(
            d.decode(b"0\r\nX-Long: aaaaaaa", &mut |_| {}),
            Err(ChunkedError::LineTooLong)
        );
    }
}
