//! `muster job run|list|show|logs|cancel`.
//!
//! `job run` behaves like `ssh host cmd`: the command's stdout and stderr arrive on ours, live,
//! and we exit with its exit code. When it did not simply exit, the code says why (the table is
//! `crate::error::JobExit`).

use std::io::Write;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use muster_client::Client;
use muster_proto::api::{JobEvent, JobState, JobView, OutputStream, SubmitJobRequest};

use crate::admin;
use crate::cli::JobCommand;
use crate::commands::parse_labels;
use crate::error::{CliError, JobExit};
use crate::job_lines::{self, Lines, OutputLine, Record};
use crate::output::{now, print_json};
use crate::tables;

pub async fn run(command: JobCommand) -> Result<(), CliError> {
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
                    .map_err(|e| CliError::usage(e.to_string(), "for example `--timeout 10m`"))?;
            }
            let request = SubmitJobRequest {
                command,
                worker,
                labels: parse_labels(&labels)?,
                env: parse_env(&env)?,
                timeout,
                queue_timeout: queue_timeout.clone(),
            };
            let client = admin::client(&admin)?;
            let job = client.submit_job(&request).await?;
            if detach {
                print_job(&job, admin.json);
                return Ok(());
            }
            let waiting = Waiting::announce(&job, queue_timeout.as_deref());
            let mut sink = if admin.json {
                Sink::Kept(Lines::default(), Kept::default())
            } else {
                Sink::Terminal
            };
            let end = follow(&client, &job.id, &mut sink, true, waiting).await?;
            if let Sink::Kept(_, kept) = sink {
                print_json(&kept.with(&end));
            }
            finish(end)
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
            let jobs = admin::client(&admin)?.list_jobs(&query).await?;
            if admin.json {
                print_json(&jobs);
            } else if jobs.is_empty() {
                println!("No jobs. Run one with `muster job run -- COMMAND`.");
            } else {
                println!("{}", tables::jobs_list(&jobs, now()));
            }
            Ok(())
        }
        JobCommand::Show { id, admin } => {
            let job = admin::client(&admin)?.show_job(&id).await?;
            print_job(&job, admin.json);
            Ok(())
        }
        JobCommand::Logs {
            id,
            follow: keep_following,
            admin,
        } => {
            let client = admin::client(&admin)?;
            let mut sink = if admin.json {
                Sink::JsonLines(Lines::default())
            } else {
                Sink::Terminal
            };
            follow(&client, &id, &mut sink, keep_following, None).await?;
            Ok(())
        }
        JobCommand::Cancel { id, admin } => {
            let job = admin::client(&admin)?.cancel_job(&id).await?;
            if admin.json {
                print_json(&job);
            } else if job.state == JobState::Running {
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

fn parse_env(inputs: &[String]) -> Result<std::collections::BTreeMap<String, String>, CliError> {
    inputs
        .iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| {
                    CliError::usage(
                        format!("`--env {kv}` is not KEY=VALUE"),
                        "for example `--env LOG_LEVEL=debug`",
                    )
                })
        })
        .collect()
}

/// How long `job run` keeps trying to follow a job whose server went away (a restart, a
/// replica that died): the job runs on meanwhile.
const FOLLOW_AGAIN_WITHIN: std::time::Duration = std::time::Duration::from_secs(120);

/// Where a followed job's output goes.
enum Sink {
    /// Its bytes to our stdout and stderr, as `ssh` does.
    Terminal,
    /// One JSON object a line on stdout, then one for the end (`job logs --json`).
    JsonLines(Lines),
    /// Kept, to print with the job as it ended (`job run --json`).
    Kept(Lines, Kept),
}

impl Sink {
    fn output(&mut self, stream: OutputStream, data: &str, at: Option<&str>) {
        let bytes = STANDARD.decode(data).unwrap_or_default();
        match self {
            Sink::Terminal => {
                if stream == OutputStream::Stderr {
                    let mut err = std::io::stderr().lock();
                    let _ = err.write_all(&bytes);
                    let _ = err.flush();
                } else {
                    let mut out = std::io::stdout().lock();
                    let _ = out.write_all(&bytes);
                    let _ = out.flush();
                }
            }
            Sink::JsonLines(lines) => {
                for line in lines.push(stream, &bytes, at) {
                    Record::Output(&line).print();
                }
            }
            Sink::Kept(lines, kept) => kept.extend(lines.push(stream, &bytes, at)),
        }
    }

    /// A notice about the output (pieces skipped, output not stored): a JSON object where
    /// stdout carries JSON lines, a line on stderr otherwise.
    fn notice(&mut self, record: Record<'_>, text: String) {
        match self {
            Sink::JsonLines(_) => record.print(),
            Sink::Terminal | Sink::Kept(..) => eprintln!("{text}"),
        }
    }

    fn end(&mut self, job: &JobView) {
        match self {
            Sink::Terminal => {}
            Sink::JsonLines(lines) => {
                for line in lines.finish() {
                    Record::Output(&line).print();
                }
                Record::End {
                    exit: job_lines::exit_of(job),
                    job,
                }
                .print();
            }
            Sink::Kept(lines, kept) => kept.extend(lines.finish()),
        }
    }
}

/// The output `job run --json` keeps: at most [`KEPT_BYTES`] of text, then only a count.
#[derive(Default)]
struct Kept {
    lines: Vec<OutputLine>,
    bytes: usize,
    left_out: u64,
}

/// What `job run --json` keeps of a job's output: the first MiB, what the server stores too.
const KEPT_BYTES: usize = 1024 * 1024;

