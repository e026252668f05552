//! `http.cors`: preflight answers and the CORS headers of actual responses, decided from the
//! request's `Origin` alone (pure functions, no I/O).

use http::{HeaderMap, HeaderName, HeaderValue, Method};

use crate::config::CorsConfig;

/// The configured policy with its header values prepared once.
#[derive(Debug, Clone)]
pub struct Cors {
    origins: Vec<String>,
    any_origin: bool,
    credentials: bool,
    methods: HeaderValue,
    headers: HeaderValue,
    expose: HeaderValue,
    max_age: HeaderValue,
}

/// What to do with a request, as far as CORS goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Not a cross-origin request this policy covers: serve it as usual.
    Pass,
    /// A preflight from an allowed origin: answer 204 with these headers, without auth.
    Preflight(Vec<(HeaderName, HeaderValue)>),
    /// A preflight from an origin that is not allowed: refuse it without reaching handlers.
    Refused,
    /// An actual request from an allowed origin: serve it, then add these headers.
    Actual(Vec<(HeaderName, HeaderValue)>),
}

fn joined(values: &[String]) -> HeaderValue {
    HeaderValue::from_str(&values.join(", ")).unwrap_or(HeaderValue::from_static(""))
}

impl Cors {
    /// The policy of `http.cors`; `None` when no origin is allowed.
    pub fn from_config(c: &CorsConfig) -> Option<Self> {
        if !c.enabled() {
            return None;
        }
        let any_origin = c.allowedorigins.iter().any(|o| o == "*");
        Some(Self {
            origins: c
                .allowedorigins
                .iter()
                .map(|o| o.trim_end_matches('/').to_string())
                .collect(),
            any_origin,
            // Configuration refuses `*` with credentials; this keeps the rule if it ever did not.
            credentials: c.allowcredentials && !any_origin,
            methods: joined(&c.allowedmethods),
            headers: joined(&c.allowedheaders),
            expose: joined(&c.exposeheaders),
            max_age: HeaderValue::from(c.maxage.max(0)),
        })
    }

    fn allows(&self, origin: &str) -> bool {
        self.any_origin || self.origins.iter().any(|o| o == origin)
    }

    /// `Access-Control-Allow-Origin` (the exact origin, or `*` when any is allowed and no
    /// credentials go with it), `Vary: Origin`, and credentials when configured.
    fn origin_headers(&self, origin: &HeaderValue) -> Vec<(HeaderName, HeaderValue)> {
        let mut h = vec![(
            http::header::ACCESS_CONTROL_ALLOW_ORIGIN,
            if self.any_origin {
                HeaderValue::from_static("*")
            } else {
                origin.clone()
            },
        )];
        h.push((http::header::VARY, HeaderValue::from_static("Origin")));
        if self.credentials {
            h.push((
                http::header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            ));
        }
        h
    }

    /// Decides from the method and headers of a request.
    pub fn decide(&self, method: &Method, headers: &HeaderMap) -> Decision {
        let Some(origin) = headers.get(http::header::ORIGIN) else {
            return Decision::Pass;
        };
        let allowed = origin.to_str().is_ok_and(|o| self.allows(o));
        let preflight = method == Method::OPTIONS
            && headers.contains_key(http::header::ACCESS_CONTROL_REQUEST_METHOD);
        match (preflight, allowed) {
            (true, false) => Decision::Refused,
            (false, false) => Decision::Pass,
            (true, true) => {
                let mut h = self.origin_headers(origin);
                h.push((
                    http::header::ACCESS_CONTROL_ALLOW_METHODS,
                    self.methods.clone(),
                ));
                h.push((
                    http::header::ACCESS_CONTROL_ALLOW_HEADERS,
                    self.headers.clone(),
                ));
                h.push((http::header::ACCESS_CONTROL_MAX_AGE, self.max_age.clone()));
                Decision::Preflight(h)
            }
            (false, true) => {
                let mut h = self.origin_headers(origin);
                h.push((
                    http::header::ACCESS_CONTROL_EXPOSE_HEADERS,
                    self.expose.clone(),
                ));
                Decision::Actual(h)
            }
        }
    }
}

