//! What README promises and no other test checks: `--btf FILE`, `--attach btf`, the text
//! format, `--count`, `--no-counters`, `--metrics-addr` on `watch` and `top`, and filters
//! on `exporter`. Needs root: compiled only with `--features privileged`.
#![cfg(feature = "privileged")]

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    os::fd::AsRawFd,
    process::{Child, Stdio},
    thread,
    time::{Duration, Instant},
};

use netdrop_tests::{
    NetnsPair, Watch, closed_udp_port, field, free_tcp_port, http_get, to_port, udp_send,
    udp_to_loopback,
};

/// Starts `netdrop ARGS` with plain (not JSON) stdout and waits until stderr shows `ready`.
fn spawn_plain(args: &[&str], ready: &str) -> Child {
    let mut child = netdrop_tests::netdrop_command()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn netdrop");
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains(ready) {
        line.clear();
        assert!(
            err.read_line(&mut line).unwrap() > 0,
            "netdrop {args:?} exited before `{ready}`"
        );
    }
    // Keep draining stderr so the child never blocks on it.
    thread::spawn(move || for _ in err.lines() {});
    child
}

/// The value of the sample `name` (exact label set) in an exposition, if present.
fn sample(body: &str, name: &str) -> Option<u64> {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
}

#[test]
fn btf_file_and_attach_btf_are_honoured() {
    let port = closed_udp_port("127.0.0.1");
    let p = port.to_string();
    let w = Watch::start(&[
        "--btf",
        "/sys/kernel/btf/vmlinux",
        "--attach",
        "btf",
        "--port",
        &p,
        "-v",
    ]);
    let dst = SocketAddr::new([127, 0, 0, 1].into(), port);
    let src = udp_send("127.0.0.1:0", dst);
    w.wait_for("udp", |d| d["packet"]["dport"] == port);
    let r = w.stop();
    assert!(
        r.stderr.contains("BTF raw tracepoint tp_btf/kfree_skb"),
        "{}",
        r.stderr
    );
    let d = to_port(&r.drops, port);
    assert_eq!(d.len(), 1, "{:#?}", r.drops);
    assert_eq!(field(d[0], "packet.sport"), src.port());
    assert_eq!(field(d[0], "reason.name"), "NO_SOCKET");
}

#[test]
fn text_lines_and_count_stop_by_themselves() {
    let port = closed_udp_port("127.0.0.1");
    let p = port.to_string();
    let child = spawn_plain(
        &["watch", "--port", &p, "--count", "2", "--duration", "60s"],
        "netdrop: watching",
    );
    let dst = SocketAddr::new([127, 0, 0, 1].into(), port);
    let src = udp_send("127.0.0.1:0", dst);
    udp_send("127.0.0.1:0", dst);
    let started = Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "--count 2 did not stop it"
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(&format!(":{port} ")))
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    let first = lines[0];
    for part in [
        " NO_SOCKET ",
        " udp ",
        &format!("127.0.0.1:{} -> 127.0.0.1:{port}", src.port()),
        " dev lo ",
        " netns host ",
        " at __udp4_lib_rcv+0x",
        " len ",
        " cpu ",
        " task ",
    ] {
        assert!(first.contains(part), "`{part}` missing from: {first}");
    }
    // The end-of-run histogram follows the drops.
    assert!(
        text.contains("NO_SOCKET") && text.contains("total"),
        "{text}"
    );
}

/// A listener with backlog 1 that never accepts, in `ns`, and `n` connection attempts: the
/// kernel counts TcpExt.ListenOverflows there.
fn overflow_listener(ns: &NetnsPair, port: u16, n: usize) -> (std::net::TcpListener, Vec<i32>) {
    let at: SocketAddr = format!("{}:{port}", ns.ns_addr).parse().unwrap();
    let listener = ns.inside(|| {
        let l = std::net::TcpListener::bind(at).unwrap();
        // SAFETY: listen(2) on a listening socket we own.
        assert_eq!(unsafe { libc::listen(l.as_raw_fd(), 1) }, 0);
        l
    });
    let fds = (0..n)
        .map(|_| {
            // SAFETY: a fresh non-blocking socket we own; EINPROGRESS is expected.
            unsafe {
                let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_NONBLOCK, 0);
                assert!(fd >= 0);
                let (sa, len) = netdrop_tests::sockaddr(at);
                libc::connect(fd, (&raw const sa).cast(), len);
                fd
            }
        })
        .collect();
    (listener, fds)
}

