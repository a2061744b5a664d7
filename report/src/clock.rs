//! Times from outside jemsafe (a file's mtime, a timeline line's `t`, a sidecar's or a
//! dump name's time, a tar header's mtime) as jemsafe converts and shows them.
//!
//! mysqld's user can give its own files any mtime (`touch -d @-86400`) and write any
//! number into a timeline; `humantime`'s RFC 3339 formatting panics before 1970 and
//! after year 9999, and `UNIX_EPOCH + Duration` panics past `i64` seconds. So every such
//! time goes through these pure functions: a conversion reports a time out of
//! [1970-01-01T00:00:00Z, 9999-12-31T23:59:59Z] as [`OutOfRange`] (the caller counts it as
//! damage), and a formatting clamps to that range, never panicking.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// 9999-12-31T23:59:59Z in seconds since the epoch: the last time RFC 3339 can write.
pub const LATEST_SECS: u64 = 253_402_300_799;

/// The last time jemsafe shows: 9999-12-31T23:59:59Z.
pub fn latest() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(LATEST_SECS)
}

/// Which side of the range a time fell off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutOfRange {
    BeforeEpoch,
    AfterYear9999,
}

impl fmt::Display for OutOfRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OutOfRange::BeforeEpoch => "a time before 1970",
            OutOfRange::AfterYear9999 => "a time after the year 9999",
        })
    }
}

/// `t` when RFC 3339 can write it, else which side it fell off.
pub fn check(t: SystemTime) -> Result<SystemTime, OutOfRange> {
    match t.duration_since(UNIX_EPOCH) {
        Err(_) => Err(OutOfRange::BeforeEpoch),
        Ok(d) if d.as_secs() > LATEST_SECS => Err(OutOfRange::AfterYear9999),
        Ok(_) => Ok(t),
    }
}

/// `t` moved into [1970, 9999-12-31T23:59:59].
pub fn clamp(t: SystemTime) -> SystemTime {
    match check(t) {
        Ok(t) => t,
        Err(OutOfRange::BeforeEpoch) => UNIX_EPOCH,
        Err(OutOfRange::AfterYear9999) => latest(),
    }
}

/// Milliseconds since the epoch (a timeline's `t`) as a time, when in range.
pub fn from_millis(ms: u64) -> Result<SystemTime, OutOfRange> {
    if ms / 1000 > LATEST_SECS {
        return Err(OutOfRange::AfterYear9999);
    }
    Ok(UNIX_EPOCH + Duration::from_millis(ms))
}

/// Seconds since the epoch as a time, clamped (a tar header's mtime, a boot time).
pub fn from_secs_clamped(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs.min(LATEST_SECS))
}

/// Milliseconds since the epoch of `t`, clamped (0 before 1970).
pub fn millis(t: SystemTime) -> u64 {
    u64::try_from(millis_signed(t)).unwrap_or(0)
}

/// Milliseconds since the epoch of `t`, negative before 1970 (what a chart's time axis
/// and JavaScript's `Date` take); after the year 9999 the last millisecond of 9999's last
/// second, as [`millis`]; `i64::MIN` at the far past.
pub fn millis_signed(t: SystemTime) -> i64 {
    let ms = match t.duration_since(UNIX_EPOCH) {
        Ok(_) => i128::try_from(
            clamp(t)
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis(),
        ),
        Err(before) => i128::try_from(before.duration().as_millis()).map(|m| -m),
    };
    ms.map_or(i64::MIN, |ms| {
        i64::try_from(ms).unwrap_or(if ms < 0 { i64::MIN } else { i64::MAX })
    })
}

/// The time of a `stat` (seconds and nanoseconds since the epoch, negative before 1970) as
/// the kernel keeps it: a planted time before 1970 stays before 1970, for [`rfc3339_or_why`]
/// to say so; saturating where SystemTime ends.
pub fn from_stat(secs: i64, nanos: i64) -> SystemTime {
    let nanos = Duration::from_nanos(u64::try_from(nanos).unwrap_or(0));
    let whole = Duration::from_secs(secs.unsigned_abs());
    let t = if secs >= 0 {
        UNIX_EPOCH.checked_add(whole)
    } else {
        UNIX_EPOCH.checked_sub(whole)
    };
    t.and_then(|t| t.checked_add(nanos))
        .unwrap_or(if secs >= 0 { latest() } else { UNIX_EPOCH })
}

/// The time [`millis_signed`] gave `ms` for, saturating where SystemTime ends.
pub fn from_millis_signed(ms: i64) -> SystemTime {
    let d = Duration::from_millis(ms.unsigned_abs());
    let t = if ms >= 0 {
        UNIX_EPOCH.checked_add(d)
    } else {
        UNIX_EPOCH.checked_sub(d)
    };
    t.unwrap_or(if ms >= 0 { latest() } else { UNIX_EPOCH })
}

/// Nanoseconds since the epoch of `t`, clamped.
pub fn nanos(t: SystemTime) -> u128 {
    clamp(t)
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos()
}

