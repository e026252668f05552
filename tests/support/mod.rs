//! The harness of Wharf's integration tests (and of the benchmarks that drive real servers).
//!
//! A test reads like a user's session: start a registry (`Registry::builder(driver).start()`) or
//! a cluster (`Cluster::start(..)`), push blobs and manifests over HTTP or with skopeo, break
//! something, read everything back, and compare. Every process the harness starts is stopped by
//! its PID when its guard is dropped; every wait is bounded in time and in count; nothing binds
//! anything but 127.0.0.1.
//!
//! One module per subsystem, each importing only those above it in this list:
//!
//! - `wait`: bounded polling.
//! - `process`: child processes killed on drop, the server binaries, bounded commands, ports.
//! - `fixtures`: digests, a seeded PRNG, blobs, cut points.
//! - `manifest`: media types, manifest builders, the five kinds of manifest.
//! - `metrics`: the Prometheus text format, parsed.
//! - `client`: the one HTTP client (`Endpoint`, `Resp`, `send`/`try_send`), error-JSON assertions.
//! - `raw`: raw HTTP/1.1 over TCP, for what a library would normalize.
//! - `session`: uploads, manifests and tags as a client does them.
//! - `s3`: moto's S3 server (one per test process) and buckets.
//! - `shell_group`: server programs under one shell, stopped by PID, checked by their sockets.
//! - `emulator`: a storage emulator process (moto, Azurite, fake-gcs-server), stopped by PID.
//! - `azure`: Azurite's blob server (one per test process) and containers.
//! - `gcs`: fake-gcs-server (one per test process), buckets and a service-account key.
//! - `swift`: a single-node OpenStack Swift (one per test process) and containers.
//! - `keystone`: OpenStack Keystone and a Keystone-authenticated Swift proxy (one per test
//!   process, over `swift`'s servers).
//! - `registry`: a registry process (wharf or distribution 2.8.2): config, readiness, logs,
//!   debug server, signals, restart; also a node of a cluster.
//! - `mixed_fleet`: a registry:2 node and a Wharf node over one store; uploads crossing them.
//! - `storage`: checks on what a registry left in a folder or a bucket.
//! - `object_store`: a bucket or container of any of the emulators, for suites run on each.
//! - `layout`: OCI image layouts for skopeo.
//! - `skopeo`: skopeo copies and inspections.
//! - `redis`: `redis-server` and a RESP client.
//! - `chaos`: a TCP proxy that delays, hangs or cuts (in front of Redis or S3).
//! - `haproxy`: haproxy with the repository's configs.
//! - `cluster`: three nodes, Redis and haproxy.
//! - `load`: continuous push/pull load and latency figures.
//! - `auth`: keys, certificates, JWTs and a token server.
//! - `browser`: headless Chromium over WebDriver (chromedriver), screenshots.
//!
//! `use support::*;` brings everything but `auth`, `browser`, `azure` (but `AzureTarget`), `gcs` (but `GcsTarget`), `metrics`,
//! `mixed_fleet`, `swift`, `keystone` and `s3` (but `S3Target`), which are named by path. The suite targets the `wharf` binary. As a development aid,
//! `WHARF_TEST_SERVER=/usr/bin/docker-registry` points the same tests at CNCF distribution 2.8.2
//! (both take `serve <config.yml>`).

#![allow(dead_code)]

pub mod auth;
pub mod azure;
pub mod browser;
pub mod chaos;
pub mod client;
pub mod cluster;
pub mod emulator;
pub mod entra;
pub mod fixtures;
pub mod gcs;
pub mod haproxy;
pub mod keystone;
pub mod layout;
pub mod load;
pub mod manifest;
pub mod metrics;
pub mod mixed_fleet;
pub mod object_store;
pub mod process;
pub mod raw;
pub mod receiver;
pub mod redis;
pub mod registry;
pub mod s3;
pub mod session;
pub mod shell_group;
pub mod skopeo;
pub mod storage;
pub mod swift;
pub mod wait;

// Each test binary uses a part of this prelude.
#[allow(unused_imports)]
pub use self::{
    azure::AzureTarget, chaos::*, client::*, cluster::*, fixtures::*, gcs::GcsTarget, haproxy::*,
    layout::*, load::*, manifest::*, object_store::StoreTarget, process::*, raw::*, redis::*,
    registry::*, s3::S3Target, session::*, skopeo::*, storage::*, wait::*,
};

/// `for_each_driver!(a, b)` turns `fn a(driver: Driver)` into the tests `a::filesystem`,
/// `a::inmemory`, `a::s3` and `a::azure`; `for_each_driver!(local: a, b)` into the first two only.
#[macro_export]
macro_rules! for_each_driver {
    (local: $($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn filesystem() {
                    super::$name($crate::support::Driver::Filesystem)
                }
                #[test]
                fn inmemory() {
                    super::$name($crate::support::Driver::Inmemory)
                }
            }
        )*
    };
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn filesystem() {
                    super::$name($crate::support::Driver::Filesystem)
                }
                #[test]
                fn inmemory() {
                    super::$name($crate::support::Driver::Inmemory)
                }
                #[test]
                fn s3() {
                    super::$name($crate::support::Driver::S3)
                }
                #[test]
                fn azure() {
                    super::$name($crate::support::Driver::Azure)
                }
            }
        )*
    };
}

/// `for_kinds_and_drivers!([OciManifest, OciIndex] a, b)` turns `fn a(driver: Driver, kind: Kind)`
/// into the tests `a::OciManifest::filesystem`, `a::OciManifest::inmemory`, `a::OciManifest::s3`,
/// `a::OciIndex::…`.
#[macro_export]
macro_rules! for_kinds_and_drivers {
    ($kinds:tt $($name:ident),* $(,)?) => {
        $( $crate::for_kinds_and_drivers!(@name $name $kinds); )*
    };
    (@name $name:ident [$($kind:ident),* $(,)?]) => {
        mod $name {
            $( $crate::for_kinds_and_drivers!(@one $name $kind); )*
        }
    };
    (@one $name:ident $kind:ident) => {
        #[allow(non_snake_case)]
        mod $kind {
            #[test]
            fn filesystem() {
                super::super::$name(
                    $crate::support::Driver::Filesystem,
                    $crate::support::Kind::$kind,
                )
            }
            #[test]
            fn inmemory() {
                super::super::$name(
                    $crate::support::Driver::Inmemory,
                    $crate::support::Kind::$kind,
                )
            }
            #[test]
            fn s3() {
                super::super::$name(
                    $crate::support::Driver::S3,
                    $crate::support::Kind::$kind,
                )
            }
            #[test]
            fn azure() {
                super::super::$name(
                    $crate::support::Driver::Azure,
                    $crate::support::Kind::$kind,
                )
            }
        }
    };
}
