//! `netdrop watch` against real drops on the running kernel. Needs root (CI runs as root):
//! compiled only with `--features privileged`, which `cargo xtask test` sets.
#![cfg(feature = "privileged")]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use netdrop_tests::{
    NetnsPair, Watch, closed_udp_port, field, netns_inode, notice_total, tcp_refused, to_port,
    udp_send,
};
use serde_json::Value;

const LO4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const LO6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

fn host_netns() -> u64 {
    netns_inode("/proc/self/ns/net")
}

/// Asserts the common shape of a loopback NO_SOCKET drop with the exact 5-tuple.
fn assert_no_socket(d: &Value, proto: &str, src: SocketAddr, dst: SocketAddr, symbol: &str) {
    assert_eq!(field(d, "reason.name"), "NO_SOCKET", "{d:#}");
    assert_eq!(field(d, "packet.protocol"), proto, "{d:#}");
    assert_eq!(
        field(d, "packet.family"),
        if dst.is_ipv4() { "ipv4" } else { "ipv6" }
    );
    assert_eq!(
        field(d, "packet.src"),
        src.ip().to_string().as_str(),
        "{d:#}"
    );
    assert_eq!(
        field(d, "packet.dst"),
        dst.ip().to_string().as_str(),
        "{d:#}"
    );
    assert_eq!(field(d, "packet.sport"), src.port(), "{d:#}");
    assert_eq!(field(d, "packet.dport"), dst.port(), "{d:#}");
    assert_eq!(field(d, "location.symbol"), symbol, "{d:#}");
    assert!(field(d, "location.offset").as_u64().is_some());
    assert_eq!(field(d, "device.name"), "lo");
    assert_eq!(field(d, "netns.inode"), host_netns());
    assert_eq!(field(d, "netns.name"), "host");
    assert!(field(d, "reason.code").as_u64().is_some());
    assert!(!field(d, "running_task.comm").as_str().unwrap().is_empty());
}

#[test]
fn udp_to_closed_port_on_ipv4_and_ipv6() {
    let p4 = closed_udp_port("127.0.0.1");
    let p6 = closed_udp_port("::1");
    let w = Watch::start(&["--proto", "udp"]);
    let dst4 = SocketAddr::new(LO4, p4);
    let dst6 = SocketAddr::new(LO6, p6);
    let src4 = udp_send("127.0.0.1:0", dst4);
    let src6 = udp_send("[::1]:0", dst6);
    w.wait_for("udp ::1", |d| d["packet"]["dport"] == p6);
    let r = w.stop();
    assert!(r.status.success(), "{}", r.stderr);
    let d4 = to_port(&r.drops, p4);
    let d6 = to_port(&r.drops, p6);
    assert_eq!((d4.len(), d6.len()), (1, 1), "{:#?}", r.drops);
    assert_no_socket(d4[0], "udp", src4, dst4, "__udp4_lib_rcv");
    assert_no_socket(d6[0], "udp", src6, dst6, "__udp6_lib_rcv");
    assert_eq!(field(d4[0], "packet.tcp_flags"), &Value::Null);
}

#[test]
fn tcp_syn_to_closed_port() {
    let port = closed_udp_port("127.0.0.1");
    let w = Watch::start(&["--proto", "tcp", "--port", &port.to_string()]);
    let dst4 = SocketAddr::new(LO4, port);
    let dst6 = SocketAddr::new(LO6, port);
    let src4 = tcp_refused(LO4, dst4);
    let src6 = tcp_refused(LO6, dst6);
    w.wait_for("tcp ::1", |d| d["packet"]["family"] == "ipv6");
    let r = w.stop();
    let syn4: Vec<_> = r
        .drops
        .iter()
        .filter(|d| d["packet"]["family"] == "ipv4")
        .collect();
    let syn6: Vec<_> = r
        .drops
        .iter()
        .filter(|d| d["packet"]["family"] == "ipv6")
        .collect();
    assert_eq!((syn4.len(), syn6.len()), (1, 1), "{:#?}", r.drops);
    assert_no_socket(syn4[0], "tcp", src4, dst4, "tcp_v4_rcv");
    assert_no_socket(syn6[0], "tcp", src6, dst6, "tcp_v6_rcv");
    assert_eq!(
        field(syn4[0], "packet.tcp_flags"),
        &serde_json::json!(["SYN"])
    );
}

