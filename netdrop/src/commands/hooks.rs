//! `netdrop hooks`: every hook family and its status on this kernel.

use std::{io::Write, path::Path};

use crate::{
    cli::{FilterArgs, HooksArgs},
    error::Error,
    kernel::{Kernel, privileges},
    output,
    probe::{
        Probe, ProbeConfig,
        hooks::{self, KernelFacts},
    },
};

pub fn run(args: &HooksArgs) -> Result<(), Error> {
    let kernel = Kernel::inspect(args.kernel.btf.as_deref());
    let facts = KernelFacts::read(kernel.as_ref().map_err(ToString::to_string));
    let privileged = privileges::check().is_ok();
    let attached = match (&kernel, privileged) {
        (Ok(k), true) => try_attach(k, args)?,
        _ => Vec::new(),
    };
    let report = hooks::report(&facts, &attached);
    let mut out = std::io::stdout().lock();
    let res = if args.json {
        writeln!(out, "{}", output::hooks::json(&facts, &report, privileged))
    } else {
        write!(out, "{}", output::hooks::text(&facts, &report, privileged))
    };
    match res {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Error::io("writing to stdout")(e))
        }
        _ => Ok(()),
    }
}

/// Attaches what a tracing command would (the kfree_skb hook, then conntrack, and the
/// kprobe families, backlog included) and detaches
/// again: the statuses are then what `watch` would get. A kfree_skb hook that fails is
/// reported as unavailable, with the sentence a tracing command would print.
fn try_attach(
    kernel: &Kernel,
    args: &HooksArgs,
) -> Result<Vec<(&'static str, hooks::Status)>, Error> {
    privileges::raise_memlock();
    let filter = FilterArgs::default()
        .spec(Path::new("/"))?
        .compile(&kernel.reasons)?;
    // With events, as `watch`: the hooks only a streaming run attaches (backlog) are tried too.
    let cfg = ProbeConfig {
        without: args.kernel.without.clone(),
        ..ProbeConfig::new(
            args.kernel.attach,
            netdrop_common::config::BY_REASON | netdrop_common::config::EVENTS,
            filter,
        )
    };
    match Probe::load(kernel, &cfg) {
        Ok(mut probe) => {
            probe.attach_conntrack();
            let attached = hooks::attached(&probe);
            probe.detach();
            Ok(attached)
        }
        Err(e) => Ok(vec![(
            hooks::kfree_skb::FAMILY.id,
            hooks::Status::Unavailable(e.to_string()),
        )]),
    }
}
