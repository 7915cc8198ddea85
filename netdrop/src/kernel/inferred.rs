//! Drop reasons inferred from where a packet was freed, for kernels that report none
//! (before 5.17, where the `kfree_skb` tracepoint has only `(skb, location)`).
//!
//! One table: the kernel function that called `kfree_skb` -> the reason a kernel with drop
//! reasons (5.17+) gives for the same drop, by the modern reason name. A function is listed
//! only where the 5.10 source (Debian 11's kernel) makes the reason clear. Where the same
//! function also frees packets for other reasons (one `kfree_skb` call site behind several
//! `goto drop`s, or call sites that only an offset of this very build could tell apart),
//! those are listed as `alternatives`: the reason named is the one that function exists
//! to report, and users see that it may be one of the others. Functions not listed stay
//! unnamed (`UNKNOWN`): netdrop never guesses.

/// A reason inferred from the drop location.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Inferred {
    /// Modern reason name, e.g. `NO_SOCKET`.
    pub reason: &'static str,
    /// Other reasons the same function drops packets for on these kernels; empty when
    /// the location alone settles it.
    pub alternatives: &'static [&'static str],
}

/// What `__udp4_lib_rcv` (net/ipv4/udp.c) frees besides NO_SOCKET (`kfree_skb` after a
/// failed socket lookup): at `drop:` short packets, bad checksums and xfrm policy; in the
/// inlined `__udp4_lib_mcast_deliver` broadcasts nobody listens to (NOT_SPECIFIED).
/// `__udp6_lib_rcv` (net/ipv6/udp.c) has the same structure.
const UDP_RCV_ALSO: &[&str] = &["PKT_TOO_SMALL", "UDP_CSUM", "XFRM_POLICY", "NOT_SPECIFIED"];

/// What `tcp_v4_rcv` (net/ipv4/tcp_ipv4.c) frees besides NO_SOCKET: its one `kfree_skb` at
/// `discard_it:` is reached from `no_tcp_socket` (after the RST) and from the header,
/// checksum, MD5, filter and xfrm checks. `tcp_v6_rcv` has the same structure.
const TCP_RCV_ALSO: &[&str] = &[
    "PKT_TOO_SMALL",
    "TCP_CSUM",
    "XFRM_POLICY",
    "SOCKET_FILTER",
    "TCP_MD5NOTFOUND",
    "TCP_MD5UNEXPECTED",
    "TCP_MD5FAILURE",
    "NOT_SPECIFIED",
];

/// What `udp_queue_rcv_one_skb` (net/ipv4/udp.c) frees besides SOCKET_RCVBUFF: the
/// inlined `__udp_queue_rcv_skb` frees when the receive buffer is full (-ENOMEM) or
/// protocol memory is exhausted (-ENOBUFS); the function itself for xfrm policy,
/// checksum, socket filter and UDP-Lite coverage (NOT_SPECIFIED). The IPv6 twin
/// `udpv6_queue_rcv_one_skb` has the same structure.
const UDP_QUEUE_ALSO: &[&str] = &[
    "PROTO_MEM",
    "XFRM_POLICY",
    "UDP_CSUM",
    "SOCKET_FILTER",
    "NOT_SPECIFIED",
];

/// (function, reason, alternatives), from the 5.10 sources named in the comments.
const TABLE: &[(&str, &str, &[&str])] = &[
    ("__udp4_lib_rcv", "NO_SOCKET", UDP_RCV_ALSO),
    ("__udp6_lib_rcv", "NO_SOCKET", UDP_RCV_ALSO),
    ("tcp_v4_rcv", "NO_SOCKET", TCP_RCV_ALSO),
    ("tcp_v6_rcv", "NO_SOCKET", TCP_RCV_ALSO),
    // net/netfilter/core.c: NF_DROP from a rule or from conntrack (a full table): both
    // are NETFILTER_DROP on kernels with reasons.
    ("nf_hook_slow", "NETFILTER_DROP", &[]),
    ("nf_hook_slow_list", "NETFILTER_DROP", &[]),
    // net/ipv4/route.c: the input route is an error route. ENETUNREACH (no route) is
    // IP_INNOROUTES; unreachable/prohibit routes (EHOSTUNREACH, EACCES) are not named.
    ("ip_error", "IP_INNOROUTES", &["NOT_SPECIFIED"]),
    // net/ipv4/ip_input.c: one `kfree_skb` behind the input route lookup and early demux
    // (-EXDEV is the reverse-path filter; martian sources and other route errors are not
    // named), bad IP options, and unicast in an L2 multicast frame.
    (
        "ip_rcv_finish_core",
        "IP_RPFILTER",
        &["NOT_SPECIFIED", "UNICAST_IN_L2_MULTICAST"],
    ),
    // net/ipv4/ip_input.c: no handler for the IP protocol (or xfrm policy refused it).
    ("ip_protocol_deliver_rcu", "IP_NOPROTO", &["XFRM_POLICY"]),
    // net/core/dev.c: the per-CPU backlog is full (or the flow limit hit): both CPU_BACKLOG.
    ("enqueue_to_backlog", "CPU_BACKLOG", &[]),
    ("udp_queue_rcv_one_skb", "SOCKET_RCVBUFF", UDP_QUEUE_ALSO),
    ("udpv6_queue_rcv_one_skb", "SOCKET_RCVBUFF", UDP_QUEUE_ALSO),
    // Where the compiler did not inline them.
    ("__udp_queue_rcv_skb", "SOCKET_RCVBUFF", &["PROTO_MEM"]),
    ("__udpv6_queue_rcv_skb", "SOCKET_RCVBUFF", &["PROTO_MEM"]),
    // net/core/neighbour.c: packets waiting for resolution pushed out of a full queue;
    // also a neighbour that failed at once (NEIGH_FAILED) or died (NEIGH_DEAD).
    (
        "__neigh_event_send",
        "NEIGH_QUEUEFULL",
        &["NEIGH_FAILED", "NEIGH_DEAD"],
    ),
    // net/core/neighbour.c, net/ipv4/arp.c, net/ipv6/ndisc.c: resolution failed, the
    // waiting packets are freed.
    ("neigh_invalidate", "NEIGH_FAILED", &[]),
    // net/ipv4/tcp_input.c: `tcp_drop()` inlined (seen by the tcp_drop path hook). In
    // tcp_validate_incoming: a segment outside the window (after a duplicate ACK; window
    // probes land here), PAWS, RST and SYN checks.
    (
        "tcp_validate_incoming",
        "TCP_INVALID_SEQUENCE",
        &["TCP_RFC7323_PAWS", "TCP_RESET", "TCP_INVALID_SYN"],
    ),
    // tcp_data_queue: out of window (old data, beyond the window, zero window) or no
    // receive memory.
    (
        "tcp_data_queue",
        "TCP_OLD_DATA",
        &["TCP_OVERWINDOW", "TCP_ZEROWINDOW", "PROTO_MEM"],
    ),
    ("tcp_data_queue_ofo", "TCP_OFOMERGE", &["PROTO_MEM"]),
    ("tcp_ofo_queue", "TCP_OFO_DROP", &[]),
    ("tcp_prune_ofo_queue", "TCP_OFO_QUEUE_PRUNE", &[]),
    ("arp_error_report", "NEIGH_FAILED", &[]),
    ("ndisc_error_report", "NEIGH_FAILED", &[]),
];

