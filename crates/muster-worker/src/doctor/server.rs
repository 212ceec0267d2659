//! The checks against the server: the URL, reachability, TLS trust, the clock, the edition and
//! licence, and auto-enrollment. Each step is bounded by [`super::STEP_TIMEOUT`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use muster_client::{ClientError, Trust};
use muster_core::Timestamp;
use muster_proto::api::{Edition, Preflight};
use tokio::net::TcpStream;

use super::{Check, Finding, Options, STEP_TIMEOUT};
use crate::channel::Endpoint;
use crate::config::WorkerConfig;

/// Skew from which the clock check warns, and from which it fails.
const SKEW_WARN: Duration = Duration::from_secs(5);
const SKEW_FAIL: Duration = Duration::from_secs(60);

/// A server the checks reached: where, and what it said about itself (`None` from a server
/// too old to say).
pub(super) struct Reached {
    pub endpoint: Endpoint,
    pub preflight: Option<Preflight>,
}

/// The URL, reachability, TLS and clock rows. `Some` when the server answered over a working
/// connection, for the checks that need it.
pub(super) async fn check(
    config: &WorkerConfig,
    options: Options,
    findings: &mut Vec<Finding>,
) -> Option<Reached> {
    let not_checked = |findings: &mut Vec<Finding>, from: &[Check], why: &str| {
        for check in from {
            findings.push(Finding::skip(*check, format!("not checked: {why}")));
        }
    };
    let endpoint = match url(config) {
        Ok((endpoint, finding)) => {
            findings.push(finding);
            endpoint
        }
        Err(finding) => {
            findings.push(finding);
            let rest = [Check::Reachability, Check::Tls, Check::Clock];
            not_checked(findings, &rest, "the URL is not usable");
            return None;
        }
    };
    let (reach, stream) = reachability(&endpoint).await;
    findings.push(reach);
    let Some(stream) = stream else {
        not_checked(
            findings,
            &[Check::Tls, Check::Clock],
            "the server cannot be reached",
        );
        return None;
    };
    // The trust the worker was given, for the TLS row and every request after it.
    let trust = match trust(config) {
        Ok(trust) => trust,
        Err(finding) => {
            findings.push(finding);
            not_checked(findings, &[Check::Clock], "TLS is not set up");
            return None;
        }
    };
    let endpoint = match Endpoint::new(&endpoint.base_url, &trust) {
        Ok(endpoint) => endpoint,
        Err(error) => {
            findings.push(Finding::from_error(
                Check::Tls,
                super::Verdict::Fail,
                &error,
            ));
            not_checked(findings, &[Check::Clock], "TLS is not set up");
            return None;
        }
    };
    match tls(&endpoint, stream).await {
        TlsOutcome::Trusted(finding) => findings.push(finding),
        TlsOutcome::Failed(finding) => {
            findings.push(finding);
            not_checked(findings, &[Check::Clock], "TLS failed");
            return None;
        }
        TlsOutcome::Plaintext => {
            replace(findings, wrong_scheme(&endpoint.base_url, "http://"));
            findings.push(Finding::skip(
                Check::Tls,
                "not checked: the server does not speak TLS",
            ));
            not_checked(findings, &[Check::Clock], "the URL's scheme is wrong");
            return None;
        }
    }
    let client = match endpoint.client() {
        Ok(client) => client,
        Err(error) => {
            findings.push(Finding::from_error(
                Check::Clock,
                super::Verdict::Fail,
                &error,
            ));
            return None;
        }
    };
    let before = local_now(options);
    let answer = tokio::time::timeout(STEP_TIMEOUT, client.preflight()).await;
    let after = local_now(options);
    let preflight = match answer {
        Err(_) => {
            findings.push(Finding::skip(
                Check::Clock,
                format!(
                    "not checked: the server did not answer within {} s",
                    STEP_TIMEOUT.as_secs()
                ),
            ));
            None
        }
        Ok(Ok(preflight)) => {
            findings.push(clock(&preflight, before, after));
            Some(preflight)
        }
        Ok(Err(ClientError::PlainHttpToHttps { .. })) => {
            replace(findings, wrong_scheme(&endpoint.base_url, "https://"));
            not_checked(findings, &[Check::Clock], "the URL's scheme is wrong");
            return None;
        }
        Ok(Err(error)) if error.code() == Some(muster_proto::ErrorCode::NotFound) => {
            findings.push(Finding::skip(
                Check::Clock,
                "not checked: the server runs an older muster, which does not tell its time",
            ));
            None
        }
        Ok(Err(error)) => {
            findings.push(Finding::skip(Check::Clock, format!("not checked: {error}")));
            None
        }
    };
    Some(Reached {
        endpoint,
        preflight,
    })
}

