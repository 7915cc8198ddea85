//! Exact per-CPU counts, independent of the event stream.

use aya_ebpf::{bindings::BPF_NOEXIST, maps::PerCpuHashMap};

use crate::maps::STATS;

const EEXIST: i32 = 17;

/// Adds one to counter `index` of [`STATS`] on this CPU.
#[inline(always)]
pub fn stat(index: u32) {
    if let Some(v) = STATS.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, only this program on this CPU writes it.
        unsafe { *v += 1 };
    }
}

/// Adds one to `key` in `map` on this CPU; false when the map is full.
#[inline(always)]
pub fn bump<K>(map: &PerCpuHashMap<K, u64>, key: &K) -> bool {
    if let Some(v) = map.get_ptr_mut(key) {
        // SAFETY: per-CPU slot, only this program on this CPU writes it.
        unsafe { *v += 1 };
        return true;
    }
    match map.insert(key, 1, BPF_NOEXIST as u64) {
        Ok(()) => true,
        // Another CPU created the entry between our lookup and insert.
        Err(e) if e == -EEXIST => match map.get_ptr_mut(key) {
            Some(v) => {
                // SAFETY: as above.
                unsafe { *v += 1 };
                true
            }
            None => false,
        },
        Err(_) => false,
    }
}

/// [`bump`] into `first` or `second`, as `generation` says. Each branch names its map, so
/// the verifier never sees a map pointer that could be either.
#[inline(always)]
pub fn bump_in<K>(
    generation: u32,
    first: &PerCpuHashMap<K, u64>,
    second: &PerCpuHashMap<K, u64>,
    key: &K,
) -> bool {
    if generation == 0 {
        bump(first, key)
    } else {
        bump(second, key)
    }
}
