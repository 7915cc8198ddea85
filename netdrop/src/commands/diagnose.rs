//! `netdrop diagnose`: watch drops and counters for a while, read the settings and the
//! objects involved, then say what is wrong (see `crate::diagnose`).

use std::{
    collections::{BTreeMap, BTreeSet},
    io::{self, Write},
    path::{Path, PathBuf},
    time::Instant,
};

use netdrop_common::config;

use crate::{
    aggregate::Totals,
    cli::DiagnoseArgs,
    commands::{self, sockets::SocketWatch},
    diagnose::{
        Report, classes,
        evidence::{
            Count, CounterDelta, CpuDelta, DeviceCount, Evidence, FirewallMatch, FlowCount, Knob,
            Listener, LocationCount, Objects, Qdisc, Route, SocketDrop, reason_matches,
        },
        knobs, nft,
    },
    error::Error,
    event::{self, DropRecord, Enricher, Netns, ReasonInfo},
    kernel::{
        counters::{self, CounterWatch, Snapshot},
        owners::Owner,
    },
    output::{self, ListenerNotice, SocketNotice, text},
    probe::{self, Conntrack, Probe, ProbeConfig},
    time::Clock,
};

/// Whole drop records kept per reason, for tuples, devices and netfilter hooks.
pub(crate) const SAMPLES_PER_REASON: usize = 16;
/// Flows, locations and devices kept in the evidence.
pub(crate) const TOP: usize = 30;

