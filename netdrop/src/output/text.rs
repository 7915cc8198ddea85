//! Human-readable output: one line per drop, a notice per loss, a table at the end.

use std::io::{self, Write};

use super::{
    CounterNotice, ListenerNotice, LostNotice, OverBudgetNotice, SocketNotice, Summary,
    SuppressedNotice,
    printable::printable,
    stats::{self, StatsReport},
};
use crate::event::{DropRecord, Location, Netns, Packet};

/// `04:12:33.123456 NO_SOCKET  udp  127.0.0.1:41234 -> 127.0.0.1:9  dev lo  netns init ...`
pub fn drop_line(r: &DropRecord, local_time: &str) -> String {
    let p = &r.packet;
    let proto = p.protocol.as_deref().or(p.family.as_deref()).unwrap_or("-");
    let flow = flow(p);
    let dev = printable(r.device.as_ref().map_or("-", |d| d.name.as_str()));
    let netns = r.netns.as_ref().map_or_else(|| "-".to_owned(), netns_name);
    let loc = location(&r.location);
    let reason = match &r.netfilter {
        Some(nf) => {
            let what = if nf.conntrack == Some(true) {
                ", conntrack"
            } else {
                ""
            };
            format!("{} ({} {}{what})", r.reason.label(), nf.family, nf.hook)
        }
        None => r.reason.label(),
    };
    let comm = printable(&r.running_task.comm);
    let workload = workload(r);
    let mut line = format!(
        "{local_time} {:<20} {proto:<6} {flow:<47} dev {dev:<10} netns {netns:<10}{workload} at {loc}  len {} cpu {} task {}[{}]",
        reason, p.length, r.cpu, comm, r.running_task.pid
    );
    if let Some(b) = &r.backlog {
        line.push_str(&backlog(b));
    }
    if let Some(stack) = &r.stack {
        for frame in stack {
            line.push_str("\n        ");
            line.push_str(&printable(frame));
        }
    }
    line
}

/// ` pod NAMESPACE/NAME` or ` container NAME[,NAME]` (terminal-safe) after the namespace of
/// a drop in a container's namespace; empty otherwise.
fn workload(r: &DropRecord) -> String {
    match (&r.pod, &r.containers) {
        (Some(p), _) => format!(" pod {}", printable(&p.label())),
        (None, Some(c)) if !c.is_empty() => {
            let names: Vec<String> = c.iter().map(|c| c.label()).collect();
            format!(" container {}", printable(&names.join(",")))
        }
        _ => String::new(),
    }
}

/// `  backlog of cpu 1: 1001/1000`: the netdev backlog a CPU_BACKLOG drop was refused by
/// (the limit is `net.core.netdev_max_backlog`; `?` when unreadable).
pub fn backlog(b: &crate::event::Backlog) -> String {
    let max = b.max.map_or_else(|| "?".to_owned(), |m| m.to_string());
    format!("  backlog of cpu {}: {}/{max}", b.cpu, b.queue)
}

/// `04:30:10.123456 COUNTER TcpExt.ListenOverflows +24 (total 24) netns xb: accept queue full ...`
pub fn counter_line(c: &CounterNotice, local_time: &str) -> String {
    let netns = c
        .netns
        .as_ref()
        .map_or(String::new(), |n| format!(" netns {}", netns_name(n)));
    format!(
        "{local_time} COUNTER {} +{} (total {}){netns}: {}",
        printable(&c.counter),
        c.delta,
        c.total,
        c.meaning
    )
}

