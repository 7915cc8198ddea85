//! `netdrop record` and reading recordings back (`watch`, `stats`, `top` with `--from`)
//! against real drops. Needs root: compiled only with `--features privileged`.
#![cfg(feature = "privileged")]

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    thread,
    time::{Duration, Instant},
};

use netdrop_tests::{NetnsPair, Watch, ip, run, run_cmd, udp_send};
use serde_json::Value;

/// A fresh path for a recording (removed first: `record` refuses to overwrite).
fn recording_path(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("netdrop-test-{name}.ndr"));
    let _ = std::fs::remove_file(&p);
    p
}

fn record(path: &Path, args: &[&str]) -> Watch {
    let mut full = vec!["record", "--output", path.to_str().unwrap()];
    full.extend_from_slice(args);
    Watch::spawn(&full, "netdrop: recording drops")
}

/// Runs `netdrop ARGS`; (exit success, stdout JSON lines, stderr).
fn read_back(args: &[&str]) -> (bool, Vec<Value>, String) {
    let out = run(args);
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    (
        out.status.success(),
        lines,
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// Waits until the recording at `path` holds a line satisfying `pred`.
fn wait_in_file(path: &Path, what: &str, pred: impl Fn(&Value) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .any(|v| pred(&v))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no {what} in {} within 20 s:\n{text}",
            path.display()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// (reason, src, sport, dst, dport) of each drop, sorted.
fn tuples(drops: &[Value]) -> Vec<(String, String, u64, String, u64)> {
    let mut t: Vec<_> = drops
        .iter()
        .filter(|d| d["type"] == "drop")
        .map(|d| {
            (
                d["reason"]["name"].as_str().unwrap().to_owned(),
                d["packet"]["src"].as_str().unwrap().to_owned(),
                d["packet"]["sport"].as_u64().unwrap(),
                d["packet"]["dst"].as_str().unwrap().to_owned(),
                d["packet"]["dport"].as_u64().unwrap(),
            )
        })
        .collect();
    t.sort();
    t
}

/// label -> total of the groups of a stats report.
fn group_totals(report: &Value) -> BTreeMap<String, u64> {
    report["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["label"].as_str().unwrap().to_owned(),
                g["total"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn a_recording_gives_the_live_answers_offline() {
    const CLOSED: u64 = 7;
    const FIREWALLED: u64 = 4;
    let ns = NetnsPair::new("rec1", 171);
    ns.nft("add table inet ndrec");
    ns.nft("add chain inet ndrec input { type filter hook input priority 0 ; }");
    ns.nft("add rule inet ndrec input udp dport 47202 drop");
    let path = recording_path("live");
    let filters = ["--netns", ns.name.as_str(), "--proto", "udp"];
    let rec = record(&path, &filters);
    let mut stats_args = vec!["stats", "--json", "--interval", "1"];
    stats_args.extend_from_slice(&filters);
    let live_stats = Watch::spawn(&stats_args, "netdrop: counting drops");
    let live_watch = Watch::start(&filters);
    let live_diagnose = Watch::spawn(
        &[&["diagnose", "--json", "--duration", "5m"][..], &filters].concat(),
        "netdrop: diagnosing",
    );

    let src = format!("{}:0", ns.host_addr);
    for _ in 0..CLOSED {
        udp_send(&src, format!("{}:47201", ns.ns_addr).parse().unwrap());
    }
    for _ in 0..FIREWALLED {
        udp_send(&src, format!("{}:47202", ns.ns_addr).parse().unwrap());
    }
    let all = (CLOSED + FIREWALLED) as usize;
    live_watch.wait_for_drops("the datagrams", all, |_| true);
    live_stats.wait_for_line("a report with every drop", |r| {
        r["drops"]["total"] == CLOSED + FIREWALLED
    });
    wait_in_file(&path, "a stats snapshot with every drop", |v| {
        v["type"] == "stats" && v["report"]["drops"]["total"] == CLOSED + FIREWALLED
    });
    // Stopped once every drop is counted (the datagrams arrived at the watch above).
    let live_diagnose = live_diagnose.stop();
    let live_watch = live_watch.stop();
    let live_stats = live_stats.stop();
    let rec = rec.stop();
    assert!(live_diagnose.status.success(), "{}", live_diagnose.stderr);
    assert!(rec.status.success(), "{}", rec.stderr);
    assert!(
        rec.stderr
            .contains(&format!("recorded {all} drops ({all} matched, 0 lost)")),
        "{}",
        rec.stderr
    );

    // Created readable by its owner only: it holds addresses.
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");

    let text = std::fs::read_to_string(&path).unwrap();
    let header: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(header["netdrop_recording"], 2);
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert_eq!(header["kernel"], release.trim());
    assert!(
        header["hooks"][0]
            .as_str()
            .unwrap()
            .starts_with("kfree_skb: "),
        "{header:#}"
    );
    assert_eq!(
        header["filters"],
        serde_json::json!(["--netns", ns.name, "--proto", "udp"])
    );
    let types: Vec<String> = text
        .lines()
        .skip(1)
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["type"].to_string())
        .collect();
    assert_eq!(types.first().map(String::as_str), Some("\"settings\""));
    assert_eq!(types.last().map(String::as_str), Some("\"end\""));

    // stats --from: the exact counts the live stats printed for the same drops.
    let (ok, reports, stderr) = read_back(&["stats", "--from", path.to_str().unwrap(), "--json"]);
    assert!(ok, "{stderr}");
    assert!(
        stderr.is_empty(),
        "a complete recording reads silently: {stderr}"
    );
    let offline = reports.last().unwrap();
    let live = live_stats.lines.last().unwrap();
    assert_eq!(offline["drops"]["total"], CLOSED + FIREWALLED);
    assert_eq!(offline["drops"]["total"], live["drops"]["total"]);
    let expected = BTreeMap::from([
        ("NETFILTER_DROP".to_owned(), FIREWALLED),
        ("NO_SOCKET".to_owned(), CLOSED),
    ]);
    assert_eq!(group_totals(offline), expected, "{offline:#}");
    assert_eq!(group_totals(live), expected, "{live:#}");

    // Any grouping, as recorded: per flow, every datagram was a flow of its own.
    let (ok, reports, stderr) = read_back(&[
        "stats",
        "--from",
        path.to_str().unwrap(),
        "--json",
        "--by",
        "flow",
        "--top",
        "3",
    ]);
    assert!(ok, "{stderr}");
    let flows = reports.last().unwrap();
    assert_eq!(flows["by"], "flow");
    assert_eq!(flows["groups"].as_array().unwrap().len(), 3);
    assert!(
        flows["groups"]
            .as_array()
            .unwrap()
            .iter()
            .all(|g| g["total"] == 1),
        "{flows:#}"
    );
    assert_eq!(flows["other"]["total"], CLOSED + FIREWALLED - 3);

    // watch --from: the same drop records as live.
    let (ok, lines, stderr) = read_back(&["watch", "--from", path.to_str().unwrap(), "--json"]);
    assert!(ok, "{stderr}");
    assert_eq!(tuples(&lines), tuples(&live_watch.drops));
    assert_eq!(tuples(&lines).len(), all);
    let summary = lines.last().unwrap();
    assert_eq!(summary["type"], "summary");
    assert_eq!(summary["matched"], CLOSED + FIREWALLED);
    let nf: Vec<&Value> = lines
        .iter()
        .filter(|d| d["reason"]["name"] == "NETFILTER_DROP")
        .collect();
    assert_eq!(nf.len() as u64, FIREWALLED);
    assert!(
        nf.iter()
            .all(|d| d["netfilter"]["hook"] == "input" && d["netns"]["name"] == ns.name.as_str()),
        "{nf:#?}"
    );

    // Filters apply to the recorded drops as the kernel applies them live.
    let (ok, lines, stderr) = read_back(&[
        "watch",
        "--from",
        path.to_str().unwrap(),
        "--json",
        "--port",
        "47202",
    ]);
    assert!(ok, "{stderr}");
    assert_eq!(lines.len() as u64, FIREWALLED, "no summary when filtered");
    assert!(
        lines
            .iter()
            .all(|d| d["packet"]["dport"] == 47202 && d["reason"]["name"] == "NETFILTER_DROP")
    );
    assert!(
        stderr.contains(&format!("{FIREWALLED} of the {all} recorded drops shown")),
        "{stderr}"
    );

    // top --from: the plain report, with the recorded totals.
    let out = run(&["top", "--from", path.to_str().unwrap()]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let last = text.rsplit("by reason").next().unwrap();
    let row = |name: &str| {
        last.lines()
            .find(|l| l.trim_end().ends_with(name))
            .unwrap_or_else(|| panic!("no {name} row in:\n{text}"))
            .split_whitespace()
            .nth(1)
            .unwrap()
            .to_owned()
    };
    assert_eq!(row("NO_SOCKET"), CLOSED.to_string(), "{text}");
    assert_eq!(row("NETFILTER_DROP"), FIREWALLED.to_string(), "{text}");

    // diagnose --from: the findings from the recorded counts.
    let (ok, docs, stderr) = read_back(&["diagnose", "--from", path.to_str().unwrap(), "--json"]);
    assert!(ok, "{stderr}");
    let findings: Vec<(String, u64)> = docs[0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["class"].as_str().unwrap().to_owned(),
                f["drops"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        findings,
        [
            ("no_socket".to_owned(), CLOSED),
            ("firewall_rule".to_owned(), FIREWALLED)
        ],
        "{:#}",
        docs[0]
    );
    assert_eq!(docs[0]["evidence"]["drops"], CLOSED + FIREWALLED);
    // The rule, matched against the namespace's ruleset when recording ended, named as
    // live `diagnose` names it over the same drops.
    let live = &live_diagnose.lines[0];
    let firewall = |report: &Value| finding(report, "firewall_rule").clone();
    let rule = rule_object(&firewall(&docs[0]));
    let handle = nft_handle(&ns, "ndrec", "udp dport 47202 drop");
    assert_eq!(rule["name"], format!("inet ndrec input (handle {handle})"));
    assert_eq!(rule["detail"], "udp dport 47202 drop");
    assert_eq!(rule["netns"]["name"], ns.name.as_str());
    assert_eq!(rule, rule_object(&firewall(live)));
    assert_eq!(firewall(&docs[0])["objects"], firewall(live)["objects"]);
    assert_eq!(firewall(&docs[0])["basis"], firewall(live)["basis"]);
    let unavailable = docs[0]["evidence"]["unavailable"].to_string();
    assert!(!unavailable.contains("nftables"), "{unavailable}");
    let _ = std::fs::remove_file(&path);
}

/// The finding of class `id` in a `diagnose --json` report.
fn finding<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["class"] == id)
        .unwrap_or_else(|| panic!("no `{id}` finding in {report:#}"))
}

/// The `rule` object of a firewall finding.
fn rule_object(f: &Value) -> Value {
    f["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["kind"] == "rule")
        .unwrap_or_else(|| panic!("no rule named: {f:#}"))
        .clone()
}

/// The handle of the rule of table `table` reading `text`, as `nft -a` shows it.
fn nft_handle(ns: &NetnsPair, table: &str, text: &str) -> u64 {
    let out = ns.inside(|| {
        std::process::Command::new("nft")
            .args(["-a", "list", "table", "inet", table])
            .output()
            .unwrap()
    });
    let listing = String::from_utf8(out.stdout).unwrap();
    listing
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix(&format!("{text} # handle "))?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no `{text}` rule in:\n{listing}"))
}

#[test]
fn a_recording_names_the_route_and_the_settings_of_the_namespace_as_live() {
    let ns = NetnsPair::new("rec5", 175);
    ns.sysctl("net.ipv4.ip_forward", "1");
    ip(&["route", "replace", "203.0.113.0/24", "via", &ns.ns_addr]);
    let path = recording_path("route");
    let filters = ["--netns", ns.name.as_str()];
    let rec = record(&path, &filters);
    let live = Watch::spawn(
        &[&["diagnose", "--json", "--duration", "5m"][..], &filters].concat(),
        "netdrop: diagnosing",
    );
    let dst: SocketAddr = "203.0.113.5:47220".parse().unwrap();
    udp_send(&format!("{}:0", ns.host_addr), dst);
    wait_in_file(&path, "the no-route drop", |v| {
        v["type"] == "drop" && v["packet"]["dst"] == "203.0.113.5"
    });
    thread::sleep(Duration::from_millis(1500));
    let live = live.stop();
    let rec = rec.stop();
    ip(&["route", "del", "203.0.113.0/24"]);
    assert!(live.status.success(), "{}", live.stderr);
    assert!(rec.status.success(), "{}", rec.stderr);
    let live = &live.lines[0];

    let (ok, docs, stderr) = read_back(&["diagnose", "--from", path.to_str().unwrap(), "--json"]);
    let _ = std::fs::remove_file(&path);
    assert!(ok, "{stderr}");
    let f = finding(&docs[0], "no_route");
    let d = f["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["kind"] == "destination" && o["name"] == "203.0.113.5")
        .unwrap_or_else(|| panic!("no destination named: {f:#}"));
    assert_eq!(d["netns"]["name"], ns.name.as_str());
    let answer = d["detail"].as_str().unwrap();
    assert!(answer.contains("unreachable"), "{answer}");
    // ip_forward as set in the namespace, not netdrop's own.
    let forward = f["knobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "net.ipv4.ip_forward" && k["netns"]["name"] == ns.name.as_str())
        .unwrap_or_else(|| panic!("no ip_forward of the namespace: {f:#}"));
    assert_eq!(forward["value"], "1");
    let live_f = finding(live, "no_route");
    assert_eq!(f["objects"], live_f["objects"]);
    assert_eq!(f["knobs"], live_f["knobs"]);
    assert_eq!(f["severity"], live_f["severity"]);
}

#[test]
fn a_recording_cut_by_sigkill_keeps_what_was_written() {
    const N: u64 = 5;
    let ns = NetnsPair::new("rec2", 172);
    let path = recording_path("killed");
    let rec = record(&path, &["--netns", &ns.name, "--port", "47203"]);
    let dst: SocketAddr = format!("{}:47203", ns.ns_addr).parse().unwrap();
    for _ in 0..N {
        udp_send(&format!("{}:0", ns.host_addr), dst);
    }
    wait_in_file(&path, "a stats snapshot with every drop", |v| {
        v["type"] == "stats" && v["report"]["drops"]["total"] == N
    });
    let killed = rec.stop_with(libc::SIGKILL);
    assert!(!killed.status.success());
    let p = path.to_str().unwrap();

    let (ok, lines, stderr) = read_back(&["watch", "--from", p, "--json"]);
    assert!(ok, "{stderr}");
    assert_eq!(lines.len() as u64, N, "{lines:#?}");
    assert!(lines.iter().all(|d| d["packet"]["dport"] == 47203));
    assert!(
        stderr.contains("has no end marker: the recording was cut short"),
        "{stderr}"
    );
    let (ok, reports, stderr) = read_back(&["stats", "--from", p, "--json"]);
    assert!(ok, "{stderr}");
    assert_eq!(reports.last().unwrap()["drops"]["total"], N);
    assert_eq!(reports.last().unwrap()["groups"][0]["label"], "NO_SOCKET");

    // A line cut in the middle (killed while writing) is said and skipped.
    let text = std::fs::read_to_string(&path).unwrap();
    let drop_line = text
        .lines()
        .find(|l| l.contains("\"type\":\"drop\""))
        .unwrap();
    let cut = recording_path("cut");
    std::fs::write(&cut, format!("{text}{}", &drop_line[..drop_line.len() / 2])).unwrap();
    let (ok, lines, stderr) = read_back(&["watch", "--from", cut.to_str().unwrap(), "--json"]);
    assert!(ok, "{stderr}");
    assert_eq!(lines.len() as u64, N);
    assert!(stderr.contains("ends in a line cut short"), "{stderr}");
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(&cut);
}

#[test]
fn bad_recordings_and_overwrites_are_refused_in_one_sentence() {
    let newer = recording_path("newer");
    std::fs::write(
        &newer,
        "{\"netdrop_recording\": 3, \"kernel\": \"7.0\"}\n{\"type\":\"drop\"}\n",
    )
    .unwrap();
    for cmd in ["watch", "stats", "top"] {
        let out = run(&[cmd, "--from", newer.to_str().unwrap()]);
        assert!(!out.status.success(), "{cmd}");
        assert_eq!(
            String::from_utf8(out.stderr).unwrap(),
            format!(
                "netdrop: {} is a version 3 recording, newer than this netdrop reads (version 2 \
                 and older): read it with a newer netdrop\n",
                newer.display()
            )
        );
    }
    let out = run(&["stats", "--from", "/etc/hostname"]);
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "netdrop: /etc/hostname is not a netdrop recording (its first line is not a recording \
         header; `netdrop record --output FILE` writes them)\n"
    );

    // An existing file is kept unless --force.
    let out = run(&["record", "--output", newer.to_str().unwrap()]);
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        format!(
            "netdrop: {} already exists: give another file name, or --force to overwrite it\n",
            newer.display()
        )
    );
    assert!(
        std::fs::read_to_string(&newer)
            .unwrap()
            .contains("\"netdrop_recording\": 3")
    );
    // With --force it is replaced, and a mode that let others read it is narrowed.
    std::fs::set_permissions(&newer, std::fs::Permissions::from_mode(0o644)).unwrap();
    let p = newer.to_str().unwrap();
    let out = run(&[
        "record",
        "--output",
        p,
        "--force",
        "--duration",
        "1s",
        "--port",
        "1",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mode = std::fs::metadata(&newer).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    let text = std::fs::read_to_string(&newer).unwrap();
    let header: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(header["netdrop_recording"], 2);
    assert_eq!(header["filters"], serde_json::json!(["--port", "1"]));
    let end: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(end["type"], "end");
    assert_eq!(end["stopped_by"], "duration");
    let _ = std::fs::remove_file(&newer);
}

#[test]
fn terminal_controls_in_a_recording_reach_the_terminal_escaped() {
    // A recording is untrusted input: it may come from anywhere.
    let path = recording_path("escapes");
    let header = r#"{"netdrop_recording":1,"netdrop":"0.1.0","kernel":"6.18","hooks":[],"started":"2026-12-02T00:00:00.000000000Z","clock_offset_ns":0,"filters":[],"interval_s":1.0}"#;
    let drop = r#"{"type":"drop","time":"2026-12-02T00:00:01.000000000Z","mono_ns":1000000000,"cpu":0,"reason":{"name":"NO_SOCKET\u001b]0;owned\u0007","code":3,"subsystem":null},"location":{"address":"0xffffffff81000000","symbol":"__udp4_lib_rcv","offset":1212,"module":null},"packet":{"length":11,"family":"ipv4","protocol":"udp","src":"10.1.0.1","dst":"10.1.0.2","sport":4000,"dport":9,"tcp_flags":null,"icmp_type":null,"icmp_code":null,"fragment":false},"device":{"ifindex":2,"name":"eth\u001b[2J0"},"netns":{"inode":1,"name":"blue\nfake line","source":"device"},"running_task":{"pid":1,"tid":1,"comm":"evil\u001b[31m"},"stack":null}"#;
    std::fs::write(&path, format!("{header}\n{drop}\n")).unwrap();
    let out = run(&["watch", "--from", path.to_str().unwrap()]);
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        !stdout.contains('\u{1b}') && !stdout.contains('\u{7}'),
        "{stdout:?}"
    );
    assert_eq!(stdout.lines().count(), 1, "{stdout:?}");
    for escaped in [
        "eth\\x1b[2J0",
        "evil\\x1b[31m",
        "blue\\x0afake line",
        "\\x07",
    ] {
        assert!(stdout.contains(escaped), "{escaped} in {stdout:?}");
    }
    let _ = std::fs::remove_file(&path);
}

#[test]
fn a_recording_names_the_dropping_qdisc_as_live() {
    let ns = NetnsPair::new("rec6", 176);
    // A slow shaper whose queue holds two packets.
    let tc = |args: &[&str]| {
        let mut full = vec![
            "netns", "exec", &ns.name, "tc", "qdisc", "add", "dev", &ns.ns_if,
        ];
        full.extend_from_slice(args);
        run_cmd("ip", &full);
    };
    tc(&[
        "root", "handle", "1:", "tbf", "rate", "8kbit", "burst", "1600", "latency", "1s",
    ]);
    tc(&["parent", "1:1", "handle", "10:", "pfifo", "limit", "2"]);
    let path = recording_path("qdisc");
    let filters = ["--netns", ns.name.as_str()];
    let rec = record(&path, &filters);
    let live = Watch::spawn(
        &[&["diagnose", "--json", "--duration", "5m"][..], &filters].concat(),
        "netdrop: diagnosing",
    );
    let dst: SocketAddr = format!("{}:47250", ns.host_addr).parse().unwrap();
    ns.inside(|| {
        let s = std::net::UdpSocket::bind(format!("{}:0", ns.ns_addr)).unwrap();
        for _ in 0..40 {
            let _ = s.send_to(&[1u8; 1000], dst);
        }
    });
    wait_in_file(&path, "a qdisc drop", |v| {
        v["type"] == "drop" && v["reason"]["name"] == "QDISC_DROP"
    });
    thread::sleep(Duration::from_millis(1500));
    let live = live.stop();
    let rec = rec.stop();
    assert!(live.status.success(), "{}", live.stderr);
    assert!(rec.status.success(), "{}", rec.stderr);
    let live = &live.lines[0];

    let (ok, docs, stderr) = read_back(&["diagnose", "--from", path.to_str().unwrap(), "--json"]);
    let _ = std::fs::remove_file(&path);
    assert!(ok, "{stderr}");
    let qdiscs = |report: &Value| -> Vec<Value> {
        finding(report, "qdisc")["objects"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|o| o["kind"] == "qdisc")
            .cloned()
            .collect()
    };
    let recorded = qdiscs(&docs[0]);
    let q = recorded
        .iter()
        .find(|o| o["name"] == format!("pfifo on {}", ns.ns_if))
        .unwrap_or_else(|| panic!("no pfifo named: {recorded:#?}"));
    assert_eq!(q["netns"]["name"], ns.name.as_str());
    assert_eq!(q["detail"], "limit 2 packets");
    assert!(q["drops"].as_u64().unwrap() >= 20, "{q}");
    assert_eq!(recorded, qdiscs(live));
}
