//! A queue of deadlines with lazy deletion, for the stack's connections
//! and the services' HTTP / WebSocket timers.
//!
//! Each owner (a connection slot, a socket handle) remembers the one
//! deadline it is waiting for; the queue holds `(deadline, key)` entries,
//! and an entry whose owner no longer waits for that deadline (moved
//! earlier, fired, or the owner is gone) is *stale*: it is skipped when it
//! comes out. Moving a deadline or removing an owner costs nothing.
//!
//! The price is stale entries. After a burst of short connections (`ab`:
//! 40,000 per second, each leaving a header timer 10 s out and a linger
//! timer 5 s out), a binary heap held hundreds of thousands of them for
//! seconds after the connections had gone, and popping them, each pop a
//! walk down a heap far larger than the cache, took several per cent of a
//! core: every hundredth WebSocket echo waited behind it (the p99 doubled).
//! So the queue compacts itself: when it holds more than twice as many
//! entries as there are owners (plus a floor), the owner says which
//! entries are live and the rest go. Compaction is O(entries) and happens
//! only after at least as many pushes, so each push pays O(1) for it.

use crate::time::Instant;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Entries a queue may hold before it compacts, whatever the owner count.
pub const COMPACT_FLOOR: usize = 1024;

/// Deadlines with lazy deletion (see the module docs).
#[derive(Debug)]
pub struct TimerQueue<K> {
    heap: BinaryHeap<Reverse<(Instant, K)>>,
    /// No compaction below this many entries: [`COMPACT_FLOOR`], or twice
    /// what the last compaction kept (so that an owner count that
    /// undercounts live entries cannot make every push compact).
    floor: usize,
}

impl<K: Ord + Copy> Default for TimerQueue<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Ord + Copy> TimerQueue<K> {
    pub const fn new() -> Self {
        TimerQueue {
            heap: BinaryHeap::new(),
            floor: COMPACT_FLOOR,
        }
    }

    /// Add an entry (the owner records `at` as its deadline).
    pub fn push(&mut self, at: Instant, key: K) {
        self.heap.push(Reverse((at, key)));
    }

    /// The earliest deadline held (perhaps a stale entry's).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Take out the earliest entry if it is due at `now`; the caller checks
    /// whether it is stale.
    pub fn pop_due(&mut self, now: Instant) -> Option<(Instant, K)> {
        match self.heap.peek() {
            Some(Reverse((at, _))) if *at <= now => self.heap.pop().map(|Reverse(e)| e),
            _ => None,
        }
    }

    /// Entries held, stale ones included.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Capacity in entries (for memory accounting).
    pub fn capacity(&self) -> usize {
        self.heap.capacity()
    }

    /// Bytes of storage held.
    pub fn bytes(&self) -> usize {
        self.heap.capacity() * std::mem::size_of::<Reverse<(Instant, K)>>()
    }

    pub fn shrink_to_fit(&mut self) {
        self.heap.shrink_to_fit();
    }

    /// Shrink the storage if it is at most a quarter full (amortized: it
    /// takes a fall to a quarter, and growth doubles again); returns the
    /// bytes released.
    pub fn shrink_if_sparse(&mut self) -> usize {
        let before = self.bytes();
        if self.heap.len() < self.heap.capacity() / 4 {
            self.heap.shrink_to_fit();
        }
        before - self.bytes()
    }

    /// Keep only the entries `keep` accepts.
    pub fn retain(&mut self, mut keep: impl FnMut(Instant, &K) -> bool) {
        self.heap.retain(|Reverse((at, k))| keep(*at, k));
    }

    /// Whether stale entries may outnumber live ones: more than twice
    /// `owners` entries (each owner has at most one live entry), more than
    /// [`COMPACT_FLOOR`], and more than twice what the last compaction kept.
    pub fn wants_compaction(&self, owners: usize) -> bool {
        self.heap.len() > self.floor.max(owners.saturating_mul(2))
    }

    /// Drop the stale entries (`live` tells them apart) if
    /// [`wants_compaction`](Self::wants_compaction); returns how many went.
    pub fn compact(&mut self, owners: usize, live: impl FnMut(Instant, &K) -> bool) -> usize {
        if !self.wants_compaction(owners) {
            return 0;
        }
        let before = self.heap.len();
        self.retain(live);
        self.floor = COMPACT_FLOOR.max(self.heap.len().saturating_mul(2));
        before - self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn t(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    #[test]
    fn pops_in_deadline_order_only_when_due() {
        let mut q = TimerQueue::new();
        q.push(t(30), 3u32);
        q.push(t(10), 1);
        q.push(t(20), 2);
        assert_eq!(q.next_deadline(), Some(t(10)));
        assert_eq!(q.pop_due(t(5)), None);
        assert_eq!(q.pop_due(t(25)), Some((t(10), 1)));
        assert_eq!(q.pop_due(t(25)), Some((t(20), 2)));
        assert_eq!(q.pop_due(t(25)), None);
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn compaction_keeps_every_live_entry_and_bounds_the_stale_ones() {
        // Owners come and go (a burst of short connections): each leaves
        // an entry behind when it goes. The queue stays within twice the
        // owners (or the floor), and every live deadline still fires.
        let mut q = TimerQueue::new();
        let mut scheduled: HashMap<u32, Instant> = HashMap::new();
        let mut max_len = 0;
        for i in 0..100_000u32 {
            let at = t(10_000 + u64::from(i));
            scheduled.insert(i, at);
            q.push(at, i);
            if i >= 4 {
                scheduled.remove(&(i - 4)); // four live at a time
            }
            q.compact(scheduled.len(), |at, k| scheduled.get(k) == Some(&at));
            max_len = max_len.max(q.len());
        }
        assert!(max_len <= COMPACT_FLOOR + 1, "queue grew to {max_len}");
        let mut fired = Vec::new();
        while let Some((at, k)) = q.pop_due(t(u64::MAX / 2000)) {
            if scheduled.get(&k) == Some(&at) {
                fired.push(k);
            }
        }
        assert_eq!(fired, vec![99_996, 99_997, 99_998, 99_999]);
    }

    #[test]
    fn no_compaction_while_entries_are_live() {
        let mut q = TimerQueue::new();
        for i in 0..5000u32 {
            q.push(t(u64::from(i)), i);
        }
        // 5000 owners, 5000 live entries: nothing to gain.
        assert_eq!(q.compact(5000, |_, _| true), 0);
        assert_eq!(q.len(), 5000);
        // Owners gone: over twice their number, the stale entries go.
        assert_eq!(q.compact(100, |_, k| *k < 100), 4900);
        assert_eq!(q.len(), 100);
    }

    #[test]
    fn an_owner_count_too_low_does_not_make_every_push_compact() {
        // 3000 live entries but the caller claims 10 owners: one compaction
        // finds nothing stale, and the next waits for the queue to double.
        let mut q = TimerQueue::new();
        for i in 0..3000u32 {
            q.push(t(u64::from(i)), i);
        }
        let mut compactions = 0;
        for i in 3000..6000u32 {
            q.push(t(u64::from(i)), i);
            if q.wants_compaction(10) {
                compactions += 1;
                assert_eq!(q.compact(10, |_, _| true), 0);
            }
        }
        assert_eq!(compactions, 1);
    }
}
