//! Every hook family netdrop knows, in one list: what each attaches to, on which kernels it
//! exists, what it gives, whether this kernel allows it (a sentence when not), and what
//! netdrop uses instead.
//!
//! The eBPF families keep their attach code in their own file (`kfree_skb.rs`,
//! `conntrack.rs`, `tcp.rs`, `backlog.rs`); the families that read the kernel without a
//! program (`listeners`, `counters`) are described here all the same, so `netdrop hooks`
//! and `-v` list everything netdrop could see with.

pub mod backlog;
pub mod conntrack;
pub mod kfree_skb;
pub mod tcp;

use std::path::Path;

use serde::Serialize;

/// Where the kernel lists kprobe support (a PMU) when it has `CONFIG_KPROBES`.
pub const KPROBE_PMU: &str = "/sys/bus/event_source/devices/kprobe";

/// Why the kprobe families cannot run here.
pub const NO_KPROBES: &str = "this kernel has no kprobes (CONFIG_KPROBES)";

/// What the registry needs to know about the running kernel. [`KernelFacts::read`] asks the
/// live kernel; tests build fixtures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelFacts {
    /// `uname -r`.
    pub release: String,
    /// The `kfree_skb` BTF raw tracepoint and its prototype, or why there is none.
    pub btf_kfree_skb: Result<String, String>,
    /// The classic tracepoint `skb:kfree_skb`, or why it cannot be told / used.
    pub tracepoint_kfree_skb: Result<(), String>,
    /// `CONFIG_KPROBES` (the kprobe PMU exists).
    pub kprobes: bool,
    /// The kernel names drop reasons (5.17+).
    pub drop_reasons: bool,
    /// The nf_conntrack module is loaded (or built in).
    pub nf_conntrack: bool,
    /// A sock_diag dump of TCP listeners works, or why not.
    pub sock_diag: Result<(), String>,
    /// `/proc/net/netstat` and friends can be read, or why not.
    pub proc_counters: Result<(), String>,
}

impl KernelFacts {
    /// Reads the running kernel. `kernel` is what [`crate::kernel::Kernel::inspect`] found
    /// (BTF), or why it failed.
    pub fn read(kernel: Result<&crate::kernel::Kernel, String>) -> Self {
        let drop_reasons = kernel
            .as_ref()
            .is_ok_and(|k| k.reasons.source != crate::kernel::reasons::Source::None);
        let btf_kfree_skb = match kernel {
            Ok(k) => match &k.arity {
                Ok(a) => Ok(format!("({})", kfree_skb::arguments(*a))),
                Err(e) => Err(format!("kernel {e}")),
            },
            Err(e) => Err(e),
        };
        Self {
            release: release(),
            drop_reasons,
            btf_kfree_skb,
            tracepoint_kfree_skb: tracepoint_here(),
            kprobes: Path::new(KPROBE_PMU).exists(),
            nf_conntrack: Path::new("/sys/module/nf_conntrack").exists(),
            sock_diag: crate::kernel::sockdiag::listeners_here()
                .map(|_| ())
                .map_err(|e| format!("sock_diag unavailable ({e}): modprobe inet_diag tcp_diag")),
            proc_counters: std::fs::read_to_string("/proc/net/netstat")
                .map(|_| ())
                .map_err(|e| format!("cannot read /proc/net/netstat: {e}")),
        }
    }
}

fn release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// Whether `skb:kfree_skb` exists, as far as tracefs tells without mounting it.
fn tracepoint_here() -> Result<(), String> {
    let roots = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];
    for root in roots.iter().map(Path::new) {
        let events = root.join("events");
        match std::fs::read_dir(&events) {
            Ok(_) if events.join("skb/kfree_skb/format").exists() => return Ok(()),
            Ok(_) => return Err(format!("{} has no skb/kfree_skb", events.display())),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                return Err(format!(
                    "cannot read {} as this user (run as root)",
                    events.display()
                ));
            }
            Err(_) => {}
        }
    }
    Err(
        "tracefs is not mounted (netdrop mounts it at /sys/kernel/tracing when run as root)"
            .to_owned(),
    )
}

/// Whether a family is in use, could be, or cannot be.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", content = "detail", rename_all = "snake_case")]
pub enum Status {
    /// Attached now; how.
    Attached(String),
    /// This kernel allows it (not attached by this run).
    Available,
    /// This kernel does not allow it: why.
    Unavailable(String),
    /// Described but not built yet.
    NotImplemented,
}

/// One hook family.
pub struct Family {
    /// Stable name (`netdrop hooks`, JSON, docs).
    pub id: &'static str,
    /// The kernel function, tracepoint or interface it uses.
    pub hooks: &'static str,
    /// Kernels where that exists.
    pub kernels: &'static str,
    /// What netdrop learns from it.
    pub gives: &'static str,
    /// What netdrop uses when it is unavailable.
    pub instead: &'static str,
    /// Whether this version of netdrop has it.
    pub implemented: bool,
    /// `Ok` when this kernel allows it, else one sentence saying why not.
    pub available: fn(&KernelFacts) -> Result<(), String>,
}

