//! The drop classes `diagnose` explains: what shows each one (drop reasons, kernel
//! counters), the settings that govern it, and what to do. One data table; the rules in
//! `rules.rs` add the objects (ports, listeners, devices, CPUs, rules, routes) per class.
//!
//! Facts from the field guides in `shared/knowledge/` (index: its README), in our words.

use serde::Serialize;

/// How bad a class is when present.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing; often expected (a port scan hitting closed ports).
    Info,
    /// Traffic is lost; users may notice.
    Warning,
    /// Connections or services fail.
    Critical,
}

/// One drop class.
#[derive(Debug)]
pub struct Class {
    /// Stable id, as in the knowledge index (`listen_queue`, `conntrack_full`, ...).
    pub id: &'static str,
    /// One line: what is wrong.
    pub title: &'static str,
    pub severity: Severity,
    /// Drop reasons that show it (`_*` suffix: a prefix).
    pub reasons: &'static [&'static str],
    /// Kernel counters whose growth shows it (`dev.*.x`: every device).
    pub counters: &'static [&'static str],
    /// Settings to read and show.
    pub knobs: &'static [&'static str],
    /// What to do, most likely first.
    pub fix: &'static [&'static str],
    /// What to keep in mind when applying the fix.
    pub caveats: &'static [&'static str],
}

