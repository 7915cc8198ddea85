//! Names the nftables rule that may have dropped a packet.
//!
//! `nft -j list ruleset` (read in the packet's network namespace by [`read_ruleset`]) is
//! parsed by [`parse_ruleset`] into the rules whose verdict drops or rejects, each with the
//! conditions netdrop understands ([`Match`]). [`candidates`] then keeps the rules whose
//! conditions agree with what netdrop knows of a dropped packet ([`PacketFacts`]).
//!
//! iptables-nft rules appear here as nftables tables (`ip filter INPUT`); their `xt`
//! matches are opaque in the JSON, so such rules are marked not understood.

use std::{
    collections::HashMap,
    fs::File,
    io,
    net::IpAddr,
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    process::Command,
};

use netdrop_common::proto::{
    ETH_P_ARP, ETH_P_IP, ETH_P_IPV6, IPPROTO_DCCP, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_SCTP,
    IPPROTO_TCP, IPPROTO_UDP,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

/// Where `nft` usually lives, for users whose `PATH` lacks the sbin directories.
const NFT_FALLBACKS: [&str; 2] = ["/usr/sbin/nft", "/sbin/nft"];
/// Jumps followed upwards when attributing a regular chain to a hook; the kernel allows 16.
const MAX_JUMP_DEPTH: usize = 16;
/// `ETH_P_8021Q`, for `meta protocol vlan`.
const ETH_P_8021Q: u16 = 0x8100;

/// A rule whose verdict drops (or rejects) packets. A base chain whose policy is `drop`
/// also yields one, with no handle, no matches and the text `policy drop`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DropRule {
    /// Table family: `inet`, `ip`, `ip6`, `bridge`, `netdev` or `arp`.
    pub family: String,
    /// Table name.
    pub table: String,
    /// Chain name.
    pub chain: String,
    /// Hook of the base chain: `input`, `prerouting`, ...; for a regular chain, the hook of
    /// the base chains that jump to it when they all agree; `None` otherwise.
    pub hook: Option<String>,
    /// Rule handle (`nft -a list ruleset`); `None` for a chain policy.
    pub handle: Option<u64>,
    /// A readable rendering of the rule, e.g. `udp dport 47010 drop`.
    pub text: String,
    /// `drop` or `reject`.
    pub verdict: String,
    /// What the rule matches, as far as understood. For a rule of a regular chain that is
    /// jumped to from exactly one rule, the conditions of that jump come first.
    pub matches: Vec<Match>,
    /// False if some expression of the rule (or of the one jump leading to it) was not
    /// understood.
    pub understood: bool,
}

/// One condition of a rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Match {
    /// Transport protocol (`meta l4proto`, `ip protocol`, `ip6 nexthdr`, or implied by
    /// `tcp dport`).
    L4Proto(u8),
    /// Transport source port.
    SrcPort(PortSet),
    /// Transport destination port.
    DstPort(PortSet),
    /// Network source address.
    SrcAddr(AddrSet),
    /// Network destination address.
    DstAddr(AddrSet),
    /// Input interface name; a trailing `*` is a wildcard.
    InIface(String),
    /// Output interface name; a trailing `*` is a wildcard.
    OutIface(String),
    /// Conntrack states (`!` marks a negated one). Recorded only: the conntrack state of a
    /// dropped packet is unknown, so it never excludes a rule.
    CtState(Vec<String>),
    /// Ethertype (`meta nfproto`, `meta protocol`, `ether type`, or implied by `ip saddr`).
    Family(u16),
}

/// Values as nftables writes them on the right of a match: one value, a range, an
/// anonymous (or resolved named) set, or the negation of one of these.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Set<T> {
    /// One value: `80`, `10.0.0.0/8`.
    One(T),
    /// An inclusive range: `1000-2000`, `10.0.0.1-10.0.0.9`.
    Range(T, T),
    /// Any of these: `{ 22, 80, 443 }`.
    Any(Vec<Set<T>>),
    /// Anything but this: `!= 8080`.
    Not(Box<Set<T>>),
}

/// Ports: `80`, `1000-2000`, `{ 80, 443 }`, `!= 8080`.
pub type PortSet = Set<u16>;
/// Addresses: `10.0.0.0/8`, `192.0.2.1`, `{ 192.0.2.1, 198.51.100.0/24 }`.
pub type AddrSet = Set<Prefix>;

/// An IPv4 or IPv6 address with a prefix length (32 or 128 for a single address).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prefix {
    /// Network address.
    pub addr: IpAddr,
    /// Prefix length in bits.
    pub len: u8,
}

impl Prefix {
    /// Whether `ip` lies in this prefix (never across address families).
    pub fn contains(&self, ip: &IpAddr) -> bool {
        let keep = |bits: u32| -> u32 { u32::from(self.len).min(bits) };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - keep(32)).unwrap_or(0);
                u32::from(net) & mask == u32::from(*ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - keep(128)).unwrap_or(0);
                u128::from(net) & mask == u128::from(*ip) & mask
            }
            _ => false,
        }
    }
}

/// What a [`Set`] can hold: how one element covers a value, and how specific it is.
pub trait Element {
    /// The packet field the element is compared with.
    type Value;
    /// Whether this element covers `v`.
    fn covers(&self, v: &Self::Value) -> bool;
    /// Whether `v` lies between `lo` and `hi`, both included.
    fn between(lo: &Self, hi: &Self, v: &Self::Value) -> bool;
    /// How narrow this one element is, from 1 (wide) to 3 (a single value).
    fn weight(&self) -> u32;
}

impl Element for u16 {
    type Value = u16;

    fn covers(&self, v: &u16) -> bool {
        self == v
    }

    fn between(lo: &Self, hi: &Self, v: &u16) -> bool {
        (lo..=hi).contains(&v)
    }

    fn weight(&self) -> u32 {
        3
    }
}

impl Element for Prefix {
    type Value = IpAddr;

    fn covers(&self, v: &IpAddr) -> bool {
        self.contains(v)
    }

    fn between(lo: &Self, hi: &Self, v: &IpAddr) -> bool {
        lo.addr.is_ipv4() == v.is_ipv4() && (lo.addr..=hi.addr).contains(v)
    }

    fn weight(&self) -> u32 {
        let bits = if self.addr.is_ipv4() { 32 } else { 128 };
        // Rounded, so that a /24 or an IPv6 /96 counts as narrow as one address.
        1 + (2 * u32::from(self.len).min(bits) + bits / 2) / bits
    }
}

impl<T: Element> Set<T> {
    /// Whether `v` is in the set.
    pub fn contains(&self, v: &T::Value) -> bool {
        match self {
            Self::One(e) => e.covers(v),
            Self::Range(lo, hi) => T::between(lo, hi, v),
            Self::Any(items) => items.iter().any(|s| s.contains(v)),
            Self::Not(inner) => !inner.contains(v),
        }
    }

