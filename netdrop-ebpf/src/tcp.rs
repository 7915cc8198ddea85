//! TCP listeners: connection attempts dropped because a listener's queue was full.
//!
//! A SYN that finds the accept queue full, or the SYN queue full with syncookies off, is
//! dropped inside `tcp_conn_request` and then freed with `consume_skb`, so no kfree_skb
//! event ever shows it (Linux 4.x to 6.18 alike); only `TcpExt.ListenOverflows` /
//! `TCPReqQFullDrop` count it. A kprobe on `tcp_conn_request` (every kernel since 4.13)
//! checks the same conditions on entry and reports the SYN as a drop with a netdrop-defined
//! reason (`LISTEN_OVERFLOW`, `SYN_QUEUE_FULL`), marked as netdrop's inference in user space.
//!
//! A handshake ACK that finds the accept queue full fails in `tcp_v4_syn_recv_sock` /
//! `tcp_v6_syn_recv_sock` and is then freed through kfree_skb without a telling reason
//! (NOT_SPECIFIED, none before 5.17). A kprobe there remembers the skb per CPU, and the
//! pipeline reports that kfree_skb as `LISTEN_OVERFLOW`: one event per packet. Kernels from
//! 6.15 name that drop `TCP_LISTEN_OVERFLOW` themselves; user space does not attach the ACK
//! probe there.
//!
//! kprobes rather than fentry: they work on every kernel with CONFIG_KPROBES (fentry needs
//! 5.5+ and is refused on some machines). Struct offsets come from BTF through [`OFFSETS`].

use aya_ebpf::{helpers::bpf_ktime_get_ns, macros::kprobe, programs::ProbeContext};
use netdrop_common::{code_range, netdrop_reason};

use crate::{
    OFFSETS, TCP_DROP_SITES, global, kread,
    maps::{SkbMark, TCP_ACK_OVERFLOW},
    pipeline::{self, DropArgs, Scratch},
};

/// How long after the ACK probe saw a full accept queue the kfree_skb of that ACK may come:
/// the kernel frees it on its way out of the same receive call (microseconds natively, more
/// under emulation).
const ACK_TO_FREE_NS: u64 = 100_000_000;

/// `int tcp_conn_request(struct request_sock_ops *, const struct tcp_request_sock_ops *,
/// struct sock *sk, struct sk_buff *skb)`.
#[kprobe]
pub fn tcp_syn(ctx: ProbeContext) -> u32 {
    let (Some(sk), Some(skb)) = (ctx.arg::<*const u8>(2), ctx.arg::<*const u8>(3)) else {
        return 0;
    };
    let reason = if syn_queue_full_without_cookies(sk) {
        netdrop_reason::SYN_QUEUE_FULL
    } else if accept_queue_full(sk) {
        netdrop_reason::LISTEN_OVERFLOW
    } else {
        return 0;
    };
    let drop = DropArgs {
        skb,
        location: ip(&ctx),
        reason,
        has_reason: true,
        rx_sk: sk,
    };
    pipeline::run(&ctx, drop, Scratch::Tcp);
    0
}

/// `struct sock *tcp_v4_syn_recv_sock(const struct sock *sk, struct sk_buff *skb, ...)`,
/// and the same for IPv6.
#[kprobe]
pub fn tcp_ack(ctx: ProbeContext) -> u32 {
    let (Some(sk), Some(skb)) = (ctx.arg::<*const u8>(0), ctx.arg::<*const u8>(1)) else {
        return 0;
    };
    if accept_queue_full(sk)
        && let Some(slot) = TCP_ACK_OVERFLOW.get_ptr_mut(0)
    {
        // SAFETY: this CPU's slot.
        unsafe {
            *slot = SkbMark {
                skb: skb as u64,
                task: 0,
                time_ns: bpf_ktime_get_ns(),
            };
        }
    }
    0
}

