//! What keeps streaming light under a flood: the event budget per reason and location,
//! checked before anything is read from the packet, and the rate limit per flow and reason,
//! checked before an event is written. Both count exactly what they hold back and report it
//! in a record of its own before the key's next event; user space reads what is left at
//! exit.

use aya_ebpf::helpers::{bpf_get_smp_processor_id, bpf_jiffies64, bpf_ktime_get_ns};
use netdrop_common::{BudgetRecord, BudgetState, DropEvent, RateState, SuppressedRecord, stat};

use crate::{
    count,
    maps::{BUDGET, EVENTS, RATE},
    pipeline::flow_key,
};

/// The event budget: true when this drop of `reason` at `location` may be examined in full
/// (one of the first `budget` of its pair this second on this CPU), false when it is
/// counted as over budget. Before the first drop a pair examines after going over, a
/// [`BudgetRecord`] says how many were not; a record that finds the ring full is retried
/// before the next one. A pair whose slot another pair holds with drops still unreported is
/// examined in full: the budget never loses count.
#[inline(always)]
pub fn within_budget(reason: u32, location: u64, budget: u32) -> bool {
    let Some(state) = BUDGET.get_ptr_mut(BudgetState::slot(reason, location)) else {
        return true;
    };
    // SAFETY: this CPU's slot of a per-CPU array. Only a TCP kprobe interrupting the
    // kfree_skb program on this CPU could touch it meanwhile, for its own reasons, which
    // hash to this slot only by a rare collision; then a report could miss one drop, never
    // the total in STATS.
    let state = unsafe { &mut *state };
    if state.reason != reason || state.location != location {
        if state.skipped != state.reported {
            return true;
        }
        *state = BudgetState {
            reason,
            location,
            ..BudgetState::default()
        };
    }
    // The nanosecond clock costs a drop more than everything else here (about 70 ns in a
    // VM, where counting a drop costs 100): it is read once per timer tick, which jiffies,
    // a plain memory read, tells.
    // SAFETY: plain helper calls.
    let tick = unsafe { bpf_jiffies64() };
    if state.tick != tick {
        state.tick = tick;
        let window = unsafe { bpf_ktime_get_ns() } / 1_000_000_000;
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
    let pending = state.skipped - state.reported;
    if pending > 0 {
        let record = BudgetRecord {
            reason,
            // SAFETY: plain helper call.
            cpu: unsafe { bpf_get_smp_processor_id() },
            location,
            count: pending,
            // SAFETY: plain helper call.
            timestamp_ns: unsafe { bpf_ktime_get_ns() },
        };
        if EVENTS.output::<BudgetRecord>(&record, 0).is_ok() {
            state.reported = state.skipped;
        }
    }
    true
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
