//! Go's `time.ParseDuration`, which distribution uses for every duration key.

use std::time::Duration;

const NANOS_PER_UNIT: &[(&str, u128)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("\u{b5}s", 1_000),  // µs, MICRO SIGN
    ("\u{3bc}s", 1_000), // μs, GREEK SMALL LETTER MU
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60 * 1_000_000_000),
    ("h", 3_600 * 1_000_000_000),
];

/// Go's time.Duration is an i64 of nanoseconds; nothing longer parses there.
const MAX_NANOS: u128 = i64::MAX as u128;

/// Parses a Go duration string: "10s", "1h30m", "300ms", "1.5h", "168h", "0".
///
/// Negative durations parse in Go but mean nothing in this configuration, so they are refused.
pub fn parse_go_duration(s: &str) -> Result<Duration, String> {
    let fail = |why: &str| {
        if why.is_empty() {
            format!("invalid duration {s:?}")
        } else {
            format!("invalid duration {s:?}: {why}")
        }
    };
    let (negative, mut rest) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(fail(""));
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let (whole, after) = rest.split_at(digits);
        rest = after;
        let mut fraction = "";
        if let Some(after_dot) = rest.strip_prefix('.') {
            let digits = after_dot.len()
                - after_dot
                    .trim_start_matches(|c: char| c.is_ascii_digit())
                    .len();
            (fraction, rest) = after_dot.split_at(digits);
        }
        if whole.is_empty() && fraction.is_empty() {
            return Err(fail(""));
        }
        let unit_len = rest
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(rest.len());
        if unit_len == 0 {
            return Err(fail("missing unit"));
        }
        let (unit, after) = rest.split_at(unit_len);
        rest = after;
        let Some(&(_, scale)) = NANOS_PER_UNIT.iter().find(|(name, _)| *name == unit) else {
            return Err(fail(&format!("unknown unit {unit:?}")));
        };
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| fail("out of range"))?
        };
        let mut part = whole
            .checked_mul(scale)
            .ok_or_else(|| fail("out of range"))?;
        // Sub-nanosecond digits cannot change the result; 19 digits keep u128 safe.
        let fraction = &fraction[..fraction.len().min(19)];
        if !fraction.is_empty() {
            let numerator: u128 = fraction.parse().map_err(|_| fail(""))?;
            part += numerator * scale / 10u128.pow(fraction.len() as u32);
        }
        total = total
            .checked_add(part)
            .ok_or_else(|| fail("out of range"))?;
        if total > MAX_NANOS {
            return Err(fail("out of range"));
        }
    }
    if negative && total != 0 {
        return Err(fail("negative durations are not allowed"));
    }
    Ok(Duration::from_nanos(total as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_forms() {
        let ok = |s: &str| parse_go_duration(s).unwrap();
        assert_eq!(ok("10s"), Duration::from_secs(10));
        assert_eq!(ok("1h30m"), Duration::from_secs(5400));
        assert_eq!(ok("300ms"), Duration::from_millis(300));
        assert_eq!(ok("1.5h"), Duration::from_secs(5400));
        assert_eq!(ok("168h"), Duration::from_secs(168 * 3600));
        assert_eq!(ok("0"), Duration::ZERO);
        assert_eq!(ok("+5s"), Duration::from_secs(5));
        assert_eq!(ok("-0s"), Duration::ZERO);
        assert_eq!(ok(".5s"), Duration::from_millis(500));
        assert_eq!(ok("1.s"), Duration::from_secs(1));
        assert_eq!(ok("2us"), Duration::from_micros(2));
        assert_eq!(ok("2µs"), Duration::from_micros(2));
        assert_eq!(ok("2μs"), Duration::from_micros(2));
        assert_eq!(ok("7ns"), Duration::from_nanos(7));
        assert_eq!(ok("1h1m1s1ms"), Duration::from_millis(3_661_001));
        assert_eq!(ok("0.000000001s"), Duration::from_nanos(1));
        assert_eq!(ok("2562047h"), Duration::from_secs(2_562_047 * 3600));
    }

    #[test]
    fn go_errors() {
        let err = |s: &str| parse_go_duration(s).unwrap_err();
        assert_eq!(err("5x"), r#"invalid duration "5x": unknown unit "x""#);
        assert_eq!(err("5"), r#"invalid duration "5": missing unit"#);
        assert_eq!(err(""), r#"invalid duration """#);
        assert_eq!(err("s"), r#"invalid duration "s""#);
        assert_eq!(err(".s"), r#"invalid duration ".s""#);
        assert_eq!(
            err("1h 30m"),
            r#"invalid duration "1h 30m": unknown unit "h ""#
        );
        assert_eq!(
            err("-5s"),
            r#"invalid duration "-5s": negative durations are not allowed"#
        );
        assert_eq!(
            err("2562048h"),
            r#"invalid duration "2562048h": out of range"#
        );
        assert_eq!(
            err("99999999999999999999999999999999999999999h"),
            r#"invalid duration "99999999999999999999999999999999999999999h": out of range"#
        );
    }
}
