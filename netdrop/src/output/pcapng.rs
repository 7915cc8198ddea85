//! `watch --pcap`: each shown drop as a packet of a pcap-ng file that Wireshark and tshark
//! open (or read live from a pipe): the first bytes of the packet as the kernel held it,
//! one interface per (device, namespace, link type), and a comment per packet saying why
//! and where the kernel dropped it.
//!
//! The block writer follows the pcap-ng specification (IETF draft
//! `draft-ietf-opsawg-pcapng`): Section Header, Interface Description and Enhanced Packet
//! blocks, each `type, total length, body, options, total length`, 32-bit aligned, options
//! as `code, length, value padded to 4 bytes` ended by `opt_endofopt`. Everything is
//! written little-endian; the byte-order magic tells readers so.

use std::{
    collections::HashMap,
    io::{self, Write},
};

use netdrop_common::DropEvent;

use super::{
    printable::printable,
    sink::{Context, Dropped, Sink},
    text,
};
use crate::event::{CaptureStart, DropRecord};

/// Link types (LINKTYPE_* of the tcpdump.org registry) of the interfaces written.
pub mod linktype {
    /// Ethernet: the capture starts at an Ethernet header.
    pub const ETHERNET: u16 = 1;
    /// Raw IP: the capture starts at an IPv4 or IPv6 header.
    pub const RAW: u16 = 101;
    /// Linux "cooked" capture v1: a 16-byte header netdrop writes, carrying the ethertype,
    /// then the packet from its network header (a protocol other than IP with no
    /// Ethernet header).
    pub const LINUX_SLL: u16 = 113;
}

const SECTION_HEADER: u32 = 0x0A0D_0D0A;
const INTERFACE_DESCRIPTION: u32 = 1;
const ENHANCED_PACKET: u32 = 6;
const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;

const OPT_ENDOFOPT: u16 = 0;
const OPT_COMMENT: u16 = 1;
const SHB_USERAPPL: u16 = 4;
const IF_NAME: u16 = 2;
const IF_DESCRIPTION: u16 = 3;
const IF_TSRESOL: u16 = 9;

/// Length of the Linux cooked header netdrop writes before network-header captures of
/// non-IP packets.
const SLL_HEADER: usize = 16;
const ETH_HLEN: u32 = netdrop_common::proto::ETH_HLEN as u32;

/// Options of one block, encoded.
#[derive(Default)]
struct Options(Vec<u8>);

impl Options {
    /// Adds option `code` with `value`, padded to 32 bits. Values longer than an option
    /// can hold (65535 bytes) are cut.
    fn add(&mut self, code: u16, value: &[u8]) -> &mut Self {
        let value = &value[..value.len().min(u16::MAX as usize)];
        self.0.extend_from_slice(&code.to_le_bytes());
        self.0
            .extend_from_slice(&(value.len() as u16).to_le_bytes());
        self.0.extend_from_slice(value);
        pad(&mut self.0);
        self
    }

    /// The options followed by `opt_endofopt`, or nothing when there are none.
    fn finish(mut self) -> Vec<u8> {
        if !self.0.is_empty() {
            self.0.extend_from_slice(&OPT_ENDOFOPT.to_le_bytes());
            self.0.extend_from_slice(&0u16.to_le_bytes());
        }
        self.0
    }
}

/// Pads `buf` with zeros to a multiple of 4 bytes.
fn pad(buf: &mut Vec<u8>) {
    buf.resize(buf.len().next_multiple_of(4), 0);
}

/// Appends a block of `kind` with `body` (padded) and `options` to `out`.
fn block(out: &mut Vec<u8>, kind: u32, body: &[u8], options: Options) {
    let options = options.finish();
    let total = 12 + body.len().next_multiple_of(4) + options.len();
    out.extend_from_slice(&kind.to_le_bytes());
    out.extend_from_slice(&(total as u32).to_le_bytes());
    out.extend_from_slice(body);
    pad(out);
    out.extend_from_slice(&options);
    out.extend_from_slice(&(total as u32).to_le_bytes());
}

