//! Sockets as the kernel's sock_diag netlink interface (`NETLINK_SOCK_DIAG`, the one `ss`
//! uses) lists them: TCP listeners with their accept queue, and sockets with the kernel's
//! own per-socket drop count (`sk_drops`). Available on every kernel netdrop supports; it
//! needs no eBPF hook, so it also names the listeners whose overflowing accept queue drops
//! SYNs without `kfree_skb` (Linux 6.1 to 6.18 free those with `consume_skb`).
//!
//! The request is built and the replies are parsed as plain bytes ([`request`], [`parse`]),
//! so tests feed byte fixtures; [`listeners`] and [`dropping`] do the socket I/O, in a
//! given network namespace.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    path::Path,
};

/// `SOCK_DIAG_BY_FAMILY`: the message type of requests and replies.
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `INET_DIAG_SKMEMINFO`: the attribute carrying `sk_meminfo[]`.
const INET_DIAG_SKMEMINFO: u16 = 7;
/// `SK_MEMINFO_DROPS`: index of `sk_drops` in `sk_meminfo[]` (Linux 3.16+).
const SK_MEMINFO_DROPS: usize = 8;
/// `TCP_LISTEN` in `enum tcp_state`.
const TCP_LISTEN: u8 = 10;
/// `TCP_TIME_WAIT` and `TCP_NEW_SYN_RECV`: mini sockets without memory info.
const TCP_TIME_WAIT: u8 = 6;
const TCP_NEW_SYN_RECV: u8 = 12;

const NLMSG_HDR: usize = 16;
/// `struct inet_diag_req_v2`.
const REQ_LEN: usize = 56;
/// `struct inet_diag_msg`.
const MSG_LEN: usize = 72;

/// At most this many sockets are read per dump; the rest of a larger dump is discarded
/// (and [`Dump::truncated`] says so), so a host with millions of sockets costs bounded time
/// and memory.
pub const MAX_SOCKETS: usize = 65536;

/// Replies are read into a buffer of this size (the kernel fills up to it per read).
const RECV_BUF: usize = 64 << 10;

/// A reply that does not come within this many seconds ends the dump (with an error).
const RECV_TIMEOUT_S: u8 = 2;

/// Transport protocol of a dump.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    /// `tcp` or `udp`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
        }
    }

    fn number(self) -> u8 {
        match self {
            Self::Tcp => libc::IPPROTO_TCP as u8,
            Self::Udp => libc::IPPROTO_UDP as u8,
        }
    }
}

/// One socket of a dump.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiagSocket {
    /// The protocol the dump asked for (replies do not carry it).
    pub protocol: Protocol,
    /// `AF_INET` or `AF_INET6`.
    pub family: u8,
    /// TCP state (`10` = LISTEN); UDP sockets report `7` (close) or `1` (connected).
    pub state: u8,
    pub local: IpAddr,
    pub local_port: u16,
    pub remote: IpAddr,
    pub remote_port: u16,
    /// For a listener, the accept queue's current length; otherwise bytes not yet read.
    pub rqueue: u32,
    /// For a listener, the accept queue's limit: min(listen() backlog, net.core.somaxconn).
    pub wqueue: u32,
    pub uid: u32,
    /// Socket inode: `socket:[INODE]` in `/proc/PID/fd`.
    pub inode: u32,
    /// The kernel's `sk_drops`, when memory info was asked for and present.
    pub drops: Option<u32>,
}

impl DiagSocket {
    /// True for a TCP listener.
    pub fn is_listener(&self) -> bool {
        self.state == TCP_LISTEN
    }
}

/// What one dump returned.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dump {
    pub sockets: Vec<DiagSocket>,
    /// More than [`MAX_SOCKETS`] sockets: the rest were not read.
    pub truncated: bool,
}

/// Bytes of a dump request for `family` / `protocol` sockets in the states of the bit set
/// `states`, asking for memory info (`sk_drops`) when `meminfo`.
pub fn request(family: u8, protocol: Protocol, states: u32, meminfo: bool, seq: u32) -> Vec<u8> {
    let len = NLMSG_HDR + REQ_LEN;
    let mut b = Vec::with_capacity(len);
    b.extend_from_slice(&(len as u32).to_ne_bytes());
    b.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    b.extend_from_slice(&((libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16).to_ne_bytes());
    b.extend_from_slice(&seq.to_ne_bytes());
    b.extend_from_slice(&0u32.to_ne_bytes());
    b.push(family);
    b.push(protocol.number());
    b.push(if meminfo {
        1 << (INET_DIAG_SKMEMINFO - 1)
    } else {
        0
    });
    b.push(0);
    b.extend_from_slice(&states.to_ne_bytes());
    // The socket id (48 bytes) stays zero: a dump matches every socket.
    b.resize(len, 0);
    b
}

/// What a buffer of replies held.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// More messages follow in the next read.
    More,
    /// `NLMSG_DONE`: the dump is complete.
    Done,
    /// The kernel answered with an error (a positive errno).
    Error(i32),
}

