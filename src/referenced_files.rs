//! The files a configuration names (TLS certificate and key, htpasswd, the token bundle and
//! JWKS, the issuer's key and certificate), opened and parsed as `serve` opens them, so that
//! `config check` finds what would stop the node before it is started or reloaded.

use std::io;
use std::path::Path;

use crate::config::{AuthConfig, Config};
use crate::{auth, http, StartError};

/// Opens and parses every file `config` names, as `serve` would, creating none; the first
/// that fails is the error (naming its key and file). Returns warnings: a missing htpasswd
/// file is one (`serve` creates it), not an error.
pub fn check(config: &Config) -> Result<Vec<String>, StartError> {
    let mut warnings = Vec::new();
    let tls = config
        .http
        .tls
        .as_ref()
        .filter(|t| t.certificate.is_some() || t.letsencrypt.is_some());
    if let Some(tls) = tls {
        http::tls::acceptor(tls, !config.http.http2.disabled)?;
    }
    // `tokenissuer.dockerauthconfig` was read with the configuration; its users and ACLs are
    // checked here with the issuer's key and certificate.
    let issuer = config
        .tokenissuer
        .as_ref()
        .map(auth::issuer::TokenIssuer::new)
        .transpose()?;
    match &config.auth {
        Some(AuthConfig::Htpasswd { path, .. }) => warnings.extend(htpasswd(path)?),
        Some(AuthConfig::Token { .. }) => {
            let own = issuer
                .as_ref()
                .map(|i| i.certificates()[..1].to_vec())
                .unwrap_or_default();
            crate::authenticator(config, &own, tls.is_some())?;
        }
        _ => {}
    }
    Ok(warnings)
}

/// `serve` creates a missing file (which fails when its folder does not exist) and reads the
/// file at each login: one it cannot read refuses every user, so it is an error here. A folder
/// is what registry:2 (and `serve`) start with, refusing every login: a warning.
fn htpasswd(path: &Path) -> Result<Option<String>, StartError> {
    let named = |kind: io::ErrorKind, why: String| {
        StartError::Htpasswd(io::Error::new(kind, format!("{}: {why}", path.display())))
    };
    match std::fs::metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let folder = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            if !folder.is_dir() {
                return Err(named(
                    e.kind(),
                    format!(
                        "does not exist and cannot be created: {} is not a folder",
                        folder.display()
                    ),
                ));
            }
            Ok(Some(format!(
                "auth.htpasswd.path: {} does not exist; serve creates it with user docker and a random password",
                path.display()
            )))
        }
        Err(e) => Err(named(e.kind(), e.to_string())),
        Ok(m) if m.is_dir() => Ok(Some(format!(
            "auth.htpasswd.path: {} is a folder: every login will be refused",
            path.display()
        ))),
        Ok(_) => {
            let text = std::fs::read_to_string(path).map_err(|e| named(e.kind(), e.to_string()))?;
            let users = auth::htpasswd::parse_file(&text);
            Ok(users.is_empty().then(|| {
                format!(
                    "auth.htpasswd.path: {} has no users: every login will be refused",
                    path.display()
                )
            }))
        }
    }
}
