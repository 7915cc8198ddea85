//! `netdrop watch`: every matching drop, live, then an exact per-reason summary.

use std::{
    fs::{File, OpenOptions, Permissions},
    io::{self, BufWriter},
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::Path,
    time::{Duration, Instant},
};

use aya::maps::{MapData, RingBuf};
use netdrop_common::{DropEvent, config};

use crate::{
    aggregate::{self, Counters, GroupBy, SortBy, Totals, listeners::ListenerTotals},
    cli::WatchArgs,
    commands,
    error::Error,
    event::{self, Capture, Enricher},
    kernel::counters::{self, Change, CounterWatch},
    output::{
        CounterGrowth, CounterNotice, Format, ListenerNotice, ListenerTotal, LostNotice,
        OverBudgetNotice, Summary, SuppressedNotice,
        pcapng::PcapngSink,
        sink::{self, Context, Dropped, Sink, Tee},
        stats::{self, StatsReport},
        text,
    },
    probe::{self, Conntrack, Probe, ProbeConfig},
    time::Clock,
};

/// How often lost-event counters are checked.
const LOSS_CHECK: Duration = Duration::from_secs(1);

/// Records written per [`Writer::drain`] call, so a flood cannot hold off signals, counter
/// polls and scrapes: about 10 ms of work.
const DRAIN_BATCH: usize = 16 << 10;

/// What [`Writer::drain`] left in the ring buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Drained {
    /// Nothing (or output is closed, or --count reached).
    All,
    /// A full batch was written; more may wait.
    Batch,
}

/// Why the event loop ended.
enum Stop {
    Signal,
    Count,
    Duration,
    /// stdout was closed (e.g. `| head`): nothing more can be written.
    OutputClosed,
}

