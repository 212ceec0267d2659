//! `--json` for scripts: `job logs --json` prints JSON lines (each line of output with its
//! stream and time, then the end), `job run --json` keeps the output in the job it prints, and a
//! failure is a JSON error object on stdout with the same exit code as without `--json`.

use std::process::Output;

use serde_json::Value;

use crate::harness::{Server, ServerOpts};

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

/// `(stream, line, partial)` of each output line object, and checks each has its time.
fn lines(objects: &[Value]) -> Vec<(String, String, bool)> {
    objects
        .iter()
        .map(|l| {
            let at = l["at"].as_str().unwrap_or_else(|| panic!("no time: {l}"));
            assert!(at.ends_with('Z'), "UTC: {at}");
            (
                l["stream"].as_str().expect("stream").to_owned(),
                l["line"].as_str().expect("line").to_owned(),
                l["partial"].as_bool().unwrap_or(false),
            )
        })
        .collect()
}

#[test]
fn job_logs_are_json_lines_job_run_keeps_the_output_and_failures_are_json_objects() {
    let server = Server::start(ServerOpts {
        builtin_worker: true,
        ..ServerOpts::default()
    });
    let script = "echo one; echo two >&2; printf 'thr'; sleep 0.2; printf 'ee'; exit 3";
    let out = server.cli(&[
        "job", "run", "--json", "--worker", "builtin", "--", "sh", "-c", script,
    ]);
    assert_eq!(code(&out), 3, "the command's exit code: {out:?}");
    let ended: Value = serde_json::from_slice(&out.stdout).expect("one JSON document on stdout");
    assert_eq!(ended["exit_code"], 3, "{ended:#}");
    assert_eq!(ended["state"], "failed");
    let mut kept = lines(ended["output"].as_array().expect("output"));
    // The streams arrive in their own order: compare each stream's lines.
    kept.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        kept,
        [
            ("stderr".into(), "two".into(), false),
            ("stdout".into(), "one".into(), false),
            ("stdout".into(), "three".into(), true),
        ]
    );
    let id = ended["id"].as_str().expect("id").to_owned();

    let logs = server.cli(&["job", "logs", "--json", &id]);
    assert_eq!(code(&logs), 0, "{logs:?}");
    let records: Vec<Value> = String::from_utf8_lossy(&logs.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let (end, output) = records.split_last().expect("records");
    assert_eq!(end["type"], "end", "{end}");
    assert_eq!(end["exit"], 3, "{end}");
    assert_eq!(end["job"]["id"], id.as_str());
    assert!(output.iter().all(|r| r["type"] == "output"), "{records:#?}");
    let mut logged = lines(output);
    logged.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(logged, kept, "the same lines as `job run --json` kept");

    // Failures: the same exit code, and a JSON object on stdout naming the error.
    let error = |args: &[&str], exit: i32, code_word: &str| {
        let out = server.cli(args);
        assert_eq!(code(&out), exit, "`muster {}`: {out:?}", args.join(" "));
        let object: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "`muster {}` printed no JSON on stdout ({e}): {out:?}",
                args.join(" ")
            )
        });
        assert_eq!(object["error"]["code"], code_word, "{object:#}");
        assert!(object["error"]["message"].is_string(), "{object:#}");
        assert!(object["error"]["hint"].is_string(), "{object:#}");
        // People still read the line on stderr.
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("error: "),
            "{out:?}"
        );
    };
    // Refused by the server: its code.
    error(
        &["job", "show", "--json", "ffffffffffffffff"],
        1,
        "not_found",
    );
    error(&["workers", "show", "nobody", "--json"], 1, "not_found");
    // Refused before anything is sent, by muster or by the command-line parser.
    error(
        &["job", "run", "--json", "--timeout", "soon", "--", "true"],
        2,
        "usage",
    );
    error(&["token", "create", "t-1", "--json"], 2, "usage");
    // No server there.
    let elsewhere = server.path("no-server-here");
    let out = crate::harness::muster(&server.path("home"))
        .args(["token", "list", "--json", "--data-dir"])
        .arg(&elsewhere)
        .output()
        .expect("run muster");
    assert_eq!(code(&out), 1, "{out:?}");
    let object: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(object["error"]["code"], "no_local_server", "{object:#}");
    // Without `--json`, stdout stays empty.
    let plain = server.cli(&["job", "show", "ffffffffffffffff"]);
    assert_eq!(code(&plain), 1);
    assert!(plain.stdout.is_empty(), "{plain:?}");
}
