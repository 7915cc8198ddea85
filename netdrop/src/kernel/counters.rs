//! Kernel drop counters from /proc: the drops that never reach `kfree_skb` (a full accept
//! queue, a full SYN queue, NIC ring overflow, netdev backlog, a full conntrack table)
//! are only visible here. Most files are per network namespace; a namespace other than
//! ours is read from a helper thread that joins it.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

/// Counter name (`TcpExt.ListenOverflows`, `nf_conntrack.drop`, `dev.eth0.rx_fifo`) to value.
pub type Snapshot = BTreeMap<String, u64>;

/// What a counter means and what to do about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CounterInfo {
    /// Counter name, or a prefix ending in `.` for per-device counters.
    pub name: &'static str,
    /// What an increase means, in one line.
    pub meaning: &'static str,
    /// True for drops that `kfree_skb` does not show (or shows without telling why):
    /// `watch` reports these as they grow.
    pub unseen: bool,
}

/// Counters that count dropped packets (or lost connections), with their meaning.
pub const DROP_COUNTERS: &[CounterInfo] = &[
    c(
        "TcpExt.ListenOverflows",
        "accept queue full: connection attempts dropped (raise the listen() backlog and net.core.somaxconn, or accept faster)",
        true,
    ),
    c(
        "TcpExt.ListenDrops",
        "SYNs or handshake ACKs dropped at a listening socket (includes ListenOverflows)",
        true,
    ),
    c(
        "TcpExt.TCPReqQFullDrop",
        "SYN queue full without syncookies: SYNs dropped (net.ipv4.tcp_max_syn_backlog, net.ipv4.tcp_syncookies)",
        true,
    ),
    c(
        "TcpExt.TCPTimeWaitOverflow",
        "TIME_WAIT table full (net.ipv4.tcp_max_tw_buckets): sockets closed without TIME_WAIT",
        true,
    ),
    c(
        "TcpExt.TCPAbortOnMemory",
        "connections reset because TCP memory ran out (net.ipv4.tcp_mem)",
        true,
    ),
    c(
        "TcpExt.TCPBacklogDrop",
        "socket backlog full (busy socket owner): segments dropped",
        false,
    ),
    c(
        "TcpExt.PAWSEstab",
        "segments with old timestamps dropped on established connections (PAWS; NAT mixing hosts?)",
        false,
    ),
    c(
        "TcpExt.PAWSPassive",
        "SYNs rejected by timestamp checks (PAWS; NAT with tcp_tw_recycle on old kernels)",
        true,
    ),
    c(
        "TcpExt.TCPRcvQDrop",
        "segments dropped: receive queue over the socket's memory limit",
        false,
    ),
    c(
        "TcpExt.TCPZeroWindowDrop",
        "segments dropped into a zero receive window",
        false,
    ),
    c(
        "TcpExt.TCPMinTTLDrop",
        "segments dropped below the socket's minimum TTL",
        false,
    ),
    c(
        "TcpExt.PruneCalled",
        "receive queues pruned under memory pressure (net.ipv4.tcp_rmem)",
        false,
    ),
    c(
        "Udp.RcvbufErrors",
        "datagrams dropped: socket receive buffer full (SO_RCVBUF, net.core.rmem_max)",
        false,
    ),
    c(
        "Udp.SndbufErrors",
        "datagrams not sent: socket send buffer full",
        false,
    ),
    c(
        "Udp.InErrors",
        "datagrams dropped on receive (checksum, buffer, memory)",
        false,
    ),
    c("Udp.NoPorts", "datagrams to a port with no socket", false),
    c(
        "Udp.MemErrors",
        "datagrams dropped: UDP memory limit (net.ipv4.udp_mem)",
        false,
    ),
    c(
        "Udp6.RcvbufErrors",
        "IPv6 datagrams dropped: socket receive buffer full",
        false,
    ),
    c("Udp6.InErrors", "IPv6 datagrams dropped on receive", false),
    c(
        "Udp6.NoPorts",
        "IPv6 datagrams to a port with no socket",
        false,
    ),
    c(
        "Ip.InDiscards",
        "IPv4 packets discarded on input without an error (e.g. memory)",
        false,
    ),
    c("Ip.InHdrErrors", "IPv4 packets with bad headers", false),
    c(
        "Ip.InAddrErrors",
        "IPv4 packets to an address this host does not serve",
        false,
    ),
    c("Ip.OutNoRoutes", "IPv4 packets with no route out", false),
    c(
        "Ip.ReasmFails",
        "IPv4 fragment reassemblies failed (net.ipv4.ipfrag_*)",
        false,
    ),
    c(
        "Ip.ReasmTimeout",
        "IPv4 fragments dropped after the reassembly timeout (net.ipv4.ipfrag_time)",
        false,
    ),
    c(
        "Ip.FragFails",
        "IPv4 packets not fragmented (DF set): MTU problem",
        false,
    ),
    c(
        "nf_conntrack.drop",
        "packets dropped by conntrack: table full (nf_conntrack_max) or tracking failed",
        true,
    ),
    c(
        "nf_conntrack.early_drop",
        "conntrack entries evicted early to make room (table near nf_conntrack_max)",
        true,
    ),
    c(
        "nf_conntrack.insert_failed",
        "conntrack insertions failed (races, or table full)",
        true,
    ),
    c(
        "nf_conntrack.invalid",
        "packets conntrack could not classify (INVALID state)",
        false,
    ),
    c(
        "arp_cache.unresolved_discards",
        "packets dropped while waiting for ARP (unres_qlen_bytes)",
        false,
    ),
    c(
        "arp_cache.table_fulls",
        "neighbour table full: garbage collection forced (gc_thresh3)",
        true,
    ),
    c(
        "softnet.dropped",
        "packets dropped: per-CPU backlog full (net.core.netdev_max_backlog, RPS)",
        true,
    ),
    c(
        "softnet.time_squeeze",
        "receive processing ran out of budget with work left (net.core.netdev_budget); not a drop by itself",
        true,
    ),
    c(
        "dev.",
        "device counters: rx_dropped / rx_fifo / tx_dropped; rx_fifo is NIC ring overflow (ethtool -G)",
        true,
    ),
];

