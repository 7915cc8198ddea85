//! `netdrop exporter`: exact drop counts for Prometheus, nothing else.

use std::time::Duration;

use crate::{
    aggregate::listeners::ListenerTotals,
    cli::ExporterArgs,
    commands,
    error::Error,
    kernel::counters::CounterWatch,
    probe::{Probe, ProbeConfig},
    time::Clock,
};

/// How often the listener counters are polled to name overflowing listeners.
const LISTENER_POLL: Duration = Duration::from_secs(1);

pub async fn run(args: &ExporterArgs, verbose: u8) -> Result<(), Error> {
    let (kernel, spec, filter) = commands::prepare(&args.kernel, &args.filter)?;
    let opts = args.metrics.options();
    let cfg = ProbeConfig {
        flow_capacity: args.flows.max_flows,
        kernel_log: verbose >= 2,
        without: args.kernel.without.clone(),
        ..ProbeConfig::new(args.kernel.attach, opts.config(), filter)
    };
    let mut stop = commands::StopSignals::install()?;
    let probe = Probe::load(&kernel, &cfg)?;
    commands::log_hooks(&kernel, &probe);
    let mut enricher = commands::host_enricher(&kernel);
    let mut scrapes = commands::start_metrics(Some(args.metrics_addr)).await?;
    eprintln!(
        "netdrop: counting drops via {}; Ctrl-C or SIGTERM to stop",
        probe.hook
    );
    let mut counter_watch =
        (!spec.hides_listeners() && opts.devices > 0).then(|| CounterWatch::new(spec.netns));
    let mut listener_totals = ListenerTotals::default();
    let mut tick = tokio::time::interval(LISTENER_POLL);
    loop {
        tokio::select! {
            s = commands::next_scrape(&mut scrapes) => {
                let listeners = counter_watch.is_some().then_some(&listener_totals);
                commands::answer(s, &probe, listeners, &mut enricher, &opts);
            }
            _ = tick.tick() => {
                if let Some(c) = counter_watch.as_mut() {
                    let time = enricher.clock().rfc3339(Clock::monotonic_now());
                    let named = commands::listener_notices(&c.poll(), c, &spec, &mut enricher, &time);
                    listener_totals.add(&named);
                }
            }
            _ = stop.recv() => break,
        }
    }
    Ok(())
}
