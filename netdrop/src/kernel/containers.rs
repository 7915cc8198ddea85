//! Which containers and which Kubernetes pod live in a network namespace: on a container
//! host `netns 4026532561` means nothing, the pod does.
//!
//! Everything comes from files any root process can read, without credentials for the
//! container runtime or the Kubernetes API:
//! - `/proc/PID/ns/net` says which namespace a process lives in, `/proc/PID/cgroup` which
//!   cgroup it is in. Runtimes name their cgroups after the container id (Docker,
//!   containerd, CRI-O, Podman, with the systemd or the cgroupfs driver, cgroup v1 or v2),
//!   and the kubelet names the pod's cgroup after the pod UID.
//! - The kubelet writes each pod's logs under `/var/log/pods/NAMESPACE_NAME_UID/` and links
//!   each container's log as `/var/log/containers/POD_NAMESPACE_CONTAINER-ID.log`: the
//!   names of pods and containers.
//! - Docker keeps each container's name in `/var/lib/docker/containers/ID/config.v2.json`.
//!
//! A drop is attributed to a namespace, not to a process: containers that share one (the
//! containers of a pod) cannot be told apart, so a namespace maps to all of them. The
//! namespace netdrop runs in and PID 1's are never attributed: processes of host-network
//! containers live there among every host process.

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

/// A namespace not seen in the last scan triggers a new one, at most this often.
const RESCAN_UNKNOWN: Duration = Duration::from_secs(5);
/// Every lookup triggers a new scan once the last is this old: containers join existing
/// namespaces (a pod's app containers after its sandbox) and names appear late.
const RESCAN_ALWAYS: Duration = Duration::from_secs(30);
/// At most this many processes are read per scan, so a huge host costs bounded time.
const MAX_PROCESSES: usize = 1 << 17;
/// Namespaces remembered from one scan; processes in further namespaces are not read.
const MAX_NAMESPACES: usize = 1 << 13;
/// Containers listed per namespace (a pod has a few; the rest are left out).
const MAX_CONTAINERS_PER_NETNS: usize = 16;
/// Pods given a grouping id (`stats --by pod`); later pods are summed under
/// [`OTHER_PODS`].
const MAX_POD_IDS: usize = 1 << 16;
/// The grouping id of pods beyond [`MAX_POD_IDS`].
pub const OTHER_PODS: u32 = u32::MAX;

/// A container, as its runtime's cgroup names it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Container {
    /// `docker`, `containerd`, `cri-o` or `podman`.
    pub runtime: String,
    /// The full container id (64 hex digits); outputs show the first 12.
    pub id: String,
    /// The container's name where the host publishes it (the kubelet's log links, Docker's
    /// config); `null` otherwise.
    pub name: Option<String>,
}

impl Container {
    /// The first 12 hex digits, as `docker ps` and `crictl ps` show ids.
    pub fn short_id(&self) -> &str {
        &self.id[..self.id.len().min(12)]
    }

    /// `name` or, unnamed, `runtime:shortid`.
    pub fn label(&self) -> String {
        match &self.name {
            Some(n) => n.clone(),
            None => format!("{}:{}", self.runtime, self.short_id()),
        }
    }
}

/// A Kubernetes pod.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Pod {
    /// `metadata.uid`, from the pod's cgroup.
    pub uid: String,
    /// `metadata.name`, from `/var/log/pods`; `null` when the node does not show it.
    pub name: Option<String>,
    /// `metadata.namespace`, likewise.
    pub namespace: Option<String>,
}

impl Pod {
    /// `namespace/name`, or the UID when the name is unknown.
    pub fn label(&self) -> String {
        match (&self.namespace, &self.name) {
            (Some(ns), Some(n)) => format!("{ns}/{n}"),
            (None, Some(n)) => n.clone(),
            _ => self.uid.clone(),
        }
    }

    /// True when `sel` (`NAME`, `NAMESPACE/NAME` or the UID) names this pod.
    pub fn matches(&self, sel: &str) -> bool {
        if sel.eq_ignore_ascii_case(&self.uid) {
            return true;
        }
        match sel.split_once('/') {
            Some((ns, n)) => {
                self.namespace.as_deref() == Some(ns) && self.name.as_deref() == Some(n)
            }
            None => self.name.as_deref() == Some(sel),
        }
    }
}

