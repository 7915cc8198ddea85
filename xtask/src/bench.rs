//! `cargo xtask bench`: what tracing costs the traced workload, measured in one run.
//!
//! N senders (`--senders 1,2`), each pinned to its own CPU where the machine has one, send
//! UDP datagrams to a closed loopback port, each a NO_SOCKET drop; the tracer runs on the
//! last CPU. Modes run interleaved, round after round, so
//! machine noise hits them alike: untraced, `netdrop stats` (in-kernel aggregation),
//! `netdrop watch --json > /dev/null` with its default rate limit per flow and reason
//! (streaming), the same with `--rate-limit 0` (streaming every event), and bpftrace
//! counting per reason when bpftrace is installed. Reported: the generator's drop rate as a share of the
//! untraced one (medians over rounds), events delivered and lost, the tracer's CPU seconds
//! per million drops, its peak RSS, and, with the kernel's accounting of BPF programs
//! switched on for the run, the tracer's kfree_skb program time per drop (bpftool's
//! `run_time_ns` / `run_cnt`), which machine noise disturbs far less than the rate shares.
//! No timing is asserted: these are figures to read.
//! Last, `netdrop bench-pipeline` measures user space alone (decode, enrich, write) on
//! synthetic events; `--pipeline` runs only that, without root or a kernel.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::{cmd, setup};

/// Options.
pub struct BenchArgs {
    pub rounds: usize,
    pub seconds: f64,
    /// Numbers of senders to measure, each in its own set of rounds.
    pub senders: Vec<usize>,
    /// Only the user-space pipeline figure.
    pub pipeline_only: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Untraced,
    Stats,
    Watch,
    /// `watch --budget 0`: the rate limit alone, so every drop's headers are read.
    WatchNoBudget,
    /// `watch --rate-limit 0 --budget 0`: every drop an event.
    WatchAll,
    Bpftrace,
}

impl Mode {
    /// Names of the mode's kfree_skb programs, to tell them from the tracer's other
    /// programs; `None`: all of them (bpftrace loads just the one).
    fn drop_hooks(self) -> Option<&'static [&'static str]> {
        match self {
            Mode::Bpftrace => None,
            _ => Some(bpf_stats::NETDROP_DROP_HOOKS),
        }
    }

    /// Streams events (a `watch`): its summary accounts for every matched drop.
    fn streams(self) -> bool {
        matches!(self, Mode::Watch | Mode::WatchNoBudget | Mode::WatchAll)
    }

    fn name(self) -> &'static str {
        match self {
            Mode::Untraced => "untraced",
            Mode::Stats => "netdrop stats (aggregation)",
            Mode::Watch => "netdrop watch --json (default limits)",
            Mode::WatchNoBudget => "netdrop watch --json --budget 0",
            Mode::WatchAll => "watch --json --rate-limit 0 --budget 0",
            Mode::Bpftrace => "bpftrace count per reason",
        }
    }
}

/// One mode's run.
#[derive(Clone, Debug, Default)]
struct Sample {
    rate: f64,
    sent: u64,
    cpu_s: f64,
    total_cpu_s: f64,
    max_rss_kib: u64,
    delivered: Option<u64>,
    lost: Option<u64>,
    suppressed: Option<u64>,
    /// Drops counted past `--budget`, not examined.
    over_budget: Option<u64>,
    matched: Option<u64>,
    /// Rate over the mean rate of the untraced runs just before and after.
    ratio: Option<f64>,
    /// The tracer's kfree_skb program time per run, as the kernel accounts it.
    ns_per_drop: Option<f64>,
    /// Runs of that program while drops were sent.
    runs: Option<u64>,
}

const PORT: u16 = 9;

/// Synthetic events per `bench-pipeline` run.
const PIPELINE_EVENTS: u64 = 4_000_000;

/// All rounds with one number of senders.
struct SenderRun {
    senders: usize,
    placement: Placement,
    samples: Vec<(Mode, Sample)>,
}

/// Where the senders and the tracer run.
#[derive(Clone, Debug)]
struct Placement {
    senders: Vec<usize>,
    tracer: usize,
}

impl Placement {
    /// Sender `i` on CPU `i` (wrapping), the tracer on the last CPU.
    fn new(senders: usize, cpus: usize) -> Self {
        Self {
            senders: (0..senders).map(|i| i % cpus).collect(),
            tracer: cpus - 1,
        }
    }

    /// What shares a CPU, in words; `None` when nothing does.
    fn sharing(&self) -> Option<String> {
        let mut notes = Vec::new();
        let distinct: std::collections::BTreeSet<_> = self.senders.iter().collect();
        if distinct.len() < self.senders.len() {
            notes.push(format!(
                "{} senders share {} CPUs with each other",
                self.senders.len(),
                distinct.len()
            ));
        }
        let with_tracer = self.senders.iter().filter(|&&c| c == self.tracer).count();
        if with_tracer > 0 {
            notes.push(format!(
                "{with_tracer} sender(s) share CPU {} with the tracer",
                self.tracer
            ));
        }
        (!notes.is_empty()).then(|| notes.join("; "))
    }

    fn describe(&self) -> String {
        let cpus: Vec<String> = self.senders.iter().map(usize::to_string).collect();
        format!(
            "senders on CPU {}, tracer on CPU {}",
            cpus.join(","),
            self.tracer
        )
    }
}

