//! `netdrop top`: the full-screen view. A [`TopModel`] holds what is shown; [`draw`] renders
//! it (tests draw into ratatui's `TestBackend`); [`key`] maps a key press to an [`Action`].

use std::collections::{HashMap, VecDeque};

use ratatui::{
    Frame,
    crossterm::event::{KeyCode, KeyEvent, KeyModifiers},
    layout::{Constraint, Layout},
    style::{Modifier, Style},
    text::Line,
    widgets::{Cell, Paragraph, Row, Table},
};

use crate::{
    aggregate::{GroupBy, SortBy},
    output::{
        stats::StatsReport,
        text::{listener_line, socket_line},
    },
};

/// Seconds of history behind each reason's sparkline.
pub const HISTORY: usize = 60;

/// Overflowing listeners named under the header, at most.
const LISTENER_LINES: usize = 2;
/// Sockets that dropped named under the header (after the listeners), at most.
const SOCKET_LINES: usize = 2;

/// What the screen shows.
pub struct TopModel {
    pub by: GroupBy,
    pub sort: SortBy,
    pub paused: bool,
    pub hook: String,
    /// The latest interval's report for `by`.
    pub report: StatsReport,
    /// Events lost by the ring buffer (0 for top, which streams none; kept for symmetry).
    pub lost: u64,
    /// Drops per interval for each reason name, oldest first, at most [`HISTORY`].
    pub history: HashMap<String, VecDeque<u64>>,
}

impl TopModel {
    /// Appends one interval's per-reason drops to the sparkline history: every series
    /// gets a value (zero when the reason had no drops), so they stay aligned in time.
    pub fn record_history(&mut self, per_reason: &[(String, u64)]) {
        for (name, _) in per_reason {
            self.history.entry(name.clone()).or_default();
        }
        for (name, h) in &mut self.history {
            let n = per_reason
                .iter()
                .find(|(r, _)| r == name)
                .map_or(0, |(_, n)| *n);
            h.push_back(n);
            while h.len() > HISTORY {
                h.pop_front();
            }
        }
    }
}

/// What a key asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Quit,
    Group(GroupBy),
    NextGroup,
    PrevGroup,
    ToggleSort,
    TogglePause,
    None,
}

/// Maps a key press to an action.
pub fn key(k: KeyEvent) -> Action {
    match (k.code, k.modifiers) {
        (KeyCode::Char('c'), m) if m.contains(KeyModifiers::CONTROL) => Action::Quit,
        (KeyCode::Char('q') | KeyCode::Esc, _) => Action::Quit,
        (KeyCode::Char('g') | KeyCode::Tab, _) => Action::NextGroup,
        (KeyCode::Char('G') | KeyCode::BackTab, _) => Action::PrevGroup,
        (KeyCode::Char('s'), _) => Action::ToggleSort,
        (KeyCode::Char('p') | KeyCode::Char(' '), _) => Action::TogglePause,
        (KeyCode::Char(c @ '1'..='5'), _) => Action::Group(GroupBy::ALL[c as usize - '1' as usize]),
        _ => Action::None,
    }
}

/// Applies `a` to the model; returns false to quit.
pub fn apply(m: &mut TopModel, a: Action) -> bool {
    let i = GroupBy::ALL.iter().position(|g| *g == m.by).unwrap_or(0);
    match a {
        Action::Quit => return false,
        Action::Group(g) => m.by = g,
        Action::NextGroup => m.by = GroupBy::ALL[(i + 1) % GroupBy::ALL.len()],
        Action::PrevGroup => m.by = GroupBy::ALL[(i + GroupBy::ALL.len() - 1) % GroupBy::ALL.len()],
        Action::ToggleSort => m.sort = m.sort.next(),
        Action::TogglePause => m.paused = !m.paused,
        Action::None => {}
    }
    true
}

/// Unicode blocks for a series, scaled to its maximum, `width` newest values.
pub fn sparkline(values: &VecDeque<u64>, width: usize) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let skip = values.len().saturating_sub(width);
    let shown: Vec<u64> = values.iter().skip(skip).copied().collect();
    let max = shown.iter().copied().max().unwrap_or(0);
    let mut s: String = " ".repeat(width - shown.len());
    for v in shown {
        s.push(if max == 0 || v == 0 {
            ' '
        } else {
            BARS[((v * 7 / max) as usize).min(7)]
        });
    }
    s
}

