//! Decoding kernel records and enriching them into [`DropRecord`]s: reason names,
//! symbols, addresses, namespace names, wall-clock time.
//!
//! [`DropRecord`] is also the JSON schema of `watch --json` (see README.md): fields are
//! only ever added, never renamed or removed.

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    path::Path,
};

use netdrop_common::{CAPTURE_MAX, CapturedDrop, DropEvent, capture_from, flag, proto};
use serde::{Deserialize, Serialize};

use crate::{
    kernel::{
        containers::{Container, Containers, Pod, Workload},
        inferred,
        kallsyms::Symbolizer,
        netns::NetnsNames,
        reasons::{Reasons, Source},
    },
    time::Clock,
};

/// Decodes one ring buffer record.
pub fn decode(bytes: &[u8]) -> Option<DropEvent> {
    if bytes.len() < size_of::<DropEvent>() {
        return None;
    }
    // SAFETY: DropEvent is plain old data and `bytes` holds at least one.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<DropEvent>()) })
}

/// Where the captured bytes of a packet start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaptureStart {
    /// At an Ethernet header.
    Mac,
    /// At the network header (no MAC header, or not an Ethernet one).
    Network,
}

/// The first bytes of a dropped packet, from a record written with
/// `netdrop_common::config::CAPTURE`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capture {
    /// Which header the bytes start at.
    pub start: CaptureStart,
    /// The packet's first bytes: at most the snap length.
    pub bytes: Vec<u8>,
}

/// The captured bytes of a ring buffer record: `None` for a plain [`DropEvent`] record,
/// one whose packet could not be read, or one whose length fields make no sense.
pub fn decode_capture(bytes: &[u8]) -> Option<Capture> {
    if bytes.len() < size_of::<CapturedDrop>() {
        return None;
    }
    let at = size_of::<DropEvent>();
    let word =
        |i: usize| u32::from_ne_bytes(bytes[at + i..at + i + 4].try_into().unwrap_or_default());
    let (len, from) = (word(0) as usize, word(4));
    let start = match from {
        capture_from::MAC => CaptureStart::Mac,
        capture_from::NETWORK => CaptureStart::Network,
        _ => return None,
    };
    if len > CAPTURE_MAX {
        return None;
    }
    let data = at + 8;
    Some(Capture {
        start,
        bytes: bytes[data..data + len].to_vec(),
    })
}

/// An event-budget report from the ring buffer: records of exactly its size are these.
pub fn decode_over_budget(bytes: &[u8]) -> Option<netdrop_common::BudgetRecord> {
    exactly(bytes)
}

/// A rate-limit report from the ring buffer: records of exactly its size are these, not
/// [`DropEvent`]s.
pub fn decode_suppressed(bytes: &[u8]) -> Option<netdrop_common::SuppressedRecord> {
    exactly(bytes)
}

/// A `T` when `bytes` is exactly one: the ring's records are told apart by their size.
fn exactly<T: aya::Pod>(bytes: &[u8]) -> Option<T> {
    if bytes.len() != size_of::<T>() {
        return None;
    }
    // SAFETY: T is plain old data and `bytes` holds exactly one.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

/// One dropped packet, enriched.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DropRecord {
    /// Wall-clock time, RFC 3339 UTC with nanoseconds.
    pub time: String,
    /// CLOCK_MONOTONIC nanoseconds, for ordering and deltas.
    pub mono_ns: u64,
    pub cpu: u32,
    pub reason: ReasonInfo,
    pub location: Location,
    pub packet: Packet,
    /// `null` when the packet had no device.
    pub device: Option<Device>,
    /// `null` when neither device nor socket told us.
    pub netns: Option<Netns>,
    /// The task that was running when the kernel dropped the packet. For received packets
    /// this is whatever the CPU was doing (often unrelated to the flow).
    pub running_task: Task,
    /// Kernel stack, innermost first, with `--stack`; otherwise `null`.
    pub stack: Option<Vec<String>>,
    /// For NETFILTER_DROP: which netfilter hook dropped the packet; otherwise `null`.
    #[serde(default)]
    pub netfilter: Option<Netfilter>,
    /// For a drop in `enqueue_to_backlog` (CPU_BACKLOG) seen by the backlog hook: whose
    /// backlog overflowed and how long it was; otherwise `null` (no kprobes, or another
    /// reason).
    #[serde(default)]
    pub backlog: Option<Backlog>,
    /// Containers with a process in the drop's network namespace (all of them: containers
    /// sharing a namespace, as in a pod, cannot be told apart); left out when none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub containers: Option<Vec<Container>>,
    /// The Kubernetes pod whose namespace it is; left out when none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<Pod>,
}

