//! What netdrop reads from the running kernel: BTF (struct offsets, hook prototype,
//! reason enums), tracefs format files, kallsyms, namespaces, privileges and sockets
//! (sock_diag, /proc fd links). Each part parses text or bytes handed to it, so tests feed
//! fixtures instead of a kernel.

pub mod btf;
#[cfg(test)]
mod btf_oracle;
pub mod containers;
pub mod counters;
pub mod cpus;
pub mod inferred;
pub mod kallsyms;
pub mod netns;
pub mod offsets;
pub mod owners;
pub mod privileges;
pub mod reasons;
pub mod sockdiag;
pub mod tracefs;

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use netdrop_common::KernelOffsets;

use self::{
    btf::{Btf, BtfError},
    offsets::HookArity,
    reasons::{Reasons, Source},
};
use crate::error::Error;

/// Where the running kernel publishes its BTF.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// Everything about this kernel that is known before loading programs.
pub struct Kernel {
    /// Path of the kernel BTF used.
    pub btf_path: PathBuf,
    /// The kernel BTF, parsed once here and shared by whatever reads types later (the
    /// program loader hands its bytes to aya).
    pub btf: Arc<Btf>,
    /// Struct offsets handed to the programs, or why they could not be read: only loading
    /// the programs needs them, so other commands work without.
    pub offsets: Result<KernelOffsets, BtfError>,
    /// Arguments of the `kfree_skb` BTF tracepoint, or why BTF does not describe them.
    pub arity: Result<HookArity, BtfError>,
    /// Drop reason names.
    pub reasons: Reasons,
    /// `softnet_data.input_pkt_queue.qlen` (the netdev backlog's length), or
    /// `OFFSET_NONE`: for the backlog hook.
    pub softnet_qlen: u32,
    /// `net_hotdata.max_backlog` (6.9+: `net.core.netdev_max_backlog`), or `OFFSET_NONE`.
    pub hotdata_max_backlog: u32,
}

impl Kernel {
    /// Reads the kernel BTF (`btf` overrides `/sys/kernel/btf/vmlinux`) and the reason
    /// names, from BTF or else the tracepoint format file.
    pub fn inspect(btf: Option<&Path>) -> Result<Self, Error> {
        let btf_path = btf.map_or_else(|| PathBuf::from(VMLINUX_BTF), Path::to_owned);
        if btf.is_none() && !btf_path.exists() {
            return Err(Error::NoBtf { path: btf_path });
        }
        let vmlinux = Arc::new(Btf::from_file(&btf_path).map_err(|source| Error::Btf {
            path: btf_path.clone(),
            source,
        })?);
        let modules = if btf.is_none() {
            module_btfs(&vmlinux)
        } else {
            Vec::new()
        };
        Ok(Self::from_btf(btf_path, vmlinux, &modules))
    }

    /// What [`Kernel::inspect`] reads from BTF already parsed: `vmlinux`, then the split
    /// BTF of loaded `modules`.
    pub fn from_btf(btf_path: PathBuf, vmlinux: Arc<Btf>, modules: &[Btf]) -> Self {
        let offsets = offsets::from_btf(&vmlinux);
        let arity = offsets::kfree_skb_arity(&vmlinux);
        let softnet_qlen = offsets::softnet_qlen(&vmlinux);
        let hotdata_max_backlog = offsets::hotdata_max_backlog(&vmlinux);
        let reasons = match Reasons::from_btf(std::iter::once(vmlinux.as_ref()).chain(modules)) {
            Some(r) => r,
            None if arity.as_ref().is_ok_and(|a| *a == HookArity::Two) => Reasons::none(),
            None => reasons_from_format_file().unwrap_or_else(|e| {
                tracing::warn!("no drop reason names in BTF and {e}; reasons are shown as numbers");
                Reasons::none()
            }),
        };
        if reasons.source == Source::None {
            tracing::warn!(
                "this kernel does not report drop reasons (Linux 5.17+ does): reasons are inferred \
                 from the function that dropped where it names one (shown as NAME?), else UNKNOWN"
            );
        }
        Self {
            btf_path,
            btf: vmlinux,
            offsets,
            arity,
            reasons,
            softnet_qlen,
            hotdata_max_backlog,
        }
    }

    /// The struct offsets, or the error naming the BTF file and what it lacks.
    pub fn offsets(&self) -> Result<KernelOffsets, Error> {
        self.offsets.clone().map_err(|source| Error::Btf {
            path: self.btf_path.clone(),
            source,
        })
    }
}

/// Split BTF of loaded modules: subsystem drop reasons (openvswitch, mac80211) live there.
fn module_btfs(vmlinux: &Arc<Btf>) -> Vec<Btf> {
    // Module type ids continue the kernel's, whose count is unknown past an unknown kind.
    if let Some(u) = vmlinux.unread() {
        tracing::debug!(
            "module BTF not read: the kernel's stops at kind {} (type id {})",
            u.kind,
            u.id
        );
        return Vec::new();
    }
    let Ok(dir) = std::fs::read_dir("/sys/kernel/btf") else {
        return Vec::new();
    };
    dir.flatten()
        .filter(|e| e.file_name() != "vmlinux")
        .filter_map(|e| match Btf::from_split_file(&e.path(), vmlinux.clone()) {
            Ok(b) => Some(b),
            Err(err) => {
                tracing::debug!("skipping module BTF {}: {err}", e.path().display());
                None
            }
        })
        .collect()
}

/// Reason names from the `skb:kfree_skb` format file.
fn reasons_from_format_file() -> Result<Reasons, Error> {
    let format = kfree_skb_format()?;
    Reasons::from_symbolic(&format.symbolic_values()).ok_or_else(|| Error::Format {
        path: PathBuf::from("skb/kfree_skb/format"),
        reason: "it lists no reasons".to_owned(),
    })
}

/// Reads (mounting tracefs if needed) the `skb:kfree_skb` format file.
pub fn kfree_skb_format() -> Result<tracefs::Format, Error> {
    let root = tracefs::find_or_mount()?;
    let path = root.join("events/skb/kfree_skb/format");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::Format {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    tracefs::Format::parse(&text).map_err(|reason| Error::Format { path, reason })
}

#[cfg(test)]
mod tests {
    use super::{btf::builder::BtfBuilder, *};

    #[test]
    fn an_unknown_btf_kind_fails_only_what_needs_the_types_after_it() {
        let mut b = BtfBuilder::new();
        b.enumeration(
            "skb_drop_reason",
            &[("SKB_NOT_DROPPED_YET", 0), ("SKB_DROP_REASON_NO_SOCKET", 3)],
        );
        b.raw("", 31, 0, &[0; 8]);
        b.composite(btf::Kind::Struct, "sk_buff", 232, &[]);
        let btf = Arc::new(Btf::parse(b.build(), None).unwrap());
        let kernel = Kernel::from_btf(PathBuf::from("/tmp/vmlinux"), btf, &[]);
        // Reason names were before the unknown kind: `netdrop reasons` works.
        assert_eq!(kernel.reasons.source, Source::Btf);
        assert_eq!(kernel.reasons.lookup("NO_SOCKET"), Ok(3));
        // Loading the programs needs sk_buff, which came after it.
        assert_eq!(
            kernel.offsets().unwrap_err().to_string(),
            "cannot use the BTF in /tmp/vmlinux: BTF has type kind 31 at type id 2, which \
             netdrop does not know, so the types after it could not be read and struct sk_buff \
             was not among those before it"
        );
        assert!(
            kernel
                .arity
                .unwrap_err()
                .to_string()
                .contains("kind 31 at type id 2")
        );
    }
}
