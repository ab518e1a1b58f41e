//! [`HandleMap`]: a service's per-connection state, found by socket handle.
//!
//! A service looks its connection up several times per event (read, feed,
//! write, close check, timer), so the lookup is on the per-request path. A
//! [`SocketHandle`] is a slot index plus a generation, and the stack reuses
//! freed slots (its table stays dense), so the state can live in a vector
//! at the handle's index: a lookup is a bounds check and a generation
//! compare instead of a hash and a probe. A handle whose generation does
//! not match (a stale one) finds nothing, as in a hash map keyed by the
//! whole handle.

use crate::tcp::SocketHandle;

/// Per-connection values keyed by [`SocketHandle`], stored at the handle's
/// slot index.
pub struct HandleMap<V> {
    /// `entries[i]` holds the value of the handle `(i, generation)`.
    entries: Vec<Option<(u32, V)>>,
    len: usize,
}

impl<V: std::fmt::Debug> std::fmt::Debug for HandleMap<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(
                self.keys()
                    .zip(self.entries.iter().flatten().map(|(_, v)| v)),
            )
            .finish()
    }
}

impl<V> Default for HandleMap<V> {
    fn default() -> Self {
        HandleMap {
            entries: Vec::new(),
            len: 0,
        }
    }
}

impl<V> HandleMap<V> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Values held.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn contains_key(&self, h: &SocketHandle) -> bool {
        self.get(h).is_some()
    }

    pub fn get(&self, h: &SocketHandle) -> Option<&V> {
        match self.entries.get(h.index as usize) {
            Some(Some((g, v))) if *g == h.generation => Some(v),
            _ => None,
        }
    }

    pub fn get_mut(&mut self, h: &SocketHandle) -> Option<&mut V> {
        match self.entries.get_mut(h.index as usize) {
            Some(Some((g, v))) if *g == h.generation => Some(v),
            _ => None,
        }
    }

    /// Store `v` for `h`; returns the value it replaces: `h`'s own, or one
    /// left behind by an older handle of the same slot.
    pub fn insert(&mut self, h: SocketHandle, v: V) -> Option<V> {
        let i = h.index as usize;
        if i >= self.entries.len() {
            self.entries.resize_with(i + 1, || None);
        }
        let old = self.entries[i].replace((h.generation, v));
        if old.is_none() {
            self.len += 1;
        }
        old.map(|(_, v)| v)
    }

    pub fn remove(&mut self, h: &SocketHandle) -> Option<V> {
        let e = self.entries.get_mut(h.index as usize)?;
        if !matches!(e, Some((g, _)) if *g == h.generation) {
            return None;
        }
        self.len -= 1;
        e.take().map(|(_, v)| v)
    }

    /// The handles held, in slot order.
    pub fn keys(&self) -> impl Iterator<Item = SocketHandle> + '_ {
        self.entries.iter().enumerate().filter_map(|(i, e)| {
            e.as_ref().map(|(g, _)| SocketHandle {
                index: i as u32,
                generation: *g,
            })
        })
    }

    /// Take every value out, with its handle.
    pub fn drain(&mut self) -> impl Iterator<Item = (SocketHandle, V)> {
        self.len = 0;
        std::mem::take(&mut self.entries)
            .into_iter()
            .enumerate()
            .filter_map(|(i, e)| {
                e.map(|(g, v)| {
                    (
                        SocketHandle {
                            index: i as u32,
                            generation: g,
                        },
                        v,
                    )
                })
            })
    }

    /// Give back the memory past the last value held (after a burst of
    /// connections); returns the bytes released. Like the stack's own slot
    /// table, only the empty tail goes: the rest is indexed by slot.
    pub fn shrink(&mut self) -> usize {
        let before = self.entries.capacity();
        let used = self
            .entries
            .iter()
            .rposition(|e| e.is_some())
            .map_or(0, |i| i + 1);
        self.entries.truncate(used);
        if self.entries.capacity() > 2 * used.max(8) {
            self.entries.shrink_to_fit();
        }
        (before - self.entries.capacity()) * std::mem::size_of::<Option<(u32, V)>>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(index: u32, generation: u32) -> SocketHandle {
        SocketHandle { index, generation }
    }

    #[test]
    fn lookup_by_handle_and_generation() {
        let mut m = HandleMap::new();
        assert!(m.insert(h(3, 1), "a").is_none());
        assert!(m.insert(h(0, 7), "b").is_none());
        assert_eq!(m.len(), 2);
        assert_eq!(m.get(&h(3, 1)), Some(&"a"));
        // A stale handle to the same slot finds nothing...
        assert_eq!(m.get(&h(3, 0)), None);
        assert!(!m.contains_key(&h(3, 2)));
        assert_eq!(m.remove(&h(3, 2)), None);
        // ...and neither does an index never used.
        assert_eq!(m.get(&h(100, 1)), None);
        *m.get_mut(&h(0, 7)).unwrap() = "c";
        assert_eq!(m.keys().collect::<Vec<_>>(), vec![h(0, 7), h(3, 1)]);
        assert_eq!(m.remove(&h(3, 1)), Some("a"));
        assert_eq!(m.remove(&h(3, 1)), None);
        assert_eq!(m.len(), 1);
        // The slot reused with a new generation replaces nothing live.
        assert!(m.insert(h(3, 2), "d").is_none());
        assert_eq!(m.insert(h(3, 2), "e"), Some("d"));
        assert_eq!(m.len(), 2);
        let all: Vec<_> = m.drain().collect();
        assert_eq!(all, vec![(h(0, 7), "c"), (h(3, 2), "e")]);
        assert!(m.is_empty());
        assert_eq!(m.get(&h(0, 7)), None);
    }

    #[test]
    fn shrink_drops_the_empty_tail_only() {
        let mut m = HandleMap::new();
        for i in 0..1000 {
            m.insert(h(i, 1), i);
        }
        for i in 10..1000 {
            m.remove(&h(i, 1));
        }
        assert!(m.shrink() > 0);
        assert_eq!(m.len(), 10);
        assert_eq!(m.get(&h(9, 1)), Some(&9));
        assert!(m.entries.capacity() < 1000);
        // Nothing more to give back.
        assert_eq!(m.shrink(), 0);
    }
}
