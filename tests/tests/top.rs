//! `netdrop top` in a real terminal (tmux, 80x24) against real drops, and its plain
//! fallback when stdout is not a terminal. Needs root: `--features privileged`.
#![cfg(feature = "privileged")]

use std::{
    process::Command,
    thread,
    time::{Duration, Instant},
};

use netdrop_tests::{closed_udp_port, netdrop_bin, udp_to_loopback};

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
    let s = wait_screen(&session, "six NO_SOCKET drops", |s| {
        s.lines()
            .any(|l| l.contains("NO_SOCKET") && l.split_whitespace().nth(1) == Some("6"))
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
