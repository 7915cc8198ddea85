//! Types shared by netdrop's eBPF programs and its user-space side.
//!
//! Everything here is `#[repr(C)]`, `Copy`, has explicit padding and no `bool`, so the
//! kernel and user space agree on every byte. Program, map and global names are constants
//! used by both sides.
#![no_std]

/// Names of the eBPF programs in the object file.
pub mod program {
    /// `tp_btf/kfree_skb` on 6.11+: `(skb, location, reason, rx_sk)`.
    pub const BTF_4ARG: &str = "drop_btf_4arg";
    /// `tp_btf/kfree_skb` on 5.17 to 6.10: `(skb, location, reason)`.
    pub const BTF_3ARG: &str = "drop_btf_3arg";
    /// `tp_btf/kfree_skb` up to 5.16: `(skb, location)`, no drop reason.
    pub const BTF_2ARG: &str = "drop_btf_2arg";
    /// Classic `skb:kfree_skb` tracepoint; field offsets come from its format file.
    pub const TRACEPOINT: &str = "drop_tp";
    /// kprobe on `nf_conntrack_in`: remembers the packet conntrack is looking at.
    pub const CONNTRACK_IN: &str = "ct_in";
    /// kretprobe on `nf_conntrack_in`: marks that packet when conntrack refused it.
    pub const CONNTRACK_IN_RET: &str = "ct_in_ret";
    /// kprobe on `tcp_conn_request`: a SYN dropped at a full accept or SYN queue.
    pub const TCP_CONN_REQUEST: &str = "tcp_syn";
    /// kprobe on `tcp_v4_syn_recv_sock` / `tcp_v6_syn_recv_sock`: a handshake ACK that finds
    /// the accept queue full.
    pub const TCP_SYN_RECV_SOCK: &str = "tcp_ack";
    /// kprobe on `__kfree_skb`, for kernels where `tcp_drop()` frees with it (before 5.17):
    /// only calls from the TCP receive functions in [`crate::TcpDropSites`] count.
    pub const TCP_DROP_PATH: &str = "tcp_drop_path";
    /// kprobe on `enqueue_to_backlog`: remembers which CPU's backlog each packet is queued
    /// to and how long that backlog was, for the drop event if the kernel refuses it.
    pub const BACKLOG_ENQUEUE: &str = "backlog_enqueue";
}

/// Kernel symbols of the netdev backlog hook.
pub mod backlog_symbols {
    /// `int enqueue_to_backlog(struct sk_buff *skb, int cpu, unsigned int *qtail)`: queues a
    /// received packet to a CPU's backlog (`netif_rx`, RPS), or drops it when that backlog
    /// holds more than `net.core.netdev_max_backlog` packets.
    pub const FUNCTION: &str = "enqueue_to_backlog";
    /// The per-CPU `struct softnet_data` (its address in the per-CPU area).
    pub const SOFTNET_DATA: &str = "softnet_data";
    /// `unsigned long __per_cpu_offset[NR_CPUS]`: where each CPU's per-CPU area starts.
    pub const PER_CPU_OFFSET: &str = "__per_cpu_offset";
    /// `int netdev_max_backlog` (`net.core.netdev_max_backlog`) up to 6.8.
    pub const MAX_BACKLOG: &str = "netdev_max_backlog";
    /// `struct net_hotdata net_hotdata`, whose `max_backlog` holds the limit from 6.9.
    pub const HOTDATA: &str = "net_hotdata";
}

/// Kernel functions of the TCP hooks.
pub mod tcp_functions {
    /// What `tcp_drop()` calls before 5.17 (it is inlined into its callers there).
    pub const KFREE: &str = "__kfree_skb";
    /// TCP receive functions whose `__kfree_skb` calls are drops (`tcp_drop()` inlined);
    /// `true` where the function also frees data-less segments that are no drop.
    pub const DROP_SITES: [(&str, bool); 5] = [
        ("tcp_validate_incoming", false),
        ("tcp_data_queue", true),
        ("tcp_data_queue_ofo", false),
        ("tcp_ofo_queue", false),
        ("tcp_prune_ofo_queue", false),
    ];
    /// Handles a SYN at a listener (all kernels netdrop supports).
    pub const CONN_REQUEST: &str = "tcp_conn_request";
    /// Create the child socket for a completed handshake, per family.
    pub const SYN_RECV_SOCK: [&str; 2] = ["tcp_v4_syn_recv_sock", "tcp_v6_syn_recv_sock"];
}

