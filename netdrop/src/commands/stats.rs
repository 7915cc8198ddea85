//! `netdrop stats`: periodic exact histograms from the in-kernel counts.

use std::io::{self, BufWriter};

use crate::{
    aggregate::listeners::ListenerTotals,
    cli::StatsArgs,
    commands::{self, sockets::SocketWatch},
    error::Error,
    kernel::counters::{CounterWatch, RxWatch},
    output::{
        Format, receive,
        sink::{self, Sink},
        stats::{self, StatsReport},
    },
    probe::{Probe, ProbeConfig},
};

pub async fn run(args: &StatsArgs, verbose: u8) -> Result<(), Error> {
    if let Some(path) = &args.from {
        return commands::from::stats_from(args, path);
    }
    let (kernel, spec, filter) = commands::prepare(&args.kernel, &args.filter)?;
    let opts = args.metrics.labels.options();
    let mut flags = args.by.config();
    if args.metrics.metrics_addr.is_some() {
        flags |= opts.config();
    }
    let cfg = ProbeConfig {
        flow_capacity: args.flows.max_flows,
        kernel_log: verbose >= 2,
        without: args.kernel.without.clone(),
        ..ProbeConfig::new(args.kernel.attach, flags, filter)
    };
    let mut stop = commands::StopSignals::install()?;
    let probe = Probe::load(&kernel, &cfg)?;
    commands::log_hooks(&kernel, &probe);
    let mut enricher = commands::host_enricher(&kernel);
    let clock = enricher.clock();
    let mut scrapes = commands::start_metrics(args.metrics.metrics_addr).await?;
    // Sockets are dumped once per report to name those whose own drop count grew; the
    // baseline is taken before saying we are ready, so no drop after that is missed.
    let mut socket_watch = (!spec.hides_sockets()).then(|| SocketWatch::new(spec.netns));
    // Receive counts per device and softnet per CPU, for the drop ratio per device; like
    // the drop counts, their baseline is taken before saying we are ready.
    let by_device = cfg.flags & netdrop_common::config::BY_DEVICE != 0;
    let mut rx_watch = RxWatch::new(spec.netns);
    let mut rx_prev = rx_watch.read();
    let mut prev = probe.totals()?;
    eprintln!(
        "netdrop: counting drops by {} via {}, a report every {:?}; Ctrl-C to stop",
        args.by.name(),
        probe.hook,
        args.interval
    );
    let format = if args.json {
        Format::Json
    } else {
        Format::Text
    };
    let mut out = sink::for_format(format, BufWriter::new(io::stdout().lock()), &enricher);
    // Listener counters are polled only to name overflowing listeners in the report.
    let mut counter_watch = (!spec.hides_listeners()).then(|| CounterWatch::new(spec.netns));
    let mut listener_totals = ListenerTotals::default();
    let start = tokio::time::Instant::now() + args.interval;
    let mut tick = tokio::time::interval_at(start, args.interval);
    let mut reports = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            s = commands::next_scrape(&mut scrapes) => {
                let listeners = counter_watch.is_some().then_some(&listener_totals);
                commands::answer(s, &probe, listeners, &mut enricher, &opts);
                continue;
            }
            _ = stop.recv() => break,
        }
        let now = probe.totals()?;
        // Right after the drop counts, so both cover the same interval.
        let rx_now = rx_watch.read();
        let mut report = stats::report(
            &mut enricher,
            args.by,
            &prev,
            &now,
            args.sort,
            args.top,
            clock.rfc3339(now.mono_ns),
        );
        if let Some(c) = counter_watch.as_mut() {
            let changes = c.poll();
            report.listeners =
                commands::listener_notices(&changes, c, &spec, &mut enricher, &report.time);
            listener_totals.add(&report.listeners);
        }
        if let Some(w) = socket_watch.as_mut() {
            report.sockets = w.poll(&spec, &mut enricher);
        }
        (report.softnet, report.devices) =
            receive::rows(&mut enricher, &rx_prev, &rx_now, (&prev, &now), by_device);
        rx_prev = rx_now;
        if !write(&mut out, &report, now.mono_ns)? {
            break;
        }
        prev = now;
        reports += 1;
        if args.count.is_some_and(|n| reports >= n) {
            break;
        }
    }
    Ok(())
}

/// Writes a report; false once stdout is closed.
fn write(out: &mut dyn Sink, r: &StatsReport, mono_ns: u64) -> Result<bool, Error> {
    match out.report(r, mono_ns).and_then(|()| out.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(Error::io("writing to stdout")(e)),
    }
}
