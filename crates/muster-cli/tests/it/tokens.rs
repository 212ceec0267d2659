//! `muster token create|list|show|revoke` against a real server, and the audit trail they leave.
//!
//! Just over 400 lines: six tests of one command group, each a full scenario against real
//! processes; the helpers they share are in `harness`.

use std::time::Duration;

use time::OffsetDateTime;

use crate::harness::{
    STARTUP, Server, assert_has_keys, assert_utc_time, find, parse_time, snapshot_settings,
};

const TOKEN_FIELDS: &[&str] = &[
    "name",
    "state",
    "created_at",
    "expires_at",
    "bound_machine",
    "enrolled_at",
    "revoked_at",
];

/// The secret half of `NAME.SECRET`.
fn secret_of(token: &str) -> &str {
    token.split_once('.').expect("NAME.SECRET").1
}

/// The worker command line `muster token create` prints.
fn worker_command_line(human: &str) -> &str {
    human
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("muster worker "))
        .unwrap_or_else(|| panic!("no worker command line in:\n{human}"))
}

#[test]
fn token_create_list_show_revoke() {
    let server = Server::start_default();

    // create --json prints the plaintext once, with its deadline.
    let before = OffsetDateTime::now_utc();
    let (token, created) = server.create_token("ingest-01", "1h");
    assert_has_keys(&created, &["name", "token", "expires_at"]);
    assert_eq!(created["name"], "ingest-01");
    let secret = secret_of(&token);
    assert!(token.starts_with("ingest-01."), "{token}");
    // At least 256 random bits: 64 hex digits or 43 base64url characters.
    let hex = secret.len() >= 64 && secret.bytes().all(|b| b.is_ascii_hexdigit());
    let b64 = secret.len() >= 43
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    assert!(
        hex || b64,
        "the secret is too short or oddly encoded: {secret}"
    );
    let expires = assert_utc_time(&created, "expires_at");
    let lifetime = expires - before;
    assert!(
        lifetime > time::Duration::minutes(59) && lifetime <= time::Duration::minutes(61),
        "--duration 1h gave a lifetime of {lifetime}"
    );

    // The human output prints the token and a worker command line for this server.
    let human = server.cli_ok(&["token", "create", "ingest-02", "--duration", "30m"]);
    let command = worker_command_line(&human);
    assert!(
        command.contains(&format!("--url {}", server.url())),
        "{command}"
    );
    assert!(command.contains("--token ingest-02."), "{command}");
    assert!(
        command.contains(&format!("--ca-fingerprint {}", server.fingerprint())),
        "{command}"
    );

    // list --json: an array of tokens with the documented fields, secrets nowhere.
    let list = server.tokens();
    assert_eq!(list.len(), 2, "{list:#?}");
    let listed = find(&list, "ingest-01").expect("ingest-01 listed");
    assert_has_keys(listed, TOKEN_FIELDS);
    assert_eq!(listed["state"], "unused");
    assert_eq!(listed["expires_at"], created["expires_at"]);
    assert!(listed["bound_machine"].is_null(), "{listed:#}");
    assert!(listed["enrolled_at"].is_null(), "{listed:#}");
    assert!(listed["revoked_at"].is_null(), "{listed:#}");
    let created_at = assert_utc_time(listed, "created_at");
    assert!(created_at < expires, "created_at is after expires_at");

    // The human table has the documented columns.
    let table = server.cli_ok(&["token", "list"]);
    let header = table.lines().next().unwrap_or_default();
    for column in ["NAME", "STATE", "EXPIRES", "BOUND MACHINE"] {
        assert!(header.contains(column), "no {column} column in:\n{table}");
    }
    assert!(
        table.contains("ingest-01") && table.contains("unused"),
        "{table}"
    );

    // show --json: the same record.
    let shown = server.token("ingest-01");
    assert_has_keys(&shown, TOKEN_FIELDS);
    assert_eq!(&shown, listed);

    // unused → revoked.
    let revoked = server.cli_json(&["token", "revoke", "ingest-01"]);
    assert_eq!(revoked["state"], "revoked");
    let revoked_at = assert_utc_time(&revoked, "revoked_at");
    assert!(revoked_at >= created_at);
    assert_eq!(server.token("ingest-01")["state"], "revoked");

    // Revoking again succeeds and changes nothing.
    let again = server.cli_json(&["token", "revoke", "ingest-01"]);
    assert_eq!(again["state"], "revoked");
    assert_eq!(
        again["revoked_at"], revoked["revoked_at"],
        "revoked_at moved"
    );
    let human_again = server.cli_ok(&["token", "revoke", "ingest-01"]);
    assert!(human_again.contains("ingest-01"), "{human_again}");

    // The other token is untouched.
    assert_eq!(server.token("ingest-02")["state"], "unused");

    // Nothing anywhere shows the secret again.
    for args in [
        &["token", "list"][..],
        &["token", "list", "--json"],
        &["token", "show", "ingest-01"],
        &["token", "show", "ingest-01", "--json"],
    ] {
        let out = server.cli_ok(args);
        assert!(
            !out.contains(secret),
            "`muster {}` shows the token's secret",
            args.join(" ")
        );
    }
}