    /// How narrow the set is: a single value weighs most, a negation least.
    fn weight(&self) -> u32 {
        match self {
            Self::One(e) => e.weight(),
            Self::Range(..) | Self::Any(_) => 2,
            Self::Not(_) => 1,
        }
    }
}

/// The packet to explain: the fields netdrop knows of a dropped packet.
#[derive(Clone, Copy, Debug, Default)]
pub struct PacketFacts<'a> {
    /// Ethertype.
    pub l3: Option<u16>,
    /// Transport protocol.
    pub l4: Option<u8>,
    /// Source address.
    pub src: Option<IpAddr>,
    /// Destination address.
    pub dst: Option<IpAddr>,
    /// Transport source port.
    pub sport: Option<u16>,
    /// Transport destination port.
    pub dport: Option<u16>,
    /// The packet's device at the hook: the input device on `prerouting`, `input` and
    /// `forward`, the output device on `output` and `postrouting`.
    pub iface: Option<&'a str>,
    /// Netfilter hook as netdrop names it: `prerouting`, `input`, `forward`, `output`,
    /// `postrouting` (`ingress`, `egress` for netdev).
    pub hook: Option<&'a str>,
}

/// How sure netdrop is that a rule could have dropped the packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Certainty {
    /// Every condition of the rule agrees with the packet.
    Matches,
    /// No condition contradicts the packet, but some could not be checked: not understood,
    /// or about a field netdrop does not know for this packet.
    Maybe,
}

/// Failures to read the ruleset, each one sentence saying what to do.
#[derive(Debug, Error)]
pub enum NftError {
    #[error(
        "the `nft` command was not found: install nftables (e.g. `apt install nftables`) so \
         netdrop can name the rule that dropped a packet"
    )]
    NftMissing,

    #[error("reading the nftables ruleset needs root (CAP_NET_ADMIN): run netdrop with sudo")]
    Permission,

    #[error(
        "entering the network namespace {} needs root (CAP_SYS_ADMIN): run netdrop with sudo",
        path.display()
    )]
    NetnsPermission { path: PathBuf },

    #[error(
        "cannot use the network namespace {} ({source}): check that it exists, e.g. with \
         `ip netns list`",
        path.display()
    )]
    Netns { path: PathBuf, source: io::Error },

    #[error(
        "cannot run `nft -j list ruleset` ({source}): check that nftables is installed correctly"
    )]
    Run { source: io::Error },

    #[error("`nft -j list ruleset` failed ({stderr}): run it by hand to see why")]
    Failed { stderr: String },

    #[error(
        "`nft -j list ruleset` printed something other than the expected JSON ({reason}): \
         netdrop needs nftables 0.9.1 or later, built with JSON support"
    )]
    BadJson { reason: String },
}

/// Reads the ruleset of the network namespace at `netns` (e.g. `/run/netns/NAME` or
/// `/proc/PID/ns/net`; `None`: netdrop's own) by running `nft -j list ruleset`.
pub fn read_ruleset(netns: Option<&Path>) -> Result<Vec<DropRule>, NftError> {
    let json = match netns {
        None => run_nft()?,
        Some(path) => {
            let ns = File::open(path).map_err(|source| NftError::Netns {
                path: path.to_owned(),
                source,
            })?;
            std::thread::scope(|s| {
                s.spawn(|| {
                    // SAFETY: setns changes only this helper thread, which ends right after;
                    // the nft child it spawns inherits the thread's namespace.
                    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                        let source = io::Error::last_os_error();
                        return Err(if source.kind() == io::ErrorKind::PermissionDenied {
                            NftError::NetnsPermission {
                                path: path.to_owned(),
                            }
                        } else {
                            NftError::Netns {
                                path: path.to_owned(),
                                source,
                            }
                        });
                    }
                    run_nft()
                })
                .join()
                .unwrap_or_else(|_| {
                    Err(NftError::Run {
                        source: io::Error::other("the nft reader thread panicked"),
                    })
                })
            })?
        }
    };
    parse_ruleset(&json)
}

/// Runs `nft -j list ruleset` in the calling thread's network namespace.
fn run_nft() -> Result<String, NftError> {
    let list = |program: &str| {
        Command::new(program)
            .args(["-j", "list", "ruleset"])
            .output()
    };
    let mut out = list("nft");
    for fallback in NFT_FALLBACKS {
        match out {
            Err(ref e) if e.kind() == io::ErrorKind::NotFound => out = list(fallback),
            _ => break,
        }
    }
    let out = out.map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => NftError::NftMissing,
        _ => NftError::Run { source },
    })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        return Err(if stderr.contains("Operation not permitted") {
            NftError::Permission
        } else {
            NftError::Failed { stderr }
        });
    }
    String::from_utf8(out.stdout).map_err(|e| NftError::BadJson {
        reason: e.to_string(),
    })
}

/// A chain, by family, table and name.
type ChainKey = (String, String, String);

/// A `jump`/`goto` from one chain to another, with the conditions under which it is taken.
struct Edge {
    from: ChainKey,
    to: ChainKey,
    matches: Vec<Match>,
    understood: bool,
}

/// How a chain is reached: its hook and the conditions of the one path leading to it.
#[derive(Default)]
struct Context {
    hook: Option<String>,
    matches: Vec<Match>,
    understood: bool,
}

/// One rule as read, before the chain context is added.
struct Parsed {
    chain: ChainKey,
    handle: Option<u64>,
    text: String,
    verdict: Option<&'static str>,
    jumps: Vec<String>,
    matches: Vec<Match>,
    understood: bool,
}

/// The parts of a ruleset that rules refer to.
struct Ruleset {
    /// Base chains and their hook; regular chains map to `None`.
    hooks: HashMap<ChainKey, Option<String>>,
    /// Named sets with their elements.
    sets: HashMap<ChainKey, Value>,
    edges: Vec<Edge>,
}