/// Parses one read's worth of netlink messages, appending sockets to `out`. Messages too
/// short for their type are skipped; a malformed length ends the buffer.
pub fn parse(buf: &[u8], protocol: Protocol, out: &mut Vec<DiagSocket>) -> Parsed {
    let mut rest = buf;
    while rest.len() >= NLMSG_HDR {
        let len = u32_at(rest, 0) as usize;
        let kind = u16::from_ne_bytes([rest[4], rest[5]]);
        if len < NLMSG_HDR || len > rest.len() {
            break;
        }
        let body = &rest[NLMSG_HDR..len];
        match kind {
            k if k == libc::NLMSG_DONE as u16 => return Parsed::Done,
            k if k == libc::NLMSG_ERROR as u16 => {
                let errno = if body.len() >= 4 {
                    -(u32_at(body, 0) as i32)
                } else {
                    libc::EPROTO
                };
                // An error of 0 is an acknowledgement: nothing more follows.
                return if errno == 0 {
                    Parsed::Done
                } else {
                    Parsed::Error(errno)
                };
            }
            SOCK_DIAG_BY_FAMILY => {
                if let Some(s) = parse_msg(body, protocol) {
                    out.push(s);
                }
            }
            _ => {}
        }
        rest = &rest[align4(len).min(rest.len())..];
    }
    Parsed::More
}

/// One `struct inet_diag_msg` and its attributes.
fn parse_msg(b: &[u8], protocol: Protocol) -> Option<DiagSocket> {
    if b.len() < MSG_LEN {
        return None;
    }
    let family = b[0];
    let addr = |off: usize| -> Option<IpAddr> {
        match i32::from(family) {
            libc::AF_INET => Some(IpAddr::V4(Ipv4Addr::new(
                b[off],
                b[off + 1],
                b[off + 2],
                b[off + 3],
            ))),
            libc::AF_INET6 => {
                let mut a = [0u8; 16];
                a.copy_from_slice(&b[off..off + 16]);
                Some(IpAddr::V6(Ipv6Addr::from(a)))
            }
            _ => None,
        }
    };
    // inet_diag_sockid starts at 4: sport, dport (big endian), src[16], dst[16], if, cookie.
    let mut s = DiagSocket {
        protocol,
        family,
        state: b[1],
        local_port: u16::from_be_bytes([b[4], b[5]]),
        remote_port: u16::from_be_bytes([b[6], b[7]]),
        local: addr(8)?,
        remote: addr(24)?,
        rqueue: u32_at(b, 56),
        wqueue: u32_at(b, 60),
        uid: u32_at(b, 64),
        inode: u32_at(b, 68),
        drops: None,
    };
    let mut attrs = &b[MSG_LEN..];
    while attrs.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([attrs[0], attrs[1]]));
        let kind = u16::from_ne_bytes([attrs[2], attrs[3]]);
        if len < 4 || len > attrs.len() {
            break;
        }
        if kind == INET_DIAG_SKMEMINFO {
            let data = &attrs[4..len];
            let off = SK_MEMINFO_DROPS * 4;
            if data.len() >= off + 4 {
                s.drops = Some(u32_at(data, off));
            }
        }
        attrs = &attrs[align4(len).min(attrs.len())..];
    }
    Some(s)
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// TCP listeners (IPv4 and IPv6) of the current thread's network namespace.
pub fn listeners_here() -> std::io::Result<Dump> {
    dump_here(Protocol::Tcp, 1 << TCP_LISTEN, false)
}

/// TCP listeners of the namespace behind `ns_file`, with their accept queues.
pub fn listeners(ns_file: &Path) -> std::io::Result<Dump> {
    super::netns::run_in(ns_file, listeners_here)?
}

/// TCP sockets (every state but the mini sockets of TIME_WAIT and SYN_RECV) and UDP
/// sockets of the namespace behind `ns_file`, with each one's `sk_drops`.
pub fn dropping(ns_file: &Path) -> std::io::Result<Dump> {
    super::netns::run_in(ns_file, dropping_here)?
}

/// [`dropping`] for the current thread's namespace.
pub fn dropping_here() -> std::io::Result<Dump> {
    let tcp_states = !((1u32 << TCP_TIME_WAIT) | (1u32 << TCP_NEW_SYN_RECV));
    let mut all = dump_here(Protocol::Tcp, tcp_states, true)?;
    let udp = dump_here(Protocol::Udp, u32::MAX, true)?;
    let room = MAX_SOCKETS.saturating_sub(all.sockets.len());
    all.truncated |= udp.truncated || udp.sockets.len() > room;
    all.sockets.extend(udp.sockets.into_iter().take(room));
    Ok(all)
}