#[test]
fn drop_inside_a_fresh_namespace_over_veth() {
    let ns = NetnsPair::new("w1", 201);
    let port = 47001;
    let w = Watch::start(&["--proto", "udp", "--port", &port.to_string()]);
    let dst: SocketAddr = format!("{}:{port}", ns.ns_addr).parse().unwrap();
    let src = udp_send(&format!("{}:0", ns.host_addr), dst);
    w.wait_for("udp into the namespace", |d| d["packet"]["dport"] == port);
    let r = w.stop();
    let d = to_port(&r.drops, port);
    assert_eq!(d.len(), 1, "{:#?}", r.drops);
    let d = d[0];
    assert_eq!(field(d, "reason.name"), "NO_SOCKET");
    assert_eq!(field(d, "packet.src"), ns.host_addr.as_str());
    assert_eq!(field(d, "packet.dst"), ns.ns_addr.as_str());
    assert_eq!(field(d, "packet.sport"), src.port());
    assert_eq!(field(d, "device.name"), ns.ns_if.as_str());
    assert_eq!(field(d, "netns.inode"), ns.inode());
    assert_eq!(field(d, "netns.name"), ns.name.as_str());
    assert_eq!(field(d, "netns.source"), "device");
    assert_eq!(field(d, "location.symbol"), "__udp4_lib_rcv");
}

#[test]
fn classic_tracepoint_reports_the_same() {
    let port = closed_udp_port("127.0.0.1");
    let w = Watch::start(&["--attach", "tracepoint", "--port", &port.to_string()]);
    let dst = SocketAddr::new(LO4, port);
    let src = udp_send("127.0.0.1:0", dst);
    w.wait_for("udp", |d| d["packet"]["dport"] == port);
    let r = w.stop();
    assert!(
        r.stderr.contains("classic tracepoint skb:kfree_skb"),
        "{}",
        r.stderr
    );
    let d = to_port(&r.drops, port);
    assert_eq!(d.len(), 1);
    assert_no_socket(d[0], "udp", src, dst, "__udp4_lib_rcv");
    assert!(
        field(r.summary.as_ref().unwrap(), "hook")
            .as_str()
            .unwrap()
            .contains("classic tracepoint")
    );
}

#[test]
fn stacks_start_at_the_dropping_code() {
    let port = closed_udp_port("127.0.0.1");
    let w = Watch::start(&["--stack", "--port", &port.to_string()]);
    udp_send("127.0.0.1:0", SocketAddr::new(LO4, port));
    w.wait_for("udp", |d| d["packet"]["dport"] == port);
    let r = w.stop();
    let stack: Vec<&str> = to_port(&r.drops, port)[0]["stack"]
        .as_array()
        .expect("stack array")
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert!(stack.len() > 5, "{stack:?}");
    // The first frame is named kernel code: not netdrop's program (named `[bpf]` or, when
    // kallsyms cannot bound it, a bare address) and not the tracepoint dispatch.
    let tracer = [
        "bpf_prog_",
        "bpf_trace_run",
        "__bpf_trace_",
        "trace_call_bpf",
        "perf_trace_",
    ];
    assert!(
        !stack[0].contains("[bpf]")
            && !stack[0].starts_with("0x")
            && !tracer.iter().any(|p| stack[0].starts_with(p)),
        "{stack:?}"
    );
    assert!(
        stack
            .iter()
            .take(3)
            .any(|f| f.starts_with("__udp4_lib_rcv+")),
        "{stack:?}"
    );
    assert!(
        stack.iter().any(|f| f.starts_with("udp_sendmsg+")),
        "{stack:?}"
    );
}

#[test]
fn summary_counts_are_exact_and_account_for_every_event() {
    let port = closed_udp_port("127.0.0.1");
    let w = Watch::start(&["--port", &port.to_string()]);
    let dst = SocketAddr::new(LO4, port);
    for _ in 0..25 {
        udp_send("127.0.0.1:0", dst);
    }
    w.wait_for("25th datagram", |_| true);
    let r = w.stop();
    assert!(r.status.success());
    let s = r.summary.expect("summary line");
    assert_eq!(s["matched"], 25, "{s:#}");
    assert_eq!(s["delivered"], 25);
    assert_eq!(s["lost"], 0);
    // The code is this kernel's number for NO_SOCKET, as `netdrop reasons` lists it.
    let reasons = netdrop_tests::run(&["reasons"]);
    let code: u64 = String::from_utf8_lossy(&reasons.stdout)
        .lines()
        .find_map(|l| {
            let mut f = l.split_whitespace();
            let code = f.next()?.parse().ok()?;
            (f.next()? == "NO_SOCKET").then_some(code)
        })
        .expect("NO_SOCKET in `netdrop reasons`");
    assert_eq!(
        s["by_reason"],
        serde_json::json!([{"name": "NO_SOCKET", "code": code, "subsystem": null, "count": 25}])
    );
    assert_eq!(to_port(&r.drops, port).len(), 25);
}

