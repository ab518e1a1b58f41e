//! Per-thread spares for small per-connection collections.
//!
//! An idle connection holds no heap memory: its SACK scoreboard, its
//! WebSocket event queue and output buffer are released when they empty
//! (100,000 idle WebSockets, docs/benchmarks.md). Released to `malloc`, a
//! busy connection would allocate them again for every request or message;
//! released here, the next one takes an emptied collection back with its
//! capacity, and the data path stays allocation-free (`cargo bench --bench
//! alloc`). Bounded: at most [`MAX_SPARES`] collections of at most
//! [`MAX_BYTES`] each per element type; [`trim`] empties a pool (the
//! runtime's idle trim).

use std::collections::VecDeque;

/// Most spares kept per element type and thread.
pub const MAX_SPARES: usize = 64;
/// Larger collections go back to the allocator.
pub const MAX_BYTES: usize = 64 * 1024;

/// An element type with a per-thread pool of spare `Vec`s.
pub trait Spare: Sized + 'static {
    #[doc(hidden)]
    fn with_pool<R>(f: impl FnOnce(&mut Vec<Vec<Self>>) -> R) -> R;
}

/// Give a pool to an element type.
#[macro_export]
#[doc(hidden)]
macro_rules! spare_pool {
    ($t:ty) => {
        impl $crate::spare::Spare for $t {
            fn with_pool<R>(f: impl FnOnce(&mut Vec<Vec<$t>>) -> R) -> R {
                thread_local! {
                    static POOL: std::cell::RefCell<Vec<Vec<$t>>> =
                        const { std::cell::RefCell::new(Vec::new()) };
                }
                POOL.with(|p| f(&mut p.borrow_mut()))
            }
        }
    };
}

spare_pool!(u8);

/// Keep `v`'s storage for reuse (its contents are dropped).
pub fn give_vec<T: Spare>(mut v: Vec<T>) {
    v.clear();
    let bytes = v.capacity() * std::mem::size_of::<T>();
    if v.capacity() == 0 || bytes > MAX_BYTES {
        return;
    }
    T::with_pool(|p| {
        if p.len() < MAX_SPARES {
            p.push(v);
        }
    });
}

/// An empty `Vec`, with the capacity of a spare if there is one.
pub fn take_vec<T: Spare>() -> Vec<T> {
    T::with_pool(|p| p.pop()).unwrap_or_default()
}

/// [`give_vec`] for a queue (an empty `VecDeque` converts without copying).
pub fn give_deque<T: Spare>(mut d: VecDeque<T>) {
    d.clear();
    give_vec(Vec::from(d));
}

/// [`take_vec`] for a queue.
pub fn take_deque<T: Spare>() -> VecDeque<T> {
    VecDeque::from(take_vec::<T>())
}

/// Drop every spare of `T` on this thread; returns the bytes released.
pub fn trim<T: Spare>() -> usize {
    T::with_pool(|p| {
        let bytes = p
            .iter()
            .map(|v| v.capacity() * std::mem::size_of::<T>())
            .sum();
        *p = Vec::new();
        bytes
    })
}

/// Spares of `T` held on this thread.
pub fn count<T: Spare>() -> usize {
    T::with_pool(|p| p.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_comes_back_and_is_bounded() {
        trim::<u8>();
        let mut v = Vec::with_capacity(100);
        v.extend_from_slice(b"hello");
        let ptr = v.as_ptr();
        give_vec(v);
        assert_eq!(count::<u8>(), 1);
        let w: Vec<u8> = take_vec();
        assert!(w.is_empty() && w.capacity() >= 100 && w.as_ptr() == ptr);
        // Too large, or nothing to keep: not pooled.
        give_vec(Vec::<u8>::with_capacity(MAX_BYTES + 1));
        give_vec(Vec::<u8>::new());
        assert_eq!(count::<u8>(), 0);
        for _ in 0..MAX_SPARES + 10 {
            give_vec(Vec::<u8>::with_capacity(8));
        }
        assert_eq!(count::<u8>(), MAX_SPARES);
        assert!(trim::<u8>() >= 8 * MAX_SPARES);
        assert_eq!(count::<u8>(), 0);
        // A queue round-trips without reallocating.
        let mut d: VecDeque<u8> = VecDeque::with_capacity(64);
        d.push_back(1);
        give_deque(d);
        let d2: VecDeque<u8> = take_deque();
        assert!(d2.is_empty() && d2.capacity() >= 64);
    }
}