/// What lives in one network namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workload {
    /// Containers with a process in the namespace, ordered by id.
    pub containers: Vec<Container>,
    /// The pod, when all those containers belong to one.
    pub pod: Option<Pod>,
}

impl Workload {
    /// `pod NS/NAME` or `container NAME[,NAME...]`, for one-line outputs.
    pub fn label(&self) -> String {
        match &self.pod {
            Some(p) => format!("pod {}", p.label()),
            None => format!("container {}", self.container_label()),
        }
    }

    /// The containers' labels, comma-separated.
    pub fn container_label(&self) -> String {
        let names: Vec<String> = self.containers.iter().map(Container::label).collect();
        names.join(",")
    }
}

/// What a process's cgroup path says about it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CgroupInfo {
    /// (runtime, id) of the innermost container.
    pub container: Option<(&'static str, String)>,
    /// Pod UID from a kubepods cgroup.
    pub pod_uid: Option<String>,
}

/// Reads a `/proc/PID/cgroup` file: `ID:CONTROLLERS:PATH` lines, one per cgroup v1
/// hierarchy, and `0::PATH` for cgroup v2. The v2 line is read first, then the v1 lines in
/// order; the first that names a container wins, and the pod is taken from the same line
/// (else from any line).
pub fn parse_cgroup(text: &str) -> CgroupInfo {
    let mut paths: Vec<&str> = Vec::new();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(_controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if id == "0" {
            paths.insert(0, path);
        } else {
            paths.push(path);
        }
    }
    let mut info = CgroupInfo::default();
    for path in &paths {
        let here = parse_path(path);
        if here.container.is_some() {
            return CgroupInfo {
                pod_uid: here
                    .pod_uid
                    .or_else(|| paths.iter().find_map(|p| parse_path(p).pod_uid)),
                container: here.container,
            };
        }
        if info.pod_uid.is_none() {
            info.pod_uid = here.pod_uid;
        }
    }
    info
}

/// One cgroup path, e.g.
/// `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid>.slice/cri-containerd-<id>.scope`.
fn parse_path(path: &str) -> CgroupInfo {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let kubepods = |i: usize| parts[..i].iter().any(|p| p.starts_with("kubepods"));
    let mut info = CgroupInfo::default();
    // The innermost container: in nested setups (kind, Docker in Docker) outer ones come
    // first in the path.
    for (i, part) in parts.iter().enumerate().rev() {
        if let Some(c) = container_component(part, i.checked_sub(1).map(|p| parts[p]), kubepods(i))
        {
            info.container = Some(c);
            break;
        }
    }
    for (i, part) in parts.iter().enumerate().rev() {
        if let Some(uid) = pod_component(part, kubepods(i)) {
            info.pod_uid = Some(uid);
            break;
        }
    }
    info
}

/// A container id in one path component: `docker-<id>.scope`, `cri-containerd-<id>.scope`,
/// `nerdctl-<id>.scope`, `crio-<id>.scope`, `libpod-<id>.scope` (systemd driver),
/// `crio-<id>` and `libpod-<id>` (cgroupfs driver), or a bare id below `docker/` or a
/// kubepods cgroup (cgroupfs driver of Docker and containerd). Conmon, the monitor CRI-O
/// and Podman run beside each container, is not the container.
fn container_component(
    part: &str,
    parent: Option<&str>,
    under_kubepods: bool,
) -> Option<(&'static str, String)> {
    let base = part.strip_suffix(".scope").unwrap_or(part);
    if base.starts_with("crio-conmon-") || base.starts_with("libpod-conmon-") {
        return None;
    }
    for (prefix, runtime) in [
        ("docker-", "docker"),
        ("cri-containerd-", "containerd"),
        ("nerdctl-", "containerd"),
        ("crio-", "cri-o"),
        ("libpod-", "podman"),
    ] {
        if let Some(id) = base.strip_prefix(prefix) {
            return is_container_id(id).then(|| (runtime, id.to_ascii_lowercase()));
        }
    }
    if is_container_id(part) {
        if parent == Some("docker") {
            return Some(("docker", part.to_ascii_lowercase()));
        }
        if under_kubepods {
            return Some(("containerd", part.to_ascii_lowercase()));
        }
    }
    None
}

