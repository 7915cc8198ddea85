//! Prometheus text format 0.0.4 and OpenMetrics 1.0 exposition of the exact in-kernel
//! counts, served over HTTP at `/metrics`.
//!
//! Label sets are bounded: reasons are a fixed kernel list; namespaces, devices, listeners,
//! locations and flows are limited to the busiest N (locations and flows are off unless asked for);
//! flow labels leave out the source port, which is ephemeral.

use std::{collections::BTreeMap, fmt::Write as _, net::SocketAddr};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
    sync::{mpsc, oneshot},
};

use crate::{
    aggregate::{self, GroupBy, GroupKey, SortBy, Totals, listeners::ListenerTotals},
    error::Error,
    event::{self, Enricher, ReasonInfo},
    output::text,
};

/// What to export beyond per-reason counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetricsOptions {
    /// Busiest namespaces and devices exported (each).
    pub devices: usize,
    /// Busiest (reason, location) pairs exported; 0 = none.
    pub locations: usize,
    /// Busiest flows exported; 0 = none.
    pub flows: usize,
}

impl MetricsOptions {
    /// The kernel maps these metrics read (`netdrop_common::config` bits).
    pub fn config(&self) -> u32 {
        let mut bits = GroupBy::Reason.config();
        if self.devices > 0 {
            bits |= GroupBy::Dev.config();
        }
        if self.locations > 0 {
            bits |= GroupBy::Location.config();
        }
        if self.flows > 0 {
            bits |= GroupBy::Flow.config();
        }
        bits
    }
}

/// Exposition format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `text/plain; version=0.0.4`.
    Prometheus,
    /// `application/openmetrics-text; version=1.0.0`.
    OpenMetrics,
}

impl Format {
    /// Content type of the response.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }

    /// From an HTTP Accept header.
    pub fn negotiate(accept: &str) -> Self {
        if accept.contains("application/openmetrics-text") {
            Self::OpenMetrics
        } else {
            Self::Prometheus
        }
    }
}