impl Kept {
    fn extend(&mut self, lines: Vec<OutputLine>) {
        for line in lines {
            if self.bytes + line.line.len() > KEPT_BYTES {
                self.left_out += 1;
            } else {
                self.bytes += line.line.len();
                self.lines.push(line);
            }
        }
    }

    /// The job as it ended with its `output` (and `output_lines_left_out`, when some were).
    fn with(self, job: &JobView) -> serde_json::Value {
        let mut value = serde_json::to_value(job).unwrap_or_default();
        if let Some(object) = value.as_object_mut() {
            object.insert(
                "output".into(),
                serde_json::to_value(&self.lines).unwrap_or_default(),
            );
            if self.left_out > 0 {
                object.insert("output_lines_left_out".into(), self.left_out.into());
            }
        }
        value
    }
}

/// Streams a job's output into `sink` and returns the job as it ended.
/// The first Ctrl-C cancels the job and keeps following it to its end; a second one leaves. A
/// stream that breaks before the end (the server restarted) is opened again after the last
/// piece received, for up to [`FOLLOW_AGAIN_WITHIN`].
async fn follow(
    client: &Client,
    id: &str,
    sink: &mut Sink,
    keep_following: bool,
    mut waiting: Option<Waiting>,
) -> Result<JobView, CliError> {
    let mut events = client.job_output(id, 0, keep_following).await?;
    let mut cancelled = false;
    let mut after = 0u64;
    loop {
        let event = tokio::select! {
            event = events.next() => {
                // Whatever comes first (output, the end, or a broken stream) means the wait
                // is over.
                if let Some(w) = waiting.take() {
                    w.stop();
                }
                event
            }
            _ = tokio::signal::ctrl_c() => {
                if cancelled {
                    return Err(CliError::StoppedFollowing { job: id.to_owned() });
                }
                cancelled = true;
                eprintln!("cancelling job {id} (Ctrl-C again to stop waiting)");
                let _ = client.cancel_job(id).await;
                continue;
            }
        };
        let event = match event {
            Ok(Some(event)) => event,
            broken => {
                if keep_following && let Some(again) = follow_again(client, id, after).await {
                    events = again;
                    continue;
                }
                broken?;
                return Err(CliError::failed(
                    format!("the server closed the output stream of job {id} early"),
                    format!("`muster job show {id}` tells how it ended"),
                ));
            }
        };
        match event {
            JobEvent::Output {
                seq,
                stream,
                data,
                at,
            } => {
                after = after.max(seq);
                sink.output(stream, &data, at.as_deref());
            }
            JobEvent::Skipped { chunks } => sink.notice(
                Record::Skipped { chunks },
                format!(
                    "[muster: this terminal fell behind; {chunks} pieces of live output past what the server keeps were skipped]"
                ),
            ),
            JobEvent::Truncated { kept_bytes } => sink.notice(
                Record::Truncated { kept_bytes },
                format!(
                    "[muster: the server keeps the first {kept_bytes} bytes of a job's output; the rest was streamed live only]"
                ),
            ),
            JobEvent::End { job } => {
                sink.end(&job);
                return Ok(*job);
            }
        }
    }
}

/// Opens the job's output stream again after piece `after`, retrying every second while the
/// server is away; `None` once [`FOLLOW_AGAIN_WITHIN`] has passed.
async fn follow_again(client: &Client, id: &str, after: u64) -> Option<muster_client::JobEvents> {
    eprintln!(
        "[muster: lost the server while following job {id}; the job runs on, following it again]"
    );
    let deadline = tokio::time::Instant::now() + FOLLOW_AGAIN_WITHIN;
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        if let Ok(events) = client.job_output(id, after, true).await {
            return Some(events);
        }
    }
    None
}

/// What `job run` says while its job waits for a worker: one line at once when no connected
/// worker matches, then (on a terminal) a line that counts the seconds until the job starts.
struct Waiting {
    ticker: Option<tokio::task::JoinHandle<()>>,
}

impl Waiting {
    fn announce(job: &JobView, queue_timeout: Option<&str>) -> Option<Self> {
        let placement = job.placement?;
        if job.state != JobState::Queued || placement.matching > 0 {
            return None;
        }
        let workers = if placement.connected == 1 {
            "worker"
        } else {
            "workers"
        };
        eprintln!(
            "muster: no connected worker matches {} ({} {workers} connected); job {} waits for one, up to {}",
            job.selector,
            placement.connected,
            job.id,
            queue_timeout.unwrap_or("10m"),
        );
        use std::io::IsTerminal;
        let ticker = std::io::stderr().is_terminal().then(|| {
            tokio::spawn(async {
                let start = tokio::time::Instant::now();
                let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
                loop {
                    tick.tick().await;
                    let secs = start.elapsed().as_secs();
                    let mut err = std::io::stderr().lock();
                    let _ = write!(
                        err,
                        "\r\x1b[Kwaiting for a matching worker… {}",
                        muster_core::format_duration(std::time::Duration::from_secs(secs))
                    );
                    let _ = err.flush();
                }
            })
        });
        Some(Self { ticker })
    }

    /// Ends the waiting line (and clears it from the terminal).
    fn stop(self) {
        if let Some(ticker) = self.ticker {
            ticker.abort();
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[K");
            let _ = err.flush();
        }
    }
}

/// Exits as the job did.
fn finish(job: JobView) -> Result<(), CliError> {
    match JobExit::of(&job) {
        JobExit::Success => Ok(()),
        _ => Err(CliError::JobEnded(Box::new(job))),
    }
}

fn print_job(j: &JobView, json: bool) {
    if json {
        print_json(j);
    } else {
        println!("{}", tables::job(j, now()));
    }
}
