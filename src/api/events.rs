//! Notification events of a handled request, built as registry:2's bridge builds them
//! (`notifications/bridge.go`) and recorded before the request is answered.

use crate::api::{App, Req};
use crate::digest::Digest;
use crate::notify::event::{
    manifest_references, Action, ActorRecord, Descriptor, RequestRecord, Target,
};
use crate::registry::reference::RepositoryName;

/// Who sent a request, as the HTTP server saw it (a request extension).
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    /// Peer address (`ip:port`).
    pub remote: String,
    /// Request id (also in the access log and `X-Request-Id`).
    pub request_id: String,
}

/// Media type registry:2 gives blobs in events.
const BLOB_MEDIA_TYPE: &str = "application/octet-stream";

/// Builds and records one request's events; does nothing without notification endpoints.
pub struct Emitter<'a> {
    app: &'a App,
    req: &'a Req,
    items: Vec<(Action, Target)>,
}

impl<'a> Emitter<'a> {
    /// Events of `req`.
    pub fn new(app: &'a App, req: &'a Req) -> Self {
        Emitter {
            app,
            req,
            items: Vec::new(),
        }
    }

    fn active(&self) -> bool {
        self.app.notifier.is_some()
    }

    fn url(&self, path: &str) -> String {
        self.app.urls.url(&self.req.parts.headers, path)
    }

    /// A manifest pushed or pulled; `tag` when the request named one.
    pub fn manifest(
        &mut self,
        action: Action,
        repo: &RepositoryName,
        media_type: &str,
        digest: &Digest,
        body: &[u8],
        tag: Option<&str>,
    ) {
        if !self.active() {
            return;
        }
        let references = match &self.app.notifier {
            Some(n) if n.include_references() => manifest_references(body),
            _ => Vec::new(),
        };
        let target = Target {
            descriptor: Descriptor {
                media_type: media_type.to_string(),
                size: body.len() as u64,
                digest: digest.to_string(),
                ..Default::default()
            },
            length: body.len() as u64,
            repository: repo.to_string(),
            url: self.url(&format!("/v2/{repo}/manifests/{digest}")),
            tag: tag.unwrap_or_default().to_string(),
            references,
            ..Default::default()
        };
        self.items.push((action, target));
    }

    /// A blob pushed, pulled or mounted (`from` for a mount whose source is known).
    pub fn blob(
        &mut self,
        action: Action,
        repo: &RepositoryName,
        digest: &Digest,
        size: u64,
        from: Option<&str>,
    ) {
        if !self.active() {
            return;
        }
        let target = Target {
            descriptor: Descriptor {
                media_type: BLOB_MEDIA_TYPE.to_string(),
                size,
                digest: digest.to_string(),
                ..Default::default()
            },
            length: size,
            repository: repo.to_string(),
            from_repository: from.unwrap_or_default().to_string(),
            url: self.url(&format!("/v2/{repo}/blobs/{digest}")),
            ..Default::default()
        };
        self.items.push((action, target));
    }

    /// A manifest or blob deleted by digest.
    pub fn deleted(&mut self, repo: &RepositoryName, digest: &Digest) {
        if !self.active() {
            return;
        }
        let mut target = Target {
            repository: repo.to_string(),
            ..Default::default()
        };
        target.descriptor.digest = digest.to_string();
        self.items.push((Action::Delete, target));
    }

    /// A tag deleted.
    pub fn tag_deleted(&mut self, repo: &RepositoryName, tag: &str) {
        if !self.active() {
            return;
        }
        let target = Target {
            repository: repo.to_string(),
            tag: tag.to_string(),
            ..Default::default()
        };
        self.items.push((Action::Delete, target));
    }

    /// Records the events durably (never fails the request).
    pub async fn record(self) {
        let Some(notifier) = &self.app.notifier else {
            return;
        };
        if self.items.is_empty() {
            return;
        }
        let client = self
            .req
            .parts
            .extensions
            .get::<ClientInfo>()
            .cloned()
            .unwrap_or_default();
        let header = |name: http::header::HeaderName| {
            self.req
                .parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        let request = RequestRecord {
            id: client.request_id,
            addr: remote_addr(&self.req.parts.headers, client.remote),
            host: header(http::header::HOST),
            method: self.req.parts.method.to_string(),
            useragent: header(http::header::USER_AGENT),
        };
        let actor = ActorRecord {
            name: self
                .req
                .parts
                .extensions
                .get::<crate::auth::Grant>()
                .and_then(|g| g.user.clone())
                .unwrap_or_default(),
        };
        let events = notifier.events(self.items, &request, &actor);
        notifier.record(&events).await;
    }
}

/// registry:2's `RemoteAddr`: the first `X-Forwarded-For` address, else `X-Real-Ip`, when
/// either is an IP address; else the peer.
fn remote_addr(headers: &http::HeaderMap, peer: String) -> String {
    let ip = |v: &str| v.trim().parse::<std::net::IpAddr>().is_ok();
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(first) = get("x-forwarded-for").and_then(|v| v.split(',').next()) {
        if ip(first) {
            return first.trim().to_string();
        }
    }
    match get("x-real-ip") {
        Some(real) if ip(real) => real.trim().to_string(),
        _ => peer,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_addr_prefers_forwarded_ip_addresses_like_registry_2() {
        let mut h = http::HeaderMap::new();
        assert_eq!(remote_addr(&h, "10.0.0.9:4000".into()), "10.0.0.9:4000");
        h.insert("x-real-ip", "192.0.2.7".parse().unwrap());
        assert_eq!(remote_addr(&h, "p".into()), "192.0.2.7");
        h.insert(
            "x-forwarded-for",
            " 198.51.100.1 , 10.0.0.1".parse().unwrap(),
        );
        assert_eq!(remote_addr(&h, "p".into()), "198.51.100.1");
        h.insert("x-forwarded-for", "not-an-ip".parse().unwrap());
        assert_eq!(remote_addr(&h, "p".into()), "192.0.2.7");
    }
}