/// Parses the output of `nft -j list ruleset` into the rules that drop or reject, in
/// ruleset order.
pub fn parse_ruleset(json: &str) -> Result<Vec<DropRule>, NftError> {
    let doc: Value = serde_json::from_str(json).map_err(|e| NftError::BadJson {
        reason: e.to_string(),
    })?;
    let items = doc
        .get("nftables")
        .and_then(Value::as_array)
        .ok_or_else(|| NftError::BadJson {
            reason: "no `nftables` array".to_owned(),
        })?;
    let mut rs = Ruleset {
        hooks: HashMap::new(),
        sets: HashMap::new(),
        edges: Vec::new(),
    };
    let mut policies = Vec::new();
    for item in items {
        if let Some(c) = item.get("chain") {
            let key = key(c, "name");
            let hook = str_field(c, "hook").map(str::to_owned);
            if hook.is_some() && str_field(c, "policy") == Some("drop") {
                policies.push((key.clone(), hook.clone()));
            }
            rs.hooks.insert(key, hook);
        } else if let Some(s) = item.get("set").or_else(|| item.get("map")) {
            let elems = s.get("elem").cloned().unwrap_or(Value::Array(Vec::new()));
            rs.sets.insert(key(s, "name"), elems);
        }
    }
    let parsed: Vec<Parsed> = items
        .iter()
        .filter_map(|item| item.get("rule"))
        .map(|r| parse_rule(r, &rs))
        .collect();
    for p in &parsed {
        for to in &p.jumps {
            rs.edges.push(Edge {
                from: p.chain.clone(),
                to: (p.chain.0.clone(), p.chain.1.clone(), to.clone()),
                matches: p.matches.clone(),
                understood: p.understood,
            });
        }
    }
    let mut rules: Vec<DropRule> = parsed
        .into_iter()
        .filter_map(|p| {
            let verdict = p.verdict?;
            let ctx = context(&rs, &p.chain, 0);
            let mut matches = ctx.matches;
            for m in p.matches {
                if !matches.contains(&m) {
                    matches.push(m);
                }
            }
            let (family, table, chain) = p.chain;
            Some(DropRule {
                family,
                table,
                chain,
                hook: ctx.hook,
                handle: p.handle,
                text: p.text,
                verdict: verdict.to_owned(),
                matches,
                understood: p.understood && ctx.understood,
            })
        })
        .collect();
    rules.extend(
        policies
            .into_iter()
            .map(|((family, table, chain), hook)| DropRule {
                family,
                table,
                chain,
                hook,
                handle: None,
                text: "policy drop".to_owned(),
                verdict: "drop".to_owned(),
                matches: Vec::new(),
                understood: true,
            }),
    );
    Ok(rules)
}

/// The hook and conditions under which `chain` runs: a base chain is its own context; a
/// regular chain inherits from the one rule that jumps to it, or, with several, only the
/// hook they agree on.
fn context(rs: &Ruleset, chain: &ChainKey, depth: usize) -> Context {
    if let Some(Some(hook)) = rs.hooks.get(chain) {
        return Context {
            hook: Some(hook.clone()),
            matches: Vec::new(),
            understood: true,
        };
    }
    let unknown = Context {
        understood: true,
        ..Context::default()
    };
    if depth >= MAX_JUMP_DEPTH {
        return unknown;
    }
    let edges: Vec<&Edge> = rs.edges.iter().filter(|e| &e.to == chain).collect();
    match edges.as_slice() {
        [] => unknown,
        [edge] => {
            let mut ctx = context(rs, &edge.from, depth + 1);
            ctx.matches.extend(edge.matches.iter().cloned());
            ctx.understood &= edge.understood;
            ctx
        }
        many => {
            let hooks: Vec<Option<String>> = many
                .iter()
                .map(|e| context(rs, &e.from, depth + 1).hook)
                .collect();
            let agreed = hooks.first().cloned().flatten();
            Context {
                hook: agreed.filter(|h| hooks.iter().all(|o| o.as_deref() == Some(h.as_str()))),
                ..unknown
            }
        }
    }
}

/// The family, table and `name_field` of a chain, set or rule object.
fn key(obj: &Value, name_field: &str) -> ChainKey {
    let s = |f: &str| str_field(obj, f).unwrap_or_default().to_owned();
    (s("family"), s("table"), s(name_field))
}

/// The string field `field` of a JSON object.
fn str_field<'v>(obj: &'v Value, field: &str) -> Option<&'v str> {
    obj.get(field).and_then(Value::as_str)
}

/// Reads one rule's expressions: conditions, verdict, jumps and its text.
fn parse_rule(rule: &Value, rs: &Ruleset) -> Parsed {
    let chain = key(rule, "chain");
    let mut p = Parsed {
        handle: rule.get("handle").and_then(Value::as_u64),
        text: String::new(),
        verdict: None,
        jumps: Vec::new(),
        matches: Vec::new(),
        understood: true,
        chain,
    };
    let mut words = Vec::new();
    let exprs = rule.get("expr").and_then(Value::as_array);
    for expr in exprs.into_iter().flatten() {
        let Some((kind, body)) = expr.as_object().and_then(|o| o.iter().next()) else {
            p.understood = false;
            continue;
        };
        match kind.as_str() {
            "match" => match condition(body, &p.chain, rs) {
                Some(found) => {
                    for m in found {
                        if !p.matches.contains(&m) {
                            p.matches.push(m);
                        }
                    }
                }
                None => p.understood = false,
            },
            // Side effects only: they do not decide which packets the rule takes.
            "counter" | "log" | "mangle" | "notrack" => continue,
            "drop" => p.verdict = Some("drop"),
            "reject" => {
                p.verdict = Some("reject");
                // The ICMP flavour implies the family (nft hides that dependency).
                match str_field(body, "type") {
                    Some("icmp") => p.matches.push(Match::Family(ETH_P_IP)),
                    Some("icmpv6") => p.matches.push(Match::Family(ETH_P_IPV6)),
                    _ => {}
                }
            }
            "jump" | "goto" => p.jumps.extend(str_field(body, "target").map(str::to_owned)),
            "xt" => match (str_field(body, "type"), str_field(body, "name")) {
                (Some("target"), Some("REJECT")) => p.verdict = Some("reject"),
                (Some("target"), Some("DROP")) => p.verdict = Some("drop"),
                (Some("target"), _) => {}
                _ => p.understood = false,
            },
            "vmap" => {
                // Which key value leads to which verdict is not modelled: the rule may drop.
                p.understood = false;
                p.verdict = p.verdict.or_else(|| vmap_verdict(body));
            }
            "accept" | "return" | "continue" | "queue" => {}
            _ => p.understood = false,
        }
        words.push(render_statement(kind, body));
    }
    if let Some(comment) = str_field(rule, "comment") {
        words.push(format!("comment \"{comment}\""));
    }
    p.text = words.join(" ");
    p
}

/// The harshest verdict a verdict map can give: `drop`, `reject` or none.
fn vmap_verdict(vmap: &Value) -> Option<&'static str> {
    let data = vmap.get("data")?;
    ["drop", "reject"].into_iter().find(|v| has_key(data, v))
}

/// Whether `key` is the key of an object anywhere inside `v`.
fn has_key(v: &Value, key: &str) -> bool {
    match v {
        Value::Object(o) => o.iter().any(|(k, inner)| k == key || has_key(inner, key)),
        Value::Array(items) => items.iter().any(|i| has_key(i, key)),
        _ => false,
    }
}

