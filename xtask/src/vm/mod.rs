//! `cargo xtask vm-test`: the drop scenarios on Debian distribution kernels in qemu.
//!
//! For each kernel: fetch the package through apt (cached under target/vm), build an
//! initramfs holding static musl builds of netdrop and of the scenario runner plus the
//! tools and modules the scenarios need, boot it, and read one `NDVM RESULT` line per
//! scenario from the serial console.

pub mod btf;
mod initramfs;
mod kernel;
mod run;

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
pub use run::{RunArgs, run as run_command};

use crate::{cmd, setup};

/// Scenario names, in the runner's order (tests/src/scenarios.rs).
pub const SCENARIOS: &[&str] = &[
    "conntrack_late",
    "closed_port",
    "attach_tracepoint",
    "event_budget",
    "nftables_drop",
    "rp_filter",
    "no_route",
    "udp_rcvbuf",
    "neighbour",
    "conntrack_full",
    "listen_overflow",
    "dropwatch_agrees",
    "listener_syn_events",
    "tcp_window_probe",
    "diagnose_conntrack",
    "diagnose_neighbour_table",
    "diagnose_backlog",
    "cpu_backlog",
];

/// Tools the VM build needs on the host: (command, Debian package).
const VM_TOOLS: &[(&str, &str)] = &[
    ("qemu-system-x86_64", "qemu-system-x86"),
    ("busybox", "busybox-static"),
    ("cpio", "cpio"),
    ("xz", "xz-utils"),
    ("dropwatch", "dropwatch"),
    ("ip", "iproute2"),
    ("nft", "nftables"),
];

const MUSL: &str = "x86_64-unknown-linux-musl";
/// Whole-boot limit per kernel (TCG is slow; a healthy run takes a few minutes).
const BOOT_TIMEOUT: Duration = Duration::from_secs(20 * 60);
/// Limit for the KVM probe boot.
const KVM_PROBE_TIMEOUT: Duration = Duration::from_secs(20);

/// What to run.
pub struct VmArgs {
    pub kernels: Vec<String>,
    pub scenarios: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Outcome {
    Pass,
    Fail(String),
    /// No result line: the guest died, hung or never reached the scenario.
    Missing,
}

pub fn run(args: VmArgs) -> Result<()> {
    let kernels: Vec<&kernel::KernelSpec> = if args.kernels.is_empty() {
        kernel::KERNELS.iter().filter(|k| k.default).collect()
    } else {
        args.kernels
            .iter()
            .map(|k| kernel_spec(k))
            .collect::<Result<_>>()?
    };
    for s in &args.scenarios {
        if !SCENARIOS.contains(&s.as_str()) {
            bail!(
                "unknown scenario `{s}`: choose from {}",
                SCENARIOS.join(", ")
            );
        }
    }
    let scenarios: Vec<&str> = if args.scenarios.is_empty() {
        SCENARIOS.to_vec()
    } else {
        args.scenarios.iter().map(String::as_str).collect()
    };

    setup::toolchain()?;
    setup::install_packages(VM_TOOLS)?;
    setup::rust_target(MUSL)?;
    let guest_bins = build_guest_binaries(&["netdrop", "netdrop-tests"])?;

    let vm_dir = cmd::target_dir().join("vm");
    let logs = vm_dir.join("logs");
    std::fs::create_dir_all(&logs)?;

    let mut table: BTreeMap<String, BTreeMap<String, Outcome>> = BTreeMap::new();
    let mut problems = Vec::new();
    for spec in kernels {
        let (k, modules) = fetch_kernel(spec, &vm_dir)?;
        let initrd = vm_dir.join(format!("initramfs-{}.cpio.gz", k.release));
        initramfs::build(
            &vm_dir.join(format!("work-{}", k.release)),
            &initrd,
            &guest_bins,
            &modules,
            None,
        )?;
        let accel = accel(&vm_dir, &k.vmlinuz, &initrd);
        let log = logs.join(format!("{}.log", k.release));
        eprintln!(
            "xtask: booting {} ({}, {accel}) for {} scenarios; log: {}",
            k.release,
            k.package,
            scenarios.len(),
            log.display()
        );
        let started = Instant::now();
        let boot = boot(
            &k.vmlinuz,
            &initrd,
            accel,
            &format!("netdrop.scenarios={}", scenarios.join(",")),
            &log,
            BOOT_TIMEOUT,
            |line| {
                if let Some(rest) = line.strip_prefix("NDVM RESULT ") {
                    eprintln!("xtask: [{}] {rest}", spec.name);
                }
            },
        )?;
        eprintln!(
            "xtask: {} finished in {:.0}s",
            k.release,
            started.elapsed().as_secs_f64()
        );
        let results = parse_results(&boot.lines);
        for line in boot
            .lines
            .iter()
            .filter(|l| l.starts_with("NDVM MODULE-FAIL"))
        {
            problems.push(format!("{}: {line}", spec.name));
        }
        if boot.timed_out {
            problems.push(format!(
                "{}: timed out after {}s",
                spec.name,
                BOOT_TIMEOUT.as_secs()
            ));
        }
        if boot.lines.iter().any(|l| l.contains("Kernel panic")) {
            problems.push(format!("{}: the guest kernel panicked", spec.name));
        }
        let column = table.entry(spec.name.to_owned()).or_default();
        for s in &scenarios {
            column.insert(
                (*s).to_owned(),
                results.get(*s).cloned().unwrap_or(Outcome::Missing),
            );
        }
        let failed = column.values().any(|o| *o != Outcome::Pass);
        if failed || !problems.is_empty() {
            eprintln!("xtask: guest log kept at {}", log.display());
        }
    }
    print_table(&table, &scenarios);
    let failures: Vec<String> = table
        .iter()
        .flat_map(|(k, col)| {
            col.iter().filter_map(move |(s, o)| match o {
                Outcome::Pass => None,
                Outcome::Fail(why) => Some(format!("{k} {s}: {why}")),
                Outcome::Missing => Some(format!("{k} {s}: no result (see the guest log)")),
            })
        })
        .chain(problems)
        .collect();
    if failures.is_empty() {
        Ok(())
    } else {
        for f in &failures {
            eprintln!("xtask: FAIL {f}");
        }
        bail!("{} VM scenario problem(s)", failures.len())
    }
}

/// The kernel vm-test names `name` (5.10, 6.1, 6.12).
fn kernel_spec(name: &str) -> Result<&'static kernel::KernelSpec> {
    kernel::KERNELS
        .iter()
        .find(|s| s.name == name)
        .with_context(|| {
            let names: Vec<_> = kernel::KERNELS.iter().map(|s| s.name).collect();
            format!("unknown kernel `{name}`: choose from {}", names.join(", "))
        })
}