pub async fn run(args: &WatchArgs, verbose: u8) -> Result<(), Error> {
    if let Some(path) = &args.from {
        return commands::from::watch_from(args, path);
    }
    let (kernel, spec, filter) = commands::prepare(&args.kernel, &args.filter)?;
    let mut flags = config::EVENTS | config::BY_REASON;
    if args.stack {
        flags |= config::STACKS;
    }
    let opts = args.metrics.labels.options();
    if args.metrics.metrics_addr.is_some() {
        flags |= opts.config();
    }
    if args.pcap.is_some() {
        flags |= config::CAPTURE;
    }
    let cfg = ProbeConfig {
        ring_size: args.ring_size,
        kernel_log: verbose >= 2,
        without: args.kernel.without.clone(),
        snaplen: args.snaplen,
        rate_limit: args.rate_limit,
        budget: args.budget,
        ..ProbeConfig::new(args.kernel.attach, flags, filter)
    };
    let mut stop = commands::StopSignals::install()?;
    // Before loading: a path that cannot be written is said at once.
    let pcap = Pcap::open(args.pcap.as_deref())?;

    let (mut probe, mut ring) = commands::start_streaming(&kernel, &cfg)?;
    let enricher = commands::host_enricher(&kernel);
    let pcap_stdout = matches!(pcap, Pcap::Stdout);
    let out = outputs(args, pcap, &enricher);
    let mut sink = Writer::new(out, enricher, args.count, args.stack);
    sink.rate_limit = args.rate_limit;
    sink.budget = args.budget;
    // Counter lines cannot be narrowed to packets; listener records can (by port).
    let show_counters = !spec.selects_packets();
    // The baseline is taken now; the polls run on a thread of their own.
    let mut counter_polls =
        (!args.no_counters && (show_counters || !spec.hides_listeners())).then(|| {
            commands::spawn_counter_polls(CounterWatch::new(spec.netns), spec.clone(), LOSS_CHECK)
        });
    let names_listeners = counter_polls.is_some() && !spec.hides_listeners();
    let mut listener_totals = ListenerTotals::default();
    eprintln!(
        "netdrop: watching packet drops via {}; Ctrl-C to stop",
        probe.hook
    );

    let mut scrapes = commands::start_metrics(args.metrics.metrics_addr).await?;
    let started = Instant::now();
    let start_totals = Totals {
        mono_ns: Clock::monotonic_now(),
        ..Default::default()
    };
    let deadline = args.duration.map(|d| tokio::time::Instant::now() + d);
    let mut tick = tokio::time::interval(LOSS_CHECK);
    let mut drain = tokio::time::interval(probe::DRAIN_INTERVAL);
    drain.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reported = Counters::default();
    let stop = loop {
        tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = guard.map_err(Error::io("polling the ring buffer"))?;
                // A full batch leaves the fd ready: the loop comes back at once, after
                // signals, ticks and scrapes had their turn.
                if sink.drain(guard.get_inner_mut(), &mut probe) == Drained::All {
                    guard.clear_ready();
                } else {
                    drop(guard);
                    // Without this the loop never returns to the runtime while the fd
                    // stays ready: its driver, which delivers signals, timers and scrapes,
                    // would not run until the flood ends.
                    tokio::task::yield_now().await;
                }
            }
            _ = drain.tick() => {
                sink.drain(ring.get_mut(), &mut probe);
                // A reader that went away (`| head -1`) is otherwise only noticed at the
                // next write, which may never come when no further drop matches.
                sink.closed |= stdout_hung_up();
            }
            s = commands::next_scrape(&mut scrapes) => commands::answer(s, &probe, names_listeners.then_some(&listener_totals), &mut sink.enricher, &opts),
            _ = stop.recv() => break Stop::Signal,
            _ = tick.tick() => {
                probe.attach_conntrack();
                sink.report_loss(&probe, &mut reported)?;
            }
            Some(poll) = next_poll(&mut counter_polls) => {
                let time = sink.clock.rfc3339(Clock::monotonic_now());
                let listeners = commands::notices_of(poll.listeners, &mut sink.enricher, &time);
                if show_counters {
                    sink.report_counters(poll.changes);
                }
                listener_totals.add(&listeners);
                sink.report_listeners(listeners);
            }
            _ = sleep_until(deadline) => break Stop::Duration,
        }
        if sink.closed {
            break Stop::OutputClosed;
        }
        if sink.limit_reached() {
            break Stop::Count;
        }
    };
    // Freeze the counters, then take what is left in the ring: delivered + lost then
    // accounts for every matched drop.
    probe.detach();
    if matches!(stop, Stop::Signal | Stop::Duration) {
        while sink.drain(ring.get_mut(), &mut probe) == Drained::Batch {}
        // What the rate limit suppressed since each key's last report: counted in the
        // kernel, no record written yet.
        if args.rate_limit != 0 {
            for (key, count) in probe.unreported_suppressed()? {
                sink.write_suppressed(&key, count, Clock::monotonic_now());
            }
        }
        // The same for what went past the budget.
        if args.budget != 0 {
            for rec in probe.unreported_over_budget()? {
                sink.write_over_budget(&rec, Clock::monotonic_now());
            }
        }
        sink.finish_batch();
    }
    if let Stop::OutputClosed = stop {
        return Ok(());
    }
    sink.report_loss(&probe, &mut reported)?;
    let end_totals = probe.totals()?;
    let counters = end_totals.counters;
    let summary = Summary {
        duration_s: started.elapsed().as_secs_f64(),
        hook: probe.hook.to_string(),
        seen: counters.seen,
        matched: counters.matched,
        delivered: sink.delivered,
        lost: counters.lost,
        suppressed: counters.suppressed,
        rate_limit: args.rate_limit,
        over_budget: counters.over_budget,
        budget: args.budget,
        missed: counters.missed,
        stack_errors: counters.stack_errors,
        by_reason: aggregate::reason_histogram(
            &end_totals
                .by_reason
                .iter()
                .map(|(r, n)| (*r, *n))
                .collect::<Vec<_>>(),
            &kernel.reasons,
        ),
        counters: std::mem::take(&mut sink.counter_growth),
        listeners: listener_totals
            .busiest(usize::MAX)
            .into_iter()
            .map(|((netns, addr, port), overflows)| ListenerTotal {
                netns: sink.enricher.netns(*netns, "procfs"),
                addr: addr.clone(),
                port: *port,
                overflows,
            })
            .collect(),
    };
    let histogram = stats::report(
        &mut sink.enricher,
        GroupBy::Reason,
        &start_totals,
        &end_totals,
        SortBy::Total,
        0,
        sink.clock.rfc3339(end_totals.mono_ns),
    );
    sink.summary(&summary, &histogram);
    // Output redirected to a file or a pipe: say how it went where the operator looks.
    if !pcap_stdout && !std::io::IsTerminal::is_terminal(&io::stdout()) {
        eprintln!("{}", text::summary_line(&summary));
    }
    Ok(())
}

/// Counter growth entries kept for the summary; beyond, growth in further namespaces is
/// summed per counter under `(other namespaces)`. Namespaces come and go with containers.
const MAX_GROWTH_ENTRIES: usize = 1024;

