//! `cargo xtask soak --minutes M`: a long run of `netdrop exporter` under a changing mix of
//! drops and flows, to see that memory stays bounded, that the kernel's flow tables keep
//! room for the flows of now, and that per-reason totals stay exact.
//!
//! Everything happens in a network namespace this task creates (`ndsoak`) and deletes:
//! about 100,000 new UDP flows a minute from varied 127.0.0.0/8 sources and ports to a
//! closed port (NO_SOCKET), one in five also to a port an nft rule drops (NETFILTER_DROP),
//! and one busy flow per minute from its own source. The exporter only counts that
//! namespace (`--netns ndsoak`), so the totals can be compared with what was sent, the
//! namespace's own `Udp NoPorts` counter and the nft rule's counter. Not part of CI.

use std::{
    io::{Read, Write},
    net::{Ipv4Addr, TcpStream, UdpSocket},
    os::fd::AsRawFd,
    path::Path,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::{bench, cmd, setup};

/// Options.
pub struct SoakArgs {
    pub minutes: f64,
}

const NETNS: &str = "ndsoak";
const METRICS_ADDR: &str = "127.0.0.1:9899";
/// Closed port: NO_SOCKET.
const CLOSED_PORT: u16 = 9;
/// Port the namespace's nft rule drops: NETFILTER_DROP.
const NFT_PORT: u16 = 7777;
/// New flows per minute.
const FLOWS_PER_MINUTE: u64 = 100_000;
/// The traffic is paced in ticks of this length.
const TICK: Duration = Duration::from_millis(100);
/// Datagrams per tick from the busy flow (2,000 a second).
const BUSY_PER_TICK: u64 = 200;
const BUSY_PORT: u16 = 40_000;
/// How often the exporter is scraped and its RSS read.
const SCRAPE_EVERY: Duration = Duration::from_secs(10);

pub fn run(args: SoakArgs) -> Result<()> {
    if !cmd::is_root() {
        bail!(
            "the soak loads eBPF programs and creates a network namespace: run `sudo -E cargo xtask soak`"
        );
    }
    if args.minutes <= 0.0 {
        bail!("--minutes must be positive");
    }
    setup::toolchain()?;
    setup::install_packages(&[("ip", "iproute2"), ("nft", "nftables")])?;
    let netdrop = crate::build(true)?;
    let ns = Namespace::create()?;
    let noports_before = ns.udp_noports()?;
    let mut exporter = Command::new(&netdrop);
    exporter.args([
        "exporter",
        "--netns",
        NETNS,
        "--metrics-flows",
        "20",
        "--metrics-addr",
        METRICS_ADDR,
    ]);
    let tracer = bench::start(&mut exporter, "netdrop: counting drops")?;
    let pid = tracer.child.id();

    let stop = Arc::new(AtomicBool::new(false));
    let duration = Duration::from_secs_f64(args.minutes * 60.0);
    // The busy flow of the last started minute runs to the end: the report checks a flow
    // that was busy for a while, not one the last seconds of the run began.
    let last_minute = (duration.as_secs().saturating_sub(1)) / 60;
    let traffic = {
        let stop = stop.clone();
        std::thread::spawn(move || traffic(&stop, last_minute))
    };
    eprintln!(
        "xtask: soak for {:.1} min: {FLOWS_PER_MINUTE} new flows a minute in namespace {NETNS}, scraped every {}s",
        args.minutes,
        SCRAPE_EVERY.as_secs()
    );
    let started = Instant::now();
    let mut rss = vec![(0.0, rss_kib(pid))];
    while started.elapsed() < duration {
        std::thread::sleep(SCRAPE_EVERY.min(duration.saturating_sub(started.elapsed())));
        let m = Metrics::scrape()?;
        let at = started.elapsed().as_secs_f64();
        rss.push((at, rss_kib(pid)));
        eprintln!(
            "xtask: {at:>5.0}s RSS {:>6.1} MiB, NO_SOCKET {:>9}, NETFILTER_DROP {:>8}, flow series {:>2}, unattributed flows {:>8}",
            rss.last().map_or(0, |r| r.1) as f64 / 1024.0,
            m.value("netdrop_drops_total", "reason=\"NO_SOCKET\""),
            m.value("netdrop_drops_total", "reason=\"NETFILTER_DROP\""),
            m.count("netdrop_flow_drops_total"),
            m.value("netdrop_drops_unattributed_total", "table=\"flow\""),
        );
    }
    stop.store(true, Ordering::Relaxed);
    let sent = traffic
        .join()
        .map_err(|_| anyhow::anyhow!("the traffic thread panicked"))??;
    // Two drains of the attribution maps, so the last drops are in the held tables.
    std::thread::sleep(Duration::from_secs(3));
    let m = Metrics::scrape()?;
    rss.push((started.elapsed().as_secs_f64(), rss_kib(pid)));
    let noports = ns.udp_noports()? - noports_before;
    let nft = ns.nft_packets()?;
    let (_, (cpu_s, peak_kib)) = bench::stop(tracer)?;
    report(&rss, peak_kib, cpu_s, &m, &sent, noports, nft);
    Ok(())
}

/// What the traffic thread sent.
#[derive(Default)]
struct Sent {
    flows: u64,
    closed: u64,
    nft: u64,
    /// Source address of the last minute's busy flow, and its datagrams that minute.
    busy: Option<(Ipv4Addr, u64)>,
}

/// Sends until `stop`, from inside the namespace: `FLOWS_PER_MINUTE` new flows a minute,
/// each two datagrams to the closed port from a new source address and port (one in five
/// also one to the nft-dropped port), and a busy flow that changes source every minute up
/// to `last_minute`.
fn traffic(stop: &AtomicBool, last_minute: u64) -> Result<Sent> {
    let file = std::fs::File::open(Path::new("/run/netns").join(NETNS))
        .with_context(|| format!("opening /run/netns/{NETNS}"))?;
    // SAFETY: setns on this thread only, with a namespace fd we hold open.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        bail!(
            "entering namespace {NETNS}: {}",
            std::io::Error::last_os_error()
        );
    }
    let closed = (Ipv4Addr::LOCALHOST, CLOSED_PORT);
    let dropped = (Ipv4Addr::LOCALHOST, NFT_PORT);
    let per_tick = FLOWS_PER_MINUTE * TICK.as_millis() as u64 / 60_000;
    let mut sent = Sent::default();
    let started = Instant::now();
    let mut busy: Option<(u64, UdpSocket, Ipv4Addr)> = None;
    let mut tick = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let minute = (started.elapsed().as_secs() / 60).min(last_minute);
        if busy.as_ref().is_none_or(|b| b.0 != minute) {
            let addr = Ipv4Addr::new(127, 250, 0, (minute % 250) as u8 + 1);
            let sock = UdpSocket::bind((addr, BUSY_PORT))
                .with_context(|| format!("binding the busy flow to {addr}"))?;
            sent.busy = Some((addr, 0));
            busy = Some((minute, sock, addr));
        }
        for _ in 0..per_tick {
            sent.flows += 1;
            let f = sent.flows;
            // Sources 127.1.0.0 to 127.200.255.255: distinct for 13 million flows.
            let src = Ipv4Addr::new(127, 1 + ((f >> 16) % 200) as u8, (f >> 8) as u8, f as u8);
            let sock = UdpSocket::bind((src, 0)).with_context(|| format!("binding {src}"))?;
            for _ in 0..2 {
                if sock.send_to(b"x", closed).is_ok() {
                    sent.closed += 1;
                }
            }
            if f.is_multiple_of(5) && sock.send_to(b"x", dropped).is_ok() {
                sent.nft += 1;
            }
        }
        if let Some((_, sock, _)) = &busy {
            for _ in 0..BUSY_PER_TICK {
                if sock.send_to(b"x", closed).is_ok() {
                    sent.closed += 1;
                    if let Some((_, n)) = sent.busy.as_mut() {
                        *n += 1;
                    }
                }
            }
        }
        tick += 1;
        let next = started + TICK * tick as u32;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    Ok(sent)
}

