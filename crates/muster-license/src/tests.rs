//! Signing and verifying: a license round-trips, and each way a license can be wrong is named.

use muster_core::Timestamp;

use super::*;

const DAY_MS: i64 = 24 * 3600 * 1000;
const NOW: Timestamp = Timestamp::from_unix_millis(1_800_000_000_000);

fn at(days: i64) -> Timestamp {
    Timestamp::from_unix_millis(NOW.unix_millis() + days * DAY_MS)
}

fn terms() -> Terms {
    Terms {
        id: "lic-0001".into(),
        licensee: "ACME Corp".into(),
        max_workers: Some(25),
        issued_at: at(-1),
        expires_at: at(365),
    }
}

fn issuer() -> (IssuerSecret, Issuers) {
    let secret = IssuerSecret::generate().unwrap();
    let mut issuers = Issuers::muster();
    issuers.add(secret.public().clone());
    (secret, issuers)
}

#[test]
fn muster_own_issuer_key_is_a_public_key() {
    let key = IssuerKey::parse(MUSTER_ISSUER).expect("issuer/muster.pub holds a k4.public key");
    assert_eq!(Issuers::muster().ids().collect::<Vec<_>>(), [key.id()]);
}

#[test]
fn a_signed_license_verifies_and_reads_back_its_terms() {
    let (secret, issuers) = issuer();
    let token = sign(&secret, &terms()).unwrap();
    assert!(token.starts_with("v4.public."), "{token}");
    let license = verify(&format!("  {token}\n"), &issuers).unwrap();
    assert_eq!(license.id, "lic-0001");
    assert_eq!(license.licensee, "ACME Corp");
    assert_eq!(license.max_workers, Some(25));
    assert_eq!(license.issued_at, at(-1));
    assert_eq!(license.expires_at, at(365));
    assert_eq!(license.issuer, secret.public().id());
    assert_eq!(check_dates(&license, NOW), Ok(()));
}

#[test]
fn no_limit_is_null() {
    let (secret, issuers) = issuer();
    let token = sign(
        &secret,
        &Terms {
            max_workers: None,
            ..terms()
        },
    )
    .unwrap();
    assert_eq!(verify(&token, &issuers).unwrap().max_workers, None);
}

#[test]
fn a_license_from_an_issuer_not_trusted_is_refused() {
    let (secret, _) = issuer();
    let token = sign(&secret, &terms()).unwrap();
    assert_eq!(
        verify(&token, &Issuers::muster()).unwrap_err(),
        LicenseError::UnknownIssuer(secret.public().id().to_owned())
    );
}

#[test]
fn a_changed_license_does_not_verify() {
    let (secret, issuers) = issuer();
    let token = sign(&secret, &terms()).unwrap();
    // Change one character of the payload: still base64, no longer what was signed.
    let body_start = "v4.public.".len() + 10;
    let mut bytes = token.into_bytes();
    bytes[body_start] = if bytes[body_start] == b'A' {
        b'B'
    } else {
        b'A'
    };
    let tampered = String::from_utf8(bytes).unwrap();
    assert_eq!(
        verify(&tampered, &issuers).unwrap_err(),
        LicenseError::BadSignature
    );
}

#[test]
fn a_key_id_in_the_footer_that_does_not_match_the_signer_does_not_verify() {
    // Signed by one trusted key, footer swapped to name another trusted key.
    let (first, mut issuers) = issuer();
    let second = IssuerSecret::generate().unwrap();
    issuers.add(second.public().clone());
    let by_first = sign(&first, &terms()).unwrap();
    let by_second = sign(&second, &terms()).unwrap();
    let body = by_first.rsplit_once('.').unwrap().0;
    let footer = by_second.rsplit_once('.').unwrap().1;
    assert_eq!(
        verify(&format!("{body}.{footer}"), &issuers).unwrap_err(),
        LicenseError::BadSignature
    );
}

#[test]
fn garbage_is_malformed() {
    let (_, issuers) = issuer();
    for text in [
        "",
        "hello",
        "v4.public.",
        "v4.public.!!!!",
        "v4.local.AAAA",
        "v3.public.AAAA.BBBB",
    ] {
        assert!(
            matches!(verify(text, &issuers), Err(LicenseError::Malformed(_))),
            "{text:?}: {:?}",
            verify(text, &issuers)
        );
    }
}

#[test]
fn another_format_version_is_named() {
    let (secret, issuers) = issuer();
    let token = sign_document(
        &secret,
        &Document {
            format_version: 2,
            ..Document::of(&terms())
        },
    )
    .unwrap();
    let error = verify(&token, &issuers).unwrap_err();
    assert_eq!(error, LicenseError::UnsupportedVersion { found: 2 });
    assert_eq!(
        error.to_string(),
        "the license is in format version 2; this server reads format version 1"
    );
}

#[test]
fn documents_with_impossible_terms_are_malformed() {
    let (secret, issuers) = issuer();
    let backwards = Terms {
        expires_at: at(-2),
        ..terms()
    };
    let unnamed = Terms {
        licensee: " ".into(),
        ..terms()
    };
    for bad in [backwards, unnamed] {
        let token = sign(&secret, &bad).unwrap();
        assert!(
            matches!(verify(&token, &issuers), Err(LicenseError::Malformed(_))),
            "{bad:?}"
        );
    }
}

#[test]
fn dates_decide_whether_a_license_can_be_installed_now() {
    let (secret, issuers) = issuer();
    let license = verify(&sign(&secret, &terms()).unwrap(), &issuers).unwrap();
    assert_eq!(check_dates(&license, at(364)), Ok(()));
    assert_eq!(
        check_dates(&license, at(365)),
        Err(LicenseError::Expired(at(365)))
    );
    assert_eq!(
        check_dates(&license, at(-2)),
        Err(LicenseError::NotYetValid(at(-1)))
    );
    // A few minutes of clock skew are tolerated.
    let minute_later = Timestamp::from_unix_millis(at(-1).unix_millis() - 60_000);
    assert_eq!(check_dates(&license, minute_later), Ok(()));
}

#[test]
fn issuer_key_files_take_several_keys_and_comments() {
    let (a, b) = (
        IssuerSecret::generate().unwrap(),
        IssuerSecret::generate().unwrap(),
    );
    let mut issuers = Issuers::muster();
    let file = format!(
        "# our issuers\n{}\n\n{}\n",
        a.public().to_paserk(),
        b.public().to_paserk()
    );
    assert_eq!(issuers.add_file_contents(&file), Ok(2));
    assert!(issuers.find(a.public().id()).is_some());
    assert!(issuers.find(b.public().id()).is_some());
    assert_eq!(
        Issuers::muster().add_file_contents("# nothing\n"),
        Err(KeyError::NotPublic)
    );
    assert_eq!(
        Issuers::muster().add_file_contents(&a.to_paserk()),
        Err(KeyError::NotPublic)
    );
}
