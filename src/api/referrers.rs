//! `/v2/<name>/referrers/<digest>`: the OCI 1.1 referrers index.

use http::{header, HeaderValue, Response, StatusCode};
use serde_json::{json, Map, Value};

use crate::api::body::Body;
use crate::api::error::ApiError;
use crate::api::{json_response, App, Req};
use crate::digest::Digest;
use crate::registry::error::RegistryError;
use crate::registry::manifest_format::OCI_INDEX;
use crate::registry::reference::RepositoryName;

/// GET the referrers of a digest, optionally filtered by `artifactType`.
pub async fn get(
    app: &App,
    req: &Req,
    name: &RepositoryName,
    digest: &str,
) -> Result<Response<Body>, ApiError> {
    let subject: Digest = digest.parse().map_err(RegistryError::from)?;
    let filter = req.query("artifactType").filter(|t| !t.is_empty());
    let referrers = app
        .registry
        .referrers(name, &subject, filter.as_deref())
        .await?;
    let manifests: Vec<Value> = referrers
        .into_iter()
        .map(|r| {
            let mut d = Map::new();
            d.insert("mediaType".into(), json!(r.media_type));
            d.insert("digest".into(), json!(r.digest.to_string()));
            d.insert("size".into(), json!(r.size));
            if let Some(t) = r.artifact_type {
                d.insert("artifactType".into(), json!(t));
            }
            if let Some(a) = r.annotations {
                d.insert("annotations".into(), Value::Object(a));
            }
            Value::Object(d)
        })
        .collect();
    let body = json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests });
    let mut resp = json_response(
        StatusCode::OK,
        serde_json::to_vec(&body).unwrap_or_default(),
    );
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(OCI_INDEX));
    if filter.is_some() {
        resp.headers_mut().insert(
            "oci-filters-applied",
            HeaderValue::from_static("artifactType"),
        );
    }
    Ok(resp)
}