/// Seconds since the epoch of `t`, clamped.
pub fn secs(t: SystemTime) -> u64 {
    clamp(t)
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// `2026-11-26T18:25:54Z`, clamped.
pub fn rfc3339_seconds(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(clamp(t)).to_string()
}

/// `2026-11-26T18:25:54.123Z`, clamped.
pub fn rfc3339_millis(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(clamp(t)).to_string()
}

/// `2026-11-26T18:25:54Z`, or what is wrong with `t` for a person to read (`a time before
/// 1970`): a listing shows a planted mtime as what it is, not as a clamped date.
pub fn rfc3339_or_why(t: SystemTime) -> String {
    match check(t) {
        Ok(t) => rfc3339_seconds(t),
        Err(why) => why.to_string(),
    }
}

/// `2026-11-26 18:25:54` (UTC), clamped.
pub fn stamp(t: SystemTime) -> String {
    rfc3339_seconds(t)
        .replace('T', " ")
        .trim_end_matches('Z')
        .to_owned()
}

/// `2026-11-26 18:25:54 UTC`, clamped.
pub fn utc_words(t: SystemTime) -> String {
    format!("{} UTC", stamp(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_time_before_1970_stays_before_1970() {
        assert!(from_stat(-86400, 0) < UNIX_EPOCH);
        assert_eq!(rfc3339_or_why(from_stat(-86400, 0)), "a time before 1970");
        assert_eq!(from_stat(1, 5), UNIX_EPOCH + Duration::new(1, 5));
        // The far ends neither panic nor wrap.
        assert!(from_stat(i64::MAX, 0) >= latest());
        let _ = from_stat(i64::MIN, i64::MIN);
    }

    fn at(secs: i64) -> SystemTime {
        if secs >= 0 {
            UNIX_EPOCH + Duration::from_secs(secs as u64)
        } else {
            UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
        }
    }

    #[test]
    fn times_before_1970_are_clamped_or_named_never_a_panic() {
        for before in [-1, -86400, i64::MIN / 2] {
            let t = at(before);
            assert_eq!(check(t), Err(OutOfRange::BeforeEpoch), "{before}");
            assert_eq!(rfc3339_seconds(t), "1970-01-01T00:00:00Z");
            assert_eq!(rfc3339_millis(t), "1970-01-01T00:00:00.000Z");
            assert_eq!(rfc3339_or_why(t), "a time before 1970");
            assert_eq!(utc_words(t), "1970-01-01 00:00:00 UTC");
            assert_eq!((millis(t), secs(t)), (0, 0));
            assert!(millis_signed(t) < 0, "{before}");
        }
        assert_eq!(millis_signed(at(-86400)), -86_400_000);
        assert_eq!(millis_signed(at(i64::MIN / 2)), i64::MIN);
        assert_eq!(millis_signed(UNIX_EPOCH - Duration::from_millis(1)), -1);
        assert_eq!(millis_signed(at(60)), 60_000);
        // A fraction of a second before the epoch too.
        let t = UNIX_EPOCH - Duration::from_millis(1);
        assert_eq!(rfc3339_seconds(t), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn the_last_second_of_9999_is_shown_and_the_next_is_out_of_range() {
        let last = at(253_402_300_799);
        assert_eq!(check(last), Ok(last));
        assert_eq!(rfc3339_seconds(last), "9999-12-31T23:59:59Z");
        assert_eq!(rfc3339_or_why(last), "9999-12-31T23:59:59Z");
        let next = at(253_402_300_800);
        assert_eq!(check(next), Err(OutOfRange::AfterYear9999));
        assert_eq!(rfc3339_seconds(next), "9999-12-31T23:59:59Z");
        assert_eq!(rfc3339_millis(next), "9999-12-31T23:59:59.000Z");
        assert_eq!(rfc3339_or_why(next), "a time after the year 9999");
        assert_eq!(stamp(next), "9999-12-31 23:59:59");
        assert_eq!(secs(next), LATEST_SECS);
        assert_eq!(millis(next), LATEST_SECS * 1000);
        assert_eq!(millis_signed(next), LATEST_SECS as i64 * 1000);
        assert_eq!(nanos(next), u128::from(LATEST_SECS) * 1_000_000_000);
        assert_eq!(nanos(at(-1)), 0);
    }

    #[test]
    fn timeline_milliseconds_are_checked_to_the_edge() {
        assert_eq!(from_millis(0), Ok(UNIX_EPOCH));
        assert_eq!(from_millis(253_402_300_799_999).map(secs), Ok(LATEST_SECS));
        assert_eq!(
            from_millis(253_402_300_800_000),
            Err(OutOfRange::AfterYear9999)
        );
        assert_eq!(
            from_millis(253_402_300_801_000),
            Err(OutOfRange::AfterYear9999)
        );
        assert_eq!(from_millis(u64::MAX), Err(OutOfRange::AfterYear9999));
        assert_eq!(from_secs_clamped(u64::MAX), latest());
        assert_eq!(from_secs_clamped(60), UNIX_EPOCH + Duration::from_secs(60));
    }
}
