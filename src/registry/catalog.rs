//! Repository listing and the `n`/`last` pagination shared with tag lists.

use std::cmp::Ordering;

use crate::registry::error::Result;
use crate::registry::layout;
use crate::registry::reference::RepositoryName;
use crate::registry::Registry;

/// One page of a sorted listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// Entries of this page.
    pub items: Vec<String>,
    /// Set when more entries follow: the `last` to ask for next.
    pub next: Option<String>,
}

/// Orders repository paths component by component, as distribution does, so
/// `a/b` sorts before `a-c`.
pub fn path_order(a: &str, b: &str) -> Ordering {
    crate::storage::component_order(a, b)
}

/// Cuts a sorted listing after `last`, at most `n` entries.
pub fn paginate(
    sorted: Vec<String>,
    last: Option<&str>,
    n: Option<usize>,
    order: fn(&str, &str) -> Ordering,
) -> Page {
    let start = match last {
        Some(last) => sorted.partition_point(|x| order(x, last) != Ordering::Greater),
        None => 0,
    };
    let mut items = sorted;
    let rest = items.len() - start;
    let take = n.unwrap_or(rest).min(rest);
    let more = take < rest;
    items.truncate(start + take);
    items.drain(..start);
    let next = (more && take > 0).then(|| items[take - 1].clone());
    Page { items, next }
}

impl Registry {
    /// Every repository the API serves, sorted: names outside the OCI grammar
    /// (a `host:port/` prefix registry:2 accepted) would answer 400 on every
    /// route, so they are not listed.
    pub async fn repositories(&self) -> Result<Vec<String>> {
        let mut found = self.stored_repositories().await?;
        found.retain(|name| RepositoryName::parse(name).is_some());
        Ok(found)
    }

    /// Every directory holding `_manifests`, sorted, whatever its name.
    pub(crate) async fn stored_repositories(&self) -> Result<Vec<String>> {
        let mut found = self.directories_holding("_manifests").await?;
        found.sort_unstable_by(|a, b| path_order(a, b));
        Ok(found)
    }

    /// Repository paths under `repositories/` that contain `marker`
    /// (`_manifests`, `_uploads`, ...); `_`-prefixed directories are not descended.
    pub(crate) async fn directories_holding(&self, marker: &str) -> Result<Vec<String>> {
        Ok(self
            .driver
            .dirs_holding(&layout::repositories_dir(), marker, "_")
            .await?)
    }

    /// A page of at most `n` repositories after `last`; `n` is clamped to
    /// `catalog.maxentries` (clients ask for `n=10000` and expect pages, not
    /// an error).
    pub async fn catalog(&self, last: Option<&str>, n: usize) -> Result<Page> {
        let n = n.min(self.options.catalog_max_entries);
        if n == 0 {
            return Ok(Page {
                items: Vec::new(),
                next: None,
            });
        }
        // One more than the page tells whether another follows.
        let mut items = self.repositories_after(last, n + 1).await?;
        let more = items.len() > n;
        items.truncate(n);
        let next = more.then(|| items[n - 1].clone());
        Ok(Page { items, next })
    }

    /// Up to `n` repositories after `last`, in listing order, as [`Self::repositories`] lists
    /// them; the storage walk stops once it has them instead of reading the whole tree.
    pub async fn repositories_after(&self, last: Option<&str>, n: usize) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut cursor = last.map(str::to_string);
        // Names outside the grammar are dropped: each round asks for what is still missing,
        // after the last name seen, so the rounds end when the walk runs out.
        while out.len() < n {
            let want = n - out.len();
            let found = self
                .driver
                .dirs_holding_after(
                    &layout::repositories_dir(),
                    "_manifests",
                    "_",
                    cursor.as_deref(),
                    want,
                )
                .await?;
            let exhausted = found.len() < want;
            cursor = found.last().cloned();
            out.extend(
                found
                    .into_iter()
                    .filter(|name| RepositoryName::parse(name).is_some()),
            );
            if exhausted {
                break;
            }
        }
        Ok(out)
    }

    /// A page of a repository's tags; `n` is clamped to `tags.maxtags`.
    pub async fn tags(
        &self,
        repo: &RepositoryName,
        last: Option<&str>,
        n: Option<usize>,
    ) -> Result<Page> {
        let all = self.list_tags(repo).await?;
        Ok(self.tags_page(all, last, n))
    }

    /// A page of the tags `all` (sorted); `n` is clamped to `tags.maxtags`.
    pub fn tags_page(&self, all: Vec<String>, last: Option<&str>, n: Option<usize>) -> Page {
        let n = n.map(|n| n.min(self.options.max_tags));
        paginate(all, last, n, str::cmp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn paginates_after_last() {
        let all = v(&["a", "b", "c", "d"]);
        assert_eq!(
            paginate(all.clone(), None, Some(2), str::cmp),
            Page {
                items: v(&["a", "b"]),
                next: Some("b".into())
            }
        );
        assert_eq!(
            paginate(all.clone(), Some("b"), Some(2), str::cmp),
            Page {
                items: v(&["c", "d"]),
                next: None
            }
        );
        assert_eq!(
            paginate(all.clone(), Some("bb"), None, str::cmp).items,
            v(&["c", "d"])
        );
        assert_eq!(
            paginate(all.clone(), Some("z"), Some(2), str::cmp).items,
            Vec::<String>::new()
        );
        assert_eq!(
            paginate(all, None, Some(0), str::cmp),
            Page {
                items: vec![],
                next: None
            }
        );
    }

    #[test]
    fn orders_by_path_components() {
        let mut names = v(&[
            "a-c", "a/b", "a", "a.b/c", "a/b/c", "a/b-c", "a/b.c/d", "b", "a0",
        ]);
        names.sort_by(|a, b| path_order(a, b));
        assert_eq!(
            names,
            v(&["a", "a/b", "a/b/c", "a/b-c", "a/b.c/d", "a-c", "a.b/c", "a0", "b"])
        );
        // The same order as comparing the components one by one.
        let mut by_components = names.clone();
        by_components.reverse();
        by_components.sort_by(|a, b| a.split('/').cmp(b.split('/')));
        assert_eq!(names, by_components);
    }
}