#[test]
fn the_printed_worker_command_line_starts_a_worker() {
    let server = Server::start_default();
    let human = server.cli_ok(&["token", "create", "pasted", "--duration", "1h30m"]);
    let line = worker_command_line(&human);
    let args: Vec<&str> = line.split_whitespace().skip(2).collect();
    let mut builder = server.worker("pasted").no_url().no_fingerprint();
    for arg in &args {
        builder = builder.arg(arg);
    }
    let mut worker = builder.start();
    let w = server.wait_status("pasted", "connected", STARTUP);
    worker.assert_running();
    assert_eq!(w["enrolled_via"], "token");

    // 1h30m is ninety minutes from creation.
    let t = server.token("pasted");
    let lifetime = assert_utc_time(&t, "expires_at") - assert_utc_time(&t, "created_at");
    assert_eq!(lifetime, time::Duration::minutes(90), "{t:#}");
}

#[test]
fn a_token_past_its_deadline_is_expired_untouched_and_cannot_be_revoked() {
    let server = Server::start_default();
    let (_, created) = server.create_token("short", "2s");
    let expires = parse_time(created["expires_at"].as_str().expect("expires_at"));
    assert_eq!(server.token("short")["state"], "unused");

    // Nothing touches the token; the clock alone makes it expired.
    let wait = expires - OffsetDateTime::now_utc() + time::Duration::milliseconds(300);
    if wait.is_positive() {
        std::thread::sleep(Duration::try_from(wait).expect("positive"));
    }
    let listed = server.tokens();
    let token = find(&listed, "short").expect("listed");
    assert_eq!(token["state"], "expired", "{token:#}");
    assert!(token["revoked_at"].is_null());
    let table = server.cli_ok(&["token", "list"]);
    assert!(table.contains("expired"), "{table}");

    // An expired token is terminal: revoking it fails, clearly, and changes nothing.
    let (code, line) = server.cli_err(&["token", "revoke", "short"]);
    assert_eq!(code, 1, "{line}");
    snapshot_settings().bind(|| insta::assert_snapshot!(line));
    let after = server.token("short");
    assert_eq!(after["state"], "expired");
    assert!(after["revoked_at"].is_null(), "{after:#}");
    let revokes = server
        .audit()
        .into_iter()
        .filter(|e| e["action"] == "token.revoke")
        .count();
    assert_eq!(revokes, 0, "a refused revoke must not be recorded as done");
}

#[test]
fn bad_input_is_refused_with_one_line_and_changes_nothing() {
    let server = Server::start_default();
    server.create_token("existing", "1h");
    let tokens_before = server.tokens();
    let audit_before = server.audit();

    let cases: &[(&[&str], &str)] = &[
        // Names: 1–63 of a-z 0-9 - _, starting with a letter or digit.
        (&["token", "create", "Bad-Name", "--duration", "1h"], "name"),
        (
            &["token", "create", "has space", "--duration", "1h"],
            "name",
        ),
        (&["token", "create", "a.b", "--duration", "1h"], "name"),
        (&["token", "create", "_under", "--duration", "1h"], "name"),
        (
            &["token", "create", &"x".repeat(64), "--duration", "1h"],
            "63",
        ),
        // Durations: positive, with a unit.
        (&["token", "create", "t1", "--duration", "0s"], "positive"),
        (&["token", "create", "t1", "--duration", "soon"], "soon"),
        (&["token", "create", "t1", "--duration", "30"], "30"),
        (&["token", "create", "t1", "--duration", ""], "duration"),
        (&["token", "create", "t1", "--duration=-5m"], "-5m"),
        // Labels: key=value with a restricted key alphabet.
        (
            &[
                "token",
                "create",
                "t1",
                "--duration",
                "1h",
                "--label",
                "novalue",
            ],
            "novalue",
        ),
        (
            &[
                "token",
                "create",
                "t1",
                "--duration",
                "1h",
                "--label",
                "Bad Key=v",
            ],
            "label",
        ),
        (
            &["token", "create", "t1", "--duration", "1h", "--label", "=v"],
            "label",
        ),
        // Token names are never reused.
        (
            &["token", "create", "existing", "--duration", "1h"],
            "existing",
        ),
        // Unknown tokens.
        (&["token", "show", "nope"], "nope"),
        (&["token", "revoke", "nope"], "nope"),
        (&["token", "show", "Not_Valid"], "name"),
    ];
    for (args, mention) in cases {
        let out = server.cli(args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let code = out.status.code().unwrap_or(-1);
        assert_ne!(code, 0, "`muster {}` should fail", args.join(" "));
        // clap's own usage errors are several lines; ours must be exactly one.
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "`muster {}` should print exactly one line, got:\n{stderr}",
            args.join(" ")
        );
        let line = stderr.trim_end();
        assert!(
            line.starts_with("error: ") && line.contains("; hint: "),
            "`muster {}`: not `error: …; hint: …`: {line}",
            args.join(" ")
        );
        assert!(
            line.contains(mention),
            "`muster {}`: the error should mention `{mention}`: {line}",
            args.join(" ")
        );
        assert!(
            out.stdout.is_empty(),
            "`muster {}` printed on stdout: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout)
        );
    }

    assert_eq!(
        server.tokens(),
        tokens_before,
        "bad input changed the tokens"
    );
    assert_eq!(server.audit(), audit_before, "bad input left audit records");
}

