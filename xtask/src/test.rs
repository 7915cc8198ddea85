//! `cargo xtask test`: unit tests, then the privileged integration tests.

use anyhow::{Result, bail};

use crate::{cmd, setup};

pub fn run(unit_only: bool) -> Result<()> {
    setup::toolchain()?;
    // Default members: every crate but the eBPF one, which only builds for the bpf target.
    cmd::run(cmd::cargo().args(["test"]))?;
    if unit_only {
        return Ok(());
    }
    if !cmd::is_root() {
        bail!(
            "the integration tests load eBPF programs and create network namespaces, so they need root: \
             run `sudo -E cargo xtask test`, or `cargo xtask test --unit` for the unit tests alone"
        );
    }
    setup::test_packages()?;
    let bin = crate::build(false)?;
    // Serially: the tests share the kernel (hooks, namespaces, nftables).
    let mut c = cmd::cargo();
    c.args([
        "test",
        "--package",
        "netdrop-tests",
        "--features",
        "privileged",
        "--",
        "--test-threads=1",
    ])
    .env("NETDROP_BIN", &bin);
    cmd::run(&mut c)
}
