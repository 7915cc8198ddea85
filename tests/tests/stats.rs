//! `netdrop stats` against real drops: exact counts, groupings, bounds. Needs root:
//! compiled only with `--features privileged` (`cargo xtask test`).
#![cfg(feature = "privileged")]

use std::{net::SocketAddr, thread, time::Duration};

use netdrop_tests::{NetnsPair, Report, Watch, closed_udp_port, snmp, udp_send, udp_to_loopback};
use serde_json::Value;

fn stats(args: &[&str]) -> Watch {
    let mut full = vec!["stats", "--json"];
    full.extend_from_slice(args);
    Watch::spawn(&full, "netdrop: counting drops")
}

/// The last report (each stats line is a report).
fn last(r: &Report) -> &Value {
    r.lines.last().expect("at least one report")
}

#[test]
fn counts_are_exact_while_the_event_stream_overflows() {
    // N datagrams to a closed port in a fresh namespace, whose Udp NoPorts counts only ours.
    const N: u64 = 20_000;
    let ns = NetnsPair::new("x1", 221);
    let port = "47100";
    let before = ns.inside(|| snmp("Udp", "NoPorts"));
    let s = stats(&["--interval", "1", "--netns", &ns.name, "--port", port]);
    // A watch with a 4 KiB ring, stopped, cannot keep up: its events overflow.
    // Every event streamed (no rate limit), so the ring must overflow.
    let w = Watch::start(&[
        "--ring-size",
        "4K",
        "--rate-limit",
        "0",
        "--budget",
        "0",
        "--netns",
        &ns.name,
        "--port",
        port,
    ]);
    w.signal(libc::SIGSTOP);
    let dst: SocketAddr = format!("{}:{port}", ns.ns_addr).parse().unwrap();
    let sock = std::net::UdpSocket::bind(format!("{}:0", ns.host_addr)).unwrap();
    for _ in 0..N {
        sock.send_to(b"x", dst).unwrap();
    }
    w.signal(libc::SIGCONT);
    // Two more reports, so one covers the end of the burst.
    thread::sleep(Duration::from_millis(2500));
    let after = ns.inside(|| snmp("Udp", "NoPorts"));
    let wr = w.stop();
    let sr = s.stop();
    assert!(sr.status.success(), "{}", sr.stderr);

    assert_eq!(after - before, N, "the kernel's own Udp NoPorts delta");
    let report = last(&sr);
    assert_eq!(report["drops"]["total"], N, "{report:#}");
    assert_eq!(report["groups"][0]["label"], "NO_SOCKET");
    assert_eq!(report["groups"][0]["total"], N);
    let per_interval: u64 = sr
        .lines
        .iter()
        .map(|r| r["drops"]["interval"].as_u64().unwrap())
        .sum();
    let first_total = sr.lines[0]["drops"]["total"].as_u64().unwrap()
        - sr.lines[0]["drops"]["interval"].as_u64().unwrap();
    assert_eq!(
        first_total + per_interval,
        N,
        "intervals add up to the total"
    );

    let ws = wr.summary.expect("watch summary");
    let (matched, delivered, lost) = (
        ws["matched"].as_u64().unwrap(),
        ws["delivered"].as_u64().unwrap(),
        ws["lost"].as_u64().unwrap(),
    );
    assert_eq!(matched, N);
    assert!(lost > 0, "the ring buffer should have overflowed: {ws:#}");
    assert_eq!(delivered + lost, N);
}

#[test]
fn the_documented_command_lines_work() {
    // Exactly as the issue and README write them.
    for args in [
        &["stats", "--interval", "1", "--json"][..],
        &["stats", "--interval", "1", "--json", "--port", "9"][..],
    ] {
        let s = Watch::spawn(args, "netdrop: counting drops");
        let before = s.lines_so_far();
        for _ in 0..3 {
            udp_send("127.0.0.1:0", "127.0.0.1:9".parse().unwrap());
        }
        s.wait_for_line("a report counting the datagrams", |r| {
            r["groups"].as_array().is_some_and(|g| {
                g.iter()
                    .any(|g| g["label"] == "NO_SOCKET" && g["total"].as_u64() >= Some(3))
            })
        });
        let r = s.stop();
        assert!(r.status.success(), "{args:?}: {}", r.stderr);
        assert!(r.lines.len() > before);
        for line in &r.lines {
            for key in [
                "time",
                "interval_s",
                "by",
                "drops",
                "seen",
                "missed",
                "untracked",
                "groups",
                "other",
            ] {
                assert!(
                    line.get(key).is_some(),
                    "{args:?}: {key} missing from {line}"
                );
            }
            assert_eq!(line["by"], "reason");
        }
    }
}

