//! Drop reason names, read from the running kernel: BTF `enum skb_drop_reason` (plus the
//! subsystem enums whose values carry `enum skb_drop_reason_subsys` in the high 16 bits),
//! or the `__print_symbolic` list of the tracepoint format file. Never from a table here:
//! the numbers differ between kernel versions (NO_SOCKET is 2 on 6.1 and 3 on 6.12).

use std::collections::BTreeMap;

use netdrop_common::netdrop_reason;

use super::btf::{Btf, Kind};

/// Bits above this shift select the subsystem (`SKB_DROP_REASON_SUBSYS_SHIFT`).
pub const SUBSYS_SHIFT: u32 = 16;

/// Where the names came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Kernel BTF.
    Btf,
    /// The tracepoint format file.
    FormatFile,
    /// The kernel has no drop reasons (before 5.17).
    None,
}

/// A decoded reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reason {
    /// Short name, e.g. `NO_SOCKET`, or `UNKNOWN_<n>` when the kernel did not tell us.
    pub name: String,
    /// Raw value.
    pub code: u32,
    /// Subsystem, e.g. `OPENVSWITCH`; `None` for core reasons.
    pub subsystem: Option<String>,
}

/// The reason table of one kernel.
#[derive(Clone, Debug)]
pub struct Reasons {
    by_code: BTreeMap<u32, String>,
    subsystems: BTreeMap<u32, String>,
    /// Where the names came from.
    pub source: Source,
}

impl Reasons {
    /// A kernel without drop reasons.
    pub fn none() -> Self {
        Self {
            by_code: BTreeMap::new(),
            subsystems: BTreeMap::new(),
            source: Source::None,
        }
    }

    /// Reads the reason enums from `btfs` (vmlinux first, then loaded modules); `None`
    /// when vmlinux has no `enum skb_drop_reason`.
    pub fn from_btf<'a>(btfs: impl IntoIterator<Item = &'a Btf>) -> Option<Self> {
        let mut btfs = btfs.into_iter();
        let vmlinux = btfs.next()?;
        let core = vmlinux.enum_values("skb_drop_reason")?;
        let mut by_code = BTreeMap::new();
        for (name, value) in core {
            let short = name
                .strip_prefix("SKB_DROP_REASON_")
                .or_else(|| name.strip_prefix("SKB_"))
                .unwrap_or(&name);
            // SUBSYS_MASK and MAX are bounds, not reasons.
            if short == "SUBSYS_MASK" || short == "MAX" {
                continue;
            }
            by_code
                .entry(value as u32)
                .or_insert_with(|| short.to_owned());
        }
        let subsystems: BTreeMap<u32, String> = vmlinux
            .enum_values("skb_drop_reason_subsys")
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(n, v)| {
                let n = n.strip_prefix("SKB_DROP_REASON_SUBSYS_")?;
                (n != "NUM" && v != 0).then(|| (v as u32, n.to_owned()))
            })
            .collect();
        // Subsystem reasons: any `*drop_reason*` enum whose values carry a known subsystem.
        for btf in std::iter::once(vmlinux).chain(btfs) {
            for (_, t) in btf.local_types() {
                if !matches!(t.kind, Kind::Enum | Kind::Enum64) {
                    continue;
                }
                let name = t.name();
                if !name.contains("drop_reason") || name.starts_with("skb_drop_reason") {
                    continue;
                }
                for (n, v) in t.enumerators() {
                    let v = v as u32;
                    if subsystems.contains_key(&(v >> SUBSYS_SHIFT)) {
                        by_code.entry(v).or_insert(n);
                    }
                }
            }
        }
        Some(Self {
            by_code,
            subsystems,
            source: Source::Btf,
        })
    }

    /// Reads the reason names printed by the tracepoint (`__print_symbolic` pairs).
    pub fn from_symbolic(values: &[(i64, String)]) -> Option<Self> {
        if values.is_empty() {
            return None;
        }
        let by_code = values
            .iter()
            .filter(|(_, n)| n != "MAX")
            .map(|(v, n)| (*v as u32, n.clone()))
            .collect();
        Some(Self {
            by_code,
            subsystems: BTreeMap::new(),
            source: Source::FormatFile,
        })
    }

    /// Decodes a raw reason value.
    pub fn decode(&self, code: u32) -> Reason {
        if let Some(&(_, name)) = netdrop_reason::ALL.iter().find(|(c, _)| *c == code) {
            return Reason {
                name: name.to_owned(),
                code,
                subsystem: None,
            };
        }
        let subsystem = self.subsystems.get(&(code >> SUBSYS_SHIFT)).cloned();
        let name = match (self.by_code.get(&code), &subsystem) {
            (Some(n), _) => n.clone(),
            (None, Some(s)) => format!("{s}_{}", code & ((1 << SUBSYS_SHIFT) - 1)),
            (None, None) if self.source == Source::None => "UNKNOWN".to_owned(),
            (None, None) => format!("UNKNOWN_{code}"),
        };
        Reason {
            name,
            code,
            subsystem,
        }
    }

    /// Every named reason, by code.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &str)> {
        self.by_code.iter().map(|(c, n)| (*c, n.as_str()))
    }

    /// Looks a name up (case-insensitive; `SKB_DROP_REASON_` prefix optional, and a number
    /// is accepted as is). On failure, returns up to five close names.
    pub fn lookup(&self, name: &str) -> Result<u32, Vec<String>> {
        let wanted = name.trim().to_ascii_uppercase();
        let wanted = wanted.strip_prefix("SKB_DROP_REASON_").unwrap_or(&wanted);
        if let Some((c, _)) = self.by_code.iter().find(|(_, n)| n.as_str() == wanted) {
            return Ok(*c);
        }
        if let Ok(code) = wanted.parse::<u32>()
            && self.by_code.contains_key(&code)
        {
            return Ok(code);
        }
        // netdrop's own reasons (the TCP listener hook's), wherever that hook runs.
        if let Some(&(code, _)) = netdrop_reason::ALL.iter().find(|(_, n)| *n == wanted) {
            return Ok(code);
        }
        Err(self.closest(wanted))
    }

    fn closest(&self, wanted: &str) -> Vec<String> {
        let mut scored: Vec<(usize, &str)> = self
            .by_code
            .values()
            .map(|n| {
                let d = edit_distance(wanted, n);
                // Prefer names that contain the input: `socket` -> NO_SOCKET, SOCKET_RCVBUFF.
                let d = if n.contains(wanted) { d.min(1) } else { d };
                (d, n.as_str())
            })
            .collect();
        scored.sort();
        let limit = (wanted.len() / 2).max(3);
        scored
            .into_iter()
            .filter(|(d, _)| *d <= limit)
            .take(5)
            .map(|(_, n)| n.to_owned())
            .collect()
    }
}

