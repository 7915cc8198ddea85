//! `--json`: one object per line, tagged by `type` (`drop`, `lost`, `summary`).

use std::io::{self, Write};

use super::JsonLine;

/// Writes one line.
pub fn write_line(out: &mut impl Write, line: &JsonLine) -> io::Result<()> {
    serde_json::to_writer(&mut *out, line)?;
    out.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::{LostNotice, ReasonCount, Summary};

    #[test]
    fn lines_are_tagged_and_round_trip() {
        let lost = JsonLine::Lost(LostNotice {
            time: "t".into(),
            lost: 5,
            lost_total: 7,
            missed: 0,
            missed_total: 1,
        });
        let summary = JsonLine::Summary(Summary {
            duration_s: 1.5,
            hook: "h".into(),
            seen: 10,
            matched: 9,
            delivered: 2,
            lost: 7,
            missed: 1,
            by_reason: vec![ReasonCount {
                name: "NO_SOCKET".into(),
                code: 3,
                subsystem: None,
                count: 9,
            }],
            counters: vec![],
        });
        for line in [lost, summary] {
            let mut buf = Vec::new();
            write_line(&mut buf, &line).unwrap();
            let text = String::from_utf8(buf).unwrap();
            assert!(text.ends_with('\n') && text.matches('\n').count() == 1);
            let back: JsonLine = serde_json::from_str(&text).unwrap();
            assert_eq!(back, line);
        }
        let mut buf = Vec::new();
        write_line(
            &mut buf,
            &JsonLine::Lost(LostNotice {
                time: "t".into(),
                lost: 1,
                lost_total: 1,
                missed: 0,
                missed_total: 0,
            }),
        )
        .unwrap();
        assert!(
            String::from_utf8(buf)
                .unwrap()
                .starts_with(r#"{"type":"lost","#)
        );
    }
}
