//! Recordings (`netdrop record`): an incident kept in a file that `watch`, `stats` and
//! `top` read back with `--from`, on this machine or another one.
//!
//! The format is JSON lines. Line 1 is a [`Header`] (`{"netdrop_recording": 1, ...}`);
//! every further line is a [`Record`] tagged by `type`. Drops are stored as `watch --json`
//! writes them, with every name resolved (kernel symbols, devices, namespaces, tasks),
//! since the machine that reads the file has other symbols and namespaces. Lines are
//! flushed at every batch and every second, so a recording cut short (SIGKILL, a full
//! disk, a crash) keeps what was written up to then.

use std::io::{self, Write};

use netdrop_common::DropEvent;
use serde::{Deserialize, Serialize};

use super::{
    CounterNotice, ListenerNotice, LostNotice, Summary,
    sink::{Context, Dropped, Sink},
    stats::StatsReport,
};
use crate::{
    diagnose::evidence::{Knob, Objects},
    event::DropRecord,
};

/// The format version this netdrop writes and the newest it reads. Readers refuse a
/// newer one: its records may mean something they cannot know.
///
/// Version 2 added the `objects` record; version 1 files are read as before.
pub const VERSION: u32 = 2;

/// Line 1 of a recording: what was recorded, where and how.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Header {
    /// The format version ([`VERSION`]).
    pub netdrop_recording: u32,
    /// The netdrop version that wrote the file.
    pub netdrop: String,
    /// `uname -r` of the recorded machine.
    pub kernel: String,
    /// The hook families attached (`id: how`).
    pub hooks: Vec<String>,
    /// When recording started, RFC 3339 UTC.
    pub started: String,
    /// CLOCK_REALTIME minus CLOCK_MONOTONIC on the recorded machine, in nanoseconds: turns
    /// the `mono_ns` of records into wall-clock time.
    pub clock_offset_ns: i64,
    /// The filters given to `record`, as on its command line (they ran in the kernel:
    /// every count in the file is of the drops they kept).
    pub filters: Vec<String>,
    /// How often stats snapshots were written, in seconds.
    pub interval_s: f64,
}

/// Settings that `diagnose` reads, as they were at one moment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    pub time: String,
    /// `start` or `end`.
    pub when: String,
    pub knobs: Vec<Knob>,
}

/// The last line of a complete recording.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct End {
    pub time: String,
    /// Why recording stopped: `duration` or `signal` (SIGINT, SIGTERM).
    pub stopped_by: String,
}

/// A line after the header.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[expect(
    clippy::large_enum_variant,
    reason = "records are read and written one at a time: boxing the common one would add an allocation per drop for no memory saved"
)]
pub enum Record {
    /// A dropped packet, as `watch --json` writes it.
    Drop(DropRecord),
    /// Events the kernel could not deliver (the exact counts still include them).
    Lost(LostNotice),
    /// A kernel drop counter that grew.
    Counter(CounterNotice),
    /// A listener blamed for accept-queue drops.
    Listener(ListenerNotice),
    /// Exact in-kernel counts for one grouping (`report.by`), cumulative since recording
    /// started: `total` of each group is the count since start, `interval` its growth
    /// since the previous snapshot. One per grouping every interval, and at the end.
    Stats { report: StatsReport, mono_ns: u64 },
    /// Settings `diagnose` reads.
    Settings(Settings),
    /// What `diagnose` reads about the objects the recorded drops involve, read at the end
    /// by the functions live `diagnose` uses: settings of the namespaces where drops
    /// happened, the nftables rules matching sampled NETFILTER_DROPs, `ip route get`
    /// answers for destinations without a route, statistics of dropping qdiscs (since
    /// version 2).
    Objects { time: String, objects: Objects },
    /// The run's summary, as `watch --json` ends with, and its per-reason histogram over
    /// the whole recording (what `watch` prints last).
    Summary {
        summary: Summary,
        histogram: StatsReport,
    },
    /// The end marker: a recording without one was cut short.
    End(End),
}

/// Writes a recording: a [`Sink`] like the text and JSON ones, so `record` runs the same
/// loop as `watch` with one more kind of record (stats snapshots, settings).
pub struct RecordingSink<W: Write> {
    out: W,
    /// Lines not yet written, so a batch of drops is one write.
    buf: Vec<u8>,
}

impl<W: Write> RecordingSink<W> {
    /// Writes `header` at once, so even an empty recording says what it is.
    pub fn new(mut out: W, header: &Header) -> io::Result<Self> {
        serde_json::to_writer(&mut out, header)?;
        out.write_all(b"\n")?;
        out.flush()?;
        Ok(Self {
            out,
            buf: Vec::with_capacity(64 << 10),
        })
    }

