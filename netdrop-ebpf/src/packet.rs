//! L3/L4 header parsing from an `sk_buff`, bounds-checked against `skb->tail`.
//!
//! A dropped packet may be freed before the stack set its headers (a driver drop has only
//! a MAC header, some have none); whatever cannot be read is left zero and unflagged, and
//! the drop is still reported.

use netdrop_common::{
    CAPTURE_MAX, DropEvent, HEADER_UNSET, capture_from, flag,
    proto::{ETH_HLEN, ETH_P_IP, ETH_P_IPV6, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, has_ports},
};

use crate::{
    OFFSETS, global,
    kread::{self, ReadError},
};

const IPPROTO_HOPOPTS: u8 = 0;
const IPPROTO_ROUTING: u8 = 43;
const IPPROTO_FRAGMENT: u8 = 44;
const IPPROTO_DSTOPTS: u8 = 60;

/// IPv6 extension headers walked before giving up on finding the transport header.
const MAX_IPV6_EXT_HEADERS: usize = 4;

/// The packet bytes: `head` up to `tail`.
struct Buffer {
    head: *const u8,
    tail: u32,
}

impl Buffer {
    /// Reads a `T` at `off` from `head`, only if it lies before `tail`.
    #[inline(always)]
    fn read<T>(&self, off: u32) -> Result<T, ReadError> {
        self.check(off, core::mem::size_of::<T>())?;
        kread::at(self.head, off)
    }

    /// Fills `dst` from `off`, only if it lies before `tail`.
    #[inline(always)]
    fn read_buf(&self, off: u32, dst: &mut [u8]) -> Result<(), ReadError> {
        self.check(off, dst.len())?;
        kread::buf_at(self.head, off, dst)
    }

    #[inline(always)]
    fn check(&self, off: u32, len: usize) -> Result<(), ReadError> {
        if off as usize + len > self.tail as usize {
            Err(ReadError::Absent)
        } else {
            Ok(())
        }
    }
}

/// Fills the packet fields of `ev` from `skb`. Never fails: what cannot be read stays zero.
#[inline(always)]
pub fn parse(skb: *const u8, ev: &mut DropEvent) {
    if let Ok(proto) = kread::at::<u16>(skb, global!(OFFSETS.skb_protocol)) {
        ev.l3_proto = u16::from_be(proto);
    }
    let _ = parse_headers(skb, ev);
}

/// Copies the first bytes of the packet into `data`: from the MAC header when it is an
/// Ethernet header (the network header sits [`ETH_HLEN`] bytes on, or is not set yet), else
/// from the network header; at most `snaplen` bytes and never past `skb->tail`, so only the
/// linear data is read. Returns the bytes copied and a [`capture_from`] value.
#[inline(always)]
pub fn capture(skb: *const u8, snaplen: u32, data: &mut [u8; CAPTURE_MAX]) -> (u32, u32) {
    capture_bytes(skb, snaplen, data).unwrap_or((0, capture_from::NONE))
}

#[inline(always)]
fn capture_bytes(
    skb: *const u8,
    snaplen: u32,
    data: &mut [u8; CAPTURE_MAX],
) -> Result<(u32, u32), ReadError> {
    let head = kread::ptr_at(skb, global!(OFFSETS.skb_head))?;
    let tail: u32 = kread::at(skb, global!(OFFSETS.skb_tail))?;
    let mac: u16 = kread::at(skb, global!(OFFSETS.skb_mac_header))?;
    let nh: u16 = kread::at(skb, global!(OFFSETS.skb_network_header))?;
    let (start, from) = if mac != HEADER_UNSET
        && (nh == HEADER_UNSET || nh as u32 == mac as u32 + ETH_HLEN as u32)
    {
        (mac as u32, capture_from::MAC)
    } else if nh != HEADER_UNSET {
        (nh as u32, capture_from::NETWORK)
    } else {
        return Err(ReadError::Absent);
    };
    if start >= tail {
        return Err(ReadError::Absent);
    }
    let mut len = tail - start;
    if len > snaplen {
        len = snaplen;
    }
    // The verifier needs the bound on the register passed as the size.
    if len > CAPTURE_MAX as u32 {
        len = CAPTURE_MAX as u32;
    }
    // SAFETY: `data` holds CAPTURE_MAX >= len bytes; the helper copes with any source
    // address (a bad one is an error).
    let rc = unsafe {
        aya_ebpf::helpers::generated::bpf_probe_read_kernel(
            data.as_mut_ptr().cast(),
            len,
            head.add(start as usize).cast(),
        )
    };
    if rc < 0 {
        return Err(ReadError::Fault(rc as i32));
    }
    Ok((len, from))
}

