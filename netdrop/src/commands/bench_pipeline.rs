//! `netdrop bench-pipeline` (hidden): how many events per second decoding, enrichment and
//! output sustain on one core, fed from synthetic ring-buffer records instead of the kernel.
//! The records go through the same [`Writer`] and sink that `watch` drains the ring buffer
//! into, and the output into a writer that counts and discards. `cargo xtask bench --pipeline` runs it.

use std::{
    cell::Cell,
    io::{self, Write},
    path::Path,
    rc::Rc,
    time::Instant,
};

use netdrop_common::{DropEvent, flag, proto};

use crate::{
    cli::{BenchPipelineArgs, PipelineFormat},
    commands::watch::Writer,
    error::Error,
    event::{self, Enricher},
    kernel::{Kernel, reasons::Reasons},
    output::{Format, sink},
};

/// Distinct records cycled through: enough to vary flows, few enough to stay in cache as
/// a ring buffer's recent records do.
const DISTINCT: usize = 4096;

/// Records per drain, as [`Writer`] is drained from the ring buffer.
const DRAIN: usize = 16 << 10;

pub fn run(args: &BenchPipelineArgs) -> Result<(), Error> {
    // Reason names from this kernel when its BTF is readable; the figures hardly depend
    // on them.
    let reasons = Kernel::inspect(None).map_or_else(|_| Reasons::none(), |k| k.reasons);
    let codes: Vec<u32> = reasons
        .iter()
        .map(|(code, _)| code)
        .filter(|&c| c != 0 && Some(c) != reasons.lookup("NETFILTER_DROP").ok())
        .take(6)
        .collect();
    let records = synthetic(DISTINCT, &codes);
    let enricher = Enricher::new(reasons, Path::new("/proc/kallsyms"), Path::new("/"));
    let format = match args.format {
        PipelineFormat::Json => Format::Json,
        PipelineFormat::Text => Format::Text,
    };
    let discard = Discard::default();
    let written = discard.bytes.clone();
    let mut sink = Writer::new(
        sink::for_format(format, discard, &enricher),
        enricher,
        None,
        false,
    );
    let size = size_of::<DropEvent>();

    // Decoding alone, to see what share of the time it takes.
    let started = Instant::now();
    for i in 0..args.events as usize {
        let at = (i % DISTINCT) * size;
        std::hint::black_box(event::decode(std::hint::black_box(&records[at..at + size])));
    }
    let decode_s = started.elapsed().as_secs_f64();

    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let mut left = args.events as usize;
    let mut next = 0;
    while left > 0 {
        sink.start_batch();
        for _ in 0..left.min(DRAIN) {
            let at = next * size;
            next = (next + 1) % DISTINCT;
            let Some(ev) = event::decode(&records[at..at + size]) else {
                continue;
            };
            sink.write_event(&ev, None, || None);
        }
        left = left.saturating_sub(DRAIN);
        sink.finish_batch();
    }
    let wall_s = started.elapsed().as_secs_f64();
    let cpu_s = cpu_seconds() - cpu_before;
    let (delivered, bytes) = (sink.delivered(), written.get());
    println!(
        "{{\"format\":\"{}\",\"events\":{delivered},\"bytes\":{bytes},\"wall_s\":{wall_s:.3},\"cpu_s\":{cpu_s:.3},\"events_per_s\":{:.0},\"decode_only_s\":{decode_s:.3}}}",
        match format {
            Format::Json => "json",
            Format::Text => "text",
        },
        delivered as f64 / wall_s.max(1e-9),
    );
    Ok(())
}

