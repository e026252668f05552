//! Azure Storage Shared Key authorization: the request signature (`Authorization: SharedKey`)
//! and the service SAS that redirect URLs carry. Pure functions over strings, so they are
//! checked against the documented examples without a server.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{KeyInit, Mac};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// Characters escaped in a blob name inside a URL path: all but unreserved ones and `/`.
const BLOB_PATH: &AsciiSet = &NON_ALPHANUMERIC
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

/// Service version spoken in requests (`x-ms-version`).
pub(super) const API_VERSION: &str = "2021-08-06";
/// Service version of the SAS tokens signed here (its string-to-sign has no encryption scope).
const SAS_VERSION: &str = "2018-11-09";

/// A blob name as it goes into a URL path.
pub(super) fn encode_path(name: &str) -> String {
    utf8_percent_encode(name, BLOB_PATH).to_string()
}

/// A query value, percent-encoded.
pub(super) fn encode_query(value: &str) -> String {
    utf8_percent_encode(value, QUERY_VALUE).to_string()
}

/// The account's key, decoded from the base64 that the portal shows.
#[derive(Clone)]
pub(super) struct SharedKey {
    account: String,
    key: Vec<u8>,
}

impl std::fmt::Debug for SharedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedKey")
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}

/// What a request's signature covers.
pub(super) struct SignedRequest<'a> {
    /// `GET`, `PUT`, ...
    pub method: &'a str,
    /// The URL path as sent, percent-encoded (`/container/blob`, or `/account/container/blob`
    /// on an emulator).
    pub path: &'a str,
    /// Decoded query parameters.
    pub query: &'a [(&'a str, String)],
    /// Every header to be sent, names in lower case.
    pub headers: &'a [(String, String)],
}

impl SharedKey {
    /// `key` is the base64 text of the account key.
    pub(super) fn new(account: &str, key: &str) -> Result<Self, base64::DecodeError> {
        Ok(SharedKey {
            account: account.to_string(),
            key: STANDARD.decode(key.trim())?,
        })
    }

    fn hmac(&self, text: &str) -> String {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(text.as_bytes());
        STANDARD.encode(mac.finalize().into_bytes())
    }

    /// The string that Shared Key authorization signs (service version 2015-02-21 and later:
    /// a zero `Content-Length` is written as empty).
    pub(super) fn string_to_sign(&self, req: &SignedRequest<'_>) -> String {
        let header = |name: &str| {
            req.headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
                .unwrap_or("")
        };
        let length = match header("content-length") {
            "0" => "",
            other => other,
        };
        let mut out = format!(
            "{}\n{}\n{}\n{}\n{}\n{}\n\n{}\n{}\n{}\n{}\n{}\n",
            req.method,
            header("content-encoding"),
            header("content-language"),
            length,
            header("content-md5"),
            header("content-type"),
            header("if-modified-since"),
            header("if-match"),
            header("if-none-match"),
            header("if-unmodified-since"),
            header("range"),
        );
        let mut ms: Vec<(&str, &str)> = req
            .headers
            .iter()
            .filter(|(n, _)| n.starts_with("x-ms-"))
            .map(|(n, v)| (n.as_str(), v.trim()))
            .collect();
        ms.sort();
        for (name, value) in ms {
            out.push_str(name);
            out.push(':');
            out.push_str(value);
            out.push('\n');
        }
        out.push('/');
        out.push_str(&self.account);
        out.push_str(req.path);
        let mut query: Vec<(String, &str)> = req
            .query
            .iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), v.as_str()))
            .collect();
        query.sort();
        for (name, value) in query {
            out.push('\n');
            out.push_str(&name);
            out.push(':');
            out.push_str(value);
        }
        out
    }

    /// The `Authorization` header of a request.
    pub(super) fn authorization(&self, req: &SignedRequest<'_>) -> String {
        format!(
            "SharedKey {}:{}",
            self.account,
            self.hmac(&self.string_to_sign(req))
        )
    }

    /// The query string of a read-only service SAS for one blob, valid from `start` to
    /// `expiry` (ISO 8601 UTC, seconds precision). `container` and `blob` are unencoded names.
    pub(super) fn blob_read_sas(
        &self,
        container: &str,
        blob: &str,
        start: &str,
        expiry: &str,
        https_only: bool,
    ) -> String {
        let protocol = if https_only { "https" } else { "https,http" };
        let resource = format!("/blob/{}/{}/{}", self.account, container, blob);
        // sp, st, se, resource, si, sip, spr, sv, sr, snapshot time, rscc, rscd, rsce, rscl, rsct
        let to_sign = format!(
            "r\n{start}\n{expiry}\n{resource}\n\n\n{protocol}\n{SAS_VERSION}\nb\n\n\n\n\n\n"
        );
        let sig = self.hmac(&to_sign);
        format!(
            "sv={SAS_VERSION}&spr={}&st={}&se={}&sr=b&sp=r&sig={}",
            encode_query(protocol),
            encode_query(start),
            encode_query(expiry),
            encode_query(&sig)
        )
    }
}