const fn c(name: &'static str, meaning: &'static str, unseen: bool) -> CounterInfo {
    CounterInfo {
        name,
        meaning,
        unseen,
    }
}

/// The description of `name`, if it is a drop counter.
pub fn info(name: &str) -> Option<&'static CounterInfo> {
    DROP_COUNTERS
        .iter()
        .find(|c| c.name == name || (c.name.ends_with('.') && name.starts_with(c.name)))
}

/// Parses `/proc/net/netstat` or `/proc/net/snmp`: pairs of `Prefix: names` and
/// `Prefix: values` lines.
pub fn parse_pairs(text: &str, out: &mut Snapshot) {
    let mut lines = text.lines();
    while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
        let (Some((p1, names)), Some((p2, values))) =
            (names.split_once(':'), values.split_once(':'))
        else {
            continue;
        };
        if p1 != p2 {
            continue;
        }
        for (n, v) in names.split_whitespace().zip(values.split_whitespace()) {
            if let Ok(v) = v.parse::<i64>() {
                // Some SNMP values (e.g. Tcp MaxConn) are -1: not counters.
                if v >= 0 {
                    out.insert(format!("{p1}.{n}"), v as u64);
                }
            }
        }
    }
}

/// Parses `/proc/net/snmp6`: `Udp6InErrors   0` lines, named `Udp6.InErrors`.
pub fn parse_snmp6(text: &str, out: &mut Snapshot) {
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        let (Some(name), Some(Ok(v))) = (parts.next(), parts.next().map(str::parse::<u64>)) else {
            continue;
        };
        let split = ["UdpLite6", "Icmp6", "Udp6", "Ip6"]
            .iter()
            .find_map(|p| name.strip_prefix(p).map(|r| (*p, r)));
        if let Some((prefix, rest)) = split {
            out.insert(format!("{prefix}.{rest}"), v);
        }
    }
}

/// Parses `/proc/net/stat/<table>` (`nf_conntrack`, `arp_cache`): a header, then one line of
/// hex values per CPU; columns are summed over CPUs, except `entries`, which is a gauge
/// repeated on every line.
pub fn parse_stat_table(table: &str, text: &str, out: &mut Snapshot) {
    let mut lines = text.lines();
    let Some(header) = lines.next() else { return };
    let names: Vec<&str> = header.split_whitespace().collect();
    for (cpu, line) in lines.enumerate() {
        for (n, v) in names.iter().zip(line.split_whitespace()) {
            let Ok(v) = u64::from_str_radix(v, 16) else {
                continue;
            };
            let key = format!("{table}.{n}");
            if *n == "entries" {
                if cpu == 0 {
                    out.insert(key, v);
                }
            } else {
                *out.entry(key).or_default() += v;
            }
        }
    }
}

