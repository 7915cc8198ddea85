//! `stats` reports: one per interval, as text (like vmstat) or one JSON object per line.

use std::io::{self, Write};

use serde::{Deserialize, Serialize};

use crate::{
    aggregate::{self, Counters, GroupBy, GroupKey, Row},
    event::{self, Device, Enricher, Location, Netns, Packet, ReasonInfo, c_str},
    kernel::containers::{Container, OTHER_PODS, Pod},
    output::{ListenerNotice, ReasonCount, SocketNotice, text},
};

/// Growth over the interval and since start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Count {
    pub interval: u64,
    pub total: u64,
    /// Per second over the interval.
    pub rate: f64,
}

/// One group in a report. Which identifying fields are present depends on the grouping:
/// `reason` (reason, location, flow), `location`, `flow` + `netns`, `device` + `netns`,
/// `netns`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupRow {
    /// Human-readable name of the group.
    pub label: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<ReasonRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow: Option<Packet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<Device>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<Netns>,
    /// For `pod` (and `container` when they form one): the pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<Pod>,
    /// For `container`: the containers living in the namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub containers: Option<Vec<Container>>,
    pub interval: u64,
    pub total: u64,
    pub rate: f64,
    /// For `dev`, `netns`, `pod` and `container`: drops per reason since start, most first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<ReasonCount>,
}

/// A reason name and this kernel's number for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReasonRef {
    pub name: String,
    pub code: u32,
    /// True when this kernel reports no reasons and `name` was inferred from the drop
    /// location (only `--by location` can: the other tables keep no location).
    #[serde(default)]
    pub inferred: bool,
}

/// Drops that could not be attributed to a group (a map was full), since start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Untracked {
    pub reason: u64,
    pub location: u64,
    pub device: u64,
    pub flow: u64,
}

/// One interval's report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatsReport {
    pub time: String,
    pub interval_s: f64,
    /// The grouping: `reason`, `location`, `flow`, `dev`, `netns`, `pod` or `container`.
    pub by: String,
    /// Drops that passed the filters (exact).
    pub drops: Count,
    /// Drops the hook saw before filtering.
    pub seen: Count,
    /// Drops the kernel skipped because netdrop's program was already running on that CPU.
    pub missed: u64,
    pub untracked: Untracked,
    /// The groups, most first, at most `--top` of them.
    pub groups: Vec<GroupRow>,
    /// What the groups beyond `--top` add up to.
    pub other: Count,
    /// Listeners blamed for accept-queue drops in the interval (inferred from counters +
    /// sock_diag; see [`ListenerNotice`]).
    #[serde(default)]
    pub listeners: Vec<ListenerNotice>,
    /// Sockets whose own drop count (`sk_drops`) grew in the interval, most first (see
    /// [`SocketNotice`]).
    #[serde(default)]
    pub sockets: Vec<SocketNotice>,
    /// Per-CPU softnet counters over the interval (`/proc/net/softnet_stat`), every CPU
    /// (see [`super::receive`]).
    #[serde(default)]
    pub softnet: Vec<super::receive::SoftnetRow>,
    /// Devices that received or dropped in the interval: their receive counts
    /// (`/proc/net/dev`), netdrop's drops with that device and the ratio.
    #[serde(default)]
    pub devices: Vec<super::receive::DeviceRxRow>,
}

/// Builds the report for the interval from `prev` to `now`.
pub fn report(
    enricher: &mut Enricher,
    by: GroupBy,
    prev: &aggregate::Totals,
    now: &aggregate::Totals,
    sort: aggregate::SortBy,
    top: usize,
    time: String,
) -> StatsReport {
    let dt = now.mono_ns.saturating_sub(prev.mono_ns);
    let count = |interval: u64, total: u64| Count {
        interval,
        total,
        rate: aggregate::rate(interval, dt),
    };
    let mut rows = rows(enricher, by, Some(prev), now);
    aggregate::sort(&mut rows, sort);
    let (kept, other_i, other_t) = aggregate::top_n(rows, if top == 0 { usize::MAX } else { top });
    let groups = kept.iter().map(|r| label(enricher, r, dt)).collect();
    let c: &Counters = &now.counters;
    StatsReport {
        time,
        interval_s: dt as f64 / 1e9,
        by: by.name().to_owned(),
        drops: count(c.matched.saturating_sub(prev.counters.matched), c.matched),
        seen: count(c.seen.saturating_sub(prev.counters.seen), c.seen),
        missed: c.missed,
        untracked: Untracked {
            reason: c.reason_untracked,
            location: c.location_untracked,
            device: c.device_untracked,
            flow: c.flow_untracked,
        },
        groups,
        other: count(other_i, other_t),
        listeners: Vec::new(),
        sockets: Vec::new(),
        softnet: Vec::new(),
        devices: Vec::new(),
    }
}

