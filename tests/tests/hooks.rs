//! `netdrop hooks` on the machine that runs the tests (kernel 6.18, BTF, no kprobes). Needs
//! root to attach: compiled only with `--features privileged` (`cargo xtask test`).
#![cfg(feature = "privileged")]

use netdrop_tests::run;
use serde_json::Value;

#[test]
fn hooks_reports_what_this_kernel_allows() {
    let out = run(&["hooks", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    let hook = |id: &str| {
        v["hooks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["id"] == id)
            .unwrap_or_else(|| panic!("no {id} in {v}"))
            .clone()
    };
    assert_eq!(v["privileged"], true);

    let kfree = hook("kfree_skb");
    assert_eq!(kfree["status"]["state"], "attached", "{kfree}");
    let how = kfree["status"]["detail"].as_str().unwrap();
    assert!(
        how.starts_with("BTF raw tracepoint tp_btf/kfree_skb"),
        "{how}"
    );

    let ct = hook("conntrack");
    assert_eq!(ct["status"]["state"], "unavailable", "{ct}");
    assert!(
        ct["status"]["detail"]
            .as_str()
            .unwrap()
            .contains("no kprobes"),
        "{ct}"
    );

    assert_eq!(hook("listeners")["status"]["state"], "available");
    assert_eq!(hook("counters")["status"]["state"], "available");
    let tcp = hook("tcp_listen");
    assert_eq!(tcp["status"]["state"], "unavailable", "{tcp}");
    assert!(
        tcp["status"]["detail"]
            .as_str()
            .unwrap()
            .contains("no kprobes"),
        "{tcp}"
    );
    // 6.18 names TCP drops through kfree_skb: the tcp_drop path hook is not needed.
    let tcp_drop = hook("tcp_drop");
    assert_eq!(tcp_drop["status"]["state"], "unavailable", "{tcp_drop}");
    assert!(
        tcp_drop["status"]["detail"]
            .as_str()
            .unwrap()
            .starts_with("not needed here"),
        "{tcp_drop}"
    );
    // No kprobes here: backlog drops are shown per CPU from the softnet counters.
    let backlog = hook("backlog");
    assert_eq!(backlog["status"]["state"], "unavailable", "{backlog}");
    assert!(
        backlog["instead"].as_str().unwrap().contains("softnet"),
        "{backlog}"
    );

    let text = run(&["hooks"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert_eq!(text.lines().count(), 8, "{text}");
    assert!(
        text.contains("\nconntrack  unavailable (this kernel has no kprobes"),
        "{text}"
    );
}

/// `--without` leaves a kprobe family out and the report says so, whatever this kernel
/// would allow; a family that is not optional is refused with the list of those that are.
#[test]
fn without_turns_hooks_off_and_says_so() {
    let out = run(&[
        "hooks",
        "--json",
        "--without",
        "conntrack",
        "--without",
        "tcp_listen",
        "--without",
        "backlog",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    for id in ["conntrack", "tcp_listen", "backlog"] {
        let h = v["hooks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["id"] == id)
            .unwrap_or_else(|| panic!("no {id} in {v}"));
        assert_eq!(h["status"]["state"], "unavailable", "{h}");
        assert_eq!(
            h["status"]["detail"],
            format!("turned off with --without {id}").as_str(),
            "{h}"
        );
    }

    let bad = run(&["watch", "--without", "kfree_skb"]);
    assert_eq!(bad.status.code(), Some(2));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("invalid value 'kfree_skb' for '--without <HOOK>'")
            && err.contains("conntrack, tcp_listen, tcp_drop, backlog"),
        "{err}"
    );
}
