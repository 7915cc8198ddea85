//! The sockets that drop, as `stats`, `top` and `diagnose` poll them: once per report
//! interval (each second in `diagnose`), one sock_diag dump of TCP and UDP sockets per
//! namespace, compared with the previous one (`aggregate::sockets`). Never on a hot path.

use std::{
    collections::BTreeMap,
    path::Path,
    sync::atomic::{AtomicBool, Ordering},
};

use crate::{
    aggregate::sockets::{self, SocketDrops},
    event::Enricher,
    filter::FilterSpec,
    kernel::{
        counters::{NetnsHandle, all_netns},
        owners, sockdiag,
    },
    output::SocketNotice,
};

/// Namespaces are rediscovered every this many polls (containers come and go).
const REDISCOVER_EVERY: u32 = 10;
/// At most this many namespaces are dumped per poll (each dump is itself capped at
/// `sockdiag::MAX_SOCKETS`), so a host with thousands of containers costs bounded time.
pub const MAX_NETNS: usize = 256;

/// A failed dump has been reported (once per run is enough).
static WARNED: AtomicBool = AtomicBool::new(false);

/// Polls the `sk_drops` of every socket of one namespace (`--netns`) or of every one.
pub struct SocketWatch {
    only: Option<u32>,
    targets: Vec<NetnsHandle>,
    drops: SocketDrops,
    polls: u32,
}

impl SocketWatch {
    /// Takes the baseline: only growth from now on is reported.
    pub fn new(only: Option<u32>) -> Self {
        let mut w = Self {
            only,
            targets: Vec::new(),
            drops: SocketDrops::default(),
            polls: 0,
        };
        w.discover();
        let dumps = w.dump();
        w.drops.update(dumps, 0);
        w
    }

    fn discover(&mut self) {
        let mut all = all_netns(Path::new("/proc"));
        if let Some(inode) = self.only {
            all.retain(|t| t.inode == inode);
        }
        if all.len() > MAX_NETNS {
            tracing::debug!(
                "{} network namespaces: the sockets of the first {MAX_NETNS} are read",
                all.len()
            );
            all.truncate(MAX_NETNS);
        }
        self.targets = all;
    }

    /// One dump per namespace; namespaces that cannot be entered or dumped are skipped.
    fn dump(&self) -> BTreeMap<u32, Vec<sockdiag::DiagSocket>> {
        let mut out = BTreeMap::new();
        for t in &self.targets {
            match sockdiag::dropping(&t.path) {
                Ok(d) => {
                    if d.truncated {
                        tracing::debug!(
                            "netns {}: more than {} sockets, the rest not read",
                            t.inode,
                            sockdiag::MAX_SOCKETS
                        );
                    }
                    out.insert(t.inode, d.sockets);
                }
                Err(e) => {
                    if !WARNED.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            "cannot list sockets through sock_diag ({e}), so sockets that drop \
                             are not named; if the kernel has it as modules, load them: \
                             modprobe inet_diag tcp_diag udp_diag"
                        );
                    }
                    tracing::debug!("cannot list the sockets of netns {}: {e}", t.inode);
                }
            }
        }
        out
    }

    /// The sockets whose `sk_drops` grew since the last poll and that the filters keep,
    /// the most growth first, at most [`sockets::MAX_NAMED`], with their owners.
    pub fn poll(&mut self, spec: &FilterSpec, enricher: &mut Enricher) -> Vec<SocketNotice> {
        self.polls += 1;
        if self.polls.is_multiple_of(REDISCOVER_EVERY) {
            self.discover();
        }
        let mut dumps = self.dump();
        for sockets in dumps.values_mut() {
            sockets.retain(|s| {
                spec.keeps_socket(
                    s.protocol == sockdiag::Protocol::Tcp,
                    s.local_port,
                    s.remote_port,
                    s.local.is_ipv6(),
                )
            });
        }
        let grown = self.drops.update(dumps, sockets::MAX_NAMED);
        let inodes: Vec<u32> = grown
            .iter()
            .map(|g| g.socket.inode)
            .filter(|&i| i != 0)
            .collect();
        let owners = owners::owners(Path::new("/proc"), &inodes);
        grown
            .iter()
            .map(|g| {
                let owner = (g.socket.inode != 0)
                    .then(|| owners.get(&g.socket.inode).cloned())
                    .flatten();
                SocketNotice::new(g, enricher.netns(g.netns, "procfs"), owner)
            })
            .collect()
    }
}