/// Replaces the row of the same check.
fn replace(findings: &mut [Finding], finding: Finding) {
    if let Some(row) = findings.iter_mut().find(|f| f.check == finding.check) {
        *row = finding;
    }
}

/// The first configured URL, parsed as the worker parses it (with the system's roots: the
/// trust options are the TLS row's).
fn url(config: &WorkerConfig) -> Result<(Endpoint, Finding), Finding> {
    let no_url = || {
        Finding::fail(
            Check::Url,
            "no server URL is configured",
            "pass `--url https://HOST:PORT` or set MUSTER_URL",
        )
    };
    let all: Vec<&str> = config
        .url
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .collect();
    let Some(first) = all.first().copied() else {
        return Err(no_url());
    };
    for (websocket, http) in [("ws://", "http://"), ("wss://", "https://")] {
        if first.to_ascii_lowercase().starts_with(websocket) {
            return Err(Finding::fail(
                Check::Url,
                format!("`{first}` is a WebSocket URL, but `--url` takes the server's base URL"),
                format!(
                    "use `{http}{}` (the worker opens its WebSocket itself)",
                    &first[websocket.len()..]
                ),
            ));
        }
    }
    let endpoint = Endpoint::new(first, &Trust::System)
        .map_err(|e| Finding::from_error(Check::Url, super::Verdict::Fail, &e))?;
    if !config.allow_plaintext && !endpoint.is_safe_without_tls() {
        let error = crate::runner::plaintext_refused(first);
        return Err(Finding::from_error(
            Check::Url,
            super::Verdict::Fail,
            &error,
        ));
    }
    let mut detail = if endpoint.tls().is_some() {
        format!("`{}`: HTTPS", endpoint.base_url)
    } else {
        format!("`{}`: plain HTTP", endpoint.base_url)
    };
    if all.len() > 1 {
        detail.push_str(&format!(
            " (the first of {} URLs; run the doctor with `--url` for each of the others)",
            all.len()
        ));
    }
    Ok((endpoint, Finding::ok(Check::Url, detail)))
}

/// The URL names the other scheme than the server speaks.
fn wrong_scheme(url: &str, should_be: &str) -> Finding {
    let (is, speaks) = if should_be == "https://" {
        ("http://", "HTTPS")
    } else {
        ("https://", "plain HTTP (`--no-tls`)")
    };
    Finding::fail(
        Check::Url,
        format!("`{url}` is an {is} URL, but the server speaks {speaks}"),
        format!("use `{}`", url.replacen(is, should_be, 1)),
    )
}

/// A TCP connection to the URL's host and port, within the bound: the row, and the connection
/// for the TLS check.
async fn reachability(endpoint: &Endpoint) -> (Finding, Option<TcpStream>) {
    let (host, port) = endpoint.host_port();
    let fail =
        |detail: String, fix: String| (Finding::fail(Check::Reachability, detail, fix), None);
    let resolved = tokio::time::timeout(STEP_TIMEOUT, tokio::net::lookup_host((host, port))).await;
    let addr = match resolved {
        Ok(Ok(mut addrs)) => match addrs.next() {
            Some(addr) => addr,
            None => {
                return fail(
                    format!("`{host}` has no address"),
                    "check the host name in `--url`".into(),
                );
            }
        },
        Ok(Err(e)) => {
            return fail(
                format!("cannot resolve `{host}`: {e}"),
                "check the host name in `--url` (DNS, /etc/hosts)".into(),
            );
        }
        Err(_) => {
            return fail(
                format!(
                    "resolving `{host}` took more than {} s",
                    STEP_TIMEOUT.as_secs()
                ),
                "check this machine's DNS configuration".into(),
            );
        }
    };
    match tokio::time::timeout(STEP_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => (
            Finding::ok(Check::Reachability, format!("{addr} accepts connections")),
            Some(stream),
        ),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => fail(
            format!("{addr} refused the connection: nothing listens on port {port} there"),
            format!(
                "check that `muster serve` runs on `{host}` and listens on port {port} on an address this machine reaches (`--listen`; the default is 127.0.0.1:7443, this host only)"
            ),
        ),
        Ok(Err(e)) => fail(
            format!("cannot connect to {addr}: {e}"),
            format!("check the network between this machine and `{host}`"),
        ),
        Err(_) => fail(
            format!("{addr} did not answer within {} s", STEP_TIMEOUT.as_secs()),
            format!(
                "a firewall may drop the packets: allow TCP port {port} from this machine to `{host}`"
            ),
        ),
    }
}