/// Dumps IPv4 then IPv6 sockets of one protocol in the current thread's namespace.
fn dump_here(protocol: Protocol, states: u32, meminfo: bool) -> std::io::Result<Dump> {
    let mut dump = Dump::default();
    for (seq, family) in [libc::AF_INET, libc::AF_INET6].into_iter().enumerate() {
        let req = request(family as u8, protocol, states, meminfo, seq as u32 + 1);
        if !dump_one(&req, protocol, &mut dump)? {
            break;
        }
    }
    Ok(dump)
}

/// Sends one request and reads its replies into `dump`; false once the cap was reached.
fn dump_one(req: &[u8], protocol: Protocol, dump: &mut Dump) -> std::io::Result<bool> {
    let sock = open()?;
    send(&sock, req)?;
    let mut buf = vec![0u8; RECV_BUF];
    loop {
        // SAFETY: `buf` is valid for writes of its length for the duration of the call.
        let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Ok(true);
        }
        let parsed = parse(&buf[..n as usize], protocol, &mut dump.sockets);
        if dump.sockets.len() > MAX_SOCKETS {
            // Closing the socket discards what the kernel has not sent yet.
            dump.sockets.truncate(MAX_SOCKETS);
            dump.truncated = true;
            return Ok(false);
        }
        match parsed {
            Parsed::More => {}
            Parsed::Done => return Ok(true),
            Parsed::Error(errno) => return Err(std::io::Error::from_raw_os_error(errno)),
        }
    }
}

fn open() -> std::io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the descriptor is owned right below.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            libc::NETLINK_SOCK_DIAG,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let tv = libc::timeval {
        tv_sec: RECV_TIMEOUT_S.into(),
        tv_usec: 0,
    };
    // SAFETY: `tv` is a valid timeval for the size given.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&raw const tv).cast(),
            size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(sock)
}