/// `04:30:10.123456 LISTENER 10.0.0.2:8080 netns demo full 2/1 (accept queue) +152
/// ListenOverflows task python3[123] (from counters + sock_diag)`
pub fn listener_line(l: &ListenerNotice, local_time: &str) -> String {
    let addr = endpoint(&l.addr, l.port);
    let mut growth = format!("+{} ListenOverflows", l.overflows);
    if l.listen_drops > l.overflows {
        growth.push_str(&format!(" +{} ListenDrops", l.listen_drops));
    }
    if l.reqq_full_drops > 0 {
        growth.push_str(&format!(" +{} TCPReqQFullDrop", l.reqq_full_drops));
    }
    if l.shared_by > 1 {
        growth.push_str(&format!(" (shared by {} full listeners)", l.shared_by));
    }
    let task = l
        .process
        .as_ref()
        .map_or_else(|| "-".to_owned(), crate::kernel::owners::Owner::label);
    format!(
        "{local_time} LISTENER {addr} netns {} {} {}/{} (accept queue) {growth} task {task} (from counters + sock_diag)",
        netns_name(&l.netns),
        l.state,
        l.queue,
        l.limit
    )
}

/// `udp 10.0.0.2:5353 netns demo +40 sk_drops task python3[123] (total 43, rqueue 2304)`,
/// with `-> 10.0.0.1:40000` after the local end of a connected socket.
pub fn socket_line(s: &SocketNotice) -> String {
    let remote = match (&s.remote_addr, s.remote_port) {
        (Some(a), Some(p)) => format!(" -> {}", endpoint(a, p)),
        _ => String::new(),
    };
    let task = s
        .process
        .as_ref()
        .map_or_else(|| "-".to_owned(), crate::kernel::owners::Owner::label);
    // Who and how much first: `top` cuts the line at the terminal's width.
    format!(
        "{} {}{remote} netns {} +{} sk_drops task {task} (total {}, rqueue {})",
        s.protocol,
        endpoint(&s.addr, s.port),
        netns_name(&s.netns),
        s.drops,
        s.sk_drops,
        s.rqueue
    )
}

/// `10.0.0.2:8080`, or `[::1]:8080` for an IPv6 address.
pub fn endpoint(addr: &str, port: u16) -> String {
    if addr.contains(':') {
        format!("[{addr}]:{port}")
    } else {
        format!("{addr}:{port}")
    }
}

/// `10.0.0.1:5353 -> 10.0.0.2:53 [S]`, `[::1]:1 -> [::1]:2`, `a -> b type 8 code 0`, or `-`.
pub fn flow(p: &Packet) -> String {
    let endpoint = |addr: &Option<String>, port: Option<u16>| match (addr, port) {
        (Some(a), Some(port)) => endpoint(a, port),
        (Some(a), None) => a.clone(),
        (None, _) => "?".to_owned(),
    };
    let mut flow = if p.src.is_some() {
        format!(
            "{} -> {}",
            endpoint(&p.src, p.sport),
            endpoint(&p.dst, p.dport)
        )
    } else {
        "-".to_owned()
    };
    if let Some(flags) = &p.tcp_flags {
        let short: String = flags
            .iter()
            .map(|f| f.chars().next().unwrap_or('?'))
            .collect();
        flow.push_str(&format!(" [{short}]"));
    }
    if let (Some(t), Some(c)) = (p.icmp_type, p.icmp_code) {
        flow.push_str(&format!(" type {t} code {c}"));
    }
    if p.fragment {
        flow.push_str(" (fragment)");
    }
    flow
}

/// `symbol+0xoff [module]`, or the address.
pub fn location(l: &Location) -> String {
    match (&l.symbol, l.offset) {
        (Some(s), Some(o)) => match &l.module {
            Some(m) => format!("{}+{o:#x} [{}]", printable(s), printable(m)),
            None => format!("{}+{o:#x}", printable(s)),
        },
        _ => l.address.clone(),
    }
}

/// The namespace's name (terminal-safe), or its inode.
pub fn netns_name(n: &Netns) -> String {
    n.name
        .as_deref()
        .map_or_else(|| n.inode.to_string(), |s| printable(s).into_owned())
}

