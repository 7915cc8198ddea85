//! What `diagnose` observed, as plain data: the rules read only this, so tests can feed
//! them recorded evidence without a kernel, and `--json` shows it whole.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{
    diagnose::nft::DropRule,
    event::{DropRecord, Netns, Packet},
};

/// Everything one diagnosis is based on.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// How long drops and counters were watched.
    pub duration_s: f64,
    /// `uname -r`.
    pub kernel: String,
    /// The kfree_skb hook that was attached.
    pub hook: String,
    /// The kernel names drop reasons (5.17+); otherwise every reason is UNKNOWN.
    pub kernel_reasons: bool,
    /// NETFILTER_DROPs were told apart as conntrack's (kprobes on nf_conntrack_in).
    pub conntrack_hook: bool,
    /// Drops that passed the filters, exact.
    pub drops: u64,
    /// Drops per reason, most first.
    pub reasons: Vec<Count>,
    /// Drops per (reason, kernel function), most first.
    pub locations: Vec<LocationCount>,
    /// Drops per (reason, flow), most first, at most a few dozen.
    pub flows: Vec<FlowCount>,
    /// Drops per (reason, device, namespace), most first.
    pub devices: Vec<DeviceCount>,
    /// A few whole drop records per reason (tuples, devices, netfilter hooks).
    pub samples: Vec<DropRecord>,
    /// Kernel counters that grew, per namespace (`None`: global).
    pub counters: Vec<CounterDelta>,
    /// Per-CPU softnet growth: the netdev backlog of each CPU.
    pub cpus: Vec<CpuDelta>,
    /// Settings read at the end, per namespace (`None`: host-wide or netdrop's own).
    pub knobs: Vec<Knob>,
    /// Listening sockets and their queues where listen drops grew.
    pub listeners: Vec<Listener>,
    /// Sockets whose own drop count (`sk_drops`, read through sock_diag each second)
    /// grew during the watch, the most first. Absent in evidence recorded before it
    /// existed.
    #[serde(default)]
    pub sockets: Vec<SocketDrop>,
    /// nftables rules that could have dropped the sampled NETFILTER_DROPs.
    pub firewall: Vec<FirewallMatch>,
    /// `ip route get` for destinations that had no route.
    pub routes: Vec<Route>,
    /// Queueing disciplines that dropped, per device.
    pub qdiscs: Vec<Qdisc>,
    /// What could not be seen on this kernel or machine, one sentence each.
    pub unavailable: Vec<String>,
}

/// A count by name (a drop reason).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Count {
    pub name: String,
    pub count: u64,
    /// The kernel gave no reason: netdrop inferred it from where the packets were freed.
    #[serde(default)]
    pub inferred: bool,
}

