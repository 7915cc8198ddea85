//! Debian kernel packages: resolve, download (apt), extract, and pick the modules the
//! scenarios need with their dependencies.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

use crate::cmd::{self, output};

/// A kernel series to test on.
pub struct KernelSpec {
    /// Short name used on the command line and in the table.
    pub name: &'static str,
    /// The package used when the archive still has it (reproducible runs).
    pub pinned: &'static str,
    /// Regular expression for `apt-cache search --names-only`, used when the pinned
    /// package is gone from the archive: the newest match is taken.
    pub search: &'static str,
}

/// Kernels `vm-test` runs on by default.
pub const KERNELS: &[KernelSpec] = &[
    KernelSpec {
        name: "6.1",
        pinned: "linux-image-6.1.0-56-cloud-amd64",
        search: r"^linux-image-6\.1\.0-[0-9]+-cloud-amd64$",
    },
    KernelSpec {
        name: "6.12",
        pinned: "linux-image-6.12.117+deb12-cloud-amd64",
        search: r"^linux-image-6\.12\.[0-9]+\+deb12-cloud-amd64$",
    },
];

/// Modules the scenarios load: veth pairs, nftables rules, conntrack, NET_DM for dropwatch,
/// sock_diag for TCP and UDP (netdrop names listeners through it; a full system loads
/// these on first use, the initramfs has no modprobe).
pub const MODULES: &[&str] = &[
    "veth",
    "nf_tables",
    "nft_ct",
    "nf_conntrack",
    "drop_monitor",
    "inet_diag",
    "tcp_diag",
    "udp_diag",
];

/// An extracted kernel.
pub struct Kernel {
    pub package: String,
    /// `uname -r`.
    pub release: String,
    pub vmlinuz: PathBuf,
    /// `lib/modules/<release>`.
    pub modules_dir: PathBuf,
}

fn apt_cache(args: &[&str]) -> Option<String> {
    output(Command::new("apt-cache").args(args))
}

/// Picks the package for `spec`: the pinned one if the archive has it, else the newest.
pub fn resolve(spec: &KernelSpec) -> Result<String> {
    let available = |pkg: &str| {
        apt_cache(&["show", "--no-all-versions", pkg]).is_some_and(|o| !o.trim().is_empty())
    };
    if !available(spec.pinned) {
        // Lists may be missing on a fresh machine.
        if cmd::is_root() {
            cmd::run(Command::new("apt-get").args(["update", "-qq"]))?;
        }
    }
    if available(spec.pinned) {
        return Ok(spec.pinned.to_owned());
    }
    let found = apt_cache(&["search", "--names-only", spec.search]).unwrap_or_default();
    let mut names: Vec<&str> = found
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    names.sort_by_key(|n| version_key(n));
    match names.last() {
        Some(n) => {
            eprintln!(
                "xtask: {} is no longer in the archive; using {n}",
                spec.pinned
            );
            Ok((*n).to_owned())
        }
        None => bail!(
            "no Debian kernel package matches {} (is apt configured with bookworm and bookworm-backports?)",
            spec.search
        ),
    }
}

/// Numbers in a package name, for ordering versions.
fn version_key(name: &str) -> Vec<u64> {
    name.split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Downloads and extracts `package` under `cache` (once).
pub fn fetch(package: &str, cache: &Path) -> Result<Kernel> {
    let dir = cache.join(package);
    let boot = dir.join("boot");
    if !boot.is_dir() {
        let debs = cache.join("debs");
        std::fs::create_dir_all(&debs)?;
        let existing = find_deb(&debs, package);
        let deb = match existing {
            Some(d) => d,
            None => {
                eprintln!("xtask: downloading {package}");
                cmd::run(
                    Command::new("apt-get")
                        .args(["download", "-q", package])
                        .current_dir(&debs),
                )?;
                find_deb(&debs, package)
                    .with_context(|| format!("apt-get download {package} left no .deb"))?
            }
        };
        let tmp = cache.join(format!("{package}.partial"));
        let _ = std::fs::remove_dir_all(&tmp);
        cmd::run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tmp))?;
        std::fs::rename(&tmp, &dir)?;
    }
    let vmlinuz = std::fs::read_dir(&boot)?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
        .with_context(|| format!("no vmlinuz in {}", boot.display()))?;
    let release = vmlinuz
        .file_name()
        .unwrap()
        .to_string_lossy()
        .trim_start_matches("vmlinuz-")
        .to_owned();
    Ok(Kernel {
        package: package.to_owned(),
        modules_dir: dir.join("lib/modules").join(&release),
        release,
        vmlinuz,
    })
}

