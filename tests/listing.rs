//! Tag lists and the catalog: order, pagination, nested names.

mod support;

use support::*;

/// Follow `Link: <…>; rel="next"` from `first`, collecting `key` (bounded number of pages).
fn collect_pages(reg: &Registry, first: &str, key: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut next = Some(first.to_string());
    for _ in 0..100 {
        let Some(url) = next.take() else {
            return out;
        };
        let resp = send(reg.get(&url));
        resp.assert_status(200);
        let body = resp.json();
        if let Some(items) = body[key].as_array() {
            out.extend(items.iter().map(|v| v.as_str().unwrap().to_string()));
        }
        next = next_link(&resp);
    }
    panic!("more than 100 pages from {first}");
}

const TAGS: [&str; 12] = [
    "v10", "alpha", "v2", "latest", "beta", "1.0", "v1", "Zulu", "rc_1", "v1.1", "gamma", "0.9",
];

fn sorted_tags() -> Vec<String> {
    let mut tags: Vec<String> = TAGS.iter().map(|t| t.to_string()).collect();
    tags.sort();
    tags
}

fn tags_sorted(driver: Driver) {
    let reg = Registry::start(driver);
    let manifest = prepare(&reg, "lib/app", Kind::OciManifest);
    for tag in TAGS {
        push_manifest(&reg, "lib/app", tag, &manifest);
    }
    assert_eq!(list_tags(&reg, "lib/app"), sorted_tags());
}

fn tags_paginated(driver: Driver) {
    let reg = Registry::start(driver);
    let manifest = prepare(&reg, "lib/app", Kind::DockerManifest);
    for tag in TAGS {
        push_manifest(&reg, "lib/app", tag, &manifest);
    }
    let expected = sorted_tags();

    for n in [1usize, 5, 12, 50] {
        let first = format!("/v2/lib/app/tags/list?n={n}");
        let resp = send(reg.get(&first));
        resp.assert_status(200);
        let page = resp.json()["tags"].as_array().unwrap().len();
        assert_eq!(page, n.min(expected.len()), "n={n}: {}", resp.describe());
        if n < expected.len() {
            let link = next_link(&resp)
                .unwrap_or_else(|| panic!("n={n}: a Link to the next page: {}", resp.describe()));
            assert!(link.contains("last="), "{link}");
            assert!(link.contains(&format!("n={n}")), "{link}");
        }
        assert_eq!(collect_pages(&reg, &first, "tags"), expected, "n={n}");
    }

    // `last` starts after the given tag.
    let resp = send(reg.get("/v2/lib/app/tags/list?n=3&last=beta"));
    resp.assert_status(200);
    let after_beta: Vec<String> = expected
        .iter()
        .filter(|t| t.as_str() > "beta")
        .take(3)
        .cloned()
        .collect();
    let page: Vec<String> = resp.json()["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(page, after_beta);

    // The last page has no next link.
    let last = expected.last().unwrap();
    let resp = send(reg.get(&format!("/v2/lib/app/tags/list?n=5&last={last}")));
    resp.assert_status(200);
    assert_eq!(next_link(&resp), None, "{}", resp.describe());
}

fn tags_unknown_repository(driver: Driver) {
    let reg = Registry::start(driver);
    push_image(&reg, "known/app", "v1", Kind::OciManifest);
    let resp = send(reg.get("/v2/unknown/app/tags/list"));
    assert_error(&resp, 404, "NAME_UNKNOWN");
}

const REPOS: [&str; 7] = [
    "zeta",
    "a/b/c",
    "alpha",
    "a/b",
    "library/ubuntu",
    "x1/y-2/z_3/w.4",
    "a/bc",
];

fn push_repos(reg: &Registry) -> Vec<String> {
    for repo in REPOS {
        push_image(reg, repo, "latest", Kind::DockerManifest);
    }
    let mut repos: Vec<String> = REPOS.iter().map(|r| r.to_string()).collect();
    repos.sort();
    repos
}

fn catalog(driver: Driver) {
    let reg = Registry::start(driver);
    let expected = push_repos(&reg);
    let resp = send(reg.get("/v2/_catalog"));
    resp.assert_status(200);
    let listed: Vec<String> = resp.json()["repositories"]
        .as_array()
        .unwrap_or_else(|| panic!("repositories list: {}", resp.describe()))
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed, expected);
}