pub async fn run(args: &DiagnoseArgs, verbose: u8) -> Result<(), Error> {
    if let Some(path) = &args.from {
        return write_report(&offline(path)?, args.json);
    }
    let (kernel, spec, filter) = commands::prepare(&args.kernel, &args.filter)?;
    let flags = config::EVENTS
        | config::BY_REASON
        | config::BY_LOCATION
        | config::BY_FLOW
        | config::BY_DEVICE;
    // Counts come from the kernel's maps, exact; events serve only as samples (at most
    // SAMPLES_PER_REASON kept per reason), so a flood need not write one per drop: the
    // same budget and rate limit as watch, sized to the samples.
    let cfg = ProbeConfig {
        ring_size: 1 << 20,
        kernel_log: verbose >= 2,
        without: args.kernel.without.clone(),
        rate_limit: SAMPLES_PER_REASON as u32,
        budget: 4 * SAMPLES_PER_REASON as u32,
        ..ProbeConfig::new(args.kernel.attach, flags, filter)
    };
    let mut stop = commands::StopSignals::install()?;
    let (mut probe, mut ring) = commands::start_streaming(&kernel, &cfg)?;
    let mut enricher = commands::host_enricher(&kernel);
    let namespaces = Namespaces::discover(spec.netns);
    let before = namespaces.snapshot();
    let cpus_before = softnet_cpus();
    // Sockets are dumped each second to catch those whose own drop count grows; the
    // baseline is taken before saying we are ready, so no drop after that is missed.
    let mut socket_watch = (!spec.hides_sockets()).then(|| SocketWatch::new(spec.netns));
    eprintln!(
        "netdrop: diagnosing for {:?} via {} (Ctrl-C ends early and still reports)",
        args.duration, probe.hook
    );
    let started = Instant::now();
    let mut samples = Samples::default();
    // Listeners are named while their queue is full: looked up each second in the
    // namespaces whose listen counters grew.
    let mut counter_watch = CounterWatch::new(spec.netns);
    let mut named: Vec<ListenerNotice> = Vec::new();
    let mut dropping: Vec<SocketDrop> = Vec::new();
    let deadline = tokio::time::Instant::now() + args.duration;
    let mut drain = tokio::time::interval(probe::DRAIN_INTERVAL);
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = guard.map_err(Error::io("polling the ring buffer"))?;
                samples.take(guard.get_inner_mut(), &mut probe, &mut enricher);
                guard.clear_ready();
            }
            _ = drain.tick() => samples.take(ring.get_mut(), &mut probe, &mut enricher),
            _ = tick.tick() => {
                probe.attach_conntrack();
                let changes = counter_watch.poll();
                let time = enricher.clock().rfc3339(Clock::monotonic_now());
                let found = commands::listener_notices(&changes, &counter_watch, &spec, &mut enricher, &time);
                keep_listeners(&mut named, found);
                if let Some(w) = socket_watch.as_mut() {
                    keep_sockets(&mut dropping, w.poll(&spec, &mut enricher));
                }
            }
            _ = stop.recv() => break,
            _ = tokio::time::sleep_until(deadline) => break,
        }
    }
    probe.detach();
    samples.take(ring.get_mut(), &mut probe, &mut enricher);
    // A last look: drops since the last tick (a watch ended by Ctrl-C right after them).
    if let Some(w) = socket_watch.as_mut() {
        keep_sockets(&mut dropping, w.poll(&spec, &mut enricher));
    }
    let duration_s = started.elapsed().as_secs_f64();
    let totals = probe.totals()?;
    let after = namespaces.snapshot();
    let cpus_after = softnet_cpus();

    let mut ev = Evidence {
        duration_s,
        kernel: uname_release(),
        hook: probe.hook.to_string(),
        kernel_reasons: kernel.reasons.iter().next().is_some(),
        conntrack_hook: probe.conntrack == Conntrack::Attached,
        drops: totals.counters.matched,
        samples: samples.records,
        cpus: cpu_deltas(&cpus_before, &cpus_after),
        ..Default::default()
    };
    counts(&mut ev, &totals, &mut enricher);
    ev.counters = namespaces.deltas(&before, &after, &mut enricher);
    if !ev.kernel_reasons {
        ev.unavailable.push(
            "this kernel names no drop reasons (before Linux 5.17): classes are told by kernel counters only"
                .into(),
        );
    }
    if let crate::probe::hooks::tcp::TcpListen::Unavailable(why) = &probe.tcp_listen {
        ev.unavailable.push(format!(
            "TCP listener hook: {why}; SYNs dropped at full listeners are counted by the kernel's counters, not one by one"
        ));
    }
    if let crate::probe::hooks::tcp::DropPath::Unavailable(why) = &probe.tcp_drop_path {
        ev.unavailable.push(format!(
            "tcp_drop path hook: {why}; TCP drops inside the receive path are counted by TcpExt counters only"
        ));
    }
    if let crate::probe::hooks::backlog::Backlog::Unavailable(why) = &probe.backlog {
        ev.unavailable.push(format!(
            "backlog hook: {why}; CPU_BACKLOG drops are told per CPU by the softnet counters, without the backlog's length"
        ));
    }
    if let Conntrack::Unavailable(why) = &probe.conntrack {
        ev.unavailable.push(format!(
            "conntrack hook: {why}; conntrack drops are told from rule drops by the nf_conntrack drop counter"
        ));
    }
    ev.listeners = named
        .into_iter()
        .map(|n| Listener {
            netns: Some(n.netns),
            local: if n.family == "ipv6" {
                format!("[{}]:{}", n.addr, n.port)
            } else {
                format!("{}:{}", n.addr, n.port)
            },
            port: n.port,
            queue: n.queue,
            limit: n.limit,
            process: n.process.as_ref().map(Owner::label),
        })
        .collect();
    dropping.sort_by(|a, b| b.drops.cmp(&a.drops).then(a.port.cmp(&b.port)));
    ev.sockets = dropping;
    let objects = read_objects(&namespaces, &ev);
    objects.apply(&mut ev);

    let report = Report::new(ev, enricher.clock().rfc3339(Clock::monotonic_now()));
    write_report(&report, args.json)
}

