//! Command-line interface.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};
use netdrop_common::AddrMatch;

use crate::{
    aggregate::{GroupBy, SortBy},
    filter::{self, FilterSpec, Proto},
    probe::AttachMode,
};

/// netdrop: see every packet the Linux kernel drops, why, where and whose.
#[derive(Debug, Parser)]
#[command(name = "netdrop", version, propagate_version = true)]
#[command(after_help = "\
Examples:
  sudo netdrop watch                          every drop, live, one line each
  sudo netdrop watch --reason NO_SOCKET --port 53
  sudo netdrop watch --json --stack > drops.jsonl
  sudo netdrop stats --interval 1 --by flow     per-flow histogram every second
  netdrop reasons                             drop reasons this kernel knows

Needs root (or CAP_BPF + CAP_PERFMON) and a kernel with BTF (/sys/kernel/btf/vmlinux).")]
pub struct Cli {
    /// More detail on stderr: -v says which hooks are active, -vv adds debug and
    /// kernel-side messages.
    #[arg(short, long, action = ArgAction::Count, global = true)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]

pub enum Command {
    /// Stream every packet the kernel drops, live, until Ctrl-C; then print a per-reason
    /// summary.
    #[command(after_help = "\
Each line: time, drop reason, protocol, source -> destination, device, network namespace,
the kernel function that dropped the packet, and the task that was running (for received
packets this is usually unrelated to the flow: the kernel processes them in whatever
context it is in).

Filters run in the kernel, so drops they exclude cost almost nothing. Lost events (the
ring buffer was full) are reported as they happen and in the summary; counts in the
summary are exact even then.

Examples:
  sudo netdrop watch --proto tcp --port 443
  sudo netdrop watch --exclude-reason NOT_SPECIFIED --iface eth0
  sudo netdrop watch --host 10.0.0.0/8 --stack
  sudo netdrop watch --json | jq 'select(.reason.name == \"NETFILTER_DROP\")'")]
    Watch(WatchArgs),

    /// Periodic drop histograms for scripts and incident logs, like vmstat: one report
    /// per interval until Ctrl-C or --count.
    #[command(after_help = "\
Counts are exact: they are kept in the kernel, per CPU, for every drop that passes the
filters, whether or not anything reads them in time. Each report gives, per group, the
drops in the interval and since start; groups beyond --top are summed as (other).

Groupings: reason; location (kernel function and offset, with the reason); flow (protocol,
addresses, ports, namespace, with the reason; at most --max-flows distinct flows, the rest
counted as not attributed); dev (device and namespace); netns; pod (the Kubernetes pod
whose namespace it is, from the host's cgroups and /var/log/pods); container (the containers
living in the namespace: those of one pod share it).

Examples:
  sudo netdrop stats --interval 1
  sudo netdrop stats --interval 1 --json --port 9
  sudo netdrop stats --interval 5 --by flow --top 10
  sudo netdrop stats --by location --count 12 --interval 5 > drops.log
  sudo netdrop stats --by pod --json
  sudo netdrop stats --pod shop/web-0 --by flow")]
    Stats(StatsArgs),

    /// Live full-screen view of drop rates and totals by reason, location, flow, device,
    /// namespace, pod or container, with a one-minute sparkline per reason.
    #[command(after_help = "\
Keys: q quit, ? help, g or Tab next grouping, 1-7 reason/location/flow/dev/netns/pod/
container, l listeners whose accept queue overflowed, s rate/total order, p or space pause.
Rows are red when a queue, buffer or table ran out (SOCKET_RCVBUFF, CPU_BACKLOG, ...), yellow
when a rule, route or check refused the packet (NETFILTER_DROP, ...), plain when nobody
wanted it (NO_SOCKET, NOT_SPECIFIED). Works in 80x24 (e.g. over SSH). When stdout is not a
terminal, it prints a plain report every interval instead (as `netdrop stats` does).

Examples:
  sudo netdrop top
  sudo netdrop top --netns blue --by flow")]
    Top(TopArgs),

