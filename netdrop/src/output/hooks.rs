//! The hook report (`netdrop hooks`, and `-v` at the start of every tracing command): one
//! line per hook family, or one JSON document.

use crate::probe::hooks::{HookReport, KernelFacts, Status};

/// The status word and its detail, as the text report prints them.
fn status_text(s: &Status) -> String {
    match s {
        Status::Attached(how) => format!("attached ({how})"),
        Status::Available => "available".to_owned(),
        Status::Unavailable(why) => format!("unavailable ({why})"),
        Status::NotImplemented => "not implemented in this version".to_owned(),
    }
}

/// One line per family: id, status, what it hooks, and what netdrop uses instead when the
/// family is not in use (else what it gives).
pub fn lines(hooks: &[HookReport]) -> Vec<String> {
    hooks
        .iter()
        .map(|h| {
            let tail = match h.status {
                Status::Attached(_) | Status::Available => format!("gives: {}", h.gives),
                Status::Unavailable(_) | Status::NotImplemented => {
                    format!("instead: {}", h.instead)
                }
            };
            format!(
                "{:<10} {}; hooks {}; {tail}",
                h.id,
                status_text(&h.status),
                h.hooks
            )
        })
        .collect()
}

/// The whole text report: the kernel, then [`lines`].
pub fn text(facts: &KernelFacts, hooks: &[HookReport], privileged: bool) -> String {
    let mut out = format!("kernel {}", facts.release);
    if !privileged {
        out.push_str(" (not root: nothing attached, statuses read from the kernel)");
    }
    out.push('\n');
    for l in lines(hooks) {
        out.push_str(&l);
        out.push('\n');
    }
    out
}

/// The report as one JSON document.
pub fn json(facts: &KernelFacts, hooks: &[HookReport], privileged: bool) -> serde_json::Value {
    serde_json::json!({
        "kernel": facts.release,
        "privileged": privileged,
        "kprobes": facts.kprobes,
        "hooks": hooks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::hooks::{
        report,
        tests::{facts_5_10, facts_6_18_no_kprobes},
    };

    #[test]
    fn text_on_a_kernel_without_kprobes() {
        let f = facts_6_18_no_kprobes();
        let r = report(
            &f,
            &[(
                "kfree_skb",
                Status::Attached(
                    "BTF raw tracepoint tp_btf/kfree_skb (skb, location, reason, rx_sk)".to_owned(),
                ),
            )],
        );
        let t = text(&f, &r, true);
        let lines: Vec<_> = t.lines().collect();
        assert_eq!(lines[0], "kernel 6.18.0");
        assert_eq!(lines.len(), 8);
        assert!(lines[1].starts_with(
            "kfree_skb  attached (BTF raw tracepoint tp_btf/kfree_skb (skb, location, reason, rx_sk)); hooks "
        ));
        assert_eq!(
            lines[2],
            "conntrack  unavailable (this kernel has no kprobes (CONFIG_KPROBES)); hooks kprobe + \
             kretprobe nf_conntrack_in; instead: the nf_conntrack.drop counter; netfilter.conntrack is null"
        );
        assert!(lines[3].starts_with("listeners  available; hooks sock_diag"));
        assert!(lines[5].starts_with(
            "tcp_listen unavailable (this kernel has no kprobes (CONFIG_KPROBES)); hooks kprobes tcp_conn_request"
        ));
        assert!(lines[6].starts_with("tcp_drop   unavailable (not needed here"));
        assert!(lines[7].starts_with(
            "backlog    unavailable (this kernel has no kprobes (CONFIG_KPROBES)); hooks kprobe enqueue_to_backlog;"
        ));
        assert!(lines[7].ends_with(
            "instead: the per-CPU softnet counters (dropped, time_squeeze) in stats, top and diagnose"
        ));
    }

    #[test]
    fn text_without_root_says_so() {
        let f = facts_5_10();
        let t = text(&f, &report(&f, &[]), false);
        assert!(t.starts_with("kernel 5.10.0-46-cloud-amd64 (not root: nothing attached"));
        assert!(t.contains("conntrack  available;"));
        assert!(t.contains(
            "listeners  unavailable (sock_diag unavailable (Protocol not supported): modprobe inet_diag tcp_diag); \
             hooks sock_diag"
        ));
    }

    #[test]
    fn json_tags_each_status() {
        let f = facts_6_18_no_kprobes();
        let v = json(&f, &report(&f, &[]), false);
        assert_eq!(v["kernel"], "6.18.0");
        assert_eq!(v["kprobes"], false);
        let hooks = v["hooks"].as_array().unwrap();
        assert_eq!(hooks.len(), 7);
        assert_eq!(hooks[0]["id"], "kfree_skb");
        assert_eq!(hooks[0]["status"]["state"], "available");
        assert_eq!(hooks[1]["status"]["state"], "unavailable");
        assert_eq!(
            hooks[1]["status"]["detail"],
            "this kernel has no kprobes (CONFIG_KPROBES)"
        );
        assert_eq!(hooks[4]["id"], "tcp_listen");
        assert_eq!(hooks[4]["status"]["state"], "unavailable");
        assert_eq!(
            hooks[4]["instead"],
            "listeners (sock_diag) and the TcpExt listen counters, without the clients"
        );
        assert_eq!(hooks[6]["status"]["state"], "unavailable");
    }
}
