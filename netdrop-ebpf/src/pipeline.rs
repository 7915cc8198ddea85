//! What every drop hook does with a drop, in the kernel: filter (cheapest first), count
//! exactly per reason, location, device and flow, and write one record to the ring buffer.
//! The hooks (`skb.rs` for kfree_skb, `tcp.rs` for listener queues) only gather the
//! arguments.

use aya_ebpf::{
    EbpfContext,
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_smp_processor_id, bpf_ktime_get_ns,
    },
    programs::tracing::StackIdContext,
};
use aya_log_ebpf::debug;
use netdrop_common::{
    CapturedDrop, DeviceKey, DropEvent, FlowKey, LocationKey, config, flag, netdrop_reason, stat,
};

use crate::{
    CONFIG, OFFSETS, backlog, conntrack, count, filter, global,
    kread::{self, ReadError},
    limits,
    maps::{
        BY_DEVICE_0, BY_DEVICE_1, BY_FLOW_0, BY_FLOW_1, BY_LOCATION_0, BY_LOCATION_1, BY_REASON,
        EVENTS, GENERATION, SCRATCH, STACKS,
    },
    packet, tcp,
};

/// Which per-CPU scratch record a hook assembles its event in. A kprobe can run inside an
/// interrupt that hit while the kfree_skb program was assembling its own on that CPU.
#[derive(Clone, Copy)]
pub enum Scratch {
    KfreeSkb = 0,
    Tcp = 1,
}

/// The hook's arguments, whichever way they were obtained.
pub struct DropArgs {
    pub skb: *const u8,
    pub location: u64,
    /// The kernel's drop reason, 0 when it gives none (`has_reason` false). Not an
    /// `Option`: the compiler may spill and reload the payload of a `None`, which the 5.10
    /// verifier rejects as a read of uninitialised stack.
    pub reason: u32,
    pub has_reason: bool,
    pub rx_sk: *const u8,
}

/// Handles one drop; never fails (a failed kernel read is logged at debug level).
#[inline(always)]
pub fn run<C: EbpfContext + StackIdContext>(ctx: &C, drop: DropArgs, scratch: Scratch) -> i32 {
    if let Err(ReadError::Fault(e)) = try_handle(ctx, drop, scratch) {
        debug!(ctx, "netdrop: kernel read failed: {}", e);
    }
    0
}

