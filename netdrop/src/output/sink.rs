//! Where the records of a run go: one [`Sink`] per output format. The commands produce
//! drops, notices, reports and a summary and hand each to their sink; a format is one
//! implementation (text and JSON here, pcap-ng in [`super::pcapng`]), and [`Tee`] sends
//! the same records to several.

use std::io::{self, Write};

use netdrop_common::DropEvent;

use super::{
    CounterNotice, JsonLine, ListenerNotice, LostNotice, OverBudgetNotice, Summary,
    SuppressedNotice, json,
    json::fast::DropWriter,
    stats::{self, StatsReport},
    text,
};
use crate::{
    event::{Capture, Enricher},
    time::Clock,
};

/// JSON lines are written in chunks of about this size.
const BATCH_BYTES: usize = 64 << 10;

/// What every sink may need besides the record itself: names for kernel values, the
/// clock, and the run's options.
pub struct Context<'a> {
    /// Reason names, symbols, namespace names.
    pub enricher: &'a mut Enricher,
    /// Kernel (monotonic) timestamps to wall-clock time.
    pub clock: &'a Clock,
    /// `--stack`: show each drop's kernel stack.
    pub show_stack: bool,
    /// The conntrack hook is attached: NETFILTER_DROPs say whether conntrack refused them.
    pub conntrack_hook: bool,
}

/// One drop as the kernel reported it.
pub struct Dropped<'a> {
    /// The record the kernel wrote.
    pub event: &'a DropEvent,
    /// Its kernel stack, when it has one and the sink asked for it
    /// ([`Sink::wants_stack`]).
    pub stack: Option<&'a [u64]>,
    /// Its first bytes, when the kernel captured them.
    pub capture: Option<&'a Capture>,
}

/// An output format. Methods write or buffer; [`Sink::flush`] makes everything written so
/// far reach the output (the end of a batch of drops, a notice, a report). A record a
/// format has no place for (notices in pcap-ng) is skipped: the provided methods do nothing.
pub trait Sink {
    /// Whether [`Sink::drop`] would use the kernel stack of `ev`: fetching one costs a map
    /// lookup, so the caller asks first.
    fn wants_stack(&self, _ev: &DropEvent, _show_stack: bool) -> bool {
        true
    }

    /// Called before a batch of drops.
    fn start_batch(&mut self) {}

    /// One dropped packet.
    fn drop(&mut self, d: &Dropped<'_>, cx: &mut Context<'_>) -> io::Result<()>;

    /// Events the kernel could not deliver since the last notice.
    fn lost(&mut self, _n: &LostNotice) -> io::Result<()> {
        Ok(())
    }

    /// A kernel drop counter that grew.
    fn counter(&mut self, _n: &CounterNotice) -> io::Result<()> {
        Ok(())
    }

    /// A listener blamed for accept-queue drops.
    fn listener(&mut self, _n: &ListenerNotice) -> io::Result<()> {
        Ok(())
    }

    /// Drops of one flow and reason the rate limit kept from the ring ("N more like
    /// this"). Formats that show packets only (pcap-ng) have nothing to write.
    fn suppressed(&mut self, _n: &SuppressedNotice) -> io::Result<()> {
        Ok(())
    }

    /// Drops of one reason and location the event budget counted without examining them.
    fn over_budget(&mut self, _n: &OverBudgetNotice) -> io::Result<()> {
        Ok(())
    }

    /// One `stats` report, for counts taken at CLOCK_MONOTONIC `mono_ns`.
    fn report(&mut self, _r: &StatsReport, _mono_ns: u64) -> io::Result<()> {
        Ok(())
    }

    /// The end of a `watch` run, with its per-reason histogram.
    fn summary(&mut self, _s: &Summary, _histogram: &StatsReport) -> io::Result<()> {
        Ok(())
    }

    /// Writes what is buffered and flushes the output.
    fn flush(&mut self) -> io::Result<()>;
}

/// The sink for `format` (text or JSON lines) writing to `out`.
pub fn for_format<W: Write + 'static>(
    format: super::Format,
    out: W,
    enricher: &Enricher,
) -> Box<dyn Sink> {
    match format {
        super::Format::Text => Box::new(TextSink::new(out, enricher.clock())),
        super::Format::Json => Box::new(JsonSink::new(out, enricher)),
    }
}

