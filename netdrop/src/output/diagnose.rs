//! The text form of a diagnosis: findings worst first, each with its evidence, the objects
//! involved, the settings read, the fix and its caveats. Fits a terminal; names from the
//! kernel or the network are escaped.

use std::io::{self, Write};

use super::printable::printable;
use crate::diagnose::{Report, classes::Severity, rules::Finding};

/// Writes `r` as text.
pub fn write_text(out: &mut impl Write, r: &Report) -> io::Result<()> {
    let ev = &r.evidence;
    writeln!(
        out,
        "netdrop diagnose: watched {:.1} s on Linux {} via {}: {} drops, {} finding{}",
        ev.duration_s,
        printable(&ev.kernel),
        ev.hook,
        ev.drops,
        r.findings.len(),
        if r.findings.len() == 1 { "" } else { "s" }
    )?;
    if r.findings.is_empty() {
        writeln!(
            out,
            "\nNothing wrong found: no drop reason or kernel counter pointed to a problem while watching."
        )?;
    }
    for f in &r.findings {
        write_finding(out, f)?;
    }
    if !r.other_drops.is_empty() {
        writeln!(
            out,
            "\nOther drops (no class explains them; `netdrop watch` shows where they happen):"
        )?;
        for c in &r.other_drops {
            writeln!(out, "  {:>10}  {}", c.count, printable(&c.name))?;
        }
    }
    if !ev.unavailable.is_empty() {
        writeln!(out, "\nNot seen on this machine:")?;
        for u in &ev.unavailable {
            writeln!(out, "  - {u}")?;
        }
    }
    Ok(())
}

fn write_finding(out: &mut impl Write, f: &Finding) -> io::Result<()> {
    let sev = match f.severity {
        Severity::Critical => "CRITICAL",
        Severity::Warning => "WARNING",
        Severity::Info => "INFO",
    };
    // Titles, fixes and caveats quote names from the evidence (rules, devices), which a
    // recording or a saved document from elsewhere may have filled with anything.
    writeln!(out, "\n[{sev}] {}: {}", f.class, printable(&f.title))?;
    writeln!(out, "  {} lost ({:.1}/s), {}", f.drops, f.rate, f.basis)?;
    if !f.evidence.is_empty() {
        writeln!(out, "  evidence:")?;
        for e in &f.evidence {
            writeln!(out, "    {}", printable(e))?;
        }
    }
    if !f.objects.is_empty() {
        writeln!(out, "  where:")?;
        for o in &f.objects {
            let mut line = format!("    {} {}", o.kind, printable(&o.name));
            if let Some(ns) = &o.netns {
                line.push_str(&format!(
                    " netns {}",
                    printable(&ns.name.clone().unwrap_or_else(|| ns.inode.to_string()))
                ));
            }
            if let Some(n) = o.drops {
                line.push_str(&format!(": {n} drop{}", if n == 1 { "" } else { "s" }));
            }
            if let Some(d) = &o.detail {
                line.push_str(&format!(" ({})", printable(d)));
            }
            writeln!(out, "{line}")?;
        }
    }
    if !f.knobs.is_empty() {
        writeln!(out, "  settings now:")?;
        for k in &f.knobs {
            let ns = k
                .netns
                .as_ref()
                .map(|n| {
                    format!(
                        "  [netns {}]",
                        n.name.clone().unwrap_or_else(|| n.inode.to_string())
                    )
                })
                .unwrap_or_default();
            writeln!(
                out,
                "    {} = {}{}",
                printable(&k.name),
                printable(&k.value),
                printable(&ns)
            )?;
        }
    }
    writeln!(out, "  fix:")?;
    for x in &f.fix {
        writeln!(out, "    - {}", printable(x))?;
    }
    if !f.caveats.is_empty() {
        writeln!(out, "  mind:")?;
        for c in &f.caveats {
            writeln!(out, "    - {}", printable(c))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnose::{
        evidence::{Count, DeviceCount, Evidence, FirewallMatch, Knob},
        nft::DropRule,
    };

    #[test]
    fn names_from_elsewhere_reach_the_terminal_escaped() {
        let ev = Evidence {
            reasons: vec![
                Count {
                    name: "NETFILTER_DROP".into(),
                    count: 3,
                    inferred: false,
                },
                Count {
                    name: "IP_RPFILTER".into(),
                    count: 2,
                    inferred: false,
                },
            ],
            devices: vec![DeviceCount {
                reason: "IP_RPFILTER".into(),
                device: "v\u{1b}[2J".into(),
                netns: None,
                count: 2,
            }],
            drops: 5,
            kernel_reasons: true,
            knobs: vec![Knob {
                netns: None,
                name: "net.ipv4.conf.v\u{1b}[2J.rp_filter".into(),
                value: "1".into(),
            }],
            firewall: vec![FirewallMatch {
                netns: None,
                rule: DropRule {
                    family: "inet".into(),
                    table: "t\u{1b}[2J".into(),
                    chain: "input".into(),
                    hook: Some("input".into()),
                    handle: Some(2),
                    text: "udp dport 9 drop\u{7}".into(),
                    verdict: "drop".into(),
                    matches: Vec::new(),
                    understood: true,
                },
                certain: true,
                packets: 3,
            }],
            ..Default::default()
        };
        let report = Report::new(ev, "t".into());
        let mut out = Vec::new();
        write_text(&mut out, &report).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("inet t\\x1b[2J input (handle 2)"), "{text}");
        assert!(
            text.contains("net.ipv4.conf.v\\x1b[2J.rp_filter = 1"),
            "{text}"
        );
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{7}'),
            "{text}"
        );
    }
}
