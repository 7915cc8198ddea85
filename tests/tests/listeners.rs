//! Listeners whose accept queue overflows: the kernel frees those SYNs without
//! `kfree_skb` (6.1 to 6.18), so netdrop names the listener from the counters and
//! sock_diag. Needs root: compiled only with `--features privileged` (`cargo xtask test`).
#![cfg(feature = "privileged")]

use std::{
    net::{SocketAddr, TcpListener, TcpStream},
    thread,
    time::Duration,
};

use netdrop_tests::{
    NetnsPair, Watch, backlog1_listener, free_tcp_port, http_get, netstat, nonblocking_connect,
};
use serde_json::Value;

/// A backlog-1 listener on `port` in `ns` that never accepts, and 40 connection attempts
/// from the host: all but two overflow its accept queue.
fn overflow(ns: &NetnsPair, port: u16) -> (TcpListener, Vec<TcpStream>) {
    let addr = SocketAddr::new(ns.ns_addr.parse().unwrap(), port);
    let l = backlog1_listener(ns, addr);
    let conns = (0..40).map(|_| nonblocking_connect(addr)).collect();
    (l, conns)
}

/// Waits for `w` to print a listener record; when none comes, says whether the kernel
/// counted overflows in `ns` at all, so a failure tells netdrop's part from the setup's.
fn wait_for_listener(w: Watch, ns: &NetnsPair) -> Watch {
    if w.saw_line_within(Duration::from_secs(20), |l| l["type"] == "listener") {
        return w;
    }
    let overflows = ns.inside(|| netstat("TcpExt", "ListenOverflows"));
    let r = w.stop();
    panic!(
        "no listener record within 20 s while {} counted {overflows} ListenOverflows; \
         netdrop printed {:?}; stderr: {}",
        ns.name, r.lines, r.stderr
    );
}

/// Checks a listener record (a `watch` line or an entry of a `stats` report) names our
/// listener exactly.
fn assert_names_listener(l: &Value, ns: &NetnsPair, port: u16) {
    assert_eq!(l["source"], "sock_diag", "{l}");
    assert_eq!(l["port"], port, "{l}");
    assert_eq!(l["addr"], ns.ns_addr.as_str(), "{l}");
    assert_eq!(l["family"], "ipv4", "{l}");
    assert_eq!(l["netns"]["inode"], ns.inode(), "{l}");
    assert_eq!(l["netns"]["name"], ns.name.as_str(), "{l}");
    // Backlog 1: the kernel drops once two connections wait.
    assert_eq!(
        (l["queue"].as_u64(), l["limit"].as_u64()),
        (Some(2), Some(1)),
        "{l}"
    );
    assert_eq!(l["state"], "full", "{l}");
    assert!(l["overflows"].as_u64().unwrap() > 0, "{l}");
    assert_eq!(l["shared_by"], 1, "{l}");
    assert_eq!(l["process"]["pid"], std::process::id(), "{l}");
}

#[test]
fn watch_names_the_overflowing_listener_with_port_filter() {
    const PORT: u16 = 9321;
    let ns = NetnsPair::new("l1", 231);
    let metrics = free_tcp_port();
    let addr = format!("127.0.0.1:{metrics}");
    let w = Watch::start(&["--port", &PORT.to_string(), "--metrics-addr", &addr]);
    // --proto udp cannot match a TCP listener.
    let udp = Watch::start(&["--port", &PORT.to_string(), "--proto", "udp"]);
    let (listener, conns) = overflow(&ns, PORT);
    let w = wait_for_listener(w, &ns);
    // One more poll for the SYN retransmissions, for the UDP watch to have seen them too.
    thread::sleep(Duration::from_millis(1500));
    let (_, _, body) = http_get(metrics, "/metrics", None);
    let series = format!(
        "netdrop_listener_overflows_total{{netns=\"{}\",addr=\"{}\",port=\"{PORT}\"}} ",
        ns.name, ns.ns_addr
    );
    let value: u64 = body
        .lines()
        .find_map(|l| l.strip_prefix(&series))
        .unwrap_or_else(|| panic!("no {series} in {body}"))
        .parse()
        .unwrap();
    assert!(value > 0);
    let r = w.stop();
    let u = udp.stop();
    drop(conns);
    drop(listener);
    let listeners: Vec<&Value> = r.lines.iter().filter(|l| l["type"] == "listener").collect();
    assert!(!listeners.is_empty());
    for l in &listeners {
        assert_names_listener(l, &ns, PORT);
    }
    let summary = r.summary.as_ref().expect("summary");
    let total = &summary["listeners"][0];
    assert_eq!(total["port"], PORT, "{summary}");
    assert_eq!(total["netns"]["inode"], ns.inode(), "{summary}");
    assert!(total["overflows"].as_u64().unwrap() >= value, "{summary}");
    // --port hides the counter lines, which cannot be narrowed to a port.
    assert!(r.counters.is_empty(), "{:?}", r.counters);
    assert!(
        !u.lines.iter().any(|l| l["type"] == "listener"),
        "--proto udp let a listener record through: {:?}",
        u.lines
    );
}

#[test]
fn other_ports_are_filtered_out() {
    let ns = NetnsPair::new("l2", 232);
    let other = Watch::start(&["--port", "9323", "--netns", &ns.name]);
    let w = Watch::start(&["--port", "9322", "--netns", &ns.name]);
    let (listener, conns) = overflow(&ns, 9322);
    let w = wait_for_listener(w, &ns);
    thread::sleep(Duration::from_millis(1500));
    let o = other.stop();
    let r = w.stop();
    drop(conns);
    drop(listener);
    assert!(
        r.lines
            .iter()
            .filter(|l| l["type"] == "listener")
            .all(|l| l["port"] == 9322)
    );
    assert!(
        !o.lines.iter().any(|l| l["type"] == "listener"),
        "--port 9323 let another port's listener through: {:?}",
        o.lines
    );
}

#[test]
fn stats_names_the_overflowing_listener() {
    const PORT: u16 = 9324;
    let ns = NetnsPair::new("l3", 233);
    let s = Watch::spawn(
        &["stats", "--json", "--interval", "1", "--netns", &ns.name],
        "netdrop: counting drops",
    );
    let (listener, conns) = overflow(&ns, PORT);
    s.wait_for_line("a report naming the listener", |r| {
        r["listeners"].as_array().is_some_and(|l| !l.is_empty())
    });
    let r = s.stop();
    drop(conns);
    drop(listener);
    let named: Vec<&Value> = r
        .lines
        .iter()
        .flat_map(|rep| rep["listeners"].as_array().unwrap().iter())
        .collect();
    assert!(!named.is_empty());
    for l in named {
        assert_names_listener(l, &ns, PORT);
    }
}
