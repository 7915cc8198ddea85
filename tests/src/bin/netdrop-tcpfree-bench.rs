//! What the `tcp_drop` path hook costs (`cargo xtask bench --kernel 5.10`): on kernels
//! before 5.17 that hook is a kprobe on `__kfree_skb`, which runs for every TCP segment and
//! ACK a socket consumes, not only for drops. This runs inside the guest: a loopback TCP
//! transfer in 512-byte segments (TCP_NODELAY) for a fixed time, untraced, under
//! `netdrop stats --without tcp_drop`, and under `netdrop stats` (every hook), in rounds
//! that alternate the three, and prints the segment rate of each as a share of the
//! untraced one (medians over the rounds).
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

/// How a run is traced.
#[derive(Clone, Copy)]
enum Mode {
    Untraced,
    WithoutTcpDrop,
    Everything,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Untraced => "untraced",
            Mode::WithoutTcpDrop => "stats --without tcp_drop",
            Mode::Everything => "stats (tcp_drop hook on)",
        }
    }
}

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
    let modes = [Mode::Untraced, Mode::WithoutTcpDrop, Mode::Everything];
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
    let mut hook_seen = false;
    for round in 0..rounds {
        for (i, &mode) in modes.iter().enumerate() {
            let tracer = match mode {
                Mode::Untraced => None,
                Mode::WithoutTcpDrop => Some(start_stats(&["--without", "tcp_drop"])),
                Mode::Everything => Some(start_stats(&[])),
            };
            let rate = transfer(Duration::from_secs_f64(secs));
            if let Some((child, stderr)) = tracer {
                let log = stop(child, stderr);
                if matches!(mode, Mode::Everything) {
                    hook_seen |= log.contains("attached tcp_drop path hook");
                }
            }
            println!(
                "round {} {:<26} {:>10.0} segments/s",
                round + 1,
                mode.name(),
                rate
            );
            rates[i].push(rate);
        }
    }
    if !hook_seen {
        println!(
            "the tcp_drop path hook was not attached on this kernel (it exists only before 5.17, with kprobes): nothing to measure"
        );
        std::process::exit(1);
    }
    let base = median(&rates[0]);
    println!(
        "\nmedian over {rounds} rounds of {secs} s (one vCPU shared by sender, receiver and tracer):"
    );
    for (i, mode) in modes.iter().enumerate() {
        let m = median(&rates[i]);
        println!(
            "{:<26} {:>10.0} segments/s  {:.3} of untraced",
            mode.name(),
            m,
            m / base
        );
    }
    // Each round's two traced runs are neighbours in time: their ratio is steadier than
    // the ratio of medians when the machine's speed drifts.
    let paired: Vec<f64> = rates[2]
        .iter()
        .zip(&rates[1])
        .map(|(on, off)| on / off)
        .collect();
    let (lo, hi) = quartiles(&paired);
    println!(
        "the tcp_drop path hook (kprobe on __kfree_skb): stats with it / stats without it, per round: median {:.3} (IQR {lo:.2}-{hi:.2}), i.e. {:.1}% of TCP segment throughput",
        median(&paired),
        (1.0 - median(&paired)) * 100.0
    );
}

/// Starts `netdrop -v stats` with `extra` and waits until it counts.
fn start_stats(extra: &[&str]) -> (Child, thread::JoinHandle<String>) {
    let mut child = Command::new("netdrop")
        .args(["-v", "stats", "--interval", "3600"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("netdrop on PATH");
    let err = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = thread::spawn(move || {
        let mut log = String::new();
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if line.contains("netdrop: counting drops") {
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