    /// Serve exact drop counts to Prometheus (text format and OpenMetrics), without any
    /// other output: for running as a daemon on every host of a fleet.
    #[command(after_help = "\
Metrics (all counters): netdrop_drops_total{reason}, netdrop_drops_seen_total,
netdrop_events_lost_total, netdrop_drops_not_traced_total, netdrop_drops_unattributed_total{table},
netdrop_netns_drops_total{netns}, netdrop_device_drops_total{netns,device},
netdrop_pod_drops_total{namespace,pod},
netdrop_listener_overflows_total{netns,addr,port} (the busiest --metrics-devices), and on request netdrop_location_drops_total{reason,location} and
netdrop_flow_drops_total{reason,protocol,src,dst,dport,netns}. The same filters apply as
for watch. Binds to loopback unless told otherwise.

Examples:
  sudo netdrop exporter
  sudo netdrop exporter --metrics-addr 0.0.0.0:9809 --metrics-locations 20")]
    Exporter(ExporterArgs),

    /// Record an incident to a file: every matching drop with its names resolved, the
    /// exact in-kernel counts by reason, location, flow, device and namespace every
    /// interval, kernel counters, the settings `diagnose` reads, the kernel version and
    /// the hooks attached. `watch`, `stats`, `top` and `diagnose` read it back with --from
    /// FILE, here or on another machine.
    #[command(after_help = "\
The file is JSON lines (format in README.md, versioned), created readable by its owner only
since it holds addresses; an existing file is refused unless --force. It is flushed at
every batch of drops and every interval, so a recording stopped abruptly (killed, disk
full) keeps what was written up to then, and the readers say it was cut short.

Examples:
  sudo netdrop record --output incident.ndr --duration 5m
  sudo netdrop record -o dns.ndr --proto udp --port 53
  netdrop stats --from incident.ndr --by flow --top 10
  netdrop watch --from incident.ndr --port 443 --json
  netdrop diagnose --from incident.ndr")]
    Record(RecordArgs),

    /// Watch drops and kernel counters for a while, then say what is wrong: the drop class,
    /// the evidence with numbers, the objects involved (ports, listeners, devices, CPUs,
    /// firewall rules), the settings as they are now, and what to change.
    #[command(after_help = "\
Each finding names one of the drop classes netdrop knows (listen_queue, syn_flood,
conntrack_full, firewall_rule, udp_rcvbuf, no_socket, rp_filter, no_route, netdev_backlog,
neighbour, fragments, timewait_overflow, qdisc, ...), worst first, and says whether it was
measured (the kernel named the reason or counted it) or inferred by netdrop. Settings are
read per network namespace where the kernel keeps them so. Drops no class explains are
listed at the end; so is what this kernel does not let netdrop see.

Examples:
  sudo netdrop diagnose
  sudo netdrop diagnose --duration 30s --netns blue
  sudo netdrop diagnose --json | jq '.findings[] | {class, drops, knobs}'")]
    Diagnose(DiagnoseArgs),

    /// List the drop reasons the running kernel reports, with their numbers.
    Reasons(ReasonsArgs),

    /// List every hook family netdrop knows: attached, available, unavailable (and why) or
    /// not implemented, what it hooks, and what netdrop uses instead.
    #[command(after_help = "\
As root, netdrop attaches the kfree_skb and conntrack hooks for a moment to tell; without
root it reports what the kernel shows (BTF, tracefs, kprobe support, sock_diag).

Examples:
  sudo netdrop hooks
  netdrop hooks --json | jq '.hooks[] | {id, status}'")]
    Hooks(HooksArgs),

    /// Measure decoding, enrichment and output on synthetic events (for `cargo xtask bench`).
    #[command(hide = true)]
    BenchPipeline(BenchPipelineArgs),

    /// Write shell completions (bash, zsh, fish) and man pages into DIR (for `cargo xtask
    /// docs`).
    #[command(hide = true)]
    Docs {
        /// Directory to write into (created if missing).
        dir: PathBuf,
    },
}

/// Options for the hidden `bench-pipeline`.
#[derive(Debug, Args)]
pub struct BenchPipelineArgs {
    /// Synthetic events to run through the pipeline.
    #[arg(long, value_name = "N", default_value_t = 4_000_000)]
    pub events: u64,

    /// Output format measured.
    #[arg(long, value_enum, default_value_t = PipelineFormat::Json)]
    pub format: PipelineFormat,
}

/// Output formats of `bench-pipeline`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PipelineFormat {
    Json,
    Text,
}

/// Options for `top`.
#[derive(Debug, Args)]
pub struct TopArgs {
    #[command(flatten)]
    pub filter: FilterArgs,

    #[command(flatten)]
    pub kernel: KernelArgs,

