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
    /// The package used when the archive still has it (reproducible runs); `None` when the
    /// archive only ever serves the newest build of the series (older ones answer 404).
    pub pinned: Option<&'static str>,
    /// Regular expression for `apt-cache search --names-only`, used when the pinned
    /// package is gone from the archive (or there is none): the newest match is taken.
    pub search: &'static str,
    /// Debian suites the package comes from, when the machine's apt sources do not carry
    /// them: a private apt configuration under `target/vm/apt/` adds them. Empty: the
    /// machine's own sources.
    pub suites: &'static [&'static str],
    /// Run when `vm-test` is given no `--kernel`: only kernels every scenario passes on
    /// (CI runs this list).
    pub default: bool,
    /// Modules this kernel needs beyond [`MODULES`] (names differ between versions).
    pub extra_modules: &'static [&'static str],
}

/// Kernels `vm-test` knows; those marked `default` run without `--kernel`.
pub const KERNELS: &[KernelSpec] = &[
    KernelSpec {
        name: "5.10",
        pinned: None,
        search: r"^linux-image-5\.10\.0-[0-9]+-cloud-amd64$",
        suites: &["bullseye", "bullseye-security"],
        default: true,
        // 5.10 builds the `counter` expression as a module; later kernels build it into
        // nf_tables.
        extra_modules: &["nft_counter"],
    },
    KernelSpec {
        name: "6.1",
        pinned: Some("linux-image-6.1.0-56-cloud-amd64"),
        search: r"^linux-image-6\.1\.0-[0-9]+-cloud-amd64$",
        suites: &[],
        default: true,
        extra_modules: &[],
    },
    KernelSpec {
        name: "6.12",
        pinned: Some("linux-image-6.12.117+deb12-cloud-amd64"),
        search: r"^linux-image-6\.12\.[0-9]+\+deb12-cloud-amd64$",
        suites: &[],
        default: true,
        extra_modules: &[],
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

/// The modules `spec` loads.
pub fn modules(spec: &KernelSpec) -> Vec<&'static str> {
    MODULES.iter().chain(spec.extra_modules).copied().collect()
}

/// An extracted kernel.
pub struct Kernel {
    pub package: String,
    /// `uname -r`.
    pub release: String,
    pub vmlinuz: PathBuf,
    /// `lib/modules/<release>`.
    pub modules_dir: PathBuf,
}

/// The apt configuration a kernel is fetched with: the machine's, or a private one.
pub struct Apt {
    /// `-o` options for apt-get and apt-cache.
    options: Vec<String>,
}

impl Apt {
    /// The apt configuration for `spec`: with suites, a private `sources.list` and lists
    /// directory under `dir` (the machine's own sources stay untouched), updated when the
    /// lists are missing or older than a day.
    pub fn for_spec(spec: &KernelSpec, dir: &Path) -> Result<Self> {
        if spec.suites.is_empty() {
            return Ok(Self {
                options: Vec::new(),
            });
        }
        let dir = dir.join(spec.name);
        let lists = dir.join("lists");
        std::fs::create_dir_all(lists.join("partial"))?;
        let sources = dir.join("sources.list");
        let mut text = String::new();
        for suite in spec.suites {
            let security = suite.ends_with("-security");
            let uri = mirror(security)?;
            text.push_str(&format!("deb [signed-by={KEYRING}] {uri} {suite} main\n"));
        }
        let changed = std::fs::read_to_string(&sources).ok().as_deref() != Some(text.as_str());
        std::fs::write(&sources, &text)
            .with_context(|| format!("writing {}", sources.display()))?;
        let apt = Self {
            options: vec![
                format!("Dir::Etc::sourcelist={}", sources.display()),
                "Dir::Etc::sourceparts=/dev/null".to_owned(),
                format!("Dir::State::lists={}", lists.display()),
            ],
        };
        if changed || lists_age(&lists).is_none_or(|a| a > LISTS_MAX_AGE) {
            apt.update()?;
        }
        Ok(apt)
    }

    fn apply<'c>(&self, c: &'c mut Command) -> &'c mut Command {
        for o in &self.options {
            c.args(["-o", o]);
        }
        c
    }

    fn cache(&self, args: &[&str]) -> Option<String> {
        output(self.apply(&mut Command::new("apt-cache")).args(args))
    }

    fn update(&self) -> Result<()> {
        if !cmd::is_root() {
            bail!("apt-get update needs root: run `cargo xtask vm-test` as root");
        }
        cmd::run(
            self.apply(&mut Command::new("apt-get"))
                .args(["update", "-qq"]),
        )
    }

    /// `apt-get download package` into `dir`.
    fn download(&self, package: &str, dir: &Path) -> Result<()> {
        cmd::run(
            self.apply(&mut Command::new("apt-get"))
                .args(["download", "-q", package])
                .current_dir(dir),
        )
    }

    /// The version the lists give for `package`.
    pub fn version(&self, package: &str) -> Option<String> {
        let show = self.cache(&["show", "--no-all-versions", package])?;
        show.lines()
            .find_map(|l| l.strip_prefix("Version: "))
            .map(str::to_owned)
    }
}

