//! The console's HTML: escaped text in plain, labelled markup that works without scripts, with
//! keyboard and screen readers, and on a phone-sized screen (see `assets/style.css`).

use std::fmt::Write as _;

use super::view::{ImageDetail, ImageSummary};

/// Text made safe for HTML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A query-string value.
pub fn q(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Bytes in binary units.
pub fn size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

fn short(digest: &str) -> &str {
    let hex = digest.split_once(':').map_or(digest, |(_, h)| h);
    &hex[..hex.len().min(12)]
}

/// What every page's frame shows.
pub struct Frame<'a> {
    /// `ui.path`.
    pub base: &'a str,
    /// The logged-in user.
    pub user: Option<&'a str>,
    /// Whether a login form makes sense (authentication is configured).
    pub auth: bool,
    /// Read-only mode.
    pub read_only: bool,
    /// The registry's name for pull lines and titles.
    pub host: &'a str,
}

/// A whole page around `body`.
pub fn page(frame: &Frame, title: &str, body: &str) -> String {
    let base = escape(frame.base);
    let mut account = String::new();
    match (frame.user, frame.auth) {
        (Some(user), _) => {
            let _ = write!(
                account,
                "<span>Signed in as <strong>{}</strong></span> <form method=\"post\" action=\"{base}logout\" class=\"inline\"><button type=\"submit\">Sign out</button></form>",
                escape(user)
            );
        }
        (None, true) => {
            let _ = write!(account, "<a href=\"{base}login\">Sign in</a>");
        }
        (None, false) => {}
    }
    let banner = if frame.read_only {
        "<p class=\"banner\" role=\"status\">This registry is in read-only mode: pushes and deletions are refused.</p>"
    } else {
        ""
    };
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{title} · {host}</title><link rel=\"stylesheet\" href=\"{base}style.css\"></head>\
<body><a class=\"skip\" href=\"#main\">Skip to content</a>\
<header><nav aria-label=\"Site\"><a href=\"{base}\" class=\"brand\">{host}</a></nav><div class=\"account\">{account}</div></header>\
{banner}<main id=\"main\"><h1>{title}</h1>{body}</main></body></html>\n",
        title = escape(title),
        host = escape(frame.host),
    )
}

/// The repository list with its search form and the next-page link.
pub fn repositories(
    frame: &Frame,
    query: &str,
    names: &[String],
    next: Option<&str>,
    total: Option<usize>,
    scoped: bool,
) -> String {
    let base = escape(frame.base);
    let mut b = format!(
        "<form role=\"search\" method=\"get\" action=\"{base}\" class=\"search\">\
<label for=\"q\">Search repositories</label>\
<input id=\"q\" name=\"q\" type=\"search\" value=\"{}\" autocomplete=\"off\">\
<button type=\"submit\">Search</button></form>",
        escape(query)
    );
    let matching = if query.is_empty() {
        String::new()
    } else {
        format!(" matching “{}”", escape(query))
    };
    // A viewer limited by an ACL is not told how many repositories they cannot see; the plain
    // list is not counted (that would read every name for one page).
    let _ = match (total, scoped) {
        (Some(total), _) => write!(
            b,
            "<p class=\"count\" id=\"count\">{total} repositor{}{matching}</p>",
            if total == 1 { "y" } else { "ies" },
        ),
        (None, true) => write!(
            b,
            "<p class=\"count\" id=\"count\">Repositories you may pull{matching}</p>"
        ),
        (None, false) => write!(
            b,
            "<p class=\"count\" id=\"count\">Repositories in name order</p>"
        ),
    };
    if names.is_empty() {
        b.push_str("<p>No repositories to show.</p>");
    } else {
        b.push_str("<ul class=\"repos\" aria-labelledby=\"count\">");
        for n in names {
            let _ = write!(
                b,
                "<li><a href=\"{base}repository?name={}\">{}</a></li>",
                q(n),
                escape(n)
            );
        }
        b.push_str("</ul>");
    }
    if let Some(next) = next {
        let _ = write!(
            b,
            "<nav aria-label=\"Pages\"><a rel=\"next\" id=\"next-page\" href=\"{base}?q={}&amp;last={}\">Next page</a></nav>",
            q(query),
            q(next)
        );
    }
    page(frame, "Repositories", &b)
}