/// Fetches `spec`'s package through apt (cached under `vm_dir`), printing the exact
/// package and version, and extracts the modules the guest loads.
fn fetch_kernel(
    spec: &kernel::KernelSpec,
    vm_dir: &Path,
) -> Result<(kernel::Kernel, Vec<kernel::Module>)> {
    let cache = vm_dir.join("kernels");
    std::fs::create_dir_all(&cache)?;
    let apt = kernel::Apt::for_spec(spec, &vm_dir.join("apt"))?;
    let package = kernel::resolve(spec, &apt)?;
    eprintln!(
        "xtask: {}: {package} {}",
        spec.name,
        apt.version(&package)
            .as_deref()
            .unwrap_or("(version unknown)")
    );
    let k = kernel::fetch(&package, &cache, &apt)?;
    let modules = kernel::modules_with_deps(&k.modules_dir, &kernel::modules(spec))?;
    Ok((k, modules))
}

/// Static musl builds of the binaries of `packages` (netdrop; netdrop-tests for the
/// scenario runner).
fn build_guest_binaries(packages: &[&str]) -> Result<Vec<PathBuf>> {
    let mut c = cmd::cargo();
    c.args(["build", "--release", "--target", MUSL]);
    for p in packages {
        c.args(["--package", p]);
    }
    cmd::run(c.arg("--bins"))?;
    let dir = cmd::target_dir().join(MUSL).join("release");
    let mut bins = vec![dir.join("netdrop")];
    if packages.contains(&"netdrop-tests") {
        bins.push(dir.join("netdrop-vm-scenarios"));
    }
    Ok(bins)
}

pub(super) struct Boot {
    pub lines: Vec<String>,
    pub timed_out: bool,
}

/// Boots `vmlinuz` with `initrd`, writing the console to `log` and calling `on_line` for
/// each line, until the guest powers off or `timeout` passes.
pub(super) fn boot(
    vmlinuz: &Path,
    initrd: &Path,
    accel: &str,
    extra_cmdline: &str,
    log: &Path,
    timeout: Duration,
    mut on_line: impl FnMut(&str),
) -> Result<Boot> {
    let mut c = Command::new("qemu-system-x86_64");
    match accel {
        "kvm" => c.args(["-accel", "kvm", "-cpu", "host"]),
        _ => c.args(["-accel", "tcg,thread=multi", "-cpu", "max"]),
    };
    c.args([
        "-m",
        "1024",
        "-smp",
        "2",
        "-nographic",
        "-no-reboot",
        "-nodefaults",
        "-serial",
        "stdio",
    ])
    .arg("-kernel")
    .arg(vmlinuz)
    .arg("-initrd")
    .arg(initrd)
    .arg("-append")
    .arg(format!("console=ttyS0 panic=-1 quiet {extra_cmdline}"))
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = c.spawn().context("starting qemu-system-x86_64")?;
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let tx2 = tx.clone();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).split(b'\n').map_while(Result::ok) {
            let _ = tx.send(String::from_utf8_lossy(&l).replace('\r', ""));
        }
    });
    std::thread::spawn(move || {
        for l in BufReader::new(stderr).split(b'\n').map_while(Result::ok) {
            let _ = tx2.send(format!("qemu: {}", String::from_utf8_lossy(&l)));
        }
    });
    let mut lines = Vec::new();
    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(l) => {
                on_line(&l);
                lines.push(l);
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if Instant::now() > deadline {
            timed_out = true;
            let _ = child.kill();
            break;
        }
    }
    let _ = child.wait();
    std::fs::write(log, lines.join("\n")).with_context(|| format!("writing {}", log.display()))?;
    Ok(Boot { lines, timed_out })
}

