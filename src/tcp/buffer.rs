//! Byte storage for one connection: a growable ring buffer (send and
//! receive) and the [`Assembler`] that tracks out-of-order data.
//!
//! Memory is allocated lazily and grows by doubling up to the configured
//! capacity, and an empty buffer gives its memory back, so an idle
//! connection costs little. The *window* a connection advertises is derived
//! from the capacity, not from what happens to be allocated.
//!
//! Storage given back goes to a small per-thread [`pool`] of free buffers
//! rather than to the allocator: a bulk transfer empties its send buffer on
//! every ACK that covers everything in flight and refills it a moment
//! later, and a fresh multi-megabyte allocation costs a page fault per
//! 4 KiB page (measured: about half of a 1 GB download's CPU time before
//! the pool). With the pool the data path allocates nothing in the steady
//! state; [`pool::trim`] returns the pooled memory when the stack is idle.

/// A ring buffer of bytes with a fixed maximum capacity.
///
/// `len` bytes start at `head`. Writes beyond `len` (`write_at`) are allowed
/// for out-of-order reassembly: they land in the free space after the
/// readable bytes and become readable when `commit` is called.
#[derive(Debug)]
pub struct RingBuffer {
    storage: Vec<u8>,
    head: usize,
    len: usize,
    capacity: usize,
    /// Size of the storage last given back (when it was pooled): a stream
    /// that empties its buffer and refills it at once gets the same size
    /// back from the pool instead of growing again from 256 bytes.
    last_size: usize,
}

/// An empty buffer keeps an allocation up to this size and releases
/// anything larger. Zero: an empty buffer always gives its memory back, so
/// an idle connection holds no buffer memory at all. (It was 1024, to save
/// a keep-alive connection one small malloc/free pair per request; that
/// kept 2 x 256 bytes on every idle WebSocket, 50 MB for 100,000 of them,
/// for a saving of well under 1 % of a request's cost.)
const KEEP_WHEN_EMPTY: usize = 0;
/// Smallest allocation.
const MIN_ALLOC: usize = 256;

impl RingBuffer {
    pub fn new(capacity: usize) -> Self {
        RingBuffer {
            storage: Vec::new(),
            head: 0,
            len: 0,
            capacity,
            last_size: 0,
        }
    }

    /// Bytes stored (readable / unacknowledged).
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn capacity(&self) -> usize {
        self.capacity
    }
    /// Free space up to the capacity.
    pub fn window(&self) -> usize {
        self.capacity - self.len
    }
    /// Bytes of memory held.
    pub fn allocated(&self) -> usize {
        self.storage.len()
    }

    /// Make sure `needed` bytes (counted from head) fit in storage.
    fn reserve(&mut self, needed: usize) {
        let needed = needed.min(self.capacity);
        let cur = self.storage.len();
        if needed <= cur {
            return;
        }
        let mut new_size = cur
            .max(needed.next_power_of_two())
            .max(MIN_ALLOC)
            .max(if cur == 0 && pool::has(self.last_size) {
                self.last_size
            } else {
                0
            })
            .min(self.capacity);
        while new_size < needed {
            new_size = (new_size * 2).min(self.capacity);
        }
        // Linearize into the new storage, keeping every byte that may hold
        // data (readable or written out of order): the whole old ring.
        // (A pooled buffer holds stale bytes of an earlier connection; they
        // are never readable: only written ranges become readable.)
        let mut new = pool::take(new_size);
        if cur > 0 {
            let (a, b) = self.storage.split_at(self.head);
            new[..b.len()].copy_from_slice(b);
            new[b.len()..b.len() + a.len()].copy_from_slice(a);
        }
        let _ = pool::give(std::mem::replace(&mut self.storage, new));
        self.head = 0;
    }