/// Drop reasons netdrop defines for drops the kernel frees without naming a reason (or
/// without `kfree_skb` at all). Their codes sit in a subsystem range no kernel uses, so they
/// never collide with the kernel's; every output marks them as netdrop's inference.
pub mod netdrop_reason {
    /// A SYN or handshake ACK dropped because the listener's accept queue was full.
    pub const LISTEN_OVERFLOW: u32 = 0xff00_0001;
    /// A SYN dropped because the listener's SYN queue was full and syncookies were off.
    pub const SYN_QUEUE_FULL: u32 = 0xff00_0002;
    /// Every netdrop reason, with its name.
    pub const ALL: [(u32, &str); 2] = [
        (LISTEN_OVERFLOW, "LISTEN_OVERFLOW"),
        (SYN_QUEUE_FULL, "SYN_QUEUE_FULL"),
    ];
    /// True for a code netdrop defined.
    pub const fn is_netdrop(code: u32) -> bool {
        code >> 16 == 0xff00
    }
}

/// Kernel function the conntrack hook attaches to.
pub const CONNTRACK_FUNCTION: &str = "nf_conntrack_in";

/// Names of the maps in the object file.
pub mod map {
    /// Ring buffer of [`crate::DropEvent`] records.
    pub const EVENTS: &str = "EVENTS";
    /// Per-CPU array of `u64` counters indexed by [`crate::stat`].
    pub const STATS: &str = "STATS";
    /// Per-CPU hash: reason code (`u32`) -> drops.
    pub const BY_REASON: &str = "BY_REASON";
    /// Per-CPU hashes: [`crate::LocationKey`] -> drops, one per [`GENERATION`].
    pub const BY_LOCATION: [&str; 2] = ["BY_LOCATION_0", "BY_LOCATION_1"];
    /// Per-CPU hashes: [`crate::DeviceKey`] -> drops, one per [`GENERATION`].
    pub const BY_DEVICE: [&str; 2] = ["BY_DEVICE_0", "BY_DEVICE_1"];
    /// Per-CPU hashes: [`crate::FlowKey`] -> drops, one per [`GENERATION`].
    pub const BY_FLOW: [&str; 2] = ["BY_FLOW_0", "BY_FLOW_1"];
    /// Array of one `u32`: which of the two attribution maps of each kind (location,
    /// device, flow) the kernel counts into. User space switches it and then drains the
    /// other map, so the kernel's tables never stay full: a flow that is busy now finds
    /// room whatever happened hours ago.
    pub const GENERATION: &str = "GENERATION";
    /// Kernel stack traces referenced by [`crate::DropEvent::stack_id`].
    pub const STACKS: &str = "STACKS";
    /// Hash: reason code (`u32`) -> 1, used by [`crate::Filter::reason_mode`].
    pub const REASON_FILTER: &str = "REASON_FILTER";
    /// Per-CPU: the `nf_conntrack_in` calls in progress.
    pub const CT_CALLS: &str = "CT_CALLS";
    /// Per-CPU: the last skb `nf_conntrack_in` returned NF_DROP for.
    pub const CT_DROPPED: &str = "CT_DROPPED";
    /// LRU per-CPU hash: [`crate::FlowKey`] -> [`crate::RateState`], the events of each
    /// flow and reason this second when [`crate::Config::rate_limit`] is set.
    pub const RATE: &str = "RATE";
    /// Per-CPU: the last skb `enqueue_to_backlog` was called for, with the target backlog.
    pub const BACKLOG_SEEN: &str = "BACKLOG_SEEN";
    /// Per-CPU array of [`crate::BudgetSet`], [`crate::BUDGET_ENTRIES`] of them: drops
    /// examined this second per reason and location when [`crate::Config::budget`] is set.
    pub const BUDGET: &str = "BUDGET";
}

/// Names of the read-only globals that user space sets at load time.
pub mod global {
    /// [`crate::TcpDropSites`].
    pub const TCP_DROP_SITES: &str = "TCP_DROP_SITES";
    /// [`crate::KernelOffsets`].
    pub const OFFSETS: &str = "OFFSETS";
    /// [`crate::TracepointLayout`].
    pub const TP_LAYOUT: &str = "TP_LAYOUT";
    /// [`crate::Filter`].
    pub const FILTER: &str = "FILTER";
    /// [`crate::Config`].
    pub const CONFIG: &str = "CONFIG";
    /// [`crate::BacklogSite`].
    pub const BACKLOG: &str = "BACKLOG";
}