/// Adds `delta` to the growth of `counter` in `netns`, within [`MAX_GROWTH_ENTRIES`].
fn add_growth(
    growth: &mut Vec<CounterGrowth>,
    counter: &str,
    netns: Option<&crate::event::Netns>,
    delta: u64,
) {
    let inode = netns.map(|n| n.inode);
    if let Some(g) = growth
        .iter_mut()
        .find(|g| g.counter == counter && g.netns.as_ref().map(|n| n.inode) == inode)
    {
        g.delta += delta;
        return;
    }
    // Global counters (softnet) are few: always their own entry.
    if growth.len() < MAX_GROWTH_ENTRIES || inode.is_none() {
        growth.push(CounterGrowth {
            counter: counter.to_owned(),
            netns: netns.cloned(),
            delta,
        });
        return;
    }
    let other = format!("{counter} (other namespaces)");
    match growth.iter_mut().find(|g| g.counter == other) {
        Some(g) => g.delta += delta,
        // One slot per counter name past the bound: a few dozen at most.
        None => growth.push(CounterGrowth {
            counter: other,
            netns: None,
            delta,
        }),
    }
}

/// True when stdout is a pipe or socket whose reader has gone: poll(2) reports POLLERR
/// (pipe) or POLLHUP (socket) without writing. Terminals and files never report either.
fn stdout_hung_up() -> bool {
    let mut fd = libc::pollfd {
        fd: libc::STDOUT_FILENO,
        events: 0,
        revents: 0,
    };
    // SAFETY: one valid pollfd, zero timeout: poll only reads and writes `fd`.
    let n = unsafe { libc::poll(&mut fd, 1, 0) };
    n > 0 && fd.revents & (libc::POLLERR | libc::POLLHUP) != 0
}

/// Where `--pcap` writes.
enum Pcap {
    None,
    Stdout,
    File(File),
}

impl Pcap {
    /// Opens the `--pcap` destination: `-` is stdout (never a terminal), anything else a
    /// file created (or truncated) readable by its owner only, since it holds packets.
    fn open(path: Option<&Path>) -> Result<Self, Error> {
        let Some(path) = path else {
            return Ok(Self::None);
        };
        if path == Path::new("-") {
            if std::io::IsTerminal::is_terminal(&io::stdout()) {
                return Err(Error::BadArgument(
                    "--pcap - writes binary pcap-ng to stdout, which is a terminal: pipe it \
                     into a reader (e.g. `| wireshark -k -i -` or `| tshark -r -`) or give a \
                     file name"
                        .to_owned(),
                ));
            }
            return Ok(Self::Stdout);
        }
        let what = || format!("cannot create the pcap-ng file {}", path.display());
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .map_err(Error::io(what()))?;
        // An existing file keeps its mode through open(): narrow it. Not a FIFO or a
        // device (`--pcap /dev/stdout`, a pipe Wireshark reads): those are not ours.
        let meta = file.metadata().map_err(Error::io(what()))?;
        if meta.is_file() && meta.permissions().mode() & 0o077 != 0 {
            file.set_permissions(Permissions::from_mode(0o600))
                .map_err(Error::io(what()))?;
        }
        Ok(Self::File(file))
    }
}

/// The sink of a run: text or JSON lines on stdout and, with `--pcap`, pcap-ng to a file
/// or to stdout (the lines then go to stderr).
fn outputs(args: &WatchArgs, pcap: Pcap, enricher: &Enricher) -> Box<dyn Sink> {
    let format = if args.json {
        Format::Json
    } else {
        Format::Text
    };
    let lines = if matches!(pcap, Pcap::Stdout) {
        sink::for_format(format, BufWriter::new(io::stderr()), enricher)
    } else {
        sink::for_format(
            format,
            BufWriter::with_capacity(1 << 16, io::stdout().lock()),
            enricher,
        )
    };
    let packets: Box<dyn Sink> = match pcap {
        Pcap::None => return lines,
        Pcap::Stdout => Box::new(PcapngSink::new(io::stdout().lock(), args.snaplen)),
        Pcap::File(f) => Box::new(PcapngSink::new(f, args.snaplen)),
    };
    Box::new(Tee(vec![packets, lines]))
}