    /// Seconds between refreshes.
    #[arg(long, value_name = "SECS", default_value = "1", value_parser = parse_duration)]
    pub interval: Duration,

    /// Grouping shown first.
    #[arg(long, value_enum, default_value_t = GroupBy::Reason)]
    pub by: GroupBy,

    /// Stop after this many refreshes.
    #[arg(long, value_name = "N", value_parser = parse_count)]
    pub count: Option<u64>,

    #[command(flatten)]
    pub flows: FlowArgs,

    #[command(flatten)]
    pub metrics: MetricsArgs,

    /// Print, for each interval a recording made by `netdrop record` holds, the plain
    /// report `top` prints when stdout is not a terminal; no root needed.
    #[arg(long, value_name = "FILE")]
    pub from: Option<PathBuf>,
}

/// Options for `exporter`.
#[derive(Debug, Args)]
pub struct ExporterArgs {
    #[command(flatten)]
    pub filter: FilterArgs,

    #[command(flatten)]
    pub kernel: KernelArgs,

    /// Address to serve /metrics on.
    #[arg(long, value_name = "ADDR:PORT", default_value = DEFAULT_METRICS_ADDR)]
    pub metrics_addr: SocketAddr,

    #[command(flatten)]
    pub metrics: MetricsLabels,

    #[command(flatten)]
    pub flows: FlowArgs,
}

/// Default exporter address: loopback; exposing it further is a deliberate choice.
pub const DEFAULT_METRICS_ADDR: &str = "127.0.0.1:9809";

/// `--metrics-addr` for commands that also serve metrics while they run.
#[derive(Debug, Args, Clone)]
#[command(next_help_heading = "Prometheus / OpenMetrics")]
pub struct MetricsArgs {
    /// Also serve exact counts at http://ADDR:PORT/metrics while running (e.g.
    /// 127.0.0.1:9809).
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics_addr: Option<SocketAddr>,

    #[command(flatten)]
    pub labels: MetricsLabels,
}

/// Capacity of the kernel's flow table.
#[derive(Debug, Args, Clone, Copy)]
pub struct FlowArgs {
    /// Distinct flows counted in the kernel (1 to 1048576); drops of further flows are
    /// counted as not attributed.
    #[arg(long, value_name = "N", default_value_t = netdrop_common::MAX_FLOWS,
          value_parser = clap::value_parser!(u32).range(1..=MAX_FLOW_CAPACITY))]
    pub max_flows: u32,
}

/// Largest `--max-flows`: about 100 MiB of per-CPU counters on a 16-CPU machine.
const MAX_FLOW_CAPACITY: i64 = 1 << 20;

/// Which label sets metrics carry; each is bounded.
#[derive(Debug, Args, Clone, Copy)]
#[command(next_help_heading = "Prometheus / OpenMetrics")]
pub struct MetricsLabels {
    /// Export per-namespace, per-device, per-pod and per-listener counts for the busiest N
    /// of each (0: none).
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub metrics_devices: usize,

    /// Export per-location (kernel function) counts for the busiest N (0: none).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub metrics_locations: usize,

    /// Export per-flow counts for the busiest N flows, without source ports (0: none).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub metrics_flows: usize,
}

impl MetricsLabels {
    /// As renderer options.
    pub fn options(&self) -> crate::output::metrics::MetricsOptions {
        crate::output::metrics::MetricsOptions {
            devices: self.metrics_devices,
            locations: self.metrics_locations,
            flows: self.metrics_flows,
        }
    }
}

/// Options for `stats`.
#[derive(Debug, Args)]
pub struct StatsArgs {
    #[command(flatten)]
    pub filter: FilterArgs,

    #[command(flatten)]
    pub kernel: KernelArgs,

    /// Seconds between reports (or 500ms, 1m, ...).
    #[arg(long, value_name = "SECS", default_value = "1", value_parser = parse_duration)]
    pub interval: Duration,

    /// Stop after this many reports.
    #[arg(long, value_name = "N", value_parser = parse_count)]
    pub count: Option<u64>,

    /// How to group drops.
    #[arg(long, value_enum, default_value_t = GroupBy::Reason)]
    pub by: GroupBy,

    /// One JSON object per report (schema in README.md).
    #[arg(long)]
    pub json: bool,

    /// Show at most this many groups per report (0: all); the rest are summed.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub top: usize,