/// Indices into the [`map::STATS`] per-CPU array.
pub mod stat {
    /// Every drop the hook saw, before filtering.
    pub const SEEN: u32 = 0;
    /// Drops that passed the filters.
    pub const MATCHED: u32 = 1;
    /// Events that could not be written because the ring buffer was full.
    pub const LOST: u32 = 2;
    /// Matched drops whose (reason, location) pair did not fit in [`super::map::BY_LOCATION`].
    pub const LOCATION_UNTRACKED: u32 = 3;
    /// Matched drops whose device key did not fit in [`super::map::BY_DEVICE`].
    pub const DEVICE_UNTRACKED: u32 = 4;
    /// Matched drops whose flow did not fit in [`super::map::BY_FLOW`].
    pub const FLOW_UNTRACKED: u32 = 5;
    /// Matched drops whose reason did not fit in [`super::map::BY_REASON`].
    pub const REASON_UNTRACKED: u32 = 6;
    /// Stack traces that could not be captured.
    pub const STACK_ERRORS: u32 = 7;
    /// Matched drops not written to the ring buffer because their flow and reason had
    /// reached [`crate::Config::rate_limit`] this second ("N more like this").
    pub const SUPPRESSED: u32 = 8;
    /// Matched drops past [`crate::Config::budget`]: counted per reason and location but
    /// not examined further (no event, headers not read when nothing needed them).
    pub const OVER_BUDGET: u32 = 9;
    /// Number of counters.
    pub const COUNT: u32 = 10;
}

/// Capacity of the per-reason map: far above the ~130 core reasons plus subsystem ones.
pub const MAX_REASONS: u32 = 4096;
/// Capacity of the (reason, location) map.
pub const MAX_LOCATIONS: u32 = 16384;
/// Capacity of the (reason, device, netns) map.
pub const MAX_DEVICES: u32 = 4096;
/// Default capacity of the flow map; overflow is counted in [`stat::FLOW_UNTRACKED`].
pub const MAX_FLOWS: u32 = 8192;
/// Capacity of the rate-limit map (flows and reasons tracked per second).
pub const MAX_RATE_KEYS: u32 = 16384;
/// Sets of the event budget map per hook kind (kfree_skb, TCP kprobes): (reason,
/// location) pairs are tracked per CPU in [`BUDGET_SETS`] x [`BUDGET_WAYS`] slots, a pair in
/// one of the ways of the set its hash names.
pub const BUDGET_SETS: u32 = 64;
/// Ways of a budget set: this many pairs that hash alike keep a budget each.
pub const BUDGET_WAYS: usize = 4;
/// Entries of [`map::BUDGET`]: a set per hook kind.
pub const BUDGET_ENTRIES: u32 = 2 * BUDGET_SETS;
/// Capacity of the reason filter map.
pub const MAX_REASON_FILTER: u32 = 1024;
/// Capacity of the stack trace map.
pub const MAX_STACKS: u32 = 16384;

/// Ethertypes and IP protocol numbers, as the kernel side parses them and user space names
/// and filters them.
pub mod proto {
    /// Length of an Ethernet header (no VLAN tag).
    pub const ETH_HLEN: u16 = 14;

    pub const ETH_P_IP: u16 = 0x0800;
    pub const ETH_P_ARP: u16 = 0x0806;
    pub const ETH_P_IPV6: u16 = 0x86dd;

    pub const IPPROTO_ICMP: u8 = 1;
    pub const IPPROTO_TCP: u8 = 6;
    pub const IPPROTO_UDP: u8 = 17;
    pub const IPPROTO_DCCP: u8 = 33;
    pub const IPPROTO_ICMPV6: u8 = 58;
    pub const IPPROTO_SCTP: u8 = 132;
    pub const IPPROTO_UDPLITE: u8 = 136;

    /// True for transport protocols whose header starts with 16-bit source and destination
    /// ports: TCP, UDP, UDP-Lite, SCTP, DCCP.
    pub const fn has_ports(l4_proto: u8) -> bool {
        matches!(
            l4_proto,
            IPPROTO_TCP | IPPROTO_UDP | IPPROTO_UDPLITE | IPPROTO_SCTP | IPPROTO_DCCP
        )
    }

    /// True for ICMP and ICMPv6, whose "ports" are type and code.
    pub const fn is_icmp(l4_proto: u8) -> bool {
        matches!(l4_proto, IPPROTO_ICMP | IPPROTO_ICMPV6)
    }
}

/// Marks an offset the running kernel does not have.
pub const OFFSET_NONE: u32 = u32::MAX;
/// `transport_header` / `network_header` / `mac_header` value when unset (`(u16)~0U`).
pub const HEADER_UNSET: u16 = u16::MAX;