fn report(
    rss: &[(f64, u64)],
    peak_kib: u64,
    cpu_s: f64,
    m: &Metrics,
    sent: &Sent,
    noports: u64,
    nft: u64,
) {
    let mib = |k: u64| k as f64 / 1024.0;
    let start = rss.first().map_or(0, |r| r.1);
    let end = rss.last().map_or(0, |r| r.1);
    let max = rss.iter().map(|r| r.1).max().unwrap_or(0);
    let minutes = rss.last().map_or(0.0, |r| r.0) / 60.0;
    println!("\nsoak: {minutes:.1} min, {} flows sent", sent.flows);
    println!(
        "RSS: start {:.1} MiB, max {:.1} MiB (peak {:.1}), end {:.1} MiB; exporter CPU {cpu_s:.1} s",
        mib(start),
        mib(max),
        mib(peak_kib),
        mib(end)
    );
    let series: Vec<String> = rss
        .iter()
        .map(|(t, k)| format!("{t:.0}s:{:.1}", mib(*k)))
        .collect();
    println!("RSS over time (MiB): {}", series.join(" "));
    println!(
        "kernel map fill: flow series exported {} (of --metrics-flows 20), drops not attributed to a flow {}, to a device {}, to a location {}",
        m.count("netdrop_flow_drops_total"),
        m.value("netdrop_drops_unattributed_total", "table=\"flow\""),
        m.value("netdrop_drops_unattributed_total", "table=\"device\""),
        m.value("netdrop_drops_unattributed_total", "table=\"location\""),
    );
    let exported = m.value("netdrop_drops_total", "reason=\"NO_SOCKET\"");
    println!(
        "NO_SOCKET: exported {exported}, sent {}, Udp NoPorts in {NETNS} +{noports}: {}",
        sent.closed,
        verdict(exported, &[sent.closed, noports])
    );
    let exported = m.value("netdrop_drops_total", "reason=\"NETFILTER_DROP\"");
    println!(
        "NETFILTER_DROP: exported {exported}, sent {}, nft rule counter {nft}: {}",
        sent.nft,
        verdict(exported, &[sent.nft, nft])
    );
    match sent.busy {
        Some((addr, n)) => {
            let flow = m.value(
                "netdrop_flow_drops_total",
                &format!("src=\"{addr}\",dst=\"127.0.0.1\",dport=\"{CLOSED_PORT}\""),
            );
            println!(
                "busy flow of the last minute ({addr} -> 127.0.0.1:{CLOSED_PORT}, {n} sent that minute): exported {flow}, {}",
                if flow >= n && n > 0 {
                    "attributed"
                } else {
                    "NOT attributed"
                }
            );
        }
        None => println!("busy flow: none sent"),
    }
}

