//! Pods and containers on real drops: namespaces, cgroups and kubelet log directories laid
//! out as a Kubernetes node with containerd and the systemd cgroup driver lays them out,
//! under the host's real cgroup v2 hierarchy and /var/log. Needs root: compiled only with
//! `--features privileged` (`cargo xtask test`).
#![cfg(feature = "privileged")]

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command},
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use netdrop_tests::{NetnsPair, Watch, udp_send};
use serde_json::Value;

/// Where cgroup v2 is mounted: `/sys/fs/cgroup` on a unified host, `/sys/fs/cgroup/unified`
/// on a hybrid one (as this test machine is).
fn cgroup2_mount() -> PathBuf {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    mountinfo
        .lines()
        .find_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let mount = pre.split_whitespace().nth(4)?;
            (post.split_whitespace().next()? == "cgroup2").then(|| PathBuf::from(mount))
        })
        .expect("no cgroup2 mount: this test needs cgroup v2 (unified or hybrid)")
}

/// How a pod's cgroups are laid out.
enum Layout {
    /// cgroup v2, systemd driver: `kubepods.slice/kubepods-burstable.slice/
    /// kubepods-burstable-pod<UID with _>.slice/cri-containerd-<ID>.scope`.
    V2Systemd,
    /// cgroup v1, cgroupfs driver: `kubepods/besteffort/pod<UID>/<ID>` in the v1 hierarchy
    /// mounted here.
    V1Cgroupfs(PathBuf),
}

/// A cgroup v1 hierarchy of the test's own: a named one (no controller), which any kernel
/// with cgroup v1 can mount next to whatever the host uses. Unmounted on drop.
struct V1Hierarchy {
    dir: PathBuf,
}

impl V1Hierarchy {
    fn mount() -> Self {
        let dir = PathBuf::from("/run/netdrop-test-cgroup-v1");
        std::fs::create_dir_all(&dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "cgroup", "-o", "none,name=netdroptest", "cgroup"])
            .arg(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cannot mount a named cgroup v1 hierarchy: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self { dir }
    }
}

impl Drop for V1Hierarchy {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).output();
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// A fresh 128-bit value as hex, different for each call and each run.
fn random_hex(salt: u64) -> String {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut x =
        t ^ (u64::from(std::process::id()) << 32) ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut out = String::new();
    for _ in 0..2 {
        // splitmix64
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.push_str(&format!("{:016x}", z ^ (z >> 31)));
    }
    out
}

/// A pod as a node running containerd with the systemd cgroup driver shows it: a network
/// namespace (with a veth to the host), a process living there inside
/// `kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<UID>.slice/cri-containerd-<ID>.scope`,
/// and the kubelet's `/var/log/pods/NS_NAME_UID/` and `/var/log/containers/` link. All
/// removed on drop.
struct FakePod {
    net: NetnsPair,
    uid: String,
    id: String,
    process: Child,
    /// The pod's own cgroups, removed deepest first.
    cgroups: Vec<PathBuf>,
    /// The pod's own log directory and link.
    log_dir: PathBuf,
    log_link: PathBuf,
}

/// Directories pods share that this test created (the kubepods and QoS slices,
/// /var/log/pods, /var/log/containers): whichever pod goes last removes them. Those that
/// existed before (on a real node) are never touched.
static SHARED: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

/// Creates `dir` if missing; records it in [`SHARED`] when created here.
fn shared_dir(dir: &Path) {
    if !dir.exists() {
        std::fs::create_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        SHARED.lock().unwrap().push(dir.to_owned());
    }
}

impl FakePod {
    fn new(tag: &str, subnet: u8, namespace: &str, name: &str, container: &str) -> Self {
        Self::with_layout(tag, subnet, namespace, name, container, &Layout::V2Systemd)
    }

