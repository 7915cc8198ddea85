//! What the per-packet kprobes cost (`cargo xtask bench --kernel 5.10`): the `tcp_drop`
//! path hook (before 5.17) is a kprobe on `__kfree_skb`, which runs for every TCP segment
//! and ACK a socket consumes, not only for drops; the `backlog` hook is a kprobe on
//! `enqueue_to_backlog`, which runs for every packet queued to a CPU's backlog (loopback,
//! veth, RPS). This runs inside the guest: a loopback TCP transfer in 512-byte segments
//! (TCP_NODELAY) for a fixed time, untraced and beside netdrop with and without each hook
//! (`--without`), in rounds that run every mode once, and prints each mode's segment rate
//! as a share of the untraced one (medians) and each hook's cost as the per-round ratio of
//! the runs with and without it.
//!
//! Usage: netdrop-tcpfree-bench [SECONDS-PER-RUN [ROUNDS]] (default 3 and 5).

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

const SEGMENT: usize = 512;

/// One way of running the transfer: untraced, or beside `netdrop -v ARGS`.
struct Mode {
    name: &'static str,
    /// netdrop's arguments; empty for untraced.
    args: &'static [&'static str],
    /// What netdrop prints on stderr once it runs.
    ready: &'static str,
    /// What `-v` must say for the run to measure the hook it is about.
    attached: Option<&'static str>,
}

/// The modes, in the order each round runs them. `watch` filters on a port nothing uses,
/// so it prints nothing: only its hooks cost.
const MODES: [Mode; 5] = [
    Mode {
        name: "untraced",
        args: &[],
        ready: "",
        attached: None,
    },
    Mode {
        name: "stats --without tcp_drop",
        args: &["stats", "--interval", "3600", "--without", "tcp_drop"],
        ready: "netdrop: counting drops",
        attached: None,
    },
    Mode {
        name: "stats (tcp_drop hook on)",
        args: &["stats", "--interval", "3600"],
        ready: "netdrop: counting drops",
        attached: Some("attached tcp_drop path hook"),
    },
    Mode {
        name: "watch --without backlog",
        args: &[
            "watch",
            "--json",
            "--port",
            "1",
            "--without",
            "tcp_drop",
            "--without",
            "backlog",
        ],
        ready: "netdrop: watching",
        attached: None,
    },
    Mode {
        name: "watch (backlog hook on)",
        args: &["watch", "--json", "--port", "1", "--without", "tcp_drop"],
        ready: "netdrop: watching",
        attached: Some("attached backlog hook"),
    },
];

/// (hook, mode with it, the same mode without it), as indexes into [`MODES`].
const PAIRS: [(&str, usize, usize); 2] = [
    ("tcp_drop path hook (kprobe on __kfree_skb)", 2, 1),
    ("backlog hook (kprobe on enqueue_to_backlog)", 4, 3),
];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let secs: f64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let rounds: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(5);
    if !(secs > 0.0 && secs < 3600.0) || rounds == 0 {
        eprintln!("usage: netdrop-tcpfree-bench [SECONDS-PER-RUN (0-3600) [ROUNDS (1+)]]");
        std::process::exit(2);
    }
    // One segment per write: without this the kernel coalesces writes while data is in
    // flight, and the figure would depend on how far the receiver lags.
    if let Err(e) = std::fs::write("/proc/sys/net/ipv4/tcp_autocorking", "0") {
        eprintln!("cannot turn tcp_autocorking off ({e}): segments may be coalesced");
    }
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    println!("kernel {}", release.trim());
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); MODES.len()];
    let mut missing: Vec<&str> = Vec::new();
    for round in 0..rounds {
        for (i, mode) in MODES.iter().enumerate() {
            let tracer = (!mode.args.is_empty()).then(|| start(mode));
            let rate = transfer(Duration::from_secs_f64(secs));
            if let Some((child, stderr)) = tracer {
                let log = stop(child, stderr);
                if let Some(want) = mode.attached
                    && !log.contains(want)
                    && !missing.contains(&mode.name)
                {
                    missing.push(mode.name);
                }
            }
            println!(
                "round {} {:<26} {:>10.0} segments/s",
                round + 1,
                mode.name,
                rate
            );
            rates[i].push(rate);
        }
    }
    if !missing.is_empty() {
        println!(
            "the hook these modes are about was not attached on this kernel ({}): the tcp_drop path hook exists only before 5.17, both need kprobes",
            missing.join(", ")
        );
        std::process::exit(1);
    }
    let base = median(&rates[0]);
    println!(
        "\nmedian over {rounds} rounds of {secs} s (the guest's CPUs shared by sender, receiver and tracer):"
    );
    for (i, mode) in MODES.iter().enumerate() {
        let m = median(&rates[i]);
        println!(
            "{:<26} {:>10.0} segments/s  {:.3} of untraced",
            mode.name,
            m,
            m / base
        );
    }
    // Each round's runs with and without a hook are neighbours in time: their ratio is
    // steadier than the ratio of medians when the machine's speed drifts.
    for (hook, with, without) in PAIRS {
        let paired: Vec<f64> = rates[with]
            .iter()
            .zip(&rates[without])
            .map(|(on, off)| on / off)
            .collect();
        let (lo, hi) = quartiles(&paired);
        println!(
            "{hook}: with / without, per round: median {:.3} (IQR {lo:.2}-{hi:.2})",
            median(&paired)
        );
    }
}

/// Starts `netdrop -v` as `mode` says and waits until it runs.
fn start(mode: &Mode) -> (Child, thread::JoinHandle<String>) {
    let ready = mode.ready;
    let mut child = Command::new("netdrop")
        .arg("-v")
        .args(mode.args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("netdrop on PATH");
    let err = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = thread::spawn(move || {
        let mut log = String::new();
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if line.contains(ready) {
                let _ = tx.send(());
            }
            log.push_str(&line);
            log.push('\n');
        }
        log
    });
    if rx.recv_timeout(Duration::from_secs(120)).is_err() {
        let _ = child.kill();
        panic!(
            "netdrop stats did not start: {}",
            reader.join().unwrap_or_default()
        );
    }
    (child, reader)
}

/// Stops netdrop with SIGINT and returns its stderr.
fn stop(mut child: Child, stderr: thread::JoinHandle<String>) -> String {
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let _ = child.wait();
    stderr.join().unwrap_or_default()
}

/// Sends 512-byte segments over loopback TCP for `time`; returns segments per second.
fn transfer(time: Duration) -> f64 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let receiver = thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        let mut buf = vec![0u8; 1 << 16];
        let mut total = 0u64;
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
            total += n as u64;
        }
        total
    });
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_nodelay(true).expect("nodelay");
    let chunk = [0x5au8; SEGMENT];
    let start = Instant::now();
    while start.elapsed() < time {
        for _ in 0..64 {
            s.write_all(&chunk).expect("send");
        }
    }
    drop(s);
    let bytes = receiver.join().expect("receiver");
    (bytes as f64 / SEGMENT as f64) / start.elapsed().as_secs_f64()
}

/// The first and third quartiles (nearest rank).
fn quartiles(v: &[f64]) -> (f64, f64) {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    (v[v.len() / 4], v[(3 * v.len()) / 4])
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
