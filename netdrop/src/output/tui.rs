//! `netdrop top`: the full-screen view. A [`TopModel`] holds what is shown; [`draw`] renders
//! it (tests draw into ratatui's `TestBackend`); [`key`] maps a key press to an [`Action`].

use std::collections::{HashMap, VecDeque};

use ratatui::{
    Frame,
    crossterm::event::{KeyCode, KeyEvent, KeyModifiers},
    layout::{Constraint, Layout, Rect},
    style::{Color, Modifier, Style},
    text::Line,
    widgets::{Block, Cell, Clear, Paragraph, Row, Table},
};

use crate::{
    aggregate::{
        GroupBy, SortBy,
        listeners::{ListenerKey, MAX_TRACKED},
    },
    output::{
        ListenerNotice,
        stats::StatsReport,
        text::{endpoint, listener_line, netns_name, socket_line},
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
    /// Grouped by listener (key `l`) instead of by `by`.
    pub by_listener: bool,
    /// The listeners that overflowed since start, for the listener grouping.
    pub listener_rows: Vec<ListenerRow>,
    /// The key help is shown over the table.
    pub help: bool,
}

/// One listener in the listener grouping: `TcpExt.ListenOverflows` growth while its
/// accept queue was full (from counters + sock_diag, as in `watch`'s LISTENER lines).
#[derive(Clone, Debug, PartialEq)]
pub struct ListenerRow {
    /// `10.0.0.2:8080 netns demo`.
    pub label: String,
    /// Growth in the last interval (0 when it was not named then) and since start.
    pub interval: u64,
    pub total: u64,
    pub rate: f64,
    /// How it was the last time it was named: `full 2/1 python3[123]` (state, queue/limit,
    /// a process holding it).
    pub detail: String,
}

/// What is known of each listener named since start: its label and last state.
#[derive(Default)]
pub struct ListenerBook {
    seen: HashMap<ListenerKey, (String, String)>,
}

impl ListenerBook {
    /// Rows for the listeners in `totals` (the busiest since start), with the growth
    /// `named` in the last interval of `interval_s` seconds, ordered by `sort`.
    pub fn rows(
        &mut self,
        totals: &[(&ListenerKey, u64)],
        named: &[ListenerNotice],
        interval_s: f64,
        sort: SortBy,
    ) -> Vec<ListenerRow> {
        let mut now: HashMap<ListenerKey, u64> = HashMap::new();
        for n in named {
            let key = (n.netns.inode, n.addr.clone(), n.port);
            *now.entry(key.clone()).or_default() += n.overflows;
            let task = n
                .process
                .as_ref()
                .map_or_else(|| "-".to_owned(), crate::kernel::owners::Owner::label);
            let label = format!(
                "{} netns {}",
                endpoint(&n.addr, n.port),
                netns_name(&n.netns)
            );
            let mut detail = format!("{} {}/{} {task}", n.state, n.queue, n.limit);
            if n.shared_by > 1 {
                detail.push_str(&format!(" (shared by {})", n.shared_by));
            }
            // As many as the totals keep: listeners beyond are not shown either.
            if self.seen.len() < MAX_TRACKED || self.seen.contains_key(&key) {
                self.seen.insert(key, (label, detail));
            }
        }
        let mut rows: Vec<ListenerRow> = totals
            .iter()
            .map(|(key, total)| {
                let (label, detail) = self.seen.get(*key).cloned().unwrap_or_else(|| {
                    (
                        format!("{} netns {}", endpoint(&key.1, key.2), key.0),
                        String::new(),
                    )
                });
                let interval = now.get(*key).copied().unwrap_or(0);
                ListenerRow {
                    label,
                    interval,
                    total: *total,
                    rate: if interval_s > 0.0 {
                        interval as f64 / interval_s
                    } else {
                        0.0
                    },
                    detail,
                }
            })
            .collect();
        match sort {
            SortBy::Rate => rows.sort_by(|a, b| {
                b.interval
                    .cmp(&a.interval)
                    .then(b.total.cmp(&a.total))
                    .then(a.label.cmp(&b.label))
            }),
            SortBy::Total => rows.sort_by(|a, b| b.total.cmp(&a.total).then(a.label.cmp(&b.label))),
        }
        rows
    }
}

/// How bad a drop is, for its colour: whether something ran out, something refused, or
/// nobody wanted the packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// A queue, buffer, table or memory ran out: traffic that was wanted is lost under
    /// load (`SOCKET_RCVBUFF`, `CPU_BACKLOG`, `LISTEN_OVERFLOW`, `QDISC_DROP`, ...). Red.
    Capacity,
    /// A rule, a route, a check or the protocol refused it (`NETFILTER_DROP`,
    /// `IP_RPFILTER`, `TCP_*`, ...). Yellow.
    Refused,
    /// Nobody wanted the packet: no socket, not for this host, no reason given
    /// (`NO_SOCKET`, `OTHERHOST`, `NOT_SPECIFIED`): background noise on most hosts. Plain.
    Unwanted,
}

