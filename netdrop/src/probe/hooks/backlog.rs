//! `backlog`: which CPU's netdev backlog overflowed, and how long it was.
//!
//! Kernel side: `netdrop-ebpf/src/backlog.rs`. A kprobe on `enqueue_to_backlog(skb, cpu,
//! qtail)` (every kernel with `CONFIG_KPROBES`; a static function that Debian's 5.10, 6.1
//! and 6.12 keep out of line) remembers per running CPU the skb, the CPU whose backlog it
//! is queued to (RPS may choose another) and that backlog's length, read from
//! `__per_cpu_offset[cpu] + &softnet_data` (kallsyms) and `input_pkt_queue.qlen` (BTF).
//! A drop freed inside `enqueue_to_backlog` (CPU_BACKLOG on 5.17+, no reason before) of the
//! same skb then carries `backlog: {cpu, queue, max}` in its event, `max` being
//! `net.core.netdev_max_backlog` (host-wide: only the initial namespace has it, on 5.10
//! to 6.18).
//!
//! The probe fires for every packet queued to a backlog (loopback, veth, RPS), so it is
//! attached only when events are streamed (`watch`, `diagnose`) and the reason filter lets
//! CPU_BACKLOG through. Without it (no kprobes, `stats`, `top`): the per-CPU softnet
//! counters (`/proc/net/softnet_stat`: dropped, time_squeeze), every kernel.

use std::{path::Path, sync::OnceLock};

use aya::{Ebpf, programs::KProbe};
use netdrop_common::{BacklogSite, OFFSET_NONE, backlog_symbols, config, program, reason_mode};

use super::{Family, KPROBE_PMU, NO_KPROBES, needs_kprobes};
use crate::{error::Error, kernel::Kernel, probe::ProbeConfig};

pub const FAMILY: Family = Family {
    id: "backlog",
    hooks: "kprobe enqueue_to_backlog",
    kernels: "kernels with CONFIG_KPROBES and kallsyms addresses (root); measured on Debian 5.10, 6.1, 6.12",
    gives: "each CPU_BACKLOG drop event names the CPU whose backlog overflowed and its length against net.core.netdev_max_backlog (an RPS imbalance shows as one CPU), also before 5.17",
    instead: "the per-CPU softnet counters (dropped, time_squeeze) in stats, top and diagnose",
    implemented: true,
    available: needs_kprobes,
};

/// State of the backlog hook in one run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Backlog {
    /// Not attached by this run: no events are streamed, or the reason filter leaves out
    /// CPU_BACKLOG.
    NotTried,
    /// Attached to this function (as kallsyms names it).
    Attached(String),
    /// This kernel does not allow it: why.
    Unavailable(String),
}

/// Where the kernel keeps the backlogs, and the probed function's name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Site {
    pub site: BacklogSite,
    pub function: String,
}

/// Whether a run with `cfg` wants the hook: events are streamed, and CPU_BACKLOG (or, on
/// kernels without reasons, any reason) passes the reason filter.
pub fn wanted(cfg: &ProbeConfig, kernel: &Kernel) -> bool {
    wanted_by(cfg.flags, &cfg.filter, &kernel.reasons)
}

fn wanted_by(
    flags: u32,
    filter: &crate::filter::CompiledFilter,
    reasons: &crate::kernel::reasons::Reasons,
) -> bool {
    if flags & config::EVENTS == 0 {
        return false;
    }
    let Ok(code) = reasons.lookup("CPU_BACKLOG") else {
        return true;
    };
    let listed = filter.reason_set.contains(&code);
    match filter.filter.reason_mode {
        reason_mode::ONLY => listed,
        reason_mode::EXCEPT => !listed,
        _ => true,
    }
}

/// The backlog site of the running kernel, read once (kallsyms, BTF, possible CPUs).
pub fn site(kernel: &Kernel) -> Result<Site, String> {
    static SITE: OnceLock<Result<Site, String>> = OnceLock::new();
    SITE.get_or_init(|| {
        if !Path::new(KPROBE_PMU).exists() {
            return Err(NO_KPROBES.to_owned());
        }
        let kallsyms = std::fs::read_to_string("/proc/kallsyms")
            .map_err(|e| format!("cannot read /proc/kallsyms: {e}"))?;
        let cpus = crate::kernel::cpus::slots(
            &crate::kernel::cpus::possible().map_err(|e| e.to_string())?,
        )
        .ok_or("no possible CPUs listed")?;
        parse_site(&kallsyms, kernel.softnet_qlen, cpus).map(|mut s| {
            s.site.max_backlog = max_backlog(&kallsyms, kernel.hotdata_max_backlog);
            s
        })
    })
    .clone()
}