/// The trust options, parsed as the worker parses them.
fn trust(config: &WorkerConfig) -> Result<Trust, Finding> {
    Trust::from_options(config.ca_file.as_deref(), config.ca_fingerprint.as_deref()).map_err(|e| {
        Finding::fail(
            Check::Tls,
            e.to_string(),
            "copy the fingerprint exactly as `muster serve` printed it",
        )
    })
}

enum TlsOutcome {
    Trusted(Finding),
    Failed(Finding),
    /// The server answered, but not with TLS.
    Plaintext,
}

/// The TLS handshake on `stream`, with the worker's trust; for a plain-HTTP URL, nothing to do.
async fn tls(endpoint: &Endpoint, stream: TcpStream) -> TlsOutcome {
    let Some(config) = endpoint.tls() else {
        return TlsOutcome::Trusted(Finding::skip(
            Check::Tls,
            "not checked: a plain http:// URL has no TLS",
        ));
    };
    let trusted_by = match endpoint.trust() {
        Trust::System => "the system's root certificates".to_owned(),
        Trust::CaFile(path) => format!("the CA in `{}`", path.display()),
        Trust::Fingerprint(digest) => format!(
            "the pinned fingerprint `{}`",
            muster_client::trust::format_fingerprint(digest)
        ),
    };
    match handshake(endpoint, config, stream).await {
        Ok(()) => TlsOutcome::Trusted(Finding::ok(
            Check::Tls,
            format!("the server's certificate is trusted by {trusted_by}"),
        )),
        Err(Handshake::TimedOut) => TlsOutcome::Failed(Finding::fail(
            Check::Tls,
            format!(
                "the server accepted the connection but did not complete a TLS handshake within {} s",
                STEP_TIMEOUT.as_secs()
            ),
            "check that `--url` names muster's port and not another service's",
        )),
        Err(Handshake::Failed(error)) if muster_client::trust::is_not_tls(&error) => {
            TlsOutcome::Plaintext
        }
        Err(Handshake::Failed(error)) if muster_client::trust::is_untrusted_certificate(&error) => {
            let presented = presented_fingerprint(endpoint).await;
            TlsOutcome::Failed(untrusted(endpoint, &trusted_by, &error, presented))
        }
        Err(Handshake::Failed(error)) => TlsOutcome::Failed(Finding::fail(
            Check::Tls,
            format!("the TLS handshake failed: {error}"),
            "check that `--url` names muster's port, and that no proxy between here and the server changes TLS",
        )),
    }
}

enum Handshake {
    TimedOut,
    Failed(std::io::Error),
}

async fn handshake(
    endpoint: &Endpoint,
    config: &std::sync::Arc<rustls::ClientConfig>,
    stream: TcpStream,
) -> Result<(), Handshake> {
    let (host, _) = endpoint.host_port();
    let name = rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|e| Handshake::Failed(std::io::Error::other(e)))?;
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::clone(config));
    match tokio::time::timeout(STEP_TIMEOUT, connector.connect(name, stream)).await {
        Err(_) => Err(Handshake::TimedOut),
        Ok(Err(error)) => Err(Handshake::Failed(error)),
        Ok(Ok(_)) => Ok(()),
    }
}

/// The fingerprint of the certificate the server presents, through a handshake that trusts
/// nothing (so nothing is sent on it).
async fn presented_fingerprint(endpoint: &Endpoint) -> Option<String> {
    let (config, seen) = muster_client::trust::recording_config().ok()?;
    let (host, port) = endpoint.host_port();
    let stream = tokio::time::timeout(STEP_TIMEOUT, TcpStream::connect((host, port)))
        .await
        .ok()?
        .ok()?;
    let _ = handshake(endpoint, &config, stream).await;
    let digest = *seen.lock().unwrap_or_else(|e| e.into_inner());
    digest.map(|d| muster_client::trust::format_fingerprint(&d))
}

/// The server's certificate failed the worker's trust: which trust, why, and what to pass.
fn untrusted(
    endpoint: &Endpoint,
    trusted_by: &str,
    error: &std::io::Error,
    presented: Option<String>,
) -> Finding {
    let why = certificate_problem(error)
        .map(|p| format!(" ({p})"))
        .unwrap_or_default();
    let shown = presented
        .as_deref()
        .map(|fp| format!("; it presents `{fp}`"))
        .unwrap_or_default();
    let detail = format!("the server's certificate is not trusted by {trusted_by}{why}{shown}");
    let compare = "compare with the `sha256:` fingerprint `muster serve` printed at its start (also in `server.json` in its data dir), never with one read over the network alone";
    let fix = match endpoint.trust() {
        Trust::Fingerprint(_) => format!(
            "if the server's certificate was replaced on purpose, pass the new one with `--ca-fingerprint`; {compare}"
        ),
        Trust::CaFile(_) => format!(
            "pass the CA that issued the server's certificate with `--ca-file`, or pin the certificate with `--ca-fingerprint`; {compare}"
        ),
        Trust::System => format!(
            "a self-signed certificate needs `--ca-fingerprint` (or `--ca-file` with its CA); {compare}"
        ),
    };
    Finding::fail(Check::Tls, detail, fix)
}