impl Severity {
    /// The class of a reason name as netdrop prints it (a trailing `?` marks an inferred
    /// one; it is classed the same).
    pub fn of(reason: &str) -> Self {
        let r = reason.trim_end_matches('?');
        const UNWANTED: &[&str] = &[
            "NO_SOCKET",
            "NOT_SPECIFIED",
            "OTHERHOST",
            "UNICAST_IN_L2_MULTICAST",
            "UNKNOWN",
        ];
        const CAPACITY: &[&str] = &[
            "RCVBUFF",
            "BACKLOG",
            "QUEUEFULL",
            "QUEUE_FULL",
            "OVERFLOW",
            "MEM",
            "QDISC",
            "FULL",
            "NOBUFS",
            "OOM",
        ];
        if UNWANTED.contains(&r) || r.starts_with("UNKNOWN_") {
            Self::Unwanted
        } else if CAPACITY.iter().any(|c| r.contains(c)) {
            Self::Capacity
        } else {
            Self::Refused
        }
    }

    fn style(self) -> Style {
        match self {
            Self::Capacity => Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
            Self::Refused => Style::new().fg(Color::Yellow),
            Self::Unwanted => Style::new(),
        }
    }
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
    /// Group by listener.
    Listeners,
    /// Show or hide the key help.
    Help,
    /// Esc: closes the help, else quits.
    Back,
    None,
}

/// Maps a key press to an action.
pub fn key(k: KeyEvent) -> Action {
    match (k.code, k.modifiers) {
        (KeyCode::Char('c'), m) if m.contains(KeyModifiers::CONTROL) => Action::Quit,
        (KeyCode::Char('q'), _) => Action::Quit,
        (KeyCode::Esc, _) => Action::Back,
        (KeyCode::Char('?') | KeyCode::F(1), _) => Action::Help,
        (KeyCode::Char('l'), _) => Action::Listeners,
        (KeyCode::Char('g') | KeyCode::Tab, _) => Action::NextGroup,
        (KeyCode::Char('G') | KeyCode::BackTab, _) => Action::PrevGroup,
        (KeyCode::Char('s'), _) => Action::ToggleSort,
        (KeyCode::Char('p') | KeyCode::Char(' '), _) => Action::TogglePause,
        (KeyCode::Char(c @ '1'..='7'), _) => Action::Group(GroupBy::ALL[c as usize - '1' as usize]),
        _ => Action::None,
    }
}

/// Applies `a` to the model; returns false to quit.
pub fn apply(m: &mut TopModel, a: Action) -> bool {
    let i = GroupBy::ALL.iter().position(|g| *g == m.by).unwrap_or(0);
    match a {
        Action::Quit => return false,
        Action::Back if m.help => m.help = false,
        Action::Back => return false,
        Action::Help => m.help = !m.help,
        Action::Listeners => m.by_listener = true,
        Action::Group(g) => {
            m.by = g;
            m.by_listener = false;
        }
        // Leaving the listener grouping returns to the grouping left for it.
        Action::NextGroup | Action::PrevGroup if m.by_listener => m.by_listener = false,
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
                r.drops.rate,
                r.drops.total,
                if m.by_listener { "listener" } else { &r.by }
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

    if m.by_listener {
        draw_listeners(f, m, table);
    } else {
        draw_groups(f, m, table);
    }
    f.render_widget(
        Paragraph::new("q quit  ? help  g/tab group  l listeners  s sort  p pause"),
        foot,
    );
    if m.help {
        draw_help(f);
    }
}

/// The table of the kernel's groupings (reason, location, flow, dev, netns).
fn draw_groups(f: &mut Frame<'_>, m: &TopModel, table: Rect) {
    let r = &m.report;
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
        // Coloured by the group's reason: its own, else the one it drops most for.
        let reason = g
            .reason
            .as_ref()
            .map(|r| r.name.as_str())
            .or_else(|| g.reasons.first().map(|r| r.name.as_str()));
        Row::new(cells).style(reason.map_or_else(Style::new, |r| Severity::of(r).style()))
    });
    let t = Table::new(rows, widths)
        .header(Row::new(titles).style(Style::new().add_modifier(Modifier::REVERSED)))
        .column_spacing(1);
    f.render_widget(t, table);
}

