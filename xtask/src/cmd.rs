//! Running commands, loudly.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is in the workspace")
        .to_owned()
}

/// `target/` of the workspace (or CARGO_TARGET_DIR).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from)
}

/// `cargo` in the workspace root, with ~/.cargo/bin on PATH (bpf-linker lives there).
pub fn cargo() -> Command {
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.current_dir(root());
    c.env("PATH", path_with_cargo_bin());
    c
}

/// `cargo` of the nightly toolchain (for rustfmt's import options and the bpf target).
pub fn cargo_nightly() -> Command {
    let mut c = Command::new("rustup");
    c.args(["run", "nightly", "cargo"]).current_dir(root());
    c.env("PATH", path_with_cargo_bin());
    c
}

/// PATH with `$CARGO_HOME/bin` in front.
pub fn path_with_cargo_bin() -> std::ffi::OsString {
    let mut dirs = vec![cargo_home().join("bin")];
    if let Some(p) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&p));
    }
    std::env::join_paths(dirs).expect("PATH entries have no separator")
}

/// `$CARGO_HOME`, or `~/.cargo`.
pub fn cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/root/.cargo"))
}

/// Runs `c`, echoing it, and fails if it fails.
pub fn run(c: &mut Command) -> Result<()> {
    eprintln!("xtask: $ {}", show(c));
    let status = c
        .status()
        .with_context(|| format!("cannot start {}", show(c)))?;
    if !status.success() {
        bail!("`{}` failed ({status})", show(c));
    }
    Ok(())
}

/// Runs `c` quietly and returns its stdout, or `None` if it cannot run or fails.
pub fn output(c: &mut Command) -> Option<String> {
    let out = c.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Human-readable form of a command.
pub fn show(c: &Command) -> String {
    let mut s = c.get_program().to_string_lossy().into_owned();
    for a in c.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// True when running as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Replaces this process's work with `bin args`, through sudo when not root.
pub fn exec_privileged(bin: &Path, args: &[String]) -> Result<()> {
    let mut c = if is_root() {
        Command::new(bin)
    } else {
        eprintln!("xtask: netdrop needs root; running it with sudo");
        let mut c = Command::new("sudo");
        c.arg(bin);
        c
    };
    c.args(args);
    eprintln!("xtask: $ {}", show(&c));
    let status = c
        .status()
        .with_context(|| format!("cannot start {}", show(&c)))?;
    std::process::exit(status.code().unwrap_or(1));
}