/// A pod UID in one path component: `kubepods-<qos>-pod<uid with _>.slice` or
/// `kubepods-pod<uid>.slice` (systemd driver), `pod<uid>` below `kubepods` (cgroupfs).
fn pod_component(part: &str, under_kubepods: bool) -> Option<String> {
    let uid = if let Some(slice) = part.strip_suffix(".slice")
        && slice.starts_with("kubepods")
    {
        slice.rsplit_once("-pod")?.1.replace('_', "-")
    } else if under_kubepods {
        part.strip_prefix("pod")?.to_owned()
    } else {
        return None;
    };
    is_pod_uid(&uid).then(|| uid.to_ascii_lowercase())
}

fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A UUID (`8-4-4-4-12` hex digits), or the 32 hex digits of a static pod's config hash.
fn is_pod_uid(s: &str) -> bool {
    let hex = s.bytes().filter(u8::is_ascii_hexdigit).count();
    let dashes = s.bytes().filter(|&b| b == b'-').count();
    hex == 32 && hex + dashes == s.len() && (dashes == 0 || dashes == 4)
}

/// The kubelet's pod log directory name `NAMESPACE_NAME_UID` as (namespace, name, uid).
/// Namespaces and pod names are DNS names: they hold no `_`.
pub fn parse_pod_log_dir(name: &str) -> Option<(String, String, String)> {
    let mut parts = name.splitn(3, '_');
    let (ns, pod, uid) = (parts.next()?, parts.next()?, parts.next()?);
    (!ns.is_empty() && !pod.is_empty() && is_pod_uid(uid))
        .then(|| (ns.to_owned(), pod.to_owned(), uid.to_ascii_lowercase()))
}

/// The kubelet's container log link name `POD_NAMESPACE_CONTAINER-ID.log` as
/// (container name, id).
pub fn parse_container_log_link(name: &str) -> Option<(String, String)> {
    let (rest, id) = name.strip_suffix(".log")?.rsplit_once('-')?;
    let container = rest.splitn(3, '_').nth(2)?;
    (is_container_id(id) && !container.is_empty())
        .then(|| (container.to_owned(), id.to_ascii_lowercase()))
}

/// The `"Name"` of a Docker `config.v2.json`, without its leading `/`.
pub fn docker_name(config: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Config {
        #[serde(rename = "Name")]
        name: String,
    }
    let c: Config = serde_json::from_str(config).ok()?;
    let n = c.name.trim_start_matches('/');
    (!n.is_empty()).then(|| n.to_owned())
}

/// Container id -> first name, from Podman's (containers/storage's) `containers.json`.
pub fn podman_names(json: &str) -> HashMap<String, String> {
    #[derive(Deserialize)]
    struct Entry {
        id: String,
        #[serde(default)]
        names: Vec<String>,
    }
    let entries: Vec<Entry> = serde_json::from_str(json).unwrap_or_default();
    entries
        .into_iter()
        .filter_map(|e| Some((e.id.to_ascii_lowercase(), e.names.into_iter().next()?)))
        .collect()
}

/// Where rootful Podman keeps its containers' names.
const PODMAN_CONTAINERS: &str = "var/lib/containers/storage/overlay-containers/containers.json";

/// One scan of the host: namespace to workload.
#[derive(Clone, Debug, Default)]
pub struct Scan {
    /// Every namespace with a container process, the host's included.
    pub by_netns: BTreeMap<u32, Workload>,
    /// The host's namespaces (netdrop's and PID 1's): never attributed.
    pub host: Vec<u32>,
    /// Every namespace a process lived in, with containers or not: a drop in one of these
    /// needs no new scan.
    pub seen: std::collections::BTreeSet<u32>,
}