#[test]
fn no_counters_hides_counter_lines_and_they_show_without_it() {
    let ns = NetnsPair::new("pc", 232);
    let with = Watch::start(&["--netns", &ns.name]);
    let without = Watch::start(&["--netns", &ns.name, "--no-counters"]);
    let (listener, fds) = overflow_listener(&ns, 47150, 12);
    with.wait_for_line("a ListenOverflows counter line", |l| {
        l["type"] == "counter" && l["counter"] == "TcpExt.ListenOverflows"
    });
    // The counter poller runs every second: give the other watch two polls.
    thread::sleep(Duration::from_millis(2500));
    let (rw, rn) = (with.stop(), without.stop());
    drop(listener);
    for fd in fds {
        // SAFETY: closing descriptors we own.
        unsafe { libc::close(fd) };
    }
    let c = rw
        .counters
        .iter()
        .find(|c| c["counter"] == "TcpExt.ListenOverflows")
        .unwrap();
    assert_eq!(field(c, "netns.inode"), ns.inode());
    assert!(
        rn.counters.is_empty(),
        "--no-counters printed {:#?}",
        rn.counters
    );
    assert!(
        rn.summary.as_ref().unwrap()["counters"]
            .as_array()
            .is_none_or(|c| c.is_empty()),
        "{:#?}",
        rn.summary
    );
}

#[test]
fn metrics_addr_serves_while_watch_and_top_run() {
    let udp = closed_udp_port("127.0.0.1");
    let u = udp.to_string();
    for cmd in ["watch", "top"] {
        let port = free_tcp_port();
        let addr = format!("127.0.0.1:{port}");
        // top with stdout not a terminal prints plain reports instead of the TUI.
        let mut args = vec![cmd, "--port", &u, "--metrics-addr", &addr];
        if cmd == "watch" {
            args.push("--json");
        }
        let mut child = spawn_plain(&args, "netdrop: serving metrics on");
        udp_to_loopback(udp, 6);
        let deadline = Instant::now() + Duration::from_secs(20);
        let want = "netdrop_drops_total{reason=\"NO_SOCKET\"}";
        loop {
            let (status, _, body) = http_get(port, "/metrics", None);
            assert_eq!(status, "HTTP/1.1 200 OK", "{cmd}");
            if sample(&body, want) == Some(6) {
                break;
            }
            assert!(Instant::now() < deadline, "{cmd}: no `{want} 6` in\n{body}");
            thread::sleep(Duration::from_millis(200));
        }
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        assert!(child.wait().unwrap().success(), "{cmd} after SIGTERM");
    }
}

#[test]
fn exporter_filters_count_only_what_they_select() {
    let ns = NetnsPair::new("pe", 233);
    let port = free_tcp_port();
    let addr = format!("127.0.0.1:{port}");
    let ex = Watch::spawn(
        &[
            "exporter",
            "--metrics-addr",
            &addr,
            "--netns",
            &ns.name,
            "--proto",
            "ipv6",
        ],
        "netdrop: counting drops",
    );
    ns.inside(|| {
        let s4 = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let s6 = std::net::UdpSocket::bind("[::1]:0").unwrap();
        for _ in 0..9 {
            s4.send_to(b"x", "127.0.0.1:47160").unwrap();
        }
        for _ in 0..4 {
            s6.send_to(b"x", "[::1]:47160").unwrap();
        }
    });
    udp_to_loopback(closed_udp_port("127.0.0.1"), 5);
    let (_, _, body) = http_get(port, "/metrics", None);
    assert_eq!(
        sample(&body, "netdrop_drops_total{reason=\"NO_SOCKET\"}"),
        Some(4),
        "{body}"
    );
    assert!(ex.stop_with(libc::SIGTERM).status.success());
}
