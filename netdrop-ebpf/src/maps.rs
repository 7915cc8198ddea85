//! Maps shared by every hook. User space resizes `EVENTS` and the `BY_FLOW` maps at load
//! time.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruPerCpuHashMap, PerCpuArray, PerCpuHashMap, RingBuf, StackTrace},
};
use netdrop_common::{
    BUDGET_ENTRIES, BudgetSet, DeviceKey, DropEvent, FlowKey, LocationKey, MAX_DEVICES, MAX_FLOWS,
    MAX_LOCATIONS, MAX_REASON_FILTER, MAX_REASONS, MAX_STACKS, RateState, stat,
};

#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(1 << 22, 0);

/// Events written per flow and reason this second, per CPU, when a rate limit is set.
/// Per CPU so the check costs a dropping CPU no shared cache line; LRU so new flows always
/// find room (a key pushed out loses only its per-key count, never the total).
#[map]
pub static RATE: LruPerCpuHashMap<FlowKey, RateState> = LruPerCpuHashMap::with_max_entries(1, 0);

/// Drops examined per reason and location this second, per CPU, when an event budget is
/// set (see `limits::within_budget`): a set of pairs per entry, the kfree_skb program's
/// sets first, then the TCP kprobes' (which can interrupt it). An array: the check costs
/// one lookup, no hashing in the map.
#[map]
pub static BUDGET: PerCpuArray<BudgetSet> = PerCpuArray::with_max_entries(BUDGET_ENTRIES, 0);

#[map]
pub static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(stat::COUNT, 0);

#[map]
pub static BY_REASON: PerCpuHashMap<u32, u64> = PerCpuHashMap::with_max_entries(MAX_REASONS, 0);

// Two maps of each attribution kind: the kernel counts into the one [`GENERATION`] names
// while user space drains the other (see `netdrop_common::map::GENERATION`).

#[map]
pub static BY_LOCATION_0: PerCpuHashMap<LocationKey, u64> =
    PerCpuHashMap::with_max_entries(MAX_LOCATIONS, 0);
#[map]
pub static BY_LOCATION_1: PerCpuHashMap<LocationKey, u64> =
    PerCpuHashMap::with_max_entries(MAX_LOCATIONS, 0);

#[map]
pub static BY_DEVICE_0: PerCpuHashMap<DeviceKey, u64> =
    PerCpuHashMap::with_max_entries(MAX_DEVICES, 0);
#[map]
pub static BY_DEVICE_1: PerCpuHashMap<DeviceKey, u64> =
    PerCpuHashMap::with_max_entries(MAX_DEVICES, 0);

#[map]
pub static BY_FLOW_0: PerCpuHashMap<FlowKey, u64> = PerCpuHashMap::with_max_entries(MAX_FLOWS, 0);
#[map]
pub static BY_FLOW_1: PerCpuHashMap<FlowKey, u64> = PerCpuHashMap::with_max_entries(MAX_FLOWS, 0);

#[map]
pub static GENERATION: Array<u32> = Array::with_max_entries(1, 0);

#[map]
pub static STACKS: StackTrace = StackTrace::with_max_entries(MAX_STACKS, 0);

#[map]
pub static REASON_FILTER: HashMap<u32, u8> = HashMap::with_max_entries(MAX_REASON_FILTER, 0);

/// Per-CPU scratch records, one per `pipeline::Scratch`: the event is assembled here, not
/// on the 512-byte BPF stack.
#[map]
pub static SCRATCH: PerCpuArray<DropEvent> = PerCpuArray::with_max_entries(2, 0);

/// Per-CPU stack of `nf_conntrack_in` calls in progress: [`CT_DEPTH`] slots of
/// [`SkbMark`] and, in slot [`CT_DEPTH`], the depth.
#[map]
pub static CT_CALLS: PerCpuArray<SkbMark> = PerCpuArray::with_max_entries(CT_DEPTH + 1, 0);

/// Per-CPU: the last skb `nf_conntrack_in` returned NF_DROP for, and when.
#[map]
pub static CT_DROPPED: PerCpuArray<SkbMark> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU: the last handshake ACK that found its listener's accept queue full, and when.
#[map]
pub static TCP_ACK_OVERFLOW: PerCpuArray<SkbMark> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU: the last packet `enqueue_to_backlog` was called for on this CPU, with the
/// backlog it was queued to (see `backlog.rs`).
#[map]
pub static BACKLOG_SEEN: PerCpuArray<BacklogMark> = PerCpuArray::with_max_entries(1, 0);

/// A packet on its way into a CPU's backlog: the skb, when, the target CPU and that
/// backlog's length then.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct BacklogMark {
    pub skb: u64,
    pub time_ns: u64,
    pub cpu: u32,
    pub qlen: u32,
}

/// Nested `nf_conntrack_in` calls tracked on one CPU (a softirq interrupting a task that
/// was itself in conntrack): deeper calls are not tracked.
pub const CT_DEPTH: u32 = 4;

/// An skb a probe saw, for the kfree_skb program to recognise: the skb, the task it ran
/// for (conntrack), when.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SkbMark {
    pub skb: u64,
    pub task: u64,
    pub time_ns: u64,
}
