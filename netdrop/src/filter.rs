//! Command-line filters, checked and compiled into what the kernel side evaluates.

use std::{net::IpAddr, path::Path, time::Duration};

use netdrop_common::{AddrMatch, Filter, proto, reason_mode};

use crate::{
    error::Error,
    kernel::{
        containers::{Scan, Workload},
        netns,
        reasons::Reasons,
    },
};

/// `--proto`: a family, a transport protocol, or an IP protocol number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Proto {
    /// Ethertype to match, 0 for any.
    pub l3: u16,
    /// IP protocol number to match, 0 for any.
    pub l4: u8,
}

/// Names `--proto` accepts, for help and errors.
pub const PROTO_NAMES: &str =
    "tcp, udp, icmp, icmpv6, sctp, ipv4, ipv6, arp, or an IP protocol number";

/// Parses `--proto`.
pub fn parse_proto(s: &str) -> Result<Proto, String> {
    let p = |l3, l4| Ok(Proto { l3, l4 });
    match s.to_ascii_lowercase().as_str() {
        "tcp" => p(0, proto::IPPROTO_TCP),
        "udp" => p(0, proto::IPPROTO_UDP),
        "icmp" => p(proto::ETH_P_IP, proto::IPPROTO_ICMP),
        "icmpv6" | "icmp6" => p(proto::ETH_P_IPV6, proto::IPPROTO_ICMPV6),
        "sctp" => p(0, proto::IPPROTO_SCTP),
        "ipv4" | "ip" | "ip4" => p(proto::ETH_P_IP, 0),
        "ipv6" | "ip6" => p(proto::ETH_P_IPV6, 0),
        "arp" => p(proto::ETH_P_ARP, 0),
        other => match other.parse::<u8>() {
            Ok(n) if n > 0 => p(0, n),
            _ => Err(format!("unknown protocol `{s}`: use {PROTO_NAMES}")),
        },
    }
}

/// Parses `ADDR[/PREFIX]` into a masked prefix.
pub fn parse_prefix(s: &str) -> Result<AddrMatch, String> {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| format!("`{s}` is not an IPv4 or IPv6 address (ADDR or ADDR/PREFIX)"))?;
    let (bytes, max, family) = match addr {
        IpAddr::V4(a) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&a.octets());
            (b, 32u32, 4u8)
        }
        IpAddr::V6(a) => (a.octets(), 128, 6),
    };
    let len = match len {
        None => max,
        Some(l) => match l.parse::<u32>() {
            Ok(n) if n <= max => n,
            _ => return Err(format!("prefix length in `{s}` must be 0 to {max}")),
        },
    };
    let mut mask = [0u8; 16];
    for (i, m) in mask.iter_mut().enumerate() {
        let bits = len.saturating_sub(i as u32 * 8).min(8);
        *m = if bits == 0 { 0 } else { 0xffu8 << (8 - bits) };
    }
    let mut net = bytes;
    for (n, m) in net.iter_mut().zip(mask) {
        *n &= m;
    }
    Ok(AddrMatch {
        addr: net,
        mask,
        family,
        _pad: [0; 7],
    })
}

/// Parses `--iface`.
pub fn parse_iface(s: &str) -> Result<[u8; 16], String> {
    if s.is_empty() || s.len() > 15 || s.contains(['/', ' ', '\t', '\n']) {
        return Err(format!(
            "`{s}` is not a valid interface name (1 to 15 characters, no `/` or spaces)"
        ));
    }
    let mut name = [0u8; 16];
    name[..s.len()].copy_from_slice(s.as_bytes());
    Ok(name)
}

/// Parses `--netns`: an inode number, an `ip netns` name, or a path to a namespace file
/// such as `/proc/PID/ns/net`.
pub fn parse_netns(s: &str, root: &Path) -> Result<u32, String> {
    if let Ok(n) = s.parse::<u32>() {
        return Ok(n);
    }
    let path = if s.starts_with('/') {
        root.join(s.trim_start_matches('/'))
    } else {
        root.join("run/netns").join(s)
    };
    netns::inode(&path).ok_or_else(|| {
        format!(
            "no network namespace `{s}`: give an inode number (as netdrop prints), an `ip netns` \
             name, or a path like /proc/PID/ns/net"
        )
    })
}