    /// Append as much of `data` as fits; returns how many bytes were taken.
    pub fn enqueue(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.window());
        if n == 0 {
            return 0;
        }
        self.write_at(0, &data[..n]);
        self.len += n;
        n
    }

    /// Write `data` at `offset` bytes past the end of the stored bytes (for
    /// out-of-order segments); clipped to the capacity. Returns bytes written.
    pub fn write_at(&mut self, offset: usize, data: &[u8]) -> usize {
        let start = self.len + offset;
        if start >= self.capacity {
            return 0;
        }
        let n = data.len().min(self.capacity - start);
        if n == 0 {
            return 0;
        }
        self.reserve(start + n);
        let size = self.storage.len();
        let pos = (self.head + start) % size;
        let first = n.min(size - pos);
        self.storage[pos..pos + first].copy_from_slice(&data[..first]);
        if first < n {
            self.storage[..n - first].copy_from_slice(&data[first..n]);
        }
        n
    }

    /// Let `fill` write up to `max` bytes straight into the free space after
    /// the stored bytes (the first contiguous part of it: the ring may wrap,
    /// so `fill` can get less than `max`; call again for the rest) and
    /// store what it says it wrote. Returns that count. This is `enqueue`
    /// without the caller's intermediate buffer.
    pub fn enqueue_with(&mut self, max: usize, fill: impl FnOnce(&mut [u8]) -> usize) -> usize {
        let max = max.min(self.window());
        if max == 0 {
            return 0;
        }
        self.reserve(self.len + max);
        let size = self.storage.len();
        let pos = (self.head + self.len) % size;
        let contiguous = max.min(size - pos);
        let n = fill(&mut self.storage[pos..pos + contiguous]).min(contiguous);
        self.len += n;
        n
    }

    /// Mark `n` bytes written by `write_at(0, ..)` as stored.
    pub fn commit(&mut self, n: usize) {
        debug_assert!(self.len + n <= self.capacity);
        self.len = (self.len + n).min(self.capacity);
    }

    /// The stored bytes starting at `offset`, as up to two slices (the ring
    /// may wrap), limited to `max` bytes.
    pub fn slices(&self, offset: usize, max: usize) -> (&[u8], &[u8]) {
        if offset >= self.len || max == 0 {
            return (&[], &[]);
        }
        let n = max.min(self.len - offset);
        let size = self.storage.len();
        let pos = (self.head + offset) % size;
        let first = n.min(size - pos);
        (&self.storage[pos..pos + first], &self.storage[..n - first])
    }

    /// Copy up to `buf.len()` bytes from `offset` into `buf`.
    pub fn read_at(&self, offset: usize, buf: &mut [u8]) -> usize {
        let (a, b) = self.slices(offset, buf.len());
        buf[..a.len()].copy_from_slice(a);
        buf[a.len()..a.len() + b.len()].copy_from_slice(b);
        a.len() + b.len()
    }

    /// Drop `n` bytes from the front (read by the application / acknowledged).
    pub fn consume(&mut self, n: usize) -> usize {
        let n = n.min(self.len);
        if n == 0 {
            return 0;
        }
        self.head = (self.head + n) % self.storage.len();
        self.len -= n;
        n
    }

    /// Copy out and consume.
    pub fn dequeue(&mut self, buf: &mut [u8]) -> usize {
        let n = self.read_at(0, buf);
        self.consume(n)
    }

    /// Give memory back when nothing is stored and nothing is pending out of
    /// order (`reassembly_pending` false).
    pub fn release_if_empty(&mut self, reassembly_pending: bool) {
        if self.len == 0 && !reassembly_pending && self.storage.len() > KEEP_WHEN_EMPTY {
            // (head can stay where it is when the storage is kept)
            let size = self.storage.len();
            self.last_size = if pool::give(std::mem::take(&mut self.storage)) {
                size
            } else {
                0
            };
            self.head = 0;
        }
    }
}

impl Drop for RingBuffer {
    fn drop(&mut self) {
        let _ = pool::give(std::mem::take(&mut self.storage));
    }
}

/// Free ring-buffer storage kept for reuse, per thread (a stack lives on
/// one thread; two stacks on one thread simply share it).
///
/// Bounded: at most [`pool::MAX_BUFFERS`] buffers and [`pool::MAX_BYTES`]
/// bytes; anything beyond goes back to the allocator. Buffers smaller than
/// [`pool::MIN_POOLED`] (a keep-alive request's or a WebSocket message's
/// ring) have their own list of at most [`pool::MAX_SMALL`]: without it
/// every request allocated its two rings again. Reuse is by exact size (sizes are powers of two or a socket's
/// capacity, so there are only a few). The pool never changes what the
/// stack does, only where its memory comes from.
pub mod pool {
    use std::cell::RefCell;

