//! Prometheus exposition on real drops: `promtool check metrics`, and a real Prometheus
//! server scraping it. Needs root and the Debian `prometheus` package (cargo xtask test
//! installs it): compiled only with `--features privileged`.
#![cfg(feature = "privileged")]

use std::{
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use netdrop_tests::{Watch, closed_udp_port, free_tcp_port, http_get, udp_to_loopback};

fn promtool(body: &str) -> (bool, String) {
    use std::io::Write;
    let mut p = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus)");
    p.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    let out = p.wait_with_output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn exporter_passes_promtool_and_counts_exactly() {
    let udp = closed_udp_port("127.0.0.1");
    let port = free_tcp_port();
    let addr = format!("127.0.0.1:{port}");
    let ex = Watch::spawn(
        &[
            "exporter",
            "--metrics-addr",
            &addr,
            "--metrics-locations",
            "5",
            "--metrics-flows",
            "5",
            "--port",
            &udp.to_string(),
        ],
        "netdrop: counting drops",
    );
    udp_to_loopback(udp, 7);
    let (status, headers, body) = http_get(port, "/metrics", None);
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(headers.contains("text/plain; version=0.0.4"), "{headers}");
    let (ok, lint) = promtool(&body);
    assert!(ok, "promtool check metrics failed:\n{lint}\n{body}");
    assert!(
        body.contains("netdrop_drops_total{reason=\"NO_SOCKET\"} 7\n"),
        "{body}"
    );
    assert!(
        body.contains(
            "netdrop_location_drops_total{reason=\"NO_SOCKET\",location=\"__udp4_lib_rcv+0x"
        ),
        "{body}"
    );
    assert!(
        body.contains(&format!("dport=\"{udp}\",netns=\"host\"}} 7\n")),
        "{body}"
    );
    assert!(
        body.contains("netdrop_device_drops_total{netns=\"host\",device=\"lo\"} 7\n"),
        "{body}"
    );

    let (_, headers, om) = http_get(
        port,
        "/metrics",
        Some("application/openmetrics-text; version=1.0.0"),
    );
    assert!(
        headers.contains("application/openmetrics-text"),
        "{headers}"
    );
    assert!(
        om.contains("# TYPE netdrop_drops counter\n") && om.ends_with("# EOF\n"),
        "{om}"
    );
    assert!(http_get(port, "/other", None).0.contains("404"));
    let r = ex.stop_with(libc::SIGTERM);
    assert!(r.status.success(), "{}", r.stderr);
}

#[test]
fn a_real_prometheus_scrapes_it() {
    let udp = closed_udp_port("127.0.0.1");
    let port = free_tcp_port();
    let addr = format!("127.0.0.1:{port}");
    // Any command can serve metrics while it runs; use stats here.
    let s = Watch::spawn(
        &[
            "stats",
            "--json",
            "--interval",
            "1",
            "--metrics-addr",
            &addr,
            "--port",
            &udp.to_string(),
        ],
        "netdrop: counting drops",
    );
    udp_to_loopback(udp, 5);

    let dir = std::env::temp_dir().join(format!("netdrop-prom-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: netdrop\n    static_configs:\n      - targets: ['{addr}']\n"),
    )
    .unwrap();
    let web = free_tcp_port();
    let mut prom = Command::new("prometheus");
    // SAFETY: prctl in the child before exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut prom, || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut prom = prom
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{web}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus (Debian package prometheus)");

    let query = |q: &str| -> Option<serde_json::Value> {
        let path = format!(
            "/api/v1/query?query={}",
            q.replace('{', "%7B")
                .replace('}', "%7D")
                .replace('"', "%22")
                .replace('=', "%3D")
        );
        let (status, _, body) = std::panic::catch_unwind(|| http_get(web, &path, None)).ok()?;
        if !status.contains("200") {
            return None;
        }
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        v["data"]["result"].as_array()?.first().cloned()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let sample = loop {
        if let Some(r) = query("netdrop_drops_total{reason=\"NO_SOCKET\"}") {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never stored netdrop_drops_total"
        );
        thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(sample["value"][1], "5", "{sample}");
    assert_eq!(sample["metric"]["job"], "netdrop");
    let up = query("up{job=\"netdrop\"}").expect("up series");
    assert_eq!(up["value"][1], "1");
    let _ = prom.kill();
    let _ = prom.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(s.stop().status.success());
}

#[test]
fn a_busy_flow_is_attributed_after_the_flow_table_filled() {
    // The kernel's flow table holds 64 flows; 300 come and go first. Once they are drained,
    // a new flow dropping 50 datagrams gets its own series (it used to go to
    // netdrop_drops_unattributed_total for good once the table was full).
    let udp = closed_udp_port("127.0.0.1");
    let port = free_tcp_port();
    let addr = format!("127.0.0.1:{port}");
    let ex = Watch::spawn(
        &[
            "exporter",
            "--metrics-addr",
            &addr,
            "--metrics-flows",
            "5",
            "--max-flows",
            "64",
            "--port",
            &udp.to_string(),
        ],
        "netdrop: counting drops",
    );
    let send_from = |src: &str, n: usize| {
        let s = std::net::UdpSocket::bind(format!("{src}:0")).unwrap();
        for _ in 0..n {
            s.send_to(b"x", ("127.0.0.1", udp)).unwrap();
        }
    };
    for i in 0..300u32 {
        send_from(&format!("127.0.{}.{}", 1 + i / 200, 1 + i % 200), 1);
    }
    // Two drains: the old flows leave the kernel's table.
    thread::sleep(Duration::from_millis(2500));
    send_from("127.0.9.9", 50);
    let want = |body: &str| {
        body.lines().any(|l| {
            l.starts_with("netdrop_flow_drops_total{")
                && l.contains("src=\"127.0.9.9\"")
                && l.ends_with(" 50")
        })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, _, body) = http_get(port, "/metrics", None);
        if want(&body) {
            // Every drop is counted per reason, attributed or not.
            assert!(
                body.contains("netdrop_drops_total{reason=\"NO_SOCKET\"} 350"),
                "{body}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the busy flow has no series of 50:\n{body}"
        );
        thread::sleep(Duration::from_millis(300));
    }
    assert!(ex.stop_with(libc::SIGTERM).status.success());
}
