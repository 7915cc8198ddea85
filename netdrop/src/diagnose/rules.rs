//! Evidence to findings: for each class of `classes.rs` that the evidence shows, what is
//! wrong, how much, where (ports, listeners, devices, CPUs, rules), the settings, the fix.
//! Pure functions over [`Evidence`].

use std::collections::BTreeMap;

use serde::Serialize;

use super::{
    classes::{CLASSES, Class, Severity},
    evidence::{Evidence, Knob, reason_matches},
};
use crate::event::Netns;

/// One thing that is wrong.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Finding {
    /// Stable class id (`listen_queue`, `conntrack_full`, ...).
    pub class: &'static str,
    pub title: String,
    pub severity: Severity,
    /// Packets (or connection attempts) lost to it while watching.
    pub drops: u64,
    /// Per second over the watch.
    pub rate: f64,
    /// The numbers behind it, one fact per line.
    pub evidence: Vec<String>,
    /// What it happened to: ports, listeners, devices, CPUs, rules, destinations.
    pub objects: Vec<Object>,
    /// The settings that govern it, as read at the end of the watch.
    pub knobs: Vec<Knob>,
    pub fix: Vec<String>,
    pub caveats: Vec<String>,
    /// How it was established: `measured` (the kernel named the reason or counted it) or
    /// `inferred` (netdrop's own conclusion from several signals).
    pub basis: &'static str,
}

/// An object a finding is about.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Object {
    /// `port`, `listener`, `socket`, `device`, `cpu`, `netns`, `rule`, `destination`,
    /// `qdisc`.
    pub kind: &'static str,
    pub name: String,
    pub netns: Option<Netns>,
    /// Drops attributed to it, when known.
    pub drops: Option<u64>,
    /// More about it (queue length, the rule's text, a route).
    pub detail: Option<String>,
}

/// Every finding the evidence supports, worst first.
pub fn findings(ev: &Evidence) -> Vec<Finding> {
    let mut out: Vec<Finding> = CLASSES.iter().filter_map(|c| finding(c, ev)).collect();
    out.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then(b.drops.cmp(&a.drops))
            .then(a.class.cmp(b.class))
    });
    out
}

/// Reasons no class explains, with counts: shown as "other drops".
pub fn unexplained(ev: &Evidence) -> Vec<(String, u64)> {
    ev.reasons
        .iter()
        .filter(|r| {
            !CLASSES
                .iter()
                .any(|c| c.reasons.iter().any(|p| reason_matches(p, &r.name)))
        })
        .map(|r| (r.name.clone(), r.count))
        .collect()
}