/// The conditions of one `match` expression, or `None` if it is not understood.
fn condition(m: &Value, chain: &ChainKey, rs: &Ruleset) -> Option<Vec<Match>> {
    let op = str_field(m, "op")?;
    let left = m.get("left")?;
    let right = m.get("right")?;
    let table_family = chain.0.as_str();
    let positive = matches!(op, "==" | "in");
    let resolve = |v: &'_ Value| -> Option<Value> {
        match v.as_str().and_then(|s| s.strip_prefix('@')) {
            Some(name) => rs
                .sets
                .get(&(chain.0.clone(), chain.1.clone(), name.to_owned()))
                .map(|elems| serde_json::json!({ "set": elems })),
            None => Some(v.clone()),
        }
    };
    if let Some(payload) = left.get("payload") {
        let proto = str_field(payload, "protocol")?;
        let field = str_field(payload, "field")?;
        return match (proto, field) {
            ("tcp" | "udp" | "udplite" | "sctp" | "dccp" | "th", "sport" | "dport") => {
                let set = with_op(op, value_set(&resolve(right)?, &port)?)?;
                let mut out: Vec<Match> = l4proto(proto).map(Match::L4Proto).into_iter().collect();
                out.push(if field == "sport" {
                    Match::SrcPort(set)
                } else {
                    Match::DstPort(set)
                });
                Some(out)
            }
            ("ip" | "ip6", "saddr" | "daddr") => {
                let set = with_op(op, value_set(&resolve(right)?, &prefix)?)?;
                let mut out = implied_family(proto, table_family);
                out.push(if field == "saddr" {
                    Match::SrcAddr(set)
                } else {
                    Match::DstAddr(set)
                });
                Some(out)
            }
            ("ip", "protocol") | ("ip6", "nexthdr") if positive => {
                let mut out = implied_family(proto, table_family);
                out.push(Match::L4Proto(l4proto_value(right)?));
                Some(out)
            }
            ("ether", "type") if positive => Some(vec![Match::Family(ethertype(right)?)]),
            _ => None,
        };
    }
    if let Some(meta) = left.get("meta") {
        let name = || right.as_str().map(str::to_owned);
        return match str_field(meta, "key")? {
            _ if !positive => None,
            "l4proto" => Some(vec![Match::L4Proto(l4proto_value(right)?)]),
            "nfproto" => match right.as_str() {
                Some("ipv4") => Some(vec![Match::Family(ETH_P_IP)]),
                Some("ipv6") => Some(vec![Match::Family(ETH_P_IPV6)]),
                _ => None,
            },
            "protocol" => Some(vec![Match::Family(ethertype(right)?)]),
            "iifname" | "iif" => Some(vec![Match::InIface(name()?)]),
            "oifname" | "oif" => Some(vec![Match::OutIface(name()?)]),
            _ => None,
        };
    }
    if str_field(left.get("ct")?, "key")? == "state" {
        let mark = if positive { "" } else { "!" };
        let states = match right {
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            v => vec![v.as_str()?],
        };
        return Some(vec![Match::CtState(
            states.iter().map(|s| format!("{mark}{s}")).collect(),
        )]);
    }
    None
}

/// `set` under the operator of its match: negated for `!=`; `None` for `<`, `&` and such.
fn with_op<T>(op: &str, set: Set<T>) -> Option<Set<T>> {
    match op {
        "==" | "in" => Some(set),
        "!=" => Some(Set::Not(Box::new(set))),
        _ => None,
    }
}

/// The family an `ip`/`ip6` payload match implies, unless the table already fixes it.
fn implied_family(proto: &str, table_family: &str) -> Vec<Match> {
    match (proto, table_family) {
        ("ip", "ip") | ("ip6", "ip6") => Vec::new(),
        ("ip", _) => vec![Match::Family(ETH_P_IP)],
        _ => vec![Match::Family(ETH_P_IPV6)],
    }
}

/// Reads a right-hand value (number, range, set, prefix) with `one` reading single elements.
fn value_set<T>(v: &Value, one: &dyn Fn(&Value) -> Option<T>) -> Option<Set<T>> {
    if let Some(items) = v.get("set").and_then(Value::as_array) {
        return items
            .iter()
            .map(|i| value_set(i, one))
            .collect::<Option<Vec<_>>>()
            .map(Set::Any);
    }
    if let Some(elem) = v.get("elem") {
        return value_set(elem.get("val")?, one);
    }
    if let Some([lo, hi]) = v.get("range").and_then(Value::as_array).map(Vec::as_slice) {
        return Some(Set::Range(one(lo)?, one(hi)?));
    }
    one(v).map(Set::One)
}

/// A port as nft prints it (a number; `-j` does not print service names).
fn port(v: &Value) -> Option<u16> {
    v.as_u64().and_then(|n| u16::try_from(n).ok())
}

/// An address (`"192.0.2.1"`) or a prefix (`{"prefix": {"addr": ..., "len": 24}}`).
fn prefix(v: &Value) -> Option<Prefix> {
    if let Some(p) = v.get("prefix") {
        return Some(Prefix {
            addr: str_field(p, "addr")?.parse().ok()?,
            len: p.get("len")?.as_u64().and_then(|n| u8::try_from(n).ok())?,
        });
    }
    let addr: IpAddr = v.as_str()?.parse().ok()?;
    let len = if addr.is_ipv4() { 32 } else { 128 };
    Some(Prefix { addr, len })
}

/// Protocol number of a name as nft prints it; `None` for `th` and unknown names.
fn l4proto(name: &str) -> Option<u8> {
    Some(match name {
        "tcp" => IPPROTO_TCP,
        "udp" => IPPROTO_UDP,
        "sctp" => IPPROTO_SCTP,
        "dccp" => IPPROTO_DCCP,
        "icmp" => IPPROTO_ICMP,
        "icmpv6" | "ipv6-icmp" => IPPROTO_ICMPV6,
        "udplite" => 136,
        "gre" => 47,
        "esp" => 50,
        "ah" => 51,
        _ => return None,
    })
}

/// A protocol given by name or number.
fn l4proto_value(v: &Value) -> Option<u8> {
    match v.as_str() {
        Some(name) => l4proto(name),
        None => v.as_u64().and_then(|n| u8::try_from(n).ok()),
    }
}

/// An ethertype by nft's name (`ip`, `ip6`, `arp`, `vlan`) or number.
fn ethertype(v: &Value) -> Option<u16> {
    match v.as_str() {
        Some("ip") => Some(ETH_P_IP),
        Some("ip6") => Some(ETH_P_IPV6),
        Some("arp") => Some(ETH_P_ARP),
        Some("vlan") => Some(ETH_P_8021Q),
        Some(_) => None,
        None => v.as_u64().and_then(|n| u16::try_from(n).ok()),
    }
}

