//! One module per subcommand, plus what they share: serving metrics while they run.

pub mod bench_pipeline;
pub mod diagnose;
pub mod docs;
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
    let mut spec = filter.spec(Path::new("/"))?;
    spec.compile(&k.reasons)?;
    privileges::check()?;
    privileges::raise_memlock();
    // Pods and containers are looked up as root (other processes' namespaces), and may
    // not have started yet.
    if let Some(ns) = filter.workload_netns(Path::new("/"))? {
        spec.netns = Some(ns);
    }
    let compiled = spec.compile(&k.reasons)?;
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
    notices_of(find_listeners(changes, watch, spec), enricher, time)
}

/// The listeners blamed in one poll with the processes holding them: the half of
/// [`listener_notices`] that enters namespaces and reads /proc, so it can run away from an
/// event loop.
pub struct FoundListeners {
    named: Vec<listeners::Named>,
    owners: std::collections::BTreeMap<u32, owners::Owner>,
}

/// The blocking half of [`listener_notices`]: sock_diag dumps and socket owners.
pub fn find_listeners(
    changes: &[Change],
    watch: &CounterWatch,
    spec: &FilterSpec,
) -> FoundListeners {
    if spec.hides_listeners() {
        return FoundListeners {
            named: Vec::new(),
            owners: Default::default(),
        };
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
    FoundListeners { named, owners }
}

/// The quick half of [`listener_notices`]: notices with namespace names, stamped `time`.
pub fn notices_of(
    found: FoundListeners,
    enricher: &mut Enricher,
    time: &str,
) -> Vec<ListenerNotice> {
    found
        .named
        .iter()
        .map(|n| {
            ListenerNotice::new(
                n,
                enricher.netns(n.netns, "procfs"),
                found.owners.get(&n.socket.inode).cloned(),
                time.to_owned(),
            )
        })
        .collect()
}

/// One counter poll made by [`spawn_counter_polls`]: the counters that grew and the
/// listeners blamed for them.
pub struct CounterPoll {
    pub changes: Vec<Change>,
    pub listeners: FoundListeners,
}

/// Polls kernel drop counters from `watch` (its baseline taken) once per `interval` on a
/// thread of its own (entering every namespace and reading /proc can take long on a busy
/// host), so that the event loop keeps draining the ring buffer and answering signals. The
/// thread ends when the receiver is dropped.
pub fn spawn_counter_polls(
    watch: CounterWatch,
    spec: FilterSpec,
    interval: std::time::Duration,
) -> mpsc::Receiver<CounterPoll> {
    crate::kernel::counters::spawn_polling(watch, interval, move |watch, changes| {
        let listeners = find_listeners(&changes, watch, &spec);
        CounterPoll { changes, listeners }
    })
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