    /// Order groups by drops in the interval or since start.
    #[arg(long, value_enum, default_value_t = SortBy::Rate)]
    pub sort: SortBy,

    #[command(flatten)]
    pub flows: FlowArgs,

    #[command(flatten)]
    pub metrics: MetricsArgs,

    /// Print the exact counts a recording made by `netdrop record` holds (one report per
    /// recorded interval; the last has the totals of the whole recording) instead of
    /// counting live; no root needed. Filters cannot narrow recorded counts.
    #[arg(long, value_name = "FILE")]
    pub from: Option<PathBuf>,
}

/// Options for `watch`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    #[command(flatten)]
    pub filter: FilterArgs,

    #[command(flatten)]
    pub kernel: KernelArgs,

    /// One JSON object per line (schema in README.md) instead of text.
    #[arg(long)]
    pub json: bool,

    /// Capture and print the full kernel stack of each drop.
    #[arg(long)]
    pub stack: bool,

    /// Size of the kernel-to-user ring buffer: a power of two, at least 4K. Bigger
    /// absorbs longer bursts before events are lost.
    #[arg(long, value_name = "BYTES", default_value = "8M", value_parser = parse_size)]
    pub ring_size: u32,

    /// Do not report kernel drop counters, nor the listeners named from them. Counters are
    /// reported, once a second as they grow, for drops that never reach kfree_skb (full
    /// accept or SYN queue, NIC ring, netdev backlog, conntrack table), unless --proto,
    /// --host, --src, --dst, --port or --iface narrows the traffic; listeners whose accept
    /// queue overflowed are named (LISTENER) also with --port and --proto tcp.
    #[arg(long)]
    pub no_counters: bool,

    /// Show at most N events per second for each flow and reason (on each CPU); drops
    /// beyond are counted exactly and reported as "N more like this" before the flow's next
    /// event, and in the summary. Keeps a flood of one flow from costing the dropping CPUs
    /// an event each while every quieter flow is still shown drop by drop. 0: no limit per
    /// flow (--budget still applies).
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub rate_limit: u32,

    /// Examine at most N drops per second for each reason and kernel location (on each
    /// CPU): their device and headers are read, the filters and --rate-limit applied, the
    /// event written. Drops beyond are only counted, exactly, like `netdrop stats` counts
    /// them, and reported as "N more drops ... not examined" and in the summary. Under a
    /// flood this keeps watching as cheap for the dropping CPUs as counting (the headers
    /// are not even read, unless a --port, --host, --src, --dst, --proto, --netns or --iface
    /// filter needs them). 0 examines every drop; `--rate-limit 0 --budget 0` shows every drop.
    #[arg(long, value_name = "N", default_value_t = 2000)]
    pub budget: u32,

    /// Stop after this many drops.
    #[arg(long, value_name = "N", value_parser = parse_count)]
    pub count: Option<u64>,

    /// Stop after this long (e.g. 30s, 5m, 1h).
    #[arg(long, value_name = "TIME", value_parser = parse_duration)]
    pub duration: Option<Duration>,

    /// Also write each shown drop as a packet to FILE in pcap-ng, for Wireshark or tshark:
    /// the first --snaplen bytes of the packet as the kernel held it, one interface per
    /// device and network namespace, and a packet comment with the drop reason, location
    /// and namespace (tshark: `-e frame.comment`). FILE is created readable by its owner
    /// only, since it holds packets. `-` writes pcap-ng to stdout and the text (or JSON)
    /// lines to stderr, so `netdrop watch --pcap - | wireshark -k -i -` shows drops live.
    #[arg(long, value_name = "FILE")]
    pub pcap: Option<PathBuf>,

    /// With --pcap: bytes of each packet to keep, from its Ethernet header (or its IP
    /// header where it has none), 1 to 256. The kernel copies them when it drops the packet.
    #[arg(long, value_name = "BYTES", default_value_t = netdrop_common::CAPTURE_MAX as u32, value_parser = parse_snaplen, requires = "pcap")]
    pub snaplen: u32,

    #[command(flatten)]
    pub metrics: MetricsArgs,

    /// Read drops from a recording made by `netdrop record` instead of the kernel (no
    /// root needed); filters then apply to the recorded drops, as the kernel applies them
    /// (--netns takes an inode or a namespace name as recorded).
    #[arg(long, value_name = "FILE")]
    pub from: Option<PathBuf>,
}