fn finding(c: &'static Class, ev: &Evidence) -> Option<Finding> {
    let mut f = Finding {
        class: c.id,
        title: c.title.to_owned(),
        severity: c.severity,
        drops: 0,
        rate: 0.0,
        evidence: Vec::new(),
        objects: Vec::new(),
        knobs: Vec::new(),
        fix: c.fix.iter().map(|s| (*s).to_owned()).collect(),
        caveats: c.caveats.iter().map(|s| (*s).to_owned()).collect(),
        basis: "measured",
    };
    let mut by_reason = ev.reason_count(c.reasons);
    // NETFILTER_DROP is both a rule's and conntrack's: split it.
    let (ct_marked, ct_counted) = conntrack_share(ev);
    match c.id {
        "firewall_rule" => by_reason = by_reason.saturating_sub(ct_marked.max(ct_counted)),
        "conntrack_full" => by_reason = ct_marked,
        _ => {}
    }
    let grown = ev.counter_growth(c.counters);
    if by_reason == 0 && grown.is_empty() {
        return None;
    }
    for r in ev
        .reasons
        .iter()
        .filter(|r| c.reasons.iter().any(|p| reason_matches(p, &r.name)))
    {
        f.evidence.push(format!(
            "drop reason {}: {} drops ({}){}",
            r.name,
            r.count,
            per_second(r.count, ev.duration_s),
            if r.inferred {
                ", inferred from where the kernel freed them (this kernel names no reasons)"
            } else {
                ""
            }
        ));
        if r.inferred {
            f.basis = "inferred";
        }
    }
    for l in ev
        .locations
        .iter()
        .filter(|l| c.reasons.iter().any(|p| reason_matches(p, &l.reason)))
        .take(3)
    {
        f.evidence.push(format!(
            "  {} of them at {} ({})",
            l.count, l.location, l.reason
        ));
    }
    for g in &grown {
        f.evidence.push(format!(
            "counter {} +{} (now {}){}",
            g.name,
            g.delta,
            g.now,
            in_netns(g.netns.as_ref())
        ));
    }
    let counted = grown.iter().map(|g| g.delta).max().unwrap_or(0);
    f.drops = by_reason.max(counted);
    f.rate = rate(f.drops, ev.duration_s);
    // The namespace most involved: where counters grew, else where samples came from.
    let netns = grown
        .iter()
        .find_map(|g| g.netns.as_ref())
        .or_else(|| ev.samples_of(c.reasons).find_map(|s| s.netns.as_ref()))
        .cloned();
    f.knobs = ev.knobs_named(netns.as_ref().map(|n| n.inode), c.knobs);
    match c.id {
        "no_socket" | "tcp_sequence" | "paws" => ports(&mut f, c, ev),
        "udp_rcvbuf" => {
            ports(&mut f, c, ev);
            sockets(&mut f, ev, "udp");
        }
        "tcp_memory" => sockets(&mut f, ev, "tcp"),
        "listen_queue" => listeners(&mut f, ev, netns.as_ref()),
        "syn_flood" => syn_queue(&mut f, ev, netns.as_ref()),
        "conntrack_full" => conntrack(&mut f, ev, netns.as_ref(), ct_marked, ct_counted),
        "firewall_rule" => firewall(&mut f, ev, ct_counted),
        "rp_filter" => rp_filter(&mut f, ev),
        "no_route" => routes(&mut f, c, ev),
        "netdev_backlog" => backlog(&mut f, ev),
        "neighbour" => neighbours(&mut f, c, ev),
        "qdisc" => qdiscs(&mut f, c, ev),
        "nic_ring" => devices_from_counters(&mut f, &grown),
        "mtu" => f.knobs.extend(
            ev.knobs
                .iter()
                .filter(|k| k.name.starts_with("dev.") && k.name.ends_with(".mtu"))
                .cloned(),
        ),
        _ => {}
    }
    Some(f)
}

/// NETFILTER_DROPs conntrack refused: marked by the conntrack hook in the samples
/// (scaled to all NETFILTER_DROPs), and counted by the kernel (`nf_conntrack.drop`).
fn conntrack_share(ev: &Evidence) -> (u64, u64) {
    let nf = ev.reason_count(&["NETFILTER_DROP"]);
    let samples: Vec<_> = ev.samples_of(&["NETFILTER_DROP"]).collect();
    let marked = samples
        .iter()
        .filter(|s| s.netfilter.as_ref().and_then(|n| n.conntrack) == Some(true))
        .count() as u64;
    let marked = if samples.is_empty() {
        0
    } else {
        nf * marked / samples.len() as u64
    };
    let counted = ev
        .counter_growth(&["nf_conntrack.drop"])
        .iter()
        .map(|g| g.delta)
        .sum::<u64>()
        .min(nf);
    (marked, counted)
}

fn per_second(n: u64, secs: f64) -> String {
    format!("{:.1}/s", rate(n, secs))
}

fn rate(n: u64, secs: f64) -> f64 {
    if secs > 0.0 { n as f64 / secs } else { 0.0 }
}

fn in_netns(n: Option<&Netns>) -> String {
    match n {
        Some(n) => format!(" in netns {}", netns_label(n)),
        None => String::new(),
    }
}

/// `udp 10.0.0.2:53`, `tcp [::1]:443`, `icmp 10.0.0.2`.
fn port_name(p: &crate::event::Packet) -> String {
    let proto = p.protocol.as_deref().unwrap_or("?");
    let dst = p.dst.as_deref().unwrap_or("?");
    match p.dport {
        Some(port) if dst.contains(':') => format!("{proto} [{dst}]:{port}"),
        Some(port) => format!("{proto} {dst}:{port}"),
        None => format!("{proto} {dst}"),
    }
}

fn netns_label(n: &Netns) -> String {
    n.name.clone().unwrap_or_else(|| n.inode.to_string())
}

