//! One object store of any kind (S3 on moto, Azure Blob on Azurite, GCS on fake-gcs-server,
//! Swift on a single-node Swift)
//! as tests see it: a fresh bucket or container, registries configured on it, what may be
//! left in it afterwards, and what a redirect to it looks like. Lets one suite run on each.

use super::azure::AzureTarget;
use super::gcs::GcsTarget;
use super::registry::{Driver, RegistryBuilder};
use super::s3::{self, S3Target};
use super::storage::{bucket_blob_problems, container_problems, gcs_problems, swift_problems};
use super::swift::SwiftTarget;

/// A bucket or container on one of the shared emulators.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreTarget {
    S3(S3Target),
    Azure(AzureTarget),
    Gcs(GcsTarget),
    Swift(SwiftTarget),
}

impl StoreTarget {
    /// A fresh bucket or container for `driver` (`S3`, `Azure`, `Gcs` or `Swift`).
    pub fn fresh(driver: Driver) -> StoreTarget {
        match driver {
            Driver::S3 => StoreTarget::S3(S3Target::fresh()),
            Driver::Azure => StoreTarget::Azure(AzureTarget::fresh()),
            Driver::Gcs => StoreTarget::Gcs(GcsTarget::fresh()),
            Driver::Swift => StoreTarget::Swift(SwiftTarget::fresh()),
            other => panic!("{other:?} is not an object store"),
        }
    }

    /// The registry driver that stores here.
    pub fn driver(&self) -> Driver {
        match self {
            StoreTarget::S3(_) => Driver::S3,
            StoreTarget::Azure(_) => Driver::Azure,
            StoreTarget::Gcs(_) => Driver::Gcs,
            StoreTarget::Swift(_) => Driver::Swift,
        }
    }

    /// A registry builder storing here.
    pub fn builder(&self) -> RegistryBuilder {
        let builder = super::registry::Registry::builder(self.driver());
        match self {
            StoreTarget::S3(t) => builder.s3_target(t),
            StoreTarget::Azure(t) => builder.azure_target(t),
            StoreTarget::Gcs(t) => builder.gcs_target(t),
            StoreTarget::Swift(t) => builder.swift_target(t),
        }
    }

    /// Blobs whose bytes do not hash to their name, upload data, and whatever the backend's
    /// writers may leave behind (S3's open multipart uploads, GCS's parts and claims): for
    /// runs where every upload finishes.
    pub fn problems(&self) -> Vec<String> {
        match self {
            StoreTarget::S3(target) => {
                let server = s3::shared();
                let mut problems = bucket_blob_problems(target);
                for key in server.keys(&target.bucket, "docker/registry/v2/repositories/") {
                    if key.contains("/_uploads/") {
                        problems.push(format!("upload object left: {key}"));
                    }
                }
                for key in server.open_uploads(&target.bucket) {
                    problems.push(format!("multipart upload left open: {key}"));
                }
                problems
            }
            StoreTarget::Azure(target) => container_problems(target),
            StoreTarget::Gcs(target) => gcs_problems(target),
            StoreTarget::Swift(target) => swift_problems(target),
        }
    }

    /// Whether `location` is a signed URL reading from this bucket or container.
    pub fn is_signed_url(&self, location: &str) -> bool {
        match self {
            StoreTarget::S3(t) => {
                location.starts_with(&t.endpoint) && location.contains("X-Amz-Signature=")
            }
            StoreTarget::Azure(t) => {
                location.starts_with(&t.service_url) && location.contains("&sig=")
            }
            StoreTarget::Gcs(t) => {
                location.starts_with(&format!("http://{}/{}/", t.host, t.bucket))
                    && location.contains("&X-Goog-Signature=")
            }
            StoreTarget::Swift(t) => {
                let origin = t.auth_url.split("/auth/").next().unwrap_or_default();
                location.starts_with(origin) && location.contains("temp_url_sig=")
            }
        }
    }
}
