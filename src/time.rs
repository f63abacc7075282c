//! Time as bundle-init sees it: readings of the monotonic clock, and durations written the
//! way bundle files, the command line and log lines write them. The supervisor gets `Time`
//! values as event arguments and never reads the clock itself; only the runtime calls
//! [`now`].

use std::fmt;
use std::time::Duration;

/// A reading of the monotonic clock (time since boot): it never jumps with the wall clock.
pub(crate) type Time = Duration;

/// The longest duration a bundle file or `--stop-others` may give.
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

/// The monotonic clock now.
pub(crate) fn now() -> Time {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    // Nanoseconds since boot fit a u64 for 584 years; from_nanos has no panic path.
    Duration::from_nanos(
        (ts.tv_sec as u64)
            .wrapping_mul(1_000_000_000)
            .wrapping_add(ts.tv_nsec as u64),
    )
}

/// `250ms`, `8s`, `1.500s`, `120s`: a duration as log lines and `--check` write it, to the
/// millisecond. [`parse_duration`] reads it back.
pub(crate) fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{}.{:03}s", ms / 1000, ms % 1000)
    }
}

/// Why a duration was refused; `Display` is the message for the user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DurationError {
    /// Not a number with a unit.
    Malformed(String),
    /// More digits than any duration up to 24h at nanosecond precision needs.
    Digits(String),
    TooLong(String),
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DurationError::Malformed(text) => {
                write!(f, "bad duration \"{text}\" (examples: 500ms, 8s, 2m)")
            }
            DurationError::Digits(text) => write!(
                f,
                "duration \"{text}\" is longer than 24h or finer than a nanosecond"
            ),
            DurationError::TooLong(text) => write!(f, "duration \"{text}\" is longer than 24h"),
        }
    }
}

impl std::error::Error for DurationError {}

/// `8s`, `500ms`, `2m`, `1h`, `1.5s`. A unit is required: a bare number is ambiguous.
/// Parsed with integers only (no float parsing: it would cost the binary ~20 KiB).
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let bad = || DurationError::Malformed(text.to_string());
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let unit_ns: u128 = match unit {
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return Err(bad()),
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() || fraction.contains('.') || (number.contains('.') && fraction.is_empty()) {
        return Err(bad());
    }
    if whole.len() > 12 || fraction.len() > 9 {
        return Err(DurationError::Digits(text.to_string()));
    }
    // The value in units, scaled by 10^9 so a fraction of up to nine digits stays exact.
    let whole: u128 = whole.parse().map_err(|_| bad())?;
    let fraction_digits: u128 = if fraction.is_empty() {
        0
    } else {
        fraction.parse().map_err(|_| bad())?
    };
    let fraction_scaled = fraction_digits * 10u128.pow(9 - fraction.len() as u32);
    let total_ns = (whole * 1_000_000_000 + fraction_scaled) * unit_ns / 1_000_000_000;
    if total_ns > MAX_DURATION.as_nanos() {
        return Err(DurationError::TooLong(text.to_string()));
    }
    Ok(Duration::new(
        (total_ns / 1_000_000_000) as u64,
        (total_ns % 1_000_000_000) as u32,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_need_a_unit() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0.25m"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("2.000000001s"), Ok(Duration::new(2, 1)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86400)));
        assert_eq!(
            parse_duration("24.1h").unwrap_err().to_string(),
            "duration \"24.1h\" is longer than 24h"
        );
        for bad in [
            "",
            "s",
            "5",
            "5 s",
            "-1s",
            ".5s",
            "5.s",
            "1.2.3s",
            "5sec",
            "1e3s",
            "1.0000000001s",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    /// Twelve digits are allowed (the value then decides), thirteen are not.
    #[test]
    fn a_duration_may_have_twelve_digits_and_no_more() {
        assert_eq!(parse_duration("000000000001s"), Ok(Duration::from_secs(1)));
        assert_eq!(
            parse_duration("0000000000001s"),
            Err(DurationError::Digits("0000000000001s".into()))
        );
        assert_eq!(
            parse_duration("1s0").unwrap_err().to_string(),
            "bad duration \"1s0\" (examples: 500ms, 8s, 2m)"
        );
    }

    /// What `human` prints, `parse_duration` reads back as the same duration (to the
    /// millisecond, human's precision), and a printed duration prints the same again.
    #[test]
    fn printed_durations_parse_back_to_themselves() {
        let ms = Duration::from_millis;
        let mut durations = vec![
            Duration::ZERO,
            ms(1),
            ms(250),
            ms(999),
            ms(1000),
            ms(1001),
            ms(1500),
            ms(59_999),
            ms(60_000),
            ms(90_500),
            ms(120_000),
            ms(3_600_000),
            MAX_DURATION,
        ];
        durations.extend(
            (0..MAX_DURATION.as_millis() as u64)
                .step_by(7_919_993)
                .map(ms),
        );
        for d in durations {
            let printed = human(d);
            assert_eq!(parse_duration(&printed), Ok(d), "{printed}");
            assert_eq!(human(parse_duration(&printed).unwrap()), printed);
        }
    }

    /// Any spelling the parser takes prints in one form: milliseconds below a second,
    /// seconds (with three decimals if needed) above, minutes and hours as seconds.
    #[test]
    fn every_spelling_of_a_duration_prints_in_one_form() {
        for (written, printed) in [
            ("0s", "0ms"),
            ("250ms", "250ms"),
            ("0.25s", "250ms"),
            ("1000ms", "1s"),
            ("1.5s", "1.500s"),
            ("1.500s", "1.500s"),
            ("1.001s", "1.001s"),
            ("2m", "120s"),
            ("0.25m", "15s"),
            ("1.5m", "90s"),
            ("1h", "3600s"),
            ("24h", "86400s"),
            ("2.0004s", "2s"),
        ] {
            assert_eq!(
                human(parse_duration(written).unwrap()),
                printed,
                "{written}"
            );
        }
    }
}
