//! Helpers for the integration tests: run the built `netdrop`, create real drops.
//!
//! Every drop is created for real: datagrams and SYNs to closed ports, traffic across veth
//! pairs into fresh network namespaces, nftables rules. Namespaces and rules are removed
//! when their guard is dropped.

pub mod scenarios;

use std::{
    io::{BufRead, BufReader},
    net::{IpAddr, SocketAddr, UdpSocket},
    os::fd::AsRawFd,
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

/// The netdrop binary under test: `$NETDROP_BIN` (set by `cargo xtask test`), else the
/// debug build next to this test executable.
pub fn netdrop_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("NETDROP_BIN") {
        return p.into();
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/debug/deps/<test> -> target/debug/netdrop
    let bin = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target dir")
        .join("netdrop");
    assert!(
        bin.exists(),
        "{} missing: build netdrop first (cargo xtask test does)",
        bin.display()
    );
    bin
}

/// A `netdrop` command that dies with the test process, even when a failed assert or a
/// kill leaves it behind (it would keep programs loaded).
pub fn netdrop_command() -> Command {
    let mut cmd = Command::new(netdrop_bin());
    // SAFETY: prctl in the forked child before exec; async-signal-safe.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    cmd
}

/// `netdrop diagnose --json ARGS` around `traffic`: started, `traffic` run, a moment for the
/// kernel counters, then ended the way an operator would (a signal); the report.
pub fn diagnose_report(args: &[&str], traffic: impl FnOnce()) -> Result<Value, String> {
    let mut full = vec!["diagnose", "--json", "--duration", "5m"];
    full.extend_from_slice(args);
    let d = Watch::spawn(&full, "netdrop: diagnosing");
    traffic();
    thread::sleep(Duration::from_millis(1500));
    let r = d.stop();
    if !r.status.success() {
        return Err(format!("diagnose failed: {}", r.stderr));
    }
    match r.lines.as_slice() {
        [report] => Ok(report.clone()),
        other => Err(format!("not one JSON document: {other:?}")),
    }
}

/// Runs `netdrop args` to completion.
pub fn run(args: &[&str]) -> std::process::Output {
    Command::new(netdrop_bin())
        .args(args)
        .output()
        .expect("run netdrop")
}

/// A running netdrop command whose stdout is JSON lines (`watch --json`, `stats --json`,
/// `exporter`, whose stdout stays empty).
pub struct Watch {
    child: Child,
    lines: Arc<Mutex<Vec<Value>>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<thread::JoinHandle<()>>,
}

/// What a finished command printed.
#[derive(Debug)]
pub struct Report {
    pub status: ExitStatus,
    /// Every JSON line, in order.
    pub lines: Vec<Value>,
    pub drops: Vec<Value>,
    pub lost: Vec<Value>,
    pub counters: Vec<Value>,
    pub summary: Option<Value>,
    pub stderr: String,
}

impl Report {
    /// The lines of type `kind` (`suppressed`, `over_budget`, ...).
    pub fn notices(&self, kind: &str) -> Vec<&Value> {
        self.lines.iter().filter(|l| l["type"] == kind).collect()
    }

    /// The summary's `matched` minus every drop it accounts for (delivered, suppressed by
    /// the rate limit, over budget, lost): 0 when nothing went missing. A run without a
    /// summary, or a summary without one of these counts, fails the test.
    pub fn unaccounted(&self) -> i64 {
        let s = self.summary.as_ref().expect("a summary");
        let n = |k: &str| {
            field(s, k)
                .as_u64()
                .unwrap_or_else(|| panic!("{k} is not a count in {s}")) as i64
        };
        n("matched") - n("delivered") - n("suppressed") - n("over_budget") - n("lost")
    }
}

/// The drops `notices` ("N more like this", "N more drops ... not examined") stand for.
pub fn notice_total<'a>(notices: impl IntoIterator<Item = &'a Value>) -> u64 {
    notices
        .into_iter()
        .map(|l| field(l, "count").as_u64().expect("a notice's count"))
        .sum()
}

impl Watch {
    /// Starts `netdrop watch --json ARGS` and waits until it says it is attached.
    pub fn start(args: &[&str]) -> Self {
        let mut full = vec!["watch", "--json"];
        full.extend_from_slice(args);
        Self::spawn(&full, "netdrop: watching")
    }