/// Draws the model.
pub fn draw(f: &mut Frame<'_>, m: &TopModel) {
    let r = &m.report;
    // Listeners whose accept queue overflowed in the interval: up to two lines.
    let mut named: Vec<Line> = r
        .listeners
        .iter()
        .take(LISTENER_LINES)
        .map(|l| Line::raw(listener_line(l, "").trim_start().to_owned()))
        .collect();
    if r.listeners.len() > LISTENER_LINES {
        named.push(Line::raw(format!(
            "(+{} more listeners)",
            r.listeners.len() - LISTENER_LINES
        )));
    }
    // Sockets whose sk_drops grew in the interval: up to two more lines.
    named.extend(
        r.sockets
            .iter()
            .take(SOCKET_LINES)
            .map(|s| Line::raw(format!("SOCKET {}", socket_line(s)))),
    );
    if r.sockets.len() > SOCKET_LINES {
        named.push(Line::raw(format!(
            "(+{} more sockets)",
            r.sockets.len() - SOCKET_LINES
        )));
    }
    // The receive side: CPUs whose backlog dropped, the device that dropped most.
    named.extend(
        super::receive::tui_lines(&r.softnet, &r.devices)
            .into_iter()
            .map(Line::raw),
    );
    let [head, table, foot] = Layout::vertical([
        Constraint::Length(3 + named.len() as u16),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(f.area());
    let sort = match m.sort {
        SortBy::Rate => "rate",
        SortBy::Total => "total",
    };
    let paused = if m.paused { "  [paused]" } else { "" };
    let u = &r.untracked;
    let header = vec![
        Line::styled(
            format!(
                "netdrop top: {:.0} drops/s, {} total, by {} (sort: {sort}){paused}",
                r.drops.rate, r.drops.total, r.by
            ),
            Style::new().add_modifier(Modifier::BOLD),
        ),
        Line::raw(format!(
            "seen {}  lost {}  not traced {}  not attributed: loc {} dev {} flow {}",
            r.seen.total, m.lost, r.missed, u.location, u.device, u.flow
        )),
        Line::raw(format!("hook: {}", m.hook)),
    ]
    .into_iter()
    .chain(named)
    .collect::<Vec<_>>();
    f.render_widget(Paragraph::new(header), head);

    let spark_width = 20;
    let with_spark = m.by == GroupBy::Reason;
    let mut widths = vec![
        Constraint::Length(10),
        Constraint::Length(11),
        Constraint::Length(6),
    ];
    let mut titles = vec![
        format!("{:>9}", "drops/s"),
        format!("{:>10}", "total"),
        format!("{:>6}", "share"),
    ];
    if with_spark {
        widths.push(Constraint::Length(spark_width as u16));
        titles.push("last minute".to_owned());
    }
    widths.push(Constraint::Min(10));
    titles.push(r.by.clone());
    let rows = r.groups.iter().map(|g| {
        let share = if r.drops.total > 0 {
            format!("{:.1}%", 100.0 * g.total as f64 / r.drops.total as f64)
        } else {
            "-".to_owned()
        };
        let mut cells = vec![
            Cell::from(format!("{:>9.1}", g.rate)),
            Cell::from(format!("{:>10}", g.total)),
            Cell::from(format!("{share:>6}")),
        ];
        if with_spark {
            let h = m.history.get(&g.label).cloned().unwrap_or_default();
            cells.push(Cell::from(sparkline(&h, spark_width)));
        }
        let mut label = g.label.clone();
        if let Some(top) = g.reasons.first() {
            label.push_str(&format!("  [{}]", top.name));
        }
        cells.push(Cell::from(label));
        Row::new(cells)
    });
    let t = Table::new(rows, widths)
        .header(Row::new(titles).style(Style::new().add_modifier(Modifier::REVERSED)))
        .column_spacing(1);
    f.render_widget(t, table);
    f.render_widget(
        Paragraph::new("q quit  g/tab group  1-5 reason/location/flow/dev/netns  s sort  p pause"),
        foot,
    );
}

#[cfg(test)]
mod tests {
    use ratatui::{Terminal, backend::TestBackend, crossterm::event::KeyEventKind};

    use super::*;
    use crate::output::stats::{Count, GroupRow, ReasonRef, Untracked};

    fn group(label: &str, rate: f64, total: u64) -> GroupRow {
        GroupRow {
            label: label.to_owned(),
            reason: Some(ReasonRef {
                name: label.to_owned(),
                code: 3,
                inferred: false,
            }),
            location: None,
            flow: None,
            device: None,
            netns: None,
            interval: rate as u64,
            total,
            rate,
            reasons: Vec::new(),
        }
    }

    fn model() -> TopModel {
        let report = StatsReport {
            time: String::new(),
            interval_s: 1.0,
            by: "reason".into(),
            drops: Count {
                interval: 1500,
                total: 4000,
                rate: 1500.0,
            },
            seen: Count {
                interval: 1500,
                total: 4100,
                rate: 1500.0,
            },
            missed: 0,
            untracked: Untracked {
                flow: 7,
                ..Default::default()
            },
            groups: vec![
                group("NO_SOCKET", 1200.0, 3000),
                group("NETFILTER_DROP", 300.0, 1000),
            ],
            other: Count::default(),
            listeners: vec![],
            sockets: vec![],
            softnet: vec![],
            devices: vec![],
        };
        let mut m = TopModel {
            by: GroupBy::Reason,
            sort: SortBy::Rate,
            paused: false,
            hook: "BTF raw tracepoint".into(),
            report,
            lost: 0,
            history: HashMap::new(),
        };
        for i in 0..5 {
            m.record_history(&[("NO_SOCKET".into(), 100 * i), ("NETFILTER_DROP".into(), 10)]);
        }
        m
    }

    fn screen(m: &TopModel) -> Vec<String> {
        let mut term = Terminal::new(TestBackend::new(80, 24)).unwrap();
        term.draw(|f| draw(f, m)).unwrap();
        let buf = term.backend().buffer().clone();
        (0..24)
            .map(|y| {
                (0..80)
                    .map(|x| buf[(x, y)].symbol().to_owned())
                    .collect::<String>()
            })
            .collect()
    }

    #[test]
    fn renders_in_80_by_24() {
        let s = screen(&model());
        assert!(
            s[0].starts_with("netdrop top: 1500 drops/s, 4000 total, by reason (sort: rate)"),
            "{}",
            s[0]
        );
        assert!(
            s[1].contains("not attributed: loc 0 dev 0 flow 7"),
            "{}",
            s[1]
        );
        let row = s
            .iter()
            .find(|l| l.contains("NO_SOCKET"))
            .expect("NO_SOCKET row");
        assert!(
            row.contains("1200.0") && row.contains("3000") && row.contains("75.0%"),
            "{row}"
        );
        assert!(row.contains('█'), "sparkline in {row}");
        assert!(s[23].starts_with("q quit"), "{}", s[23]);
    }

    #[test]
    fn overflowing_listeners_are_named_under_the_header() {
        let mut m = model();
        m.report.listeners = vec![crate::output::text::tests::listener(); 3];
        let s = screen(&m);
        assert!(
            s[3].starts_with("LISTENER 10.0.0.2:8080 netns demo full 2/1"),
            "{}",
            s[3]
        );
        assert!(s[5].starts_with("(+1 more listeners)"), "{}", s[5]);
        assert!(s[6].contains("drops/s"), "the table follows: {}", s[6]);
    }

    #[test]
    fn sockets_that_drop_are_named_after_the_listeners() {
        let mut m = model();
        m.report.listeners = vec![crate::output::text::tests::listener()];
        m.report.sockets = vec![crate::output::text::tests::socket(); 3];
        let s = screen(&m);
        assert!(s[3].starts_with("LISTENER "), "{}", s[3]);
        assert!(
            s[4].starts_with(
                "SOCKET udp 10.0.0.2:5353 netns demo +40 sk_drops task python3[123] (total 43"
            ),
            "{}",
            s[4]
        );
        assert!(s[5].starts_with("SOCKET udp"), "{}", s[5]);
        assert!(s[6].starts_with("(+1 more sockets)"), "{}", s[6]);
        assert!(s[7].contains("drops/s"), "the table follows: {}", s[7]);
    }

    #[test]
    fn keys_switch_grouping_sort_and_pause() {
        let mut m = model();
        let press =
            |c| KeyEvent::new_with_kind(KeyCode::Char(c), KeyModifiers::NONE, KeyEventKind::Press);
        assert!(apply(&mut m, key(press('g'))));
        assert_eq!(m.by, GroupBy::Location);
        assert!(apply(&mut m, key(press('5'))));
        assert_eq!(m.by, GroupBy::Netns);
        assert!(apply(
            &mut m,
            key(KeyEvent::new(KeyCode::Tab, KeyModifiers::NONE))
        ));
        assert_eq!(m.by, GroupBy::Reason);
        apply(&mut m, key(press('s')));
        assert_eq!(m.sort, SortBy::Total);
        apply(&mut m, key(press('p')));
        assert!(m.paused);
        assert!(screen(&m)[0].contains("[paused]"));
        assert!(!apply(&mut m, key(press('q'))));
        assert!(!apply(
            &mut m,
            key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL))
        ));
    }

    #[test]
    fn sparklines_scale_to_their_maximum() {
        let h: VecDeque<u64> = [0, 1, 2, 4, 8].into_iter().collect();
        assert_eq!(sparkline(&h, 8), "    ▁▂▄█");
        let long: VecDeque<u64> = (0..100).collect();
        assert_eq!(sparkline(&long, 10).chars().count(), 10);
    }

    #[test]
    fn history_keeps_a_minute() {
        let mut m = model();
        for _ in 0..100 {
            m.record_history(&[("NO_SOCKET".into(), 1)]);
        }
        assert_eq!(m.history["NO_SOCKET"].len(), HISTORY);
        // A reason with no drops in an interval gets a zero, not a gap.
        assert_eq!(*m.history["NETFILTER_DROP"].back().unwrap(), 0);
    }
}
