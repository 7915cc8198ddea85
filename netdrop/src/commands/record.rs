//! `netdrop record`: an incident kept in a file (see [`crate::output::recording`]), read
//! back by `watch`, `stats`, `top` and `diagnose` with `--from FILE` ([`super::from`]).
//!
//! Recording is `watch` (every matching drop, lost events, counters) plus the exact
//! in-kernel counts of every grouping each interval and the settings `diagnose` reads, all
//! written through one more [`Sink`]; at the end, the objects the drops involve (rules,
//! routes, qdiscs, settings of their namespaces), read by live `diagnose`'s own functions.

use std::{
    fs::{File, OpenOptions, Permissions},
    io::{self, BufWriter},
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::Path,
    time::Instant,
};

use aya::maps::{MapData, RingBuf};
use netdrop_common::config;

use crate::{
    aggregate::{self, Counters, GroupBy, SortBy, Totals},
    cli::RecordArgs,
    commands::{self, from, sockets::SocketWatch},
    diagnose::{
        classes,
        evidence::{Knob, Objects},
        knobs,
    },
    error::Error,
    event::{self, Enricher},
    kernel::counters::{self, CounterWatch},
    output::{
        CounterGrowth, CounterNotice, LostNotice, Summary,
        recording::{End, Header, Record, RecordingSink, Settings, VERSION},
        sink::{Context, Dropped, Sink},
        stats,
    },
    probe::{self, Conntrack, Probe, ProbeConfig, hooks as registry},
    source::Recording,
    time::Clock,
};

/// Records written per drain, so a flood cannot hold off signals, snapshots and
/// --duration: a recorded drop costs more than a `watch --json` line (every name resolved,
/// no cached fragments), so batches are smaller than `watch`'s.
const DRAIN_BATCH: usize = 2 << 10;

/// Filter flags, copied from the command line into the header as given.
const FILTER_FLAGS: [&str; 9] = [
    "--reason",
    "--exclude-reason",
    "--proto",
    "--host",
    "--src",
    "--dst",
    "--port",
    "--netns",
    "--iface",
];

type Out = RecordingSink<BufWriter<File>>;

