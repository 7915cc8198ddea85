//! `netdrop reasons`: the drop reasons of the running kernel.

use std::io::Write;

use crate::{cli::ReasonsArgs, error::Error, kernel::Kernel};

pub fn run(args: &ReasonsArgs) -> Result<(), Error> {
    let kernel = Kernel::inspect(args.kernel.btf.as_deref())?;
    let reasons = &kernel.reasons;
    let mut out = std::io::stdout().lock();
    let rows: Vec<_> = reasons
        .iter()
        .map(|(code, _)| reasons.decode(code))
        .collect();
    let res = if args.json {
        let v: Vec<_> = rows
            .iter()
            .map(|r| serde_json::json!({"name": r.name, "code": r.code, "subsystem": r.subsystem}))
            .collect();
        writeln!(out, "{}", serde_json::Value::Array(v))
    } else {
        rows.iter().try_for_each(|r| match &r.subsystem {
            Some(s) => writeln!(out, "{:>8}  {}  ({s})", r.code, r.name),
            None => writeln!(out, "{:>8}  {}", r.code, r.name),
        })
    };
    match res {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Error::io("writing to stdout")(e))
        }
        _ => Ok(()),
    }
}