#[test]
fn lost_events_are_counted_and_reported() {
    // A 4 KiB ring holds ~30 records. Stop the reader, make 3000 drops, resume.
    let port = closed_udp_port("127.0.0.1");
    let w = Watch::start(&[
        "--ring-size",
        "4K",
        "--rate-limit",
        "0",
        "--budget",
        "0",
        "--port",
        &port.to_string(),
    ]);
    w.signal(libc::SIGSTOP);
    let dst = SocketAddr::new(LO4, port);
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for _ in 0..3000 {
        sock.send_to(b"x", dst).unwrap();
    }
    w.signal(libc::SIGCONT);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let r = w.stop();
    let s = r.summary.expect("summary");
    let (matched, delivered, lost) = (
        s["matched"].as_u64().unwrap(),
        s["delivered"].as_u64().unwrap(),
        s["lost"].as_u64().unwrap(),
    );
    assert_eq!(matched, 3000, "{s:#}");
    assert!(lost > 0, "nothing lost with a 4K ring: {s:#}");
    assert_eq!(delivered + lost, matched, "unaccounted events: {s:#}");
    assert_eq!(delivered as usize, to_port(&r.drops, port).len());
    let notices: u64 = r.lost.iter().map(|l| l["lost"].as_u64().unwrap()).sum();
    assert_eq!(notices, lost, "lost notices {:#?} vs summary {s:#}", r.lost);
    assert_eq!(s["by_reason"][0]["count"], 3000);
}

#[test]
fn sigterm_also_ends_with_a_summary_and_nothing_stays_attached() {
    let loaded = || {
        let out = std::process::Command::new("bpftool")
            .args(["prog", "show"])
            .output()
            .expect("bpftool");
        assert!(out.status.success(), "bpftool prog show: {out:?}");
        let progs = String::from_utf8_lossy(&out.stdout).into_owned();
        let ours = ["drop_btf", "drop_tp", "ct_in"]
            .iter()
            .any(|p| progs.contains(p));
        (ours, progs)
    };
    let w = Watch::start(&[]);
    // The check below can see our programs: it does while they are attached.
    let (ours, progs) = loaded();
    assert!(ours, "bpftool does not show netdrop's programs:\n{progs}");
    let r = w.stop_with(libc::SIGTERM);
    assert!(r.status.success(), "{}", r.stderr);
    assert!(r.summary.is_some());
    // The kernel frees programs asynchronously once their last fd is closed: allow it a
    // few seconds.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (ours, progs) = loaded();
        if !ours {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "programs left loaded:\n{progs}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let pinned = std::fs::read_dir("/sys/fs/bpf")
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(pinned, 0, "something is pinned in /sys/fs/bpf");
}

#[test]
fn netfilter_drops_in_a_namespace() {
    let ns = NetnsPair::new("w2", 202);
    ns.nft("add table inet ndtest");
    ns.nft("add chain inet ndtest input { type filter hook input priority 0 ; }");
    ns.nft("add rule inet ndtest input udp dport 47002 drop");
    let w = Watch::start(&["--netns", &ns.name]);
    let dst: SocketAddr = format!("{}:47002", ns.ns_addr).parse().unwrap();
    udp_send(&format!("{}:0", ns.host_addr), dst);
    w.wait_for("nftables drop", |d| d["packet"]["dport"] == 47002);
    let r = w.stop();
    let d = to_port(&r.drops, 47002)[0];
    assert_eq!(field(d, "reason.name"), "NETFILTER_DROP", "{d:#}");
    // nf_hook_slow frees it on older kernels; 6.18 attributes it to the nftables chain.
    let sym = field(d, "location.symbol").as_str().unwrap();
    assert!(["nf_hook_slow", "nft_do_chain"].contains(&sym), "{d:#}");
    assert_eq!(field(d, "netns.inode"), ns.inode());
    assert!(
        r.drops.iter().all(|d| d["netns"]["inode"] == ns.inode()),
        "--netns let other namespaces through"
    );
}

#[test]
fn names_with_escape_sequences_reach_the_terminal_escaped() {
    // A device and a sending thread whose names hold ESC sequences (the kernel allows both).
    let ns = NetnsPair::new("esc", 231);
    let dev = "n\u{1b}[7m";
    for args in [
        &["link", "set", &ns.ns_if, "down"][..],
        &["link", "set", &ns.ns_if, "name", dev],
        &["link", "set", dev, "up"],
    ] {
        let mut full = vec!["-n", ns.name.as_str()];
        full.extend_from_slice(args);
        netdrop_tests::ip(&full);
    }
    let mut child = netdrop_tests::netdrop_command()
        .args([
            "watch", "--netns", &ns.name, "--port", "47140", "--count", "1",
        ])
        .args(["--duration", "30s", "--no-counters"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("netdrop: watching") {
        line.clear();
        assert!(
            std::io::BufRead::read_line(&mut err, &mut line).unwrap() > 0,
            "netdrop exited before attaching"
        );
    }
    let dst = SocketAddr::new(ns.ns_addr.parse().unwrap(), 47140);
    let src = format!("{}:0", ns.host_addr);
    std::thread::spawn(move || {
        let name = c"ev\x1b]0;x\x07";
        // SAFETY: names the calling thread; the string is NUL-terminated and short.
        unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) };
        udp_send(&src, dst);
    })
    .join()
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.stdout.iter().any(|&b| b == 0x1b || b == 0x07),
        "raw control bytes reached the terminal: {text:?}"
    );
    assert!(text.contains("dev n\\x1b[7m"), "{text}");
    assert!(text.contains("47140"), "{text}");
}