#[inline(always)]
fn try_handle<C: EbpfContext + StackIdContext>(
    ctx: &C,
    mut drop: DropArgs,
    scratch: Scratch,
) -> Result<(), ReadError> {
    count::stat(stat::SEEN);
    // A handshake ACK the listener hook saw find the accept queue full: the kernel frees it
    // without saying why (NOT_SPECIFIED, or no reason before 5.17).
    if global!(CONFIG.flags) & config::TCP_ACK_MARKS != 0
        && (!drop.has_reason || drop.reason == global!(CONFIG.not_specified_reason))
        && tcp::ack_overflowed(drop.skb)
    {
        drop.reason = netdrop_reason::LISTEN_OVERFLOW;
        drop.has_reason = true;
    }
    let reason = drop.reason;
    if !filter::reason(reason) {
        return Ok(());
    }
    let cfg = global!(CONFIG.flags);
    if cfg & (config::DEVICE | config::HEADERS | config::EVENTS) == 0 {
        // Counting by reason or location only: no record to assemble.
        count::stat(stat::MATCHED);
        count_reason_location(cfg, reason, drop.location);
        return Ok(());
    }
    // Past its budget, a drop is counted like `stats` counts it and read no further.
    let budget = global!(CONFIG.budget);
    if cfg & config::BUDGET_EARLY != 0
        && !limits::within_budget(scratch, reason, drop.location, budget, 0)
    {
        count::stat(stat::MATCHED);
        count_reason_location(cfg, reason, drop.location);
        return Ok(());
    }
    let Some(ev) = SCRATCH.get_ptr_mut(scratch as u32) else {
        return Ok(());
    };
    // SAFETY: this CPU's slot of a per-CPU map; tracing programs do not nest on one CPU
    // for this hook.
    let ev = unsafe {
        core::ptr::write_bytes(ev, 0, 1);
        &mut *ev
    };
    ev.reason = reason;
    ev.location = drop.location;
    if cfg & config::DEVICE != 0 {
        device(drop.skb, drop.rx_sk, ev);
        let has_dev = ev.flags & flag::HAS_DEVICE != 0;
        let has_netns = ev.flags & flag::HAS_NETNS != 0;
        if !filter::iface(has_dev.then_some(&ev.ifname))
            || !filter::netns(has_netns.then_some(ev.netns))
        {
            return Ok(());
        }
    }
    if cfg & config::HEADERS != 0 {
        packet::parse(drop.skb, ev);
        if !filter::packet(ev) {
            return Ok(());
        }
    }
    count::stat(stat::MATCHED);
    aggregate(cfg, ev);

    if cfg & config::EVENTS == 0 {
        return Ok(());
    }
    // SAFETY: plain helper call.
    let now = unsafe { bpf_ktime_get_ns() };
    if budget != 0
        && cfg & config::BUDGET_EARLY == 0
        && !limits::within_budget(scratch, reason, drop.location, budget, now)
    {
        return Ok(());
    }
    let limit = global!(CONFIG.rate_limit);
    if limit != 0 && !limits::admit(ev, now, limit) {
        return Ok(());
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    if drop.has_reason {
        ev.flags |= flag::HAS_REASON;
    }
    ev.stack_id = -1;
    // Without reasons (before 5.17), netfilter's drops are those freed in nf_hook_slow.
    let netfilter = reason == global!(CONFIG.netfilter_reason)
        || (!drop.has_reason
            && drop.location >= global!(CONFIG.netfilter_start)
            && drop.location < global!(CONFIG.netfilter_end));
    if netfilter && conntrack::refused(drop.skb) {
        ev.flags |= flag::CONNTRACK;
    }
    // A packet the backlog hook saw on its way into a full CPU backlog.
    if cfg & config::BACKLOG_MARKS != 0 {
        backlog::annotate(drop.skb, drop.location, ev);
    }
    if cfg & config::STACKS != 0 || netfilter {
        match ctx.get_stackid(&STACKS, 0) {
            Ok(id) => {
                ev.stack_id = id as i32;
                ev.flags |= flag::HAS_STACK;
            }
            Err(_) => count::stat(stat::STACK_ERRORS),
        }
    }
    // SAFETY: plain helper calls.
    unsafe {
        ev.cpu = bpf_get_smp_processor_id();
    }
    ev.timestamp_ns = now;
    ev.pid = (pid_tgid >> 32) as u32;
    ev.tid = pid_tgid as u32;
    ev.skb_len = kread::at(drop.skb, global!(OFFSETS.skb_len)).unwrap_or(0);
    ev.comm = bpf_get_current_comm().unwrap_or([0; 16]);
    let wakeup = if EVENTS.query(BPF_RB_AVAIL_DATA as u64) >= global!(CONFIG.wakeup_bytes) as u64 {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    };
    if cfg & config::CAPTURE != 0 {
        emit_captured(drop.skb, ev, wakeup as u64);
    } else if EVENTS.output::<DropEvent>(&*ev, wakeup as u64).is_err() {
        count::stat(stat::LOST);
    }
    Ok(())
}

/// Writes `ev` with the first bytes of its packet as a [`CapturedDrop`], assembled in the
/// ring buffer itself: the record is too large for the BPF stack.
#[inline(always)]
fn emit_captured(skb: *const u8, ev: &DropEvent, wakeup: u64) {
    let Some(mut entry) = EVENTS.reserve::<CapturedDrop>(0) else {
        count::stat(stat::LOST);
        return;
    };
    let rec = entry.as_mut_ptr();
    let snaplen = global!(CONFIG.snaplen);
    // SAFETY: `rec` points at a reserved record of the right size that only this program
    // writes until it is submitted.
    unsafe {
        (*rec).event = *ev;
        let (len, from) = packet::capture(skb, snaplen, &mut (*rec).data);
        (*rec).len = len;
        (*rec).from = from;
    }
    entry.submit(wakeup);
}

/// The flow and reason of `ev`, as per-flow counts and the rate limit key them: ICMP type
/// and code stand in for ports.
#[inline(always)]
pub fn flow_key(ev: &DropEvent) -> FlowKey {
    let icmp = netdrop_common::proto::is_icmp(ev.l4_proto);
    FlowKey {
        reason: ev.reason,
        netns: ev.netns,
        l3_proto: ev.l3_proto,
        l4_proto: ev.l4_proto,
        _pad: 0,
        sport: if icmp { ev.icmp_type as u16 } else { ev.sport },
        dport: if icmp { ev.icmp_code as u16 } else { ev.dport },
        saddr: ev.saddr,
        daddr: ev.daddr,
    }
}

/// Which map of each attribution pair counts now (0 or 1), as user space set it.
#[inline(always)]
fn generation() -> u32 {
    GENERATION.get(0).map_or(0, |g| *g & 1)
}

/// Counts per reason and per (reason, location), when enabled.
#[inline(always)]
fn count_reason_location(cfg: u32, reason: u32, location: u64) {
    if cfg & config::BY_REASON != 0 && !count::bump(&BY_REASON, &reason) {
        count::stat(stat::REASON_UNTRACKED);
    }
    if cfg & config::BY_LOCATION != 0 {
        let key = LocationKey {
            reason,
            _pad: 0,
            location,
        };
        if !count::bump_in(generation(), &BY_LOCATION_0, &BY_LOCATION_1, &key) {
            count::stat(stat::LOCATION_UNTRACKED);
        }
    }
}

/// Adds the drop to the enabled per-CPU histograms.
#[inline(always)]
fn aggregate(cfg: u32, ev: &DropEvent) {
    count_reason_location(cfg, ev.reason, ev.location);
    if cfg & config::BY_DEVICE != 0 {
        let key = DeviceKey {
            reason: ev.reason,
            netns: ev.netns,
            ifindex: ev.ifindex,
            _pad: 0,
            ifname: ev.ifname,
        };
        if !count::bump_in(generation(), &BY_DEVICE_0, &BY_DEVICE_1, &key) {
            count::stat(stat::DEVICE_UNTRACKED);
        }
    }
    if cfg & config::BY_FLOW != 0 {
        let key = flow_key(ev);
        if !count::bump_in(generation(), &BY_FLOW_0, &BY_FLOW_1, &key) {
            count::stat(stat::FLOW_UNTRACKED);
        }
    }
}

/// Fills device and network namespace: from `skb->dev` when set, else from the socket
/// (`skb->sk`, then the tracepoint's `rx_sk`).
#[inline(always)]
fn device(skb: *const u8, rx_sk: *const u8, ev: &mut DropEvent) {
    if let Ok(dev) = kread::ptr_at(skb, global!(OFFSETS.skb_dev)) {
        if let Ok(ifindex) = kread::at::<u32>(dev, global!(OFFSETS.dev_ifindex)) {
            ev.ifindex = ifindex;
            ev.flags |= flag::HAS_DEVICE;
            let _ = kread::buf_at(dev, global!(OFFSETS.dev_name), &mut ev.ifname);
        }
        if let Some(inum) = netns_of(dev, global!(OFFSETS.dev_net)) {
            ev.netns = inum;
            ev.flags |= flag::HAS_NETNS;
            return;
        }
    }
    let sk = kread::ptr_at(skb, global!(OFFSETS.skb_sk)).unwrap_or(rx_sk);
    if let Some(inum) = netns_of(sk, global!(OFFSETS.sk_net)) {
        ev.netns = inum;
        ev.flags |= flag::HAS_NETNS | flag::NETNS_FROM_SOCKET;
    }
}

#[inline(always)]
fn netns_of(obj: *const u8, net_off: u32) -> Option<u32> {
    let net = kread::ptr_at(obj, net_off).ok()?;
    kread::at::<u32>(net, global!(OFFSETS.net_inum)).ok()
}