/// Bits of [`DropEvent::flags`].
pub mod flag {
    /// The hook provides a drop reason (5.17+).
    pub const HAS_REASON: u32 = 1 << 0;
    /// `skb->dev` was set: `ifindex` and `ifname` are valid.
    pub const HAS_DEVICE: u32 = 1 << 1;
    /// `netns` is valid.
    pub const HAS_NETNS: u32 = 1 << 2;
    /// An IPv4 or IPv6 header was read: addresses are valid.
    pub const HAS_L3: u32 = 1 << 3;
    /// A TCP/UDP/ICMP header was read: ports or ICMP type/code are valid.
    pub const HAS_L4: u32 = 1 << 4;
    /// Non-first IP fragment: no transport header in this packet.
    pub const FRAGMENT: u32 = 1 << 5;
    /// The network namespace came from the socket, not the device.
    pub const NETNS_FROM_SOCKET: u32 = 1 << 6;
    /// A kernel stack was captured: `stack_id` is valid.
    pub const HAS_STACK: u32 = 1 << 7;
    /// A NETFILTER_DROP decided by conntrack (`nf_conntrack_in` returned NF_DROP for this
    /// packet), not by a rule. Only set when the conntrack hook is attached.
    pub const CONNTRACK: u32 = 1 << 8;
    /// A drop in `enqueue_to_backlog` (CPU_BACKLOG) seen by the backlog hook:
    /// `backlog_cpu` and `backlog_qlen` are valid.
    pub const HAS_BACKLOG: u32 = 1 << 9;
    /// `backlog_max` is valid: the kernel's `net.core.netdev_max_backlog` at the drop.
    pub const HAS_BACKLOG_MAX: u32 = 1 << 10;
}

/// Bits of [`Config::flags`].
pub mod config {
    /// Write a [`crate::DropEvent`] per matching drop to the ring buffer.
    pub const EVENTS: u32 = 1 << 0;
    /// Capture kernel stacks for events.
    pub const STACKS: u32 = 1 << 1;
    /// Count per reason.
    pub const BY_REASON: u32 = 1 << 2;
    /// Count per (reason, location).
    pub const BY_LOCATION: u32 = 1 << 3;
    /// Count per (reason, device, netns).
    pub const BY_DEVICE: u32 = 1 << 4;
    /// Count per flow.
    pub const BY_FLOW: u32 = 1 << 5;
    /// Parse packet headers: set when events, flows or a header filter need them.
    pub const HEADERS: u32 = 1 << 6;
    /// Read device and namespace: set when events, device or flow counts, or a device or
    /// namespace filter need them.
    pub const DEVICE: u32 = 1 << 7;
    /// The TCP listener hook may mark handshake ACKs that find the accept queue full: the
    /// kfree_skb pipeline looks for them (kprobes exist, and the kernel does not name these
    /// drops TCP_LISTEN_OVERFLOW itself).
    pub const TCP_ACK_MARKS: u32 = 1 << 8;
    /// The backlog hook (kprobe on `enqueue_to_backlog`) runs: events of drops freed in
    /// `enqueue_to_backlog` ([`crate::BacklogSite`]) carry the target CPU's backlog.
    pub const BACKLOG_MARKS: u32 = 1 << 10;
    /// Append the first [`crate::Config::snaplen`] bytes of the packet to each event: the
    /// record is a [`crate::CapturedDrop`] instead of a [`crate::DropEvent`]. Off, the
    /// verifier prunes the capture and records keep their size.
    pub const CAPTURE: u32 = 1 << 9;
    /// Apply [`crate::Config::budget`] before the device and the headers are read: set
    /// when no filter and no per-device or per-flow count needs them for every drop. Off,
    /// the budget applies after the filters and counts.
    pub const BUDGET_EARLY: u32 = 1 << 11;
}

/// Most packet bytes a [`CapturedDrop`] holds. 256 covers the largest headers netdrop can
/// meet before the payload (Ethernet 14 + IPv6 40 with an extension header or two + TCP
/// with full options 60) and the first hundred-odd payload bytes (a DNS question, an HTTP
/// request line); the record is reserved whole, so every captured drop costs
/// `size_of::<CapturedDrop>()` bytes of ring buffer whatever the snap length.
pub const CAPTURE_MAX: usize = 256;

/// Values of [`CapturedDrop::from`]: where the captured bytes start.
pub mod capture_from {
    /// Nothing was captured (no header offset was set, or the read failed).
    pub const NONE: u32 = 0;
    /// At the MAC header, which is an Ethernet header (the network header follows it 14
    /// bytes on, or is not set yet).
    pub const MAC: u32 = 1;
    /// At the network header: there is no MAC header, or it is not Ethernet.
    pub const NETWORK: u32 = 2;
}

/// Values of [`Filter::reason_mode`].
pub mod reason_mode {
    /// Every reason passes.
    pub const ALL: u32 = 0;
    /// Only reasons present in [`super::map::REASON_FILTER`] pass.
    pub const ONLY: u32 = 1;
    /// Reasons present in [`super::map::REASON_FILTER`] are dropped.
    pub const EXCEPT: u32 = 2;
}