    /// Starts `netdrop ARGS` and waits until its stderr shows `ready`.
    pub fn spawn(args: &[&str], ready: &str) -> Self {
        let mut child = netdrop_command()
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn netdrop watch");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        let l = lines.clone();
        let r1 = thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| {
                    panic!("netdrop printed a line that is not JSON ({e}): {line}")
                });
                l.lock().unwrap().push(v);
            }
        });
        let s = stderr.clone();
        let r2 = thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let mut s = s.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let mut w = Self {
            child,
            lines,
            stderr,
            readers: vec![r1, r2],
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !w.stderr.lock().unwrap().contains(ready) {
            if let Ok(Some(status)) = w.child.try_wait() {
                panic!(
                    "netdrop {args:?} exited early ({status}): {}",
                    w.stderr.lock().unwrap()
                );
            }
            assert!(
                Instant::now() < deadline,
                "netdrop {args:?} did not start: {}",
                w.stderr.lock().unwrap()
            );
            thread::sleep(Duration::from_millis(20));
        }
        w
    }

    /// Waits until a drop record satisfying `pred` has been printed.
    pub fn wait_for(&self, what: &str, pred: impl Fn(&Value) -> bool) {
        self.wait_for_line(what, |v| v["type"] == "drop" && pred(v));
    }

    /// Waits until any output line satisfying `pred` has been printed.
    pub fn wait_for_line(&self, what: &str, pred: impl Fn(&Value) -> bool) {
        assert!(
            self.saw_line_within(Duration::from_secs(20), pred),
            "no output line for {what} within 20 s; got: {:?}; netdrop stderr: {}",
            self.lines.lock().unwrap(),
            self.stderr.lock().unwrap()
        );
    }

    /// Waits until `n` drop records satisfying `pred` have been printed.
    pub fn wait_for_drops(&self, what: &str, n: usize, pred: impl Fn(&Value) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let got = self
                .lines
                .lock()
                .unwrap()
                .iter()
                .filter(|v| v["type"] == "drop" && pred(v))
                .count();
            if got >= n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "only {got} of {n} drop records for {what} within 20 s; got: {:?}; netdrop stderr: {}",
                self.lines.lock().unwrap(),
                self.stderr.lock().unwrap()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// True once an output line satisfying `pred` has been printed, false if none was
    /// within `timeout`.
    pub fn saw_line_within(&self, timeout: Duration, pred: impl Fn(&Value) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.lines.lock().unwrap().iter().any(&pred) {
                return true;
            }
            thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// What netdrop wrote to stderr so far.
    pub fn stderr_so_far(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// True once netdrop's stderr contains `text`, false if it did not within `timeout`.
    pub fn stderr_within(&self, timeout: Duration, text: &str) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.stderr.lock().unwrap().contains(text) {
                return true;
            }
            thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// How many JSON lines have been printed so far.
    pub fn lines_so_far(&self) -> usize {
        self.lines.lock().unwrap().len()
    }

    /// Sends `sig` to netdrop.
    pub fn signal(&self, sig: i32) {
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// Stops netdrop with SIGINT and collects everything it printed.
    pub fn stop(self) -> Report {
        self.stop_with(libc::SIGINT)
    }

    /// Stops netdrop with `sig` and collects everything it printed.
    pub fn stop_with(mut self, sig: i32) -> Report {
        self.signal(sig);
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("netdrop did not exit within 30 s of signal {sig}");
            }
            thread::sleep(Duration::from_millis(20));
        };
        for r in self.readers.drain(..) {
            r.join().expect("reader thread");
        }
        let lines = std::mem::take(&mut *self.lines.lock().unwrap());
        let of = |t: &str| {
            lines
                .iter()
                .filter(|v| v["type"] == t)
                .cloned()
                .collect::<Vec<_>>()
        };
        Report {
            status,
            lines: lines.clone(),
            drops: of("drop"),
            lost: of("lost"),
            counters: of("counter"),
            summary: of("summary").pop(),
            stderr: self.stderr.lock().unwrap().clone(),
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `prog args`, panicking with its output on failure. No shell: in the VM guest a
/// busybox shell would run its own `ip` applet instead of iproute2.
pub fn run_cmd(prog: &str, args: &[&str]) -> String {
    let out = Command::new(prog)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {prog}: {e}"));
    assert!(
        out.status.success(),
        "`{prog} {}` failed: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `ip ARGS`.
pub fn ip(args: &[&str]) -> String {
    run_cmd("ip", args)
}

/// Sets a sysctl of the current namespace, e.g. `sysctl("net.ipv4.ip_forward", "1")`.
pub fn sysctl(key: &str, value: &str) {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    std::fs::write(&path, value).unwrap_or_else(|e| panic!("{path}: {e}"));
}

/// A closed local port: bound, then released.
pub fn closed_udp_port(ip: &str) -> u16 {
    UdpSocket::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Sends one datagram from `src` (port 0 = any) to `dst`; returns the source address used.
pub fn udp_send(src: &str, dst: SocketAddr) -> SocketAddr {
    let s = UdpSocket::bind(src).expect("bind UDP source");
    s.send_to(b"netdrop-test", dst).expect("send datagram");
    s.local_addr().unwrap()
}

/// Sends `n` datagrams, each from a new socket (a new flow), to `port` on 127.0.0.1.
pub fn udp_to_loopback(port: u16, n: usize) {
    for _ in 0..n {
        udp_send(
            "127.0.0.1:0",
            SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), port),
        );
    }
}

/// Connects from `src_ip` to `dst`, expecting a refusal (a SYN to a closed port); returns
/// the exact source address the kernel used.
pub fn tcp_refused(src_ip: IpAddr, dst: SocketAddr) -> SocketAddr {
    let family = if dst.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain socket calls on a descriptor we own, with correctly sized addresses.
    unsafe {
        let fd = libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let (src, len) = sockaddr(SocketAddr::new(src_ip, 0));
        assert_eq!(
            libc::bind(fd, (&raw const src).cast(), len),
            0,
            "bind: {}",
            std::io::Error::last_os_error()
        );
        let mut local: libc::sockaddr_storage = std::mem::zeroed();
        let mut local_len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        libc::getsockname(fd, (&raw mut local).cast(), &mut local_len);
        let (to, len) = sockaddr(dst);
        let rc = libc::connect(fd, (&raw const to).cast(), len);
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        assert!(
            rc != 0 && err.kind() == std::io::ErrorKind::ConnectionRefused,
            "connect {dst}: {err}"
        );
        let port = match family {
            libc::AF_INET => {
                u16::from_be((*(&raw const local).cast::<libc::sockaddr_in>()).sin_port)
            }
            _ => u16::from_be((*(&raw const local).cast::<libc::sockaddr_in6>()).sin6_port),
        };
        SocketAddr::new(src_ip, port)
    }
}

/// A socket address for libc calls.
pub fn sockaddr(a: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is large enough for either family; all-zero is valid.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match a {
        SocketAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(v4.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: writing a sockaddr_in into storage that is big enough.
            unsafe { (&raw mut ss).cast::<libc::sockaddr_in>().write(sin) };
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.ip().octets(),
                },
                sin6_scope_id: 0,
            };
            // SAFETY: as above.
            unsafe { (&raw mut ss).cast::<libc::sockaddr_in6>().write(sin6) };
            size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}

/// `GET path` on 127.0.0.1:`port`; returns (status line, headers, body).
pub fn http_get(port: u16, path: &str, accept: Option<&str>) -> (String, String, String) {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("connect :{port}: {e}"));
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    write!(
        conn,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{accept}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    conn.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    (status.to_owned(), headers.to_owned(), body.to_owned())
}

/// A TCP port nobody listens on right now.
pub fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A value from `/proc/net/snmp` (e.g. `Udp`, `NoPorts`) of the current thread's namespace.
pub fn snmp(table: &str, field: &str) -> u64 {
    proc_net_pairs("snmp", table, field)
}

/// A value from `/proc/net/netstat` (e.g. `TcpExt`, `ListenOverflows`) of the current
/// thread's namespace.
pub fn netstat(table: &str, field: &str) -> u64 {
    proc_net_pairs("netstat", table, field)
}

fn proc_net_pairs(file: &str, table: &str, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/thread-self/net/{file}")).unwrap();
    let mut lines = text.lines();
    while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
        if names.starts_with(&format!("{table}:")) {
            let i = names
                .split_whitespace()
                .position(|n| n == field)
                .unwrap_or_else(|| panic!("no {field} in /proc/net/{file}"));
            return values.split_whitespace().nth(i).unwrap().parse().unwrap();
        }
    }
    panic!("no {table} in /proc/net/{file}")
}

/// Inode of a network namespace file (what netdrop reports as `netns.inode`).
pub fn netns_inode(path: &str) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .ino()
}

/// A network namespace joined to the current one by a veth pair:
/// `host_if` (HOST_ADDR/24) here, `ns_if` (NS_ADDR/24) inside.
pub struct NetnsPair {
    pub name: String,
    pub host_if: String,
    pub ns_if: String,
    pub host_addr: String,
    pub ns_addr: String,
}

impl NetnsPair {
    /// Creates namespace `nd-<tag>` with veth `nd<tag>h` / `nd<tag>n` on 10.<n>.0.0/24.
    pub fn new(tag: &str, subnet: u8) -> Self {
        let p = Self {
            name: format!("nd-{tag}"),
            host_if: format!("nd{tag}h"),
            ns_if: format!("nd{tag}n"),
            host_addr: format!("10.{subnet}.0.1"),
            ns_addr: format!("10.{subnet}.0.2"),
        };
        let _ = Command::new("ip").args(["netns", "del", &p.name]).output();
        let _ = Command::new("ip")
            .args(["link", "del", &p.host_if])
            .output();
        let (n, h, i) = (p.name.as_str(), p.host_if.as_str(), p.ns_if.as_str());
        ip(&["netns", "add", n]);
        ip(&[
            "link", "add", h, "type", "veth", "peer", "name", i, "netns", n,
        ]);
        ip(&["addr", "add", &format!("{}/24", p.host_addr), "dev", h]);
        ip(&["link", "set", h, "up"]);
        ip(&[
            "-n",
            n,
            "addr",
            "add",
            &format!("{}/24", p.ns_addr),
            "dev",
            i,
        ]);
        ip(&["-n", n, "link", "set", i, "up"]);
        ip(&["-n", n, "link", "set", "lo", "up"]);
        p
    }

    /// Inode of the namespace.
    pub fn inode(&self) -> u64 {
        netns_inode(&format!("/run/netns/{}", self.name))
    }

    /// Runs one nft command inside the namespace, e.g. `add table inet t`.
    pub fn nft(&self, command: &str) {
        ip(&["netns", "exec", &self.name, "nft", command]);
    }

    /// Sets a sysctl inside the namespace.
    pub fn sysctl(&self, key: &str, value: &str) {
        self.inside(|| sysctl(key, value));
    }

    /// Makes 192.0.2.1 a source that fails reverse-path checks in the namespace: the
    /// namespace routes 192.0.2.0/24 via lo, the host side owns 192.0.2.1, and, since the
    /// namespace will not answer ARP for that spoofed source, the host side gets the
    /// namespace's MAC statically.
    pub fn route_back_elsewhere(&self) {
        ip(&[
            "-n",
            &self.name,
            "route",
            "add",
            "192.0.2.0/24",
            "dev",
            "lo",
        ]);
        ip(&["addr", "add", "192.0.2.1/32", "dev", &self.host_if]);
        let mac = self.ns_mac();
        ip(&[
            "neigh",
            "replace",
            &self.ns_addr,
            "lladdr",
            &mac,
            "dev",
            &self.host_if,
            "nud",
            "permanent",
        ]);
    }

    /// The MAC address of the namespace side of the veth.
    pub fn ns_mac(&self) -> String {
        let out = ip(&["-n", &self.name, "-br", "link", "show", &self.ns_if]);
        out.split_whitespace()
            .nth(2)
            .expect("MAC in `ip -br link`")
            .to_owned()
    }

    /// Runs `f` on a thread that has entered the namespace (sockets it creates live there).
    pub fn inside<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.name);
        thread::scope(|s| {
            s.spawn(|| {
                let ns = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
                // SAFETY: setns on this thread only, with a valid namespace fd.
                let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
                f()
            })
            .join()
            .expect("thread in namespace")
        })
    }
}

impl Drop for NetnsPair {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
    }
}

