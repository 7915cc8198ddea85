//! `deploy/`: the DaemonSet starts the exporter with flags it accepts, on the port the
//! manifests advertise, and every query of the Grafana dashboard asks for metrics (and
//! labels) that exporter really serves, on real drops: a closed port and an overflowing
//! listener in a network namespace. Needs root and promtool (Debian `prometheus`, which
//! `cargo xtask setup --test-deps` installs): compiled only with `--features privileged`.
#![cfg(feature = "privileged")]

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Command,
    thread,
    time::{Duration, Instant},
};

use netdrop_tests::{
    NetnsPair, Watch, backlog1_listener, free_tcp_port, http_get, nonblocking_connect, udp_send,
};
use serde_json::Value;
use serde_yaml::Value as Yaml;

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(path)
}

fn yaml(path: &str) -> Yaml {
    let text = std::fs::read_to_string(deploy(path)).unwrap();
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `key` of a YAML mapping, as a string (numbers included), or a panic naming it.
fn s(v: &Yaml, key: &str) -> String {
    match &v[key] {
        Yaml::String(s) => s.clone(),
        Yaml::Number(n) => n.to_string(),
        other => panic!("{key}: not a string or number: {other:?} in {v:?}"),
    }
}

/// The DaemonSet's container arguments, after checking the port they bind agrees with
/// the container port, the scrape annotations, the Service and the ServiceMonitor.
fn daemonset_args() -> Vec<String> {
    let ds = yaml("kubernetes/daemonset.yaml");
    assert_eq!(s(&ds, "kind"), "DaemonSet");
    let pod = &ds["spec"]["template"];
    let spec = &pod["spec"];
    assert_eq!(spec["hostNetwork"], Yaml::Bool(true));
    assert_eq!(spec["hostPID"], Yaml::Bool(true));
    let c = &spec["containers"][0];
    let args: Vec<String> = c["args"]
        .as_sequence()
        .expect("container args")
        .iter()
        .map(|a| a.as_str().expect("args are strings").to_owned())
        .collect();
    assert_eq!(args[0], "exporter", "{args:?}");
    let addr_at = args
        .iter()
        .position(|a| a == "--metrics-addr")
        .expect("--metrics-addr in the DaemonSet's args");
    let addr: SocketAddr = args[addr_at + 1].parse().expect("--metrics-addr ADDR:PORT");
    // Loopback would be unreachable for Prometheus.
    assert!(addr.ip().is_unspecified(), "{addr}");
    let port = addr.port().to_string();
    let cport = &c["ports"][0];
    assert_eq!(s(cport, "containerPort"), port);
    assert_eq!(s(cport, "hostPort"), port);
    let port_name = s(cport, "name");
    let ann = &pod["metadata"]["annotations"];
    assert_eq!(s(ann, "prometheus.io/scrape"), "true");
    assert_eq!(s(ann, "prometheus.io/port"), port);
    assert_eq!(s(ann, "prometheus.io/path"), "/metrics");
    assert_eq!(s(&c["readinessProbe"]["httpGet"], "port"), port_name);
    let svc = yaml("kubernetes/service.yaml");
    assert_eq!(s(&svc["spec"]["ports"][0], "targetPort"), port_name);
    assert_eq!(s(&svc["spec"]["ports"][0], "port"), port);
    let labels = &pod["metadata"]["labels"];
    assert_eq!(svc["spec"]["selector"], *labels);
    assert_eq!(ds["spec"]["selector"]["matchLabels"], *labels);
    let sm = yaml("kubernetes/servicemonitor.yaml");
    assert_eq!(s(&sm["spec"]["endpoints"][0], "port"), port_name);
    assert_eq!(s(&sm["spec"]["endpoints"][0], "path"), "/metrics");
    assert_eq!(
        sm["spec"]["selector"]["matchLabels"],
        svc["metadata"]["labels"]
    );
    args
}

/// Every PromQL expression of the dashboard: panel targets and the template variables'
/// `label_values(...)` queries (those as the metric selector they name).
fn dashboard_queries() -> Vec<String> {
    let text = std::fs::read_to_string(deploy("grafana/dashboard.json")).unwrap();
    let d: Value = serde_json::from_str(&text).expect("dashboard.json is JSON");
    let mut exprs = Vec::new();
    for p in d["panels"].as_array().expect("panels") {
        for t in p["targets"].as_array().expect("targets") {
            exprs.push(t["expr"].as_str().expect("expr").to_owned());
        }
    }
    for v in d["templating"]["list"].as_array().unwrap() {
        if let Some(q) = v["query"]["query"].as_str() {
            let inner = q
                .strip_prefix("label_values(")
                .and_then(|q| q.split_once(','))
                .unwrap_or_else(|| panic!("unexpected variable query {q}"))
                .0;
            exprs.push(inner.to_owned());
        }
    }
    exprs
}

/// Metric names (`netdrop_...`) an expression uses.
fn metrics_in(expr: &str) -> BTreeSet<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("netdrop_"))
        .map(str::to_owned)
        .collect()
}

