//! A `FaultInjection`'s `expiry`: an RFC 3339 time (`2026-12-07T00:00:00Z`), or a duration
//! (`30m`) that [`resolve`] turns into one when the document is applied, so the stored
//! document -- and a restarted control plane -- keeps the same end.
//!
//! The RFC 3339 reader and writer are here (about 80 lines) rather than a date crate: the
//! control plane needs UTC instants only, and the filters compare Unix milliseconds.

use crate::model::{Document, Spec};

/// Longest relative expiry: the grammar's longest duration (24 h).
pub const MAX_EXPIRY_DURATION: &str = "24h";

/// What an `expiry` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// At this instant (Unix milliseconds).
    At(u64),
    /// This long after the apply (milliseconds); not yet turned into an instant.
    After(u64),
}

/// Reads `text` as an RFC 3339 time or, failing that, as a duration.
pub fn parse_expiry(text: &str) -> Result<Expiry, String> {
    if text.as_bytes().first().is_some_and(u8::is_ascii_digit) && text.contains('-') {
        return parse_rfc3339(text).map(Expiry::At);
    }
    match crate::units::parse_duration(text) {
        Ok(0) => Err("must be more than 0".into()),
        Ok(ms) => Ok(Expiry::After(ms)),
        Err(e) => Err(format!(
            "{e}; expected an RFC 3339 time (2026-12-07T00:00:00Z) or a duration up to {MAX_EXPIRY_DURATION}"
        )),
    }
}

/// Turns every relative `expiry` in `docs` into the RFC 3339 time `now_unix_ms` plus the
/// duration. A value that does not parse is left for validation to report.
pub fn resolve(docs: &mut [Document], now_unix_ms: u64) {
    for doc in docs {
        if let Spec::FaultInjection(s) = &mut doc.spec {
            if let Some(Ok(Expiry::After(ms))) = s.expiry.as_deref().map(parse_expiry) {
                s.expiry = Some(format_rfc3339(now_unix_ms.saturating_add(ms)));
            }
        }
    }
}

/// The system clock as Unix milliseconds, for callers of [`resolve`] (0 before 1970).
pub fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