/// The function name of a symbol: without `+0xoff` and without the suffixes the compiler
/// gives clones and split-off parts (`.constprop.0`, `.isra.0`, `.part.0`, `.cold`).
pub fn function(symbol: &str) -> &str {
    let name = symbol.split('+').next().unwrap_or(symbol);
    name.split('.').next().unwrap_or(name)
}

/// The reason inferred for a drop in `symbol`, if the table names one.
pub fn infer(symbol: &str) -> Option<Inferred> {
    let f = function(symbol);
    TABLE
        .iter()
        .find(|(name, _, _)| *name == f)
        .map(|&(_, reason, alternatives)| Inferred {
            reason,
            alternatives,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiler_suffixes_and_offsets_are_stripped() {
        assert_eq!(
            function("ip_rcv_finish_core.constprop.0+0x1b4"),
            "ip_rcv_finish_core"
        );
        assert_eq!(function("tcp_v4_rcv.cold"), "tcp_v4_rcv");
        assert_eq!(function("__udp4_lib_rcv.isra.0"), "__udp4_lib_rcv");
        assert_eq!(function("nf_hook_slow"), "nf_hook_slow");
    }

    #[test]
    fn the_locations_seen_on_5_10_are_named() {
        // What Debian 11's 5.10 reported for the VM scenarios.
        for (symbol, reason) in [
            ("__udp4_lib_rcv", "NO_SOCKET"),
            ("tcp_v4_rcv", "NO_SOCKET"),
            ("nf_hook_slow", "NETFILTER_DROP"),
            ("ip_rcv_finish_core.constprop.0", "IP_RPFILTER"),
            ("ip_error", "IP_INNOROUTES"),
            ("udp_queue_rcv_one_skb", "SOCKET_RCVBUFF"),
            ("__neigh_event_send", "NEIGH_QUEUEFULL"),
            ("neigh_invalidate", "NEIGH_FAILED"),
        ] {
            assert_eq!(infer(symbol).map(|i| i.reason), Some(reason), "{symbol}");
        }
    }

    #[test]
    fn shared_locations_say_what_else_they_may_be() {
        let udp = infer("__udp4_lib_rcv+0x4bc").unwrap();
        assert!(udp.alternatives.contains(&"UDP_CSUM"));
        assert!(
            infer("ip_rcv_finish_core")
                .unwrap()
                .alternatives
                .contains(&"NOT_SPECIFIED")
        );
        assert!(infer("nf_hook_slow").unwrap().alternatives.is_empty());
        assert!(infer("enqueue_to_backlog").unwrap().alternatives.is_empty());
    }

    #[test]
    fn other_locations_stay_unnamed() {
        for symbol in [
            "ip_rcv_core",
            "skb_release_data",
            "kfree_skb",
            "",
            "0xffffffff81000000",
        ] {
            assert_eq!(infer(symbol), None, "{symbol}");
        }
        // A prefix of a listed name is another function.
        assert_eq!(infer("tcp_v4_rcv_extra"), None);
    }

    #[test]
    fn the_table_lists_each_function_once_and_never_itself_as_alternative() {
        let mut seen = std::collections::BTreeSet::new();
        for (name, reason, alternatives) in TABLE {
            assert!(seen.insert(*name), "{name} listed twice");
            assert!(!alternatives.contains(reason), "{name}");
            assert_eq!(function(name), *name);
        }
    }
}