/// One dropped packet, as written by the kernel side to [`map::EVENTS`].
///
/// Multi-byte packet fields (`sport`, `dport`, `l3_proto`) are in host byte order;
/// addresses are in network byte order, IPv4 in the first four bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropEvent {
    /// `bpf_ktime_get_ns()`: CLOCK_MONOTONIC nanoseconds.
    pub timestamp_ns: u64,
    /// Kernel address that freed the packet.
    pub location: u64,
    /// Raw `enum skb_drop_reason` value (subsystem in the high 16 bits).
    pub reason: u32,
    /// CPU the drop happened on.
    pub cpu: u32,
    /// Thread group id of the task running at the time (often unrelated for received packets).
    pub pid: u32,
    /// Thread id of that task.
    pub tid: u32,
    /// Network namespace inode number.
    pub netns: u32,
    /// `skb->dev->ifindex`.
    pub ifindex: u32,
    /// `skb->len`.
    pub skb_len: u32,
    /// Id in [`map::STACKS`], valid with [`flag::HAS_STACK`].
    pub stack_id: i32,
    /// [`flag`] bits.
    pub flags: u32,
    /// `skb->protocol` as an ethertype (host order), or 0.
    pub l3_proto: u16,
    /// IP protocol number of the transport header.
    pub l4_proto: u8,
    /// TCP flags byte.
    pub tcp_flags: u8,
    /// Source port (TCP/UDP).
    pub sport: u16,
    /// Destination port (TCP/UDP).
    pub dport: u16,
    /// ICMP / ICMPv6 type.
    pub icmp_type: u8,
    /// ICMP / ICMPv6 code.
    pub icmp_code: u8,
    /// Explicit padding.
    pub _pad: [u8; 2],
    /// Source address.
    pub saddr: [u8; 16],
    /// Destination address.
    pub daddr: [u8; 16],
    /// `comm` of the running task.
    pub comm: [u8; 16],
    /// `skb->dev->name`.
    pub ifname: [u8; 16],
    /// With [`flag::HAS_BACKLOG`]: the CPU whose backlog (`softnet_data.input_pkt_queue`)
    /// the packet was queued to (RPS may pick another CPU than `cpu`).
    pub backlog_cpu: u32,
    /// With [`flag::HAS_BACKLOG`]: that backlog's length when the packet arrived.
    pub backlog_qlen: u32,
    /// With [`flag::HAS_BACKLOG_MAX`]: `net.core.netdev_max_backlog` when it was dropped.
    pub backlog_max: u32,
    /// Explicit padding.
    pub _pad2: u32,
}
const _: () = assert!(core::mem::size_of::<DropEvent>() == 144);

/// A dropped packet with its first bytes, written instead of a [`DropEvent`] when
/// [`config::CAPTURE`] is set. User space tells the two apart by the record's length.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CapturedDrop {
    pub event: DropEvent,
    /// Bytes of `data` that hold packet bytes: at most the snap length, and no more than
    /// the packet's linear data holds from where the capture starts.
    pub len: u32,
    /// A [`capture_from`] value.
    pub from: u32,
    /// The packet from `from`; bytes past `len` are whatever the ring held before.
    pub data: [u8; CAPTURE_MAX],
}
const _: () = assert!(
    core::mem::size_of::<CapturedDrop>() == core::mem::size_of::<DropEvent>() + 8 + CAPTURE_MAX
);

/// Kernel struct member offsets, read from BTF by user space.
///
/// Every field is a byte offset, or [`OFFSET_NONE`] when this kernel does not have it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelOffsets {
    /// `sk_buff.dev`.
    pub skb_dev: u32,
    /// `sk_buff.sk`.
    pub skb_sk: u32,
    /// `sk_buff.len`.
    pub skb_len: u32,
    /// `sk_buff.head`.
    pub skb_head: u32,
    /// `sk_buff.tail` (an offset from `head` on 64-bit kernels).
    pub skb_tail: u32,
    /// `sk_buff.protocol`.
    pub skb_protocol: u32,
    /// `sk_buff.network_header`.
    pub skb_network_header: u32,
    /// `sk_buff.mac_header`.
    pub skb_mac_header: u32,
    /// `net_device.name`.
    pub dev_name: u32,
    /// `net_device.ifindex`.
    pub dev_ifindex: u32,
    /// `net_device.nd_net.net` (absent without CONFIG_NET_NS).
    pub dev_net: u32,
    /// `sock.__sk_common.skc_net.net`.
    pub sk_net: u32,
    /// `net.ns.inum`.
    pub net_inum: u32,
    /// `sock.sk_ack_backlog`: connections waiting in a listener's accept queue.
    pub sk_ack_backlog: u32,
    /// `sock.sk_max_ack_backlog`: the accept queue's limit.
    pub sk_max_ack_backlog: u32,
    /// `inet_connection_sock.icsk_accept_queue.qlen`: half-open requests (the SYN queue).
    pub icsk_syn_qlen: u32,
    /// `net.ipv4.sysctl_tcp_syncookies`.
    pub net_syncookies: u32,
    /// Size of `sysctl_tcp_syncookies`: 4 (`int`, up to 5.x) or 1 (`u8`).
    pub net_syncookies_size: u32,
    /// `sk_buff.cb`: the protocol's control block (`struct tcp_skb_cb` for TCP).
    pub skb_cb: u32,
    /// Explicit padding.
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<KernelOffsets>() == 80);

