//! Sockets named by their own drop count (`sk_drops`, through sock_diag): a UDP socket
//! with a tiny receive buffer that never reads, in a namespace of its own, must be named
//! by `stats` and in the `udp_rcvbuf` finding of `diagnose`, with this test's pid. Needs
//! root: compiled only with `--features privileged`.
#![cfg(feature = "privileged")]

use std::{
    net::{SocketAddr, UdpSocket},
    thread,
    time::Duration,
};

use netdrop_tests::{NetnsPair, Watch, set_rcvbuf};
use serde_json::{Value, json};

/// Datagrams sent; a 1-byte SO_RCVBUF (raised by the kernel to its minimum) holds a few.
const SENT: u64 = 64;

/// A UDP socket bound to `at` inside `ns` whose receive buffer is as small as the kernel
/// allows.
fn tiny_udp(ns: &NetnsPair, at: SocketAddr) -> UdpSocket {
    ns.inside(|| {
        let s = UdpSocket::bind(at).unwrap();
        set_rcvbuf(&s, 1);
        s
    })
}

fn flood(ns: &NetnsPair, to: SocketAddr) {
    let s = UdpSocket::bind(format!("{}:0", ns.host_addr)).unwrap();
    for _ in 0..SENT {
        s.send_to(&[0u8; 200], to).unwrap();
    }
}

/// This process as netdrop names it: `/proc/PID/comm`, pid.
fn me() -> (String, u32) {
    let comm = std::fs::read_to_string("/proc/self/comm").unwrap();
    (comm.trim_end().to_owned(), std::process::id())
}

#[test]
fn stats_names_the_udp_socket_that_drops() {
    let ns = NetnsPair::new("sk1", 251);
    let at: SocketAddr = format!("{}:47301", ns.ns_addr).parse().unwrap();
    let sock = tiny_udp(&ns, at);
    let s = Watch::spawn(
        &["stats", "--json", "--netns", &ns.name, "--interval", "1"],
        "netdrop: counting drops",
    );
    flood(&ns, at);
    thread::sleep(Duration::from_millis(2500));
    let r = s.stop();
    assert!(r.status.success(), "{}", r.stderr);
    let named: Vec<&Value> = r
        .lines
        .iter()
        .flat_map(|l| l["sockets"].as_array().unwrap())
        .collect();
    assert!(!named.is_empty(), "no socket named: {:#?}", r.lines);
    let drops: u64 = named.iter().map(|s| s["drops"].as_u64().unwrap()).sum();
    assert!((32..=SENT).contains(&drops), "{named:#?}");
    let last = named.last().unwrap();
    let (comm, pid) = me();
    let expected = json!({
        "protocol": "udp",
        "netns": {"inode": ns.inode(), "name": ns.name, "source": "procfs"},
        "family": "ipv4",
        "addr": ns.ns_addr,
        "port": 47301,
        "remote_addr": null,
        "remote_port": null,
        "drops": last["drops"],
        "sk_drops": drops,
        "rqueue": last["rqueue"],
        "inode": last["inode"],
        "uid": 0,
        "process": {"pid": pid, "comm": comm},
    });
    assert_eq!(*last, &expected);
    // Everything named is that one socket; its queue holds what the buffer took.
    assert!(named.iter().all(|s| s["port"] == 47301), "{named:#?}");
    assert!(last["rqueue"].as_u64().unwrap() > 0, "{last}");
    drop(sock);
}

#[test]
fn diagnose_names_the_udp_socket_in_its_finding() {
    let ns = NetnsPair::new("sk2", 252);
    let at: SocketAddr = format!("{}:47302", ns.ns_addr).parse().unwrap();
    let sock = tiny_udp(&ns, at);
    let d = Watch::spawn(
        &[
            "diagnose",
            "--json",
            "--duration",
            "5m",
            "--netns",
            &ns.name,
        ],
        "netdrop: diagnosing",
    );
    flood(&ns, at);
    thread::sleep(Duration::from_millis(1500));
    let r = d.stop();
    assert!(r.status.success(), "{}", r.stderr);
    assert_eq!(r.lines.len(), 1, "one JSON document: {:#?}", r.lines);
    let report = &r.lines[0];
    let recorded = &report["evidence"]["sockets"];
    assert_eq!(recorded.as_array().map(Vec::len), Some(1), "{recorded:#}");
    let drops = recorded[0]["drops"].as_u64().unwrap();
    assert!((32..=SENT).contains(&drops), "{recorded:#}");
    let f = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["class"] == "udp_rcvbuf")
        .unwrap_or_else(|| panic!("no udp_rcvbuf finding in {report:#}"));
    let sockets: Vec<&Value> = f["objects"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["kind"] == "socket")
        .collect();
    let (comm, pid) = me();
    assert_eq!(
        sockets,
        [&json!({
            "kind": "socket",
            "name": format!("udp {}:47302", ns.ns_addr),
            "netns": {"inode": ns.inode(), "name": ns.name, "source": "procfs"},
            "drops": drops,
            "detail": format!("sk_drops +{drops}, process {comm}[{pid}]"),
        })]
    );
    drop(sock);
}