/// [`aggregate::rows`], with namespace rows merged per pod or per container set for those
/// groupings (what lives in a namespace is read from this host).
pub fn rows(
    e: &mut Enricher,
    by: GroupBy,
    prev: Option<&aggregate::Totals>,
    now: &aggregate::Totals,
) -> Vec<Row> {
    let rows = aggregate::rows(by, prev, now);
    match by {
        GroupBy::Pod => aggregate::regroup(rows, |ns| {
            GroupKey::Pod(if ns == 0 {
                0
            } else {
                e.containers().pod_id(ns)
            })
        }),
        GroupBy::Container => aggregate::regroup(rows, |ns| {
            let has = ns != 0 && e.workload(ns).is_some_and(|w| !w.containers.is_empty());
            GroupKey::Container(if has { ns } else { 0 })
        }),
        _ => rows,
    }
}

/// Names a row.
pub fn label(e: &mut Enricher, r: &Row, dt_ns: u64) -> GroupRow {
    let reason_ref = |e: &mut Enricher, code: u32| ReasonRef {
        name: e.reasons.decode(code).name,
        code,
        inferred: false,
    };
    let mut g = GroupRow {
        label: String::new(),
        reason: None,
        location: None,
        flow: None,
        device: None,
        netns: None,
        pod: None,
        containers: None,
        interval: r.interval,
        total: r.total,
        rate: aggregate::rate(r.interval, dt_ns),
        reasons: Vec::new(),
    };
    let breakdown = |e: &mut Enricher| -> Vec<ReasonCount> {
        r.reasons
            .iter()
            .map(|&(code, count)| {
                let d = e.reasons.decode(code);
                ReasonCount {
                    name: d.name,
                    code,
                    subsystem: d.subsystem,
                    count,
                }
            })
            .collect()
    };
    match r.key {
        GroupKey::Reason(code) => {
            let rr = reason_ref(e, code);
            g.label = rr.name.clone();
            g.reason = Some(rr);
        }
        GroupKey::Location { reason, location } => {
            let loc = e.location(location);
            let ri = ReasonInfo::new(&e.reasons, reason, loc.symbol.as_deref());
            g.label = format!("{} ({})", text::location(&loc), ri.label());
            g.reason = Some(ReasonRef {
                name: ri.name,
                code: ri.code,
                inferred: ri.inferred,
            });
            g.location = Some(loc);
        }
        GroupKey::Flow(k) => {
            let rr = reason_ref(e, k.reason);
            let p = event::flow_packet(&k);
            let ns = e.netns(k.netns, "device");
            let proto = p.protocol.as_deref().or(p.family.as_deref()).unwrap_or("-");
            let where_ = if k.netns == 0 {
                String::new()
            } else {
                format!(" netns {}", text::netns_name(&ns))
            };
            g.label = format!("{proto} {}{where_} ({})", text::flow(&p), rr.name);
            g.reason = Some(rr);
            g.flow = Some(p);
            g.netns = (k.netns != 0).then_some(ns);
        }
        GroupKey::Dev {
            netns,
            ifindex,
            ifname,
        } => {
            let name = if ifindex == 0 {
                "-".to_owned()
            } else {
                c_str(&ifname)
            };
            let ns = e.netns(netns, "device");
            g.label = format!("{name} netns {}", text::netns_name(&ns));
            g.device = (ifindex != 0).then_some(Device { ifindex, name });
            g.netns = (netns != 0).then_some(ns);
            g.reasons = breakdown(e);
        }
        GroupKey::Netns(netns) => {
            let ns = e.netns(netns, "device");
            g.label = if netns == 0 {
                "(unknown)".to_owned()
            } else {
                text::netns_name(&ns)
            };
            g.netns = (netns != 0).then_some(ns);
            g.reasons = breakdown(e);
        }
        GroupKey::Pod(id) => {
            g.pod = e.containers().pod(id).cloned();
            g.label = match &g.pod {
                Some(p) => p.label(),
                None if id == OTHER_PODS => "(other pods)".to_owned(),
                None => "(not in a pod)".to_owned(),
            };
            g.reasons = breakdown(e);
        }
        GroupKey::Container(netns) => {
            let w = e.workload(netns).filter(|_| netns != 0).cloned();
            g.label = match &w {
                Some(w) => {
                    let ns = text::netns_name(&e.netns(netns, "device"));
                    match &w.pod {
                        Some(p) => {
                            format!("{} (pod {}, netns {ns})", w.container_label(), p.label())
                        }
                        None => format!("{} (netns {ns})", w.container_label()),
                    }
                }
                None => "(not in a container)".to_owned(),
            };
            if let Some(w) = w {
                g.netns = Some(e.netns(netns, "device"));
                g.containers = Some(w.containers);
                g.pod = w.pod;
            }
            g.reasons = breakdown(e);
        }
    }
    // Labels are shown in terminals (stats, top): device and namespace names escaped.
    if let std::borrow::Cow::Owned(safe) = super::printable::printable(&g.label) {
        g.label = safe;
    }
    g
}