    /// Buffers smaller than this count against [`MAX_SMALL`], larger ones
    /// against [`MAX_BUFFERS`] and [`MAX_BYTES`].
    pub const MIN_POOLED: usize = 16 * 1024;
    /// At most this many free buffers of [`MIN_POOLED`] bytes or more are kept.
    pub const MAX_BUFFERS: usize = 64;
    /// At most this many bytes of free buffers of [`MIN_POOLED`] or more are kept.
    pub const MAX_BYTES: usize = 64 << 20;
    /// At most this many free buffers smaller than [`MIN_POOLED`] are kept
    /// (so at most 4 MiB).
    pub const MAX_SMALL: usize = 256;

    /// Free buffers of one exact size.
    struct Class {
        size: usize,
        free: Vec<Vec<u8>>,
    }

    /// Counts and bytes of the small or the large free buffers.
    #[derive(Default)]
    struct Held {
        count: usize,
        bytes: usize,
    }

    #[derive(Default)]
    struct Pool {
        /// One list per size. Ring sizes are powers of two from 256 bytes
        /// up to a socket's capacity (or the capacity itself), so there
        /// are only a few: finding a size's list is a short scan, and
        /// taking or giving a buffer is a push or a pop (not a search
        /// through every free buffer, which cost ~1,000 instructions per
        /// keep-alive request when the list was one mixed vector).
        classes: Vec<Class>,
        small: Held,
        large: Held,
        /// Allocations made because the pool had no buffer of the size.
        misses: u64,
        /// Buffers handed out from the pool.
        hits: u64,
    }

    impl Pool {
        fn class(&mut self, size: usize) -> Option<&mut Class> {
            self.classes.iter_mut().find(|c| c.size == size)
        }

        fn held(&mut self, size: usize) -> &mut Held {
            if size < MIN_POOLED {
                &mut self.small
            } else {
                &mut self.large
            }
        }
    }

    thread_local! {
        static POOL: RefCell<Pool> = RefCell::new(Pool::default());
    }

    /// A buffer of exactly `size` bytes (contents unspecified: zero when
    /// freshly allocated, stale when reused).
    pub fn take(size: usize) -> Vec<u8> {
        if size > 0 {
            let reused = POOL.with(|p| {
                let mut p = p.borrow_mut();
                let b = p.class(size).and_then(|c| c.free.pop());
                match &b {
                    Some(_) => {
                        let held = p.held(size);
                        held.count -= 1;
                        held.bytes -= size;
                        p.hits += 1;
                    }
                    None => p.misses += 1,
                }
                b
            });
            if let Some(b) = reused {
                return b;
            }
        }
        vec![0u8; size]
    }

    /// Give storage back (kept if there is room, else freed). True if it
    /// was kept.
    pub fn give(buf: Vec<u8>) -> bool {
        let size = buf.len();
        if size == 0 {
            return false;
        }
        // `try_with`: during thread teardown the pool may be gone already.
        POOL.try_with(|p| {
            let mut p = p.borrow_mut();
            let held = p.held(size);
            let room = if size < MIN_POOLED {
                held.count < MAX_SMALL
            } else {
                held.count < MAX_BUFFERS && held.bytes + size <= MAX_BYTES
            };
            if !room {
                return false;
            }
            held.count += 1;
            held.bytes += size;
            match p.class(size) {
                Some(c) => c.free.push(buf),
                None => p.classes.push(Class {
                    size,
                    free: vec![buf],
                }),
            }
            true
        })
        .unwrap_or(false)
    }

    /// Whether a free buffer of exactly `size` bytes is pooled.
    pub fn has(size: usize) -> bool {
        size > 0
            && POOL
                .try_with(|p| {
                    p.borrow()
                        .classes
                        .iter()
                        .any(|c| c.size == size && !c.free.is_empty())
                })
                .unwrap_or(false)
    }

