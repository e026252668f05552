//! `/v2/_catalog` and `/v2/<name>/tags/list`, paginated with `n`/`last` and `Link`.

use http::{header, Response, StatusCode};
use serde::Serialize;

use crate::api::body::Body;
use crate::api::error::{ApiError, ErrorCode};
use crate::api::{header_value, json_response, App, Req};
use crate::registry::reference::RepositoryName;
use crate::registry::Page;

/// The `_catalog` body.
#[derive(Serialize)]
struct Repositories<'a> {
    repositories: &'a [String],
}

/// The `tags/list` body.
#[derive(Serialize)]
struct Tags<'a> {
    name: &'a str,
    tags: &'a [String],
}

/// Parses `n`: a non-negative integer, however many digits (the registry
/// clamps it to its page limit); anything else is refused.
fn page_size(req: &Req) -> Result<Option<usize>, ApiError> {
    match req.query("n") {
        None => Ok(None),
        Some(n) if n.is_empty() => Ok(None),
        Some(n) => parse_page_size(&n).map(Some).ok_or_else(|| {
            let shown: String = n.chars().take(40).collect();
            ApiError::new(
                ErrorCode::PaginationNumberInvalid,
                format!("n={shown:?} is not a non-negative integer"),
            )
        }),
    }
}

/// Decimal digits, saturating at `usize::MAX` instead of failing.
fn parse_page_size(n: &str) -> Option<usize> {
    let digits = n.strip_prefix('+').unwrap_or(n);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(digits.bytes().fold(0usize, |acc, b| {
        acc.saturating_mul(10).saturating_add(usize::from(b - b'0'))
    }))
}

/// `Link: <path?last=..&n=..>; rel="next"` when more entries follow.
fn with_link(
    mut resp: Response<Body>,
    app: &App,
    path: &str,
    page: &Page,
    n: usize,
) -> Response<Body> {
    if let Some(next) = &page.next {
        let last: String = form_urlencoded::byte_serialize(next.as_bytes()).collect();
        let link = format!(
            "<{}{path}?last={last}&n={n}>; rel=\"next\"",
            app.urls.prefix
        );
        resp.headers_mut().insert(header::LINK, header_value(&link));
    }
    resp
}

/// GET `/v2/_catalog`.
pub async fn catalog(app: &App, req: &Req) -> Result<Response<Body>, ApiError> {
    let max = app.registry.options().catalog_max_entries;
    let size = page_size(req)?.unwrap_or(max).min(max);
    let page = app
        .registry
        .catalog(req.query("last").as_deref(), size)
        .await?;
    let body = serde_json::to_vec(&Repositories {
        repositories: &page.items,
    })
    .unwrap_or_default();
    Ok(with_link(
        json_response(StatusCode::OK, body),
        app,
        "/v2/_catalog",
        &page,
        size,
    ))
}

/// GET `/v2/<name>/tags/list`.
pub async fn tags(app: &App, req: &Req, name: &RepositoryName) -> Result<Response<Body>, ApiError> {
    let n = page_size(req)?;
    let last = req.query("last");
    let target = app
        .mirror
        .as_ref()
        .and_then(|m| Some((m, m.target(name, req.query("ns").as_deref())?)));
    let page = match target {
        None => app.registry.tags(name, last.as_deref(), n).await?,
        Some((mirror, target)) => {
            let all = mirror.tags(&app.registry, &target).await?;
            app.registry.tags_page(all, last.as_deref(), n)
        }
    };
    let body = serde_json::to_vec(&Tags {
        name: name.as_str(),
        tags: &page.items,
    })
    .unwrap_or_default();
    let size = n
        .unwrap_or(page.items.len())
        .min(app.registry.options().max_tags);
    Ok(with_link(
        json_response(StatusCode::OK, body),
        app,
        &format!("/v2/{name}/tags/list"),
        &page,
        size,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_sizes_saturate() {
        assert_eq!(parse_page_size("0"), Some(0));
        assert_eq!(parse_page_size("10000"), Some(10_000));
        assert_eq!(parse_page_size("+5"), Some(5));
        assert_eq!(parse_page_size(&"9".repeat(400)), Some(usize::MAX));
        for bad in ["", "-1", "1e3", "0x10", " 1", "1 ", "+", "++1", "١"] {
            assert_eq!(parse_page_size(bad), None, "{bad:?}");
        }
    }
}
