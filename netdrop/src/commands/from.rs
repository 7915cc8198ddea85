//! `--from FILE`: `watch`, `stats`, `top` and `diagnose` reading a recording made by
//! `netdrop record` (see [`crate::output::recording`]) instead of the kernel, printing
//! what the live command prints. The records come from [`crate::source::Recording`].

use std::{
    fs::File,
    io::{self, BufWriter, Write},
    path::Path,
};

use crate::{
    aggregate::{GroupBy, SortBy},
    cli::{FilterArgs, StatsArgs, TopArgs, WatchArgs},
    diagnose::evidence::{
        Count, CounterDelta, DeviceCount, Evidence, FlowCount, Listener, LocationCount,
    },
    error::Error,
    output::{
        JsonLine, json,
        printable::printable,
        recording::{Header, Record},
        stats::{self, StatsReport},
        text,
    },
    source::{RecordFilter, Recording},
    time::Clock,
};

/// `line` with every control character escaped, line by line: whatever a recording holds
/// reaches the terminal only as text.
fn safe(line: &str) -> String {
    line.split('\n')
        .map(|l| printable(l).into_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Refuses a flag that needs the running kernel when reading a recording.
fn refuse(given: bool, flag: &str, why: &str) -> Result<(), Error> {
    if given {
        return Err(Error::BadArgument(format!(
            "{flag} cannot be used with --from: {why}"
        )));
    }
    Ok(())
}

/// Filters given to `stats` or `top` with `--from`: the counts were taken in the kernel
/// with the recording's filters and cannot be narrowed afterwards.
/// What `stats --from` and `top --from` cannot honour: filters (the counts were taken in
/// the kernel with the recording's own) and metrics (served from live counts only).
fn refuse_for_counts(f: &FilterArgs, metrics: bool) -> Result<(), Error> {
    refuse_filters(f)?;
    refuse(
        metrics,
        "--metrics-addr",
        "metrics are served from live counts only",
    )
}

fn refuse_filters(f: &FilterArgs) -> Result<(), Error> {
    let given = !f.reason.is_empty()
        || !f.exclude_reason.is_empty()
        || f.proto.is_some()
        || f.host.is_some()
        || f.src.is_some()
        || f.dst.is_some()
        || f.port.is_some()
        || f.netns.is_some()
        || f.iface.is_some();
    refuse(
        given,
        "a filter",
        "recorded counts were taken in the kernel with the recording's own filters and \
         cannot be narrowed afterwards; `watch --from` filters the recorded drops",
    )
}

/// The recording's clock: its `mono_ns` to the wall-clock time of the recorded machine.
fn recorded_clock(h: &Header) -> Clock {
    Clock::from_offset(i128::from(h.clock_offset_ns))
}

/// `watch --from FILE`: the recorded drops that pass the filters, then (without filters)
/// the recorded summary.
pub fn watch_from(args: &WatchArgs, path: &Path) -> Result<(), Error> {
    refuse(
        args.pcap.is_some(),
        "--pcap",
        "recordings keep no packet bytes",
    )?;
    refuse(args.stack, "--stack", "recordings keep no kernel stacks")?;
    refuse(
        args.duration.is_some(),
        "--duration",
        "a recording is read to its end (use --count to stop earlier)",
    )?;
    refuse(
        args.metrics.metrics_addr.is_some(),
        "--metrics-addr",
        "metrics are served from live counts only",
    )?;
    let netns = args.filter.netns.clone();
    let spec = FilterArgs {
        netns: None,
        ..args.filter.clone()
    }
    .spec(Path::new("/"))?;
    let filter = RecordFilter::new(spec.clone(), netns);
    let mut rec = Recording::open(path)?;
    let clock = recorded_clock(&rec.header);
    let mut out = BufWriter::new(io::stdout().lock());
    let mut shown = 0u64;
    let mut recorded = 0u64;
    let mut summary = None;
    let res = (|| -> Result<(), Error> {
        while let Some(r) = rec.next_record()? {
            let line = match r {
                Record::Drop(d) => {
                    recorded += 1;
                    if !filter.keeps(&d) || args.count.is_some_and(|n| shown >= n) {
                        continue;
                    }
                    shown += 1;
                    if args.json {
                        json_line(&JsonLine::Drop(d))
                    } else {
                        safe(&text::drop_line(&d, &clock.local_hms(d.mono_ns)))
                    }
                }
                Record::Lost(n) => {
                    if args.json {
                        json_line(&JsonLine::Lost(n))
                    } else {
                        safe(&text::lost_line(&n))
                    }
                }
                Record::Counter(n) => {
                    if args.no_counters || !filter.keeps_counters() {
                        continue;
                    }
                    if args.json {
                        json_line(&JsonLine::Counter(n))
                    } else {
                        let t = local_of(&clock, &n.time);
                        safe(&text::counter_line(&n, &t))
                    }
                }
                Record::Listener(l) => {
                    if args.no_counters || !spec.keeps_listener(l.port, l.family == "ipv6") {
                        continue;
                    }
                    if filter_netns_hides(&args.filter, &l.netns) {
                        continue;
                    }
                    if args.json {
                        json_line(&JsonLine::Listener(l))
                    } else {
                        let t = local_of(&clock, &l.time);
                        safe(&text::listener_line(&l, &t))
                    }
                }
                Record::Summary {
                    summary: s,
                    histogram,
                } => {
                    summary = Some((s, histogram));
                    continue;
                }
                Record::Stats { .. }
                | Record::Settings(_)
                | Record::Objects { .. }
                | Record::End(_) => continue,
            };
            if writeln!(out, "{line}").is_err() {
                return Ok(());
            }
        }
        // The recorded summary holds for every recorded drop: shown only unfiltered.
        if let (Some((s, h)), true) = (&summary, filter.is_empty()) {
            if args.json {
                let _ = writeln!(out, "{}", json_line(&JsonLine::Summary(s.clone())));
            } else {
                let mut buf = Vec::new();
                let _ = text::write_summary(&mut buf, s, h);
                let _ = write!(out, "{}", safe(&String::from_utf8_lossy(&buf)));
            }
        }
        Ok(())
    })();
    let _ = out.flush();
    res?;
    eprintln!("netdrop: {shown} of the {recorded} recorded drops shown");
    Ok(())
}

/// True when `--netns NAME|INODE` was given and `ns` is not that namespace.
fn filter_netns_hides(f: &FilterArgs, ns: &crate::event::Netns) -> bool {
    f.netns
        .as_deref()
        .is_some_and(|want| match want.parse::<u32>() {
            Ok(inode) => ns.inode != inode,
            Err(_) => ns.name.as_deref() != Some(want),
        })
}

fn json_line(l: &JsonLine) -> String {
    let mut buf = Vec::new();
    let _ = json::write_line(&mut buf, l);
    let s = String::from_utf8_lossy(&buf).into_owned();
    s.trim_end_matches('\n').to_owned()
}

/// Local time of day of an RFC 3339 time written by the recorder; the text itself when it
/// is not one.
fn local_of(clock: &Clock, rfc3339: &str) -> String {
    match parse_rfc3339(rfc3339) {
        Some(unix_ns) => {
            let mono = unix_ns - clock.unix_ns(0);
            clock.local_hms(mono.max(0) as u64)
        }
        None => rfc3339.to_owned(),
    }
}

/// `2026-11-22T04:12:33.123456789Z` to nanoseconds since the Unix epoch.
fn parse_rfc3339(s: &str) -> Option<i128> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(str::parse::<i64>);
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(str::parse::<i64>);
    let (h, min, sec) = (t.next()?.ok()?, t.next()?.ok()?, t.next()?.ok()?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || frac.len() > 9 {
        return None;
    }
    let nanos: i128 = format!("{frac:0<9}").parse().ok()?;
    // Days from civil (H. Hinnant's algorithm), the inverse of `time::civil_from_days`.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + min * 60 + sec;
    Some(i128::from(secs) * 1_000_000_000 + nanos)
}

/// The recorded stats snapshots of grouping `by`, each with its CLOCK_MONOTONIC time.
fn snapshots(path: &Path, by: GroupBy) -> Result<(Header, Vec<(StatsReport, u64)>), Error> {
    // Streamed: a recording of a flood holds millions of drops, and only snapshots count.
    let mut rec = Recording::open(path)?;
    let mut reports = Vec::new();
    while let Some(r) = rec.next_record()? {
        if let Record::Stats { report, mono_ns } = r
            && report.by == by.name()
        {
            reports.push((report, mono_ns));
        }
    }
    let header = rec.header;
    if reports.is_empty() {
        return Err(Error::BadArgument(format!(
            "{} holds no stats snapshot (the recording was stopped within its first \
             interval): `watch --from` shows the drops it holds",
            path.display()
        )));
    }
    Ok((header, reports))
}

/// `report` with its groups sorted by `sort` and cut at `top` (0: all), the rest summed
/// in `other`, as `stats` shows them live.
fn arrange(mut r: StatsReport, sort: SortBy, top: usize) -> StatsReport {
    // Stable: the recorded order (by total, then key) settles ties as live.
    r.groups.sort_by(|a, b| {
        let (ka, kb) = match sort {
            SortBy::Rate => ((a.interval, a.total), (b.interval, b.total)),
            SortBy::Total => ((a.total, a.interval), (b.total, b.interval)),
        };
        kb.cmp(&ka)
    });
    if top != 0 && r.groups.len() > top {
        let rest = r.groups.split_off(top);
        for g in rest {
            r.other.interval += g.interval;
            r.other.total += g.total;
        }
        r.other.rate = if r.interval_s > 0.0 {
            r.other.interval as f64 / r.interval_s
        } else {
            0.0
        };
    }
    r
}

/// Prints the snapshots as reports (text or JSON lines), at most `count`.
fn print_reports(
    header: &Header,
    reports: Vec<(StatsReport, u64)>,
    json_out: bool,
    sort: SortBy,
    top: usize,
    count: Option<u64>,
) -> Result<(), Error> {
    let clock = recorded_clock(header);
    let mut out = BufWriter::new(io::stdout().lock());
    let n = count.map_or(usize::MAX, |c| c as usize);
    for (r, mono_ns) in reports.into_iter().take(n) {
        let r = arrange(r, sort, top);
        let text = if json_out {
            let mut s = serde_json::to_string(&r).unwrap_or_default();
            s.push('\n');
            s
        } else {
            let mut buf = Vec::new();
            stats::write_text(&mut buf, &r, &clock.local_hms(mono_ns))
                .map_err(Error::io("formatting a report"))?;
            safe(&String::from_utf8_lossy(&buf))
        };
        match out.write_all(text.as_bytes()) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
            Err(e) => return Err(Error::io("writing to stdout")(e)),
        }
    }
    match out.flush() {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(Error::io("writing to stdout")(e)),
        _ => Ok(()),
    }
}

/// `stats --from FILE`: the recorded exact counts, one report per recorded snapshot; the
/// last holds the totals of the whole recording.
pub fn stats_from(args: &StatsArgs, path: &Path) -> Result<(), Error> {
    refuse_for_counts(&args.filter, args.metrics.metrics_addr.is_some())?;
    let (header, reports) = snapshots(path, args.by)?;
    print_reports(&header, reports, args.json, args.sort, args.top, args.count)
}

/// Groups `top` shows, as live.
const TOP_ROWS: usize = 50;

/// `top --from FILE`: the plain report `top` prints when stdout is not a terminal, for
/// each recorded snapshot.
pub fn top_from(args: &TopArgs, path: &Path) -> Result<(), Error> {
    refuse_for_counts(&args.filter, args.metrics.metrics_addr.is_some())?;
    let (header, reports) = snapshots(path, args.by)?;
    print_reports(&header, reports, false, SortBy::Rate, TOP_ROWS, args.count)
}

/// True when the first line of `path` is a recording header (`diagnose --from` reads
/// recordings and saved `diagnose --json` documents).
pub fn is_recording(path: &Path) -> bool {
    let Ok(file) = File::open(path) else {
        return false;
    };
    let mut first = Vec::new();
    let read = io::BufRead::read_until(
        &mut io::Read::take(io::BufReader::new(file), 1 << 20),
        b'\n',
        &mut first,
    );
    read.is_ok()
        && serde_json::from_slice::<serde_json::Value>(&first)
            .is_ok_and(|v| v.get("netdrop_recording").is_some())
}

/// The evidence `diagnose` would have gathered over the recording, from what it holds:
/// the exact counts of its last snapshot, sampled drops, counter growth, listeners and
/// sockets named, the objects the drops involve (settings of their namespaces, nftables
/// rules, routes, qdiscs, as `record` read them at its end); and the time of its end.
/// What a recording does not hold (per-CPU backlog; in a version 1 recording or one cut
/// short, the objects and the settings of other namespaces) is listed as unavailable.
pub fn evidence(path: &Path) -> Result<(Evidence, String), Error> {
    evidence_of(Recording::open(path)?, path)
}

/// [`evidence`] from an open recording.
pub(crate) fn evidence_of<R: io::BufRead>(
    mut rec: Recording<R>,
    path: &Path,
) -> Result<(Evidence, String), Error> {
    use std::collections::BTreeMap;

    use crate::commands::diagnose::{SAMPLES_PER_REASON, TOP, keep_listeners, keep_sockets};

    let mut last: BTreeMap<String, StatsReport> = BTreeMap::new();
    let mut samples = Vec::new();
    let mut per_reason: BTreeMap<String, usize> = BTreeMap::new();
    let mut counters: Vec<CounterDelta> = Vec::new();
    let mut listeners = Vec::new();
    let mut sockets = Vec::new();
    let mut knobs = Vec::new();
    let mut objects = None;
    let mut summary = None;
    let mut end_time = None;
    while let Some(r) = rec.next_record()? {
        match r {
            Record::Drop(d) => {
                let n = per_reason.entry(d.reason.name.clone()).or_default();
                if *n < SAMPLES_PER_REASON {
                    *n += 1;
                    samples.push(d);
                }
            }
            Record::Counter(c) => {
                let inode = c.netns.as_ref().map(|n| n.inode);
                match counters
                    .iter_mut()
                    .find(|k| k.name == c.counter && k.netns.as_ref().map(|n| n.inode) == inode)
                {
                    Some(k) => {
                        k.delta += c.delta;
                        k.now = c.total;
                    }
                    None => counters.push(CounterDelta {
                        netns: c.netns,
                        name: c.counter,
                        delta: c.delta,
                        now: c.total,
                    }),
                }
            }
            Record::Listener(l) => keep_listeners(&mut listeners, vec![l]),
            Record::Stats { mut report, .. } => {
                keep_sockets(&mut sockets, std::mem::take(&mut report.sockets));
                last.insert(report.by.clone(), report);
            }
            Record::Settings(s) => knobs = s.knobs,
            Record::Objects { objects: o, .. } => objects = Some(o),
            Record::Summary { summary: s, .. } => summary = Some(s),
            Record::End(e) => end_time = Some(e.time),
            Record::Lost(_) => {}
        }
    }
    let header = rec.header;
    let by = |g: GroupBy| last.get(g.name());
    let Some(reasons) = by(GroupBy::Reason) else {
        return Err(Error::BadArgument(format!(
            "{} holds no stats snapshot (the recording was stopped within its first \
             interval): there are no counts to diagnose",
            path.display()
        )));
    };
    let reason_name = |g: &crate::output::stats::GroupRow| {
        g.reason
            .as_ref()
            .map_or_else(|| g.label.clone(), |r| r.name.clone())
    };
    let mut counts: Vec<Count> = reasons
        .groups
        .iter()
        .filter(|g| g.total > 0)
        .map(|g| Count {
            name: reason_name(g),
            count: g.total,
            inferred: false,
        })
        .collect();
    let kernel_reasons = counts.is_empty() || counts.iter().any(|c| c.name != "UNKNOWN");
    if !kernel_reasons && let Some(locations) = by(GroupBy::Location) {
        // Every drop is UNKNOWN: name what the locations stand for instead, as live.
        counts = Count::summed(locations.groups.iter().map(|g| {
            let inferred = g.reason.as_ref().is_some_and(|r| r.inferred);
            (reason_name(g), inferred, g.total)
        }));
    }
    counts.sort_by(|a, b| b.count.cmp(&a.count).then(a.name.cmp(&b.name)));
    let rows = |g: GroupBy| by(g).map(|r| r.groups.clone()).unwrap_or_default();
    let locations = rows(GroupBy::Location)
        .into_iter()
        .take(TOP)
        .map(|g| LocationCount {
            reason: reason_name(&g),
            location: g.location.as_ref().map_or_else(String::new, text::location),
            count: g.total,
        })
        .collect();
    let flows = rows(GroupBy::Flow)
        .into_iter()
        .filter_map(|g| {
            Some(FlowCount {
                reason: reason_name(&g),
                packet: g.flow.clone()?,
                netns: g.netns.clone(),
                count: g.total,
            })
        })
        .take(TOP)
        .collect();
    let mut devices: Vec<DeviceCount> = rows(GroupBy::Dev)
        .into_iter()
        .flat_map(|g| {
            let device = g
                .device
                .as_ref()
                .map_or_else(|| "-".to_owned(), |d| d.name.clone());
            g.reasons
                .iter()
                .map(|r| DeviceCount {
                    reason: r.name.clone(),
                    device: device.clone(),
                    netns: g.netns.clone(),
                    count: r.count,
                })
                .collect::<Vec<_>>()
        })
        .collect();
    devices.sort_by_key(|d| std::cmp::Reverse(d.count));
    devices.truncate(TOP);
    let hook = summary.as_ref().map_or_else(
        || {
            header
                .hooks
                .first()
                .map(|h| h.trim_start_matches("kfree_skb: ").to_owned())
                .unwrap_or_default()
        },
        |s| s.hook.clone(),
    );
    // Cut short: from the start to the last snapshot.
    let duration_s = summary.as_ref().map_or_else(
        || {
            parse_rfc3339(&reasons.time)
                .zip(parse_rfc3339(&header.started))
                .map_or(0.0, |(end, start)| (end - start) as f64 / 1e9)
        },
        |s| s.duration_s,
    );
    let mut unavailable = vec![if objects.is_some() {
        "read from a recording, which keeps no per-CPU backlog counts: classes that need them \
         are not told"
            .to_owned()
    } else {
        "read from a recording that keeps no nftables rules, routes, qdiscs, per-CPU backlog \
         counts nor settings of other namespaces (format version 1, or cut short before its \
         end): classes that need them are not told"
            .to_owned()
    }];
    if !kernel_reasons {
        unavailable.push(
            "this kernel names no drop reasons (before Linux 5.17): classes are told by kernel counters only"
                .into(),
        );
    }
    let mut ev = Evidence {
        duration_s,
        kernel: header.kernel.clone(),
        hook,
        kernel_reasons,
        conntrack_hook: header.hooks.iter().any(|h| h.starts_with("conntrack")),
        drops: reasons.drops.total,
        reasons: counts,
        locations,
        flows,
        devices,
        samples,
        counters,
        knobs,
        listeners: listeners
            .into_iter()
            .map(|n| Listener {
                netns: Some(n.netns),
                local: text::endpoint(&n.addr, n.port),
                port: n.port,
                queue: n.queue,
                limit: n.limit,
                process: n.process.as_ref().map(crate::kernel::owners::Owner::label),
            })
            .collect(),
        sockets,
        unavailable,
        ..Default::default()
    };
    if let Some(o) = objects {
        o.apply(&mut ev);
    }
    let time = end_time.unwrap_or_else(|| reasons.time.clone());
    Ok((ev, time))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips_through_the_clock() {
        let clock = Clock::from_offset(1_764_633_600_000_000_000);
        for mono in [0u64, 1, 123_456_789_012, 86_400_000_000_000 * 400] {
            assert_eq!(
                parse_rfc3339(&clock.rfc3339(mono)),
                Some(clock.unix_ns(mono)),
                "{mono}"
            );
        }
        assert_eq!(parse_rfc3339("1970-01-01T00:00:01.5Z"), Some(1_500_000_000));
        assert_eq!(parse_rfc3339("yesterday"), None);
        assert_eq!(parse_rfc3339("2026-13-01T00:00:00Z"), None);
    }

    #[test]
    fn terminal_control_in_a_recording_is_escaped() {
        assert_eq!(safe("a\u{1b}[2Jb\nc\u{7}"), "a\\x1b[2Jb\nc\\x07");
    }

    #[test]
    fn a_recording_cut_short_still_gives_diagnose_its_evidence() {
        use crate::{
            diagnose::{
                evidence::{FirewallMatch, Knob, Objects, Qdisc, Route},
                nft::DropRule,
            },
            event::Netns,
            output::{
                CounterNotice,
                recording::Settings,
                stats::{GroupRow, ReasonRef},
            },
        };
        let header = r#"{"netdrop_recording":1,"netdrop":"0.1.0","kernel":"6.1.0-47-cloud-amd64","hooks":["kfree_skb: tracepoint skb:kfree_skb"],"started":"2026-12-02T00:00:00.000000000Z","clock_offset_ns":0,"filters":[],"interval_s":1.0}"#;
        let group = |name: &str, total| GroupRow {
            label: name.into(),
            reason: Some(ReasonRef {
                name: name.into(),
                code: 3,
                inferred: false,
            }),
            location: None,
            flow: None,
            device: None,
            netns: None,
            pod: None,
            containers: None,
            interval: total,
            total,
            rate: 0.0,
            reasons: Vec::new(),
        };
        let report = |by: &str, groups, time: &str| StatsReport {
            time: time.into(),
            interval_s: 1.0,
            by: by.into(),
            drops: stats::Count {
                interval: 9,
                total: 9,
                rate: 9.0,
            },
            seen: Default::default(),
            missed: 0,
            untracked: Default::default(),
            groups,
            other: Default::default(),
            listeners: Vec::new(),
            sockets: Vec::new(),
            softnet: Vec::new(),
            devices: Vec::new(),
        };
        let counter = |delta, total| CounterNotice {
            time: "t".into(),
            counter: "TcpExt.ListenOverflows".into(),
            delta,
            total,
            netns: None,
            meaning: String::new(),
        };
        let records = [
            Record::Counter(counter(2, 2)),
            Record::Stats {
                report: report(
                    "reason",
                    vec![group("NO_SOCKET", 3)],
                    "2026-12-02T00:00:01.000000000Z",
                ),
                mono_ns: 1,
            },
            Record::Counter(counter(3, 5)),
            Record::Stats {
                report: report(
                    "reason",
                    vec![group("NO_SOCKET", 6), group("NETFILTER_DROP", 3)],
                    "2026-12-02T00:00:02.500000000Z",
                ),
                mono_ns: 2,
            },
            Record::Settings(Settings {
                time: "t".into(),
                when: "end".into(),
                knobs: vec![Knob {
                    netns: None,
                    name: "net.core.somaxconn".into(),
                    value: "4096".into(),
                }],
            }),
        ];
        let mut text = format!("{header}\n");
        for r in &records {
            text.push_str(&serde_json::to_string(r).unwrap());
            text.push('\n');
        }
        let path = std::env::temp_dir().join(format!("netdrop-unit-{}.ndr", std::process::id()));
        std::fs::write(&path, text).unwrap();
        assert!(is_recording(&path));
        let got = evidence(&path);
        let _ = std::fs::remove_file(&path);
        let (ev, time) = got.unwrap();
        // No end marker: the time and duration of the last snapshot.
        assert_eq!(time, "2026-12-02T00:00:02.500000000Z");
        assert_eq!(ev.duration_s, 2.5);
        assert_eq!(ev.kernel, "6.1.0-47-cloud-amd64");
        assert_eq!(ev.hook, "tracepoint skb:kfree_skb");
        assert!(ev.kernel_reasons && !ev.conntrack_hook);
        assert_eq!(ev.drops, 9);
        let reasons: Vec<(&str, u64)> = ev
            .reasons
            .iter()
            .map(|c| (c.name.as_str(), c.count))
            .collect();
        assert_eq!(reasons, [("NO_SOCKET", 6), ("NETFILTER_DROP", 3)]);
        assert_eq!(ev.counters.len(), 1);
        assert_eq!((ev.counters[0].delta, ev.counters[0].now), (5, 5));
        assert_eq!(ev.knob(None, "net.core.somaxconn"), Some("4096"));
        assert!(ev.unavailable[0].starts_with("read from a recording that keeps no nftables"));
        assert!(!is_recording(Path::new("/nonexistent")));

        // Version 2: the objects `record` read at its end replace the settings of its own
        // namespace, and only the backlog counts are said to be missing.
        let ns = Netns {
            inode: 4026532000,
            name: Some("blue".into()),
            source: "device".into(),
        };
        let objects = Objects {
            knobs: vec![Knob {
                netns: Some(ns.clone()),
                name: "net.ipv4.ip_forward".into(),
                value: "1".into(),
            }],
            firewall: vec![FirewallMatch {
                netns: Some(ns.clone()),
                rule: DropRule {
                    family: "inet".into(),
                    table: "t".into(),
                    chain: "input".into(),
                    hook: Some("input".into()),
                    handle: Some(2),
                    text: "udp dport 9 drop".into(),
                    verdict: "drop".into(),
                    matches: Vec::new(),
                    understood: true,
                },
                certain: true,
                packets: 3,
            }],
            routes: vec![Route {
                netns: Some(ns.clone()),
                destination: "203.0.113.5".into(),
                answer: "RTNETLINK answers: Network is unreachable".into(),
            }],
            qdiscs: vec![Qdisc {
                netns: Some(ns),
                device: "veth0".into(),
                kind: "pfifo".into(),
                limit: Some(1),
                drops: 4,
            }],
        };
        let header = header.replace(r#""netdrop_recording":1"#, r#""netdrop_recording":2"#);
        let mut text = format!("{header}\n");
        for r in records.iter().chain([&Record::Objects {
            time: "t".into(),
            objects: objects.clone(),
        }]) {
            text.push_str(&serde_json::to_string(r).unwrap());
            text.push('\n');
        }
        std::fs::write(&path, text).unwrap();
        let got = evidence(&path);
        let _ = std::fs::remove_file(&path);
        let (ev, _) = got.unwrap();
        assert_eq!(ev.knobs, objects.knobs);
        assert_eq!(ev.firewall, objects.firewall);
        assert_eq!(ev.routes, objects.routes);
        assert_eq!(ev.qdiscs, objects.qdiscs);
        assert_eq!(ev.knob(None, "net.core.somaxconn"), None);
        assert_eq!(
            ev.unavailable,
            [
                "read from a recording, which keeps no per-CPU backlog counts: classes that need \
              them are not told"
            ]
        );
    }

    #[test]
    fn arranging_keeps_the_top_groups_and_sums_the_rest() {
        let row = |label: &str, interval, total| stats::GroupRow {
            label: label.into(),
            reason: None,
            location: None,
            flow: None,
            device: None,
            netns: None,
            pod: None,
            containers: None,
            interval,
            total,
            rate: 0.0,
            reasons: Vec::new(),
        };
        let r = StatsReport {
            time: "t".into(),
            interval_s: 2.0,
            by: "reason".into(),
            drops: Default::default(),
            seen: Default::default(),
            missed: 0,
            untracked: Default::default(),
            groups: vec![row("A", 0, 10), row("B", 4, 5), row("C", 2, 7)],
            other: Default::default(),
            listeners: Vec::new(),
            sockets: Vec::new(),
            softnet: Vec::new(),
            devices: Vec::new(),
        };
        let by_rate = arrange(r.clone(), SortBy::Rate, 1);
        assert_eq!(by_rate.groups.len(), 1);
        assert_eq!(by_rate.groups[0].label, "B");
        assert_eq!((by_rate.other.interval, by_rate.other.total), (2, 17));
        assert_eq!(by_rate.other.rate, 1.0);
        let by_total = arrange(r, SortBy::Total, 0);
        let labels: Vec<&str> = by_total.groups.iter().map(|g| g.label.as_str()).collect();
        assert_eq!(labels, ["A", "C", "B"]);
    }
}
