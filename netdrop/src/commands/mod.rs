//! One module per subcommand, plus what they share: serving metrics while they run.

pub mod exporter;
pub mod reasons;
pub mod stats;
pub mod top;
pub mod watch;

use std::net::SocketAddr;

use tokio::sync::mpsc;

use crate::{
    error::Error,
    event::Enricher,
    output::metrics::{self, MetricsOptions, Scrape},
    probe::Probe,
};

/// Starts serving metrics when an address was given.
pub async fn start_metrics(
    addr: Option<SocketAddr>,
) -> Result<Option<mpsc::Receiver<Scrape>>, Error> {
    match addr {
        Some(a) => {
            let rx = metrics::serve(a).await?;
            eprintln!("netdrop: serving metrics on http://{a}/metrics");
            Ok(Some(rx))
        }
        None => Ok(None),
    }
}

/// The next scrape, if metrics are served; otherwise waits forever (for `select!`).
pub async fn next_scrape(rx: &mut Option<mpsc::Receiver<Scrape>>) -> Scrape {
    match rx {
        Some(r) => match r.recv().await {
            Some(s) => s,
            None => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

/// Answers a scrape with the counts as they are now.
pub fn answer(scrape: Scrape, probe: &Probe, enricher: &mut Enricher, opts: &MetricsOptions) {
    let body = match probe.totals() {
        Ok(t) => metrics::render(&t, enricher, &probe.hook.to_string(), opts, scrape.format),
        Err(e) => format!("# netdrop could not read its counters: {e}\n"),
    };
    let _ = scrape.reply.send(body);
}