impl<S: Sink + ?Sized> Sink for Box<S> {
    fn wants_stack(&self, ev: &DropEvent, show_stack: bool) -> bool {
        (**self).wants_stack(ev, show_stack)
    }
    fn start_batch(&mut self) {
        (**self).start_batch();
    }
    fn drop(&mut self, d: &Dropped<'_>, cx: &mut Context<'_>) -> io::Result<()> {
        (**self).drop(d, cx)
    }
    fn lost(&mut self, n: &LostNotice) -> io::Result<()> {
        (**self).lost(n)
    }
    fn counter(&mut self, n: &CounterNotice) -> io::Result<()> {
        (**self).counter(n)
    }
    fn listener(&mut self, n: &ListenerNotice) -> io::Result<()> {
        (**self).listener(n)
    }
    fn suppressed(&mut self, n: &SuppressedNotice) -> io::Result<()> {
        (**self).suppressed(n)
    }
    fn over_budget(&mut self, n: &OverBudgetNotice) -> io::Result<()> {
        (**self).over_budget(n)
    }
    fn report(&mut self, r: &StatsReport, mono_ns: u64) -> io::Result<()> {
        (**self).report(r, mono_ns)
    }
    fn summary(&mut self, s: &Summary, histogram: &StatsReport) -> io::Result<()> {
        (**self).summary(s, histogram)
    }
    fn flush(&mut self) -> io::Result<()> {
        (**self).flush()
    }
}

/// One readable line per record, local time first; a table at the end.
pub struct TextSink<W: Write> {
    out: W,
    clock: Clock,
}

impl<W: Write> TextSink<W> {
    /// Lines to `out`, times in local time by `clock`.
    pub fn new(out: W, clock: Clock) -> Self {
        Self { out, clock }
    }

    /// The output, once everything is written.
    #[cfg(test)]
    pub fn into_inner(self) -> W {
        self.out
    }

    fn now(&self) -> String {
        self.clock.local_hms(Clock::monotonic_now())
    }
}

impl<W: Write> Sink for TextSink<W> {
    fn drop(&mut self, d: &Dropped<'_>, cx: &mut Context<'_>) -> io::Result<()> {
        let record = cx
            .enricher
            .record(d.event, d.stack, cx.show_stack, cx.conntrack_hook);
        let t = self.clock.local_hms(d.event.timestamp_ns);
        writeln!(self.out, "{}", text::drop_line(&record, &t))
    }

    fn lost(&mut self, n: &LostNotice) -> io::Result<()> {
        writeln!(self.out, "{}", text::lost_line(n))
    }

    fn counter(&mut self, n: &CounterNotice) -> io::Result<()> {
        let t = self.now();
        writeln!(self.out, "{}", text::counter_line(n, &t))
    }

    fn listener(&mut self, n: &ListenerNotice) -> io::Result<()> {
        let t = self.now();
        writeln!(self.out, "{}", text::listener_line(n, &t))
    }

    fn suppressed(&mut self, n: &SuppressedNotice) -> io::Result<()> {
        let t = self.now();
        writeln!(self.out, "{}", text::suppressed_line(n, &t))
    }

    fn over_budget(&mut self, n: &OverBudgetNotice) -> io::Result<()> {
        let t = self.now();
        writeln!(self.out, "{}", text::over_budget_line(n, &t))
    }

    fn report(&mut self, r: &StatsReport, mono_ns: u64) -> io::Result<()> {
        stats::write_text(&mut self.out, r, &self.clock.local_hms(mono_ns))
    }

