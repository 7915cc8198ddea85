use which::which;

/// Building this crate needs the `bpf-linker` binary, which cargo does not know about.
/// Rebuild when it changes; when it is missing, rerun once it appears (`cargo xtask setup`
/// installs it into `$CARGO_HOME/bin`).
fn main() {
    bpf_target_arch();
    match which("bpf-linker") {
        Ok(path) => println!("cargo:rerun-if-changed={}", path.display()),
        Err(_) => {
            let cargo_home = std::env::var("CARGO_HOME")
                .or_else(|_| std::env::var("HOME").map(|h| format!("{h}/.cargo")))
                .unwrap_or_else(|_| "/root/.cargo".to_owned());
            println!("cargo:rerun-if-changed={cargo_home}/bin");
            println!("cargo:rerun-if-env-changed=PATH");
            println!(
                "cargo:warning=bpf-linker is not on PATH: run `cargo xtask setup` to install it"
            );
        }
    }
}

/// `--cfg bpf_target_arch="..."` for code that reads registers (kprobe contexts), as
/// aya-ebpf's own build script sets it for itself: the host's architecture unless the
/// build already passes one.
fn bpf_target_arch() {
    println!(
        "cargo::rustc-check-cfg=cfg(bpf_target_arch, values(\"x86_64\", \"aarch64\", \"arm\", \"riscv64\", \"powerpc64\", \"s390x\", \"mips\", \"loongarch64\"))"
    );
    println!("cargo:rerun-if-env-changed=CARGO_CFG_BPF_TARGET_ARCH");
    if std::env::var_os("CARGO_CFG_BPF_TARGET_ARCH").is_some() {
        return;
    }
    let host = std::env::var("HOST").unwrap_or_default();
    if let Some(arch) = host.split('-').next().filter(|a| !a.is_empty()) {
        println!("cargo:rustc-cfg=bpf_target_arch=\"{arch}\"");
    }
}
