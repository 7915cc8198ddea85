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
use crate::{diagnose::evidence::Knob, event::DropRecord};

/// The format version this netdrop writes and the newest it reads. Readers refuse a
/// newer one: its records may mean something they cannot know.
pub const VERSION: u32 = 1;

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
    /// Why recording stopped: `duration`, `signal`, or `count`.
    pub stopped_by: String,
}

/// A line after the header.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[expect(
    clippy::large_enum_variant,
    reason = "written and read one at a time; boxing would add an allocation per drop"
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
    /// Stacks are not recorded: `record` has no `--stack`.
    fn wants_stack(&self, _ev: &DropEvent, _show_stack: bool) -> bool {
        false
    }

    fn drop(&mut self, d: &Dropped<'_>, cx: &mut Context<'_>) -> io::Result<()> {
        let record = cx.enricher.record(d.event, None, false, cx.conntrack_hook);
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