/// The diagnosis of the evidence saved in `path` by `diagnose --json` (the whole document,
/// or its `evidence` object alone), with the rules of this netdrop.
fn offline(path: &Path) -> Result<Report, Error> {
    if commands::from::is_recording(path) {
        let (evidence, time) = commands::from::evidence(path)?;
        return Ok(Report::new(evidence, time));
    }
    let text =
        std::fs::read_to_string(path).map_err(Error::io(format!("reading {}", path.display())))?;
    let doc: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        Error::BadArgument(format!(
            "{} is not a `netdrop diagnose --json` document: {e}",
            path.display()
        ))
    })?;
    let time = doc["time"].as_str().unwrap_or_default().to_owned();
    let evidence = doc.get("evidence").cloned().unwrap_or(doc);
    let evidence: Evidence = serde_json::from_value(evidence).map_err(|e| {
        Error::BadArgument(format!(
            "{} holds no diagnose evidence netdrop can read: {e}",
            path.display()
        ))
    })?;
    Ok(Report::new(evidence, time))
}

/// Writes a report as text or as one JSON document.
fn write_report(report: &Report, json: bool) -> Result<(), Error> {
    let mut out = io::stdout().lock();
    let res = if json {
        serde_json::to_writer(&mut out, report)
            .map_err(io::Error::other)
            .and_then(|()| writeln!(out))
    } else {
        output::diagnose::write_text(&mut out, report)
    };
    match res {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
            Err(Error::io("writing the diagnosis")(e))
        }
        _ => Ok(()),
    }
}

/// Adds listeners named in one poll to those named before: one entry per listener, with
/// the longest queue seen.
pub(crate) fn keep_listeners(named: &mut Vec<ListenerNotice>, found: Vec<ListenerNotice>) {
    for n in found {
        let at = named
            .iter()
            .position(|k| k.netns.inode == n.netns.inode && k.addr == n.addr && k.port == n.port);
        match at {
            Some(i) if n.queue > named[i].queue => named[i] = n,
            Some(_) => {}
            None if named.len() < MAX_LISTENERS => named.push(n),
            None => {}
        }
    }
}

/// Listeners kept in the evidence.
const MAX_LISTENERS: usize = 32;

/// Adds the sockets that dropped in one poll to those seen before: one entry per socket,
/// its growth summed over the polls, its latest `sk_drops`, its longest receive queue.
pub(crate) fn keep_sockets(kept: &mut Vec<SocketDrop>, found: Vec<SocketNotice>) {
    for n in found {
        let s = SocketDrop {
            netns: Some(n.netns),
            protocol: n.protocol,
            local: text::endpoint(&n.addr, n.port),
            port: n.port,
            remote: n
                .remote_addr
                .zip(n.remote_port)
                .map(|(a, p)| text::endpoint(&a, p)),
            drops: n.drops,
            sk_drops: n.sk_drops,
            rqueue: n.rqueue,
            process: n.process.as_ref().map(Owner::label),
        };
        let same = |k: &SocketDrop| {
            k.netns.as_ref().map(|n| n.inode) == s.netns.as_ref().map(|n| n.inode)
                && k.protocol == s.protocol
                && k.local == s.local
                && k.remote == s.remote
        };
        if let Some(k) = kept.iter_mut().find(|k| same(k)) {
            k.drops += s.drops;
            k.sk_drops = s.sk_drops;
            k.rqueue = k.rqueue.max(s.rqueue);
            k.process = s.process.or(k.process.take());
        } else if kept.len() < MAX_SOCKETS {
            kept.push(s);
        }
    }
}

/// Sockets kept in the evidence.
const MAX_SOCKETS: usize = 32;

/// Whole records, at most [`SAMPLES_PER_REASON`] per reason.
#[derive(Default)]
struct Samples {
    records: Vec<DropRecord>,
    per_reason: BTreeMap<u32, usize>,
}