impl KernelOffsets {
    /// Offsets that make the programs read nothing but the hook arguments.
    pub const NONE: Self = Self {
        skb_dev: OFFSET_NONE,
        skb_sk: OFFSET_NONE,
        skb_len: OFFSET_NONE,
        skb_head: OFFSET_NONE,
        skb_tail: OFFSET_NONE,
        skb_protocol: OFFSET_NONE,
        skb_network_header: OFFSET_NONE,
        skb_mac_header: OFFSET_NONE,
        dev_name: OFFSET_NONE,
        dev_ifindex: OFFSET_NONE,
        dev_net: OFFSET_NONE,
        sk_net: OFFSET_NONE,
        net_inum: OFFSET_NONE,
        sk_ack_backlog: OFFSET_NONE,
        sk_max_ack_backlog: OFFSET_NONE,
        icsk_syn_qlen: OFFSET_NONE,
        net_syncookies: OFFSET_NONE,
        net_syncookies_size: 0,
        skb_cb: OFFSET_NONE,
        _pad: 0,
    };
}

/// A range of kernel code: a function, from its kallsyms address to the next symbol.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CodeRange {
    pub start: u64,
    pub end: u64,
    /// [`code_range`] bits.
    pub flags: u64,
}
const _: () = assert!(core::mem::size_of::<CodeRange>() == 24);

/// Bits of [`CodeRange::flags`].
pub mod code_range {
    /// The function also frees data-less segments with `__kfree_skb` (no drop): skip those.
    pub const SKIP_DATALESS: u64 = 1;
}

/// Where `tcp_drop()` was inlined on this kernel (before 5.17): calls of `__kfree_skb`
/// from these functions are drops. Filled from kallsyms by user space.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpDropSites {
    pub ranges: [CodeRange; 8],
    /// Ranges in use.
    pub count: u32,
    /// Explicit padding.
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<TcpDropSites>() == 200);

impl TcpDropSites {
    /// No sites: the probe, if loaded, reports nothing.
    pub const NONE: Self = Self {
        ranges: [CodeRange {
            start: 0,
            end: 0,
            flags: 0,
        }; 8],
        count: 0,
        _pad: 0,
    };
}

/// Where the netdev backlog of each CPU is, and where the kernel frees the packets it
/// refuses: from kallsyms and BTF, filled in by user space when the backlog hook runs.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BacklogSite {
    /// Address of `__per_cpu_offset`.
    pub per_cpu_offset: u64,
    /// kallsyms address of the per-CPU `softnet_data`; a CPU's copy is at this plus
    /// `__per_cpu_offset[cpu]`.
    pub softnet_data: u64,
    /// The code of `enqueue_to_backlog`, `[start, end)`: a kfree_skb there is its drop.
    pub start: u64,
    /// End of `enqueue_to_backlog`'s code (exclusive).
    pub end: u64,
    /// `softnet_data.input_pkt_queue.qlen`, or [`OFFSET_NONE`].
    pub qlen_offset: u32,
    /// Possible CPUs: the hook ignores a target CPU at or above it.
    pub nr_cpus: u32,
    /// Address of the `int` behind `net.core.netdev_max_backlog` (`netdev_max_backlog`,
    /// or `net_hotdata.max_backlog` from 6.9), or 0 when unknown.
    pub max_backlog: u64,
}
const _: () = assert!(core::mem::size_of::<BacklogSite>() == 48);

impl BacklogSite {
    /// Nothing known: the hook, if loaded, records nothing.
    pub const NONE: Self = Self {
        per_cpu_offset: 0,
        softnet_data: 0,
        start: 0,
        end: 0,
        qlen_offset: OFFSET_NONE,
        nr_cpus: 0,
        max_backlog: 0,
    };
}

/// Field offsets of the classic `skb:kfree_skb` tracepoint record, from its format file.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TracepointLayout {
    /// `skbaddr`.
    pub skbaddr: u32,
    /// `location`.
    pub location: u32,
    /// `reason` (5.17+), or [`OFFSET_NONE`].
    pub reason: u32,
    /// `rx_sk` (6.11+), or [`OFFSET_NONE`].
    pub rx_sk: u32,
}
const _: () = assert!(core::mem::size_of::<TracepointLayout>() == 16);

impl TracepointLayout {
    /// Placeholder used when the classic tracepoint is not the active hook.
    pub const NONE: Self = Self {
        skbaddr: OFFSET_NONE,
        location: OFFSET_NONE,
        reason: OFFSET_NONE,
        rx_sk: OFFSET_NONE,
    };
}