/// The table of listeners whose accept queue overflowed (key `l`).
fn draw_listeners(f: &mut Frame<'_>, m: &TopModel, table: Rect) {
    let sum: u64 = m.listener_rows.iter().map(|l| l.total).sum();
    let widths = [
        Constraint::Length(10),
        Constraint::Length(11),
        Constraint::Length(6),
        Constraint::Min(10),
    ];
    let titles = [
        format!("{:>9}", "drops/s"),
        format!("{:>10}", "total"),
        format!("{:>6}", "share"),
        "listener (accept queue overflows, from counters + sock_diag)".to_owned(),
    ];
    let mut rows: Vec<Row> = m
        .listener_rows
        .iter()
        .map(|l| {
            let share = if sum > 0 {
                format!("{:.1}%", 100.0 * l.total as f64 / sum as f64)
            } else {
                "-".to_owned()
            };
            Row::new([
                Cell::from(format!("{:>9.1}", l.rate)),
                Cell::from(format!("{:>10}", l.total)),
                Cell::from(format!("{share:>6}")),
                Cell::from(format!("{} {}", l.label, l.detail)),
            ])
            // A full accept queue is wanted traffic lost under load.
            .style(Severity::Capacity.style())
        })
        .collect();
    if rows.is_empty() {
        rows.push(Row::new([
            Cell::from(""),
            Cell::from(""),
            Cell::from(""),
            Cell::from("(no listener has overflowed since start)"),
        ]));
    }
    let t = Table::new(rows, widths)
        .header(Row::new(titles).style(Style::new().add_modifier(Modifier::REVERSED)))
        .column_spacing(1);
    f.render_widget(t, table);
}