/// Destination ports of the class's flows: `udp 10.0.0.2:53`.
fn ports(f: &mut Finding, c: &Class, ev: &Evidence) {
    let mut sum: BTreeMap<(String, Option<u32>), (Option<Netns>, u64)> = BTreeMap::new();
    let mut add = |p: &crate::event::Packet, netns: &Option<Netns>, n: u64| {
        let e = sum
            .entry((port_name(p), netns.as_ref().map(|n| n.inode)))
            .or_insert((netns.clone(), 0));
        e.1 += n;
    };
    let mut flows = 0;
    for fl in ev.flows_of(c.reasons) {
        add(&fl.packet, &fl.netns, fl.count);
        flows += 1;
    }
    // Kernels without reasons count flows under UNKNOWN: name the ports of the samples.
    if flows == 0 {
        for s in ev.samples_of(c.reasons) {
            add(&s.packet, &s.netns, 1);
        }
    }
    let mut rows: Vec<_> = sum.into_iter().collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.1.1));
    for ((name, _), (netns, n)) in rows.into_iter().take(10) {
        f.objects.push(Object {
            kind: "port",
            name,
            netns,
            drops: Some(n),
            detail: None,
        });
    }
}

/// The sockets of `protocol` whose own drop count grew: `udp 10.0.0.2:5353`, measured by
/// the kernel per socket.
fn sockets(f: &mut Finding, ev: &Evidence, protocol: &str) {
    for s in ev.sockets.iter().filter(|s| s.protocol == protocol) {
        let remote = s
            .remote
            .as_ref()
            .map(|r| format!(" -> {r}"))
            .unwrap_or_default();
        f.objects.push(Object {
            kind: "socket",
            name: format!("{} {}{remote}", s.protocol, s.local),
            netns: s.netns.clone(),
            drops: Some(s.drops),
            detail: Some(format!(
                "sk_drops +{}{}",
                s.drops,
                s.process
                    .as_ref()
                    .map(|p| format!(", process {p}"))
                    .unwrap_or_default()
            )),
        });
    }
}

fn listeners(f: &mut Finding, ev: &Evidence, netns: Option<&Netns>) {
    let mine: Vec<_> = ev
        .listeners
        .iter()
        .filter(|l| netns.is_none() || l.netns.as_ref().map(|n| n.inode) == netns.map(|n| n.inode))
        .collect();
    for l in &mine {
        f.objects.push(Object {
            kind: "listener",
            name: l.local.clone(),
            netns: l.netns.clone(),
            drops: None,
            detail: Some(format!(
                "accept queue {}/{}{}",
                l.queue,
                l.limit,
                l.process
                    .as_ref()
                    .map(|p| format!(", process {p}"))
                    .unwrap_or_default()
            )),
        });
    }
    if mine.len() > 1 {
        f.evidence.push(format!(
            "{} listeners were full: the drops are shared between them",
            mine.len()
        ));
    }
    if let (Some(l), Some(max)) = (
        mine.iter().max_by_key(|l| l.limit),
        ev.knob(netns.map(|n| n.inode), "net.core.somaxconn")
            .and_then(|v| v.trim().parse::<u32>().ok()),
    ) && l.limit < max
    {
        f.evidence.push(format!(
            "the limit {} is the application's listen() backlog (net.core.somaxconn is {max}): raise it in the application",
            l.limit
        ));
    }
    if mine.is_empty() {
        f.evidence.push(
            "the listening socket could not be identified (it was gone, or its queue had drained when looked at)"
                .to_owned(),
        );
    }
    if !mine.is_empty() {
        f.basis = "measured";
    }
}

fn syn_queue(f: &mut Finding, ev: &Evidence, netns: Option<&Netns>) {
    let dropped: u64 = ev
        .counter_growth(&["TcpExt.TCPReqQFullDrop"])
        .iter()
        .map(|g| g.delta)
        .sum();
    let cookies: u64 = ev
        .counter_growth(&["TcpExt.TCPReqQFullDoCookies", "TcpExt.SyncookiesSent"])
        .iter()
        .map(|g| g.delta)
        .max()
        .unwrap_or(0);
    let syncookies = ev.knob(netns.map(|n| n.inode), "net.ipv4.tcp_syncookies");
    if dropped > 0 {
        f.title = "the SYN queue was full and syncookies were off: SYNs were dropped".to_owned();
        f.drops = dropped;
        if syncookies == Some("0") {
            f.evidence.push(
                "net.ipv4.tcp_syncookies is 0: nothing answers SYNs once the queue is full".into(),
            );
        }
    } else if cookies > 0 {
        f.title =
            "a SYN flood (or a burst) filled the SYN queue; syncookies answered it, nothing was dropped"
                .to_owned();
        f.severity = Severity::Info;
        f.drops = 0;
        f.fix.retain(|l| !l.starts_with("SYNs dropped"));
    }
    f.rate = rate(f.drops, ev.duration_s);
    listeners(f, ev, netns);
}

