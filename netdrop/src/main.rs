//! netdrop: a live Linux packet-drop tracer.
//!
//! Data flows one way: kernel event -> ring buffer / per-CPU maps (`probe`) -> decode and
//! enrich (`event`, `kernel`) -> filter (in the kernel, compiled by `filter`) -> aggregate
//! (`aggregate`) -> output (`output`). `commands` wires the stages for each subcommand.

mod aggregate;
mod cli;
mod commands;
mod diagnose;
mod error;
mod event;
mod filter;
mod kernel;
mod output;
mod probe;
mod source;
#[cfg(test)]
mod testdata;
mod time;

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("netdrop: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let res = rt.block_on(async {
        match &cli.command {
            Command::Watch(args) => commands::watch::run(args, cli.verbose).await,
            Command::Stats(args) => commands::stats::run(args, cli.verbose).await,
            Command::Top(args) => commands::top::run(args, cli.verbose).await,
            Command::Exporter(args) => commands::exporter::run(args, cli.verbose).await,
            Command::Record(args) => commands::record::run(args, cli.verbose).await,
            Command::Diagnose(args) => commands::diagnose::run(args, cli.verbose).await,
            Command::Reasons(args) => commands::reasons::run(args),
            Command::Hooks(args) => commands::hooks::run(args),
            Command::BenchPipeline(args) => commands::bench_pipeline::run(args),
            Command::Docs { dir } => commands::docs::run(dir),
        }
    });
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("netdrop: {e}");
            if cli.verbose > 0 {
                for cause in causes(&e) {
                    eprintln!("  caused by: {cause}");
                }
            }
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr. Default: warnings; -v: what netdrop attaches and why; -vv: debug,
/// including messages from the kernel programs; -vvv: everything (aya included).
/// `RUST_LOG` overrides.
fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "warn,netdrop=info",
        2 => "warn,netdrop=debug,netdrop_ebpf=debug",
        _ => "debug",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(verbose >= 2)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
        .init();
}

/// The causes of `e` that its message does not already say: most errors quote their
/// source, and a verifier log printed twice is a screenful of noise.
fn causes(e: &dyn std::error::Error) -> Vec<String> {
    let mut said = e.to_string();
    let mut out = Vec::new();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !said.contains(&text) {
            said.push_str(&text);
            out.push(text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    struct Leaf(&'static str);

    #[derive(Debug, thiserror::Error)]
    #[error("outer: {source}")]
    struct Quoting {
        source: Leaf,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Silent {
        #[source]
        source: Leaf,
    }

    #[test]
    fn causes_already_in_the_message_are_not_repeated() {
        let quoting = Quoting {
            source: Leaf("verifier log"),
        };
        assert!(causes(&quoting).is_empty());
        let silent = Silent {
            source: Leaf("permission denied"),
        };
        assert_eq!(causes(&silent), vec!["permission denied".to_owned()]);
    }
}