impl Count {
    /// Sums `(name, inferred, count)` per name and inference, as reasons inferred from
    /// several locations add up to one count (kernels without reasons).
    pub fn summed(parts: impl IntoIterator<Item = (String, bool, u64)>) -> Vec<Self> {
        let mut by_name: std::collections::BTreeMap<(String, bool), u64> =
            std::collections::BTreeMap::new();
        for (name, inferred, n) in parts {
            *by_name.entry((name, inferred)).or_default() += n;
        }
        by_name
            .into_iter()
            .map(|((name, inferred), count)| Self {
                name,
                count,
                inferred,
            })
            .collect()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocationCount {
    pub reason: String,
    /// `symbol+0xoff`, or the address.
    pub location: String,
    pub count: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FlowCount {
    pub reason: String,
    pub packet: Packet,
    pub netns: Option<Netns>,
    pub count: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeviceCount {
    pub reason: String,
    pub device: String,
    pub netns: Option<Netns>,
    pub count: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CounterDelta {
    pub netns: Option<Netns>,
    /// e.g. `TcpExt.ListenOverflows`, `nf_conntrack.drop`, `dev.eth0.rx_fifo`.
    pub name: String,
    pub delta: u64,
    /// The value at the end.
    pub now: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuDelta {
    pub cpu: u32,
    /// Packets dropped because this CPU's backlog was full.
    pub dropped: u64,
    /// Times this CPU ran out of budget with packets left.
    pub time_squeeze: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Knob {
    pub netns: Option<Netns>,
    /// sysctl name (`net.core.somaxconn`), or a setting of an object
    /// (`dev.eth0.mtu`).
    pub name: String,
    pub value: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listener {
    pub netns: Option<Netns>,
    /// `address:port`.
    pub local: String,
    pub port: u16,
    /// Connections waiting in the accept queue.
    pub queue: u32,
    /// The accept queue's limit: min(listen() backlog, net.core.somaxconn).
    pub limit: u32,
    /// Owning process, `comm[pid]`, when found.
    pub process: Option<String>,
}

/// A socket that dropped while watched, by its own count (`sk_drops`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SocketDrop {
    pub netns: Option<Netns>,
    /// `tcp` or `udp`.
    pub protocol: String,
    /// `address:port` (`[address]:port` for IPv6).
    pub local: String,
    pub port: u16,
    /// `address:port` of the peer of a connected socket.
    pub remote: Option<String>,
    /// Growth of `sk_drops` over the watch (from the socket's first sighting).
    pub drops: u64,
    /// `sk_drops` when last read: drops since the socket was created.
    pub sk_drops: u64,
    /// The longest receive queue seen, in bytes.
    pub rqueue: u32,
    /// Owning process, `comm[pid]`, when found.
    pub process: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirewallMatch {
    pub netns: Option<Netns>,
    pub rule: DropRule,
    /// Every condition of the rule matches a sampled packet (`true`), or the rule could
    /// not be read completely and might be the one (`false`).
    pub certain: bool,
    /// Sampled drops it matches.
    pub packets: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub netns: Option<Netns>,
    pub destination: String,
    /// What `ip route get` answered (or its error).
    pub answer: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Qdisc {
    pub netns: Option<Netns>,
    pub device: String,
    /// e.g. `pfifo`, `fq_codel`, `tbf`.
    pub kind: String,
    /// Packet limit, when the qdisc has one.
    pub limit: Option<u64>,
    /// Drops counted by the qdisc since it was created.
    pub drops: u64,
}

impl Evidence {
    /// Drops of reasons named in `names` (exact names, or prefixes ending in `_*`).
    pub fn reason_count(&self, names: &[&str]) -> u64 {
        self.reasons
            .iter()
            .filter(|r| names.iter().any(|n| reason_matches(n, &r.name)))
            .map(|r| r.count)
            .sum()
    }

    /// Growth of counters named in `names` (exact, or a `dev.*.x` pattern), per namespace.
    pub fn counter_growth(&self, names: &[&str]) -> Vec<&CounterDelta> {
        self.counters
            .iter()
            .filter(|c| c.delta > 0 && names.iter().any(|n| counter_matches(n, &c.name)))
            .collect()
    }

    /// The value of knob `name` in `netns` (falling back to the value read outside any
    /// namespace, for host-wide settings).
    pub fn knob(&self, netns: Option<u32>, name: &str) -> Option<&str> {
        let of = |ns: Option<u32>| {
            self.knobs
                .iter()
                .find(|k| k.name == name && k.netns.as_ref().map(|n| n.inode) == ns)
        };
        of(netns).or_else(|| of(None)).map(|k| k.value.as_str())
    }

    /// Knobs read for `netns` (and host-wide) whose names are in `names`.
    pub fn knobs_named(&self, netns: Option<u32>, names: &[&str]) -> Vec<Knob> {
        let mut out = Vec::new();
        for n in names {
            if let Some(k) = self
                .knobs
                .iter()
                .find(|k| k.name == *n && k.netns.as_ref().map(|x| x.inode) == netns)
                .or_else(|| {
                    self.knobs
                        .iter()
                        .find(|k| k.name == *n && k.netns.is_none())
                })
            {
                out.push(k.clone());
            }
        }
        out
    }

    /// Samples of reasons in `names`.
    pub fn samples_of<'a>(&'a self, names: &'a [&str]) -> impl Iterator<Item = &'a DropRecord> {
        self.samples
            .iter()
            .filter(move |s| names.iter().any(|n| reason_matches(n, &s.reason.name)))
    }

    /// Flows of reasons in `names`.
    pub fn flows_of<'a>(&'a self, names: &'a [&str]) -> impl Iterator<Item = &'a FlowCount> {
        self.flows
            .iter()
            .filter(move |f| names.iter().any(|n| reason_matches(n, &f.reason)))
    }

    /// Devices of reasons in `names`, summed per (device, namespace), most first.
    pub fn devices_of(&self, names: &[&str]) -> Vec<(String, Option<Netns>, u64)> {
        let mut sum: BTreeMap<(String, Option<u32>), (Option<Netns>, u64)> = BTreeMap::new();
        for d in self
            .devices
            .iter()
            .filter(|d| names.iter().any(|n| reason_matches(n, &d.reason)))
        {
            let e = sum
                .entry((d.device.clone(), d.netns.as_ref().map(|n| n.inode)))
                .or_insert((d.netns.clone(), 0));
            e.1 += d.count;
        }
        let mut out: Vec<_> = sum
            .into_iter()
            .map(|((d, _), (ns, n))| (d, ns, n))
            .collect();
        out.sort_by_key(|d| std::cmp::Reverse(d.2));
        out
    }
}

/// `NO_SOCKET` matches itself; `QDISC_*` matches every name starting with `QDISC_`.
pub fn reason_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

/// `dev.*.rx_fifo` matches `dev.eth0.rx_fifo`; other names match exactly.
pub fn counter_matches(pattern: &str, name: &str) -> bool {
    match pattern.split_once(".*.") {
        Some((prefix, suffix)) => {
            name.starts_with(&format!("{prefix}."))
                && name.ends_with(&format!(".{suffix}"))
                && name.len() > prefix.len() + suffix.len() + 2
        }
        None => pattern == name,
    }
}

/// What `diagnose` reads about the objects the drops involve, in the namespaces where
/// they happened: their settings, the nftables rules that match the dropped packets, the
/// kernel's routing answer for destinations without a route, the statistics of dropping
/// qdiscs. `record` keeps it in a recording (`crate::commands::diagnose::read_objects` reads it
/// for both).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Objects {
    pub knobs: Vec<Knob>,
    pub firewall: Vec<FirewallMatch>,
    pub routes: Vec<Route>,
    pub qdiscs: Vec<Qdisc>,
}

impl Objects {
    /// Puts the objects into `ev`, in place of what it held.
    pub fn apply(self, ev: &mut Evidence) {
        ev.knobs = self.knobs;
        ev.firewall = self.firewall;
        ev.routes = self.routes;
        ev.qdiscs = self.qdiscs;
    }
}