fn conntrack(f: &mut Finding, ev: &Evidence, netns: Option<&Netns>, marked: u64, counted: u64) {
    let ns = netns.map(|n| n.inode);
    let num = |k: &str| ev.knob(ns, k).and_then(|v| v.trim().parse::<u64>().ok());
    if let (Some(count), Some(max)) = (
        num("net.netfilter.nf_conntrack_count"),
        num("net.netfilter.nf_conntrack_max"),
    ) && max > 0
    {
        f.evidence.push(format!(
            "table: {count} of {max} entries ({:.0}%)",
            count as f64 * 100.0 / max as f64
        ));
        let buckets = num("net.netfilter.nf_conntrack_buckets").unwrap_or(0);
        f.evidence.push(format!(
            "memory at that size: about {} KiB (max x 350 B + buckets x 16 B)",
            (max * 350 + buckets * 16) / 1024
        ));
    }
    if marked > 0 {
        f.evidence.push(format!(
            "{marked} NETFILTER_DROPs were conntrack's (the nf_conntrack_in hook saw it refuse them)"
        ));
    } else if counted > 0 && !ev.conntrack_hook {
        f.evidence.push(format!(
            "{counted} NETFILTER_DROPs are taken for conntrack's from its drop counter (no kprobes here to tell each packet)"
        ));
        f.basis = "inferred";
    }
    f.drops = f.drops.max(marked).max(counted);
    f.rate = rate(f.drops, ev.duration_s);
}

fn firewall(f: &mut Finding, ev: &Evidence, ct_counted: u64) {
    let mut hooks: BTreeMap<String, u64> = BTreeMap::new();
    for s in ev.samples_of(&["NETFILTER_DROP"]) {
        if let Some(nf) = &s.netfilter
            && nf.conntrack != Some(true)
        {
            *hooks
                .entry(format!("{} {}", nf.family, nf.hook))
                .or_default() += 1;
        }
    }
    for (hook, n) in hooks {
        f.objects.push(Object {
            kind: "hook",
            name: hook,
            netns: None,
            drops: Some(n),
            detail: Some("sampled drops".into()),
        });
    }
    for m in &ev.firewall {
        let r = &m.rule;
        f.objects.push(Object {
            kind: "rule",
            name: format!(
                "{} {} {}{}",
                r.family,
                r.table,
                r.chain,
                r.handle
                    .map(|h| format!(" (handle {h})"))
                    .unwrap_or_default()
            ),
            netns: m.netns.clone(),
            drops: Some(m.packets),
            detail: Some(if m.certain {
                r.text.clone()
            } else {
                format!(
                    "{} (might be this one: not every expression was understood)",
                    r.text
                )
            }),
        });
    }
    if ev.firewall.is_empty() {
        f.evidence.push(
            "no nftables drop rule matched the sampled packets (rules in iptables-legacy, or reject/ct state rules, are not read)"
                .into(),
        );
    } else {
        f.basis = "inferred";
        f.evidence.push(
            "the rule is named by matching the dropped packets against the ruleset's drop rules"
                .into(),
        );
    }
    if ct_counted > 0 && !ev.conntrack_hook {
        f.evidence.push(format!(
            "{ct_counted} other NETFILTER_DROPs are counted as conntrack's"
        ));
    }
    let mut flows = Finding {
        objects: Vec::new(),
        ..f.clone()
    };
    if let Some(c) = super::classes::class("firewall_rule") {
        ports(&mut flows, c, ev);
    }
    f.objects.extend(flows.objects);
}

fn rp_filter(f: &mut Finding, ev: &Evidence) {
    for (dev, netns, n) in ev.devices_of(&["IP_RPFILTER"]) {
        let ns = netns.as_ref().map(|n| n.inode);
        let all = ev.knob(ns, "net.ipv4.conf.all.rp_filter");
        let own_key = format!("net.ipv4.conf.{dev}.rp_filter");
        let own = ev.knob(ns, &own_key);
        let effective = [all, own]
            .iter()
            .filter_map(|v| v.and_then(|v| v.trim().parse::<u8>().ok()))
            .max();
        if let Some(k) = ev.knobs_named(ns, &[&own_key]).pop() {
            f.knobs.push(k);
        }
        f.objects.push(Object {
            kind: "device",
            name: dev,
            netns,
            drops: Some(n),
            detail: effective.map(|e| {
                format!(
                    "effective rp_filter {e} ({}) = max(conf.all {}, conf.DEV {})",
                    match e {
                        1 => "strict",
                        2 => "loose",
                        _ => "off",
                    },
                    all.unwrap_or("?"),
                    own.unwrap_or("?")
                )
            }),
        });
    }
    for s in ev.samples_of(&["IP_RPFILTER"]).take(1) {
        if let Some(src) = &s.packet.src {
            f.evidence.push(format!(
                "e.g. a packet from {src}: no route back to it through the interface it came in"
            ));
        }
    }
}

