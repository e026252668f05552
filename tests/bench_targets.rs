//! The benchmark report's target rules (`benches/loadgen/targets.rs`): which goals apply to
//! which compare.sh case, what each compares, and where the bounds lie. Pure functions; no
//! server is started.

#[path = "../benches/loadgen/targets.rs"]
#[allow(dead_code)]
mod targets;

use targets::{cpu_per_gb, goals, listings, storm_judged, value, Figures, Goal, Measure};

fn only(case: &str, workload: &str) -> Goal {
    let g = goals(case, workload);
    assert_eq!(g.len(), 1, "{case}: {g:?}");
    g[0]
}

#[test]
fn small_pushes_aim_at_ten_times_distribution() {
    let g = only("small-push-32", "small-push");
    assert_eq!(g.measure, Measure::VsDistribution);
    let figures = |w, d| Figures {
        wharf: Some(w),
        distribution: Some(d),
        ..Figures::default()
    };
    assert!(g.met(value(&g, &figures(1000.0, 100.0)).unwrap()));
    assert!(!g.met(value(&g, &figures(999.0, 100.0)).unwrap()));
    // The older 5x no longer passes.
    assert!(!g.met(value(&g, &figures(500.0, 100.0)).unwrap()));
}

#[test]
fn small_requests_aim_at_forty_percent_of_the_null_server() {
    for case in ["manifest-get-64", "blob-head-64"] {
        let workload = case.trim_end_matches("-64");
        let g = only(case, workload);
        assert_eq!(g.measure, Measure::VsNullServer, "{case}");
        let f = |w| Figures {
            wharf: Some(w),
            distribution: Some(1.0),
            null_server: Some(100_000.0),
            ..Figures::default()
        };
        assert!(g.met(value(&g, &f(40_000.0)).unwrap()));
        assert!(!g.met(value(&g, &f(39_000.0)).unwrap()));
        assert_eq!(g.describe("req/s"), "≥ 40 % of null server");
    }
    // No null server measured: no value, hence not judged.
    let g = only("blob-head-64", "blob-head");
    let f = Figures {
        wharf: Some(1.0),
        ..Figures::default()
    };
    assert_eq!(value(&g, &f), None);
}

#[test]
fn pulls_aim_at_the_ceiling_and_at_cpu_per_gigabyte() {
    for case in ["pull-1", "pull-16"] {
        let g = goals(case, "pull");
        assert_eq!(g.len(), 2, "{case}");
        let ceiling = g[0];
        let cpu = g[1];
        assert_eq!(ceiling.measure, Measure::VsNullServer);
        assert_eq!(cpu.measure, Measure::CpuPerGb);
        let f = Figures {
            wharf: Some(850.0),
            null_server: Some(1000.0),
            cpu_per_gb: cpu_per_gb(0.2, 2e9),
            ..Figures::default()
        };
        assert!(ceiling.met(value(&ceiling, &f).unwrap()));
        assert_eq!(value(&cpu, &f), Some(0.1));
        assert!(cpu.met(0.1));
        assert!(!cpu.met(0.11));
    }
    assert_eq!(cpu_per_gb(1.0, 0.0), None);
}

#[test]
fn slow_uploads_aim_at_an_absolute_64_kib() {
    for case in ["slow-uploads-200", "slow-patches-200"] {
        let g = only(case, "slow-uploads");
        assert_eq!(g.measure, Measure::Absolute);
        let f = |kib| Figures {
            wharf: Some(kib),
            // Whatever distribution does: the goal is absolute.
            distribution: Some(10_000.0),
            ..Figures::default()
        };
        assert!(g.met(value(&g, &f(64.0)).unwrap()));
        assert!(!g.met(value(&g, &f(65.0)).unwrap()));
        assert_eq!(
            g.describe("KiB per open upload"),
            "≤ 64 KiB per open upload"
        );
    }
}

