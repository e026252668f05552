//! Which upstream serves a repository, and under which names: pure functions.
//!
//! An upstream with a prefix serves the repositories under it (`docker.io/library/alpine` is
//! `library/alpine` upstream), or any repository when containerd names the prefix with
//! `?ns=docker.io`; those are cached under `<prefix>/<name>` so that two upstreams never share
//! a repository. The `proxy.remoteurl` upstream serves everything else under the client's
//! name, as registry:2 does.

/// Hosts of Docker Hub, where official images live under `library/`.
const DOCKER_HUB_HOSTS: &[&str] = &[
    "registry-1.docker.io",
    "docker.io",
    "index.docker.io",
    "registry.hub.docker.com",
];

/// True when `host` (without port) is Docker Hub's.
pub fn is_docker_hub(host: &str) -> bool {
    DOCKER_HUB_HOSTS.contains(&host.to_ascii_lowercase().as_str())
}

/// What selection needs to know of an upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate<'a> {
    /// Bare prefix; empty for `proxy.remoteurl`.
    pub prefix: &'a str,
    /// The upstream's host, without port.
    pub host: &'a str,
}

/// A repository resolved to an upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// Index of the chosen candidate.
    pub upstream: usize,
    /// Name the cache stores the repository under.
    pub local: String,
    /// Name asked for upstream.
    pub remote: String,
    /// True when chosen by `?ns=`: the answer names the namespace.
    pub by_namespace: bool,
}

/// Picks the upstream for `name` (as in the request path) and the `ns` query, if any.
pub fn select(candidates: &[Candidate<'_>], name: &str, ns: Option<&str>) -> Option<Selection> {
    let remote_name = |c: &Candidate<'_>, n: &str| {
        if is_docker_hub(c.host) && !n.contains('/') {
            format!("library/{n}")
        } else {
            n.to_string()
        }
    };
    if let Some(ns) = ns.map(str::trim).filter(|n| !n.is_empty()) {
        let ns = ns.to_ascii_lowercase();
        let found = candidates.iter().position(|c| {
            !c.prefix.is_empty()
                && (c.prefix == ns || c.host == ns || (is_docker_hub(&ns) && is_docker_hub(c.host)))
        });
        if let Some(i) = found {
            let c = &candidates[i];
            // A client that already put the prefix in the path is not prefixed twice.
            let rest = name
                .strip_prefix(c.prefix)
                .and_then(|r| r.strip_prefix('/'))
                .unwrap_or(name);
            return Some(Selection {
                upstream: i,
                local: format!("{}/{rest}", c.prefix),
                remote: remote_name(c, rest),
                by_namespace: true,
            });
        }
    }
    let by_prefix = candidates
        .iter()
        .enumerate()
        .filter(|(_, c)| !c.prefix.is_empty())
        .filter_map(|(i, c)| {
            let rest = name.strip_prefix(c.prefix)?.strip_prefix('/')?;
            Some((i, c, rest))
        })
        .max_by_key(|(_, c, _)| c.prefix.len());
    if let Some((i, c, rest)) = by_prefix {
        return Some(Selection {
            upstream: i,
            local: name.to_string(),
            remote: remote_name(c, rest),
            by_namespace: false,
        });
    }
    let i = candidates.iter().position(|c| c.prefix.is_empty())?;
    Some(Selection {
        upstream: i,
        local: name.to_string(),
        remote: remote_name(&candidates[i], name),
        by_namespace: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HUB: Candidate<'static> = Candidate {
        prefix: "docker.io",
        host: "registry-1.docker.io",
    };
    const GHCR: Candidate<'static> = Candidate {
        prefix: "ghcr.io",
        host: "ghcr.io",
    };
    const DEFAULT: Candidate<'static> = Candidate {
        prefix: "",
        host: "127.0.0.1",
    };

    fn pick(c: &[Candidate<'_>], name: &str, ns: Option<&str>) -> Option<(usize, String, String)> {
        select(c, name, ns).map(|s| (s.upstream, s.local, s.remote))
    }

    #[test]
    fn prefixes_pick_and_are_stripped_upstream() {
        let c = [HUB, GHCR, DEFAULT];
        assert_eq!(
            pick(&c, "docker.io/library/alpine", None),
            Some((
                0,
                "docker.io/library/alpine".into(),
                "library/alpine".into()
            ))
        );
        assert_eq!(
            pick(&c, "docker.io/alpine", None),
            Some((0, "docker.io/alpine".into(), "library/alpine".into()))
        );
        assert_eq!(
            pick(&c, "ghcr.io/o/r", None),
            Some((1, "ghcr.io/o/r".into(), "o/r".into()))
        );
        assert_eq!(
            pick(&c, "other/r", None),
            Some((2, "other/r".into(), "other/r".into()))
        );
        // A prefix only matches whole components.
        assert_eq!(
            pick(&c, "ghcr.iox/r", None),
            Some((2, "ghcr.iox/r".into(), "ghcr.iox/r".into()))
        );
        assert_eq!(pick(&[HUB, GHCR], "other/r", None), None);
    }

    #[test]
    fn namespace_query_picks_by_prefix_or_host() {
        let c = [HUB, GHCR, DEFAULT];
        let s = select(&c, "o/r", Some("ghcr.io")).unwrap();
        assert_eq!(
            (s.upstream, s.local.as_str(), s.remote.as_str()),
            (1, "ghcr.io/o/r", "o/r")
        );
        assert!(s.by_namespace);
        assert_eq!(
            pick(&c, "library/alpine", Some("docker.io")),
            Some((
                0,
                "docker.io/library/alpine".into(),
                "library/alpine".into()
            ))
        );
        assert_eq!(
            pick(&c, "alpine", Some("registry-1.docker.io")),
            Some((0, "docker.io/alpine".into(), "library/alpine".into()))
        );
        // An unknown namespace falls back to the path.
        assert_eq!(
            pick(&c, "o/r", Some("quay.io")),
            Some((2, "o/r".into(), "o/r".into()))
        );
    }

    #[test]
    fn docker_hub_remote_gets_library_for_one_component_names() {
        let hub_default = [Candidate {
            prefix: "",
            host: "registry-1.docker.io",
        }];
        assert_eq!(
            pick(&hub_default, "alpine", None),
            Some((0, "alpine".into(), "library/alpine".into()))
        );
        assert_eq!(
            pick(&hub_default, "library/alpine", None),
            Some((0, "library/alpine".into(), "library/alpine".into()))
        );
        assert_eq!(
            pick(&[DEFAULT], "alpine", None),
            Some((0, "alpine".into(), "alpine".into()))
        );
    }
}
