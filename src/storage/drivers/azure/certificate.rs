//! Client certificates for Entra ID's client-credentials grant, as azidentity's
//! `ClientCertificateCredential` uses them (`default_credentials` with
//! `AZURE_CLIENT_CERTIFICATE_PATH`): the file is read as azidentity reads it (PEM with the
//! certificate and an unencrypted RSA key; otherwise PKCS#12, with
//! `AZURE_CLIENT_CERTIFICATE_PASSWORD`), and each token request carries a JWT signed with the
//! key in place of a secret (RFC 7523), shaped as MSAL shapes it.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256, RSA_PSS_SHA256};
use rustls::pki_types::pem::{PemObject, SectionKind};

/// How long an assertion is valid (MSAL's 10 minutes).
const ASSERTION_LIFETIME_SECS: u64 = 10 * 60;
/// Certificate files larger than this are not certificate files.
const MAX_FILE: u64 = 1024 * 1024;

/// An application's certificate with its private key.
pub(super) struct ClientCertificate {
    key: RsaKeyPair,
    /// DER certificates for the `x5c` header: the key's own first, then the file's others in
    /// the file's order (MSAL's order).
    chain: Vec<Vec<u8>>,
}

impl std::fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClientCertificate({})", self.thumbprint_hex())
    }
}

/// How the assertion is signed: Entra ID takes PS256 with a SHA-256 thumbprint (`x5t#S256`),
/// as MSAL sends it; AD FS only RS256 with a SHA-1 thumbprint (`x5t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Signing {
    Ps256,
    Rs256,
}

impl ClientCertificate {
    /// Reads and parses the certificate file at `path`.
    pub(super) fn load(path: &Path, password: Option<&str>) -> Result<Self, String> {
        use std::io::Read;
        let file = std::fs::File::open(path).map_err(|e| format!("cannot read: {e}"))?;
        let mut data = Vec::new();
        file.take(MAX_FILE + 1)
            .read_to_end(&mut data)
            .map_err(|e| format!("cannot read: {e}"))?;
        if data.len() as u64 > MAX_FILE {
            return Err(format!(
                "larger than {MAX_FILE} bytes: not a certificate file"
            ));
        }
        Self::parse(&data, password)
    }

    /// Parses a certificate file as azidentity's `ParseCertificates` does: PEM when no password
    /// is given and the file has PEM sections, otherwise PKCS#12 (an absent password is the
    /// empty one).
    pub(super) fn parse(data: &[u8], password: Option<&str>) -> Result<Self, String> {
        let password = password.filter(|p| !p.is_empty());
        let pem = if password.is_none() {
            pem_sections(data)?
        } else {
            Vec::new()
        };
        let (keys, certs) = if pem.is_empty() {
            if data.starts_with(b"-----BEGIN") {
                return Err(if password.is_some() {
                    "a PEM file with a password: only PKCS#12 files are read with \
                     AZURE_CLIENT_CERTIFICATE_PASSWORD (PEM keys must be unencrypted)"
                        .to_string()
                } else {
                    "a PEM file without a certificate or key (an encrypted PEM key is not \
                     supported: use PKCS#12 for a password)"
                        .to_string()
                });
            }
            pkcs12_contents(data, password.unwrap_or(""))?
        } else {
            let (keys, certs) = pem_contents(pem);
            if keys.is_empty() && contains(data, b"-----BEGIN ENCRYPTED PRIVATE KEY") {
                return Err("the PEM private key is encrypted: azidentity reads only \
                            unencrypted PEM keys (use PKCS#12 for a password)"
                    .to_string());
            }
            (keys, certs)
        };
        Self::from_parts(keys, certs)
    }