    fn with_layout(
        tag: &str,
        subnet: u8,
        namespace: &str,
        name: &str,
        container: &str,
        layout: &Layout,
    ) -> Self {
        let net = NetnsPair::new(tag, subnet);
        let r = random_hex(u64::from(subnet));
        let uid = format!(
            "{}-{}-{}-{}-{}",
            &r[..8],
            &r[8..12],
            &r[12..16],
            &r[16..20],
            &r[20..32]
        );
        let id = format!("{r}{}", random_hex(u64::from(subnet) + 1000));
        let process = Command::new("ip")
            .args(["netns", "exec", &net.name, "sleep", "600"])
            .spawn()
            .expect("start a process in the pod's namespace");
        let mut pod = Self {
            net,
            uid,
            id,
            process,
            cgroups: Vec::new(),
            log_dir: PathBuf::new(),
            log_link: PathBuf::new(),
        };
        // The process must have entered the namespace before it is moved and looked for.
        let link = format!("/proc/{}/ns/net", pod.process.id());
        let want = format!("net:[{}]", pod.net.inode());
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::read_link(&link)
            .map(|l| l.to_string_lossy().into_owned())
            .ok()
            != Some(want.clone())
        {
            assert!(
                Instant::now() < deadline,
                "the process did not enter {}",
                pod.net.name
            );
            thread::sleep(Duration::from_millis(10));
        }
        let uid_ = pod.uid.replace('-', "_");
        let (mut dir, shared, own) = match layout {
            Layout::V2Systemd => (
                cgroup2_mount(),
                vec![
                    "kubepods.slice".to_owned(),
                    "kubepods-burstable.slice".to_owned(),
                ],
                [
                    format!("kubepods-burstable-pod{uid_}.slice"),
                    format!("cri-containerd-{}.scope", pod.id),
                ],
            ),
            Layout::V1Cgroupfs(root) => (
                root.clone(),
                vec!["kubepods".to_owned(), "besteffort".to_owned()],
                [format!("pod{}", pod.uid), pod.id.clone()],
            ),
        };
        for part in shared {
            dir.push(part);
            shared_dir(&dir);
        }
        for part in own {
            dir.push(part);
            std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
            pod.cgroups.push(dir.clone());
        }
        std::fs::write(dir.join("cgroup.procs"), pod.process.id().to_string())
            .unwrap_or_else(|e| panic!("moving the process into {}: {e}", dir.display()));
        shared_dir(Path::new("/var/log/pods"));
        shared_dir(Path::new("/var/log/containers"));
        pod.log_dir = PathBuf::from(format!("/var/log/pods/{namespace}_{name}_{}", pod.uid));
        std::fs::create_dir_all(pod.log_dir.join(container)).unwrap();
        pod.log_link = PathBuf::from(format!(
            "/var/log/containers/{name}_{namespace}_{container}-{}.log",
            pod.id
        ));
        std::os::unix::fs::symlink(pod.log_dir.join(container).join("0.log"), &pod.log_link)
            .unwrap();
        pod
    }

    fn inode(&self) -> u64 {
        self.net.inode()
    }

    /// Sends one datagram from the host to closed port `port` in the pod: a NO_SOCKET drop
    /// in the pod's namespace.
    fn drop_one(&self, port: u16) {
        let dst: SocketAddr = format!("{}:{port}", self.net.ns_addr).parse().unwrap();
        udp_send(&format!("{}:0", self.net.host_addr), dst);
    }
}

impl Drop for FakePod {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
        let _ = std::fs::remove_file(&self.log_link);
        let _ = std::fs::remove_dir_all(&self.log_dir);
        // A cgroup can be removed once its processes are gone, which the kernel notes a
        // moment after the process is reaped.
        for c in self.cgroups.iter().rev() {
            let deadline = Instant::now() + Duration::from_secs(5);
            while std::fs::remove_dir(c).is_err() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(20));
            }
        }
        // Empty once the last pod is gone; otherwise left to that pod.
        let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        // Deepest first: the QoS slice before the kubepods slice.
        let left: Vec<PathBuf> = shared
            .iter()
            .rev()
            .filter(|d| std::fs::remove_dir(d).is_err() && d.exists())
            .cloned()
            .collect();
        *shared = left.into_iter().rev().collect();
    }
}

/// The pods' addresses (10.161/16 to 10.165/16): other tests may drop packets meanwhile.
const OURS: &str = "10.160.0.0/13";

fn dport(d: &Value) -> u64 {
    d["packet"]["dport"].as_u64().unwrap_or(0)
}