    /// Free every pooled buffer (call when the stack is idle, so memory
    /// goes back to the allocator). Returns the bytes released.
    pub fn trim() -> usize {
        POOL.with(|p| {
            let mut p = p.borrow_mut();
            let n = p.small.bytes + p.large.bytes;
            p.classes = Vec::new();
            p.small = Held::default();
            p.large = Held::default();
            n
        })
    }

    /// (bytes held, hits, misses) of this thread's pool.
    pub fn stats() -> (usize, u64, u64) {
        POOL.with(|p| {
            let p = p.borrow();
            (p.small.bytes + p.large.bytes, p.hits, p.misses)
        })
    }
}

/// Tracks which byte ranges past the in-order point have arrived out of
/// order (offsets relative to RCV.NXT). A bounded number of ranges: a
/// segment that would need more is refused, so memory stays bounded.
#[derive(Debug, Clone, Default)]
pub struct Assembler {
    /// Sorted, non-overlapping, non-adjacent `(start, end)` offsets.
    ranges: Vec<(u32, u32)>,
}

/// The most separate out-of-order ranges kept per connection (8 bytes
/// each: at most 4 KiB). It must be large for a large window: with 5 % loss
/// a 1 MiB window has ~35 holes, and a segment refused for want of a range
/// is a segment the sender must send again — with the old limit of 32 a
/// lossy upload collapsed to one repaired hole per RTO.
pub const MAX_RANGES: usize = 512;

