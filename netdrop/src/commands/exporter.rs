//! `netdrop exporter`: exact drop counts for Prometheus, nothing else.

use std::path::Path;

use tokio::signal::unix::{SignalKind, signal};

use crate::{
    cli::ExporterArgs,
    commands,
    error::Error,
    event::Enricher,
    kernel::{Kernel, privileges},
    probe::{Probe, ProbeConfig},
};

pub async fn run(args: &ExporterArgs, verbose: u8) -> Result<(), Error> {
    let kernel = Kernel::inspect(args.kernel.btf.as_deref())?;
    let filter = args.filter.spec(Path::new("/"))?.compile(&kernel.reasons)?;
    privileges::check()?;
    privileges::raise_memlock();
    let opts = args.metrics.options();
    let cfg = ProbeConfig {
        kernel_log: verbose >= 2,
        ..ProbeConfig::new(args.kernel.attach, opts.config(), filter)
    };
    let mut sigint =
        signal(SignalKind::interrupt()).map_err(Error::io("installing a SIGINT handler"))?;
    let mut sigterm =
        signal(SignalKind::terminate()).map_err(Error::io("installing a SIGTERM handler"))?;
    let probe = Probe::load(&kernel, &cfg)?;
    let mut enricher = Enricher::new(
        kernel.reasons.clone(),
        Path::new("/proc/kallsyms"),
        Path::new("/"),
    );
    let mut scrapes = commands::start_metrics(Some(args.metrics_addr)).await?;
    eprintln!(
        "netdrop: counting drops via {}; Ctrl-C or SIGTERM to stop",
        probe.hook
    );
    loop {
        tokio::select! {
            s = commands::next_scrape(&mut scrapes) => commands::answer(s, &probe, &mut enricher, &opts),
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
        }
    }
    Ok(())
}
