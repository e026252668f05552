//! docker_auth's pattern syntax: a value wrapped in slashes (`/^team-.+$/`) is a Go (RE2)
//! regular expression searched anywhere in the text; anything else is a glob with the exact
//! semantics of Go's `path.Match` (`*` and `?` never cross `/`, `[a-z]`, `[^x]`, `\` escapes,
//! and a malformed glob matches nothing).

use regex::Regex;

/// A malformed glob (Go's `path.ErrBadPattern`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadPattern;

/// True when `p` is a `/regex/` pattern (more than the two slashes, as docker_auth requires).
pub fn is_regex(p: &str) -> bool {
    p.len() > 2 && p.starts_with('/') && p.ends_with('/')
}

/// Matches `text` against a docker_auth pattern (after substitution); errors mean no match.
pub fn matches(pattern: &str, text: &str) -> bool {
    if is_regex(pattern) {
        go_regex(&pattern[1..pattern.len() - 1]).is_ok_and(|re| re.is_match(text))
    } else {
        glob_match(pattern, text) == Ok(true)
    }
}

/// Checks a pattern as docker_auth does at start-up: only regexes are checked.
pub fn validate(pattern: &str) -> Result<(), String> {
    if is_regex(pattern) {
        go_regex(&pattern[1..pattern.len() - 1])
            .map(drop)
            .map_err(|e| format!("invalid regex pattern: {e}"))
    } else {
        Ok(())
    }
}

// ------------------------------------------------------------------ globs (Go's path.Match)

/// Go's `path.Match(pattern, name)`, byte for byte.
pub fn glob_match(pattern: &str, name: &str) -> Result<bool, BadPattern> {
    let mut pattern = pattern;
    let mut name = name;
    'pattern: while !pattern.is_empty() {
        let (star, chunk, rest) = scan_chunk(pattern);
        pattern = rest;
        if star && chunk.is_empty() {
            // A trailing * matches the rest of the name unless it holds a /.
            return Ok(!name.contains('/'));
        }
        let here = match_chunk(chunk, name);
        if let Ok(Some(t)) = here {
            // The last chunk must use up the name, or a later star position may still match.
            if t.is_empty() || !pattern.is_empty() {
                name = t;
                continue;
            }
        }
        here?;
        if star {
            // Skip i+1 bytes, never a /.
            let bytes = name.as_bytes();
            let mut i = 0;
            while i < bytes.len() && bytes[i] != b'/' {
                if let Some(t) = match_chunk(chunk, &name[i + 1..])? {
                    if pattern.is_empty() && !t.is_empty() {
                        i += 1;
                        continue;
                    }
                    name = t;
                    continue 'pattern;
                }
                i += 1;
            }
        }
        // Before answering false, the rest of the pattern must be well formed.
        while !pattern.is_empty() {
            let (_, chunk, rest) = scan_chunk(pattern);
            pattern = rest;
            match_chunk(chunk, "")?;
        }
        return Ok(false);
    }
    Ok(name.is_empty())
}

/// Leading stars, then the chunk up to the next star outside a character class.
fn scan_chunk(pattern: &str) -> (bool, &str, &str) {
    let trimmed = pattern.trim_start_matches('*');
    let star = trimmed.len() != pattern.len();
    let bytes = trimmed.as_bytes();
    let mut in_range = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if i + 1 < bytes.len() => i += 1,
            b'[' => in_range = true,
            b']' => in_range = false,
            b'*' if !in_range => break,
            _ => {}
        }
        i += 1;
    }
    (star, &trimmed[..i], &trimmed[i..])
}

