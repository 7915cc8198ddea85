//! Names the sockets that drop: the kernel keeps a per-socket drop count (`sk_drops`, what
//! `ss -tm` and `ss -um` show as `d`), cumulative since the socket was created. Two
//! sock_diag dumps of a namespace, one interval apart, tell which sockets dropped in
//! between and how much. Pure: dumps in, growth out.
//!
//! A socket seen for the first time (created during the interval, or in a namespace seen
//! for the first time) has no previous value, and sock_diag does not say when it was
//! created: its count so far may be old. Its baseline is taken at first sighting, so
//! only later growth is reported; drops a socket made in the interval it was created in
//! are not reported, nothing is ever over-reported.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::IpAddr,
};

use crate::kernel::sockdiag::{DiagSocket, Protocol};

/// At most this many sockets are named per poll, the most growth first.
pub const MAX_NAMED: usize = 16;

/// A socket as a baseline knows it. The inode alone is not enough: sockets without a
/// file (orphaned TCP sockets) all have inode 0.
type Key = (Protocol, u32, IpAddr, u16, IpAddr, u16);

fn key(s: &DiagSocket) -> Key {
    (
        s.protocol,
        s.inode,
        s.local,
        s.local_port,
        s.remote,
        s.remote_port,
    )
}

/// A socket whose `sk_drops` grew between two dumps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grown {
    pub netns: u32,
    pub socket: DiagSocket,
    /// Growth of `sk_drops` since the previous dump.
    pub growth: u64,
    /// `sk_drops` now: drops since the socket was created.
    pub total: u64,
}

/// The sockets of `now` whose `sk_drops` grew since `prev` (the same namespace's
/// previous dump), most growth first. Sockets not in `prev` start their baseline now;
/// a count that went down (the socket was replaced by one with the same key, or the
/// counter wrapped) starts it again.
pub fn grown(netns: u32, prev: &[DiagSocket], now: &[DiagSocket]) -> Vec<Grown> {
    let before: HashMap<Key, u32> = prev
        .iter()
        .filter_map(|s| Some((key(s), s.drops?)))
        .collect();
    let mut out: Vec<Grown> = now
        .iter()
        .filter_map(|s| {
            let d = s.drops?;
            let was = *before.get(&key(s))?;
            (d > was).then(|| Grown {
                netns,
                socket: s.clone(),
                growth: u64::from(d - was),
                total: u64::from(d),
            })
        })
        .collect();
    sort(&mut out);
    out
}

/// Most growth first, then the most drops since creation, then by namespace and port.
fn sort(v: &mut [Grown]) {
    v.sort_by(|a, b| {
        b.growth
            .cmp(&a.growth)
            .then(b.total.cmp(&a.total))
            .then(a.netns.cmp(&b.netns))
            .then(a.socket.local_port.cmp(&b.socket.local_port))
            .then(a.socket.inode.cmp(&b.socket.inode))
    });
}

/// The previous dump of each namespace, reduced to what [`grown`] compares: the sockets
/// that have a drop count.
#[derive(Clone, Debug, Default)]
pub struct SocketDrops {
    last: BTreeMap<u32, Vec<DiagSocket>>,
}

impl SocketDrops {
    /// Compares each namespace's dump with its previous one and keeps it as the next
    /// baseline; returns the sockets that grew in all of them, the most growth first, at
    /// most `top`. Namespaces not in `dumps` (gone, or not readable this time) are
    /// forgotten, so one that comes back starts a new baseline.
    pub fn update(&mut self, dumps: BTreeMap<u32, Vec<DiagSocket>>, top: usize) -> Vec<Grown> {
        let mut out = Vec::new();
        let alive: BTreeSet<u32> = dumps.keys().copied().collect();
        self.last.retain(|ns, _| alive.contains(ns));
        for (ns, mut now) in dumps {
            now.retain(|s| s.drops.is_some());
            if let Some(prev) = self.last.get(&ns) {
                out.extend(grown(ns, prev, &now));
            }
            self.last.insert(ns, now);
        }
        sort(&mut out);
        out.truncate(top);
        out
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    pub(crate) fn udp(port: u16, inode: u32, drops: u32) -> DiagSocket {
        DiagSocket {
            protocol: Protocol::Udp,
            family: libc::AF_INET as u8,
            state: 7,
            local: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
            local_port: port,
            remote: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            remote_port: 0,
            rqueue: 2304,
            wqueue: 0,
            uid: 0,
            inode,
            drops: Some(drops),
        }
    }

    #[test]
    fn growth_between_two_dumps() {
        let prev = [udp(5353, 10, 3), udp(53, 11, 0), udp(123, 12, 9)];
        let now = [
            udp(5353, 10, 43),
            udp(53, 11, 0),
            udp(123, 12, 10),
            // Appeared since: its 500 drops may be older than the interval.
            udp(9999, 13, 500),
        ];
        let g = grown(7, &prev, &now);
        let seen: Vec<_> = g
            .iter()
            .map(|g| (g.socket.local_port, g.growth, g.total))
            .collect();
        assert_eq!(seen, [(5353, 40, 43), (123, 1, 10)]);
        assert!(g.iter().all(|g| g.netns == 7));
    }

    #[test]
    fn a_replaced_socket_starts_again() {
        // Same key, fewer drops: a new socket (or a wrap), not negative growth.
        assert!(grown(7, &[udp(53, 11, 90)], &[udp(53, 11, 2)]).is_empty());
        // Same port, new inode: a new socket, baseline at first sighting.
        assert!(grown(7, &[udp(53, 11, 0)], &[udp(53, 12, 8)]).is_empty());
        // TCP and UDP sockets with the same numbers are different sockets.
        let tcp = DiagSocket {
            protocol: Protocol::Tcp,
            ..udp(53, 11, 0)
        };
        assert!(grown(7, &[tcp], &[udp(53, 11, 8)]).is_empty());
        // No memory info: nothing to compare.
        let blind = DiagSocket {
            drops: None,
            ..udp(53, 11, 8)
        };
        assert!(grown(7, &[udp(53, 11, 0)], &[blind]).is_empty());
    }

    #[test]
    fn baselines_per_namespace_and_the_top_n() {
        let mut d = SocketDrops::default();
        let dumps = |a: u32, b: u32| {
            BTreeMap::from([
                (7, vec![udp(5353, 10, a)]),
                (8, (1..=40).map(|p| udp(p, 100 + u32::from(p), b)).collect()),
            ])
        };
        // The first dump of a namespace is its baseline: nothing is reported.
        assert!(d.update(dumps(5, 5), MAX_NAMED).is_empty());
        let g = d.update(dumps(105, 6), MAX_NAMED);
        assert_eq!(g.len(), MAX_NAMED);
        assert_eq!(
            (g[0].netns, g[0].socket.local_port, g[0].growth),
            (7, 5353, 100)
        );
        assert!(g[1..].iter().all(|g| g.netns == 8 && g.growth == 1));
        // A namespace missing from a poll is forgotten; when it returns, it starts again.
        assert!(
            d.update(BTreeMap::from([(8, vec![])]), MAX_NAMED)
                .is_empty()
        );
        assert!(d.update(dumps(900, 6), MAX_NAMED).is_empty());
        let g = d.update(dumps(901, 6), 1);
        assert_eq!(
            g.iter().map(|g| (g.growth, g.total)).collect::<Vec<_>>(),
            [(1, 901)]
        );
    }
}