/// Options for `record`.
#[derive(Debug, Args)]
pub struct RecordArgs {
    #[command(flatten)]
    pub filter: FilterArgs,

    #[command(flatten)]
    pub kernel: KernelArgs,

    /// The recording to write (created with mode 0600).
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,

    /// Overwrite FILE if it exists.
    #[arg(long)]
    pub force: bool,

    /// Stop after this long (e.g. 30s, 5m, 1h); otherwise at Ctrl-C.
    #[arg(long, value_name = "TIME", value_parser = parse_duration)]
    pub duration: Option<Duration>,

    /// How often the exact counts are written (what `stats --from` shows per report).
    #[arg(long, value_name = "TIME", default_value = "1s", value_parser = parse_duration)]
    pub interval: Duration,

    /// Size of the kernel-to-user ring buffer, as for `watch`.
    #[arg(long, value_name = "BYTES", default_value = "8M", value_parser = parse_size)]
    pub ring_size: u32,

    /// Groups kept per grouping in each snapshot, the most drops since start first (0:
    /// all); the rest are summed as (other). A flood of new flows makes thousands of them.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub top: usize,

    #[command(flatten)]
    pub flows: FlowArgs,
}

/// Options for `diagnose`.
#[derive(Debug, Args)]
pub struct DiagnoseArgs {
    #[command(flatten)]
    pub filter: FilterArgs,

    #[command(flatten)]
    pub kernel: KernelArgs,

    /// How long to watch (e.g. 10s, 1m); Ctrl-C ends earlier and still reports.
    #[arg(long, value_name = "TIME", default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,

    /// One JSON document (findings, then the evidence they rest on) instead of text.
    #[arg(long)]
    pub json: bool,

    /// Diagnose again, offline, from the evidence in a saved `diagnose --json` document
    /// or from a recording made by `netdrop record` (e.g. on another machine, or with a
    /// newer netdrop); reads no kernel, needs no root.
    #[arg(long, value_name = "FILE")]
    pub from: Option<PathBuf>,
}

/// Options for `hooks`.
#[derive(Debug, Args)]
pub struct HooksArgs {
    #[command(flatten)]
    pub kernel: KernelArgs,

    /// One JSON document instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Options for `reasons`.
#[derive(Debug, Args)]
pub struct ReasonsArgs {
    #[command(flatten)]
    pub kernel: KernelArgs,

    /// JSON array instead of text.
    #[arg(long)]
    pub json: bool,
}

/// How to find and hook the kernel.
#[derive(Debug, Args, Clone)]
pub struct KernelArgs {
    /// Kernel BTF to read struct layouts and reason names from, for kernels that do not
    /// expose /sys/kernel/btf/vmlinux.
    #[arg(long, value_name = "FILE")]
    pub btf: Option<PathBuf>,

    /// Which kfree_skb hook to use: the BTF raw tracepoint (cheapest), the classic
    /// tracepoint, or the best that works.
    #[arg(long, value_enum, default_value_t = AttachMode::Auto)]
    pub attach: AttachMode,

    /// Leave out one of the optional kprobe hooks (repeatable): conntrack, tcp_listen,
    /// tcp_drop or backlog, as `netdrop hooks` names them. For example `--without tcp_drop`
    /// on a kernel before 5.17 with heavy TCP traffic, where that hook's probe runs on every
    /// __kfree_skb (README's benchmark gives its cost); its drops are then only counted by
    /// the TcpExt counters.
    #[arg(long, value_name = "HOOK", value_parser = clap::builder::PossibleValuesParser::new(["conntrack", "tcp_listen", "tcp_drop", "backlog"]))]
    pub without: Vec<String>,
}

/// Filters shared by every command that reads drops.
#[derive(Debug, Args, Clone, Default)]
#[command(next_help_heading = "Filters (evaluated in the kernel)")]
pub struct FilterArgs {
    /// Only drops with this reason (repeatable; names as `netdrop reasons` lists them).
    #[arg(long, value_name = "NAME")]
    pub reason: Vec<String>,

    /// Never drops with this reason (repeatable).
    #[arg(long, value_name = "NAME")]
    pub exclude_reason: Vec<String>,

    /// Only this protocol: tcp, udp, icmp, icmpv6, sctp, ipv4, ipv6, arp or a number.
    #[arg(long, value_name = "PROTO", value_parser = filter::parse_proto)]
    pub proto: Option<Proto>,