fn send(sock: &OwnedFd, req: &[u8]) -> std::io::Result<()> {
    // SAFETY: an all-zero sockaddr_nl addresses the kernel.
    let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    // SAFETY: `req` and `kernel` are valid for reads of the sizes given.
    let n = unsafe {
        libc::sendto(
            sock.as_raw_fd(),
            req.as_ptr().cast(),
            req.len(),
            0,
            (&raw const kernel).cast(),
            size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `SOCK_DIAG_BY_FAMILY` reply as the kernel writes it.
    fn reply(family: u8, state: u8, local: &[u8], port: u16, queues: (u32, u32)) -> Vec<u8> {
        reply_with(family, state, local, port, queues, None)
    }

    fn reply_with(
        family: u8,
        state: u8,
        local: &[u8],
        port: u16,
        (rqueue, wqueue): (u32, u32),
        drops: Option<u32>,
    ) -> Vec<u8> {
        let mut msg = vec![family, state, 0, 0];
        msg.extend_from_slice(&port.to_be_bytes());
        msg.extend_from_slice(&0u16.to_be_bytes());
        let mut src = [0u8; 16];
        src[..local.len()].copy_from_slice(local);
        msg.extend_from_slice(&src);
        msg.extend_from_slice(&[0u8; 16 + 4 + 8]);
        for v in [0u32, rqueue, wqueue, 1000, 4242] {
            msg.extend_from_slice(&v.to_ne_bytes());
        }
        assert_eq!(msg.len(), MSG_LEN);
        if let Some(d) = drops {
            // Nine u32s of sk_meminfo (SK_MEMINFO_VARS is 9 on 6.x), drops last.
            let mut mem = [0u32; 9];
            mem[SK_MEMINFO_DROPS] = d;
            msg.extend_from_slice(&(4 + 36u16).to_ne_bytes());
            msg.extend_from_slice(&INET_DIAG_SKMEMINFO.to_ne_bytes());
            mem.iter()
                .for_each(|v| msg.extend_from_slice(&v.to_ne_bytes()));
        }
        nlmsg(SOCK_DIAG_BY_FAMILY, &msg)
    }

    fn nlmsg(kind: u16, body: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&((NLMSG_HDR + body.len()) as u32).to_ne_bytes());
        b.extend_from_slice(&kind.to_ne_bytes());
        b.extend_from_slice(&[0u8; 10]);
        b.extend_from_slice(body);
        b.resize(align4(b.len()), 0);
        b
    }

    #[test]
    fn request_asks_for_a_dump_of_listeners() {
        let r = request(
            libc::AF_INET6 as u8,
            Protocol::Tcp,
            1 << TCP_LISTEN,
            true,
            7,
        );
        assert_eq!(r.len(), 72);
        assert_eq!(u32_at(&r, 0), 72);
        assert_eq!(u16::from_ne_bytes([r[4], r[5]]), SOCK_DIAG_BY_FAMILY);
        assert_eq!(u16::from_ne_bytes([r[6], r[7]]), 0x301);
        assert_eq!(u32_at(&r, 8), 7);
        assert_eq!(&r[16..20], &[libc::AF_INET6 as u8, 6, 1 << 6, 0]);
        assert_eq!(u32_at(&r, 20), 1 << 10);
        assert!(r[24..].iter().all(|&b| b == 0));
    }

    #[test]
    fn listeners_of_both_families_are_parsed() {
        let mut buf = reply(
            libc::AF_INET as u8,
            TCP_LISTEN,
            &[10, 0, 0, 2],
            8080,
            (2, 1),
        );
        let mut v6 = [0u8; 16];
        v6[15] = 1;
        buf.extend(reply(libc::AF_INET6 as u8, TCP_LISTEN, &v6, 443, (0, 4096)));
        let mut out = Vec::new();
        assert_eq!(parse(&buf, Protocol::Tcp, &mut out), Parsed::More);
        assert_eq!(out.len(), 2);
        let s = &out[0];
        assert!(s.is_listener());
        assert_eq!(s.local, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)));
        assert_eq!((s.local_port, s.rqueue, s.wqueue), (8080, 2, 1));
        assert_eq!((s.uid, s.inode, s.drops), (1000, 4242, None));
        assert_eq!(out[1].local, IpAddr::V6(Ipv6Addr::LOCALHOST));
        assert_eq!((out[1].local_port, out[1].wqueue), (443, 4096));
    }

    #[test]
    fn meminfo_gives_sk_drops() {
        let buf = reply_with(libc::AF_INET as u8, 7, &[0; 4], 53, (0, 0), Some(17));
        let mut out = Vec::new();
        parse(&buf, Protocol::Udp, &mut out);
        assert_eq!(out[0].drops, Some(17));
        assert_eq!(out[0].protocol, Protocol::Udp);
        assert!(!out[0].is_listener());
    }

    #[test]
    fn done_error_and_garbage() {
        let mut out = Vec::new();
        assert_eq!(
            parse(
                &nlmsg(libc::NLMSG_DONE as u16, &[0; 4]),
                Protocol::Tcp,
                &mut out
            ),
            Parsed::Done
        );
        let err = nlmsg(libc::NLMSG_ERROR as u16, &(-libc::EPERM).to_ne_bytes());
        assert_eq!(
            parse(&err, Protocol::Tcp, &mut out),
            Parsed::Error(libc::EPERM)
        );
        let ack = nlmsg(libc::NLMSG_ERROR as u16, &0i32.to_ne_bytes());
        assert_eq!(parse(&ack, Protocol::Tcp, &mut out), Parsed::Done);
        // A short message is skipped, a length past the buffer ends it, nothing panics.
        assert_eq!(
            parse(
                &nlmsg(SOCK_DIAG_BY_FAMILY, &[2, 10]),
                Protocol::Tcp,
                &mut out
            ),
            Parsed::More
        );
        let mut bad = reply(libc::AF_INET as u8, TCP_LISTEN, &[1, 2, 3, 4], 1, (0, 1));
        bad[0] = 0xff;
        assert_eq!(parse(&bad, Protocol::Tcp, &mut out), Parsed::More);
        assert_eq!(parse(&[1, 2, 3], Protocol::Tcp, &mut out), Parsed::More);
        // An unknown family has no address to read.
        assert_eq!(
            parse(
                &reply(1, TCP_LISTEN, &[], 1, (0, 1)),
                Protocol::Tcp,
                &mut out
            ),
            Parsed::More
        );
        assert!(out.is_empty());
    }

    #[test]
    fn own_namespace_is_dumped() {
        // sock_diag dumps need no privileges.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let uport = u.local_addr().unwrap().port();
        let d = listeners_here().unwrap();
        let mine = d.sockets.iter().find(|s| s.local_port == port).unwrap();
        assert!(mine.is_listener());
        assert_eq!(mine.local, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(mine.rqueue, 0);
        assert!(mine.wqueue > 0 && mine.inode > 0);
        if let Ok(l6) = std::net::TcpListener::bind("[::1]:0") {
            let port6 = l6.local_addr().unwrap().port();
            let d = listeners_here().unwrap();
            let v6 = d.sockets.iter().find(|s| s.local_port == port6).unwrap();
            assert_eq!(v6.local, IpAddr::V6(Ipv6Addr::LOCALHOST));
            assert_eq!(i32::from(v6.family), libc::AF_INET6);
        }
        let d = dropping_here().unwrap();
        let udp = d
            .sockets
            .iter()
            .find(|s| s.local_port == uport && s.protocol == Protocol::Udp)
            .unwrap();
        assert_eq!(udp.drops, Some(0));
        assert!(d.sockets.iter().any(|s| s.local_port == port));
    }
}
