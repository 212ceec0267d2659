//! The command lines muster prints for someone to paste on another machine: a worker started
//! with a token, with the auto-enrollment secret, or with a pre-created identity. Written once,
//! for the API (and so the CLI) and the web UI, so each is complete wherever it is shown: the
//! server's URL as others reach it, the credential (or a placeholder when it is not shown), and
//! the certificate's fingerprint when the certificate is self-signed.

use crate::state::AppState;

/// The base URL workers and admins elsewhere use: `--public-url` when the server was given one,
/// else the `Host` the admin reached it at. A `Host` with anything but host-name characters is
/// not echoed into a command someone will paste.
pub fn base_url(app: &AppState, host: Option<&str>) -> String {
    if let Some(url) = &app.public_url {
        return url.clone();
    }
    let host = host
        .filter(|h| {
            !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c))
        })
        .unwrap_or("SERVER:7443");
    let scheme = if app.tls { "https" } else { "http" };
    format!("{scheme}://{host}")
}

/// `--ca-fingerprint …` when the server's certificate is self-signed (nothing to add otherwise).
fn trust(app: &AppState) -> String {
    app.pin_fingerprint
        .as_ref()
        .map(|fp| format!(" --ca-fingerprint {fp}"))
        .unwrap_or_default()
}

/// A worker enrolling with the token `NAME.SECRET`.
pub fn with_token(app: &AppState, host: Option<&str>, token: &str) -> String {
    format!(
        "muster worker --url {} --token {token}{}",
        base_url(app, host),
        trust(app)
    )
}

/// A worker enrolling with the auto-enrollment secret, named after its host (lowercase; a
/// host name with other characters is refused by the worker with the naming rule). `secret` is
/// the secret when it is shown this once, else a placeholder to replace.
pub fn with_secret(app: &AppState, host: Option<&str>, secret: Option<&str>) -> String {
    let secret = secret.map_or_else(|| "SECRET".to_owned(), shell_quote);
    format!(
        "MUSTER_AUTO_ENROLLMENT_KEY={secret} muster worker --url {} --name \"$(hostname -s | tr A-Z a-z)\"{}",
        base_url(app, host),
        trust(app)
    )
}

/// A pre-created worker starting with its id and API key.
pub fn precreated(app: &AppState, host: Option<&str>, id: &str, api_key: &str) -> String {
    format!(
        "MUSTER_WORKER_ID={id} MUSTER_WORKER_API_KEY={api_key} muster worker --url {}{}",
        base_url(app, host),
        trust(app)
    )
}

/// `text` as one shell word: a secret an admin chose may hold any printable character.
fn shell_quote(text: &str) -> String {
    if text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.:/+=".contains(c))
    {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_one_shell_word() {
        assert_eq!(shell_quote("abc-DEF_1"), "abc-DEF_1");
        assert_eq!(shell_quote("a b'c"), r"'a b'\''c'");
    }

    #[test]
    fn the_public_url_wins_over_the_host_and_the_fingerprint_follows() {
        let (mut app, _dir) = AppState::for_tests();
        assert!(with_token(&app, Some("10.0.0.1:7443"), "t.s").contains("://10.0.0.1:7443 "));
        assert!(with_token(&app, Some("bad host;rm"), "t.s").contains("://SERVER:7443 "));
        let inner = app.inner_mut();
        inner.public_url = Some("https://muster.example.com:7443".into());
        inner.pin_fingerprint = Some("sha256:ab".into());
        let cmd = precreated(&app, Some("127.0.0.1:1"), "id1", "mk_1");
        assert_eq!(
            cmd,
            "MUSTER_WORKER_ID=id1 MUSTER_WORKER_API_KEY=mk_1 muster worker --url https://muster.example.com:7443 --ca-fingerprint sha256:ab"
        );
        assert!(with_secret(&app, None, None).starts_with("MUSTER_AUTO_ENROLLMENT_KEY=SECRET "));
    }
}