    /// Only packets from or to this address or prefix.
    #[arg(long, value_name = "ADDR[/PREFIX]", value_parser = filter::parse_prefix)]
    pub host: Option<AddrMatch>,

    /// Only packets from this address or prefix.
    #[arg(long, value_name = "ADDR[/PREFIX]", value_parser = filter::parse_prefix)]
    pub src: Option<AddrMatch>,

    /// Only packets to this address or prefix.
    #[arg(long, value_name = "ADDR[/PREFIX]", value_parser = filter::parse_prefix)]
    pub dst: Option<AddrMatch>,

    /// Only TCP/UDP/SCTP packets with this source or destination port.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,

    /// Only drops in this network namespace: inode number, `ip netns` name, or a path
    /// such as /proc/PID/ns/net.
    #[arg(long, value_name = "NETNS")]
    pub netns: Option<String>,

    /// Only drops in the network namespace of this Kubernetes pod: NAME, NAMESPACE/NAME or
    /// UID (names as the kubelet writes them under /var/log/pods). Waits for the pod when
    /// none matches yet.
    #[arg(long, value_name = "POD", value_parser = filter::parse_selector, conflicts_with = "netns")]
    pub pod: Option<String>,

    /// Only drops in the network namespace of this container: an id prefix (as `docker ps`
    /// or `crictl ps` print) or a name. Containers of one pod share it. Waits for the
    /// container when none matches yet.
    #[arg(long, value_name = "ID|NAME", value_parser = filter::parse_selector, conflicts_with = "netns")]
    pub container: Option<String>,

    /// Only packets on this device (by name, in any namespace).
    #[arg(long, value_name = "NAME", value_parser = filter::parse_iface)]
    pub iface: Option<[u8; 16]>,
}

impl FilterArgs {
    /// Checks what needs the system (namespace names) and returns the spec.
    pub fn spec(&self, root: &std::path::Path) -> Result<FilterSpec, crate::error::Error> {
        let netns = self
            .netns
            .as_deref()
            .map(|n| filter::parse_netns(n, root))
            .transpose()
            .map_err(crate::error::Error::BadArgument)?;
        Ok(FilterSpec {
            reasons: self.reason.clone(),
            exclude_reasons: self.exclude_reason.clone(),
            proto: self.proto,
            host: self.host,
            src: self.src,
            dst: self.dst,
            port: self.port,
            netns,
            iface: self.iface,
        })
    }
}

impl FilterArgs {
    /// The namespace `--pod` / `--container` select under `root`, waiting (and saying so on
    /// stderr) while none matches; `None` without them.
    pub fn workload_netns(
        &self,
        root: &std::path::Path,
    ) -> Result<Option<u32>, crate::error::Error> {
        let sel = filter::WorkloadSelector {
            pod: self.pod.clone(),
            container: self.container.clone(),
        };
        if sel.is_empty() {
            return Ok(None);
        }
        sel.resolve(root, |m| eprintln!("netdrop: {m}"))
            .map(Some)
            .map_err(crate::error::Error::BadArgument)
    }
}

/// Parses sizes like `4096`, `64K`, `8M`, `1G` (binary units) that are powers of two.
pub fn parse_size(s: &str) -> Result<u32, String> {
    let (num, mult) = match s.trim().to_ascii_uppercase() {
        t if t.ends_with('K') => (t[..t.len() - 1].to_owned(), 1u64 << 10),
        t if t.ends_with('M') => (t[..t.len() - 1].to_owned(), 1 << 20),
        t if t.ends_with('G') => (t[..t.len() - 1].to_owned(), 1 << 30),
        t => (t, 1),
    };
    let bytes = num
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("`{s}` is not a size (e.g. 4096, 256K, 8M)"))?;
    if !(4096..=1 << 30).contains(&bytes) || !bytes.is_power_of_two() {
        return Err(format!(
            "`{s}` must be a power of two between 4K and 1G (e.g. 8M)"
        ));
    }
    Ok(bytes as u32)
}