/// An address prefix to match, with a precomputed mask.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AddrMatch {
    /// Network address (masked), IPv4 in the first four bytes.
    pub addr: [u8; 16],
    /// Prefix mask.
    pub mask: [u8; 16],
    /// 0 = no filter, 4 = IPv4, 6 = IPv6.
    pub family: u8,
    /// Explicit padding.
    pub _pad: [u8; 7],
}
const _: () = assert!(core::mem::size_of::<AddrMatch>() == 40);

/// Filters evaluated in the kernel, before any event is written or counted.
///
/// 8-byte aligned so the kernel side can compare addresses a word at a time.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// A [`reason_mode`] value.
    pub reason_mode: u32,
    /// Network namespace inode, or 0 for any.
    pub netns: u32,
    /// Either port (TCP/UDP), valid when `has_port` is 1.
    pub port: u16,
    /// 1 when `port` is set.
    pub has_port: u8,
    /// IP protocol number to match, or 0 for any.
    pub l4_proto: u8,
    /// Ethertype to match (host order), or 0 for any.
    pub l3_proto: u16,
    /// 1 when `iface` is set.
    pub has_iface: u8,
    /// Explicit padding.
    pub _pad: u8,
    /// Device name to match, NUL-padded.
    pub iface: [u8; 16],
    /// Source or destination address.
    pub host: AddrMatch,
    /// Source address.
    pub src: AddrMatch,
    /// Destination address.
    pub dst: AddrMatch,
}
const _: () = assert!(core::mem::size_of::<Filter>() == 152);

impl Filter {
    /// True when the filter needs packet headers to decide.
    pub const fn needs_headers(&self) -> bool {
        self.has_port != 0
            || self.l3_proto != 0
            || self.l4_proto != 0
            || self.host.family != 0
            || self.src.family != 0
            || self.dst.family != 0
    }
}

/// Run-time switches for the programs.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// [`config`] bits.
    pub flags: u32,
    /// This kernel's value of `SKB_DROP_REASON_NETFILTER_DROP`, or [`OFFSET_NONE`]:
    /// events with it always carry a stack, from which user space names the netfilter hook.
    pub netfilter_reason: u32,
    /// Wake the reader only once this many bytes of events wait in the ring buffer; it
    /// also drains on a short timer. One wakeup per event would cost the dropping CPU more
    /// than writing the event.
    pub wakeup_bytes: u32,
    /// This kernel's value of `SKB_DROP_REASON_NOT_SPECIFIED`, or [`OFFSET_NONE`]: a
    /// handshake ACK the TCP listener hook saw find a full accept queue is freed with it (or
    /// with no reason before 5.17) and is reported as `LISTEN_OVERFLOW` instead.
    pub not_specified_reason: u32,
    /// On kernels without drop reasons: the code of `nf_hook_slow`, `[start, end)` (0, 0
    /// when unknown). Drops freed there are netfilter's and carry a stack, as
    /// `netfilter_reason` does where reasons exist.
    pub netfilter_start: u64,
    /// End of `nf_hook_slow`'s code (exclusive).
    pub netfilter_end: u64,
    /// With [`config::CAPTURE`]: packet bytes to capture, at most [`CAPTURE_MAX`].
    pub snaplen: u32,
    /// Events written per flow and reason per second on each CPU, or 0 for no limit. The
    /// drops beyond are counted ([`stat::SUPPRESSED`], and per key in [`map::RATE`]), and
    /// reported in a [`SuppressedRecord`] before the key's next event.
    pub rate_limit: u32,
    /// Drops examined in full per (reason, location) per second on each CPU, or 0 for no
    /// budget: headers read, filters, flow rate limit, event. The drops beyond are counted
    /// per reason and location ([`stat::OVER_BUDGET`], and per slot in [`map::BUDGET`])
    /// and reported in a [`BudgetRecord`]. Under a flood, streaming then costs the dropping
    /// CPU about what counting does.
    pub budget: u32,
    /// Explicit padding.
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<Config>() == 48);

/// Key of [`map::BY_LOCATION`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LocationKey {
    /// Drop reason.
    pub reason: u32,
    /// Explicit padding.
    pub _pad: u32,
    /// Kernel address that freed the packet.
    pub location: u64,
}
const _: () = assert!(core::mem::size_of::<LocationKey>() == 16);

/// Key of [`map::BY_DEVICE`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceKey {
    /// Drop reason.
    pub reason: u32,
    /// Network namespace inode (0 when unknown).
    pub netns: u32,
    /// Interface index (0 when the packet had no device).
    pub ifindex: u32,
    /// Explicit padding.
    pub _pad: u32,
    /// Interface name.
    pub ifname: [u8; 16],
}
const _: () = assert!(core::mem::size_of::<DeviceKey>() == 32);

