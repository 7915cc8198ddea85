//! Filters, evaluated before anything is counted or written, cheapest first.

use netdrop_common::{
    AddrMatch, DropEvent, flag,
    proto::{ETH_P_IP, ETH_P_IPV6, has_ports},
    reason_mode,
};

use crate::{FILTER, global, maps::REASON_FILTER};

/// `--reason` / `--exclude-reason`.
#[inline(always)]
pub fn reason(reason: u32) -> bool {
    match global!(FILTER.reason_mode) {
        reason_mode::ONLY => REASON_FILTER.get_ptr(reason).is_some(),
        reason_mode::EXCEPT => REASON_FILTER.get_ptr(reason).is_none(),
        _ => true,
    }
}

/// `--netns`.
#[inline(always)]
pub fn netns(netns: Option<u32>) -> bool {
    match global!(FILTER.netns) {
        0 => true,
        want => netns == Some(want),
    }
}

/// `--iface`.
#[inline(always)]
pub fn iface(ifname: Option<&[u8; 16]>) -> bool {
    if global!(FILTER.has_iface) == 0 {
        return true;
    }
    let want: [u8; 16] = global!(FILTER.iface);
    ifname == Some(&want)
}

/// `--proto`, `--port`, `--host`, `--src`, `--dst`.
#[inline(always)]
pub fn packet(pkt: &DropEvent) -> bool {
    let l3_proto = global!(FILTER.l3_proto);
    if l3_proto != 0 && pkt.l3_proto != l3_proto {
        return false;
    }
    let l4_proto = global!(FILTER.l4_proto);
    if l4_proto != 0 && (pkt.flags & flag::HAS_L3 == 0 || pkt.l4_proto != l4_proto) {
        return false;
    }
    if global!(FILTER.has_port) != 0 {
        let port = global!(FILTER.port);
        if pkt.flags & flag::HAS_L4 == 0
            || !has_ports(pkt.l4_proto)
            || (pkt.sport != port && pkt.dport != port)
        {
            return false;
        }
    }
    let family = match pkt.l3_proto {
        _ if pkt.flags & flag::HAS_L3 == 0 => 0,
        ETH_P_IP => 4,
        ETH_P_IPV6 => 6,
        _ => 0,
    };
    let host = &raw const FILTER.host;
    if global!((*host).family) != 0
        && !addr_in(host, family, &pkt.saddr)
        && !addr_in(host, family, &pkt.daddr)
    {
        return false;
    }
    let src = &raw const FILTER.src;
    if global!((*src).family) != 0 && !addr_in(src, family, &pkt.saddr) {
        return false;
    }
    let dst = &raw const FILTER.dst;
    if global!((*dst).family) != 0 && !addr_in(dst, family, &pkt.daddr) {
        return false;
    }
    true
}

/// True when `addr` of `family` lies in the prefix `m` (a field of [`FILTER`]).
#[inline(always)]
fn addr_in(m: *const AddrMatch, family: u8, addr: &[u8; 16]) -> bool {
    if global!((*m).family) != family {
        return false;
    }
    // SAFETY: `m` points into FILTER, whose address fields are 8-byte aligned (the struct
    // is `align(8)`); `addr` is 16 readable bytes. Volatile keeps the loads from being folded
    // into the compile-time default.
    unsafe {
        let mask = (&raw const (*m).mask).cast::<u64>();
        let net = (&raw const (*m).addr).cast::<u64>();
        let a = addr.as_ptr().cast::<u64>();
        (a.read_unaligned() & mask.read_volatile()) == net.read_volatile()
            && (a.add(1).read_unaligned() & mask.add(1).read_volatile())
                == net.add(1).read_volatile()
    }
}