/// A TCP listener on `addr` inside `ns` whose accept queue holds one connection (backlog
/// 1); nobody accepts, so further connection attempts overflow it.
pub fn backlog1_listener(ns: &NetnsPair, addr: SocketAddr) -> std::net::TcpListener {
    ns.inside(|| {
        let l = std::net::TcpListener::bind(addr).expect("listen in namespace");
        // std listens with a large backlog; shrink it to 1.
        // SAFETY: listen(2) on a listening socket we own.
        assert_eq!(unsafe { libc::listen(l.as_raw_fd(), 1) }, 0);
        l
    })
}

/// A TCP connect to `dst` that does not wait for the handshake.
pub fn nonblocking_connect(dst: SocketAddr) -> std::net::TcpStream {
    let family = if dst.is_ipv6() {
        libc::AF_INET6
    } else {
        libc::AF_INET
    };
    // SAFETY: socket/connect on a descriptor we own, owned by the TcpStream right after;
    // EINPROGRESS is expected.
    unsafe {
        let fd = libc::socket(
            family,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        );
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let (to, len) = sockaddr(dst);
        if libc::connect(fd, (&raw const to).cast(), len) != 0 {
            let e = std::io::Error::last_os_error();
            assert_eq!(
                e.raw_os_error(),
                Some(libc::EINPROGRESS),
                "connect {dst}: {e}"
            );
        }
        <std::net::TcpStream as std::os::fd::FromRawFd>::from_raw_fd(fd)
    }
}