/// Parses durations like `10`, `10s`, `500ms`, `5m`, `1h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (e.g. 30s, 5m, 1h)"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("`{s}` has an unknown unit: use ms, s, m or h")),
    };
    // Checked before converting: Duration::from_secs_f64 panics on huge values.
    if !(MIN_DURATION_S..=MAX_DURATION_S).contains(&secs) {
        return Err(format!(
            "`{s}` is out of range: use 1ms to 365 days (e.g. 500ms, 30s, 5m, 1h)"
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Shortest interval or duration: a timer period must not round to zero.
const MIN_DURATION_S: f64 = 0.001;
/// Longest: a year.
const MAX_DURATION_S: f64 = 365.0 * 86400.0;

/// Parses `--count`: a positive whole number.
/// `--snaplen`: 1 to [`netdrop_common::CAPTURE_MAX`] bytes.
pub fn parse_snaplen(s: &str) -> Result<u32, String> {
    let max = netdrop_common::CAPTURE_MAX as u32;
    match s.trim().parse::<u32>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(format!(
            "`{s}` is not a snap length: use a number of bytes from 1 to {max} (netdrop's kernel side copies at most {max})"
        )),
    }
}

pub fn parse_count(s: &str) -> Result<u64, String> {
    match s.trim().parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("`{s}` is not a count: use a whole number from 1")),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn snap_length_is_checked_in_one_sentence() {
        assert_eq!(parse_snaplen("64"), Ok(64));
        assert_eq!(parse_snaplen("256"), Ok(256));
        let msg = "is not a snap length: use a number of bytes from 1 to 256 (netdrop's kernel \
                   side copies at most 256)";
        assert_eq!(parse_snaplen("0"), Err(format!("`0` {msg}")));
        assert_eq!(parse_snaplen("257"), Err(format!("`257` {msg}")));
        assert_eq!(parse_snaplen("lots"), Err(format!("`lots` {msg}")));
        // --snaplen means nothing without --pcap.
        let r = Cli::try_parse_from(["netdrop", "watch", "--snaplen", "64"]);
        assert!(r.is_err());
        let r = Cli::try_parse_from(["netdrop", "watch", "--pcap", "-", "--snaplen", "64"]);
        assert!(r.is_ok());
        let r = Cli::try_parse_from(["netdrop", "watch"]);
        assert!(r.is_ok(), "the default snap length needs no --pcap");
    }

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn counts_and_flow_capacities_are_bounded() {
        assert_eq!(parse_count("3"), Ok(3));
        for bad in ["0", "-1", "1.5", "x", "99999999999999999999"] {
            assert!(parse_count(bad).is_err(), "{bad}");
        }
        for bad in ["0", "-5", "1048577", "99999999999"] {
            assert!(
                Cli::try_parse_from(["netdrop", "stats", "--max-flows", bad]).is_err(),
                "{bad}"
            );
        }
        assert!(Cli::try_parse_from(["netdrop", "exporter", "--max-flows", "64"]).is_ok());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("8M"), Ok(8 << 20));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("256k"), Ok(256 << 10));
        assert!(parse_size("3M").unwrap_err().contains("power of two"));
        assert!(parse_size("1K").is_err());
        assert!(parse_size("lots").unwrap_err().contains("not a size"));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert!(parse_duration("0").is_err());
        // Zero after rounding, negative, not a number, infinite, overflowing: one sentence each.
        for bad in [
            "0.0000000001",
            "-1",
            "NaN",
            "inf",
            "1e300h",
            "99999999999999999999d",
            "1.5.2",
            "",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_duration("1ms"), Ok(Duration::from_millis(1)));
        assert!(parse_duration("3 days").is_err());
    }

    #[test]
    fn filter_flags_parse() {
        let cli = Cli::try_parse_from([
            "netdrop",
            "watch",
            "--reason",
            "NO_SOCKET",
            "--reason",
            "TCP_CSUM",
            "--proto",
            "udp",
            "--port",
            "9",
            "--host",
            "10.0.0.0/8",
            "--iface",
            "lo",
        ])
        .unwrap();
        let Command::Watch(w) = cli.command else {
            panic!("not watch")
        };
        assert_eq!(w.filter.reason, ["NO_SOCKET", "TCP_CSUM"]);
        assert_eq!(w.filter.port, Some(9));
        assert_eq!(w.ring_size, 8 << 20);
        let err = Cli::try_parse_from(["netdrop", "watch", "--port", "0"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
        let err = Cli::try_parse_from(["netdrop", "watch", "--host", "nope"]).unwrap_err();
        assert!(err.to_string().contains("not an IPv4 or IPv6 address"));
    }
}
