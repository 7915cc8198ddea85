//! Bad input and missing privileges: one plain sentence on stderr, a non-zero exit, no
//! panic. Compiled with `--features privileged`, since dropping root needs root.
#![cfg(feature = "privileged")]

use std::process::Command;

use netdrop_tests::{netdrop_bin, run};

/// Asserts a failed run whose stderr is one line containing `needle`.
fn fails_with(args: &[&str], needle: &str) {
    let out = run(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} succeeded");
    assert!(
        stderr.contains(needle),
        "{args:?}: expected `{needle}` in:\n{stderr}"
    );
    assert!(
        !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
        "{stderr}"
    );
    let lines: Vec<_> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    // clap adds a usage hint line and a --help line; our own errors are one line.
    assert!(lines.len() <= 4, "{args:?}: too chatty:\n{stderr}");
    assert!(out.stdout.is_empty(), "{args:?} printed to stdout");
}

#[test]
fn unknown_reason_names_the_closest_ones() {
    fails_with(
        &["watch", "--reason", "NO_SOKET"],
        "unknown drop reason `NO_SOKET` (did you mean NO_SOCKET",
    );
    fails_with(&["watch", "--exclude-reason", "rcvbuf"], "SOCKET_RCVBUFF");
}

#[test]
fn malformed_filters() {
    fails_with(
        &["watch", "--host", "10.0.0.300"],
        "not an IPv4 or IPv6 address",
    );
    fails_with(
        &["watch", "--src", "10.0.0.0/40"],
        "prefix length in `10.0.0.0/40` must be 0 to 32",
    );
    fails_with(&["watch", "--port", "70000"], "70000");
    fails_with(&["watch", "--proto", "quic"], "unknown protocol `quic`");
    fails_with(
        &["watch", "--iface", "an-interface-name-too-long"],
        "not a valid interface name",
    );
    fails_with(
        &["watch", "--netns", "no-such-namespace"],
        "no network namespace `no-such-namespace`",
    );
    fails_with(&["watch", "--ring-size", "3M"], "power of two");
    fails_with(
        &["watch", "--proto", "icmp", "--port", "53"],
        "--port only applies to TCP, UDP, UDP-Lite, SCTP and DCCP",
    );
    fails_with(
        &[
            "watch",
            "--reason",
            "NO_SOCKET",
            "--exclude-reason",
            "NO_SOCKET",
        ],
        "nothing would match",
    );
}

#[test]
fn numbers_out_of_range() {
    // Each once panicked or overflowed (`top --interval 0.0000000001`: a zero timer period).
    for cmd in ["top", "stats"] {
        for bad in ["0.0000000001", "0", "-1", "NaN", "inf", "1e300"] {
            fails_with(&[cmd, "--interval", bad], bad);
        }
        fails_with(&[cmd, "--count", "0"], "is not a count");
        fails_with(&[cmd, "--max-flows", "0"], "--max-flows");
    }
    fails_with(&["watch", "--duration", "0.00001ms"], "out of range");
    fails_with(&["watch", "--duration", "99999999999999h"], "out of range");
    fails_with(&["watch", "--count", "-3"], "-3");
    fails_with(&["exporter", "--max-flows", "99999999"], "--max-flows");
}

#[test]
fn bad_btf_files() {
    fails_with(
        &["watch", "--btf", "/nonexistent/vmlinux"],
        "cannot use the BTF in /nonexistent/vmlinux",
    );
    fails_with(&["watch", "--btf", "/etc/hostname"], "not BTF data");
}

#[test]
fn not_root() {
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
        ])
        .arg(netdrop_bin())
        .arg("watch")
        .output()
        .expect("setpriv (util-linux)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr.trim(),
        "netdrop: netdrop needs root (or the CAP_BPF and CAP_PERFMON capabilities) to load its kernel programs: run it with sudo"
    );
}