/// Appends a Section Header Block naming the application that wrote the file.
pub fn section_header(out: &mut Vec<u8>, application: &str) {
    let mut body = Vec::with_capacity(16);
    body.extend_from_slice(&BYTE_ORDER_MAGIC.to_le_bytes());
    body.extend_from_slice(&1u16.to_le_bytes());
    body.extend_from_slice(&0u16.to_le_bytes());
    // Section length unknown: the file is written as a stream.
    body.extend_from_slice(&(-1i64).to_le_bytes());
    let mut opts = Options::default();
    opts.add(SHB_USERAPPL, application.as_bytes());
    block(out, SECTION_HEADER, &body, opts);
}

/// Appends an Interface Description Block; timestamps of its packets are in nanoseconds.
pub fn interface(out: &mut Vec<u8>, link: u16, snaplen: u32, name: &str, description: &str) {
    let mut body = Vec::with_capacity(8);
    body.extend_from_slice(&link.to_le_bytes());
    body.extend_from_slice(&0u16.to_le_bytes());
    body.extend_from_slice(&snaplen.to_le_bytes());
    let mut opts = Options::default();
    opts.add(IF_NAME, name.as_bytes())
        .add(IF_DESCRIPTION, description.as_bytes())
        .add(IF_TSRESOL, &[9]);
    block(out, INTERFACE_DESCRIPTION, &body, opts);
}

/// Appends an Enhanced Packet Block: `data` captured from a packet of `original_len`
/// bytes on interface `interface` (its index in the section), at `unix_ns`.
pub fn packet(
    out: &mut Vec<u8>,
    interface: u32,
    unix_ns: u64,
    data: &[u8],
    original_len: u32,
    comment: &str,
) {
    let mut body = Vec::with_capacity(20 + data.len());
    body.extend_from_slice(&interface.to_le_bytes());
    body.extend_from_slice(&((unix_ns >> 32) as u32).to_le_bytes());
    body.extend_from_slice(&(unix_ns as u32).to_le_bytes());
    body.extend_from_slice(&(data.len() as u32).to_le_bytes());
    body.extend_from_slice(&original_len.max(data.len() as u32).to_le_bytes());
    body.extend_from_slice(data);
    let mut opts = Options::default();
    if !comment.is_empty() {
        opts.add(OPT_COMMENT, comment.as_bytes());
    }
    block(out, ENHANCED_PACKET, &body, opts);
}

/// The packet's length on the wire from the start of the capture, read from its IP header
/// (the kernel's `skb->len` counts from wherever the stack had got to): `l2` header bytes
/// plus the IP total length. `None` when the header is not there or gives no length (a
/// GSO packet, a jumbogram).
fn wire_length(ip: &[u8], l2: u32) -> Option<u32> {
    let ip_len = match ip.first()? >> 4 {
        4 => u32::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?])),
        6 => match u16::from_be_bytes([*ip.get(4)?, *ip.get(5)?]) {
            0 => return None,
            n => 40 + u32::from(n),
        },
        _ => return None,
    };
    (ip_len > 0).then_some(l2 + ip_len)
}

/// What one drop becomes in the file: link type, bytes, original length.
fn frame(ev: &DropEvent, start: Option<CaptureStart>, bytes: &[u8]) -> (u16, Vec<u8>, u32) {
    let fallback = |captured: usize| (captured as u32).max(ev.skb_len);
    match start {
        Some(CaptureStart::Mac) => {
            let wire = bytes
                .get(ETH_HLEN as usize..)
                .and_then(|ip| wire_length(ip, ETH_HLEN));
            let len = wire.unwrap_or_else(|| fallback(bytes.len()));
            (linktype::ETHERNET, bytes.to_vec(), len)
        }
        Some(CaptureStart::Network) if matches!(bytes.first().map(|b| b >> 4), Some(4 | 6)) => {
            let len = wire_length(bytes, 0).unwrap_or_else(|| fallback(bytes.len()));
            (linktype::RAW, bytes.to_vec(), len)
        }
        Some(CaptureStart::Network) => {
            // Linux cooked header: packet type unknown (0, "to us"), ARPHRD_NONE, no
            // address, then the ethertype.
            let mut data = Vec::with_capacity(SLL_HEADER + bytes.len());
            data.extend_from_slice(&0u16.to_be_bytes());
            data.extend_from_slice(&0xfffeu16.to_be_bytes());
            data.extend_from_slice(&0u16.to_be_bytes());
            data.extend_from_slice(&[0; 8]);
            data.extend_from_slice(&ev.l3_proto.to_be_bytes());
            data.extend_from_slice(bytes);
            let len = SLL_HEADER as u32 + fallback(bytes.len());
            (linktype::LINUX_SLL, data, len)
        }
        // Nothing readable: an empty packet still carries the drop in its comment.
        None => (linktype::RAW, Vec::new(), ev.skb_len),
    }
}