impl Scan {
    /// Reads `root/proc`, `root/var/log/pods`, `root/var/log/containers` and Docker's
    /// container configs under `root`.
    pub fn read(root: &Path) -> Self {
        let proc_root = root.join("proc");
        let host: Vec<u32> = ["self", "1"]
            .iter()
            .filter_map(|p| netns_of(&proc_root.join(p)))
            .collect();
        // netns -> (container, pod uid) per process.
        let mut found: BTreeMap<u32, Vec<(Container, Option<String>)>> = BTreeMap::new();
        let mut seen = std::collections::BTreeSet::new();
        let Ok(dir) = std::fs::read_dir(&proc_root) else {
            return Self {
                by_netns: BTreeMap::new(),
                host,
                seen: Default::default(),
            };
        };
        for entry in dir.flatten().take(MAX_PROCESSES) {
            let name = entry.file_name();
            let Some(pid) = name
                .to_str()
                .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
            else {
                continue;
            };
            let pid_dir = proc_root.join(pid);
            let Some(ns) = netns_of(&pid_dir) else {
                continue;
            };
            if seen.len() < MAX_NAMESPACES {
                seen.insert(ns);
            }
            if !found.contains_key(&ns) && found.len() >= MAX_NAMESPACES {
                continue;
            }
            let Ok(cgroup) = std::fs::read_to_string(pid_dir.join("cgroup")) else {
                continue;
            };
            let info = parse_cgroup(&cgroup);
            let Some((runtime, id)) = info.container else {
                continue;
            };
            let list = found.entry(ns).or_default();
            if list.len() < MAX_CONTAINERS_PER_NETNS && !list.iter().any(|(c, _)| c.id == id) {
                list.push((
                    Container {
                        runtime: runtime.to_owned(),
                        id,
                        name: None,
                    },
                    info.pod_uid,
                ));
            }
        }
        let pods = pod_names(&root.join("var/log/pods"));
        let mut container_names = container_names(&root.join("var/log/containers"));
        if found.values().flatten().any(|(c, _)| c.runtime == "podman")
            && let Ok(json) = std::fs::read_to_string(root.join(PODMAN_CONTAINERS))
        {
            for (id, name) in podman_names(&json) {
                container_names.entry(id).or_insert(name);
            }
        }
        let mut by_netns = BTreeMap::new();
        for (ns, list) in found {
            let mut uids: Vec<&String> = list.iter().filter_map(|(_, u)| u.as_ref()).collect();
            uids.sort();
            uids.dedup();
            // A pod only when every container there is one of it: a namespace two pods
            // share (or a pod's and a lone container's) names no pod.
            let all_in_pod = list.iter().all(|(_, u)| u.is_some());
            let pod = (uids.len() == 1 && all_in_pod).then(|| {
                let uid = uids[0].clone();
                let (namespace, name) = pods.get(&uid).cloned().unzip();
                Pod {
                    uid,
                    name,
                    namespace,
                }
            });
            let mut containers: Vec<Container> = list
                .into_iter()
                .map(|(mut c, _)| {
                    c.name = container_names.get(&c.id).cloned().or_else(|| {
                        (c.runtime == "docker")
                            .then(|| docker_config_name(root, &c.id))
                            .flatten()
                    });
                    c
                })
                .collect();
            containers.sort();
            by_netns.insert(ns, Workload { containers, pod });
        }
        Self {
            by_netns,
            host,
            seen,
        }
    }

    /// The namespaces whose pod `sel` names (`NAME`, `NAMESPACE/NAME` or UID), with the pod.
    pub fn find_pod(&self, sel: &str) -> Vec<(u32, &Workload)> {
        self.by_netns
            .iter()
            .filter(|(_, w)| w.pod.as_ref().is_some_and(|p| p.matches(sel)))
            .map(|(n, w)| (*n, w))
            .collect()
    }

    /// The namespaces holding a container whose id starts with `sel` or whose name is
    /// `sel`.
    pub fn find_container(&self, sel: &str) -> Vec<(u32, &Workload)> {
        let id = sel.to_ascii_lowercase();
        self.by_netns
            .iter()
            .filter(|(_, w)| {
                w.containers.iter().any(|c| {
                    c.name.as_deref() == Some(sel) || (!id.is_empty() && c.id.starts_with(&id))
                })
            })
            .map(|(n, w)| (*n, w))
            .collect()
    }
}

