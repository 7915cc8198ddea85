//! Every failure a user can meet, each worded as one sentence that says what to do.

use std::path::PathBuf;

use thiserror::Error;

use crate::kernel::btf::BtfError;

/// netdrop's errors.
#[derive(Debug, Error)]
pub enum Error {
    #[error(
        "netdrop needs root (or the CAP_BPF and CAP_PERFMON capabilities) to load its kernel \
         programs: run it with sudo"
    )]
    NotPrivileged,

    #[error(
        "tracefs is not mounted and mounting it at /sys/kernel/tracing failed ({reason}): mount \
         it with `mount -t tracefs nodev /sys/kernel/tracing` and try again"
    )]
    NoTracefs { reason: String },

    #[error(
        "this kernel exposes no BTF type information at {path} (it needs \
         CONFIG_DEBUG_INFO_BTF=y); give netdrop a BTF file for this exact kernel with --btf FILE"
    )]
    NoBtf { path: PathBuf },

    #[error("cannot use the BTF in {path}: {source}")]
    Btf { path: PathBuf, source: BtfError },

    #[error(
        "this kernel offers no usable skb:kfree_skb hook ({details}); netdrop needs a kernel \
         with BPF tracepoint support (CONFIG_BPF_EVENTS)"
    )]
    NoHook { details: String },

    #[error("cannot read the tracepoint format file {path}: {reason}")]
    Format { path: PathBuf, reason: String },

    #[error("unknown drop reason `{name}`{}; `netdrop reasons` lists this kernel's reasons", suggest(.suggestions))]
    UnknownReason {
        name: String,
        suggestions: Vec<String>,
    },

    #[error(
        "this kernel reports no drop reasons (added in Linux 5.17), so --reason and --exclude-reason cannot be used"
    )]
    NoReasons,

    #[error("{0}")]
    BadArgument(String),

    #[error("loading the eBPF programs failed: {0}")]
    Load(#[source] aya::EbpfError),

    #[error("the kernel rejected the {program} program: {source}")]
    Program {
        program: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },

    #[error("map {map}: {source}")]
    Map {
        map: &'static str,
        #[source]
        source: aya::maps::MapError,
    },

    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

fn suggest(names: &[String]) -> String {
    if names.is_empty() {
        String::new()
    } else {
        format!(" (did you mean {}?)", names.join(", "))
    }
}

impl Error {
    /// Wraps an I/O error with what was being done.
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| Self::Io { what, source }
    }
}