pub fn run(args: BenchArgs) -> Result<()> {
    if args.pipeline_only {
        return pipeline(&crate::build(true)?);
    }
    if args.senders.is_empty() || args.senders.contains(&0) {
        bail!("--senders takes numbers of senders from 1 up, e.g. --senders 1,2");
    }
    if !cmd::is_root() {
        bail!("the benchmark loads eBPF programs: run `sudo -E cargo xtask bench`");
    }
    setup::toolchain()?;
    setup::install_packages(&[("taskset", "util-linux")])?;
    cmd::run(
        cmd::cargo()
            .args([
                "build",
                "--release",
                "--package",
                "netdrop",
                "--package",
                "netdrop-tests",
            ])
            .args(["--bin", "netdrop", "--bin", "netdrop-dropgen"]),
    )?;
    let bin = cmd::target_dir().join("release");
    let netdrop = bin.join("netdrop");
    let dropgen = bin.join("netdrop-dropgen");
    let mut modes = vec![
        Mode::Untraced,
        Mode::Stats,
        Mode::Watch,
        Mode::WatchNoBudget,
        Mode::WatchAll,
    ];
    // The baseline is optional: a failed install only leaves it out.
    let _ = setup::install_packages(&[("bpftrace", "bpftrace")]);
    if setup::on_path("bpftrace") {
        modes.push(Mode::Bpftrace);
    } else {
        eprintln!(
            "xtask: bpftrace is not installed (Debian package bpftrace): its baseline is left out"
        );
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus < 2 {
        bail!("the benchmark needs two CPUs: one sends, one traces");
    }
    // The kernel's accounting, optional too: on until this function returns, then back to
    // what it was.
    let _ = setup::install_packages(&[("bpftool", "bpftool")]);
    let stats = bpf_stats::Enabled::new()
        .inspect_err(|e| eprintln!("xtask: kernel ns per drop is left out: {e:#}"))
        .ok();
    let bpftool = stats.as_ref().map(|s| s.bpftool.as_path());
    let mut results = Vec::new();
    for &n in &args.senders {
        let placement = Placement::new(n, cpus);
        eprintln!(
            "xtask: {n} sender(s): {} rounds x {} modes x {}s; {}",
            args.rounds,
            modes.len(),
            args.seconds,
            placement.describe()
        );
        if let Some(note) = placement.sharing() {
            eprintln!("xtask: note: this machine has {cpus} CPUs: {note}; running anyway");
        }
        let samples = rounds(&args, &modes, &placement, &netdrop, &dropgen, bpftool)?;
        println!("\n{n} sender(s): {}", placement.describe());
        if let Some(note) = placement.sharing() {
            println!("note: {note}");
        }
        report(&modes, &samples);
        results.push(SenderRun {
            senders: n,
            placement,
            samples,
        });
    }
    legend();
    if results.len() > 1 {
        per_senders(&results);
    }
    pipeline(&netdrop)
}

/// One line per number of senders: the shares of aggregation and streaming, the kernel's
/// ns per drop of each, and what streaming delivered.
fn per_senders(results: &[SenderRun]) {
    println!(
        "\n{:>7} {:>16} {:>11} {:>11} {:>14} {:>8} {:>8} {:>11} {:>11} {:>11}  placement",
        "senders",
        "untraced drops/s",
        "stats share",
        "watch share",
        "every-ev share",
        "stats ns",
        "watch ns",
        "budget 0 ns",
        "every-ev ns",
        "unaccounted"
    );
    for SenderRun {
        senders: n,
        placement,
        samples,
    } in results
    {
        let of = |m: Mode| samples.iter().filter(move |(x, _)| *x == m).map(|(_, s)| s);
        let share = |m: Mode| {
            let ratios: Vec<f64> = of(m).filter_map(|s| s.ratio).collect();
            if ratios.is_empty() {
                "-".to_owned()
            } else {
                format!("{:.3}", median(ratios))
            }
        };
        let untraced = median(of(Mode::Untraced).map(|s| s.rate).collect());
        let streamed = samples.iter().filter(|(m, _)| m.streams()).map(|(_, s)| s);
        let unaccounted = streamed
            .map(unaccounted)
            .sum::<Option<i64>>()
            .map_or("-".to_owned(), |u| u.to_string());
        let mut place = placement.describe();
        if let Some(note) = placement.sharing() {
            place = format!("{place} ({note})");
        }
        println!(
            "{n:>7} {untraced:>16.0} {:>11} {:>11} {:>14} {:>8} {:>8} {:>11} {:>11} {unaccounted:>11}  {place}",
            share(Mode::Stats),
            share(Mode::Watch),
            share(Mode::WatchAll),
            kernel_median(samples, Mode::Stats),
            kernel_median(samples, Mode::Watch),
            kernel_median(samples, Mode::WatchNoBudget),
            kernel_median(samples, Mode::WatchAll),
        );
    }
}

/// User space alone: `netdrop bench-pipeline` on one CPU for JSON and text, each format
/// three times, the median quoted.
fn pipeline(netdrop: &Path) -> Result<()> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cpu = cpus - 1;
    println!(
        "\nuser-space pipeline (decode, enrich, write, output discarded), synthetic events, CPU {cpu}:"
    );
    println!(
        "{:<7} {:>10} {:>14} {:>16} {:>12} {:>14}",
        "format", "events", "events/s", "events/cpu-s", "bytes/event", "decode share"
    );
    for format in ["json", "text"] {
        let mut runs = Vec::new();
        for _ in 0..3 {
            let events = if format == "json" {
                PIPELINE_EVENTS
            } else {
                PIPELINE_EVENTS / 10
            };
            let out = cmd::output(taskset(cpu, netdrop).args([
                "bench-pipeline",
                "--events",
                &events.to_string(),
                "--format",
                format,
            ]))
            .context("running netdrop bench-pipeline")?;
            runs.push(tool_output::parse_pipeline(&out)?);
        }
        let med = |f: fn(&tool_output::Pipeline) -> f64| median(runs.iter().map(f).collect());
        let events = runs[0].events;
        println!(
            "{format:<7} {events:>10.0} {:>14.0} {:>16.0} {:>12.0} {:>14.3}",
            med(|p| p.events / p.wall_s),
            med(|p| p.events / p.cpu_s.max(1e-9)),
            med(|p| p.bytes / p.events),
            med(|p| p.decode_only_s / p.wall_s),
        );
    }
    println!(
        "events/s: over wall time; events/cpu-s: over the process's CPU time (higher than the\n\
         wall rate when the machine took the CPU away); decode share: decoding alone\n\
         as a share of the whole. Target: JSON >= 2,000,000 events/s."
    );
    Ok(())
}