/// The namespace of process directory `pid_dir`, from the `net:[INODE]` link.
fn netns_of(pid_dir: &Path) -> Option<u32> {
    let link = std::fs::read_link(pid_dir.join("ns/net")).ok()?;
    link.to_str()?
        .strip_prefix("net:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// Pod UID -> (namespace, name), from the kubelet's log directories.
fn pod_names(dir: &Path) -> HashMap<String, (String, String)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return HashMap::new();
    };
    entries
        .flatten()
        .take(MAX_NAMESPACES)
        .filter_map(|e| parse_pod_log_dir(e.file_name().to_str()?))
        .map(|(ns, name, uid)| (uid, (ns, name)))
        .collect()
}

/// Container id -> name, from the kubelet's log links.
fn container_names(dir: &Path) -> HashMap<String, String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return HashMap::new();
    };
    entries
        .flatten()
        .take(MAX_PROCESSES)
        .filter_map(|e| parse_container_log_link(e.file_name().to_str()?))
        .map(|(name, id)| (id, name))
        .collect()
}

fn docker_config_name(root: &Path, id: &str) -> Option<String> {
    let path = root
        .join("var/lib/docker/containers")
        .join(id)
        .join("config.v2.json");
    docker_name(&std::fs::read_to_string(path).ok()?)
}

/// Namespace to workload for the enricher, rescanned lazily: when a namespace not seen
/// before is asked about (at most every 5 s) and every 30 s.
pub struct Containers {
    root: PathBuf,
    scan: Scan,
    scanned_at: Option<Instant>,
    /// Grouping ids of pods (`stats --by pod`), by UID; id 0 is "no pod".
    pod_ids: HashMap<String, u32>,
    pods: Vec<Pod>,
    max_pod_ids: usize,
}

impl Containers {
    /// Looks under `root` (normally `/`); nothing is read before the first lookup.
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_owned(),
            scan: Scan::default(),
            scanned_at: None,
            pod_ids: HashMap::new(),
            pods: Vec::new(),
            max_pod_ids: MAX_POD_IDS,
        }
    }

    /// What lives in namespace `inode`; `None` for namespaces without containers and for
    /// the host's.
    pub fn workload(&mut self, inode: u32) -> Option<&Workload> {
        let age = self.scanned_at.map(|t| t.elapsed());
        let stale = age.is_none_or(|a| a >= RESCAN_ALWAYS)
            || (age.is_some_and(|a| a >= RESCAN_UNKNOWN) && !self.scan.seen.contains(&inode));
        if stale {
            self.scan = Scan::read(&self.root);
            self.scanned_at = Some(Instant::now());
        }
        if self.scan.host.contains(&inode) {
            return None;
        }
        self.scan.by_netns.get(&inode)
    }

    /// The grouping id of the pod in namespace `inode` (0: none; [`OTHER_PODS`] past the
    /// bound), for `--by pod`.
    pub fn pod_id(&mut self, inode: u32) -> u32 {
        let Some(pod) = self.workload(inode).and_then(|w| w.pod.clone()) else {
            return 0;
        };
        if let Some(&id) = self.pod_ids.get(&pod.uid) {
            // The name may have appeared since.
            self.pods[id as usize - 1] = pod;
            return id;
        }
        if self.pods.len() >= self.max_pod_ids {
            return OTHER_PODS;
        }
        self.pods.push(pod.clone());
        let id = self.pods.len() as u32;
        self.pod_ids.insert(pod.uid, id);
        id
    }

    /// The pod behind a grouping id from [`Containers::pod_id`].
    pub fn pod(&self, id: u32) -> Option<&Pod> {
        id.checked_sub(1).and_then(|i| self.pods.get(i as usize))
    }
}

/// Fixtures for tests elsewhere in the crate.
#[cfg(test)]
pub mod testing {
    use std::path::PathBuf;

    /// The pod's app container id in [`fake_root`].
    pub const ID: &str = "4f0bbd3c7a1e5d5c0c3b1c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f";
    /// The pod's UID in [`fake_root`].
    pub const UID: &str = "0f6e1d2c-3b4a-5968-7a8b-9c0d1e2f3a4b";