/// A user delegation key (`Get User Delegation Key`): what signs redirect URLs when requests
/// carry Entra ID tokens instead of the account key.
#[derive(Clone)]
pub(super) struct DelegationKey {
    account: String,
    /// Object id, tenant id, key start, key expiry, service, key version: the `sk*` fields.
    signed: [String; 6],
    key: Vec<u8>,
}

impl std::fmt::Debug for DelegationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DelegationKey")
            .field("signed", &self.signed)
            .finish_non_exhaustive()
    }
}

impl DelegationKey {
    /// `signed` are the answer's fields in order; `value` the base64 key.
    pub(super) fn new(
        account: &str,
        signed: [String; 6],
        value: &str,
    ) -> Result<Self, base64::DecodeError> {
        Ok(DelegationKey {
            account: account.to_string(),
            signed,
            key: STANDARD.decode(value.trim())?,
        })
    }

    /// The query string of a read-only user delegation SAS for one blob (service version
    /// 2018-11-09's string-to-sign), valid from `start` to `expiry`.
    pub(super) fn blob_read_sas(
        &self,
        container: &str,
        blob: &str,
        start: &str,
        expiry: &str,
        https_only: bool,
    ) -> String {
        let protocol = if https_only { "https" } else { "https,http" };
        let resource = format!("/blob/{}/{}/{}", self.account, container, blob);
        let [oid, tid, key_start, key_expiry, service, key_version] = &self.signed;
        // sp, st, se, resource, skoid, sktid, skt, ske, sks, skv, sip, spr, sv, sr,
        // snapshot time, rscc, rscd, rsce, rscl, rsct
        let to_sign = format!(
            "r\n{start}\n{expiry}\n{resource}\n{oid}\n{tid}\n{key_start}\n{key_expiry}\n\
             {service}\n{key_version}\n\n{protocol}\n{SAS_VERSION}\nb\n\n\n\n\n\n"
        );
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(to_sign.as_bytes());
        let sig = STANDARD.encode(mac.finalize().into_bytes());
        format!(
            "sv={SAS_VERSION}&spr={}&st={}&se={}&sr=b&sp=r&skoid={}&sktid={}&skt={}&ske={}\
             &sks={}&skv={}&sig={}",
            encode_query(protocol),
            encode_query(start),
            encode_query(expiry),
            encode_query(oid),
            encode_query(tid),
            encode_query(key_start),
            encode_query(key_expiry),
            encode_query(service),
            encode_query(key_version),
            encode_query(&sig)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SharedKey {
        // Azurite's well-known development account.
        SharedKey::new(
            "devstoreaccount1",
            "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==",
        )
        .unwrap()
    }

    #[test]
    fn string_to_sign_orders_headers_and_query() {
        let headers = vec![
            ("x-ms-version".to_string(), API_VERSION.to_string()),
            ("content-length".to_string(), "0".to_string()),
            (
                "x-ms-date".to_string(),
                "Sun, 06 Dec 2026 01:00:00 GMT".to_string(),
            ),
            ("if-match".to_string(), "\"0x1\"".to_string()),
        ];
        let query = [
            ("restype", "container".to_string()),
            ("comp", "list".to_string()),
            ("prefix", "a/b c".to_string()),
        ];
        let text = key().string_to_sign(&SignedRequest {
            method: "GET",
            path: "/devstoreaccount1/c",
            query: &query,
            headers: &headers,
        });
        assert_eq!(
            text,
            "GET\n\n\n\n\n\n\n\n\"0x1\"\n\n\n\n\
             x-ms-date:Sun, 06 Dec 2026 01:00:00 GMT\nx-ms-version:2021-08-06\n\
             /devstoreaccount1/devstoreaccount1/c\ncomp:list\nprefix:a/b c\nrestype:container"
        );
    }

    #[test]
    fn authorization_is_hmac_of_the_string_to_sign() {
        let k = key();
        let req = SignedRequest {
            method: "PUT",
            path: "/c/b",
            query: &[],
            headers: &[("content-length".to_string(), "3".to_string())],
        };
        let expected = {
            let mut mac = HmacSha256::new_from_slice(&k.key).unwrap();
            mac.update(k.string_to_sign(&req).as_bytes());
            STANDARD.encode(mac.finalize().into_bytes())
        };
        assert_eq!(
            k.authorization(&req),
            format!("SharedKey devstoreaccount1:{expected}")
        );
        assert!(k.string_to_sign(&req).starts_with("PUT\n\n\n3\n"));
    }

    #[test]
    fn sas_names_the_blob_and_read_permission() {
        let sas = key().blob_read_sas(
            "c",
            "docker/registry/v2/blobs/x",
            "2026-12-06T01:00:00Z",
            "2026-12-06T01:20:00Z",
            true,
        );
        assert!(sas.starts_with("sv=2018-11-09&spr=https&st=2026-12-06T01%3A00%3A00Z&se=2026-12-06T01%3A20%3A00Z&sr=b&sp=r&sig="));
        assert!(!sas["sv=".len()..].contains('+'), "{sas}");
    }

    #[test]
    fn delegation_sas_carries_the_key_fields_and_signs_them() {
        let signed = [
            "oid".to_string(),
            "tid".to_string(),
            "2026-12-06T01:00:00Z".to_string(),
            "2026-12-06T03:00:00Z".to_string(),
            "b".to_string(),
            "2021-08-06".to_string(),
        ];
        let key = DelegationKey::new("acct", signed, "a2V5").unwrap();
        let sas = key.blob_read_sas(
            "c",
            "x/y",
            "2026-12-06T01:00:00Z",
            "2026-12-06T01:20:00Z",
            true,
        );
        let to_sign = "r\n2026-12-06T01:00:00Z\n2026-12-06T01:20:00Z\n/blob/acct/c/x/y\noid\ntid\n\
            2026-12-06T01:00:00Z\n2026-12-06T03:00:00Z\nb\n2021-08-06\n\nhttps\n2018-11-09\nb\n\n\n\n\n\n";
        let mut mac = HmacSha256::new_from_slice(b"key").unwrap();
        mac.update(to_sign.as_bytes());
        let sig = STANDARD.encode(mac.finalize().into_bytes());
        assert!(
            sas.ends_with(&format!("&sig={}", encode_query(&sig))),
            "{sas}"
        );
        assert!(sas.contains("&skoid=oid&sktid=tid&skt=2026-12-06T01%3A00%3A00Z&ske=2026-12-06T03%3A00%3A00Z&sks=b&skv=2021-08-06&"));
    }

    #[test]
    fn names_are_escaped_but_slashes_kept() {
        assert_eq!(encode_path("/c/a b/é"), "/c/a%20b/%C3%A9");
        assert_eq!(encode_query("a+b/c="), "a%2Bb%2Fc%3D");
    }
}
