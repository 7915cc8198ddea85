//! Where records come from when not from the running kernel: a recording written by
//! `netdrop record` (see [`crate::output::recording`]). [`Recording`] yields the records
//! the live path produces (drops with their names resolved, lost-event notices, counter
//! notices, exact stats snapshots), so `watch`, `stats` and `top` print them with the same
//! code whether they come from hooks or from a file.
//!
//! A recording is untrusted input: it may come from another machine or be cut short.
//! Every string from it that reaches a terminal goes through the text formatters, which
//! escape control characters.

use std::{
    fs::File,
    io::{BufRead, BufReader, Read},
    net::IpAddr,
    path::{Path, PathBuf},
};

use netdrop_common::{AddrMatch, proto};

use crate::{
    error::Error,
    event::{self, DropRecord},
    filter::FilterSpec,
    output::{
        printable::printable,
        recording::{Header, Record, VERSION},
    },
};

/// Lines longer than this are not records netdrop writes: refuse them rather than read
/// without bound.
const MAX_LINE: usize = 16 << 20;

/// An open recording: its header, then its records one at a time.
pub struct Recording<R> {
    pub header: Header,
    input: R,
    path: PathBuf,
    /// Lines read so far (the header is line 1).
    line: usize,
    ended: bool,
    done: bool,
    /// What the reader said about an unfinished recording, for tests.
    pub warnings: Vec<String>,
    /// Print warnings on stderr as they come (off in unit tests).
    pub warn_on_stderr: bool,
}

impl Recording<BufReader<File>> {
    /// Opens `path` and reads its header.
    pub fn open(path: &Path) -> Result<Self, Error> {
        let file = File::open(path).map_err(Error::io(format!(
            "cannot open the recording {}",
            path.display()
        )))?;
        Self::new(BufReader::new(file), path)
    }
}

impl<R: BufRead> Recording<R> {
    /// Reads the header of the recording `input` (named `path` in messages).
    pub fn new(mut input: R, path: &Path) -> Result<Self, Error> {
        let not_one = || {
            Error::BadArgument(format!(
                "{} is not a netdrop recording (its first line is not a recording header; \
                 `netdrop record --output FILE` writes them)",
                path.display()
            ))
        };
        let first = read_line(&mut input, path)?.ok_or_else(not_one)?;
        let value: serde_json::Value = serde_json::from_slice(&first).map_err(|_| not_one())?;
        let version = value
            .get("netdrop_recording")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(not_one)?;
        if version > u64::from(VERSION) {
            return Err(Error::BadArgument(format!(
                "{} is a version {version} recording, newer than this netdrop reads (version \
                 {VERSION} and older): read it with a newer netdrop",
                path.display()
            )));
        }
        let header: Header = serde_json::from_value(value).map_err(|e| {
            Error::BadArgument(format!(
                "{} has a damaged recording header ({}): it cannot be read",
                path.display(),
                printable(&e.to_string())
            ))
        })?;
        Ok(Self {
            header,
            input,
            path: path.to_owned(),
            line: 1,
            ended: false,
            done: false,
            warnings: Vec::new(),
            warn_on_stderr: true,
        })
    }

    fn warn(&mut self, msg: String) {
        if self.warn_on_stderr {
            eprintln!("netdrop: {msg}");
        }
        self.warnings.push(msg);
    }

    /// The next record; `None` at the end. A last line cut in the middle (the recorder
    /// was killed while writing it) and a missing end marker are said on stderr, not
    /// errors: what was written before stays readable.
    pub fn next_record(&mut self) -> Result<Option<Record>, Error> {
        if self.done {
            return Ok(None);
        }
        loop {
            let Some(line) = read_line(&mut self.input, &self.path)? else {
                self.done = true;
                if !self.ended {
                    let msg = format!(
                        "{} has no end marker: the recording was cut short (killed, or the \
                         disk filled); showing what it holds",
                        self.path.display()
                    );
                    self.warn(msg);
                }
                return Ok(None);
            };
            self.line += 1;
            let complete = line.last() == Some(&b'\n');
            if line.iter().all(u8::is_ascii_whitespace) {
                if complete {
                    continue;
                }
                self.done = true;
                return Ok(None);
            }
            match serde_json::from_slice::<Record>(&line) {
                Ok(r) => {
                    if matches!(r, Record::End(_)) {
                        self.ended = true;
                    }
                    return Ok(Some(r));
                }
                Err(_) if !complete => {
                    self.done = true;
                    let msg = format!(
                        "{} ends in a line cut short (line {}, the recording was stopped while \
                         writing it): ignored it",
                        self.path.display(),
                        self.line
                    );
                    self.warn(msg);
                    if !self.ended {
                        let msg =
                            "the recording has no end marker: showing what it holds".to_owned();
                        self.warn(msg);
                    }
                    return Ok(None);
                }
                Err(e) => {
                    return Err(Error::BadArgument(format!(
                        "line {} of {} is not a record this netdrop knows ({}): the file is \
                         damaged or not a recording",
                        self.line,
                        self.path.display(),
                        printable(&e.to_string())
                    )));
                }
            }
        }
    }
}

