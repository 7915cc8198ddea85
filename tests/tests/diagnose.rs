//! `netdrop diagnose` on real faults, each made on purpose inside a namespace of its own:
//! the right class, the right object (port, interface, destination, qdisc), the right
//! setting. Needs root: compiled only with `--features privileged`.
#![cfg(feature = "privileged")]

use std::{
    net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
    os::fd::AsRawFd,
    thread,
};

use netdrop_tests::{NetnsPair, ip, run_cmd, udp_send};
use serde_json::Value;

/// `diagnose --json ARGS` around `traffic`; the report.
fn diagnose(args: &[&str], traffic: impl FnOnce()) -> Value {
    netdrop_tests::diagnose_report(args, traffic).unwrap_or_else(|e| panic!("{e}"))
}

/// The finding of class `id`, or a failure listing the findings there are.
fn finding<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["class"] == id)
        .unwrap_or_else(|| {
            let classes: Vec<_> = report["findings"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["class"].clone())
                .collect();
            panic!("no `{id}` finding; found {classes:?} in {report:#}")
        })
}

/// The object of `kind` named `name` in finding `f`.
fn object<'a>(f: &'a Value, kind: &str, name: &str) -> &'a Value {
    f["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["kind"] == kind && o["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} `{name}` in {:#}", f["objects"]))
}

/// The value of setting `name` in finding `f`, as read in namespace `ns` (`None`: host-wide).
fn knob<'a>(f: &'a Value, name: &str, ns: Option<&str>) -> &'a str {
    f["knobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == name && k["netns"]["name"].as_str() == ns)
        .and_then(|k| k["value"].as_str())
        .unwrap_or_else(|| panic!("no setting {name} ({ns:?}) in {:#}", f["knobs"]))
}

/// A TCP connect that does not wait for the handshake.
fn connect_nowait(dst: SocketAddr) -> i32 {
    // SAFETY: a fresh non-blocking socket we own; EINPROGRESS is expected.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_NONBLOCK, 0);
        assert!(fd >= 0);
        let (sa, len) = netdrop_tests::sockaddr(dst);
        libc::connect(fd, (&raw const sa).cast(), len);
        fd
    }
}

