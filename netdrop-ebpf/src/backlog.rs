//! The netdev backlog: which CPU's input queue overflowed, and how long it was.
//!
//! `enqueue_to_backlog(struct sk_buff *skb, int cpu, unsigned int *qtail)` queues a
//! received packet (from `netif_rx`: loopback, veth, tunnels; and every packet RPS steers)
//! to the backlog of `cpu`, which RPS may have chosen on another CPU than the one running.
//! When that backlog already holds more than `net.core.netdev_max_backlog` packets (or the
//! flow limit applies, or the device is down) the kernel frees the packet right there, on
//! the CPU that called it: `kfree_skb` (5.10) or `kfree_skb_reason(skb, CPU_BACKLOG)`
//! (5.17+). The kfree_skb tracepoint then says nothing of the target CPU.
//!
//! A kprobe on entry remembers, per running CPU, the skb, the target CPU and the length of
//! that CPU's `softnet_data.input_pkt_queue` (`__per_cpu_offset[cpu] + &softnet_data`,
//! from kallsyms; the member offset from BTF; the same on 5.10, 6.1 and 6.12). When the
//! pipeline handles a drop freed inside `enqueue_to_backlog` of that same skb, the event
//! carries them ([`netdrop_common::flag::HAS_BACKLOG`]), with the limit the kernel
//! compared against, `netdev_max_backlog` (`net_hotdata.max_backlog` from 6.9), read then.
//!
//! The kprobe runs for every packet queued to a backlog, so user space attaches it only
//! when events are streamed and CPU_BACKLOG drops may be shown; the pipeline looks for its
//! marks only under [`netdrop_common::config::BACKLOG_MARKS`], which the verifier prunes
//! otherwise.

use aya_ebpf::{helpers::bpf_ktime_get_ns, macros::kprobe, programs::ProbeContext};
use netdrop_common::DropEvent;

use crate::{
    BACKLOG, global, kread,
    maps::{BACKLOG_SEEN, BacklogMark},
};

/// How long after the enqueue attempt its kfree_skb may come: the same call frees it
/// (microseconds natively, more under emulation).
const ENQUEUE_TO_FREE_NS: u64 = 100_000_000;

/// Entry of `enqueue_to_backlog`.
#[kprobe]
pub fn backlog_enqueue(ctx: ProbeContext) -> u32 {
    let (Some(skb), Some(cpu)) = (ctx.arg::<u64>(0), ctx.arg::<u64>(1)) else {
        return 0;
    };
    let cpu = cpu as u32;
    let site = &raw const BACKLOG;
    if cpu >= global!((*site).nr_cpus) {
        return 0;
    }
    let offsets = global!((*site).per_cpu_offset) as *const u8;
    let Ok(base) = kread::at::<u64>(offsets, cpu * 8) else {
        return 0;
    };
    let sd = global!((*site).softnet_data).wrapping_add(base) as *const u8;
    let Ok(qlen) = kread::at::<u32>(sd, global!((*site).qlen_offset)) else {
        return 0;
    };
    if let Some(slot) = BACKLOG_SEEN.get_ptr_mut(0) {
        // SAFETY: this CPU's slot.
        unsafe {
            *slot = BacklogMark {
                skb,
                time_ns: bpf_ktime_get_ns(),
                cpu,
                qlen,
            };
        }
    }
    0
}

/// For a drop freed at `location`: when that is inside `enqueue_to_backlog` and the probe
/// just saw this skb on this CPU, fills the event's backlog fields (once).
#[inline(always)]
pub fn annotate(skb: *const u8, location: u64, ev: &mut DropEvent) {
    let site = &raw const BACKLOG;
    if location < global!((*site).start) || location >= global!((*site).end) {
        return;
    }
    let Some(slot) = BACKLOG_SEEN.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's slot.
    unsafe {
        if (*slot).skb == 0 || (*slot).skb != skb as u64 {
            return;
        }
        (*slot).skb = 0;
        if bpf_ktime_get_ns().wrapping_sub((*slot).time_ns) >= ENQUEUE_TO_FREE_NS {
            return;
        }
        ev.backlog_cpu = (*slot).cpu;
        ev.backlog_qlen = (*slot).qlen;
        ev.flags |= netdrop_common::flag::HAS_BACKLOG;
    }
    // The limit the kernel compared against, read now (it is changed while drops happen).
    let max = global!((*site).max_backlog) as *const u8;
    if let Ok(max) = kread::at::<u32>(max, 0) {
        ev.backlog_max = max;
        ev.flags |= netdrop_common::flag::HAS_BACKLOG_MAX;
    }
}
