//! Idempotent installation of build and test prerequisites.
//!
//! The eBPF crate builds with the nightly toolchain (`-Z build-std=core` needs rust-src)
//! and links with bpf-linker. bpf-linker is built against the nightly toolchain's own
//! libLLVM, so no system LLVM is needed: a directory holding two symlinks to that library
//! serves as LLVM_PREFIX, and stays in place because bpf-linker's RUNPATH points there.

use std::{path::PathBuf, process::Command};

use anyhow::{Context, Result, bail};

use crate::cmd::{self, cargo_home, output, path_with_cargo_bin};

/// bpf-linker release known to work with aya-ebpf 0.2.1.
const BPF_LINKER_VERSION: &str = "0.13.0";

/// Nightly toolchain, rust-src, bpf-linker.
pub fn toolchain() -> Result<()> {
    nightly()?;
    rust_src()?;
    bpf_linker()
}

fn rustup() -> Command {
    Command::new("rustup")
}

fn nightly() -> Result<()> {
    if output(rustup().args(["run", "nightly", "rustc", "--version"])).is_some() {
        return Ok(());
    }
    eprintln!("xtask: installing the nightly Rust toolchain (the eBPF programs need it)");
    cmd::run(rustup().args(["toolchain", "install", "nightly", "--profile", "minimal"]))
        .context("no nightly toolchain and it could not be installed: install one with `rustup toolchain install nightly`")
}

fn rust_src() -> Result<()> {
    let installed =
        output(rustup().args(["component", "list", "--toolchain", "nightly", "--installed"]))
            .unwrap_or_default();
    if installed.lines().any(|l| l.starts_with("rust-src")) {
        return Ok(());
    }
    eprintln!("xtask: adding rust-src to nightly (needed for -Z build-std=core)");
    cmd::run(rustup().args(["component", "add", "rust-src", "--toolchain", "nightly"]))
        .context("could not add rust-src: run `rustup component add rust-src --toolchain nightly`")
}

fn bpf_linker() -> Result<()> {
    let mut probe = Command::new("bpf-linker");
    probe.arg("--version").env("PATH", path_with_cargo_bin());
    if let Some(v) = output(&mut probe)
        && v.contains(BPF_LINKER_VERSION)
    {
        return Ok(());
    }
    let sysroot = output(rustup().args(["run", "nightly", "rustc", "--print", "sysroot"]))
        .context("cannot ask the nightly rustc for its sysroot")?;
    let lib_dir = PathBuf::from(sysroot.trim()).join("lib");
    let vv = output(rustup().args(["run", "nightly", "rustc", "-vV"])).unwrap_or_default();
    let major = vv
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .and_then(|v| v.split('.').next())
        .context("the nightly rustc does not report its LLVM version")?
        .to_owned();
    // The library the nightly rustc itself loads, e.g. libLLVM.so.22.1-rust-1.97.0-nightly.
    let libllvm = std::fs::read_dir(&lib_dir)
        .with_context(|| format!("reading {}", lib_dir.display()))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("libLLVM.so."))
        .with_context(|| {
            format!(
                "no libLLVM.so.* in {}: is this a rustup nightly toolchain?",
                lib_dir.display()
            )
        })?;
    let prefix = cargo_home().join("netdrop-llvm");
    let prefix_lib = prefix.join("lib");
    std::fs::create_dir_all(&prefix_lib)
        .with_context(|| format!("creating {}", prefix_lib.display()))?;
    for name in [libllvm.as_str(), "libLLVM.so"] {
        let link = prefix_lib.join(name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(lib_dir.join(&libllvm), &link)
            .with_context(|| format!("linking {}", link.display()))?;
    }
    eprintln!(
        "xtask: building bpf-linker {BPF_LINKER_VERSION} against the nightly toolchain's LLVM {major} ({}); takes a minute or two",
        lib_dir.join(&libllvm).display()
    );
    let mut install = Command::new("cargo");
    install
        .args([
            "+nightly",
            "install",
            "bpf-linker",
            "--version",
            BPF_LINKER_VERSION,
            "--locked",
            "--force",
        ])
        .args([
            "--no-default-features",
            "--features",
            &format!("llvm-{major}"),
        ])
        .env("LLVM_PREFIX", &prefix);
    cmd::run(&mut install).with_context(|| {
        format!(
            "could not build bpf-linker against LLVM {major}: install an LLVM {major} development package \
             (Debian: llvm-{major}-dev) and run `cargo install bpf-linker --no-default-features --features llvm-{major}`"
        )
    })
}

/// Adds a Rust target to the default toolchain (e.g. musl for static guest binaries).
pub fn rust_target(target: &str) -> Result<()> {
    let installed = output(rustup().args(["target", "list", "--installed"])).unwrap_or_default();
    if installed.lines().any(|l| l.trim() == target) {
        return Ok(());
    }
    eprintln!("xtask: adding the Rust target {target}");
    cmd::run(rustup().args(["target", "add", target]))
        .with_context(|| format!("could not add {target}: run `rustup target add {target}`"))
}

/// (command the tests run, Debian package providing it)
const TEST_TOOLS: &[(&str, &str)] = &[
    ("ip", "iproute2"),
    ("nft", "nftables"),
    ("setpriv", "util-linux"),
    ("bpftool", "bpftool"),
    ("tmux", "tmux"),
    ("promtool", "prometheus"),
    ("man", "man-db"),
    ("groff", "groff-base"),
    // The oracle of the BTF check on real kernels (`kernel-btf`).
    ("pahole", "dwarves"),
    // Reads back `watch --pcap` files. Its wireshark-common dependency asks a debconf
    // question (may non-root users capture?): apt-get runs with DEBIAN_FRONTEND=noninteractive.
    ("tshark", "tshark"),
];

/// Installs missing system tools the integration tests use.
pub fn test_packages() -> Result<()> {
    install_packages(TEST_TOOLS)
}

/// Installs the packages whose command is missing (apt-get, as root).
pub fn install_packages(tools: &[(&str, &str)]) -> Result<()> {
    let missing: Vec<&str> = tools
        .iter()
        .filter(|(bin, _)| !on_path(bin))
        .map(|(_, pkg)| *pkg)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !cmd::is_root() || !on_path("apt-get") {
        bail!("missing tools: install the packages {}", missing.join(" "));
    }
    eprintln!("xtask: installing {}", missing.join(" "));
    let apt = |args: &[&str]| {
        let mut c = Command::new("apt-get");
        c.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        c
    };
    cmd::run(&mut apt(&["update", "-qq"]))?;
    let mut install = apt(&["install", "-y", "-qq", "--no-install-recommends"]);
    install.args(&missing);
    cmd::run(&mut install).with_context(|| format!("could not install {}", missing.join(" ")))
}

/// True when `bin` is an executable on PATH (or in /usr/sbin, /sbin).
pub fn on_path(bin: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .any(|d| d.join(bin).is_file())
}