/// Every class, in the order of the knowledge index.
pub const CLASSES: &[Class] = &[
    Class {
        id: "nic_ring",
        title: "the NIC's receive ring overflowed: packets were lost before the kernel saw them",
        severity: Severity::Critical,
        reasons: &[],
        counters: &["dev.*.rx_fifo"],
        knobs: &[],
        fix: &[
            "enlarge the receive ring (`ethtool -g DEV` shows the maximum, `ethtool -G DEV rx N` sets it)",
            "spread interrupts over more CPUs (RSS queues, irqbalance or /proc/irq/*/smp_affinity)",
        ],
        caveats: &["a larger ring adds latency under load and uses more memory per queue"],
    },
    Class {
        id: "netdev_backlog",
        title: "a CPU's input backlog was full: received packets were dropped before protocol processing",
        severity: Severity::Critical,
        reasons: &["CPU_BACKLOG"],
        counters: &["softnet.dropped"],
        knobs: &["net.core.netdev_max_backlog", "net.core.netdev_budget"],
        fix: &[
            "raise net.core.netdev_max_backlog (e.g. double it: sysctl -w net.core.netdev_max_backlog=N)",
            "if one CPU takes all the drops, spread receive work: RSS queues, or RPS (/sys/class/net/DEV/queues/rx-*/rps_cpus)",
        ],
        caveats: &[
            "a longer backlog hides a CPU that is simply too slow: check time_squeeze and softirq load",
        ],
    },
    Class {
        id: "other_host",
        title: "packets addressed to another host's MAC arrived here",
        severity: Severity::Info,
        reasons: &["OTHERHOST"],
        counters: &[],
        knobs: &[],
        fix: &[
            "check the sender's neighbour (ARP) entry for this address: it may be stale after an address moved",
        ],
        caveats: &[],
    },
    Class {
        id: "neighbour",
        title: "packets waited for a neighbour (ARP/NDP) that did not answer, or the neighbour table was full",
        severity: Severity::Warning,
        reasons: &[
            "NEIGH_FAILED",
            "NEIGH_QUEUEFULL",
            "NEIGH_CREATEFAIL",
            "NEIGH_DEAD",
        ],
        counters: &["arp_cache.table_fulls", "arp_cache.unresolved_discards"],
        knobs: &[
            "net.ipv4.neigh.default.gc_thresh1",
            "net.ipv4.neigh.default.gc_thresh2",
            "net.ipv4.neigh.default.gc_thresh3",
            "net.ipv4.neigh.default.unres_qlen_bytes",
        ],
        fix: &[
            "table full (table_fulls grows, NEIGH_CREATEFAIL): raise net.ipv4.neigh.default.gc_thresh3 (and gc_thresh2) above the number of neighbours this host talks to",
            "no answer (NEIGH_FAILED, NEIGH_QUEUEFULL): the next hop or destination is down or not on this link; check `ip neigh` and the route",
        ],
        caveats: &["gc_thresh values are per host (the init namespace's apply to all)"],
    },
    Class {
        id: "rp_filter",
        title: "the reverse-path filter dropped packets whose source would not be routed back out the interface they came in",
        severity: Severity::Warning,
        reasons: &["IP_RPFILTER"],
        counters: &["TcpExt.IPReversePathFilter"],
        knobs: &[
            "net.ipv4.conf.all.rp_filter",
            "net.ipv4.conf.default.rp_filter",
        ],
        fix: &[
            "if the routing is asymmetric on purpose (multihoming, policy routing), use loose mode: sysctl -w net.ipv4.conf.DEV.rp_filter=2 (the effective value is the larger of conf.all and conf.DEV)",
            "otherwise add the route back to the source through this interface",
        ],
        caveats: &["strict mode (1) is an anti-spoofing measure; loose mode (2) keeps most of it"],
    },
    Class {
        id: "no_route",
        title: "no route to the destination, or an address the host does not accept",
        severity: Severity::Warning,
        reasons: &[
            "IP_INNOROUTES",
            "IP_OUTNOROUTES",
            "IP_INADDRERRORS",
            "IP_INVALID_SOURCE",
            "IP_LOCAL_SOURCE",
            "IP_INVALID_DEST",
            "IPV6_BAD_EXTHDR",
        ],
        counters: &[
            "Ip.OutNoRoutes",
            "Ip.InAddrErrors",
            "Ip6.InNoRoutes",
            "Ip6.OutNoRoutes",
        ],
        knobs: &["net.ipv4.ip_forward"],
        fix: &[
            "add the missing route (`ip route get DST` shows what the kernel decides), or check `ip rule` for policy routing",
            "for forwarded traffic, check net.ipv4.ip_forward and the routes of the namespace that forwards",
        ],
        caveats: &[],
    },
    Class {
        id: "firewall_rule",
        title: "a firewall rule dropped packets",
        severity: Severity::Warning,
        reasons: &["NETFILTER_DROP"],
        counters: &[],
        knobs: &[],
        fix: &[
            "if the traffic is legitimate, change or remove the rule listed under `where` (`nft -a list ruleset` shows handles)",
        ],
        caveats: &[
            "iptables rules appear as nftables tables (iptables-nft); edit them with the tool that created them",
        ],
    },
    Class {
        id: "conntrack_full",
        title: "the connection-tracking table was full: new flows were dropped",
        severity: Severity::Critical,
        reasons: &[],
        counters: &[
            "nf_conntrack.drop",
            "nf_conntrack.early_drop",
            "nf_conntrack.insert_failed",
        ],
        knobs: &[
            "net.netfilter.nf_conntrack_count",
            "net.netfilter.nf_conntrack_max",
            "net.netfilter.nf_conntrack_buckets",
            "net.netfilter.nf_conntrack_tcp_timeout_established",
        ],
        fix: &[
            "raise net.netfilter.nf_conntrack_max (and the hash size, /sys/module/nf_conntrack/parameters/hashsize, to about max/4 or max/8)",
            "shorten timeouts that keep idle entries (net.netfilter.nf_conntrack_tcp_timeout_established defaults to 5 days)",
            "exempt high-volume stateless traffic from tracking (`notrack` in a raw/prerouting chain)",
        ],
        caveats: &[
            "each entry costs about 350 bytes and each bucket 16: memory = max x 350 B + buckets x 16 B",
        ],
    },
    Class {
        id: "conntrack_invalid",
        title: "conntrack judged packets invalid (out of window, unexpected state)",
        severity: Severity::Warning,
        reasons: &[],
        counters: &["nf_conntrack.invalid"],
        knobs: &["net.netfilter.nf_conntrack_tcp_be_liberal"],
        fix: &[
            "if a rule drops ct state invalid, check for asymmetric paths or offloads; net.netfilter.nf_conntrack_tcp_be_liberal=1 relaxes the window check",
        ],
        caveats: &[
            "invalid packets are only dropped when a rule says so; the counter alone is not a drop",
        ],
    },
    Class {
        id: "fragments",
        title: "IP fragments could not be reassembled (timeout, memory limit, too far apart)",
        severity: Severity::Warning,
        reasons: &["FRAG_*", "IP_FRAG*", "IPV6_FRAG*", "DUP_FRAG"],
        counters: &[
            "Ip.ReasmFails",
            "Ip.ReasmTimeout",
            "Ip6.ReasmFails",
            "Ip6.ReasmTimeout",
        ],
        knobs: &[
            "net.ipv4.ipfrag_high_thresh",
            "net.ipv4.ipfrag_low_thresh",
            "net.ipv4.ipfrag_time",
            "net.ipv4.ipfrag_max_dist",
        ],
        fix: &[
            "raise net.ipv4.ipfrag_high_thresh (memory for fragments being reassembled; default 4 MiB)",
            "better: avoid fragmentation (path MTU discovery, a smaller MTU or MSS at the sender)",
        ],
        caveats: &[
            "fragments are a classic attack vector: raise the memory limits, not ipfrag_time",
        ],
    },
    Class {
        id: "mtu",
        title: "packets were larger than the path's MTU",
        severity: Severity::Warning,
        reasons: &["PKT_TOO_BIG"],
        counters: &["Ip.FragFails"],
        knobs: &["net.ipv4.tcp_mtu_probing", "net.ipv4.ip_no_pmtu_disc"],
        fix: &[
            "make the MTUs along the path agree (`ip link` on both ends, tunnels subtract their headers)",
            "let ICMP 'fragmentation needed' through firewalls, or set net.ipv4.tcp_mtu_probing=1",
        ],
        caveats: &[],
    },
    Class {
        id: "listen_queue",
        title: "a listening socket's accept queue was full: connection attempts were dropped",
        severity: Severity::Critical,
        reasons: &["TCP_LISTEN_OVERFLOW"],
        // Not ListenDrops: it also counts SYN queue drops (syn_flood), so it alone does not
        // mean the accept queue.
        counters: &["TcpExt.ListenOverflows"],
        knobs: &[
            "net.core.somaxconn",
            "net.ipv4.tcp_max_syn_backlog",
            "net.ipv4.tcp_abort_on_overflow",
            "net.ipv4.tcp_syncookies",
        ],
        fix: &[
            "the application accepts too slowly: add workers or accept in a loop",
            "raise the queue: the listen() backlog in the application and net.core.somaxconn (the limit is the smaller of the two)",
        ],
        caveats: &[
            "net.ipv4.tcp_abort_on_overflow=1 makes clients see a reset instead of retrying: only for fail-fast services",
            "a longer queue only helps bursts: if accept is always slower than arrivals, it fills again",
        ],
    },
    Class {
        id: "syn_flood",
        title: "the SYN queue was full: half-open connections filled it (a SYN flood, or a slow handshake)",
        severity: Severity::Critical,
        reasons: &[],
        counters: &[
            "TcpExt.TCPReqQFullDrop",
            "TcpExt.TCPReqQFullDoCookies",
            "TcpExt.SyncookiesSent",
        ],
        knobs: &[
            "net.ipv4.tcp_syncookies",
            "net.ipv4.tcp_max_syn_backlog",
            "net.core.somaxconn",
            "net.ipv4.tcp_synack_retries",
        ],
        fix: &[
            "SYNs dropped (TCPReqQFullDrop): turn on syncookies (net.ipv4.tcp_syncookies=1), which answer without queueing",
            "raise the SYN queue: the listen() backlog, net.core.somaxconn and net.ipv4.tcp_max_syn_backlog",
            "lower net.ipv4.tcp_synack_retries so half-open entries leave the queue sooner",
        ],
        caveats: &[
            "syncookies lose TCP options (window scaling without timestamps) on cookie connections: fine under attack, noticeable as a permanent state",
        ],
    },
    Class {
        id: "paws",
        title: "TCP timestamps went backwards (PAWS): segments or SYNs were rejected, typically hosts behind one NAT",
        severity: Severity::Warning,
        reasons: &["TCP_RFC7323_PAWS*"],
        counters: &[
            "TcpExt.PAWSPassive",
            "TcpExt.PAWSActive",
            "TcpExt.PAWSEstab",
        ],
        knobs: &["net.ipv4.tcp_timestamps", "net.ipv4.tcp_tw_reuse"],
        fix: &[
            "find the NAT or load balancer that mixes clients with unrelated timestamp clocks",
            "tcp_tw_recycle, the usual culprit on old kernels, is gone since Linux 4.12: make sure no tuning script still sets it",
        ],
        caveats: &["turning tcp_timestamps off also loses RTT measurement and PAWS protection"],
    },
    Class {
        id: "timewait_overflow",
        title: "the TIME_WAIT table was full: closing connections skipped TIME_WAIT",
        severity: Severity::Warning,
        reasons: &[],
        counters: &["TcpExt.TCPTimeWaitOverflow"],
        knobs: &[
            "net.ipv4.tcp_max_tw_buckets",
            "net.ipv4.tcp_tw_reuse",
            "net.ipv4.ip_local_port_range",
        ],
        fix: &[
            "raise net.ipv4.tcp_max_tw_buckets, or reuse connections (keep-alive, pooling) so fewer close",
            "for outgoing connections, net.ipv4.tcp_tw_reuse=1 lets new connections reuse TIME_WAIT ports safely (with timestamps)",
        ],
        caveats: &["tcp_tw_recycle was removed in Linux 4.12: it broke clients behind NAT"],
    },
    Class {
        id: "tcp_memory",
        title: "TCP ran short of memory or a socket's backlog was full",
        severity: Severity::Critical,
        reasons: &["PROTO_MEM", "SOCKET_BACKLOG", "TCP_OFOMERGE"],
        counters: &[
            "TcpExt.TCPAbortOnMemory",
            "TcpExt.TCPBacklogDrop",
            "TcpExt.PruneCalled",
            "TcpExt.TCPRcvQDrop",
            "TcpExt.TCPMemoryPressures",
        ],
        knobs: &["net.ipv4.tcp_mem", "net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"],
        fix: &[
            "raise net.ipv4.tcp_mem (pages, host-wide) if the machine has memory to spare; check /proc/net/sockstat for TCP memory in use",
            "a busy socket's backlog fills when its owner holds the lock too long: read faster, or use more sockets (SO_REUSEPORT)",
        ],
        caveats: &[],
    },
    Class {
        id: "tcp_sequence",
        title: "TCP segments outside the window, duplicated, or otherwise invalid for the connection",
        severity: Severity::Info,
        reasons: &[
            "TCP_OLD_DATA",
            "TCP_OVERWINDOW",
            "TCP_ZEROWINDOW",
            "TCP_INVALID_SEQUENCE",
            "TCP_INVALID_ACK_SEQUENCE",
            "TCP_RESET",
            "TCP_INVALID_SYN",
            "TCP_CLOSE",
            "TCP_FASTOPEN",
            "TCP_OLD_ACK",
            "TCP_TOO_OLD_ACK",
            "TCP_ACK_UNSENT_DATA",
            "TCP_OFO_QUEUE_PRUNE",
            "TCP_OFO_DROP",
            "TCP_FLAGS",
            "TCP_ABORT_ON_DATA",
            "TCP_OLD_SEQUENCE",
        ],
        counters: &["TcpExt.TCPZeroWindowDrop", "TcpExt.TCPOFODrop"],
        knobs: &[],
        fix: &[
            "usually the peer's doing (retransmissions, resets after close): look at the flows below; many from one peer point at that peer or a middlebox",
        ],
        caveats: &[],
    },
    Class {
        id: "udp_rcvbuf",
        title: "UDP sockets' receive buffers were full: datagrams were dropped",
        severity: Severity::Critical,
        reasons: &["SOCKET_RCVBUFF"],
        counters: &["Udp.RcvbufErrors", "Udp6.RcvbufErrors", "Udp.MemErrors"],
        knobs: &[
            "net.core.rmem_default",
            "net.core.rmem_max",
            "net.ipv4.udp_mem",
        ],
        fix: &[
            "the application reads too slowly: more reader threads, or SO_REUSEPORT sockets",
            "raise the socket's buffer: SO_RCVBUF in the application (capped by net.core.rmem_max), or net.core.rmem_default for sockets that do not set it",
        ],
        caveats: &[
            "buffers only absorb bursts; a reader that is always slower loses datagrams anyway",
        ],
    },
    Class {
        id: "no_socket",
        title: "packets arrived for ports nothing listens on",
        severity: Severity::Warning,
        reasons: &["NO_SOCKET"],
        counters: &[],
        knobs: &[],
        fix: &[
            "if the service should be there, it is down or listens elsewhere (another port, address or namespace): check `ss -lntu`",
            "if not, the senders are misconfigured, or this is a scan",
        ],
        caveats: &[],
    },
    Class {
        id: "qdisc",
        title: "a queueing discipline dropped outgoing packets",
        severity: Severity::Warning,
        reasons: &["QDISC_*", "FQ_*", "TC_*", "CODEL*"],
        counters: &["dev.*.tx_dropped"],
        knobs: &[],
        fix: &[
            "raise the qdisc's limit (`tc qdisc change dev DEV ... limit N`) or the shaping rate, if the queue is too short for the traffic",
            "if the link is simply full, drops are how queues signal congestion: reduce the traffic or get a faster link",
        ],
        caveats: &[
            "long queues add latency (bufferbloat): fq_codel keeps latency low at the cost of drops",
        ],
    },
    Class {
        id: "checksum_header",
        title: "packets with bad checksums or broken headers",
        severity: Severity::Warning,
        reasons: &[
            "IP_CSUM",
            "UDP_CSUM",
            "TCP_CSUM",
            "ICMP_CSUM",
            "IP_INHDR",
            "PKT_TOO_SMALL",
            "HDR_TRUNC",
            "IP_INHDR*",
        ],
        counters: &["Ip.InHdrErrors", "Udp.InCsumErrors", "Tcp.InCsumErrors"],
        knobs: &[],
        fix: &["check the NIC's checksum offload (`ethtool -k DEV`), the cabling, and the sender"],
        caveats: &[],
    },
    Class {
        id: "no_protocol",
        title: "packets of a protocol this host does not handle",
        severity: Severity::Info,
        reasons: &["UNHANDLED_PROTO", "IP_NOPROTO"],
        counters: &["Ip.InUnknownProtos", "dev.*.rx_nohandler"],
        knobs: &[],
        fix: &[
            "load the protocol's module (e.g. sctp) if the traffic is wanted, or find the peer that sends it",
        ],
        caveats: &[],
    },
];

/// The class named `id`.
pub fn class(id: &str) -> Option<&'static Class> {
    CLASSES.iter().find(|c| c.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_class_is_shown_by_something_and_ids_are_unique() {
        let mut ids: Vec<_> = CLASSES.iter().map(|c| c.id).collect();
        assert_eq!(ids.len(), 22, "the knowledge index has 22 classes");
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 22);
        for c in CLASSES {
            assert!(!c.reasons.is_empty() || !c.counters.is_empty(), "{}", c.id);
            assert!(!c.fix.is_empty(), "{}", c.id);
        }
    }
}
