//! The token issuer's users and ACL as one value that can be swapped whole, and the watcher
//! that reloads them from a docker_auth configuration file when it changes (a file that does
//! not load leaves the previous policy in force and says why in the log).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use sha2::Digest as _;

use super::acl::{Acl, AclError};
use crate::config::{read_docker_auth, AclRule, IssuerUser};

/// How often the docker_auth file is looked at.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(1);
/// Remembered successful password checks before the memory is cleared.
const MAX_VERIFIED: usize = 10_000;

/// Why users and rules could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// A password that is not a bcrypt hash.
    #[error("users.{0}: the password must be a bcrypt hash (htpasswd -B)")]
    NotBcrypt(String),
    /// A rule with a bad pattern or address.
    #[error("acl: {0}")]
    Acl(#[from] AclError),
    /// The file could not be read or parsed.
    #[error("{0}")]
    File(String),
}

/// One user of docker_auth's `users`.
#[derive(Debug, Clone)]
pub struct User {
    /// bcrypt hash; without one any password is accepted (docker_auth's rule).
    pub password: Option<String>,
    /// Labels for the ACL.
    pub labels: BTreeMap<String, Vec<String>>,
}

/// Users and ACL in force.
#[derive(Debug)]
pub struct Policy {
    users: HashMap<String, User>,
    /// The rules.
    pub acl: Acl,
    /// (user, SHA-256 of a password) pairs bcrypt already accepted under this policy.
    verified: Mutex<HashSet<(String, [u8; 32])>>,
}

impl Policy {
    /// Checks users (bcrypt hashes) and rules (patterns, addresses). A user written as null is
    /// no user, as in docker_auth.
    pub fn new(
        users: &BTreeMap<String, Option<IssuerUser>>,
        acl: &[AclRule],
    ) -> Result<Self, PolicyError> {
        let mut checked = HashMap::new();
        for (name, user) in users {
            let Some(user) = user else { continue };
            if user.password.as_ref().is_some_and(|p| !p.starts_with("$2")) {
                return Err(PolicyError::NotBcrypt(name.clone()));
            }
            checked.insert(
                name.clone(),
                User {
                    password: user.password.clone(),
                    labels: user.labels.clone(),
                },
            );
        }
        Ok(Self {
            users: checked,
            acl: Acl::new(acl)?,
            verified: Mutex::new(HashSet::new()),
        })
    }

    /// The user called `name`.
    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.get(name)
    }

    /// A bcrypt cost found among the hashes, for equal-cost checks of unknown users.
    pub fn cost(&self) -> Option<u32> {
        self.users
            .values()
            .filter_map(|u| u.password.as_deref()?.split('$').nth(2)?.parse().ok())
            .find(|c| (4..=31).contains(c))
    }

    /// True when bcrypt accepted `password` for `user` before, under this policy.
    pub fn was_verified(&self, user: &str, password: &str) -> bool {
        self.lock_verified()
            .contains(&(user.to_string(), sha2::Sha256::digest(password).into()))
    }

    /// Remembers that bcrypt accepted `password` for `user`.
    pub fn remember_verified(&self, user: &str, password: &str) {
        let mut v = self.lock_verified();
        if v.len() >= MAX_VERIFIED {
            v.clear();
        }
        v.insert((user.to_string(), sha2::Sha256::digest(password).into()));
    }

    fn lock_verified(&self) -> std::sync::MutexGuard<'_, HashSet<(String, [u8; 32])>> {
        self.verified.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The policy in force, replaced whole on reload; readers keep the one they took.
#[derive(Debug, Clone)]
pub struct PolicyCell(Arc<RwLock<Arc<Policy>>>);

impl PolicyCell {
    /// A cell holding `policy`.
    pub fn new(policy: Policy) -> Self {
        Self(Arc::new(RwLock::new(Arc::new(policy))))
    }

    /// The policy in force now.
    pub fn current(&self) -> Arc<Policy> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn replace(&self, policy: Policy) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(policy);
    }
}

/// Reads a docker_auth file into a policy.
pub fn load_file(path: &std::path::Path) -> Result<Policy, PolicyError> {
    let file = read_docker_auth(path).map_err(|e| PolicyError::File(e.to_string()))?;
    Policy::new(&file.users, &file.acl)
}

/// Watches `path` every [`RELOAD_INTERVAL`] and puts each version that loads into `cell`. The
/// content is compared, not only the modification time, so quick successive edits are seen.
pub fn watch(path: PathBuf, cell: PolicyCell) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut seen = std::fs::read(&path).ok().map(sha2::Sha256::digest);
        let mut ticker = tokio::time::interval(RELOAD_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let read = {
                let path = path.clone();
                tokio::task::spawn_blocking(move || std::fs::read(&path)).await
            };
            let digest = match read {
                Ok(Ok(bytes)) => Some(sha2::Sha256::digest(bytes)),
                _ => None,
            };
            if digest == seen {
                continue;
            }
            seen = digest;
            let loaded = {
                let path = path.clone();
                tokio::task::spawn_blocking(move || load_file(&path)).await
            };
            match loaded {
                Ok(Ok(policy)) => {
                    tracing::info!(
                        file = %path.display(),
                        rules = policy.acl.len(),
                        users = policy.users.len(),
                        "docker_auth configuration reloaded"
                    );
                    cell.replace(policy);
                }
                Ok(Err(e)) => tracing::warn!(
                    file = %path.display(),
                    error = %e,
                    "docker_auth configuration not reloaded; the previous users and acl stay in force"
                ),
                Err(e) => tracing::error!(error = %e, "docker_auth reload task failed"),
            }
        }
    })
}