    fn summary(&mut self, s: &Summary, histogram: &StatsReport) -> io::Result<()> {
        text::write_summary(&mut self.out, s, histogram)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// One JSON object per line (schema in README.md). Most drops take a fast writer that
/// reuses JSON fragments and gathers lines into large writes.
pub struct JsonSink<W: Write> {
    out: W,
    fast: DropWriter,
    /// Lines the fast writer produced, not yet written to `out`.
    batch: Vec<u8>,
}

impl<W: Write> JsonSink<W> {
    /// Lines to `out`; `enricher` tells which reason is this kernel's NETFILTER_DROP.
    pub fn new(out: W, enricher: &Enricher) -> Self {
        Self {
            out,
            fast: DropWriter::new(enricher.reasons.lookup("NETFILTER_DROP").ok()),
            batch: Vec::with_capacity(BATCH_BYTES + 4096),
        }
    }

    /// The output, once everything is written.
    #[cfg(test)]
    pub fn into_inner(self) -> W {
        self.out
    }

    fn write_batch(&mut self) -> io::Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let res = self.out.write_all(&self.batch);
        self.batch.clear();
        res
    }

    /// A line of its own, after the batched ones so the order holds.
    fn line(&mut self, line: &JsonLine) -> io::Result<()> {
        self.write_batch()?;
        json::write_line(&mut self.out, line)
    }
}

impl<W: Write> Sink for JsonSink<W> {
    fn wants_stack(&self, ev: &DropEvent, show_stack: bool) -> bool {
        !self.fast.handles(ev, show_stack)
    }

    /// Cached JSON fragments older than their lifetime are rebuilt.
    fn start_batch(&mut self) {
        self.fast.expire();
    }

    fn drop(&mut self, d: &Dropped<'_>, cx: &mut Context<'_>) -> io::Result<()> {
        if self.fast.handles(d.event, cx.show_stack) {
            self.fast
                .write(&mut self.batch, d.event, cx.enricher, cx.clock);
            if self.batch.len() >= BATCH_BYTES {
                return self.write_batch();
            }
            return Ok(());
        }
        let record = cx
            .enricher
            .record(d.event, d.stack, cx.show_stack, cx.conntrack_hook);
        self.line(&JsonLine::Drop(record))
    }

    fn lost(&mut self, n: &LostNotice) -> io::Result<()> {
        self.line(&JsonLine::Lost(n.clone()))
    }

    fn counter(&mut self, n: &CounterNotice) -> io::Result<()> {
        self.line(&JsonLine::Counter(n.clone()))
    }

    fn listener(&mut self, n: &ListenerNotice) -> io::Result<()> {
        self.line(&JsonLine::Listener(n.clone()))
    }

    fn suppressed(&mut self, n: &SuppressedNotice) -> io::Result<()> {
        self.line(&JsonLine::Suppressed(n.clone()))
    }

    fn over_budget(&mut self, n: &OverBudgetNotice) -> io::Result<()> {
        self.line(&JsonLine::OverBudget(n.clone()))
    }

    /// A `stats` report is one object per line, untagged (its own schema).
    fn report(&mut self, r: &StatsReport, _mono_ns: u64) -> io::Result<()> {
        self.write_batch()?;
        serde_json::to_writer(&mut self.out, r)?;
        self.out.write_all(b"\n")
    }

    fn summary(&mut self, s: &Summary, _histogram: &StatsReport) -> io::Result<()> {
        self.line(&JsonLine::Summary(s.clone()))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.write_batch()?;
        self.out.flush()
    }
}

/// The same records to several sinks (`watch --pcap FILE` writes text and pcap-ng). Every
/// sink gets each record; the first error is returned.
pub struct Tee(pub Vec<Box<dyn Sink>>);

impl Tee {
    fn each(&mut self, mut f: impl FnMut(&mut dyn Sink) -> io::Result<()>) -> io::Result<()> {
        let mut first = Ok(());
        for s in &mut self.0 {
            let res = f(s.as_mut());
            if first.is_ok() {
                first = res;
            }
        }
        first
    }
}

impl Sink for Tee {
    fn wants_stack(&self, ev: &DropEvent, show_stack: bool) -> bool {
        self.0.iter().any(|s| s.wants_stack(ev, show_stack))
    }
    fn start_batch(&mut self) {
        for s in &mut self.0 {
            s.start_batch();
        }
    }
    fn drop(&mut self, d: &Dropped<'_>, cx: &mut Context<'_>) -> io::Result<()> {
        self.each(|s| s.drop(d, cx))
    }
    fn lost(&mut self, n: &LostNotice) -> io::Result<()> {
        self.each(|s| s.lost(n))
    }
    fn counter(&mut self, n: &CounterNotice) -> io::Result<()> {
        self.each(|s| s.counter(n))
    }
    fn listener(&mut self, n: &ListenerNotice) -> io::Result<()> {
        self.each(|s| s.listener(n))
    }
    fn suppressed(&mut self, n: &SuppressedNotice) -> io::Result<()> {
        self.each(|s| s.suppressed(n))
    }
    fn over_budget(&mut self, n: &OverBudgetNotice) -> io::Result<()> {
        self.each(|s| s.over_budget(n))
    }
    fn report(&mut self, r: &StatsReport, mono_ns: u64) -> io::Result<()> {
        self.each(|s| s.report(r, mono_ns))
    }
    fn summary(&mut self, s: &Summary, histogram: &StatsReport) -> io::Result<()> {
        self.each(|x| x.summary(s, histogram))
    }
    fn flush(&mut self) -> io::Result<()> {
        self.each(|s| s.flush())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        kernel::reasons::Reasons,
        testdata::{self, udp_event},
    };

