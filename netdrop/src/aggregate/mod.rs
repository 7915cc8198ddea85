//! Exact in-kernel counts turned into histograms: group, difference between two reads,
//! rate, sort, and bound to the top N. Pure functions over [`Totals`], so tests feed them
//! without a kernel.

pub mod held;
pub mod listeners;
pub mod sockets;

use std::collections::{BTreeMap, HashMap};

use clap::ValueEnum;
use netdrop_common::{DeviceKey, FlowKey, LocationKey, config};

use crate::{kernel::reasons::Reasons, output::ReasonCount};

/// How drops are grouped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, ValueEnum)]
pub enum GroupBy {
    /// Drop reason.
    Reason,
    /// Kernel function (and offset) that dropped, with the reason.
    Location,
    /// Flow: protocol, addresses, ports, namespace, with the reason.
    Flow,
    /// Device and namespace.
    Dev,
    /// Network namespace.
    Netns,
    /// Kubernetes pod owning the network namespace (namespaces without one summed).
    Pod,
    /// Containers living in the network namespace (those sharing one, as in a pod, form one
    /// group; namespaces without containers summed).
    Container,
}

impl GroupBy {
    /// Every grouping, in the order `top` cycles through them.
    pub const ALL: [GroupBy; 7] = [
        Self::Reason,
        Self::Location,
        Self::Flow,
        Self::Dev,
        Self::Netns,
        Self::Pod,
        Self::Container,
    ];

    /// Kernel map(s) this grouping reads (`netdrop_common::config` bits).
    pub const fn config(self) -> u32 {
        match self {
            Self::Reason => config::BY_REASON,
            Self::Location => config::BY_REASON | config::BY_LOCATION,
            Self::Flow => config::BY_REASON | config::BY_FLOW,
            Self::Dev | Self::Netns | Self::Pod | Self::Container => {
                config::BY_REASON | config::BY_DEVICE
            }
        }
    }

    /// Name as given on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Reason => "reason",
            Self::Location => "location",
            Self::Flow => "flow",
            Self::Dev => "dev",
            Self::Netns => "netns",
            Self::Pod => "pod",
            Self::Container => "container",
        }
    }
}

/// Kernel-side counters, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Drops the hook saw.
    pub seen: u64,
    /// Drops that passed the filters.
    pub matched: u64,
    /// Events the ring buffer had no room for.
    pub lost: u64,
    pub location_untracked: u64,
    pub device_untracked: u64,
    pub flow_untracked: u64,
    pub reason_untracked: u64,
    pub stack_errors: u64,
    /// Matched drops the rate limit kept out of the ring buffer (counted, not shown).
    pub suppressed: u64,
    /// Matched drops past the event budget (`watch --budget`): counted per reason and
    /// location, not examined further.
    pub over_budget: u64,
    /// Drops the kernel did not run our program for, because it was already running on
    /// that CPU (a drop inside an interrupt that hit during another drop).
    pub missed: u64,
}

/// Cumulative kernel counts at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// CLOCK_MONOTONIC nanoseconds of the read.
    pub mono_ns: u64,
    pub counters: Counters,
    pub by_reason: HashMap<u32, u64>,
    pub by_location: HashMap<LocationKey, u64>,
    pub by_device: HashMap<DeviceKey, u64>,
    pub by_flow: HashMap<FlowKey, u64>,
}

/// What a row counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GroupKey {
    Reason(u32),
    Location {
        reason: u32,
        location: u64,
    },
    Flow(FlowKey),
    Dev {
        netns: u32,
        ifindex: u32,
        ifname: [u8; 16],
    },
    Netns(u32),
    /// A pod by its grouping id (`Containers::pod_id`); 0: not in a pod.
    Pod(u32),
    /// The containers of a network namespace, by its inode; 0: not in a container.
    Container(u32),
}

/// One row of a histogram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub key: GroupKey,
    /// Drops since netdrop started.
    pub total: u64,
    /// Drops since the previous read.
    pub interval: u64,
    /// For device and namespace rows: drops per reason since start, most first.
    pub reasons: Vec<(u32, u64)>,
}

impl Totals {
    /// Totals per group. Devices and namespaces sum over reasons (keeping the breakdown).
    /// Pods and containers are grouped by namespace here: [`regroup`] merges those rows
    /// under what lives in each namespace, which only the host can tell.
    pub fn grouped(&self, by: GroupBy) -> HashMap<GroupKey, (u64, HashMap<u32, u64>)> {
        let mut out: HashMap<GroupKey, (u64, HashMap<u32, u64>)> = HashMap::new();
        let mut add = |k: GroupKey, reason: u32, n: u64| {
            let e = out.entry(k).or_default();
            e.0 += n;
            *e.1.entry(reason).or_default() += n;
        };
        match by {
            GroupBy::Reason => self
                .by_reason
                .iter()
                .for_each(|(&r, &n)| add(GroupKey::Reason(r), r, n)),
            GroupBy::Location => self.by_location.iter().for_each(|(k, &n)| {
                add(
                    GroupKey::Location {
                        reason: k.reason,
                        location: k.location,
                    },
                    k.reason,
                    n,
                )
            }),
            GroupBy::Flow => self
                .by_flow
                .iter()
                .for_each(|(k, &n)| add(GroupKey::Flow(*k), k.reason, n)),
            GroupBy::Dev => self.by_device.iter().for_each(|(k, &n)| {
                add(
                    GroupKey::Dev {
                        netns: k.netns,
                        ifindex: k.ifindex,
                        ifname: k.ifname,
                    },
                    k.reason,
                    n,
                )
            }),
            GroupBy::Netns | GroupBy::Pod | GroupBy::Container => self
                .by_device
                .iter()
                .for_each(|(k, &n)| add(GroupKey::Netns(k.netns), k.reason, n)),
        }
        out
    }
}

