//! `netdrop top` in a real terminal (tmux, 80x24) against real drops, and its plain
//! fallback when stdout is not a terminal. Needs root: `--features privileged`.
#![cfg(feature = "privileged")]

use std::{
    process::Command,
    thread,
    time::{Duration, Instant},
};

use netdrop_tests::{
    NetnsPair, backlog1_listener, closed_udp_port, netdrop_bin, nonblocking_connect,
    udp_to_loopback,
};

fn tmux(args: &[&str]) -> String {
    let out = Command::new("tmux").args(args).output().expect("tmux");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn screen(session: &str) -> String {
    tmux(&["capture-pane", "-p", "-t", session])
}

fn wait_screen(session: &str, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = screen(session);
        if pred(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "screen never showed {what}:\n{s}"
        );
        thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn interactive_screen_and_keys() {
    let port = closed_udp_port("127.0.0.1");
    let session = format!("ndtop{}", std::process::id());
    let cmd = format!("{} top --port {port}", netdrop_bin().display());
    let _ = tmux(&["kill-session", "-t", &session]);
    tmux(&[
        "new-session",
        "-d",
        "-s",
        &session,
        "-x",
        "80",
        "-y",
        "24",
        &cmd,
    ]);
    wait_screen(&session, "the header", |s| s.contains("netdrop top:"));
    udp_to_loopback(port, 6);
    // The whole frame: a capture can catch one half drawn.
    let s = wait_screen(&session, "six NO_SOCKET drops", |s| {
        s.lines()
            .any(|l| l.contains("NO_SOCKET") && l.split_whitespace().nth(1) == Some("6"))
            && s.contains("by reason (sort: rate)")
            && s.contains("q quit")
    });
    assert!(s.lines().count() <= 24);
    assert!(s.contains("by reason (sort: rate)"), "{s}");
    assert!(s.contains("q quit"), "{s}");

    tmux(&["send-keys", "-t", &session, "g"]);
    let s = wait_screen(&session, "the location grouping", |s| {
        s.contains("by location")
    });
    assert!(s.contains("__udp4_lib_rcv+0x"), "{s}");
    tmux(&["send-keys", "-t", &session, "3"]);
    let s = wait_screen(&session, "the flow grouping", |s| s.contains("by flow"));
    assert!(s.contains(&format!("-> 127.0.0.1:{port}")), "{s}");
    tmux(&["send-keys", "-t", &session, "s"]);
    wait_screen(&session, "total order", |s| s.contains("(sort: total)"));
    tmux(&["send-keys", "-t", &session, "p"]);
    wait_screen(&session, "pause", |s| s.contains("[paused]"));

    tmux(&["send-keys", "-t", &session, "q"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Command::new("tmux")
        .args(["has-session", "-t", &session])
        .status()
        .unwrap()
        .success()
    {
        assert!(Instant::now() < deadline, "top did not quit on q");
        thread::sleep(Duration::from_millis(100));
    }
}

/// Starts `cmd` in a detached 80x24 tmux session named `session`.
fn tmux_session(session: &str, cmd: &str) {
    let _ = tmux(&["kill-session", "-t", session]);
    tmux(&[
        "new-session",
        "-d",
        "-s",
        session,
        "-x",
        "80",
        "-y",
        "24",
        cmd,
    ]);
}

#[test]
fn help_overlay_and_listener_grouping() {
    const PORT: u16 = 9341;
    let ns = NetnsPair::new("tl", 235);
    let session = format!("ndtopl{}", std::process::id());
    let cmd = format!("{} top --netns {}", netdrop_bin().display(), ns.name);
    tmux_session(&session, &cmd);
    wait_screen(&session, "the header", |s| s.contains("netdrop top:"));

    tmux(&["send-keys", "-t", &session, "?"]);
    let s = wait_screen(&session, "the help", |s| s.contains("netdrop top: keys"));
    assert!(
        s.contains("l             by listener (accept queue overflows)"),
        "{s}"
    );
    assert!(
        s.contains("red     a queue, buffer or table ran out"),
        "{s}"
    );
    tmux(&["send-keys", "-t", &session, "Escape"]);
    wait_screen(&session, "the help closed", |s| {
        !s.contains("netdrop top: keys") && s.contains("netdrop top:")
    });

    tmux(&["send-keys", "-t", &session, "l"]);
    wait_screen(&session, "the listener grouping", |s| {
        s.contains("by listener") && s.contains("(no listener has overflowed since start)")
    });
    // A backlog-1 listener nobody accepts from, and 40 connection attempts.
    let addr = std::net::SocketAddr::new(ns.ns_addr.parse().unwrap(), PORT);
    let listener = backlog1_listener(&ns, addr);
    let conns: Vec<_> = (0..40).map(|_| nonblocking_connect(addr)).collect();
    let label = format!("{}:{PORT} netns {} full 2/1 ", ns.ns_addr, ns.name);
    // The table's row, not the LISTENER line under the header.
    let is_row = |l: &&str| l.contains(&label) && !l.starts_with("LISTENER");
    let s = wait_screen(&session, "the listener row", |s| {
        s.lines().any(|l| is_row(&l))
    });
    let row = s.lines().find(is_row).unwrap();
    // drops/s, total, share 100.0% (the only listener), then the listener and its owner.
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert!(cols[1].parse::<u64>().unwrap() > 0, "{row}");
    assert_eq!(cols[2], "100.0%", "{row}");
    // The process holding the socket (this test) follows, cut at the screen's edge.
    let owner = format!("full 2/1 {}[{}]", comm(), std::process::id());
    let shown = row.trim_end().split_once("full 2/1 ").unwrap().1;
    assert!(
        !shown.is_empty() && owner.starts_with(&format!("full 2/1 {shown}")),
        "{row}"
    );
    drop(conns);
    drop(listener);
    tmux(&["send-keys", "-t", &session, "q"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Command::new("tmux")
        .args(["has-session", "-t", &session])
        .status()
        .unwrap()
        .success()
    {
        assert!(Instant::now() < deadline, "top did not quit on q");
        thread::sleep(Duration::from_millis(100));
    }
}

/// This test process's name as the kernel keeps it (the owner of the listener).
fn comm() -> String {
    std::fs::read_to_string("/proc/self/comm")
        .unwrap()
        .trim_end()
        .to_owned()
}

#[test]
fn plain_reports_when_not_a_terminal() {
    let port = closed_udp_port("127.0.0.1");
    let child = Command::new(netdrop_bin())
        .args(["top", "--count", "3", "--port", &port.to_string()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    thread::sleep(Duration::from_millis(1500));
    udp_to_loopback(port, 2);
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("stdout is not a terminal"));
    assert_eq!(text.matches(" by reason\n").count(), 3, "{text}");
    assert!(text.contains("NO_SOCKET"), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "no terminal escapes in plain output"
    );
}
