//! `(path) -> Route`: a pure parse of the API's URL space.
//!
//! Repository names contain `/`, so the resource kind is read from the tail
//! of the path (`.../manifests/<ref>`, `.../blobs/uploads/<id>`, ...) and
//! everything before it is the name.

use crate::registry::reference::{RepositoryName, MAX_NAME_LENGTH};

/// One API resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/`
    Root,
    /// `/v2/`
    Base,
    /// `/v2/_catalog`
    Catalog,
    /// `/v2/<name>/tags/list`
    Tags(RepositoryName),
    /// `/v2/<name>/manifests/<reference>`
    Manifest(RepositoryName, String),
    /// `/v2/<name>/blobs/<digest>`
    Blob(RepositoryName, String),
    /// `/v2/<name>/blobs/uploads/`
    Uploads(RepositoryName),
    /// `/v2/<name>/blobs/uploads/<uuid>`
    Upload(RepositoryName, String),
    /// `/v2/<name>/referrers/<digest>`
    Referrers(RepositoryName, String),
}

/// A path that is not an API resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    /// No resource has this shape.
    NotFound,
    /// The shape is right but the repository name breaks the grammar.
    NameInvalid(String),
}

impl Route {
    /// The metrics/log label for the resource, as distribution names its handlers.
    pub fn handler_name(&self) -> &'static str {
        match self {
            Route::Root | Route::Base => "base",
            Route::Catalog => "catalog",
            Route::Tags(_) => "tags",
            Route::Manifest(..) => "manifest",
            Route::Blob(..) => "blob",
            Route::Uploads(_) => "blob_upload",
            Route::Upload(..) => "blob_upload_chunk",
            Route::Referrers(..) => "referrers",
        }
    }

    /// The repository a request addresses, if any.
    pub fn repository(&self) -> Option<&RepositoryName> {
        match self {
            Route::Tags(n) | Route::Uploads(n) => Some(n),
            Route::Manifest(n, _)
            | Route::Blob(n, _)
            | Route::Upload(n, _)
            | Route::Referrers(n, _) => Some(n),
            Route::Root | Route::Base | Route::Catalog => None,
        }
    }

    /// Parses a request path (without query); the path is used as sent, never
    /// percent-decoded, since no valid name, tag or digest needs escaping.
    pub fn parse(path: &str) -> Result<Route, RouteError> {
        if path == "/" {
            return Ok(Route::Root);
        }
        if path == "/v2" || path == "/v2/" {
            return Ok(Route::Base);
        }
        let rest = path.strip_prefix("/v2/").ok_or(RouteError::NotFound)?;
        if rest == "_catalog" {
            return Ok(Route::Catalog);
        }
        let mut from_end = rest.rsplit('/');
        let last = from_end.next().unwrap_or_default();
        let (second, third) = (from_end.next(), from_end.next());
        // More segments than the resource's tail: a name is left before it. Checked after the
        // tail's words, as it scans the path.
        let named = |tail_len: usize| without_last_segments(rest, tail_len).is_some();
        // (how many trailing segments belong to the resource, the route to build)
        let (tail_len, build): (usize, fn(RepositoryName, String) -> Route) =
            if (second, last) == (Some("tags"), "list") && named(2) {
                (2, |name, _| Route::Tags(name))
            } else if (third, second, last) == (Some("blobs"), Some("uploads"), "") && named(3) {
                (3, |name, _| Route::Uploads(name))
            } else if (second, last) == (Some("blobs"), "uploads") && named(2) {
                (2, |name, _| Route::Uploads(name))
            } else if (third, second) == (Some("blobs"), Some("uploads"))
                && !last.is_empty()
                && named(3)
            {
                (3, Route::Upload)
            } else if second == Some("manifests") && !last.is_empty() && named(2) {
                (2, Route::Manifest)
            } else if second == Some("blobs") && !last.is_empty() && named(2) {
                (2, Route::Blob)
            } else if second == Some("referrers") && !last.is_empty() && named(2) {
                (2, Route::Referrers)
            } else {
                return Err(RouteError::NotFound);
            };
        let name = without_last_segments(rest, tail_len).unwrap_or_default();
        if name.is_empty() {
            return Err(RouteError::NotFound);
        }
        match RepositoryName::parse(name) {
            Some(repo) => Ok(build(repo, last.to_string())),
            None => {
                let mut shown = name.to_string();
                let mut cut = MAX_NAME_LENGTH + 16;
                while cut < shown.len() && !shown.is_char_boundary(cut) {
                    cut -= 1;
                }
                shown.truncate(cut);
                Err(RouteError::NameInvalid(shown))
            }
        }
    }
}