/// A repository's tags.
pub fn tags(
    frame: &Frame,
    repo: &str,
    rows: &[ImageSummary],
    by_date: bool,
    can_delete: bool,
) -> String {
    let base = escape(frame.base);
    let link = |sort: &str, label: &str, current: bool| {
        if current {
            format!("<span aria-current=\"true\">{label}</span>")
        } else {
            format!(
                "<a href=\"{base}repository?name={}&amp;sort={sort}\">{label}</a>",
                q(repo)
            )
        }
    };
    let mut b = format!(
        "<p>Sort by {} · {}</p>",
        link("name", "name", !by_date),
        link("date", "date", by_date)
    );
    if rows.is_empty() {
        b.push_str("<p>No tags.</p>");
        return page(frame, repo, &b);
    }
    b.push_str("<div class=\"scroll\"><table id=\"tags\"><caption>Tags</caption><thead><tr><th scope=\"col\">Tag</th><th scope=\"col\">Digest</th><th scope=\"col\">Size</th><th scope=\"col\">Created</th><th scope=\"col\">Platforms</th>");
    if can_delete {
        b.push_str("<th scope=\"col\"><span class=\"sr\">Actions</span></th>");
    }
    b.push_str("</tr></thead><tbody>");
    for r in rows {
        let _ = write!(
            b,
            "<tr><th scope=\"row\"><a href=\"{base}image?name={}&amp;ref={}\">{}</a></th><td><code title=\"{}\">{}</code></td><td>{}</td><td>{}</td><td>{}</td>",
            q(repo),
            q(&r.tag),
            escape(&r.tag),
            escape(&r.digest.to_string()),
            short(&r.digest.to_string()),
            size(r.size),
            escape(r.created.as_deref().unwrap_or("")),
            escape(&r.platforms.join(", ")),
        );
        if can_delete {
            let _ = write!(
                b,
                "<td><a class=\"danger\" href=\"{base}delete?name={}&amp;ref={}\" aria-label=\"Delete tag {}\">Delete</a></td>",
                q(repo),
                q(&r.tag),
                escape(&r.tag)
            );
        }
        b.push_str("</tr>");
    }
    b.push_str("</tbody></table></div>");
    page(frame, repo, &b)
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        return "—".to_string();
    }
    items
        .iter()
        .map(|i| format!("<code>{}</code>", escape(i)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A manifest or index.
pub fn image(
    frame: &Frame,
    repo: &str,
    reference: &str,
    d: &ImageDetail,
    can_delete: bool,
) -> String {
    let base = escape(frame.base);
    let digest = d.digest.to_string();
    let by_tag = !reference.contains(':');
    let pull = if by_tag {
        format!("{}/{repo}:{reference}", frame.host)
    } else {
        format!("{}/{repo}@{digest}", frame.host)
    };
    let mut b = String::new();
    let _ = write!(
        b,
        "<dl class=\"facts\"><dt>Digest</dt><dd><code id=\"digest\">{}</code></dd><dt>Media type</dt><dd>{}</dd><dt>Manifest size</dt><dd>{}</dd>",
        escape(&digest),
        escape(&d.media_type),
        size(d.manifest_size)
    );
    if let Some(t) = &d.artifact_type {
        let _ = write!(b, "<dt>Artifact type</dt><dd>{}</dd>", escape(t));
    }
    if let Some(s) = &d.subject {
        let _ = write!(
            b,
            "<dt>Refers to</dt><dd><a href=\"{base}image?name={}&amp;ref={}\"><code>{}</code></a></dd>",
            q(repo),
            q(&s.to_string()),
            escape(&s.to_string())
        );
    }
    b.push_str("</dl>");
    let _ = write!(
        b,
        "<section aria-labelledby=\"pull-h\"><h2 id=\"pull-h\">Pull</h2>\
<label for=\"docker-pull\">docker</label><input id=\"docker-pull\" readonly value=\"docker pull {p}\">\
<label for=\"skopeo-copy\">skopeo</label><input id=\"skopeo-copy\" readonly value=\"skopeo copy docker://{p} oci:image:latest\"></section>",
        p = escape(&pull)
    );
    if !d.children.is_empty() {
        b.push_str("<section aria-labelledby=\"platforms-h\"><h2 id=\"platforms-h\">Platforms</h2><div class=\"scroll\"><table id=\"platforms\"><thead><tr><th scope=\"col\">Platform</th><th scope=\"col\">Digest</th><th scope=\"col\">Media type</th><th scope=\"col\">Size</th></tr></thead><tbody>");
        for c in &d.children {
            let cd = c.descriptor.digest.to_string();
            let _ = write!(
                b,
                "<tr><th scope=\"row\"><a href=\"{base}image?name={}&amp;ref={}\">{}</a></th><td><code title=\"{}\">{}</code></td><td>{}</td><td>{}</td></tr>",
                q(repo),
                q(&cd),
                escape(&c.platform),
                escape(&cd),
                short(&cd),
                escape(&c.descriptor.media_type),
                size(c.descriptor.size)
            );
        }
        b.push_str("</tbody></table></div></section>");
    }
    if let Some(c) = &d.config {
        let _ = write!(
            b,
            "<section aria-labelledby=\"config-h\"><h2 id=\"config-h\">Image config</h2><dl class=\"facts\">\
<dt>Created</dt><dd id=\"created\">{}</dd><dt>Platform</dt><dd>{}</dd><dt>Entrypoint</dt><dd>{}</dd><dt>Command</dt><dd>{}</dd><dt>Environment</dt><dd>{}</dd><dt>Labels</dt><dd>{}</dd></dl>",
            escape(c.created.as_deref().unwrap_or("—")),
            escape(c.platform.as_deref().unwrap_or("—")),
            list(&c.entrypoint),
            list(&c.cmd),
            list(&c.env),
            list(&c.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>()),
        );
        if !c.history.is_empty() {
            b.push_str("<h3>History</h3><div class=\"scroll\"><table id=\"history\"><thead><tr><th scope=\"col\">Created</th><th scope=\"col\">Step</th></tr></thead><tbody>");
            for (created, by, empty) in &c.history {
                let _ = write!(
                    b,
                    "<tr><td>{}</td><td><code>{}</code>{}</td></tr>",
                    escape(created),
                    escape(by),
                    if *empty {
                        " <small>(no layer)</small>"
                    } else {
                        ""
                    }
                );
            }
            b.push_str("</tbody></table></div>");
        }
        b.push_str("</section>");
    }
    if !d.layers.is_empty() {
        let total: u64 = d.layers.iter().map(|l| l.size).sum();
        let _ = write!(
            b,
            "<section aria-labelledby=\"layers-h\"><h2 id=\"layers-h\">Layers</h2><p>{} layer{}, {}</p><div class=\"scroll\"><table id=\"layers\"><thead><tr><th scope=\"col\">#</th><th scope=\"col\">Digest</th><th scope=\"col\">Media type</th><th scope=\"col\">Size</th></tr></thead><tbody>",
            d.layers.len(),
            if d.layers.len() == 1 { "" } else { "s" },
            size(total)
        );
        for (i, l) in d.layers.iter().enumerate() {
            let ld = l.digest.to_string();
            let _ = write!(
                b,
                "<tr><td>{}</td><td><code title=\"{}\">{}</code></td><td>{}</td><td>{}</td></tr>",
                i + 1,
                escape(&ld),
                short(&ld),
                escape(&l.media_type),
                size(l.size)
            );
        }
        b.push_str("</tbody></table></div></section>");
    }
    b.push_str("<section aria-labelledby=\"referrers-h\"><h2 id=\"referrers-h\">Referrers</h2>");
    if d.referrers.is_empty() {
        b.push_str("<p>No signatures, SBOMs or attestations refer to this manifest.</p>");
    } else {
        b.push_str("<div class=\"scroll\"><table id=\"referrers\"><thead><tr><th scope=\"col\">Artifact type</th><th scope=\"col\">Digest</th><th scope=\"col\">Size</th></tr></thead><tbody>");
        for r in &d.referrers {
            let rd = r.digest.to_string();
            let _ = write!(
                b,
                "<tr><td>{}</td><td><a href=\"{base}image?name={}&amp;ref={}\"><code>{}</code></a></td><td>{}</td></tr>",
                escape(r.artifact_type.as_deref().unwrap_or("—")),
                q(repo),
                q(&rd),
                short(&rd),
                size(r.size)
            );
        }
        b.push_str("</tbody></table></div>");
    }
    b.push_str("</section>");
    if can_delete {
        b.push_str("<section aria-labelledby=\"delete-h\"><h2 id=\"delete-h\">Delete</h2><p>");
        if by_tag {
            let _ = write!(
                b,
                "<a class=\"danger\" id=\"delete-tag\" href=\"{base}delete?name={}&amp;ref={}\">Delete tag {}</a> ",
                q(repo),
                q(reference),
                escape(reference)
            );
        }
        let _ = write!(
            b,
            "<a class=\"danger\" id=\"delete-manifest\" href=\"{base}delete?name={}&amp;ref={}\">Delete manifest and all its tags</a></p></section>",
            q(repo),
            q(&digest)
        );
    }
    let title = if by_tag {
        format!("{repo}:{reference}")
    } else {
        format!("{repo}@{}", short(&digest))
    };
    page(frame, &title, &b)
}

/// The confirmation form of a deletion.
pub fn confirm_delete(frame: &Frame, repo: &str, reference: &str) -> String {
    let base = escape(frame.base);
    let what = if reference.contains(':') {
        format!(
            "the manifest <code>{}</code> of <strong>{}</strong> and every tag on it",
            escape(reference),
            escape(repo)
        )
    } else {
        format!(
            "the tag <strong>{}:{}</strong> (the manifest stays)",
            escape(repo),
            escape(reference)
        )
    };
    let body = format!(
        "<p>Delete {what}? This cannot be undone.</p>\
<form method=\"post\" action=\"{base}delete?name={}&amp;ref={}\">\
<button type=\"submit\" class=\"danger\" id=\"confirm-delete\">Yes, delete</button> \
<a href=\"{base}repository?name={}\">Cancel</a></form>",
        q(repo),
        q(reference),
        q(repo)
    );
    page(frame, "Confirm deletion", &body)
}

/// The login form, with a message after a failed attempt.
pub fn login(frame: &Frame, error: Option<&str>, then: &str) -> String {
    let base = escape(frame.base);
    let message = error.map_or_else(String::new, |e| {
        format!(
            "<p class=\"error\" role=\"alert\" id=\"login-error\">{}</p>",
            escape(e)
        )
    });
    let body = format!(
        "{message}<form method=\"post\" action=\"{base}login\" class=\"login\">\
<input type=\"hidden\" name=\"then\" value=\"{}\">\
<label for=\"username\">User name</label><input id=\"username\" name=\"username\" autocomplete=\"username\" required>\
<label for=\"password\">Password</label><input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required>\
<button type=\"submit\" id=\"sign-in\">Sign in</button></form>",
        escape(then)
    );
    page(frame, "Sign in", &body)
}

/// A page that says what went wrong.
pub fn message(frame: &Frame, title: &str, text: &str) -> String {
    page(
        frame,
        title,
        &format!(
            "<p role=\"alert\">{}</p><p><a href=\"{}\">Back to the repositories</a></p>",
            escape(text),
            escape(frame.base)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(q("a/b c&d"), "a%2Fb+c%26d");
        assert_eq!(size(512), "512 B");
        assert_eq!(size(1536), "1.5 KiB");
    }
}
