//! The reference pages in `docs/reference/`, generated from the code so they cannot drift: every
//! command and flag with its environment variable and default from the clap definition
//! (`cli.md`), and every route of the REST API from the server's OpenAPI description
//! (`api.md`). A test compares each committed page with what the code generates now; run it
//! with `MUSTER_UPDATE_REFERENCE=1` to write them afresh.

use std::collections::BTreeMap;
use std::fmt::Write;

use clap::Command;
use serde_json::Value;

const GENERATED: &str = "<!-- Generated from the code by `cargo test -p muster-cli --bin muster reference` \
(`MUSTER_UPDATE_REFERENCE=1` rewrites it). Do not edit by hand. -->";

/// `docs/reference/cli.md`: every command, its flags, their environment variables and defaults.
pub fn cli(mut root: Command) -> String {
    root.build();
    let mut out = String::new();
    let _ = writeln!(out, "{GENERATED}\n");
    out.push_str("# `muster` command-line reference\n\n");
    out.push_str(
        "Every command and flag of `muster`, as `muster COMMAND --help` prints them, with the \
         environment variable that sets each flag and its default. Exit codes are at the end; \
         [the REST API reference](api.md) lists the routes these commands call.\n\n",
    );
    let mut commands = Vec::new();
    walk(&root, &mut commands);
    out.push_str("## Commands\n\n");
    for (path, cmd) in &commands {
        let about = one_line(&cmd.get_about().map(ToString::to_string).unwrap_or_default());
        let _ = writeln!(out, "- [`{path}`](#{}): {about}", anchor(path));
    }
    out.push('\n');
    let mut env: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (path, cmd) in &commands {
        command_section(&mut out, path, cmd, &mut env);
    }
    out.push_str("## Environment variables\n\n| variable | sets |\n|---|---|\n");
    for (var, flags) in &env {
        let _ = writeln!(out, "| `{var}` | {} |", flags.join(", "));
    }
    // Read by the code directly, not through a flag.
    out.push_str(
        "| `MUSTER_LOG` (or `RUST_LOG`) | which log lines are written, in `tracing`'s filter syntax \
         (`debug`, `info,muster_server=debug`) |\n\
         | `MUSTER_PAGE_SIZE` | the page size `workers list` and `token list` fetch with (default \
         500, at most 5,000) |\n",
    );
    out.push('\n');
    out.push_str(EXIT_CODES);
    out
}

/// Exit codes are decided in `error.rs` (admin commands, `job run`) and `muster_worker`'s
/// `classify.rs` (the worker); the tests there pin each one.
const EXIT_CODES: &str = "## Exit codes

Admin commands: `0` done, `1` failed (the server refused, could not be reached, or something \
the command needs is missing), `2` usage (the command line is wrong, a URL or trust flag is \
malformed; nothing was sent). With `--json`, a failure is also printed on stdout as \
`{\"error\": {\"code\", \"message\", \"hint\"}}`: `code` is the server's error code when it \
refused, else one of `usage`, `unreachable`, `untrusted_certificate`, `bad_url`, `protocol`, \
`no_local_server`, `failed`, `stopped_following`.

`muster job run`: the command's own exit code, or `124` timed out, `125` no matching worker in \
time, `127` could not be started, `130` cancelled (or a second Ctrl-C stopped following it), \
`128+N` killed by signal N, `255` lost (its worker went away and did not come back).

`muster worker`: `0` stopped by SIGINT/SIGTERM, `1` the channel closed with `--no-reconnect`, \
`2` configuration error, `3` enrollment refused, `4` identity mismatch, `5` revoked, `6` \
expired, `7` the server's certificate is not trusted, `8` suspended (its identity was used from \
two places at once).
";

/// Every visible command under `cmd`, depth first, with its full name (`muster token create`).
fn walk<'a>(cmd: &'a Command, out: &mut Vec<(String, &'a Command)>) {
    // `help` is clap's own, the same in every group.
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        let path = sub
            .get_bin_name()
            .map_or_else(|| format!("muster {}", sub.get_name()), str::to_owned);
        if sub.has_subcommands() {
            walk(sub, out);
        } else {
            out.push((path, sub));
        }
    }
}

