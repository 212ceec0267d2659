//! `muster-license` as the issuer runs it: a key pair made (the secret owner-only, never
//! overwritten), a license signed with it, and inspected against the public half; a license
//! from another issuer refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

fn tool(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_muster-license"))
        .args(args)
        .output()
        .expect("run muster-license")
}

fn ok(args: &[&str]) -> String {
    let out = tool(args);
    assert!(
        out.status.success(),
        "`muster-license {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn path(dir: &Path, name: &str) -> String {
    dir.join(name).to_str().unwrap().to_owned()
}

#[test]
fn an_issuer_makes_keys_signs_a_license_and_inspects_it() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = path(dir.path(), "acme-issuer");
    let made = ok(&["keygen", "--out", &prefix]);
    assert!(made.contains("issuer: k4.pid."), "{made}");
    let secret = dir.path().join("acme-issuer.key");
    let mode = std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the secret key is the owner's alone");
    assert!(
        std::fs::read_to_string(&secret)
            .unwrap()
            .starts_with("k4.secret.")
    );
    let public = path(dir.path(), "acme-issuer.pub");
    assert!(
        std::fs::read_to_string(&public)
            .unwrap()
            .starts_with("k4.public.")
    );
    // Never overwritten.
    let again = tool(&["keygen", "--out", &prefix]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists already"));

    let license = ok(&[
        "sign",
        "--key",
        &path(dir.path(), "acme-issuer.key"),
        "--licensee",
        "ACME Corp",
        "--max-workers",
        "50",
        "--expires-in",
        "365d",
        "--id",
        "lic-42",
    ]);
    assert!(license.starts_with("v4.public."), "{license}");
    let file = dir.path().join("license.txt");
    std::fs::write(&file, &license).unwrap();
    let shown: serde_json::Value = serde_json::from_str(&ok(&[
        "inspect",
        "--issuer-key",
        &public,
        file.to_str().unwrap(),
    ]))
    .unwrap();
    assert_eq!(shown["id"], "lic-42");
    assert_eq!(shown["licensee"], "ACME Corp");
    assert_eq!(shown["max_workers"], 50);
    assert_eq!(shown["installable_now"], true);
    assert!(made.contains(shown["issuer"].as_str().unwrap()));

    // Without its issuer's key, muster's own alone does not trust it.
    let refused = tool(&["inspect", file.to_str().unwrap()]);
    assert!(!refused.status.success());
    let line = String::from_utf8_lossy(&refused.stderr);
    assert!(line.contains("which this server does not trust"), "{line}");
}

#[test]
fn a_license_needs_an_expiry_and_a_secret_key() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = path(dir.path(), "k");
    ok(&["keygen", "--out", &prefix]);
    let out = tool(&["sign", "--key", &format!("{prefix}.key"), "--licensee", "x"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("a license needs an expiry"));
    let out = tool(&[
        "sign",
        "--key",
        &format!("{prefix}.pub"),
        "--licensee",
        "x",
        "--expires-in",
        "1d",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not an issuer secret key"));
}