    /// Adds one record to the buffer (written at the next [`Sink::flush`]).
    pub fn record(&mut self, r: &Record) -> io::Result<()> {
        serde_json::to_writer(&mut self.buf, r)?;
        self.buf.push(b'\n');
        if self.buf.len() >= 64 << 10 {
            self.write_buf()?;
        }
        Ok(())
    }

    fn write_buf(&mut self) -> io::Result<()> {
        let res = self.out.write_all(&self.buf);
        self.buf.clear();
        res
    }

    /// The output, once everything is written.
    #[cfg(test)]
    pub fn into_inner(self) -> W {
        self.out
    }
}

impl<W: Write> Sink for RecordingSink<W> {
    /// The stack names the netfilter hook of a NETFILTER_DROP; the stack itself is not
    /// recorded (`record` has no `--stack`).
    fn wants_stack(&self, _ev: &DropEvent, _show_stack: bool) -> bool {
        true
    }

    fn drop(&mut self, d: &Dropped<'_>, cx: &mut Context<'_>) -> io::Result<()> {
        let record = cx
            .enricher
            .record(d.event, d.stack, false, cx.conntrack_hook);
        self.record(&Record::Drop(record))
    }

    fn lost(&mut self, n: &LostNotice) -> io::Result<()> {
        self.record(&Record::Lost(n.clone()))
    }

    fn counter(&mut self, n: &CounterNotice) -> io::Result<()> {
        self.record(&Record::Counter(n.clone()))
    }

    fn listener(&mut self, n: &ListenerNotice) -> io::Result<()> {
        self.record(&Record::Listener(n.clone()))
    }

    fn report(&mut self, r: &StatsReport, mono_ns: u64) -> io::Result<()> {
        self.record(&Record::Stats {
            report: r.clone(),
            mono_ns,
        })
    }

    fn summary(&mut self, s: &Summary, histogram: &StatsReport) -> io::Result<()> {
        self.record(&Record::Summary {
            summary: s.clone(),
            histogram: histogram.clone(),
        })
    }

    fn flush(&mut self) -> io::Result<()> {
        self.write_buf()?;
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        event::Enricher,
        kernel::reasons::Reasons,
        source,
        testdata::{self, udp_event},
        time::Clock,
    };

    #[test]
    fn what_the_sink_writes_the_reader_reads_back() {
        let header = Header {
            netdrop_recording: VERSION,
            netdrop: "0.1.0".into(),
            kernel: "6.18.0".into(),
            hooks: vec!["kfree_skb: tp_btf/kfree_skb".into()],
            started: "2026-12-02T00:00:00.000000000Z".into(),
            clock_offset_ns: 7,
            filters: vec!["--port".into(), "9".into()],
            interval_s: 1.0,
        };
        let mut sink = RecordingSink::new(Vec::new(), &header).unwrap();
        let mut enricher = Enricher::new(
            Reasons::none(),
            &testdata::path("kallsyms/6.1-with-veth"),
            &testdata::path(""),
        );
        let clock = Clock::with_offset(7);
        let mut cx = Context {
            enricher: &mut enricher,
            clock: &clock,
            show_stack: false,
            conntrack_hook: false,
        };
        let ev = udp_event();
        let d = Dropped {
            event: &ev,
            stack: None,
            capture: None,
        };
        sink.drop(&d, &mut cx).unwrap();
        let lost = LostNotice {
            time: "t".into(),
            lost: 2,
            lost_total: 2,
            missed: 0,
            missed_total: 0,
        };
        sink.lost(&lost).unwrap();
        // Nothing but the header reaches the output before a flush.
        assert_eq!(sink.out.iter().filter(|&&b| b == b'\n').count(), 1);
        sink.record(&Record::End(End {
            time: "t".into(),
            stopped_by: "signal".into(),
        }))
        .unwrap();
        sink.flush().unwrap();
        let bytes = sink.into_inner();

        let mut r = source::from_bytes(&bytes).unwrap();
        assert_eq!(r.header, header);
        let Some(Record::Drop(drop)) = r.next_record().unwrap() else {
            panic!("a drop first")
        };
        assert_eq!(drop.packet.src.as_deref(), Some("127.0.0.1"));
        assert_eq!(
            (drop.packet.sport, drop.packet.dport),
            (Some(41234), Some(9))
        );
        assert_eq!(drop.device.as_ref().map(|d| d.name.as_str()), Some("lo"));
        assert_eq!(r.next_record().unwrap(), Some(Record::Lost(lost)));
        assert!(matches!(r.next_record().unwrap(), Some(Record::End(_))));
        assert_eq!(r.next_record().unwrap(), None);
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    }
}