/// One line with its newline, or without one at the end of the file; `None` at the end.
fn read_line(input: &mut impl BufRead, path: &Path) -> Result<Option<Vec<u8>>, Error> {
    let mut line = Vec::new();
    let n = input
        .by_ref()
        .take(MAX_LINE as u64 + 1)
        .read_until(b'\n', &mut line)
        .map_err(Error::io(format!("cannot read {}", path.display())))?;
    if n == 0 {
        return Ok(None);
    }
    if line.len() > MAX_LINE {
        return Err(Error::BadArgument(format!(
            "{} holds a line longer than {} MiB: it is not a netdrop recording",
            path.display(),
            MAX_LINE >> 20
        )));
    }
    Ok(Some(line))
}

/// The filters of `watch`, applied in user space to recorded drops with the semantics
/// the kernel applies to live ones (`netdrop-ebpf/src/filter.rs`).
pub struct RecordFilter {
    spec: FilterSpec,
    /// `--netns` as given: an inode number, or a namespace name as recorded.
    netns: Option<String>,
}

impl RecordFilter {
    /// `spec` without its namespace (names there are the recorded machine's), and the
    /// `--netns` argument as given.
    pub fn new(spec: FilterSpec, netns: Option<String>) -> Self {
        Self { spec, netns }
    }

    /// True when no filter was given.
    pub fn is_empty(&self) -> bool {
        self.netns.is_none()
            && self.spec.reasons.is_empty()
            && self.spec.exclude_reasons.is_empty()
            && !self.spec.selects_packets()
    }

    /// True when counter records pass: counters cannot be narrowed to packets (as live).
    pub fn keeps_counters(&self) -> bool {
        !self.spec.selects_packets()
    }

    /// True when `r` passes every filter.
    pub fn keeps(&self, r: &DropRecord) -> bool {
        let s = &self.spec;
        let name = |n: &str| {
            let up = n.trim().to_ascii_uppercase();
            up.strip_prefix("SKB_DROP_REASON_")
                .unwrap_or(&up)
                .to_owned()
        };
        let is = |n: &String| name(n) == r.reason.name || n.parse() == Ok(r.reason.code);
        if !s.reasons.is_empty()
            && !s
                .reasons
                .iter()
                .filter(|n| !s.exclude_reasons.contains(n))
                .any(is)
        {
            return false;
        }
        if s.exclude_reasons.iter().any(is) {
            return false;
        }
        if let Some(want) = &self.netns {
            let ns = r.netns.as_ref();
            let hit = match want.parse::<u32>() {
                Ok(inode) => ns.is_some_and(|n| n.inode == inode),
                Err(_) => ns.is_some_and(|n| n.name.as_deref() == Some(want.as_str())),
            };
            if !hit {
                return false;
            }
        }
        if let Some(want) = s.iface {
            let len = want.iter().position(|&b| b == 0).unwrap_or(want.len());
            if r.device.as_ref().map(|d| d.name.as_bytes()) != Some(&want[..len]) {
                return false;
            }
        }
        self.keeps_packet(&r.packet)
    }

    fn keeps_packet(&self, p: &event::Packet) -> bool {
        let s = &self.spec;
        let l3 = match p.family.as_deref() {
            Some("ipv4") => proto::ETH_P_IP,
            Some("ipv6") => proto::ETH_P_IPV6,
            Some("arp") => proto::ETH_P_ARP,
            Some(other) => other
                .strip_prefix("0x")
                .and_then(|h| u16::from_str_radix(h, 16).ok())
                .unwrap_or(0),
            None => 0,
        };
        let l4 = p.protocol.as_deref().and_then(event::protocol_number);
        if let Some(want) = s.proto {
            if want.l3 != 0 && l3 != want.l3 {
                return false;
            }
            if want.l4 != 0 && l4 != Some(want.l4) {
                return false;
            }
        }
        if let Some(port) = s.port {
            let has_ports = l4.is_some_and(proto::has_ports);
            if !has_ports || (p.sport != Some(port) && p.dport != Some(port)) {
                return false;
            }
        }
        let family = match l3 {
            proto::ETH_P_IP => 4,
            proto::ETH_P_IPV6 => 6,
            _ => 0,
        };
        let addr = |a: &Option<String>| a.as_deref().and_then(|a| a.parse::<IpAddr>().ok());
        let (src, dst) = (addr(&p.src), addr(&p.dst));
        if let Some(m) = &s.host
            && !addr_in(m, family, src)
            && !addr_in(m, family, dst)
        {
            return false;
        }
        if let Some(m) = &s.src
            && !addr_in(m, family, src)
        {
            return false;
        }
        if let Some(m) = &s.dst
            && !addr_in(m, family, dst)
        {
            return false;
        }
        true
    }
}

