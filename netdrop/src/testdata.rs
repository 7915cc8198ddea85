//! Access to the fixtures under `testdata/` at the workspace root.

use std::path::PathBuf;

/// Path of fixture `rel`.
pub fn path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata")
        .join(rel)
}

/// Contents of fixture `rel`.
pub fn read(rel: &str) -> String {
    let p = path(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("fixture {}: {e}", p.display()))
}

/// A UDP NO_SOCKET drop from 127.0.0.1:41234 to 127.0.0.1:9 on lo, as the kernel side
/// writes it (reason 3 as on 6.18; location inside `__udp4_lib_rcv` of the kallsyms fixture).
pub fn udp_event() -> netdrop_common::DropEvent {
    use netdrop_common::{DropEvent, flag};
    let mut ev = DropEvent {
        timestamp_ns: 1_000,
        location: 0xffffffffaa48bc60 + 0x2d1,
        reason: 3,
        cpu: 1,
        pid: 42,
        tid: 43,
        netns: 4026531840,
        ifindex: 1,
        skb_len: 33,
        stack_id: -1,
        flags: flag::HAS_REASON | flag::HAS_DEVICE | flag::HAS_NETNS | flag::HAS_L3 | flag::HAS_L4,
        l3_proto: 0x0800,
        l4_proto: 17,
        sport: 41234,
        dport: 9,
        ..Default::default()
    };
    ev.saddr[..4].copy_from_slice(&[127, 0, 0, 1]);
    ev.daddr[..4].copy_from_slice(&[127, 0, 0, 1]);
    ev.comm[..2].copy_from_slice(b"nc");
    ev.ifname[..2].copy_from_slice(b"lo");
    ev
}

/// A decoded TCP SYN to a closed port on ::1, with a two-frame stack.
pub fn drop_record() -> crate::event::DropRecord {
    use crate::event::{Device, DropRecord, Location, Netns, Packet, ReasonInfo, Task};
    DropRecord {
        time: String::new(),
        mono_ns: 0,
        cpu: 1,
        reason: ReasonInfo {
            name: "NO_SOCKET".into(),
            code: 3,
            subsystem: None,
            inferred: false,
            alternatives: None,
        },
        location: Location {
            address: "0xffffffff82048f11".into(),
            symbol: Some("__udp4_lib_rcv".into()),
            offset: Some(0x2d1),
            module: None,
        },
        packet: Packet {
            length: 33,
            family: Some("ipv6".into()),
            protocol: Some("tcp".into()),
            src: Some("::1".into()),
            dst: Some("::1".into()),
            sport: Some(40000),
            dport: Some(9),
            tcp_flags: Some(vec!["SYN".into()]),
            ..Default::default()
        },
        device: Some(Device {
            ifindex: 1,
            name: "lo".into(),
        }),
        netns: Some(Netns {
            inode: 4026531840,
            name: Some("init".into()),
            source: "device".into(),
        }),
        running_task: Task {
            pid: 7,
            tid: 7,
            comm: "nc".into(),
        },
        stack: Some(vec!["a+0x1".into(), "b+0x2".into()]),
        netfilter: None,
        backlog: None,
        containers: None,
        pod: None,
    }
}