/// Text form of a report.
pub fn write_text(out: &mut impl Write, r: &StatsReport, local_time: &str) -> io::Result<()> {
    writeln!(
        out,
        "{local_time}  {:.0} drops/s ({} in {:.1}s, {} total) by {}",
        r.drops.rate, r.drops.interval, r.interval_s, r.drops.total, r.by
    )?;
    if !r.groups.is_empty() {
        writeln!(
            out,
            "{:>12} {:>12} {:>6}  {}",
            "drops/s", "total", "share", r.by
        )?;
    }
    for g in &r.groups {
        let share = if r.drops.interval > 0 {
            format!(
                "{:.1}%",
                100.0 * g.interval as f64 / r.drops.interval as f64
            )
        } else {
            "-".to_owned()
        };
        let mut label = g.label.clone();
        if !g.reasons.is_empty() {
            let top: Vec<String> = g
                .reasons
                .iter()
                .take(3)
                .map(|x| format!("{} {}", x.name, x.count))
                .collect();
            label.push_str(&format!("  [{}]", top.join(", ")));
        }
        writeln!(out, "{:>12.1} {:>12} {share:>6}  {label}", g.rate, g.total)?;
    }
    if r.other.total > 0 {
        writeln!(
            out,
            "{:>12.1} {:>12} {:>6}  (other)",
            r.other.rate, r.other.total, ""
        )?;
    }
    let u = &r.untracked;
    if u.location + u.device + u.flow + u.reason + r.missed > 0 {
        writeln!(
            out,
            "  not attributed (map full): {} to locations, {} to devices, {} to flows, {} to reasons; not traced (nested): {}",
            u.location, u.device, u.flow, u.reason, r.missed
        )?;
    }
    if !r.listeners.is_empty() {
        writeln!(
            out,
            "  listeners that dropped connection attempts (from counters + sock_diag):"
        )?;
        for l in &r.listeners {
            writeln!(out, "   {}", text::listener_line(l, "").trim_start())?;
        }
    }
    if !r.sockets.is_empty() {
        writeln!(out, "  sockets that dropped (sk_drops, from sock_diag):")?;
        for s in &r.sockets {
            writeln!(out, "   {}", text::socket_line(s))?;
        }
    }
    super::receive::write_text(out, &r.softnet, &r.devices)?;
    writeln!(out)
}

#[cfg(test)]
mod tests {
    use netdrop_common::FlowKey;