/// Drops of one flow (source port) among `lines`: its events and its "more like this" count.
fn per_flow(lines: &[Value], sport: u16) -> (u64, u64) {
    let of_flow = |l: &&Value| l["packet"]["sport"] == sport;
    let events = lines
        .iter()
        .filter(|l| l["type"] == "drop")
        .filter(of_flow)
        .count() as u64;
    let more = notice_total(
        lines
            .iter()
            .filter(|l| l["type"] == "suppressed")
            .filter(of_flow),
    );
    (events, more)
}

#[test]
fn rate_limited_drops_are_counted_exactly_per_flow() {
    // Two flows flood a closed port in a fresh namespace; each may show 50 events a second
    // per CPU, the rest are "more like this".
    const PER_FLOW: u64 = 10_000;
    let ns = NetnsPair::new("rl", 203);
    let port = "47200";
    // No budget: every drop reaches the rate limit.
    let w = Watch::start(&[
        "--rate-limit",
        "50",
        "--budget",
        "0",
        "--netns",
        &ns.name,
        "--port",
        port,
    ]);
    let dst: SocketAddr = format!("{}:{port}", ns.ns_addr).parse().unwrap();
    let (a, b) = ns.inside(|| {
        let a = std::net::UdpSocket::bind(format!("{}:0", ns.ns_addr)).unwrap();
        let b = std::net::UdpSocket::bind(format!("{}:0", ns.ns_addr)).unwrap();
        for _ in 0..PER_FLOW {
            a.send_to(b"x", dst).unwrap();
            b.send_to(b"x", dst).unwrap();
        }
        (
            a.local_addr().unwrap().port(),
            b.local_addr().unwrap().port(),
        )
    });
    std::thread::sleep(std::time::Duration::from_millis(500));
    let r = w.stop();
    assert!(r.status.success(), "{}", r.stderr);
    let s = r.summary.clone().expect("summary");
    let n = |k: &str| s[k].as_u64().unwrap_or_else(|| panic!("no {k} in {s:#}"));
    assert_eq!(n("matched"), 2 * PER_FLOW, "{s:#}");
    assert_eq!(n("rate_limit"), 50);
    assert_eq!(n("lost"), 0, "an 8 MiB ring holds these events: {s:#}");
    assert!(n("suppressed") > 0, "nothing suppressed: {s:#}");
    assert_eq!(
        r.unaccounted(),
        0,
        "every matched drop is delivered, suppressed or lost: {s:#}"
    );
    assert_eq!(n("delivered"), r.drops.len() as u64);
    for sport in [a, b] {
        let (events, more) = per_flow(&r.lines, sport);
        assert_eq!(
            events + more,
            PER_FLOW,
            "flow from port {sport}: {events} events + {more} more like this"
        );
        assert!(events > 0, "flow from port {sport} shows no event");
    }
    let notices = r.notices("suppressed");
    assert_eq!(notice_total(notices.iter().copied()), n("suppressed"));
    let notice = notices[0];
    assert_eq!(notice["reason"]["name"], "NO_SOCKET", "{notice:#}");
    assert_eq!(notice["packet"]["dport"], 47200);
    assert_eq!(notice["packet"]["dst"], ns.ns_addr.as_str());
    assert_eq!(notice["netns"]["inode"], ns.inode());
    assert!(
        r.stderr.contains(&format!(
            "{} suppressed by --rate-limit 50/s",
            n("suppressed")
        )),
        "{}",
        r.stderr
    );
}

