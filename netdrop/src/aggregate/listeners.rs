//! Names the listeners behind the accept-queue counters. A SYN that meets a full accept
//! queue is freed without `kfree_skb` (Linux 6.1 to 6.18), so no event names its socket;
//! only `TcpExt.ListenOverflows` and friends grow, per namespace. When they grow, the
//! namespace's listeners whose accept queue is full (as sock_diag shows it right after)
//! are the ones to blame. This is an inference from counters and queue state, not a
//! per-packet observation, and the outputs say so.

use std::collections::BTreeMap;

use crate::{
    kernel::{counters::Change, sockdiag::DiagSocket},
    output::ListenerNotice,
};

/// The counters that grow when a listener drops connection attempts.
pub const OVERFLOWS: &str = "TcpExt.ListenOverflows";
pub const LISTEN_DROPS: &str = "TcpExt.ListenDrops";
pub const REQQ_FULL_DROPS: &str = "TcpExt.TCPReqQFullDrop";

/// At most this many listeners are named per namespace and poll (the fullest first);
/// [`Named::shared_by`] still counts them all.
pub const MAX_NAMED: usize = 16;

/// Growth of the listener counters of one namespace in one poll.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Growth {
    /// `TcpExt.ListenOverflows`: accept queue full.
    pub overflows: u64,
    /// `TcpExt.ListenDrops`: every drop at a listener (includes the overflows).
    pub listen_drops: u64,
    /// `TcpExt.TCPReqQFullDrop`: SYN queue full without syncookies.
    pub reqq_full_drops: u64,
}

/// Listener counter growth per namespace inode; namespaces where none grew are absent.
pub fn growth_by_netns(changes: &[Change]) -> BTreeMap<u32, Growth> {
    let mut out = BTreeMap::<u32, Growth>::new();
    for c in changes {
        let Some(ns) = c.netns else { continue };
        if ![OVERFLOWS, LISTEN_DROPS, REQQ_FULL_DROPS].contains(&c.name.as_str()) {
            continue;
        }
        let g = out.entry(ns).or_default();
        match c.name.as_str() {
            OVERFLOWS => g.overflows += c.delta,
            LISTEN_DROPS => g.listen_drops += c.delta,
            _ => g.reqq_full_drops += c.delta,
        }
    }
    out
}

/// How full a named listener's accept queue was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fill {
    /// At or over its limit: full, or one connection from it (the kernel drops while the
    /// queue is longer than the limit, so a full backlog-1 queue shows `2/1`).
    Full,
    /// Not full, but not empty while the counters grew (no listener was full).
    Filling,
}

impl Fill {
    pub fn name(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Filling => "filling",
        }
    }
}

/// A listener blamed for a namespace's counter growth.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Named {
    pub netns: u32,
    pub socket: DiagSocket,
    pub fill: Fill,
    /// The namespace's growth in the poll: the listener's own when `shared_by` is 1,
    /// otherwise shared by `shared_by` listeners in a split nobody observed.
    pub growth: Growth,
    pub shared_by: usize,
}

/// The listeners of one namespace to blame: those whose accept queue is full, or, when
/// none is, those whose queue is not empty. Fullest first, at most [`MAX_NAMED`].
pub fn attribute(netns: u32, growth: Growth, sockets: &[DiagSocket]) -> Vec<Named> {
    let listeners = sockets.iter().filter(|s| s.is_listener() && s.rqueue > 0);
    let full: Vec<&DiagSocket> = listeners.clone().filter(|s| s.rqueue >= s.wqueue).collect();
    let (fill, mut blamed) = if full.is_empty() {
        (Fill::Filling, listeners.collect::<Vec<_>>())
    } else {
        (Fill::Full, full)
    };
    let shared_by = blamed.len();
    // Fullest relative to its limit first: rqueue/wqueue compared without division.
    blamed.sort_by(|a, b| {
        (u64::from(b.rqueue) * u64::from(a.wqueue.max(1)))
            .cmp(&(u64::from(a.rqueue) * u64::from(b.wqueue.max(1))))
            .then(a.local_port.cmp(&b.local_port))
    });
    blamed
        .into_iter()
        .take(MAX_NAMED)
        .map(|s| Named {
            netns,
            socket: s.clone(),
            fill,
            growth,
            shared_by,
        })
        .collect()
}

/// The listeners behind the listener counters that grew in `changes`; `dump` lists a
/// namespace's sockets (sock_diag), `None` when it cannot be read.
pub fn name(
    changes: &[Change],
    mut dump: impl FnMut(u32) -> Option<Vec<DiagSocket>>,
) -> Vec<Named> {
    let mut out = Vec::new();
    for (netns, growth) in growth_by_netns(changes) {
        if let Some(sockets) = dump(netns) {
            out.extend(attribute(netns, growth, &sockets));
        }
    }
    out
}

/// At most this many distinct listeners are counted over a run; records of further ones
/// are still written, but their growth goes to [`ListenerTotals::untracked`].
pub const MAX_TRACKED: usize = 4096;

/// A listener as metrics label it: namespace inode, address, port.
pub type ListenerKey = (u32, String, u16);

/// `TcpExt.ListenOverflows` growth per named listener over a run: for each poll in which
/// a listener was named, its namespace's whole growth (a growth shared by several full
/// listeners counts for each of them; nobody observed the split).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListenerTotals {
    totals: BTreeMap<ListenerKey, u64>,
    /// Growth of listeners beyond [`MAX_TRACKED`].
    pub untracked: u64,
}