/// Label names of every `by (...)` clause of an expression.
fn grouping_labels(expr: &str) -> BTreeSet<String> {
    let mut labels = BTreeSet::new();
    for part in expr.split("by (").skip(1) {
        let list = part.split_once(')').expect("closing parenthesis").0;
        labels.extend(list.split(',').map(|l| l.trim().to_owned()));
    }
    labels
}

/// Sample name -> label names seen on its samples, from a text exposition.
fn served(body: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let end = line.find(['{', ' ']).expect("a sample line");
        let labels = out.entry(line[..end].to_owned()).or_default();
        if line[end..].starts_with('{') {
            // name="value", values escaped: skip over quoted strings.
            let mut rest = &line[end + 1..];
            while let Some(eq) = rest.find("=\"") {
                labels.insert(rest[..eq].trim_start_matches(',').to_owned());
                let mut i = eq + 2;
                let bytes = rest.as_bytes();
                while bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                rest = &rest[i + 1..];
                if rest.starts_with('}') {
                    break;
                }
            }
        }
    }
    out
}

#[test]
fn dashboard_queries_use_what_the_daemonset_exporter_serves() {
    let mut args = daemonset_args();
    let exprs = dashboard_queries();
    // The panels the fleet view needs are there.
    let used: BTreeSet<String> = exprs.iter().flat_map(|e| metrics_in(e)).collect();
    for m in [
        "netdrop_drops_total",
        "netdrop_location_drops_total",
        "netdrop_listener_overflows_total",
        "netdrop_device_drops_total",
        "netdrop_events_lost_total",
    ] {
        assert!(used.contains(m), "the dashboard has no panel on {m}");
    }

    // The exporter exactly as the DaemonSet starts it, on a loopback port of ours.
    let port = free_tcp_port();
    let at = args.iter().position(|a| a == "--metrics-addr").unwrap();
    args[at + 1] = format!("127.0.0.1:{port}");
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let ex = Watch::spawn(&argv, "netdrop: counting drops");

    // Drops: a datagram to a closed port, and connection attempts overflowing a
    // backlog-1 listener, both in a namespace.
    let ns = NetnsPair::new("dp", 234);
    let closed = SocketAddr::new(ns.ns_addr.parse().unwrap(), 9331);
    udp_send(&format!("{}:0", ns.host_addr), closed);
    let laddr = SocketAddr::new(ns.ns_addr.parse().unwrap(), 9332);
    let listener = backlog1_listener(&ns, laddr);
    let conns: Vec<_> = (0..40).map(|_| nonblocking_connect(laddr)).collect();

    // Listener series appear once the once-a-second counter poll has named it.
    let limit = Instant::now() + Duration::from_secs(20);
    let body = loop {
        let (_, _, body) = http_get(port, "/metrics", None);
        if body.contains(&format!("port=\"{}\"", laddr.port())) {
            break body;
        }
        assert!(
            Instant::now() < limit,
            "no listener series within 20 s:\n{body}"
        );
        thread::sleep(Duration::from_millis(250));
    };
    let r = ex.stop_with(libc::SIGTERM);
    drop(conns);
    drop(listener);
    assert!(r.status.success(), "{}", r.stderr);
    assert!(
        body.contains(&format!(
            "netdrop_device_drops_total{{netns=\"{}\",device=\"{}\"}} ",
            ns.name, ns.ns_if
        )),
        "{body}"
    );

    let series = served(&body);
    for expr in &exprs {
        let metrics = metrics_in(expr);
        assert!(!metrics.is_empty(), "no netdrop metric in `{expr}`");
        for m in &metrics {
            let labels = series.get(m).unwrap_or_else(|| {
                panic!("`{expr}` uses {m}, which the exporter does not serve:\n{body}")
            });
            // instance and job are Prometheus's target labels, not the exporter's.
            for l in grouping_labels(expr)
                .iter()
                .filter(|l| !["instance", "job"].contains(&l.as_str()))
            {
                assert!(
                    labels.contains(l),
                    "`{expr}` groups by {l}, which {m} does not carry ({labels:?})"
                );
            }
        }
    }
    promtool_parses(&exprs);
}

/// `promtool check rules` on the expressions as recording rules, with Grafana's variables
/// given values.
fn promtool_parses(exprs: &[String]) {
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, e) in exprs.iter().enumerate() {
        let e = e
            .replace("$__rate_interval", "5m")
            .replace("$instance", ".*");
        // A YAML single-quoted scalar: quotes doubled.
        rules.push_str(&format!(
            "      - record: netdrop:dashboard_{i}\n        expr: '{}'\n",
            e.replace('\'', "''")
        ));
    }
    let file = std::env::temp_dir().join(format!("netdrop-dashboard-{}.yml", std::process::id()));
    std::fs::write(&file, &rules).unwrap();
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .expect("promtool (Debian package prometheus)");
    let _ = std::fs::remove_file(&file);
    assert!(
        out.status.success(),
        "promtool rejects a dashboard query:\n{}{}\n{rules}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // One rule per expression, all found.
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains(&format!("SUCCESS: {} rules found", exprs.len())),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