/// All rounds of all modes with one placement of senders; `bpftool` when the kernel's
/// accounting of BPF programs is on.
fn rounds(
    args: &BenchArgs,
    modes: &[Mode],
    placement: &Placement,
    netdrop: &Path,
    dropgen: &Path,
    bpftool: Option<&Path>,
) -> Result<Vec<(Mode, Sample)>> {
    // Each traced run sits between two untraced runs and is compared with their mean: the
    // machine's speed drifts (other tenants), slowly enough for neighbours to agree.
    let mut samples: Vec<(Mode, Sample)> = Vec::new();
    let traced: Vec<Mode> = modes
        .iter()
        .copied()
        .filter(|m| *m != Mode::Untraced)
        .collect();
    let run = |mode: Mode, round: usize| -> Result<Sample> {
        let s = run_mode(mode, netdrop, dropgen, args.seconds, placement, bpftool)
            .with_context(|| format!("round {round}, {}", mode.name()))?;
        let kernel = s
            .ns_per_drop
            .map_or(String::new(), |ns| format!(" {ns:>6.0} ns/drop"));
        eprintln!(
            "xtask: round {round} {:<38} {:>9.0} drops/s{kernel}",
            mode.name(),
            s.rate
        );
        Ok(s)
    };
    for round in 1..=args.rounds {
        let mut before = run(Mode::Untraced, round)?;
        // Rotate the order so no mode always follows the same one.
        for i in 0..traced.len() {
            let mode = traced[(i + round) % traced.len()];
            let mut s = run(mode, round)?;
            let after = run(Mode::Untraced, round)?;
            let base = (before.rate + after.rate) / 2.0;
            s.ratio = (base > 0.0).then(|| s.rate / base);
            samples.push((Mode::Untraced, before));
            samples.push((mode, s));
            before = after;
        }
        samples.push((Mode::Untraced, before));
    }
    Ok(samples)
}

fn taskset(cpu: usize, program: &Path) -> Command {
    let mut c = Command::new("taskset");
    c.args(["-c", &cpu.to_string()]).arg(program);
    c
}

