//! `netdrop watch --pcap`: real drops (UDP to a closed port in a namespace, over a veth,
//! IPv4 and IPv6) written as pcap-ng and read back with tshark (Debian `tshark`). Needs
//! root: compiled only with `--features privileged`.
#![cfg(feature = "privileged")]

use std::{
    io::{BufRead, BufReader},
    net::{IpAddr, SocketAddr, UdpSocket},
    os::unix::fs::PermissionsExt,
    process::{Command, Stdio},
};

use netdrop_tests::{NetnsPair, Watch, closed_udp_port, ip, netdrop_command};

/// Payload of every datagram: longer than what the tests capture of it.
const PAYLOAD: usize = 100;

/// A namespace pair with IPv6 addresses too: `fd00:<subnet>::1` here, `::2` inside.
fn pair(tag: &str, subnet: u8) -> (NetnsPair, String, String) {
    let ns = NetnsPair::new(tag, subnet);
    let (h6, n6) = (format!("fd00:{subnet}::1"), format!("fd00:{subnet}::2"));
    ip(&[
        "addr",
        "add",
        &format!("{h6}/64"),
        "dev",
        &ns.host_if,
        "nodad",
    ]);
    ip(&[
        "-n",
        &ns.name,
        "addr",
        "add",
        &format!("{n6}/64"),
        "dev",
        &ns.ns_if,
        "nodad",
    ]);
    (ns, h6, n6)
}

/// Sends one datagram of [`PAYLOAD`] bytes from `src` to `dst`; the source address used.
fn send(src: IpAddr, dst: SocketAddr) -> SocketAddr {
    let s = UdpSocket::bind(SocketAddr::new(src, 0)).expect("bind UDP source");
    s.send_to(&[0x5a; PAYLOAD], dst).expect("send datagram");
    s.local_addr().unwrap()
}

/// Sends one datagram of [`PAYLOAD`] bytes that a netfilter output rule drops (the sender
/// sees EPERM); the source address used.
fn send_refused(src: IpAddr, dst: SocketAddr) -> SocketAddr {
    let s = UdpSocket::bind(SocketAddr::new(src, 0)).expect("bind UDP source");
    let err = s
        .send_to(&[0x5a; PAYLOAD], dst)
        .expect_err("the output rule drops it");
    assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied, "{err}");
    s.local_addr().unwrap()
}

/// One packet as tshark reads it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Packet {
    src: String,
    sport: u16,
    dport: u16,
    len: u32,
    cap_len: u32,
    interface: String,
    comment: String,
}

/// The fields tshark prints per packet, `|`-separated.
const FIELDS: [&str; 9] = [
    "ip.src",
    "ipv6.src",
    "udp.srcport",
    "udp.dstport",
    "frame.len",
    "frame.cap_len",
    "frame.interface_name",
    "frame.interface_description",
    "frame.comment",
];

