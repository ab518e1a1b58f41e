//! IPv4 fragment reassembly (RFC 791 section 3.2, RFC 815).
//!
//! A datagram too big for a link is cut into fragments that share the
//! (source, destination, protocol, identification) of the original; each
//! carries the byte offset of its data and a More Fragments flag, cleared
//! on the last one. The receiver collects the pieces of each datagram until
//! there is no hole left between offset 0 and the end given by the last
//! fragment, then hands the whole payload up.
//!
//! Here each datagram in progress keeps its fragments in a list sorted by
//! offset (a simpler cousin of RFC 815's hole descriptors: a hole is simply
//! the gap between two neighbours). The rules:
//!
//! * **Overlaps discard the whole datagram.** Overlapping fragments are how
//!   attacks hide data from firewalls (teardrop, RFC 1858); RFC 5722 makes
//!   discarding mandatory for IPv6 and Linux does the same for IPv4. An
//!   **exact duplicate** (same offset and length, e.g. a retransmission by a
//!   link layer) is accepted and ignored, as Linux does; its bytes are not
//!   compared.
//! * A fragment with More Fragments set must carry a multiple of 8 bytes
//!   (offsets count 8-byte units) and no fragment may be empty
//!   ([`FragError::Invalid`], the fragment alone is dropped). A second,
//!   different "last fragment", or data past the end a last fragment set,
//!   discards the whole datagram (also `Invalid`).
//! * A datagram may not exceed 65535 bytes including a 20-byte header, so
//!   the payload ends at 65515 at most ([`FragError::TooLarge`], the
//!   "ping of death"; the whole datagram is discarded).
//! * Memory is bounded: the bytes held plus a fixed overhead per fragment
//!   ([`FRAGMENT_OVERHEAD`], so floods of tiny fragments are bounded too)
//!   may not exceed `max_memory`, and at most `max_datagrams` datagrams are
//!   in progress; past either limit new fragments are refused
//!   ([`FragError::NoMemory`]) and datagrams already in progress are kept.
//! * Each datagram has a deadline, `timeout` after its first fragment
//!   arrived (Linux's rule; RFC 791 suggests 15 s, Linux uses 30 s).
//!   [`Reassembler::expire`] drops those past their deadline.
//!
//! The reassembler does not read a clock: `now` is passed in.

use crate::time::{Duration, Instant};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// Bytes charged per stored fragment on top of its data (bookkeeping).
pub const FRAGMENT_OVERHEAD: usize = 64;
/// Largest reassembled payload: 65535 minus a 20-byte header.
pub const MAX_PAYLOAD: usize = 65535 - 20;
/// Default limit on datagrams in progress.
pub const DEFAULT_MAX_DATAGRAMS: usize = 1024;

/// Why a fragment was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FragError {
    /// It overlaps a fragment already received; the whole datagram is
    /// discarded.
    #[error("overlapping fragment")]
    Overlap,
    /// It ends past 65515 bytes of payload; the whole datagram is discarded.
    #[error("reassembled datagram too large")]
    TooLarge,
    /// The memory or datagram limit is reached; the fragment is refused.
    #[error("reassembly memory exhausted")]
    NoMemory,
    /// An empty fragment, a non-final fragment whose length is not a
    /// multiple of 8, or a conflict with the end set by a last fragment.
    #[error("invalid fragment")]
    Invalid,
}

/// What identifies the fragments of one datagram (RFC 791 section 3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Key {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: u8,
    ident: u16,
}

/// One datagram in progress.
#[derive(Debug)]
struct Datagram {
    /// Fragments sorted by offset, never overlapping: (offset, data).
    frags: Vec<(usize, Vec<u8>)>,
    /// Payload length, known once the last fragment (MF clear) arrived.
    total_len: Option<usize>,
    /// Bytes of data received.
    received: usize,
    /// Memory charged (data + overhead per fragment).
    memory: usize,
    deadline: Instant,
}

/// Reassembles fragmented IPv4 datagrams with bounded memory.
#[derive(Debug)]
pub struct Reassembler {
    datagrams: BTreeMap<Key, Datagram>,
    max_memory: usize,
    max_datagrams: usize,
    memory: usize,
    timeout: Duration,
}