fn routes(f: &mut Finding, c: &Class, ev: &Evidence) {
    for r in &ev.routes {
        f.objects.push(Object {
            kind: "destination",
            name: r.destination.clone(),
            netns: r.netns.clone(),
            drops: None,
            detail: Some(format!("ip route get: {}", r.answer)),
        });
    }
    if ev.routes.is_empty() {
        ports(f, c, ev);
    }
}

fn backlog(f: &mut Finding, ev: &Evidence) {
    let total: u64 = ev.cpus.iter().map(|c| c.dropped).sum();
    // Sampled drops the backlog hook measured: whose backlog, how long, against what.
    let mut measured: BTreeMap<u32, (u64, u32, Option<u64>)> = BTreeMap::new();
    for b in ev.samples.iter().filter_map(|s| s.backlog.as_ref()) {
        let e = measured.entry(b.cpu).or_insert((0, 0, b.max));
        e.0 += 1;
        e.1 = e.1.max(b.queue);
        e.2 = b.max.or(e.2);
    }
    let limit = |max: Option<u64>| max.map_or_else(|| "?".to_owned(), |m| m.to_string());
    for (cpu, (n, queue, max)) in &measured {
        f.evidence.push(format!(
            "measured by the backlog hook (kprobe enqueue_to_backlog): {n} sampled drop(s) found cpu{cpu}'s backlog at up to {queue} packets against net.core.netdev_max_backlog {}",
            limit(*max)
        ));
    }
    for c in ev.cpus.iter().filter(|c| c.dropped > 0) {
        let mut detail = format!("time_squeeze +{}", c.time_squeeze);
        if let Some((_, queue, max)) = measured.get(&c.cpu) {
            detail.push_str(&format!(", backlog {queue}/{} at the drops", limit(*max)));
        }
        f.objects.push(Object {
            kind: "cpu",
            name: format!("cpu{}", c.cpu),
            netns: None,
            drops: Some(c.dropped),
            detail: Some(detail),
        });
    }
    if let Some(top) = ev.cpus.iter().max_by_key(|c| c.dropped)
        && total > 0
        && ev.cpus.len() > 1
        && top.dropped * 10 >= total * 8
    {
        f.evidence.push(format!(
            "cpu{} took {:.0}% of the backlog drops: receive work is not spread (RSS/RPS)",
            top.cpu,
            top.dropped as f64 * 100.0 / total as f64
        ));
    }
}

fn neighbours(f: &mut Finding, c: &Class, ev: &Evidence) {
    let full = ev.reason_count(&["NEIGH_CREATEFAIL"]) > 0
        || !ev.counter_growth(&["arp_cache.table_fulls"]).is_empty();
    if full {
        f.title =
            "the neighbour (ARP/NDP) table was full: new neighbours could not be added".into();
        f.severity = Severity::Critical;
    } else {
        f.title =
            "neighbours (ARP/NDP) did not answer: packets waiting for them were dropped".into();
        f.fix.retain(|l| !l.starts_with("table full"));
    }
    let mut dsts: BTreeMap<String, u64> = BTreeMap::new();
    for s in ev.samples_of(c.reasons) {
        if let Some(d) = &s.packet.dst {
            *dsts.entry(d.clone()).or_default() += 1;
        }
    }
    for (d, n) in dsts.into_iter().take(10) {
        f.objects.push(Object {
            kind: "destination",
            name: d,
            netns: None,
            drops: Some(n),
            detail: Some("sampled drops".into()),
        });
    }
}

fn qdiscs(f: &mut Finding, c: &Class, ev: &Evidence) {
    for q in &ev.qdiscs {
        f.objects.push(Object {
            kind: "qdisc",
            name: format!("{} on {}", q.kind, q.device),
            netns: q.netns.clone(),
            drops: Some(q.drops),
            detail: q.limit.map(|l| format!("limit {l} packets")),
        });
    }
    for (dev, netns, n) in ev.devices_of(c.reasons) {
        f.objects.push(Object {
            kind: "device",
            name: dev,
            netns,
            drops: Some(n),
            detail: None,
        });
    }
}

