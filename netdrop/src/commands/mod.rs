//! One module per subcommand, plus what they share: serving metrics while they run.

pub mod bench_pipeline;
pub mod diagnose;
pub mod exporter;
pub mod from;
pub mod hooks;
pub mod reasons;
pub mod record;
pub mod sockets;
pub mod stats;
pub mod top;
pub mod watch;

use std::{
    net::SocketAddr,
    path::Path,
    sync::atomic::{AtomicBool, Ordering},
};

use tokio::{
    signal::unix::{Signal, SignalKind, signal},
    sync::mpsc,
};

use crate::{
    aggregate::listeners::{self, ListenerTotals},
    cli::{FilterArgs, KernelArgs},
    error::Error,
    event::Enricher,
    filter::{CompiledFilter, FilterSpec},
    kernel::{
        Kernel,
        counters::{Change, CounterWatch},
        owners, privileges, sockdiag,
    },
    output::{
        ListenerNotice,
        metrics::{self, MetricsOptions, Scrape},
    },
    probe::{Probe, hooks as registry},
};

/// What every tracing command does first: read the kernel and check the filters (no
/// privileges needed, so a typo is reported as such), then check privileges.
pub fn prepare(
    kernel: &KernelArgs,
    filter: &FilterArgs,
) -> Result<(Kernel, FilterSpec, CompiledFilter), Error> {
    let k = Kernel::inspect(kernel.btf.as_deref())?;
    let spec = filter.spec(Path::new("/"))?;
    let compiled = spec.compile(&k.reasons)?;
    privileges::check()?;
    privileges::raise_memlock();
    Ok((k, spec, compiled))
}

/// What the streaming commands (`watch`, `diagnose`) start with: the probe loaded, the
/// conntrack hook tried, the hooks listed with `-v`, and the event ring registered with
/// the runtime.
pub fn start_streaming(
    kernel: &Kernel,
    cfg: &crate::probe::ProbeConfig,
) -> Result<
    (
        Probe,
        tokio::io::unix::AsyncFd<aya::maps::RingBuf<aya::maps::MapData>>,
    ),
    Error,
> {
    let mut probe = Probe::load(kernel, cfg)?;
    probe.attach_conntrack();
    log_hooks(kernel, &probe);
    let ring = probe.take_events()?;
    let ring = crate::probe::readable(ring).map_err(Error::io("polling the ring buffer"))?;
    Ok((probe, ring))
}

/// Says, with `-v`, which hook families this run attached and how the others stand (the
/// list `netdrop hooks` prints).
pub fn log_hooks(kernel: &Kernel, probe: &Probe) {
    if !tracing::enabled!(tracing::Level::INFO) {
        return;
    }
    let facts = registry::KernelFacts::read(Ok(kernel));
    let report = registry::report(&facts, &registry::attached(probe));
    tracing::info!("hooks on kernel {}:", facts.release);
    for line in crate::output::hooks::lines(&report) {
        tracing::info!("  {line}");
    }
}

/// The enricher for this host: its kallsyms and namespaces.
pub fn host_enricher(kernel: &Kernel) -> Enricher {
    Enricher::new(
        kernel.reasons.clone(),
        Path::new("/proc/kallsyms"),
        Path::new("/"),
    )
}

/// A failed sock_diag dump has been reported (once per run is enough).
static DIAG_WARNED: AtomicBool = AtomicBool::new(false);

/// The listeners behind the listener counters that grew in `changes` (a poll of
/// `watch`), named from each namespace's sock_diag dump and the process holding them,
/// those the filters keep.
pub fn listener_notices(
    changes: &[Change],
    watch: &CounterWatch,
    spec: &FilterSpec,
    enricher: &mut Enricher,
    time: &str,
) -> Vec<ListenerNotice> {
    if spec.hides_listeners() {
        return Vec::new();
    }
    let named: Vec<_> = listeners::name(changes, |ns| {
        let path = watch.path(ns)?;
        match sockdiag::listeners(path) {
            Ok(d) => {
                if d.truncated {
                    tracing::debug!(
                        "netns {ns}: more than {} listeners, the rest not read",
                        sockdiag::MAX_SOCKETS
                    );
                }
                Some(d.sockets)
            }
            Err(e) => {
                if !DIAG_WARNED.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "cannot list TCP listeners through sock_diag ({e}), so listeners whose \
                         accept queue overflows are not named; if the kernel has it as modules, \
                         load them: modprobe inet_diag tcp_diag"
                    );
                }
                tracing::debug!("cannot list the listeners of netns {ns}: {e}");
                None
            }
        }
    })
    .into_iter()
    .filter(|n| spec.keeps_listener(n.socket.local_port, n.socket.local.is_ipv6()))
    .collect();
    let inodes: Vec<u32> = named.iter().map(|n| n.socket.inode).collect();
    let owners = owners::owners(Path::new("/proc"), &inodes);
    named
        .iter()
        .map(|n| {
            ListenerNotice::new(
                n,
                enricher.netns(n.netns, "procfs"),
                owners.get(&n.socket.inode).cloned(),
                time.to_owned(),
            )
        })
        .collect()
}

/// SIGINT and SIGTERM, installed before loading so that a Ctrl-C during loading still ends
/// cleanly.
pub struct StopSignals {
    int: Signal,
    term: Signal,
}

impl StopSignals {
    pub fn install() -> Result<Self, Error> {
        Ok(Self {
            int: signal(SignalKind::interrupt())
                .map_err(Error::io("installing a SIGINT handler"))?,
            term: signal(SignalKind::terminate())
                .map_err(Error::io("installing a SIGTERM handler"))?,
        })
    }

    /// Resolves on the first SIGINT or SIGTERM.
    pub async fn recv(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
    }
}

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

/// Answers a scrape with the counts as they are now, and the listeners named so far when
/// the command looks for them.
pub fn answer(
    scrape: Scrape,
    probe: &Probe,
    listeners: Option<&ListenerTotals>,
    enricher: &mut Enricher,
    opts: &MetricsOptions,
) {
    let body = match probe.totals() {
        Ok(t) => metrics::render(
            &t,
            listeners,
            enricher,
            &probe.hook.to_string(),
            opts,
            scrape.format,
        ),
        Err(e) => format!("# netdrop could not read its counters: {e}\n"),
    };
    let _ = scrape.reply.send(body);
}
