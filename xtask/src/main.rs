//! `cargo xtask`: everything around netdrop that is not netdrop itself. Each task sets up
//! what it needs first (idempotently), says what it is doing, and fails with one sentence
//! naming what is missing.

mod bench;
mod cmd;
mod setup;
mod soak;
mod test;
mod vm;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "Build, set up, test and benchmark netdrop"
)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what building and testing need: nightly rust-src, bpf-linker (against the
    /// nightly toolchain's own LLVM), and with --test-deps the system tools the tests use.
    Setup {
        /// Also install system packages used by tests (iproute2, nftables, ...).
        #[arg(long)]
        test_deps: bool,
    },
    /// Set up, then build netdrop (debug unless --release).
    Build {
        #[arg(long)]
        release: bool,
    },
    /// Build netdrop and write its shell completions (bash, zsh, fish) and man pages,
    /// generated from its own command-line definition, into DIR.
    Docs {
        /// Where to write them (default: target/docs of the workspace).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Set up, build netdrop in release mode and run it with the given arguments, e.g.
    /// `cargo xtask run -- watch`. Uses sudo when not root.
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Set up and run the whole test suite: unit tests, then (as root) the privileged
    /// integration tests that create real drops on this kernel, then the BTF check on real
    /// kernels (kernel-btf), then the VM scenarios on Debian kernels (vm-test).
    Test {
        /// Only the unit tests (no root, no kernel).
        #[arg(long)]
        unit: bool,
        /// Skip the VM scenarios (the BTF check on the cached kernels still runs).
        #[arg(long)]
        no_vm: bool,
    },
    /// rustfmt (nightly, for the import options in rustfmt.toml) and clippy -D warnings.
    Lint,
    /// Measure what tracing costs: senders on their own cores make drops as fast as they can
    /// while netdrop (stats; watch --json > /dev/null) or bpftrace traces on the last core;
    /// prints each mode's drop rate as a share of the untraced one, events delivered and
    /// lost, CPU per million drops and peak RSS, per number of senders; then the events per
    /// second user space sustains on synthetic events. Needs root.
    Bench {
        /// Rounds of all modes, each traced run between two untraced ones.
        #[arg(long, default_value_t = 8)]
        rounds: usize,
        /// Seconds each run sends drops.
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
        /// Numbers of drop generators to measure, each pinned to its own CPU where the
        /// machine has one (repeatable or a list: --senders 1,2).
        #[arg(long, value_delimiter = ',', default_value = "1")]
        senders: Vec<usize>,
        /// Only measure user space (decode, enrich, JSON and text output) on synthetic
        /// events: no root, no kernel. The full benchmark ends with this figure too.
        #[arg(long)]
        pipeline: bool,
        /// Instead, measure inside the Debian kernel K (5.10) booted in qemu what the
        /// tcp_drop path hook costs there: its kprobe on __kfree_skb runs for every TCP
        /// segment, not only for drops (loopback TCP untraced, under `stats --without
        /// tcp_drop`, and under `stats`).
        #[arg(long, value_name = "K")]
        kernel: Option<String>,
    },
    /// Long run (not part of CI or `test`): `netdrop exporter --metrics-flows 20` under about
    /// 100,000 new flows a minute and two drop reasons, in a network namespace it creates;
    /// prints RSS over time, how full the flow tables got, whether per-reason totals match
    /// what was sent and what the kernel counted, and whether the busy flow of the last
    /// minute is attributed. Needs root.
    Soak {
        /// How long to run.
        #[arg(long, default_value_t = 2.0)]
        minutes: f64,
    },
    /// Run the drop scenarios inside qemu on Debian distribution kernels (5.10, 6.1, 6.12):
    /// downloads the kernels through apt (cached under target/vm), builds static netdrop
    /// and the scenario runner, boots each kernel and prints a kernel x scenario table.
    /// Needs root (apt, and the guest tools come from Debian packages).
    VmTest {
        /// Kernels to run on (repeatable): 5.10, 6.1, 6.12. Default: all.
        #[arg(long = "kernel")]
        kernels: Vec<String>,
        /// Scenarios to run (repeatable). Default: all.
        #[arg(long = "scenario")]
        scenarios: Vec<String>,
    },
    /// Check netdrop's BTF reading on real kernels: extract the vmlinux BTF of the Debian
    /// kernels vm-test uses (downloaded through apt and cached under target/vm), then compare
    /// every struct offset, the kfree_skb prototype and the reason enums of those kernels and
    /// of this machine's against pahole. Part of `test` (with root). Needs root to install
    /// dwarves or download a kernel that is not cached yet.
    KernelBtf,
    /// Boot a Debian kernel in qemu and run one command there as root, with the static
    /// netdrop on PATH and ip, tc, nft, dropwatch, dash and busybox; stream its output and
    /// exit with its status. E.g. `cargo xtask vm-run --kernel 6.1 -- netdrop reasons`.
    /// Needs root (apt, and the guest tools come from Debian packages).
    VmRun {
        /// Kernel to boot: 5.10, 6.1, 6.12.
        #[arg(long)]
        kernel: String,
        /// File copied into the command's working directory in the guest (repeatable).
        #[arg(long = "copy", value_name = "FILE")]
        copy: Vec<PathBuf>,
        /// Seconds the whole boot may take.
        #[arg(long, default_value_t = 600)]
        timeout: u64,
        /// The command and its arguments, after `--`.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.task {
        Task::Setup { test_deps } => {
            setup::toolchain()?;
            if test_deps {
                setup::test_packages()?;
            }
            Ok(())
        }
        Task::Build { release } => {
            setup::toolchain()?;
            build(release)?;
            Ok(())
        }
        Task::Docs { out } => {
            setup::toolchain()?;
            let bin = build(false)?;
            let out = out.unwrap_or_else(|| cmd::target_dir().join("docs"));
            cmd::run(std::process::Command::new(bin).arg("docs").arg(&out))
        }
        Task::Run { args } => {
            setup::toolchain()?;
            let bin = build(true)?;
            cmd::exec_privileged(&bin, &args)
        }
        Task::Test { unit, no_vm } => {
            test::run(unit)?;
            if unit {
                return Ok(());
            }
            vm::btf::run()?;
            if no_vm {
                return Ok(());
            }
            vm::run(vm::VmArgs {
                kernels: Vec::new(),
                scenarios: Vec::new(),
            })
        }
        Task::KernelBtf => vm::btf::run(),
        Task::VmTest { kernels, scenarios } => vm::run(vm::VmArgs { kernels, scenarios }),
        Task::VmRun {
            kernel,
            copy,
            timeout,
            command,
        } => {
            let status = vm::run_command(vm::RunArgs {
                kernel,
                copy,
                command,
                timeout: std::time::Duration::from_secs(timeout),
            })?;
            std::process::exit(status)
        }
        Task::Bench {
            rounds,
            seconds,
            kernel: Some(kernel),
            ..
        } => {
            let status = vm::bench_in_guest(&kernel, seconds, rounds)?;
            std::process::exit(status)
        }
        Task::Bench {
            rounds,
            seconds,
            senders,
            pipeline,
            kernel: None,
        } => bench::run(bench::BenchArgs {
            rounds,
            seconds,
            senders,
            pipeline_only: pipeline,
        }),
        Task::Soak { minutes } => soak::run(soak::SoakArgs { minutes }),
        Task::Lint => {
            setup::toolchain()?;
            lint()
        }
    }
}

/// rustfmt, clippy on the host crates, clippy on the eBPF crate for the bpf target.
fn lint() -> Result<()> {
    cmd::run(cmd::cargo_nightly().args(["fmt", "--all", "--check"]))?;
    let deny = ["--", "-D", "warnings"];
    cmd::run(
        cmd::cargo()
            .args(["clippy", "--workspace", "--exclude", "netdrop-ebpf"])
            .args(["--all-targets", "--all-features"])
            .args(deny),
    )?;
    // The eBPF crate only type-checks for the bpf target.
    cmd::run(
        cmd::cargo_nightly()
            .args(["clippy", "--package", "netdrop-ebpf", "--release"])
            .args(["--target", "bpfel-unknown-none", "-Z", "build-std=core"])
            .args(deny)
            .env(
                "CARGO_ENCODED_RUSTFLAGS",
                "--cfg=bpf_target_arch=\"x86_64\"",
            ),
    )
}

/// Builds the netdrop binary and returns its path.
fn build(release: bool) -> Result<PathBuf> {
    let mut c = cmd::cargo();
    c.args(["build", "--package", "netdrop"]);
    if release {
        c.arg("--release");
    }
    cmd::run(&mut c)?;
    Ok(cmd::target_dir()
        .join(if release { "release" } else { "debug" })
        .join("netdrop"))
}
