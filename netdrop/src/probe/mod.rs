//! Loading and attaching the eBPF programs this kernel supports, and reading their maps.
//!
//! Hook choice for `kfree_skb`: the BTF raw tracepoint when the kernel allows it (cheapest:
//! no record copy, typed arguments), else the classic tracepoint with offsets from its
//! format file. Everything is detached when the [`Probe`] is dropped; nothing is pinned.

use std::{collections::HashMap, fmt, os::fd::AsRawFd};

pub mod attribution;
pub mod hooks;

use std::sync::{Arc, Mutex};

use aya::{
    Btf as AyaBtf, Ebpf, EbpfLoader,
    maps::{HashMap as BpfHashMap, MapData, PerCpuArray, PerCpuHashMap, RingBuf, StackTraceMap},
    programs::Program,
};
use netdrop_common::{
    CONNTRACK_FUNCTION, Config, KernelOffsets, MAX_DEVICES, MAX_LOCATIONS, MAX_STACKS, OFFSET_NONE,
    TracepointLayout, global, map, stat,
};

use crate::{
    aggregate::{Counters, Totals},
    error::Error,
    filter::CompiledFilter,
    kernel::{Kernel, kallsyms::Table, offsets::HookArity, reasons::Source},
};

/// Upper bound for [`Config::wakeup_bytes`]: about 2000 events per wakeup.
const WAKEUP_BYTES_MAX: u32 = 256 << 10;

/// How often readers drain the ring buffer without a wakeup: the latency of an event when
/// drops are too few to reach the wakeup threshold.
pub const DRAIN_INTERVAL: std::time::Duration = std::time::Duration::from_millis(20);

/// The compiled eBPF object.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/netdrop"));

/// Which `kfree_skb` hook to use (`--attach`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AttachMode {
    /// BTF raw tracepoint, else classic tracepoint.
    Auto,
    /// BTF raw tracepoint only (tp_btf/kfree_skb).
    Btf,
    /// Classic tracepoint only (skb:kfree_skb).
    Tracepoint,
}

/// What to load.
#[derive(Clone, Debug)]
pub struct ProbeConfig {
    pub attach: AttachMode,
    /// `netdrop_common::config` bits.
    pub flags: u32,
    pub filter: CompiledFilter,
    /// Ring buffer size in bytes (power of two).
    pub ring_size: u32,
    /// Capacity of the flow map.
    pub flow_capacity: u32,
    /// Forward kernel-side debug messages (aya-log) to tracing.
    pub kernel_log: bool,
    /// Hook families the user left out (`--without`): registry ids.
    pub without: Vec<String>,
    /// Packet bytes each event carries with `netdrop_common::config::CAPTURE`.
    pub snaplen: u32,
    /// Events written per flow and reason per second on each CPU (0: every event); the
    /// rest are counted as suppressed.
    pub rate_limit: u32,
    /// Drops examined in full per reason and location per second on each CPU (0: every
    /// drop); the rest are counted as over budget.
    pub budget: u32,
}

impl ProbeConfig {
    /// Whether the user left the hook family `id` out with `--without`.
    pub fn leaves_out(&self, id: &str) -> bool {
        self.without.iter().any(|w| w == id)
    }

    /// A configuration with `flags` (outputs and counts wanted); adds the bits for the
    /// reads they and the filters need (headers, device), so nothing else is read.
    pub fn new(attach: AttachMode, flags: u32, filter: CompiledFilter) -> Self {
        use netdrop_common::config as c;
        let mut flags = flags;
        if flags & (c::EVENTS | c::BY_FLOW) != 0 || filter.filter.needs_headers() {
            flags |= c::HEADERS;
        }
        if flags & (c::EVENTS | c::BY_DEVICE | c::BY_FLOW) != 0
            || filter.filter.netns != 0
            || filter.filter.has_iface != 0
        {
            flags |= c::DEVICE;
        }
        Self {
            attach,
            flags,
            filter,
            ring_size: 1 << 12,
            flow_capacity: netdrop_common::MAX_FLOWS,
            kernel_log: false,
            without: Vec::new(),
            snaplen: 0,
            rate_limit: 0,
            budget: 0,
        }
    }

