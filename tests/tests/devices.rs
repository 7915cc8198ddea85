//! The receive side of `netdrop stats`: per-device receive counts with netdrop's drops and
//! the ratio, and the per-CPU softnet table. Needs root: compiled only with
//! `--features privileged` (`cargo xtask test`).
#![cfg(feature = "privileged")]

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::Duration,
};

use netdrop_tests::{NetnsPair, Watch, run};
use serde_json::Value;

/// The rows for `device` in namespace `inode` of every report.
fn device_rows<'a>(reports: &'a [Value], device: &str, inode: u64) -> Vec<&'a Value> {
    reports
        .iter()
        .flat_map(|r| r["devices"].as_array().into_iter().flatten())
        .filter(|d| d["device"] == device && d["netns"]["inode"] == inode)
        .collect()
}

#[test]
fn stats_show_each_device_with_its_drops_and_receive_count() {
    // N datagrams to a closed port in a fresh namespace: all received on its veth, all
    // dropped there (NO_SOCKET).
    const N: u64 = 500;
    let ns = NetnsPair::new("dv1", 236);
    let port = "47300";
    let s = Watch::spawn(
        &[
            "stats",
            "--json",
            "--interval",
            "1",
            "--by",
            "dev",
            "--netns",
            &ns.name,
            "--port",
            port,
        ],
        "netdrop: counting drops",
    );
    let dst: SocketAddr = format!("{}:{port}", ns.ns_addr).parse().unwrap();
    let sock = std::net::UdpSocket::bind(format!("{}:0", ns.host_addr)).unwrap();
    for _ in 0..N {
        sock.send_to(b"x", dst).unwrap();
    }
    // Two more reports, so one covers the end of the burst.
    thread::sleep(Duration::from_millis(2500));
    let r = s.stop();
    assert!(r.status.success(), "{}", r.stderr);

    let rows = device_rows(&r.lines, &ns.ns_if, ns.inode());
    assert!(
        !rows.is_empty(),
        "{} not reported: {:#?}",
        ns.ns_if,
        r.lines
    );
    let drops: u64 = rows.iter().map(|d| d["drops"].as_u64().unwrap()).sum();
    let rx: u64 = rows.iter().map(|d| d["rx_packets"].as_u64().unwrap()).sum();
    assert_eq!(drops, N, "netdrop's drops on {}: {rows:#?}", ns.ns_if);
    assert!(rx >= N, "rx_packets {rx} < {N}: {rows:#?}");
    for d in &rows {
        let (drops, rx) = (
            d["drops"].as_u64().unwrap(),
            d["rx_packets"].as_u64().unwrap(),
        );
        if rx > 0 {
            let ratio = d["drop_ratio"]
                .as_f64()
                .expect("ratio with packets received");
            assert!((ratio - drops as f64 / rx as f64).abs() < 1e-9, "{d}");
        } else {
            assert!(d["drop_ratio"].is_null(), "{d}");
        }
        assert!(d["rx_dropped"].is_u64(), "{d}");
    }
    // Only the namespace asked for is read: not the host side of the pair.
    assert!(
        r.lines
            .iter()
            .flat_map(|r| r["devices"].as_array().into_iter().flatten())
            .all(|d| d["device"] != ns.host_if.as_str()),
        "host side is not in --netns: {:#?}",
        r.lines
    );

    // Every CPU has a softnet row in every report.
    let cpus = std::fs::read_to_string("/proc/net/softnet_stat")
        .unwrap()
        .lines()
        .count();
    for report in &r.lines {
        let softnet = report["softnet"].as_array().expect("softnet rows");
        assert_eq!(softnet.len(), cpus, "{report:#}");
        for c in softnet {
            for field in [
                "cpu",
                "processed",
                "dropped",
                "time_squeeze",
                "dropped_total",
            ] {
                assert!(c[field].is_u64(), "{field} in {c}");
            }
        }
    }
}

#[test]
fn text_reports_say_what_they_measure() {
    let ns = NetnsPair::new("dv2", 237);
    let port = "47301";
    let dst: SocketAddr = format!("{}:{port}", ns.ns_addr).parse().unwrap();
    let name = ns.name.clone();
    // Traffic for as long as stats runs, however long it takes to start.
    let done = Arc::new(AtomicBool::new(false));
    let stop = done.clone();
    let sender = thread::spawn(move || {
        let sock = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        while !stop.load(Ordering::Relaxed) {
            let _ = sock.send_to(b"x", dst);
            thread::sleep(Duration::from_millis(50));
        }
    });
    let out = run(&[
        "stats",
        "--interval",
        "1",
        "--count",
        "2",
        "--netns",
        &name,
        "--port",
        port,
    ]);
    done.store(true, Ordering::Relaxed);
    sender.join().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("softnet (per CPU, from /proc/net/softnet_stat): "),
        "{text}"
    );
    assert!(
        text.contains("devices (rx from /proc/net/dev; drops = netdrop's drops with that skb->dev; ratio = drops / rx packets):"),
        "{text}"
    );
    assert!(
        text.contains(&format!("{} netns {name}", ns.ns_if)),
        "{text}"
    );
    // `stats --by reason` keeps no per-device counts: it says where to get them.
    assert!(
        text.contains("(drops per device are counted with --by dev or --by netns, and in top)"),
        "{text}"
    );
}