const MS_PER_DAY: i64 = 86_400_000;

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` (RFC 3339; `t`/`z` and a space for `T` too),
/// years 1970-9999, as Unix milliseconds.
pub fn parse_rfc3339(text: &str) -> Result<u64, String> {
    let bad = |why: &str| format!("invalid RFC 3339 time {text:?}: {why}");
    let b = text.as_bytes();
    if b.len() < 20 || b.len() > 40 || !text.is_ascii() {
        return Err(bad("expected YYYY-MM-DDTHH:MM:SSZ"));
    }
    let num = |from: usize, len: usize| -> Result<i64, String> {
        let digits = text.get(from..from + len).ok_or_else(|| bad("too short"))?;
        if !digits.bytes().all(|c| c.is_ascii_digit()) {
            return Err(bad("expected digits"));
        }
        digits.parse::<i64>().map_err(|_| bad("expected digits"))
    };
    let sep = |at: usize, ok: &[u8]| b.get(at).is_some_and(|c| ok.contains(c));
    if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt ") && sep(13, b":") && sep(16, b":")) {
        return Err(bad("expected YYYY-MM-DDTHH:MM:SS"));
    }
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if !(1970..=9999).contains(&year) || !(1..=12).contains(&month) {
        return Err(bad("year or month out of range"));
    }
    if day < 1 || day > days_in_month(year, month) {
        return Err(bad("no such day"));
    }
    if hour > 23 || minute > 59 || second > 59 {
        return Err(bad("time of day out of range"));
    }
    let mut at = 19;
    let mut millis = 0;
    if b.get(at) == Some(&b'.') {
        let digits = b
            .iter()
            .skip(at + 1)
            .take_while(|c| c.is_ascii_digit())
            .count();
        if digits == 0 {
            return Err(bad("empty fraction"));
        }
        for (i, c) in b.iter().skip(at + 1).take(digits.min(3)).enumerate() {
            millis += i64::from(c - b'0') * [100, 10, 1].get(i).copied().unwrap_or(0);
        }
        at += 1 + digits;
    }
    let offset_minutes = match text.get(at..) {
        Some("Z" | "z") => 0,
        Some(zone) if zone.len() == 6 && sep(at + 3, b":") && sep(at, b"+-") => {
            let (h, m) = (num(at + 1, 2)?, num(at + 4, 2)?);
            if h > 23 || m > 59 {
                return Err(bad("offset out of range"));
            }
            let minutes = h * 60 + m;
            if sep(at, b"-") {
                -minutes
            } else {
                minutes
            }
        }
        _ => return Err(bad("expected `Z` or an offset such as `+02:00`")),
    };
    let days = days_from_civil(year, month, day);
    let ms =
        days * MS_PER_DAY + ((hour * 60 + minute - offset_minutes) * 60 + second) * 1000 + millis;
    u64::try_from(ms).map_err(|_| bad("before 1970"))
}

/// Unix milliseconds as `YYYY-MM-DDTHH:MM:SS[.mmm]Z`.
pub fn format_rfc3339(unix_ms: u64) -> String {
    let ms = i64::try_from(unix_ms.min(253_402_300_799_999)).unwrap_or(0);
    let (days, rest) = (ms.div_euclid(MS_PER_DAY), ms.rem_euclid(MS_PER_DAY));
    let (year, month, day) = civil_from_days(days);
    let (secs, millis) = (rest / 1000, rest % 1000);
    let time = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    if millis == 0 {
        format!("{time}Z")
    } else {
        format!("{time}.{millis:03}Z")
    }
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if month <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        month,
        day,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips_and_honours_offsets() {
        let cases = [
            ("1970-01-01T00:00:00Z", 0),
            ("2026-12-07T00:00:00Z", 1_796_601_600_000),
            ("2024-02-29T12:30:15.250Z", 1_709_209_815_250),
            ("2026-12-07T02:00:00+02:00", 1_796_601_600_000),
            ("2026-12-06T23:00:00.5-01:00", 1_796_601_600_500),
            ("2026-12-07t00:00:00z", 1_796_601_600_000),
        ];
        for (text, ms) in cases {
            assert_eq!(parse_rfc3339(text), Ok(ms), "{text}");
        }
        for ms in [0, 1_796_601_600_000, 1_709_209_815_250, 951_782_400_000] {
            assert_eq!(parse_rfc3339(&format_rfc3339(ms)), Ok(ms));
        }
        assert_eq!(
            format_rfc3339(1_709_209_815_250),
            "2024-02-29T12:30:15.250Z"
        );
    }

    #[test]
    fn bad_times_are_refused_with_a_reason() {
        for text in [
            "2026-13-01T00:00:00Z",
            "2025-02-29T00:00:00Z",
            "2026-12-07T24:00:00Z",
            "2026-12-07T00:00:00",
            "2026-12-07T00:00:00+2:00",
            "1969-12-31T23:59:59Z",
            "2026-12-07T00:00:00.Z",
            "2026-12-07T00:00:00Zjunk",
            "２０26-12-07T00:00:00Z",
            "+026-12-07T00:00:00Z",
        ] {
            let e = parse_rfc3339(text).unwrap_err();
            assert!(e.contains("invalid RFC 3339 time"), "{text}: {e}");
        }
    }

    #[test]
    fn expiry_is_a_time_or_a_positive_duration() {
        assert_eq!(parse_expiry("30m"), Ok(Expiry::After(1_800_000)));
        assert_eq!(parse_expiry("1970-01-01T00:00:01Z"), Ok(Expiry::At(1_000)));
        assert!(parse_expiry("0s").unwrap_err().contains("more than 0"));
        assert!(parse_expiry("soon").unwrap_err().contains("RFC 3339"));
        assert!(parse_expiry("25h").is_err());
    }
}