#[test]
fn reasons_lists_this_kernels_names() {
    let out = run(&["reasons", "--json"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    for n in ["NO_SOCKET", "NETFILTER_DROP", "SOCKET_RCVBUFF", "TCP_CSUM"] {
        assert!(names.contains(&n), "{n} missing from {names:?}");
    }
    assert!(!names.contains(&"MAX"));
}

/// Runs `netdrop ARGS` in a private mount namespace after `setup` (shell), so mounts made
/// or removed there do not touch the host.
fn in_mount_ns(setup: &str, args: &str) -> std::process::Output {
    let script = format!("{setup}; exec {} {args}", netdrop_bin().display());
    Command::new("unshare")
        .args(["--mount", "sh", "-c", &script])
        .output()
        .expect("unshare (util-linux)")
}

#[test]
fn tracefs_is_mounted_when_missing() {
    let out = in_mount_ns(
        "umount /sys/kernel/debug/tracing 2>/dev/null; umount /sys/kernel/tracing 2>/dev/null; \
         test ! -e /sys/kernel/tracing/events",
        "-v watch --attach tracepoint --duration 1",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("mounted tracefs at /sys/kernel/tracing"),
        "{stderr}"
    );
    assert!(
        stderr.contains("attached classic tracepoint skb:kfree_skb"),
        "{stderr}"
    );
}

#[test]
fn missing_kernel_btf() {
    let out = in_mount_ns("mount -t tmpfs none /sys/kernel/btf", "watch");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr.trim(),
        "netdrop: this kernel exposes no BTF type information at /sys/kernel/btf/vmlinux (it needs \
         CONFIG_DEBUG_INFO_BTF=y); give netdrop a BTF file for this exact kernel with --btf FILE"
    );
}

/// This kernel's BTF with its first pointer type turned into kind 31, which no reader
/// knows (every kind's trailing data has a length of its own, so nothing after it can be
/// walked). Returns the file and the id of that type.
fn btf_with_unknown_kind() -> (std::path::PathBuf, u32) {
    let mut btf = std::fs::read("/sys/kernel/btf/vmlinux").expect("kernel BTF");
    let u32_at = |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
    let hdr_len = u32_at(&btf, 4) as usize;
    let start = hdr_len + u32_at(&btf, 8) as usize;
    let end = start + u32_at(&btf, 12) as usize;
    let (mut pos, mut id) = (start, 1);
    while pos < end {
        let info = u32_at(&btf, pos + 4);
        let (kind, vlen) = ((info >> 24) & 0x1f, (info & 0xffff) as usize);
        if kind == 2 {
            btf[pos + 4..pos + 8]
                .copy_from_slice(&((info & !(0x1f << 24)) | 31 << 24).to_le_bytes());
            let path =
                std::env::temp_dir().join(format!("netdrop-kind31-{}.btf", std::process::id()));
            std::fs::write(&path, &btf).unwrap();
            return (path, id);
        }
        // BTF_KIND_*: INT, VAR, DECL_TAG 4; ARRAY 12; STRUCT, UNION, DATASEC, ENUM64 12 per
        // entry; ENUM, FUNC_PROTO 8 per entry; the rest nothing.
        pos += 12
            + match kind {
                1 | 14 | 17 => 4,
                3 => 12,
                4 | 5 | 15 | 19 => 12 * vlen,
                6 | 13 => 8 * vlen,
                _ => 0,
            };
        id += 1;
    }
    panic!("no pointer type in the kernel BTF");
}

#[test]
fn an_unknown_btf_kind_fails_only_what_needs_the_types_after_it() {
    let (path, id) = btf_with_unknown_kind();
    /// Removes the file however the test ends.
    struct Remove(std::path::PathBuf);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    let _remove = Remove(path.clone());
    let file = path.to_str().unwrap();
    fails_with(
        &["watch", "--btf", file],
        &format!(
            "cannot use the BTF in {file}: BTF has type kind 31 at type id {id}, which netdrop \
             does not know, so the types after it could not be read and"
        ),
    );
    // Reason names need no struct: they come from the tracepoint format file instead.
    let out = run(&["reasons", "--btf", file]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("NO_SOCKET"));
}