/// Go's `matchChunk`: the rest of `s` after `chunk` matched its start, `None` when it did not.
/// The whole chunk is always checked for syntax, even after a mismatch.
fn match_chunk<'a>(chunk: &str, s: &'a str) -> Result<Option<&'a str>, BadPattern> {
    let mut chunk = chunk;
    let mut s = s;
    let mut failed = false;
    while let Some(c) = chunk.chars().next() {
        if !failed && s.is_empty() {
            failed = true;
        }
        match c {
            '[' => {
                let mut r = '\0';
                if !failed {
                    r = s.chars().next().unwrap_or('\0');
                    s = &s[r.len_utf8()..];
                }
                chunk = &chunk[1..];
                let negated = chunk.starts_with('^');
                if negated {
                    chunk = &chunk[1..];
                }
                let mut matched = false;
                let mut ranges = 0;
                loop {
                    if ranges > 0 && chunk.starts_with(']') {
                        chunk = &chunk[1..];
                        break;
                    }
                    let (lo, rest) = class_char(chunk)?;
                    chunk = rest;
                    let mut hi = lo;
                    if let Some(rest) = chunk.strip_prefix('-') {
                        let (h, rest) = class_char(rest)?;
                        hi = h;
                        chunk = rest;
                    }
                    if lo <= r && r <= hi {
                        matched = true;
                    }
                    ranges += 1;
                }
                if matched == negated {
                    failed = true;
                }
            }
            '?' => {
                if !failed {
                    let r = s.chars().next().unwrap_or('\0');
                    if r == '/' {
                        failed = true;
                    }
                    s = &s[r.len_utf8()..];
                }
                chunk = &chunk[1..];
            }
            _ => {
                let literal = if c == '\\' {
                    chunk = &chunk[1..];
                    chunk.chars().next().ok_or(BadPattern)?
                } else {
                    c
                };
                // Go compares one byte at a time; whole characters compare the same way.
                if !failed {
                    match s.strip_prefix(literal) {
                        Some(rest) => s = rest,
                        None => {
                            failed = true;
                            s = "";
                        }
                    }
                }
                chunk = &chunk[literal.len_utf8()..];
            }
        }
    }
    Ok((!failed).then_some(s))
}

/// One (possibly escaped) character of a class, and what follows; the class must go on.
fn class_char(chunk: &str) -> Result<(char, &str), BadPattern> {
    let mut chunk = chunk;
    if chunk.is_empty() || chunk.starts_with('-') || chunk.starts_with(']') {
        return Err(BadPattern);
    }
    if let Some(rest) = chunk.strip_prefix('\\') {
        chunk = rest;
    }
    let c = chunk.chars().next().ok_or(BadPattern)?;
    let rest = &chunk[c.len_utf8()..];
    if rest.is_empty() {
        return Err(BadPattern);
    }
    Ok((c, rest))
}

// ------------------------------------------------------------------ regexes (Go's RE2 syntax)

/// Compiles a Go regular expression: Go's syntax is rewritten where Rust's reads it otherwise
/// (`{` that is no repetition is a literal, `[` inside a class is a literal, `\d \w \s \b` are
/// ASCII) and Go's refusals are kept (nested repetitions such as `a?*`).
pub fn go_regex(go: &str) -> Result<Regex, String> {
    Regex::new(&translate(go)?).map_err(|e| e.to_string())
}

fn translate(go: &str) -> Result<String, String> {
    let chars: Vec<char> = go.chars().collect();
    let mut out = String::with_capacity(go.len() + 8);
    let mut in_class = false;
    // Right after a repetition another one is Go's "invalid nested repetition", except one `?`
    // that makes it lazy.
    let mut after_repeat = false;
    let mut lazy = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if in_class {
            match c {
                ']' => {
                    in_class = false;
                    out.push(']');
                }
                '[' if chars.get(i + 1) == Some(&':') => {
                    // A POSIX class `[:alpha:]`, copied whole.
                    let end = (i + 2..chars.len().saturating_sub(1))
                        .find(|&j| chars[j] == ':' && chars[j + 1] == ']')
                        .ok_or("missing closing ]")?;
                    out.extend(&chars[i..=end + 1]);
                    i = end + 1;
                }
                '[' | '&' | '~' => {
                    out.push('\\');
                    out.push(c);
                }
                '\\' => i = escape(&chars, i, true, &mut out)?,
                _ => out.push(c),
            }
            i += 1;
            continue;
        }
        let repeat_len = match c {
            '*' | '+' | '?' => Some(1),
            '{' => counted_repeat(&chars[i..]),
            _ => None,
        };
        if let Some(len) = repeat_len {
            if after_repeat {
                if c != '?' || lazy {
                    let op: String = chars[i..i + len].iter().collect();
                    return Err(format!("invalid nested repetition operator: `{op}`"));
                }
                lazy = true;
            }
            out.extend(&chars[i..i + len]);
            after_repeat = true;
            i += len;
            continue;
        }
        after_repeat = false;
        lazy = false;
        match c {
            '[' => {
                in_class = true;
                out.push('[');
                // `[]` or `[^]` at the start: the `]` is a literal member.
                if chars.get(i + 1) == Some(&'^') {
                    out.push('^');
                    i += 1;
                }
                if chars.get(i + 1) == Some(&']') {
                    out.push_str("\\]");
                    i += 1;
                }
            }
            '{' | '}' => {
                out.push('\\');
                out.push(c);
            }
            '\\' => i = escape(&chars, i, false, &mut out)?,
            _ => out.push(c),
        }
        i += 1;
    }
    Ok(out)
}

