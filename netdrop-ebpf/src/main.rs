//! netdrop's kernel side: programs on the packet-drop paths, writing one record per drop to a
//! ring buffer and exact counts to per-CPU maps.
//!
//! Struct offsets, tracepoint field offsets, filters and switches are read-only globals that
//! user space fills in at load time from the running kernel's BTF and tracefs, so the same
//! object works on every kernel version (aya has no CO-RE for Rust programs).
#![no_std]
#![no_main]

mod backlog;
mod conntrack;
mod count;
mod filter;
mod kread;
mod limits;
mod maps;
mod packet;
mod pipeline;
mod skb;
mod tcp;

use netdrop_common::{BacklogSite, Config, Filter, KernelOffsets, TcpDropSites, TracepointLayout};

/// Struct member offsets of this kernel.
#[unsafe(no_mangle)]
static OFFSETS: KernelOffsets = KernelOffsets::NONE;

/// Where `tcp_drop()` was inlined (kernels before 5.17).
#[unsafe(no_mangle)]
static TCP_DROP_SITES: TcpDropSites = TcpDropSites::NONE;

/// Where each CPU's netdev backlog is, and the code of `enqueue_to_backlog`.
#[unsafe(no_mangle)]
static BACKLOG: BacklogSite = BacklogSite::NONE;

/// Field offsets of the classic tracepoint record.
#[unsafe(no_mangle)]
static TP_LAYOUT: TracepointLayout = TracepointLayout::NONE;

/// In-kernel filters.
#[unsafe(no_mangle)]
static FILTER: Filter = Filter {
    reason_mode: 0,
    netns: 0,
    port: 0,
    has_port: 0,
    l4_proto: 0,
    l3_proto: 0,
    has_iface: 0,
    _pad: 0,
    iface: [0; 16],
    host: netdrop_common::AddrMatch {
        addr: [0; 16],
        mask: [0; 16],
        family: 0,
        _pad: [0; 7],
    },
    src: netdrop_common::AddrMatch {
        addr: [0; 16],
        mask: [0; 16],
        family: 0,
        _pad: [0; 7],
    },
    dst: netdrop_common::AddrMatch {
        addr: [0; 16],
        mask: [0; 16],
        family: 0,
        _pad: [0; 7],
    },
};

/// Which outputs are enabled.
#[unsafe(no_mangle)]
static CONFIG: Config = Config {
    flags: 0,
    netfilter_reason: netdrop_common::OFFSET_NONE,
    wakeup_bytes: 0,
    not_specified_reason: netdrop_common::OFFSET_NONE,
    netfilter_start: 0,
    netfilter_end: 0,
    snaplen: 0,
    rate_limit: 0,
    budget: 0,
    _pad: 0,
};

/// Reads a field of one of the globals above.
///
/// The volatile read keeps the compiler from folding the compile-time default into the
/// code; the verifier then sees the value user space wrote (the section is frozen) and
/// prunes the branches it disables.
macro_rules! global {
    ($($field:tt)+) => {
        // SAFETY: the globals are plain integers in a read-only section.
        unsafe { core::ptr::read_volatile(&raw const $($field)+) }
    };
}
pub(crate) use global;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

/// bpf_probe_read_kernel and the tracing helpers are GPL-only.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
