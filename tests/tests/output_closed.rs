//! `netdrop watch --json | head -1`: once the reader of stdout is gone, watch exits at once,
//! even when no further drop comes to fail a write. Needs root: compiled only with
//! `--features privileged`.
#![cfg(feature = "privileged")]

use std::{
    io::{BufRead as _, BufReader, Read as _},
    net::{IpAddr, Ipv4Addr, SocketAddr},
    process::Stdio,
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use netdrop_tests::{closed_udp_port, netdrop_command, udp_send};
use serde_json::Value;

#[test]
fn watch_exits_when_the_reader_of_stdout_goes_away() {
    let port = closed_udp_port("127.0.0.1");
    let mut child = netdrop_command()
        .args([
            "watch",
            "--json",
            "--proto",
            "udp",
            "--port",
            &port.to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn netdrop watch");
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    stderr.read_line(&mut first).expect("read stderr");
    assert!(first.starts_with("netdrop: watching"), "{first}");
    // Whatever else it says is kept for the failure message.
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut rest = String::new();
        let _ = stderr.read_to_string(&mut rest);
        let _ = tx.send(rest);
    });

    let dst = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
    let src = udp_send("127.0.0.1:0", dst);
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).expect("read one line");
    let first: Value = serde_json::from_str(&line).expect("a JSON line");
    assert_eq!(first["type"], "drop", "{first}");
    assert_eq!(first["packet"]["sport"], src.port(), "{first}");
    assert_eq!(first["packet"]["dport"], port, "{first}");
    // What `head -1` does next: close its end and leave. No further drop comes.
    drop(stdout);

    let limit = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for netdrop") {
            break s;
        }
        if Instant::now() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "netdrop watch still ran 20 s after its reader went away; stderr: {}",
                rx.recv().unwrap_or_default()
            );
        }
        thread::sleep(Duration::from_millis(20));
    };
    let rest = rx.recv().unwrap_or_default();
    assert!(status.success(), "{status}: {rest}");
    // Nothing was left to report to a reader that is gone, and no error either.
    assert_eq!(rest, "", "stderr after the reader left");
}
