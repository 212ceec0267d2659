//! `muster job run|list|show|logs|cancel`.
//!
//! `job run` behaves like `ssh host cmd`: the command's stdout and stderr arrive on ours, live,
//! and we exit with its exit code. When it did not simply exit, the code says why:
//! 124 timed out, 125 never started (no worker in time), 127 could not be started,
//! 130 cancelled, 128+N killed by signal N, 255 lost (its worker went away).

use std::io::Write;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use muster_client::Client;
use muster_proto::api::{JobEvent, JobView, SubmitJobRequest};

use crate::admin;
use crate::cli::JobCommand;
use crate::commands::parse_labels;
use crate::output::{self, Failure, print_json, print_table, table, when};

pub async fn run(command: JobCommand) -> Result<(), Failure> {
    match command {
        JobCommand::Run {
            worker,
            labels,
            timeout,
            queue_timeout,
            env,
            detach,
            command,
            admin,
        } => {
            for d in [&timeout, &queue_timeout].into_iter().flatten() {
                muster_core::parse_duration(d)
                    .map_err(|e| Failure::usage(e.to_string(), "for example `--timeout 10m`"))?;
            }
            let request = SubmitJobRequest {
                command,
                worker,
                labels: parse_labels(&labels)?,
                env: parse_env(&env)?,
                timeout,
                queue_timeout,
            };
            let client = admin::client(&admin)?;
            let job = client
                .submit_job(&request)
                .await
                .map_err(Failure::from_client)?;
            if detach {
                print_job(&job, admin.json);
                return Ok(());
            }
            let end = follow(&client, &job.id, !admin.json, true).await?;
            if admin.json {
                print_json(&end);
            }
            finish(&end)
        }
        JobCommand::List {
            state,
            worker,
            limit,
            admin,
        } => {
            let mut query = vec![("limit", limit.to_string())];
            if let Some(s) = state {
                query.push(("state", s));
            }
            if let Some(w) = worker {
                query.push(("worker", w));
            }
            let jobs = admin::client(&admin)?
                .list_jobs(&query)
                .await
                .map_err(Failure::from_client)?;
            if admin.json {
                print_json(&jobs);
            } else if jobs.is_empty() {
                println!("No jobs. Run one with `muster job run -- COMMAND`.");
            } else {
                let mut t = table(&["ID", "STATE", "WORKER", "EXIT", "CREATED", "COMMAND"]);
                for j in &jobs {
                    t.add_row(vec![
                        j.id.clone(),
                        j.state.clone(),
                        output::or_dash(j.worker.as_deref()),
                        j.exit_code.map_or("-".into(), |c| c.to_string()),
                        when(Some(&j.created_at)),
                        shorten(&j.command.join(" "), 60),
                    ]);
                }
                print_table(t);
            }
            Ok(())
        }
        JobCommand::Show { id, admin } => {
            let job = admin::client(&admin)?
                .show_job(&id)
                .await
                .map_err(Failure::from_client)?;
            print_job(&job, admin.json);
            Ok(())
        }
        JobCommand::Logs {
            id,
            follow: keep_following,
            admin,
        } => {
            let client = admin::client(&admin)?;
            follow(&client, &id, true, keep_following).await?;
            Ok(())
        }
        JobCommand::Cancel { id, admin } => {
            let job = admin::client(&admin)?
                .cancel_job(&id)
                .await
                .map_err(Failure::from_client)?;
            if admin.json {
                print_json(&job);
            } else if job.state == "running" {
                println!(
                    "Job {} is being cancelled; its worker kills its process group.",
                    job.id
                );
            } else {
                println!("Job {} is {}.", job.id, job.state);
            }
            Ok(())
        }
    }
}

fn parse_env(inputs: &[String]) -> Result<std::collections::BTreeMap<String, String>, Failure> {
    inputs
        .iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| {
                    Failure::usage(
                        format!("`--env {kv}` is not KEY=VALUE"),
                        "for example `--env LOG_LEVEL=debug`",
                    )
                })
        })
        .collect()
}