/// Why rustls refused the certificate, in words, when it says.
fn certificate_problem(error: &std::io::Error) -> Option<&'static str> {
    use rustls::CertificateError as E;
    let inner = error.get_ref()?.downcast_ref::<rustls::Error>()?;
    let rustls::Error::InvalidCertificate(problem) = inner else {
        return None;
    };
    Some(match problem {
        E::UnknownIssuer => "signed by an unknown issuer",
        E::Expired | E::ExpiredContext { .. } => "expired (or this machine's clock is ahead)",
        E::NotValidYet | E::NotValidYetContext { .. } => {
            "not valid yet (or this machine's clock is behind)"
        }
        E::NotValidForName | E::NotValidForNameContext { .. } => {
            "issued for another name than the URL's host"
        }
        E::ApplicationVerificationFailure => "another certificate than the pinned one",
        E::BadSignature | E::BadEncoding => "malformed or badly signed",
        E::Revoked => "revoked",
        _ => return None,
    })
}

/// This machine's clock, with the test offset.
fn local_now(options: Options) -> i64 {
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    i64::try_from(wall.as_millis())
        .unwrap_or(i64::MAX)
        .saturating_add(options.clock_offset_ms)
}

/// The server's clock against this machine's, read halfway through the request.
fn clock(preflight: &Preflight, before: i64, after: i64) -> Finding {
    let Some(server) = Timestamp::parse_rfc3339(&preflight.server_time) else {
        return Finding::skip(
            Check::Clock,
            format!(
                "not checked: the server's time `{}` is not RFC 3339",
                preflight.server_time.chars().take(40).collect::<String>()
            ),
        );
    };
    let local = before + (after - before) / 2;
    let skew_ms = server.unix_millis() - local;
    let skew = Duration::from_millis(skew_ms.unsigned_abs());
    let margin = Duration::from_millis(u64::try_from((after - before) / 2).unwrap_or(0));
    let direction = if skew_ms > 0 { "behind" } else { "ahead of" };
    let detail = format!(
        "this machine's clock is {:.1} s {direction} the server's (±{:.1} s)",
        skew.as_secs_f64(),
        margin.as_secs_f64()
    );
    let fix = "synchronise this machine's clock (`timedatectl set-ntp true`, chrony or ntpd); the server's is the one that decides expiry";
    if skew.saturating_sub(margin) > SKEW_FAIL {
        Finding::fail(
            Check::Clock,
            format!(
                "{detail}: more than {} s, so expiry times the server gives (tokens, workers) are wrong here, and certificates are judged against the wrong time",
                SKEW_FAIL.as_secs()
            ),
            fix,
        )
    } else if skew.saturating_sub(margin) > SKEW_WARN {
        Finding::warn(Check::Clock, detail, fix)
    } else {
        Finding::ok(
            Check::Clock,
            format!(
                "this machine's clock is within {} s of the server's",
                SKEW_WARN.as_secs()
            ),
        )
    }
}

/// The edition and licence. A worker that already has an identity keeps it whatever the
/// licence says (a licence gates joining, never staying), so for it a closed fleet is a warning.
pub(super) fn license(reached: Option<&Reached>, has_identity: bool) -> Finding {
    let Some(preflight) = reached.and_then(|r| r.preflight.as_ref()) else {
        return Finding::skip(
            Check::License,
            "not checked: the server did not answer (see above)",
        );
    };
    let edition = preflight.edition;
    if preflight.joining_open {
        return Finding::ok(
            Check::License,
            format!(
                "the server runs the {edition} edition: external workers may join (seats are counted when one joins)"
            ),
        );
    }
    let (detail, fix) = match edition {
        Edition::Community => (
            "the server runs Community Edition: external workers cannot join",
            "on the server, start the 30-day trial with `muster license trial`, or install a licence with `muster license install FILE`",
        ),
        _ => (
            "the server's licence ended (its grace period too): external workers cannot join",
            "on the server, install a current licence with `muster license install FILE` (`muster license show` says what is in force)",
        ),
    };
    if has_identity {
        Finding::warn(
            Check::License,
            format!("{detail}; this worker already has an identity, which keeps working"),
            fix,
        )
    } else {
        Finding::fail(Check::License, detail, fix)
    }
}