/// Keyring of the Debian archive (package `debian-archive-keyring`).
const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";
/// Private lists older than this are refreshed: the archive replaces kernels often.
const LISTS_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// The Debian mirror the machine's own apt sources use (`.../debian`, or
/// `.../debian-security` for a security suite), so a private configuration talks to the
/// same host.
fn mirror(security: bool) -> Result<String> {
    let mut text = std::fs::read_to_string("/etc/apt/sources.list").unwrap_or_default();
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        for e in dir.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "sources" || x == "list") {
                text.push_str(&std::fs::read_to_string(&p).unwrap_or_default());
                text.push('\n');
            }
        }
    }
    mirror_in(&text, security).with_context(|| {
        format!(
            "no Debian {} mirror in /etc/apt/sources.list or /etc/apt/sources.list.d",
            if security { "security" } else { "archive" }
        )
    })
}

/// The first `http(s)://HOST/.../debian` (or `debian-security`) URI in apt source text,
/// one-line or deb822 format.
fn mirror_in(text: &str, security: bool) -> Option<String> {
    let tail = if security {
        "/debian-security"
    } else {
        "/debian"
    };
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .flat_map(str::split_whitespace)
        .filter(|w| w.starts_with("http://") || w.starts_with("https://"))
        .map(|w| w.trim_end_matches('/'))
        .find(|w| w.ends_with(tail))
        .map(str::to_owned)
}

/// Time since the newest Packages index in `lists` was written, `None` without one.
fn lists_age(lists: &Path) -> Option<std::time::Duration> {
    std::fs::read_dir(lists)
        .ok()?
        .flatten()
        // `..._Packages`, or `..._Packages.lz4` where apt keeps indexes compressed.
        .filter(|e| e.file_name().to_string_lossy().contains("_Packages"))
        .filter_map(|e| e.metadata().ok()?.modified().ok())
        .max()
        .map(|t| t.elapsed().unwrap_or_default())
}

/// Picks the package for `spec`: the pinned one if the archive has it, else the newest.
pub fn resolve(spec: &KernelSpec, apt: &Apt) -> Result<String> {
    let available = |pkg: &str| {
        apt.cache(&["show", "--no-all-versions", pkg])
            .is_some_and(|o| !o.trim().is_empty())
    };
    if let Some(pinned) = spec.pinned {
        if !available(pinned) && cmd::is_root() {
            // Lists may be missing on a fresh machine.
            apt.update()?;
        }
        if available(pinned) {
            return Ok(pinned.to_owned());
        }
    }
    let found = apt
        .cache(&["search", "--names-only", spec.search])
        .unwrap_or_default();
    let mut names: Vec<&str> = found
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    names.sort_by_key(|n| version_key(n));
    match (names.last(), spec.pinned) {
        (Some(n), Some(pinned)) => {
            eprintln!("xtask: {pinned} is no longer in the archive; using {n}");
            Ok((*n).to_owned())
        }
        (Some(n), None) => Ok((*n).to_owned()),
        (None, _) => bail!(
            "no Debian kernel package matches {} (is apt configured with {}?)",
            spec.search,
            if spec.suites.is_empty() {
                "bookworm and bookworm-backports".to_owned()
            } else {
                spec.suites.join(" and ")
            }
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
pub fn fetch(package: &str, cache: &Path, apt: &Apt) -> Result<Kernel> {
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
                apt.download(package, &debs)?;
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
    fn mirrors_are_taken_from_the_machines_sources() {
        let deb822 = "Types: deb\n# http://snapshot.debian.org/archive/debian/20250520T000000Z\n\
                      URIs: http://deb.debian.org/debian\nSuites: bookworm\n\n\
                      Types: deb\nURIs: http://deb.debian.org/debian-security/\nSuites: bookworm-security\n";
        assert_eq!(
            mirror_in(deb822, false).as_deref(),
            Some("http://deb.debian.org/debian")
        );
        assert_eq!(
            mirror_in(deb822, true).as_deref(),
            Some("http://deb.debian.org/debian-security")
        );
        let one_line = "deb [signed-by=/k.gpg] https://mirror.example/debian bookworm main\n";
        assert_eq!(
            mirror_in(one_line, false).as_deref(),
            Some("https://mirror.example/debian")
        );
        assert_eq!(mirror_in(one_line, true), None);
    }

    #[test]
    fn only_kernels_every_scenario_passes_on_are_default() {
        let default: Vec<_> = KERNELS
            .iter()
            .filter(|k| k.default)
            .map(|k| k.name)
            .collect();
        assert_eq!(default, ["5.10", "6.1", "6.12"]);
        let k510 = KERNELS.iter().find(|k| k.name == "5.10").unwrap();
        assert!(modules(k510).contains(&"nft_counter"));
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