/// The keys, and what the colours mean, in a box over the middle of the screen.
fn draw_help(f: &mut Frame<'_>) {
    let text = vec![
        Line::raw("q, Ctrl-C     quit"),
        Line::raw("Esc           close this help, else quit"),
        Line::raw("? or F1       show or hide this help"),
        Line::raw("g/Tab, G      next / previous grouping"),
        Line::raw("1 2 3 4 5     by reason, location, flow, dev, netns"),
        Line::raw("6 7           by pod, by container"),
        Line::raw("l             by listener (accept queue overflows)"),
        Line::raw("s             order by rate or by total"),
        Line::raw("p or space    pause the screen (counting goes on)"),
        Line::raw(""),
        Line::styled(
            "red     a queue, buffer or table ran out",
            Severity::Capacity.style(),
        ),
        Line::styled(
            "yellow  a rule, route or check refused it",
            Severity::Refused.style(),
        ),
        Line::raw("plain   nobody wanted it (NO_SOCKET, ...)"),
    ];
    let area = f.area();
    let width = 58.min(area.width);
    let height = (text.len() as u16 + 2).min(area.height);
    let popup = Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    };
    f.render_widget(Clear, popup);
    f.render_widget(
        Paragraph::new(text).block(Block::bordered().title(" netdrop top: keys ")),
        popup,
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
            pod: None,
            containers: None,
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
            by_listener: false,
            listener_rows: Vec::new(),
            help: false,
        };
        for i in 0..5 {
            m.record_history(&[("NO_SOCKET".into(), 100 * i), ("NETFILTER_DROP".into(), 10)]);
        }
        m
    }

    fn buffer(m: &TopModel) -> ratatui::buffer::Buffer {
        let mut term = Terminal::new(TestBackend::new(80, 24)).unwrap();
        term.draw(|f| draw(f, m)).unwrap();
        term.backend().buffer().clone()
    }

    fn screen(m: &TopModel) -> Vec<String> {
        let buf = buffer(m);
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
        assert!(apply(&mut m, key(press('6'))));
        assert_eq!(m.by, GroupBy::Pod);
        assert!(apply(&mut m, key(press('7'))));
        assert_eq!(m.by, GroupBy::Container);
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

    fn press(c: char) -> KeyEvent {
        KeyEvent::new_with_kind(KeyCode::Char(c), KeyModifiers::NONE, KeyEventKind::Press)
    }

    #[test]
    fn question_mark_shows_the_keys_over_the_table_and_esc_closes_them() {
        let mut m = model();
        assert!(screen(&m)[23].starts_with("q quit  ? help  g/tab group  l listeners"));
        assert!(apply(&mut m, key(press('?'))));
        let s = screen(&m);
        let top = s
            .iter()
            .position(|l| l.contains("netdrop top: keys"))
            .expect("help box");
        // Centred: 15 lines in 24, a box 58 wide in 80.
        assert_eq!(top, 4, "{s:#?}");
        assert_eq!(s[top].find('┌'), Some(11), "{}", s[top]);
        assert!(s[top + 1].contains("│q, Ctrl-C     quit"), "{}", s[top + 1]);
        assert!(
            s[top + 6].contains("│6 7           by pod, by container"),
            "{}",
            s[top + 6]
        );
        assert!(
            s[top + 7].contains("│l             by listener (accept queue overflows)"),
            "{}",
            s[top + 7]
        );
        assert!(s[top + 11].contains("│red     a queue, buffer or table ran out"));
        // Esc closes the help first; the table is back; a second Esc quits.
        assert!(apply(
            &mut m,
            key(KeyEvent::new(KeyCode::Esc, KeyModifiers::NONE))
        ));
        assert!(!m.help);
        assert!(!screen(&m).iter().any(|l| l.contains("netdrop top: keys")));
        assert!(!apply(
            &mut m,
            key(KeyEvent::new(KeyCode::Esc, KeyModifiers::NONE))
        ));
    }

    #[test]
    fn l_groups_by_listener() {
        let mut m = model();
        let mut book = ListenerBook::default();
        let named = vec![crate::output::text::tests::listener()];
        let mut totals = crate::aggregate::listeners::ListenerTotals::default();
        totals.add(&named);
        totals.add(&named);
        m.listener_rows = book.rows(&totals.busiest(10), &named, 2.0, SortBy::Rate);
        assert_eq!(
            m.listener_rows,
            vec![ListenerRow {
                label: "10.0.0.2:8080 netns demo".into(),
                interval: 152,
                total: 304,
                rate: 76.0,
                detail: "full 2/1 python3[123]".into(),
            }]
        );
        assert!(apply(&mut m, key(press('l'))));
        let s = screen(&m);
        assert!(s[0].contains("by listener (sort: rate)"), "{}", s[0]);
        let row = s
            .iter()
            .find(|l| l.contains("10.0.0.2:8080"))
            .expect("listener row");
        assert_eq!(
            row.trim_end(),
            "     76.0         304  100.0% 10.0.0.2:8080 netns demo full 2/1 python3[123]"
        );
        // Sorting keeps the grouping; g goes back to the one left.
        assert!(apply(&mut m, key(press('s'))));
        assert!(m.by_listener);
        assert!(apply(&mut m, key(press('g'))));
        assert!(!m.by_listener);
        assert_eq!(m.by, GroupBy::Reason);
        // Nothing overflowed: the table says so.
        m.listener_rows.clear();
        apply(&mut m, key(press('l')));
        assert!(
            screen(&m)
                .iter()
                .any(|l| l.contains("(no listener has overflowed since start)"))
        );
    }

    #[test]
    fn rows_are_coloured_by_the_reason_class() {
        let mut m = model();
        m.report.groups.push(group("SOCKET_RCVBUFF", 10.0, 20));
        let s = screen(&m);
        let buf = buffer(&m);
        let fg = |name: &str| {
            let y = s.iter().position(|l| l.contains(name)).unwrap() as u16;
            buf[(2, y)].fg
        };
        assert_eq!(fg("SOCKET_RCVBUFF"), Color::Red);
        assert_eq!(fg("NETFILTER_DROP"), Color::Yellow);
        assert_eq!(fg("NO_SOCKET"), Color::Reset);
    }

    #[test]
    fn severity_classes() {
        for (r, want) in [
            ("SOCKET_RCVBUFF", Severity::Capacity),
            ("CPU_BACKLOG", Severity::Capacity),
            ("LISTEN_OVERFLOW?", Severity::Capacity),
            ("QDISC_DROP", Severity::Capacity),
            ("NEIGH_QUEUEFULL", Severity::Capacity),
            ("PROTO_MEM", Severity::Capacity),
            ("NETFILTER_DROP", Severity::Refused),
            ("IP_RPFILTER", Severity::Refused),
            ("TCP_INVALID_SEQUENCE", Severity::Refused),
            ("NO_SOCKET", Severity::Unwanted),
            ("NO_SOCKET?", Severity::Unwanted),
            ("NOT_SPECIFIED", Severity::Unwanted),
            ("UNKNOWN_99", Severity::Unwanted),
        ] {
            assert_eq!(Severity::of(r), want, "{r}");
        }
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