fn tshark_args(file: &str) -> Vec<String> {
    let mut a: Vec<String> = ["-r", file, "-T", "fields", "-E", "separator=|"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for f in FIELDS {
        a.push("-e".into());
        a.push(f.into());
    }
    a
}

/// Parses tshark's field lines (interface description joined to the name).
fn parse(out: &str) -> Vec<Packet> {
    out.lines()
        .map(|l| {
            let f: Vec<&str> = l.split('|').collect();
            assert_eq!(f.len(), FIELDS.len(), "tshark line: {l}");
            let num = |s: &str| s.parse::<u32>().unwrap_or_else(|_| panic!("{s} in {l}"));
            Packet {
                src: if f[0].is_empty() { f[1] } else { f[0] }.to_owned(),
                sport: num(f[2]) as u16,
                dport: num(f[3]) as u16,
                len: num(f[4]),
                cap_len: num(f[5]),
                interface: format!("{} / {}", f[6], f[7]),
                comment: f[8].to_owned(),
            }
        })
        .collect()
}

/// What each drop must look like: sent from `src` to `dport` inside `ns`, IPv4 or not,
/// captured from the Ethernet header with `snaplen`.
fn expected(ns: &NetnsPair, src: SocketAddr, dport: u16, snaplen: u32) -> Packet {
    let (ip_hdr, symbol) = if src.is_ipv4() {
        (20, "__udp4_lib_rcv")
    } else {
        (40, "__udp6_lib_rcv")
    };
    let len = 14 + ip_hdr + 8 + PAYLOAD as u32;
    let inode = ns.inode();
    Packet {
        src: src.ip().to_string(),
        sport: src.port(),
        dport,
        len,
        cap_len: len.min(snaplen),
        interface: format!(
            "{} / {} in netns {} ({inode}): dropped packets, captured from the Ethernet header",
            ns.ns_if, ns.ns_if, ns.name
        ),
        // The location's offset varies by kernel build: compared up to it.
        comment: format!("reason=NO_SOCKET location={symbol}+0x"),
    }
}

/// Compares `got` with `want`, the comment up to the location's offset, then its tail.
fn assert_packet(got: &Packet, want: &Packet, ns: &NetnsPair) {
    let comment = &got.comment;
    assert_eq!(
        Packet {
            comment: String::new(),
            ..got.clone()
        },
        Packet {
            comment: String::new(),
            ..want.clone()
        }
    );
    assert!(comment.starts_with(&want.comment), "{comment}");
    let tail = format!(" netns={} ({}) dev={} task=", ns.name, ns.inode(), ns.ns_if);
    assert!(comment.contains(&tail), "{comment} lacks {tail}");
    assert!(comment.ends_with(" captured=mac"), "{comment}");
}

/// Checks every packet against the datagram sent from the same address, in any order:
/// address resolution can hold the first IPv4 or IPv6 datagram back behind the other.
fn assert_packets(
    mut got: Vec<Packet>,
    sent: &[SocketAddr],
    ns: &NetnsPair,
    dport: u16,
    snaplen: u32,
) {
    assert_eq!(got.len(), sent.len(), "{got:#?}");
    let mut want: Vec<Packet> = sent
        .iter()
        .map(|s| expected(ns, *s, dport, snaplen))
        .collect();
    let key = |p: &Packet| (p.src.clone(), p.sport);
    got.sort_by_key(key);
    want.sort_by_key(key);
    for (g, w) in got.iter().zip(&want) {
        assert_packet(g, w, ns);
    }
}

#[test]
fn pcap_file_holds_each_drop_with_its_reason_on_ipv4_and_ipv6() {
    let (ns, h6, n6) = pair("pcap1", 236);
    let port = closed_udp_port("127.0.0.1");
    let file = std::env::temp_dir().join("netdrop-test-drops.pcapng");
    let _ = std::fs::remove_file(&file);
    let path = file.to_str().unwrap();
    let w = Watch::start(&[
        "--pcap",
        path,
        "--snaplen",
        "64",
        "--count",
        "4",
        "--proto",
        "udp",
        "--port",
        &port.to_string(),
        "--no-counters",
    ]);
    let dst4 = SocketAddr::new(ns.ns_addr.parse().unwrap(), port);
    let dst6 = SocketAddr::new(n6.parse().unwrap(), port);
    let sent = [
        send(ns.host_addr.parse().unwrap(), dst4),
        send(h6.parse().unwrap(), dst6),
        send(ns.host_addr.parse().unwrap(), dst4),
        send(h6.parse().unwrap(), dst6),
    ];
    w.wait_for_drops("4 datagrams", 4, |d| d["packet"]["dport"] == port);
    let r = w.stop();
    assert!(r.status.success(), "{}", r.stderr);
    assert_eq!(r.drops.len(), 4, "{:#?}", r.drops);

    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    let out = Command::new("tshark")
        .args(tshark_args(path))
        .output()
        .expect("run tshark (Debian package tshark; cargo xtask setup --test-deps)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = parse(&String::from_utf8_lossy(&out.stdout));
    // Snap length 64: Ethernet, IPv6 and UDP headers (62 bytes) are whole, the payload cut.
    let mut lengths: Vec<(u32, u32)> = got.iter().map(|p| (p.cap_len, p.len)).collect();
    lengths.sort();
    assert_eq!(lengths, [(64, 142), (64, 142), (64, 162), (64, 162)]);
    assert_packets(got, &sent, &ns, port, 64);
    std::fs::remove_file(&file).unwrap();
}

#[test]
fn pcap_on_stdout_streams_to_tshark_and_text_goes_to_stderr() {
    let (ns, h6, n6) = pair("pcap2", 237);
    let port = closed_udp_port("127.0.0.1");
    let mut netdrop = netdrop_command()
        .args([
            "watch",
            "--pcap",
            "-",
            "--count",
            "2",
            "--proto",
            "udp",
            "--port",
            &port.to_string(),
            "--no-counters",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn netdrop");
    let tshark = Command::new("tshark")
        .args(tshark_args("-"))
        .stdin(netdrop.stdout.take().unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run tshark (Debian package tshark; cargo xtask setup --test-deps)");
    let mut stderr = BufReader::new(netdrop.stderr.take().unwrap()).lines();
    let mut before = Vec::new();
    loop {
        let line = stderr
            .next()
            .unwrap_or_else(|| panic!("netdrop ended before it was ready: {before:#?}"))
            .unwrap();
        if line.starts_with("netdrop: watching") {
            break;
        }
        before.push(line);
    }
    let dst4 = SocketAddr::new(ns.ns_addr.parse().unwrap(), port);
    let dst6 = SocketAddr::new(n6.parse().unwrap(), port);
    let sent = [
        send(ns.host_addr.parse().unwrap(), dst4),
        send(h6.parse().unwrap(), dst6),
    ];
    // --count 2 ends netdrop; tshark ends at the end of its input.
    let text: Vec<String> = stderr.map_while(Result::ok).collect();
    assert!(netdrop.wait().unwrap().success(), "{text:#?}");
    let out = tshark.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The default snap length (256) keeps these packets whole.
    assert_packets(
        parse(&String::from_utf8_lossy(&out.stdout)),
        &sent,
        &ns,
        port,
        256,
    );
    // The text lines went to stderr, one per drop, with the same flows.
    let lines: Vec<&String> = text.iter().filter(|l| l.contains(" NO_SOCKET ")).collect();
    assert_eq!(lines.len(), 2, "{text:#?}");
    for (src, dst) in [(sent[0], dst4), (sent[1], dst6)] {
        let flow = format!("{src} -> {dst}");
        assert!(
            lines.iter().any(|l| l.contains(&flow)),
            "{flow} in {lines:#?}"
        );
    }
}

#[test]
fn packets_dropped_on_the_way_out_are_raw_ip_with_the_netfilter_hook() {
    let (ns, h6, _) = pair("pcap3", 238);
    ns.nft("add table inet ndpcap");
    ns.nft("add chain inet ndpcap out { type filter hook output priority 0 ; }");
    ns.nft("add rule inet ndpcap out udp dport 47238 drop");
    let file = std::env::temp_dir().join("netdrop-test-out.pcapng");
    let path = file.to_str().unwrap();
    let w = Watch::start(&[
        "--pcap",
        path,
        "--count",
        "2",
        "--port",
        "47238",
        "--no-counters",
    ]);
    // Sent from inside: netfilter drops them before they have an Ethernet header.
    let sent = ns.inside(|| {
        let n6 = "fd00:238::2";
        [
            send_refused(
                ns.ns_addr.parse().unwrap(),
                SocketAddr::new(ns.host_addr.parse().unwrap(), 47238),
            ),
            send_refused(
                n6.parse().unwrap(),
                SocketAddr::new(h6.parse().unwrap(), 47238),
            ),
        ]
    });
    w.wait_for_drops("2 datagrams", 2, |d| d["packet"]["dport"] == 47238);
    let r = w.stop();
    assert!(r.status.success(), "{}", r.stderr);
    let out = Command::new("tshark")
        .args(["-r", path, "-T", "fields", "-E", "separator=|"])
        .args(["-e", "frame.encap_type", "-e", "frame.interface_name"])
        .args(["-e", "ip.src", "-e", "ipv6.src", "-e", "udp.srcport"])
        .args([
            "-e",
            "frame.len",
            "-e",
            "frame.cap_len",
            "-e",
            "frame.comment",
        ])
        .output()
        .expect("run tshark");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    lines.sort();
    assert_eq!(lines.len(), 2, "{lines:#?}");
    let inode = ns.inode();
    for (line, (src, family, len)) in lines.iter().zip([
        (sent[0], "ipv4", 20 + 8 + PAYLOAD),
        (sent[1], "ipv6", 40 + 8 + PAYLOAD),
    ]) {
        let (v4, v6) = if src.is_ipv4() {
            (src.ip().to_string(), String::new())
        } else {
            (String::new(), src.ip().to_string())
        };
        // Wireshark's encapsulation 7 is raw IP (LINKTYPE_RAW).
        let head = format!(
            "7|(no device)|{v4}|{v6}|{}|{len}|{len}|reason=NETFILTER_DROP \
             netfilter={family}/output location=",
            src.port()
        );
        assert!(line.starts_with(&head), "{line}\nwanted {head}");
        let tail = format!(" netns={} ({inode}) dev=- task=", ns.name);
        assert!(line.contains(&tail), "{line} lacks {tail}");
        assert!(line.ends_with(" captured=network"), "{line}");
    }
    std::fs::remove_file(&file).unwrap();
}
