//! `kfree_skb`: every packet the kernel frees as dropped.
//!
//! Kernel side: `netdrop-ebpf/src/skb.rs`. The BTF raw tracepoint `tp_btf/kfree_skb`
//! (5.5+, typed arguments, no record copy) when it loads, else the classic tracepoint
//! `skb:kfree_skb` with offsets from its format file. Arguments: `(skb, location)` up to
//! 5.16, `+ reason` 5.17 to 6.10, `+ rx_sk` 6.11+. Nothing replaces it: without it netdrop
//! cannot trace.

use std::os::fd::{AsFd, AsRawFd};

use aya::{
    Btf as AyaBtf, Ebpf,
    programs::{BtfTracePoint, TracePoint},
};
use netdrop_common::{TracepointLayout, program};

use super::{Family, KernelFacts};
use crate::{
    error::Error,
    kernel::{Kernel, offsets::HookArity},
    probe::{Hook, ProbeConfig, load_object, program_mut},
};

pub const FAMILY: Family = Family {
    id: "kfree_skb",
    hooks: "tp_btf/kfree_skb (BTF raw tracepoint), else tracepoint skb:kfree_skb",
    kernels: "tp_btf 5.5+, tracepoint every kernel; drop reasons 5.17+",
    gives: "every kfree_skb drop: reason, location, packet, device, netns, task",
    instead: "nothing: netdrop cannot trace without it",
    implemented: true,
    available,
};

fn available(f: &KernelFacts) -> Result<(), String> {
    match (&f.btf_kfree_skb, &f.tracepoint_kfree_skb) {
        (Ok(_), _) | (_, Ok(())) => Ok(()),
        (Err(b), Err(t)) => Err(format!("BTF raw tracepoint: {b}; classic tracepoint: {t}")),
    }
}

/// The prototype's arguments, as `-v` and `netdrop hooks` print them.
pub fn arguments(arity: HookArity) -> &'static str {
    match arity {
        HookArity::Two => "skb, location",
        HookArity::Three => "skb, location, reason",
        HookArity::Four => "skb, location, reason, rx_sk",
    }
}

/// An attached `kfree_skb` program: the object, the hook, the program's name and fd.
pub type Attached = (Ebpf, Hook, &'static str, i32);

/// Loads the object and attaches `tp_btf/kfree_skb` with the prototype BTF describes.
pub fn attach_btf(
    kernel: &Kernel,
    cfg: &ProbeConfig,
    btf: &AyaBtf,
    arity: HookArity,
) -> Result<Attached, Error> {
    let mut ebpf = load_object(kernel, cfg, Some(btf), &TracepointLayout::NONE)?;
    let name = match arity {
        HookArity::Two => program::BTF_2ARG,
        HookArity::Three => program::BTF_3ARG,
        HookArity::Four => program::BTF_4ARG,
    };
    let prog_err = |source| Error::Program {
        program: name,
        source,
    };
    let prog: &mut BtfTracePoint = program_mut(&mut ebpf, name)?.try_into().map_err(prog_err)?;
    prog.load("kfree_skb", btf).map_err(prog_err)?;
    prog.attach().map_err(prog_err)?;
    let prog_fd = prog.fd().map_err(prog_err)?.as_fd().as_raw_fd();
    Ok((ebpf, Hook::BtfTracepoint(arity), name, prog_fd))
}

/// Loads the object and attaches the classic tracepoint, with the record layout of its
/// format file (tracefs is mounted if needed).
pub fn attach_tracepoint(kernel: &Kernel, cfg: &ProbeConfig) -> Result<Attached, Error> {
    let format = crate::kernel::kfree_skb_format()?;
    let layout = format.kfree_skb_layout().map_err(|reason| Error::Format {
        path: "events/skb/kfree_skb/format".into(),
        reason,
    })?;
    let mut ebpf = load_object(kernel, cfg, None, &layout)?;
    let name = program::TRACEPOINT;
    let prog_err = |source| Error::Program {
        program: name,
        source,
    };
    let prog: &mut TracePoint = program_mut(&mut ebpf, name)?.try_into().map_err(prog_err)?;
    prog.load().map_err(prog_err)?;
    prog.attach("skb", "kfree_skb").map_err(prog_err)?;
    let prog_fd = prog.fd().map_err(prog_err)?.as_fd().as_raw_fd();
    Ok((ebpf, Hook::Tracepoint(layout), name, prog_fd))
}
