//! Every refusal an admin command makes before it reaches a server: the exit code and the line.

use clap::Parser;

use super::run;
use crate::cli::Cli;
use crate::error::line;

/// Runs `muster ARGS` and describes how it failed, as the user sees it.
async fn refusal(args: &[&str]) -> String {
    let cli = Cli::try_parse_from(std::iter::once("muster").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("`{}` does not parse: {e}", args.join(" ")));
    match run(cli).await {
        Ok(()) => panic!("`{}` succeeded", args.join(" ")),
        Err(error) => format!(
            "muster {}\n  (exit {}) {}",
            args.join(" "),
            error.exit_code(),
            line(
                &error.message().unwrap_or_default(),
                error.hint().as_deref()
            )
        ),
    }
}

#[tokio::test]
async fn refusals_before_any_request_read_as_one_line_with_a_hint() {
    let dir = tempfile::Builder::new()
        .prefix("muster-cli-")
        .tempdir()
        .unwrap();
    let empty = dir.path().join("empty");
    let no_token = dir.path().join("no-token");
    std::fs::create_dir_all(&empty).unwrap();
    std::fs::create_dir_all(&no_token).unwrap();
    std::fs::write(
        no_token.join(muster_proto::local::SERVER_FILE),
        r#"{"url":"https://127.0.0.1:7443","listen":"127.0.0.1:7443","pid":1,"tls_fingerprint":null,"cert_file":null,"started_at":"2026-03-04T12:00:00Z","version":"0"}"#,
    )
    .unwrap();
    let short_secret = dir.path().join("short-secret");
    std::fs::write(&short_secret, format!("{}\n", "s".repeat(31))).unwrap();
    let (empty, no_token, short_secret) = (
        empty.to_str().unwrap(),
        no_token.to_str().unwrap(),
        short_secret.to_str().unwrap(),
    );
    let missing = format!("{}/missing", dir.path().display());

    let cases: [&[&str]; 15] = [
        &["token", "create", "Bad Name", "--duration", "1h"],
        &["token", "create", "ok", "--duration", "5x"],
        &[
            "token",
            "create",
            "ok",
            "--duration",
            "1h",
            "--label",
            "nope",
        ],
        &["workers", "create", "Bad!"],
        &["job", "run", "--timeout", "5x", "--", "true"],
        &["job", "run", "--env", "NOPE", "--", "true"],
        &["enrollment", "enable", "--for", "5x"],
        &["enrollment", "enable", "--secret-file", short_secret],
        &["enrollment", "enable", "--secret-file", &missing],
        &["enrollment", "rotate"],
        &["serve", "--heartbeat", "5s", "--idle-timeout", "5s"],
        &["token", "list", "--url", "https://muster.example:7443"],
        &[
            "token",
            "list",
            "--ca-fingerprint",
            "sha256:zz",
            "--data-dir",
            empty,
        ],
        &["token", "list", "--data-dir", empty],
        &["token", "list", "--data-dir", no_token],
    ];
    let mut lines = Vec::new();
    for args in cases {
        lines.push(refusal(args).await);
    }
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(r"/\S*muster-cli-[A-Za-z0-9]+", "[TEMP_DIR]");
    settings.bind(|| insta::assert_snapshot!(lines.join("\n")));
}