fn parse_results(lines: &[String]) -> BTreeMap<String, Outcome> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix("NDVM RESULT "))
        .filter_map(|rest| {
            let mut parts = rest.splitn(3, ' ');
            let (name, verdict, detail) =
                (parts.next()?, parts.next()?, parts.next().unwrap_or(""));
            let outcome = match verdict {
                "PASS" => Outcome::Pass,
                _ => Outcome::Fail(detail.to_owned()),
            };
            Some((name.to_owned(), outcome))
        })
        .collect()
}

fn print_table(table: &BTreeMap<String, BTreeMap<String, Outcome>>, scenarios: &[&str]) {
    let kernels: Vec<&String> = table.keys().collect();
    let width = scenarios.iter().map(|s| s.len()).max().unwrap_or(8);
    let mut header = format!("{:<width$}", "scenario");
    for k in &kernels {
        header.push_str(&format!("  {k:<8}"));
    }
    println!("\n{header}");
    for s in scenarios {
        let mut row = format!("{s:<width$}");
        for k in &kernels {
            let cell = match table[*k].get(*s) {
                Some(Outcome::Pass) => "PASS",
                Some(Outcome::Fail(_)) => "FAIL",
                Some(Outcome::Missing) | None => "-",
            };
            row.push_str(&format!("  {cell:<8}"));
        }
        println!("{row}");
    }
}

/// `kvm` if this host can boot a guest with KVM (probed once per host kernel, with a short
/// timeout: nested virtualisation sometimes hangs), else `tcg`.
pub(super) fn accel(vm_dir: &Path, vmlinuz: &Path, initrd: &Path) -> &'static str {
    if let Ok(v) = std::env::var("NETDROP_VM_ACCEL") {
        return if v == "kvm" { "kvm" } else { "tcg" };
    }
    if !Path::new("/dev/kvm").exists() {
        return "tcg";
    }
    let host = output(Command::new("uname").arg("-r")).unwrap_or_default();
    let cache = vm_dir.join(format!("accel-{}", host.trim()));
    if let Ok(c) = std::fs::read_to_string(&cache) {
        return if c.trim() == "kvm" { "kvm" } else { "tcg" };
    }
    eprintln!(
        "xtask: probing whether KVM works here ({}s at most)",
        KVM_PROBE_TIMEOUT.as_secs()
    );
    let ok = boot(
        vmlinuz,
        initrd,
        "kvm",
        "netdrop.probe=1",
        &vm_dir.join("kvm-probe.log"),
        KVM_PROBE_TIMEOUT,
        |_| {},
    )
    .map(|b| !b.timed_out && b.lines.iter().any(|l| l.contains("NDVM PROBE-OK")))
    .unwrap_or(false);
    let choice = if ok { "kvm" } else { "tcg" };
    eprintln!("xtask: using {choice}");
    let _ = std::fs::write(&cache, choice);
    choice
}

fn output(c: &mut Command) -> Option<String> {
    cmd::output(c)
}

/// `cargo xtask bench --kernel K`: the tcp_drop path hook's cost measured inside kernel K
/// (`netdrop-tcpfree-bench` in the guest); returns its exit status.
pub fn bench_in_guest(kernel: &str, seconds: f64, rounds: usize) -> Result<i32> {
    setup::toolchain()?;
    setup::rust_target(MUSL)?;
    build_guest_binaries(&["netdrop", "netdrop-tests"])?;
    let bench = cmd::target_dir()
        .join(MUSL)
        .join("release")
        .join("netdrop-tcpfree-bench");
    run_command(RunArgs {
        kernel: kernel.to_owned(),
        copy: vec![bench],
        command: vec![
            "./netdrop-tcpfree-bench".to_owned(),
            seconds.to_string(),
            rounds.to_string(),
        ],
        // Each traced run starts netdrop (seconds under TCG) on top of the transfer.
        timeout: std::time::Duration::from_secs(600 + (rounds as u64) * 3 * (seconds as u64 + 60)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_are_read_from_the_console() {
        let lines: Vec<String> = [
            "noise",
            "NDVM RESULT closed_port PASS 3.1s",
            "NDVM RESULT rp_filter FAIL reason.name is \"NOT_SPECIFIED\", expected \"IP_RPFILTER\"",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let r = parse_results(&lines);
        assert_eq!(r["closed_port"], Outcome::Pass);
        assert!(matches!(&r["rp_filter"], Outcome::Fail(w) if w.contains("IP_RPFILTER")));
        assert!(!r.contains_key("noise"));
    }
}