/// Length of a counted repetition `{n}`, `{n,}`, `{n,m}` at the start of `s`, if it is one.
fn counted_repeat(s: &[char]) -> Option<usize> {
    let mut i = 1;
    let digits = |i: &mut usize| {
        let start = *i;
        while s.get(*i).is_some_and(char::is_ascii_digit) {
            *i += 1;
        }
        *i > start
    };
    if !digits(&mut i) {
        return None;
    }
    if s.get(i) == Some(&',') {
        i += 1;
        digits(&mut i);
    }
    (s.get(i) == Some(&'}')).then_some(i + 1)
}

/// Copies the escape at `chars[i]` (a backslash); returns the index of its last character.
fn escape(chars: &[char], i: usize, in_class: bool, out: &mut String) -> Result<usize, String> {
    let c = *chars
        .get(i + 1)
        .ok_or("trailing backslash at end of expression")?;
    // Rust nests classes, so inside a class this is a union, as Go's `[\d-]` is.
    let ascii = |class: &str| format!("[{class}]");
    match c {
        'd' => out.push_str(&ascii("0-9")),
        'D' => out.push_str(&ascii("^0-9")),
        'w' => out.push_str(&ascii("0-9A-Za-z_")),
        'W' => out.push_str(&ascii("^0-9A-Za-z_")),
        's' => out.push_str(&ascii("\\t\\n\\f\\r ")),
        'S' => out.push_str(&ascii("^\\t\\n\\f\\r ")),
        'b' | 'B' if !in_class => {
            out.push_str("(?-u:\\");
            out.push(c);
            out.push(')');
        }
        'p' | 'P' | 'x' if chars.get(i + 2) == Some(&'{') => {
            let end = (i + 3..chars.len())
                .find(|&j| chars[j] == '}')
                .ok_or("missing closing }")?;
            out.extend(&chars[i..=end]);
            return Ok(end);
        }
        _ => {
            out.push('\\');
            out.push(c);
        }
    }
    Ok(i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_follow_go_path_match() {
        // Cases from Go's path/match_test.go.
        let cases: &[(&str, &str, Result<bool, BadPattern>)] = &[
            ("abc", "abc", Ok(true)),
            ("*", "abc", Ok(true)),
            ("*c", "abc", Ok(true)),
            ("a*", "a", Ok(true)),
            ("a*", "abc", Ok(true)),
            ("a*", "ab/c", Ok(false)),
            ("a*/b", "abc/b", Ok(true)),
            ("a*/b", "a/c/b", Ok(false)),
            ("a*b*c*d*e*/f", "axbxcxdxe/f", Ok(true)),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/f", Ok(true)),
            ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", Ok(false)),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", Ok(false)),
            ("a*b?c*x", "abxbbxdbxebxczzx", Ok(true)),
            ("a*b?c*x", "abxbbxdbxebxczzy", Ok(false)),
            ("ab[c]", "abc", Ok(true)),
            ("ab[b-d]", "abc", Ok(true)),
            ("ab[e-g]", "abc", Ok(false)),
            ("ab[^c]", "abc", Ok(false)),
            ("ab[^b-d]", "abc", Ok(false)),
            ("ab[^e-g]", "abc", Ok(true)),
            ("a\\*b", "a*b", Ok(true)),
            ("a\\*b", "ab", Ok(false)),
            ("a?b", "a☺b", Ok(true)),
            ("a[^a]b", "a☺b", Ok(true)),
            ("a???b", "a☺b", Ok(false)),
            ("a[^a][^a][^a]b", "a☺b", Ok(false)),
            ("[a-ζ]*", "α", Ok(true)),
            ("*[a-ζ]", "A", Ok(false)),
            ("a?b", "a/b", Ok(false)),
            ("a*b", "a/b", Ok(false)),
            ("[\\]a]", "]", Ok(true)),
            ("[\\-]", "-", Ok(true)),
            ("[x\\-]", "x", Ok(true)),
            ("[x\\-]", "-", Ok(true)),
            ("[x\\-]", "z", Ok(false)),
            ("[\\-x]", "x", Ok(true)),
            ("[\\-x]", "-", Ok(true)),
            ("[\\-x]", "a", Ok(false)),
            ("[]a]", "]", Err(BadPattern)),
            ("[-]", "-", Err(BadPattern)),
            ("[x-]", "x", Err(BadPattern)),
            ("[x-]", "-", Err(BadPattern)),
            ("[x-]", "z", Err(BadPattern)),
            ("[-x]", "x", Err(BadPattern)),
            ("[-x]", "-", Err(BadPattern)),
            ("[-x]", "a", Err(BadPattern)),
            ("\\", "a", Err(BadPattern)),
            ("[a-b-c]", "a", Err(BadPattern)),
            ("[", "a", Err(BadPattern)),
            ("[^", "a", Err(BadPattern)),
            ("[^bc", "a", Err(BadPattern)),
            ("a[", "a", Err(BadPattern)),
            ("a[", "ab", Err(BadPattern)),
            ("a[", "x", Err(BadPattern)),
            ("a/b[", "x", Err(BadPattern)),
            ("*x", "xxx", Ok(true)),
        ];
        for (pattern, name, want) in cases {
            assert_eq!(glob_match(pattern, name), *want, "{pattern:?} vs {name:?}");
        }
    }

    #[test]
    fn regexes_read_as_go_reads_them() {
        assert!(matches("/z$/", "baz"));
        assert!(!matches("/^z/", "baz"));
        assert!(matches("/(admins|VIP)/", "VIP"));
        // `{` that is no repetition is a literal in Go; Rust would refuse it.
        assert!(validate("/${account}_.*/").is_ok());
        assert!(matches("/a{b}/", "xa{b}"));
        assert!(matches("/^a{2}$/", "aa"));
        assert!(matches("/^a{1,}b$/", "aaab"));
        // `[` inside a class is a member; `]` first is a member.
        assert!(matches("/^[a[]+$/", "a[a"));
        assert!(matches("/^[]a]+$/", "]a"));
        assert!(matches("/^[^]a]$/", "b"));
        assert!(matches("/^[[:digit:]x]+$/", "1x2"));
        // ASCII classes, as in Go.
        assert!(!matches("/^\\d$/", "٣"));
        assert!(matches("/^\\d+\\w\\s$/", "12a "));
        assert!(matches("/^[\\d-]+$/", "1-2"));
        assert!(matches("/^\\p{Greek}$/", "α"));
        assert!(matches("/^a*?$/", "aaa"));
        assert!(matches("/^a{2}?$/", "aa"));
        // Go's refusals (docker_auth's own validation cases).
        for bad in [
            "/foo?*/", "/a**/", "/a+*/", "/a*??/", "/a{2}*/", "/(/", "/\\/",
        ] {
            assert!(validate(bad).is_err(), "{bad}");
        }
        for ok in ["/foo.*/", "foo?*", "//", "/a/"] {
            assert!(validate(ok).is_ok(), "{ok}");
        }
        // "//" is a glob (docker_auth needs more than the slashes).
        assert!(matches("//", "//"));
        assert!(!matches("//", "x"));
    }
}
