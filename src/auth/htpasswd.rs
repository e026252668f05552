//! `auth.htpasswd`: bcrypt entries as written by `htpasswd -Bbn`.
//!
//! The file is re-read when its modification time changes. bcrypt costs tens
//! of milliseconds per check, so successful checks are remembered (keyed by a
//! SHA-256 of the password) until the file changes.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use sha2::Digest as _;

#[derive(Default)]
struct Snapshot {
    modified: Option<SystemTime>,
    users: Arc<HashMap<String, String>>,
    /// Unknown users are checked against this hash (same cost as the file's
    /// entries) so they take as long as known ones.
    dummy: Arc<String>,
    verified: HashSet<(String, [u8; 32])>,
}

/// The bcrypt cost of the first entry (`$2y$05$...`), default 10.
fn file_cost(users: &HashMap<String, String>) -> u32 {
    users
        .values()
        .find_map(|h| h.split('$').nth(2)?.parse().ok())
        .filter(|c| (4..=31).contains(c))
        .unwrap_or(bcrypt::DEFAULT_COST)
}

/// An htpasswd file and its realm.
pub struct Htpasswd {
    realm: String,
    path: PathBuf,
    state: Mutex<Snapshot>,
}

/// Splits `Basic base64(user:password)`.
pub fn parse_basic(header: &str) -> Option<(String, String)> {
    match super::credentials::parse_authorization(header)? {
        super::credentials::Credentials::Basic { user, password } => Some((user, password)),
        super::credentials::Credentials::Bearer(_) => None,
    }
}

/// Parses `user:hash` lines; blank lines and `#` comments are skipped.
pub fn parse_file(text: &str) -> HashMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .map(|(u, h)| (u.to_string(), h.to_string()))
        .collect()
}

impl Htpasswd {
    /// Opens `path`; a missing file is created with user `docker` and a random
    /// password that is logged once, as distribution does.
    pub fn open(realm: &str, path: &Path) -> std::io::Result<Self> {
        match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => {
                tracing::error!(path = %path.display(), "auth.htpasswd.path is a directory: no credentials can be verified");
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => create_default(path)?,
            Err(e) => return Err(e),
        }
        Ok(Self {
            realm: realm.to_string(),
            path: path.to_path_buf(),
            state: Mutex::new(Snapshot::default()),
        })
    }

    /// The challenge realm.
    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// Current users and the dummy hash, re-reading the file if it changed.
    fn users(&self) -> (Arc<HashMap<String, String>>, Arc<String>) {
        let modified = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.modified != modified || modified.is_none() {
            let users = std::fs::read_to_string(&self.path)
                .map(|t| parse_file(&t))
                .unwrap_or_default();
            let dummy = bcrypt::hash("wharf-dummy", file_cost(&users)).unwrap_or_default();
            *state = Snapshot {
                modified,
                users: Arc::new(users),
                dummy: Arc::new(dummy),
                verified: HashSet::new(),
            };
        }
        (state.users.clone(), state.dummy.clone())
    }

    /// True when `password` matches `user`'s bcrypt entry.
    pub async fn verify(&self, user: &str, password: &str) -> bool {
        let (users, dummy) = self.users();
        let key = (
            user.to_string(),
            sha2::Sha256::digest(password.as_bytes()).into(),
        );
        if self
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .verified
            .contains(&key)
        {
            return true;
        }
        let (hash, known) = match users.get(user) {
            Some(h) if h.starts_with("$2") => (h.clone(), true),
            _ => (dummy.to_string(), false),
        };
        let password = password.to_string();
        let ok =
            tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
                .await
                .unwrap_or(false);
        if ok && known {
            self.state
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .verified
                .insert(key);
        }
        ok && known
    }
}

fn create_default(path: &Path) -> std::io::Result<()> {
    use rand::Rng;
    let password: String = rand::thread_rng()
        .sample_iter(&rand::distributions::Alphanumeric)
        .take(32)
        .map(char::from)
        .collect();
    let hash = bcrypt::hash(&password, bcrypt::DEFAULT_COST).map_err(std::io::Error::other)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    std::io::Write::write_all(&mut opts.open(path)?, format!("docker:{hash}\n").as_bytes())?;
    tracing::warn!(path = %path.display(), user = "docker", password = %password, "htpasswd file not found: created one with a random password");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_basic_credentials() {
        assert_eq!(
            parse_basic("Basic dXNlcjpwYTpzcw=="),
            Some(("user".into(), "pa:ss".into()))
        );
        assert_eq!(parse_basic("Bearer x"), None);
        assert_eq!(parse_basic("Basic !!!"), None);
    }

    #[tokio::test]
    async fn verifies_bcrypt_and_rejects_others() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("htpasswd");
        let hash = bcrypt::hash("secret", 4).unwrap();
        std::fs::write(
            &path,
            format!("alice:{hash}\nbob:{{SHA}}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n"),
        )
        .unwrap();
        let h = Htpasswd::open("r", &path).unwrap();
        assert!(h.verify("alice", "secret").await);
        assert!(h.verify("alice", "secret").await);
        assert!(!h.verify("alice", "wrong").await);
        assert!(!h.verify("bob", "password").await);
        assert!(!h.verify("carol", "secret").await);
    }

    #[tokio::test]
    async fn creates_a_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/htpasswd");
        Htpasswd::open("r", &path).unwrap();
        let users = parse_file(&std::fs::read_to_string(&path).unwrap());
        assert!(users["docker"].starts_with("$2"));
    }
}