/// `--pod` and `--container`: what lives in a network namespace, resolved to it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkloadSelector {
    /// `NAME`, `NAMESPACE/NAME` or UID.
    pub pod: Option<String>,
    /// Id prefix or name.
    pub container: Option<String>,
}

/// Parses `--pod` and `--container`: not empty, no control characters.
pub fn parse_selector(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err(
            "an empty name matches nothing: give a name, NAMESPACE/NAME, a UID or an id prefix"
                .to_owned(),
        );
    }
    if s.chars().any(char::is_control) || s.len() > 253 {
        return Err(format!(
            "`{}` is not a pod or container: give a name, NAMESPACE/NAME, a UID or an id prefix",
            printable(s)
        ));
    }
    Ok(s.to_owned())
}

/// How often the host is looked at again while no pod or container matches yet.
const WAIT_POLL: Duration = Duration::from_secs(1);
/// Pods or containers named in a message, at most.
const MAX_LISTED: usize = 5;

impl WorkloadSelector {
    /// True when neither is given.
    pub fn is_empty(&self) -> bool {
        self.pod.is_none() && self.container.is_none()
    }

    /// The one namespace selected in `scan`; `Ok(None)` while nothing matches (the pod may
    /// not have started yet). Several namespaces, the host's, or a pod and a container in
    /// different namespaces are errors: the kernel filters on one namespace.
    pub fn select(&self, scan: &Scan) -> Result<Option<u32>, String> {
        let mut chosen: Option<(u32, String)> = None;
        for (flag, sel, found) in [
            (
                "--pod",
                &self.pod,
                self.pod.as_deref().map(|p| scan.find_pod(p)),
            ),
            (
                "--container",
                &self.container,
                self.container.as_deref().map(|c| scan.find_container(c)),
            ),
        ] {
            let (Some(sel), Some(found)) = (sel, found) else {
                continue;
            };
            let what = format!("{flag} {}", printable(sel));
            let ns = match found.as_slice() {
                [] => return Ok(None),
                [(ns, _)] => *ns,
                many => {
                    return Err(format!(
                        "{what} matches {} network namespaces ({}): give NAMESPACE/NAME or a \
                         longer id",
                        many.len(),
                        listing(many.iter().map(|(_, w)| *w))
                    ));
                }
            };
            if scan.host.contains(&ns) {
                return Err(format!(
                    "{what} runs in the host's network namespace (host networking): its drops \
                     cannot be told from the host's; use --netns host to see them all"
                ));
            }
            if let Some((other, other_what)) = &chosen
                && *other != ns
            {
                return Err(format!(
                    "{other_what} and {what} are in different network namespaces: nothing \
                     would match"
                ));
            }
            chosen = Some((ns, what));
        }
        Ok(chosen.map(|(ns, _)| ns))
    }

    /// The namespace selected under `root`, waiting while nothing matches: an SRE may
    /// start netdrop before the pod it is about. `waiting` is told once, with what this
    /// host runs.
    pub fn resolve(&self, root: &Path, mut waiting: impl FnMut(&str)) -> Result<u32, String> {
        let mut told = false;
        loop {
            let scan = Scan::read(root);
            if let Some(ns) = self.select(&scan)? {
                return Ok(ns);
            }
            if !told {
                told = true;
                let pods: Vec<&Workload> = scan
                    .by_netns
                    .iter()
                    .filter(|(n, _)| !scan.host.contains(n))
                    .map(|(_, w)| w)
                    .collect();
                let here = if pods.is_empty() {
                    "no containers run here now".to_owned()
                } else {
                    format!("here now: {}", listing(pods.into_iter()))
                };
                let sel = [("--pod", &self.pod), ("--container", &self.container)]
                    .into_iter()
                    .filter_map(|(f, s)| Some(format!("{f} {}", printable(s.as_deref()?))))
                    .collect::<Vec<_>>()
                    .join(" and ");
                waiting(&format!(
                    "nothing matches {sel} yet ({here}); waiting for it to start (Ctrl-C to stop)"
                ));
            }
            std::thread::sleep(WAIT_POLL);
        }
    }
}

/// `pod a/b, container c, ...` (terminal-safe), at most [`MAX_LISTED`].
fn listing<'a>(ws: impl Iterator<Item = &'a Workload>) -> String {
    let all: Vec<String> = ws.map(|w| printable(&w.label()).into_owned()).collect();
    let mut s = all
        .iter()
        .take(MAX_LISTED)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if all.len() > MAX_LISTED {
        s.push_str(&format!(", and {} more", all.len() - MAX_LISTED));
    }
    s
}