    /// The kernel may apply the event budget before reading device and headers: nothing
    /// but the event itself needs them (no device, namespace or header filter, no
    /// per-device or per-flow count).
    fn budget_early(&self) -> bool {
        use netdrop_common::config as c;
        let f = &self.filter.filter;
        self.budget != 0
            && self.flags & c::EVENTS != 0
            && self.flags & (c::BY_DEVICE | c::BY_FLOW) == 0
            && !f.needs_headers()
            && f.netns == 0
            && f.has_iface == 0
    }
}

/// What the hooks report says of a family the user left out.
pub(crate) fn turned_off(id: &str) -> String {
    format!("turned off with --without {id}")
}

/// The hook that is attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    /// `tp_btf/kfree_skb`.
    BtfTracepoint(HookArity),
    /// `tracepoint/skb/kfree_skb`.
    Tracepoint(TracepointLayout),
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Hook::BtfTracepoint(a) => {
                let args = hooks::kfree_skb::arguments(*a);
                write!(f, "BTF raw tracepoint tp_btf/kfree_skb ({args})")
            }
            Hook::Tracepoint(l) => {
                let reason = if l.reason == netdrop_common::OFFSET_NONE {
                    "no reason field"
                } else {
                    "with reason"
                };
                write!(f, "classic tracepoint skb:kfree_skb ({reason})")
            }
        }
    }
}

/// Whether NETFILTER_DROPs can be told apart as conntrack's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Conntrack {
    /// Not attempted (events are not streamed).
    NotTried,
    /// nf_conntrack is not loaded yet.
    Waiting,
    /// Attached: conntrack drops are flagged.
    Attached,
    /// This kernel does not allow it (no kprobes); the reason.
    Unavailable(String),
}

/// Loaded and attached programs.
pub struct Probe {
    ebpf: Ebpf,
    /// `netdrop_common::config` bits the programs run with.
    flags: u32,
    /// The attached hook.
    pub hook: Hook,
    /// State of the conntrack hook.
    pub conntrack: Conntrack,
    /// The user left the conntrack hook out (`--without conntrack`).
    without_conntrack: bool,
    /// State of the TCP listener hook.
    pub tcp_listen: hooks::tcp::TcpListen,
    /// State of the tcp_drop path hook (kernels before 5.17).
    pub tcp_drop_path: hooks::tcp::DropPath,
    /// State of the netdev backlog hook.
    pub backlog: hooks::backlog::Backlog,
    prog_name: &'static str,
    prog_fd: i32,
    /// Recursion misses read just before [`Probe::detach`] closed the program.
    final_missed: Option<u64>,
    stack_cache: HashMap<u32, Vec<u64>>,
    /// Per-location, per-device and per-flow counts, drained every second by a thread of
    /// their own so the kernel's maps never stay full.
    attribution: Arc<Mutex<attribution::Attribution>>,
}