    use super::*;
    use crate::{
        aggregate::Totals,
        kernel::{reasons::Reasons, tracefs::Format},
        testdata,
    };

    fn enricher() -> Enricher {
        let f = Format::parse(&testdata::read("tracefs/kfree_skb-6.18.format")).unwrap();
        let reasons = Reasons::from_symbolic(&f.symbolic_values()).unwrap();
        Enricher::new(
            reasons,
            &testdata::path("kallsyms/6.1-with-veth"),
            &testdata::path(""),
        )
    }

    fn flow(reason: u32, dport: u16) -> FlowKey {
        let mut k = FlowKey {
            reason,
            netns: 0,
            l3_proto: 0x0800,
            l4_proto: 17,
            _pad: 0,
            sport: 40000,
            dport,
            saddr: [0; 16],
            daddr: [0; 16],
        };
        k.saddr[..4].copy_from_slice(&[10, 0, 0, 1]);
        k.daddr[..4].copy_from_slice(&[10, 0, 0, 2]);
        k
    }

    fn totals(mono_ns: u64, n: u64) -> Totals {
        let mut t = Totals {
            mono_ns,
            ..Default::default()
        };
        t.counters.matched = 3 * n;
        t.counters.seen = 3 * n + 1;
        t.counters.flow_untracked = 2;
        t.by_reason.insert(3, 2 * n);
        t.by_reason.insert(12, n);
        t.by_flow.insert(flow(3, 53), 2 * n);
        t.by_flow.insert(flow(12, 443), n);
        t.by_location.insert(
            netdrop_common::LocationKey {
                reason: 3,
                _pad: 0,
                location: 0xffffffffaa48bc60 + 0x4bc,
            },
            2 * n,
        );
        t
    }

    #[test]
    fn reasons_report_shape_and_json() {
        let mut e = enricher();
        let r = report(
            &mut e,
            GroupBy::Reason,
            &totals(0, 10),
            &totals(2_000_000_000, 30),
            aggregate::SortBy::Rate,
            1,
            "t".into(),
        );
        assert_eq!(
            r.drops,
            Count {
                interval: 60,
                total: 90,
                rate: 30.0
            }
        );
        assert_eq!(r.groups.len(), 1);
        assert_eq!(r.groups[0].label, "NO_SOCKET");
        assert_eq!((r.groups[0].interval, r.groups[0].total), (40, 60));
        assert_eq!(
            r.other,
            Count {
                interval: 20,
                total: 30,
                rate: 10.0
            }
        );
        assert_eq!(r.untracked.flow, 2);
        let v: serde_json::Value = serde_json::to_value(&r).unwrap();
        assert_eq!(v["by"], "reason");
        assert_eq!(v["groups"][0]["reason"]["name"], "NO_SOCKET");
        assert_eq!(v["groups"][0]["interval"], 40);
        assert!(
            v["groups"][0].get("flow").is_none(),
            "absent fields are left out"
        );
        let back: StatsReport = serde_json::from_value(v).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn flows_and_locations_are_labelled() {
        let mut e = enricher();
        let r = report(
            &mut e,
            GroupBy::Flow,
            &totals(0, 0),
            &totals(1_000_000_000, 5),
            aggregate::SortBy::Total,
            10,
            "t".into(),
        );
        assert_eq!(
            r.groups[0].label,
            "udp 10.0.0.1:40000 -> 10.0.0.2:53 (NO_SOCKET)"
        );
        assert_eq!(r.groups[0].flow.as_ref().unwrap().dport, Some(53));
        let r = report(
            &mut e,
            GroupBy::Location,
            &totals(0, 0),
            &totals(1_000_000_000, 5),
            aggregate::SortBy::Total,
            10,
            "t".into(),
        );
        assert_eq!(r.groups[0].label, "__udp4_lib_rcv+0x4bc (NO_SOCKET)");
        let mut out = Vec::new();
        write_text(&mut out, &r, "04:50:01").unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("04:50:01  15 drops/s (15 in 1.0s, 15 total) by location\n"),
            "{text}"
        );
        assert!(
            text.contains("        10.0           10  66.7%  __udp4_lib_rcv+0x4bc (NO_SOCKET)"),
            "{text}"
        );
        assert!(text.contains("2 to flows"));
        assert_eq!(r.groups[0].reason.as_ref().map(|r| r.inferred), Some(false));
    }