impl Samples {
    fn take(
        &mut self,
        ring: &mut aya::maps::RingBuf<aya::maps::MapData>,
        probe: &mut Probe,
        enricher: &mut Enricher,
    ) {
        let conntrack = probe.conntrack == Conntrack::Attached;
        while let Some(item) = ring.next() {
            let Some(ev) = event::decode(&item) else {
                continue;
            };
            drop(item);
            let n = self.per_reason.entry(ev.reason).or_default();
            if *n >= SAMPLES_PER_REASON {
                continue;
            }
            *n += 1;
            let stack = (ev.flags & netdrop_common::flag::HAS_STACK != 0)
                .then(|| probe.stack(ev.stack_id as u32))
                .flatten();
            self.records
                .push(enricher.record(&ev, stack, false, conntrack));
        }
    }
}

/// Per-reason, per-location, per-flow and per-device counts from the kernel's totals.
fn counts(ev: &mut Evidence, t: &Totals, e: &mut Enricher) {
    let mut reasons: Vec<Count> = t
        .by_reason
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(&code, &count)| Count {
            name: e.reasons.decode(code).name,
            count,
            inferred: false,
        })
        .collect();
    if !ev.kernel_reasons {
        // Every drop is UNKNOWN here: name what the locations stand for instead.
        reasons = Count::summed(t.by_location.iter().map(|(k, &n)| {
            let loc = e.location(k.location);
            let r = ReasonInfo::new(&e.reasons, k.reason, loc.symbol.as_deref());
            (r.name, r.inferred, n)
        }));
    }
    reasons.sort_by(|a, b| b.count.cmp(&a.count).then(a.name.cmp(&b.name)));
    ev.reasons = reasons;
    let mut locations: Vec<_> = t.by_location.iter().collect();
    locations.sort_by(|a, b| b.1.cmp(a.1));
    ev.locations = locations
        .into_iter()
        .take(TOP)
        .map(|(k, &count)| LocationCount {
            reason: e.reasons.decode(k.reason).name,
            location: text::location(&e.location(k.location)),
            count,
        })
        .collect();
    let mut flows: Vec<_> = t.by_flow.iter().collect();
    flows.sort_by(|a, b| b.1.cmp(a.1));
    ev.flows = flows
        .into_iter()
        .take(TOP)
        .map(|(k, &count)| FlowCount {
            reason: e.reasons.decode(k.reason).name,
            packet: event::flow_packet(k),
            netns: (k.netns != 0).then(|| e.netns(k.netns, "device")),
            count,
        })
        .collect();
    let mut devices: Vec<_> = t.by_device.iter().collect();
    devices.sort_by(|a, b| b.1.cmp(a.1));
    ev.devices = devices
        .into_iter()
        .take(TOP)
        .map(|(k, &count)| DeviceCount {
            reason: e.reasons.decode(k.reason).name,
            device: if k.ifindex == 0 {
                "-".into()
            } else {
                event::c_str(&k.ifname)
            },
            netns: (k.netns != 0).then(|| e.netns(k.netns, "device")),
            count,
        })
        .collect();
}

/// The objects `ev` (drops sampled, counts, counters) points to, read now in `namespaces`.
pub(crate) fn read_objects(namespaces: &Namespaces, ev: &Evidence) -> Objects {
    let involved = involved_namespaces(ev);
    Objects {
        knobs: read_knobs(namespaces, &involved, ev),
        firewall: firewall(namespaces, ev),
        routes: routes(namespaces, ev),
        qdiscs: qdiscs(namespaces, ev),
    }
}

/// The namespaces to read counters in: the one of `--netns`, or all.
pub(crate) struct Namespaces {
    /// inode -> a file that opens it; our own namespace maps to `None` (read directly).
    paths: BTreeMap<u32, Option<PathBuf>>,
}

impl Namespaces {
    /// The namespaces alive now, or only `only`.
    pub(crate) fn discover(only: Option<u32>) -> Self {
        let own = crate::kernel::netns::inode(Path::new("/proc/self/ns/net"));
        let paths = counters::all_netns(Path::new("/proc"))
            .into_iter()
            .filter(|h| only.is_none_or(|o| o == h.inode))
            .map(|h| (h.inode, (Some(h.inode) != own).then_some(h.path)))
            .collect();
        Self { paths }
    }