/// Rows for `by`: totals at `now`, and growth since `prev` (everything, without `prev`).
pub fn rows(by: GroupBy, prev: Option<&Totals>, now: &Totals) -> Vec<Row> {
    let before = prev.map(|p| p.grouped(by)).unwrap_or_default();
    now.grouped(by)
        .into_iter()
        .map(|(key, (total, reasons))| {
            let was = before.get(&key).map_or(0, |b| b.0);
            let mut reasons: Vec<(u32, u64)> = reasons.into_iter().collect();
            reasons.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            Row {
                key,
                total,
                interval: total.saturating_sub(was),
                reasons,
            }
        })
        .collect()
}

/// Rows grouped by namespace merged under `key(netns)`: totals, intervals and per-reason
/// counts add up. Rows of other groupings are kept as they are.
pub fn regroup(rows: Vec<Row>, mut key: impl FnMut(u32) -> GroupKey) -> Vec<Row> {
    let mut merged: BTreeMap<GroupKey, (u64, u64, HashMap<u32, u64>)> = BTreeMap::new();
    let mut out = Vec::new();
    for r in rows {
        let GroupKey::Netns(ns) = r.key else {
            out.push(r);
            continue;
        };
        let e = merged.entry(key(ns)).or_default();
        e.0 += r.total;
        e.1 += r.interval;
        for (reason, n) in r.reasons {
            *e.2.entry(reason).or_default() += n;
        }
    }
    out.extend(merged.into_iter().map(|(key, (total, interval, reasons))| {
        let mut reasons: Vec<(u32, u64)> = reasons.into_iter().collect();
        reasons.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        Row {
            key,
            total,
            interval,
            reasons,
        }
    }));
    out
}

/// Sort order for rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SortBy {
    /// Drops in the last interval, then total.
    Rate,
    /// Drops since start.
    Total,
}

impl SortBy {
    /// The other order (for `top`'s key).
    pub fn next(self) -> Self {
        match self {
            Self::Rate => Self::Total,
            Self::Total => Self::Rate,
        }
    }
}

/// Sorts most first; ties by key, so the order is stable between refreshes.
pub fn sort(rows: &mut [Row], by: SortBy) {
    rows.sort_by(|a, b| {
        let (ka, kb) = match by {
            SortBy::Rate => ((a.interval, a.total), (b.interval, b.total)),
            SortBy::Total => ((a.total, a.interval), (b.total, b.interval)),
        };
        kb.cmp(&ka).then_with(|| a.key.cmp(&b.key))
    });
}

/// Keeps the first `n` rows and folds the rest into one "other" count: (kept, other
/// interval, other total). Label sets stay bounded whatever the traffic.
pub fn top_n(mut rows: Vec<Row>, n: usize) -> (Vec<Row>, u64, u64) {
    if rows.len() <= n {
        return (rows, 0, 0);
    }
    let rest = rows.split_off(n);
    let (i, t) = rest
        .iter()
        .fold((0, 0), |(i, t), r| (i + r.interval, t + r.total));
    (rows, i, t)
}

/// Events per second over `dt_ns`.
pub fn rate(count: u64, dt_ns: u64) -> f64 {
    if dt_ns == 0 {
        0.0
    } else {
        count as f64 * 1e9 / dt_ns as f64
    }
}

