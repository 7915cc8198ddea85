use which::which;

/// Building this crate needs the `bpf-linker` binary, which cargo does not know about.
/// Rebuild when it changes; when it is missing, rerun once it appears (`cargo xtask setup`
/// installs it into `$CARGO_HOME/bin`).
fn main() {
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
