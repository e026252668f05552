//! Repository names and tags, validated with distribution's grammar.

use std::fmt;

/// Longest repository name distribution accepts.
pub const MAX_NAME_LENGTH: usize = 255;

/// A validated repository name such as `library/alpine`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepositoryName(String);

/// A validated tag: `[\w][\w.-]{0,127}`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

impl RepositoryName {
    /// Validates a name from a request against the OCI grammar: path components
    /// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*` joined by `/`, at most 255 characters.
    pub fn parse(name: &str) -> Option<Self> {
        (name.len() <= MAX_NAME_LENGTH && name.split('/').all(is_path_component))
            .then(|| Self(name.to_string()))
    }

    /// Validates a name found in storage. registry:2 also accepted a
    /// `domain[:port]/` first component (`localhost:5000/a`); such
    /// repositories are no longer served, but garbage collection must still
    /// see them, or it would delete the blobs they reference.
    pub fn from_storage(name: &str) -> Option<Self> {
        if let Some(valid) = Self::parse(name) {
            return Some(valid);
        }
        let (first, rest) = name.split_once('/')?;
        (name.len() <= MAX_NAME_LENGTH
            && is_domain(first)
            && rest.split('/').all(is_path_component))
        .then(|| Self(name.to_string()))
    }

    /// The name text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The `/`-separated components, each safe to use as a directory name.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }
}

/// One component: alphanumeric runs separated by `.`, `_`, `__` or one or more `-`.
fn is_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: ".", "_", "__", or "-"+; always followed by an alphanumeric.
        let start = i;
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
        if i == start || i >= b.len() || !is_alnum(b[i]) {
            return false;
        }
    }
    true
}

/// `host[:port]` where host is dot-separated `[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?`.
fn is_domain(c: &str) -> bool {
    let (host, port) = match c.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (c, None),
    };
    let label_ok = |l: &str| {
        let b = l.as_bytes();
        !b.is_empty()
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter().all(|&x| x.is_ascii_alphanumeric() || x == b'-')
    };
    host.split('.').all(label_ok)
        && port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

impl Tag {
    /// Validates `tag` against `[\w][\w.-]{0,127}`.
    pub fn parse(tag: &str) -> Option<Self> {
        let b = tag.as_bytes();
        let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
        (!b.is_empty()
            && b.len() <= 128
            && word(b[0])
            && b[1..].iter().all(|&c| word(c) || c == b'.' || c == b'-'))
        .then(|| Self(tag.to_string()))
    }

    /// The tag text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RepositoryName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RepositoryName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_distribution_names() {
        for ok in [
            "a",
            "library/alpine",
            "a/b/c",
            "foo.bar",
            "foo_bar",
            "foo__bar",
            "foo---bar",
            "a0/b-1/c.2",
            "registry.example.com/x/y",
        ] {
            assert!(RepositoryName::parse(ok).is_some(), "{ok}");
        }
        assert!(RepositoryName::parse(&"a".repeat(255)).is_some());
    }

    #[test]
    fn refuses_domain_prefixes_but_reads_them_from_storage() {
        for legacy in [
            "localhost:5000/lower",
            "a:5000/b",
            "Upper/lower",
            "Reg.example-1.com/x/y",
        ] {
            assert!(RepositoryName::parse(legacy).is_none(), "{legacy}");
            assert!(RepositoryName::from_storage(legacy).is_some(), "{legacy}");
        }
        for bad in ["localhost:5000", "a:5000/B", "a:/b", "../b", "a/../b", ""] {
            assert!(RepositoryName::from_storage(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn refuses_bad_names() {
        for bad in [
            "",
            "A",
            "a/",
            "/a",
            "a//b",
            "..",
            "a/../b",
            ".",
            "a/./b",
            "-a",
            "a-",
            "a..b",
            "a___b",
            "a._b",
            "%2e%2e",
            "a b",
            "a\\b",
            "a:5000",
            "é",
            "host:/a",
            "a:5000/B",
            "-h/a",
            "Upper/lower",
            "localhost:5000/lower",
            "a:5000/b",
            "a/B",
            "a_/b",
        ] {
            assert!(RepositoryName::parse(bad).is_none(), "{bad}");
        }
        assert!(RepositoryName::parse(&"a".repeat(256)).is_none());
    }

    #[test]
    fn validates_tags() {
        for ok in ["latest", "v1.0", "_x", "A-b.C_d", &"t".repeat(128)] {
            assert!(Tag::parse(ok).is_some(), "{ok}");
        }
        for bad in ["", ".x", "-x", "a/b", "a:b", "..", &"t".repeat(129), "a%2f"] {
            assert!(Tag::parse(bad).is_none(), "{bad}");
        }
    }
}