/// Auto-enrollment, for a worker configured with the secret.
pub(super) fn auto_enrollment(
    config: &WorkerConfig,
    reached: Option<&Reached>,
    has_identity: bool,
) -> Finding {
    if config.enrollment_key.is_none() {
        return Finding::skip(
            Check::AutoEnrollment,
            "not used: this worker is not configured with the auto-enrollment secret",
        );
    }
    if config.name.is_none() && !has_identity {
        return Finding::fail(
            Check::AutoEnrollment,
            "the auto-enrollment secret needs a worker name, and none is set",
            "set `--name` or MUSTER_WORKER_NAME to a unique name",
        );
    }
    let Some(preflight) = reached.and_then(|r| r.preflight.as_ref()) else {
        return Finding::skip(
            Check::AutoEnrollment,
            "not checked: the server did not answer (see above)",
        );
    };
    match (preflight.auto_enrollment, has_identity) {
        (true, false) => Finding::ok(
            Check::AutoEnrollment,
            "on (the secret itself is checked when the worker enrolls)",
        ),
        (true, true) => Finding::ok(
            Check::AutoEnrollment,
            "on; this worker has an identity already, so the secret can be removed from its configuration",
        ),
        (false, true) => Finding::warn(
            Check::AutoEnrollment,
            "off on the server; this worker has an identity already and does not need it",
            "remove the secret (`MUSTER_AUTO_ENROLLMENT_KEY`) from this worker's configuration",
        ),
        (false, false) => Finding::fail(
            Check::AutoEnrollment,
            "off on the server (disabled, or its window closed): this worker cannot enroll with the secret",
            "on the server, `muster enrollment enable --generate` (or `--secret-file FILE`), and give this worker the secret it prints; or enroll it with a token (`muster token create`)",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::Verdict;

    fn preflight_at(millis: i64) -> Preflight {
        Preflight {
            version: "0".into(),
            server_time: Timestamp::from_unix_millis(millis).to_rfc3339(),
            edition: Edition::Licensed,
            joining_open: true,
            auto_enrollment: false,
        }
    }

    #[test]
    fn the_clock_row_judges_the_skew_beyond_the_request_time() {
        let base = 1_800_000_000_000;
        let verdict = |server: i64, before: i64, after: i64| {
            clock(&preflight_at(base + server), base + before, base + after).verdict
        };
        assert_eq!(verdict(0, 0, 0), Verdict::Ok);
        assert_eq!(verdict(4_000, 0, 0), Verdict::Ok);
        assert_eq!(verdict(6_000, 0, 0), Verdict::Warn);
        assert_eq!(verdict(-6_000, 0, 0), Verdict::Warn);
        assert_eq!(verdict(61_000, 0, 0), Verdict::Fail);
        assert_eq!(verdict(-61_000, 0, 0), Verdict::Fail);
        // A slow answer widens the margin: 8 s apart within a 10 s round trip proves nothing.
        assert_eq!(verdict(8_000, -5_000, 5_000), Verdict::Ok);
        let row = clock(&preflight_at(base + 90_000), base, base);
        assert!(row.detail.contains("90.0 s behind"), "{}", row.detail);
        assert!(row.fix.is_some_and(|f| f.contains("set-ntp")));
        let garbled = Preflight {
            server_time: "yesterday".into(),
            ..preflight_at(0)
        };
        assert_eq!(clock(&garbled, base, base).verdict, Verdict::Skip);
    }

    #[test]
    fn a_closed_fleet_fails_a_newcomer_and_only_warns_a_worker_with_an_identity() {
        let closed = |edition| Preflight {
            edition,
            joining_open: false,
            ..preflight_at(0)
        };
        let endpoint = Endpoint::new("https://127.0.0.1:1", &Trust::System).unwrap();
        let reached = |preflight| Reached {
            endpoint: endpoint.clone(),
            preflight: Some(preflight),
        };
        let community = reached(closed(Edition::Community));
        let row = license(Some(&community), false);
        assert_eq!(row.verdict, Verdict::Fail);
        assert!(row.fix.as_deref().unwrap().contains("muster license trial"));
        assert_eq!(license(Some(&community), true).verdict, Verdict::Warn);
        let ended = reached(closed(Edition::Licensed));
        assert!(license(Some(&ended), false).detail.contains("ended"));
        assert_eq!(license(None, false).verdict, Verdict::Skip);
    }
}