fn command_section(
    out: &mut String,
    path: &str,
    cmd: &Command,
    env: &mut BTreeMap<String, Vec<String>>,
) {
    let _ = writeln!(out, "## `{path}`\n");
    let about = cmd
        .get_long_about()
        .or_else(|| cmd.get_about())
        .map(ToString::to_string)
        .unwrap_or_default();
    if !about.is_empty() {
        let _ = writeln!(out, "{}\n", about.trim());
    }
    let usage = cmd.clone().render_usage().to_string();
    let usage = usage.trim_start_matches("Usage: ").trim();
    let _ = writeln!(out, "```\n{usage}\n```\n");
    let args: Vec<_> = cmd
        .get_arguments()
        .filter(|a| !a.is_hide_set() && !matches!(a.get_id().as_str(), "help" | "version"))
        .collect();
    if args.is_empty() {
        return;
    }
    out.push_str("| argument | env | default | meaning |\n|---|---|---|---|\n");
    for arg in args {
        let shown = match arg.get_long() {
            Some(long) => {
                let short = arg
                    .get_short()
                    .map(|s| format!("-{s}, "))
                    .unwrap_or_default();
                let takes_value = arg.get_num_args().is_some_and(|n| n.takes_values())
                    && !matches!(
                        arg.get_action(),
                        clap::ArgAction::SetTrue | clap::ArgAction::SetFalse
                    );
                let value = if takes_value {
                    let names = arg
                        .get_value_names()
                        .map(|v| v.iter().map(ToString::to_string).collect::<Vec<_>>())
                        .unwrap_or_else(|| vec![arg.get_id().as_str().to_uppercase()]);
                    format!(" <{}>", names.join("> <"))
                } else {
                    String::new()
                };
                format!("`{short}--{long}{value}`")
            }
            None => {
                let name = arg
                    .get_value_names()
                    .and_then(|v| v.first().map(ToString::to_string))
                    .unwrap_or_else(|| arg.get_id().as_str().to_uppercase());
                format!("`{name}`")
            }
        };
        let var = arg.get_env().map(|e| e.to_string_lossy().into_owned());
        if let Some(var) = &var {
            let flag = arg
                .get_long()
                .map_or_else(|| shown.clone(), |l| format!("`--{l}`"));
            let entry = env.entry(var.clone()).or_default();
            if !entry.contains(&flag) {
                entry.push(flag);
            }
        }
        let switch = matches!(
            arg.get_action(),
            clap::ArgAction::SetTrue | clap::ArgAction::SetFalse
        );
        let default = if switch {
            String::new()
        } else {
            arg.get_default_values()
                .iter()
                .map(|v| v.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let help = arg
            .get_long_help()
            .or_else(|| arg.get_help())
            .map(ToString::to_string)
            .unwrap_or_default();
        let possible: Vec<String> = arg
            .get_possible_values()
            .iter()
            .filter(|v| !v.is_hide_set())
            .map(|v| format!("`{}`", v.get_name()))
            .collect();
        let mut meaning = one_line(&help);
        if !possible.is_empty() && !matches!(arg.get_action(), clap::ArgAction::SetTrue) {
            let _ = write!(meaning, " (one of {})", possible.join(", "));
        }
        let _ = writeln!(
            out,
            "| {shown} | {} | {} | {} |",
            var.map_or_else(String::new, |v| format!("`{v}`")),
            if default.is_empty() {
                String::new()
            } else {
                format!("`{default}`")
            },
            cell(&meaning)
        );
    }
    out.push('\n');
}

/// `docs/reference/api.md`: every route of the REST API, from the OpenAPI description.
pub fn api(doc: &Value) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{GENERATED}\n");
    out.push_str("# REST API reference\n\n");
    out.push_str(
        "Every route of the REST API under `/api/v1/`, from the OpenAPI 3.1 description the \
         server serves at `GET /api/v1/openapi.json` (which also has every request and response \
         body's schema). Admin routes take the admin token as a bearer token \
         (`Authorization: Bearer …`). Errors are `{\"error\": {\"code\", \"message\", \"hint\"}}`.\n\n",
    );
    out.push_str(
        "| method | path | auth | what | parameters | body | answer | statuses |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    let Some(paths) = doc["paths"].as_object() else {
        return out;
    };
    for (path, item) in paths {
        for method in ["get", "put", "post", "delete", "patch"] {
            let op = &item[method];
            if op.is_null() {
                continue;
            }
            let auth = if op["security"]
                .as_array()
                .is_some_and(|s| s.iter().any(|r| r.get("admin").is_some()))
            {
                "admin"
            } else {
                "none"
            };
            let what = op["summary"]
                .as_str()
                .or_else(|| op["description"].as_str())
                .unwrap_or_default();
            let params: Vec<String> = op["parameters"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .map(|p| {
                            let name = p["name"].as_str().unwrap_or_default();
                            let place = p["in"].as_str().unwrap_or_default();
                            let required = if p["required"] == true { "" } else { "?" };
                            match p["description"].as_str() {
                                Some(d) => format!("`{name}{required}` ({place}): {d}"),
                                None => format!("`{name}{required}` ({place})"),
                            }
                        })
                        .collect()
                })
                .unwrap_or_default();
            let answers: Vec<String> = op["responses"]
                .as_object()
                .map(|r| r.keys().map(|k| format!("`{k}`")).collect())
                .unwrap_or_default();
            let body = schema_name(&op["requestBody"]["content"]);
            // The first answer that is not an error: what a call that works gets.
            let answer = op["responses"]
                .as_object()
                .and_then(|r| {
                    r.iter()
                        .find(|(status, _)| status.starts_with('1') || status.starts_with('2'))
                })
                .map(|(_, response)| {
                    let named = schema_name(&response["content"]);
                    if named.is_empty() {
                        one_line(response["description"].as_str().unwrap_or_default())
                    } else {
                        named
                    }
                })
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "| `{}` | `{path}` | {auth} | {} | {} | {} | {} | {} |",
                method.to_uppercase(),
                cell(&one_line(what)),
                cell(&params.join("; ")),
                cell(&body),
                cell(&answer),
                answers.join(" ")
            );
        }
    }
    out
}

