//! Where distribution 2.8's Swift driver puts things, and temp URL signatures: pure functions
//! over strings.
//!
//! A file at driver path `/p` is the object `<prefix>/files/p` (slashes trimmed at both ends);
//! a large file is a dynamic large object (DLO) manifest there, whose `X-Object-Manifest` names
//! the prefix of its segments, `<prefix>/segments/<3 hex>/<more hex>` (see [`segment_prefix`]),
//! each segment numbered `/%016d` from 1 in order (a plain file appended to becomes segment 0).

use hmac::{KeyInit, Mac};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha1::{Digest as _, Sha1};

type HmacSha1 = hmac::Hmac<Sha1>;

/// Characters escaped in an object name inside a URL path: all but unreserved ones and `/`.
const OBJECT_PATH: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

/// Characters escaped in a query value: all but unreserved ones.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// An object name (or container) as it goes into a URL path.
pub(super) fn encode_path(name: &str) -> String {
    utf8_percent_encode(name, OBJECT_PATH).to_string()
}

/// A query value, percent-encoded.
pub(super) fn encode_query(value: &str) -> String {
    utf8_percent_encode(value, QUERY_VALUE).to_string()
}

/// The object name of a driver path (already checked by `relative_path`).
pub(super) fn object_name(prefix: &str, path: &str) -> String {
    format!("{prefix}/files{path}")
        .trim_end_matches('/')
        .trim_start_matches('/')
        .to_string()
}

/// A fresh segment prefix for a file at `path`, spelled as distribution 2.8 spells it: the hex
/// of the path's bytes, 32 random bytes and the SHA-1 of nothing (its Go code passes the bytes
/// to `Sum`, which appends an empty hasher's digest to them), split after the third digit.
pub(super) fn segment_prefix(prefix: &str, path: &str, random: &[u8; 32]) -> String {
    let mut bytes = path.as_bytes().to_vec();
    bytes.extend_from_slice(random);
    bytes.extend_from_slice(&Sha1::digest(b""));
    let hex = hex_string(&bytes);
    format!("{prefix}/segments/{}/{}", &hex[..3], &hex[3..])
        .trim_end_matches('/')
        .trim_start_matches('/')
        .to_string()
}

/// The name of segment `number` (from 1; 0 for a plain file appended to) under `segments`.
pub(super) fn segment_name(segments: &str, number: usize) -> String {
    format!("{segments}/{number:016}")
}

/// The number of a segment from its name under `segments`, if it is one.
pub(super) fn segment_number(segments: &str, name: &str) -> Option<usize> {
    let tail = name.strip_prefix(segments)?.strip_prefix('/')?;
    if tail.len() != 16 || !tail.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    tail.parse().ok()
}

/// `X-Object-Manifest`'s value, `<container>/<segment prefix>`, split; `None` when it names
/// no prefix.
pub(super) fn parse_manifest(value: &str) -> Option<(&str, &str)> {
    let (container, prefix) = value.split_once('/')?;
    (!container.is_empty() && !prefix.is_empty()).then_some((container, prefix))
}

/// Lower-case hex.
pub(super) fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A temp URL's signature: HMAC-SHA1 of `method`, expiry and the URL path (`/v1/<account>/
/// <container>/<object>`, unescaped) under the account's or container's key.
pub(super) fn temp_url_signature(key: &str, method: &str, expires: u64, path: &str) -> String {
    let mut mac = HmacSha1::new_from_slice(key.as_bytes()).expect("HMAC takes any key length");
    mac.update(format!("{method}\n{expires}\n{path}").as_bytes());
    hex_string(&mac.finalize().into_bytes())
}

/// What a writer records in its manifest: the digest of the segments' MD5s in order, so a
/// file whose segments were replaced by a racing writer is not published.
pub(super) fn segments_digest<'a>(md5s: impl IntoIterator<Item = &'a str>) -> String {
    let mut hasher = sha2::Sha256::new();
    for md5 in md5s {
        sha2::Digest::update(&mut hasher, md5.as_bytes());
        sha2::Digest::update(&mut hasher, b"\n");
    }
    hex_string(&sha2::Digest::finalize(hasher))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_distribution_2_8s() {
        assert_eq!(object_name("", "/docker/a"), "files/docker/a");
        assert_eq!(object_name("", "/"), "files");
        assert_eq!(object_name("/reg", "/a"), "reg/files/a");
        // distribution trims only the ends: a trailing `/` on the prefix stays doubled.
        assert_eq!(object_name("reg/", "/a"), "reg//files/a");
        let seg = segment_prefix("", "/a", &[7; 32]);
        assert_eq!(
            seg,
            format!(
                "segments/2f6/1{}da39a3ee5e6b4b0d3255bfef95601890afd80709",
                "07".repeat(32)
            )
        );
        assert_eq!(segment_prefix("/reg", "/a", &[7; 32]), format!("reg/{seg}"));
        assert_ne!(seg, segment_prefix("", "/a", &[8; 32]));
        assert_eq!(segment_name("s/x", 12), "s/x/0000000000000012");
        assert_eq!(segment_number("s/x", "s/x/0000000000000012"), Some(12));
        assert_eq!(segment_number("s/x", "s/x/12"), None);
        assert_eq!(segment_number("s/x", "s/xy/0000000000000012"), None);
        assert_eq!(
            parse_manifest("c/segments/a/b"),
            Some(("c", "segments/a/b"))
        );
        assert_eq!(parse_manifest("c"), None);
    }

    #[test]
    fn temp_url_signature_is_hmac_sha1_of_method_expiry_and_path() {
        // Computed independently with Python's hmac module, as Swift's tempurl does.
        assert_eq!(
            temp_url_signature(
                "mykey",
                "GET",
                1323479485,
                "/v1/AUTH_account/container/object"
            ),
            "d9fc2067e52b06598421664cf6610bfc8fc431f6"
        );
    }
}