#[inline(always)]
fn parse_headers(skb: *const u8, ev: &mut DropEvent) -> Result<(), ReadError> {
    let buf = Buffer {
        head: kread::ptr_at(skb, global!(OFFSETS.skb_head))?,
        tail: kread::at(skb, global!(OFFSETS.skb_tail))?,
    };
    let mut nh: u16 = kread::at(skb, global!(OFFSETS.skb_network_header))?;
    if nh == HEADER_UNSET {
        // Freed before the IP layer saw it: look for an IP header behind an Ethernet one.
        let mac: u16 = kread::at(skb, global!(OFFSETS.skb_mac_header))?;
        if mac == HEADER_UNSET {
            return Err(ReadError::Absent);
        }
        let ethertype = u16::from_be(buf.read::<u16>(mac as u32 + 12)?);
        if ethertype != ETH_P_IP && ethertype != ETH_P_IPV6 {
            return Err(ReadError::Absent);
        }
        nh = mac + ETH_HLEN;
    }
    let nh = nh as u32;
    let version: u8 = buf.read(nh)?;
    let th = match version >> 4 {
        4 => ipv4(&buf, nh, ev)?,
        6 => ipv6(&buf, nh, ev)?,
        _ => return Err(ReadError::Absent),
    };
    if let Some(th) = th {
        transport(&buf, th, ev)?;
    }
    Ok(())
}

/// Parses an IPv4 header; returns the transport header offset unless this is a later fragment.
#[inline(always)]
fn ipv4(buf: &Buffer, nh: u32, ev: &mut DropEvent) -> Result<Option<u32>, ReadError> {
    let hdr: [u8; 20] = buf.read(nh)?;
    let ihl = (hdr[0] & 0x0f) as u32;
    if ihl < 5 {
        return Err(ReadError::Absent);
    }
    ev.l3_proto = ETH_P_IP;
    ev.l4_proto = hdr[9];
    ev.saddr[..4].copy_from_slice(&hdr[12..16]);
    ev.daddr[..4].copy_from_slice(&hdr[16..20]);
    ev.flags |= flag::HAS_L3;
    let frag_off = u16::from_be_bytes([hdr[6], hdr[7]]) & 0x1fff;
    if frag_off != 0 {
        ev.flags |= flag::FRAGMENT;
        return Ok(None);
    }
    Ok(Some(nh + ihl * 4))
}

/// Parses an IPv6 header and skips extension headers; returns the transport header offset
/// unless this is a later fragment or the chain is too long.
#[inline(always)]
fn ipv6(buf: &Buffer, nh: u32, ev: &mut DropEvent) -> Result<Option<u32>, ReadError> {
    let fixed: [u8; 8] = buf.read(nh)?;
    buf.read_buf(nh + 8, &mut ev.saddr)?;
    buf.read_buf(nh + 24, &mut ev.daddr)?;
    ev.l3_proto = ETH_P_IPV6;
    ev.flags |= flag::HAS_L3;
    let mut next = fixed[6];
    let mut th = nh + 40;
    for _ in 0..MAX_IPV6_EXT_HEADERS {
        match next {
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS => {
                let ext: [u8; 2] = buf.read(th)?;
                next = ext[0];
                th += (ext[1] as u32 + 1) * 8;
            }
            IPPROTO_FRAGMENT => {
                let ext: [u8; 4] = buf.read(th)?;
                next = ext[0];
                if u16::from_be_bytes([ext[2], ext[3]]) >> 3 != 0 {
                    ev.l4_proto = next;
                    ev.flags |= flag::FRAGMENT;
                    return Ok(None);
                }
                th += 8;
            }
            _ => {
                ev.l4_proto = next;
                return Ok(Some(th));
            }
        }
    }
    ev.l4_proto = next;
    Ok(None)
}

#[inline(always)]
fn transport(buf: &Buffer, th: u32, ev: &mut DropEvent) -> Result<(), ReadError> {
    match ev.l4_proto {
        IPPROTO_TCP => {
            let hdr: [u8; 14] = buf.read(th)?;
            ev.sport = u16::from_be_bytes([hdr[0], hdr[1]]);
            ev.dport = u16::from_be_bytes([hdr[2], hdr[3]]);
            ev.tcp_flags = hdr[13];
        }
        // UDP, UDP-Lite, SCTP, DCCP: the ports are the first four bytes.
        p if has_ports(p) => {
            let hdr: [u8; 4] = buf.read(th)?;
            ev.sport = u16::from_be_bytes([hdr[0], hdr[1]]);
            ev.dport = u16::from_be_bytes([hdr[2], hdr[3]]);
        }
        IPPROTO_ICMP | IPPROTO_ICMPV6 => {
            let hdr: [u8; 2] = buf.read(th)?;
            ev.icmp_type = hdr[0];
            ev.icmp_code = hdr[1];
        }
        _ => return Ok(()),
    }
    ev.flags |= flag::HAS_L4;
    Ok(())
}
