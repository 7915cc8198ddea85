//! Shell completions and man pages that `netdrop docs` (behind `cargo xtask docs`)
//! generates from the command-line definition. Needs no root, but the built binary, man and
//! groff, which the privileged stage of `cargo xtask test` provides (it builds netdrop and
//! installs the test packages first): compiled only with `--features privileged`.
#![cfg(feature = "privileged")]

use std::{collections::BTreeSet, path::PathBuf, process::Command};

use netdrop_tests::{netdrop_bin, run};

/// The subcommands `netdrop --help` lists, `help` aside.
fn subcommands() -> BTreeSet<String> {
    let help = run(&["--help"]);
    assert!(help.status.success());
    let help = String::from_utf8(help.stdout).unwrap();
    let listed = help
        .split("Commands:\n")
        .nth(1)
        .expect("a Commands: section")
        .lines()
        .take_while(|l| !l.is_empty())
        // Continuation lines of a wrapped description are indented further.
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect::<BTreeSet<_>>();
    // The list is what the binary serves, not what this test assumes; a floor keeps a
    // parsing slip from making the checks below vacuous.
    assert!(listed.contains("watch") && listed.len() >= 7, "{listed:?}");
    listed
}

/// Runs `netdrop docs` into a fresh directory named after the test `tag`.
fn generate(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("netdrop-docs-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = Command::new(netdrop_bin())
        .arg("docs")
        .arg(&dir)
        .output()
        .expect("run netdrop docs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

#[test]
fn bash_completion_offers_every_subcommand_and_no_hidden_one() {
    let dir = generate("completion");
    // What bash offers after `netdrop <TAB>`: the completion function run as bash runs it.
    let script = format!(
        "source {}; COMP_WORDS=(netdrop ''); COMP_CWORD=1; COMP_LINE='netdrop '; \
         COMP_POINT=8; _netdrop netdrop '' netdrop; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        dir.join("netdrop.bash").display()
    );
    let out = Command::new("bash")
        .args(["--norc", "-c", &script])
        .output()
        .expect("run bash");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let offered: BTreeSet<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    for sub in subcommands() {
        assert!(offered.contains(&sub), "{sub} not offered: {offered:?}");
    }
    for hidden in ["docs", "bench-pipeline"] {
        assert!(!offered.contains(hidden), "{hidden} offered: {offered:?}");
    }
    // And `netdrop watch --js<TAB>` completes the flag.
    let script = format!(
        "source {}; COMP_WORDS=(netdrop watch --js); COMP_CWORD=2; \
         _netdrop netdrop --js watch; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        dir.join("netdrop.bash").display()
    );
    let out = Command::new("bash")
        .args(["--norc", "-c", &script])
        .output()
        .expect("run bash");
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "--json\n");
    for shell_file in ["_netdrop", "netdrop.fish"] {
        let text = std::fs::read_to_string(dir.join(shell_file)).unwrap();
        for sub in subcommands() {
            assert!(text.contains(&sub), "{sub} missing from {shell_file}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn man_pages_render_without_warnings_and_name_every_subcommand() {
    let dir = generate("man");
    let subs = subcommands();
    let mut pages = vec![dir.join("netdrop.1")];
    pages.extend(subs.iter().map(|s| dir.join(format!("netdrop-{s}.1"))));
    for page in &pages {
        // -ww: every groff warning; -z: no output, only the diagnostics.
        let check = Command::new("groff")
            .args(["-man", "-Tutf8", "-ww", "-z"])
            .arg(page)
            .output()
            .expect("run groff (cargo xtask setup --test-deps installs it)");
        assert!(
            check.status.success(),
            "{}: {}",
            page.display(),
            String::from_utf8_lossy(&check.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&check.stderr),
            "",
            "groff warns on {}",
            page.display()
        );
    }
    let rendered = Command::new("man")
        .arg("-l")
        .arg(&pages[0])
        .env("MANWIDTH", "100")
        .env("MAN_KEEP_FORMATTING", "0")
        .output()
        .expect("run man (cargo xtask setup --test-deps installs it)");
    assert!(rendered.status.success());
    assert_eq!(String::from_utf8_lossy(&rendered.stderr), "");
    let text = plain(&String::from_utf8(rendered.stdout).unwrap());
    assert!(text.contains("SUBCOMMANDS"), "{text}");
    for sub in &subs {
        assert!(
            text.contains(&format!("netdrop-{sub}(1)")),
            "{sub} missing from netdrop(1):\n{text}"
        );
    }
    // Each subcommand's page carries its options, e.g. watch's --json.
    let watch = std::fs::read_to_string(dir.join("netdrop-watch.1")).unwrap();
    assert!(watch.contains("\\-\\-json"), "{watch}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Man output without the overstrike bold and underline (`X\bX`, `_\bX`) it uses when
/// stdout is not a terminal.
fn plain(text: &str) -> String {
    let mut out: Vec<char> = Vec::new();
    for c in text.chars() {
        if c == '\u{8}' {
            out.pop();
        } else {
            out.push(c);
        }
    }
    out.into_iter().collect()
}