impl Family {
    /// The status on a kernel described by `facts`, when nothing was attached.
    pub fn status(&self, facts: &KernelFacts) -> Status {
        if !self.implemented {
            return Status::NotImplemented;
        }
        match (self.available)(facts) {
            Ok(()) => Status::Available,
            Err(why) => Status::Unavailable(why),
        }
    }
}

/// Every hook family, in the order `netdrop hooks` lists them.
pub const FAMILIES: &[Family] = &[
    kfree_skb::FAMILY,
    conntrack::FAMILY,
    Family {
        id: "listeners",
        hooks: "sock_diag netlink (inet_diag, tcp_diag): TCP listeners and their accept queues",
        kernels: "every kernel (inet_diag/tcp_diag built in or as modules)",
        gives: "names the listener whose accept queue overflows, with its queue, limit and process",
        instead: "the TcpExt.ListenOverflows / ListenDrops counters, without the listener",
        implemented: true,
        available: |f| f.sock_diag.clone(),
    },
    Family {
        id: "counters",
        hooks: "/proc/net/{snmp,netstat,snmp6,stat/nf_conntrack,stat/arp_cache,softnet_stat,dev} per namespace (softnet_stat per CPU, dev per device)",
        kernels: "every kernel",
        gives: "drops kfree_skb does not show (accept queue, SYN queue, backlog, conntrack, NIC rings); per-CPU softnet dropped / time_squeeze and per-device receive counts for stats and top",
        instead: "nothing: those drops go unseen",
        implemented: true,
        available: |f| f.proc_counters.clone(),
    },
    tcp::LISTEN_FAMILY,
    tcp::DROP_PATH_FAMILY,
    backlog::FAMILY,
];

/// `Ok` when the kernel has kprobes.
pub fn needs_kprobes(facts: &KernelFacts) -> Result<(), String> {
    if facts.kprobes {
        Ok(())
    } else {
        Err(NO_KPROBES.to_owned())
    }
}

/// One line of the report: a family and its status here.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HookReport {
    pub id: &'static str,
    pub status: Status,
    pub hooks: &'static str,
    pub kernels: &'static str,
    pub gives: &'static str,
    pub instead: &'static str,
}

/// The status of every family on the kernel `facts` describes; `attached` overrides it for
/// the families a run attached or tried to (id, status).
pub fn report(facts: &KernelFacts, attached: &[(&str, Status)]) -> Vec<HookReport> {
    FAMILIES
        .iter()
        .map(|f| HookReport {
            id: f.id,
            status: attached
                .iter()
                .find(|(id, _)| *id == f.id)
                .map_or_else(|| f.status(facts), |(_, s)| s.clone()),
            hooks: f.hooks,
            kernels: f.kernels,
            gives: f.gives,
            instead: f.instead,
        })
        .collect()
}

/// What a loaded [`super::Probe`] has attached (or tried to), for [`report`]: the families
/// it did not try keep the status the kernel facts give.
pub fn attached(probe: &super::Probe) -> Vec<(&'static str, Status)> {
    let mut out = vec![(
        kfree_skb::FAMILY.id,
        Status::Attached(probe.hook.to_string()),
    )];
    let conntrack = match &probe.conntrack {
        super::Conntrack::Attached => Some(Status::Attached(format!(
            "kprobe/kretprobe {}",
            netdrop_common::CONNTRACK_FUNCTION
        ))),
        super::Conntrack::Unavailable(why) => Some(Status::Unavailable(why.clone())),
        // The probe waits for the module before it checks for kprobes; say the lasting reason.
        super::Conntrack::Waiting if !Path::new(KPROBE_PMU).exists() => {
            Some(Status::Unavailable(NO_KPROBES.to_owned()))
        }
        super::Conntrack::Waiting => Some(Status::Unavailable(conntrack::NOT_LOADED.to_owned())),
        super::Conntrack::NotTried => None,
    };
    out.extend(conntrack.map(|s| (conntrack::FAMILY.id, s)));
    out.push((
        tcp::LISTEN_FAMILY.id,
        match &probe.tcp_listen {
            tcp::TcpListen::Attached { acks: true } => Status::Attached(
                "kprobes tcp_conn_request, tcp_v4_syn_recv_sock, tcp_v6_syn_recv_sock".to_owned(),
            ),
            tcp::TcpListen::Attached { acks: false } => Status::Attached(
                "kprobe tcp_conn_request (handshake ACKs are the kernel's TCP_LISTEN_OVERFLOW here)"
                    .to_owned(),
            ),
            tcp::TcpListen::Unavailable(why) => Status::Unavailable(why.clone()),
        },
    ));
    out.push((
        tcp::DROP_PATH_FAMILY.id,
        match &probe.tcp_drop_path {
            tcp::DropPath::Attached(sites) => Status::Attached(format!(
                "kprobe __kfree_skb, calls from {}",
                sites.join(", ")
            )),
            tcp::DropPath::Unavailable(why) => Status::Unavailable(why.clone()),
            tcp::DropPath::NotNeeded => Status::Unavailable(
                "not needed here: this kernel gives TCP drops a reason through kfree_skb"
                    .to_owned(),
            ),
        },
    ));
    let backlog = match &probe.backlog {
        backlog::Backlog::Attached(function) => Some(Status::Attached(format!(
            "kprobe {function} (CPU_BACKLOG events name the backlog's CPU and length)"
        ))),
        backlog::Backlog::Unavailable(why) => Some(Status::Unavailable(why.clone())),
        // Not wanted by this run (no events): the kernel facts say.
        backlog::Backlog::NotTried => None,
    };
    out.extend(backlog.map(|s| (backlog::FAMILY.id, s)));
    out
}