impl ListenerTotals {
    /// Adds the growth of the listeners named in one poll.
    pub fn add(&mut self, named: &[ListenerNotice]) {
        for n in named {
            let key = (n.netns.inode, n.addr.clone(), n.port);
            if let Some(v) = self.totals.get_mut(&key) {
                *v += n.overflows;
            } else if self.totals.len() < MAX_TRACKED {
                self.totals.insert(key, n.overflows);
            } else {
                self.untracked += n.overflows;
            }
        }
    }

    /// The `n` listeners with the most growth, most first.
    pub fn busiest(&self, n: usize) -> Vec<(&ListenerKey, u64)> {
        let mut v: Vec<_> = self.totals.iter().map(|(k, &v)| (k, v)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        v.truncate(n);
        v
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;

    pub(crate) fn listener(port: u16, rqueue: u32, wqueue: u32) -> DiagSocket {
        DiagSocket {
            protocol: crate::kernel::sockdiag::Protocol::Tcp,
            family: libc::AF_INET as u8,
            state: 10,
            local: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
            local_port: port,
            remote: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            remote_port: 0,
            rqueue,
            wqueue,
            uid: 0,
            inode: 1000 + u32::from(port),
            drops: None,
        }
    }

    fn change(netns: Option<u32>, name: &str, delta: u64) -> Change {
        Change {
            netns,
            name: name.into(),
            delta,
            total: delta,
        }
    }

    /// A poll as the 6.18 machine recorded it: 152 SYNs to a full backlog-1 listener.
    fn poll() -> Vec<Change> {
        vec![
            change(Some(7), LISTEN_DROPS, 152),
            change(Some(7), OVERFLOWS, 152),
            change(Some(9), "nf_conntrack.drop", 3),
            change(None, "softnet.dropped", 1),
        ]
    }

    #[test]
    fn growth_is_collected_per_namespace() {
        let g = growth_by_netns(&poll());
        assert_eq!(g.len(), 1);
        assert_eq!(
            g[&7],
            Growth {
                overflows: 152,
                listen_drops: 152,
                reqq_full_drops: 0
            }
        );
    }

    #[test]
    fn the_one_full_listener_gets_the_growth() {
        let mut asked = Vec::new();
        let named = name(&poll(), |ns| {
            asked.push(ns);
            Some(vec![
                listener(8080, 2, 1),
                listener(22, 0, 128),
                listener(443, 3, 4096),
                // Not a listener: an established socket with unread data.
                DiagSocket {
                    state: 1,
                    ..listener(5000, 10, 0)
                },
            ])
        });
        assert_eq!(asked, [7]);
        assert_eq!(named.len(), 1);
        let n = &named[0];
        assert_eq!(
            (n.netns, n.socket.local_port, n.fill),
            (7, 8080, Fill::Full)
        );
        assert_eq!((n.growth.overflows, n.shared_by), (152, 1));
    }

    #[test]
    fn several_full_listeners_share_the_growth() {
        let named = name(&poll(), |_| {
            Some(vec![
                listener(9000, 5, 5),
                listener(8080, 2, 1),
                listener(22, 0, 0),
            ])
        });
        let ports: Vec<u16> = named.iter().map(|n| n.socket.local_port).collect();
        assert_eq!(ports, [8080, 9000]);
        assert!(
            named
                .iter()
                .all(|n| n.shared_by == 2 && n.growth.overflows == 152)
        );
    }

    #[test]
    fn without_a_full_listener_the_busy_ones_are_named() {
        let named = attribute(
            7,
            Growth::default(),
            &[listener(1, 1, 10), listener(2, 0, 10)],
        );
        assert_eq!(named.len(), 1);
        assert_eq!(
            (named[0].socket.local_port, named[0].fill),
            (1, Fill::Filling)
        );
        // Queues already drained: nobody to name, and an unreadable namespace names nobody.
        assert!(attribute(7, Growth::default(), &[listener(1, 0, 10)]).is_empty());
        assert!(name(&poll(), |_| None).is_empty());
    }

    #[test]
    fn totals_add_up_per_listener_and_stay_bounded() {
        let notice = |port: u16, overflows: u64| {
            let mut n = crate::output::text::tests::listener();
            n.port = port;
            n.overflows = overflows;
            n
        };
        let mut t = ListenerTotals::default();
        t.add(&[notice(8080, 152), notice(9000, 3)]);
        t.add(&[notice(8080, 10)]);
        let busiest = t.busiest(1);
        assert_eq!(busiest.len(), 1);
        assert_eq!(busiest[0], (&(7, "10.0.0.2".to_owned(), 8080), 162));
        assert_eq!(t.busiest(10).len(), 2);
        let many: Vec<ListenerNotice> = (0..MAX_TRACKED as u16 + 5).map(|p| notice(p, 1)).collect();
        let mut t = ListenerTotals::default();
        t.add(&many);
        assert_eq!((t.busiest(usize::MAX).len(), t.untracked), (MAX_TRACKED, 5));
    }

    #[test]
    fn at_most_max_named() {
        let many: Vec<DiagSocket> = (1..=40).map(|p| listener(p, 2, 1)).collect();
        let named = attribute(7, Growth::default(), &many);
        assert_eq!(named.len(), MAX_NAMED);
        assert!(named.iter().all(|n| n.shared_by == 40));
    }
}