/// One statement in nft's own words, as far as it is worth showing.
fn render_statement(kind: &str, body: &Value) -> String {
    match kind {
        "match" => {
            let left = body.get("left").unwrap_or(&Value::Null);
            let op = match str_field(body, "op") {
                Some("==" | "in") | None => String::new(),
                Some(op) => format!("{op} "),
            };
            let quote = left
                .get("meta")
                .and_then(|m| str_field(m, "key"))
                .is_some_and(|k| k.starts_with("iif") || k.starts_with("oif"));
            let right = body.get("right").unwrap_or(&Value::Null);
            let right = match right.as_str() {
                Some(s) if quote => format!("\"{s}\""),
                _ => render(right),
            };
            format!("{} {op}{right}", render(left))
        }
        "counter" => "counter".to_owned(),
        "log" => "log".to_owned(),
        "jump" | "goto" => format!("{kind} {}", str_field(body, "target").unwrap_or("?")),
        "reject" => match (str_field(body, "type"), str_field(body, "expr")) {
            (Some(t), Some(e)) => format!("reject with {t} {e}"),
            (Some(t), None) => format!("reject with {t}"),
            _ => "reject".to_owned(),
        },
        "limit" => format!(
            "limit rate {}{}/{}",
            if body.get("inv").and_then(Value::as_bool) == Some(true) {
                "over "
            } else {
                ""
            },
            body.get("rate").map(render).unwrap_or_default(),
            str_field(body, "per").unwrap_or("second")
        ),
        "xt" => format!(
            "xt {} \"{}\"",
            str_field(body, "type").unwrap_or("?"),
            str_field(body, "name").unwrap_or("?")
        ),
        "vmap" => format!(
            "{} vmap {}",
            render(body.get("key").unwrap_or(&Value::Null)),
            render(body.get("data").unwrap_or(&Value::Null))
        ),
        _ if body.is_null() => kind.to_owned(),
        _ => format!("{kind} {body}"),
    }
}

/// An expression or value in nft's syntax; JSON for anything unusual.
fn render(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Array(items) => join(items, ","),
        Value::Object(o) => match o.iter().next() {
            Some((k, body)) if o.len() == 1 => render_object(k, body),
            _ => v.to_string(),
        },
        _ => v.to_string(),
    }
}

/// `items` rendered and joined by `sep`.
fn join(items: &[Value], sep: &str) -> String {
    items.iter().map(render).collect::<Vec<_>>().join(sep)
}

/// A one-key object: an expression such as `payload`, `meta`, `set`, or a verdict.
fn render_object(kind: &str, body: &Value) -> String {
    let field = |f: &str| body.get(f).map(render).unwrap_or_default();
    let items = || body.as_array().map(Vec::as_slice).unwrap_or_default();
    match kind {
        "payload" if body.get("protocol").is_some() => {
            format!("{} {}", field("protocol"), field("field"))
        }
        "payload" => format!("@{},{},{}", field("base"), field("offset"), field("len")),
        "meta" => match str_field(body, "key") {
            Some(k @ ("iifname" | "oifname" | "iif" | "oif")) => k.to_owned(),
            _ => format!("meta {}", field("key")),
        },
        "ct" => format!("ct {}", field("key")),
        "prefix" => format!("{}/{}", field("addr"), field("len")),
        "range" => join(items(), "-"),
        "concat" => join(items(), " . "),
        "elem" => field("val"),
        "set" => {
            let entries: Vec<String> = items()
                .iter()
                .map(|e| match e.as_array().map(Vec::as_slice) {
                    Some([k, verdict]) => format!("{} : {}", render(k), render(verdict)),
                    _ => render(e),
                })
                .collect();
            format!("{{ {} }}", entries.join(", "))
        }
        verdict if body.is_null() => verdict.to_owned(),
        _ => format!("{{\"{kind}\":{body}}}"),
    }
}

/// Whether one condition holds: `Some(true)`, `Some(false)`, or `None` when the packet
/// field it needs is unknown.
fn check(m: &Match, p: &PacketFacts<'_>) -> Option<bool> {
    match m {
        Match::L4Proto(proto) => p.l4.map(|l4| l4 == *proto),
        Match::SrcPort(set) => p.sport.map(|v| set.contains(&v)),
        Match::DstPort(set) => p.dport.map(|v| set.contains(&v)),
        Match::SrcAddr(set) => p.src.map(|v| set.contains(&v)),
        Match::DstAddr(set) => p.dst.map(|v| set.contains(&v)),
        // The kernel knows no input device for locally sent packets, and no output device
        // before routing; at the other hooks `iface` may be the other one of the two.
        Match::InIface(name) => match p.hook {
            Some("prerouting" | "input" | "forward" | "ingress") => {
                p.iface.map(|i| iface_matches(name, i))
            }
            Some("output") => Some(false),
            _ => None,
        },
        Match::OutIface(name) => match p.hook {
            Some("output" | "postrouting" | "egress") => p.iface.map(|i| iface_matches(name, i)),
            Some("prerouting" | "input") => Some(false),
            _ => None,
        },
        Match::CtState(_) => Some(true),
        Match::Family(et) => p.l3.map(|l3| l3 == *et),
    }
}

/// Whether interface `iface` matches nft's `pattern` (a trailing `*` is a wildcard).
fn iface_matches(pattern: &str, iface: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(stem) => iface.starts_with(stem),
        None => pattern == iface,
    }
}

/// Whether a table of `family` sees packets of ethertype `l3`.
fn family_sees(family: &str, l3: u16) -> bool {
    match family {
        "ip" => l3 == ETH_P_IP,
        "ip6" => l3 == ETH_P_IPV6,
        "inet" => l3 == ETH_P_IP || l3 == ETH_P_IPV6,
        "arp" => l3 == ETH_P_ARP,
        _ => true,
    }
}

/// How narrow a rule's conditions are, to list the most specific first.
fn specificity(rule: &DropRule) -> u32 {
    rule.matches
        .iter()
        .map(|m| match m {
            Match::L4Proto(_) | Match::Family(_) => 1,
            Match::SrcPort(s) | Match::DstPort(s) => s.weight(),
            Match::SrcAddr(s) | Match::DstAddr(s) => s.weight(),
            Match::InIface(n) | Match::OutIface(n) if n.ends_with('*') => 1,
            Match::InIface(_) | Match::OutIface(_) => 2,
            Match::CtState(_) => 0,
        })
        .sum()
}

