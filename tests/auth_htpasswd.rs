//! `auth.htpasswd` with the real binary and skopeo: bcrypt users push, everyone else (wrong
//! password, unknown user, SHA1 or plain-text entries) gets 401 and writes nothing.

mod support;

use support::*;

#[test]
fn skopeo_pushes_with_bcrypt_credentials_only() {
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    let hash = bcrypt::hash("alice-pw", 4).unwrap();
    std::fs::write(
        &htpasswd,
        format!("alice:{hash}\nbob:{{SHA}}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\ncarol:carol-pw\n"),
    )
    .unwrap();
    let reg = Registry::builder(Driver::Filesystem)
        .section(&format!(
            "auth:\n  htpasswd:\n    realm: wharf-realm\n    path: {}\n",
            htpasswd.display()
        ))
        .ready(Ready::V2Answers)
        .start();
    let work = tempfile::tempdir().unwrap();
    let layout = one_image_layout(work.path());
    let push = |repo: &str, creds: &str| {
        skopeo(&[
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            creds,
            &format!("oci:{}:v1", layout.display()),
            &format!("docker://{}/{repo}:v1", reg.host()),
        ])
    };
    push("basic/ok", "alice:alice-pw").assert_success("skopeo copy with alice's password");
    skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--creds",
        "alice:alice-pw",
        &format!("docker://{}/basic/ok:v1", reg.host()),
    ])
    .assert_success("skopeo inspect");

    for (what, user, password) in [
        ("wrong password", "alice", "nope"),
        ("unknown user", "dave", "alice-pw"),
        ("SHA1 entry", "bob", "password"),
        ("plain-text entry", "carol", "carol-pw"),
    ] {
        let out = push("basic/refused", &format!("{user}:{password}"));
        assert!(!out.status.success(), "{what}: push succeeded");
        let resp = send(
            reg.post("/v2/basic/refused/blobs/uploads/")
                .basic_auth(user, Some(password)),
        );
        assert_error(&resp, 401, "UNAUTHORIZED");
        assert_eq!(
            resp.header("www-authenticate"),
            Some("Basic realm=\"wharf-realm\""),
            "{what}"
        );
    }
    let resp = send(reg.get("/v2/"));
    assert_error(&resp, 401, "UNAUTHORIZED");
    assert_eq!(
        repositories_in(&reg.v2_root()),
        ["basic/ok"],
        "nothing else written"
    );
}
