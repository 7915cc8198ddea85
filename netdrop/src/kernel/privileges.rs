//! Can this process load and attach tracing programs?

use crate::error::Error;

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Fails with a plain explanation unless we are root or hold CAP_BPF and CAP_PERFMON
/// (or CAP_SYS_ADMIN).
pub fn check() -> Result<(), Error> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let caps = effective_caps(&status);
    if has(caps, CAP_SYS_ADMIN) || (has(caps, CAP_BPF) && has(caps, CAP_PERFMON)) {
        Ok(())
    } else {
        Err(Error::NotPrivileged)
    }
}

fn effective_caps(status: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0)
}

fn has(caps: u64, cap: u32) -> bool {
    caps & (1 << cap) != 0
}

/// Raises RLIMIT_MEMLOCK for kernels that still charge BPF memory to it (before 5.11).
/// Newer kernels account BPF memory to the memory cgroup, and a refusal here is harmless,
/// so it is only logged.
pub fn raise_memlock() {
    let rlim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: valid pointer to an initialised struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim) } != 0 {
        tracing::debug!(
            "could not raise RLIMIT_MEMLOCK ({}); fine on kernels that account BPF memory by memcg",
            std::io::Error::last_os_error()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_effective_capabilities() {
        let root = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        assert!(has(effective_caps(root), CAP_SYS_ADMIN));
        let bpf_only = format!("CapEff:\t{:016x}\n", 1u64 << CAP_BPF | 1u64 << CAP_PERFMON);
        let caps = effective_caps(&bpf_only);
        assert!(has(caps, CAP_BPF) && has(caps, CAP_PERFMON) && !has(caps, CAP_SYS_ADMIN));
        assert_eq!(effective_caps("CapEff:\t0000000000000000\n"), 0);
    }
}