/// Parses `/proc/net/softnet_stat`: per-CPU hex columns; the second is `dropped`, the third
/// `time_squeeze`.
pub fn parse_softnet(text: &str, out: &mut Snapshot) {
    for line in text.lines() {
        let cols: Vec<u64> = line
            .split_whitespace()
            .filter_map(|v| u64::from_str_radix(v, 16).ok())
            .collect();
        if cols.len() >= 3 {
            *out.entry("softnet.dropped".to_owned()).or_default() += cols[1];
            *out.entry("softnet.time_squeeze".to_owned()).or_default() += cols[2];
        }
    }
}

/// Parses `/proc/net/softnet_stat` per CPU: (cpu, dropped, time_squeeze).
pub fn parse_softnet_cpus(text: &str) -> Vec<(u32, u64, u64)> {
    parse_softnet_per_cpu(text)
        .into_iter()
        .map(|c| (c.cpu, c.dropped, c.time_squeeze))
        .collect()
}

/// One CPU's line of `/proc/net/softnet_stat`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SoftnetCpu {
    pub cpu: u32,
    /// Packets this CPU's receive processing handled (backlog and NAPI).
    pub processed: u64,
    /// Packets dropped because this CPU's backlog was full (`netdev_max_backlog`).
    pub dropped: u64,
    /// Times receive processing ran out of budget with work left.
    pub time_squeeze: u64,
}

/// Parses `/proc/net/softnet_stat` per CPU (hex columns: processed, dropped,
/// time_squeeze, ...). The CPU is the 13th column where the kernel prints it (5.10+:
/// offline CPUs leave no line), else the line number.
pub fn parse_softnet_per_cpu(text: &str) -> Vec<SoftnetCpu> {
    text.lines()
        .enumerate()
        .filter_map(|(i, line)| {
            let cols: Vec<u64> = line
                .split_whitespace()
                .filter_map(|v| u64::from_str_radix(v, 16).ok())
                .collect();
            (cols.len() >= 3).then(|| SoftnetCpu {
                cpu: cols.get(12).map_or(i as u32, |&c| c as u32),
                processed: cols[0],
                dropped: cols[1],
                time_squeeze: cols[2],
            })
        })
        .collect()
}

/// The receive (and transmit drop) counters of one device, from `/proc/net/dev`: what
/// the driver and the core counted, no per-packet hook.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DevStats {
    pub name: String,
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    /// Packets the device or the core dropped on receive (`rx_dropped`: no buffer, backlog
    /// full, unknown protocol, ...).
    pub rx_dropped: u64,
    /// Receive FIFO (ring) overruns.
    pub rx_fifo: u64,
    pub tx_packets: u64,
    pub tx_dropped: u64,
}

/// Parses `/proc/net/dev` into one [`DevStats`] per device.
pub fn parse_dev_stats(text: &str) -> Vec<DevStats> {
    text.lines()
        .skip(2)
        .filter_map(|line| {
            let (ifname, rest) = line.split_once(':')?;
            let v: Vec<u64> = rest
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            (v.len() >= 16).then(|| DevStats {
                name: ifname.trim().to_owned(),
                rx_bytes: v[0],
                rx_packets: v[1],
                rx_errors: v[2],
                rx_dropped: v[3],
                rx_fifo: v[4],
                tx_packets: v[9],
                tx_dropped: v[11],
            })
        })
        .collect()
}

/// Receive counters at one moment: softnet per CPU (host-wide) and every device of the
/// namespaces read, keyed by (namespace inode, device name).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RxSnapshot {
    pub softnet: Vec<SoftnetCpu>,
    pub devices: BTreeMap<(u32, String), DevStats>,
}

/// Reads softnet per CPU and the devices of one namespace (`--netns`) or of every
/// namespace netdrop can open, each poll.
pub struct RxWatch {
    only: Option<u32>,
    targets: Vec<NetnsHandle>,
    polls: u32,
}

impl RxWatch {
    pub fn new(only: Option<u32>) -> Self {
        let mut w = Self {
            only,
            targets: Vec::new(),
            polls: 0,
        };
        w.discover();
        w
    }

    fn discover(&mut self) {
        let all = all_netns(Path::new("/proc"));
        self.targets = match self.only {
            Some(inode) => all.into_iter().filter(|t| t.inode == inode).collect(),
            None => all,
        };
    }