/// Sends `n` datagrams from the host side of `ns` to `port` inside it (closed: each is a
/// NO_SOCKET drop in `__udp4_lib_rcv`).
fn flood_closed_port(ns: &NetnsPair, port: u16, n: u64) {
    let dst: SocketAddr = format!("{}:{port}", ns.ns_addr).parse().unwrap();
    let sock = std::net::UdpSocket::bind(format!("{}:0", ns.host_addr)).unwrap();
    for _ in 0..n {
        sock.send_to(b"x", dst).unwrap();
    }
}

/// Drops made by [`budget_bursts`].
const BURSTS: u64 = 20_000 + 500;

/// Two bursts to a closed `port` in `ns` from a thread pinned to CPU 0 (so both drop on one
/// CPU): 20,000 datagrams, then, more than a second later, 500. The second burst's first
/// examined drop finds the first one's count over budget unreported, and writes it to the
/// ring; what the second leaves over budget is read from the kernel's map at exit.
fn budget_bursts(ns: &NetnsPair, port: u16) {
    std::thread::scope(|s| {
        s.spawn(|| {
            netdrop_tests::pin_to_cpu(0);
            flood_closed_port(ns, port, 20_000);
            std::thread::sleep(std::time::Duration::from_millis(1100));
            flood_closed_port(ns, port, 500);
        });
    });
}

/// Checks a `--budget 100` run that flooded a closed port: the summary accounts for every
/// matched drop, the "more drops" notices add up to what went past the budget and name
/// the reason and location, and far fewer events were shown than drops made. Returns the
/// summary.
fn check_budget(r: &netdrop_tests::Report, flood: u64) -> Value {
    assert!(r.status.success(), "{}", r.stderr);
    let s = r.summary.clone().expect("summary");
    let n = |k: &str| s[k].as_u64().unwrap_or_else(|| panic!("no {k} in {s:#}"));
    assert_eq!(n("budget"), 100, "{s:#}");
    assert!(n("matched") >= flood, "{s:#}");
    assert!(n("over_budget") > 0, "nothing went past the budget: {s:#}");
    assert_eq!(
        r.unaccounted(),
        0,
        "every matched drop is delivered, suppressed, over budget or lost: {s:#}"
    );
    let notices = r.notices("over_budget");
    let more = notice_total(notices.iter().copied());
    assert_eq!(more, n("over_budget"), "notices add up to the summary");
    let ours = notices
        .iter()
        .find(|l| l["location"]["symbol"] == "__udp4_lib_rcv")
        .unwrap_or_else(|| panic!("no notice names __udp4_lib_rcv: {notices:#?}"));
    assert_eq!(ours["reason"]["name"], "NO_SOCKET", "{ours:#}");
    assert_eq!(ours["budget"], 100);
    // One notice came through the ring buffer, before the second burst's events; the
    // others were read from the kernel's map at exit, after every event.
    let first_notice = r.lines.iter().position(|l| l["type"] == "over_budget");
    let last_drop = r.lines.iter().rposition(|l| l["type"] == "drop");
    assert!(
        first_notice < last_drop,
        "no over_budget notice before the last drop event: none came through the ring"
    );
    // At most 100 examined per second per CPU for this pair, whatever the flood.
    let cpus = netdrop_tests::online_cpus() as f64;
    let seconds = s["duration_s"].as_f64().unwrap().ceil() + 1.0;
    let shown = r
        .drops
        .iter()
        .filter(|d| d["location"]["symbol"] == "__udp4_lib_rcv")
        .count() as f64;
    assert!(
        shown <= 100.0 * cpus * seconds,
        "{shown} events in {seconds}s on {cpus} CPUs: the budget did not hold"
    );
    assert!(
        r.stderr.contains(&format!(
            "{} counted past --budget 100/s per reason and location",
            n("over_budget")
        )),
        "{}",
        r.stderr
    );
    s
}

