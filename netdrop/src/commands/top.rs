//! `netdrop top`: the live view, refreshed every interval from the exact in-kernel counts.

use std::{
    collections::HashMap,
    io::{IsTerminal, Write},
    time::Duration,
};

use ratatui::crossterm::event::{self, Event, KeyEventKind};
use tokio::sync::mpsc;

use crate::{
    aggregate::{GroupBy, SortBy, Totals, listeners::ListenerTotals},
    cli::TopArgs,
    commands::{self, sockets::SocketWatch},
    error::Error,
    event::Enricher,
    kernel::counters::{CounterWatch, RxWatch},
    output::{
        receive, stats,
        tui::{self, ListenerBook, TopModel},
    },
    probe::{Probe, ProbeConfig},
    time::Clock,
};

/// Groups shown: enough for 24 lines and then some on taller terminals.
const ROWS: usize = 50;

pub async fn run(args: &TopArgs, verbose: u8) -> Result<(), Error> {
    if let Some(path) = &args.from {
        return commands::from::top_from(args, path);
    }
    let (kernel, spec, filter) = commands::prepare(&args.kernel, &args.filter)?;
    let opts = args.metrics.labels.options();
    // Every grouping is counted, so switching is instant.
    let flags = GroupBy::ALL
        .iter()
        .fold(opts.config(), |acc, g| acc | g.config());
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
    let mut scrapes = commands::start_metrics(args.metrics.metrics_addr).await?;
    let clock = Clock::now();
    let interactive = std::io::stdout().is_terminal();

    let mut model = TopModel {
        by: args.by,
        sort: SortBy::Rate,
        paused: false,
        hook: probe.hook.to_string(),
        report: stats::report(
            &mut enricher,
            args.by,
            &Totals::default(),
            &Totals::default(),
            SortBy::Rate,
            ROWS,
            String::new(),
        ),
        lost: 0,
        history: HashMap::new(),
        by_listener: false,
        listener_rows: Vec::new(),
        help: false,
    };
    let mut listener_book = ListenerBook::default();
    // The sockets' baseline is taken before saying we are ready.
    let mut socket_watch = (!spec.hides_sockets()).then(|| SocketWatch::new(spec.netns));
    let (keys_tx, mut keys) = mpsc::channel(16);
    let mut terminal = if interactive {
        spawn_key_reader(keys_tx);
        Some(ratatui::init())
    } else {
        eprintln!(
            "netdrop: stdout is not a terminal: printing a report every {:?}",
            args.interval
        );
        drop(keys_tx);
        None
    };
    let mut counter_watch = (!spec.hides_listeners()).then(|| CounterWatch::new(spec.netns));
    let mut listener_totals = ListenerTotals::default();
    // Receive counts per device and softnet per CPU (every grouping is counted here, so
    // drops per device are known).
    let mut rx_watch = RxWatch::new(spec.netns);
    let mut rx_prev = rx_watch.read();
    let mut prev = probe.totals()?;
    let mut last = (prev.clone(), prev.clone());
    let mut tick =
        tokio::time::interval_at(tokio::time::Instant::now() + args.interval, args.interval);
    let mut refreshes = 0;
    let result = loop {
        tokio::select! {
            _ = tick.tick() => {
                let now = match probe.totals() {
                    Ok(t) => t,
                    Err(e) => break Err(e),
                };
                // Right after the drop counts, so both cover the same interval.
                let rx_now = rx_watch.read();
                let per_reason: Vec<(String, u64)> = now
                    .by_reason
                    .iter()
                    .map(|(code, n)| (enricher.reasons.decode(*code).name, n - prev.by_reason.get(code).copied().unwrap_or(0)))
                    .collect();
                model.record_history(&per_reason);
                let listeners = match counter_watch.as_mut() {
                    Some(c) => {
                        let time = clock.rfc3339(now.mono_ns);
                        commands::listener_notices(&c.poll(), c, &spec, &mut enricher, &time)
                    }
                    None => Vec::new(),
                };
                listener_totals.add(&listeners);
                let sockets = match socket_watch.as_mut() {
                    Some(w) => w.poll(&spec, &mut enricher),
                    None => Vec::new(),
                };
                if !model.paused {
                    last = (prev.clone(), now.clone());
                    refresh(&mut model, &mut enricher, &last, &clock);
                    model.report.listeners = listeners;
                    model.report.sockets = sockets;
                    model.listener_rows = listener_book.rows(
                        &listener_totals.busiest(ROWS),
                        &model.report.listeners,
                        model.report.interval_s,
                        model.sort,
                    );
                    (model.report.softnet, model.report.devices) =
                        receive::rows(&mut enricher, &rx_prev, &rx_now, (&last.0, &last.1), true);
                }
                rx_prev = rx_now;
                prev = now;
                refreshes += 1;
                match &mut terminal {
                    Some(t) => {
                        let _ = t.draw(|f| tui::draw(f, &model));
                    }
                    None => {
                        let mut out = std::io::stdout().lock();
                        let local = clock.local_hms(last.1.mono_ns);
                        if stats::write_text(&mut out, &model.report, &local).and_then(|()| out.flush()).is_err() {
                            break Ok(());
                        }
                    }
                }
                if args.count.is_some_and(|n| refreshes >= n) {
                    break Ok(());
                }
            }
            Some(k) = keys.recv() => {
                if !tui::apply(&mut model, tui::key(k)) {
                    break Ok(());
                }
                refresh(&mut model, &mut enricher, &last, &clock);
                model.listener_rows = listener_book.rows(
                    &listener_totals.busiest(ROWS),
                    &model.report.listeners,
                    model.report.interval_s,
                    model.sort,
                );
                if let Some(t) = &mut terminal {
                    let _ = t.draw(|f| tui::draw(f, &model));
                }
            }
            s = commands::next_scrape(&mut scrapes) => {
                let listeners = counter_watch.is_some().then_some(&listener_totals);
                commands::answer(s, &probe, listeners, &mut enricher, &opts);
            }
            _ = stop.recv() => break Ok(()),
        }
    };
    if terminal.is_some() {
        ratatui::restore();
    }
    result
}

/// Rebuilds the report shown from the last interval (the listeners and sockets named in
/// it stay).
fn refresh(model: &mut TopModel, enricher: &mut Enricher, last: &(Totals, Totals), clock: &Clock) {
    let listeners = std::mem::take(&mut model.report.listeners);
    let sockets = std::mem::take(&mut model.report.sockets);
    let softnet = std::mem::take(&mut model.report.softnet);
    let devices = std::mem::take(&mut model.report.devices);
    model.report = stats::report(
        enricher,
        model.by,
        &last.0,
        &last.1,
        model.sort,
        ROWS,
        clock.rfc3339(last.1.mono_ns),
    );
    model.report.listeners = listeners;
    model.report.sockets = sockets;
    model.report.softnet = softnet;
    model.report.devices = devices;
}

/// Reads key presses on a thread (crossterm blocks) and forwards them.
fn spawn_key_reader(tx: mpsc::Sender<event::KeyEvent>) {
    std::thread::spawn(move || {
        while !tx.is_closed() {
            match event::poll(Duration::from_millis(200)) {
                Ok(true) => {
                    if let Ok(Event::Key(k)) = event::read()
                        && k.kind == KeyEventKind::Press
                        && tx.blocking_send(k).is_err()
                    {
                        break;
                    }
                }
                Ok(false) => {}
                Err(_) => break,
            }
        }
    });
}