impl Reassembler {
    /// `max_memory`: bytes all datagrams in progress may hold together;
    /// `timeout`: how long a datagram may take to complete.
    pub fn new(max_memory: usize, timeout: Duration) -> Self {
        Reassembler {
            datagrams: BTreeMap::new(),
            max_memory,
            max_datagrams: DEFAULT_MAX_DATAGRAMS,
            memory: 0,
            timeout,
        }
    }

    /// Change the limit on datagrams in progress.
    pub fn set_max_datagrams(&mut self, n: usize) {
        self.max_datagrams = n;
    }

    /// Feed one fragment (the caller already validated its IPv4 header).
    /// `frag_offset_bytes` is the offset in bytes, `payload` the data after
    /// the IP header. Returns `Ok(Some(payload))` with the whole datagram's
    /// payload when this fragment completes it, `Ok(None)` when more are
    /// needed (or it was an exact duplicate).
    ///
    /// An unfragmented datagram (offset 0, MF clear) is returned as is.
    #[allow(clippy::too_many_arguments)]
    pub fn push(
        &mut self,
        now: Instant,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        protocol: u8,
        ident: u16,
        frag_offset_bytes: usize,
        more_frags: bool,
        payload: &[u8],
    ) -> Result<Option<Vec<u8>>, FragError> {
        let offset = frag_offset_bytes;
        let end = offset
            .checked_add(payload.len())
            .ok_or(FragError::TooLarge)?;
        if offset == 0 && !more_frags {
            if end > MAX_PAYLOAD {
                return Err(FragError::TooLarge);
            }
            return Ok(Some(payload.to_vec()));
        }
        let key = Key {
            src,
            dst,
            protocol,
            ident,
        };
        // A datagram past its deadline is gone even if expire() was not
        // called yet: this fragment starts a new one.
        if self.datagrams.get(&key).is_some_and(|d| d.deadline <= now) {
            self.discard(&key);
        }
        if end > MAX_PAYLOAD {
            self.discard(&key);
            return Err(FragError::TooLarge);
        }
        if payload.is_empty() || (more_frags && !payload.len().is_multiple_of(8)) {
            return Err(FragError::Invalid);
        }

        let cost = payload.len() + FRAGMENT_OVERHEAD;
        let exists = self.datagrams.contains_key(&key);
        if !exists && self.datagrams.len() >= self.max_datagrams {
            return Err(FragError::NoMemory);
        }

        let deadline = now + self.timeout;
        let d = self.datagrams.entry(key).or_insert_with(|| Datagram {
            frags: Vec::new(),
            total_len: None,
            received: 0,
            memory: 0,
            deadline,
        });

        // Consistency with the end of the datagram (RFC 791: the last
        // fragment fixes the length).
        let consistent = match (d.total_len, more_frags) {
            (Some(total), false) => end == total,
            (Some(total), true) => end < total,
            (None, false) => d.frags.last().is_none_or(|(o, data)| o + data.len() <= end),
            (None, true) => true,
        };
        if !consistent {
            self.discard(&key);
            return Err(FragError::Invalid);
        }

        // Where it goes: the first fragment starting at or after `offset`.
        let i = d.frags.partition_point(|(o, _)| *o < offset);
        if let Some((o, data)) = d.frags.get(i) {
            if *o == offset && data.len() == payload.len() {
                return Ok(None); // exact duplicate
            }
            if *o < end {
                self.discard(&key);
                return Err(FragError::Overlap);
            }
        }
        if i > 0 {
            let (o, data) = &d.frags[i - 1];
            if o + data.len() > offset {
                self.discard(&key);
                return Err(FragError::Overlap);
            }
        }

        if self.memory + cost > self.max_memory {
            if d.frags.is_empty() {
                self.datagrams.remove(&key);
            }
            return Err(FragError::NoMemory);
        }

        d.frags.insert(i, (offset, payload.to_vec()));
        d.received += payload.len();
        d.memory += cost;
        self.memory += cost;
        if !more_frags {
            d.total_len = Some(end);
        }

        if d.total_len == Some(d.received) {
            // No overlaps and as many bytes as the length: no holes left.
            let d = self.datagrams.remove(&key).expect("datagram present");
            self.memory -= d.memory;
            let mut out = Vec::with_capacity(d.received);
            for (_, data) in d.frags {
                out.extend_from_slice(&data);
            }
            return Ok(Some(out));
        }
        Ok(None)
    }