/// Key of [`map::BY_FLOW`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    /// Drop reason.
    pub reason: u32,
    /// Network namespace inode.
    pub netns: u32,
    /// Ethertype (host order).
    pub l3_proto: u16,
    /// IP protocol number.
    pub l4_proto: u8,
    /// Explicit padding.
    pub _pad: u8,
    /// Source port, or ICMP type.
    pub sport: u16,
    /// Destination port, or ICMP code.
    pub dport: u16,
    /// Source address.
    pub saddr: [u8; 16],
    /// Destination address.
    pub daddr: [u8; 16],
}
const _: () = assert!(core::mem::size_of::<FlowKey>() == 48);

/// Value of [`map::RATE`]: one flow and reason on one CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateState {
    /// The second (`bpf_ktime_get_ns() / 1e9`) `written` counts in.
    pub window: u64,
    /// Events written in `window`.
    pub written: u32,
    /// Explicit padding.
    pub _pad: u32,
    /// Drops suppressed so far, ever.
    pub suppressed: u64,
    /// Of `suppressed`, those already reported in a [`SuppressedRecord`].
    pub reported: u64,
}
const _: () = assert!(core::mem::size_of::<RateState>() == 32);

/// A ring buffer record saying how many drops of one flow and reason were suppressed by
/// [`Config::rate_limit`] since the last report; written just before the key's next event.
/// Told apart from a [`DropEvent`] by its size.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SuppressedRecord {
    /// The flow and reason, as the per-flow counts key them.
    pub key: FlowKey,
    /// Drops suppressed since the last report for this key on this CPU.
    pub count: u64,
    /// `bpf_ktime_get_ns()` when the record was written.
    pub timestamp_ns: u64,
}
const _: () = assert!(core::mem::size_of::<SuppressedRecord>() == 64);

/// One (reason, location) pair's budget on one CPU; `location` 0: the slot is free.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BudgetState {
    /// The pair this slot tracks.
    pub reason: u32,
    /// Drops of it examined in `window`.
    pub examined: u32,
    /// Kernel address that freed the packets.
    pub location: u64,
    /// The second (`bpf_ktime_get_ns() / 1e9`) `examined` counts in.
    pub window: u64,
    /// `jiffies` when `window` was last checked: the clock is read once per tick.
    pub tick: u64,
    /// Drops over budget so far, ever.
    pub skipped: u64,
    /// Of `skipped`, those already reported in a [`BudgetRecord`].
    pub reported: u64,
}
const _: () = assert!(core::mem::size_of::<BudgetState>() == 48);

/// Value of [`map::BUDGET`]: the pairs whose hash names this set.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BudgetSet {
    pub ways: [BudgetState; BUDGET_WAYS],
}

impl BudgetSet {
    /// The set of `(reason, location)`, below [`BUDGET_SETS`].
    #[inline(always)]
    pub fn of(reason: u32, location: u64) -> u32 {
        let folded =
            (location as u32) ^ ((location >> 32) as u32) ^ reason.wrapping_mul(0x9e37_79b1);
        folded.wrapping_mul(0x9e37_79b1) >> 26
    }
}

/// A ring buffer record saying how many drops of one reason at one location went past
/// [`Config::budget`] on one CPU since the last report: counted, not examined. Written
/// before the pair's next examined drop; told apart by its size.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BudgetRecord {
    pub reason: u32,
    /// The CPU whose budget it was.
    pub cpu: u32,
    pub location: u64,
    /// Drops over budget since the last report for this pair on this CPU.
    pub count: u64,
    /// `bpf_ktime_get_ns()` when the record was written.
    pub timestamp_ns: u64,
}
const _: () = assert!(core::mem::size_of::<BudgetRecord>() == 32);

#[cfg(feature = "user")]
mod pod {
    use super::*;

    // SAFETY: all these types are `#[repr(C)]`, `Copy`, made only of integers and byte
    // arrays, with every padding byte spelled out as a field.
    unsafe impl aya::Pod for DropEvent {}
    unsafe impl aya::Pod for CapturedDrop {}
    unsafe impl aya::Pod for KernelOffsets {}
    unsafe impl aya::Pod for TracepointLayout {}
    unsafe impl aya::Pod for TcpDropSites {}
    unsafe impl aya::Pod for BacklogSite {}
    unsafe impl aya::Pod for AddrMatch {}
    unsafe impl aya::Pod for Filter {}
    unsafe impl aya::Pod for Config {}
    unsafe impl aya::Pod for LocationKey {}
    unsafe impl aya::Pod for DeviceKey {}
    unsafe impl aya::Pod for FlowKey {}
    unsafe impl aya::Pod for RateState {}
    unsafe impl aya::Pod for SuppressedRecord {}
    unsafe impl aya::Pod for BudgetState {}
    unsafe impl aya::Pod for BudgetSet {}
    unsafe impl aya::Pod for BudgetRecord {}
}