/// One run of `mode`; with `bpftool`, also the kernel's time per run of the tracer's
/// kfree_skb program between the tracer's start and the senders' end.
fn run_mode(
    mode: Mode,
    netdrop: &Path,
    dropgen: &Path,
    seconds: f64,
    placement: &Placement,
    bpftool: Option<&Path>,
) -> Result<Sample> {
    let tracer_cpu = placement.tracer;
    let tracer = match mode {
        Mode::Untraced => None,
        Mode::Stats => Some(start(
            taskset(tracer_cpu, netdrop).args(["stats", "--json", "--interval", "1"]),
            "netdrop: counting drops",
        )?),
        Mode::Watch => Some(start(
            taskset(tracer_cpu, netdrop).args(["watch", "--json", "--no-counters"]),
            "netdrop: watching",
        )?),
        Mode::WatchNoBudget => Some(start(
            taskset(tracer_cpu, netdrop).args([
                "watch",
                "--json",
                "--no-counters",
                "--budget",
                "0",
            ]),
            "netdrop: watching",
        )?),
        Mode::WatchAll => Some(start(
            taskset(tracer_cpu, netdrop).args([
                "watch",
                "--json",
                "--no-counters",
                "--rate-limit",
                "0",
                "--budget",
                "0",
            ]),
            "netdrop: watching",
        )?),
        Mode::Bpftrace => Some(start(
            taskset(tracer_cpu, Path::new("bpftrace")).args([
                "-e",
                "tracepoint:skb:kfree_skb { @[args->reason] = count(); }",
            ]),
            "Attaching",
        )?),
    };
    // A failed reading leaves the figure out of this run, not the run out.
    let kernel_start = match (&tracer, bpftool) {
        (Some(t), Some(bpftool)) => bpf_stats::start(bpftool, t.child.id(), mode.drop_hooks())
            .inspect_err(|e| eprintln!("xtask: no kernel ns per drop for this run: {e:#}"))
            .ok()
            .map(|start| (bpftool, start)),
        _ => None,
    };
    let cpu_before = tracer.as_ref().map(|t| proc_cpu_seconds(t.child.id()));
    let senders = placement
        .senders
        .iter()
        .map(|&cpu| {
            taskset(cpu, dropgen)
                .arg(PORT.to_string())
                .arg(format!("{seconds}"))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .context("starting the drop generator")
        })
        .collect::<Result<Vec<_>>>()?;
    // The senders run side by side: their rates add up.
    let mut s = Sample::default();
    for sender in senders {
        let out = sender
            .wait_with_output()
            .context("running the drop generator")?;
        if !out.status.success() {
            bail!(
                "drop generator failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let generated = tool_output::parse(&String::from_utf8_lossy(&out.stdout))?;
        s.rate += generated.rate;
        s.sent += generated.sent;
    }
    if let Some(t) = tracer {
        // CPU spent while drops were being made: start-up (reading BTF and kallsyms) is
        // reported apart, as it does not grow with the number of drops.
        let during = proc_cpu_seconds(t.child.id()) - cpu_before.unwrap_or(0.0);
        if let Some((bpftool, start)) = &kernel_start {
            match bpf_stats::since(bpftool, start) {
                Ok(per_run) => (s.ns_per_drop, s.runs) = per_run.unzip(),
                Err(e) => eprintln!("xtask: no kernel ns per drop for this run: {e:#}"),
            }
        }
        let (stderr, usage) = stop(t)?;
        s.cpu_s = during;
        s.total_cpu_s = usage.0;
        s.max_rss_kib = usage.1;
        if mode.streams() {
            // "netdrop: N drops matched in ...; D events shown, L lost, ...[; S suppressed
            // by --rate-limit ...]"
            let line = stderr
                .lines()
                .rfind(|l| l.contains("events shown"))
                .context("no watch summary on stderr")?;
            let num_before = |marker: &str| -> Option<u64> {
                let at = line.find(marker)?;
                line[..at]
                    .split_whitespace()
                    .last()?
                    .trim_start_matches('(')
                    .parse()
                    .ok()
            };
            s.matched = num_before(" drops matched");
            s.delivered = num_before(" events shown");
            s.lost = num_before(" lost");
            s.suppressed = Some(num_before(" suppressed by").unwrap_or(0));
            s.over_budget = Some(num_before(" counted past --budget").unwrap_or(0));
        }
    }
    Ok(s)
}

/// A tracer started by [`start`], to be ended by [`stop`].
pub struct Tracer {
    pub child: Child,
    stderr: mpsc::Receiver<String>,
}

/// Starts a tracer (stdout to /dev/null) and waits for `ready` on its stderr or stdout.
pub fn start(c: &mut Command, ready: &str) -> Result<Tracer> {
    let mut child = c
        .stdin(Stdio::null())
        .stdout(if ready == "Attaching" {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", cmd::show(c)))?;
    let (tx, rx) = mpsc::channel();
    let err = child.stderr.take().unwrap();
    let tx2 = tx.clone();
    std::thread::spawn(move || {
        for l in BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    if let Some(out) = child.stdout.take() {
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx2.send(l);
            }
        });
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = String::new();
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(l) => {
                let done = l.contains(ready);
                seen.push_str(&l);
                seen.push('\n');
                if done {
                    break;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                bail!("tracer exited before it was ready:\n{seen}")
            }
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("tracer not ready after 60s:\n{seen}");
        }
    }
    // Let it settle (first map reads, symbol loading) before measuring.
    std::thread::sleep(Duration::from_millis(500));
    Ok(Tracer { child, stderr: rx })
}

/// SIGINT, wait, and return (stderr, (CPU seconds, peak RSS KiB)) from wait4's rusage.
pub fn stop(t: Tracer) -> Result<(String, (f64, u64))> {
    let pid = t.child.id() as i32;
    // taskset execs the tracer, so the pid is the tracer's.
    // SAFETY: plain kill/wait4 on our own child.
    let usage = unsafe {
        libc::kill(pid, libc::SIGINT);
        let mut status = 0;
        let mut ru: libc::rusage = std::mem::zeroed();
        // A tracer that ignores SIGINT (bpftrace sometimes does) gets SIGTERM, then SIGKILL.
        let started = Instant::now();
        let mut escalated = 0;
        loop {
            let r = libc::wait4(pid, &mut status, libc::WNOHANG, &mut ru);
            if r == pid {
                break;
            }
            if r < 0 {
                bail!("wait4: {}", std::io::Error::last_os_error());
            }
            let waited = started.elapsed().as_secs();
            if waited >= 10 && escalated == 0 {
                libc::kill(pid, libc::SIGTERM);
                escalated = 1;
            } else if waited >= 20 && escalated == 1 {
                libc::kill(pid, libc::SIGKILL);
                escalated = 2;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let secs = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
        (secs(ru.ru_utime) + secs(ru.ru_stime), ru.ru_maxrss as u64)
    };
    let mut stderr = String::new();
    while let Ok(l) = t.stderr.recv_timeout(Duration::from_secs(2)) {
        stderr.push_str(&l);
        stderr.push('\n');
    }
    std::mem::forget(t.child);
    Ok((stderr, usage))
}

/// utime + stime of `pid` from /proc (clock ticks of 1/100 s on Linux).
fn proc_cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name.
    (ticks(11) + ticks(12)) / hz
}

/// First and third quartiles.
fn quartiles(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return (0.0, 0.0);
    }
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (at(0.25), at(0.75))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return 0.0;
    }
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

fn report(modes: &[Mode], samples: &[(Mode, Sample)]) {
    let of = |m: Mode| {
        samples
            .iter()
            .filter(|(x, _)| *x == m)
            .map(|(_, s)| s)
            .collect::<Vec<_>>()
    };
    println!();
    println!(
        "{:<38} {:>10} {:>7} {:>10} {:>11} {:>9} {:>12} {:>10} {:>9}",
        "mode",
        "drops/s",
        "share",
        "IQR",
        "delivered",
        "lost",
        "cpu s/Mdrop",
        "peak RSS",
        "start cpu"
    );
    for &m in modes {
        let runs = of(m);
        let rate = median(runs.iter().map(|s| s.rate).collect());
        let ratios: Vec<f64> = runs.iter().filter_map(|s| s.ratio).collect();
        let (share, spread) = if m == Mode::Untraced {
            ("1.000".to_owned(), "-".to_owned())
        } else {
            let (lo, hi) = quartiles(ratios.clone());
            (format!("{:.3}", median(ratios)), format!("{lo:.2}-{hi:.2}"))
        };
        let sent: u64 = runs.iter().map(|s| s.sent).sum();
        let cpu: f64 = runs.iter().map(|s| s.cpu_s).sum();
        let startup: f64 =
            runs.iter().map(|s| s.total_cpu_s - s.cpu_s).sum::<f64>() / runs.len().max(1) as f64;
        let rss = runs.iter().map(|s| s.max_rss_kib).max().unwrap_or(0);
        let sum = |f: fn(&Sample) -> Option<u64>| runs.iter().map(|s| f(s)).sum::<Option<u64>>();
        let (delivered, lost, suppressed, over_budget, matched) = (
            sum(|s| s.delivered),
            sum(|s| s.lost),
            sum(|s| s.suppressed),
            sum(|s| s.over_budget),
            sum(|s| s.matched),
        );
        let dash = |v: Option<u64>| v.map_or("-".to_owned(), |v| v.to_string());
        let cpu_per_m = if m == Mode::Untraced || sent == 0 {
            "-".to_owned()
        } else {
            format!("{:.3}", cpu / (sent as f64 / 1e6))
        };
        let rss = if m == Mode::Untraced {
            "-".to_owned()
        } else {
            format!("{:.1} MiB", rss as f64 / 1024.0)
        };
        let startup = if m == Mode::Untraced {
            "-".to_owned()
        } else {
            format!("{startup:.2}s")
        };
        println!(
            "{:<38} {:>10.0} {:>7} {:>10} {:>11} {:>9} {:>12} {:>10} {:>9}",
            m.name(),
            rate,
            share,
            spread,
            dash(delivered),
            dash(lost),
            cpu_per_m,
            rss,
            startup
        );
        if let (Some(d), Some(l), Some(sp), Some(ob), Some(mt)) =
            (delivered, lost, suppressed, over_budget, matched)
        {
            let unaccounted = mt as i64 - (d + sp + ob + l) as i64;
            println!(
                "{:<38} matched {mt}, delivered {d} + suppressed {sp} + over budget {ob} + lost {l} = {}, unaccounted {unaccounted}",
                "",
                d + sp + ob + l
            );
        }
    }
    kernel_report(modes, samples);
}

/// The kernel's time per run of each tracer's kfree_skb program: median and IQR over
/// rounds, and the runs they add up; nothing when no run has the figure.
fn kernel_report(modes: &[Mode], samples: &[(Mode, Sample)]) {
    if samples.iter().all(|(_, s)| s.ns_per_drop.is_none()) {
        return;
    }
    println!();
    println!(
        "{:<38} {:>10} {:>11} {:>11} {:>7}",
        "kernel ns per drop", "median", "IQR", "runs", "rounds"
    );
    for &m in modes.iter().filter(|&&m| m != Mode::Untraced) {
        let runs: Vec<&Sample> = samples
            .iter()
            .filter(|(x, s)| *x == m && s.ns_per_drop.is_some())
            .map(|(_, s)| s)
            .collect();
        let ns: Vec<f64> = runs.iter().filter_map(|s| s.ns_per_drop).collect();
        let (median, spread) = if ns.is_empty() {
            ("-".to_owned(), "-".to_owned())
        } else {
            let (lo, hi) = quartiles(ns.clone());
            (format!("{:.1}", median(ns)), format!("{lo:.0}-{hi:.0}"))
        };
        let total: u64 = runs.iter().filter_map(|s| s.runs).sum();
        println!(
            "{:<38} {median:>10} {spread:>11} {total:>11} {:>7}",
            m.name(),
            runs.len()
        );
    }
}

/// Median kernel ns per drop of `mode`'s runs, or "-".
fn kernel_median(samples: &[(Mode, Sample)], mode: Mode) -> String {
    let ns: Vec<f64> = samples
        .iter()
        .filter(|(m, _)| *m == mode)
        .filter_map(|(_, s)| s.ns_per_drop)
        .collect();
    if ns.is_empty() {
        "-".to_owned()
    } else {
        format!("{:.1}", median(ns))
    }
}

/// Matched drops of a streaming run that were neither delivered, suppressed, over budget
/// nor lost.
fn unaccounted(s: &Sample) -> Option<i64> {
    Some(s.matched? as i64 - (s.delivered? + s.suppressed? + s.over_budget? + s.lost?) as i64)
}

/// What the columns of [`report`] mean.
fn legend() {
    println!(
        "\nshare: median over rounds of the sender's drop rate with the tracer, divided by the mean of the\n\
         untraced runs just before and after (1.000 = free); IQR: the middle half of those ratios. cpu s/Mdrop: the\n\
         tracer's user+system CPU while drops were sent, per million drops; start cpu: CPU spent before\n\
         and after (loading BTF, symbols), per run. default limits: watch as run, at most 2000 drops\n\
         examined per second per reason and location on each CPU (--budget, checked before the headers\n\
         are read; the rest counted as over budget), of those at most 1000 events per flow and reason\n\
         (--rate-limit; each sender is one flow); --budget 0: the rate limit alone; every-ev:\n\
         --rate-limit 0 --budget 0. Targets: aggregation >= 0.97, streaming >= 0.85\n\
         with zero unaccounted loss, <= 1 CPU-second per million streamed drops, RSS <= 64 MiB.\n\
         kernel ns per drop: the tracer's kfree_skb program's own time per run as the kernel\n\
         accounts it (kernel.bpf_stats_enabled; run_time_ns / run_cnt from bpftool, medians over rounds),\n\
         less disturbed by machine noise than drop-rate shares: the figure the goal \"streaming\n\
         costs the drop path no more than aggregation\" is judged by (stats ns vs watch ns)."
    );
}

/// The one-line JSON reports of the drop generator and of `netdrop bench-pipeline`.
mod tool_output {
    use anyhow::{Context, Result};
    use serde_json::Value;

    pub struct Gen {
        pub sent: u64,
        pub rate: f64,
    }

    /// The line of `netdrop bench-pipeline`.
    pub struct Pipeline {
        pub events: f64,
        pub bytes: f64,
        pub wall_s: f64,
        pub cpu_s: f64,
        pub decode_only_s: f64,
    }

    fn object(s: &str) -> Result<Value> {
        serde_json::from_str(s.trim()).with_context(|| format!("not one JSON object: {s:?}"))
    }

    fn number(v: &Value, k: &str) -> Result<f64> {
        v.get(k)
            .and_then(Value::as_f64)
            .with_context(|| format!("no {k} in {v}"))
    }

    pub fn parse_pipeline(s: &str) -> Result<Pipeline> {
        let v = object(s)?;
        Ok(Pipeline {
            events: number(&v, "events")?,
            bytes: number(&v, "bytes")?,
            wall_s: number(&v, "wall_s")?,
            cpu_s: number(&v, "cpu_s")?,
            decode_only_s: number(&v, "decode_only_s")?,
        })
    }

    pub fn parse(s: &str) -> Result<Gen> {
        let v = object(s)?;
        Ok(Gen {
            sent: v
                .get("sent")
                .and_then(Value::as_u64)
                .context("generator output")?,
            rate: number(&v, "rate")?,
        })
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn reads_the_pipeline_line() {
            let p = super::parse_pipeline(
                "{\"format\":\"json\",\"events\":4000,\"bytes\":2529530,\"wall_s\":0.002,\"cpu_s\":0.001,\"events_per_s\":2000000,\"decode_only_s\":0.000}\n",
            )
            .unwrap();
            assert_eq!(p.events, 4000.0);
            assert_eq!(p.bytes, 2529530.0);
            assert_eq!(p.wall_s, 0.002);
            assert!(super::parse_pipeline("{}").is_err());
        }

        #[test]
        fn reads_the_generator_line() {
            let g = super::parse("{\"sent\": 445440, \"secs\": 2.003710, \"rate\": 222307.6}\n")
                .unwrap();
            assert_eq!(g.sent, 445440);
            assert_eq!(g.rate, 222307.6);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Placement;

    #[test]
    fn placement_says_what_shares_a_cpu() {
        let one = Placement::new(1, 2);
        assert_eq!(one.senders, [0]);
        assert_eq!(one.tracer, 1);
        assert_eq!(one.sharing(), None);
        let two = Placement::new(2, 2);
        assert_eq!(
            two.sharing().as_deref(),
            Some("1 sender(s) share CPU 1 with the tracer")
        );
        let three = Placement::new(3, 2);
        assert_eq!(three.senders, [0, 1, 0]);
        let note = three.sharing().unwrap();
        assert!(note.contains("3 senders share 2 CPUs"), "{note}");
        assert_eq!(Placement::new(2, 4).sharing(), None);
    }
}

/// The kernel's own accounting of BPF programs: with `kernel.bpf_stats_enabled` on, the
/// kernel adds up each program's run time and runs, which `bpftool prog show --json` prints
/// as `run_time_ns` and `run_cnt`.
mod bpf_stats {
    use std::{
        path::{Path, PathBuf},
        process::Command,
    };

    use anyhow::{Context, Result, bail};
    use serde_json::Value;

    pub const SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";

    /// netdrop's kfree_skb programs, whichever one the kernel took.
    pub const NETDROP_DROP_HOOKS: &[&str] =
        &["drop_btf_4arg", "drop_btf_3arg", "drop_btf_2arg", "drop_tp"];

    /// Longest program name the kernel keeps (BPF_OBJ_NAME_LEN less the NUL); bpftool
    /// prints the full name only when the program carries BTF.
    const NAME_LEN: usize = 15;

    /// Keeps the kernel's accounting on while it lives, then puts back the value it found,
    /// also when the benchmark fails. (A Ctrl-C that kills xtask skips this: then
    /// `sysctl kernel.bpf_stats_enabled=0` turns it off.)
    pub struct Enabled {
        previous: String,
        /// Where bpftool is.
        pub bpftool: PathBuf,
    }

    impl Enabled {
        /// Finds bpftool and turns the accounting on; the error says why it cannot be.
        pub fn new() -> Result<Self> {
            let bpftool = bpftool().context("bpftool is not installed (Debian package bpftool)")?;
            let previous = std::fs::read_to_string(SYSCTL)
                .with_context(|| format!("cannot read {SYSCTL}"))?
                .trim()
                .to_owned();
            std::fs::write(SYSCTL, "1").with_context(|| format!("cannot write 1 to {SYSCTL}"))?;
            Ok(Self { previous, bpftool })
        }
    }

    impl Drop for Enabled {
        fn drop(&mut self) {
            if let Err(e) = std::fs::write(SYSCTL, &self.previous) {
                eprintln!(
                    "xtask: could not put {SYSCTL} back to {}: {e}",
                    self.previous
                );
            }
        }
    }

    /// bpftool on PATH, or in /usr/sbin or /sbin (not on a user's PATH under `sudo -E`).
    fn bpftool() -> Option<PathBuf> {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .chain(["/usr/sbin".into(), "/sbin".into()])
            .map(|d| d.join("bpftool"))
            .find(|p| p.is_file())
    }

    /// One program of `bpftool prog show --json`.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct Prog {
        pub id: u64,
        pub name: String,
        /// Processes holding the program, when bpftool was built to tell (empty otherwise).
        pub pids: Vec<u32>,
        /// `None` when bpftool printed something other than a number.
        pub run_time_ns: Option<u64>,
        pub run_cnt: Option<u64>,
    }

    /// The programs of `bpftool prog show --json`. bpftool leaves `run_time_ns` and
    /// `run_cnt` out while the run time is 0, so missing ones read as 0; an entry without
    /// an id is skipped.
    pub fn parse(text: &str) -> Result<Vec<Prog>> {
        let json: Value =
            serde_json::from_str(text).context("bpftool printed something other than JSON")?;
        let entries = json
            .as_array()
            .context("bpftool printed no list of programs")?;
        let counter = |p: &Value, key: &str| p.get(key).map_or(Some(0), Value::as_u64);
        Ok(entries
            .iter()
            .filter_map(|p| {
                Some(Prog {
                    id: p.get("id")?.as_u64()?,
                    name: p
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned(),
                    pids: p
                        .get("pids")
                        .and_then(Value::as_array)
                        .map_or(&[][..], Vec::as_slice)
                        .iter()
                        .filter_map(|e| u32::try_from(e.get("pid")?.as_u64()?).ok())
                        .collect(),
                    run_time_ns: counter(p, "run_time_ns"),
                    run_cnt: counter(p, "run_cnt"),
                })
            })
            .collect())
    }

    /// The ids of the programs whose time is the tracer's cost per drop: those of process
    /// `pid` (bpftool's `pids`, or `owned`, the ids in its /proc fdinfo), narrowed to the
    /// kfree_skb programs named in `hooks` (`None`: all of them; bpftrace's one program).
    /// When nothing says which programs are the tracer's, the programs named in `hooks`,
    /// whoever loaded them.
    pub fn select(progs: &[Prog], pid: u32, owned: &[u64], hooks: Option<&[&str]>) -> Vec<u64> {
        let is_hook = |p: &Prog| {
            hooks.is_none_or(|names| {
                names.iter().any(|n| {
                    p.name == *n || (p.name.len() == NAME_LEN && n.starts_with(p.name.as_str()))
                })
            })
        };
        let mine = |p: &&Prog| p.pids.contains(&pid) || owned.contains(&p.id);
        let by_owner: Vec<u64> = progs
            .iter()
            .filter(mine)
            .filter(|p| is_hook(p))
            .map(|p| p.id)
            .collect();
        if !by_owner.is_empty() || progs.iter().any(|p| mine(&p)) || hooks.is_none() {
            return by_owner;
        }
        progs.iter().filter(|p| is_hook(p)).map(|p| p.id).collect()
    }

    /// Run time and runs summed over the programs `ids`; `None` if one is gone or
    /// unreadable.
    pub fn totals(progs: &[Prog], ids: &[u64]) -> Option<(u64, u64)> {
        ids.iter().try_fold((0, 0), |(time, runs), id| {
            let p = progs.iter().find(|p| p.id == *id)?;
            Some((time + p.run_time_ns?, runs + p.run_cnt?))
        })
    }

    /// Program ids in the file descriptors of process `pid` (programs and links to them).
    fn owned_by(pid: u32) -> Vec<u64> {
        let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
            return Vec::new();
        };
        let mut ids: Vec<u64> = dir
            .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
            .flat_map(|info| {
                info.lines()
                    .filter_map(|l| l.strip_prefix("prog_id:")?.trim().parse().ok())
                    .collect::<Vec<u64>>()
            })
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    fn list(bpftool: &Path) -> Result<Vec<Prog>> {
        let out = Command::new(bpftool)
            .args(["prog", "show", "--json"])
            .output()
            .with_context(|| format!("cannot run {}", bpftool.display()))?;
        if !out.status.success() {
            bail!(
                "`bpftool prog show --json` failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        parse(&String::from_utf8_lossy(&out.stdout))
    }

    /// The tracer's programs and their totals when it is ready.
    pub struct Start {
        ids: Vec<u64>,
        totals: (u64, u64),
    }

    /// Reads the tracer's programs once it is ready.
    pub fn start(bpftool: &Path, pid: u32, hooks: Option<&[&str]>) -> Result<Start> {
        let progs = list(bpftool)?;
        let ids = select(&progs, pid, &owned_by(pid), hooks);
        if ids.is_empty() {
            bail!("bpftool lists no kfree_skb program of process {pid}");
        }
        let totals = totals(&progs, &ids).context("bpftool printed no counters")?;
        Ok(Start { ids, totals })
    }

    /// Nanoseconds per run and runs since [`start`]; `None` when nothing ran.
    pub fn since(bpftool: &Path, start: &Start) -> Result<Option<(f64, u64)>> {
        let progs = list(bpftool)?;
        let (time, runs) = totals(&progs, &start.ids)
            .context("the tracer's programs are gone from bpftool's list")?;
        let (Some(time), Some(runs)) = (
            time.checked_sub(start.totals.0),
            runs.checked_sub(start.totals.1),
        ) else {
            bail!("the kernel's counters went backwards");
        };
        Ok((runs > 0).then(|| (time as f64 / runs as f64, runs)))
    }

    #[cfg(test)]
    mod tests {
        use super::{Prog, parse, select, totals};

        /// netdrop's hook (held by pid 4242), a second netdrop program, and a program of
        /// systemd's; the second has not run yet, so bpftool leaves its counters out.
        const LISTING: &str = r#"[{"id":11673,"type":"tracing","name":"drop_btf_4arg","tag":"fe2fdb26dc63b368","gpl_compatible":true,"loaded_at":1796180549,"uid":0,"bytes_xlated":976,"jited":true,"bytes_jited":584,"bytes_memlock":20480,"map_ids":[48269,48262],"btf_id":20720,"run_time_ns":2060000,"run_cnt":20000,"pids":[{"pid":4242,"comm":"netdrop"}]},{"id":11674,"type":"kprobe","name":"backlog_enqueue","tag":"aa","gpl_compatible":true,"run_time_ns":0,"map_ids":[],"pids":[{"pid":4242,"comm":"netdrop"}]},{"id":7,"type":"cgroup_skb","name":"sd_fw_egress","tag":"6deef7357e7b4530","gpl_compatible":true,"run_time_ns":900,"run_cnt":3,"pids":[{"pid":1,"comm":"systemd"}]}]"#;

        #[test]
        fn reads_bpftools_program_listing() {
            let progs = parse(LISTING).unwrap();
            assert_eq!(progs.len(), 3);
            assert_eq!(
                progs[0],
                Prog {
                    id: 11673,
                    name: "drop_btf_4arg".to_owned(),
                    pids: vec![4242],
                    run_time_ns: Some(2060000),
                    run_cnt: Some(20000),
                }
            );
            assert_eq!(progs[1].run_cnt, Some(0));
            assert_eq!(progs[2].pids, [1]);
            assert_eq!(parse("[]").unwrap(), []);
            assert!(parse("{}").is_err());
            assert!(parse("Error: can't get next program").is_err());
            // Odd entries: no id is skipped, a counter that is no number reads as None.
            let odd = parse(r#"[{"name":"x"},{"id":3,"run_time_ns":"many","pids":7}]"#).unwrap();
            assert_eq!(odd.len(), 1);
            assert_eq!((odd[0].run_time_ns, odd[0].run_cnt), (None, Some(0)));
            assert!(odd[0].pids.is_empty());
            assert_eq!(totals(&odd, &[3]), None);
        }

        #[test]
        fn selects_the_tracers_drop_hooks() {
            let progs = parse(LISTING).unwrap();
            let hooks = Some(super::NETDROP_DROP_HOOKS);
            // By pid: the kfree_skb hook, not the tracer's other program nor systemd's.
            assert_eq!(select(&progs, 4242, &[], hooks), [11673]);
            assert_eq!(totals(&progs, &[11673]), Some((2060000, 20000)));
            // By the ids in the tracer's fdinfo when bpftool lists no pids.
            let no_pids: Vec<Prog> = progs
                .iter()
                .cloned()
                .map(|p| Prog { pids: vec![], ..p })
                .collect();
            assert_eq!(select(&no_pids, 4242, &[11673, 11674], hooks), [11673]);
            // All of bpftrace's programs.
            assert_eq!(select(&progs, 1, &[], None), [7]);
            // Nothing tells the owner: netdrop's hooks by name, bpftrace's not at all.
            assert_eq!(select(&no_pids, 4242, &[], hooks), [11673]);
            assert_eq!(select(&no_pids, 4242, &[], None), Vec::<u64>::new());
            // A process with programs but no drop hook gets none of another's by name.
            assert_eq!(select(&progs, 1, &[], hooks), Vec::<u64>::new());
            // A name cut to 15 characters still matches.
            let cut = vec![Prog {
                name: "drop_btf_4arg_l".to_owned(),
                ..no_pids[0].clone()
            }];
            let long = Some(&["drop_btf_4arg_long"][..]);
            assert_eq!(select(&cut, 9, &[], long), [11673]);
            assert_eq!(totals(&progs, &[11673, 99]), None);
        }
    }
}
