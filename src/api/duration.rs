//! Go-style durations (`300ms`, `60s`, `1h30m`, `1.5h`), the format Kubernetes users already
//! write in Gateway API and most controllers.

use std::time::Duration;

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Nothing to parse.
    #[error("empty duration")]
    Empty,
    /// Not a sequence of number+unit pairs.
    #[error(
        "invalid duration {0:?}: expected a number and a unit (ns, us, ms, s, m, h), e.g. 60s or 1h30m"
    )]
    Invalid(String),
    /// Larger than a year-long timeout makes sense to represent.
    #[error("duration {0:?} is too large")]
    TooLarge(String),
}

/// Parses a Go-style duration. Negative durations are refused; `0` alone means zero.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let s = text.trim();
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let invalid = || DurationError::Invalid(text.to_string());
    let mut rest = s;
    let mut total_nanos: u128 = 0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(invalid)?;
        let (number, after) = rest.split_at(num_len);
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(invalid()),
        };
        total_nanos += scale(number, unit_nanos).ok_or_else(invalid)?;
        if total_nanos > u128::from(u64::MAX) {
            return Err(DurationError::TooLarge(text.to_string()));
        }
        rest = next;
    }
    let nanos =
        u64::try_from(total_nanos).map_err(|_| DurationError::TooLarge(text.to_string()))?;
    Ok(Duration::from_nanos(nanos))
}

/// `number` (digits with at most one '.') times `unit` nanoseconds, without floating point.
fn scale(number: &str, unit: u128) -> Option<u128> {
    let (whole, frac) = match number.split_once('.') {
        Some((w, f)) => (w, f),
        None => (number, ""),
    };
    if whole.is_empty() && frac.is_empty() {
        return None;
    }
    let digits_ok = |p: &str| p.chars().all(|c| c.is_ascii_digit());
    if !digits_ok(whole) || !digits_ok(frac) || whole.len() > 20 {
        return None;
    }
    let mut value = if whole.is_empty() {
        0
    } else {
        whole.parse::<u128>().ok()? * unit
    };
    let mut place = unit;
    for d in frac.chars().take(18) {
        place /= 10;
        value += u128::from(d.to_digit(10)?) * place;
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        let cases = [
            ("60s", Duration::from_secs(60)),
            ("1h30m", Duration::from_secs(5400)),
            ("24h", Duration::from_secs(86400)),
            ("300ms", Duration::from_millis(300)),
            ("1.5h", Duration::from_secs(5400)),
            (".5s", Duration::from_millis(500)),
            ("10us", Duration::from_micros(10)),
            ("7ns", Duration::from_nanos(7)),
            ("0", Duration::ZERO),
            ("2m3s4ms", Duration::from_millis(123_004)),
        ];
        for (text, want) in cases {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn refuses_bad_durations() {
        for text in ["", "10", "s", "1x", "-5s", "1..2s", "5 s", "1h-3m", "."] {
            assert!(parse_duration(text).is_err(), "{text:?} should fail");
        }
        assert!(matches!(
            parse_duration("99999999999999h"),
            Err(DurationError::TooLarge(_))
        ));
    }
}
