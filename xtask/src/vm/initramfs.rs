//! The guest's initramfs: busybox, netdrop and the scenario runner (static musl builds),
//! iproute2, nftables and dropwatch from the host's Debian packages with the shared
//! libraries they load, the modules, and an /init that runs the scenarios and powers off.

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

use super::kernel::Module;
use crate::cmd::{self, output};

/// The guest's /init.
const INIT: &str = r#"#!/bin/sh
export PATH=/sbin:/usr/sbin:/bin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /run /tmp /sys/fs/bpf /var/run
mount -t tmpfs run /run
mount -t tmpfs tmp /tmp
mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null
mount -t bpf bpf /sys/fs/bpf 2>/dev/null
if grep -q netdrop.probe /proc/cmdline; then
    echo "NDVM PROBE-OK"
    poweroff -f
fi
echo "NDVM KERNEL $(uname -r)"
for m in $(cat /modules/order); do
    insmod /modules/$m.ko || echo "NDVM MODULE-FAIL $m"
done
ip link set lo up
if [ -f /vmrun/command ]; then
    dmesg -n 1
    cd /vmrun/work
    # dash, not busybox sh: busybox's shell runs its own applets (ip, tc) before PATH.
    mkdir -p /vmrun/bin
    ln -s /bin/dash /vmrun/bin/sh
    echo "NDVM RUN START"
    PATH=/vmrun/bin:$PATH dash /vmrun/command
    printf '\nNDVM EXIT %d\n' $?
    poweroff -f
fi
NETDROP_BIN=/bin/netdrop /bin/netdrop-vm-scenarios
poweroff -f
"#;

/// Host tools copied in, with their libraries: (command, where it goes in the guest).
const TOOLS: &[(&str, &str)] = &[
    ("ip", "/sbin/ip"),
    ("nft", "/usr/sbin/nft"),
    ("dropwatch", "/usr/bin/dropwatch"),
    ("tc", "/sbin/tc"),
    ("dash", "/bin/dash"),
];

/// Busybox applets not linked, because a real tool above replaces them.
const SHADOWED: &[&str] = &["ip", "tc"];

/// A command for /init to run instead of the scenarios (`cargo xtask vm-run`).
pub struct GuestCommand {
    /// The command line, already quoted for sh.
    pub line: String,
    /// Files copied into its working directory, `/vmrun/work`.
    pub files: Vec<PathBuf>,
}

/// Builds `out` (gzip'd newc cpio) from `guest_bins` (netdrop, runner) and `modules`; with
/// `command`, /init runs it instead of the scenarios.
pub fn build(
    work: &Path,
    out: &Path,
    guest_bins: &[PathBuf],
    modules: &[Module],
    command: Option<&GuestCommand>,
) -> Result<()> {
    let root = work.join("root");
    let _ = std::fs::remove_dir_all(&root);
    for d in [
        "bin", "sbin", "usr/bin", "usr/sbin", "proc", "sys", "dev", "run", "tmp", "etc", "modules",
        "var",
    ] {
        std::fs::create_dir_all(root.join(d))?;
    }
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.exists())
        .context("busybox is missing: install busybox-static")?;
    copy(busybox, &root.join("bin/busybox"))?;
    let applets = output(Command::new(busybox).arg("--list")).context("busybox --list")?;
    for a in applets
        .lines()
        .filter(|a| !a.is_empty() && !SHADOWED.contains(a))
    {
        let link = root.join("bin").join(a);
        if !link.exists() {
            std::os::unix::fs::symlink("busybox", link)?;
        }
    }
    for bin in guest_bins {
        copy(bin, &root.join("bin").join(bin.file_name().unwrap()))?;
    }
    for (tool, dest) in TOOLS {
        let src = which(tool).with_context(|| format!("{tool} is missing on the host"))?;
        copy(&src, &root.join(dest.trim_start_matches('/')))?;
        for lib in shared_libs(&src)? {
            copy(
                &lib,
                &root.join(lib.to_string_lossy().trim_start_matches('/')),
            )?;
        }
    }
    let mut order = String::new();
    for m in modules {
        std::fs::write(
            root.join("modules").join(format!("{}.ko", m.name)),
            &m.bytes,
        )?;
        order.push_str(&m.name);
        order.push('\n');
    }
    std::fs::write(root.join("modules/order"), order)?;
    if let Some(c) = command {
        let dir = root.join("vmrun/work");
        std::fs::create_dir_all(&dir)?;
        for f in &c.files {
            let name = f
                .file_name()
                .with_context(|| format!("--copy {}: not a file name", f.display()))?;
            copy(f, &dir.join(name))?;
        }
        std::fs::write(root.join("vmrun/command"), format!("{}\n", c.line))?;
    }
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/:/bin/sh\n")?;
    std::fs::write(root.join("etc/group"), "root:x:0:\n")?;
    let init = root.join("init");
    std::fs::write(&init, INIT)?;
    std::fs::set_permissions(&init, std::fs::Permissions::from_mode(0o755))?;
    let script = format!(
        "cd '{}' && find . -print0 | cpio --null --quiet -o -H newc | gzip -1 > '{}'",
        root.display(),
        out.display()
    );
    cmd::run(Command::new("sh").args(["-c", &script]))
}

fn copy(src: &Path, dst: &Path) -> Result<()> {
    if let Some(parent) = dst.parent() {
        std::fs::create_dir_all(parent)?;
    }
    // fs::copy follows symlinks: the guest gets the real file under the linked name.
    std::fs::copy(src, dst)
        .with_context(|| format!("copying {} to {}", src.display(), dst.display()))?;
    Ok(())
}

fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// Absolute paths of the shared libraries `bin` loads, the dynamic loader included.
fn shared_libs(bin: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .arg(bin)
        .output()
        .context("running ldd")?;
    if !out.status.success() {
        bail!("ldd {} failed", bin.display());
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            l.split_whitespace()
                .find(|w| w.starts_with('/'))
                .map(PathBuf::from)
        })
        .collect())
}