    #[test]
    fn locations_name_an_inferred_reason_on_kernels_without_reasons() {
        let mut e = Enricher::new(
            crate::kernel::reasons::Reasons::none(),
            &testdata::path("kallsyms/6.1-with-veth"),
            &testdata::path(""),
        );
        let mut t = Totals {
            mono_ns: 1_000_000_000,
            ..Default::default()
        };
        for (location, n) in [
            (0xffffffffaa48bc60 + 0x4bc, 5), // __udp4_lib_rcv
            (0xffffffffaa3aeb40 + 0x10, 2),  // __netif_receive_skb_core: not in the table
        ] {
            let key = netdrop_common::LocationKey {
                reason: 0,
                _pad: 0,
                location,
            };
            t.by_location.insert(key, n);
        }
        let r = report(
            &mut e,
            GroupBy::Location,
            &Totals::default(),
            &t,
            aggregate::SortBy::Total,
            10,
            "t".into(),
        );
        let labels: Vec<&str> = r.groups.iter().map(|g| g.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "__udp4_lib_rcv+0x4bc (NO_SOCKET?)",
                "__netif_receive_skb_core.constprop.0+0x10 (UNKNOWN)"
            ]
        );
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["groups"][0]["reason"]["inferred"], true);
        assert_eq!(v["groups"][1]["reason"]["inferred"], false);
    }

    #[test]
    fn pods_and_containers_group_their_namespaces() {
        let root = crate::kernel::containers::testing::fake_root("stats");
        let f = Format::parse(&testdata::read("tracefs/kfree_skb-6.18.format")).unwrap();
        let reasons = Reasons::from_symbolic(&f.symbolic_values()).unwrap();
        let mut e = Enricher::new(reasons, &testdata::path("kallsyms/6.1-with-veth"), &root);
        let key = |reason, netns, ifindex| netdrop_common::DeviceKey {
            reason,
            netns,
            ifindex,
            _pad: 0,
            ifname: [0; 16],
        };
        let mut t = Totals {
            mono_ns: 1_000_000_000,
            ..Default::default()
        };
        for (k, n) in [
            (key(3, 200, 1), 5),
            (key(12, 200, 2), 2),
            (key(3, 300, 1), 9),
            (key(3, 100, 1), 1),
        ] {
            t.by_device.insert(k, n);
        }
        let by = |e: &mut Enricher, g| {
            report(
                e,
                g,
                &Totals::default(),
                &t,
                aggregate::SortBy::Total,
                0,
                "t".into(),
            )
        };
        let r = by(&mut e, GroupBy::Pod);
        let rows: Vec<(&str, u64)> = r
            .groups
            .iter()
            .map(|g| (g.label.as_str(), g.total))
            .collect();
        assert_eq!(rows, [("(not in a pod)", 10), ("shop/web-0", 7)]);
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["by"], "pod");
        assert_eq!(v["groups"][1]["pod"]["namespace"], "shop");
        assert_eq!(v["groups"][1]["reasons"][0]["name"], "NO_SOCKET");
        assert_eq!(v["groups"][1]["reasons"][1]["count"], 2);
        assert!(v["groups"][0].get("pod").is_none());
        let r = by(&mut e, GroupBy::Container);
        let rows: Vec<(&str, u64)> = r
            .groups
            .iter()
            .map(|g| (g.label.as_str(), g.total))
            .collect();
        // The Docker container's name is escaped for the terminal.
        assert_eq!(
            rows,
            [
                ("redis\\x1b[2J (netns 300)", 9),
                ("app,containerd:cccccccccccc (pod shop/web-0, netns 200)", 7),
                ("(not in a container)", 1),
            ]
        );
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["groups"][1]["containers"][0]["name"], "app");
        assert_eq!(v["groups"][1]["netns"]["inode"], 200);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
