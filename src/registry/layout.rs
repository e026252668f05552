//! Where things live: distribution's `docker/registry/v2` tree (`paths.go`).
//!
//! Callers pass validated names, tags and digest parts; drivers refuse any
//! path with `.`/`..`/empty components as a second line of defence.

/// Root of everything the registry stores.
pub const ROOT: &str = "/docker/registry/v2";

/// `blobs/` directory.
pub fn blobs_dir() -> String {
    format!("{ROOT}/blobs")
}

/// Directory of one blob.
pub fn blob_dir(alg: &str, hex: &str) -> String {
    format!("{ROOT}/blobs/{alg}/{}/{hex}", &hex[..2.min(hex.len())])
}

/// Content of one blob.
pub fn blob_data(alg: &str, hex: &str) -> String {
    format!("{}/data", blob_dir(alg, hex))
}

/// `repositories/` directory.
pub fn repositories_dir() -> String {
    format!("{ROOT}/repositories")
}

/// Directory of one repository.
pub fn repository_dir(name: &str) -> String {
    format!("{ROOT}/repositories/{name}")
}

/// The link that makes a blob part of a repository.
pub fn layer_link(name: &str, alg: &str, hex: &str) -> String {
    format!("{ROOT}/repositories/{name}/_layers/{alg}/{hex}/link")
}

/// Directory of a repository's layer links.
pub fn layers_dir(name: &str) -> String {
    format!("{ROOT}/repositories/{name}/_layers")
}

/// Directory of a repository's manifest revisions.
pub fn revisions_dir(name: &str, alg: &str) -> String {
    format!("{ROOT}/repositories/{name}/_manifests/revisions/{alg}")
}

/// Link of one manifest revision.
pub fn revision_link(name: &str, alg: &str, hex: &str) -> String {
    format!("{ROOT}/repositories/{name}/_manifests/revisions/{alg}/{hex}/link")
}

/// Directory of all tags of a repository.
pub fn tags_dir(name: &str) -> String {
    format!("{ROOT}/repositories/{name}/_manifests/tags")
}

/// Directory of one tag.
pub fn tag_dir(name: &str, tag: &str) -> String {
    format!("{ROOT}/repositories/{name}/_manifests/tags/{tag}")
}

/// The tag's current digest.
pub fn tag_current_link(name: &str, tag: &str) -> String {
    format!("{}/current/link", tag_dir(name, tag))
}

/// Every digest a tag has pointed to.
pub fn tag_index_link(name: &str, tag: &str, alg: &str, hex: &str) -> String {
    format!("{}/index/{alg}/{hex}/link", tag_dir(name, tag))
}

/// Directory of one upload session.
pub fn upload_dir(name: &str, uuid: &str) -> String {
    format!("{ROOT}/repositories/{name}/_uploads/{uuid}")
}

/// Bytes received by an upload session.
pub fn upload_data(name: &str, uuid: &str) -> String {
    format!("{}/data", upload_dir(name, uuid))
}

/// Start time of an upload session (RFC 3339, seconds).
pub fn upload_started_at(name: &str, uuid: &str) -> String {
    format!("{}/startedat", upload_dir(name, uuid))
}

/// What makes an upload session durable: its `startedat`, its directory and
/// every directory above it up to `repositories/` (any of them may be new).
pub fn upload_session_chain(name: &str, uuid: &str) -> Vec<String> {
    let mut chain = vec![
        upload_started_at(name, uuid),
        upload_dir(name, uuid),
        format!("{}/_uploads", repository_dir(name)),
    ];
    let mut repo = name;
    loop {
        chain.push(repository_dir(repo));
        match repo.rfind('/') {
            Some(i) => repo = &repo[..i],
            None => break,
        }
    }
    chain.push(repositories_dir());
    chain
}

/// Hash states of an upload session, one file per offset.
pub fn upload_hashstates_dir(name: &str, uuid: &str, alg: &str) -> String {
    format!("{}/hashstates/{alg}", upload_dir(name, uuid))
}

/// The hash state at `offset`.
pub fn upload_hashstate(name: &str, uuid: &str, alg: &str, offset: u64) -> String {
    format!("{}/{offset}", upload_hashstates_dir(name, uuid, alg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_session_chain_climbs_to_repositories() {
        let v2 = "/docker/registry/v2";
        assert_eq!(
            upload_session_chain("a/b", "u"),
            vec![
                format!("{v2}/repositories/a/b/_uploads/u/startedat"),
                format!("{v2}/repositories/a/b/_uploads/u"),
                format!("{v2}/repositories/a/b/_uploads"),
                format!("{v2}/repositories/a/b"),
                format!("{v2}/repositories/a"),
                format!("{v2}/repositories"),
            ]
        );
    }

    #[test]
    fn matches_distribution_paths() {
        let hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(
            blob_data("sha256", hex),
            format!("/docker/registry/v2/blobs/sha256/e3/{hex}/data")
        );
        assert_eq!(
            layer_link("a/b", "sha256", hex),
            format!("/docker/registry/v2/repositories/a/b/_layers/sha256/{hex}/link")
        );
        assert_eq!(
            tag_index_link("a", "v1", "sha256", hex),
            format!(
                "/docker/registry/v2/repositories/a/_manifests/tags/v1/index/sha256/{hex}/link"
            )
        );
        assert_eq!(
            upload_hashstate("a", "u", "sha256", 11),
            "/docker/registry/v2/repositories/a/_uploads/u/hashstates/sha256/11"
        );
    }
}
