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
    macros::{kprobe, kretprobe},
    programs::{ProbeContext, RetProbeContext},
};

use crate::maps::{CT_DROPPED, CT_SKB};

/// `NF_DROP`; the low byte of a verdict (`NF_VERDICT_MASK`) holds it.
const NF_DROP: u32 = 0;
const NF_VERDICT_MASK: u32 = 0xff;

#[kprobe]
pub fn ct_in(ctx: ProbeContext) -> u32 {
    let skb: u64 = ctx.arg(0).unwrap_or(0);
    set(&CT_SKB, skb);
    0
}

#[kretprobe]
pub fn ct_in_ret(ctx: RetProbeContext) -> u32 {
    let verdict: u32 = ctx.ret();
    if verdict & NF_VERDICT_MASK == NF_DROP
        && let Some(skb) = CT_SKB.get_ptr(0)
    {
        // SAFETY: this CPU's slot.
        set(&CT_DROPPED, unsafe { *skb });
    }
    0
}

/// True (once) when conntrack refused `skb` on this CPU.
#[inline(always)]
pub fn refused(skb: *const u8) -> bool {
    let Some(slot) = CT_DROPPED.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: this CPU's slot.
    unsafe {
        if *slot != 0 && *slot == skb as u64 {
            *slot = 0;
            return true;
        }
    }
    false
}

#[inline(always)]
fn set(map: &aya_ebpf::maps::PerCpuArray<u64>, value: u64) {
    if let Some(slot) = map.get_ptr_mut(0) {
        // SAFETY: this CPU's slot.
        unsafe { *slot = value };
    }
}