/// The schema of a request or response body, by name: `JobView`, `array of WorkerView`, or the
/// media type when it has no named schema; empty when there is no body.
fn schema_name(content: &Value) -> String {
    let Some((media, body)) = content.as_object().and_then(|c| c.iter().next()) else {
        return String::new();
    };
    let named = |schema: &Value| {
        schema["$ref"]
            .as_str()
            .and_then(|r| r.rsplit('/').next())
            .map(|n| format!("`{n}`"))
    };
    let schema = &body["schema"];
    named(schema)
        .or_else(|| named(&schema["items"]).map(|n| format!("array of {n}")))
        .unwrap_or_else(|| format!("`{media}`"))
}

/// Help text on one line: paragraphs joined, runs of blanks made one.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Text safe in a Markdown table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

/// The anchor GitHub-style Markdown gives a `## \`muster token create\`` heading.
fn anchor(path: &str) -> String {
    path.chars()
        .filter_map(|c| match c {
            'a'..='z' | '0'..='9' | '-' | '_' => Some(c),
            'A'..='Z' => Some(c.to_ascii_lowercase()),
            ' ' => Some('-'),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use clap::CommandFactory;

    use super::*;

    fn page(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../../docs/reference/{name}"))
    }

    /// The committed page is what the code generates now; `MUSTER_UPDATE_REFERENCE=1` writes it.
    fn check(name: &str, generated: &str) {
        let path = page(name);
        if std::env::var_os("MUSTER_UPDATE_REFERENCE").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, generated).unwrap();
            return;
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "docs/reference/{name} is not what the code generates: run \
             `MUSTER_UPDATE_REFERENCE=1 cargo test -p muster-cli --bin muster reference` and commit it"
        );
    }

    #[test]
    fn the_cli_reference_is_generated_from_the_command_line_definition() {
        let generated = cli(crate::cli::Cli::command());
        for expected in [
            "## `muster token create`",
            "`MUSTER_PUBLIC_URL`",
            "| `--json` |",
        ] {
            assert!(generated.contains(expected), "no {expected}");
        }
        assert!(
            !generated.contains("job-exec"),
            "hidden commands stay out of it"
        );
        check("cli.md", &generated);
    }

    #[test]
    fn the_api_reference_lists_every_route_of_the_openapi_description() {
        let doc = serde_json::to_value(muster_server::api::openapi::document()).unwrap();
        let generated = api(&doc);
        assert!(
            generated.contains("| `GET` | `/api/v1/workers` | admin |"),
            "{generated}"
        );
        let routes = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .map(|item| {
                ["get", "put", "post", "delete", "patch"]
                    .iter()
                    .filter(|m| !item[**m].is_null())
                    .count()
            })
            .sum::<usize>();
        assert_eq!(
            generated.lines().filter(|l| l.starts_with("| `")).count(),
            routes,
            "one row per route"
        );
        check("api.md", &generated);
    }
}
