//! Pure parsers for the request headers the API interprets.

/// A byte range requested by `Range: bytes=...`, resolved against a size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// Serve the whole content (no header, or one we do not honour).
    Full,
    /// Serve `start..=end`.
    Partial {
        /// First byte.
        start: u64,
        /// Last byte, inclusive.
        end: u64,
    },
    /// No byte of the content is in the requested range.
    Unsatisfiable,
}

/// Resolves a `Range` header against `size`, as Go's `http.ServeContent`
/// would for a single range; multiple ranges are answered with the whole body.
pub fn parse_range(header: Option<&str>, size: u64) -> ByteRange {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return ByteRange::Full;
    };
    if spec.contains(',') {
        return ByteRange::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return ByteRange::Unsatisfiable;
    };
    let (a, b) = (a.trim(), b.trim());
    let parse = |s: &str| s.parse::<u64>().ok();
    let (start, end) = if a.is_empty() {
        // Suffix: the last `b` bytes.
        match parse(b) {
            Some(0) | None => return ByteRange::Unsatisfiable,
            Some(n) => (size.saturating_sub(n), size.saturating_sub(1)),
        }
    } else {
        let Some(start) = parse(a) else {
            return ByteRange::Unsatisfiable;
        };
        let end = if b.is_empty() {
            size.saturating_sub(1)
        } else {
            match parse(b) {
                Some(e) if e >= start => e.min(size.saturating_sub(1)),
                _ => return ByteRange::Unsatisfiable,
            }
        };
        (start, end)
    };
    if size == 0 || start >= size {
        return ByteRange::Unsatisfiable;
    }
    ByteRange::Partial { start, end }
}

/// Parses an upload chunk's `Content-Range`: `<start>-<end>` (inclusive), also
/// tolerating a `bytes ` / `bytes=` prefix and a `/<total>` suffix.
pub fn parse_content_range(header: &str) -> Option<(u64, u64)> {
    let s = header.trim();
    let s = s
        .strip_prefix("bytes=")
        .or_else(|| s.strip_prefix("bytes "))
        .unwrap_or(s);
    let s = s.split('/').next()?;
    let (a, b) = s.split_once('-')?;
    let start = a.trim().parse().ok()?;
    let end = b.trim().parse().ok()?;
    (end >= start).then_some((start, end))
}

/// Media types listed in `Accept` headers (all of them, comma-separated,
/// parameters dropped).
pub fn accepted_types<'a>(values: impl Iterator<Item = &'a str>) -> Vec<String> {
    values
        .flat_map(|v| v.split(','))
        .map(|t| {
            t.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .filter(|t| !t.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_ranges() {
        assert_eq!(parse_range(None, 10), ByteRange::Full);
        assert_eq!(
            parse_range(Some("bytes=0-4"), 10),
            ByteRange::Partial { start: 0, end: 4 }
        );
        assert_eq!(
            parse_range(Some("bytes=5-"), 10),
            ByteRange::Partial { start: 5, end: 9 }
        );
        assert_eq!(
            parse_range(Some("bytes=-3"), 10),
            ByteRange::Partial { start: 7, end: 9 }
        );
        assert_eq!(
            parse_range(Some("bytes=-30"), 10),
            ByteRange::Partial { start: 0, end: 9 }
        );
        assert_eq!(
            parse_range(Some("bytes=8-100"), 10),
            ByteRange::Partial { start: 8, end: 9 }
        );
        assert_eq!(parse_range(Some("bytes=10-"), 10), ByteRange::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=5-2"), 10), ByteRange::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=x-2"), 10), ByteRange::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-1,3-4"), 10), ByteRange::Full);
        assert_eq!(parse_range(Some("items=0-1"), 10), ByteRange::Full);
        assert_eq!(parse_range(Some("bytes=0-0"), 0), ByteRange::Unsatisfiable);
    }

    #[test]
    fn parses_content_range() {
        assert_eq!(parse_content_range("0-9"), Some((0, 9)));
        assert_eq!(parse_content_range("bytes=10-19"), Some((10, 19)));
        assert_eq!(parse_content_range("bytes 10-19/100"), Some((10, 19)));
        for bad in ["", "5", "a-b", "9-3", "-1-5", "1-"] {
            assert_eq!(parse_content_range(bad), None, "{bad}");
        }
    }

    #[test]
    fn lists_accepted_types() {
        let v = accepted_types(["application/a+json; q=0.5, Application/B", "c"].into_iter());
        assert_eq!(v, ["application/a+json", "application/b", "c"]);
    }
}