struct Family {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    samples: Vec<(Vec<(&'static str, String)>, f64)>,
}

/// Renders the exposition of `t`, and of `listeners` when the command names overflowing
/// listeners (`None`: it does not look, so the family is left out).
pub fn render(
    t: &Totals,
    listeners: Option<&ListenerTotals>,
    e: &mut Enricher,
    hook: &str,
    opts: &MetricsOptions,
    format: Format,
) -> String {
    let c = &t.counters;
    let mut families = vec![
        Family {
            name: "netdrop_drops",
            help: "Packets the kernel dropped, by drop reason (exact, counted in the kernel, after filters).",
            kind: "counter",
            samples: per_group(t, e, GroupBy::Reason, usize::MAX, |e, k| match k {
                GroupKey::Reason(code) => vec![("reason", e.reasons.decode(code).name)],
                _ => Vec::new(),
            }),
        },
        single(
            "netdrop_drops_seen",
            "Drops the hook saw, before filters.",
            c.seen,
        ),
        single(
            "netdrop_events_lost",
            "Drop events not delivered because the ring buffer was full (counts stay exact).",
            c.lost,
        ),
        single(
            "netdrop_events_suppressed",
            "Drops watch counted but did not show because their flow and reason reached --rate-limit (0 outside watch).",
            c.suppressed,
        ),
        single(
            "netdrop_drops_over_budget",
            "Drops watch counted but did not examine because their reason and location reached --budget (0 outside watch).",
            c.over_budget,
        ),
        single(
            "netdrop_drops_not_traced",
            "Drops the kernel did not run netdrop's program for, because it was already running on that CPU.",
            c.missed,
        ),
        Family {
            name: "netdrop_drops_unattributed",
            help: "Drops counted in total but not in a per-location, per-device or per-flow table, because it was full.",
            kind: "counter",
            samples: [
                ("location", c.location_untracked),
                ("device", c.device_untracked),
                ("flow", c.flow_untracked),
            ]
            .into_iter()
            .map(|(m, v)| (vec![("table", m.to_owned())], v as f64))
            .collect(),
        },
    ];
    if opts.devices > 0 {
        families.push(Family {
            name: "netdrop_netns_drops",
            help: "Drops per network namespace (the busiest ones).",
            kind: "counter",
            samples: per_group(t, e, GroupBy::Netns, opts.devices, |e, k| match k {
                GroupKey::Netns(n) => vec![("netns", text::netns_name(&e.netns(n, "device")))],
                _ => Vec::new(),
            }),
        });
        families.push(Family {
            name: "netdrop_device_drops",
            help: "Drops per device and network namespace (the busiest ones).",
            kind: "counter",
            samples: per_group(t, e, GroupBy::Dev, opts.devices, |e, k| match k {
                GroupKey::Dev {
                    netns,
                    ifindex,
                    ifname,
                } => vec![
                    ("netns", text::netns_name(&e.netns(netns, "device"))),
                    (
                        "device",
                        if ifindex == 0 {
                            "none".to_owned()
                        } else {
                            event::c_str(&ifname)
                        },
                    ),
                ],
                _ => Vec::new(),
            }),
        });
    }
    if opts.devices > 0 {
        families.push(Family {
            name: "netdrop_pod_drops",
            help: "Drops per Kubernetes pod, in its network namespace (the busiest ones; pod is the name, or the UID where the node does not show it).",
            kind: "counter",
            samples: pods(t, e, opts.devices),
        });
    }
    if let Some(l) = listeners.filter(|_| opts.devices > 0) {
        families.push(Family {
            name: "netdrop_listener_overflows",
            help: "TcpExt.ListenOverflows growth of the namespace while this listener's accept queue was full (from counters + sock_diag; shared growth counts for each full listener; the busiest ones).",
            kind: "counter",
            samples: l
                .busiest(opts.devices)
                .into_iter()
                .map(|((netns, addr, port), v)| {
                    let labels = vec![
                        ("netns", text::netns_name(&e.netns(*netns, "procfs"))),
                        ("addr", addr.clone()),
                        ("port", port.to_string()),
                    ];
                    (labels, v as f64)
                })
                .collect(),
        });
    }
    if opts.locations > 0 {
        families.push(Family {
            name: "netdrop_location_drops",
            help: "Drops per kernel function that dropped and reason (the busiest ones).",
            kind: "counter",
            samples: per_group(t, e, GroupBy::Location, opts.locations, |e, k| match k {
                GroupKey::Location { reason, location } => {
                    let loc = e.location(location);
                    // An inferred reason (a kernel without reasons) is `NAME?`, as in text.
                    let reason = ReasonInfo::new(&e.reasons, reason, loc.symbol.as_deref());
                    vec![
                        ("reason", reason.label()),
                        ("location", text::location(&loc)),
                    ]
                }
                _ => Vec::new(),
            }),
        });
    }
    if opts.flows > 0 {
        families.push(Family {
            name: "netdrop_flow_drops",
            help: "Drops per flow (protocol, source, destination, destination port) and reason (the busiest ones).",
            kind: "counter",
            samples: flows(t, e, opts.flows),
        });
    }
    families.push(Family {
        name: "netdrop_hook_info",
        help: "The kernel hook netdrop is attached to.",
        kind: "gauge",
        samples: vec![(
            vec![
                ("hook", hook.to_owned()),
                ("version", env!("CARGO_PKG_VERSION").to_owned()),
            ],
            1.0,
        )],
    });
    let mut out = String::new();
    for f in &families {
        let counter = f.kind == "counter";
        let (type_name, sample_name) = match (format, counter) {
            (Format::OpenMetrics, true) => (f.name.to_owned(), format!("{}_total", f.name)),
            (Format::Prometheus, true) => {
                (format!("{}_total", f.name), format!("{}_total", f.name))
            }
            _ => (f.name.to_owned(), f.name.to_owned()),
        };
        let _ = writeln!(out, "# HELP {type_name} {}", f.help);
        let _ = writeln!(out, "# TYPE {type_name} {}", f.kind);
        for (labels, value) in &f.samples {
            out.push_str(&sample_name);
            if !labels.is_empty() {
                out.push('{');
                let parts: Vec<String> = labels
                    .iter()
                    .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                    .collect();
                out.push_str(&parts.join(","));
                out.push('}');
            }
            let _ = writeln!(out, " {value}");
        }
    }
    if format == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
    out
}

fn single(name: &'static str, help: &'static str, v: u64) -> Family {
    Family {
        name,
        help,
        kind: "counter",
        samples: vec![(Vec::new(), v as f64)],
    }
}

/// Samples of the `n` busiest groups, labelled by `labels`; groups whose labels collide
/// (two devices named alike in unnamed namespaces) are summed so no series repeats.
fn per_group(
    t: &Totals,
    e: &mut Enricher,
    by: GroupBy,
    n: usize,
    labels: impl Fn(&mut Enricher, GroupKey) -> Vec<(&'static str, String)>,
) -> Vec<(Vec<(&'static str, String)>, f64)> {
    let mut rows = aggregate::rows(by, None, t);
    aggregate::sort(&mut rows, SortBy::Total);
    let (kept, _, _) = aggregate::top_n(rows, n);
    let mut merged: BTreeMap<Vec<(&'static str, String)>, u64> = BTreeMap::new();
    for r in kept {
        *merged.entry(labels(e, r.key)).or_default() += r.total;
    }
    merged.into_iter().map(|(l, v)| (l, v as f64)).collect()
}

/// Pod samples, the `n` busiest pods (drops outside pods are not a pod's).
fn pods(t: &Totals, e: &mut Enricher, n: usize) -> Vec<(Vec<(&'static str, String)>, f64)> {
    let mut rows = super::stats::rows(e, GroupBy::Pod, None, t);
    rows.retain(|r| r.key != GroupKey::Pod(0));
    aggregate::sort(&mut rows, SortBy::Total);
    let (kept, _, _) = aggregate::top_n(rows, n);
    let mut merged: BTreeMap<Vec<(&'static str, String)>, u64> = BTreeMap::new();
    for r in kept {
        let GroupKey::Pod(id) = r.key else { continue };
        let Some(p) = e.containers().pod(id) else {
            continue;
        };
        let labels = vec![
            ("namespace", p.namespace.clone().unwrap_or_default()),
            ("pod", p.name.clone().unwrap_or_else(|| p.uid.clone())),
        ];
        *merged.entry(labels).or_default() += r.total;
    }
    merged.into_iter().map(|(l, v)| (l, v as f64)).collect()
}

/// Flow samples without the source port, the `n` busiest.
fn flows(t: &Totals, e: &mut Enricher, n: usize) -> Vec<(Vec<(&'static str, String)>, f64)> {
    let mut merged: BTreeMap<Vec<(&'static str, String)>, u64> = BTreeMap::new();
    for (k, &v) in &t.by_flow {
        let p = event::flow_packet(k);
        let labels = vec![
            ("reason", e.reasons.decode(k.reason).name),
            (
                "protocol",
                p.protocol.clone().or(p.family.clone()).unwrap_or_default(),
            ),
            ("src", p.src.clone().unwrap_or_default()),
            ("dst", p.dst.clone().unwrap_or_default()),
            ("dport", p.dport.map(|d| d.to_string()).unwrap_or_default()),
            ("netns", text::netns_name(&e.netns(k.netns, "device"))),
        ];
        *merged.entry(labels).or_default() += v;
    }
    let mut v: Vec<_> = merged.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v.truncate(n);
    v.into_iter().map(|(l, n)| (l, n as f64)).collect()
}

/// Escapes a label value (backslash, double quote, newline).
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A scrape waiting for a fresh rendering from the loop that owns the probe.
pub struct Scrape {
    pub format: Format,
    pub reply: oneshot::Sender<String>,
}

/// Binds `addr` and serves `/metrics`, asking for each response on the returned channel.
pub async fn serve(addr: SocketAddr) -> Result<mpsc::Receiver<Scrape>, Error> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(Error::io(format!("listening for metrics on {addr}")))?;
    let (tx, rx) = mpsc::channel(16);
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    tokio::spawn(async move {
        loop {
            let (mut conn, _) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    // Out of descriptors, for instance: do not spin.
                    tracing::debug!("metrics: accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            // Over the cap, a connection is closed at once rather than queued.
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                continue;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let _ = tokio::time::timeout(REQUEST_DEADLINE, handle(&mut conn, &tx)).await;
                drop(slot);
            });
        }
    });
    Ok(rx)
}

/// Connections served at once; more are closed on accept.
pub const MAX_CONNECTIONS: usize = 32;
/// The whole exchange (request read, scrape, response written) must fit in this.
pub const REQUEST_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

async fn handle(
    conn: &mut tokio::net::TcpStream,
    tx: &mpsc::Sender<Scrape>,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 8192];
    let mut len = 0;
    // Read the request head (we ignore any body).
    while !buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
        if len == buf.len() {
            return respond(
                conn,
                "431 Request Header Fields Too Large",
                "text/plain",
                "",
            )
            .await;
        }
        let n = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            conn.read(&mut buf[len..]),
        )
        .await
        .map_err(|_| std::io::Error::other("request timeout"))??;
        if n == 0 {
            return Ok(());
        }
        len += n;
    }
    let head = String::from_utf8_lossy(&buf[..len]);
    let mut lines = head.lines();
    let request = lines.next().unwrap_or("");
    let mut parts = request.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let accept = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("accept"))
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_default();
    match (method, path.split('?').next().unwrap_or("")) {
        ("GET", "/metrics") => {
            let format = Format::negotiate(&accept);
            let (reply, answer) = oneshot::channel();
            if tx.send(Scrape { format, reply }).await.is_err() {
                return respond(
                    conn,
                    "503 Service Unavailable",
                    "text/plain",
                    "netdrop is stopping\n",
                )
                .await;
            }
            match answer.await {
                Ok(body) => respond(conn, "200 OK", format.content_type(), &body).await,
                Err(_) => {
                    respond(
                        conn,
                        "503 Service Unavailable",
                        "text/plain",
                        "netdrop is stopping\n",
                    )
                    .await
                }
            }
        }
        ("GET", "/") => {
            respond(
                conn,
                "200 OK",
                "text/html",
                "<html><body><a href=\"/metrics\">netdrop metrics</a></body></html>\n",
            )
            .await
        }
        _ => {
            respond(
                conn,
                "404 Not Found",
                "text/plain",
                "only /metrics is served\n",
            )
            .await
        }
    }
}

async fn respond(
    conn: &mut tokio::net::TcpStream,
    status: &str,
    ctype: &str,
    body: &str,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await?;
    conn.write_all(body.as_bytes()).await?;
    conn.shutdown().await
}

#[cfg(test)]
mod tests {
    use netdrop_common::DeviceKey;

    use super::*;
    use crate::{
        kernel::{reasons::Reasons, tracefs::Format as Tp},
        testdata,
    };

    fn enricher() -> Enricher {
        let f = Tp::parse(&testdata::read("tracefs/kfree_skb-6.18.format")).unwrap();
        let reasons = Reasons::from_symbolic(&f.symbolic_values()).unwrap();
        Enricher::new(
            reasons,
            &testdata::path("kallsyms/6.1-with-veth"),
            &testdata::path(""),
        )
    }

    #[tokio::test(flavor = "current_thread")]
    async fn idle_connections_are_capped_and_scrapes_still_answered() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut rx = serve(addr).await.unwrap();
        tokio::spawn(async move {
            while let Some(s) = rx.recv().await {
                let _ = s.reply.send("netdrop_up 1\n".to_owned());
            }
        });
        // Fill every slot with connections that never send a request.
        let mut idle = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        // One more is closed at once instead of waiting in a queue.
        let mut extra = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut buf = Vec::new();
        let n = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            extra.read_to_end(&mut buf),
        )
        .await
        .expect("the connection over the cap was not closed");
        assert_eq!(n.unwrap_or(0), 0);
        // Freed slots serve again.
        idle.clear();
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut reply = String::new();
        c.read_to_string(&mut reply).await.unwrap();
        assert!(
            reply.starts_with("HTTP/1.1 200 OK") && reply.ends_with("netdrop_up 1\n"),
            "{reply}"
        );
    }

    fn totals() -> Totals {
        let mut t = Totals::default();
        t.counters.seen = 20;
        t.counters.lost = 2;
        t.counters.suppressed = 6;
        t.counters.over_budget = 9;
        t.by_reason.insert(3, 15);
        t.by_reason.insert(12, 5);
        for (i, name) in ["eth0", "eth1", "eth2"].iter().enumerate() {
            let mut ifname = [0u8; 16];
            ifname[..4].copy_from_slice(name.as_bytes());
            let key = DeviceKey {
                reason: 3,
                netns: 0,
                ifindex: i as u32 + 2,
                _pad: 0,
                ifname,
            };
            t.by_device.insert(key, 10 - i as u64);
        }
        t
    }

    #[test]
    fn prometheus_text() {
        let opts = MetricsOptions {
            devices: 2,
            locations: 0,
            flows: 0,
        };
        let mut listeners = ListenerTotals::default();
        let mut l = crate::output::text::tests::listener();
        listeners.add(std::slice::from_ref(&l));
        l.port = 9000;
        l.overflows = 1;
        listeners.add(&[l.clone(), l.clone(), l]);
        let m = render(
            &totals(),
            Some(&listeners),
            &mut enricher(),
            "tp \"btf\"",
            &opts,
            Format::Prometheus,
        );
        assert!(
            m.contains(
                "netdrop_listener_overflows_total{netns=\"7\",addr=\"10.0.0.2\",port=\"8080\"} 152\n"
            ),
            "{m}"
        );
        assert!(m.contains("port=\"9000\"} 3\n"), "{m}");
        assert!(m.contains("# TYPE netdrop_drops_total counter\n"), "{m}");
        assert!(m.contains("netdrop_drops_total{reason=\"NO_SOCKET\"} 15\n"));
        assert!(m.contains("netdrop_drops_total{reason=\"NETFILTER_DROP\"} 5\n"));
        assert!(m.contains("netdrop_events_lost_total 2\n"));
        assert!(m.contains("netdrop_events_suppressed_total 6\n"), "{m}");
        assert!(m.contains("netdrop_drops_over_budget_total 9\n"), "{m}");
        assert!(
            m.contains("netdrop_device_drops_total{netns=\"0\",device=\"eth0\"} 10\n"),
            "{m}"
        );
        // Bounded: the third device is not exported.
        assert!(!m.contains("eth2"));
        assert!(!m.contains("netdrop_location_drops"));
        assert!(
            m.contains("hook=\"tp \\\"btf\\\"\""),
            "label values are escaped"
        );
        assert!(!m.contains("# EOF"));
    }

    #[test]
    fn openmetrics_text() {
        let opts = MetricsOptions {
            devices: 0,
            locations: 0,
            flows: 0,
        };
        let m = render(
            &totals(),
            Some(&ListenerTotals::default()),
            &mut enricher(),
            "h",
            &opts,
            Format::OpenMetrics,
        );
        // --metrics-devices 0: no namespaces, devices or listeners.
        assert!(!m.contains("listener"));
        assert!(m.contains("# TYPE netdrop_drops counter\n"));
        assert!(m.contains("netdrop_drops_total{reason=\"NO_SOCKET\"} 15\n"));
        assert!(m.ends_with("# EOF\n"));
        assert_eq!(
            Format::negotiate("application/openmetrics-text; version=1.0.0,text/plain;q=0.5"),
            Format::OpenMetrics
        );
        assert_eq!(Format::negotiate("*/*"), Format::Prometheus);
    }

    #[test]
    fn options_choose_maps() {
        use netdrop_common::config;
        let none = MetricsOptions {
            devices: 0,
            locations: 0,
            flows: 0,
        };
        assert_eq!(none.config(), config::BY_REASON);
        let all = MetricsOptions {
            devices: 1,
            locations: 1,
            flows: 1,
        };
        assert_eq!(
            all.config() & (config::BY_DEVICE | config::BY_LOCATION | config::BY_FLOW),
            config::BY_DEVICE | config::BY_LOCATION | config::BY_FLOW
        );
    }

    #[test]
    fn pods_are_labelled_by_namespace_and_name() {
        let f = Tp::parse(&testdata::read("tracefs/kfree_skb-6.18.format")).unwrap();
        let reasons = Reasons::from_symbolic(&f.symbolic_values()).unwrap();
        let root = crate::kernel::containers::testing::fake_root("metrics");
        let mut e = Enricher::new(reasons, &testdata::path("kallsyms/6.1-with-veth"), &root);
        let key = |netns, ifindex| DeviceKey {
            reason: 3,
            netns,
            ifindex,
            _pad: 0,
            ifname: *b"lo\0\0\0\0\0\0\0\0\0\0\0\0\0\0",
        };
        let mut t = Totals::default();
        // The pod's namespace on two devices, a Docker container's, the host's.
        for (k, n) in [
            (key(200, 1), 5),
            (key(200, 2), 2),
            (key(300, 1), 9),
            (key(100, 1), 40),
        ] {
            t.by_device.insert(k, n);
        }
        let opts = |devices| MetricsOptions {
            devices,
            locations: 0,
            flows: 0,
        };
        let m = render(&t, None, &mut e, "h", &opts(2), Format::Prometheus);
        let pods: Vec<&str> = m
            .lines()
            .filter(|l| l.starts_with("netdrop_pod_drops_total"))
            .collect();
        assert_eq!(
            pods,
            ["netdrop_pod_drops_total{namespace=\"shop\",pod=\"web-0\"} 7"]
        );
        let m = render(&t, None, &mut e, "h", &opts(0), Format::Prometheus);
        assert!(!m.contains("netdrop_pod_drops"), "{m}");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