/// Field access with a readable panic: a missing key fails the test (a `null` that is
/// present is returned), so an assert on a misspelled or vanished path cannot pass.
pub fn field<'a>(v: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(v, |cur, k| {
        cur.get(k)
            .unwrap_or_else(|| panic!("no `{k}` (of `{path}`) in {v:#}"))
    })
}

/// All drop records for traffic to `dport`.
pub fn to_port(drops: &[Value], dport: u16) -> Vec<&Value> {
    drops
        .iter()
        .filter(|d| d["packet"]["dport"] == dport)
        .collect()
}

/// Sends a TCP SYN from `src` (any address: the IP header is ours) to `dst`.
pub fn raw_syn(src: std::net::Ipv4Addr, sport: u16, dst: std::net::Ipv4Addr, dport: u16) {
    let mut pkt = [0u8; 40];
    // IPv4 header: version 4, IHL 5, total length 40, TTL 64, protocol TCP; the kernel
    // fills in the checksum and the id.
    pkt[0] = 0x45;
    pkt[2..4].copy_from_slice(&40u16.to_be_bytes());
    pkt[8] = 64;
    pkt[9] = 6;
    pkt[12..16].copy_from_slice(&src.octets());
    pkt[16..20].copy_from_slice(&dst.octets());
    // TCP header: ports, sequence, data offset 5, SYN, window.
    pkt[20..22].copy_from_slice(&sport.to_be_bytes());
    pkt[22..24].copy_from_slice(&dport.to_be_bytes());
    pkt[24..28].copy_from_slice(&0x1000_0000u32.wrapping_add(sport.into()).to_be_bytes());
    pkt[32] = 5 << 4;
    pkt[33] = 0x02;
    pkt[34..36].copy_from_slice(&64240u16.to_be_bytes());
    // Checksum over the pseudo-header and the TCP header.
    let mut sum: u32 = 0;
    let mut add = |b: &[u8]| {
        for c in b.chunks(2) {
            sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
        }
    };
    add(&src.octets());
    add(&dst.octets());
    add(&[0, 6, 0, 20]);
    add(&pkt[20..40]);
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    pkt[36..38].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    // SAFETY: a raw socket we own and close; the buffer outlives the call.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW);
        assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
        let (sa, len) = sockaddr(SocketAddr::new(dst.into(), 0));
        let n = libc::sendto(
            fd,
            pkt.as_ptr().cast(),
            pkt.len(),
            0,
            (&raw const sa).cast(),
            len,
        );
        assert_eq!(n, 40, "sendto: {}", std::io::Error::last_os_error());
        libc::close(fd);
    }
}

/// Sets `SO_RCVBUF` of `s` (the kernel doubles it and raises it to its minimum).
pub fn set_rcvbuf(s: &std::net::UdpSocket, bytes: i32) {
    // SAFETY: setsockopt with a valid fd and an int option.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&raw const bytes).cast(),
            size_of::<i32>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_RCVBUF: {}", std::io::Error::last_os_error());
}

/// CPUs online now: those that can run softirqs and drop packets (more than
/// `available_parallelism` when this process's affinity or cgroup is narrower).
pub fn online_cpus() -> usize {
    // SAFETY: plain libc query.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(n).ok().filter(|&n| n > 0).unwrap_or(1)
}

/// Pins the calling thread to `cpu`.
pub fn pin_to_cpu(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET and sched_setaffinity on the
    // calling thread (pid 0) only read and write that set.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        let rc = libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        assert_eq!(
            rc,
            0,
            "cannot pin to CPU {cpu}: {}",
            std::io::Error::last_os_error()
        );
    }
}
