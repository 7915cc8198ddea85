//! Drop generator for `cargo xtask bench`: sends one-byte UDP datagrams to a closed port on
//! 127.0.0.1 from one socket, as fast as one core allows, for a fixed time, and prints
//! `{"sent": N, "secs": S, "rate": R}`. Every datagram is a NO_SOCKET drop.
//!
//! Usage: netdrop-dropgen PORT SECONDS

use std::{
    net::UdpSocket,
    time::{Duration, Instant},
};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(port), Some(secs)) = (
        args.get(1).and_then(|p| p.parse::<u16>().ok()),
        args.get(2).and_then(|s| s.parse::<f64>().ok()),
    ) else {
        eprintln!("usage: netdrop-dropgen PORT SECONDS");
        std::process::exit(2);
    };
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let dst = ("127.0.0.1", port);
    let duration = Duration::from_secs_f64(secs);
    let start = Instant::now();
    let mut sent: u64 = 0;
    // Check the clock every 1024 sends: cheap, and precise enough at ~200k/s.
    'outer: loop {
        for _ in 0..1024 {
            // Unconnected: ICMP port-unreachable replies are not reported back as errors.
            if sock.send_to(b"x", dst).is_ok() {
                sent += 1;
            }
        }
        if start.elapsed() >= duration {
            break 'outer;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{{\"sent\": {sent}, \"secs\": {secs:.6}, \"rate\": {:.1}}}",
        sent as f64 / secs
    );
}