impl Probe {
    /// Loads the object for this kernel and attaches the best `kfree_skb` hook allowed by
    /// `cfg.attach`.
    pub fn load(kernel: &Kernel, cfg: &ProbeConfig) -> Result<Self, Error> {
        let mut btf_error = None;
        if cfg.attach != AttachMode::Tracepoint {
            // aya reads types of its own (it cannot take ours): parse them only for the hook
            // that needs them, from the bytes read once already.
            let arity_and_btf = kernel
                .arity
                .as_ref()
                .map_err(|e| format!("kernel {e}"))
                .and_then(|arity| Ok((*arity, aya_btf(kernel)?)));
            match arity_and_btf {
                Ok((arity, aya_btf)) => {
                    match hooks::kfree_skb::attach_btf(kernel, cfg, &aya_btf, arity) {
                        Ok((ebpf, hook, name, fd)) => {
                            return Self::finish(ebpf, hook, name, fd, cfg, kernel);
                        }
                        Err(e) if cfg.attach == AttachMode::Auto => {
                            tracing::info!(
                                "BTF raw tracepoint unavailable ({e}); trying the classic tracepoint"
                            );
                            btf_error = Some(e.to_string());
                        }
                        Err(e) => return Err(e),
                    }
                }
                Err(details) if cfg.attach == AttachMode::Btf => {
                    return Err(Error::NoHook { details });
                }
                Err(details) => {
                    tracing::info!(
                        "BTF raw tracepoint unavailable ({details}); trying the classic tracepoint"
                    );
                    btf_error = Some(details);
                }
            }
        }
        hooks::kfree_skb::attach_tracepoint(kernel, cfg)
            .and_then(|(ebpf, hook, name, fd)| Self::finish(ebpf, hook, name, fd, cfg, kernel))
            .map_err(|e| match (btf_error, e) {
                (Some(b), Error::Program { source, .. }) => Error::NoHook {
                    details: format!("BTF tracepoint: {b}; classic tracepoint: {source}"),
                },
                (_, e) => e,
            })
    }

    fn finish(
        mut ebpf: Ebpf,
        hook: Hook,
        prog_name: &'static str,
        prog_fd: i32,
        cfg: &ProbeConfig,
        kernel: &Kernel,
    ) -> Result<Self, Error> {
        let map_err = map_error(map::REASON_FILTER);
        if !cfg.filter.reason_set.is_empty() {
            let m = ebpf
                .map_mut(map::REASON_FILTER)
                .ok_or_else(|| missing_map(map::REASON_FILTER))?;
            let mut set: BpfHashMap<_, u32, u8> = BpfHashMap::try_from(m).map_err(map_err)?;
            for r in &cfg.filter.reason_set {
                set.insert(r, 1, 0).map_err(map_err)?;
            }
        }
        if cfg.kernel_log {
            start_kernel_log(&mut ebpf);
        }
        let attribution = Arc::new(Mutex::new(attribution::Attribution::take(
            &mut ebpf,
            cfg.flags,
            cfg.flow_capacity,
        )?));
        attribution::start_draining(&attribution);
        tracing::info!("attached {hook}");
        let tcp_listen = if cfg.leaves_out(hooks::tcp::LISTEN_FAMILY.id) {
            hooks::tcp::TcpListen::Unavailable(turned_off(hooks::tcp::LISTEN_FAMILY.id))
        } else {
            hooks::tcp::attach(&mut ebpf, &kernel.reasons)
        };
        match &tcp_listen {
            hooks::tcp::TcpListen::Attached { acks } => tracing::info!(
                "attached TCP listener hook: kprobes on {}{}",
                netdrop_common::tcp_functions::CONN_REQUEST,
                if *acks {
                    ", tcp_v4_syn_recv_sock, tcp_v6_syn_recv_sock"
                } else {
                    " (handshake ACKs are the kernel's TCP_LISTEN_OVERFLOW here)"
                }
            ),
            hooks::tcp::TcpListen::Unavailable(why) => tracing::info!(
                "TCP listener hook unavailable ({why}): SYNs dropped at full listeners are named from kernel counters and sock_diag"
            ),
        }
        let tcp_drop_path = if kernel.reasons.source != Source::None {
            hooks::tcp::DropPath::NotNeeded
        } else if cfg.leaves_out(hooks::tcp::DROP_PATH_FAMILY.id) {
            hooks::tcp::DropPath::Unavailable(turned_off(hooks::tcp::DROP_PATH_FAMILY.id))
        } else {
            let kallsyms = read_kallsyms();
            let sites = hooks::tcp::drop_sites(&kernel.reasons, &kallsyms);
            hooks::tcp::attach_drop_path(&mut ebpf, &sites, &kallsyms)
        };
        match &tcp_drop_path {
            hooks::tcp::DropPath::Attached(sites) => tracing::info!(
                "attached tcp_drop path hook: kprobe on __kfree_skb, counting calls from {}",
                sites.join(", ")
            ),
            hooks::tcp::DropPath::Unavailable(why) => tracing::info!(
                "tcp_drop path hook unavailable ({why}): TCP drops inside the receive path (PAWS, window, memory) are not seen on this kernel; TcpExt counters still count them"
            ),
            hooks::tcp::DropPath::NotNeeded => {}
        }
        let backlog = hooks::backlog::attach(&mut ebpf, cfg, kernel);
        match &backlog {
            hooks::backlog::Backlog::Attached(function) => tracing::info!(
                "attached backlog hook: kprobe on {function}; CPU_BACKLOG events name the CPU whose backlog overflowed"
            ),
            hooks::backlog::Backlog::Unavailable(why) => tracing::info!(
                "backlog hook unavailable ({why}): CPU_BACKLOG drops are shown per CPU from the softnet counters only"
            ),
            hooks::backlog::Backlog::NotTried => {}
        }
        Ok(Self {
            attribution,
            ebpf,
            flags: cfg.flags,
            hook,
            prog_name,
            prog_fd,
            final_missed: None,
            stack_cache: HashMap::new(),
            conntrack: Conntrack::NotTried,
            without_conntrack: cfg.leaves_out(hooks::conntrack::FAMILY.id),
            tcp_listen,
            tcp_drop_path,
            backlog,
        })
    }