#[test]
fn groupings_name_what_they_group() {
    let port = closed_udp_port("127.0.0.1");
    let p = port.to_string();
    for (by, check) in [
        (
            "location",
            (|g: &Value| {
                g["location"]["symbol"] == "__udp4_lib_rcv" && g["reason"]["name"] == "NO_SOCKET"
            }) as fn(&Value) -> bool,
        ),
        ("flow", |g: &Value| {
            g["flow"]["dst"] == "127.0.0.1"
                && g["flow"]["protocol"] == "udp"
                && g["reason"]["name"] == "NO_SOCKET"
        }),
        ("dev", |g: &Value| {
            g["device"]["name"] == "lo"
                && g["netns"]["name"] == "host"
                && g["reasons"][0]["name"] == "NO_SOCKET"
        }),
        ("netns", |g: &Value| {
            g["netns"]["name"] == "host" && g["reasons"][0]["name"] == "NO_SOCKET"
        }),
    ] {
        let s = stats(&["--interval", "1", "--by", by, "--port", &p]);
        udp_to_loopback(port, 4);
        s.wait_for_line(by, |r| r["drops"]["total"] == 4);
        let r = s.stop();
        let report = r.lines.iter().rfind(|r| r["drops"]["total"] == 4).unwrap();
        assert_eq!(report["by"], by);
        let groups = report["groups"].as_array().unwrap();
        assert!(
            !groups.is_empty() && groups.iter().all(check),
            "--by {by}: {report:#}"
        );
        let sum: u64 = groups
            .iter()
            .map(|g| g["total"].as_u64().unwrap())
            .sum::<u64>()
            + report["other"]["total"].as_u64().unwrap();
        assert_eq!(sum, 4, "--by {by}: groups add up: {report:#}");
    }
}

#[test]
fn flows_beyond_the_bound_are_counted_not_lost() {
    let port = closed_udp_port("127.0.0.1");
    let s = stats(&[
        "--interval",
        "1",
        "--by",
        "flow",
        "--max-flows",
        "4",
        "--port",
        &port.to_string(),
    ]);
    // Ten flows: ten source sockets.
    udp_to_loopback(port, 10);
    s.wait_for_line("ten drops", |r| r["drops"]["total"] == 10);
    let r = s.stop();
    let report = r.lines.iter().rfind(|r| r["drops"]["total"] == 10).unwrap();
    assert_eq!(report["groups"].as_array().unwrap().len(), 4, "{report:#}");
    assert_eq!(report["untracked"]["flow"], 6, "{report:#}");
}

#[test]
fn top_n_and_other() {
    let port = closed_udp_port("127.0.0.1");
    let s = stats(&[
        "--interval",
        "1",
        "--by",
        "flow",
        "--top",
        "2",
        "--port",
        &port.to_string(),
    ]);
    udp_to_loopback(port, 5);
    s.wait_for_line("five drops", |r| r["drops"]["total"] == 5);
    let r = s.stop();
    let report = r.lines.iter().rfind(|r| r["drops"]["total"] == 5).unwrap();
    assert_eq!(report["groups"].as_array().unwrap().len(), 2);
    assert_eq!(report["other"]["total"], 3);
}

#[test]
fn proto_ipv4_and_ipv6_select_the_family_without_other_filters() {
    // Both families dropped in a fresh namespace: each --proto counts exactly its own.
    let ns = NetnsPair::new("x2", 222);
    let v4 = stats(&["--interval", "1", "--netns", &ns.name, "--proto", "ipv4"]);
    let v6 = stats(&["--interval", "1", "--netns", &ns.name, "--proto", "ipv6"]);
    ns.inside(|| {
        let s4 = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let s6 = std::net::UdpSocket::bind("[::1]:0").unwrap();
        for _ in 0..10 {
            s4.send_to(b"x", "127.0.0.1:47120").unwrap();
        }
        for _ in 0..7 {
            s6.send_to(b"x", "[::1]:47120").unwrap();
        }
    });
    // NO_SOCKET counts the datagrams alone (the ICMP errors they cause may be dropped too,
    // with other reasons, each in its own family).
    let no_socket = |r: &Value| {
        r["groups"]
            .as_array()
            .and_then(|g| g.iter().find(|g| g["label"] == "NO_SOCKET"))
            .map_or(0, |g| g["total"].as_u64().unwrap())
    };
    v4.wait_for_line("ten IPv4 drops", |r| no_socket(r) >= 10);
    v6.wait_for_line("seven IPv6 drops", |r| no_socket(r) >= 7);
    // One more report, so late drops of the wrong family would show.
    thread::sleep(Duration::from_millis(1500));
    let (r4, r6) = (v4.stop(), v6.stop());
    assert_eq!(no_socket(last(&r4)), 10, "{:#}", last(&r4));
    assert_eq!(no_socket(last(&r6)), 7, "{:#}", last(&r6));
}