pub async fn run(args: &RecordArgs, verbose: u8) -> Result<(), Error> {
    let (kernel, spec, filter) = commands::prepare(&args.kernel, &args.filter)?;
    // Every grouping is counted, so `stats --from --by X` can show any of them.
    let flags = GroupBy::ALL
        .iter()
        .fold(config::EVENTS, |acc, g| acc | g.config());
    let cfg = ProbeConfig {
        ring_size: args.ring_size,
        flow_capacity: args.flows.max_flows,
        kernel_log: verbose >= 2,
        ..ProbeConfig::new(args.kernel.attach, flags, filter)
    };
    let mut stop = commands::StopSignals::install()?;
    // Before loading: an existing file is refused at once.
    let file = create(&args.output, args.force)?;
    let (mut probe, mut ring) = match commands::start_streaming(&kernel, &cfg) {
        Ok(started) => started,
        Err(e) => {
            // Nothing was recorded: leave no empty file that a retry would refuse.
            if file.metadata().is_ok_and(|m| m.is_file() && m.len() == 0) {
                let _ = std::fs::remove_file(&args.output);
            }
            return Err(e);
        }
    };
    let mut enricher = commands::host_enricher(&kernel);
    let clock = enricher.clock();
    let start = probe.totals()?;
    let header = Header {
        netdrop_recording: VERSION,
        netdrop: env!("CARGO_PKG_VERSION").to_owned(),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default(),
        hooks: attached_hooks(&probe),
        started: clock.rfc3339(start.mono_ns),
        clock_offset_ns: clock.unix_ns(0) as i64,
        filters: filter_args(std::env::args()),
        interval_s: args.interval.as_secs_f64(),
    };
    let what = || format!("cannot write the recording {}", args.output.display());
    let mut out = RecordingSink::new(BufWriter::with_capacity(1 << 16, file), &header)
        .map_err(Error::io(what()))?;
    let time = clock.rfc3339(Clock::monotonic_now());
    out.record(&Record::Settings(settings("start", time)))
        .map_err(Error::io(what()))?;
    let show_counters = !spec.selects_packets();
    let mut counter_watch =
        (show_counters || !spec.hides_listeners()).then(|| CounterWatch::new(spec.netns));
    let mut socket_watch = (!spec.hides_sockets()).then(|| SocketWatch::new(spec.netns));
    eprintln!(
        "netdrop: recording drops via {} to {}, exact counts every {:?}; Ctrl-C to stop",
        probe.hook,
        args.output.display(),
        args.interval
    );

    let started = Instant::now();
    let deadline = args.duration.map(|d| tokio::time::Instant::now() + d);
    let mut tick =
        tokio::time::interval_at(tokio::time::Instant::now() + args.interval, args.interval);
    let mut drain_tick = tokio::time::interval(probe::DRAIN_INTERVAL);
    drain_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut delivered = 0u64;
    let mut reported = Counters::default();
    // Counter growth over the run, for the summary (as `watch` ends with).
    let mut growth: Vec<CounterGrowth> = Vec::new();
    let mut prev = start.clone();
    let stopped_by = loop {
        let conntrack_hook = probe.conntrack == Conntrack::Attached;
        tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = guard.map_err(Error::io("polling the ring buffer"))?;
                let (n, more) = drain(guard.get_inner_mut(), &mut probe, &mut out, &mut enricher, &clock, conntrack_hook)
                    .map_err(Error::io(what()))?;
                delivered += n;
                if more {
                    // A full batch leaves the fd ready; yielding lets the runtime turn its
                    // timers, so snapshots and --duration keep their time in a flood.
                    drop(guard);
                    tokio::task::yield_now().await;
                } else {
                    guard.clear_ready();
                }
            }
            _ = drain_tick.tick() => {
                let (n, _) = drain(ring.get_mut(), &mut probe, &mut out, &mut enricher, &clock, conntrack_hook)
                    .map_err(Error::io(what()))?;
                delivered += n;
            }
            _ = stop.recv() => break "signal",
            _ = sleep_until(deadline) => break "duration",
            _ = tick.tick() => {
                probe.attach_conntrack();
                write_loss(&mut out, &probe, &mut reported, &clock)?;
                if let Some(c) = counter_watch.as_mut() {
                    let changes = c.poll();
                    let time = clock.rfc3339(Clock::monotonic_now());
                    let listeners = commands::listener_notices(&changes, c, &spec, &mut enricher, &time);
                    if show_counters {
                        for c in changes {
                            let notice = counter_notice(c, &mut enricher, &clock);
                            add_growth(&mut growth, &notice);
                            out.counter(&notice).map_err(Error::io(what()))?;
                        }
                    }
                    for l in &listeners {
                        out.listener(l).map_err(Error::io(what()))?;
                    }
                }
                let sockets = socket_watch.as_mut().map(|w| w.poll(&spec, &mut enricher)).unwrap_or_default();
                let now = probe.totals()?;
                snapshot(&mut out, &mut enricher, &clock, (&prev, &now), args.top, sockets).map_err(Error::io(what()))?;
                prev = now;
                out.flush().map_err(Error::io(what()))?;
            }
        }
    };
    // Freeze the counters, then take what is left in the ring: the last snapshot then
    // accounts for every drop recorded.
    probe.detach();
    loop {
        let conntrack_hook = probe.conntrack == Conntrack::Attached;
        let (n, more) = drain(
            ring.get_mut(),
            &mut probe,
            &mut out,
            &mut enricher,
            &clock,
            conntrack_hook,
        )
        .map_err(Error::io(what()))?;
        delivered += n;
        if !more {
            break;
        }
    }
    write_loss(&mut out, &probe, &mut reported, &clock)?;
    let end = probe.totals()?;
    snapshot(
        &mut out,
        &mut enricher,
        &clock,
        (&prev, &end),
        args.top,
        Vec::new(),
    )
    .map_err(Error::io(what()))?;
    let c = end.counters;
    let summary = Summary {
        duration_s: started.elapsed().as_secs_f64(),
        hook: probe.hook.to_string(),
        seen: c.seen,
        matched: c.matched,
        delivered,
        // A recording keeps every event: its ring has no rate limit and no budget.
        suppressed: c.suppressed,
        rate_limit: 0,
        over_budget: c.over_budget,
        budget: 0,
        lost: c.lost,
        missed: c.missed,
        stack_errors: c.stack_errors,
        by_reason: aggregate::reason_histogram(
            &end.by_reason
                .iter()
                .map(|(r, n)| (*r, *n))
                .collect::<Vec<_>>(),
            &kernel.reasons,
        ),
        counters: growth,
        listeners: Vec::new(),
    };
    let histogram = stats::report(
        &mut enricher,
        GroupBy::Reason,
        &start,
        &end,
        SortBy::Total,
        0,
        clock.rfc3339(end.mono_ns),
    );
    let time = clock.rfc3339(Clock::monotonic_now());
    out.summary(&summary, &histogram)
        .and_then(|()| out.record(&Record::Settings(settings("end", time.clone()))))
        .and_then(|()| out.flush())
        .map_err(Error::io(what()))?;
    if let Some(objects) = objects(&args.output, spec.netns) {
        out.record(&Record::Objects {
            time: clock.rfc3339(Clock::monotonic_now()),
            objects,
        })
        .map_err(Error::io(what()))?;
    }
    out.record(&Record::End(End {
        time: clock.rfc3339(Clock::monotonic_now()),
        stopped_by: stopped_by.to_owned(),
    }))
    .and_then(|()| out.flush())
    .map_err(Error::io(what()))?;
    eprintln!(
        "netdrop: recorded {} drops ({} matched, {} lost) in {:.1}s to {}",
        delivered,
        summary.matched,
        summary.lost,
        summary.duration_s,
        args.output.display()
    );
    Ok(())
}