fn find_deb(dir: &Path, package: &str) -> Option<PathBuf> {
    let prefix = format!("{}_", package.replace('+', "%2b"));
    let plain = format!("{package}_");
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            (n.starts_with(&prefix) || n.starts_with(&plain)) && n.ends_with(".deb")
        })
}

/// A module file, decompressed.
pub struct Module {
    pub name: String,
    pub bytes: Vec<u8>,
}

/// `wanted` and everything they depend on, in load order (dependencies first).
pub fn modules_with_deps(modules_dir: &Path, wanted: &[&str]) -> Result<Vec<Module>> {
    let mut index = BTreeMap::new();
    index_modules(&modules_dir.join("kernel"), &mut index)?;
    let mut order = Vec::new();
    let mut done = BTreeSet::new();
    for w in wanted {
        visit(&normalize(w), &index, &mut done, &mut order, 0)?;
    }
    Ok(order)
}

fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

fn index_modules(dir: &Path, index: &mut BTreeMap<String, PathBuf>) -> Result<()> {
    for e in std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .flatten()
    {
        let p = e.path();
        if p.is_dir() {
            index_modules(&p, index)?;
            continue;
        }
        let n = p.file_name().unwrap().to_string_lossy().into_owned();
        if let Some(stem) = n.strip_suffix(".ko").or_else(|| n.strip_suffix(".ko.xz")) {
            index.insert(normalize(stem), p);
        }
    }
    Ok(())
}

fn visit(
    name: &str,
    index: &BTreeMap<String, PathBuf>,
    done: &mut BTreeSet<String>,
    order: &mut Vec<Module>,
    depth: usize,
) -> Result<()> {
    if done.contains(name) {
        return Ok(());
    }
    if depth > 32 {
        bail!("module dependency loop at {name}");
    }
    let Some(path) = index.get(name) else {
        // Built into this kernel: nothing to load.
        done.insert(name.to_owned());
        return Ok(());
    };
    let bytes = read_module(path)?;
    for dep in depends(&bytes) {
        visit(&normalize(&dep), index, done, order, depth + 1)?;
    }
    done.insert(name.to_owned());
    order.push(Module {
        name: name.to_owned(),
        bytes,
    });
    Ok(())
}

fn read_module(path: &Path) -> Result<Vec<u8>> {
    if path.extension().is_some_and(|e| e == "xz") {
        let out = Command::new("xz")
            .arg("-dc")
            .arg(path)
            .output()
            .context("running xz (install xz-utils)")?;
        if !out.status.success() {
            bail!("xz -dc {} failed", path.display());
        }
        Ok(out.stdout)
    } else {
        Ok(std::fs::read(path)?)
    }
}

/// The `depends=` entry of a module's `.modinfo` section.
fn depends(ko: &[u8]) -> Vec<String> {
    let key = b"depends=";
    let Some(at) = ko.windows(key.len()).position(|w| w == key) else {
        return Vec::new();
    };
    let rest = &ko[at + key.len()..];
    let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
    String::from_utf8_lossy(&rest[..end])
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depends_are_read_from_modinfo() {
        let ko = b"\x7fELF....license=GPL\0depends=nf_conntrack,nf_tables\0retpoline=Y\0";
        assert_eq!(depends(ko), vec!["nf_conntrack", "nf_tables"]);
        assert!(depends(b"depends=\0").is_empty());
        assert!(depends(b"no modinfo").is_empty());
    }

    #[test]
    fn versions_order_numerically() {
        let mut v = [
            "linux-image-6.12.9+deb12-cloud-amd64",
            "linux-image-6.12.117+deb12-cloud-amd64",
        ];
        v.sort_by_key(|n| version_key(n));
        assert_eq!(v[1], "linux-image-6.12.117+deb12-cloud-amd64");
    }
}