    fn discard(&mut self, key: &Key) {
        if let Some(d) = self.datagrams.remove(key) {
            self.memory -= d.memory;
        }
    }

    /// Drop the datagrams whose deadline has passed; return how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        let before = self.datagrams.len();
        let mut freed = 0;
        self.datagrams.retain(|_, d| {
            let keep = d.deadline > now;
            if !keep {
                freed += d.memory;
            }
            keep
        });
        self.memory -= freed;
        before - self.datagrams.len()
    }

    /// The earliest deadline, when [`Reassembler::expire`] should run next.
    pub fn poll_at(&self) -> Option<Instant> {
        self.datagrams.values().map(|d| d.deadline).min()
    }

    /// Memory charged to datagrams in progress (data + per-fragment overhead).
    pub fn memory_used(&self) -> usize {
        self.memory
    }

    /// Datagrams in progress.
    pub fn datagrams_in_progress(&self) -> usize {
        self.datagrams.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
    const T0: Instant = Instant::ZERO;

    fn r() -> Reassembler {
        Reassembler::new(1 << 20, Duration::from_secs(30))
    }

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + i / 256) as u8).collect()
    }

    fn push(
        r: &mut Reassembler,
        id: u16,
        off: usize,
        mf: bool,
        p: &[u8],
    ) -> Result<Option<Vec<u8>>, FragError> {
        r.push(T0, A, B, 6, id, off, mf, p)
    }

    #[test]
    fn in_order() {
        let d = data(3000);
        let mut r = r();
        assert_eq!(push(&mut r, 1, 0, true, &d[..1480]), Ok(None));
        assert_eq!(push(&mut r, 1, 1480, true, &d[1480..2960]), Ok(None));
        assert_eq!(
            push(&mut r, 1, 2960, false, &d[2960..]),
            Ok(Some(d.clone()))
        );
        assert_eq!(r.memory_used(), 0);
        assert_eq!(r.poll_at(), None);
    }

    #[test]
    fn out_of_order_and_interleaved_datagrams() {
        let d = data(2400);
        let mut r = r();
        assert_eq!(push(&mut r, 1, 1600, false, &d[1600..]), Ok(None));
        assert_eq!(push(&mut r, 2, 800, false, &d[800..1600]), Ok(None));
        assert_eq!(push(&mut r, 1, 0, true, &d[..800]), Ok(None));
        assert_eq!(r.datagrams_in_progress(), 2);
        assert_eq!(
            push(&mut r, 1, 800, true, &d[800..1600]),
            Ok(Some(d.clone()))
        );
        assert_eq!(
            push(&mut r, 2, 0, true, &d[..800]),
            Ok(Some(d[..1600].to_vec()))
        );
        assert_eq!(r.memory_used(), 0);
    }

    #[test]
    fn different_keys_do_not_mix() {
        let d = data(16);
        let mut r = r();
        assert_eq!(r.push(T0, A, B, 6, 1, 0, true, &d[..8]), Ok(None));
        assert_eq!(r.push(T0, A, B, 17, 1, 8, false, &d[8..]), Ok(None));
        assert_eq!(r.push(T0, B, A, 6, 1, 8, false, &d[8..]), Ok(None));
        assert_eq!(r.datagrams_in_progress(), 3);
        assert_eq!(r.push(T0, A, B, 6, 1, 8, false, &d[8..]), Ok(Some(d)));
    }

    #[test]
    fn exact_duplicate_is_ignored() {
        let d = data(24);
        let mut r = r();
        assert_eq!(push(&mut r, 1, 0, true, &d[..16]), Ok(None));
        let mem = r.memory_used();
        assert_eq!(push(&mut r, 1, 0, true, &d[..16]), Ok(None));
        assert_eq!(r.memory_used(), mem);
        assert_eq!(push(&mut r, 1, 16, false, &d[16..]), Ok(Some(d)));
    }

    #[test]
    fn overlap_discards_whole_datagram() {
        let d = data(32);
        let mut r = r();
        assert_eq!(push(&mut r, 1, 0, true, &d[..16]), Ok(None));
        assert_eq!(push(&mut r, 1, 8, true, &d[8..24]), Err(FragError::Overlap));
        assert_eq!(r.datagrams_in_progress(), 0);
        assert_eq!(r.memory_used(), 0);
        // The rest alone cannot complete it any more.
        assert_eq!(push(&mut r, 1, 16, false, &d[16..]), Ok(None));
        // Overlap with the following fragment, and a same-offset longer one.
        let mut r2 = Reassembler::new(1 << 20, Duration::from_secs(30));
        assert_eq!(push(&mut r2, 1, 16, true, &d[16..24]), Ok(None));
        assert_eq!(
            push(&mut r2, 1, 8, true, &d[8..24]),
            Err(FragError::Overlap)
        );
        assert_eq!(push(&mut r2, 1, 16, true, &d[16..24]), Ok(None));
        assert_eq!(
            push(&mut r2, 1, 16, true, &d[16..32]),
            Err(FragError::Overlap)
        );
    }

    #[test]
    fn invalid_fragments() {
        let mut r = r();
        assert_eq!(push(&mut r, 1, 0, true, &data(12)), Err(FragError::Invalid));
        assert_eq!(push(&mut r, 1, 8, true, &[]), Err(FragError::Invalid));
        assert_eq!(push(&mut r, 1, 8, false, &[]), Err(FragError::Invalid));
        assert_eq!(r.datagrams_in_progress(), 0);
        // Two different last fragments: the datagram is discarded.
        assert_eq!(push(&mut r, 2, 8, false, &data(8)), Ok(None));
        assert_eq!(
            push(&mut r, 2, 16, false, &data(8)),
            Err(FragError::Invalid)
        );
        assert_eq!(r.datagrams_in_progress(), 0);
        // Data past the known end.
        assert_eq!(push(&mut r, 3, 8, false, &data(8)), Ok(None));
        assert_eq!(push(&mut r, 3, 16, true, &data(8)), Err(FragError::Invalid));
        // A last fragment ending before data already received.
        assert_eq!(push(&mut r, 4, 32, true, &data(8)), Ok(None));
        assert_eq!(push(&mut r, 4, 8, false, &data(8)), Err(FragError::Invalid));
        assert_eq!(r.memory_used(), 0);
    }

    #[test]
    fn too_large_ping_of_death() {
        let mut r = r();
        assert_eq!(push(&mut r, 1, 0, true, &data(1480)), Ok(None));
        // 65528 + 8 > 65515
        assert_eq!(
            push(&mut r, 1, 65528, false, &data(8)),
            Err(FragError::TooLarge)
        );
        assert_eq!(r.datagrams_in_progress(), 0);
        assert_eq!(push(&mut r, 2, 65512, false, &data(3)), Ok(None));
        assert_eq!(
            push(&mut r, 3, 65512, false, &data(4)),
            Err(FragError::TooLarge)
        );
        assert_eq!(
            push(&mut r, 4, usize::MAX, false, &data(4)),
            Err(FragError::TooLarge)
        );
    }

    #[test]
    fn memory_limit_refuses_new_fragments() {
        let mut r = Reassembler::new(2 * (1000 + FRAGMENT_OVERHEAD), Duration::from_secs(30));
        assert_eq!(push(&mut r, 1, 0, true, &data(1000)), Ok(None));
        assert_eq!(push(&mut r, 2, 0, true, &data(1000)), Ok(None));
        assert_eq!(r.memory_used(), 2 * (1000 + FRAGMENT_OVERHEAD));
        assert_eq!(push(&mut r, 3, 0, true, &data(8)), Err(FragError::NoMemory));
        assert_eq!(
            push(&mut r, 1, 1000, false, &data(8)),
            Err(FragError::NoMemory)
        );
        assert_eq!(r.datagrams_in_progress(), 2);
        // After a timeout the memory is back.
        assert_eq!(r.expire(T0 + Duration::from_secs(30)), 2);
        assert_eq!(r.memory_used(), 0);
        assert_eq!(push(&mut r, 3, 0, true, &data(8)), Ok(None));
    }

    #[test]
    fn datagram_count_limit() {
        let mut r = r();
        r.set_max_datagrams(2);
        assert_eq!(push(&mut r, 1, 0, true, &data(8)), Ok(None));
        assert_eq!(push(&mut r, 2, 0, true, &data(8)), Ok(None));
        assert_eq!(push(&mut r, 3, 0, true, &data(8)), Err(FragError::NoMemory));
        assert_eq!(
            push(&mut r, 1, 8, false, &data(8)),
            Ok(Some(data(8).repeat(2)))
        );
        assert_eq!(push(&mut r, 3, 0, true, &data(8)), Ok(None));
    }

    #[test]
    fn timeout() {
        let mut r = r();
        let t1 = Instant::from_secs(5);
        assert_eq!(r.push(t1, A, B, 6, 1, 0, true, &data(8)), Ok(None));
        assert_eq!(
            r.push(Instant::from_secs(10), A, B, 6, 2, 0, true, &data(8)),
            Ok(None)
        );
        assert_eq!(r.poll_at(), Some(Instant::from_secs(35)));
        assert_eq!(r.expire(Instant::from_secs(34)), 0);
        assert_eq!(r.expire(Instant::from_secs(35)), 1);
        assert_eq!(r.poll_at(), Some(Instant::from_secs(40)));
        // A late fragment of an expired datagram (not yet expired by
        // expire()) starts afresh rather than completing stale data.
        assert_eq!(
            r.push(Instant::from_secs(41), A, B, 6, 2, 8, false, &data(8)),
            Ok(None)
        );
        assert_eq!(r.poll_at(), Some(Instant::from_secs(71)));
        assert_eq!(r.memory_used(), 8 + FRAGMENT_OVERHEAD);
    }

    #[test]
    fn unfragmented_passes_through() {
        let mut r = r();
        assert_eq!(
            push(&mut r, 1, 0, false, b"hello"),
            Ok(Some(b"hello".to_vec()))
        );
        assert_eq!(r.datagrams_in_progress(), 0);
    }

    proptest::proptest! {
        /// Any permutation of a datagram's 8-byte-aligned fragments
        /// reassembles it; memory is zero afterwards.
        #[test]
        fn any_order_reassembles(n in 1usize..20, last in 1usize..8, seed in proptest::prelude::any::<u64>()) {
            let d = data(n * 8 + last);
            let mut pieces: Vec<(usize, bool, &[u8])> =
                (0..=n).map(|i| (i * 8, i < n, &d[i * 8..((i + 1) * 8).min(d.len())])).collect();
            let mut rng = crate::rand::Rng::new(seed);
            for i in (1..pieces.len()).rev() {
                let j = (rng.next_u64() % (i as u64 + 1)) as usize;
                pieces.swap(i, j);
            }
            let mut r = r();
            let mut done = None;
            for (k, (off, mf, p)) in pieces.iter().enumerate() {
                let out = push(&mut r, 9, *off, *mf, p).unwrap();
                if k + 1 < pieces.len() {
                    proptest::prop_assert!(out.is_none());
                } else {
                    done = out;
                }
            }
            proptest::prop_assert_eq!(done, Some(d));
            proptest::prop_assert_eq!(r.memory_used(), 0);
        }

        /// Random fragments never panic and never break the accounting.
        #[test]
        fn random_fragments_keep_memory_bounded(
            frags in proptest::collection::vec((0u16..3, 0usize..70000, proptest::prelude::any::<bool>(), 0usize..100), 0..50)
        ) {
            let mut r = Reassembler::new(4096, Duration::from_secs(1));
            for (i, (id, off, mf, len)) in frags.into_iter().enumerate() {
                let _ = r.push(Instant::from_millis(i as u64 * 100), A, B, 6, id, off & !7, mf, &data(len));
                proptest::prop_assert!(r.memory_used() <= 4096);
            }
            r.expire(Instant::from_secs(1000));
            proptest::prop_assert_eq!(r.memory_used(), 0);
        }
    }
}