/// Applies an actual request's CORS headers over those of `http.headers` (which registry:2
/// configurations use for CORS), and makes sure a wildcard origin never goes out with
/// credentials, whoever set them.
pub fn apply(headers: &mut HeaderMap, cors: &[(HeaderName, HeaderValue)]) {
    for (name, _) in cors {
        if *name != http::header::VARY {
            headers.remove(name);
        }
    }
    for (name, value) in cors {
        headers.append(name.clone(), value.clone());
    }
    forbid_wildcard_credentials(headers);
}

/// Drops `Access-Control-Allow-Credentials` next to `Access-Control-Allow-Origin: *`.
pub fn forbid_wildcard_credentials(headers: &mut HeaderMap) {
    let wildcard = headers
        .get_all(http::header::ACCESS_CONTROL_ALLOW_ORIGIN)
        .iter()
        .any(|v| v == "*");
    if wildcard {
        headers.remove(http::header::ACCESS_CONTROL_ALLOW_CREDENTIALS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(origins: &[&str], credentials: bool) -> Cors {
        Cors::from_config(&CorsConfig {
            allowedorigins: origins.iter().map(|s| s.to_string()).collect(),
            allowcredentials: credentials,
            ..CorsConfig::default()
        })
        .unwrap()
    }

    fn request(origin: Option<&str>, preflight: bool) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(o) = origin {
            h.insert(http::header::ORIGIN, HeaderValue::from_str(o).unwrap());
        }
        if preflight {
            h.insert(
                http::header::ACCESS_CONTROL_REQUEST_METHOD,
                HeaderValue::from_static("DELETE"),
            );
        }
        h
    }

    fn get(h: &[(HeaderName, HeaderValue)], name: HeaderName) -> Option<&str> {
        h.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.to_str().unwrap())
    }

    #[test]
    fn exact_origins_only() {
        let p = policy(&["http://a.example:8080"], true);
        let Decision::Preflight(h) = p.decide(
            &Method::OPTIONS,
            &request(Some("http://a.example:8080"), true),
        ) else {
            panic!("not a preflight answer")
        };
        assert_eq!(
            get(&h, http::header::ACCESS_CONTROL_ALLOW_ORIGIN),
            Some("http://a.example:8080")
        );
        assert_eq!(
            get(&h, http::header::ACCESS_CONTROL_ALLOW_CREDENTIALS),
            Some("true")
        );
        assert!(get(&h, http::header::ACCESS_CONTROL_ALLOW_METHODS)
            .unwrap()
            .contains("DELETE"));
        for other in ["http://a.example", "http://a.example:8080.evil", "null"] {
            assert_eq!(
                p.decide(&Method::OPTIONS, &request(Some(other), true)),
                Decision::Refused,
                "{other}"
            );
            assert_eq!(
                p.decide(&Method::GET, &request(Some(other), false)),
                Decision::Pass
            );
        }
        assert_eq!(
            p.decide(&Method::OPTIONS, &request(None, true)),
            Decision::Pass
        );
    }

    #[test]
    fn actual_requests_expose_registry_headers() {
        let p = policy(&["http://a.example"], false);
        let Decision::Actual(h) = p.decide(&Method::GET, &request(Some("http://a.example"), false))
        else {
            panic!("not an actual request")
        };
        let exposed = get(&h, http::header::ACCESS_CONTROL_EXPOSE_HEADERS).unwrap();
        assert!(exposed.contains("Docker-Content-Digest") && exposed.contains("Link"));
        assert_eq!(
            get(&h, http::header::ACCESS_CONTROL_ALLOW_CREDENTIALS),
            None
        );
    }

    #[test]
    fn wildcard_never_with_credentials() {
        let p = policy(&["*"], true);
        let Decision::Actual(h) = p.decide(&Method::GET, &request(Some("http://x.example"), false))
        else {
            panic!("not an actual request")
        };
        assert_eq!(
            get(&h, http::header::ACCESS_CONTROL_ALLOW_ORIGIN),
            Some("*")
        );
        assert_eq!(
            get(&h, http::header::ACCESS_CONTROL_ALLOW_CREDENTIALS),
            None
        );
        let mut from_headers = HeaderMap::new();
        from_headers.insert(
            http::header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
        from_headers.insert(
            http::header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
        forbid_wildcard_credentials(&mut from_headers);
        assert!(!from_headers.contains_key(http::header::ACCESS_CONTROL_ALLOW_CREDENTIALS));
    }
}