/// Per-reason counts (code, drops) to a histogram, most drops first, ties by name.
pub fn reason_histogram(counts: &[(u32, u64)], reasons: &Reasons) -> Vec<ReasonCount> {
    let mut out: Vec<ReasonCount> = counts
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|&(code, count)| {
            let r = reasons.decode(code);
            ReasonCount {
                name: r.name,
                code,
                subsystem: r.subsystem,
                count,
            }
        })
        .collect();
    out.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.name.cmp(&b.name)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{kernel::tracefs::Format, testdata};

    fn dev(reason: u32, netns: u32, ifindex: u32, name: &str) -> DeviceKey {
        let mut ifname = [0u8; 16];
        ifname[..name.len()].copy_from_slice(name.as_bytes());
        DeviceKey {
            reason,
            netns,
            ifindex,
            _pad: 0,
            ifname,
        }
    }

    fn totals(mono_ns: u64, reason: &[(u32, u64)], devices: &[(DeviceKey, u64)]) -> Totals {
        Totals {
            mono_ns,
            by_reason: reason.iter().copied().collect(),
            by_device: devices.iter().copied().collect(),
            ..Default::default()
        }
    }

    #[test]
    fn sorted_by_count_then_name() {
        let f = Format::parse(&testdata::read("tracefs/kfree_skb-6.18.format")).unwrap();
        let reasons = Reasons::from_symbolic(&f.symbolic_values()).unwrap();
        let h = reason_histogram(&[(6, 5), (3, 9), (2, 5), (11, 0)], &reasons);
        let names: Vec<_> = h.iter().map(|r| (r.name.as_str(), r.count)).collect();
        assert_eq!(
            names,
            [
                ("NO_SOCKET", 9),
                ("NOT_SPECIFIED", 5),
                ("SOCKET_RCVBUFF", 5)
            ]
        );
    }

    #[test]
    fn intervals_are_differences_of_totals() {
        let t0 = totals(0, &[(3, 10), (12, 5)], &[]);
        let t1 = totals(2_000_000_000, &[(3, 30), (12, 5), (6, 4)], &[]);
        let mut r = rows(GroupBy::Reason, Some(&t0), &t1);
        sort(&mut r, SortBy::Rate);
        let got: Vec<_> = r.iter().map(|r| (r.key, r.interval, r.total)).collect();
        assert_eq!(
            got,
            [
                (GroupKey::Reason(3), 20, 30),
                (GroupKey::Reason(6), 4, 4),
                (GroupKey::Reason(12), 0, 5)
            ]
        );
        assert_eq!(rate(20, t1.mono_ns - t0.mono_ns), 10.0);
        sort(&mut r, SortBy::Total);
        assert_eq!(r[1].key, GroupKey::Reason(12));
        // First read: everything counts as the interval.
        let first = rows(GroupBy::Reason, None, &t0);
        assert!(first.iter().all(|r| r.interval == r.total));
    }

    #[test]
    fn devices_and_namespaces_sum_over_reasons() {
        let t = totals(
            0,
            &[],
            &[
                (dev(3, 100, 2, "eth0"), 7),
                (dev(12, 100, 2, "eth0"), 3),
                (dev(3, 200, 1, "lo"), 1),
            ],
        );
        let mut by_dev = rows(GroupBy::Dev, None, &t);
        sort(&mut by_dev, SortBy::Total);
        assert_eq!(by_dev[0].total, 10);
        assert_eq!(by_dev[0].reasons, vec![(3, 7), (12, 3)]);
        let mut by_ns = rows(GroupBy::Netns, None, &t);
        sort(&mut by_ns, SortBy::Total);
        assert_eq!(
            by_ns.iter().map(|r| (r.key, r.total)).collect::<Vec<_>>(),
            [(GroupKey::Netns(100), 10), (GroupKey::Netns(200), 1)]
        );
    }

    #[test]
    fn namespaces_regroup_under_pods() {
        let t0 = totals(0, &[], &[(dev(3, 100, 2, "eth0"), 1)]);
        let t1 = totals(
            1,
            &[],
            &[
                (dev(3, 100, 2, "eth0"), 7),
                (dev(12, 100, 1, "lo"), 3),
                (dev(3, 200, 1, "lo"), 1),
                (dev(3, 300, 1, "lo"), 4),
                (dev(3, 0, 0, ""), 2),
            ],
        );
        let rows = rows(GroupBy::Pod, Some(&t0), &t1);
        // Namespaces 100 and 300 are pod 1's (a pod recreated with a new sandbox), 200
        // pod 2's, the rest no pod's.
        let mut got = regroup(rows, |ns| {
            GroupKey::Pod(match ns {
                100 | 300 => 1,
                200 => 2,
                _ => 0,
            })
        });
        sort(&mut got, SortBy::Total);
        let summary: Vec<_> = got
            .iter()
            .map(|r| (r.key, r.total, r.interval, r.reasons.clone()))
            .collect();
        assert_eq!(
            summary,
            [
                (GroupKey::Pod(1), 14, 13, vec![(3, 11), (12, 3)]),
                (GroupKey::Pod(0), 2, 2, vec![(3, 2)]),
                (GroupKey::Pod(2), 1, 1, vec![(3, 1)]),
            ]
        );
        assert_eq!(GroupBy::Pod.config(), GroupBy::Netns.config());
    }

    #[test]
    fn top_n_bounds_rows_and_keeps_the_remainder() {
        let t = totals(0, &[(1, 5), (2, 4), (3, 3), (4, 2)], &[]);
        let mut r = rows(GroupBy::Reason, None, &t);
        sort(&mut r, SortBy::Total);
        let (kept, other_i, other_t) = top_n(r, 2);
        assert_eq!(kept.len(), 2);
        assert_eq!((other_i, other_t), (5, 5));
        let (kept, o, _) = top_n(rows(GroupBy::Reason, None, &t), 10);
        assert_eq!((kept.len(), o), (4, 0));
    }

    #[test]
    fn each_grouping_names_its_maps() {
        assert_eq!(GroupBy::Reason.config(), config::BY_REASON);
        assert!(GroupBy::Flow.config() & config::BY_FLOW != 0);
        assert!(GroupBy::Netns.config() & config::BY_DEVICE != 0);
    }
}
