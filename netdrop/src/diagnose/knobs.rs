//! Settings read live: sysctls (per network namespace where the kernel keeps them so) and
//! the state of objects (`ip route get`, qdisc statistics), each from a thread that
//! entered the namespace, so `/proc/sys/net` and commands it starts see that namespace.

use std::{
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    process::Command,
};

/// Runs `f` on a thread that entered the network namespace at `ns` (`None`: this one).
pub fn in_netns<T: Send>(ns: Option<&Path>, f: impl FnOnce() -> T + Send) -> std::io::Result<T> {
    let Some(ns) = ns else {
        return Ok(f());
    };
    let file = std::fs::File::open(ns)?;
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: setns affects only this thread, which ends right after.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(f())
        })
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("namespace thread panicked")))
    })
}

/// The path of a sysctl under `root` (normally `/proc/sys`): `net.core.somaxconn` is
/// `net/core/somaxconn`. Interface names may contain dots, which sysctl writes as `/`.
pub fn sysctl_path(root: &Path, name: &str) -> PathBuf {
    // net.ipv4.conf.<dev>.rp_filter: the device is everything between the fixed parts.
    for prefix in [
        "net.ipv4.conf.",
        "net.ipv6.conf.",
        "net.ipv4.neigh.",
        "net.ipv6.neigh.",
    ] {
        if let Some(rest) = name.strip_prefix(prefix)
            && let Some((dev, key)) = rest.rsplit_once('.')
        {
            return root
                .join(prefix.trim_end_matches('.').replace('.', "/"))
                .join(dev)
                .join(key);
        }
    }
    root.join(name.replace('.', "/"))
}

/// Reads `names` under `root`; settings that do not exist (in this namespace, or on this
/// kernel) are left out. Values are trimmed, tabs between fields become spaces.
pub fn read_sysctls(root: &Path, names: &[String]) -> Vec<(String, String)> {
    names
        .iter()
        .filter_map(|n| {
            let v = std::fs::read_to_string(sysctl_path(root, n)).ok()?;
            Some((
                n.clone(),
                v.split_whitespace().collect::<Vec<_>>().join(" "),
            ))
        })
        .collect()
}

/// `ip route get DST`, as the kernel answers it in this thread's namespace.
pub fn route_get(dst: &str) -> String {
    run("ip", &["route", "get", dst])
}

/// `ip -o link show dev DEV` in this thread's namespace.
pub fn link_show(dev: &str) -> String {
    run("ip", &["-o", "link", "show", "dev", dev])
}

/// The `mtu N` of an `ip -o link show` line.
pub fn parse_mtu(line: &str) -> Option<u32> {
    let mut words = line.split_whitespace();
    words.find(|w| *w == "mtu")?;
    words.next()?.parse().ok()
}

/// Queueing disciplines of `dev` with their statistics, from `tc -s -j qdisc show dev DEV`:
/// (kind, limit, drops).
pub fn qdiscs(dev: &str) -> Vec<(String, Option<u64>, u64)> {
    let out = run("tc", &["-s", "-j", "qdisc", "show", "dev", dev]);
    parse_tc_json(&out)
}

/// Parses the JSON of `tc -s -j qdisc show`.
pub fn parse_tc_json(text: &str) -> Vec<(String, Option<u64>, u64)> {
    let Ok(serde_json::Value::Array(items)) = serde_json::from_str::<serde_json::Value>(text)
    else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|q| {
            let kind = q.get("kind")?.as_str()?.to_owned();
            let limit = q
                .get("options")
                .and_then(|o| o.get("limit"))
                .and_then(serde_json::Value::as_u64);
            let drops = q
                .get("drops")
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0);
            Some((kind, limit, drops))
        })
        .collect()
}

/// Runs a command, returning its output on one line, or why it failed.
fn run(prog: &str, args: &[&str]) -> String {
    match Command::new(prog).args(args).output() {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_owned(),
        Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_owned(),
        Err(e) => format!("cannot run {prog}: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysctl_names_map_to_paths_devices_with_dots_included() {
        let r = Path::new("/proc/sys");
        assert_eq!(
            sysctl_path(r, "net.core.somaxconn"),
            Path::new("/proc/sys/net/core/somaxconn")
        );
        assert_eq!(
            sysctl_path(r, "net.ipv4.conf.eth0.100.rp_filter"),
            Path::new("/proc/sys/net/ipv4/conf/eth0.100/rp_filter")
        );
        assert_eq!(
            sysctl_path(r, "net.ipv4.neigh.default.gc_thresh3"),
            Path::new("/proc/sys/net/ipv4/neigh/default/gc_thresh3")
        );
    }

    #[test]
    fn sysctls_are_read_and_missing_ones_left_out() {
        let root = crate::testdata::path("sysctl");
        let got = read_sysctls(
            &root,
            &[
                "net.core.somaxconn".into(),
                "net.ipv4.tcp_mem".into(),
                "net.nope".into(),
            ],
        );
        assert_eq!(
            got,
            vec![
                ("net.core.somaxconn".into(), "4096".into()),
                ("net.ipv4.tcp_mem".into(), "94371 125830 188742".into()),
            ]
        );
    }

    #[test]
    fn mtu_from_ip_link() {
        let line = "2: eth0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1450 qdisc fq_codel state UP mode DEFAULT";
        assert_eq!(parse_mtu(line), Some(1450));
        assert_eq!(parse_mtu("Device \"x\" does not exist."), None);
    }

    #[test]
    fn tc_statistics() {
        let json = r#"[{"kind":"pfifo","handle":"8001:","root":true,"options":{"limit":5},"bytes":1000,"packets":10,"drops":37,"overlimits":0},
                      {"kind":"noqueue","handle":"0:","options":{},"drops":0}]"#;
        assert_eq!(
            parse_tc_json(json),
            vec![("pfifo".into(), Some(5), 37), ("noqueue".into(), None, 0)]
        );
        assert!(parse_tc_json("garbage").is_empty());
    }
}