/// The netdev backlog a packet was refused by, measured by the backlog hook when the
/// packet arrived.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backlog {
    /// The CPU whose backlog (`softnet_data.input_pkt_queue`) the packet was queued to:
    /// RPS may pick another than the one that dropped it (`cpu`).
    pub cpu: u32,
    /// That backlog's length, in packets.
    pub queue: u32,
    /// `net.core.netdev_max_backlog` (host-wide): read by the hook when the packet was
    /// dropped where kallsyms has it, else from /proc/sys at most once a second; `null`
    /// when neither can be read (netdrop outside the initial network namespace).
    pub max: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Netfilter {
    /// `ipv4`, `ipv6`, `arp`, `bridge` or `netdev`.
    pub family: String,
    /// `prerouting`, `input`, `forward`, `output`, `postrouting`, `ingress`, `egress`.
    pub hook: String,
    /// The kernel function that ran the hook (the caller of `nf_hook_slow`).
    pub via: String,
    /// True when conntrack (not a rule) refused the packet, e.g. a full table; `null` when
    /// this kernel gives netdrop no way to tell.
    pub conntrack: Option<bool>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReasonInfo {
    /// Name as the kernel spells it without prefix, e.g. `NO_SOCKET`; `UNKNOWN` on kernels
    /// without drop reasons.
    pub name: String,
    /// Raw `enum skb_drop_reason` value on this kernel (numbers differ between versions).
    pub code: u32,
    /// Subsystem for non-core reasons, e.g. `OPENVSWITCH`.
    pub subsystem: Option<String>,
    /// True when the kernel did not name this reason: it reports none and `name` was
    /// inferred from the drop location (see [`crate::kernel::inferred`]), or the drop was
    /// seen by a netdrop hook and `name` is one of netdrop's own (`LISTEN_OVERFLOW`,
    /// `SYN_QUEUE_FULL`; see `netdrop_common::netdrop_reason`).
    #[serde(default)]
    pub inferred: bool,
    /// For an inferred reason, the other reasons the same location drops packets for
    /// (empty when the location settles it); `null` for reasons the kernel gave.
    #[serde(default)]
    pub alternatives: Option<Vec<String>>,
}

impl ReasonInfo {
    /// The reason of a drop at `symbol` (the function that freed the packet): the
    /// kernel's, or on a kernel without reasons the one its location stands for, marked
    /// inferred; `UNKNOWN` where the location names none.
    pub fn new(reasons: &Reasons, code: u32, symbol: Option<&str>) -> Self {
        let r = reasons.decode(code);
        // netdrop's own reasons: an inference of netdrop's, whatever the kernel.
        if netdrop_common::netdrop_reason::is_netdrop(code) {
            return Self {
                name: r.name,
                code,
                subsystem: None,
                inferred: true,
                alternatives: Some(Vec::new()),
            };
        }
        let inferred = (reasons.source == Source::None)
            .then(|| symbol.and_then(inferred::infer))
            .flatten();
        match inferred {
            Some(i) => Self {
                name: i.reason.to_owned(),
                code: r.code,
                subsystem: None,
                inferred: true,
                alternatives: Some(i.alternatives.iter().map(|a| (*a).to_owned()).collect()),
            },
            None => Self {
                name: r.name,
                code: r.code,
                subsystem: r.subsystem,
                inferred: false,
                alternatives: None,
            },
        }
    }

    /// The name as text output shows it: `NO_SOCKET`, or `NO_SOCKET?` when inferred.
    pub fn label(&self) -> String {
        if self.inferred {
            format!("{}?", self.name)
        } else {
            self.name.clone()
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    /// Kernel address, hex.
    pub address: String,
    /// Function containing it, when kallsyms knows.
    pub symbol: Option<String>,
    /// Offset into that function.
    pub offset: Option<u64>,
    /// Module, or `null` for the kernel image.
    pub module: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Packet {
    /// `skb->len`.
    pub length: u32,
    /// `ipv4`, `ipv6`, `arp`, or `0xNNNN` (ethertype), `null` if unknown.
    pub family: Option<String>,
    /// `tcp`, `udp`, `icmp`, `icmpv6`, ... or the number as a string.
    pub protocol: Option<String>,
    pub src: Option<String>,
    pub dst: Option<String>,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    /// TCP flags, e.g. `["SYN"]`.
    pub tcp_flags: Option<Vec<String>>,
    pub icmp_type: Option<u8>,
    pub icmp_code: Option<u8>,
    /// A non-first IP fragment (no transport header).
    pub fragment: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    pub ifindex: u32,
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Netns {
    /// Namespace inode, as in `ls -L -i /proc/PID/ns/net`.
    pub inode: u32,
    /// `ip netns` name, or `init` for the initial namespace.
    pub name: Option<String>,
    /// Where the namespace was read from: `device` or `socket` for drops, `procfs` for
    /// counters.
    pub source: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    pub pid: u32,
    pub tid: u32,
    pub comm: String,
}

/// Turns raw events into records.
pub struct Enricher {
    pub reasons: Reasons,
    symbols: Option<Symbolizer>,
    netns: NetnsNames,
    containers: Containers,
    clock: Clock,
    max_backlog: MaxBacklog,
}

/// `net.core.netdev_max_backlog`, re-read at most once a second (it is often changed
/// while drops happen).
#[derive(Default)]
struct MaxBacklog {
    value: Option<u64>,
    read_at: Option<std::time::Instant>,
}

impl MaxBacklog {
    const PATH: &str = "/proc/sys/net/core/netdev_max_backlog";

    fn get(&mut self) -> Option<u64> {
        let fresh = self
            .read_at
            .is_some_and(|t| t.elapsed() < std::time::Duration::from_secs(1));
        if !fresh {
            self.value = std::fs::read_to_string(Self::PATH)
                .ok()
                .and_then(|s| s.trim().parse().ok());
            self.read_at = Some(std::time::Instant::now());
        }
        self.value
    }
}

impl Enricher {
    /// `kallsyms` is normally `/proc/kallsyms`; symbols are left out if it is unreadable
    /// or hides addresses.
    pub fn new(reasons: Reasons, kallsyms: &Path, root: &Path) -> Self {
        let symbols = match Symbolizer::load(kallsyms) {
            Ok(s) if s.addresses_hidden() => {
                tracing::warn!(
                    "{} hides kernel addresses (kptr_restrict): locations are not symbolised",
                    kallsyms.display()
                );
                None
            }
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(
                    "cannot read {}: {e}; locations are not symbolised",
                    kallsyms.display()
                );
                None
            }
        };
        Self {
            reasons,
            symbols,
            netns: NetnsNames::new(root),
            containers: Containers::new(root),
            clock: Clock::now(),
            max_backlog: MaxBacklog::default(),
        }
    }

    /// The clock records are stamped with.
    pub fn clock(&self) -> Clock {
        self.clock
    }

    /// The namespace `inode`, named when possible.
    pub fn netns(&mut self, inode: u32, source: &str) -> Netns {
        Netns {
            inode,
            name: self.netns.name(inode).map(str::to_owned),
            source: source.to_owned(),
        }
    }

    /// The containers and pod of namespace `inode`, if any.
    pub fn workload(&mut self, inode: u32) -> Option<&Workload> {
        self.containers.workload(inode)
    }

    /// The container table, for grouping by pod.
    pub fn containers(&mut self) -> &mut Containers {
        &mut self.containers
    }

    /// The location record of a kernel address.
    pub fn location(&mut self, addr: u64) -> Location {
        let sym = self.symbols.as_mut().and_then(|s| s.resolve(addr));
        Location {
            address: format!("{addr:#x}"),
            symbol: sym.as_ref().map(|s| s.name.clone()),
            offset: sym.as_ref().map(|s| s.offset),
            module: sym.as_ref().and_then(|s| s.module.clone()),
        }
    }

    /// `symbol+0xoff [module]`, or the hex address.
    pub fn symbolize(&mut self, addr: u64) -> String {
        match self.symbols.as_mut().and_then(|s| s.resolve(addr)) {
            Some(s) => s.to_string(),
            None => format!("{addr:#x}"),
        }
    }

    /// Builds the record for `ev`. `stack` is the kernel stack when one was captured;
    /// `show_stack` says whether it goes into the record (otherwise it only serves to name
    /// the netfilter hook). `conntrack_hook` says whether conntrack drops are flagged.
    pub fn record(
        &mut self,
        ev: &DropEvent,
        stack: Option<&[u64]>,
        show_stack: bool,
        conntrack_hook: bool,
    ) -> DropRecord {
        let has = |f: u32| ev.flags & f != 0;
        let location = self.location(ev.location);
        let mut record = DropRecord {
            time: self.clock.rfc3339(ev.timestamp_ns),
            mono_ns: ev.timestamp_ns,
            cpu: ev.cpu,
            reason: ReasonInfo::new(&self.reasons, ev.reason, location.symbol.as_deref()),
            location,
            packet: packet(ev),
            device: has(flag::HAS_DEVICE).then(|| Device {
                ifindex: ev.ifindex,
                name: c_str(&ev.ifname),
            }),
            netns: has(flag::HAS_NETNS).then(|| Netns {
                inode: ev.netns,
                name: self.netns.name(ev.netns).map(str::to_owned),
                source: if has(flag::NETNS_FROM_SOCKET) {
                    "socket"
                } else {
                    "device"
                }
                .to_owned(),
            }),
            running_task: Task {
                pid: ev.pid,
                tid: ev.tid,
                comm: c_str(&ev.comm),
            },
            stack: None,
            netfilter: None,
            backlog: has(flag::HAS_BACKLOG).then(|| Backlog {
                cpu: ev.backlog_cpu,
                queue: ev.backlog_qlen,
                max: if has(flag::HAS_BACKLOG_MAX) {
                    Some(u64::from(ev.backlog_max))
                } else {
                    self.max_backlog.get()
                },
            }),
            containers: None,
            pod: None,
        };
        if let Some(w) = record
            .netns
            .as_ref()
            .and_then(|n| self.containers.workload(n.inode))
        {
            record.containers = Some(w.containers.clone());
            record.pod = w.pod.clone();
        }
        let frames = stack.map(|f| self.stack(f));
        if record.reason.name == "NETFILTER_DROP" {
            record.netfilter =
                frames
                    .as_deref()
                    .and_then(netfilter_hook)
                    .map(|(family, hook, via)| Netfilter {
                        family: family.to_owned(),
                        hook: hook.to_owned(),
                        via,
                        conntrack: conntrack_hook.then_some(ev.flags & flag::CONNTRACK != 0),
                    });
        }
        if show_stack {
            record.stack = frames;
        }
        record
    }

    /// Symbolises a kernel stack, leaving out the frames of netdrop's own program and the
    /// tracepoint machinery that called it: the first frame is the function that freed
    /// the packet.
    fn stack(&mut self, frames: &[u64]) -> Vec<String> {
        let names: Vec<String> = frames.iter().map(|&a| self.symbolize(a)).collect();
        let skip = tracing_frames(&names);
        names.into_iter().skip(skip).collect()
    }
}

/// Where a netfilter hook runs, by the function that calls `nf_hook_slow` for it:
/// (caller, family, hook). These are the NF_HOOK call sites of the IP, ARP and device
/// layers; a caller outside this list leaves the hook unnamed.
const NF_HOOK_CALLERS: &[(&str, &str, &str)] = &[
    ("ip_rcv", "ipv4", "prerouting"),
    ("ip_sublist_rcv", "ipv4", "prerouting"),
    ("ip_list_rcv", "ipv4", "prerouting"),
    ("ip_local_deliver", "ipv4", "input"),
    ("ip_forward", "ipv4", "forward"),
    ("__ip_local_out", "ipv4", "output"),
    ("ip_local_out", "ipv4", "output"),
    ("ip_output", "ipv4", "postrouting"),
    ("ip_mc_output", "ipv4", "postrouting"),
    ("ipv6_rcv", "ipv6", "prerouting"),
    ("ip6_sublist_rcv", "ipv6", "prerouting"),
    ("ipv6_list_rcv", "ipv6", "prerouting"),
    ("ip6_input", "ipv6", "input"),
    ("ip6_forward", "ipv6", "forward"),
    ("__ip6_local_out", "ipv6", "output"),
    ("ip6_local_out", "ipv6", "output"),
    ("ip6_output", "ipv6", "postrouting"),
    ("arp_rcv", "arp", "input"),
    ("arp_xmit", "arp", "output"),
    ("br_handle_frame", "bridge", "prerouting"),
    ("br_handle_frame_finish", "bridge", "input"),
    ("__br_forward", "bridge", "forward"),
    ("br_dev_queue_push_xmit", "bridge", "postrouting"),
    ("__netif_receive_skb_core", "netdev", "ingress"),
    ("__dev_queue_xmit", "netdev", "egress"),
];

/// Names the netfilter hook from a symbolised stack: the frame after `nf_hook_slow`.
fn netfilter_hook(frames: &[String]) -> Option<(&'static str, &'static str, String)> {
    let base = |f: &str| -> String {
        let name = f.split('+').next().unwrap_or(f);
        // Compiler clones: `ip_rcv.cold`, `__netif_receive_skb_core.constprop.0`.
        name.split('.').next().unwrap_or(name).to_owned()
    };
    let at = frames
        .iter()
        .position(|f| matches!(base(f).as_str(), "nf_hook_slow" | "nf_hook_slow_list"))?;
    let caller = base(frames.get(at + 1)?);
    NF_HOOK_CALLERS
        .iter()
        .find(|(c, _, _)| *c == caller)
        .map(|&(_, family, hook)| (family, hook, caller.clone()))
}

/// How many leading frames belong to netdrop's program and the tracepoint dispatch that ran
/// it. A frame kallsyms cannot name (a bare address: a JIT-ed program whose image has no
/// known end, or one loaded after the symbols were read) counts as tracing only when a
/// dispatch frame follows it, so a stack of bare addresses (hidden symbols) is kept whole.
fn tracing_frames(names: &[String]) -> usize {
    let mut skip = 0;
    for (i, name) in names.iter().enumerate() {
        if is_tracing_frame(name) {
            skip = i + 1;
        } else if !name.starts_with("0x") {
            break;
        }
    }
    skip
}

/// Frames of BPF programs and of the tracepoint dispatch code.
fn is_tracing_frame(name: &str) -> bool {
    name.ends_with("[bpf]")
        || [
            "bpf_prog_",
            "bpf_trace_run",
            "__bpf_trace_",
            "trace_call_bpf",
            "perf_trace_",
            "perf_tp_",
            "trace_event_raw_event_",
        ]
        .iter()
        .any(|p| name.starts_with(p))
}

/// The packet fields of a flow key (no TCP flags or length: flows aggregate packets).
pub fn flow_packet(k: &netdrop_common::FlowKey) -> Packet {
    let icmp = proto::is_icmp(k.l4_proto);
    let ip = matches!(k.l3_proto, proto::ETH_P_IP | proto::ETH_P_IPV6);
    // Zero ports on a ported protocol: the transport header was not readable.
    let l4 = ip && (icmp || k.sport != 0 || k.dport != 0);
    let ev = DropEvent {
        l3_proto: k.l3_proto,
        l4_proto: k.l4_proto,
        sport: if icmp { 0 } else { k.sport },
        dport: if icmp { 0 } else { k.dport },
        icmp_type: if icmp { k.sport as u8 } else { 0 },
        icmp_code: if icmp { k.dport as u8 } else { 0 },
        saddr: k.saddr,
        daddr: k.daddr,
        flags: if ip { flag::HAS_L3 } else { 0 } | if l4 { flag::HAS_L4 } else { 0 },
        ..Default::default()
    };
    Packet {
        tcp_flags: None,
        ..packet(&ev)
    }
}

fn packet(ev: &DropEvent) -> Packet {
    let has = |f: u32| ev.flags & f != 0;
    let l3 = has(flag::HAS_L3);
    let l4 = has(flag::HAS_L4);
    let v4 = ev.l3_proto == proto::ETH_P_IP;
    let addr = |a: &[u8; 16]| {
        if v4 {
            Ipv4Addr::new(a[0], a[1], a[2], a[3]).to_string()
        } else {
            Ipv6Addr::from(*a).to_string()
        }
    };
    let ported = proto::has_ports(ev.l4_proto);
    let icmp = proto::is_icmp(ev.l4_proto);
    Packet {
        length: ev.skb_len,
        family: family_name(ev.l3_proto),
        protocol: l3.then(|| protocol_name(ev.l4_proto)),
        src: l3.then(|| addr(&ev.saddr)),
        dst: l3.then(|| addr(&ev.daddr)),
        sport: (l4 && ported).then_some(ev.sport),
        dport: (l4 && ported).then_some(ev.dport),
        tcp_flags: (l4 && ev.l4_proto == 6).then(|| tcp_flags(ev.tcp_flags)),
        icmp_type: (l4 && icmp).then_some(ev.icmp_type),
        icmp_code: (l4 && icmp).then_some(ev.icmp_code),
        fragment: has(flag::FRAGMENT),
    }
}

/// Name of an ethertype.
pub fn family_name(ethertype: u16) -> Option<String> {
    match family_str(ethertype) {
        Some(name) => Some(name.to_owned()),
        None if ethertype == 0 => None,
        None => Some(format!("{ethertype:#06x}")),
    }
}

/// Name of a common ethertype, without allocating; `None` for 0 and for the rest.
pub fn family_str(ethertype: u16) -> Option<&'static str> {
    match ethertype {
        proto::ETH_P_IP => Some("ipv4"),
        proto::ETH_P_IPV6 => Some("ipv6"),
        proto::ETH_P_ARP => Some("arp"),
        _ => None,
    }
}

/// Name of an IP protocol number.
pub fn protocol_name(proto: u8) -> String {
    match protocol_str(proto) {
        Some(s) => s.to_owned(),
        None => proto.to_string(),
    }
}

/// The IP protocol number of a name [`protocol_str`] gives, or of a number written out.
pub fn protocol_number(name: &str) -> Option<u8> {
    (0..=255u8)
        .find(|&p| protocol_str(p) == Some(name))
        .or_else(|| name.parse().ok())
}

/// Name of a well-known IP protocol number.
pub fn protocol_str(proto: u8) -> Option<&'static str> {
    Some(match proto {
        1 => "icmp",
        2 => "igmp",
        6 => "tcp",
        17 => "udp",
        33 => "dccp",
        47 => "gre",
        50 => "esp",
        51 => "ah",
        58 => "icmpv6",
        112 => "vrrp",
        132 => "sctp",
        136 => "udplite",
        _ => return None,
    })
}

/// TCP flag names, most significant last (as tcpdump lists them).
pub fn tcp_flags(bits: u8) -> Vec<String> {
    tcp_flag_names(bits).map(str::to_owned).collect()
}

/// The names of the TCP flags set in `bits`.
pub fn tcp_flag_names(bits: u8) -> impl Iterator<Item = &'static str> {
    const NAMES: [(u8, &str); 8] = [
        (0x02, "SYN"),
        (0x01, "FIN"),
        (0x04, "RST"),
        (0x08, "PSH"),
        (0x10, "ACK"),
        (0x20, "URG"),
        (0x40, "ECE"),
        (0x80, "CWR"),
    ];
    NAMES
        .iter()
        .filter(move |(b, _)| bits & b != 0)
        .map(|(_, n)| *n)
}

/// A NUL-padded kernel string.
pub fn c_str(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{kernel::tracefs::Format, testdata, testdata::udp_event};

    #[test]
    fn suppressed_records_are_told_apart_by_size() {
        let rec = netdrop_common::SuppressedRecord {
            key: netdrop_common::FlowKey {
                reason: 2,
                dport: 9,
                ..Default::default()
            },
            count: 75845,
            timestamp_ns: 7,
        };
        let bytes = bytes_of(&rec);
        assert_eq!(decode_suppressed(bytes), Some(rec));
        // A drop event is never read as one, nor a short record.
        assert_eq!(decode_suppressed(&[0u8; size_of::<DropEvent>()]), None);
        assert_eq!(decode_suppressed(&bytes[..63]), None);
        assert_eq!(decode(bytes), None);
        assert_eq!(decode_over_budget(bytes), None);
    }

    #[test]
    fn budget_records_are_told_apart_by_size() {
        let rec = netdrop_common::BudgetRecord {
            reason: 2,
            cpu: 1,
            location: 0xffff_ffff_81b2_c3d4,
            count: 98000,
            timestamp_ns: 7,
        };
        let bytes = bytes_of(&rec);
        assert_eq!(decode_over_budget(bytes), Some(rec));
        assert_eq!(decode_over_budget(&[0u8; size_of::<DropEvent>()]), None);
        assert_eq!(decode_over_budget(&bytes[..31]), None);
        assert_eq!((decode(bytes), decode_suppressed(bytes)), (None, None));
    }

    /// The bytes of a ring buffer record.
    fn bytes_of<T: aya::Pod>(rec: &T) -> &[u8] {
        // SAFETY: `T` is plain old data, read for its own size.
        unsafe { std::slice::from_raw_parts((rec as *const T).cast::<u8>(), size_of::<T>()) }
    }

    fn enricher() -> Enricher {
        let f = Format::parse(&testdata::read("tracefs/kfree_skb-6.18.format")).unwrap();
        let reasons = Reasons::from_symbolic(&f.symbolic_values()).unwrap();
        let root = testdata::path("");
        Enricher::new(reasons, &testdata::path("kallsyms/6.1-with-veth"), &root)
    }

    #[test]
    fn decodes_raw_bytes() {
        let ev = udp_event();
        // SAFETY: DropEvent is plain old data.
        let bytes = unsafe {
            std::slice::from_raw_parts(
                (&ev as *const DropEvent).cast::<u8>(),
                size_of::<DropEvent>(),
            )
        };
        assert_eq!(decode(bytes), Some(ev));
        assert_eq!(decode(&bytes[..100]), None);
        // A plain record carries no capture.
        assert_eq!(decode_capture(bytes), None);
    }

    #[test]
    fn decodes_captured_bytes_after_the_event() {
        let mut rec = CapturedDrop {
            event: udp_event(),
            len: 3,
            from: capture_from::NETWORK,
            data: [0xee; CAPTURE_MAX],
        };
        rec.data[..3].copy_from_slice(&[0x45, 1, 2]);
        let bytes = |r: &CapturedDrop| -> Vec<u8> {
            // SAFETY: CapturedDrop is plain old data.
            unsafe {
                std::slice::from_raw_parts(
                    (r as *const CapturedDrop).cast::<u8>(),
                    size_of::<CapturedDrop>(),
                )
            }
            .to_vec()
        };
        assert_eq!(decode(&bytes(&rec)), Some(udp_event()));
        assert_eq!(
            decode_capture(&bytes(&rec)),
            Some(Capture {
                start: CaptureStart::Network,
                bytes: vec![0x45, 1, 2],
            })
        );
        rec.from = capture_from::MAC;
        rec.len = CAPTURE_MAX as u32;
        let c = decode_capture(&bytes(&rec)).unwrap();
        assert_eq!((c.start, c.bytes.len()), (CaptureStart::Mac, CAPTURE_MAX));
        // Nothing captured, or a length no record can hold: no capture.
        rec.from = capture_from::NONE;
        assert_eq!(decode_capture(&bytes(&rec)), None);
        rec.from = capture_from::MAC;
        rec.len = CAPTURE_MAX as u32 + 1;
        assert_eq!(decode_capture(&bytes(&rec)), None);
    }

    #[test]
    fn enriches_udp() {
        let r = enricher().record(&udp_event(), None, false, false);
        assert_eq!(r.reason.name, "NO_SOCKET");
        assert_eq!(r.location.symbol.as_deref(), Some("__udp4_lib_rcv"));
        assert_eq!(r.location.offset, Some(0x2d1));
        assert_eq!(r.packet.protocol.as_deref(), Some("udp"));
        assert_eq!(r.packet.src.as_deref(), Some("127.0.0.1"));
        assert_eq!((r.packet.sport, r.packet.dport), (Some(41234), Some(9)));
        assert_eq!(r.packet.tcp_flags, None);
        assert_eq!(
            r.device,
            Some(Device {
                ifindex: 1,
                name: "lo".into()
            })
        );
        assert_eq!(r.netns.as_ref().unwrap().source, "device");
        assert_eq!(r.running_task.comm, "nc");
    }

    #[test]
    fn stacks_start_after_the_tracer_even_when_its_program_is_unnamed() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // The program is the last kallsyms symbol: a bare address before the dispatch frame.
        let s = names(&[
            "0xffffffffc00018b0",
            "bpf_trace_run4+0x10d",
            "sk_skb_reason_drop+0x90",
            "__udp4_lib_rcv+0x4bc",
        ]);
        assert_eq!(tracing_frames(&s), 2);
        // The classic tracepoint's dispatch, program named.
        let s = names(&[
            "bpf_prog_79ab2eaac6fb668e_drop_tp+0x1f2 [bpf]",
            "trace_call_bpf+0xe6",
            "perf_trace_run_bpf_submit+0x4b",
            "perf_trace_kfree_skb+0x11a",
            "kfree_skb_reason+0x90",
        ]);
        assert_eq!(tracing_frames(&s), 4);
        // Symbols hidden: every frame bare, none of them known to be the tracer's.
        let s = names(&[
            "0xffffffffc00018b0",
            "0xffffffff8137a3ed",
            "0xffffffff81c1e180",
        ]);
        assert_eq!(tracing_frames(&s), 0);
        // A bare address after the kernel's first frame is the kernel's.
        let s = names(&["bpf_trace_run4+0x10d", "0xffffffff81c1e180", "udp_rcv+0x10"]);
        assert_eq!(tracing_frames(&s), 1);
    }

    #[test]
    fn enriches_tcp_ipv6_and_partial_packets() {
        let mut ev = udp_event();
        ev.l3_proto = 0x86dd;
        ev.l4_proto = 6;
        ev.tcp_flags = 0x12;
        ev.saddr = Ipv6Addr::LOCALHOST.octets();
        ev.daddr = Ipv6Addr::LOCALHOST.octets();
        let r = enricher().record(&ev, Some(&[ev.location, 0x1]), true, false);
        assert!(is_tracing_frame(
            "bpf_prog_79ab2eaac6fb668e_drop_btf_4arg+0x6f7 [bpf]"
        ));
        assert!(is_tracing_frame("bpf_trace_run4+0xfc"));
        assert!(!is_tracing_frame("sk_skb_reason_drop+0x90"));
        assert_eq!(r.packet.family.as_deref(), Some("ipv6"));
        assert_eq!(r.packet.dst.as_deref(), Some("::1"));
        assert_eq!(
            r.packet.tcp_flags,
            Some(vec!["SYN".to_owned(), "ACK".to_owned()])
        );
        assert_eq!(
            r.stack,
            Some(vec!["__udp4_lib_rcv+0x2d1".to_owned(), "0x1".to_owned()])
        );

        // No headers read: still a record, with what is known.
        ev.flags = flag::HAS_REASON;
        ev.l3_proto = 0;
        let r = enricher().record(&ev, None, false, false);
        assert_eq!(
            r.packet,
            Packet {
                length: 33,
                ..Default::default()
            }
        );
        assert_eq!(r.device, None);
        assert_eq!(r.netns, None);
    }

    #[test]
    fn kernels_without_reasons_get_one_inferred_from_the_location() {
        let mut e = Enricher::new(
            Reasons::none(),
            &testdata::path("kallsyms/6.1-with-veth"),
            &testdata::path(""),
        );
        let mut ev = udp_event();
        ev.reason = 0;
        ev.flags &= !flag::HAS_REASON;
        let r = e.record(&ev, None, false, false);
        assert_eq!(r.reason.name, "NO_SOCKET");
        assert!(r.reason.inferred);
        assert_eq!(r.reason.label(), "NO_SOCKET?");
        assert!(
            r.reason
                .alternatives
                .as_ref()
                .is_some_and(|a| a.iter().any(|n| n == "UDP_CSUM"))
        );
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["reason"]["inferred"], true);
        assert_eq!(v["reason"]["code"], 0);

        // nf_hook_slow+0x45: unambiguous.
        ev.location = 0xffffffffaa439ee0 + 0x45;
        let nf = e.record(&ev, None, false, false).reason;
        assert_eq!(
            (nf.name.as_str(), nf.inferred, nf.alternatives),
            ("NETFILTER_DROP", true, Some(vec![]))
        );

        // A location the table does not name stays UNKNOWN, and is not marked.
        ev.location = 0xffffffffaa3aeb40 + 0x10;
        let other = e.record(&ev, None, false, false).reason;
        assert_eq!(
            (other.name.as_str(), other.inferred, other.alternatives),
            ("UNKNOWN", false, None)
        );

        // A kernel with reasons: its own, never inferred.
        let modern = enricher().record(&udp_event(), None, false, false).reason;
        assert_eq!(
            (modern.name.as_str(), modern.inferred, modern.alternatives),
            ("NO_SOCKET", false, None)
        );
    }

    #[test]
    fn json_round_trip() {
        let r = enricher().record(&udp_event(), Some(&[0xffffffffc05011b0]), true, false);
        let json = serde_json::to_string(&r).unwrap();
        let back: DropRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["reason"]["name"], "NO_SOCKET");
        assert_eq!(v["packet"]["dport"], 9);
        assert_eq!(v["stack"][0], "veth_stats_rx+0x0 [veth]");
        assert_eq!(v["location"]["module"], serde_json::Value::Null);
    }

    #[test]
    fn netfilter_hooks_are_named_from_the_caller_of_nf_hook_slow() {
        let frames = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // 6.18 with an nftables rule: the chain frees the packet.
        let rule = frames(&[
            "nft_do_chain+0x3e8",
            "nft_do_chain_inet+0x4f",
            "nf_hook_slow+0x45",
            "ip_local_deliver+0xd4",
            "ip_sublist_rcv_finish+0x7a",
        ]);
        assert_eq!(
            netfilter_hook(&rule),
            Some(("ipv4", "input", "ip_local_deliver".to_owned()))
        );
        // conntrack refusing a packet at PREROUTING.
        let ct = frames(&[
            "sk_skb_reason_drop+0x90",
            "nf_hook_slow+0x7d",
            "ip_rcv+0x131",
            "__netif_receive_skb_one_core+0x8d",
        ]);
        assert_eq!(
            netfilter_hook(&ct),
            Some(("ipv4", "prerouting", "ip_rcv".to_owned()))
        );
        let v6 = frames(&["nf_hook_slow+0x7d", "__ip6_local_out.constprop.0+0x1c"]);
        assert_eq!(netfilter_hook(&v6).map(|h| h.1), Some("output"));
        assert_eq!(
            netfilter_hook(&frames(&["nf_hook_slow+0x7d", "some_tunnel_xmit+0x1"])),
            None
        );
        assert_eq!(netfilter_hook(&frames(&["udp_rcv+0x1"])), None);
    }

    #[test]
    fn conntrack_drops_are_told_apart_only_with_the_hook() {
        let dir = std::env::temp_dir().join(format!("netdrop-ksyms-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ksyms = dir.join("kallsyms");
        std::fs::write(
            &ksyms,
            "ffffffff81000000 T _text\nffffffff81100000 T nf_hook_slow\nffffffff81100200 T nf_hook_slow_list\n\
             ffffffff81200000 T ip_rcv\nffffffff81200400 T ip_rcv_core\n",
        )
        .unwrap();
        let f = Format::parse(&testdata::read("tracefs/kfree_skb-6.18.format")).unwrap();
        let reasons = Reasons::from_symbolic(&f.symbolic_values()).unwrap();
        let mut e = Enricher::new(reasons.clone(), &ksyms, &dir);
        let mut ev = udp_event();
        ev.reason = reasons.lookup("NETFILTER_DROP").unwrap();
        ev.flags |= flag::HAS_STACK;
        let stack = [0xffffffff81100000 + 0x7d, 0xffffffff81200000 + 0x131];

        let rule = e.record(&ev, Some(&stack), false, true);
        let nf = rule.netfilter.expect("netfilter hook named");
        assert_eq!(
            (nf.family.as_str(), nf.hook.as_str(), nf.via.as_str()),
            ("ipv4", "prerouting", "ip_rcv")
        );
        assert_eq!(nf.conntrack, Some(false));
        assert_eq!(rule.stack, None, "stack only shown with --stack");

        ev.flags |= flag::CONNTRACK;
        let ct = e.record(&ev, Some(&stack), true, true);
        assert_eq!(ct.netfilter.unwrap().conntrack, Some(true));
        assert_eq!(ct.stack.unwrap()[1], "ip_rcv+0x131");

        // Without the hook netdrop cannot tell: null, not false.
        let unknown = e.record(&ev, Some(&stack), false, false);
        assert_eq!(unknown.netfilter.unwrap().conntrack, None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn backlog_drops_carry_the_cpu_and_queue_of_the_backlog() {
        let f = Format::parse(&testdata::read("tracefs/kfree_skb-6.18.format")).unwrap();
        let reasons = Reasons::from_symbolic(&f.symbolic_values()).unwrap();
        let mut e = Enricher::new(reasons.clone(), Path::new("/nonexistent"), Path::new("/"));
        let mut ev = udp_event();
        assert_eq!(e.record(&ev, None, false, false).backlog, None);
        ev.reason = reasons.lookup("CPU_BACKLOG").unwrap();
        ev.flags |= flag::HAS_BACKLOG;
        ev.backlog_cpu = 1;
        ev.backlog_qlen = 1001;
        let r = e.record(&ev, None, false, false);
        let b = r.backlog.expect("backlog");
        assert_eq!((b.cpu, b.queue), (1, 1001));
        // Host-wide, readable from this (initial) namespace.
        let max = std::fs::read_to_string("/proc/sys/net/core/netdev_max_backlog")
            .ok()
            .and_then(|s| s.trim().parse().ok());
        assert_eq!(b.max, max);
        ev.flags |= flag::HAS_BACKLOG_MAX;
        ev.backlog_max = 1000;
        let v = serde_json::to_value(e.record(&ev, None, false, false)).unwrap();
        assert_eq!(v["backlog"]["max"], 1000);
        assert_eq!(v["backlog"]["cpu"], 1);
        assert_eq!(v["backlog"]["queue"], 1001);
    }

    #[test]
    fn names() {
        assert_eq!(tcp_flags(0x14), vec!["RST", "ACK"]);
        assert_eq!(protocol_name(99), "99");
        assert_eq!(family_name(0x88cc).as_deref(), Some("0x88cc"));
        assert_eq!(c_str(b"eth0\0\0junk"), "eth0");
    }
}