/// The site from kallsyms text, the BTF offset of `input_pkt_queue.qlen` and the number
/// of possible CPUs.
pub fn parse_site(kallsyms: &str, qlen_offset: u32, nr_cpus: u32) -> Result<Site, String> {
    if qlen_offset == OFFSET_NONE {
        return Err("kernel BTF has no softnet_data.input_pkt_queue.qlen".to_owned());
    }
    let mut softnet = None;
    let mut offsets = None;
    let mut function: Option<(u64, &str)> = None;
    let mut text = Vec::new();
    for line in kallsyms.lines() {
        let mut parts = line.split_whitespace();
        let (Some(addr), Some(kind), Some(name)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        // Module symbols carry `[module]`: none of these live in a module.
        if parts.next().is_some() {
            continue;
        }
        let Ok(addr) = u64::from_str_radix(addr, 16) else {
            continue;
        };
        match name {
            backlog_symbols::SOFTNET_DATA => softnet = Some(addr),
            backlog_symbols::PER_CPU_OFFSET => offsets = Some(addr),
            _ => {}
        }
        if matches!(kind, "t" | "T") {
            text.push(addr);
            let ours = name == backlog_symbols::FUNCTION
                || name
                    .strip_prefix(backlog_symbols::FUNCTION)
                    .is_some_and(|rest| rest.starts_with('.'));
            if ours && function.is_none() {
                function = Some((addr, name));
            }
        }
    }
    let (start, name) = function
        .ok_or("kallsyms has no enqueue_to_backlog (inlined on this kernel?)".to_owned())?;
    if start == 0 {
        return Err("/proc/kallsyms hides addresses (kptr_restrict; run as root)".to_owned());
    }
    let end = text
        .iter()
        .copied()
        .filter(|&a| a > start)
        .min()
        .ok_or("kallsyms has no symbol after enqueue_to_backlog")?;
    let softnet = softnet.ok_or("kallsyms has no softnet_data (CONFIG_KALLSYMS_ALL=n?)")?;
    let offsets = offsets.ok_or("kallsyms has no __per_cpu_offset (CONFIG_KALLSYMS_ALL=n?)")?;
    if offsets == 0 {
        return Err("/proc/kallsyms hides addresses (kptr_restrict; run as root)".to_owned());
    }
    Ok(Site {
        site: BacklogSite {
            per_cpu_offset: offsets,
            softnet_data: softnet,
            start,
            end,
            qlen_offset,
            nr_cpus,
            max_backlog: 0,
        },
        function: name.to_owned(),
    })
}

/// The address of `net.core.netdev_max_backlog`'s `int`: `netdev_max_backlog` up to 6.8,
/// `net_hotdata` + `hotdata_offset` (BTF) from 6.9; 0 when kallsyms has neither.
pub fn max_backlog(kallsyms: &str, hotdata_offset: u32) -> u64 {
    let find = |want: &str| {
        kallsyms.lines().find_map(|l| {
            let mut p = l.split_whitespace();
            let (addr, _, name) = (p.next()?, p.next()?, p.next()?);
            (name == want && p.next().is_none())
                .then(|| u64::from_str_radix(addr, 16).ok())
                .flatten()
        })
    };
    if let Some(a) = find(backlog_symbols::MAX_BACKLOG) {
        return a;
    }
    match find(backlog_symbols::HOTDATA) {
        Some(a) if a != 0 && hotdata_offset != OFFSET_NONE => a + u64::from(hotdata_offset),
        _ => 0,
    }
}

/// The site handed to the programs for a run with `cfg`: the kernel's where the hook is
/// wanted and possible, else [`BacklogSite::NONE`] (and the pipeline never looks).
pub fn planned(cfg: &ProbeConfig, kernel: &Kernel) -> Option<BacklogSite> {
    (wanted(cfg, kernel) && !cfg.leaves_out(FAMILY.id))
        .then(|| site(kernel).ok().map(|s| s.site))
        .flatten()
}

/// Attaches the kprobe when the run wants it.
pub fn attach(ebpf: &mut Ebpf, cfg: &ProbeConfig, kernel: &Kernel) -> Backlog {
    if !wanted(cfg, kernel) {
        return Backlog::NotTried;
    }
    if cfg.leaves_out(FAMILY.id) {
        return Backlog::Unavailable(super::super::turned_off(FAMILY.id));
    }
    let site = match site(kernel) {
        Ok(s) => s,
        Err(why) => return Backlog::Unavailable(why),
    };
    let name = program::BACKLOG_ENQUEUE;
    let res = (|| -> Result<(), Error> {
        let prog_err = |source| Error::Program {
            program: name,
            source,
        };
        let prog: &mut KProbe = super::super::program_mut(ebpf, name)?
            .try_into()
            .map_err(prog_err)?;
        prog.load().map_err(prog_err)?;
        prog.attach(site.function.as_str(), 0).map_err(prog_err)?;
        Ok(())
    })();
    match res {
        Ok(()) => Backlog::Attached(site.function),
        Err(e) => Backlog::Unavailable(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lines of Debian 6.1's /proc/kallsyms that matter (read in the VM).
    const KALLSYMS_6_1: &str = "\
0000000000000000 A fixed_percpu_data
0000000000032b80 A softnet_data
ffffffffbc7a5800 t enqueue_to_backlog
ffffffffbc7a5a40 t flush_backlog
ffffffffbc7a9e90 t netif_rx_internal
ffffffffbd39eb60 D __per_cpu_offset
ffffffffc0a01000 t enqueue_to_backlog_x\t[some_module]
";

    #[test]
    fn site_from_kallsyms() {
        let s = parse_site(KALLSYMS_6_1, 16, 2).unwrap();
        assert_eq!(s.function, "enqueue_to_backlog");
        assert_eq!(
            s.site,
            BacklogSite {
                per_cpu_offset: 0xffffffffbd39eb60,
                softnet_data: 0x32b80,
                start: 0xffffffffbc7a5800,
                end: 0xffffffffbc7a5a40,
                qlen_offset: 16,
                nr_cpus: 2,
                max_backlog: 0,
            }
        );
        // A compiler-suffixed copy is the one to probe.
        let renamed =
            KALLSYMS_6_1.replace("t enqueue_to_backlog\n", "t enqueue_to_backlog.isra.0\n");
        assert_eq!(
            parse_site(&renamed, 16, 2).unwrap().function,
            "enqueue_to_backlog.isra.0"
        );
    }

    #[test]
    fn site_says_what_is_missing() {
        assert!(
            parse_site(KALLSYMS_6_1, OFFSET_NONE, 2)
                .unwrap_err()
                .contains("BTF")
        );
        let no_fn = KALLSYMS_6_1.replace("enqueue_to_backlog\n", "other\n");
        assert!(parse_site(&no_fn, 16, 2).unwrap_err().contains("inlined"));
        let hidden: String = KALLSYMS_6_1
            .lines()
            .map(|l| format!("0000000000000000 {}\n", l.split_once(' ').unwrap().1))
            .collect();
        assert!(
            parse_site(&hidden, 16, 2)
                .unwrap_err()
                .contains("kptr_restrict")
        );
        let no_data = KALLSYMS_6_1.replace("softnet_data", "x");
        assert!(
            parse_site(&no_data, 16, 2)
                .unwrap_err()
                .contains("softnet_data")
        );
    }

    #[test]
    fn the_limit_is_a_global_then_a_member_of_net_hotdata() {
        let old = "ffffffffbd3a0000 D netdev_max_backlog\nffffffffbd3a0010 D net_hotdata\n";
        assert_eq!(max_backlog(old, 0x40), 0xffffffffbd3a0000);
        let new = "ffffffffbd3a0010 D net_hotdata\n";
        assert_eq!(max_backlog(new, 0x40), 0xffffffffbd3a0050);
        assert_eq!(max_backlog(new, OFFSET_NONE), 0);
        assert_eq!(max_backlog("", 0x40), 0);
    }

    #[test]
    fn attached_only_for_events_that_may_show_cpu_backlog() {
        use crate::{
            filter::CompiledFilter,
            kernel::{reasons::Reasons, tracefs::Format},
            testdata,
        };
        let f = Format::parse(&testdata::read("tracefs/kfree_skb-6.18.format")).unwrap();
        let reasons = Reasons::from_symbolic(&f.symbolic_values()).unwrap();
        let backlog = reasons.lookup("CPU_BACKLOG").unwrap();
        let no_socket = reasons.lookup("NO_SOCKET").unwrap();
        let filter = |mode, set: Vec<u32>| {
            let mut c = CompiledFilter {
                filter: Default::default(),
                reason_set: set,
            };
            c.filter.reason_mode = mode;
            c
        };
        let all = filter(reason_mode::ALL, vec![]);
        // Counting only (stats, top, exporter): no per-packet probe.
        assert!(!wanted_by(config::BY_REASON, &all, &reasons));
        assert!(wanted_by(config::EVENTS, &all, &reasons));
        let only_backlog = filter(reason_mode::ONLY, vec![backlog]);
        assert!(wanted_by(config::EVENTS, &only_backlog, &reasons));
        let only_other = filter(reason_mode::ONLY, vec![no_socket]);
        assert!(!wanted_by(config::EVENTS, &only_other, &reasons));
        let except_backlog = filter(reason_mode::EXCEPT, vec![backlog]);
        assert!(!wanted_by(config::EVENTS, &except_backlog, &reasons));
        let except_other = filter(reason_mode::EXCEPT, vec![no_socket]);
        assert!(wanted_by(config::EVENTS, &except_other, &reasons));
        // Without reasons (before 5.17) there is no reason filter: always.
        assert!(wanted_by(config::EVENTS, &all, &Reasons::none()));
    }
}