    fn path(&self, inode: Option<u32>) -> Option<&Path> {
        inode.and_then(|i| self.paths.get(&i)?.as_deref())
    }

    fn snapshot(&self) -> BTreeMap<u32, Snapshot> {
        self.paths
            .iter()
            .filter_map(|(&inode, path)| {
                let s = match path {
                    Some(p) => counters::read_netns(p).ok()?,
                    None => counters::read_net_dir(Path::new("/proc/self/net")),
                };
                Some((inode, s))
            })
            .collect()
    }

    /// Counters any class watches that grew, per namespace.
    fn deltas(
        &self,
        before: &BTreeMap<u32, Snapshot>,
        after: &BTreeMap<u32, Snapshot>,
        e: &mut Enricher,
    ) -> Vec<CounterDelta> {
        let watched: Vec<&str> = classes::CLASSES
            .iter()
            .flat_map(|c| c.counters.iter().copied())
            .collect();
        let mut out = Vec::new();
        for (inode, now) in after {
            let Some(was) = before.get(inode) else {
                continue;
            };
            for (name, &v) in now {
                let old = was.get(name).copied().unwrap_or(0);
                if v > old
                    && watched
                        .iter()
                        .any(|w| crate::diagnose::evidence::counter_matches(w, name))
                {
                    out.push(CounterDelta {
                        netns: Some(e.netns(*inode, "procfs")),
                        name: name.clone(),
                        delta: v - old,
                        now: v,
                    });
                }
            }
        }
        out
    }
}

fn softnet_cpus() -> Vec<(u32, u64, u64)> {
    counters::parse_softnet_cpus(
        &std::fs::read_to_string("/proc/net/softnet_stat").unwrap_or_default(),
    )
}

fn cpu_deltas(before: &[(u32, u64, u64)], after: &[(u32, u64, u64)]) -> Vec<CpuDelta> {
    after
        .iter()
        .map(|&(cpu, d, s)| {
            let (d0, s0) = before
                .iter()
                .find(|b| b.0 == cpu)
                .map_or((d, s), |b| (b.1, b.2));
            CpuDelta {
                cpu,
                dropped: d.saturating_sub(d0),
                time_squeeze: s.saturating_sub(s0),
            }
        })
        .collect()
}

/// Namespaces where something happened, at most [`MAX_NAMESPACES`]: those with sampled
/// drops first, then those whose counters grew.
fn involved_namespaces(ev: &Evidence) -> Vec<u32> {
    let mut out: Vec<u32> = Vec::new();
    let inodes = ev
        .samples
        .iter()
        .filter_map(|s| s.netns.as_ref().map(|n| n.inode))
        .chain(
            ev.counters
                .iter()
                .filter_map(|c| c.netns.as_ref().map(|n| n.inode)),
        );
    for inode in inodes {
        if out.len() >= MAX_NAMESPACES {
            break;
        }
        if !out.contains(&inode) {
            out.push(inode);
        }
    }
    out
}

/// Namespaces whose settings are read: a host with thousands of containers whose
/// counters grow would otherwise put all of their settings in a report (and a recording).
const MAX_NAMESPACES: usize = 32;

