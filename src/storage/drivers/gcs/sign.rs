//! V4 signed URLs (GOOG4-RSA-SHA256) and the percent-encoding of object names.

use jsonwebtoken::{Algorithm, EncodingKey};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::{Digest, Sha256};

/// Everything but RFC 3986's unreserved characters: an object name as one path segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');
/// As [`SEGMENT`], keeping `/`: an object name in a signed URL's path.
const PATH: &AsciiSet = &SEGMENT.remove(b'/');

/// An object name (or any value) as one encoded path segment or query value.
pub(super) fn encode(value: &str) -> String {
    utf8_percent_encode(value, SEGMENT).to_string()
}

/// What a signed URL is made from.
pub(super) struct UrlToSign<'a> {
    /// `scheme://host[:port]`.
    pub endpoint: &'a str,
    pub bucket: &'a str,
    pub object: &'a str,
    pub email: &'a str,
    /// `YYYYMMDDTHHMMSSZ`.
    pub timestamp: &'a str,
    pub expires_secs: u64,
}

impl UrlToSign<'_> {
    /// The canonical request and the query it signs, of a path-style GET.
    fn canonical(&self) -> (String, String) {
        let host = self
            .endpoint
            .split_once("://")
            .map_or(self.endpoint, |(_, h)| h);
        let date = &self.timestamp[..8.min(self.timestamp.len())];
        let credential = format!("{}/{date}/auto/storage/goog4_request", self.email);
        let query = format!(
            "X-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Credential={}&X-Goog-Date={}\
             &X-Goog-Expires={}&X-Goog-SignedHeaders=host",
            encode(&credential),
            self.timestamp,
            self.expires_secs
        );
        let path = format!(
            "/{}/{}",
            self.bucket,
            utf8_percent_encode(self.object, PATH)
        );
        let request = format!("GET\n{path}\n{query}\nhost:{host}\n\nhost\nUNSIGNED-PAYLOAD");
        (request, query)
    }

    /// The string the key signs.
    fn string_to_sign(&self, canonical: &str) -> String {
        let date = &self.timestamp[..8.min(self.timestamp.len())];
        format!(
            "GOOG4-RSA-SHA256\n{}\n{date}/auto/storage/goog4_request\n{}",
            self.timestamp,
            hex(&Sha256::digest(canonical.as_bytes()))
        )
    }

    /// The signed URL.
    pub(super) fn sign(&self, key: &EncodingKey) -> Result<String, String> {
        let (canonical, query) = self.canonical();
        let signature = jsonwebtoken::crypto::sign(
            self.string_to_sign(&canonical).as_bytes(),
            key,
            Algorithm::RS256,
        )
        .map_err(|e| e.to_string())?;
        use base64::Engine as _;
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|e| e.to_string())?;
        Ok(format!(
            "{}/{}/{}?{query}&X-Goog-Signature={}",
            self.endpoint,
            self.bucket,
            utf8_percent_encode(self.object, PATH),
            hex(&raw)
        ))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_one_segment() {
        assert_eq!(
            encode("docker/registry/v2/a b"),
            "docker%2Fregistry%2Fv2%2Fa%20b"
        );
        assert_eq!(encode("a-b_c.d~e"), "a-b_c.d~e");
    }

    #[test]
    fn canonical_request_is_googles_form() {
        let u = UrlToSign {
            endpoint: "https://storage.googleapis.com",
            bucket: "b",
            object: "r/docker/x y",
            email: "sa@p.iam.gserviceaccount.com",
            timestamp: "20260102T030405Z",
            expires_secs: 1200,
        };
        let (canonical, query) = u.canonical();
        assert_eq!(
            canonical,
            "GET\n/b/r/docker/x%20y\n\
             X-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Credential=sa%40p.iam.gserviceaccount.com\
             %2F20260102%2Fauto%2Fstorage%2Fgoog4_request&X-Goog-Date=20260102T030405Z\
             &X-Goog-Expires=1200&X-Goog-SignedHeaders=host\n\
             host:storage.googleapis.com\n\nhost\nUNSIGNED-PAYLOAD"
        );
        assert!(query.ends_with("X-Goog-SignedHeaders=host"));
        let sts = u.string_to_sign(&canonical);
        assert!(sts.starts_with(
            "GOOG4-RSA-SHA256\n20260102T030405Z\n20260102/auto/storage/goog4_request\n"
        ));
    }
}