#[test]
fn several_faults_at_once_give_several_findings() {
    let ns = NetnsPair::new("dg1", 241);
    let at = |port: u16| -> SocketAddr { format!("{}:{port}", ns.ns_addr).parse().unwrap() };
    // A firewall rule, a socket whose buffer is full, a listener whose queue is full, and a
    // port nobody listens on.
    ns.nft("add table inet ndd");
    ns.nft("add chain inet ndd input { type filter hook input priority 0 ; }");
    ns.nft("add rule inet ndd input udp dport 47204 drop");
    let (rcv, listener) = ns.inside(|| {
        let s = UdpSocket::bind(at(47202)).unwrap();
        netdrop_tests::set_rcvbuf(&s, 1);
        let l = TcpListener::bind(at(47203)).unwrap();
        // SAFETY: listen(2) on a listening socket we own.
        assert_eq!(unsafe { libc::listen(l.as_raw_fd(), 1) }, 0);
        (s, l)
    });
    let from = format!("{}:0", ns.host_addr);
    let mut fds = Vec::new();
    let report = diagnose(&["--netns", &ns.name], || {
        for _ in 0..5 {
            udp_send(&from, at(47201));
        }
        let s = UdpSocket::bind(&from).unwrap();
        for _ in 0..64 {
            s.send_to(&[0u8; 200], at(47202)).unwrap();
        }
        for _ in 0..12 {
            fds.push(connect_nowait(at(47203)));
        }
        for _ in 0..3 {
            udp_send(&from, at(47204));
        }
    });
    for fd in fds {
        // SAFETY: closing descriptors we own.
        unsafe { libc::close(fd) };
    }
    drop((rcv, listener));
    let name = ns.name.as_str();

    let f = finding(&report, "no_socket");
    assert_eq!(
        object(f, "port", &format!("udp {}:47201", ns.ns_addr))["drops"],
        5
    );
    assert_eq!(f["basis"], "measured");

    let f = finding(&report, "udp_rcvbuf");
    assert_eq!(f["severity"], "critical");
    let port = object(f, "port", &format!("udp {}:47202", ns.ns_addr));
    assert!(port["drops"].as_u64().unwrap() >= 32, "{port}");
    assert_eq!(port["netns"]["name"], name);
    // rmem_max: per namespace on recent kernels, host-wide on older ones.
    assert!(
        f["knobs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["name"] == "net.core.rmem_max" && k["value"].as_str().is_some()),
        "{f:#}"
    );

    let f = finding(&report, "listen_queue");
    assert!(f["drops"].as_u64().unwrap() > 0, "{f:#}");
    assert!(
        f["evidence"].as_array().unwrap().iter().any(|e| e
            .as_str()
            .unwrap()
            .contains("TcpExt.ListenOverflows")
            && e.as_str().unwrap().contains(name)),
        "{f:#}"
    );
    // somaxconn is per namespace: read in the listener's.
    knob(f, "net.core.somaxconn", Some(name));
    // The listener, named through sock_diag while its queue was full.
    let l = object(f, "listener", &format!("{}:47203", ns.ns_addr));
    assert_eq!(l["netns"]["name"], name);
    let detail = l["detail"].as_str().unwrap();
    assert!(detail.starts_with("accept queue 2/1, process "), "{l}");
    assert!(
        detail.ends_with(&format!("[{}]", std::process::id())),
        "{l}"
    );
    assert!(
        f["evidence"].as_array().unwrap().iter().any(|e| e
            .as_str()
            .unwrap()
            .contains("the limit 1 is the application's listen() backlog")),
        "{f:#}"
    );

    let f = finding(&report, "firewall_rule");
    assert_eq!(f["drops"], 3, "{f:#}");
    assert_eq!(object(f, "hook", "ipv4 input")["drops"], 3);
    assert_eq!(
        object(f, "port", &format!("udp {}:47204", ns.ns_addr))["drops"],
        3
    );
    // The rule, found by matching the dropped packets against the namespace's ruleset.
    let rule = f["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["kind"] == "rule")
        .unwrap_or_else(|| panic!("no rule named: {f:#}"));
    assert!(
        rule["name"]
            .as_str()
            .unwrap()
            .starts_with("inet ndd input (handle "),
        "{rule}"
    );
    assert_eq!(rule["netns"]["name"], name);
    assert!(
        rule["detail"].as_str().unwrap().contains("udp dport 47204"),
        "{rule}"
    );
    assert_eq!(f["basis"], "inferred");

    // Worst first: the critical findings lead.
    let sev: Vec<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["severity"].as_str().unwrap())
        .collect();
    let rank = |s: &str| ["info", "warning", "critical"].iter().position(|x| *x == s);
    assert!(sev.windows(2).all(|w| rank(w[0]) >= rank(w[1])), "{sev:?}");
    assert_eq!(report["schema"], 1);

    // The saved document diagnoses the same offline, without root or a kernel.
    let saved = std::env::temp_dir().join(format!("netdrop-diagnose-{}.json", std::process::id()));
    std::fs::write(&saved, report.to_string()).unwrap();
    let out = std::process::Command::new(netdrop_tests::netdrop_bin())
        .args(["diagnose", "--json", "--from"])
        .arg(&saved)
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&saved);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let again: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(again["findings"], report["findings"]);
    assert_eq!(again["time"], report["time"]);
}

