//! HTTP dates (RFC 9110 section 5.6.7), as seconds since the Unix epoch.
//!
//! Servers send only the preferred IMF-fixdate form
//! (`Sun, 06 Nov 1994 08:49:37 GMT`); recipients must also accept the
//! obsolete RFC 850 form (`Sunday, 06-Nov-94 08:49:37 GMT`) and the C
//! `asctime()` form (`Sun Nov  6 08:49:37 1994`). No clock is read here:
//! the caller passes the time in.

const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"]; // 1970-01-01 was a Thursday
const LONG_DAYS: [&str; 7] = [
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Format `secs` since the epoch as an IMF-fixdate.
pub fn format_http_date(secs: u64) -> String {
    HttpDate::new(secs).as_str().to_string()
}

/// Append `secs` since the epoch as an IMF-fixdate.
pub fn write_http_date(out: &mut Vec<u8>, secs: u64) {
    out.extend_from_slice(HttpDate::new(secs).as_str().as_bytes());
}

/// An IMF-fixdate formatted on the stack (the response path writes one or
/// two per response, so no allocation and no formatting machinery).
#[derive(Clone, Copy)]
pub struct HttpDate {
    buf: [u8; 40],
    len: usize,
}

thread_local! {
    /// The last two dates formatted (a response carries at most two: Date,
    /// which changes once a second, and Last-Modified, which rarely does).
    static RECENT: std::cell::Cell<[Option<(u64, HttpDate)>; 2]> =
        const { std::cell::Cell::new([None, None]) };
}

impl HttpDate {
    /// `secs` formatted, or copied from one of the last two formatted.
    pub fn new(secs: u64) -> HttpDate {
        let recent = RECENT.with(|r| r.get());
        for (s, d) in recent.iter().flatten() {
            if *s == secs {
                return *d;
            }
        }
        let d = HttpDate::format(secs);
        RECENT.with(|r| r.set([Some((secs, d)), recent[0]]));
        d
    }

    fn format(secs: u64) -> HttpDate {
        let days = (secs / 86_400) as i64;
        let rem = secs % 86_400;
        let (y, m, d) = civil_from_days(days);
        let mut h = HttpDate {
            buf: [0; 40],
            len: 0,
        };
        h.put(DAYS[(days % 7) as usize].as_bytes());
        h.put(b", ");
        h.two(d as u64);
        h.put(b" ");
        h.put(MONTHS[(m - 1) as usize].as_bytes());
        h.put(b" ");
        // At least four digits (u64 seconds reach only a 12-digit year).
        let y = y.max(0) as u64;
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        let mut v = y;
        while v > 0 || digits.len() - i < 4 {
            i -= 1;
            digits[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
        h.put(&digits[i..]);
        h.put(b" ");
        h.two(rem / 3600);
        h.put(b":");
        h.two(rem / 60 % 60);
        h.put(b":");
        h.two(rem % 60);
        h.put(b" GMT");
        h
    }

    fn put(&mut self, b: &[u8]) {
        self.buf[self.len..self.len + b.len()].copy_from_slice(b);
        self.len += b.len();
    }

    fn two(&mut self, v: u64) {
        self.put(&[b'0' + (v / 10 % 10) as u8, b'0' + (v % 10) as u8]);
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII was written.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

fn num(s: &str, digits: usize) -> Option<u32> {
    if s.len() != digits || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn month(s: &str) -> Option<u32> {
    MONTHS.iter().position(|m| *m == s).map(|i| i as u32 + 1)
}

fn hms(s: &str) -> Option<(u32, u32, u32)> {
    let mut it = s.split(':');
    let h = num(it.next()?, 2)?;
    let m = num(it.next()?, 2)?;
    let sec = num(it.next()?, 2)?;
    if it.next().is_some() || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    Some((h, m, sec))
}

fn to_secs(y: i64, mo: u32, d: u32, (h, mi, s): (u32, u32, u32)) -> Option<u64> {
    if !(1..=31).contains(&d) || y < 1970 {
        return None;
    }
    let days = days_from_civil(y, mo, d);
    // Reject dates like 31 Feb that do not round-trip.
    if civil_from_days(days) != (y, mo, d) {
        return None;
    }
    Some(days as u64 * 86_400 + h as u64 * 3600 + mi as u64 * 60 + s as u64)
}

/// Parse an HTTP-date in any of the three forms. `None` if invalid (a
/// recipient then ignores the header field, RFC 9110 13.1.3).
pub fn parse_http_date(s: &str) -> Option<u64> {
    let s = s.trim_matches(|c| c == ' ' || c == '\t');
    let parts: Vec<&str> = s.split(' ').collect();
    match parts.as_slice() {
        // IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT
        [wd, d, mo, y, t, "GMT"]
            if wd.len() == 4 && wd.ends_with(',') && DAYS.contains(&&wd[..3]) =>
        {
            to_secs(num(y, 4)? as i64, month(mo)?, num(d, 2)?, hms(t)?)
        }
        // RFC 850: Sunday, 06-Nov-94 08:49:37 GMT
        [wd, dmy, t, "GMT"] if wd.ends_with(',') && LONG_DAYS.contains(&&wd[..wd.len() - 1]) => {
            let mut it = dmy.split('-');
            let d = num(it.next()?, 2)?;
            let mo = month(it.next()?)?;
            let yy = num(it.next()?, 2)? as i64;
            if it.next().is_some() {
                return None;
            }
            // RFC 9110: a two-digit year more than 50 years in the future is
            // in the past century. Without a clock we use a fixed pivot.
            let y = if yy >= 70 { 1900 + yy } else { 2000 + yy };
            to_secs(y, mo, d, hms(t)?)
        }
        // asctime: Sun Nov  6 08:49:37 1994  (day padded with a space)
        [wd, mo, "", d, t, y] if DAYS.contains(wd) => {
            to_secs(num(y, 4)? as i64, month(mo)?, num(d, 1)?, hms(t)?)
        }
        [wd, mo, d, t, y] if DAYS.contains(wd) => {
            to_secs(num(y, 4)? as i64, month(mo)?, num(d, 2)?, hms(t)?)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc9110_examples() {
        // RFC 9110 5.6.7: all three forms denote the same instant, 784111777.
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(
            parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(
            parse_http_date("Sun Nov  6 08:49:37 1994"),
            Some(784_111_777)
        );
        assert_eq!(
            format_http_date(784_111_777),
            "Sun, 06 Nov 1994 08:49:37 GMT"
        );
    }

    #[test]
    fn round_trip_and_rejects() {
        for t in [
            0u64,
            951_782_400,
            1_704_067_200,
            4_102_444_800,
            253_402_300_799,
        ] {
            assert_eq!(parse_http_date(&format_http_date(t)), Some(t), "{t}");
        }
        assert_eq!(format_http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        for bad in [
            "",
            "Sun, 31 Feb 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 06 Nov 1994 25:49:37 GMT",
            "Sun, 6 Nov 1994 08:49:37 GMT",
            "06 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 08:49 GMT",
            "garbage",
        ] {
            assert_eq!(parse_http_date(bad), None, "{bad:?}");
        }
    }
}