/// The rules that could have dropped this packet, most specific first.
///
/// A rule is excluded when its table family cannot see the packet's ethertype, when its
/// hook and the packet's are both known and differ, or when one of its understood
/// conditions contradicts the packet. Of the rest, those whose every condition was
/// understood and checked are [`Certainty::Matches`]; the others (not understood, or
/// needing a field the packet lacks) are returned as [`Certainty::Maybe`], and only when
/// no rule matches. Chain policies come last, as [`Certainty::Matches`]: they take what
/// no rule took, so they stand beside `Maybe` rules rather than hide them.
pub fn candidates<'r>(
    rules: &'r [DropRule],
    p: &PacketFacts<'_>,
) -> Vec<(&'r DropRule, Certainty)> {
    let mut sure = Vec::new();
    let mut maybe = Vec::new();
    let mut policies = Vec::new();
    for rule in rules {
        if p.l3.is_some_and(|l3| !family_sees(&rule.family, l3)) {
            continue;
        }
        if let (Some(h), Some(rh)) = (p.hook, rule.hook.as_deref())
            && h != rh
        {
            continue;
        }
        let checks: Vec<Option<bool>> = rule.matches.iter().map(|m| check(m, p)).collect();
        if checks.contains(&Some(false)) {
            continue;
        }
        if rule.handle.is_none() {
            policies.push((rule, Certainty::Matches));
        } else if rule.understood && !checks.contains(&None) {
            sure.push(rule);
        } else {
            maybe.push(rule);
        }
    }
    let (mut chosen, certainty) = if sure.is_empty() {
        (maybe, Certainty::Maybe)
    } else {
        (sure, Certainty::Matches)
    };
    chosen.sort_by_key(|r| std::cmp::Reverse(specificity(r)));
    chosen
        .into_iter()
        .map(|r| (r, certainty))
        .chain(policies)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata;

    fn rules(fixture: &str) -> Vec<DropRule> {
        parse_ruleset(&testdata::read(&format!("nft/{fixture}.json"))).expect("fixture parses")
    }

    /// (chain, handle, certainty) of each candidate, in order.
    fn picked<'a>(
        rules: &'a [DropRule],
        p: &PacketFacts<'_>,
    ) -> Vec<(&'a str, Option<u64>, Certainty)> {
        candidates(rules, p)
            .into_iter()
            .map(|(r, c)| (r.chain.as_str(), r.handle, c))
            .collect()
    }

    /// A packet of ethertype `l3` and transport protocol `l4`, from `src:sport` to
    /// `dst:dport`, at no known hook.
    fn packet(
        l3: u16,
        l4: u8,
        src: &str,
        sport: u16,
        dst: &str,
        dport: u16,
    ) -> PacketFacts<'static> {
        PacketFacts {
            l3: Some(l3),
            l4: Some(l4),
            src: Some(src.parse().expect("address")),
            dst: Some(dst.parse().expect("address")),
            sport: Some(sport),
            dport: Some(dport),
            iface: None,
            hook: None,
        }
    }

    fn v4(l4: u8, src: &str, sport: u16, dst: &str, dport: u16) -> PacketFacts<'static> {
        packet(ETH_P_IP, l4, src, sport, dst, dport)
    }

    fn v6(l4: u8, src: &str, sport: u16, dst: &str, dport: u16) -> PacketFacts<'static> {
        packet(ETH_P_IPV6, l4, src, sport, dst, dport)
    }

    impl PacketFacts<'static> {
        /// The same packet seen at `hook` on device `iface`.
        fn at(self, hook: &'static str, iface: &'static str) -> Self {
            Self {
                hook: Some(hook),
                iface: Some(iface),
                ..self
            }
        }
    }

    use Certainty::{Matches, Maybe};

    #[test]
    fn inet_udp_dport_drop_is_read_whole() {
        let rules = rules("inet-input");
        let udp = rules
            .iter()
            .find(|r| r.handle == Some(10))
            .expect("rule 10");
        assert_eq!(
            udp,
            &DropRule {
                family: "inet".to_owned(),
                table: "filter".to_owned(),
                chain: "input".to_owned(),
                hook: Some("input".to_owned()),
                handle: Some(10),
                text: "udp dport 47010 drop".to_owned(),
                verdict: "drop".to_owned(),
                matches: vec![Match::L4Proto(IPPROTO_UDP), Match::DstPort(Set::One(47010))],
                understood: true,
            }
        );
        // Accept rules and the jump are not drop rules; the policy is accept.
        let handles: Vec<_> = rules.iter().map(|r| (r.chain.as_str(), r.handle)).collect();
        assert_eq!(
            handles,
            [
                ("blocklist", Some(5)),
                ("blocklist", Some(6)),
                ("input", Some(8)),
                ("input", Some(10)),
                ("input", Some(12)),
                ("input", Some(13)),
                ("input", Some(14)),
                ("input", Some(15)),
                ("input", Some(16)),
            ]
        );
    }

    #[test]
    fn inet_matches_ports_sets_ranges_and_negations() {
        let rules = rules("inet-input");
        let by = |h| rules.iter().find(|r| r.handle == Some(h)).expect("rule");
        assert_eq!(
            by(12).matches,
            [
                Match::L4Proto(IPPROTO_TCP),
                Match::DstPort(Set::Any(vec![Set::One(22), Set::One(80), Set::One(443)]))
            ]
        );
        assert_eq!(
            by(14).matches,
            [
                Match::L4Proto(IPPROTO_TCP),
                Match::DstPort(Set::Not(Box::new(Set::One(8080)))),
                Match::SrcPort(Set::Range(1000, 2000)),
            ]
        );
        assert_eq!(
            by(14).text,
            "tcp dport != 8080 tcp sport 1000-2000 drop comment \"odd clients\""
        );
        assert_eq!(by(8).matches, [Match::CtState(vec!["invalid".to_owned()])]);
        assert_eq!(
            by(16).matches,
            [Match::Family(ETH_P_IP), Match::L4Proto(47)]
        );
        // The blocklist chain is reached only from input, by an unconditional jump.
        assert_eq!(by(5).hook.as_deref(), Some("input"));
        assert_eq!(
            by(5).matches,
            [
                Match::Family(ETH_P_IP),
                Match::SrcAddr(Set::Any(vec![
                    Set::One(Prefix {
                        addr: "192.0.2.1".parse().expect("address"),
                        len: 32
                    }),
                    Set::One(Prefix {
                        addr: "198.51.100.0".parse().expect("address"),
                        len: 24
                    }),
                ]))
            ]
        );
    }

    #[test]
    fn udp_drop_in_input_is_named_before_the_ct_state_rule() {
        let rules = rules("inet-input");
        let p = v4(IPPROTO_UDP, "203.0.113.5", 40000, "192.0.2.10", 47010).at("input", "eth0");
        assert_eq!(
            picked(&rules, &p),
            [("input", Some(10), Matches), ("input", Some(8), Matches)]
        );
        // Another hook: no rule of this table runs there.
        let p = v4(IPPROTO_UDP, "203.0.113.5", 40000, "192.0.2.10", 47010).at("forward", "eth0");
        assert_eq!(picked(&rules, &p), []);
    }

    #[test]
    fn tcp_set_and_saddr_set_both_match_in_ruleset_order() {
        let rules = rules("inet-input");
        let p = v4(IPPROTO_TCP, "198.51.100.7", 40000, "192.0.2.10", 80).at("input", "eth0");
        assert_eq!(
            picked(&rules, &p),
            [
                ("blocklist", Some(5), Matches),
                ("input", Some(12), Matches),
                ("input", Some(8), Matches)
            ]
        );
        // Source port in 1000-2000 and destination port not 8080: the commented rule too.
        let p = v4(IPPROTO_TCP, "203.0.113.5", 1500, "192.0.2.10", 443).at("input", "eth0");
        assert_eq!(
            picked(&rules, &p),
            [
                ("input", Some(14), Matches),
                ("input", Some(12), Matches),
                ("input", Some(8), Matches)
            ]
        );
    }

    #[test]
    fn input_interface_is_checked_at_input() {
        let rules = rules("inet-input");
        let dns = v4(IPPROTO_UDP, "203.0.113.5", 40000, "192.0.2.10", 53);
        assert_eq!(
            picked(&rules, &dns.at("input", "eth9")),
            [("input", Some(13), Matches), ("input", Some(8), Matches)]
        );
        assert_eq!(
            picked(&rules, &dns.at("input", "eth0")),
            [("input", Some(8), Matches)]
        );
    }

    #[test]
    fn unknown_port_makes_a_rule_maybe_which_a_matching_rule_hides() {
        let rules = rules("inet-input");
        let p = PacketFacts {
            dport: None,
            ..v4(IPPROTO_UDP, "203.0.113.5", 40000, "192.0.2.10", 0).at("input", "eth0")
        };
        assert_eq!(picked(&rules, &p), [("input", Some(8), Matches)]);
    }

    #[test]
    fn saddr_prefix_drop_in_forward_and_the_policy() {
        let rules = rules("ip-forward");
        let p = v4(IPPROTO_UDP, "10.66.1.2", 40000, "198.51.100.1", 53).at("forward", "eth0");
        assert_eq!(
            picked(&rules, &p),
            [("forward", Some(2), Matches), ("forward", None, Matches)]
        );
        let policy = rules.iter().find(|r| r.handle.is_none()).expect("policy");
        assert_eq!(
            (
                policy.table.as_str(),
                policy.hook.as_deref(),
                policy.text.as_str()
            ),
            ("routed", Some("forward"), "policy drop")
        );
        // The output interface is unknown at forward (netdrop sees the input device): maybe.
        let p = v4(IPPROTO_TCP, "10.1.1.1", 40000, "203.0.113.7", 443).at("forward", "eth0");
        assert_eq!(
            picked(&rules, &p),
            [("forward", Some(3), Maybe), ("forward", None, Matches)]
        );
        // After routing the device is the output one.
        let rules_post: Vec<DropRule> = rules
            .iter()
            .cloned()
            .map(|r| DropRule {
                hook: Some("postrouting".to_owned()),
                ..r
            })
            .collect();
        let p = v4(IPPROTO_TCP, "10.1.1.1", 40000, "203.0.113.7", 443).at("postrouting", "wan0");
        assert_eq!(
            picked(&rules_post, &p),
            [("forward", Some(3), Matches), ("forward", None, Matches)]
        );
    }

    #[test]
    fn ip6_tables_see_only_ipv6() {
        let rules = rules("ip-forward");
        let p = v6(IPPROTO_UDP, "2001:db9::1", 40000, "2001:db8:dead::5", 53).at("forward", "e");
        assert_eq!(
            picked(&rules, &p),
            [("forward", Some(2), Matches), ("forward", Some(3), Matches)]
        );
        assert!(
            candidates(&rules, &p)
                .iter()
                .all(|(r, _)| r.family == "ip6")
        );
        // Inside 2001:db8::/32 the negated source excludes rule 3.
        let p = v6(IPPROTO_UDP, "2001:db8:1::1", 40000, "2001:db8:dead::5", 53).at("forward", "e");
        assert_eq!(picked(&rules, &p), [("forward", Some(2), Matches)]);
    }

    #[test]
    fn rejects_with_named_set_and_implied_family() {
        let rules = rules("reject");
        let smtp = rules.iter().find(|r| r.handle == Some(4)).expect("rule 4");
        assert_eq!(smtp.verdict, "reject");
        assert_eq!(smtp.text, "tcp dport @blocked_ports reject with tcp reset");
        assert_eq!(
            smtp.matches,
            [
                Match::L4Proto(IPPROTO_TCP),
                Match::DstPort(Set::Any(vec![Set::One(25), Set::One(465)]))
            ]
        );
        let p = v4(IPPROTO_TCP, "192.0.2.1", 40000, "198.51.100.1", 465).at("output", "eth0");
        assert_eq!(picked(&rules, &p), [("output", Some(4), Matches)]);
        let mdns = v6(IPPROTO_UDP, "fe80::1", 5353, "ff02::fb", 5353).at("output", "eth0");
        assert_eq!(picked(&rules, &mdns), [("output", Some(5), Matches)]);
        // The icmpv6 reject implies IPv6.
        let p = v4(IPPROTO_UDP, "192.0.2.1", 5353, "224.0.0.251", 5353).at("output", "eth0");
        assert_eq!(picked(&rules, &p), []);
        let sctp = v4(IPPROTO_SCTP, "127.0.0.1", 40000, "127.0.0.1", 9899);
        assert_eq!(
            picked(&rules, &sctp.at("input", "lo")),
            [("input", Some(6), Matches)]
        );
        assert_eq!(picked(&rules, &sctp.at("input", "eth0")), []);
        // Locally sent packets have no input interface.
        assert_eq!(picked(&rules, &sctp.at("output", "lo")), []);
    }

    #[test]
    fn rules_not_understood_are_maybe_and_only_without_a_match() {
        let rules = rules("not-understood");
        let understood: Vec<_> = rules.iter().map(|r| (r.handle, r.understood)).collect();
        assert_eq!(
            understood,
            [
                (Some(2), false),
                (Some(3), false),
                (Some(4), false),
                (Some(5), false),
                (Some(7), false),
                (Some(8), true)
            ]
        );
        let by = |h| rules.iter().find(|r| r.handle == Some(h)).expect("rule");
        assert_eq!(by(5).text, "limit rate over 10/second udp dport 7200 drop");
        assert_eq!(by(7).text, "tcp dport vmap { 7300 : drop, 7301 : accept }");
        // The understood part still excludes: rule 3 is udp 7000, rule 4 is tcp 7100.
        let p = v4(IPPROTO_TCP, "192.0.2.1", 40000, "198.51.100.1", 7300).at("input", "eth0");
        assert_eq!(
            picked(&rules, &p),
            [("input", Some(2), Maybe), ("input", Some(7), Maybe)]
        );
        let p = v4(IPPROTO_UDP, "192.0.2.1", 40000, "198.51.100.1", 7000).at("input", "eth0");
        assert_eq!(
            picked(&rules, &p),
            [
                ("input", Some(3), Maybe),
                ("input", Some(2), Maybe),
                ("input", Some(7), Maybe)
            ]
        );
        let p = v4(IPPROTO_UDP, "192.0.2.1", 40000, "198.51.100.1", 7400).at("input", "eth0");
        assert_eq!(picked(&rules, &p), [("input", Some(8), Matches)]);
    }

    #[test]
    fn iptables_nft_tables() {
        let rules = rules("iptables-nft");
        let by = |c: &str, h| {
            rules
                .iter()
                .find(|r| r.chain == c && r.handle == Some(h))
                .expect("rule")
        };
        let reject = by("INPUT", 4);
        assert_eq!(
            (
                reject.verdict.as_str(),
                reject.understood,
                reject.text.as_str()
            ),
            (
                "reject",
                true,
                "meta l4proto tcp ip saddr 192.0.2.0/24 xt target \"REJECT\""
            )
        );
        assert!(!by("INPUT", 3).understood);
        // The LOG rule of LOGDROP does not drop; its DROP inherits the jump's conditions.
        let logdrop = by("LOGDROP", 9);
        assert_eq!(logdrop.hook.as_deref(), Some("input"));
        assert_eq!(
            logdrop.matches,
            [Match::L4Proto(IPPROTO_TCP), Match::DstPort(Set::One(8443))]
        );
        assert!(rules.iter().all(|r| r.handle != Some(8)));

        let p = v4(IPPROTO_TCP, "203.0.113.9", 40000, "192.0.2.10", 8443).at("input", "eth0");
        assert_eq!(picked(&rules, &p), [("LOGDROP", Some(9), Matches)]);
        // multiport is an xt match: maybe.
        let p = v4(IPPROTO_TCP, "203.0.113.9", 40000, "192.0.2.10", 3000).at("input", "eth0");
        assert_eq!(picked(&rules, &p), [("INPUT", Some(3), Maybe)]);
        let p = v4(IPPROTO_TCP, "192.0.2.9", 40000, "192.0.2.10", 3000).at("input", "eth0");
        assert_eq!(picked(&rules, &p), [("INPUT", Some(4), Matches)]);
        let p = v6(IPPROTO_UDP, "2001:db8::1", 500, "2001:db8::2", 500).at("input", "eth0");
        let got = candidates(&rules, &p);
        assert_eq!(got.len(), 1);
        assert_eq!(
            (got[0].0.family.as_str(), got[0].0.handle, got[0].1),
            ("ip6", Some(2), Matches)
        );
    }

    #[test]
    fn regular_chains_get_the_hook_their_callers_agree_on() {
        let rules = rules("jumps");
        let by = |c: &str| rules.iter().find(|r| r.chain == c).expect("rule");
        // Jumped to from input and forward: no single hook, no inherited conditions.
        assert_eq!(by("shared").hook, None);
        assert_eq!(
            by("shared").matches,
            [Match::L4Proto(IPPROTO_UDP), Match::DstPort(Set::One(5000))]
        );
        // Jumped to twice from input.
        assert_eq!(by("inputonly").hook.as_deref(), Some("input"));
        assert_eq!(by("inputonly").matches.len(), 2);
        // Through two jumps, conditions of both.
        let inner = by("inner");
        assert_eq!(inner.hook.as_deref(), Some("input"));
        assert_eq!(
            inner.matches,
            [
                Match::L4Proto(IPPROTO_TCP),
                Match::Family(ETH_P_IP),
                Match::DstAddr(Set::One(Prefix {
                    addr: "192.0.2.0".parse().expect("address"),
                    len: 24
                })),
                Match::DstPort(Set::One(5002)),
            ]
        );
        let p = v4(IPPROTO_UDP, "203.0.113.9", 40000, "192.0.2.10", 5000).at("forward", "eth1");
        assert_eq!(
            picked(&rules, &p),
            [("shared", Some(7), Matches), ("forward", None, Matches)]
        );
        let p = v4(IPPROTO_TCP, "203.0.113.9", 40000, "198.51.100.1", 5002).at("input", "eth1");
        assert_eq!(picked(&rules, &p), []);
        let p = v4(IPPROTO_TCP, "203.0.113.9", 40000, "192.0.2.1", 5002).at("input", "eth1");
        assert_eq!(picked(&rules, &p), [("inner", Some(10), Matches)]);
    }

    #[test]
    fn protocol_numbers_are_read_like_names() {
        // nft prints names; a protocol without a name in /etc/protocols stays a number.
        let json = r#"{"nftables": [
            {"chain": {"family": "ip", "table": "t", "name": "c", "hook": "input"}},
            {"rule": {"family": "ip", "table": "t", "chain": "c", "handle": 3, "expr": [
                {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "protocol"}},
                           "right": 253}},
                {"drop": null}]}}]}"#;
        let rules = parse_ruleset(json).expect("parses");
        assert_eq!(rules[0].matches, [Match::L4Proto(253)]);
        assert_eq!(rules[0].text, "ip protocol 253 drop");
        assert!(rules[0].understood);
    }

    #[test]
    fn prefixes_and_sets() {
        let net: Prefix = Prefix {
            addr: "10.66.0.0".parse().expect("address"),
            len: 16,
        };
        assert!(net.contains(&"10.66.255.1".parse().expect("address")));
        assert!(!net.contains(&"10.67.0.1".parse().expect("address")));
        assert!(!net.contains(&"::ffff:10.66.0.1".parse().expect("address")));
        let all = Prefix {
            addr: "::".parse().expect("address"),
            len: 0,
        };
        assert!(all.contains(&"2001:db8::1".parse().expect("address")));
        let range: AddrSet = Set::Range(
            prefix(&Value::from("10.0.0.1")).expect("address"),
            prefix(&Value::from("10.0.0.9")).expect("address"),
        );
        assert!(range.contains(&"10.0.0.5".parse().expect("address")));
        assert!(!range.contains(&"10.0.0.10".parse().expect("address")));
        let ports: PortSet = Set::Not(Box::new(Set::Any(vec![
            Set::One(80),
            Set::Range(1000, 2000),
        ])));
        assert!(!ports.contains(&80));
        assert!(!ports.contains(&1500));
        assert!(ports.contains(&443));
    }

    #[test]
    fn bad_input_is_a_clear_error() {
        assert!(matches!(
            parse_ruleset("nft: command not found"),
            Err(NftError::BadJson { .. })
        ));
        assert!(matches!(parse_ruleset("{}"), Err(NftError::BadJson { .. })));
        let empty =
            r#"{"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}}]}"#;
        assert_eq!(parse_ruleset(empty).expect("empty ruleset"), []);
        let err = read_ruleset(Some(Path::new("/run/netns/netdrop-no-such-namespace")))
            .expect_err("no such namespace");
        assert!(matches!(err, NftError::Netns { .. }));
        assert!(err.to_string().contains("ip netns list"));
        assert!(
            NftError::NftMissing
                .to_string()
                .contains("install nftables")
        );
    }
}
