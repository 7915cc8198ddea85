//! `conntrack`: tells a NETFILTER_DROP by a full conntrack table from a rule's.
//!
//! Kernel side: `netdrop-ebpf/src/conntrack.rs`. A kprobe and kretprobe on
//! `nf_conntrack_in` (every kernel with `CONFIG_KPROBES` once the nf_conntrack module is
//! loaded). Without it `netfilter.conntrack` is `null` and the `nf_conntrack.drop` counter
//! still counts those drops.

use aya::{Ebpf, programs::KProbe};
use netdrop_common::{CONNTRACK_FUNCTION, program};

use super::{Family, KernelFacts, needs_kprobes};
use crate::{error::Error, probe::program_mut};

/// Why the hook waits: netdrop attaches once the module loads.
pub const NOT_LOADED: &str = "nf_conntrack not loaded yet (attached when it loads)";

pub const FAMILY: Family = Family {
    id: "conntrack",
    hooks: "kprobe + kretprobe nf_conntrack_in",
    kernels: "kernels with CONFIG_KPROBES, once nf_conntrack is loaded",
    gives: "which NETFILTER_DROPs conntrack made (a full table) rather than a rule",
    instead: "the nf_conntrack.drop counter; netfilter.conntrack is null",
    implemented: true,
    available,
};

fn available(f: &KernelFacts) -> Result<(), String> {
    needs_kprobes(f)?;
    if f.nf_conntrack {
        Ok(())
    } else {
        Err(NOT_LOADED.to_owned())
    }
}

/// Loads and attaches the kretprobe, then the kprobe, on `nf_conntrack_in`.
pub fn attach(ebpf: &mut Ebpf) -> Result<(), Error> {
    for name in [program::CONNTRACK_IN_RET, program::CONNTRACK_IN] {
        let prog_err = |source| Error::Program {
            program: name,
            source,
        };
        let prog: &mut KProbe = program_mut(ebpf, name)?.try_into().map_err(prog_err)?;
        prog.load().map_err(prog_err)?;
        prog.attach(CONNTRACK_FUNCTION, 0).map_err(prog_err)?;
    }
    Ok(())
}