/// `name (inode)`, the inode alone when the namespace has no name, or `-`.
fn netns(r: &DropRecord) -> String {
    match &r.netns {
        Some(n) if n.name.is_some() => format!("{} ({})", text::netns_name(n), n.inode),
        Some(n) => n.inode.to_string(),
        None => "-".to_owned(),
    }
}

/// The packet comment: reason, location, namespace, device, task, what was captured.
pub fn comment(r: &DropRecord, start: Option<CaptureStart>) -> String {
    let mut c = format!("reason={}", printable(&r.reason.name));
    if r.reason.inferred {
        c.push_str(" (inferred");
        match r.reason.alternatives.as_deref() {
            Some(alts) if !alts.is_empty() => {
                c.push_str(" from the location; it also drops for ");
                c.push_str(&alts.join(", "));
            }
            _ => {}
        }
        c.push(')');
    }
    if let Some(nf) = &r.netfilter {
        c.push_str(&format!(" netfilter={}/{}", nf.family, nf.hook));
        if nf.conntrack == Some(true) {
            c.push_str(" conntrack");
        }
    }
    c.push_str(&format!(" location={}", text::location(&r.location)));
    c.push_str(&format!(" netns={}", netns(r)));
    let dev = r.device.as_ref().map_or("-", |d| d.name.as_str());
    c.push_str(&format!(" dev={}", printable(dev)));
    c.push_str(&format!(
        " task={}[{}] cpu={}",
        printable(&r.running_task.comm),
        r.running_task.pid,
        r.cpu
    ));
    c.push_str(match start {
        Some(CaptureStart::Mac) => " captured=mac",
        Some(CaptureStart::Network) => " captured=network",
        None => " captured=none",
    });
    c
}

/// Key of an interface: (ifindex, netns inode, link type).
type InterfaceKey = (u32, u32, u16);

/// Writes drops as pcap-ng to `out`; notices, reports and summaries have no place in it.
pub struct PcapngSink<W: Write> {
    out: W,
    /// Blocks not yet written to `out`.
    buf: Vec<u8>,
    snaplen: u32,
    interfaces: HashMap<InterfaceKey, u32>,
}

impl<W: Write> PcapngSink<W> {
    /// A file for packets captured with `snaplen`; the section header is written with the
    /// first flush.
    pub fn new(out: W, snaplen: u32) -> Self {
        let mut buf = Vec::with_capacity(1 << 16);
        section_header(
            &mut buf,
            concat!(
                "netdrop ",
                env!("CARGO_PKG_VERSION"),
                " (kernel packet drops)"
            ),
        );
        Self {
            out,
            buf,
            snaplen,
            interfaces: HashMap::new(),
        }
    }

    /// The index of the interface for `ev` with `link`, described on first use.
    fn interface(&mut self, r: &DropRecord, ev: &DropEvent, link: u16) -> u32 {
        let key = (ev.ifindex, ev.netns, link);
        if let Some(&id) = self.interfaces.get(&key) {
            return id;
        }
        let id = self.interfaces.len() as u32;
        let name = r.device.as_ref().map_or_else(
            || "(no device)".to_owned(),
            |d| printable(&d.name).into_owned(),
        );
        let netns = netns(r);
        let what = match link {
            linktype::ETHERNET => "from the Ethernet header",
            linktype::RAW => "from the IP header",
            _ => "from the network header, behind a Linux cooked header",
        };
        let description = format!("{name} in netns {netns}: dropped packets, captured {what}");
        let snaplen = if link == linktype::LINUX_SLL {
            self.snaplen + SLL_HEADER as u32
        } else {
            self.snaplen
        };
        interface(&mut self.buf, link, snaplen, &name, &description);
        self.interfaces.insert(key, id);
        id
    }
}