    /// A fake root: `/proc/PID/ns/net` are symlinks reading `net:[INODE]` (they need not
    /// point anywhere), `cgroup` files and kubelet log directories are plain files. The
    /// host is namespace 100, pod `shop/web-0` namespace 200 (containers `app` and a
    /// pause container), a Docker container `redis` (its name holding an escape
    /// sequence) namespace 300, a Podman container `podweb` namespace 400. The caller
    /// removes it.
    pub fn fake_root(tag: &str) -> PathBuf {
        let root =
            std::env::temp_dir().join(format!("netdrop-containers-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let uid_ = UID.replace('-', "_");
        let pause = "c".repeat(64);
        let lone = "d".repeat(64);
        for (pid, ns, cgroup) in [
            ("self", 100, "0::/user.slice/session-1.scope\n".to_owned()),
            ("1", 100, "0::/init.scope\n".to_owned()),
            ("7", 100, "0::/system.slice/sshd.service\n".to_owned()),
            // The pod: its sandbox (pause) and an app container share namespace 200.
            (
                "20",
                200,
                format!(
                    "0::/kubepods.slice/kubepods-pod{uid_}.slice/cri-containerd-{pause}.scope\n"
                ),
            ),
            (
                "21",
                200,
                format!("0::/kubepods.slice/kubepods-pod{uid_}.slice/cri-containerd-{ID}.scope\n"),
            ),
            // A Docker container in namespace 300.
            ("30", 300, format!("0::/system.slice/docker-{lone}.scope\n")),
            // A Podman container in namespace 400.
            (
                "50",
                400,
                format!(
                    "0::/machine.slice/libpod-{}.scope/container\n",
                    "f".repeat(64)
                ),
            ),
            // A host-network container: in the host's namespace.
            (
                "40",
                100,
                format!("0::/system.slice/docker-{}.scope\n", "e".repeat(64)),
            ),
        ] {
            let d = root.join("proc").join(pid);
            std::fs::create_dir_all(d.join("ns")).unwrap();
            std::os::unix::fs::symlink(format!("net:[{ns}]"), d.join("ns/net")).unwrap();
            std::fs::write(d.join("cgroup"), cgroup).unwrap();
        }
        std::fs::create_dir_all(root.join(format!("var/log/pods/shop_web-0_{UID}"))).unwrap();
        std::fs::create_dir_all(root.join("var/log/containers")).unwrap();
        std::fs::write(
            root.join(format!("var/log/containers/web-0_shop_app-{ID}.log")),
            "",
        )
        .unwrap();
        let podman = root.join(super::PODMAN_CONTAINERS);
        std::fs::create_dir_all(podman.parent().unwrap()).unwrap();
        std::fs::write(
            podman,
            format!(r#"[{{"id":"{}","names":["podweb"]}}]"#, "f".repeat(64)),
        )
        .unwrap();
        let cfg = root.join(format!("var/lib/docker/containers/{lone}"));
        std::fs::create_dir_all(&cfg).unwrap();
        std::fs::write(cfg.join("config.v2.json"), r#"{"Name":"/redis\u001b[2J"}"#).unwrap();
        root
    }
}

#[cfg(test)]
mod tests {
    use super::{
        testing::{ID, UID},
        *,
    };

    /// What a cgroup file says: (runtime, id) and pod UID.
    type Found = (Option<(&'static str, String)>, Option<String>);

    fn info(text: &str) -> Found {
        let i = parse_cgroup(text);
        (i.container, i.pod_uid)
    }

    #[test]
    fn runtimes_and_cgroup_layouts() {
        let uid_ = UID.replace('-', "_");
        let c = |rt: &'static str| Some((rt, ID.to_owned()));
        let cases: Vec<(String, Found)> = vec![
            // Docker, systemd driver, cgroup v2.
            (
                format!("0::/system.slice/docker-{ID}.scope\n"),
                (c("docker"), None),
            ),
            // Docker, cgroupfs driver, cgroup v1 (hybrid: an empty v2 line too).
            (
                format!(
                    "12:pids:/docker/{ID}\n11:memory:/docker/{ID}\n1:name=systemd:/docker/{ID}\n0::/\n"
                ),
                (c("docker"), None),
            ),
            // containerd under Kubernetes, systemd driver, cgroup v2.
            (
                format!(
                    "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid_}.slice/cri-containerd-{ID}.scope\n"
                ),
                (c("containerd"), Some(UID.to_owned())),
            ),
            // Guaranteed QoS: no QoS slice.
            (
                format!("0::/kubepods.slice/kubepods-pod{uid_}.slice/cri-containerd-{ID}.scope\n"),
                (c("containerd"), Some(UID.to_owned())),
            ),
            // containerd under Kubernetes, cgroupfs driver, cgroup v1.
            (
                format!(
                    "10:cpu,cpuacct:/kubepods/besteffort/pod{UID}/{ID}\n4:memory:/kubepods/besteffort/pod{UID}/{ID}\n"
                ),
                (c("containerd"), Some(UID.to_owned())),
            ),
            // CRI-O, systemd driver, cgroup v2; and its conmon beside the container.
            (
                format!(
                    "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{uid_}.slice/crio-{ID}.scope\n"
                ),
                (c("cri-o"), Some(UID.to_owned())),
            ),
            (
                format!(
                    "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{uid_}.slice/crio-conmon-{ID}.scope\n"
                ),
                (None, Some(UID.to_owned())),
            ),
            // Podman (rootful, systemd), cgroup v2, and conmon.
            (
                format!("0::/machine.slice/libpod-{ID}.scope/container\n"),
                (c("podman"), None),
            ),
            (
                format!("0::/machine.slice/libpod-conmon-{ID}.scope\n"),
                (None, None),
            ),
            // nerdctl (containerd without Kubernetes), systemd driver.
            (
                format!("0::/system.slice/nerdctl-{ID}.scope\n"),
                (c("containerd"), None),
            ),
            // Podman with cgroupfs on cgroup v1.
            (
                format!("3:memory:/libpod_parent/libpod-{ID}\n"),
                (c("podman"), None),
            ),
            // kind: a Kubernetes node inside a Docker container; the pod's container wins.
            (
                format!(
                    "0::/docker/{}/kubepods/burstable/pod{UID}/{ID}\n",
                    "a".repeat(64)
                ),
                (c("containerd"), Some(UID.to_owned())),
            ),
            // The pause container's pod slice with no container scope yet.
            (
                format!(
                    "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid_}.slice\n"
                ),
                (None, Some(UID.to_owned())),
            ),
            // Read from inside a cgroup namespace (netdrop in a container): relative paths.
            (
                format!(
                    "0::/../../kubepods-besteffort.slice/kubepods-besteffort-pod{uid_}.slice/cri-containerd-{ID}.scope\n"
                ),
                (c("containerd"), Some(UID.to_owned())),
            ),
            // Host processes.
            ("0::/system.slice/sshd.service\n".to_owned(), (None, None)),
            (
                "0::/user.slice/user-0.slice/session-3.scope\n".to_owned(),
                (None, None),
            ),
            // A 64-hex name outside docker/ or kubepods is no container.
            (format!("0::/system.slice/{ID}\n"), (None, None)),
            // Too short to be an id.
            (
                "0::/system.slice/docker-abc.scope\n".to_owned(),
                (None, None),
            ),
            ("garbage\n\n1:x\n".to_owned(), (None, None)),
        ];
        for (text, want) in cases {
            assert_eq!(info(&text), want, "{text}");
        }
    }

    #[test]
    fn the_v2_line_is_read_first() {
        let other = "b".repeat(64);
        let text = format!("4:memory:/docker/{other}\n0::/system.slice/docker-{ID}.scope\n");
        assert_eq!(info(&text).0, Some(("docker", ID.to_owned())));
    }

    #[test]
    fn kubelet_names() {
        assert_eq!(
            parse_pod_log_dir(&format!("kube-system_coredns-5d78c9869d-x2x7k_{UID}")),
            Some((
                "kube-system".to_owned(),
                "coredns-5d78c9869d-x2x7k".to_owned(),
                UID.to_owned()
            ))
        );
        assert_eq!(parse_pod_log_dir("default_web"), None);
        assert_eq!(parse_pod_log_dir("default_web_not-a-uid"), None);
        assert_eq!(
            parse_container_log_link(&format!(
                "coredns-5d78c9869d-x2x7k_kube-system_coredns-{ID}.log"
            )),
            Some(("coredns".to_owned(), ID.to_owned()))
        );
        assert_eq!(parse_container_log_link("web_default_app-123.log"), None);
        assert_eq!(
            docker_name(r#"{"ID":"x","Name":"/redis-cache","State":{}}"#),
            Some("redis-cache".to_owned())
        );
        assert_eq!(docker_name("{}"), None);
        let podman = podman_names(&format!(
            r#"[{{"id":"{ID}","names":["web"],"image":"x"}},{{"id":"ab","names":[]}}]"#
        ));
        assert_eq!(podman.len(), 1);
        assert_eq!(podman.get(ID).map(String::as_str), Some("web"));
        assert!(podman_names("not json").is_empty());
    }

    #[test]
    fn pods_match_by_name_namespace_and_uid() {
        let p = Pod {
            uid: UID.to_owned(),
            name: Some("web-0".into()),
            namespace: Some("shop".into()),
        };
        assert!(p.matches("web-0") && p.matches("shop/web-0") && p.matches(&UID.to_uppercase()));
        assert!(!p.matches("default/web-0") && !p.matches("web"));
        assert_eq!(p.label(), "shop/web-0");
    }

    use super::testing::fake_root;

    #[test]
    fn namespaces_map_to_pods_and_containers() {
        let root = fake_root("scan");
        let scan = Scan::read(&root);
        let pod = &scan.by_netns[&200];
        assert_eq!(
            pod.pod,
            Some(Pod {
                uid: UID.to_owned(),
                name: Some("web-0".into()),
                namespace: Some("shop".into())
            })
        );
        let ids: Vec<(&str, Option<&str>)> = pod
            .containers
            .iter()
            .map(|c| (c.short_id(), c.name.as_deref()))
            .collect();
        assert_eq!(ids, [("4f0bbd3c7a1e", Some("app")), ("cccccccccccc", None)]);
        assert_eq!(pod.label(), "pod shop/web-0");
        let docker = &scan.by_netns[&300];
        assert_eq!(docker.pod, None);
        assert_eq!(docker.containers[0].name.as_deref(), Some("redis\u{1b}[2J"));
        assert_eq!(scan.find_pod("web-0").len(), 1);
        assert_eq!(scan.find_pod("shop/web-0")[0].0, 200);
        assert!(scan.find_pod("other/web-0").is_empty());
        assert_eq!(scan.find_container("4f0bbd")[0].0, 200);
        assert_eq!(scan.find_container("app")[0].0, 200);
        assert_eq!(scan.find_container(&"d".repeat(12))[0].0, 300);
        // The host-network container is found, in the host's namespace.
        assert_eq!(scan.find_container("eeee")[0].0, 100);
        assert_eq!(scan.host, [100, 100]);
        assert_eq!(
            scan.seen.iter().copied().collect::<Vec<_>>(),
            [100, 200, 300, 400]
        );
        let podman = &scan.by_netns[&400].containers[0];
        assert_eq!(
            (podman.runtime.as_str(), podman.name.as_deref()),
            ("podman", Some("podweb"))
        );

        let mut c = Containers::new(&root);
        assert_eq!(
            c.workload(200)
                .and_then(|w| w.pod.as_ref())
                .map(Pod::label)
                .as_deref(),
            Some("shop/web-0")
        );
        assert!(
            c.workload(100).is_none(),
            "the host's namespace names no container"
        );
        assert!(c.workload(999).is_none());
        assert_eq!((c.pod_id(200), c.pod_id(300), c.pod_id(200)), (1, 0, 1));
        assert_eq!(c.pod(1).map(|p| p.uid.as_str()), Some(UID));
        assert_eq!(c.pod(0), None);
        assert_eq!(c.pod(OTHER_PODS), None);
        // Past the bound, further pods are summed under one id.
        let mut c = Containers::new(&root);
        c.max_pod_ids = 0;
        assert_eq!((c.pod_id(200), c.pod_id(300)), (OTHER_PODS, 0));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