/// `n` ring-buffer records as the kernel side writes them, back to back: UDP and TCP over
/// IPv4 from varied 127.0.0.0/8 sources and ports, some IPv6, some ICMP, the given reason
/// codes in turn, a few locations, tasks and namespaces.
pub fn synthetic(n: usize, reasons: &[u32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(n * size_of::<DropEvent>());
    for i in 0..n {
        let k = i as u32;
        let mut ev = DropEvent {
            timestamp_ns: 1_000_000_000 + u64::from(k) * 487,
            location: 0xffff_ffff_aa48_bc60 + u64::from(k % 5) * 0x40,
            reason: reasons.get(i % reasons.len().max(1)).copied().unwrap_or(2),
            cpu: k % 2,
            pid: 1000 + k % 7,
            tid: 1000 + k % 7,
            netns: 4_026_531_840 + k % 3,
            ifindex: 1,
            skb_len: 28 + k % 1400,
            stack_id: -1,
            flags: flag::HAS_REASON
                | flag::HAS_DEVICE
                | flag::HAS_NETNS
                | flag::HAS_L3
                | flag::HAS_L4,
            l3_proto: proto::ETH_P_IP,
            l4_proto: if k.is_multiple_of(4) { 6 } else { 17 },
            tcp_flags: 0x02,
            sport: 32768 + (k % 28000) as u16,
            dport: [53, 80, 443, 9, 8080][i % 5],
            ..Default::default()
        };
        match k % 16 {
            15 => {
                ev.l3_proto = proto::ETH_P_IPV6;
                ev.saddr = std::net::Ipv6Addr::LOCALHOST.octets();
                ev.daddr = std::net::Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 1, k as u16).octets();
            }
            14 => {
                ev.l4_proto = 1;
                ev.icmp_type = 8;
                ev.saddr[..4].copy_from_slice(&[127, 0, 0, 1]);
                ev.daddr[..4].copy_from_slice(&[127, 0, 0, 1]);
            }
            _ => {
                ev.saddr[..4].copy_from_slice(&[127, (k >> 16) as u8, (k >> 8) as u8, k as u8]);
                ev.daddr[..4].copy_from_slice(&[127, 0, 0, 1]);
            }
        }
        let comm: &[u8] = [&b"nc"[..], b"dnsmasq", b"curl"][i % 3];
        ev.comm[..comm.len()].copy_from_slice(comm);
        ev.ifname[..2].copy_from_slice(b"lo");
        // SAFETY: DropEvent is plain old data with explicit padding fields.
        let bytes = unsafe {
            std::slice::from_raw_parts((&raw const ev).cast::<u8>(), size_of::<DropEvent>())
        };
        out.extend_from_slice(bytes);
    }
    out
}

/// An output that counts the bytes written (in a counter the caller keeps a handle to)
/// and keeps none.
#[derive(Default)]
pub struct Discard {
    pub bytes: Rc<Cell<u64>>,
}

impl Write for Discard {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.bytes.set(self.bytes.get() + buf.len() as u64);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// User + system CPU seconds of this process.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the struct it is given.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    let secs = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    secs(ru.ru_utime) + secs(ru.ru_stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_records_decode_and_become_json_lines() {
        let records = synthetic(64, &[2, 3]);
        let size = size_of::<DropEvent>();
        assert_eq!(records.len(), 64 * size);
        let enricher = Enricher::new(
            Reasons::none(),
            &crate::testdata::path("kallsyms/6.1-with-veth"),
            Path::new("/nonexistent"),
        );
        let json = sink::JsonSink::new(Vec::new(), &enricher);
        let mut sink = Writer::new(json, enricher, None, false);
        for chunk in records.chunks(size) {
            let ev = event::decode(chunk).expect("a whole record");
            sink.write_event(&ev, None, || None);
        }
        sink.finish_batch();
        assert_eq!(sink.delivered(), 64);
        let out = String::from_utf8(sink.into_sink().into_inner()).unwrap();
        let lines: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect();
        assert_eq!(lines.len(), 64);
        assert_eq!(lines[1]["packet"]["src"], "127.0.0.1");
        assert_eq!(lines[1]["packet"]["protocol"], "udp");
        assert_eq!(lines[15]["packet"]["family"], "ipv6");
    }
}