#[test]
fn the_token_secret_never_shows_in_logs_audit_or_listings() {
    let server = Server::start(crate::harness::ServerOpts {
        // The most talkative log level muster itself has.
        env: vec![("MUSTER_LOG".into(), "debug".into())],
        ..Default::default()
    });
    let (token, _) = server.create_token("quiet", "1h");
    let secret = secret_of(&token).to_owned();

    // Drive the secret through every server path: enrollment, a refused second machine, a
    // connection, a revocation.
    let mut worker = server.worker("quiet").token(&token).start();
    server.wait_status("quiet", "connected", STARTUP);
    let mut other = server.worker("quiet-other").token(&token).start();
    assert_eq!(other.wait_exit(STARTUP), 4, "{}", other.logs.dump());
    let api_key = worker.identity()["api_key"]
        .as_str()
        .expect("api_key cached")
        .to_owned();
    server.cli_ok(&["token", "revoke", "quiet"]);
    assert_eq!(worker.wait_exit(STARTUP), 5);

    let audit_json = server.cli_ok(&["audit", "--json", "--limit", "1000"]);
    let audit_table = server.cli_ok(&["audit", "--limit", "1000"]);
    let listings = [
        server.cli_ok(&["token", "list", "--json"]),
        server.cli_ok(&["token", "list"]),
        server.cli_ok(&["token", "show", "quiet", "--json"]),
        server.cli_ok(&["token", "show", "quiet"]),
        server.cli_ok(&["workers", "list", "--json"]),
        server.cli_ok(&["workers", "show", "quiet", "--json"]),
    ];
    let logs = server.all_output();
    assert!(
        logs.contains("enrolled"),
        "the server logged nothing about the enrollment; is the log captured?\n{logs}"
    );
    // The workers do not log their credentials either.
    let worker_logs = [&worker, &other].map(|w| format!("{}{}", w.logs.stdout(), w.stderr()));
    for (what, text) in [
        ("server log", &logs),
        ("audit --json", &audit_json),
        ("audit", &audit_table),
    ]
    .into_iter()
    .chain(listings.iter().map(|l| ("a listing", l)))
    .chain(worker_logs.iter().map(|l| ("a worker's log", l)))
    {
        assert!(
            !text.contains(&secret),
            "the token's secret appears in the {what}:\n{text}"
        );
        assert!(
            !text.contains(&api_key),
            "the worker's API key appears in the {what}:\n{text}"
        );
    }
    assert!(audit_json.contains("enroll.token"), "{audit_json}");
}

#[test]
fn audit_records_token_create_and_revoke_with_actor_time_and_address() {
    let server = Server::start_default();
    let before = OffsetDateTime::now_utc() - time::Duration::seconds(1);
    server.create_token("audited", "1h");
    server.cli_ok(&["token", "revoke", "audited"]);
    server.cli_ok(&["token", "revoke", "audited"]);
    let after = OffsetDateTime::now_utc() + time::Duration::seconds(1);

    let audit = server.audit();
    let of = |action: &str| -> Vec<&serde_json::Value> {
        audit
            .iter()
            .filter(|e| e["action"] == action && e["target"] == "audited")
            .collect()
    };
    let creates = of("token.create");
    assert_eq!(creates.len(), 1, "{audit:#?}");
    let revokes = of("token.revoke");
    assert_eq!(revokes.len(), 2, "both revokes are recorded: {audit:#?}");
    for entry in creates.iter().chain(revokes.iter()) {
        assert_has_keys(
            entry,
            &["at", "actor", "action", "target", "remote_addr", "outcome"],
        );
        assert_eq!(entry["actor"], "admin", "{entry:#}");
        assert_eq!(entry["remote_addr"], "127.0.0.1", "{entry:#}");
        assert_eq!(entry["outcome"], "ok", "{entry:#}");
        let at = assert_utc_time(entry, "at");
        assert!(at >= before && at <= after, "`at` {at} is not now");
    }
    // Newest first; the second revoke says it changed nothing.
    assert!(
        revokes[0]["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("already revoked"),
        "{:#}",
        revokes[0]
    );

    // Filtering by action, and the human table.
    let only_create =
        crate::harness::array(server.cli_json(&["audit", "--action", "token.create"]));
    assert!(only_create.iter().all(|e| e["action"] == "token.create"));
    assert_eq!(only_create.len(), 1);
    let table = server.cli_ok(&["audit"]);
    for word in [
        "ACTOR",
        "ACTION",
        "FROM",
        "token.create",
        "token.revoke",
        "127.0.0.1",
    ] {
        assert!(table.contains(word), "no `{word}` in:\n{table}");
    }
}