/// The next counter poll, or never when counters are not polled (or the poller ended).
async fn next_poll(
    rx: &mut Option<tokio::sync::mpsc::Receiver<commands::CounterPoll>>,
) -> Option<commands::CounterPoll> {
    match rx {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Where records go: `watch` writes to stdout (and a pcap-ng file), `bench-pipeline` to
/// a sink that discards. Decodes and counts; the [`Sink`] formats.
pub struct Writer<S: Sink> {
    sink: S,
    enricher: Enricher,
    clock: Clock,
    delivered: u64,
    limit: Option<u64>,
    closed: bool,
    show_stack: bool,
    /// The conntrack hook is attached: NETFILTER_DROPs say whether conntrack refused them.
    conntrack_hook: bool,
    /// Counter growth over the run, in order of first appearance.
    counter_growth: Vec<CounterGrowth>,
    /// `--rate-limit`, named in "more like this" notices.
    rate_limit: u32,
    /// `--budget`, named in "more drops ... not examined" notices.
    budget: u32,
}

impl<S: Sink> Writer<S> {
    /// Records go to `sink`; `limit` is --count, `show_stack` is --stack.
    pub fn new(sink: S, enricher: Enricher, limit: Option<u64>, show_stack: bool) -> Self {
        Self {
            sink,
            clock: enricher.clock(),
            enricher,
            delivered: 0,
            limit,
            closed: false,
            show_stack,
            conntrack_hook: false,
            counter_growth: Vec::new(),
            rate_limit: 0,
            budget: 0,
        }
    }

    fn limit_reached(&self) -> bool {
        self.limit.is_some_and(|n| self.delivered >= n)
    }

    /// Writes the records waiting in the ring buffer, at most [`DRAIN_BATCH`].
    fn drain(&mut self, ring: &mut RingBuf<MapData>, probe: &mut Probe) -> Drained {
        // Read from the probe, not kept from a timer tick: the drops of the first batch,
        // drained before any tick, are flagged as soon as the hook is attached at start.
        self.conntrack_hook = probe.conntrack == Conntrack::Attached;
        self.start_batch();
        let mut left = Drained::All;
        for _ in 0..DRAIN_BATCH {
            if self.closed || self.limit_reached() {
                break;
            }
            left = Drained::All;
            let Some(item) = ring.next() else { break };
            left = Drained::Batch;
            if let Some(s) = event::decode_suppressed(&item) {
                drop(item);
                self.write_suppressed(&s.key, s.count, s.timestamp_ns);
                continue;
            }
            if let Some(b) = event::decode_over_budget(&item) {
                drop(item);
                self.write_over_budget(&b, b.timestamp_ns);
                continue;
            }
            let Some(ev) = event::decode(&item) else {
                tracing::warn!("skipping a malformed record of {} bytes", item.len());
                continue;
            };
            let capture = event::decode_capture(&item);
            drop(item);
            self.write_event(&ev, capture.as_ref(), || probe.stack(ev.stack_id as u32));
        }
        self.finish_batch();
        left
    }

    /// Writes one decoded event with what the kernel captured of its packet; `stack`
    /// fetches its kernel stack when it has one.
    pub fn write_event<'s>(
        &mut self,
        ev: &DropEvent,
        capture: Option<&Capture>,
        stack: impl FnOnce() -> Option<&'s [u64]>,
    ) {
        let stack = (ev.flags & netdrop_common::flag::HAS_STACK != 0
            && self.sink.wants_stack(ev, self.show_stack))
        .then(stack)
        .flatten();
        let mut cx = Context {
            enricher: &mut self.enricher,
            clock: &self.clock,
            show_stack: self.show_stack,
            conntrack_hook: self.conntrack_hook,
        };
        let res = self.sink.drop(
            &Dropped {
                event: ev,
                stack,
                capture,
            },
            &mut cx,
        );
        self.delivered += 1;
        self.check(res);
    }

    /// Writes what is batched and flushes the output: the end of a drain.
    pub fn finish_batch(&mut self) {
        let res = self.sink.flush();
        self.check(res);
    }

    /// Writes "`count` more like this" for a flow and reason the rate limit suppressed.
    fn write_suppressed(&mut self, key: &netdrop_common::FlowKey, count: u64, mono_ns: u64) {
        let netns = (key.netns != 0).then(|| self.enricher.netns(key.netns, "flow"));
        let notice = SuppressedNotice {
            time: self.clock.rfc3339(mono_ns),
            count,
            reason: event::ReasonInfo::new(&self.enricher.reasons, key.reason, None),
            packet: event::flow_packet(key),
            netns,
            rate_limit: self.rate_limit,
        };
        // The sink writes it after the drops batched so far: it follows the events it is about.
        let res = self.sink.suppressed(&notice);
        self.check(res);
    }

    /// Writes "`count` more drops ... not examined" for a reason and location that went
    /// past the event budget on one CPU.
    fn write_over_budget(&mut self, rec: &netdrop_common::BudgetRecord, mono_ns: u64) {
        let location = self.enricher.location(rec.location);
        let notice = OverBudgetNotice {
            time: self.clock.rfc3339(mono_ns),
            count: rec.count,
            reason: event::ReasonInfo::new(
                &self.enricher.reasons,
                rec.reason,
                location.symbol.as_deref(),
            ),
            location,
            cpu: rec.cpu,
            budget: self.budget,
        };
        let res = self.sink.over_budget(&notice);
        self.check(res);
    }

    /// Events written so far.
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// The sink, once everything is written.
    #[cfg(test)]
    pub fn into_sink(self) -> S {
        self.sink
    }

    /// Starts a new batch of events.
    pub fn start_batch(&mut self) {
        self.sink.start_batch();
    }

    /// Writes a notice when the kernel counted lost or skipped events since the last one.
    fn report_loss(&mut self, probe: &Probe, last: &mut Counters) -> Result<(), Error> {
        let now = probe.counters()?;
        if now.lost == last.lost && now.missed == last.missed {
            return Ok(());
        }
        let notice = LostNotice {
            time: self.clock.rfc3339(Clock::monotonic_now()),
            lost: now.lost - last.lost,
            lost_total: now.lost,
            missed: now.missed - last.missed,
            missed_total: now.missed,
        };
        *last = now;
        let res = self.sink.lost(&notice).and_then(|()| self.sink.flush());
        self.check(res);
        Ok(())
    }

    /// Writes a notice per kernel drop counter that grew.
    fn report_counters(&mut self, changes: Vec<Change>) {
        for c in changes {
            let meaning = counters::info(&c.name).map_or("", |i| i.meaning);
            let netns = c.netns.map(|n| self.enricher.netns(n, "procfs"));
            add_growth(&mut self.counter_growth, &c.name, netns.as_ref(), c.delta);
            let notice = CounterNotice {
                time: self.clock.rfc3339(Clock::monotonic_now()),
                counter: c.name,
                delta: c.delta,
                total: c.total,
                netns,
                meaning: meaning.to_owned(),
            };
            let res = self.sink.counter(&notice);
            self.check(res);
        }
        let res = self.sink.flush();
        self.check(res);
    }

    /// Writes a record per listener blamed for accept-queue drops.
    fn report_listeners(&mut self, listeners: Vec<ListenerNotice>) {
        if listeners.is_empty() {
            return;
        }
        for l in listeners {
            let res = self.sink.listener(&l);
            self.check(res);
        }
        let res = self.sink.flush();
        self.check(res);
    }

    fn summary(&mut self, s: &Summary, histogram: &StatsReport) {
        let res = self
            .sink
            .summary(s, histogram)
            .and_then(|()| self.sink.flush());
        self.check(res);
    }

    fn check(&mut self, res: io::Result<()>) {
        if let Err(e) = res {
            if e.kind() != io::ErrorKind::BrokenPipe && !self.closed {
                eprintln!("netdrop: cannot write output: {e}");
            }
            self.closed = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Netns;

    #[test]
    fn counter_growth_stays_bounded_and_adds_up() {
        let ns = |inode| Netns {
            inode,
            name: None,
            source: "procfs".into(),
        };
        let mut g = Vec::new();
        for round in 0..3 {
            for inode in 0..5000u32 {
                add_growth(&mut g, "TcpExt.ListenOverflows", Some(&ns(inode)), 1);
            }
            add_growth(&mut g, "softnet.dropped", None, 2);
            assert!(
                g.len() <= MAX_GROWTH_ENTRIES + 2,
                "round {round}: {}",
                g.len()
            );
        }
        let total = |name: &str| -> u64 {
            g.iter()
                .filter(|e| e.counter.starts_with(name))
                .map(|e| e.delta)
                .sum()
        };
        assert_eq!(total("TcpExt.ListenOverflows"), 15000);
        assert_eq!(total("softnet.dropped"), 6);
        assert!(
            g.iter()
                .any(|e| e.counter == "softnet.dropped" && e.delta == 6)
        );
    }
}