    /// Attaches the conntrack hook (kprobe + kretprobe on `nf_conntrack_in`) if this
    /// kernel allows it. While the nf_conntrack module is not loaded, it stays
    /// [`Conntrack::Waiting`]: call again later.
    pub fn attach_conntrack(&mut self) {
        if matches!(
            self.conntrack,
            Conntrack::Attached | Conntrack::Unavailable(_)
        ) {
            return;
        }
        if self.without_conntrack {
            self.conntrack = Conntrack::Unavailable(turned_off(hooks::conntrack::FAMILY.id));
            return;
        }
        if !std::path::Path::new("/sys/module/nf_conntrack").exists() {
            if self.conntrack != Conntrack::Waiting {
                tracing::info!("conntrack hook: waiting for the nf_conntrack module");
            }
            self.conntrack = Conntrack::Waiting;
            return;
        }
        if !std::path::Path::new(hooks::KPROBE_PMU).exists() {
            self.conntrack =
                Conntrack::Unavailable("this kernel has no kprobes (CONFIG_KPROBES)".to_owned());
            tracing::info!(
                "conntrack hook unavailable: this kernel has no kprobes; drops by a full conntrack table show \
                 as NETFILTER_DROP and in the nf_conntrack.drop counter"
            );
            return;
        }
        self.conntrack = match hooks::conntrack::attach(&mut self.ebpf) {
            Ok(()) => {
                tracing::info!("attached conntrack hook: kprobe/kretprobe {CONNTRACK_FUNCTION}");
                Conntrack::Attached
            }
            Err(e) => {
                tracing::info!(
                    "conntrack hook unavailable ({e}): drops by a full conntrack table show as NETFILTER_DROP \
                     and in the nf_conntrack.drop counter"
                );
                Conntrack::Unavailable(e.to_string())
            }
        };
    }

    /// Detaches and unloads the program, keeping the maps readable: counts freeze, so a
    /// final read is consistent with the events left in the ring buffer.
    pub fn detach(&mut self) {
        self.final_missed = Some(self.recursion_misses());
        let res = match self.ebpf.program_mut(self.prog_name) {
            Some(Program::BtfTracePoint(p)) => p.unload(),
            Some(Program::TracePoint(p)) => p.unload(),
            _ => Ok(()),
        };
        if let Err(e) = res {
            tracing::warn!("detaching {}: {e}", self.prog_name);
        }
    }

    /// Takes the event ring buffer (once).
    pub fn take_events(&mut self) -> Result<RingBuf<MapData>, Error> {
        let m = self
            .ebpf
            .take_map(map::EVENTS)
            .ok_or_else(|| missing_map(map::EVENTS))?;
        RingBuf::try_from(m).map_err(map_error(map::EVENTS))
    }

