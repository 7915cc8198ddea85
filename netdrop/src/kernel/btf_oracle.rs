//! Our BTF reading checked on real kernels against an independent reader: `pahole`
//! (Debian `dwarves`). Every [`KernelOffsets`] field, the `kfree_skb` prototype and the
//! reason enums of each kernel must match what pahole prints.
//!
//! The kernels' BTF is several MB each, so it is not in the repository: `cargo xtask
//! kernel-btf` (part of `cargo xtask test`) extracts it from the Debian kernels the VM
//! tests cache and runs this test with `NETDROP_KERNEL_BTF` naming the files. Run alone,
//! the test is ignored; run with `--ignored` and no such files, it fails.

use std::{collections::BTreeSet, path::Path, process::Command};

use netdrop_common::{KernelOffsets, OFFSET_NONE};

use super::{
    btf::Btf,
    offsets::{self, HookArity},
    reasons::{Reasons, Source},
};

/// `NAME=FILE` pairs separated by `;`.
const ENV: &str = "NETDROP_KERNEL_BTF";
/// Kernels the check must cover: Debian's 5.10, 6.1 and 6.12, and the machine's own.
const REQUIRED: &[&str] = &["5.10", "6.1", "6.12", "host"];

/// A struct or union member as pahole prints it with `-E` (nested types expanded, offsets
/// from the start of the outermost struct).
#[derive(Debug, Default)]
struct Node {
    name: String,
    offset: u32,
    size: u32,
    children: Vec<Node>,
}

impl Node {
    /// The member called `name`, looking through anonymous members as C does.
    fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find_map(|c| {
            if c.name == name {
                Some(c)
            } else if c.name.is_empty() {
                c.child(name)
            } else {
                None
            }
        })
    }

    fn path(&self, path: &str) -> Option<&Node> {
        path.split('.').try_fold(self, |n, part| n.child(part))
    }
}

fn pahole(file: &Path, args: &[&str]) -> String {
    let out = Command::new("pahole")
        .args(["-F", "btf"])
        .args(args)
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("cannot run pahole ({e}): install the Debian package dwarves"));
    assert!(
        out.status.success(),
        "pahole {args:?} {} failed: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("pahole prints UTF-8")
}

/// `(offset, size)` from a trailing `/* 19: 4  1 */` or `/* 48 8 */` comment.
fn offset_and_size(line: &str) -> Option<(u32, u32)> {
    let comment = &line[line.rfind("/*")? + 2..line.rfind("*/")?];
    let tokens: Vec<&str> = comment.split_whitespace().collect();
    let offset = tokens.first()?.trim_end_matches(':').parse().ok()?;
    let size = tokens.last()?.parse().ok()?;
    Some((offset, size))
}

/// `decl` without its `__attribute__((...))` parts, which pahole prints before or after
/// the name.
fn without_attributes(decl: &str) -> String {
    let mut out = String::new();
    let mut rest = decl;
    while let Some(at) = rest.find("__attribute__") {
        out.push_str(&rest[..at]);
        rest = &rest[at + "__attribute__".len()..];
        let mut depth = 0;
        let end = rest
            .char_indices()
            .find(|&(_, c)| {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                depth == 0 && c == ')'
            })
            .map_or(rest.len(), |(i, _)| i + 1);
        rest = &rest[end..];
        out.push(' ');
    }
    out.push_str(rest);
    out
}

/// The declared name in `struct hlist_node * * pprev`, `char name[16]`, `u8 x:1`,
/// `void (*destructor)(struct sk_buff *)`.
fn declared_name(decl: &str) -> String {
    let decl = &without_attributes(decl);
    if let Some(at) = decl.find("(*") {
        let rest = &decl[at + 2..];
        return rest[..rest.find(')').unwrap_or(rest.len())]
            .trim()
            .to_owned();
    }
    let decl = decl.split('[').next().unwrap_or(decl);
    let decl = decl.split(':').next().unwrap_or(decl);
    decl.split_whitespace()
        .last()
        .unwrap_or("")
        .trim_start_matches('*')
        .to_owned()
}

/// Parses `pahole -E -C NAME` output into the member tree of `NAME`.
fn parse_struct(text: &str) -> Node {
    let mut stack: Vec<Vec<Node>> = Vec::new();
    let mut root = None;
    for raw in text.lines() {
        let line = raw.trim();
        // A leading `/* typedef x -> y */` says what a member's type was called.
        let line = match line.strip_prefix("/*") {
            Some(rest) if !line.ends_with("*/") => {
                rest[rest.find("*/").map_or(0, |i| i + 2)..].trim()
            }
            _ => line,
        };
        if line.ends_with('{') {
            stack.push(Vec::new());
        } else if let Some(rest) = line.strip_prefix('}') {
            let children = stack.pop().expect("pahole output nests braces");
            // `} __attribute__((__aligned__(64)))ipv4 __attribute__((__aligned__(64)));`
            let decl = without_attributes(&rest[..rest.find(';').unwrap_or(0)]);
            let name = decl.split_whitespace().next().unwrap_or("").to_owned();
            let (offset, size) = offset_and_size(rest).unwrap_or((0, 0));
            let node = Node {
                name,
                offset,
                size,
                children,
            };
            match stack.last_mut() {
                Some(parent) => parent.push(node),
                None => root = Some(node),
            }
        } else if let (Some(semi), Some((offset, size))) = (line.find(';'), offset_and_size(line)) {
            let frame = stack.last_mut().expect("members are inside braces");
            frame.push(Node {
                name: declared_name(&line[..semi]),
                offset,
                size,
                children: Vec::new(),
            });
        }
    }
    root.expect("pahole printed a struct")
}

