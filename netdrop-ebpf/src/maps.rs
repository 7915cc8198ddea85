//! Maps shared by every hook. User space resizes `EVENTS` and `BY_FLOW` at load time.

use aya_ebpf::{
    macros::map,
    maps::{HashMap, PerCpuArray, PerCpuHashMap, RingBuf, StackTrace},
};
use netdrop_common::{
    DeviceKey, DropEvent, FlowKey, LocationKey, MAX_DEVICES, MAX_FLOWS, MAX_LOCATIONS,
    MAX_REASON_FILTER, MAX_REASONS, MAX_STACKS, stat,
};

#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(1 << 22, 0);

#[map]
pub static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(stat::COUNT, 0);

#[map]
pub static BY_REASON: PerCpuHashMap<u32, u64> = PerCpuHashMap::with_max_entries(MAX_REASONS, 0);

#[map]
pub static BY_LOCATION: PerCpuHashMap<LocationKey, u64> =
    PerCpuHashMap::with_max_entries(MAX_LOCATIONS, 0);

#[map]
pub static BY_DEVICE: PerCpuHashMap<DeviceKey, u64> =
    PerCpuHashMap::with_max_entries(MAX_DEVICES, 0);

#[map]
pub static BY_FLOW: PerCpuHashMap<FlowKey, u64> = PerCpuHashMap::with_max_entries(MAX_FLOWS, 0);

#[map]
pub static STACKS: StackTrace = StackTrace::with_max_entries(MAX_STACKS, 0);

#[map]
pub static REASON_FILTER: HashMap<u32, u8> = HashMap::with_max_entries(MAX_REASON_FILTER, 0);

/// Per-CPU scratch record: the event is assembled here, not on the 512-byte BPF stack.
#[map]
pub static SCRATCH: PerCpuArray<DropEvent> = PerCpuArray::with_max_entries(1, 0);

#[map]
pub static CT_SKB: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

#[map]
pub static CT_DROPPED: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);
