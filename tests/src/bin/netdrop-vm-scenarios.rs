//! In-guest runner for `cargo xtask vm-test`: runs the scenarios named on the kernel
//! command line (`netdrop.scenarios=a,b`, default all) and prints one line per scenario,
//! `NDVM RESULT <name> PASS` or `NDVM RESULT <name> FAIL <why>`, for the host to collect
//! from the serial console. `NDVM_SCENARIOS=a,b` selects scenarios too, for running them
//! on a development machine (as root; the conntrack scenario briefly lowers the global
//! nf_conntrack_max).

use std::{panic, time::Instant};

use netdrop_tests::scenarios::ALL;

fn main() {
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let wanted: Option<Vec<String>> = std::env::var("NDVM_SCENARIOS")
        .ok()
        .or_else(|| {
            cmdline
                .split_whitespace()
                .find_map(|w| w.strip_prefix("netdrop.scenarios="))
                .map(str::to_owned)
        })
        .map(|list| list.split(',').map(str::to_owned).collect());
    let mut failed = 0;
    for (name, scenario) in ALL {
        if wanted
            .as_ref()
            .is_some_and(|w| !w.iter().any(|n| n == name))
        {
            continue;
        }
        println!("NDVM START {name}");
        let started = Instant::now();
        let outcome = panic::catch_unwind(scenario).unwrap_or_else(|p| {
            Err(p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "panicked".to_owned()))
        });
        let secs = started.elapsed().as_secs_f64();
        match outcome {
            Ok(()) => println!("NDVM RESULT {name} PASS {secs:.1}s"),
            Err(why) => {
                failed += 1;
                println!("NDVM RESULT {name} FAIL {}", why.replace('\n', " | "));
            }
        }
    }
    println!("NDVM DONE failed={failed}");
}