/// Every class's settings, in each involved namespace and in our own (for host-wide ones),
/// plus rp_filter of the devices that dropped by it.
fn read_knobs(ns: &Namespaces, involved: &[u32], ev: &Evidence) -> Vec<Knob> {
    let mut names: Vec<String> = classes::CLASSES
        .iter()
        .flat_map(|c| c.knobs.iter().map(|k| (*k).to_owned()))
        .collect();
    names.sort();
    names.dedup();
    let rp_devices: BTreeSet<(Option<u32>, String)> = ev
        .devices
        .iter()
        .filter(|d| d.reason == "IP_RPFILTER")
        .map(|d| (d.netns.as_ref().map(|n| n.inode), d.device.clone()))
        .collect();
    let mut out = Vec::new();
    let own = crate::kernel::netns::inode(Path::new("/proc/self/ns/net"));
    let mut read = |inode: Option<u32>, netns: Option<Netns>, names: &[String]| {
        let path = ns.path(inode);
        let got = knobs::in_netns(path, || knobs::read_sysctls(Path::new("/proc/sys"), names))
            .unwrap_or_default();
        out.extend(got.into_iter().map(|(name, value)| Knob {
            netns: netns.clone(),
            name,
            value,
        }));
    };
    read(None, None, &names);
    for &inode in involved {
        if Some(inode) == own {
            continue;
        }
        let mut here = names.clone();
        here.extend(
            rp_devices
                .iter()
                .filter(|(n, _)| *n == Some(inode))
                .map(|(_, d)| format!("net.ipv4.conf.{d}.rp_filter")),
        );
        let netns = ev
            .samples
            .iter()
            .filter_map(|s| s.netns.clone())
            .chain(ev.counters.iter().filter_map(|c| c.netns.clone()))
            .find(|n| n.inode == inode);
        read(Some(inode), netns, &here);
    }
    let own_rp: Vec<String> = rp_devices
        .iter()
        .filter(|(n, _)| n.is_none() || *n == own)
        .map(|(_, d)| format!("net.ipv4.conf.{d}.rp_filter"))
        .collect();
    if !own_rp.is_empty() {
        read(None, None, &own_rp);
    }
    // The MTU of the devices that dropped packets for being too big, in their namespace.
    for (dev, netns, _) in ev.devices_of(&["PKT_TOO_BIG"]) {
        let inode = netns.as_ref().map(|n| n.inode);
        let link = knobs::in_netns(ns.path(inode), || knobs::link_show(&dev)).unwrap_or_default();
        if let Some(mtu) = knobs::parse_mtu(&link) {
            out.push(Knob {
                netns,
                name: format!("dev.{dev}.mtu"),
                value: mtu.to_string(),
            });
        }
    }
    out
}

/// The nftables drop rules that match the sampled NETFILTER_DROPs conntrack did not refuse.
fn firewall(ns: &Namespaces, ev: &Evidence) -> Vec<FirewallMatch> {
    let mut by_ns: BTreeMap<Option<u32>, Vec<&DropRecord>> = BTreeMap::new();
    for s in ev.samples.iter().filter(|s| {
        s.reason.name == "NETFILTER_DROP"
            && s.netfilter.as_ref().and_then(|n| n.conntrack) != Some(true)
    }) {
        by_ns
            .entry(s.netns.as_ref().map(|n| n.inode))
            .or_default()
            .push(s);
    }
    let mut out: Vec<FirewallMatch> = Vec::new();
    for (inode, samples) in by_ns {
        let Ok(rules) = nft::read_ruleset(ns.path(inode)) else {
            continue;
        };
        for s in samples {
            let facts = packet_facts(s);
            for (rule, certainty) in nft::candidates(&rules, &facts).into_iter().take(1) {
                let certain = matches!(certainty, nft::Certainty::Matches);
                match out
                    .iter_mut()
                    .find(|m| m.rule == *rule && m.netns.as_ref().map(|n| n.inode) == inode)
                {
                    Some(m) => m.packets += 1,
                    None => out.push(FirewallMatch {
                        netns: s.netns.clone(),
                        rule: rule.clone(),
                        certain,
                        packets: 1,
                    }),
                }
            }
        }
    }
    out
}