#[test]
fn tls_aims_at_plain_and_pushes_and_pulls_at_three_times_distribution() {
    for (case, workload) in [
        ("push-mono-1-tls", "push-mono"),
        ("push-mono-16-tls", "push-mono"),
        ("pull-1-tls", "pull"),
        ("pull-16-tls", "pull"),
    ] {
        let g = goals(case, workload);
        assert_eq!(g.len(), 2, "{case}");
        assert_eq!(g[0].measure, Measure::VsPlain);
        assert_eq!(g[1].measure, Measure::VsDistribution);
        let f = Figures {
            wharf: Some(86.0),
            plain: Some(100.0),
            distribution: Some(30.0),
            ..Figures::default()
        };
        assert!(g[0].met(value(&g[0], &f).unwrap()));
        let slower = Figures {
            wharf: Some(84.0),
            ..f
        };
        assert!(!g[0].met(value(&g[0], &slower).unwrap()));
        assert!(!g[1].met(value(&g[1], &slower).unwrap()));
    }
    // Small requests over TLS: only against plain.
    let g = only("blob-head-64-tls", "blob-head");
    assert_eq!(g.measure, Measure::VsPlain);
    // Handshakes have no goal.
    assert!(goals("handshake-1core-tls", "handshake").is_empty());
    assert!(goals("handshake-resume-1core-tls", "handshake").is_empty());
    assert!(goals("handshake-1core", "handshake").is_empty());
}

#[test]
fn redis_heads_aim_at_no_cache() {
    let g = only("blob-head-64-redis", "blob-head");
    assert_eq!(g.measure, Measure::VsCase("blob-head-64-nocache"));
    let f = |redis, nocache| Figures {
        wharf: Some(redis),
        other: Some(nocache),
        ..Figures::default()
    };
    assert!(g.met(value(&g, &f(10_000.0, 10_000.0)).unwrap()));
    assert!(!g.met(value(&g, &f(9_000.0, 10_000.0)).unwrap()));
    assert_eq!(g.describe("req/s"), "≥ blob-head-64-nocache");
}

#[test]
fn cases_without_a_newer_goal_keep_the_older_ratios() {
    for (case, workload, ratio) in [
        ("push-mono-1", "push-mono", 3.0),
        ("push-chunked-4", "push-chunked", 3.0),
        ("catalog-4", "catalog", 5.0),
        ("tags-4", "tags", 5.0),
        ("blob-head-64-nocache", "blob-head", 5.0),
    ] {
        let g = only(case, workload);
        assert_eq!(g.measure, Measure::VsDistribution, "{case}");
        assert_eq!(g.bound, ratio, "{case}");
        assert!(g.floor, "{case}");
    }
    assert!(goals("range-8", "range").is_empty());
}

#[test]
fn s3_push_listings_and_storm_size() {
    let ops = [
        ("ListParts", 4.0),
        ("ListObjectsV2", 1.0),
        ("ListMultipartUploads", 2.0),
        ("PutObject / CopyObject", 9.0),
        ("HeadObject", 3.0),
    ];
    // One upload's parts are not a listing of the bucket.
    assert_eq!(listings(ops), 3.0);
    let none = listings([("GetObject", 2.0), ("ListParts", 8.0)]);
    assert_eq!(none, 0.0);
    assert!(none.is_sign_positive(), "shown as 0, not -0");
    let no_listing = Goal {
        measure: Measure::Absolute,
        bound: targets::S3_PUSH_LISTINGS,
        floor: false,
    };
    assert!(no_listing.met(0.0));
    assert!(!no_listing.met(1.0));
    assert_eq!(no_listing.describe("listings"), "no listings");
    assert!(storm_judged(32, 100));
    assert!(!storm_judged(4, 100));
    assert!(!storm_judged(32, 8));
}

#[test]
fn values_show_in_the_goals_terms() {
    let g = only("blob-head-64", "blob-head");
    assert_eq!(g.show(0.384), "38 %");
    let g = only("small-push-32", "small-push");
    assert_eq!(g.show(3.714), "3.71×");
    assert_eq!(g.describe("blobs/s"), "≥ 10× distribution");
}