/// Levenshtein distance.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let subst = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = subst.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{
        kernel::{btf::builder::BtfBuilder, tracefs::Format},
        testdata,
    };

    fn btf_6_18_like() -> Btf {
        let mut b = BtfBuilder::new();
        b.enumeration(
            "skb_drop_reason",
            &[
                ("SKB_NOT_DROPPED_YET", 0),
                ("SKB_CONSUMED", 1),
                ("SKB_DROP_REASON_NOT_SPECIFIED", 2),
                ("SKB_DROP_REASON_NO_SOCKET", 3),
                ("SKB_DROP_REASON_SOCKET_RCVBUFF", 6),
                ("SKB_DROP_REASON_NETFILTER_DROP", 12),
                ("SKB_DROP_REASON_MAX", 128),
                ("SKB_DROP_REASON_SUBSYS_MASK", 0xffff0000),
            ],
        );
        b.enumeration(
            "skb_drop_reason_subsys",
            &[
                ("SKB_DROP_REASON_SUBSYS_CORE", 0),
                ("SKB_DROP_REASON_SUBSYS_MAC80211_UNUSABLE", 1),
                ("SKB_DROP_REASON_SUBSYS_OPENVSWITCH", 2),
                ("SKB_DROP_REASON_SUBSYS_NUM", 3),
            ],
        );
        Btf::parse(b.build(), None).unwrap()
    }

    #[test]
    fn core_reasons_from_btf() {
        let r = Reasons::from_btf([&btf_6_18_like()]).unwrap();
        assert_eq!(r.source, Source::Btf);
        assert_eq!(r.decode(3).name, "NO_SOCKET");
        assert_eq!(r.decode(1).name, "CONSUMED");
        assert_eq!(r.decode(3).subsystem, None);
        assert_eq!(r.decode(99).name, "UNKNOWN_99");
        assert!(r.iter().all(|(_, n)| n != "MAX" && n != "SUBSYS_MASK"));
        assert_eq!(r.lookup("no_socket"), Ok(3));
        assert_eq!(r.lookup("SKB_DROP_REASON_NO_SOCKET"), Ok(3));
        assert_eq!(r.lookup("3"), Ok(3));
    }

    #[test]
    fn subsystem_reasons_from_module_btf() {
        let base = Arc::new(btf_6_18_like());
        let mut m = BtfBuilder::split_on(&base);
        m.enumeration(
            "ovs_drop_reason",
            &[
                ("OVS_DROP_LAST_ACTION", 0x20001),
                ("OVS_DROP_ACTION_ERROR", 0x20002),
            ],
        );
        let module = Btf::parse(m.build(), Some(base.clone())).unwrap();
        let r = Reasons::from_btf([base.as_ref(), &module]).unwrap();
        let ovs = r.decode(0x20002);
        assert_eq!(ovs.name, "OVS_DROP_ACTION_ERROR");
        assert_eq!(ovs.subsystem.as_deref(), Some("OPENVSWITCH"));
        // A subsystem whose module is not loaded still decodes to something readable.
        let wifi = r.decode(0x10005);
        assert_eq!(wifi.name, "MAC80211_UNUSABLE_5");
        assert_eq!(wifi.subsystem.as_deref(), Some("MAC80211_UNUSABLE"));
    }

    #[test]
    fn reasons_from_format_files_differ_by_version() {
        let f61 = Format::parse(&testdata::read("tracefs/kfree_skb-6.1.format")).unwrap();
        let f618 = Format::parse(&testdata::read("tracefs/kfree_skb-6.18.format")).unwrap();
        let r61 = Reasons::from_symbolic(&f61.symbolic_values()).unwrap();
        let r618 = Reasons::from_symbolic(&f618.symbolic_values()).unwrap();
        assert_eq!(r61.lookup("NO_SOCKET"), Ok(2));
        assert_eq!(r618.lookup("NO_SOCKET"), Ok(3));
        assert_eq!(r618.decode(127).name, "RECURSION_LIMIT");
        assert!(r61.lookup("MAX").is_err());
    }

    #[test]
    fn netdrop_reasons_decode_and_look_up_on_every_kernel() {
        let f = Format::parse(&testdata::read("tracefs/kfree_skb-6.18.format")).unwrap();
        for r in [
            Reasons::from_symbolic(&f.symbolic_values()).unwrap(),
            Reasons::none(),
        ] {
            assert_eq!(
                r.lookup("listen_overflow"),
                Ok(netdrop_reason::LISTEN_OVERFLOW)
            );
            assert_eq!(
                r.decode(netdrop_reason::SYN_QUEUE_FULL).name,
                "SYN_QUEUE_FULL"
            );
        }
        // The kernel's own TCP_LISTEN_OVERFLOW (6.15+) stays the kernel's.
        let r = Reasons::from_symbolic(&f.symbolic_values()).unwrap();
        assert_ne!(
            r.lookup("TCP_LISTEN_OVERFLOW"),
            Ok(netdrop_reason::LISTEN_OVERFLOW)
        );
    }

    #[test]
    fn kernels_without_reasons_say_unknown() {
        let f = Format::parse(&testdata::read("tracefs/kfree_skb-5.10.format")).unwrap();
        assert!(Reasons::from_symbolic(&f.symbolic_values()).is_none());
        assert_eq!(Reasons::none().decode(0).name, "UNKNOWN");
    }

    #[test]
    fn unknown_names_suggest_close_ones() {
        let f = Format::parse(&testdata::read("tracefs/kfree_skb-6.18.format")).unwrap();
        let r = Reasons::from_symbolic(&f.symbolic_values()).unwrap();
        let near = r.lookup("NO_SOCKTE").unwrap_err();
        assert_eq!(near[0], "NO_SOCKET");
        let near = r.lookup("rcvbuf").unwrap_err();
        assert!(near.contains(&"SOCKET_RCVBUFF".to_owned()), "{near:?}");
        // Nothing is close to unrelated words: no suggestions rather than five random names.
        assert_eq!(r.lookup("qqqqqqqqqqqqzzzz"), Err(vec![]));
        // At most five, the closest first.
        let near = r.lookup("IP_").unwrap_err();
        assert!(!near.is_empty() && near.len() <= 5, "{near:?}");
        assert!(near.iter().all(|n| n.contains("IP")), "{near:?}");
    }
}