    /// Reads everything now.
    pub fn read(&mut self) -> RxSnapshot {
        self.polls += 1;
        if self.polls.is_multiple_of(REDISCOVER_EVERY) {
            self.discover();
        }
        let mut devices = BTreeMap::new();
        for t in &self.targets {
            let text = super::netns::run_in(&t.path, || {
                std::fs::read_to_string("/proc/thread-self/net/dev").unwrap_or_default()
            });
            for d in parse_dev_stats(&text.unwrap_or_default()) {
                devices.insert((t.inode, d.name.clone()), d);
            }
        }
        RxSnapshot {
            softnet: parse_softnet_per_cpu(
                &std::fs::read_to_string("/proc/net/softnet_stat").unwrap_or_default(),
            ),
            devices,
        }
    }
}

/// Parses `/proc/net/dev`: `dev.<if>.rx_dropped`, `dev.<if>.rx_fifo`, `dev.<if>.tx_dropped`.
pub fn parse_dev(text: &str, out: &mut Snapshot) {
    for line in text.lines().skip(2) {
        let Some((ifname, rest)) = line.split_once(':') else {
            continue;
        };
        let v: Vec<u64> = rest
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        if v.len() < 16 {
            continue;
        }
        let ifname = ifname.trim();
        out.insert(format!("dev.{ifname}.rx_dropped"), v[3]);
        out.insert(format!("dev.{ifname}.rx_fifo"), v[4]);
        out.insert(format!("dev.{ifname}.tx_dropped"), v[11]);
    }
}

/// Reads every per-namespace file under `net` (a `/proc/<pid>/net`-like directory).
pub fn read_net_dir(net: &Path) -> Snapshot {
    let mut s = Snapshot::new();
    let read = |f: &str| std::fs::read_to_string(net.join(f)).unwrap_or_default();
    parse_pairs(&read("netstat"), &mut s);
    parse_pairs(&read("snmp"), &mut s);
    parse_snmp6(&read("snmp6"), &mut s);
    parse_stat_table("nf_conntrack", &read("stat/nf_conntrack"), &mut s);
    parse_stat_table("arp_cache", &read("stat/arp_cache"), &mut s);
    parse_dev(&read("dev"), &mut s);
    s
}

/// Reads the counters of the namespace behind `ns_file` (e.g. `/run/netns/blue`), from a
/// thread that joins it: `/proc/thread-self/net` then shows that namespace.
pub fn read_netns(ns_file: &Path) -> std::io::Result<Snapshot> {
    super::netns::run_in(ns_file, || read_net_dir(Path::new("/proc/thread-self/net")))
}

/// Reads the global counters (`softnet_stat`).
pub fn read_global() -> Snapshot {
    let mut s = Snapshot::new();
    parse_softnet(
        &std::fs::read_to_string("/proc/net/softnet_stat").unwrap_or_default(),
        &mut s,
    );
    s
}

/// Drop counters that grew from `before` to `after`: (name, delta, total). Counters that
/// went backwards (a device re-created, a namespace re-used) are ignored.
pub fn growth(before: &Snapshot, after: &Snapshot, only_unseen: bool) -> Vec<(String, u64, u64)> {
    after
        .iter()
        .filter(|(name, _)| info(name).is_some_and(|i| i.unseen || !only_unseen))
        .filter_map(|(name, &now)| {
            let was = before.get(name).copied().unwrap_or(0);
            (now > was).then(|| (name.clone(), now - was, now))
        })
        .collect()
}

/// A namespace to read: its inode and a file that opens it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetnsHandle {
    pub inode: u32,
    pub path: PathBuf,
}