/// Streams a job's output to our stdout/stderr (when `print`) and returns the job as it ended.
/// The first Ctrl-C cancels the job and keeps following it to its end; a second one leaves.
async fn follow(
    client: &Client,
    id: &str,
    print: bool,
    keep_following: bool,
) -> Result<JobView, Failure> {
    let mut events = client
        .job_output(id, 0, keep_following)
        .await
        .map_err(Failure::from_client)?;
    let mut cancelled = false;
    loop {
        let event = tokio::select! {
            event = events.next() => event.map_err(Failure::from_client)?,
            _ = tokio::signal::ctrl_c() => {
                if cancelled {
                    return Err(Failure { message: format!("stopped following job {id}; it may still be running"), hint: Some(format!("`muster job logs --follow {id}` picks it up again")), code: 130 });
                }
                cancelled = true;
                eprintln!("cancelling job {id} (Ctrl-C again to stop waiting)");
                let _ = client.cancel_job(id).await;
                continue;
            }
        };
        match event {
            None => {
                return Err(Failure::general(
                    format!("the server closed the output stream of job {id} early"),
                    format!("`muster job show {id}` tells how it ended"),
                ));
            }
            Some(JobEvent::Output { stream, data, .. }) => {
                if print {
                    let bytes = STANDARD.decode(data).unwrap_or_default();
                    if stream == "stderr" {
                        let mut err = std::io::stderr().lock();
                        let _ = err.write_all(&bytes);
                        let _ = err.flush();
                    } else {
                        let mut out = std::io::stdout().lock();
                        let _ = out.write_all(&bytes);
                        let _ = out.flush();
                    }
                }
            }
            Some(JobEvent::Skipped { chunks }) => {
                eprintln!(
                    "[muster: this terminal fell behind; {chunks} pieces of live output were skipped — `muster job logs {id}` has what was stored]"
                );
            }
            Some(JobEvent::Truncated { kept_bytes }) => {
                if print {
                    eprintln!(
                        "[muster: the server keeps the first {kept_bytes} bytes of a job's output; the rest was streamed live only]"
                    );
                }
            }
            Some(JobEvent::End { job }) => return Ok(*job),
        }
    }
}

/// Exits as the job did.
fn finish(job: &JobView) -> Result<(), Failure> {
    let reason = job.reason.clone().unwrap_or_default();
    let code = match (job.state.as_str(), job.exit_code) {
        ("succeeded", _) => return Ok(()),
        // The command's own exit code, passed on silently, as ssh does.
        ("failed", Some(code)) => {
            let code = u8::try_from(code.rem_euclid(256)).unwrap_or(1);
            return Err(Failure {
                message: String::new(),
                hint: None,
                code: code.max(1),
            });
        }
        ("failed", None) if reason.starts_with("timed out") => 124,
        ("failed", None) if reason.starts_with("no matching worker") => 125,
        ("failed", None) if reason.starts_with("could not start") => 127,
        ("failed", None) if reason.starts_with("killed by signal") => {
            128 + reason
                .rsplit(' ')
                .next()
                .and_then(|n| n.parse::<u8>().ok())
                .unwrap_or(9)
        }
        ("cancelled", _) => 130,
        ("lost", _) => 255,
        (state, _) => {
            return Err(Failure::general(
                format!("job {} ended in state `{state}`", job.id),
                "`muster job show` has the details",
            ));
        }
    };
    Err(Failure {
        message: format!(
            "job {} {}: {}",
            job.id,
            job.state,
            if reason.is_empty() {
                "no reason given".into()
            } else {
                reason
            }
        ),
        hint: Some(format!("`muster job show {}` has the details", job.id)),
        code,
    })
}

fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        format!("{}…", text.chars().take(max - 1).collect::<String>())
    }
}

fn print_job(j: &JobView, json: bool) {
    if json {
        print_json(j);
        return;
    }
    let mut t = table(&["FIELD", "VALUE"]);
    t.add_row(vec!["id".into(), j.id.clone()]);
    t.add_row(vec!["state".into(), j.state.clone()]);
    t.add_row(vec!["command".into(), j.command.join(" ")]);
    t.add_row(vec!["placement".into(), j.selector.clone()]);
    t.add_row(vec!["worker".into(), output::or_dash(j.worker.as_deref())]);
    t.add_row(vec![
        "exit code".into(),
        j.exit_code.map_or("-".into(), |c| c.to_string()),
    ]);
    t.add_row(vec!["reason".into(), output::or_dash(j.reason.as_deref())]);
    t.add_row(vec!["created".into(), when(Some(&j.created_at))]);
    t.add_row(vec!["started".into(), when(j.started_at.as_deref())]);
    t.add_row(vec!["finished".into(), when(j.finished_at.as_deref())]);
    let out = if j.output_truncated {
        format!("{} bytes (truncated)", j.output_bytes)
    } else {
        format!("{} bytes", j.output_bytes)
    };
    t.add_row(vec!["output".into(), out]);
    if !j.env_keys.is_empty() {
        t.add_row(vec!["env".into(), j.env_keys.join(", ")]);
    }
    print_table(t);
}