/// Creates the recording readable and writable by its owner only (it holds addresses),
/// refusing to overwrite a file unless `force`.
fn create(path: &Path, force: bool) -> Result<File, Error> {
    let mut opts = OpenOptions::new();
    opts.write(true).mode(0o600);
    if force {
        opts.create(true).truncate(true);
    } else {
        opts.create_new(true);
    }
    let file = opts.open(path).map_err(|e| {
        if e.kind() == io::ErrorKind::AlreadyExists {
            Error::BadArgument(format!(
                "{} already exists: give another file name, or --force to overwrite it",
                path.display()
            ))
        } else {
            Error::io(format!("cannot create the recording {}", path.display()))(e)
        }
    })?;
    // With --force an existing file keeps its mode through open(): narrow it.
    let meta = file
        .metadata()
        .map_err(Error::io(format!("cannot stat {}", path.display())))?;
    if meta.is_file() && meta.permissions().mode() & 0o077 != 0 {
        file.set_permissions(Permissions::from_mode(0o600))
            .map_err(Error::io(format!("cannot restrict {}", path.display())))?;
    }
    Ok(file)
}

/// The hook families attached, `id: how`.
fn attached_hooks(probe: &Probe) -> Vec<String> {
    registry::attached(probe)
        .into_iter()
        .filter_map(|(id, s)| match s {
            registry::Status::Attached(how) => Some(format!("{id}: {how}")),
            _ => None,
        })
        .collect()
}

/// The filter flags among `args` (a command line), with their values.
fn filter_args(args: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut out = Vec::new();
    let mut take_next = false;
    for a in args {
        if take_next {
            out.push(a);
            take_next = false;
            continue;
        }
        if let Some(flag) = FILTER_FLAGS
            .iter()
            .find(|f| a == **f || a.starts_with(&format!("{f}=")))
        {
            take_next = a == *flag;
            out.push(a);
        }
    }
    out
}

/// Every setting the drop classes of `diagnose` read, in netdrop's own namespace.
fn settings(when: &str, time: String) -> Settings {
    let mut names: Vec<String> = classes::CLASSES
        .iter()
        .flat_map(|c| c.knobs.iter().map(|k| (*k).to_owned()))
        .collect();
    names.sort();
    names.dedup();
    let knobs = knobs::read_sysctls(Path::new("/proc/sys"), &names)
        .into_iter()
        .map(|(name, value)| Knob {
            netns: None,
            name,
            value,
        })
        .collect();
    Settings {
        time,
        when: when.to_owned(),
        knobs,
    }
}

/// What live `diagnose` would read about the objects the drops recorded in `path` involve
/// (settings of their namespaces, matching nftables rules, routes, qdiscs), read now by
/// its own functions over the evidence the recording gives `diagnose --from`. `None` when
/// the recording cannot be read back (not a regular file, or unreadable): it then holds
/// what version 1 did, and `diagnose --from` says what is missing.
fn objects(path: &Path, netns: Option<u32>) -> Option<Objects> {
    if !std::fs::metadata(path).is_ok_and(|m| m.is_file()) {
        return None;
    }
    let mut rec = Recording::open(path).ok()?;
    // The end marker is not written yet: that is no news to the user.
    rec.warn_on_stderr = false;
    match from::evidence_of(rec, path) {
        Ok((ev, _)) => {
            let namespaces = commands::diagnose::Namespaces::discover(netns);
            Some(commands::diagnose::read_objects(&namespaces, &ev))
        }
        Err(e) => {
            tracing::warn!("not reading the objects of the drops: {e}");
            None
        }
    }
}

/// Writes the drops waiting in the ring, at most [`DRAIN_BATCH`], and flushes them:
/// (drops written, whether more may wait).
fn drain(
    ring: &mut RingBuf<MapData>,
    probe: &mut Probe,
    out: &mut Out,
    enricher: &mut Enricher,
    clock: &Clock,
    conntrack_hook: bool,
) -> io::Result<(u64, bool)> {
    let mut cx = Context {
        enricher,
        clock,
        show_stack: false,
        conntrack_hook,
    };
    out.start_batch();
    let mut n = 0;
    let mut more = false;
    for _ in 0..DRAIN_BATCH {
        let Some(item) = ring.next() else {
            more = false;
            break;
        };
        more = true;
        let Some(ev) = event::decode(&item) else {
            tracing::warn!("skipping a malformed record of {} bytes", item.len());
            continue;
        };
        drop(item);
        let stack = (ev.flags & netdrop_common::flag::HAS_STACK != 0)
            .then(|| probe.stack(ev.stack_id as u32))
            .flatten();
        out.drop(
            &Dropped {
                event: &ev,
                stack,
                capture: None,
            },
            &mut cx,
        )?;
        n += 1;
    }
    out.flush()?;
    Ok((n, more))
}

