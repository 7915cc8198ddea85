//! Kernel timestamps (CLOCK_MONOTONIC) to wall-clock text.

/// Converts CLOCK_MONOTONIC nanoseconds to wall-clock time using the offset between the
/// two clocks, measured once at start.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// CLOCK_REALTIME minus CLOCK_MONOTONIC, in nanoseconds.
    offset_ns: i128,
}

fn now(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer; both clocks always exist on Linux.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
}

impl Clock {
    /// Measures the offset now.
    pub fn now() -> Self {
        Self {
            offset_ns: now(libc::CLOCK_REALTIME) - now(libc::CLOCK_MONOTONIC),
        }
    }

    /// A clock with a fixed offset, for tests.
    #[cfg(test)]
    pub const fn with_offset(offset_ns: i128) -> Self {
        Self { offset_ns }
    }

    /// The clock of another run (a recording), from the offset it measured.
    pub const fn from_offset(offset_ns: i128) -> Self {
        Self { offset_ns }
    }

    /// Current CLOCK_MONOTONIC nanoseconds.
    pub fn monotonic_now() -> u64 {
        now(libc::CLOCK_MONOTONIC) as u64
    }

    /// Nanoseconds since the Unix epoch for a CLOCK_MONOTONIC timestamp.
    pub fn unix_ns(&self, mono_ns: u64) -> i128 {
        mono_ns as i128 + self.offset_ns
    }

    /// `2026-11-22T04:12:33.123456789Z`.
    pub fn rfc3339(&self, mono_ns: u64) -> String {
        let ns = self.unix_ns(mono_ns);
        let secs = ns.div_euclid(1_000_000_000) as i64;
        let frac = ns.rem_euclid(1_000_000_000);
        let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
        let (y, m, d) = civil_from_days(days);
        format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{frac:09}Z",
            rem / 3600,
            rem / 60 % 60,
            rem % 60
        )
    }

    /// `04:12:33.123456` in local time, for text output.
    pub fn local_hms(&self, mono_ns: u64) -> String {
        let ns = self.unix_ns(mono_ns);
        // 64-bit time_t on every target netdrop builds for (glibc and musl >= 1.2).
        let secs = ns.div_euclid(1_000_000_000) as i64;
        let micros = ns.rem_euclid(1_000_000_000) / 1000;
        // SAFETY: zeroed tm is valid; localtime_r only writes into it.
        let mut tm: libc::tm = unsafe { std::mem::zeroed() };
        if unsafe { libc::localtime_r((&raw const secs).cast(), &mut tm) }.is_null() {
            return self.rfc3339(mono_ns);
        }
        format!(
            "{:02}:{:02}:{:02}.{micros:06}",
            tm.tm_hour, tm.tm_min, tm.tm_sec
        )
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc() {
        let c = Clock::with_offset(0);
        assert_eq!(c.rfc3339(0), "1970-01-01T00:00:00.000000000Z");
        // 2026-11-22T04:12:33.5Z
        let c = Clock::with_offset(1_795_320_753_000_000_000);
        assert_eq!(c.rfc3339(500_000_000), "2026-11-22T04:12:33.500000000Z");
        // Leap day.
        let c = Clock::with_offset(951_782_400_000_000_000);
        assert_eq!(c.rfc3339(1), "2000-02-29T00:00:00.000000001Z");
    }

    #[test]
    fn now_is_plausible() {
        let c = Clock::now();
        let s = c.rfc3339(Clock::monotonic_now());
        assert!(s.starts_with("20"), "{s}");
        assert_eq!(c.local_hms(Clock::monotonic_now()).len(), 15);
    }
}
