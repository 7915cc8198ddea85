//! What keeps streaming light under a flood: the event budget per reason and location,
//! checked before anything is read from the packet, and the rate limit per flow and reason,
//! checked before an event is written. Both count exactly what they hold back and report it
//! in a record of its own before the key's next event; user space reads what is left at
//! exit.

use aya_ebpf::helpers::{bpf_get_smp_processor_id, bpf_jiffies64, bpf_ktime_get_ns};
use netdrop_common::{
    BUDGET_SETS, BUDGET_WAYS, BudgetRecord, BudgetSet, BudgetState, DropEvent, RateState,
    SuppressedRecord, stat,
};

use crate::{
    count,
    maps::{BUDGET, EVENTS, RATE},
    pipeline::{Scratch, flow_key},
};

/// The event budget: true when this drop of `reason` at `location` may be examined in full
/// (one of the first `budget` of its pair this second on this CPU), false when it is
/// counted as over budget. Before the first drop a pair examines after going over, a
/// [`BudgetRecord`] says how many were not; a record that finds the ring full is retried
/// before the next one. `now` is the clock when the caller has read it, else 0. `scratch`
/// keeps the kfree_skb program's pairs apart from those of a TCP kprobe that interrupts it.
#[inline(always)]
pub fn within_budget(scratch: Scratch, reason: u32, location: u64, budget: u32, now: u64) -> bool {
    let index = BudgetSet::of(reason, location) + scratch as u32 * BUDGET_SETS;
    let Some(set) = BUDGET.get_ptr_mut(index) else {
        return true;
    };
    // SAFETY: this CPU's entry of a per-CPU array, used by one program at a time on this CPU
    // (the other hook kind has entries of its own).
    let set = unsafe { &mut *set };
    let way = way_of(set, reason, location, now);
    if way >= BUDGET_WAYS {
        return true;
    }
    let state = &mut set.ways[way & (BUDGET_WAYS - 1)];
    // The nanosecond clock costs a drop more than everything else here (about 70 ns in a
    // VM, where counting a drop costs 100): it is read once per timer tick, which jiffies,
    // a plain memory read, tells.
    // SAFETY: plain helper calls.
    let tick = unsafe { bpf_jiffies64() };
    if state.tick != tick {
        state.tick = tick;
        let window = clock(now) / 1_000_000_000;
        if state.window != window {
            state.window = window;
            state.examined = 0;
        }
    }
    if state.examined >= budget {
        state.skipped += 1;
        count::stat(stat::OVER_BUDGET);
        return false;
    }
    state.examined += 1;
    if state.skipped != state.reported && report(state, now) {
        state.reported = state.skipped;
    }
    true
}

/// The way of `set` that holds (`reason`, `location`), claiming one when none does: a free
/// way (never used, or with nothing left to report), else the one seen least recently,
/// once a record reports what it holds. [`BUDGET_WAYS`] when that record finds the ring
/// full: the drop is then examined in full, and no count is lost.
#[inline(always)]
fn way_of(set: &mut BudgetSet, reason: u32, location: u64, now: u64) -> usize {
    let mut free = BUDGET_WAYS;
    let mut oldest = 0;
    let mut oldest_tick = u64::MAX;
    for (i, w) in set.ways.iter().enumerate() {
        if w.location == location && w.reason == reason {
            return i;
        }
        if free == BUDGET_WAYS && w.skipped == w.reported {
            free = i;
        }
        if w.tick < oldest_tick {
            oldest = i;
            oldest_tick = w.tick;
        }
    }
    let way = if free < BUDGET_WAYS {
        free
    } else if report(&set.ways[oldest & (BUDGET_WAYS - 1)], now) {
        oldest
    } else {
        return BUDGET_WAYS;
    };
    set.ways[way & (BUDGET_WAYS - 1)] = BudgetState {
        reason,
        location,
        ..BudgetState::default()
    };
    way
}

/// Writes a [`BudgetRecord`] of what `state` holds over budget and not yet reported; false
/// when the ring buffer is full.
#[inline(always)]
fn report(state: &BudgetState, now: u64) -> bool {
    let record = BudgetRecord {
        reason: state.reason,
        // SAFETY: plain helper calls.
        cpu: unsafe { bpf_get_smp_processor_id() },
        location: state.location,
        count: state.skipped - state.reported,
        timestamp_ns: clock(now),
    };
    EVENTS.output::<BudgetRecord>(&record, 0).is_ok()
}

/// `now` when the caller has read the clock (non-zero), else the clock.
#[inline(always)]
fn clock(now: u64) -> u64 {
    if now != 0 {
        now
    } else {
        // SAFETY: plain helper call.
        unsafe { bpf_ktime_get_ns() }
    }
}

/// The rate limit: true when `ev` may be written (one of the first `limit` events of its
/// flow and reason this second on this CPU), false when it is counted as suppressed. Before
/// the first event a key writes after suppressing some, a [`SuppressedRecord`] says how
/// many; when that record finds the ring full it is retried before the next event.
#[inline(always)]
pub fn admit(ev: &DropEvent, now: u64, limit: u32) -> bool {
    let key = flow_key(ev);
    let window = now / 1_000_000_000;
    let Some(state) = RATE.get_ptr_mut(key) else {
        let fresh = RateState {
            window,
            written: 1,
            ..RateState::default()
        };
        // A full table evicts its least recently used key: the new one is always tracked.
        let _ = RATE.insert(key, fresh, 0);
        return true;
    };
    // SAFETY: this CPU's value of a per-CPU map; nothing else on this CPU runs this
    // pipeline for the same key meanwhile.
    let state = unsafe { &mut *state };
    if state.window != window {
        state.window = window;
        state.written = 0;
    }
    if state.written >= limit {
        state.suppressed += 1;
        count::stat(stat::SUPPRESSED);
        return false;
    }
    state.written += 1;
    let pending = state.suppressed - state.reported;
    if pending > 0 {
        let record = SuppressedRecord {
            key,
            count: pending,
            timestamp_ns: now,
        };
        if EVENTS.output::<SuppressedRecord>(&record, 0).is_ok() {
            state.reported = state.suppressed;
        }
    }
    true
}