#[test]
fn the_budget_counts_exactly_what_it_does_not_examine() {
    // A namespace filter: the budget applies after it, so only this flood counts.
    let ns = NetnsPair::new("bg1", 205);
    let w = Watch::start(&["--budget", "100", "--rate-limit", "0", "--netns", &ns.name]);
    budget_bursts(&ns, 47400);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let r = w.stop();
    let s = check_budget(&r, BURSTS);
    assert_eq!(s["suppressed"], 0, "{s:#}");
    // The namespace's NO_SOCKET drops are the flood's: each one shown or in a notice.
    let no_socket = |l: &&Value| l["reason"]["name"] == "NO_SOCKET";
    let shown = r.drops.iter().filter(no_socket).count() as u64;
    let more = notice_total(r.notices("over_budget").into_iter().filter(no_socket));
    assert_eq!(shown + more, BURSTS, "{shown} shown + {more} more");
    assert!(shown > 0);
}

#[test]
fn the_budget_applies_before_the_headers_without_filters() {
    // No filter but the reason: the budget is checked before device and headers are read
    // (config::BUDGET_EARLY), and still accounts for every drop of the host.
    let ns = NetnsPair::new("bg2", 206);
    let w = Watch::start(&[
        "--budget",
        "100",
        "--rate-limit",
        "0",
        "--reason",
        "NO_SOCKET",
    ]);
    budget_bursts(&ns, 47401);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let r = w.stop();
    check_budget(&r, BURSTS);
    // The examined ones are full events of the flood: tuple, namespace.
    let d = r
        .drops
        .iter()
        .find(|d| d["packet"]["dport"] == 47401)
        .expect("an event of the flood");
    assert_eq!(d["netns"]["inode"], ns.inode(), "{d:#}");
}

#[test]
fn counters_are_polled_and_sigint_ends_watch_during_a_flood() {
    // A UDP flood keeps the ring buffer busy while an accept queue overflows in the same
    // namespace: the counter line still comes (polled on its own thread), and SIGINT sent
    // while the flood goes on ends the run with an exact summary.
    let ns = NetnsPair::new("fl", 204);
    let dst: SocketAddr = format!("{}:47300", ns.ns_addr).parse().unwrap();
    // The default rate limit: what an operator runs during a flood.
    let w = Watch::start(&["--netns", &ns.name]);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (r, sent) = std::thread::scope(|sc| {
        let flood = sc.spawn(|| {
            ns.inside(|| {
                let s = std::net::UdpSocket::bind(format!("{}:0", ns.ns_addr)).unwrap();
                let mut sent = 0u64;
                // Bounded, so a failed assertion below (which never sets `stop`) ends too.
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
                while !stop.load(std::sync::atomic::Ordering::Relaxed)
                    && std::time::Instant::now() < deadline
                {
                    s.send_to(b"x", dst).unwrap();
                    sent += 1;
                }
                sent
            })
        });
        w.wait_for_drops("the flood", 1000, |d| d["packet"]["dport"] == 47300);
        let addr = SocketAddr::new(ns.ns_addr.parse().unwrap(), 47301);
        let _listener = netdrop_tests::backlog1_listener(&ns, addr);
        let _conns: Vec<_> = (0..40)
            .map(|_| netdrop_tests::nonblocking_connect(addr))
            .collect();
        w.wait_for_line("a ListenOverflows counter line during the flood", |l| {
            l["type"] == "counter" && l["counter"] == "TcpExt.ListenOverflows"
        });
        // SIGINT while the flood goes on: watch must not wait for a quiet moment.
        let r = w.stop();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        (r, flood.join().unwrap())
    });
    assert!(r.status.success(), "{}", r.stderr);
    let s = r
        .summary
        .clone()
        .expect("a summary after SIGINT during a flood");
    let n = |k: &str| s[k].as_u64().unwrap();
    assert!(n("matched") >= 1000, "{s:#}");
    assert!(n("matched") <= sent, "{s:#}, sent {sent}");
    assert!(n("suppressed") > 0, "{s:#}");
    assert_eq!(r.unaccounted(), 0, "{s:#}");
    let c = r
        .counters
        .iter()
        .find(|c| c["counter"] == "TcpExt.ListenOverflows")
        .unwrap();
    assert_eq!(c["netns"]["inode"], ns.inode(), "{c:#}");
}