/// "N more like this": drops of one flow and reason the rate limit did not show.
pub fn suppressed_line(n: &SuppressedNotice, local_time: &str) -> String {
    let p = &n.packet;
    let proto = p.protocol.as_deref().or(p.family.as_deref()).unwrap_or("-");
    let netns = n.netns.as_ref().map_or_else(|| "-".to_owned(), netns_name);
    format!(
        "{local_time} {:<20} {proto:<6} {:<47} netns {netns:<10} {} more like this not shown (--rate-limit {}/s per flow and reason)",
        n.reason.label(),
        flow(p),
        n.count,
        n.rate_limit
    )
}

/// "N more here": drops of one reason and location the event budget counted on one CPU
/// without examining them.
pub fn over_budget_line(n: &OverBudgetNotice, local_time: &str) -> String {
    format!(
        "{local_time} {:<20} {} on cpu {}: {} more drops counted, not examined (--budget {}/s per reason and location on each CPU)",
        n.reason.label(),
        location(&n.location),
        n.cpu,
        n.count,
        n.budget
    )
}

/// Written when events were lost since the last check.
pub fn lost_line(n: &LostNotice) -> String {
    let mut parts = Vec::new();
    if n.lost > 0 {
        parts.push(format!(
            "{} events lost because the ring buffer was full ({} in total; counts stay exact; a bigger --ring-size or a filter helps)",
            n.lost, n.lost_total
        ));
    }
    if n.missed > 0 {
        parts.push(format!(
            "{} drops not traced because they happened while netdrop's program was already running on that CPU ({} in total)",
            n.missed, n.missed_total
        ));
    }
    format!("netdrop: {}", parts.join("; "))
}

/// `netdrop: 5 drops matched in 2.0s (7 seen by the hook); 5 events shown, 0 lost, ...`
pub fn summary_line(s: &Summary) -> String {
    let mut line = format!(
        "netdrop: {} drops matched in {:.1}s ({} seen by the hook); {} events shown, {} lost, {} not traced (nested)",
        s.matched, s.duration_s, s.seen, s.delivered, s.lost, s.missed
    );
    if s.rate_limit > 0 {
        line.push_str(&format!(
            "; {} suppressed by --rate-limit {}/s per flow and reason (counted, shown as \"more like this\")",
            s.suppressed, s.rate_limit
        ));
    }
    if s.budget > 0 {
        line.push_str(&format!(
            "; {} counted past --budget {}/s per reason and location (not examined, shown as \"more drops\")",
            s.over_budget, s.budget
        ));
    }
    if s.stack_errors > 0 {
        line.push_str(&format!(
            "; {} stacks not captured (stack map full)",
            s.stack_errors
        ));
    }
    line
}