impl Assembler {
    pub fn new() -> Self {
        Assembler { ranges: Vec::new() }
    }
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }
    pub fn ranges(&self) -> &[(u32, u32)] {
        &self.ranges
    }
    pub fn clear(&mut self) {
        self.ranges.clear();
    }
    /// Give the range list's memory back once no hole is left (it can grow
    /// to 4 KiB during a lossy transfer; an idle connection keeps none).
    pub fn release_if_empty(&mut self) {
        if self.ranges.is_empty() && self.ranges.capacity() > 0 {
            self.ranges = Vec::new();
        }
    }

    /// Record `[start, end)` as received. Returns false (and changes nothing)
    /// if it would need more than [`MAX_RANGES`] ranges.
    pub fn add(&mut self, start: u32, end: u32) -> bool {
        if start >= end {
            return true;
        }
        // Find the ranges that overlap or touch [start, end).
        let first = self
            .ranges
            .iter()
            .position(|&(_, e)| e >= start)
            .unwrap_or(self.ranges.len());
        let mut last = first;
        while last < self.ranges.len() && self.ranges[last].0 <= end {
            last += 1;
        }
        if first == last {
            if self.ranges.len() >= MAX_RANGES {
                return false;
            }
            self.ranges.insert(first, (start, end));
        } else {
            let s = start.min(self.ranges[first].0);
            let e = end.max(self.ranges[last - 1].1);
            self.ranges[first] = (s, e);
            self.ranges.drain(first + 1..last);
        }
        true
    }

    /// If data is now contiguous from offset 0, remove that range and return
    /// its length.
    pub fn take_front(&mut self) -> u32 {
        match self.ranges.first() {
            Some(&(0, e)) => {
                self.ranges.remove(0);
                e
            }
            _ => 0,
        }
    }

    /// Shift all offsets down by `n` (RCV.NXT advanced by `n`). Ranges that
    /// fall below zero are clipped.
    pub fn shift(&mut self, n: u32) {
        if n == 0 {
            return;
        }
        self.ranges.retain_mut(|r| {
            if r.1 <= n {
                return false;
            }
            r.0 = r.0.saturating_sub(n);
            r.1 -= n;
            true
        });
    }

    /// Is `[start, end)` entirely received already?
    pub fn contains(&self, start: u32, end: u32) -> bool {
        self.ranges.iter().any(|&(s, e)| s <= start && end <= e)
    }

    /// The range containing `offset`, if any.
    pub fn range_containing(&self, start: u32, end: u32) -> Option<(u32, u32)> {
        self.ranges
            .iter()
            .copied()
            .find(|&(s, e)| s <= start && end <= e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_wraps_and_grows() {
        let mut r = RingBuffer::new(10_000);
        assert_eq!(r.allocated(), 0);
        assert_eq!(r.enqueue(&[1u8; 3000]), 3000);
        assert_eq!(
            r.allocated(),
            4096,
            "the first allocation is the need rounded to a power of two"
        );
        let mut out = [0u8; 2500];
        assert_eq!(r.dequeue(&mut out), 2500);
        // Now wrap around the 4096-byte storage.
        let data: Vec<u8> = (0..2000u32).map(|i| i as u8).collect();
        assert_eq!(r.enqueue(&data), 2000);
        assert_eq!(r.len(), 2500);
        let (a, b) = r.slices(500, 2000);
        assert_eq!(a.len() + b.len(), 2000);
        let mut joined = a.to_vec();
        joined.extend_from_slice(b);
        assert_eq!(joined, data);
        // Grow while wrapped: contents preserved.
        let more = vec![9u8; 6000];
        assert_eq!(r.enqueue(&more), 6000);
        assert!(r.allocated() >= 8500);
        let mut all = vec![0u8; 8500];
        assert_eq!(r.read_at(0, &mut all), 8500);
        assert_eq!(&all[..500], &[1u8; 500][..]);
        assert_eq!(&all[500..2500], &data[..]);
        assert_eq!(&all[2500..], &more[..]);
        // Capacity is a hard limit.
        assert_eq!(r.enqueue(&[0u8; 5000]), 1500);
        assert_eq!(r.window(), 0);
        assert_eq!(r.enqueue(&[0u8; 1]), 0);
    }

    #[test]
    fn enqueue_with_writes_in_place_and_wraps() {
        let mut r = RingBuffer::new(4096);
        assert_eq!(r.enqueue(&[1u8; 3000]), 3000);
        let mut out = [0u8; 2000];
        assert_eq!(r.dequeue(&mut out), 2000);
        // 1000 stored at [2000, 3000): free space is [3000, 4096) then [0, 2000).
        let n = r.enqueue_with(2500, |buf| {
            assert_eq!(buf.len(), 1096, "the contiguous part only");
            buf.fill(2);
            buf.len()
        });
        assert_eq!(n, 1096);
        let n = r.enqueue_with(2500, |buf| {
            buf[..700].fill(3);
            700 // it may write less than offered
        });
        assert_eq!(n, 700);
        assert_eq!(r.len(), 1000 + 1096 + 700);
        let mut all = vec![0u8; r.len()];
        r.read_at(0, &mut all);
        assert!(all[..1000].iter().all(|&b| b == 1));
        assert!(all[1000..2096].iter().all(|&b| b == 2));
        assert!(all[2096..].iter().all(|&b| b == 3));
        // Never past the capacity, whatever `fill` claims.
        let n = r.enqueue_with(usize::MAX, |buf| buf.len() + 10);
        assert_eq!(r.len() + r.window(), 4096);
        assert!(n <= 4096 - 2796);
        assert_eq!(r.enqueue_with(10, |_| 5), 0, "full");
    }

    #[test]
    fn ring_out_of_order_then_commit() {
        let mut r = RingBuffer::new(100);
        assert_eq!(r.write_at(10, b"world"), 5);
        assert_eq!(r.len(), 0);
        assert_eq!(r.write_at(0, b"hello ...."), 10);
        r.commit(15);
        let mut out = [0u8; 15];
        assert_eq!(r.dequeue(&mut out), 15);
        assert_eq!(&out, b"hello ....world");
        // Writes beyond the capacity are clipped.
        assert_eq!(r.write_at(95, b"0123456789"), 5);
    }

    #[test]
    fn ring_releases_memory_when_empty() {
        let mut r = RingBuffer::new(1 << 20);
        r.enqueue(&[0u8; 100_000]);
        assert!(r.allocated() >= 100_000);
        r.consume(100_000);
        r.release_if_empty(true);
        assert!(r.allocated() > 0);
        r.release_if_empty(false);
        assert_eq!(r.allocated(), 0);
        // While the pool still holds the old storage, the ring takes it back
        // whole (a stream that emptied its buffer is about to refill it).
        assert_eq!(r.enqueue(b"again"), 5);
        assert_eq!(r.allocated(), 131_072, "the pooled size comes back");
        r.consume(5);
        r.release_if_empty(false);
        assert_eq!(r.allocated(), 0);
        pool::trim();
        assert_eq!(r.enqueue(b"again"), 5);
        assert_eq!(r.allocated(), 256, "a small need gets a small allocation");
        r.consume(5);
        r.release_if_empty(false);
        assert_eq!(
            r.allocated(),
            0,
            "an empty buffer holds nothing, however small (idle connections)"
        );
    }

    #[test]
    fn released_storage_is_reused_without_allocating() {
        pool::trim();
        let (_, hits0, misses0) = pool::stats();
        let mut r = RingBuffer::new(1 << 20);
        for round in 0..10u8 {
            assert_eq!(r.enqueue(&[round; 200_000]), 200_000);
            let mut out = vec![0u8; 200_000];
            assert_eq!(r.dequeue(&mut out), 200_000);
            assert!(
                out.iter().all(|&b| b == round),
                "round {round}: data intact"
            );
            r.release_if_empty(false);
            assert_eq!(r.allocated(), 0, "an empty ring holds nothing");
        }
        let (held, hits, misses) = pool::stats();
        // One enqueue of 200,000 bytes into an empty ring allocates 2^18
        // bytes once; every later round reuses that buffer.
        assert_eq!(misses - misses0, 1);
        assert_eq!(hits - hits0, 9);
        assert!(held > 0 && held <= pool::MAX_BYTES);
        assert_eq!(pool::trim(), held);
        assert_eq!(pool::stats().0, 0);
    }

    #[test]
    fn pool_is_bounded() {
        pool::trim();
        for _ in 0..(pool::MAX_BUFFERS + 10) {
            let _ = pool::give(vec![0u8; 1 << 20]);
        }
        let (held, _, _) = pool::stats();
        assert!(held <= pool::MAX_BYTES);
        assert!(held <= pool::MAX_BUFFERS << 20);
        // Small buffers have their own bounded list, reused by exact size.
        assert!(pool::give(vec![0u8; 100]), "a small buffer is kept");
        assert_eq!(pool::stats().0, held + 100);
        let (_, hits0, _) = pool::stats();
        assert_eq!(pool::take(100).len(), 100);
        assert_eq!(pool::stats().1, hits0 + 1, "taken from the pool");
        for _ in 0..(pool::MAX_SMALL + 10) {
            let _ = pool::give(vec![0u8; 100]);
        }
        assert_eq!(pool::stats().0, held + 100 * pool::MAX_SMALL);
        assert!(!pool::give(vec![0u8; 100]), "small list full: freed");
        assert!(!pool::give(Vec::new()), "nothing to keep");
        pool::trim();
        assert_eq!(pool::stats().0, 0);
    }

    #[test]
    fn assembler_merges() {
        let mut a = Assembler::new();
        assert!(a.add(10, 20));
        assert!(a.add(30, 40));
        assert_eq!(a.ranges(), &[(10, 20), (30, 40)]);
        assert!(a.add(20, 30)); // bridges both
        assert_eq!(a.ranges(), &[(10, 40)]);
        assert!(a.add(5, 12));
        assert_eq!(a.ranges(), &[(5, 40)]);
        assert_eq!(a.take_front(), 0);
        assert!(a.add(0, 5));
        assert_eq!(a.take_front(), 40);
        assert!(a.is_empty());
    }

    #[test]
    fn assembler_shift_and_limit() {
        let mut a = Assembler::new();
        for i in 0..MAX_RANGES as u32 {
            assert!(a.add(i * 10 + 5, i * 10 + 8));
        }
        assert!(!a.add(1000, 1001), "range limit");
        assert!(a.add(15, 18), "duplicate of an existing range is fine");
        a.shift(16);
        assert_eq!(a.ranges()[0], (0, 2));
        assert_eq!(a.ranges()[1], (9, 12));
        assert!(a.contains(9, 12));
        assert!(!a.contains(8, 12));
    }
}