fn packet_facts(s: &DropRecord) -> nft::PacketFacts<'_> {
    let p = &s.packet;
    nft::PacketFacts {
        l3: match p.family.as_deref() {
            Some("ipv4") => Some(netdrop_common::proto::ETH_P_IP),
            Some("ipv6") => Some(netdrop_common::proto::ETH_P_IPV6),
            _ => None,
        },
        l4: p.protocol.as_deref().and_then(event::protocol_number),
        src: p.src.as_deref().and_then(|a| a.parse().ok()),
        dst: p.dst.as_deref().and_then(|a| a.parse().ok()),
        sport: p.sport,
        dport: p.dport,
        iface: s.device.as_ref().map(|d| d.name.as_str()),
        hook: s.netfilter.as_ref().map(|n| n.hook.as_str()),
    }
}

/// `ip route get` for up to five destinations that had no route, in their namespace.
fn routes(ns: &Namespaces, ev: &Evidence) -> Vec<Route> {
    let no_route = classes::class("no_route").map_or(&[][..], |c| c.reasons);
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for s in ev
        .samples
        .iter()
        .filter(|s| no_route.iter().any(|p| reason_matches(p, &s.reason.name)))
    {
        let Some(dst) = s.packet.dst.clone() else {
            continue;
        };
        let inode = s.netns.as_ref().map(|n| n.inode);
        if seen.len() >= 5 || !seen.insert((inode, dst.clone())) {
            continue;
        }
        let answer = knobs::in_netns(ns.path(inode), || knobs::route_get(&dst))
            .unwrap_or_else(|e| format!("cannot enter the namespace: {e}"));
        out.push(Route {
            netns: s.netns.clone(),
            destination: dst,
            answer,
        });
    }
    out
}

/// Qdisc statistics of devices that dropped by a qdisc reason or whose tx_dropped grew.
fn qdiscs(ns: &Namespaces, ev: &Evidence) -> Vec<Qdisc> {
    let qdisc = classes::class("qdisc").map_or(&[][..], |c| c.reasons);
    let mut devs: BTreeSet<(Option<u32>, String)> = ev
        .devices
        .iter()
        .filter(|d| qdisc.iter().any(|p| reason_matches(p, &d.reason)))
        .map(|d| (d.netns.as_ref().map(|n| n.inode), d.device.clone()))
        .collect();
    for c in ev.counter_growth(&["dev.*.tx_dropped"]) {
        if let Some(dev) = c
            .name
            .strip_prefix("dev.")
            .and_then(|r| r.strip_suffix(".tx_dropped"))
        {
            devs.insert((c.netns.as_ref().map(|n| n.inode), dev.to_owned()));
        }
    }
    let netns_of = |inode: Option<u32>| -> Option<Netns> {
        ev.devices
            .iter()
            .filter_map(|d| d.netns.clone())
            .chain(ev.counters.iter().filter_map(|c| c.netns.clone()))
            .find(|n| Some(n.inode) == inode)
    };
    let mut out = Vec::new();
    for (inode, dev) in devs.into_iter().take(10) {
        let found = knobs::in_netns(ns.path(inode), || knobs::qdiscs(&dev)).unwrap_or_default();
        out.extend(found.into_iter().filter(|(_, _, drops)| *drops > 0).map(
            |(kind, limit, drops)| Qdisc {
                netns: netns_of(inode),
                device: dev.clone(),
                kind,
                limit,
                drops,
            },
        ));
    }
    out
}

fn uname_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "?".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockets_add_up_over_polls() {
        let mut kept = Vec::new();
        let one = crate::output::text::tests::socket();
        let mut other = one.clone();
        other.port = 53;
        keep_sockets(&mut kept, vec![one.clone(), other]);
        let mut again = one;
        again.drops = 2;
        again.sk_drops = 45;
        again.rqueue = 0;
        keep_sockets(&mut kept, vec![again]);
        assert_eq!(kept.len(), 2);
        let s = &kept[0];
        assert_eq!(
            (s.local.as_str(), s.drops, s.sk_drops, s.rqueue),
            ("10.0.0.2:5353", 42, 45, 2304)
        );
        assert_eq!(
            (
                s.protocol.as_str(),
                s.remote.as_deref(),
                s.process.as_deref()
            ),
            ("udp", None, Some("python3[123]"))
        );
    }
}
