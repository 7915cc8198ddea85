//! Each filter includes exactly what it promises and excludes the rest, on real drops.
//! Needs root: compiled only with `--features privileged` (`cargo xtask test`).
//!
//! Pattern: send the traffic the filter must exclude first, then the traffic it must
//! include; once the included drop is printed, stop (which drains the ring buffer). The
//! excluded drop happened earlier, so it would have been printed too had it passed.
#![cfg(feature = "privileged")]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use netdrop_tests::{NetnsPair, Report, Watch, closed_udp_port, field, tcp_refused, udp_send};
use serde_json::Value;

const LO4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Runs `watch ARGS`, calls `traffic`, waits for a drop to `included`, stops.
fn watch(args: &[&str], included: u16, traffic: impl FnOnce()) -> Report {
    let w = Watch::start(args);
    traffic();
    w.wait_for("the included drop", |d| d["packet"]["dport"] == included);
    let r = w.stop();
    assert!(r.status.success(), "{}", r.stderr);
    r
}

fn ports(r: &Report) -> Vec<u64> {
    r.drops
        .iter()
        .filter_map(|d| d["packet"]["dport"].as_u64())
        .collect()
}

fn every(r: &Report, what: &str, pred: impl Fn(&Value) -> bool) {
    for d in &r.drops {
        assert!(
            pred(d),
            "{what}: this drop should have been filtered out: {d:#}"
        );
    }
}

#[test]
fn reason_and_exclude_reason() {
    let ns = NetnsPair::new("f1", 211);
    ns.nft("add table inet ndf");
    ns.nft("add chain inet ndf input { type filter hook input priority 0 ; }");
    ns.nft("add rule inet ndf input udp dport 47010 drop");
    let to = |port: u16| SocketAddr::new(ns.ns_addr.parse().unwrap(), port);
    let from = format!("{}:0", ns.host_addr);

    let r = watch(
        &["--netns", &ns.name, "--reason", "NETFILTER_DROP"],
        47010,
        || {
            udp_send(&from, to(47011));
            udp_send(&from, to(47010));
        },
    );
    assert!(
        ports(&r).contains(&47010) && !ports(&r).contains(&47011),
        "{:?}",
        ports(&r)
    );
    every(&r, "--reason NETFILTER_DROP", |d| {
        d["reason"]["name"] == "NETFILTER_DROP"
    });

    let r = watch(
        &["--netns", &ns.name, "--exclude-reason", "netfilter_drop"],
        47011,
        || {
            udp_send(&from, to(47010));
            udp_send(&from, to(47011));
        },
    );
    assert!(
        ports(&r).contains(&47011) && !ports(&r).contains(&47010),
        "{:?}",
        ports(&r)
    );
    every(&r, "--exclude-reason NETFILTER_DROP", |d| {
        d["reason"]["name"] != "NETFILTER_DROP"
    });
    // The summary only counts what passed.
    let s = r.summary.unwrap();
    assert!(
        s["by_reason"]
            .as_array()
            .unwrap()
            .iter()
            .all(|b| b["name"] != "NETFILTER_DROP")
    );
}

#[test]
fn proto() {
    let port = closed_udp_port("127.0.0.1");
    let dst = SocketAddr::new(LO4, port);
    let r = watch(
        &["--proto", "udp", "--port", &port.to_string()],
        port,
        || {
            tcp_refused(LO4, dst);
            udp_send("127.0.0.1:0", dst);
        },
    );
    assert_eq!(r.drops.len(), 1, "{:#?}", r.drops);
    every(&r, "--proto udp", |d| d["packet"]["protocol"] == "udp");

    let r = watch(
        &["--proto", "tcp", "--port", &port.to_string()],
        port,
        || {
            udp_send("127.0.0.1:0", dst);
            tcp_refused(LO4, dst);
        },
    );
    assert_eq!(r.drops.len(), 1, "{:#?}", r.drops);
    every(&r, "--proto tcp", |d| d["packet"]["protocol"] == "tcp");
}

#[test]
fn port() {
    let (p1, p2) = (closed_udp_port("127.0.0.1"), closed_udp_port("127.0.0.1"));
    let r = watch(&["--port", &p2.to_string()], p2, || {
        udp_send("127.0.0.1:0", SocketAddr::new(LO4, p1));
        udp_send("127.0.0.1:0", SocketAddr::new(LO4, p2));
    });
    assert_eq!(ports(&r), vec![p2 as u64]);
}

