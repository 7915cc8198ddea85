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
    for id in ["tcp_listen", "backlog"] {
        assert_eq!(hook(id)["status"]["state"], "not_implemented", "{id}");
    }

    let text = run(&["hooks"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert_eq!(text.lines().count(), 7, "{text}");
    assert!(
        text.contains("\nconntrack  unavailable (this kernel has no kprobes"),
        "{text}"
    );
}
