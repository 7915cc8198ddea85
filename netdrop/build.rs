//! Compiles `netdrop-ebpf` for the bpf target with aya-build (nightly, `-Z build-std=core`,
//! bpf-linker); `src/probe` embeds the resulting object. `cargo xtask setup` installs what
//! this needs.
use anyhow::{Context as _, anyhow};
use aya_build::Toolchain;

fn main() -> anyhow::Result<()> {
    let cargo_metadata::Metadata { packages, .. } = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("reading cargo metadata")?;
    let ebpf = packages
        .into_iter()
        .find(|p| p.name.as_str() == "netdrop-ebpf")
        .ok_or_else(|| anyhow!("netdrop-ebpf package not found in the workspace"))?;
    let root_dir = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("no parent for {}", ebpf.manifest_path))?;
    let package = aya_build::Package {
        name: ebpf.name.as_str(),
        root_dir: root_dir.as_str(),
        ..Default::default()
    };
    aya_build::build_ebpf([package], Toolchain::default()).context(
        "building the eBPF programs failed; if nightly, rust-src or bpf-linker is missing, \
         run `cargo xtask setup`",
    )
}