fn verdict(exported: u64, others: &[u64]) -> &'static str {
    if others.iter().all(|&o| o == exported) {
        "exact"
    } else {
        "DIFFERENT"
    }
}

/// One scrape of the exporter, Prometheus text format.
struct Metrics {
    body: String,
}

impl Metrics {
    fn scrape() -> Result<Self> {
        let mut s = TcpStream::connect(METRICS_ADDR)
            .with_context(|| format!("connecting to the exporter on {METRICS_ADDR}"))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
        let mut reply = String::new();
        s.read_to_string(&mut reply)
            .context("reading the exporter's reply")?;
        let body = reply
            .split_once("\r\n\r\n")
            .map_or(reply.as_str(), |(_, b)| b)
            .to_owned();
        Ok(Self { body })
    }

    /// Samples of `name`: (labels, value).
    fn samples<'a>(&'a self, name: &'a str) -> impl Iterator<Item = (&'a str, u64)> + 'a {
        self.body.lines().filter_map(move |l| {
            let rest = l.strip_prefix(name)?;
            let (labels, value) = rest.rsplit_once(' ')?;
            if !(labels.is_empty() || labels.starts_with('{')) {
                return None;
            }
            Some((labels, value.parse::<f64>().ok()? as u64))
        })
    }

    /// Sum of the samples of `name` whose labels contain `labels`.
    fn value(&self, name: &str, labels: &str) -> u64 {
        self.samples(name)
            .filter(|(l, _)| l.contains(labels))
            .map(|(_, v)| v)
            .sum()
    }

    fn count(&self, name: &str) -> usize {
        self.samples(name).count()
    }
}

/// Resident memory of `pid` in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The soak's network namespace: loopback up, an nft rule dropping [`NFT_PORT`]; deleted
/// when dropped.
struct Namespace;

impl Namespace {
    fn create() -> Result<Self> {
        // A namespace left by an interrupted soak goes first.
        let _ = cmd::output(Command::new("ip").args(["netns", "del", NETNS]));
        cmd::run(Command::new("ip").args(["netns", "add", NETNS]))?;
        let ns = Namespace;
        cmd::run(Command::new("ip").args(["-n", NETNS, "link", "set", "lo", "up"]))?;
        let port = NFT_PORT.to_string();
        for rule in [
            &["add", "table", "inet", "ndsoak"][..],
            &[
                "add", "chain", "inet", "ndsoak", "input", "{", "type", "filter", "hook", "input",
                "priority", "0", ";", "}",
            ],
            &[
                "add", "rule", "inet", "ndsoak", "input", "udp", "dport", &port, "counter", "drop",
            ],
        ] {
            let mut nft = ns.exec(&["nft"]);
            cmd::run(nft.args(rule))?;
        }
        Ok(ns)
    }

    /// `args` run inside the namespace.
    fn exec(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", NETNS]).args(args);
        c
    }

    /// `Udp NoPorts` of /proc/net/snmp inside the namespace.
    fn udp_noports(&self) -> Result<u64> {
        let snmp = cmd::output(&mut self.exec(&["cat", "/proc/net/snmp"]))
            .context("reading /proc/net/snmp in the soak namespace")?;
        let mut udp = snmp.lines().filter(|l| l.starts_with("Udp: "));
        let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
            bail!("no Udp lines in /proc/net/snmp");
        };
        let at = names
            .split_whitespace()
            .position(|n| n == "NoPorts")
            .context("no Udp NoPorts in /proc/net/snmp")?;
        values
            .split_whitespace()
            .nth(at)
            .and_then(|v| v.parse().ok())
            .context("Udp NoPorts is not a number")
    }

    /// Packets the nft drop rule counted.
    fn nft_packets(&self) -> Result<u64> {
        let rules = cmd::output(&mut self.exec(&["nft", "list", "table", "inet", "ndsoak"]))
            .context("listing the soak's nft table")?;
        rules
            .split_whitespace()
            .skip_while(|w| *w != "packets")
            .nth(1)
            .and_then(|v| v.parse().ok())
            .context("no packet counter on the soak's nft rule")
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = cmd::output(Command::new("ip").args(["netns", "del", NETNS]));
    }
}