/// True when `addr` (of the packet's `family`) lies in the prefix `m`, as the kernel side
/// decides it.
fn addr_in(m: &AddrMatch, family: u8, addr: Option<IpAddr>) -> bool {
    let Some(addr) = addr else { return false };
    if m.family != family {
        return false;
    }
    let mut bytes = [0u8; 16];
    match addr {
        IpAddr::V4(a) => bytes[..4].copy_from_slice(&a.octets()),
        IpAddr::V6(a) => bytes = a.octets(),
    }
    bytes
        .iter()
        .zip(m.mask.iter())
        .zip(m.addr.iter())
        .all(|((b, mask), net)| b & mask == *net)
}

/// For tests: a recording from bytes.
#[cfg(test)]
pub fn from_bytes(bytes: &[u8]) -> Result<Recording<BufReader<&[u8]>>, Error> {
    let mut r = Recording::new(BufReader::new(bytes), Path::new("test.ndr"))?;
    r.warn_on_stderr = false;
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::{parse_prefix, parse_proto};

    fn header() -> String {
        r#"{"netdrop_recording":1,"netdrop":"0.1.0","kernel":"6.18.0","hooks":["kfree_skb: tp_btf"],"started":"2026-12-02T00:00:00.000000000Z","clock_offset_ns":1000,"filters":[],"interval_s":1.0}"#.to_owned()
    }

    fn drop_line(sport: u16, dport: u16, reason: &str) -> String {
        format!(
            r#"{{"type":"drop","time":"2026-12-02T00:00:01.000000000Z","mono_ns":5,"cpu":0,"reason":{{"name":"{reason}","code":3,"subsystem":null}},"location":{{"address":"0xffffffff81000000","symbol":"__udp4_lib_rcv","offset":1212,"module":null}},"packet":{{"length":11,"family":"ipv4","protocol":"udp","src":"10.1.0.1","dst":"10.1.0.2","sport":{sport},"dport":{dport},"tcp_flags":null,"icmp_type":null,"icmp_code":null,"fragment":false}},"device":{{"ifindex":2,"name":"veth0"}},"netns":{{"inode":4026532000,"name":"blue","source":"device"}},"running_task":{{"pid":1,"tid":1,"comm":"x"}},"stack":null}}"#
        )
    }

    fn all(bytes: &str) -> (Vec<Record>, Vec<String>) {
        let mut r = from_bytes(bytes.as_bytes()).unwrap();
        let mut out = Vec::new();
        while let Some(x) = r.next_record().unwrap() {
            out.push(x);
        }
        (out, r.warnings)
    }

    #[test]
    fn reads_a_complete_recording_without_warnings() {
        let text = format!(
            "{}\n{}\n{}\n",
            header(),
            drop_line(41000, 9, "NO_SOCKET"),
            r#"{"type":"end","time":"t","stopped_by":"signal"}"#
        );
        let (records, warnings) = all(&text);
        assert_eq!(records.len(), 2);
        let Record::Drop(d) = &records[0] else {
            panic!("{:?}", records[0])
        };
        assert_eq!(d.packet.dport, Some(9));
        assert_eq!(d.netns.as_ref().unwrap().name.as_deref(), Some("blue"));
        assert!(matches!(records[1], Record::End(_)));
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn a_cut_last_line_and_a_missing_end_are_said_not_fatal() {
        let whole = drop_line(41000, 9, "NO_SOCKET");
        let text = format!("{}\n{whole}\n{}", header(), &whole[..whole.len() / 2]);
        let (records, warnings) = all(&text);
        assert_eq!(records.len(), 1);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("line 3") && warnings[0].contains("cut short"));
        assert!(warnings[1].contains("no end marker"));

        let (records, warnings) = all(&format!("{}\n{whole}\n", header()));
        assert_eq!(records.len(), 1);
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("no end marker"), "{warnings:?}");
    }

    #[test]
    fn damage_in_the_middle_is_an_error_naming_the_line() {
        let text = format!(
            "{}\n{}\nnot json\n{}\n",
            header(),
            drop_line(1, 9, "NO_SOCKET"),
            drop_line(2, 9, "NO_SOCKET")
        );
        let mut r = from_bytes(text.as_bytes()).unwrap();
        assert!(r.next_record().unwrap().is_some());
        let e = r.next_record().unwrap_err().to_string();
        assert!(e.starts_with("line 3 of test.ndr is not a record"), "{e}");
    }

    #[test]
    fn newer_versions_and_other_files_are_refused_in_one_sentence() {
        let newer = header().replace(r#""netdrop_recording":1"#, r#""netdrop_recording":3"#);
        let e = from_bytes(format!("{newer}\n").as_bytes())
            .err()
            .unwrap()
            .to_string();
        assert_eq!(
            e,
            "test.ndr is a version 3 recording, newer than this netdrop reads (version 2 and \
             older): read it with a newer netdrop"
        );
        for other in ["", "hello\n", "{\"type\":\"drop\"}\n", "\u{1b}[2J\n"] {
            let e = from_bytes(other.as_bytes()).err().unwrap().to_string();
            assert!(e.starts_with("test.ndr is not a netdrop recording"), "{e}");
        }
    }

    fn filter(f: impl FnOnce(&mut FilterSpec), netns: Option<&str>) -> RecordFilter {
        let mut s = FilterSpec::default();
        f(&mut s);
        RecordFilter::new(s, netns.map(str::to_owned))
    }

    fn record(sport: u16, dport: u16, reason: &str) -> DropRecord {
        match serde_json::from_str(&drop_line(sport, dport, reason)).unwrap() {
            Record::Drop(d) => d,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn filters_match_recorded_drops_as_the_kernel_matches_live_ones() {
        let r = record(41000, 9, "NO_SOCKET");
        assert!(filter(|_| {}, None).is_empty());
        assert!(filter(|_| {}, None).keeps(&r));
        assert!(filter(|s| s.port = Some(9), None).keeps(&r));
        assert!(filter(|s| s.port = Some(41000), None).keeps(&r));
        assert!(!filter(|s| s.port = Some(10), None).keeps(&r));
        assert!(filter(|s| s.proto = Some(parse_proto("udp").unwrap()), None).keeps(&r));
        assert!(filter(|s| s.proto = Some(parse_proto("ipv4").unwrap()), None).keeps(&r));
        assert!(!filter(|s| s.proto = Some(parse_proto("tcp").unwrap()), None).keeps(&r));
        assert!(!filter(|s| s.proto = Some(parse_proto("ipv6").unwrap()), None).keeps(&r));
        assert!(
            filter(
                |s| s.host = Some(parse_prefix("10.1.0.0/24").unwrap()),
                None
            )
            .keeps(&r)
        );
        assert!(filter(|s| s.dst = Some(parse_prefix("10.1.0.2").unwrap()), None).keeps(&r));
        assert!(!filter(|s| s.src = Some(parse_prefix("10.1.0.2").unwrap()), None).keeps(&r));
        assert!(!filter(|s| s.host = Some(parse_prefix("::/0").unwrap()), None).keeps(&r));
        assert!(filter(|s| s.reasons = vec!["no_socket".into()], None).keeps(&r));
        assert!(filter(|s| s.reasons = vec!["3".into()], None).keeps(&r));
        assert!(!filter(|s| s.exclude_reasons = vec!["NO_SOCKET".into()], None).keeps(&r));
        assert!(!filter(|s| s.reasons = vec!["NETFILTER_DROP".into()], None).keeps(&r));
        assert!(filter(|_| {}, Some("blue")).keeps(&r));
        assert!(filter(|_| {}, Some("4026532000")).keeps(&r));
        assert!(!filter(|_| {}, Some("red")).keeps(&r));
        let iface = |n: &str| crate::filter::parse_iface(n).unwrap();
        assert!(filter(|s| s.iface = Some(iface("veth0")), None).keeps(&r));
        assert!(!filter(|s| s.iface = Some(iface("veth")), None).keeps(&r));
        assert!(!filter(|s| s.port = Some(9), None).keeps_counters());
        assert!(filter(|s| s.reasons = vec!["x".into()], None).keeps_counters());
    }
}
