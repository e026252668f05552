//! The console's pages: (method, path under `ui.path`, query) -> [`Page`], a pure function.

use crate::registry::reference::RepositoryName;
use crate::registry::ManifestReference;

/// How a repository's tags are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagOrder {
    /// By tag name.
    Name,
    /// Newest image first (the config's `created`).
    Date,
}

/// One console page or action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Page {
    /// The repository list: `q` filters by substring, `last` continues after a name.
    Repositories {
        /// Search text.
        query: String,
        /// Continue after this repository.
        last: Option<String>,
    },
    /// A repository's tags.
    Tags {
        /// The repository.
        name: RepositoryName,
        /// Ordering.
        order: TagOrder,
    },
    /// A manifest or index.
    Image {
        /// The repository.
        name: RepositoryName,
        /// Tag or digest.
        reference: ManifestReference,
    },
    /// The confirmation form of a deletion (GET) or the deletion itself (POST).
    Delete {
        /// The repository.
        name: RepositoryName,
        /// A tag (deletes the tag) or a digest (deletes the manifest and its tags).
        reference: ManifestReference,
        /// POST: do it.
        confirmed: bool,
    },
    /// The login form (GET) or a login attempt (POST).
    Login {
        /// POST: check the submitted credentials.
        submit: bool,
    },
    /// Forgets the login.
    Logout,
    /// The style sheet.
    Style,
}

/// Why a console URL names no page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageError {
    /// No such page, or a method the page does not take.
    NotFound,
    /// A repository name or reference that cannot exist.
    Invalid(String),
}

/// The first value of `key` in a query string, form-decoded.
pub fn query_value(query: &str, key: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

fn repository(query: &str) -> Result<RepositoryName, PageError> {
    let name = query_value(query, "name").unwrap_or_default();
    RepositoryName::parse(&name)
        .ok_or_else(|| PageError::Invalid(format!("invalid repository name {name:?}")))
}

fn reference(query: &str) -> Result<ManifestReference, PageError> {
    let r = query_value(query, "ref").unwrap_or_default();
    ManifestReference::parse(&r)
        .map_err(|_| PageError::Invalid(format!("invalid tag or digest {r:?}")))
}

impl Page {
    /// Parses a request; `path` is what follows `ui.path`, `post` tells the method (the
    /// console takes GET, HEAD and POST only).
    pub fn parse(post: bool, path: &str, query: &str) -> Result<Page, PageError> {
        let page = match path {
            "" => Page::Repositories {
                query: query_value(query, "q").unwrap_or_default(),
                last: query_value(query, "last").filter(|l| !l.is_empty()),
            },
            "repository" => Page::Tags {
                name: repository(query)?,
                order: match query_value(query, "sort").as_deref() {
                    Some("date") => TagOrder::Date,
                    _ => TagOrder::Name,
                },
            },
            "image" => Page::Image {
                name: repository(query)?,
                reference: reference(query)?,
            },
            "delete" => Page::Delete {
                name: repository(query)?,
                reference: reference(query)?,
                confirmed: post,
            },
            "login" => Page::Login { submit: post },
            "logout" => Page::Logout,
            "style.css" => Page::Style,
            _ => return Err(PageError::NotFound),
        };
        let takes_post = matches!(
            page,
            Page::Delete { .. } | Page::Login { .. } | Page::Logout
        );
        if post && !takes_post {
            return Err(PageError::NotFound);
        }
        Ok(page)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_from_paths_and_queries() {
        assert_eq!(
            Page::parse(false, "", "q=app%2Fx&last=a"),
            Ok(Page::Repositories {
                query: "app/x".into(),
                last: Some("a".into())
            })
        );
        let Ok(Page::Tags { name, order }) =
            Page::parse(false, "repository", "name=team/app&sort=date")
        else {
            panic!()
        };
        assert_eq!((name.as_str(), order), ("team/app", TagOrder::Date));
        assert!(matches!(
            Page::parse(true, "delete", "name=a&ref=v1"),
            Ok(Page::Delete {
                confirmed: true,
                ..
            })
        ));
        assert!(matches!(
            Page::parse(false, "image", "name=a&ref=sha256:abc"),
            Err(PageError::Invalid(_))
        ));
        assert!(matches!(
            Page::parse(false, "image", "name=A&ref=v1"),
            Err(PageError::Invalid(_))
        ));
        assert_eq!(Page::parse(true, "", ""), Err(PageError::NotFound));
        assert_eq!(Page::parse(false, "nope", ""), Err(PageError::NotFound));
        assert_eq!(
            Page::parse(false, "login", ""),
            Ok(Page::Login { submit: false })
        );
    }
}