    /// The key (PKCS#8, or PKCS#1 for `RSA PRIVATE KEY`) and the certificate that matches it.
    fn from_parts(keys: Vec<KeyDer>, certs: Vec<Vec<u8>>) -> Result<Self, String> {
        let key = match keys.as_slice() {
            [] => return Err("no private key in the file".to_string()),
            [key] => key,
            _ => return Err("more than one private key in the file".to_string()),
        };
        let key = match key {
            KeyDer::Pkcs8(der) => {
                RsaKeyPair::from_pkcs8(der).or_else(|e| RsaKeyPair::from_der(der).map_err(|_| e))
            }
            KeyDer::Pkcs1(der) => RsaKeyPair::from_der(der),
        }
        .map_err(|e| {
            format!("the private key is not a usable RSA key (Entra ID takes RSA only): {e}")
        })?;
        if certs.is_empty() {
            return Err("no certificate in the file".to_string());
        }
        let mut own = None;
        for (i, der) in certs.iter().enumerate() {
            let (_, cert) = x509_parser::parse_x509_certificate(der)
                .map_err(|e| format!("certificate {} of the file: {e}", i + 1))?;
            if own.is_none() && cert.public_key().subject_public_key.data == key.public().as_ref() {
                own = Some(i);
            }
        }
        let own = own.ok_or("no certificate in the file matches the private key")?;
        let mut chain = certs;
        let leaf = chain.remove(own);
        chain.insert(0, leaf);
        Ok(ClientCertificate { key, chain })
    }

    /// The certificate's SHA-1 thumbprint in hex, as the Azure portal shows it.
    pub(super) fn thumbprint_hex(&self) -> String {
        thumbprint(&self.chain[0], Signing::Rs256)
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect()
    }

