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
//! per million drops, and its peak RSS. No timing is asserted: these are figures to read.
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
    /// `watch --rate-limit 0`: every drop an event.
    WatchAll,
    Bpftrace,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Untraced => "untraced",
            Mode::Stats => "netdrop stats (aggregation)",
            Mode::Watch => "netdrop watch --json (rate-limited)",
            Mode::WatchAll => "netdrop watch --json --rate-limit 0",
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
    matched: Option<u64>,
    /// Rate over the mean rate of the untraced runs just before and after.
    ratio: Option<f64>,
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
    let mut modes = vec![Mode::Untraced, Mode::Stats, Mode::Watch, Mode::WatchAll];
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
        let samples = rounds(&args, &modes, &placement, &netdrop, &dropgen)?;
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

/// One line per number of senders: the shares of aggregation and streaming, and what
/// streaming delivered.
fn per_senders(results: &[SenderRun]) {
    println!(
        "\n{:>7} {:>16} {:>11} {:>11} {:>14} {:>11}  placement",
        "senders",
        "untraced drops/s",
        "stats share",
        "watch share",
        "every-ev share",
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
        let streamed = samples
            .iter()
            .filter(|(m, _)| matches!(m, Mode::Watch | Mode::WatchAll))
            .map(|(_, s)| s);
        let unaccounted = streamed
            .map(unaccounted)
            .sum::<Option<i64>>()
            .map_or("-".to_owned(), |u| u.to_string());
        let mut place = placement.describe();
        if let Some(note) = placement.sharing() {
            place = format!("{place} ({note})");
        }
        println!(
            "{n:>7} {untraced:>16.0} {:>11} {:>11} {:>14} {unaccounted:>11}  {place}",
            share(Mode::Stats),
            share(Mode::Watch),
            share(Mode::WatchAll),
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
            runs.push(serde_like::parse_pipeline(&out)?);
        }
        let med = |f: fn(&serde_like::Pipeline) -> f64| median(runs.iter().map(f).collect());
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

/// All rounds of all modes with one placement of senders.
fn rounds(
    args: &BenchArgs,
    modes: &[Mode],
    placement: &Placement,
    netdrop: &Path,
    dropgen: &Path,
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
        let s = run_mode(mode, netdrop, dropgen, args.seconds, placement)
            .with_context(|| format!("round {round}, {}", mode.name()))?;
        eprintln!(
            "xtask: round {round} {:<34} {:>9.0} drops/s",
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

fn run_mode(
    mode: Mode,
    netdrop: &Path,
    dropgen: &Path,
    seconds: f64,
    placement: &Placement,
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
        Mode::WatchAll => Some(start(
            taskset(tracer_cpu, netdrop).args([
                "watch",
                "--json",
                "--no-counters",
                "--rate-limit",
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
        let generated = serde_like::parse(&String::from_utf8_lossy(&out.stdout))?;
        s.rate += generated.rate;
        s.sent += generated.sent;
    }
    if let Some(t) = tracer {
        // CPU spent while drops were being made: start-up (reading BTF and kallsyms) is
        // reported apart, as it does not grow with the number of drops.
        let during = proc_cpu_seconds(t.child.id()) - cpu_before.unwrap_or(0.0);
        let (stderr, usage) = stop(t)?;
        s.cpu_s = during;
        s.total_cpu_s = usage.0;
        s.max_rss_kib = usage.1;
        if matches!(mode, Mode::Watch | Mode::WatchAll) {
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
        "{:<34} {:>10} {:>7} {:>10} {:>11} {:>9} {:>12} {:>10} {:>9}",
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
        let (delivered, lost, suppressed, matched) = (
            sum(|s| s.delivered),
            sum(|s| s.lost),
            sum(|s| s.suppressed),
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
            "{:<34} {:>10.0} {:>7} {:>10} {:>11} {:>9} {:>12} {:>10} {:>9}",
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
        if let (Some(d), Some(l), Some(sp), Some(mt)) = (delivered, lost, suppressed, matched) {
            let unaccounted = mt as i64 - (d + sp + l) as i64;
            println!(
                "{:<34} matched {mt}, delivered {d} + suppressed {sp} + lost {l} = {}, unaccounted {unaccounted}",
                "",
                d + sp + l
            );
        }
    }
}

/// Matched drops of a streaming run that were neither delivered, suppressed nor lost.
fn unaccounted(s: &Sample) -> Option<i64> {
    Some(s.matched? as i64 - (s.delivered? + s.suppressed? + s.lost?) as i64)
}

/// What the columns of [`report`] mean.
fn legend() {
    println!(
        "\nshare: median over rounds of the sender's drop rate with the tracer, divided by the mean of the\n\
         untraced runs just before and after (1.000 = free); IQR: the middle half of those ratios. cpu s/Mdrop: the\n\
         tracer's user+system CPU while drops were sent, per million drops; start cpu: CPU spent before\n\
         and after (loading BTF, symbols), per run. rate-limited: watch's default, at most 1000 events\n\
         per second per flow and reason on each CPU, the rest counted as suppressed (each sender is one\n\
         flow); every-ev: --rate-limit 0. Targets: aggregation >= 0.97, streaming >= 0.85\n\
         with zero unaccounted loss, <= 1 CPU-second per million streamed drops, RSS <= 64 MiB."
    );
}

/// The generator's one-line JSON, read without a JSON dependency in xtask.
mod serde_like {
    use anyhow::{Context, Result};

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

    fn field<'a>(s: &'a str, k: &str) -> Option<&'a str> {
        let at = s.find(&format!("\"{k}\":"))? + k.len() + 3;
        s[at..].split([',', '}']).next().map(str::trim)
    }

    fn number(s: &str, k: &str) -> Result<f64> {
        field(s, k)
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("no {k} in {s:?}"))
    }

    pub fn parse_pipeline(s: &str) -> Result<Pipeline> {
        Ok(Pipeline {
            events: number(s, "events")?,
            bytes: number(s, "bytes")?,
            wall_s: number(s, "wall_s")?,
            cpu_s: number(s, "cpu_s")?,
            decode_only_s: number(s, "decode_only_s")?,
        })
    }

    pub fn parse(s: &str) -> Result<Gen> {
        Ok(Gen {
            sent: field(s, "sent")
                .and_then(|v| v.parse().ok())
                .context("generator output")?,
            rate: number(s, "rate")?,
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