fn catalog_paginated(driver: Driver) {
    let reg = Registry::start(driver);
    let expected = push_repos(&reg);
    for n in [1usize, 2, 3, 7, 10] {
        let first = format!("/v2/_catalog?n={n}");
        let resp = send(reg.get(&first));
        resp.assert_status(200);
        let page = resp.json()["repositories"].as_array().unwrap().len();
        assert_eq!(page, n.min(expected.len()), "n={n}: {}", resp.describe());
        if n < expected.len() {
            let link = next_link(&resp)
                .unwrap_or_else(|| panic!("n={n}: a Link to the next page: {}", resp.describe()));
            assert!(location_path(&link).starts_with("/v2/_catalog?"), "{link}");
        }
        assert_eq!(
            collect_pages(&reg, &first, "repositories"),
            expected,
            "n={n}"
        );
    }
}

fn catalog_max_entries(driver: Driver) {
    let reg = Registry::builder(driver)
        .section("catalog:\n  maxentries: 5\n")
        .start();
    let expected = push_repos(&reg);
    // Above the limit, `n` is clamped (distribution 2.8 answers 400 there; clients send
    // n=10000 and expect pages): five per page, a Link to the rest.
    for n in ["6", "10000", "18446744073709551616", &"9".repeat(300)] {
        let first = format!("/v2/_catalog?n={n}");
        let resp = send(reg.get(&first));
        resp.assert_status(200);
        assert_eq!(
            resp.json()["repositories"].as_array().unwrap().len(),
            5,
            "n={n}: {}",
            resp.describe()
        );
        let link = next_link(&resp).expect("a Link to the next page");
        assert!(link.contains("n=5"), "{link}");
        assert_eq!(collect_pages(&reg, &first, "repositories"), expected);
    }
    let resp = send(reg.get("/v2/_catalog?n=5"));
    resp.assert_status(200);
    assert_eq!(resp.json()["repositories"].as_array().unwrap().len(), 5);
    let resp = send(reg.get("/v2/_catalog"));
    assert_eq!(resp.json()["repositories"].as_array().unwrap().len(), 5);
}

/// `n` that is no number at all is refused; huge ones are clamped to `tags.maxtags`.
fn page_sizes(driver: Driver) {
    let reg = Registry::builder(driver)
        .section("tags:\n  maxtags: 4\n")
        .start();
    let manifest = prepare(&reg, "lib/app", Kind::OciManifest);
    for tag in TAGS {
        push_manifest(&reg, "lib/app", tag, &manifest);
    }
    let expected = sorted_tags();
    for n in ["5", "10000", &"9".repeat(300)] {
        let first = format!("/v2/lib/app/tags/list?n={n}");
        let resp = send(reg.get(&first));
        resp.assert_status(200);
        assert_eq!(
            resp.json()["tags"].as_array().unwrap().len(),
            4,
            "n={n}: {}",
            resp.describe()
        );
        assert!(next_link(&resp).expect("Link").contains("n=4"));
        assert_eq!(collect_pages(&reg, &first, "tags"), expected);
    }
    for path in ["/v2/lib/app/tags/list", "/v2/_catalog"] {
        for n in ["-1", "abc", "1e3", "0x10"] {
            let resp = send(reg.get(&format!("{path}?n={n}")));
            assert_error(&resp, 400, "PAGINATION_NUMBER_INVALID");
        }
    }
    // n=0: an empty list and no Link (OCI).
    let resp = send(reg.get("/v2/lib/app/tags/list?n=0"));
    resp.assert_status(200);
    assert_eq!(resp.json()["tags"], serde_json::json!([]));
    assert_eq!(next_link(&resp), None);
    // `last` alone: everything after it, in ASCII order (uppercase before lowercase).
    let resp = send(reg.get("/v2/lib/app/tags/list?last=Zulu"));
    let after: Vec<String> = expected
        .iter()
        .filter(|t| t.as_str() > "Zulu")
        .cloned()
        .collect();
    assert_eq!(
        resp.json()["tags"],
        serde_json::json!(after),
        "{}",
        resp.describe()
    );
}

for_each_driver!(
    tags_sorted,
    tags_paginated,
    tags_unknown_repository,
    catalog,
    catalog_paginated,
    catalog_max_entries,
    page_sizes,
);