#[cfg(test)]
pub mod tests {
    use super::*;

    fn family(id: &str) -> Option<&'static Family> {
        FAMILIES.iter().find(|f| f.id == id)
    }

    /// This development machine: 6.18, BTF, no kprobes, no conntrack loaded.
    pub fn facts_6_18_no_kprobes() -> KernelFacts {
        KernelFacts {
            release: "6.18.0".to_owned(),
            btf_kfree_skb: Ok("(skb, location, reason, rx_sk)".to_owned()),
            tracepoint_kfree_skb: Ok(()),
            kprobes: false,
            drop_reasons: true,
            nf_conntrack: false,
            sock_diag: Ok(()),
            proc_counters: Ok(()),
        }
    }

    /// Debian 11's 5.10 with nf_conntrack loaded and inet_diag not loadable.
    pub fn facts_5_10() -> KernelFacts {
        KernelFacts {
            release: "5.10.0-46-cloud-amd64".to_owned(),
            btf_kfree_skb: Ok("(skb, location)".to_owned()),
            tracepoint_kfree_skb: Ok(()),
            kprobes: true,
            drop_reasons: false,
            nf_conntrack: true,
            sock_diag: Err(
                "sock_diag unavailable (Protocol not supported): modprobe inet_diag tcp_diag"
                    .to_owned(),
            ),
            proc_counters: Ok(()),
        }
    }

    #[test]
    fn ids_are_unique_and_stable() {
        let ids: Vec<_> = FAMILIES.iter().map(|f| f.id).collect();
        assert_eq!(
            ids,
            [
                "kfree_skb",
                "conntrack",
                "listeners",
                "counters",
                "tcp_listen",
                "tcp_drop",
                "backlog"
            ]
        );
    }

    #[test]
    fn statuses_follow_the_kernel() {
        let r = report(&facts_6_18_no_kprobes(), &[]);
        let s = |id| r.iter().find(|h| h.id == id).unwrap().status.clone();
        assert_eq!(s("kfree_skb"), Status::Available);
        assert_eq!(
            s("conntrack"),
            Status::Unavailable("this kernel has no kprobes (CONFIG_KPROBES)".to_owned())
        );
        assert_eq!(s("listeners"), Status::Available);
        assert_eq!(
            s("tcp_listen"),
            Status::Unavailable("this kernel has no kprobes (CONFIG_KPROBES)".to_owned())
        );
        assert!(
            matches!(s("tcp_drop"), Status::Unavailable(w) if w.starts_with("not needed here"))
        );
        assert_eq!(
            s("backlog"),
            Status::Unavailable("this kernel has no kprobes (CONFIG_KPROBES)".to_owned())
        );

        let r = report(&facts_5_10(), &[]);
        let s = |id| r.iter().find(|h| h.id == id).unwrap().status.clone();
        assert_eq!(s("conntrack"), Status::Available);
        assert_eq!(s("tcp_listen"), Status::Available);
        assert_eq!(s("tcp_drop"), Status::Available);
        assert_eq!(s("backlog"), Status::Available);
        assert!(
            matches!(s("listeners"), Status::Unavailable(w) if w.contains("modprobe inet_diag"))
        );
    }

    #[test]
    fn conntrack_waits_for_its_module() {
        let f = KernelFacts {
            kprobes: true,
            ..facts_6_18_no_kprobes()
        };
        assert_eq!(
            family("conntrack").unwrap().status(&f),
            Status::Unavailable(conntrack::NOT_LOADED.to_owned())
        );
    }

    #[test]
    fn kfree_skb_falls_back_to_the_tracepoint_and_says_why_not() {
        let mut f = facts_6_18_no_kprobes();
        f.btf_kfree_skb = Err("kernel BTF has no btf_trace_kfree_skb".to_owned());
        assert_eq!(family("kfree_skb").unwrap().status(&f), Status::Available);
        f.tracepoint_kfree_skb = Err("tracefs is not mounted".to_owned());
        let Status::Unavailable(why) = family("kfree_skb").unwrap().status(&f) else {
            panic!("kfree_skb available without any hook");
        };
        assert!(
            why.contains("btf_trace_kfree_skb") && why.contains("tracefs"),
            "{why}"
        );
    }

    #[test]
    fn attached_overrides_the_kernel_facts() {
        let r = report(
            &facts_6_18_no_kprobes(),
            &[("kfree_skb", Status::Attached("tp_btf/kfree_skb".to_owned()))],
        );
        assert_eq!(r[0].status, Status::Attached("tp_btf/kfree_skb".to_owned()));
    }
}
