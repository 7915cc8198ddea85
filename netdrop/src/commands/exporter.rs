//! `netdrop exporter`: exact drop counts for Prometheus, nothing else.

use crate::{
    cli::ExporterArgs,
    commands,
    error::Error,
    probe::{Probe, ProbeConfig},
};

pub async fn run(args: &ExporterArgs, verbose: u8) -> Result<(), Error> {
    let (kernel, _, filter) = commands::prepare(&args.kernel, &args.filter)?;
    let opts = args.metrics.options();
    let cfg = ProbeConfig {
        flow_capacity: args.flows.max_flows,
        kernel_log: verbose >= 2,
        ..ProbeConfig::new(args.kernel.attach, opts.config(), filter)
    };
    let mut stop = commands::StopSignals::install()?;
    let probe = Probe::load(&kernel, &cfg)?;
    let mut enricher = commands::host_enricher(&kernel);
    let mut scrapes = commands::start_metrics(Some(args.metrics_addr)).await?;
    eprintln!(
        "netdrop: counting drops via {}; Ctrl-C or SIGTERM to stop",
        probe.hook
    );
    loop {
        tokio::select! {
            s = commands::next_scrape(&mut scrapes) => commands::answer(s, &probe, &mut enricher, &opts),
            _ = stop.recv() => break,
        }
    }
    Ok(())
}