#[test]
fn drops_name_their_pod_and_container_and_filters_select_them() {
    let web = FakePod::new("pod1", 161, "shop", "web-0", "app");
    let db = FakePod::new("pod2", 162, "shop", "db-0", "postgres");

    // Every drop in a pod's namespace carries the pod and its container.
    let w = Watch::start(&["--host", OURS]);
    web.drop_one(47301);
    db.drop_one(47302);
    w.wait_for("the drop in web-0", |d| dport(d) == 47301);
    w.wait_for("the drop in db-0", |d| dport(d) == 47302);
    let r = w.stop();
    assert!(r.status.success(), "{}", r.stderr);
    for (pod, port, name, container) in [
        (&web, 47301, "web-0", "app"),
        (&db, 47302, "db-0", "postgres"),
    ] {
        let d = r.drops.iter().find(|d| dport(d) == port).unwrap();
        assert_eq!(d["netns"]["inode"], pod.inode(), "{d:#}");
        assert_eq!(d["pod"]["uid"], pod.uid.as_str(), "{d:#}");
        assert_eq!(d["pod"]["name"], name, "{d:#}");
        assert_eq!(d["pod"]["namespace"], "shop", "{d:#}");
        assert_eq!(
            d["containers"],
            serde_json::json!([{"runtime": "containerd", "id": pod.id, "name": container}]),
            "{d:#}"
        );
    }

    // The same in text, one line per drop.
    let out = Command::new(netdrop_tests::netdrop_bin())
        .args(["watch", "--count", "1", "--port", "47303"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let text = {
        let mut out = out;
        // Sent until the watch is attached and has printed it.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            web.drop_one(47303);
            if let Ok(Some(_)) = out.try_wait() {
                break;
            }
            assert!(Instant::now() < deadline, "text watch printed no drop");
            thread::sleep(Duration::from_millis(200));
        }
        let o = out.wait_with_output().unwrap();
        String::from_utf8(o.stdout).unwrap()
    };
    assert!(
        text.contains(&format!("netns {:<10} pod shop/web-0 at ", web.net.name)),
        "{text}"
    );

    // stats --by pod: exact counts per pod.
    let s = Watch::spawn(
        &[
            "stats",
            "--json",
            "--by",
            "pod",
            "--interval",
            "1",
            "--host",
            OURS,
        ],
        "netdrop: counting drops",
    );
    for _ in 0..3 {
        web.drop_one(47304);
    }
    for _ in 0..2 {
        db.drop_one(47305);
    }
    let group = |r: &Value, label: &str| -> Option<Value> {
        r["groups"]
            .as_array()?
            .iter()
            .find(|g| g["label"] == label)
            .cloned()
    };
    s.wait_for_line("a report with both pods", |r| {
        group(r, "shop/web-0").is_some_and(|g| g["total"] == 3)
            && group(r, "shop/db-0").is_some_and(|g| g["total"] == 2)
    });
    let r = s.stop();
    let last = r.lines.last().unwrap();
    assert_eq!(last["by"], "pod");
    let g = group(last, "shop/web-0").unwrap();
    assert_eq!(g["pod"]["uid"], web.uid.as_str(), "{g:#}");
    assert_eq!(g["reasons"][0]["name"], "NO_SOCKET", "{g:#}");
    assert_eq!(g["reasons"][0]["count"], 3, "{g:#}");

    // The exporter: one series per pod, labelled by namespace and name, counted exactly.
    let port = netdrop_tests::free_tcp_port();
    let addr = format!("127.0.0.1:{port}");
    let ex = Watch::spawn(
        &["exporter", "--metrics-addr", &addr, "--host", OURS],
        "netdrop: counting drops",
    );
    for _ in 0..4 {
        web.drop_one(47312);
    }
    db.drop_one(47313);
    let want = [
        "netdrop_pod_drops_total{namespace=\"shop\",pod=\"db-0\"} 1",
        "netdrop_pod_drops_total{namespace=\"shop\",pod=\"web-0\"} 4",
    ];
    let pods = |body: &str| -> Vec<String> {
        body.lines()
            .filter(|l| l.starts_with("netdrop_pod_drops_total"))
            .map(str::to_owned)
            .collect()
    };
    // A datagram over veth may be received a moment after its send returns (softirq).
    let deadline = Instant::now() + Duration::from_secs(20);
    let body = loop {
        let (_, _, body) = netdrop_tests::http_get(port, "/metrics", None);
        if pods(&body) == want || Instant::now() > deadline {
            break body;
        }
        thread::sleep(Duration::from_millis(200));
    };
    drop(ex);
    assert_eq!(pods(&body), want, "{body}");

    // --pod NAME keeps that pod's drops and nothing else: the other pod's drop is sent
    // first, so it would have been printed before the kept one.
    let w = Watch::start(&["--pod", "web-0"]);
    db.drop_one(47306);
    web.drop_one(47307);
    w.wait_for("the drop in web-0", |d| dport(d) == 47307);
    let r = w.stop();
    assert!(r.status.success(), "{}", r.stderr);
    assert!(!r.drops.is_empty());
    for d in &r.drops {
        assert_eq!(d["netns"]["inode"], web.inode(), "{d:#}");
        assert_eq!(d["pod"]["name"], "web-0", "{d:#}");
    }

    // --container ID-PREFIX and --pod NAMESPACE/NAME, the other way round.
    let w = Watch::start(&["--container", &db.id[..12], "--pod", "shop/db-0"]);
    web.drop_one(47308);
    db.drop_one(47309);
    w.wait_for("the drop in db-0", |d| dport(d) == 47309);
    let r = w.stop();
    assert!(
        r.drops.iter().all(|d| d["pod"]["name"] == "db-0"),
        "{:?}",
        r.drops
    );
    assert!(r.drops.iter().all(|d| dport(d) != 47308));
}

#[test]
fn a_pod_that_starts_later_is_waited_for() {
    let name = format!("late-{}", &random_hex(7)[..6]);
    let w = Watch::spawn(
        &["watch", "--json", "--pod", &name],
        "waiting for it to start",
    );
    let pod = FakePod::new("pod3", 163, "jobs", &name, "worker");
    // Sent until netdrop, having found the pod, is attached.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        pod.drop_one(47310);
        if w.saw_line_within(Duration::from_millis(300), |d| dport(d) == 47310) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no drop from the pod that started later"
        );
    }
    let r = w.stop();
    assert!(
        r.stderr
            .contains(&format!("nothing matches --pod {name} yet")),
        "{}",
        r.stderr
    );
    for d in &r.drops {
        assert_eq!(d["pod"]["namespace"], "jobs", "{d:#}");
        assert_eq!(d["netns"]["inode"], pod.inode(), "{d:#}");
    }
}

