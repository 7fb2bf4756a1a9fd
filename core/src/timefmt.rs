//! Timestamps as ECS wants them: ISO 8601, UTC, microseconds (Python's rounding).

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar.
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `2024-01-02T03:04:05.123456Z`; None when the time is not representable (years 1-9999).
pub fn iso(ts: f64) -> Option<String> {
    if !ts.is_finite() {
        return None;
    }
    let sec = ts.floor();
    if !(-62_135_596_800.0..253_402_300_800.0).contains(&sec) {
        return None;
    }
    let micros = ((ts - sec) * 1_000_000.0).round_ties_even().min(999_999.0) as u32;
    let sec = sec as i64;
    let (y, mo, d) = civil(sec.div_euclid(86_400));
    let s = sec.rem_euclid(86_400);
    Some(format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        y,
        mo,
        d,
        s / 3600,
        (s / 60) % 60,
        s % 60,
        micros
    ))
}

/// A cache of the per-second prefix: events come in bursts within one second.
#[derive(Default)]
pub struct IsoCache {
    sec: i64,
    prefix: String,
}

impl IsoCache {
    pub fn format(&mut self, ts: f64, out: &mut Vec<u8>) {
        let sec = ts.floor();
        if ts.is_finite() && (-62_135_596_800.0..253_402_300_800.0).contains(&sec) {
            let s = sec as i64;
            if self.prefix.is_empty() || s != self.sec {
                let full = iso(ts).unwrap_or_default();
                self.prefix = full[..19].to_string();
                self.sec = s;
            }
            let mut micros = ((ts - sec) * 1_000_000.0).round_ties_even().min(999_999.0) as u32;
            out.extend_from_slice(self.prefix.as_bytes());
            let mut digits = *b".000000Z";
            for d in digits[1..7].iter_mut().rev() {
                *d = b'0' + (micros % 10) as u8;
                micros /= 10;
            }
            out.extend_from_slice(&digits);
        } else {
            out.extend_from_slice(b"1970-01-01T00:00:00.000000Z");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_python() {
        assert_eq!(iso(0.0).unwrap(), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            iso(1_700_000_000.25).unwrap(),
            "2023-11-14T22:13:20.250000Z"
        );
        assert_eq!(iso(951_782_400.0).unwrap(), "2000-02-29T00:00:00.000000Z");
        assert_eq!(iso(-1.5).unwrap(), "1969-12-31T23:59:58.500000Z");
        assert!(iso(1e300).is_none());
    }
}
