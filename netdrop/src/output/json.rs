//! `--json`: one object per line, tagged by `type` (`drop`, `lost`, `counter`, `listener`,
//! `summary`).

use std::io::{self, Write};

use super::JsonLine;

/// Writes one line.
pub fn write_line(out: &mut impl Write, line: &JsonLine) -> io::Result<()> {
    serde_json::to_writer(&mut *out, line)?;
    out.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::{LostNotice, ReasonCount, Summary};

    #[test]
    fn lines_are_tagged_and_round_trip() {
        let lost = JsonLine::Lost(LostNotice {
            time: "t".into(),
            lost: 5,
            lost_total: 7,
            missed: 0,
            missed_total: 1,
        });
        let summary = JsonLine::Summary(Summary {
            duration_s: 1.5,
            hook: "h".into(),
            seen: 10,
            matched: 9,
            delivered: 2,
            lost: 7,
            suppressed: 0,
            rate_limit: 0,
            over_budget: 4,
            budget: 2000,
            missed: 1,
            stack_errors: 3,
            by_reason: vec![ReasonCount {
                name: "NO_SOCKET".into(),
                code: 3,
                subsystem: None,
                count: 9,
            }],
            counters: vec![],
            listeners: vec![],
        });
        let listener = JsonLine::Listener(crate::output::text::tests::listener());
        let budget = JsonLine::OverBudget(crate::output::text::tests::over_budget());
        for line in [lost, summary, listener.clone(), budget.clone()] {
            let mut buf = Vec::new();
            write_line(&mut buf, &line).unwrap();
            let text = String::from_utf8(buf).unwrap();
            assert!(text.ends_with('\n') && text.matches('\n').count() == 1);
            let back: JsonLine = serde_json::from_str(&text).unwrap();
            assert_eq!(back, line);
        }
        let mut buf = Vec::new();
        write_line(
            &mut buf,
            &JsonLine::Lost(LostNotice {
                time: "t".into(),
                lost: 1,
                lost_total: 1,
                missed: 0,
                missed_total: 0,
            }),
        )
        .unwrap();
        assert!(
            String::from_utf8(buf)
                .unwrap()
                .starts_with(r#"{"type":"lost","#)
        );
        let mut buf = Vec::new();
        write_line(&mut buf, &budget).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(v["type"], "over_budget");
        assert_eq!(v["reason"]["name"], "NO_SOCKET");
        assert_eq!(v["location"]["symbol"], "__udp4_lib_rcv");
        assert_eq!(
            (v["count"].as_u64(), v["cpu"].as_u64()),
            (Some(98000), Some(1))
        );
        assert_eq!(v["budget"], 2000);
        let mut buf = Vec::new();
        write_line(&mut buf, &listener).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(v["type"], "listener");
        assert_eq!(v["source"], "sock_diag");
        assert_eq!(
            (v["port"].as_u64(), v["queue"].as_u64()),
            (Some(8080), Some(2))
        );
        assert_eq!(v["netns"]["name"], "demo");
        assert_eq!(v["process"]["comm"], "python3");
    }
}

/// Writes `drop` lines without building a [`crate::event::DropRecord`] per event: the
/// reason, location, device, namespace and task name are serialised once and reused, the
/// rest is written in place. The bytes are the same as the serde path's (a test checks);
/// events that carry a stack or a netfilter hook take the serde path.
pub mod fast {
    use std::{
        collections::HashMap,
        net::Ipv6Addr,
        time::{Duration, Instant},
    };

    use netdrop_common::{DropEvent, flag};

    use crate::{
        event::{self, Device, Enricher, ReasonInfo},
        time::Clock,
    };

    /// A fast hasher for the caches' keys (kernel addresses, small ids, names from the
    /// kernel): a multiply-rotate mix, as in rustc's FxHasher. The caches are bounded, so a
    /// weak hash cannot make them grow.
    #[derive(Clone, Copy, Default)]
    pub struct FastHasher(u64);

    impl std::hash::Hasher for FastHasher {
        fn finish(&self) -> u64 {
            self.0
        }
        fn write(&mut self, bytes: &[u8]) {
            for chunk in bytes.chunks(8) {
                let mut word = [0u8; 8];
                word[..chunk.len()].copy_from_slice(chunk);
                self.write_u64(u64::from_le_bytes(word));
            }
        }
        fn write_u64(&mut self, v: u64) {
            self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
        fn write_u32(&mut self, v: u32) {
            self.write_u64(v.into());
        }
        fn write_u8(&mut self, v: u8) {
            self.write_u64(v.into());
        }
        fn write_usize(&mut self, v: usize) {
            self.write_u64(v as u64);
        }
    }

    type Map<K> = HashMap<K, Vec<u8>, std::hash::BuildHasherDefault<FastHasher>>;

    /// Cached fragments are rebuilt this often: namespace names and module symbols change.
    const REFRESH: Duration = Duration::from_secs(10);
    /// A cache larger than this is dropped rather than grown.
    const MAX_ENTRIES: usize = 1 << 16;

    /// Reusable pieces of JSON.
    pub struct DropWriter {
        reason: Map<u32>,
        location: Map<u64>,
        device: Map<(u32, [u8; 16])>,
        netns: Map<(u32, bool)>,
        comm: Map<[u8; 16]>,
        /// `,"containers":[..],"pod":{..}` per namespace (empty without containers).
        workload: Map<u32>,
        /// Unix second and `"YYYY-MM-DDTHH:MM:SS.` for it.
        second: Option<(i128, Vec<u8>)>,
        refreshed: Instant,
        netfilter_reason: Option<u32>,
    }

    impl DropWriter {
        /// `netfilter_reason` is this kernel's NETFILTER_DROP: those events take the serde
        /// path, which names the hook.
        pub fn new(netfilter_reason: Option<u32>) -> Self {
            Self {
                reason: Map::default(),
                location: Map::default(),
                device: Map::default(),
                netns: Map::default(),
                comm: Map::default(),
                workload: Map::default(),
                second: None,
                refreshed: Instant::now(),
                netfilter_reason,
            }
        }

        /// True when `ev` can be written here (no stack shown, no netfilter details, a
        /// reason the kernel gave rather than one inferred from the location).
        pub fn handles(&self, ev: &DropEvent, show_stack: bool) -> bool {
            !(show_stack && ev.flags & flag::HAS_STACK != 0)
                && Some(ev.reason) != self.netfilter_reason
                && ev.flags & flag::HAS_REASON != 0
                // netdrop's own reasons are marked inferred: the full writer does that.
                && !netdrop_common::netdrop_reason::is_netdrop(ev.reason)
                // The backlog's limit is read by the enricher.
                && ev.flags & flag::HAS_BACKLOG == 0
        }

        /// Forgets cached fragments older than [`REFRESH`]; call once per batch of events.
        pub fn expire(&mut self) {
            if self.refreshed.elapsed() >= REFRESH {
                *self = Self::new(self.netfilter_reason);
            }
        }

        /// Appends the `drop` line for `ev` (with its newline) to `out`.
        pub fn write(
            &mut self,
            out: &mut Vec<u8>,
            ev: &DropEvent,
            e: &mut Enricher,
            clock: &Clock,
        ) {
            let mut num = itoa::Buffer::new();
            out.extend_from_slice(b"{\"type\":\"drop\",\"time\":\"");
            self.time(out, clock, ev.timestamp_ns);
            out.extend_from_slice(b"\",\"mono_ns\":");
            out.extend_from_slice(num.format(ev.timestamp_ns).as_bytes());
            out.extend_from_slice(b",\"cpu\":");
            out.extend_from_slice(num.format(ev.cpu).as_bytes());
            out.extend_from_slice(b",\"reason\":");
            let reason = cached(&mut self.reason, ev.reason, || {
                to_json(&ReasonInfo::new(&e.reasons, ev.reason, None))
            });
            out.extend_from_slice(reason);
            out.extend_from_slice(b",\"location\":");
            out.extend_from_slice(cached(&mut self.location, ev.location, || {
                to_json(&e.location(ev.location))
            }));
            out.extend_from_slice(b",\"packet\":");
            packet(out, ev, &mut num);
            out.extend_from_slice(b",\"device\":");
            if ev.flags & flag::HAS_DEVICE != 0 {
                out.extend_from_slice(cached(&mut self.device, (ev.ifindex, ev.ifname), || {
                    to_json(&Device {
                        ifindex: ev.ifindex,
                        name: event::c_str(&ev.ifname),
                    })
                }));
            } else {
                out.extend_from_slice(b"null");
            }
            out.extend_from_slice(b",\"netns\":");
            if ev.flags & flag::HAS_NETNS != 0 {
                let from_socket = ev.flags & flag::NETNS_FROM_SOCKET != 0;
                out.extend_from_slice(cached(&mut self.netns, (ev.netns, from_socket), || {
                    to_json(&e.netns(ev.netns, if from_socket { "socket" } else { "device" }))
                }));
            } else {
                out.extend_from_slice(b"null");
            }
            out.extend_from_slice(b",\"running_task\":{\"pid\":");
            out.extend_from_slice(num.format(ev.pid).as_bytes());
            out.extend_from_slice(b",\"tid\":");
            out.extend_from_slice(num.format(ev.tid).as_bytes());
            out.extend_from_slice(b",\"comm\":");
            out.extend_from_slice(cached(&mut self.comm, ev.comm, || {
                to_json(&event::c_str(&ev.comm))
            }));
            out.extend_from_slice(b"},\"stack\":null,\"netfilter\":null,\"backlog\":null");
            if ev.flags & flag::HAS_NETNS != 0 {
                out.extend_from_slice(cached(&mut self.workload, ev.netns, || {
                    workload(e.workload(ev.netns))
                }));
            }
            out.extend_from_slice(b"}\n");
        }

        fn time(&mut self, out: &mut Vec<u8>, clock: &Clock, mono_ns: u64) {
            let ns = clock.unix_ns(mono_ns);
            let sec = ns.div_euclid(1_000_000_000);
            if self.second.as_ref().is_none_or(|(s, _)| *s != sec) {
                let full = clock.rfc3339(mono_ns);
                // Keep "YYYY-MM-DDTHH:MM:SS." and write the nanoseconds per event.
                let prefix = full.as_bytes()[..full.len() - 10].to_vec();
                self.second = Some((sec, prefix));
            }
            if let Some((_, prefix)) = &self.second {
                out.extend_from_slice(prefix);
            }
            let frac = ns.rem_euclid(1_000_000_000) as u32;
            let mut digits = [b'0'; 9];
            let mut f = frac;
            for d in digits.iter_mut().rev() {
                *d = b'0' + (f % 10) as u8;
                f /= 10;
            }
            out.extend_from_slice(&digits);
            out.push(b'Z');
        }
    }

    fn cached<K: std::hash::Hash + Eq + Copy>(
        map: &mut Map<K>,
        key: K,
        make: impl FnOnce() -> Vec<u8>,
    ) -> &[u8] {
        if map.len() >= MAX_ENTRIES && !map.contains_key(&key) {
            map.clear();
        }
        map.entry(key).or_insert_with(make)
    }

    /// The `containers` and `pod` members of a drop in a container's namespace, as serde
    /// writes them (`pod` left out without one).
    fn workload(w: Option<&crate::kernel::containers::Workload>) -> Vec<u8> {
        let Some(w) = w else { return Vec::new() };
        let mut out = b",\"containers\":".to_vec();
        out.extend_from_slice(&to_json(&w.containers));
        if let Some(p) = &w.pod {
            out.extend_from_slice(b",\"pod\":");
            out.extend_from_slice(&to_json(p));
        }
        out
    }

    fn to_json<T: serde::Serialize + ?Sized>(v: &T) -> Vec<u8> {
        serde_json::to_vec(v).expect("plain data serialises")
    }

    /// The `packet` object, in [`crate::event::Packet`]'s field order.
    fn packet(out: &mut Vec<u8>, ev: &DropEvent, num: &mut itoa::Buffer) {
        let has = |f: u32| ev.flags & f != 0;
        let (l3, l4) = (has(flag::HAS_L3), has(flag::HAS_L4));
        let ported = netdrop_common::proto::has_ports(ev.l4_proto);
        let icmp = netdrop_common::proto::is_icmp(ev.l4_proto);
        out.extend_from_slice(b"{\"length\":");
        out.extend_from_slice(num.format(ev.skb_len).as_bytes());
        out.extend_from_slice(b",\"family\":");
        // The common families without allocating; others are rare.
        match event::family_str(ev.l3_proto) {
            Some(f) => quoted(out, f),
            None => match event::family_name(ev.l3_proto) {
                Some(f) => quoted(out, &f),
                None => out.extend_from_slice(b"null"),
            },
        }
        out.extend_from_slice(b",\"protocol\":");
        match (l3, event::protocol_str(ev.l4_proto)) {
            (false, _) => out.extend_from_slice(b"null"),
            (true, Some(p)) => quoted(out, p),
            (true, None) => {
                out.push(b'"');
                out.extend_from_slice(num.format(ev.l4_proto).as_bytes());
                out.push(b'"');
            }
        }
        for (key, a) in [
            (&b",\"src\":"[..], &ev.saddr),
            (&b",\"dst\":"[..], &ev.daddr),
        ] {
            out.extend_from_slice(key);
            if !l3 {
                out.extend_from_slice(b"null");
            } else if ev.l3_proto == netdrop_common::proto::ETH_P_IP {
                out.push(b'"');
                for (i, octet) in a[..4].iter().enumerate() {
                    if i > 0 {
                        out.push(b'.');
                    }
                    out.extend_from_slice(num.format(*octet).as_bytes());
                }
                out.push(b'"');
            } else {
                use std::io::Write;
                let _ = write!(out, "\"{}\"", Ipv6Addr::from(*a));
            }
        }
        let opt = |out: &mut Vec<u8>, key: &[u8], v: Option<u64>, num: &mut itoa::Buffer| {
            out.extend_from_slice(key);
            match v {
                Some(v) => out.extend_from_slice(num.format(v).as_bytes()),
                None => out.extend_from_slice(b"null"),
            }
        };
        opt(
            out,
            b",\"sport\":",
            (l4 && ported).then_some(ev.sport.into()),
            num,
        );
        opt(
            out,
            b",\"dport\":",
            (l4 && ported).then_some(ev.dport.into()),
            num,
        );
        out.extend_from_slice(b",\"tcp_flags\":");
        if l4 && ev.l4_proto == 6 {
            out.push(b'[');
            for (i, f) in event::tcp_flag_names(ev.tcp_flags).enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                quoted(out, f);
            }
            out.push(b']');
        } else {
            out.extend_from_slice(b"null");
        }
        opt(
            out,
            b",\"icmp_type\":",
            (l4 && icmp).then_some(ev.icmp_type.into()),
            num,
        );
        opt(
            out,
            b",\"icmp_code\":",
            (l4 && icmp).then_some(ev.icmp_code.into()),
            num,
        );
        out.extend_from_slice(if has(flag::FRAGMENT) {
            b",\"fragment\":true}"
        } else {
            b",\"fragment\":false}"
        });
    }

    /// A string known to need no escaping (names, numbers, addresses).
    fn quoted(out: &mut Vec<u8>, s: &str) {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    }
}

#[cfg(test)]
mod fast_tests {
    use std::net::Ipv6Addr;

    use netdrop_common::{DropEvent, flag};

    use super::{JsonLine, fast::DropWriter, write_line};
    use crate::{
        event::Enricher,
        kernel::{reasons::Reasons, tracefs::Format},
        testdata,
        time::Clock,
    };

    fn events() -> Vec<DropEvent> {
        let base = crate::testdata::udp_event();
        let mut v4 = base;
        v4.netns = 7;
        v4.saddr[..4].copy_from_slice(&[10, 0, 0, 1]);
        v4.daddr[..4].copy_from_slice(&[192, 168, 1, 200]);
        v4.comm[..6].copy_from_slice(b"nc\"q\x01x");
        v4.ifname[..4].copy_from_slice(b"eth0");
        let mut tcp6 = v4;
        tcp6.l3_proto = 0x86dd;
        tcp6.l4_proto = 6;
        tcp6.tcp_flags = 0x12;
        tcp6.saddr = Ipv6Addr::LOCALHOST.octets();
        tcp6.daddr = "fd00::1:2".parse::<Ipv6Addr>().unwrap().octets();
        tcp6.flags |= flag::NETNS_FROM_SOCKET;
        let mut icmp = v4;
        icmp.l4_proto = 1;
        icmp.icmp_type = 3;
        icmp.icmp_code = 3;
        let mut bare = base;
        bare.flags = flag::HAS_REASON;
        bare.l3_proto = 0;
        bare.location = 0x1234;
        bare.reason = 9999;
        let mut frag = v4;
        frag.flags = flag::HAS_REASON | flag::HAS_L3 | flag::FRAGMENT;
        frag.l3_proto = 0x0806;
        frag.timestamp_ns = 999_999_999_999;
        vec![v4, tcp6, icmp, bare, frag]
    }

    #[test]
    fn fast_path_writes_exactly_what_serde_writes() {
        let f = Format::parse(&testdata::read("tracefs/kfree_skb-6.18.format")).unwrap();
        let reasons = Reasons::from_symbolic(&f.symbolic_values()).unwrap();
        let mut e = Enricher::new(
            reasons,
            &testdata::path("kallsyms/6.1-with-veth"),
            &testdata::path(""),
        );
        let clock = Clock::with_offset(1_795_320_753_000_000_000);
        let mut w = DropWriter::new(Some(11));
        for ev in events() {
            assert!(w.handles(&ev, false));
            let mut fast = Vec::new();
            // Twice: the second time from the caches.
            for _ in 0..2 {
                fast.clear();
                w.write(&mut fast, &ev, &mut e, &clock);
                let mut slow = Vec::new();
                let mut r = e.record(&ev, None, false, false);
                r.time = clock.rfc3339(ev.timestamp_ns);
                write_line(&mut slow, &JsonLine::Drop(r)).unwrap();
                assert_eq!(
                    String::from_utf8_lossy(&fast),
                    String::from_utf8_lossy(&slow)
                );
            }
        }
        let mut nf = events()[0];
        nf.reason = 11;
        assert!(
            !w.handles(&nf, false),
            "NETFILTER_DROP takes the serde path"
        );
        let mut st = events()[0];
        st.flags |= flag::HAS_STACK;
        assert!(!w.handles(&st, true) && w.handles(&st, false));
        let mut old = events()[0];
        old.flags &= !flag::HAS_REASON;
        assert!(
            !w.handles(&old, false),
            "no reason from the kernel: inferred on the serde path"
        );
    }
}

#[cfg(test)]
mod workload_tests {
    use super::{JsonLine, fast::DropWriter, write_line};
    use crate::{
        event::Enricher,
        kernel::{containers::testing, reasons::Reasons, tracefs::Format},
        testdata,
        time::Clock,
    };

    #[test]
    fn drops_in_a_pod_carry_its_containers_the_same_on_both_paths() {
        let f = Format::parse(&testdata::read("tracefs/kfree_skb-6.18.format")).unwrap();
        let reasons = Reasons::from_symbolic(&f.symbolic_values()).unwrap();
        let root = testing::fake_root("json");
        let mut e = Enricher::new(reasons, &testdata::path("kallsyms/6.1-with-veth"), &root);
        let clock = Clock::with_offset(1_795_320_753_000_000_000);
        let mut w = DropWriter::new(Some(11));
        for (netns, pod) in [(200, Some("web-0")), (300, None), (100, None)] {
            let mut ev = testdata::udp_event();
            ev.netns = netns;
            let mut fast = Vec::new();
            w.write(&mut fast, &ev, &mut e, &clock);
            let mut slow = Vec::new();
            let mut r = e.record(&ev, None, false, false);
            r.time = clock.rfc3339(ev.timestamp_ns);
            write_line(&mut slow, &JsonLine::Drop(r)).unwrap();
            assert_eq!(
                String::from_utf8_lossy(&fast),
                String::from_utf8_lossy(&slow)
            );
            let v: serde_json::Value = serde_json::from_slice(&fast).unwrap();
            assert_eq!(v["pod"]["name"].as_str(), pod, "{v}");
            match netns {
                200 => {
                    assert_eq!(v["pod"]["namespace"], "shop");
                    assert_eq!(v["pod"]["uid"], testing::UID);
                    assert_eq!(v["containers"][0]["id"], testing::ID);
                    assert_eq!(v["containers"][0]["name"], "app");
                    assert_eq!(v["containers"][0]["runtime"], "containerd");
                    assert_eq!(v["containers"].as_array().map(Vec::len), Some(2));
                }
                300 => assert_eq!(v["containers"][0]["name"], "redis\u{1b}[2J"),
                _ => assert!(v.get("containers").is_none() && v.get("pod").is_none()),
            }
        }
        std::fs::remove_dir_all(&root).unwrap();
    }
}