    /// Current kernel counters.
    pub fn counters(&self) -> Result<Counters, Error> {
        let arr: PerCpuArray<_, u64> = self.typed_map(map::STATS)?;
        let map_err = map_error(map::STATS);
        let get =
            |i: u32| -> Result<u64, Error> { Ok(arr.get(&i, 0).map_err(map_err)?.iter().sum()) };
        Ok(Counters {
            seen: get(stat::SEEN)?,
            matched: get(stat::MATCHED)?,
            lost: get(stat::LOST)?,
            location_untracked: get(stat::LOCATION_UNTRACKED)?,
            device_untracked: get(stat::DEVICE_UNTRACKED)?,
            flow_untracked: get(stat::FLOW_UNTRACKED)?,
            reason_untracked: get(stat::REASON_UNTRACKED)?,
            stack_errors: get(stat::STACK_ERRORS)?,
            suppressed: get(stat::SUPPRESSED)?,
            over_budget: get(stat::OVER_BUDGET)?,
            missed: self.recursion_misses(),
        })
    }

    /// The kernel's count of skipped nested runs, from the program's fdinfo.
    fn recursion_misses(&self) -> u64 {
        if let Some(n) = self.final_missed {
            return n;
        }
        let path = format!("/proc/self/fdinfo/{}", self.prog_fd);
        std::fs::read_to_string(path)
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("recursion_misses:"))
                    .and_then(|v| v.trim().parse().ok())
            })
            .unwrap_or(0)
    }

    /// Everything counted so far: the counters and the enabled per-CPU maps, summed.
    /// Drops let go from the bounded per-location, per-device and per-flow tables count as
    /// not attributed.
    pub fn totals(&self) -> Result<Totals, Error> {
        use netdrop_common::config as c;
        let mut counters = self.counters()?;
        let a = self
            .attribution
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .totals()?;
        counters.location_untracked += a.evicted.0;
        counters.device_untracked += a.evicted.1;
        counters.flow_untracked += a.evicted.2;
        let by_reason = if self.flags & c::BY_REASON != 0 {
            self.sum_per_cpu(map::BY_REASON)?.into_iter().collect()
        } else {
            HashMap::new()
        };
        Ok(Totals {
            mono_ns: crate::time::Clock::monotonic_now(),
            counters,
            by_reason,
            by_location: a.by_location,
            by_device: a.by_device,
            by_flow: a.by_flow,
        })
    }

    /// Map `name` of the loaded object as the map type `T`, for reading.
    fn typed_map<'a, T>(&'a self, name: &'static str) -> Result<T, Error>
    where
        T: TryFrom<&'a aya::maps::Map, Error = aya::maps::MapError>,
    {
        let m = self.ebpf.map(name).ok_or_else(|| missing_map(name))?;
        T::try_from(m).map_err(map_error(name))
    }

    /// Sums a per-CPU `key -> u64` map.
    pub fn sum_per_cpu<K: aya::Pod + Copy>(
        &self,
        name: &'static str,
    ) -> Result<Vec<(K, u64)>, Error> {
        let h: PerCpuHashMap<_, K, u64> = self.typed_map(name)?;
        let map_err = map_error(name);
        let mut out = Vec::new();
        for item in h.iter() {
            let (k, v) = item.map_err(map_err)?;
            out.push((k, v.iter().sum()));
        }
        Ok(out)
    }

    /// Per flow and reason, the drops the rate limit suppressed that no
    /// [`netdrop_common::SuppressedRecord`] reported yet, summed over CPUs. Read after
    /// [`Probe::detach`], these and the records account for every suppressed drop whose key
    /// stayed in the table.
    pub fn unreported_suppressed(&self) -> Result<Vec<(netdrop_common::FlowKey, u64)>, Error> {
        use netdrop_common::{FlowKey, RateState};
        let h: PerCpuHashMap<_, FlowKey, RateState> = self.typed_map(map::RATE)?;
        let map_err = map_error(map::RATE);
        let mut out = Vec::new();
        for item in h.iter() {
            let (k, v) = item.map_err(map_err)?;
            let left: u64 = v.iter().map(|s| s.suppressed - s.reported).sum();
            if left > 0 {
                out.push((k, left));
            }
        }
        Ok(out)
    }

    /// Per CPU, reason and location, the drops over the event budget that no
    /// [`netdrop_common::BudgetRecord`] reported yet. Read after [`Probe::detach`], these
    /// and the records account for every drop over budget.
    pub fn unreported_over_budget(&self) -> Result<Vec<netdrop_common::BudgetRecord>, Error> {
        use netdrop_common::{BUDGET_ENTRIES, BudgetRecord, BudgetSet};
        let arr: PerCpuArray<_, BudgetSet> = self.typed_map(map::BUDGET)?;
        let map_err = map_error(map::BUDGET);
        // Per-CPU values come in the order of the possible CPUs, whose ids can have gaps.
        let cpus = crate::kernel::cpus::possible()?;
        let mut out = Vec::new();
        for entry in 0..BUDGET_ENTRIES {
            let values = arr.get(&entry, 0).map_err(map_err)?;
            for (set, &cpu) in values.iter().zip(&cpus) {
                for w in set.ways.iter().filter(|w| w.skipped > w.reported) {
                    out.push(BudgetRecord {
                        reason: w.reason,
                        cpu,
                        location: w.location,
                        count: w.skipped - w.reported,
                        timestamp_ns: 0,
                    });
                }
            }
        }
        Ok(out)
    }

    /// Kernel stack `id` (innermost first), cached: stack ids are stable for the life of
    /// the map.
    pub fn stack(&mut self, id: u32) -> Option<&[u64]> {
        if !self.stack_cache.contains_key(&id) {
            let m = self.ebpf.map(map::STACKS)?;
            let stacks = StackTraceMap::try_from(m).ok()?;
            let trace = stacks.get(&id, 0).ok()?;
            let frames = trace.frames().iter().map(|f| f.ip).collect();
            self.stack_cache.insert(id, frames);
        }
        self.stack_cache.get(&id).map(Vec::as_slice)
    }
}