#[test]
fn ambiguous_names_and_conflicting_flags_are_refused() {
    let a = FakePod::new("pod4", 164, "blue", "api-0", "api");
    let b = FakePod::new("pod5", 165, "green", "api-0", "api");
    let out = netdrop_tests::run(&["watch", "--pod", "api-0"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    // In namespace inode order, whichever the kernel gave first.
    let (first, second) = if a.inode() < b.inode() {
        ("blue", "green")
    } else {
        ("green", "blue")
    };
    assert!(
        err.contains(&format!(
            "--pod api-0 matches 2 network namespaces (pod {first}/api-0, pod {second}/api-0): \
             give NAMESPACE/NAME or a longer id"
        )),
        "{err}"
    );
    drop((a, b));
    let out = netdrop_tests::run(&["watch", "--pod", "x", "--netns", "host"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot be used with"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_pod_in_a_cgroup_v1_cgroupfs_layout_is_recognised() {
    let v1 = V1Hierarchy::mount();
    let pod = FakePod::with_layout(
        "pod6",
        166,
        "legacy",
        "api-v1",
        "api",
        &Layout::V1Cgroupfs(v1.dir.clone()),
    );
    // The kernel shows the process in a v1 line, as on a v1 or hybrid node.
    let cgroup = std::fs::read_to_string(format!("/proc/{}/cgroup", pod.process.id())).unwrap();
    assert!(
        cgroup.contains(&format!(
            ":name=netdroptest:/kubepods/besteffort/pod{}/{}\n",
            pod.uid, pod.id
        )),
        "{cgroup}"
    );
    let w = Watch::start(&["--pod", "legacy/api-v1"]);
    pod.drop_one(47311);
    w.wait_for("the drop in api-v1", |d| dport(d) == 47311);
    let r = w.stop();
    assert!(r.status.success(), "{}", r.stderr);
    for d in &r.drops {
        assert_eq!(d["pod"]["uid"], pod.uid.as_str(), "{d:#}");
        assert_eq!(d["pod"]["name"], "api-v1", "{d:#}");
        assert_eq!(d["pod"]["namespace"], "legacy", "{d:#}");
        assert_eq!(
            d["containers"],
            serde_json::json!([{"runtime": "containerd", "id": pod.id, "name": "api"}]),
            "{d:#}"
        );
    }
    drop(pod);
    drop(v1);
}