/// `path` without its last `count` `/`-separated segments, when it has more than `count`.
fn without_last_segments(path: &str, count: usize) -> Option<&str> {
    let mut end = path.len();
    for _ in 0..count {
        end = path[..end].rfind('/')?;
    }
    Some(&path[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> RepositoryName {
        RepositoryName::parse(s).unwrap()
    }

    #[test]
    fn parses_every_resource() {
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(Route::parse("/"), Ok(Route::Root));
        assert_eq!(Route::parse("/v2/"), Ok(Route::Base));
        assert_eq!(Route::parse("/v2"), Ok(Route::Base));
        assert_eq!(Route::parse("/v2/_catalog"), Ok(Route::Catalog));
        assert_eq!(
            Route::parse("/v2/a/b/tags/list"),
            Ok(Route::Tags(name("a/b")))
        );
        assert_eq!(
            Route::parse("/v2/a/manifests/latest"),
            Ok(Route::Manifest(name("a"), "latest".into()))
        );
        assert_eq!(
            Route::parse(&format!("/v2/a/b/c/blobs/{d}")),
            Ok(Route::Blob(name("a/b/c"), d.into()))
        );
        assert_eq!(
            Route::parse("/v2/a/blobs/uploads/"),
            Ok(Route::Uploads(name("a")))
        );
        assert_eq!(
            Route::parse("/v2/a/blobs/uploads"),
            Ok(Route::Uploads(name("a")))
        );
        assert_eq!(
            Route::parse("/v2/a/blobs/uploads/u-1"),
            Ok(Route::Upload(name("a"), "u-1".into()))
        );
        assert_eq!(
            Route::parse(&format!("/v2/a/referrers/{d}")),
            Ok(Route::Referrers(name("a"), d.into()))
        );
    }

    #[test]
    fn names_may_contain_resource_words() {
        assert_eq!(
            Route::parse("/v2/x/blobs/blobs/uploads/"),
            Ok(Route::Uploads(name("x/blobs")))
        );
        assert_eq!(
            Route::parse("/v2/manifests/manifests/v1"),
            Ok(Route::Manifest(name("manifests"), "v1".into()))
        );
        assert_eq!(
            Route::parse("/v2/tags/tags/list"),
            Ok(Route::Tags(name("tags")))
        );
    }

    #[test]
    fn refuses_bad_paths() {
        for p in [
            "",
            "/v1/",
            "/v2/tags/list",
            "/v2/a/manifests/",
            "/v2/a/unknown/x",
            "/v2/a",
            "/v2//manifests/x",
            "/v3/a/tags/list",
        ] {
            assert_eq!(Route::parse(p), Err(RouteError::NotFound), "{p}");
        }
        for p in [
            "/v2/A/tags/list",
            "/v2/../x/manifests/v1",
            "/v2/a/../b/blobs/uploads/",
            "/v2/%2e%2e/tags/list",
            "/v2/a//b/tags/list",
            "/v2/Upper/lower/blobs/uploads/",
            "/v2/localhost:5000/lower/manifests/v1",
            "/v2/a:5000/b/tags/list",
        ] {
            assert!(
                matches!(Route::parse(p), Err(RouteError::NameInvalid(_))),
                "{p}"
            );
        }
        let long = format!("/v2/{}/tags/list", "a".repeat(256));
        assert!(matches!(
            Route::parse(&long),
            Err(RouteError::NameInvalid(_))
        ));
        // The name shown is shortened on a character boundary.
        let wide = format!("/v2/{}/tags/list", "é".repeat(200));
        match Route::parse(&wide) {
            Err(RouteError::NameInvalid(shown)) => {
                assert!(shown.len() <= MAX_NAME_LENGTH + 16 && shown.starts_with("éé"))
            }
            other => panic!("{other:?}"),
        }
    }
}