/// `void __kfree_skb(struct sk_buff *skb)`, on kernels before 5.17 where `tcp_drop()`
/// (`sk_drops_add` + `__kfree_skb`, inlined into its callers) frees TCP segments the
/// receive path refuses (PAWS, out of window, zero window, receive memory, ...) and no
/// tracepoint fires. A call counts when it returns into one of the TCP receive functions
/// user space listed in [`TCP_DROP_SITES`]; where such a function also frees data-less
/// segments it has finished with, those are skipped. The reason is left to user space,
/// which infers it from that function as for other kernels without reasons.
#[kprobe]
pub fn tcp_drop_path(ctx: ProbeContext) -> u32 {
    let Some(skb) = ctx.arg::<*const u8>(0) else {
        return 0;
    };
    let Some(ret) = return_address(&ctx) else {
        return 0;
    };
    let sites = &raw const TCP_DROP_SITES;
    let count = global!((*sites).count);
    for i in 0..8 {
        if i as u32 >= count {
            return 0;
        }
        let start = global!((*sites).ranges[i].start);
        let end = global!((*sites).ranges[i].end);
        if ret < start || ret >= end {
            continue;
        }
        if global!((*sites).ranges[i].flags) & code_range::SKIP_DATALESS != 0 && dataless(skb) {
            return 0;
        }
        let drop = DropArgs {
            skb,
            location: ret,
            reason: 0,
            has_reason: false,
            rx_sk: core::ptr::null(),
        };
        pipeline::run(&ctx, drop, Scratch::Tcp);
        return 0;
    }
    0
}

/// `TCP_SKB_CB(skb)->seq == end_seq`: a segment without data (nor SYN/FIN).
#[inline(always)]
fn dataless(skb: *const u8) -> bool {
    // `struct tcp_skb_cb` starts with `seq` and `end_seq`.
    let cb = global!(OFFSETS.skb_cb);
    let seqs = kread::at::<[u32; 2]>(skb, cb);
    matches!(seqs, Ok([seq, end]) if seq == end)
}

/// Where the probed function returns to: on x86-64, the word at the stack pointer on entry.
#[inline(always)]
fn return_address(ctx: &ProbeContext) -> Option<u64> {
    #[cfg(bpf_target_arch = "x86_64")]
    {
        // SAFETY: `regs` is the probe's own register set, readable from the context.
        let sp = unsafe { (*ctx.regs).rsp } as *const u8;
        kread::at::<u64>(sp, 0).ok()
    }
    #[cfg(not(bpf_target_arch = "x86_64"))]
    {
        let _ = ctx;
        None
    }
}

/// True (once) when the ACK probe just saw `skb` find a full accept queue on this CPU.
#[inline(always)]
pub fn ack_overflowed(skb: *const u8) -> bool {
    let Some(slot) = TCP_ACK_OVERFLOW.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: this CPU's slot.
    unsafe {
        if (*slot).skb == 0 || (*slot).skb != skb as u64 {
            return false;
        }
        (*slot).skb = 0;
        bpf_ktime_get_ns().wrapping_sub((*slot).time_ns) < ACK_TO_FREE_NS
    }
}

/// `sk_acceptq_is_full()`: more connections wait than the backlog allows.
#[inline(always)]
fn accept_queue_full(sk: *const u8) -> bool {
    let backlog = kread::at::<u32>(sk, global!(OFFSETS.sk_ack_backlog));
    let max = kread::at::<u32>(sk, global!(OFFSETS.sk_max_ack_backlog));
    matches!((backlog, max), (Ok(b), Ok(m)) if b > m)
}

/// `inet_csk_reqsk_queue_is_full()` with `net.ipv4.tcp_syncookies` 0 in the listener's
/// namespace: `tcp_conn_request` drops the SYN (TCPReqQFullDrop). With syncookies 1 it
/// answers with a cookie instead, with 2 it always does.
#[inline(always)]
fn syn_queue_full_without_cookies(sk: *const u8) -> bool {
    let (Ok(qlen), Ok(max)) = (
        kread::at::<u32>(sk, global!(OFFSETS.icsk_syn_qlen)),
        kread::at::<u32>(sk, global!(OFFSETS.sk_max_ack_backlog)),
    ) else {
        return false;
    };
    if qlen < max {
        return false;
    }
    let Ok(net) = kread::ptr_at(sk, global!(OFFSETS.sk_net)) else {
        return false;
    };
    let at = global!(OFFSETS.net_syncookies);
    let cookies = match global!(OFFSETS.net_syncookies_size) {
        1 => kread::at::<u8>(net, at).map(u32::from),
        4 => kread::at::<u32>(net, at),
        _ => return false,
    };
    matches!(cookies, Ok(0))
}

/// The probed instruction: inside the probed function, which user space symbolises.
#[inline(always)]
fn ip(ctx: &ProbeContext) -> u64 {
    #[cfg(bpf_target_arch = "x86_64")]
    {
        // SAFETY: `regs` is the probe's own register set, readable from the context.
        unsafe { (*ctx.regs).rip }
    }
    #[cfg(not(bpf_target_arch = "x86_64"))]
    {
        let _ = ctx;
        0
    }
}