    /// A client assertion for the token endpoint `audience`: header `alg`, `typ` and the
    /// certificate's thumbprint (with `x5c`, the certificates, when `send_chain`), claims
    /// `aud`, `iss` = `sub` = the client id, `jti`, `nbf` and `exp`, as MSAL builds it.
    pub(super) fn assertion(
        &self,
        audience: &str,
        client_id: &str,
        signing: Signing,
        send_chain: bool,
        now: SystemTime,
    ) -> Result<String, String> {
        let (alg, thumbprint_key) = match signing {
            Signing::Ps256 => ("PS256", "x5t#S256"),
            Signing::Rs256 => ("RS256", "x5t"),
        };
        let mut header = serde_json::Map::new();
        header.insert("alg".into(), alg.into());
        header.insert("typ".into(), "JWT".into());
        header.insert(
            thumbprint_key.into(),
            URL_SAFE_NO_PAD
                .encode(thumbprint(&self.chain[0], signing))
                .into(),
        );
        if send_chain {
            let x5c: Vec<serde_json::Value> = self
                .chain
                .iter()
                .map(|der| STANDARD.encode(der).into())
                .collect();
            header.insert("x5c".into(), x5c.into());
        }
        let now = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let claims = serde_json::json!({
            "aud": audience,
            "exp": now + ASSERTION_LIFETIME_SECS,
            "iss": client_id,
            "jti": uuid::Uuid::new_v4().to_string(),
            "nbf": now,
            "sub": client_id,
        });
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(serde_json::Value::Object(header).to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let padding: &'static dyn ring::signature::RsaEncoding = match signing {
            Signing::Ps256 => &RSA_PSS_SHA256,
            Signing::Rs256 => &RSA_PKCS1_SHA256,
        };
        let mut signature = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(
                padding,
                &ring::rand::SystemRandom::new(),
                signed.as_bytes(),
                &mut signature,
            )
            .map_err(|_| "signing the client assertion failed".to_string())?;
        Ok(format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }
}

/// A private key as found in the file.
enum KeyDer {
    Pkcs8(Vec<u8>),
    Pkcs1(Vec<u8>),
}

/// The SHA-256 (PS256) or SHA-1 (RS256) digest of a DER certificate.
fn thumbprint(der: &[u8], signing: Signing) -> Vec<u8> {
    let algorithm = match signing {
        Signing::Ps256 => &ring::digest::SHA256,
        Signing::Rs256 => &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
    };
    ring::digest::digest(algorithm, der).as_ref().to_vec()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The PEM sections of `data` (none when it is not PEM).
fn pem_sections(data: &[u8]) -> Result<Vec<(SectionKind, Vec<u8>)>, String> {
    <(SectionKind, Vec<u8>)>::pem_slice_iter(data)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not a readable PEM file: {e:?}"))
}

fn pem_contents(sections: Vec<(SectionKind, Vec<u8>)>) -> (Vec<KeyDer>, Vec<Vec<u8>>) {
    let (mut keys, mut certs) = (Vec::new(), Vec::new());
    for (kind, der) in sections {
        match kind {
            SectionKind::Certificate => certs.push(der),
            SectionKind::PrivateKey => keys.push(KeyDer::Pkcs8(der)),
            SectionKind::RsaPrivateKey => keys.push(KeyDer::Pkcs1(der)),
            _ => {}
        }
    }
    (keys, certs)
}

fn pkcs12_contents(data: &[u8], password: &str) -> Result<(Vec<KeyDer>, Vec<Vec<u8>>), String> {
    let archive =
        p12_keystore::Pkcs12Archive::from_pkcs12(data, password).map_err(|e| match e {
            p12_keystore::error::Error::MacError(_) => {
                "wrong password (AZURE_CLIENT_CERTIFICATE_PASSWORD): the PKCS#12 file's integrity \
             check fails"
                    .to_string()
            }
            p12_keystore::error::Error::UnpadError => {
                "wrong password (AZURE_CLIENT_CERTIFICATE_PASSWORD): the PKCS#12 file cannot be \
             decrypted"
                    .to_string()
            }
            other => format!("neither PEM nor a readable PKCS#12 file: {other}"),
        })?;
    let keys = archive
        .keys
        .iter()
        .map(|bag| KeyDer::Pkcs8(bag.key.as_der().to_vec()))
        .collect();
    let certs = archive
        .certs
        .iter()
        .map(|bag| bag.cert.as_der().to_vec())
        .collect();
    Ok((keys, certs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// A self-signed RSA certificate and key made by `openssl` in `dir`: (cert PEM, key PEM).
    fn openssl_cert(dir: &Path, name: &str) -> (Vec<u8>, Vec<u8>) {
        let key = dir.join(format!("{name}.key"));
        let cert = dir.join(format!("{name}.crt"));
        let status = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ])
            .args(["-subj", &format!("/CN={name}")])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("run openssl");
        assert!(status.status.success(), "{status:?}");
        (std::fs::read(cert).unwrap(), std::fs::read(key).unwrap())
    }

    fn pkcs12(dir: &Path, cert_and_key: &[u8], password: &str, legacy: bool) -> Vec<u8> {
        let input = dir.join("in.pem");
        let out = dir.join("out.pfx");
        std::fs::write(&input, cert_and_key).unwrap();
        let mut cmd = Command::new("openssl");
        cmd.args(["pkcs12", "-export", "-passout"])
            .arg(format!("pass:{password}"))
            .arg("-in")
            .arg(&input)
            .arg("-out")
            .arg(&out);
        if legacy {
            // What golang.org/x/crypto/pkcs12 (azidentity) reads: 3DES and a SHA-1 MAC.
            cmd.args(["-certpbe", "PBE-SHA1-3DES", "-keypbe", "PBE-SHA1-3DES"])
                .args(["-macalg", "sha1"]);
        }
        let output = cmd.output().expect("run openssl");
        assert!(output.status.success(), "{output:?}");
        std::fs::read(out).unwrap()
    }

    fn decode_part(part: &str) -> serde_json::Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    }

    #[test]
    fn pem_and_pkcs12_files_give_the_same_signed_assertion() {
        let dir = tempfile::tempdir().unwrap();
        let (cert_pem, key_pem) = openssl_cert(dir.path(), "app");
        let (other_pem, _) = openssl_cert(dir.path(), "ca");
        // The key's own certificate need not come first.
        let pem = [other_pem.clone(), key_pem.clone(), cert_pem.clone()].concat();
        let from_pem = ClientCertificate::parse(&pem, None).unwrap();
        let cert_der = first_der(&cert_pem);
        assert_eq!(from_pem.chain[0], cert_der);
        assert_eq!(from_pem.chain.len(), 2);
        let both = [cert_pem.clone(), key_pem.clone()].concat();
        for legacy in [false, true] {
            let pfx = pkcs12(dir.path(), &both, "s3cret", legacy);
            let c = ClientCertificate::parse(&pfx, Some("s3cret")).unwrap();
            assert_eq!(c.chain[0], cert_der, "legacy: {legacy}");
            let err = ClientCertificate::parse(&pfx, Some("wrong")).unwrap_err();
            assert!(err.starts_with("wrong password"), "{err}");
            assert!(ClientCertificate::parse(&pfx, None).is_err());
        }
        let pfx = pkcs12(dir.path(), &both, "", false);
        assert!(ClientCertificate::parse(&pfx, None).is_ok());

        let now = SystemTime::now();
        let jwt = from_pem
            .assertion(
                "https://login/t/oauth2/v2.0/token",
                "client",
                Signing::Ps256,
                true,
                now,
            )
            .unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header = decode_part(parts[0]);
        assert_eq!(header["alg"], "PS256");
        assert_eq!(header["typ"], "JWT");
        let sha256 = ring::digest::digest(&ring::digest::SHA256, &cert_der);
        assert_eq!(header["x5t#S256"], URL_SAFE_NO_PAD.encode(sha256.as_ref()));
        assert_eq!(header["x5c"][0], STANDARD.encode(&cert_der));
        assert_eq!(header["x5c"].as_array().unwrap().len(), 2);
        let claims = decode_part(parts[1]);
        assert_eq!(claims["aud"], "https://login/t/oauth2/v2.0/token");
        assert_eq!(claims["iss"], "client");
        assert_eq!(claims["sub"], "client");
        let nbf = claims["nbf"].as_u64().unwrap();
        assert_eq!(claims["exp"].as_u64().unwrap(), nbf + 600);
        let (_, cert) = x509_parser::parse_x509_certificate(&cert_der).unwrap();
        let public = cert.public_key().subject_public_key.data.to_vec();
        let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        let message = format!("{}.{}", parts[0], parts[1]);
        ring::signature::UnparsedPublicKey::new(
            &ring::signature::RSA_PSS_2048_8192_SHA256,
            &public,
        )
        .verify(message.as_bytes(), &signature)
        .expect("a valid PS256 signature");

        let jwt = from_pem
            .assertion("aud", "client", Signing::Rs256, false, now)
            .unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        let header = decode_part(parts[0]);
        assert_eq!(header["alg"], "RS256");
        assert!(header.get("x5c").is_none());
        let sha1 = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &cert_der);
        assert_eq!(header["x5t"], URL_SAFE_NO_PAD.encode(sha1.as_ref()));
        ring::signature::UnparsedPublicKey::new(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            &public,
        )
        .verify(
            format!("{}.{}", parts[0], parts[1]).as_bytes(),
            &URL_SAFE_NO_PAD.decode(parts[2]).unwrap(),
        )
        .expect("a valid RS256 signature");
    }

    #[test]
    fn unusable_files_are_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let (cert_pem, key_pem) = openssl_cert(dir.path(), "app");
        let (other_pem, _) = openssl_cert(dir.path(), "other");
        let err = |data: &[u8], password: Option<&str>| {
            ClientCertificate::parse(data, password).unwrap_err()
        };
        assert_eq!(err(&cert_pem, None), "no private key in the file");
        assert_eq!(err(&key_pem, None), "no certificate in the file");
        assert_eq!(
            err(&[other_pem, key_pem.clone()].concat(), None),
            "no certificate in the file matches the private key"
        );
        assert!(err(b"garbage", None).starts_with("neither PEM nor"));
        assert!(err(&[cert_pem, key_pem].concat(), Some("pw")).contains("PEM file with a password"));
        let missing = ClientCertificate::load(&dir.path().join("absent.pem"), None).unwrap_err();
        assert!(missing.starts_with("cannot read"), "{missing}");
    }

    /// The DER of the first certificate of a PEM text.
    fn first_der(pem: &[u8]) -> Vec<u8> {
        rustls::pki_types::CertificateDer::from_pem_slice(pem)
            .unwrap()
            .to_vec()
    }
}