/// aya's reading of the kernel BTF (for `tp_btf` programs), from the bytes
/// [`Kernel::inspect`] read; why not, as one sentence, when aya cannot parse them.
fn aya_btf(kernel: &Kernel) -> Result<AyaBtf, String> {
    AyaBtf::parse(kernel.btf.raw(), aya::Endianness::default()).map_err(|e| {
        format!(
            "aya cannot read the BTF in {} ({e})",
            kernel.btf_path.display()
        )
    })
}

/// Loads the object with this kernel's offsets and `layout`. `btf` is the kernel BTF for
/// `tp_btf` programs; without it aya reads /sys/kernel/btf/vmlinux itself if it can, which
/// the classic tracepoint does not need (Rust programs carry no CO-RE relocations).
pub(crate) fn load_object(
    kernel: &Kernel,
    cfg: &ProbeConfig,
    btf: Option<&AyaBtf>,
    layout: &TracepointLayout,
) -> Result<Ebpf, Error> {
    let offsets: KernelOffsets = kernel.offsets()?;
    // Kernels without reasons: where netfilter and tcp_drop() free packets, from kallsyms.
    let kallsyms = (kernel.reasons.source == Source::None).then(read_kallsyms);
    let (netfilter_start, netfilter_end) = kallsyms.as_ref().map_or((0, 0), netfilter_code);
    let tcp_drop_sites = kallsyms
        .as_ref()
        .map_or(netdrop_common::TcpDropSites::NONE, |t| {
            hooks::tcp::drop_sites(&kernel.reasons, t)
        });
    let backlog = hooks::backlog::planned(cfg, kernel);
    let mut flags = cfg.flags;
    if hooks::tcp::marks_acks(&kernel.reasons) {
        flags |= netdrop_common::config::TCP_ACK_MARKS;
    }
    if backlog.is_some() {
        flags |= netdrop_common::config::BACKLOG_MARKS;
    }
    if cfg.budget_early() {
        flags |= netdrop_common::config::BUDGET_EARLY;
    }
    let backlog = backlog.unwrap_or(netdrop_common::BacklogSite::NONE);
    let config = Config {
        flags,
        netfilter_reason: kernel
            .reasons
            .lookup("NETFILTER_DROP")
            .unwrap_or(OFFSET_NONE),
        wakeup_bytes: (cfg.ring_size / 8).min(WAKEUP_BYTES_MAX),
        not_specified_reason: kernel
            .reasons
            .lookup("NOT_SPECIFIED")
            .unwrap_or(OFFSET_NONE),
        netfilter_start,
        netfilter_end,
        snaplen: cfg.snaplen,
        rate_limit: cfg.rate_limit,
        budget: if cfg.flags & netdrop_common::config::EVENTS != 0 {
            cfg.budget
        } else {
            0
        },
        _pad: 0,
    };
    // 0 disables every kernel log statement, which the verifier then prunes.
    let log_level: u8 = if cfg.kernel_log { 5 } else { 0 };
    // Per-CPU hash maps are preallocated: those this run does not count into get one entry.
    use netdrop_common::config as c;
    let sized = |bit: u32, capacity: u32| if cfg.flags & bit != 0 { capacity } else { 1 };
    // NETFILTER_DROP events carry a stack (to name the hook) even without --stack; the map
    // is preallocated (about 1 KiB per entry), so it is only large when --stack asks.
    let stacks = if cfg.flags & netdrop_common::config::STACKS != 0 {
        MAX_STACKS
    } else if cfg.flags & netdrop_common::config::EVENTS != 0 {
        MAX_STACKS / 16
    } else {
        1
    };
    let mut loader = EbpfLoader::new();
    if btf.is_some() {
        loader.btf(btf);
    }
    loader
        .override_global(global::OFFSETS, &offsets, true)
        .override_global(global::TP_LAYOUT, layout, true)
        .override_global(global::FILTER, &cfg.filter.filter, true)
        .override_global(global::CONFIG, &config, true)
        .override_global(global::TCP_DROP_SITES, &tcp_drop_sites, true)
        .override_global(global::BACKLOG, &backlog, true)
        .override_global("AYA_LOG_LEVEL", &log_level, false)
        .map_max_entries(map::EVENTS, cfg.ring_size)
        .map_max_entries(map::BY_FLOW[0], sized(c::BY_FLOW, cfg.flow_capacity))
        .map_max_entries(map::BY_FLOW[1], sized(c::BY_FLOW, cfg.flow_capacity))
        .map_max_entries(map::BY_LOCATION[0], sized(c::BY_LOCATION, MAX_LOCATIONS))
        .map_max_entries(map::BY_LOCATION[1], sized(c::BY_LOCATION, MAX_LOCATIONS))
        .map_max_entries(map::BY_DEVICE[0], sized(c::BY_DEVICE, MAX_DEVICES))
        .map_max_entries(map::BY_DEVICE[1], sized(c::BY_DEVICE, MAX_DEVICES))
        .map_max_entries(map::STACKS, stacks)
        .map_max_entries(
            map::RATE,
            if cfg.rate_limit != 0 {
                netdrop_common::MAX_RATE_KEYS
            } else {
                1
            },
        )
        .load(OBJECT)
        .map_err(Error::Load)
}