/// The end-of-run report: what was seen, shown and lost, then the per-reason histogram
/// (the same table `netdrop stats` prints) and the kernel counters that grew.
pub fn write_summary(out: &mut impl Write, s: &Summary, histogram: &StatsReport) -> io::Result<()> {
    writeln!(out)?;
    writeln!(out, "{}", summary_line(s))?;
    if !histogram.groups.is_empty() {
        stats::write_text(out, histogram, "whole run:")?;
    }
    if !s.counters.is_empty() {
        writeln!(
            out,
            "kernel drop counters that grew (drops kfree_skb does not show):"
        )?;
        for c in &s.counters {
            let ns = c
                .netns
                .as_ref()
                .map_or(String::new(), |n| format!("  netns {}", netns_name(n)));
            writeln!(out, "{:>12}  {}{ns}", c.delta, printable(&c.counter))?;
        }
    }
    if !s.listeners.is_empty() {
        writeln!(
            out,
            "listeners named for ListenOverflows (from counters + sock_diag):"
        )?;
        for l in &s.listeners {
            writeln!(
                out,
                "{:>12}  {}  netns {}",
                l.overflows,
                endpoint(&l.addr, l.port),
                netns_name(&l.netns)
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::{
        event::Netns,
        output::{
            CounterGrowth, ListenerTotal, ReasonCount,
            stats::{Count, GroupRow, Untracked},
        },
    };

    #[test]
    fn suppressed_lines_say_how_many_and_escape_names() {
        let key = netdrop_common::FlowKey {
            reason: 2,
            netns: 7,
            l3_proto: netdrop_common::proto::ETH_P_IP,
            l4_proto: netdrop_common::proto::IPPROTO_UDP,
            sport: 33947,
            dport: 9,
            saddr: [127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            daddr: [127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            ..Default::default()
        };
        let n = SuppressedNotice {
            time: "t".into(),
            count: 75845,
            reason: crate::event::ReasonInfo::new(
                &crate::kernel::reasons::Reasons::none(),
                2,
                None,
            ),
            packet: crate::event::flow_packet(&key),
            netns: Some(Netns {
                inode: 7,
                name: Some("evil\u{1b}[2J".into()),
                source: "flow".into(),
            }),
            rate_limit: 1000,
        };
        let line = suppressed_line(&n, "00:02:19.999420");
        assert!(line.starts_with("00:02:19.999420 "), "{line}");
        for part in [
            " udp ",
            "127.0.0.1:33947 -> 127.0.0.1:9",
            "netns evil\\x1b[2J",
            "75845 more like this not shown (--rate-limit 1000/s per flow and reason)",
        ] {
            assert!(line.contains(part), "{part:?} missing from {line}");
        }
        assert!(!line.contains('\u{1b}'), "{line}");
    }

    /// A budget notice for NO_SOCKET drops in `__udp4_lib_rcv` on CPU 1.
    pub(crate) fn over_budget() -> OverBudgetNotice {
        let reasons =
            crate::kernel::reasons::Reasons::from_symbolic(&[(2, "NO_SOCKET".into())]).unwrap();
        OverBudgetNotice {
            time: "t".into(),
            count: 98000,
            reason: crate::event::ReasonInfo::new(&reasons, 2, None),
            location: Location {
                address: "0xffffffff81b2c3d4".into(),
                symbol: Some("__udp4_lib_rcv".into()),
                offset: Some(0x5b0),
                module: None,
            },
            cpu: 1,
            budget: 2000,
        }
    }

    #[test]
    fn over_budget_lines_name_reason_location_cpu_and_escape() {
        let mut n = over_budget();
        let line = over_budget_line(&n, "00:02:19.999420");
        assert_eq!(
            line,
            "00:02:19.999420 NO_SOCKET            __udp4_lib_rcv+0x5b0 on cpu 1: 98000 more drops counted, not examined (--budget 2000/s per reason and location on each CPU)"
        );
        n.location.module = Some("evil\u{1b}[2J".into());
        let line = over_budget_line(&n, "t");
        assert!(
            line.contains("[evil\\x1b[2J]") && !line.contains('\u{1b}'),
            "{line}"
        );
    }

    pub(crate) fn listener() -> ListenerNotice {
        let named = crate::aggregate::listeners::Named {
            netns: 7,
            socket: crate::aggregate::listeners::tests::listener(8080, 2, 1),
            fill: crate::aggregate::listeners::Fill::Full,
            growth: crate::aggregate::listeners::Growth {
                overflows: 152,
                listen_drops: 152,
                reqq_full_drops: 0,
            },
            shared_by: 1,
        };
        let (netns, owner) = demo();
        ListenerNotice::new(&named, netns, Some(owner), "t".into())
    }

    /// Namespace `demo` (inode 7) and `python3[123]`, where the named sockets live.
    fn demo() -> (Netns, crate::kernel::owners::Owner) {
        let netns = Netns {
            inode: 7,
            name: Some("demo".into()),
            source: "procfs".into(),
        };
        let owner = crate::kernel::owners::Owner {
            pid: 123,
            comm: "python3".into(),
        };
        (netns, owner)
    }

    #[test]
    fn listener_lines_say_where_they_come_from() {
        let mut l = listener();
        assert_eq!(
            listener_line(&l, "04:30:10.1"),
            "04:30:10.1 LISTENER 10.0.0.2:8080 netns demo full 2/1 (accept queue) +152 \
             ListenOverflows task python3[123] (from counters + sock_diag)"
        );
        l.family = "ipv6".into();
        l.addr = "::".into();
        l.shared_by = 2;
        l.process = None;
        assert_eq!(
            listener_line(&l, "t"),
            "t LISTENER [::]:8080 netns demo full 2/1 (accept queue) +152 ListenOverflows \
             (shared by 2 full listeners) task - (from counters + sock_diag)"
        );
    }

    pub(crate) fn socket() -> SocketNotice {
        let g = crate::aggregate::sockets::Grown {
            netns: 7,
            socket: crate::aggregate::sockets::tests::udp(5353, 4242, 43),
            growth: 40,
            total: 43,
        };
        let (netns, owner) = demo();
        SocketNotice::new(&g, netns, Some(owner))
    }

    #[test]
    fn socket_lines_name_both_ends_and_the_task() {
        let mut s = socket();
        assert_eq!(
            socket_line(&s),
            "udp 10.0.0.2:5353 netns demo +40 sk_drops task python3[123] (total 43, rqueue 2304)"
        );
        s.protocol = "tcp".into();
        s.addr = "::1".into();
        s.remote_addr = Some("::1".into());
        s.remote_port = Some(443);
        s.process = None;
        assert_eq!(
            socket_line(&s),
            "tcp [::1]:5353 -> [::1]:443 netns demo +40 sk_drops task - (total 43, rqueue 2304)"
        );
    }

    fn record() -> DropRecord {
        crate::testdata::drop_record()
    }

    #[test]
    fn names_from_the_kernel_cannot_drive_the_terminal() {
        let mut r = record();
        r.running_task.comm = "ev\u{1b}[2Jil".into();
        r.device.as_mut().unwrap().name = "e\u{1b}]0;x\u{7}".into();
        r.netns.as_mut().unwrap().name = Some("n\r".into());
        let line = drop_line(&r, "04:12:33.000001");
        assert!(
            !line.chars().any(|c| c.is_control() && c != '\n'),
            "{line:?}"
        );
        assert!(line.contains("task ev\\x1b[2Jil[7]"), "{line}");
        assert!(line.contains("dev e\\x1b]0;x\\x07"), "{line}");
        assert!(line.contains("netns n\\x0d"), "{line}");
        r.pod = Some(crate::kernel::containers::Pod {
            uid: "u".into(),
            name: Some("web\u{1b}[2J".into()),
            namespace: Some("shop".into()),
        });
        let line = drop_line(&r, "04:12:33.000001");
        assert!(
            line.contains("netns n\\x0d      pod shop/web\\x1b[2J at "),
            "{line}"
        );
        r.pod = None;
        r.containers = Some(vec![crate::kernel::containers::Container {
            runtime: "docker".into(),
            id: "0123456789abcdef".into(),
            name: None,
        }]);
        let line = drop_line(&r, "04:12:33.000001");
        assert!(
            line.contains(" container docker:0123456789ab at "),
            "{line}"
        );
        let c = CounterNotice {
            time: String::new(),
            counter: "dev.e\u{1b}[1m.rx_dropped".into(),
            delta: 1,
            total: 2,
            netns: None,
            meaning: String::new(),
        };
        assert!(counter_line(&c, "t").contains("dev.e\\x1b[1m.rx_dropped +1"));
    }

    #[test]
    fn drop_lines_name_everything() {
        let line = drop_line(&record(), "04:12:33.000001");
        assert!(line.starts_with("04:12:33.000001 NO_SOCKET "), "{line}");
        for part in [
            "tcp",
            "[::1]:40000 -> [::1]:9 [S]",
            "dev lo",
            "netns init",
            "at __udp4_lib_rcv+0x2d1",
            "task nc[7]",
            "len 33",
        ] {
            assert!(line.contains(part), "{part} missing from {line}");
        }
        assert!(line.ends_with("\n        a+0x1\n        b+0x2"));
    }

    #[test]
    fn backlog_drops_name_the_cpu_and_the_queue() {
        let mut r = record();
        r.stack = None;
        r.backlog = Some(crate::event::Backlog {
            cpu: 1,
            queue: 2,
            max: Some(1),
        });
        let line = drop_line(&r, "04:12:33.000001");
        assert!(line.ends_with("  backlog of cpu 1: 2/1"), "{line}");
        r.backlog.as_mut().unwrap().max = None;
        assert!(drop_line(&r, "t").ends_with("backlog of cpu 1: 2/?"));
    }

    #[test]
    fn summary_table() {
        let s = Summary {
            duration_s: 2.0,
            hook: "h".into(),
            seen: 12,
            matched: 10,
            delivered: 8,
            lost: 2,
            suppressed: 0,
            rate_limit: 0,
            over_budget: 2000,
            budget: 500,
            missed: 0,
            stack_errors: 0,
            by_reason: vec![
                ReasonCount {
                    name: "NO_SOCKET".into(),
                    code: 3,
                    subsystem: None,
                    count: 7,
                },
                ReasonCount {
                    name: "TCP_CSUM".into(),
                    code: 9,
                    subsystem: None,
                    count: 3,
                },
            ],
            counters: vec![CounterGrowth {
                counter: "TcpExt.ListenOverflows".into(),
                netns: Some(Netns {
                    inode: 7,
                    name: Some("blue".into()),
                    source: "procfs".into(),
                }),
                delta: 24,
            }],
            listeners: vec![ListenerTotal {
                netns: Netns {
                    inode: 7,
                    name: Some("blue".into()),
                    source: "procfs".into(),
                },
                addr: "::".into(),
                port: 8080,
                overflows: 24,
            }],
        };
        let row = |name: &str, n: u64| GroupRow {
            label: name.into(),
            reason: None,
            location: None,
            flow: None,
            device: None,
            netns: None,
            pod: None,
            containers: None,
            interval: n,
            total: n,
            rate: n as f64 / 2.0,
            reasons: vec![],
        };
        let hist = StatsReport {
            time: String::new(),
            interval_s: 2.0,
            by: "reason".into(),
            drops: Count {
                interval: 10,
                total: 10,
                rate: 5.0,
            },
            seen: Count {
                interval: 12,
                total: 12,
                rate: 6.0,
            },
            missed: 0,
            untracked: Untracked::default(),
            groups: vec![row("NO_SOCKET", 7), row("TCP_CSUM", 3)],
            other: Count::default(),
            listeners: vec![],
            sockets: vec![],
            softnet: vec![],
            devices: vec![],
        };
        let mut out = Vec::new();
        write_summary(&mut out, &s, &hist).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("10 drops matched in 2.0s (12 seen by the hook); 8 events shown, 2 lost")
        );
        assert!(
            text.contains(
                "; 2000 counted past --budget 500/s per reason and location (not examined"
            ),
            "{text}"
        );
        assert!(
            text.contains("whole run:  5 drops/s (10 in 2.0s, 10 total) by reason"),
            "{text}"
        );
        assert!(
            text.contains("         3.5            7  70.0%  NO_SOCKET"),
            "{text}"
        );
        assert!(
            text.contains("         1.5            3  30.0%  TCP_CSUM"),
            "{text}"
        );
        assert!(
            text.contains("          24  TcpExt.ListenOverflows  netns blue"),
            "{text}"
        );
        assert!(
            text.contains("          24  [::]:8080  netns blue"),
            "{text}"
        );
    }
}
