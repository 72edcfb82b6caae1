//! Durations as Kubernetes writes and prints them.

use std::time::Duration;

/// Parses a duration as kubeadm flags and configs write it (`8760h`, `8760h0m0s`, `90m`),
/// plus humantime's longer forms (`365d`, `1y`).
pub fn parse(s: &str) -> Result<Duration, DurationError> {
    let t = s.trim();
    if t.is_empty() {
        return Err(DurationError::Empty);
    }
    humantime::parse_duration(t).map_err(|source| DurationError::Invalid {
        given: s.to_string(),
        source,
    })
}

/// Why a duration is not one kubepki accepts.
#[derive(Debug, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration")]
    Empty,
    #[error("invalid duration {given:?}: {source}")]
    Invalid {
        given: String,
        source: humantime::DurationError,
    },
    /// `what` names the setting.
    #[error(
        "{what} must be at least 1s (X.509 times have whole seconds): a certificate valid for {} would be expired when written",
        humantime::format_duration(*given)
    )]
    TooShort { what: &'static str, given: Duration },
}

/// apimachinery's `duration.HumanDuration`, which kubeadm ≥1.31 uses for RESIDUAL TIME.
/// `seconds` may be negative (already expired).
pub fn human(seconds: i64) -> String {
    // Go allows up to 2 s of clock skew before calling a negative duration invalid.
    if seconds < -1 {
        return "<invalid>".into();
    } else if seconds < 0 {
        return "0s".into();
    } else if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        if s == 0 {
            return format!("{minutes}m");
        }
        return format!("{minutes}m{s}s");
    } else if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        if m == 0 {
            return format!("{hours}h");
        }
        return format!("{hours}h{m}m");
    } else if hours < 48 {
        return format!("{hours}h");
    } else if hours < 8 * 24 {
        let h = hours % 24;
        if h == 0 {
            return format!("{}d", hours / 24);
        }
        return format!("{}d{}h", hours / 24, h);
    } else if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    } else if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        if dy == 0 {
            return format!("{}y", hours / 24 / 365);
        }
        return format!("{}y{}d", hours / 24 / 365, dy);
    }
    format!("{}y", hours / 24 / 365)
}

/// `start + d`, saturating at the last instant X.509 can express (9999-12-31T23:59:59Z): an
/// absurd validity gives the longest certificate possible instead of an overflow.
pub fn after(start: time::OffsetDateTime, d: Duration) -> time::OffsetDateTime {
    let last = time::PrimitiveDateTime::new(
        time::Date::from_calendar_date(9999, time::Month::December, 31).expect("valid date"),
        time::Time::from_hms(23, 59, 59).expect("valid time"),
    )
    .assume_utc();
    time::Duration::try_from(d)
        .ok()
        .and_then(|d| start.checked_add(d))
        .map_or(last, |t| t.min(last))
}

/// Refuses a certificate lifetime under one second: X.509 times have whole seconds, so it
/// would be issued already expired. `what` names the setting.
pub fn check_validity(d: Duration, what: &'static str) -> Result<(), DurationError> {
    if d < Duration::from_secs(1) {
        return Err(DurationError::TooShort { what, given: d });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_and_kubeadm_forms() {
        assert_eq!(parse("8760h").unwrap(), Duration::from_secs(8760 * 3600));
        assert_eq!(
            parse("8760h0m0s").unwrap(),
            Duration::from_secs(8760 * 3600)
        );
        assert_eq!(parse("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse("365d").unwrap(), Duration::from_secs(365 * 86400));
        assert!(parse("").is_err());
        assert!(parse("soon").is_err());
        assert!(parse("-5h").is_err());
    }

    #[test]
    fn human_duration_matches_apimachinery_table() {
        let h = 3600;
        let d = 24 * h;
        let cases: &[(i64, &str)] = &[
            (-2, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (119, "119s"),
            (120, "2m"),
            (121, "2m1s"),
            (599, "9m59s"),
            (600, "10m"),
            (3 * h - 1, "179m"),
            (3 * h, "3h"),
            (3 * h + 60, "3h1m"),
            (8 * h - 1, "7h59m"),
            (8 * h, "8h"),
            (48 * h - 1, "47h"),
            (48 * h, "2d"),
            (48 * h + h, "2d1h"),
            (8 * d - 1, "7d23h"),
            (8 * d, "8d"),
            (364 * d + 23 * h, "364d"),
            (365 * 2 * d - 1, "729d"),
            (365 * 2 * d, "2y"),
            (365 * 5 * d - h, "4y364d"),
            (365 * 8 * d - 1, "7y364d"),
            (365 * 8 * d, "8y"),
            (3650 * d - h, "9y"),
        ];
        for (s, want) in cases {
            assert_eq!(human(*s), *want, "human({s})");
        }
    }

    #[test]
    fn after_saturates_instead_of_overflowing() {
        let now = time::OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let year = Duration::from_secs(365 * 24 * 3600);
        assert_eq!(
            after(now, year) - now,
            time::Duration::seconds(365 * 24 * 3600)
        );
        let last = after(now, Duration::MAX);
        assert_eq!(
            (last.year(), last.month() as u8, last.day()),
            (9999, 12, 31)
        );
        assert_eq!(after(now, Duration::from_secs(u64::MAX / 2)), last);
    }
}
