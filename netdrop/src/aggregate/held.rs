//! Counts drained from the kernel's attribution maps, held in user space within a bound.
//!
//! The kernel counts per location, device and flow into fixed-size maps. User space drains
//! them about once a second (see `probe`), so the kernel side always has room for what is
//! dropping now, and adds what it drained here. When more keys are held than the bound
//! allows, the ones that have been quiet the longest (then the smallest) are let go; their
//! drops are counted as evicted, so groups plus evicted still add up to every attributed
//! drop.

use std::{collections::HashMap, hash::Hash};

/// Per-key totals since start, bounded to `capacity` keys.
#[derive(Debug)]
pub struct Held<K> {
    counts: HashMap<K, Entry>,
    capacity: usize,
    /// Drops of keys let go to stay within the bound.
    evicted: u64,
    /// Drain rounds so far.
    round: u64,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    total: u64,
    /// The last round in which the key grew.
    active: u64,
}

impl<K: Copy + Eq + Hash + Ord> Held<K> {
    /// An empty table that keeps at most `capacity` keys (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            counts: HashMap::new(),
            capacity: capacity.max(1),
            evicted: 0,
            round: 0,
        }
    }

    /// Adds `n` drops of `key` drained in this round.
    pub fn add(&mut self, key: K, n: u64) {
        if n == 0 {
            return;
        }
        let round = self.round;
        let e = self.counts.entry(key).or_insert(Entry {
            total: 0,
            active: round,
        });
        e.total += n;
        e.active = round;
    }

    /// Ends a drain round: over the bound, lets the quietest keys go (down to nine tenths
    /// of the bound, so this does not happen on every round).
    pub fn end_round(&mut self) {
        self.round += 1;
        if self.counts.len() <= self.capacity {
            return;
        }
        let keep = self.capacity - self.capacity / 10;
        let mut order: Vec<(u64, u64, K)> = self
            .counts
            .iter()
            .map(|(k, e)| (e.active, e.total, *k))
            .collect();
        order.sort_unstable();
        for (_, total, key) in order.into_iter().take(self.counts.len() - keep) {
            self.counts.remove(&key);
            self.evicted += total;
        }
    }

    /// Drops of keys let go since start.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Keys held now.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.counts.len()
    }

    /// Held totals plus `live` counts not drained yet, per key.
    pub fn with_live(&self, live: impl IntoIterator<Item = (K, u64)>) -> HashMap<K, u64> {
        let mut out: HashMap<K, u64> = self.counts.iter().map(|(k, e)| (*k, e.total)).collect();
        for (k, n) in live {
            *out.entry(k).or_default() += n;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_accumulate_over_rounds_and_merge_with_live_counts() {
        let mut h = Held::new(8);
        h.add(1u32, 5);
        h.end_round();
        h.add(1, 2);
        h.add(2, 1);
        h.end_round();
        let now = h.with_live([(1, 10), (3, 4)]);
        assert_eq!(now, HashMap::from([(1, 17), (2, 1), (3, 4)]));
        assert_eq!(h.evicted(), 0);
    }

    #[test]
    fn over_the_bound_the_quietest_go_and_their_drops_stay_counted() {
        let mut h = Held::new(10);
        // Twenty keys active long ago, one busy key now.
        for k in 0..20u32 {
            h.add(k, 1);
        }
        h.end_round();
        assert_eq!(h.len(), 9, "down to nine tenths of the bound");
        assert_eq!(h.evicted(), 11);
        h.add(100, 500);
        for k in 200..205u32 {
            h.add(k, 1);
        }
        h.end_round();
        let now = h.with_live([]);
        assert_eq!(now.get(&100), Some(&500), "the busy key is held");
        assert!(h.len() <= 10);
        // Every drop is either held or evicted.
        let held: u64 = now.values().sum();
        assert_eq!(held + h.evicted(), 20 + 500 + 5);
    }

    #[test]
    fn a_recently_active_key_outlives_a_bigger_quiet_one() {
        let mut h = Held::new(2);
        h.add('a', 1000);
        h.add('b', 1);
        h.end_round();
        h.add('b', 1);
        h.add('c', 1);
        h.end_round();
        let now = h.with_live([]);
        assert!(!now.contains_key(&'a'), "{now:?}");
        assert_eq!(h.evicted(), 1000);
    }
}