/// The code of `nf_hook_slow` from /proc/kallsyms, where kernels without drop reasons free
/// the packets netfilter drops; (0, 0) when unknown (then those drops name no hook).
/// `/proc/kallsyms` (empty when unreadable).
fn read_kallsyms() -> Table {
    std::fs::File::open("/proc/kallsyms")
        .map(|f| Table::parse(std::io::BufReader::new(f)))
        .unwrap_or_default()
}

fn netfilter_code(kallsyms: &Table) -> (u64, u64) {
    let range = kallsyms.range("nf_hook_slow");
    if range.is_none() {
        tracing::debug!("nf_hook_slow not in /proc/kallsyms: netfilter hooks are not named");
    }
    range.unwrap_or((0, 0))
}

pub(crate) fn program_mut<'a>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<&'a mut Program, Error> {
    ebpf.program_mut(name).ok_or(Error::NoHook {
        details: format!("program {name} missing from the eBPF object"),
    })
}

/// The error of a failed operation on map `name`.
pub(crate) fn map_error(name: &'static str) -> impl Fn(aya::maps::MapError) -> Error + Copy {
    move |source| Error::Map { map: name, source }
}

pub(crate) fn missing_map(name: &'static str) -> Error {
    Error::Io {
        what: format!("map {name}"),
        source: std::io::Error::other("missing from the eBPF object"),
    }
}