fn devices_from_counters(f: &mut Finding, grown: &[&super::evidence::CounterDelta]) {
    for g in grown {
        if let Some(dev) = g
            .name
            .strip_prefix("dev.")
            .and_then(|r| r.rsplit_once('.'))
            .map(|(d, _)| d)
        {
            f.objects.push(Object {
                kind: "device",
                name: dev.to_owned(),
                netns: g.netns.clone(),
                drops: Some(g.delta),
                detail: Some(g.name.clone()),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        diagnose::evidence::{Count, CounterDelta, CpuDelta, Listener, SocketDrop},
        event::{DropRecord, Netfilter},
    };

    fn ns(name: &str) -> Netns {
        Netns {
            inode: 4026532000 + name.len() as u32,
            name: Some(name.to_owned()),
            source: "procfs".into(),
        }
    }

    fn counter(netns: Option<&str>, name: &str, delta: u64) -> CounterDelta {
        CounterDelta {
            netns: netns.map(ns),
            name: name.into(),
            delta,
            now: delta,
        }
    }

    fn knob(netns: Option<&str>, name: &str, value: &str) -> Knob {
        Knob {
            netns: netns.map(ns),
            name: name.into(),
            value: value.into(),
        }
    }

    fn reason(name: &str, count: u64) -> Count {
        Count {
            name: name.into(),
            count,
            inferred: false,
        }
    }

    fn evidence() -> Evidence {
        Evidence {
            duration_s: 10.0,
            kernel_reasons: true,
            ..Default::default()
        }
    }

    fn nf_sample(conntrack: Option<bool>) -> DropRecord {
        let mut r = crate::testdata::drop_record();
        r.reason.name = "NETFILTER_DROP".into();
        r.netfilter = Some(Netfilter {
            family: "ipv4".into(),
            hook: "prerouting".into(),
            via: "ip_rcv".into(),
            conntrack,
        });
        r
    }

    fn classes(f: &[Finding]) -> Vec<&str> {
        f.iter().map(|f| f.class).collect()
    }

    #[test]
    fn conntrack_full_and_a_rule_are_told_apart_with_the_hook() {
        let mut ev = evidence();
        ev.conntrack_hook = true;
        ev.reasons = vec![reason("NETFILTER_DROP", 100)];
        ev.samples = vec![nf_sample(Some(true)); 3];
        ev.samples.push(nf_sample(Some(false)));
        ev.counters = vec![counter(Some("web"), "nf_conntrack.drop", 75)];
        ev.knobs = vec![
            knob(Some("web"), "net.netfilter.nf_conntrack_count", "2"),
            knob(Some("web"), "net.netfilter.nf_conntrack_max", "2"),
            knob(Some("web"), "net.netfilter.nf_conntrack_buckets", "1024"),
        ];
        let f = findings(&ev);
        assert_eq!(classes(&f), vec!["conntrack_full", "firewall_rule"]);
        assert_eq!(f[0].drops, 75);
        assert_eq!(f[0].basis, "measured");
        assert!(
            f[0].evidence
                .iter()
                .any(|e| e == "table: 2 of 2 entries (100%)"),
            "{:?}",
            f[0].evidence
        );
        assert_eq!(f[1].drops, 25);
        assert_eq!(f[1].objects[0].name, "ipv4 prerouting");
        let hooks = f[1].objects.iter().filter(|o| o.kind == "hook").count();
        assert_eq!(hooks, 1, "{:?}", f[1].objects);
    }

    #[test]
    fn without_the_hook_conntrack_drops_come_from_its_counter_and_say_so() {
        let mut ev = evidence();
        ev.reasons = vec![reason("NETFILTER_DROP", 40)];
        ev.counters = vec![counter(None, "nf_conntrack.drop", 40)];
        let f = findings(&ev);
        assert_eq!(
            classes(&f),
            vec!["conntrack_full"],
            "every NETFILTER_DROP is conntrack's"
        );
        assert_eq!(f[0].basis, "inferred");
        assert_eq!(f[0].drops, 40);
    }

    fn socket(protocol: &str, local: &str, drops: u64) -> SocketDrop {
        SocketDrop {
            netns: Some(ns("web")),
            protocol: protocol.into(),
            local: local.into(),
            port: local.rsplit(':').next().unwrap().parse().unwrap(),
            remote: (protocol == "tcp").then(|| "10.0.0.1:40000".to_owned()),
            drops,
            sk_drops: drops + 3,
            rqueue: 2304,
            process: (protocol == "udp").then(|| "python3[42]".to_owned()),
        }
    }

    #[test]
    fn sockets_that_dropped_are_named_in_their_finding() {
        let mut ev = evidence();
        ev.reasons = vec![reason("SOCKET_RCVBUFF", 40), reason("PROTO_MEM", 5)];
        ev.sockets = vec![
            socket("udp", "10.0.0.2:5353", 40),
            socket("tcp", "10.0.0.2:8080", 5),
        ];
        let f = findings(&ev);
        assert_eq!(classes(&f), vec!["udp_rcvbuf", "tcp_memory"]);
        let sockets = |f: &Finding| -> Vec<Object> {
            f.objects
                .iter()
                .filter(|o| o.kind == "socket")
                .cloned()
                .collect()
        };
        assert_eq!(
            sockets(&f[0]),
            vec![Object {
                kind: "socket",
                name: "udp 10.0.0.2:5353".into(),
                netns: Some(ns("web")),
                drops: Some(40),
                detail: Some("sk_drops +40, process python3[42]".into()),
            }]
        );
        assert_eq!(
            sockets(&f[1]),
            vec![Object {
                kind: "socket",
                name: "tcp 10.0.0.2:8080 -> 10.0.0.1:40000".into(),
                netns: Some(ns("web")),
                drops: Some(5),
                detail: Some("sk_drops +5".into()),
            }]
        );
    }

    #[test]
    fn evidence_recorded_before_sockets_still_reads() {
        let mut ev = evidence();
        ev.reasons = vec![reason("SOCKET_RCVBUFF", 40)];
        ev.sockets = vec![socket("udp", "10.0.0.2:5353", 40)];
        let mut json = serde_json::to_value(&ev).unwrap();
        assert_eq!(json["sockets"][0]["local"], "10.0.0.2:5353");
        let back: Evidence = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(back, ev);
        json.as_object_mut().unwrap().remove("sockets");
        let old: Evidence = serde_json::from_value(json).unwrap();
        assert!(old.sockets.is_empty());
        assert!(findings(&old)[0].objects.iter().all(|o| o.kind != "socket"));
    }

    #[test]
    fn accept_queue_syn_queue_and_cookies_are_three_answers() {
        let mut ev = evidence();
        ev.counters = vec![counter(Some("web"), "TcpExt.ListenOverflows", 152)];
        ev.knobs = vec![knob(Some("web"), "net.core.somaxconn", "4096")];
        ev.listeners = vec![Listener {
            netns: Some(ns("web")),
            local: "10.0.0.2:8080".into(),
            port: 8080,
            queue: 2,
            limit: 1,
            process: Some("python3[42]".into()),
        }];
        let f = findings(&ev);
        assert_eq!(classes(&f), vec!["listen_queue"]);
        assert_eq!(f[0].drops, 152);
        assert_eq!(f[0].objects[0].name, "10.0.0.2:8080");
        assert!(
            f[0].evidence.iter().any(|e| e.contains("listen() backlog")),
            "{:?}",
            f[0].evidence
        );

        let mut ev = evidence();
        ev.counters = vec![counter(Some("web"), "TcpExt.TCPReqQFullDrop", 30)];
        ev.knobs = vec![knob(Some("web"), "net.ipv4.tcp_syncookies", "0")];
        let f = findings(&ev);
        assert_eq!(classes(&f), vec!["syn_flood"]);
        assert!(f[0].title.contains("syncookies were off"));
        assert_eq!(f[0].severity, Severity::Critical);
        assert_eq!(f[0].drops, 30);

        let mut ev = evidence();
        ev.counters = vec![counter(None, "TcpExt.SyncookiesSent", 5000)];
        let f = findings(&ev);
        assert_eq!(f[0].class, "syn_flood");
        assert_eq!((f[0].severity, f[0].drops), (Severity::Info, 0));
        assert!(f[0].fix.iter().all(|l| !l.starts_with("SYNs dropped")));
    }

    #[test]
    fn backlog_drops_on_one_cpu_point_at_receive_steering() {
        let mut ev = evidence();
        ev.reasons = vec![reason("CPU_BACKLOG", 900)];
        ev.cpus = vec![
            CpuDelta {
                cpu: 0,
                dropped: 0,
                time_squeeze: 0,
            },
            CpuDelta {
                cpu: 1,
                dropped: 900,
                time_squeeze: 12,
            },
        ];
        ev.knobs = vec![knob(None, "net.core.netdev_max_backlog", "1")];
        let f = findings(&ev);
        assert_eq!(f[0].class, "netdev_backlog");
        assert_eq!(f[0].objects.len(), 1);
        assert_eq!(f[0].objects[0].name, "cpu1");
        assert!(
            f[0].evidence
                .iter()
                .any(|e| e.starts_with("cpu1 took 100%"))
        );
        assert_eq!(f[0].knobs[0].value, "1");
        assert!(f[0].evidence.iter().all(|e| !e.contains("backlog hook")));

        // Where the backlog hook measured the drops, that is evidence of its own.
        let mut sample = crate::testdata::drop_record();
        sample.reason.name = "CPU_BACKLOG".into();
        sample.backlog = Some(crate::event::Backlog {
            cpu: 1,
            queue: 2,
            max: Some(1),
        });
        ev.samples = vec![sample.clone(), sample];
        let f = findings(&ev);
        assert!(
            f[0].evidence.iter().any(|e| e
                == "measured by the backlog hook (kprobe enqueue_to_backlog): 2 sampled drop(s) found cpu1's backlog at up to 2 packets against net.core.netdev_max_backlog 1"),
            "{:?}",
            f[0].evidence
        );
        assert_eq!(
            f[0].objects[0].detail.as_deref(),
            Some("time_squeeze +12, backlog 2/1 at the drops")
        );
    }

    #[test]
    fn a_full_neighbour_table_is_not_a_silent_neighbour() {
        let mut ev = evidence();
        ev.reasons = vec![reason("NEIGH_FAILED", 3)];
        let f = findings(&ev);
        assert!(f[0].title.contains("did not answer"));
        assert!(f[0].fix.iter().all(|l| !l.starts_with("table full")));

        ev.counters = vec![counter(None, "arp_cache.table_fulls", 7)];
        let f = findings(&ev);
        assert!(f[0].title.contains("table was full"));
        assert_eq!(f[0].severity, Severity::Critical);
    }

    #[test]
    fn inferred_reasons_make_an_inferred_finding_with_sampled_ports() {
        let mut ev = evidence();
        ev.kernel_reasons = false;
        ev.reasons = vec![Count {
            inferred: true,
            ..reason("NO_SOCKET", 6)
        }];
        let mut s = crate::testdata::drop_record();
        s.reason.inferred = true;
        ev.samples = vec![s.clone(), s];
        let f = findings(&ev);
        assert_eq!(classes(&f), vec!["no_socket"]);
        assert_eq!(f[0].basis, "inferred");
        assert!(f[0].evidence[0].contains("inferred from where the kernel freed them"));
        assert_eq!(f[0].objects[0].name, "tcp [::1]:9");
        assert_eq!(f[0].objects[0].drops, Some(2));
    }

    #[test]
    fn too_big_names_the_interface_mtu() {
        let mut ev = evidence();
        ev.reasons = vec![reason("PKT_TOO_BIG", 5)];
        ev.knobs = vec![
            knob(Some("vpn"), "dev.wg0.mtu", "1420"),
            knob(None, "net.ipv4.tcp_mtu_probing", "0"),
        ];
        let f = findings(&ev);
        assert_eq!(classes(&f), vec!["mtu"]);
        let names: Vec<_> = f[0]
            .knobs
            .iter()
            .map(|k| (k.name.as_str(), k.value.as_str()))
            .collect();
        assert!(names.contains(&("dev.wg0.mtu", "1420")), "{names:?}");
        assert!(
            names.contains(&("net.ipv4.tcp_mtu_probing", "0")),
            "{names:?}"
        );
    }

    #[test]
    fn unexplained_reasons_are_listed_not_guessed() {
        let mut ev = evidence();
        ev.reasons = vec![reason("NOT_SPECIFIED", 4), reason("NO_SOCKET", 2)];
        assert_eq!(unexplained(&ev), vec![("NOT_SPECIFIED".to_owned(), 4)]);
        assert_eq!(classes(&findings(&ev)), vec!["no_socket"]);
        assert!(findings(&evidence()).is_empty());
    }
}
