//! Which CPUs this machine may have: per-CPU map values come one per possible CPU, in the
//! order of their ids, and those ids can have gaps (`0-3,8-11`).

/// The ids in a CPU list such as `/sys/devices/system/cpu/possible` (`0-3`, `0`,
/// `0-3,8-11`), in order; `None` when it does not parse.
pub fn parse_list(text: &str) -> Option<Vec<u32>> {
    let mut ids = Vec::new();
    for range in text.trim().split(',') {
        let (first, last): (u32, u32) = match range.split_once('-') {
            Some((a, b)) => (a.trim().parse().ok()?, b.trim().parse().ok()?),
            None => {
                let one = range.trim().parse().ok()?;
                (one, one)
            }
        };
        if last < first || last - first > 1 << 16 {
            return None;
        }
        ids.extend(first..=last);
    }
    Some(ids)
}

/// Per-CPU slots a kernel array indexed by CPU id needs for `ids`: the highest plus one.
pub fn slots(ids: &[u32]) -> Option<u32> {
    ids.iter().max().map(|m| m + 1)
}

/// The possible CPUs of this machine, in the order per-CPU map values come in.
pub fn possible() -> Result<Vec<u32>, crate::error::Error> {
    const PATH: &str = "/sys/devices/system/cpu/possible";
    let text = std::fs::read_to_string(PATH).map_err(crate::error::Error::io(PATH))?;
    parse_list(&text).ok_or_else(|| {
        crate::error::Error::BadArgument(format!("{PATH} is not a CPU list: {:?}", text.trim()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_list("0-1\n"), Some(vec![0, 1]));
        assert_eq!(parse_list("0\n"), Some(vec![0]));
        assert_eq!(
            parse_list("0-3,8-11\n"),
            Some(vec![0, 1, 2, 3, 8, 9, 10, 11])
        );
        assert_eq!(parse_list(""), None);
        assert_eq!(parse_list("3-1"), None);
        assert_eq!(parse_list("x"), None);
    }

    #[test]
    fn slots_reach_the_highest_id() {
        let slots = |text| parse_list(text).and_then(|ids| slots(&ids));
        assert_eq!(slots("0-1\n"), Some(2));
        assert_eq!(slots("0\n"), Some(1));
        assert_eq!(slots("0-3,8-11\n"), Some(12));
        assert_eq!(slots(""), None);
    }
}