fn printable(s: &str) -> std::borrow::Cow<'_, str> {
    crate::output::printable::printable(s)
}

/// Filters as given on the command line, already syntax-checked.
#[derive(Clone, Debug, Default)]
pub struct FilterSpec {
    pub reasons: Vec<String>,
    pub exclude_reasons: Vec<String>,
    pub proto: Option<Proto>,
    pub host: Option<AddrMatch>,
    pub src: Option<AddrMatch>,
    pub dst: Option<AddrMatch>,
    pub port: Option<u16>,
    pub netns: Option<u32>,
    pub iface: Option<[u8; 16]>,
}

impl FilterSpec {
    /// True when a filter narrows the traffic looked at (protocol, address, port, device):
    /// kernel counters cannot be narrowed that way, so they are not shown. Reason and
    /// namespace filters do not hide them.
    pub fn selects_packets(&self) -> bool {
        self.proto.is_some()
            || self.host.is_some()
            || self.src.is_some()
            || self.dst.is_some()
            || self.port.is_some()
            || self.iface.is_some()
    }

    /// True when a listener record (TCP, listening on `port`, IPv6 when `ipv6`) passes the
    /// filters: `--port` and `--proto` match it as the destination of the dropped SYNs;
    /// `--host`, `--src`, `--dst` and `--iface` hide listener records, since a listener
    /// (often bound to any address) cannot be matched against them.
    pub fn keeps_listener(&self, port: u16, ipv6: bool) -> bool {
        let family = if ipv6 {
            libc::ETH_P_IPV6
        } else {
            libc::ETH_P_IP
        } as u16;
        let proto_ok = self.proto.is_none_or(|p| {
            (p.l4 == 0 || p.l4 == libc::IPPROTO_TCP as u8) && (p.l3 == 0 || p.l3 == family)
        });
        proto_ok
            && self.port.is_none_or(|p| p == port)
            && self.host.is_none()
            && self.src.is_none()
            && self.dst.is_none()
            && self.iface.is_none()
    }

    /// True when a record of a socket that dropped (`tcp` when `tcp`, else UDP; with ports
    /// `local` and `remote`, IPv6 when `ipv6`) passes the filters: `--proto` matches its
    /// protocol and family, `--port` either of its ports (the local one for the datagrams
    /// it receives, the remote one for a client's connection); `--host`, `--src`, `--dst`
    /// and `--iface` hide socket records, as they hide listener records.
    pub fn keeps_socket(&self, tcp: bool, local: u16, remote: u16, ipv6: bool) -> bool {
        let family = if ipv6 {
            libc::ETH_P_IPV6
        } else {
            libc::ETH_P_IP
        } as u16;
        let l4 = if tcp {
            libc::IPPROTO_TCP
        } else {
            libc::IPPROTO_UDP
        } as u8;
        self.proto
            .is_none_or(|p| (p.l4 == 0 || p.l4 == l4) && (p.l3 == 0 || p.l3 == family))
            && self.port.is_none_or(|p| p == local || p == remote)
            && self.host.is_none()
            && self.src.is_none()
            && self.dst.is_none()
            && self.iface.is_none()
    }

    /// True when no socket record can pass the filters, so there is no need to look.
    pub fn hides_sockets(&self) -> bool {
        let port = self.port.unwrap_or(0);
        [(true, false), (true, true), (false, false), (false, true)]
            .into_iter()
            .all(|(tcp, ipv6)| !self.keeps_socket(tcp, port, 0, ipv6))
    }

    /// True when no listener record can pass the filters, so there is no need to look.
    pub fn hides_listeners(&self) -> bool {
        !self.keeps_listener(self.port.unwrap_or(0), false)
            && !self.keeps_listener(self.port.unwrap_or(0), true)
    }
}

/// What the kernel side needs: the [`Filter`] global and the reason set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompiledFilter {
    pub filter: Filter,
    /// Contents of the REASON_FILTER map.
    pub reason_set: Vec<u32>,
}

