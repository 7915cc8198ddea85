//! Compiles `netdrop-ebpf` for the bpf target (nightly, `-Z build-std=core`, bpf-linker);
//! `src/probe` embeds the resulting object. `cargo xtask setup` installs what this needs.
//!
//! This is what `aya_build::build_ebpf` does, with one difference: aya-build 0.2 turns every
//! line the inner cargo prints (`Compiling ...`, `Finished ...`) into `cargo:warning`, so a
//! clean build shows a wall of `warning: netdrop@...` lines. Here the inner cargo's progress
//! is kept and shown only when that build fails; real compiler diagnostics of the eBPF crate
//! still become warnings.
use std::{
    env,
    io::{BufReader, Read as _},
    path::PathBuf,
    process::{Command, Stdio},
};

use anyhow::{Context as _, anyhow, bail};
use cargo_metadata::{Artifact, CompilerMessage, Message};

/// The toolchain the eBPF crate builds with: bpf-linker and `-Z build-std` need nightly.
const TOOLCHAIN: &str = "nightly";

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
    build_ebpf(ebpf.name.as_str(), root_dir.as_str()).context(
        "building the eBPF programs failed; if nightly, rust-src or bpf-linker is missing, \
         run `cargo xtask setup`",
    )
}

/// Builds the binaries of package `name` (at `root_dir`) for the bpf target and copies them
/// to `OUT_DIR`.
fn build_ebpf(name: &str, root_dir: &str) -> anyhow::Result<()> {
    // The build-dependency on the eBPF crate covers its library; its binaries (the
    // programs) need this.
    println!("cargo:rerun-if-changed={root_dir}");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").context("OUT_DIR not set")?);
    let target = match env::var("CARGO_CFG_TARGET_ENDIAN").as_deref() {
        Ok("little") => "bpfel-unknown-none",
        Ok("big") => "bpfeb-unknown-none",
        other => bail!("unsupported target endianness {other:?}"),
    };
    let arch = env::var("CARGO_CFG_TARGET_ARCH").context("CARGO_CFG_TARGET_ARCH not set")?;
    let arch = if arch.starts_with("riscv64") {
        "riscv64"
    } else {
        &arch
    };
    // Separate from OUT_DIR's artifacts, and from the outer build: cargo would wait on its
    // own lock (rust-lang/cargo#6412).
    let target_dir = out_dir.join("aya-build").join("target").join(name);

    let mut cmd = Command::new("rustup");
    cmd.args(["run", TOOLCHAIN, "cargo", "build", "--package", name])
        .args(["--bins", "--message-format=json", "--release"])
        .args(["--target", target, "-Z", "build-std=core"])
        .arg("--target-dir")
        .arg(&target_dir)
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            format!("--cfg=bpf_target_arch=\"{arch}\"\x1f-Cdebuginfo=2\x1f-Clink-arg=--btf"),
        )
        // The outer build's compiler is stable: let rustup pick nightly's.
        .env_remove("RUSTC")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot run {cmd:?} (is rustup installed?)"))?;
    let mut stderr = child.stderr.take().context("stderr of the eBPF build")?;
    let progress = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });

    let mut executables = Vec::new();
    let stdout = BufReader::new(child.stdout.take().context("stdout of the eBPF build")?);
    for message in Message::parse_stream(stdout) {
        match message.context("the eBPF build printed invalid JSON")? {
            Message::CompilerArtifact(Artifact {
                executable: Some(exe),
                target,
                ..
            }) => executables.push((target.name, exe.into_std_path_buf())),
            // A diagnostic of the eBPF crate is worth a warning of ours.
            Message::CompilerMessage(CompilerMessage { message, .. }) => {
                for line in message.rendered.unwrap_or_default().lines() {
                    println!("cargo:warning={line}");
                }
            }
            Message::TextLine(line) => println!("cargo:warning={line}"),
            _ => {}
        }
    }
    let status = child.wait().context("waiting for the eBPF build")?;
    let progress = progress.join().unwrap_or_default();
    if !status.success() {
        // Cargo shows a failed build script's stderr: the inner cargo's own account.
        eprintln!("{progress}");
        bail!("{cmd:?} failed: {status}");
    }
    for (name, exe) in executables {
        let dst = out_dir.join(&name);
        std::fs::copy(&exe, &dst)
            .with_context(|| format!("copying {} to {}", exe.display(), dst.display()))?;
    }
    Ok(())
}
