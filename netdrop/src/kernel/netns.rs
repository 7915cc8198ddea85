//! Names for network namespace inodes: `ip netns` names (bind mounts under /run/netns),
//! `host` for the namespace netdrop runs in, and `init` for PID 1's when that differs.

use std::{
    collections::HashMap,
    fs::File,
    os::{fd::AsRawFd, unix::fs::MetadataExt},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

/// Directories where `ip netns add` leaves its bind mounts.
const NETNS_DIRS: [&str; 2] = ["/run/netns", "/var/run/netns"];
const RESCAN_INTERVAL: Duration = Duration::from_secs(2);

/// Inode to name, rescanned (at most every two seconds) when an inode is unknown.
pub struct NetnsNames {
    root: PathBuf,
    names: HashMap<u32, String>,
    scanned_at: Option<Instant>,
}

impl NetnsNames {
    /// Looks for namespaces under `root` (normally `/`).
    pub fn new(root: &Path) -> Self {
        let mut n = Self {
            root: root.to_owned(),
            names: HashMap::new(),
            scanned_at: None,
        };
        n.scan();
        n
    }

    fn scan(&mut self) {
        self.names.clear();
        if let Some(ino) = inode(&self.root.join("proc/self/ns/net")) {
            self.names.insert(ino, "host".to_owned());
        }
        if let Some(ino) = inode(&self.root.join("proc/1/ns/net")) {
            self.names.entry(ino).or_insert_with(|| "init".to_owned());
        }
        for dir in NETNS_DIRS {
            let Ok(entries) = std::fs::read_dir(self.root.join(dir.trim_start_matches('/'))) else {
                continue;
            };
            for e in entries.flatten() {
                if let (Some(ino), Some(name)) = (inode(&e.path()), e.file_name().to_str()) {
                    self.names.entry(ino).or_insert_with(|| name.to_owned());
                }
            }
        }
        self.scanned_at = Some(Instant::now());
    }

    /// The name of namespace `inode`, if it has one.
    pub fn name(&mut self, inode: u32) -> Option<&str> {
        if !self.names.contains_key(&inode)
            && self
                .scanned_at
                .is_none_or(|t| t.elapsed() >= RESCAN_INTERVAL)
        {
            self.scan();
        }
        self.names.get(&inode).map(String::as_str)
    }
}

/// Inode of the namespace file at `path` (what the kernel reports as `ns.inum`).
pub fn inode(path: &Path) -> Option<u32> {
    std::fs::metadata(path).ok().map(|m| m.ino() as u32)
}

/// Runs `f` on a helper thread that has joined the network namespace behind `ns_file`
/// (e.g. `/run/netns/blue`): `/proc/thread-self/net` and new sockets there belong to that
/// namespace, while the calling thread stays where it is.
pub fn run_in<T: Send>(ns_file: &Path, f: impl FnOnce() -> T + Send) -> std::io::Result<T> {
    let ns = File::open(ns_file)?;
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: setns affects only this thread, which ends right after `f`.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(f())
        })
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("namespace helper thread panicked")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_bind_mount_inodes() {
        // A fake root: regular files stand in for the nsfs bind mounts; their inodes play
        // the role of namespace inodes.
        let root = std::env::temp_dir().join(format!("netdrop-netns-{}", std::process::id()));
        std::fs::create_dir_all(root.join("run/netns")).unwrap();
        std::fs::create_dir_all(root.join("proc/1/ns")).unwrap();
        std::fs::create_dir_all(root.join("proc/self/ns")).unwrap();
        std::fs::write(root.join("run/netns/blue"), "").unwrap();
        std::fs::write(root.join("proc/1/ns/net"), "").unwrap();
        std::fs::write(root.join("proc/self/ns/net"), "").unwrap();
        let blue = inode(&root.join("run/netns/blue")).unwrap();
        let init = inode(&root.join("proc/1/ns/net")).unwrap();
        let host = inode(&root.join("proc/self/ns/net")).unwrap();
        let mut names = NetnsNames::new(&root);
        assert_eq!(names.name(blue), Some("blue"));
        assert_eq!(names.name(init), Some("init"));
        assert_eq!(names.name(host), Some("host"));
        assert_eq!(names.name(1), None);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