#[test]
fn from_a_file_that_is_no_diagnosis_is_one_sentence() {
    let out = netdrop_tests::run(&["diagnose", "--from", "/etc/hostname"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("netdrop: /etc/hostname is not a `netdrop diagnose --json` document"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn rp_filter_names_the_interface_and_its_effective_setting() {
    let ns = NetnsPair::new("dg2", 242);
    ns.sysctl("net.ipv4.conf.all.rp_filter", "0");
    ns.sysctl(&format!("net.ipv4.conf.{}.rp_filter", ns.ns_if), "1");
    ns.route_back_elsewhere();
    let dst: SocketAddr = format!("{}:47210", ns.ns_addr).parse().unwrap();
    let report = diagnose(&["--netns", &ns.name], || {
        for _ in 0..4 {
            udp_send("192.0.2.1:0", dst);
        }
    });
    let f = finding(&report, "rp_filter");
    assert_eq!(f["drops"], 4, "{f:#}");
    let dev = object(f, "device", &ns.ns_if);
    assert_eq!(dev["drops"], 4);
    assert!(
        dev["detail"]
            .as_str()
            .unwrap()
            .starts_with("effective rp_filter 1 (strict) = max(conf.all 0, conf.DEV 1)"),
        "{dev}"
    );
    assert_eq!(
        knob(
            f,
            &format!("net.ipv4.conf.{}.rp_filter", ns.ns_if),
            Some(&ns.name)
        ),
        "1"
    );
    assert_eq!(knob(f, "net.ipv4.conf.all.rp_filter", Some(&ns.name)), "0");
}

#[test]
fn no_route_shows_what_the_kernel_answers() {
    let ns = NetnsPair::new("dg3", 243);
    ns.sysctl("net.ipv4.ip_forward", "1");
    ip(&["route", "replace", "203.0.113.0/24", "via", &ns.ns_addr]);
    let dst: SocketAddr = "203.0.113.5:47220".parse().unwrap();
    let report = diagnose(&["--netns", &ns.name], || {
        udp_send(&format!("{}:0", ns.host_addr), dst);
    });
    ip(&["route", "del", "203.0.113.0/24"]);
    let f = finding(&report, "no_route");
    let d = object(f, "destination", "203.0.113.5");
    assert_eq!(d["netns"]["name"], ns.name.as_str());
    let answer = d["detail"].as_str().unwrap();
    assert!(answer.contains("unreachable"), "{answer}");
    assert_eq!(knob(f, "net.ipv4.ip_forward", Some(&ns.name)), "1");
}

#[test]
fn fragments_beyond_the_reassembly_memory() {
    let ns = NetnsPair::new("dg4", 244);
    ns.sysctl("net.ipv4.ipfrag_low_thresh", "0");
    ns.sysctl("net.ipv4.ipfrag_high_thresh", "1");
    let dst: SocketAddr = format!("{}:47230", ns.ns_addr).parse().unwrap();
    let report = diagnose(&["--netns", &ns.name], || {
        let s = UdpSocket::bind(format!("{}:0", ns.host_addr)).unwrap();
        for _ in 0..3 {
            // Larger than the veth's MTU: sent as fragments.
            s.send_to(&[7u8; 4000], dst).unwrap();
        }
    });
    let f = finding(&report, "fragments");
    assert!(f["drops"].as_u64().unwrap() >= 3, "{f:#}");
    assert_eq!(knob(f, "net.ipv4.ipfrag_high_thresh", Some(&ns.name)), "1");
    assert!(
        f["evidence"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e.as_str().unwrap().contains("Ip.ReasmFails")),
        "{f:#}"
    );
}

#[test]
fn time_wait_overflow_in_a_namespace() {
    let ns = NetnsPair::new("dg5", 245);
    ns.sysctl("net.ipv4.tcp_max_tw_buckets", "0");
    let at: SocketAddr = format!("{}:47240", ns.ns_addr).parse().unwrap();
    let listener = ns.inside(|| TcpListener::bind(at).unwrap());
    let report = diagnose(&["--netns", &ns.name], || {
        let server = thread::spawn(move || {
            // The server closes first: its side would enter TIME_WAIT.
            for _ in 0..5 {
                let (c, _) = listener.accept().unwrap();
                drop(c);
            }
        });
        for _ in 0..5 {
            let mut c = TcpStream::connect(at).unwrap();
            let mut buf = [0u8; 1];
            let _ = std::io::Read::read(&mut c, &mut buf);
        }
        server.join().unwrap();
    });
    let f = finding(&report, "timewait_overflow");
    assert!(f["drops"].as_u64().unwrap() >= 5, "{f:#}");
    assert_eq!(knob(f, "net.ipv4.tcp_max_tw_buckets", Some(&ns.name)), "0");
    assert!(
        f["caveats"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c.as_str().unwrap().contains("tcp_tw_recycle")),
        "{f:#}"
    );
}

#[test]
fn a_tiny_qdisc_limit_is_named() {
    let ns = NetnsPair::new("dg6", 246);
    // A slow shaper whose queue holds two packets.
    let tc = |args: &[&str]| {
        let mut full = vec![
            "netns", "exec", &ns.name, "tc", "qdisc", "add", "dev", &ns.ns_if,
        ];
        full.extend_from_slice(args);
        run_cmd("ip", &full);
    };
    tc(&[
        "root", "handle", "1:", "tbf", "rate", "8kbit", "burst", "1600", "latency", "1s",
    ]);
    tc(&["parent", "1:1", "handle", "10:", "pfifo", "limit", "2"]);
    let dst: SocketAddr = format!("{}:47250", ns.host_addr).parse().unwrap();
    let report = diagnose(&["--netns", &ns.name], || {
        ns.inside(|| {
            let s = UdpSocket::bind(format!("{}:0", ns.ns_addr)).unwrap();
            for _ in 0..40 {
                let _ = s.send_to(&[1u8; 1000], dst);
            }
        });
    });
    let f = finding(&report, "qdisc");
    assert!(f["drops"].as_u64().unwrap() >= 20, "{f:#}");
    let q = object(f, "qdisc", &format!("pfifo on {}", ns.ns_if));
    assert_eq!(q["netns"]["name"], ns.name.as_str());
    assert!(q["drops"].as_u64().unwrap() >= 20, "{q}");
    assert_eq!(q["detail"], "limit 2 packets");
}

#[test]
fn nothing_wrong_is_said_plainly() {
    let ns = NetnsPair::new("dg7", 247);
    let out = netdrop_tests::run(&["diagnose", "--netns", &ns.name, "--duration", "1s"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    // An idle namespace may still drop a router solicitation or two (NOT_SPECIFIED):
    // listed under other drops, not a finding.
    assert!(text.contains(" drops, 0 findings"), "{text}");
    assert!(text.contains("Nothing wrong found"), "{text}");
}

#[test]
fn a_full_syn_queue_without_syncookies_is_not_an_accept_queue() {
    let ns = NetnsPair::new("dg8", 248);
    ns.sysctl("net.ipv4.tcp_syncookies", "0");
    let at: SocketAddr = format!("{}:47260", ns.ns_addr).parse().unwrap();
    let listener = ns.inside(|| {
        let l = TcpListener::bind(at).unwrap();
        // SAFETY: listen(2) on a listening socket we own.
        assert_eq!(unsafe { libc::listen(l.as_raw_fd(), 4) }, 0);
        l
    });
    let dst: std::net::Ipv4Addr = ns.ns_addr.parse().unwrap();
    // Sources on the link that nobody holds: the SYN-ACKs go unanswered, the handshakes
    // stay half-open and fill the SYN queue.
    let report = diagnose(&["--netns", &ns.name], || {
        for i in 0..20u16 {
            netdrop_tests::raw_syn(
                std::net::Ipv4Addr::new(10, 248, 0, 100 + i as u8),
                40000 + i,
                dst,
                47260,
            );
        }
    });
    drop(listener);
    let f = finding(&report, "syn_flood");
    assert!(
        f["title"].as_str().unwrap().contains("syncookies were off"),
        "{f:#}"
    );
    assert!(f["drops"].as_u64().unwrap() >= 10, "{f:#}");
    assert_eq!(knob(f, "net.ipv4.tcp_syncookies", Some(&ns.name)), "0");
    assert!(
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["class"] != "listen_queue"),
        "an empty accept queue is not the problem: {report:#}"
    );
}

#[test]
fn a_protocol_nobody_handles_is_named() {
    let ns = NetnsPair::new("dg9", 249);
    let dst: std::net::Ipv4Addr = ns.ns_addr.parse().unwrap();
    let report = diagnose(&["--netns", &ns.name], || {
        // IP protocol 253 (reserved for experiments): no handler in the namespace.
        // SAFETY: a raw socket we own and close; the buffer outlives the call.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_RAW, 253);
            assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
            let (sa, len) = netdrop_tests::sockaddr(SocketAddr::new(dst.into(), 0));
            for _ in 0..3 {
                let n = libc::sendto(
                    fd,
                    b"netdrop".as_ptr().cast(),
                    7,
                    0,
                    (&raw const sa).cast(),
                    len,
                );
                assert_eq!(n, 7, "sendto: {}", std::io::Error::last_os_error());
            }
            libc::close(fd);
        }
    });
    let f = finding(&report, "no_protocol");
    assert_eq!(f["drops"], 3, "{f:#}");
    assert!(
        f["evidence"].as_array().unwrap().iter().any(|e| e
            .as_str()
            .unwrap()
            .starts_with("drop reason IP_NOPROTO: 3 drops")),
        "{f:#}"
    );
}

#[test]
fn a_flood_is_counted_exactly_and_sampled() {
    // 20,000 datagrams to a closed port while diagnose samples drops under a budget: the
    // counts are exact, and the samples (16 per reason at most) name the flow.
    const FLOOD: u64 = 20_000;
    let ns = NetnsPair::new("dg10", 250);
    let dst: SocketAddr = format!("{}:47270", ns.ns_addr).parse().unwrap();
    let report = diagnose(&["--netns", &ns.name], || {
        let sock = std::net::UdpSocket::bind(format!("{}:0", ns.host_addr)).unwrap();
        for _ in 0..FLOOD {
            sock.send_to(b"x", dst).unwrap();
        }
    });
    let f = finding(&report, "no_socket");
    assert_eq!(f["drops"], FLOOD, "{f:#}");
    let flows = report["evidence"]["flows"].as_array().unwrap();
    assert!(
        flows
            .iter()
            .any(|fl| fl["count"] == FLOOD && fl["packet"]["dport"] == 47270),
        "{flows:#?}"
    );
    let samples: Vec<&Value> = report["evidence"]["samples"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["reason"]["name"] == "NO_SOCKET")
        .collect();
    assert!(
        !samples.is_empty() && samples.len() <= 16,
        "{} NO_SOCKET samples",
        samples.len()
    );
    assert!(samples.iter().all(|d| d["packet"]["dport"] == 47270));
}
