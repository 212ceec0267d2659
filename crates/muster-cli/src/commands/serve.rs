//! `muster serve`.

use muster_server::diag::DiagListen;
use muster_server::{ServeConfig, TlsMode};

use crate::cli::{ServeArgs, default_data_dir};
use crate::error::CliError;

/// Checks `--public-url`: an `http(s)://host[:port]` base URL, without a query or credentials.
fn public_url(given: &str) -> Result<String, CliError> {
    muster_client::normalize_url(given).map_err(|_| {
        CliError::usage(
            format!("`--public-url` `{given}` is not a server URL"),
            "give the URL others reach this server by, like `https://muster.example.com:7443`",
        )
    })
}

pub async fn run(args: ServeArgs) -> Result<(), CliError> {
    let mut config = ServeConfig::new(args.data_dir.unwrap_or_else(default_data_dir));
    config.listen = args.listen;
    config.public_url = args
        .public_url
        .as_deref()
        .filter(|u| !u.is_empty())
        .map(public_url)
        .transpose()?;
    config.tls = match (args.no_tls, args.tls_cert, args.tls_key) {
        (true, _, _) => TlsMode::Disabled,
        (false, Some(cert), Some(key)) => TlsMode::Files { cert, key },
        _ => TlsMode::SelfSigned,
    };
    config.allow_plaintext = args.allow_plaintext;
    config.database_url = args.database_url;
    config.builtin_worker = !args.no_builtin_worker;
    config.heartbeat = args.heartbeat;
    config.idle_timeout = args.idle_timeout;
    config.reconnect_spread = args.reconnect_spread;
    config.job_grace = args.job_grace;
    config.audit_retention = args.audit_retention;
    config.webhook_first_retry = args.webhook_first_retry;
    config.job_retention = args.job_retention;
    config.license_issuer_keys = args.license_issuer_keys;
    config.diag_listen = args
        .diag_listen
        .as_deref()
        .map_or(DiagListen::Default, DiagListen::parse);
    if config.idle_timeout <= config.heartbeat {
        return Err(CliError::usage(
            "`--idle-timeout` must be longer than `--heartbeat`",
            "use an idle timeout of about three heartbeats",
        ));
    }
    let data_dir = config.data_dir.clone();
    let public = config.public_url.clone();
    muster_server::run(config, shutdown_signal(), |started| {
        println!("muster {} listening on {}", crate::VERSION, started.url);
        if let Some(public) = &public {
            println!("public URL: {public} (named in every command printed for another machine)");
        }
        println!("data dir: {}", data_dir.display());
        if let (Some(fp), Some(cert)) = (&started.tls_fingerprint, &started.cert_file) {
            let origin = if started.generated_cert {
                "self-signed, new"
            } else {
                ""
            };
            println!(
                "TLS certificate: {cert} {}",
                if origin.is_empty() {
                    String::new()
                } else {
                    format!("({origin})")
                }
            );
            println!("TLS fingerprint: {fp}");
        }
        if let Some(diag) = &started.diag_url {
            println!("diagnostics: {diag}/metrics, {diag}/readyz, {diag}/livez");
        }
        println!(
            "admin credential: {} (readable by its owner only)",
            started.admin_token_file
        );
        println!(
            "web UI: {}/ (sign in as `{}` with the password in {}{})",
            started.url,
            started.ui_user,
            started.admin_password_file,
            if started.generated_password {
                ", new"
            } else {
                ""
            }
        );
    })
    .await
    .map_err(|e| CliError::Serve {
        message: e.to_string().replace('\n', " "),
        hint: e.hint().map(str::to_owned),
    })
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