/// The pahole oracle for one kernel's BTF file.
struct Oracle<'a> {
    file: &'a Path,
}

impl Oracle<'_> {
    fn tree(&self, name: &str) -> Node {
        let tree = parse_struct(&pahole(self.file, &["-E", "-C", name]));
        assert!(!tree.children.is_empty(), "pahole knows no struct {name}");
        tree
    }

    /// Offset and size of `path` in struct `name`, or `None` when the kernel has no such
    /// member.
    fn member(&self, name: &str, path: &str) -> Option<(u32, u32)> {
        self.tree(name).path(path).map(|n| (n.offset, n.size))
    }

    fn offset(&self, name: &str, path: &str) -> u32 {
        self.member(name, path).map_or(OFFSET_NONE, |(o, _)| o)
    }

    /// What [`KernelOffsets`] should hold, from pahole alone.
    fn offsets(&self) -> KernelOffsets {
        let tail = match self.member("sk_buff", "tail") {
            Some((offset, 4)) => offset,
            _ => OFFSET_NONE,
        };
        let (net_syncookies, net_syncookies_size) =
            match self.member("net", "ipv4.sysctl_tcp_syncookies") {
                Some((offset, size @ (1 | 4))) => (offset, size),
                _ => (OFFSET_NONE, 0),
            };
        KernelOffsets {
            skb_dev: self.offset("sk_buff", "dev"),
            skb_sk: self.offset("sk_buff", "sk"),
            skb_len: self.offset("sk_buff", "len"),
            skb_head: self.offset("sk_buff", "head"),
            skb_tail: tail,
            skb_protocol: self.offset("sk_buff", "protocol"),
            skb_network_header: self.offset("sk_buff", "network_header"),
            skb_mac_header: self.offset("sk_buff", "mac_header"),
            dev_name: self.offset("net_device", "name"),
            dev_ifindex: self.offset("net_device", "ifindex"),
            dev_net: self.offset("net_device", "nd_net.net"),
            sk_net: self.offset("sock", "__sk_common.skc_net.net"),
            net_inum: self.offset("net", "ns.inum"),
            sk_ack_backlog: self.offset("sock", "sk_ack_backlog"),
            sk_max_ack_backlog: self.offset("sock", "sk_max_ack_backlog"),
            icsk_syn_qlen: self.offset("inet_connection_sock", "icsk_accept_queue.qlen"),
            net_syncookies,
            net_syncookies_size,
            skb_cb: self.offset("sk_buff", "cb"),
            _pad: 0,
        }
    }

    /// Enumerators of `enum name` in declaration order; empty when there is no such enum.
    fn enumerators(&self, name: &str) -> Vec<(String, i64)> {
        pahole(self.file, &["-C", name])
            .lines()
            .filter_map(|l| {
                let (n, v) = l.trim().trim_end_matches(',').split_once(" = ")?;
                Some((n.trim().to_owned(), v.trim().parse().ok()?))
            })
            .collect()
    }

    /// Parameters of the `btf_trace_kfree_skb` prototype, `None` without the typedef.
    fn kfree_skb_params(&self) -> Option<usize> {
        let text = pahole(self.file, &["-C", "btf_trace_kfree_skb"]);
        let proto = text.split("(*btf_trace_kfree_skb)(").nth(1)?;
        let params = &proto[..proto.rfind(')')?];
        Some(params.split(',').count())
    }
}