    fn enricher() -> Enricher {
        Enricher::new(
            Reasons::none(),
            &testdata::path("kallsyms/6.1-with-veth"),
            &testdata::path(""),
        )
    }

    fn lost() -> LostNotice {
        LostNotice {
            time: "t".into(),
            lost: 2,
            lost_total: 5,
            missed: 0,
            missed_total: 0,
        }
    }

    fn drop_into(sink: &mut dyn Sink, enricher: &mut Enricher, ev: &DropEvent) {
        let clock = Clock::with_offset(0);
        let mut cx = Context {
            enricher,
            clock: &clock,
            show_stack: false,
            conntrack_hook: false,
        };
        let d = Dropped {
            event: ev,
            stack: None,
            capture: None,
        };
        sink.drop(&d, &mut cx).unwrap();
    }

    #[test]
    fn json_notices_follow_the_batched_drops_they_came_after() {
        let mut e = enricher();
        let mut sink = JsonSink::new(Vec::new(), &e);
        let ev = udp_event();
        assert!(!sink.wants_stack(&ev, false), "the fast writer takes it");
        drop_into(&mut sink, &mut e, &ev);
        // Batched, not written yet.
        assert!(sink.out.is_empty());
        sink.lost(&lost()).unwrap();
        sink.flush().unwrap();
        let out = String::from_utf8(sink.into_inner()).unwrap();
        let types: Vec<String> = out
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["type"].to_string())
            .collect();
        assert_eq!(types, ["\"drop\"", "\"lost\""]);
    }

    #[test]
    fn text_writes_a_line_per_record_and_tee_feeds_every_sink() {
        let mut e = enricher();
        let mut text = TextSink::new(Vec::new(), Clock::with_offset(0));
        drop_into(&mut text, &mut e, &udp_event());
        text.lost(&lost()).unwrap();
        let out = String::from_utf8(text.into_inner()).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert!(
            lines[0].contains("127.0.0.1:41234 -> 127.0.0.1:9") && lines[0].contains("dev lo"),
            "{out}"
        );
        assert!(lines[1].starts_with("netdrop: 2 events lost"), "{out}");

        /// Counts what each sink of the tee received.
        struct Count(std::rc::Rc<std::cell::Cell<(u32, u32)>>);
        impl Sink for Count {
            fn drop(&mut self, _: &Dropped<'_>, _: &mut Context<'_>) -> io::Result<()> {
                let (d, f) = self.0.get();
                self.0.set((d + 1, f));
                Ok(())
            }
            fn flush(&mut self) -> io::Result<()> {
                let (d, f) = self.0.get();
                self.0.set((d, f + 1));
                Err(io::ErrorKind::BrokenPipe.into())
            }
        }
        let (a, b) = (Default::default(), Default::default());
        let mut tee = Tee(vec![
            Box::new(Count(std::rc::Rc::clone(&a))),
            Box::new(Count(std::rc::Rc::clone(&b))),
        ]);
        drop_into(&mut tee, &mut e, &udp_event());
        drop_into(&mut tee, &mut e, &udp_event());
        // The first sink's error is returned, and the second still flushed.
        assert_eq!(tee.flush().unwrap_err().kind(), io::ErrorKind::BrokenPipe);
        assert_eq!((a.get(), b.get()), ((2, 1), (2, 1)));
    }
}