#[test]
fn src_dst_and_host() {
    let port = closed_udp_port("127.0.0.1");
    let to = |ip: &str| SocketAddr::new(ip.parse().unwrap(), port);
    let p = port.to_string();

    let r = watch(&["--src", "127.0.0.2", "--port", &p], port, || {
        udp_send("127.0.0.1:0", to("127.0.0.1"));
        udp_send("127.0.0.2:0", to("127.0.0.1"));
    });
    assert_eq!(r.drops.len(), 1, "{:#?}", r.drops);
    every(&r, "--src", |d| d["packet"]["src"] == "127.0.0.2");

    let r = watch(&["--dst", "127.0.0.1/32", "--port", &p], port, || {
        udp_send("127.0.0.1:0", to("127.0.0.3"));
        udp_send("127.0.0.1:0", to("127.0.0.1"));
    });
    assert_eq!(r.drops.len(), 1, "{:#?}", r.drops);
    every(&r, "--dst", |d| d["packet"]["dst"] == "127.0.0.1");

    // --host matches either side; a /31 covers 127.0.0.2 and .3.
    let w = Watch::start(&["--host", "127.0.0.2/31", "--port", &p]);
    udp_send("127.0.0.1:0", to("127.0.0.1"));
    udp_send("127.0.0.2:0", to("127.0.0.1"));
    udp_send("127.0.0.1:0", to("127.0.0.3"));
    w.wait_for("to 127.0.0.3", |d| d["packet"]["dst"] == "127.0.0.3");
    let r = w.stop();
    assert_eq!(r.drops.len(), 2, "{:#?}", r.drops);
    every(&r, "--host", |d| {
        d["packet"]["src"] == "127.0.0.2" || d["packet"]["dst"] == "127.0.0.3"
    });

    // An IPv6 prefix never matches IPv4 packets.
    let r = watch(&["--host", "::1", "--port", &p], port, || {
        udp_send("127.0.0.1:0", to("127.0.0.1"));
        udp_send("[::1]:0", SocketAddr::new("::1".parse().unwrap(), port));
    });
    assert_eq!(r.drops.len(), 1, "{:#?}", r.drops);
    every(&r, "--host ::1", |d| d["packet"]["family"] == "ipv6");
}

#[test]
fn netns_and_iface() {
    let ns = NetnsPair::new("f2", 212);
    let into_ns = SocketAddr::new(ns.ns_addr.parse().unwrap(), 47020);
    let on_lo = SocketAddr::new(LO4, 47020);

    let r = watch(
        &["--netns", &ns.inode().to_string(), "--port", "47020"],
        47020,
        || {
            udp_send("127.0.0.1:0", on_lo);
            udp_send(&format!("{}:0", ns.host_addr), into_ns);
        },
    );
    assert_eq!(r.drops.len(), 1, "{:#?}", r.drops);
    every(&r, "--netns", |d| d["netns"]["inode"] == ns.inode());

    let r = watch(&["--iface", &ns.ns_if, "--port", "47020"], 47020, || {
        udp_send("127.0.0.1:0", on_lo);
        udp_send(&format!("{}:0", ns.host_addr), into_ns);
    });
    assert_eq!(r.drops.len(), 1, "{:#?}", r.drops);
    every(&r, "--iface", |d| {
        field(d, "device.name") == ns.ns_if.as_str()
    });
}

/// Sends one SCTP common header (ports, verification tag, checksum) from a raw socket.
fn sctp_send(dst: Ipv4Addr, sport: u16, dport: u16) {
    // SAFETY: plain socket calls on a descriptor this function owns and closes.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_SCTP);
        assert!(
            fd >= 0,
            "raw SCTP socket: {}",
            std::io::Error::last_os_error()
        );
        let mut hdr = [0u8; 12];
        hdr[..2].copy_from_slice(&sport.to_be_bytes());
        hdr[2..4].copy_from_slice(&dport.to_be_bytes());
        let (sa, len) = netdrop_tests::sockaddr(SocketAddr::new(dst.into(), 0));
        let n = libc::sendto(
            fd,
            hdr.as_ptr().cast(),
            hdr.len(),
            0,
            (&raw const sa).cast(),
            len,
        );
        assert_eq!(n, 12, "sendto: {}", std::io::Error::last_os_error());
        libc::close(fd);
    }
}

#[test]
fn sctp_ports_are_parsed_and_port_matches_them() {
    // Whatever drops it (no SCTP socket, or no SCTP module: protocol unreachable), the
    // record carries both ports, and --port selects on them.
    let r = watch(&["--proto", "sctp", "--port", "47031"], 47031, || {
        sctp_send(Ipv4Addr::LOCALHOST, 47030, 47032);
        sctp_send(Ipv4Addr::LOCALHOST, 47030, 47031);
    });
    assert_eq!(ports(&r), vec![47031], "{:#?}", r.drops);
    let d = &r.drops[0];
    assert_eq!(d["packet"]["protocol"], "sctp");
    assert_eq!(d["packet"]["sport"], 47030);
    assert_eq!(d["packet"]["dport"], 47031);
}