/// Checks one kernel; returns what was compared, for the log.
fn check_kernel(name: &str, file: &Path) -> String {
    let oracle = Oracle { file };
    let btf = Btf::from_file(file).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(btf.unread(), None, "{name}: every kind is known");

    let ours = offsets::from_btf(&btf).unwrap_or_else(|e| panic!("{name}: {e}"));
    let expected = oracle.offsets();
    assert_eq!(ours, expected, "{name}: offsets differ from pahole's");
    // The members every supported kernel has must have been found, not both be NONE.
    for (field, value) in [
        ("skb_dev", ours.skb_dev),
        ("skb_protocol", ours.skb_protocol),
        ("skb_network_header", ours.skb_network_header),
        ("dev_ifindex", ours.dev_ifindex),
        ("sk_net", ours.sk_net),
        ("net_inum", ours.net_inum),
        ("icsk_syn_qlen", ours.icsk_syn_qlen),
        ("net_syncookies", ours.net_syncookies),
        ("skb_tail", ours.skb_tail),
    ] {
        assert_ne!(value, OFFSET_NONE, "{name}: {field} not found");
    }

    let arity = match oracle.kfree_skb_params() {
        Some(3) => HookArity::Two,
        Some(4) => HookArity::Three,
        Some(n) if n >= 5 => HookArity::Four,
        other => panic!("{name}: pahole shows btf_trace_kfree_skb with {other:?} parameters"),
    };
    assert_eq!(
        offsets::kfree_skb_arity(&btf).ok(),
        Some(arity),
        "{name}: arity"
    );

    let core = oracle.enumerators("skb_drop_reason");
    let reasons = Reasons::from_btf([&btf]);
    if core.is_empty() {
        assert!(
            reasons.is_none(),
            "{name}: pahole shows no enum skb_drop_reason"
        );
        return format!("{arity:?} arguments, no drop reasons");
    }
    let reasons = reasons.unwrap_or_else(|| panic!("{name}: no reasons read from BTF"));
    assert_eq!(reasons.source, Source::Btf);
    let mut seen = BTreeSet::new();
    for (full, value) in &core {
        let short = full
            .strip_prefix("SKB_DROP_REASON_")
            .or_else(|| full.strip_prefix("SKB_"))
            .unwrap_or(full);
        // Bounds, not reasons; and the first name of a value is the one shown.
        if short == "MAX" || short == "SUBSYS_MASK" || !seen.insert(*value) {
            continue;
        }
        assert_eq!(
            reasons.decode(*value as u32).name,
            short,
            "{name}: reason {value}"
        );
    }
    assert!(seen.len() > 10, "{name}: only {} reasons", seen.len());
    let subsystems = oracle.enumerators("skb_drop_reason_subsys");
    for (full, value) in &subsystems {
        let short = full.strip_prefix("SKB_DROP_REASON_SUBSYS_").unwrap();
        if short == "NUM" || *value == 0 {
            continue;
        }
        let code = (*value as u32) << super::reasons::SUBSYS_SHIFT | 0xfffe;
        assert_eq!(
            reasons.decode(code).subsystem.as_deref(),
            Some(short),
            "{name}: subsystem {value}"
        );
    }
    format!(
        "{arity:?} arguments, {} reasons, {} subsystems",
        seen.len(),
        subsystems.len()
    )
}

/// `NAME=FILE` pairs from [`ENV`], every one of [`REQUIRED`] present and readable.
fn kernels() -> Vec<(String, String)> {
    let spec = std::env::var(ENV).unwrap_or_else(|_| {
        panic!("{ENV} is not set: run `cargo xtask kernel-btf`, which extracts the kernels' BTF")
    });
    let kernels: Vec<(String, String)> = spec
        .split(';')
        .filter(|s| !s.is_empty())
        .map(|s| {
            let (n, f) = s.split_once('=').expect("NAME=FILE");
            (n.to_owned(), f.to_owned())
        })
        .collect();
    for want in REQUIRED {
        let file = kernels
            .iter()
            .find(|(n, _)| n == want)
            .map(|(_, f)| f)
            .unwrap_or_else(|| panic!("{ENV} names no BTF for kernel {want}"));
        assert!(Path::new(file).is_file(), "{want}: no file {file}");
    }
    kernels
}

#[test]
#[ignore = "needs extracted kernel BTF and pahole: run `cargo xtask kernel-btf`"]
fn offsets_prototype_and_reasons_match_pahole_on_real_kernels() {
    for (name, file) in kernels() {
        let what = check_kernel(&name, Path::new(&file));
        eprintln!("{name}: offsets, prototype and reasons match pahole ({what})");
    }
}

#[test]
fn the_pahole_parser_reads_nested_anonymous_and_bitfield_members() {
    let text = "struct sock {
	struct sock_common {
		union {
			/* typedef __addrpair -> __u64 */ long long unsigned int skc_addrpair; /*     0     8 */
		};                                                                       /*     0     8 */
		unsigned char      skc_reuse:4;                                          /*    19: 0  1 */
		/* typedef possible_net_t */ struct {
			struct net * net;                                                /*    48     8 */
		} skc_net; /*    48     8 */
		void       (*skc_destruct)(struct sock *);                               /*    56     8 */
	} __sk_common; /*     0   136 */
	char                       name[16];             /*   136    16 */
	struct netns_ipv4 {
		int                x __attribute__((__aligned__(8))); /*   192     4 */
	} __attribute__((__aligned__(64)))ipv4 __attribute__((__aligned__(64))); /*   192   832 */
	/* size: 760, cachelines: 12, members: 2 */
};
";
    let tree = parse_struct(text);
    assert_eq!(tree.path("__sk_common.skc_net.net").unwrap().offset, 48);
    assert_eq!(tree.path("__sk_common.skc_addrpair").unwrap().size, 8);
    assert_eq!(tree.path("__sk_common.skc_reuse").unwrap().offset, 19);
    assert_eq!(tree.path("__sk_common.skc_destruct").unwrap().offset, 56);
    let name = tree.path("name").unwrap();
    assert_eq!((name.offset, name.size), (136, 16));
    assert!(tree.path("skc_net").is_none());
    assert_eq!(tree.path("ipv4.x").unwrap().offset, 192);
}