impl<W: Write> Sink for PcapngSink<W> {
    fn drop(&mut self, d: &Dropped<'_>, cx: &mut Context<'_>) -> io::Result<()> {
        let ev = d.event;
        let r = cx.enricher.record(ev, d.stack, false, cx.conntrack_hook);
        let start = d.capture.map(|c| c.start);
        let bytes = d.capture.map_or(&[][..], |c| c.bytes.as_slice());
        let (link, data, original) = frame(ev, start, bytes);
        let id = self.interface(&r, ev, link);
        let ns = cx.clock.unix_ns(ev.timestamp_ns).max(0) as u64;
        packet(&mut self.buf, id, ns, &data, original, &comment(&r, start));
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            let res = self.out.write_all(&self.buf);
            self.buf.clear();
            res?;
        }
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use netdrop_common::proto;

    use super::*;

    fn u16_at(b: &[u8], at: usize) -> u16 {
        u16::from_le_bytes([b[at], b[at + 1]])
    }

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
    }

    /// The blocks of a buffer: (type, whole block), checking both length fields agree.
    fn blocks(mut b: &[u8]) -> Vec<(u32, Vec<u8>)> {
        let mut out = Vec::new();
        while !b.is_empty() {
            let len = u32_at(b, 4) as usize;
            assert_eq!(len % 4, 0, "block length {len} not a multiple of 4");
            assert_eq!(u32_at(b, len - 4) as usize, len, "trailing length differs");
            out.push((u32_at(b, 0), b[..len].to_vec()));
            b = &b[len..];
        }
        out
    }

    #[test]
    fn section_header_has_magic_version_and_application() {
        let mut b = Vec::new();
        section_header(&mut b, "netdrop");
        let blocks = blocks(&b);
        assert_eq!(blocks.len(), 1);
        let (kind, shb) = &blocks[0];
        assert_eq!(*kind, 0x0A0D_0D0A);
        // 12 framing + 16 body + option (4 + "netdrop" padded to 8) + end of options 4.
        assert_eq!(shb.len(), 12 + 16 + 12 + 4);
        assert_eq!(&shb[8..12], &[0x4d, 0x3c, 0x2b, 0x1a]);
        assert_eq!((u16_at(shb, 12), u16_at(shb, 14)), (1, 0));
        assert_eq!(&shb[16..24], &[0xff; 8]);
        assert_eq!((u16_at(shb, 24), u16_at(shb, 26)), (SHB_USERAPPL, 7));
        assert_eq!(&shb[28..36], b"netdrop\0");
        assert_eq!(&shb[36..40], &[0, 0, 0, 0]);
    }

    #[test]
    fn interface_block_lays_out_link_type_snaplen_and_options() {
        let mut b = Vec::new();
        interface(&mut b, linktype::RAW, 256, "eth0", "d");
        let (kind, idb) = &blocks(&b)[0];
        assert_eq!(*kind, 1);
        assert_eq!(u16_at(idb, 8), 101);
        assert_eq!(u16_at(idb, 10), 0);
        assert_eq!(u32_at(idb, 12), 256);
        // if_name "eth0" (4 bytes, no padding), if_description "d" (padded to 4),
        // if_tsresol 9 (padded to 4), end of options.
        assert_eq!((u16_at(idb, 16), u16_at(idb, 18)), (IF_NAME, 4));
        assert_eq!(&idb[20..24], b"eth0");
        assert_eq!((u16_at(idb, 24), u16_at(idb, 26)), (IF_DESCRIPTION, 1));
        assert_eq!(&idb[28..32], b"d\0\0\0");
        assert_eq!((u16_at(idb, 32), u16_at(idb, 34)), (IF_TSRESOL, 1));
        assert_eq!(&idb[36..40], &[9, 0, 0, 0]);
        assert_eq!(&idb[40..44], &[0, 0, 0, 0]);
        assert_eq!(idb.len(), 48);
    }

    #[test]
    fn packet_block_pads_data_and_comment_and_splits_the_timestamp() {
        let mut b = Vec::new();
        let ns = 1_764_633_600_123_456_789u64;
        packet(&mut b, 3, ns, &[1, 2, 3, 4, 5], 60, "reason=X");
        let (kind, epb) = &blocks(&b)[0];
        assert_eq!(*kind, 6);
        assert_eq!(u32_at(epb, 8), 3);
        let ts = (u64::from(u32_at(epb, 12)) << 32) | u64::from(u32_at(epb, 16));
        assert_eq!(ts, ns);
        assert_eq!((u32_at(epb, 20), u32_at(epb, 24)), (5, 60));
        assert_eq!(&epb[28..36], &[1, 2, 3, 4, 5, 0, 0, 0]);
        assert_eq!((u16_at(epb, 36), u16_at(epb, 38)), (OPT_COMMENT, 8));
        assert_eq!(&epb[40..48], b"reason=X");
        assert_eq!(&epb[48..52], &[0, 0, 0, 0]);
        assert_eq!(epb.len(), 56);
    }

    #[test]
    fn original_length_is_never_below_the_captured_length() {
        let mut b = Vec::new();
        packet(&mut b, 0, 0, &[0; 10], 4, "");
        let (_, epb) = &blocks(&b)[0];
        assert_eq!((u32_at(epb, 20), u32_at(epb, 24)), (10, 10));
        // No comment: no options at all.
        assert_eq!(epb.len(), 12 + 20 + 12);
    }

    fn udp4(payload: usize) -> Vec<u8> {
        let total = 20 + 8 + payload as u16;
        let mut p = vec![
            0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        p[2..4].copy_from_slice(&total.to_be_bytes());
        p.extend_from_slice(&[0x30, 0x39, 0, 9, 0, 8 + payload as u8, 0, 0]);
        p.extend(std::iter::repeat_n(0xaa, payload));
        p
    }

    #[test]
    fn frames_take_the_link_type_and_wire_length_from_the_capture() {
        let ev = DropEvent {
            skb_len: 11,
            l3_proto: proto::ETH_P_IP,
            ..Default::default()
        };
        // Ethernet: 14 + the IP total length, even when the capture is cut.
        let mut eth = vec![0; 12];
        eth.extend_from_slice(&proto::ETH_P_IP.to_be_bytes());
        eth.extend(udp4(300));
        let (link, data, len) = frame(&ev, Some(CaptureStart::Mac), &eth[..64]);
        assert_eq!((link, data.len(), len), (linktype::ETHERNET, 64, 14 + 328));
        // Raw IP from the network header.
        let (link, data, len) = frame(&ev, Some(CaptureStart::Network), &udp4(3));
        assert_eq!((link, data.len(), len), (linktype::RAW, 31, 31));
        // IPv6: 40 + payload length.
        let mut v6 = vec![0x60, 0, 0, 0, 0, 12, 17, 64];
        v6.extend_from_slice(&[0; 32]);
        assert_eq!(frame(&ev, Some(CaptureStart::Network), &v6).2, 52);
        // ARP from the network header: a cooked header carries the ethertype.
        let arp = DropEvent {
            l3_proto: proto::ETH_P_ARP,
            skb_len: 28,
            ..Default::default()
        };
        let (link, data, len) = frame(&arp, Some(CaptureStart::Network), &[0x00, 0x01, 8, 0]);
        assert_eq!(link, linktype::LINUX_SLL);
        assert_eq!(&data[14..16], &[0x08, 0x06]);
        assert_eq!(&data[16..], &[0x00, 0x01, 8, 0]);
        assert_eq!(len, 16 + 28);
        // Nothing captured: an empty raw packet of the skb's length.
        assert_eq!(frame(&ev, None, &[]), (linktype::RAW, Vec::new(), 11));
    }

    fn enricher() -> crate::event::Enricher {
        use crate::{
            kernel::{reasons::Reasons, tracefs::Format},
            testdata,
        };
        let f = Format::parse(&testdata::read("tracefs/kfree_skb-6.18.format")).unwrap();
        let reasons = Reasons::from_symbolic(&f.symbolic_values()).unwrap();
        crate::event::Enricher::new(
            reasons,
            &testdata::path("kallsyms/6.1-with-veth"),
            &testdata::path(""),
        )
    }

    #[test]
    fn drops_become_one_interface_per_device_namespace_and_link_type() {
        use crate::{
            event::Capture,
            output::sink::{Context, Dropped},
            testdata::udp_event,
            time::Clock,
        };
        let mut enricher = enricher();
        let clock = Clock::with_offset(1_700_000_000_000_000_000);
        let mut sink = PcapngSink::new(Vec::new(), 128);
        let mut eth = vec![0; 12];
        eth.extend_from_slice(&proto::ETH_P_IP.to_be_bytes());
        eth.extend(udp4(5));
        let on_lo = Capture {
            start: CaptureStart::Mac,
            bytes: eth,
        };
        let raw = Capture {
            start: CaptureStart::Network,
            bytes: udp4(5),
        };
        let lo = udp_event();
        let other_ns = DropEvent {
            netns: 4026532000,
            ..udp_event()
        };
        for (ev, cap) in [
            (&lo, &on_lo),
            (&lo, &on_lo),
            (&other_ns, &on_lo),
            (&lo, &raw),
        ] {
            let mut cx = Context {
                enricher: &mut enricher,
                clock: &clock,
                show_stack: false,
                conntrack_hook: false,
            };
            let d = Dropped {
                event: ev,
                stack: None,
                capture: Some(cap),
            };
            sink.drop(&d, &mut cx).unwrap();
        }
        // Nothing reaches the output before a flush.
        assert!(sink.out.is_empty());
        sink.flush().unwrap();
        let blocks = blocks(&sink.out);
        let kinds: Vec<u32> = blocks.iter().map(|(k, _)| *k).collect();
        assert_eq!(kinds, [SECTION_HEADER, 1, 6, 6, 1, 6, 1, 6]);
        let epbs: Vec<&Vec<u8>> = blocks
            .iter()
            .filter(|(k, _)| *k == 6)
            .map(|(_, b)| b)
            .collect();
        let ids: Vec<u32> = epbs.iter().map(|b| u32_at(b, 8)).collect();
        assert_eq!(ids, [0, 0, 1, 2]);
        let idbs: Vec<&Vec<u8>> = blocks
            .iter()
            .filter(|(k, _)| *k == 1)
            .map(|(_, b)| b)
            .collect();
        let links: Vec<u16> = idbs.iter().map(|b| u16_at(b, 8)).collect();
        assert_eq!(
            links,
            [linktype::ETHERNET, linktype::ETHERNET, linktype::RAW]
        );
        assert_eq!(u32_at(idbs[0], 12), 128);
        // Kernel timestamp 1000 ns after the monotonic epoch, on the wall clock.
        let ts = (u64::from(u32_at(epbs[0], 12)) << 32) | u64::from(u32_at(epbs[0], 16));
        assert_eq!(ts, 1_700_000_000_000_001_000);
        // 14 + 33 bytes captured and on the wire, then the comment.
        assert_eq!((u32_at(epbs[0], 20), u32_at(epbs[0], 24)), (47, 47));
        let opt = 28 + 48;
        let len = u16_at(epbs[0], opt + 2) as usize;
        assert_eq!(u16_at(epbs[0], opt), OPT_COMMENT);
        let comment = std::str::from_utf8(&epbs[0][opt + 4..opt + 4 + len]).unwrap();
        assert_eq!(
            comment,
            "reason=NO_SOCKET location=__udp4_lib_rcv+0x2d1 netns=4026531840 dev=lo task=nc[42] \
             cpu=1 captured=mac"
        );
    }
}
