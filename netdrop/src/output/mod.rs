//! Writing records: one readable line each, one JSON object per line, or pcap-ng; each
//! format is a [`sink::Sink`].

pub mod diagnose;
pub mod hooks;
pub mod json;
pub mod metrics;
pub mod pcapng;
pub mod printable;
pub mod receive;
pub mod recording;
pub mod sink;
pub mod stats;
pub mod text;
pub mod tui;

use serde::{Deserialize, Serialize};

use crate::event::DropRecord;

/// Events the ring buffer had no room for since the last notice.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LostNotice {
    pub time: String,
    /// Events lost since the previous notice (ring buffer full).
    pub lost: u64,
    /// Events lost since start.
    pub lost_total: u64,
    /// Drops the kernel skipped since the previous notice because our program was already
    /// running on that CPU.
    pub missed: u64,
    pub missed_total: u64,
}

/// Drops of one flow and reason that the rate limit (`watch --rate-limit`) counted but did
/// not show: "N more like this".
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuppressedNotice {
    pub time: String,
    /// Drops not shown since the last notice for this flow and reason (on one CPU).
    pub count: u64,
    pub reason: crate::event::ReasonInfo,
    /// The flow's addresses, protocol and ports (no length or TCP flags: a flow is many
    /// packets).
    pub packet: crate::event::Packet,
    pub netns: Option<crate::event::Netns>,
    /// The limit, events per second per flow and reason on each CPU.
    pub rate_limit: u32,
}

/// Drops of one reason at one location that went past the event budget
/// (`watch --budget`) on one CPU: counted exactly, not examined (no headers, no event).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverBudgetNotice {
    pub time: String,
    /// Drops not examined since the last notice for this reason and location on this CPU.
    pub count: u64,
    pub reason: crate::event::ReasonInfo,
    pub location: crate::event::Location,
    /// The CPU whose budget it was.
    pub cpu: u32,
    /// The budget: drops examined per second per reason and location on each CPU.
    pub budget: u32,
}

/// A kernel drop counter that grew: drops that never reach `kfree_skb`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterNotice {
    pub time: String,
    /// e.g. `TcpExt.ListenOverflows`, `nf_conntrack.drop`, `softnet.dropped`, `dev.eth0.rx_fifo`.
    pub counter: String,
    /// Growth since the previous notice (or since netdrop started).
    pub delta: u64,
    /// The kernel's value now.
    pub total: u64,
    /// Namespace of the counter; `null` for global ones (softnet).
    pub netns: Option<crate::event::Netns>,
    /// What the counter means.
    pub meaning: String,
}

/// A listener blamed for accept-queue drops: inferred from the growth of the listener
/// counters of its namespace and its queue as sock_diag showed it right after, not seen
/// per packet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerNotice {
    pub time: String,
    /// Always `sock_diag`: the record is an inference, see above.
    pub source: String,
    pub netns: crate::event::Netns,
    /// `ipv4` or `ipv6`.
    pub family: String,
    /// Local address the socket listens on (`0.0.0.0` / `::` for any).
    pub addr: String,
    pub port: u16,
    /// Accept queue length when read.
    pub queue: u32,
    /// Accept queue limit: min(listen() backlog, net.core.somaxconn).
    pub limit: u32,
    /// `full` (queue at or over its limit) or `filling` (no listener was full; this one's
    /// queue was not empty).
    pub state: String,
    /// Growth of `TcpExt.ListenOverflows` in the namespace over the interval.
    pub overflows: u64,
    /// Growth of `TcpExt.ListenDrops` (includes the overflows).
    pub listen_drops: u64,
    /// Growth of `TcpExt.TCPReqQFullDrop` (SYN queue full).
    pub reqq_full_drops: u64,
    /// Listeners the growth is shared by: 1 means it is this one's; more means several were
    /// full and the split is unknown.
    pub shared_by: usize,
    pub inode: u32,
    pub uid: u32,
    /// A process holding the socket (the lowest pid), if one was found.
    pub process: Option<crate::kernel::owners::Owner>,
}

impl ListenerNotice {
    /// The record of a blamed listener, named in namespace `netns` and held by `process`.
    pub fn new(
        n: &crate::aggregate::listeners::Named,
        netns: crate::event::Netns,
        process: Option<crate::kernel::owners::Owner>,
        time: String,
    ) -> Self {
        Self {
            time,
            source: "sock_diag".to_owned(),
            netns,
            family: if n.socket.local.is_ipv6() {
                "ipv6"
            } else {
                "ipv4"
            }
            .to_owned(),
            addr: n.socket.local.to_string(),
            port: n.socket.local_port,
            queue: n.socket.rqueue,
            limit: n.socket.wqueue,
            state: n.fill.name().to_owned(),
            overflows: n.growth.overflows,
            listen_drops: n.growth.listen_drops,
            reqq_full_drops: n.growth.reqq_full_drops,
            shared_by: n.shared_by,
            inode: n.socket.inode,
            uid: n.socket.uid,
            process,
        }
    }
}