/// Every network namespace we can open: ours, the `ip netns` ones, and those of running
/// processes (containers).
pub fn all_netns(proc_root: &Path) -> Vec<NetnsHandle> {
    let mut seen = BTreeMap::new();
    let mut add = |path: PathBuf| {
        if let Some(inode) = super::netns::inode(&path) {
            seen.entry(inode).or_insert(path);
        }
    };
    add(proc_root.join("self/ns/net"));
    for dir in ["/run/netns", "/var/run/netns"] {
        if let Ok(entries) = std::fs::read_dir(dir) {
            entries.flatten().for_each(|e| add(e.path()));
        }
    }
    if let Ok(entries) = std::fs::read_dir(proc_root) {
        for e in entries.flatten() {
            if e.file_name()
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
            {
                add(e.path().join("ns/net"));
            }
        }
    }
    seen.into_iter()
        .map(|(inode, path)| NetnsHandle { inode, path })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polls_run_on_their_own_thread_and_reach_the_receiver() {
        // A namespace that cannot exist: the watch has nothing to read, polls are empty.
        let watch = CounterWatch::new(Some(1));
        let mut rx = spawn_polling(watch, std::time::Duration::from_millis(1), |w, changes| {
            (std::thread::current().id(), w.polls, changes.len())
        });
        let (first_thread, first_poll, changes) = rx.blocking_recv().expect("a first poll");
        let (second_thread, second_poll, _) = rx.blocking_recv().expect("a second poll");
        assert_ne!(first_thread, std::thread::current().id());
        assert_eq!(first_thread, second_thread);
        assert_eq!((first_poll, second_poll), (1, 2));
        assert_eq!(changes, 0);
    }
    use crate::testdata;

    fn fixture(name: &str) -> String {
        testdata::read(&format!("proc/{name}-6.18"))
    }

    #[test]
    fn netstat_and_snmp() {
        let mut s = Snapshot::new();
        parse_pairs(&fixture("netstat"), &mut s);
        parse_pairs(&fixture("snmp"), &mut s);
        assert!(s.contains_key("TcpExt.ListenOverflows"));
        assert!(s.contains_key("TcpExt.TCPBacklogDrop"));
        assert!(s.contains_key("Udp.RcvbufErrors"));
        assert!(s.contains_key("Ip.InDiscards"));
        // Tcp MaxConn is -1: not a counter.
        assert!(!s.contains_key("Tcp.MaxConn"));
    }

    #[test]
    fn pairs_are_matched_by_prefix() {
        let mut s = Snapshot::new();
        parse_pairs(
            "TcpExt: ListenOverflows ListenDrops\nTcpExt: 24 25\nIpExt: InNoRoutes\nIpExt: 3\n",
            &mut s,
        );
        assert_eq!(s["TcpExt.ListenOverflows"], 24);
        assert_eq!(s["TcpExt.ListenDrops"], 25);
        assert_eq!(s["IpExt.InNoRoutes"], 3);
    }

    #[test]
    fn snmp6() {
        let mut s = Snapshot::new();
        parse_snmp6(&fixture("snmp6"), &mut s);
        assert!(s.contains_key("Udp6.RcvbufErrors"));
        assert!(s.contains_key("Ip6.InReceives"));
    }

    #[test]
    fn per_cpu_stat_tables_are_summed() {
        let mut s = Snapshot::new();
        parse_stat_table("arp_cache", &fixture("arp_cache"), &mut s);
        // entries is a gauge, the same on every line.
        assert_eq!(s["arp_cache.entries"], 2);
        assert_eq!(s["arp_cache.unresolved_discards"], 0x13);
        assert_eq!(s["arp_cache.allocs"], 0x0c + 0x16);
        let mut s = Snapshot::new();
        parse_stat_table(
            "nf_conntrack",
            "entries  clashres found new invalid ignore delete chainlength insert insert_failed drop early_drop\n\
             00000002  00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000012 00000000\n\
             00000002  00000000 00000000 00000000 00000001 00000000 00000000 00000000 00000000 00000000 00000003 00000000\n",
            &mut s,
        );
        assert_eq!(s["nf_conntrack.drop"], 0x15);
        assert_eq!(s["nf_conntrack.invalid"], 1);
    }

    #[test]
    fn softnet_and_devices() {
        let mut s = Snapshot::new();
        parse_softnet(
            "00008853 00000002 00000001 00000000\n00000189 00000003 00000000 00000000\n",
            &mut s,
        );
        assert_eq!((s["softnet.dropped"], s["softnet.time_squeeze"]), (5, 1));
        assert_eq!(
            parse_softnet_cpus(&fixture("softnet_stat")),
            vec![(0, 0, 0), (1, 0, 0)]
        );
        let two = "00008853 00000007 00000001 0 0 0 0 0 0 0 0 0 00000003 0 0\n";
        assert_eq!(parse_softnet_cpus(two), vec![(3, 7, 1)]);
        let mut s = Snapshot::new();
        parse_dev(&fixture("dev"), &mut s);
        assert_eq!(s["dev.lo.rx_dropped"], 0);
        assert!(s.contains_key("dev.eth0.rx_fifo"));
        assert!(s.contains_key("dev.eth0.tx_dropped"));
        assert_eq!(info("dev.eth0.rx_fifo").unwrap().name, "dev.");
    }

    #[test]
    fn softnet_per_cpu_and_device_receive_counts() {
        let cpus = parse_softnet_per_cpu(&fixture("softnet_stat"));
        assert_eq!(
            cpus,
            vec![
                SoftnetCpu {
                    cpu: 0,
                    processed: 0x189,
                    dropped: 0,
                    time_squeeze: 0
                },
                SoftnetCpu {
                    cpu: 1,
                    processed: 0x8853,
                    dropped: 0,
                    time_squeeze: 0
                }
            ]
        );
        // 5.10+ print the CPU: an offline CPU leaves a gap, not a shift.
        let gap = "00000010 00000002 00000003 0 0 0 0 0 0 0 0 0 00000000 0 0\n\
                   00000020 00000005 00000007 0 0 0 0 0 0 0 0 0 00000002 0 0\n";
        let cpus = parse_softnet_per_cpu(gap);
        assert_eq!(
            (
                cpus[1].cpu,
                cpus[1].processed,
                cpus[1].dropped,
                cpus[1].time_squeeze
            ),
            (2, 0x20, 5, 7)
        );
        let devs = parse_dev_stats(&fixture("dev"));
        let lo = devs.iter().find(|d| d.name == "lo").unwrap();
        assert_eq!(
            (lo.rx_bytes, lo.rx_packets, lo.rx_dropped, lo.tx_packets),
            (793063, 18317, 0, 18317)
        );
        let one = "h1\nh2\n  veth0: 100 7 1 2 3 0 0 0   200 9 0 4 0 0 0 0\n";
        assert_eq!(
            parse_dev_stats(one),
            vec![DevStats {
                name: "veth0".into(),
                rx_bytes: 100,
                rx_packets: 7,
                rx_errors: 1,
                rx_dropped: 2,
                rx_fifo: 3,
                tx_packets: 9,
                tx_dropped: 4,
            }]
        );
        // Truncated lines are skipped.
        assert!(parse_dev_stats("h1\nh2\n eth0: 1 2 3\n").is_empty());
    }

    #[test]
    fn receive_counts_of_this_namespace() {
        let mut w = RxWatch::new(None);
        let s = w.read();
        assert!(!s.softnet.is_empty());
        let me = crate::kernel::netns::inode(Path::new("/proc/self/ns/net")).unwrap();
        assert!(s.devices.contains_key(&(me, "lo".to_owned())), "{s:?}");
    }

    #[test]
    fn growth_reports_drop_counters_only() {
        let before: Snapshot = [
            ("TcpExt.ListenOverflows", 5),
            ("Udp.NoPorts", 1),
            ("TcpExt.TCPHPHits", 1),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let mut after = before.clone();
        *after.get_mut("TcpExt.ListenOverflows").unwrap() = 29;
        *after.get_mut("Udp.NoPorts").unwrap() = 4;
        *after.get_mut("TcpExt.TCPHPHits").unwrap() = 100;
        after.insert("nf_conntrack.drop".into(), 18);
        let unseen = growth(&before, &after, true);
        assert_eq!(
            unseen,
            vec![
                ("TcpExt.ListenOverflows".to_owned(), 24, 29),
                ("nf_conntrack.drop".to_owned(), 18, 18)
            ]
        );
        let all = growth(&before, &after, false);
        assert!(all.contains(&("Udp.NoPorts".to_owned(), 3, 4)));
        assert!(!all.iter().any(|(n, ..)| n == "TcpExt.TCPHPHits"));
        // Going backwards is not growth.
        assert!(growth(&after, &before, false).is_empty());
    }

    #[test]
    fn own_namespace_is_readable() {
        let s = read_net_dir(Path::new("/proc/self/net"));
        assert!(s.contains_key("Udp.NoPorts"), "{s:?}");
    }

    #[test]
    fn namespaces_that_are_gone_are_forgotten() {
        let handle = |inode| NetnsHandle {
            inode,
            path: PathBuf::from("/nonexistent"),
        };
        let mut w = CounterWatch {
            only: None,
            targets: Vec::new(),
            last: (1..=1000).map(|i| (i, Snapshot::new())).collect(),
            last_global: None,
            polls: 0,
        };
        w.set_targets(vec![handle(7), handle(5000)]);
        assert_eq!(w.last.keys().copied().collect::<Vec<_>>(), vec![7]);
    }
}

/// A drop counter that grew.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// Namespace inode, `None` for global counters.
    pub netns: Option<u32>,
    pub name: String,
    pub delta: u64,
    pub total: u64,
}

