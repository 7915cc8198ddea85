//! Which process holds a socket: `/proc/PID/fd/N` links read `socket:[INODE]`. Used for
//! the few sockets netdrop names (overflowing listeners), never for every socket.

use std::{collections::BTreeMap, path::Path};

use serde::{Deserialize, Serialize};

/// At most this many fd links are read per lookup, so a host with huge fd tables costs
/// bounded time; sockets not found by then have no owner.
pub const MAX_FDS: usize = 1 << 18;

/// A process holding a socket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub pid: u32,
    /// `/proc/PID/comm`, with control characters escaped.
    pub comm: String,
}

impl Owner {
    /// `comm[pid]`, as the outputs name a process.
    pub fn label(&self) -> String {
        format!("{}[{}]", self.comm, self.pid)
    }
}

/// The owner of each socket inode in `inodes` that a process under `proc_root` holds
/// (the lowest pid when several share it). Processes that exit or deny access while
/// being read are skipped.
pub fn owners(proc_root: &Path, inodes: &[u32]) -> BTreeMap<u32, Owner> {
    let mut found = BTreeMap::new();
    if inodes.is_empty() {
        return found;
    }
    let Ok(dir) = std::fs::read_dir(proc_root) else {
        return found;
    };
    let mut pids: Vec<u32> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    let mut budget = MAX_FDS;
    for pid in pids {
        let pid_dir = proc_root.join(pid.to_string());
        let Ok(fds) = std::fs::read_dir(pid_dir.join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if budget == 0 {
                return found;
            }
            budget -= 1;
            let Some(inode) = std::fs::read_link(fd.path())
                .ok()
                .and_then(|l| socket_inode(l.to_str()?))
            else {
                continue;
            };
            if inodes.contains(&inode) && !found.contains_key(&inode) {
                let comm = std::fs::read_to_string(pid_dir.join("comm")).unwrap_or_default();
                found.insert(
                    inode,
                    Owner {
                        pid,
                        comm: printable(comm.trim_end_matches('\n')),
                    },
                );
                if found.len() == inodes.len() {
                    return found;
                }
            }
        }
    }
    found
}

/// The inode of a `socket:[INODE]` link target.
pub fn socket_inode(link: &str) -> Option<u32> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// `s` with control characters written as escapes (`\n`, `\u{1b}`): a name from the kernel
/// or another process must not drive the terminal.
pub fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_name_socket_inodes() {
        assert_eq!(socket_inode("socket:[4242]"), Some(4242));
        assert_eq!(socket_inode("pipe:[4242]"), None);
        assert_eq!(socket_inode("socket:[x]"), None);
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(printable("python3"), "python3");
        assert_eq!(printable("a\x1b[2Jb\n"), "a\\u{1b}[2Jb\\n");
    }

    #[test]
    fn owners_come_from_fd_links() {
        // A fake /proc: symlinks need no root and need not point anywhere real.
        let root = std::env::temp_dir().join(format!("netdrop-owners-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for (pid, comm, links) in [
            (30, "srv\x07\n", &["socket:[7]", "/dev/null"][..]),
            (12, "other\n", &["socket:[8]"][..]),
            (40, "child\n", &["socket:[7]"][..]),
        ] {
            let d = root.join(pid.to_string());
            std::fs::create_dir_all(d.join("fd")).unwrap();
            std::fs::write(d.join("comm"), comm).unwrap();
            for (i, l) in links.iter().enumerate() {
                std::os::unix::fs::symlink(l, d.join("fd").join(i.to_string())).unwrap();
            }
        }
        std::fs::create_dir_all(root.join("self")).unwrap();
        let found = owners(&root, &[7, 9]);
        assert_eq!(
            found.get(&7),
            Some(&Owner {
                pid: 30,
                comm: "srv\\u{7}".into()
            })
        );
        assert_eq!(found.len(), 1);
        assert!(owners(&root, &[]).is_empty());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