/// A socket whose own drop count (`sk_drops`) grew in the interval, read through
/// sock_diag: measured by the kernel per socket, not inferred.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SocketNotice {
    /// `tcp` or `udp`.
    pub protocol: String,
    pub netns: crate::event::Netns,
    /// `ipv4` or `ipv6`.
    pub family: String,
    /// Local address and port (`0.0.0.0` / `::` for any).
    pub addr: String,
    pub port: u16,
    /// Remote address and port of a connected socket; `null` for an unconnected one.
    pub remote_addr: Option<String>,
    pub remote_port: Option<u16>,
    /// Growth of `sk_drops` over the interval.
    pub drops: u64,
    /// `sk_drops` now: drops since the socket was created.
    pub sk_drops: u64,
    /// Bytes waiting in the receive queue when read.
    pub rqueue: u32,
    pub inode: u32,
    pub uid: u32,
    /// A process holding the socket (the lowest pid), if one was found.
    pub process: Option<crate::kernel::owners::Owner>,
}

impl SocketNotice {
    /// The record of a socket that dropped, in namespace `netns` and held by `process`.
    pub fn new(
        g: &crate::aggregate::sockets::Grown,
        netns: crate::event::Netns,
        process: Option<crate::kernel::owners::Owner>,
    ) -> Self {
        let s = &g.socket;
        let connected = s.remote_port != 0;
        Self {
            protocol: s.protocol.name().to_owned(),
            netns,
            family: if s.local.is_ipv6() { "ipv6" } else { "ipv4" }.to_owned(),
            addr: s.local.to_string(),
            port: s.local_port,
            remote_addr: connected.then(|| s.remote.to_string()),
            remote_port: connected.then_some(s.remote_port),
            drops: g.growth,
            sk_drops: g.total,
            rqueue: s.rqueue,
            inode: s.inode,
            uid: s.uid,
            process,
        }
    }
}

/// Per-reason count.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReasonCount {
    pub name: String,
    pub code: u32,
    pub subsystem: Option<String>,
    pub count: u64,
}

/// End-of-run report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub duration_s: f64,
    /// The hook that was attached.
    pub hook: String,
    /// Drops the hook saw, before filters.
    pub seen: u64,
    /// Drops that passed the filters (exact, counted in the kernel).
    pub matched: u64,
    /// Events written to the output.
    pub delivered: u64,
    /// Events lost because the ring buffer was full.
    pub lost: u64,
    /// Matched drops the rate limit counted but did not show (`matched` = `delivered` +
    /// `suppressed` + `lost` when the run was not cut short by --count or a closed output).
    #[serde(default)]
    pub suppressed: u64,
    /// The rate limit in force, events per second per flow and reason on each CPU (0: none).
    #[serde(default)]
    pub rate_limit: u32,
    /// Matched drops past the event budget: counted, not examined (`matched` = `delivered`
    /// + `suppressed` + `over_budget` + `lost`).
    #[serde(default)]
    pub over_budget: u64,
    /// The event budget in force, drops examined per second per reason and location on
    /// each CPU (0: none).
    #[serde(default)]
    pub budget: u32,
    /// Drops the kernel did not run netdrop's program for (nested on one CPU).
    pub missed: u64,
    /// Events shown without their kernel stack because it could not be captured (the
    /// stack map was full).
    #[serde(default)]
    pub stack_errors: u64,
    /// Exact matched drops per reason, most first.
    pub by_reason: Vec<ReasonCount>,
    /// Kernel drop counters that grew while netdrop ran (drops `kfree_skb` does not show).
    #[serde(default)]
    pub counters: Vec<CounterGrowth>,
    /// Listeners named for accept-queue drops while netdrop ran, most growth first
    /// (inferred from counters + sock_diag).
    #[serde(default)]
    pub listeners: Vec<ListenerTotal>,
}

/// A listener's `TcpExt.ListenOverflows` growth over a run: the growth of its namespace
/// in the polls that named it (growth shared by several full listeners counts for each).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerTotal {
    pub netns: crate::event::Netns,
    pub addr: String,
    pub port: u16,
    pub overflows: u64,
}

/// Growth of one kernel counter over the whole run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterGrowth {
    pub counter: String,
    pub netns: Option<crate::event::Netns>,
    pub delta: u64,
}

/// A line of `--json` output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[expect(
    clippy::large_enum_variant,
    reason = "built and written one at a time; boxing would add an allocation per drop"
)]
pub enum JsonLine {
    Drop(DropRecord),
    Lost(LostNotice),
    Counter(CounterNotice),
    Listener(ListenerNotice),
    Summary(Summary),
    Suppressed(SuppressedNotice),
    OverBudget(OverBudgetNotice),
}

/// Output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}
