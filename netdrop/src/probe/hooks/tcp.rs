//! The TCP hooks (`netdrop-ebpf/src/tcp.rs`), all kprobes (CONFIG_KPROBES):
//! - listeners: `tcp_conn_request` (SYNs dropped at a full accept or SYN queue, which the
//!   kernel frees without kfree_skb) and `tcp_v4_syn_recv_sock` / `tcp_v6_syn_recv_sock`
//!   (handshake ACKs that find the accept queue full). Without kprobes, overflowing
//!   listeners are named from the kernel counters and sock_diag (`kernel::sockdiag`).
//! - the tcp_drop path, before 5.17 only: `__kfree_skb` called from the TCP receive
//!   functions `tcp_drop()` was inlined into ([`drop_sites`]). From 5.17 those drops reach
//!   kfree_skb with a reason and need nothing more.

use std::path::Path;

use aya::{Ebpf, programs::KProbe};
use netdrop_common::{CodeRange, TcpDropSites, code_range, program, tcp_functions};

use super::{super::program_mut, Family, KernelFacts, needs_kprobes};
use crate::{
    error::Error,
    kernel::{
        kallsyms::Table,
        reasons::{Reasons, Source},
    },
};

/// The listener probes, for the hook registry.
pub const LISTEN_FAMILY: Family = Family {
    id: "tcp_listen",
    hooks: "kprobes tcp_conn_request, tcp_v4_syn_recv_sock, tcp_v6_syn_recv_sock",
    kernels: "kernels with CONFIG_KPROBES (the functions exist from 4.x to 6.18)",
    gives: "each SYN or handshake ACK dropped at a full accept queue or a full SYN queue (syncookies off) as a drop event with the client's tuple: LISTEN_OVERFLOW / SYN_QUEUE_FULL, netdrop's reasons, marked inferred",
    instead: "listeners (sock_diag) and the TcpExt listen counters, without the clients",
    implemented: true,
    available: needs_kprobes,
};

/// The tcp_drop path probe, for the hook registry.
pub const DROP_PATH_FAMILY: Family = Family {
    id: "tcp_drop",
    hooks: "kprobe __kfree_skb, counted when called from the TCP receive functions tcp_drop() was inlined into",
    kernels: "before 5.17 with CONFIG_KPROBES; from 5.17 these drops reach kfree_skb with a reason and need no hook",
    gives: "TCP segments the receive path refuses (PAWS, sequence, window, receive memory) on kernels where no tracepoint shows them, reason inferred from the function",
    instead: "the TcpExt counters (PAWSEstab, TCPZeroWindowDrop, TCPRcvQDrop, ...)",
    implemented: true,
    available: drop_path_available,
};

fn drop_path_available(facts: &KernelFacts) -> Result<(), String> {
    if facts.drop_reasons {
        return Err(
            "not needed here: this kernel gives TCP drops a reason through kfree_skb".to_owned(),
        );
    }
    needs_kprobes(facts)
}

/// State of the TCP listener hook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TcpListen {
    /// SYNs dropped at full queues are events; `acks` says whether handshake ACKs are too
    /// (not on kernels that name them TCP_LISTEN_OVERFLOW themselves).
    Attached { acks: bool },
    /// This kernel does not allow it; the reason.
    Unavailable(String),
}

/// Where `tcp_drop()` frees with `__kfree_skb` on this kernel: the TCP receive functions
/// kallsyms lists (`tcp_drop` itself where the compiler kept it). Empty on kernels with
/// drop reasons, where those drops reach kfree_skb.
pub fn drop_sites(reasons: &Reasons, kallsyms: &Table) -> TcpDropSites {
    let mut sites = TcpDropSites::NONE;
    if reasons.source != Source::None {
        return sites;
    }
    let wanted = tcp_functions::DROP_SITES
        .iter()
        .copied()
        .chain([("tcp_drop", false)]);
    for (name, dataless) in wanted {
        let Some((start, end)) = kallsyms.range(name) else {
            continue;
        };
        let i = sites.count as usize;
        if i == sites.ranges.len() {
            break;
        }
        sites.ranges[i] = CodeRange {
            start,
            end,
            flags: if dataless {
                code_range::SKIP_DATALESS
            } else {
                0
            },
        };
        sites.count += 1;
    }
    sites
}

/// The state of the tcp_drop path hook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DropPath {
    /// Not needed: this kernel gives TCP drops a reason through kfree_skb (5.17+).
    NotNeeded,
    /// Attached, watching calls from these functions.
    Attached(Vec<String>),
    /// This kernel does not allow it; the reason.
    Unavailable(String),
}

/// Attaches the tcp_drop path probe where `sites` found functions to watch.
pub fn attach_drop_path(ebpf: &mut Ebpf, sites: &TcpDropSites, kallsyms: &Table) -> DropPath {
    if sites.count == 0 {
        return DropPath::NotNeeded;
    }
    if !Path::new("/sys/bus/event_source/devices/kprobe").exists() {
        return DropPath::Unavailable("this kernel has no kprobes (CONFIG_KPROBES)".to_owned());
    }
    match attach_to(ebpf, program::TCP_DROP_PATH, &[tcp_functions::KFREE]) {
        Ok(()) => DropPath::Attached(
            sites.ranges[..sites.count as usize]
                .iter()
                .filter_map(|r| kallsyms.lookup(r.start).map(|s| s.name))
                .collect(),
        ),
        Err(e) => DropPath::Unavailable(e.to_string()),
    }
}

/// Whether the ACK probe runs here, so the kfree_skb pipeline must look for the ACKs it
/// marks: kprobes exist, and the kernel does not free such ACKs as TCP_LISTEN_OVERFLOW
/// itself (6.15+), which is counted once, as the kernel's.
pub fn marks_acks(reasons: &Reasons) -> bool {
    Path::new(super::KPROBE_PMU).exists() && reasons.lookup("TCP_LISTEN_OVERFLOW").is_err()
}

/// Attaches the TCP listener probes if this kernel has kprobes.
pub fn attach(ebpf: &mut Ebpf, reasons: &Reasons) -> TcpListen {
    if !Path::new("/sys/bus/event_source/devices/kprobe").exists() {
        return TcpListen::Unavailable("this kernel has no kprobes (CONFIG_KPROBES)".to_owned());
    }
    let res = (|| -> Result<bool, Error> {
        attach_to(
            ebpf,
            program::TCP_CONN_REQUEST,
            &[tcp_functions::CONN_REQUEST],
        )?;
        let acks = marks_acks(reasons);
        if acks {
            attach_to(
                ebpf,
                program::TCP_SYN_RECV_SOCK,
                &tcp_functions::SYN_RECV_SOCK,
            )?;
        }
        Ok(acks)
    })();
    match res {
        Ok(acks) => TcpListen::Attached { acks },
        Err(e) => TcpListen::Unavailable(e.to_string()),
    }
}

fn attach_to(ebpf: &mut Ebpf, name: &'static str, functions: &[&str]) -> Result<(), Error> {
    let prog_err = |source| Error::Program {
        program: name,
        source,
    };
    let prog: &mut KProbe = program_mut(ebpf, name)?.try_into().map_err(prog_err)?;
    prog.load().map_err(prog_err)?;
    for f in functions {
        prog.attach(*f, 0).map_err(prog_err)?;
    }
    Ok(())
}
