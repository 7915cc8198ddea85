//! `skb:kfree_skb`: every packet the kernel frees as dropped.
//!
//! The tracepoint exists since Linux 2.6.3x; its `reason` argument since 5.17 and `rx_sk`
//! since 6.11. The BTF raw tracepoint (`tp_btf`, 5.5+) is used when the kernel allows it:
//! typed arguments and no per-event record copy. Elsewhere the classic tracepoint is used,
//! with field offsets from its format file. Which entry point user space loads depends on
//! the argument count in the kernel's `btf_trace_kfree_skb` prototype.

use aya_ebpf::{
    macros::{btf_tracepoint, tracepoint},
    programs::{BtfTracePointContext, TracePointContext},
};
use aya_log_ebpf::debug;
use netdrop_common::OFFSET_NONE;

use crate::{
    TP_LAYOUT, global,
    pipeline::{self, DropArgs, Scratch},
};

/// `tp_btf/kfree_skb(skb, location, reason, rx_sk)`: Linux 6.11+.
#[btf_tracepoint(function = "kfree_skb")]
pub fn drop_btf_4arg(ctx: BtfTracePointContext) -> i32 {
    let drop = DropArgs {
        skb: ctx.arg(0),
        location: ctx.arg(1),
        reason: ctx.arg(2),
        has_reason: true,
        rx_sk: ctx.arg(3),
    };
    pipeline::run(&ctx, drop, Scratch::KfreeSkb)
}

/// `tp_btf/kfree_skb(skb, location, reason)`: Linux 5.17 to 6.10.
#[btf_tracepoint(function = "kfree_skb")]
pub fn drop_btf_3arg(ctx: BtfTracePointContext) -> i32 {
    let drop = DropArgs {
        skb: ctx.arg(0),
        location: ctx.arg(1),
        reason: ctx.arg(2),
        has_reason: true,
        rx_sk: core::ptr::null(),
    };
    pipeline::run(&ctx, drop, Scratch::KfreeSkb)
}

/// `tp_btf/kfree_skb(skb, location)`: Linux 5.5 to 5.16, no drop reasons.
#[btf_tracepoint(function = "kfree_skb")]
pub fn drop_btf_2arg(ctx: BtfTracePointContext) -> i32 {
    let drop = DropArgs {
        skb: ctx.arg(0),
        location: ctx.arg(1),
        reason: 0,
        has_reason: false,
        rx_sk: core::ptr::null(),
    };
    pipeline::run(&ctx, drop, Scratch::KfreeSkb)
}

/// Classic `skb:kfree_skb` tracepoint, any layout: offsets come from [`TP_LAYOUT`].
#[tracepoint(category = "skb", name = "kfree_skb")]
pub fn drop_tp(ctx: TracePointContext) -> u32 {
    let field = |off: u32| -> Result<u64, i32> {
        if off == OFFSET_NONE {
            return Ok(0);
        }
        // SAFETY: the offset comes from this kernel's format file for this tracepoint.
        unsafe { ctx.read_at::<u64>(off as usize) }
    };
    let reason_off = global!(TP_LAYOUT.reason);
    let (reason, has_reason) = if reason_off == OFFSET_NONE {
        (0, false)
    } else {
        // SAFETY: as above; `reason` is a 4-byte enum.
        match unsafe { ctx.read_at::<u32>(reason_off as usize) } {
            Ok(r) => (r, true),
            Err(_) => (0, false),
        }
    };
    let (Ok(skb), Ok(location), Ok(rx_sk)) = (
        field(global!(TP_LAYOUT.skbaddr)),
        field(global!(TP_LAYOUT.location)),
        field(global!(TP_LAYOUT.rx_sk)),
    ) else {
        debug!(&ctx, "netdrop: kfree_skb tracepoint record unreadable");
        return 0;
    };
    let drop = DropArgs {
        skb: skb as *const u8,
        location,
        reason,
        has_reason,
        rx_sk: rx_sk as *const u8,
    };
    pipeline::run(&ctx, drop, Scratch::KfreeSkb) as u32
}
