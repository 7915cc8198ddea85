//! `cargo xtask vm-run`: one command, as root, in a Debian kernel booted in qemu, with the
//! static netdrop on PATH and the guest tools (a shell, ip, tc, nft, dropwatch, busybox). For trying
//! netdrop on another kernel and reproducing bug reports.
//!
//! The guest's /init runs the command in `/vmrun/work` (where `--copy` puts files), then
//! prints `NDVM EXIT <status>` on the serial console; the host streams what the command
//! printed between `NDVM RUN START` and that marker, and exits with the status.

use std::{
    io::Write,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Result, bail};

use super::{
    MUSL, VM_TOOLS, accel, boot, build_guest_binaries, fetch_kernel, initramfs, kernel_spec,
};
use crate::{cmd, setup};

/// What to run.
pub struct RunArgs {
    /// Kernel name as vm-test spells it (5.10, 6.1, 6.12).
    pub kernel: String,
    /// Files copied into the command's working directory.
    pub copy: Vec<PathBuf>,
    /// The command and its arguments.
    pub command: Vec<String>,
    /// Whole-boot limit.
    pub timeout: Duration,
}

/// Boots the kernel, runs the command, and returns its exit status.
pub fn run(args: RunArgs) -> Result<i32> {
    if args.command.is_empty() {
        bail!("no command: e.g. cargo xtask vm-run --kernel 6.1 -- netdrop reasons");
    }
    for f in &args.copy {
        if !f.is_file() {
            bail!("--copy {}: no such file", f.display());
        }
    }
    let spec = kernel_spec(&args.kernel)?;
    setup::toolchain()?;
    setup::install_packages(VM_TOOLS)?;
    setup::rust_target(MUSL)?;
    let guest_bins = build_guest_binaries(&["netdrop"])?;
    let vm_dir = cmd::target_dir().join("vm");
    let logs = vm_dir.join("logs");
    std::fs::create_dir_all(&logs)?;
    let (k, modules) = fetch_kernel(spec, &vm_dir)?;
    let initrd = vm_dir.join(format!("vmrun-{}.cpio.gz", k.release));
    let command = initramfs::GuestCommand {
        line: shell_line(&args.command),
        files: args.copy.clone(),
    };
    initramfs::build(
        &vm_dir.join(format!("vmrun-work-{}", k.release)),
        &initrd,
        &guest_bins,
        &modules,
        Some(&command),
    )?;
    let accel = accel(&vm_dir, &k.vmlinuz, &initrd);
    let log = logs.join(format!("vmrun-{}.log", k.release));
    eprintln!(
        "xtask: booting {} ({accel}) to run: {}; log: {}",
        k.release,
        command.line,
        log.display()
    );
    let started = Instant::now();
    let mut console = Console::default();
    let mut stdout = std::io::stdout();
    let b = boot(&k.vmlinuz, &initrd, accel, "", &log, args.timeout, |line| {
        for out in console.line(line) {
            let _ = writeln!(stdout, "{out}");
            let _ = stdout.flush();
        }
    })?;
    eprintln!(
        "xtask: {} finished in {:.0}s",
        k.release,
        started.elapsed().as_secs_f64()
    );
    match console.status {
        Some(status) => Ok(status),
        None if b.timed_out => bail!(
            "the guest timed out after {}s (log: {})",
            args.timeout.as_secs(),
            log.display()
        ),
        None => bail!(
            "the guest ended without reporting the command's exit status (log: {})",
            log.display()
        ),
    }
}

/// `args` quoted for sh, each in single quotes.
fn shell_line(args: &[String]) -> String {
    args.iter()
        .map(|a| format!("'{}'", a.replace('\'', r"'\''")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Reads the serial console line by line: passes on what the command printed (after
/// `NDVM RUN START`), and takes the status from `NDVM EXIT`, dropping the empty line /init
/// prints before the marker (it ends a last line without a newline).
#[derive(Default)]
struct Console {
    started: bool,
    /// An empty line held back until the next line shows whether /init added it.
    held_empty: bool,
    status: Option<i32>,
}

impl Console {
    /// The command's output lines that `line` releases.
    fn line(&mut self, line: &str) -> Vec<String> {
        if self.status.is_some() {
            return Vec::new();
        }
        if !self.started {
            self.started = line == "NDVM RUN START";
            return Vec::new();
        }
        if let Some(code) = line.strip_prefix("NDVM EXIT ")
            && let Ok(code) = code.trim().parse()
        {
            self.status = Some(code);
            self.held_empty = false;
            return Vec::new();
        }
        let mut out = Vec::new();
        if std::mem::take(&mut self.held_empty) {
            out.push(String::new());
        }
        if line.is_empty() {
            self.held_empty = true;
        } else {
            out.push(line.to_owned());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(lines: &[&str]) -> (Vec<String>, Option<i32>) {
        let mut c = Console::default();
        let out = lines.iter().flat_map(|l| c.line(l)).collect();
        (out, c.status)
    }

    #[test]
    fn output_between_the_markers_and_the_status() {
        let (out, status) = feed(&[
            "NDVM KERNEL 6.1.0-56-cloud-amd64",
            "NDVM RUN START",
            "       0  NOT_DROPPED_YET",
            "",
            "       1  CONSUMED",
            "",
            "NDVM EXIT 0",
            "reboot: Power down",
        ]);
        assert_eq!(out, ["       0  NOT_DROPPED_YET", "", "       1  CONSUMED"]);
        assert_eq!(status, Some(0));
    }

    #[test]
    fn a_last_line_without_newline_and_a_failing_status() {
        let (out, status) = feed(&["NDVM RUN START", "partial", "NDVM EXIT 3"]);
        assert_eq!(out, ["partial"]);
        assert_eq!(status, Some(3));
    }

    #[test]
    fn no_marker_means_no_status() {
        let (out, status) = feed(&["NDVM RUN START", "Kernel panic - not syncing"]);
        assert_eq!(out, ["Kernel panic - not syncing"]);
        assert_eq!(status, None);
        let (out, status) = feed(&["NDVM EXIT 0"]);
        assert!(
            out.is_empty() && status.is_none(),
            "a marker before the start"
        );
    }

    #[test]
    fn arguments_are_quoted_for_sh() {
        let args = ["sh", "-c", "exit 3", "it's"].map(String::from);
        assert_eq!(shell_line(&args), r"'sh' '-c' 'exit 3' 'it'\''s'");
    }
}
