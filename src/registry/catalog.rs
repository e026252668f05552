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
    // Byte order with `/` below every other byte is component order, without splitting.
    let key = |c: u8| if c == b'/' { 0 } else { c };
    a.bytes().map(key).cmp(b.bytes().map(key))
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
        let all = self.repositories().await?;
        Ok(paginate(all, last, Some(n), path_order))
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
