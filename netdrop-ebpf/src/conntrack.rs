//! conntrack: tells a packet refused by conntrack (a full table, a failed insertion) from one
//! dropped by a firewall rule. Both reach kfree_skb as NETFILTER_DROP from `nf_hook_slow`.
//!
//! `nf_conntrack_in(struct sk_buff *skb, const struct nf_hook_state *state)` (Linux 4.19+,
//! module `nf_conntrack`) runs as a netfilter hook and returns its verdict; when that is
//! NF_DROP, `nf_hook_slow` frees the skb right after, on the same CPU. The entry probe
//! remembers the skb per CPU, the return probe keeps it if the verdict is NF_DROP, and the
//! kfree_skb handler marks a NETFILTER_DROP of that same skb as a conntrack drop.
//!
//! kprobes rather than fexit: aya cannot yet give fexit the module's BTF. Kernels without
//! kprobes (CONFIG_KPROBES=n) run without this hook; the `nf_conntrack.drop` counter still
//! shows such drops per namespace.

use aya_ebpf::{
    helpers::{bpf_get_current_task, bpf_ktime_get_ns},
    macros::{kprobe, kretprobe},
    programs::{ProbeContext, RetProbeContext},
};

use crate::maps::{CT_CALLS, CT_DEPTH, CT_DROPPED, SkbMark};

/// `NF_DROP`; the low byte of a verdict (`NF_VERDICT_MASK`) holds it.
const NF_DROP: u32 = 0;
const NF_VERDICT_MASK: u32 = 0xff;

/// How long after conntrack's NF_DROP the kfree_skb of that skb may come. `nf_hook_slow`
/// frees it right away (microseconds; a millisecond or more under emulation, as in the VM
/// tests); the bound keeps a much later packet that reuses the address from being taken for
/// conntrack's.
const DROP_TO_FREE_NS: u64 = 100_000_000;

/// Entry: pushes (skb, task) on this CPU's stack of calls in progress. Calls nest when a
/// softirq runs conntrack on top of a task that was in conntrack itself; they return in
/// reverse order on this CPU.
#[kprobe]
pub fn ct_in(ctx: ProbeContext) -> u32 {
    let skb: u64 = ctx.arg(0).unwrap_or(0);
    let Some(depth) = CT_CALLS.get_ptr_mut(CT_DEPTH) else {
        return 0;
    };
    // SAFETY: this CPU's slots; programs on one CPU do not run concurrently.
    unsafe {
        let d = (*depth).skb;
        if d < CT_DEPTH as u64
            && let Some(slot) = CT_CALLS.get_ptr_mut(d as u32)
        {
            *slot = SkbMark {
                skb,
                task: bpf_get_current_task(),
                time_ns: bpf_ktime_get_ns(),
            };
        }
        // Deeper than tracked: counted, so the returns still pair up.
        (*depth).skb = d + 1;
    }
    0
}

/// Return: pops this CPU's innermost call; with NF_DROP remembers its skb. A call that
/// does not belong to the returning task (it moved to another CPU while in conntrack, on a
/// preemptible kernel) resets the stack: a drop may then go unmarked, never mismarked.
#[kretprobe]
pub fn ct_in_ret(ctx: RetProbeContext) -> u32 {
    let verdict: u32 = ctx.ret();
    let Some(depth) = CT_CALLS.get_ptr_mut(CT_DEPTH) else {
        return 0;
    };
    // SAFETY: as in `ct_in`.
    unsafe {
        let d = (*depth).skb;
        if d == 0 {
            return 0;
        }
        let top = d - 1;
        (*depth).skb = top;
        if top >= CT_DEPTH as u64 {
            return 0;
        }
        let Some(call) = CT_CALLS.get_ptr(top as u32) else {
            return 0;
        };
        let call = *call;
        if call.task != bpf_get_current_task() {
            (*depth).skb = 0;
            return 0;
        }
        if verdict & NF_VERDICT_MASK == NF_DROP
            && let Some(dropped) = CT_DROPPED.get_ptr_mut(0)
        {
            *dropped = SkbMark {
                time_ns: bpf_ktime_get_ns(),
                ..call
            };
        }
    }
    0
}

/// True (once) when conntrack refused `skb` on this CPU just before.
#[inline(always)]
pub fn refused(skb: *const u8) -> bool {
    let Some(slot) = CT_DROPPED.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: this CPU's slot.
    unsafe {
        if (*slot).skb == 0 || (*slot).skb != skb as u64 {
            return false;
        }
        (*slot).skb = 0;
        bpf_ktime_get_ns().wrapping_sub((*slot).time_ns) < DROP_TO_FREE_NS
    }
}