/// A lost-events record when the kernel counted lost or skipped events since the last.
fn write_loss(
    out: &mut Out,
    probe: &Probe,
    last: &mut Counters,
    clock: &Clock,
) -> Result<(), Error> {
    let now = probe.counters()?;
    if now.lost == last.lost && now.missed == last.missed {
        return Ok(());
    }
    let notice = LostNotice {
        time: clock.rfc3339(Clock::monotonic_now()),
        lost: now.lost - last.lost,
        lost_total: now.lost,
        missed: now.missed - last.missed,
        missed_total: now.missed,
    };
    *last = now;
    out.lost(&notice)
        .map_err(Error::io("cannot write the recording"))
}

/// Adds the growth a counter notice reports to the run's: one entry per counter and
/// namespace that grew (the recording holds every notice anyway).
fn add_growth(growth: &mut Vec<CounterGrowth>, n: &CounterNotice) {
    let inode = n.netns.as_ref().map(|ns| ns.inode);
    match growth
        .iter_mut()
        .find(|g| g.counter == n.counter && g.netns.as_ref().map(|ns| ns.inode) == inode)
    {
        Some(g) => g.delta += n.delta,
        None => growth.push(CounterGrowth {
            counter: n.counter.clone(),
            netns: n.netns.clone(),
            delta: n.delta,
        }),
    }
}

fn counter_notice(c: counters::Change, enricher: &mut Enricher, clock: &Clock) -> CounterNotice {
    let meaning = counters::info(&c.name).map_or("", |i| i.meaning);
    CounterNotice {
        time: clock.rfc3339(Clock::monotonic_now()),
        netns: c.netns.map(|n| enricher.netns(n, "procfs")),
        counter: c.name,
        delta: c.delta,
        total: c.total,
        meaning: meaning.to_owned(),
    }
}

/// One stats record per grouping: the `top` groups with the most drops since start (0:
/// all) and the rest summed, totals since start, growth since `prev`. The sockets that
/// dropped go with the per-reason one, as `stats` shows them.
fn snapshot(
    out: &mut Out,
    enricher: &mut Enricher,
    clock: &Clock,
    (prev, now): (&Totals, &Totals),
    top: usize,
    sockets: Vec<crate::output::SocketNotice>,
) -> io::Result<()> {
    let mut sockets = Some(sockets);
    for by in GroupBy::ALL {
        let mut r = stats::report(
            enricher,
            by,
            prev,
            now,
            SortBy::Total,
            top,
            clock.rfc3339(now.mono_ns),
        );
        if by == GroupBy::Reason {
            r.sockets = sockets.take().unwrap_or_default();
        }
        out.report(&r, now.mono_ns)?;
    }
    Ok(())
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_growth_adds_up_per_counter_and_namespace() {
        let ns = |inode| crate::event::Netns {
            inode,
            name: None,
            source: "procfs".into(),
        };
        let notice = |counter: &str, netns, delta| CounterNotice {
            time: "t".into(),
            counter: counter.into(),
            delta,
            total: 0,
            netns,
            meaning: String::new(),
        };
        let mut g = Vec::new();
        add_growth(&mut g, &notice("TcpExt.ListenOverflows", Some(ns(1)), 2));
        add_growth(&mut g, &notice("TcpExt.ListenOverflows", Some(ns(2)), 5));
        add_growth(&mut g, &notice("TcpExt.ListenOverflows", Some(ns(1)), 3));
        add_growth(&mut g, &notice("softnet.dropped", None, 4));
        let got: Vec<(&str, Option<u32>, u64)> = g
            .iter()
            .map(|c| {
                (
                    c.counter.as_str(),
                    c.netns.as_ref().map(|n| n.inode),
                    c.delta,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("TcpExt.ListenOverflows", Some(1), 5),
                ("TcpExt.ListenOverflows", Some(2), 5),
                ("softnet.dropped", None, 4)
            ]
        );
    }

    #[test]
    fn filter_flags_are_copied_with_their_values() {
        let argv = [
            "netdrop",
            "record",
            "--output",
            "x",
            "--port",
            "9",
            "--proto=udp",
            "--force",
            "--netns",
            "blue",
        ]
        .map(String::from);
        assert_eq!(
            filter_args(argv),
            ["--port", "9", "--proto=udp", "--netns", "blue"]
        );
    }
}
