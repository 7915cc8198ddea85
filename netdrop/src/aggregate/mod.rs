//! Exact in-kernel counts turned into sorted histograms.

use crate::{kernel::reasons::Reasons, output::ReasonCount};

/// Per-reason counts (code, drops) to a histogram, most drops first, ties by name.
pub fn reason_histogram(counts: &[(u32, u64)], reasons: &Reasons) -> Vec<ReasonCount> {
    let mut out: Vec<ReasonCount> = counts
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|&(code, count)| {
            let r = reasons.decode(code);
            ReasonCount {
                name: r.name,
                code,
                subsystem: r.subsystem,
                count,
            }
        })
        .collect();
    out.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.name.cmp(&b.name)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{kernel::tracefs::Format, testdata};

    #[test]
    fn sorted_by_count_then_name() {
        let f = Format::parse(&testdata::read("tracefs/kfree_skb-6.18.format")).unwrap();
        let reasons = Reasons::from_symbolic(&f.symbolic_values()).unwrap();
        let h = reason_histogram(&[(6, 5), (3, 9), (2, 5), (11, 0)], &reasons);
        let names: Vec<_> = h.iter().map(|r| (r.name.as_str(), r.count)).collect();
        assert_eq!(
            names,
            [
                ("NO_SOCKET", 9),
                ("NOT_SPECIFIED", 5),
                ("SOCKET_RCVBUFF", 5)
            ]
        );
    }
}