impl FilterSpec {
    /// Resolves reason names against this kernel's and checks the combination.
    pub fn compile(&self, reasons: &Reasons) -> Result<CompiledFilter, Error> {
        let resolve = |names: &[String]| -> Result<Vec<u32>, Error> {
            if !names.is_empty() && reasons.source == crate::kernel::reasons::Source::None {
                return Err(Error::NoReasons);
            }
            names
                .iter()
                .map(|n| {
                    reasons
                        .lookup(n)
                        .map_err(|suggestions| Error::UnknownReason {
                            name: n.clone(),
                            suggestions,
                        })
                })
                .collect()
        };
        let only = resolve(&self.reasons)?;
        let except = resolve(&self.exclude_reasons)?;
        let (reason_mode, reason_set) = if !only.is_empty() {
            let set: Vec<u32> = only.into_iter().filter(|r| !except.contains(r)).collect();
            if set.is_empty() {
                return Err(Error::BadArgument(
                    "--exclude-reason removes every reason given with --reason: nothing would match"
                        .to_owned(),
                ));
            }
            (reason_mode::ONLY, set)
        } else if !except.is_empty() {
            (reason_mode::EXCEPT, except)
        } else {
            (reason_mode::ALL, Vec::new())
        };
        if let (Some(p), Some(_)) = (self.proto, self.port)
            && p.l4 != 0
            && !proto::has_ports(p.l4)
        {
            return Err(Error::BadArgument(
                "--port only applies to TCP, UDP, UDP-Lite, SCTP and DCCP, not to the protocol given with --proto"
                    .to_owned(),
            ));
        }
        let none = AddrMatch::default();
        let mut reason_set = reason_set;
        reason_set.sort_unstable();
        reason_set.dedup();
        Ok(CompiledFilter {
            filter: Filter {
                reason_mode,
                netns: self.netns.unwrap_or(0),
                port: self.port.unwrap_or(0),
                has_port: u8::from(self.port.is_some()),
                l4_proto: self.proto.map_or(0, |p| p.l4),
                l3_proto: self.proto.map_or(0, |p| p.l3),
                has_iface: u8::from(self.iface.is_some()),
                _pad: 0,
                iface: self.iface.unwrap_or([0; 16]),
                host: self.host.unwrap_or(none),
                src: self.src.unwrap_or(none),
                dst: self.dst.unwrap_or(none),
            },
            reason_set,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{kernel::tracefs::Format, testdata};

    #[test]
    fn listener_records_follow_port_and_proto() {
        let spec = |f: &dyn Fn(&mut FilterSpec)| {
            let mut s = FilterSpec::default();
            f(&mut s);
            s
        };
        let none = FilterSpec::default();
        assert!(none.keeps_listener(8080, false) && !none.hides_listeners());
        let port = spec(&|s| s.port = Some(8080));
        assert!(port.keeps_listener(8080, true));
        assert!(!port.keeps_listener(8081, false));
        assert!(!port.hides_listeners());
        let tcp = spec(&|s| s.proto = Some(parse_proto("tcp").unwrap()));
        assert!(tcp.keeps_listener(1, false) && tcp.keeps_listener(1, true));
        let v6 = spec(&|s| s.proto = Some(parse_proto("ipv6").unwrap()));
        assert!(v6.keeps_listener(1, true) && !v6.keeps_listener(1, false));
        for p in ["udp", "icmp", "arp"] {
            let s = spec(&|s| s.proto = Some(parse_proto(p).unwrap()));
            assert!(s.hides_listeners(), "{p}");
        }
        let host = spec(&|s| s.host = Some(parse_prefix("10.0.0.2").unwrap()));
        assert!(host.hides_listeners());
        // A namespace filter is applied by reading only that namespace.
        let ns = spec(&|s| s.netns = Some(7));
        assert!(ns.keeps_listener(1, false));
    }

    #[test]
    fn socket_records_follow_port_and_proto() {
        let spec = |proto: Option<&str>, port: Option<u16>| FilterSpec {
            proto: proto.map(|p| parse_proto(p).unwrap()),
            port,
            ..FilterSpec::default()
        };
        let none = spec(None, None);
        assert!(none.keeps_socket(true, 1, 0, false) && !none.hides_sockets());
        let udp = spec(Some("udp"), Some(5353));
        assert!(udp.keeps_socket(false, 5353, 0, true));
        assert!(!udp.keeps_socket(true, 5353, 0, false));
        assert!(!udp.keeps_socket(false, 5354, 0, false));
        // A client's connection: the port is the remote one.
        let tcp = spec(Some("tcp"), Some(443));
        assert!(tcp.keeps_socket(true, 40000, 443, false) && !tcp.hides_sockets());
        for p in ["icmp", "arp"] {
            assert!(spec(Some(p), None).hides_sockets(), "{p}");
        }
        let host = FilterSpec {
            host: Some(parse_prefix("10.0.0.2").unwrap()),
            ..FilterSpec::default()
        };
        assert!(host.hides_sockets());
    }

    fn reasons() -> Reasons {
        let f = Format::parse(&testdata::read("tracefs/kfree_skb-6.18.format")).unwrap();
        Reasons::from_symbolic(&f.symbolic_values()).unwrap()
    }

    #[test]
    fn pods_and_containers_select_one_namespace() {
        use crate::kernel::containers::testing::{UID, fake_root};
        let root = fake_root("filter");
        let scan = Scan::read(&root);
        let sel = |pod: Option<&str>, container: Option<&str>| {
            WorkloadSelector {
                pod: pod.map(str::to_owned),
                container: container.map(str::to_owned),
            }
            .select(&scan)
        };
        assert_eq!(sel(Some("web-0"), None), Ok(Some(200)));
        assert_eq!(sel(Some("shop/web-0"), None), Ok(Some(200)));
        assert_eq!(sel(Some(UID), Some("app")), Ok(Some(200)));
        assert_eq!(sel(None, Some("redis\u{1b}[2J")), Ok(Some(300)));
        assert_eq!(sel(Some("nope"), None), Ok(None));
        assert_eq!(sel(Some("web-0"), Some("nope")), Ok(None));
        assert_eq!(
            sel(Some("web-0"), Some("dddd")).unwrap_err(),
            "--pod web-0 and --container dddd are in different network namespaces: nothing \
             would match"
        );
        // A container with host networking.
        assert_eq!(
            sel(None, Some("eeee")).unwrap_err(),
            "--container eeee runs in the host's network namespace (host networking): its \
             drops cannot be told from the host's; use --netns host to see them all"
        );
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn selectors_are_checked() {
        assert_eq!(parse_selector("shop/web-0"), Ok("shop/web-0".to_owned()));
        assert_eq!(
            parse_selector("").unwrap_err(),
            "an empty name matches nothing: give a name, NAMESPACE/NAME, a UID or an id prefix"
        );
        assert!(parse_selector(&"a".repeat(254)).is_err());
        assert!(
            parse_selector("a\u{1b}b")
                .unwrap_err()
                .starts_with("`a\\x1bb` is not")
        );
    }

    #[test]
    fn a_selector_matching_several_namespaces_says_which() {
        use crate::kernel::containers::{Container, Pod};
        let w = |ns: &str| Workload {
            containers: vec![Container {
                runtime: "containerd".into(),
                id: "a".repeat(64),
                name: None,
            }],
            pod: Some(Pod {
                uid: format!("{ns}-uid"),
                name: Some("web".into()),
                namespace: Some(ns.into()),
            }),
        };
        let scan = Scan {
            by_netns: [(1, w("shop")), (2, w("blog\u{1b}"))].into_iter().collect(),
            host: vec![9],
            seen: [1, 2, 9].into_iter().collect(),
        };
        let sel = WorkloadSelector {
            pod: Some("web".into()),
            container: None,
        };
        assert_eq!(
            sel.select(&scan).unwrap_err(),
            "--pod web matches 2 network namespaces (pod shop/web, pod blog\\x1b/web): give \
             NAMESPACE/NAME or a longer id"
        );
    }

    #[test]
    fn prefixes_are_masked() {
        let m = parse_prefix("10.1.2.3/8").unwrap();
        assert_eq!(m.family, 4);
        assert_eq!(&m.addr[..4], &[10, 0, 0, 0]);
        assert_eq!(&m.mask[..5], &[255, 0, 0, 0, 0]);
        let m = parse_prefix("192.168.1.7").unwrap();
        assert_eq!(&m.mask[..5], &[255, 255, 255, 255, 0]);
        let m = parse_prefix("fd00:1::5/33").unwrap();
        assert_eq!(m.family, 6);
        assert_eq!(&m.mask[..5], &[255, 255, 255, 255, 0x80]);
        assert_eq!(&m.addr[..4], &[0xfd, 0, 0, 1]);
        let m = parse_prefix("::1").unwrap();
        assert_eq!(m.mask, [255; 16]);
    }

    #[test]
    fn bad_prefixes_say_why() {
        assert_eq!(
            parse_prefix("10.0.0.1/33").unwrap_err(),
            "prefix length in `10.0.0.1/33` must be 0 to 32"
        );
        assert!(
            parse_prefix("example.com")
                .unwrap_err()
                .contains("not an IPv4 or IPv6 address")
        );
        assert!(parse_prefix("::1/129").is_err());
    }

    #[test]
    fn protocols() {
        assert_eq!(parse_proto("UDP").unwrap(), Proto { l3: 0, l4: 17 });
        assert_eq!(parse_proto("icmpv6").unwrap(), Proto { l3: 0x86dd, l4: 58 });
        assert_eq!(parse_proto("ipv6").unwrap(), Proto { l3: 0x86dd, l4: 0 });
        assert_eq!(parse_proto("47").unwrap(), Proto { l3: 0, l4: 47 });
        assert!(
            parse_proto("quic")
                .unwrap_err()
                .starts_with("unknown protocol `quic`")
        );
        assert!(parse_proto("0").is_err());
    }

    #[test]
    fn interfaces() {
        assert_eq!(&parse_iface("veth0").unwrap()[..6], b"veth0\0");
        assert!(parse_iface("a-very-long-interface").is_err());
        assert!(parse_iface("").is_err());
    }

    #[test]
    fn reason_sets() {
        let r = reasons();
        let spec = FilterSpec {
            reasons: vec!["no_socket".into(), "SOCKET_RCVBUFF".into()],
            exclude_reasons: vec!["SOCKET_RCVBUFF".into()],
            ..Default::default()
        };
        let c = spec.compile(&r).unwrap();
        assert_eq!(c.filter.reason_mode, reason_mode::ONLY);
        assert_eq!(c.reason_set, vec![3]);

        let spec = FilterSpec {
            exclude_reasons: vec!["NOT_SPECIFIED".into()],
            ..Default::default()
        };
        let c = spec.compile(&r).unwrap();
        assert_eq!(
            (c.filter.reason_mode, c.reason_set),
            (reason_mode::EXCEPT, vec![2])
        );

        let c = FilterSpec::default().compile(&r).unwrap();
        assert_eq!(c.filter.reason_mode, reason_mode::ALL);
    }

    #[test]
    fn unknown_reasons_list_close_names() {
        let spec = FilterSpec {
            reasons: vec!["NO_SOKET".into()],
            ..Default::default()
        };
        let err = spec.compile(&reasons()).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("unknown drop reason `NO_SOKET` (did you mean NO_SOCKET"),
            "{msg}"
        );
    }

    #[test]
    fn contradictions_are_errors() {
        let spec = FilterSpec {
            reasons: vec!["NO_SOCKET".into()],
            exclude_reasons: vec!["NO_SOCKET".into()],
            ..Default::default()
        };
        assert!(
            spec.compile(&reasons())
                .unwrap_err()
                .to_string()
                .contains("nothing would match")
        );
        let spec = FilterSpec {
            proto: Some(parse_proto("icmp").unwrap()),
            port: Some(53),
            ..Default::default()
        };
        assert!(
            spec.compile(&reasons())
                .unwrap_err()
                .to_string()
                .contains("--port only applies")
        );
        let spec = FilterSpec {
            reasons: vec!["NO_SOCKET".into()],
            ..Default::default()
        };
        assert!(matches!(
            spec.compile(&Reasons::none()),
            Err(Error::NoReasons)
        ));
    }

    #[test]
    fn header_filters_are_compiled() {
        let spec = FilterSpec {
            proto: Some(parse_proto("tcp").unwrap()),
            port: Some(8080),
            dst: Some(parse_prefix("10.0.0.0/24").unwrap()),
            iface: Some(parse_iface("eth0").unwrap()),
            netns: Some(4026531840),
            ..Default::default()
        };
        let f = spec.compile(&reasons()).unwrap().filter;
        assert_eq!(
            (f.l4_proto, f.port, f.has_port, f.has_iface, f.netns),
            (6, 8080, 1, 1, 4026531840)
        );
        assert_eq!(f.dst.family, 4);
        assert_eq!(f.src.family, 0);
        assert!(f.needs_headers());
    }
}
