//! Lists at fleet scale through the real binaries: `muster workers list` and `muster token list`
//! follow the server's pages and take its filters, `--quiet` prints names only, `--no-headers`
//! drops the header line; the API pages past 5,000 rows.

use std::ffi::OsString;
use std::time::Duration;

use futures_util::StreamExt;

use crate::harness::{STARTUP, Server, ServerOpts, array, block_on};

/// Runs an admin command with small pages (two rows each), so every list spans several.
fn small_pages(server: &Server, args: &[&str]) -> Vec<String> {
    let out = server.cli_env(args, &[("MUSTER_PAGE_SIZE", OsString::from("2"))]);
    assert!(
        out.status.success(),
        "`muster {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn workers_list_follows_pages_and_takes_the_filters() {
    let server = Server::start(ServerOpts {
        builtin_worker: true,
        ..ServerOpts::default()
    });
    for (name, pool) in [
        ("gpu-1", "gpu"),
        ("cpu-1", "cpu"),
        ("gpu-2", "gpu"),
        ("cpu-2", "cpu"),
        ("edge-1", "edge"),
    ] {
        server.cli_ok(&[
            "workers",
            "create",
            name,
            "--label",
            &format!("pool={pool}"),
        ]);
    }
    server.wait_status("builtin", "connected", STARTUP);

    assert_eq!(
        small_pages(&server, &["workers", "list", "--quiet"]),
        ["builtin", "cpu-1", "cpu-2", "edge-1", "gpu-1", "gpu-2"],
        "every page, in name order"
    );
    assert_eq!(
        small_pages(&server, &["workers", "list", "-q", "--label", "pool=gpu"]),
        ["gpu-1", "gpu-2"]
    );
    assert_eq!(
        small_pages(
            &server,
            &["workers", "list", "-q", "--label", "pool", "--name", "2"]
        ),
        ["cpu-2", "gpu-2"]
    );
    assert_eq!(
        small_pages(&server, &["workers", "list", "-q", "--status", "connected"]),
        ["builtin"]
    );
    assert_eq!(
        small_pages(
            &server,
            &["workers", "list", "-q", "--status", "disconnected"]
        )
        .len(),
        5
    );
    let json = server.cli_json(&[
        "workers",
        "list",
        "--status",
        "disconnected",
        "--label",
        "pool=cpu",
    ]);
    let names: Vec<_> = array(json)
        .iter()
        .map(|w| w["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["cpu-1", "cpu-2"]);

    let table = small_pages(&server, &["workers", "list"]);
    assert!(table[0].trim_start().starts_with("NAME"), "{table:?}");
    assert_eq!(table.len(), 7);
    let rows = small_pages(&server, &["workers", "list", "--no-headers"]);
    assert_eq!(rows.len(), 6);
    assert!(rows[0].trim_start().starts_with("builtin"), "{rows:?}");
    assert_eq!(
        small_pages(&server, &["workers", "list", "--name", "nothing-like-it"]),
        ["No workers match."]
    );
    assert!(
        small_pages(
            &server,
            &["workers", "list", "--name", "zzz", "--no-headers"]
        )
        .is_empty()
    );

    let (code, line) = server.cli_err(&["workers", "list", "--status", "asleep"]);
    assert_ne!(code, 0);
    assert!(line.contains("unknown worker status `asleep`"), "{line}");

    // `--sort` pages in the server's order: reverse names, and newest first (created one
    // after the other above, the built-in worker first of all).
    assert_eq!(
        small_pages(&server, &["workers", "list", "-q", "--sort=-name"]),
        ["gpu-2", "gpu-1", "edge-1", "cpu-2", "cpu-1", "builtin"]
    );
    assert_eq!(
        small_pages(
            &server,
            &[
                "workers", "list", "-q", "--sort", "-created", "--label", "pool"
            ]
        ),
        ["edge-1", "cpu-2", "gpu-2", "cpu-1", "gpu-1"]
    );
    let (code, line) = server.cli_err(&["workers", "list", "--sort", "status"]);
    assert_ne!(code, 0);
    assert!(line.contains("unknown worker order `status`"), "{line}");
}

#[test]
fn token_list_follows_pages_and_filters_by_state() {
    let server = Server::start(ServerOpts::default());
    for name in ["t1", "t2", "t3"] {
        server.create_token(name, "1h");
    }
    server.cli_ok(&["token", "revoke", "t2"]);
    assert_eq!(
        small_pages(&server, &["token", "list", "-q"]),
        ["t1", "t2", "t3"]
    );
    assert_eq!(
        small_pages(&server, &["token", "list", "-q", "--state", "unused"]),
        ["t1", "t3"]
    );
    let rows = small_pages(
        &server,
        &["token", "list", "--no-headers", "--state", "revoked"],
    );
    assert_eq!(rows.len(), 1);
    assert!(rows[0].trim_start().starts_with("t2"), "{rows:?}");
}

/// 5,001 workers: more than the largest page, so the CLI must follow the `Link` header to list
/// them all, and the API refuses a page larger than 5,000.
#[test]
fn workers_list_pages_past_five_thousand() {
    const FLEET: usize = 5_001;
    let server = Server::start(ServerOpts::default());
    let (client, base, token) = (server.http(), server.url(), server.admin_token());
    block_on(async move {
        let names: Vec<String> = (0..FLEET).map(|i| format!("w-{i:05}")).collect();
        let mut pending = futures_util::stream::iter(names.into_iter().map(|name| {
            let (client, base, token) = (client.clone(), base.clone(), token.clone());
            async move {
                let response = client
                    .post(format!("{base}/api/v1/workers"))
                    .bearer_auth(&token)
                    .json(&serde_json::json!({ "name": name }))
                    .timeout(Duration::from_secs(60))
                    .send()
                    .await
                    .expect("create a worker");
                assert_eq!(response.status(), 201, "{name}");
            }
        }))
        .buffer_unordered(16);
        while pending.next().await.is_some() {}
    });
    let out = server.cli_ok(&["workers", "list", "--quiet"]);
    let names: Vec<&str> = out.lines().collect();
    assert_eq!(names.len(), FLEET, "every worker, across the pages");
    assert_eq!(names[0], "w-00000");
    assert_eq!(names[FLEET - 1], "w-05000");
    assert!(
        names.windows(2).all(|w| w[0] < w[1]),
        "in name order, each once"
    );

    let (status, body) = block_on({
        let (client, base, token) = (server.http(), server.url(), server.admin_token());
        async move {
            let r = client
                .get(format!("{base}/api/v1/workers?limit=5001"))
                .bearer_auth(&token)
                .send()
                .await
                .expect("get");
            (r.status().as_u16(), r.text().await.expect("body"))
        }
    });
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("from 1 to 5000"), "{body}");
}