/// Polls drop counters of one namespace (`--netns`) or of every namespace, remembering
/// the previous values.
pub struct CounterWatch {
    only: Option<u32>,
    targets: Vec<NetnsHandle>,
    last: BTreeMap<u32, Snapshot>,
    last_global: Option<Snapshot>,
    polls: u32,
}

/// Polls `watch` every `interval` on a thread of its own and sends what `work` makes of
/// each poll (it may enter namespaces too). Entering every namespace and reading /proc
/// takes long on a host with many containers, and a namespace can be slow to answer: off
/// the caller's event loop, that never delays a signal or a ring buffer drain. The thread
/// ends when the receiver is dropped. A poll waits while two undelivered ones queue.
pub fn spawn_polling<T: Send + 'static>(
    mut watch: CounterWatch,
    interval: std::time::Duration,
    mut work: impl FnMut(&CounterWatch, Vec<Change>) -> T + Send + 'static,
) -> tokio::sync::mpsc::Receiver<T> {
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    let spawned = std::thread::Builder::new()
        .name("netdrop-counters".to_owned())
        .spawn(move || {
            loop {
                std::thread::sleep(interval);
                let changes = watch.poll();
                let out = work(&watch, changes);
                if tx.blocking_send(out).is_err() {
                    break;
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot start the counter polling thread ({e}): counters are not reported");
    }
    rx
}

/// Namespaces are rediscovered every this many polls.
const REDISCOVER_EVERY: u32 = 10;

impl CounterWatch {
    /// Takes the baseline: only growth from now on is reported.
    pub fn new(only: Option<u32>) -> Self {
        let mut w = Self {
            only,
            targets: Vec::new(),
            last: BTreeMap::new(),
            last_global: only.is_none().then(read_global),
            polls: 0,
        };
        w.discover();
        if let Some(inode) = only
            && w.targets.is_empty()
        {
            tracing::warn!(
                "cannot open network namespace {inode}: its drop counters are not reported"
            );
        }
        for t in w.targets.clone() {
            if let Ok(s) = read_netns(&t.path) {
                w.last.insert(t.inode, s);
            }
        }
        w
    }

    fn discover(&mut self) {
        self.set_targets(all_netns(Path::new("/proc")));
    }

    fn set_targets(&mut self, all: Vec<NetnsHandle>) {
        self.targets = match self.only {
            Some(inode) => all.into_iter().filter(|t| t.inode == inode).collect(),
            None => all,
        };
        // Namespaces come and go with containers: forget those that are gone.
        let alive: std::collections::BTreeSet<u32> = self.targets.iter().map(|t| t.inode).collect();
        self.last.retain(|inode, _| alive.contains(inode));
    }

    /// A file that opens namespace `inode`, if it is one of those polled.
    pub fn path(&self, inode: u32) -> Option<&Path> {
        self.targets
            .iter()
            .find(|t| t.inode == inode)
            .map(|t| t.path.as_path())
    }

    /// Counters of drops `kfree_skb` does not show that grew since the last poll.
    pub fn poll(&mut self) -> Vec<Change> {
        self.polls += 1;
        if self.polls.is_multiple_of(REDISCOVER_EVERY) {
            self.discover();
        }
        let mut out = Vec::new();
        if let Some(before) = &self.last_global {
            let now = read_global();
            out.extend(
                growth(before, &now, true)
                    .into_iter()
                    .map(|(name, delta, total)| Change {
                        netns: None,
                        name,
                        delta,
                        total,
                    }),
            );
            self.last_global = Some(now);
        }
        for t in &self.targets {
            let Ok(now) = read_netns(&t.path) else {
                continue;
            };
            // A namespace seen for the first time starts its baseline now.
            if let Some(before) = self.last.get(&t.inode) {
                out.extend(
                    growth(before, &now, true)
                        .into_iter()
                        .map(|(name, delta, total)| Change {
                            netns: Some(t.inode),
                            name,
                            delta,
                            total,
                        }),
                );
            }
            self.last.insert(t.inode, now);
        }
        out
    }
}