/// Forwards aya-log records from the kernel programs to `tracing` (shown with -vv).
fn start_kernel_log(ebpf: &mut Ebpf) {
    match aya_log::EbpfLogger::init(ebpf) {
        Ok(logger) => match readable(logger) {
            Ok(mut fd) => {
                tokio::spawn(async move {
                    loop {
                        let Ok(mut guard) = fd.readable_mut().await else {
                            break;
                        };
                        guard.get_inner_mut().flush();
                        guard.clear_ready();
                    }
                });
            }
            Err(e) => tracing::debug!("kernel log unavailable: {e}"),
        },
        Err(e) => tracing::debug!("kernel log unavailable: {e}"),
    }
}

/// Registers a map-backed reader (ring buffer, logger) with the tokio reactor.
pub fn readable<T: AsRawFd>(inner: T) -> std::io::Result<tokio::io::unix::AsyncFd<T>> {
    // SAFETY: aya's readers own their map fd: it stays open, and is the same fd, until the
    // reader is dropped, which the AsyncFd owning it does first.
    unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(inner, tokio::io::Interest::READABLE)
    }
    .map_err(|e| e.into_parts().1)
}

#[cfg(test)]
mod tests {
    use netdrop_common::{Filter, config as c};

    use super::*;

    fn cfg(flags: u32, filter: Filter) -> ProbeConfig {
        ProbeConfig {
            budget: 2000,
            ..ProbeConfig::new(
                AttachMode::Auto,
                flags,
                CompiledFilter {
                    filter,
                    reason_set: Vec::new(),
                },
            )
        }
    }

    #[test]
    fn the_budget_comes_before_the_headers_only_when_nothing_else_needs_them() {
        let events = c::EVENTS | c::BY_REASON;
        assert!(cfg(events, Filter::default()).budget_early());
        // A reason filter is decided before the budget: still early.
        let by_reason = Filter {
            reason_mode: 1,
            ..Filter::default()
        };
        assert!(cfg(events, by_reason).budget_early());
        // Filters that read the packet or the device, and counts per device or flow,
        // need every drop read: the budget applies after them.
        for filter in [
            Filter {
                has_port: 1,
                port: 80,
                ..Filter::default()
            },
            Filter {
                l3_proto: netdrop_common::proto::ETH_P_IPV6,
                ..Filter::default()
            },
            Filter {
                netns: 4026531840,
                ..Filter::default()
            },
            Filter {
                has_iface: 1,
                ..Filter::default()
            },
        ] {
            assert!(!cfg(events, filter).budget_early(), "{filter:?}");
        }
        assert!(!cfg(events | c::BY_FLOW, Filter::default()).budget_early());
        assert!(!cfg(events | c::BY_DEVICE, Filter::default()).budget_early());
        // No events (stats), or no budget: nothing to apply.
        assert!(!cfg(c::BY_REASON, Filter::default()).budget_early());
        let mut none = cfg(events, Filter::default());
        none.budget = 0;
        assert!(!none.budget_early());
    }
}
