//! Absolute or relative URLs for `Location` headers.

use http::HeaderMap;

/// How to build URLs pointing back at this registry.
#[derive(Debug, Clone, Default)]
pub struct UrlBuilder {
    /// `http.host`: fixed scheme+host.
    pub host: Option<String>,
    /// `http.relativeurls`.
    pub relative: bool,
    /// `http.prefix`, without a trailing slash (`""` or `/registry`).
    pub prefix: String,
    /// Scheme when no header says otherwise.
    pub default_scheme: &'static str,
}

/// Characters allowed in a host taken from a request header.
fn is_host(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b))
}

fn first_value(h: &HeaderMap, name: &str) -> Option<String> {
    let v = h.get(name)?.to_str().ok()?;
    Some(v.split(',').next()?.trim().to_string())
}

impl UrlBuilder {
    /// A builder for `http.prefix`; `""` and `/` mean none.
    pub fn new(host: Option<String>, relative: bool, prefix: &str) -> Self {
        let prefix = prefix.trim_end_matches('/');
        let prefix = if prefix.is_empty() || prefix.starts_with('/') {
            prefix.to_string()
        } else {
            format!("/{prefix}")
        };
        Self {
            host: host.map(|h| h.trim_end_matches('/').to_string()),
            relative,
            prefix,
            default_scheme: "http",
        }
    }

    /// The request path with `http.prefix` removed, or `None` outside it.
    pub fn strip_prefix<'a>(&self, path: &'a str) -> Option<&'a str> {
        if self.prefix.is_empty() {
            return Some(path);
        }
        match path.strip_prefix(self.prefix.as_str()) {
            Some("") => Some("/"),
            Some(rest) if rest.starts_with('/') => Some(rest),
            _ => None,
        }
    }

    /// `scheme://host` from `http.host`, `Forwarded`, `X-Forwarded-*` or
    /// `Host`; empty when URLs are relative.
    pub fn base(&self, headers: &HeaderMap) -> String {
        if self.relative {
            return String::new();
        }
        if let Some(h) = &self.host {
            return h.clone();
        }
        let mut proto = None;
        let mut host = None;
        if let Some(fwd) = first_value(headers, "forwarded") {
            for pair in fwd.split(';') {
                if let Some((k, v)) = pair.split_once('=') {
                    let v = v.trim().trim_matches('"').to_string();
                    match k.trim().to_ascii_lowercase().as_str() {
                        "proto" => proto = Some(v),
                        "host" => host = Some(v),
                        _ => {}
                    }
                }
            }
        }
        let proto = proto.or_else(|| first_value(headers, "x-forwarded-proto"));
        let host = host
            .or_else(|| first_value(headers, "x-forwarded-host"))
            .or_else(|| first_value(headers, "host"));
        let proto = match proto.as_deref() {
            Some("https") => "https",
            Some("http") => "http",
            _ => self.default_scheme,
        };
        match host {
            Some(h) if is_host(&h) => format!("{proto}://{h}"),
            _ => String::new(),
        }
    }

    /// URL of `path` (which starts with `/v2/`).
    pub fn url(&self, headers: &HeaderMap, path: &str) -> String {
        format!("{}{}{}", self.base(headers), self.prefix, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn picks_the_host_like_distribution() {
        let b = UrlBuilder::new(None, false, "");
        assert_eq!(
            b.url(&headers(&[("host", "r:5000")]), "/v2/"),
            "http://r:5000/v2/"
        );
        assert_eq!(
            b.url(
                &headers(&[
                    ("host", "a"),
                    ("x-forwarded-proto", "https"),
                    ("x-forwarded-host", "lb.example")
                ]),
                "/v2/"
            ),
            "https://lb.example/v2/"
        );
        assert_eq!(
            b.url(
                &headers(&[
                    ("host", "a"),
                    ("forwarded", "for=1.2.3.4;proto=https;host=\"f.example\"")
                ]),
                "/v2/"
            ),
            "https://f.example/v2/"
        );
        assert_eq!(b.url(&headers(&[("host", "evil/\"x")]), "/v2/"), "/v2/");
        let fixed = UrlBuilder::new(Some("https://reg.example/".into()), false, "/p/");
        assert_eq!(
            fixed.url(&headers(&[("host", "a")]), "/v2/"),
            "https://reg.example/p/v2/"
        );
        assert_eq!(
            UrlBuilder::new(None, true, "").url(&headers(&[("host", "a")]), "/v2/x"),
            "/v2/x"
        );
    }

    #[test]
    fn strips_the_prefix() {
        let b = UrlBuilder::new(None, false, "/reg");
        assert_eq!(b.strip_prefix("/reg/v2/"), Some("/v2/"));
        assert_eq!(b.strip_prefix("/reg"), Some("/"));
        assert_eq!(b.strip_prefix("/regx/v2/"), None);
        assert_eq!(
            UrlBuilder::new(None, false, "/").strip_prefix("/v2/"),
            Some("/v2/")
        );
    }
}
