//! Jobs: the recent jobs with filters, and one job's page with its stored output (stdout and
//! stderr told apart by a marker, not only by colour). A running job's page refreshes itself.
//! (Over 400 lines with the tests of its output rendering, which sit at the bottom.)

use axum::extract::{Path, Query, State};
use axum::http::HeaderValue;
use axum::response::{Html, IntoResponse, Redirect, Response};
use maud::{Markup, html};
use muster_core::{Labels, Timestamp};
use muster_proto::ErrorCode;
use muster_proto::api::{JobState, JobView, LabelMap, SubmitJobRequest};
use muster_proto::control::frame;
use muster_store::OutputChunk;
use serde::Deserialize;

use crate::ops;
use crate::ui::UiApp;
use crate::ui::auth::UiAdmin;
use crate::ui::csrf::{CsrfForm, NoFields};
use crate::ui::error::{UiError, encode_component};
use crate::ui::fmt;
use crate::ui::layout::{self, Nav};
use crate::ui::page;
use crate::ui::session::Flash;

/// Lines of output a page shows at most (the last ones: that is where a failure explains
/// itself). `muster job logs` prints everything.
const MAX_LINES: usize = 5_000;

/// Jobs per page.
const PAGE: u32 = 100;

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    state: String,
    #[serde(default)]
    worker: String,
    /// `reverse`: oldest first.
    #[serde(default)]
    order: String,
    /// Where the page starts: the cursor of the previous page's last job.
    #[serde(default)]
    after: String,
}

/// The fields of the job form.
#[derive(Debug, Default, Deserialize)]
pub struct SubmitForm {
    #[serde(default)]
    command: String,
    #[serde(default)]
    labels: String,
    #[serde(default)]
    worker: String,
    #[serde(default)]
    timeout: String,
}

pub async fn list(
    State(app): State<UiApp>,
    admin: UiAdmin,
    Query(query): Query<ListQuery>,
) -> Result<Html<String>, UiError> {
    let state = query.state.trim();
    let worker = query.worker.trim();
    let (state_error, state) = match ops::jobs::state_filter(Some(state)) {
        Ok(s) => (None, s),
        Err(e) => (Some(e.message), None),
    };
    let after = page::after_job(&query.after);
    let order = page::order(&query.order);
    let (worker_error, jobs) =
        match ops::jobs::page(&app, state, Some(worker), after.clone(), order, PAGE).await {
            Ok(jobs) => (None, jobs),
            Err(e) if e.code == ErrorCode::InvalidName => (
                Some(e.message),
                ops::jobs::page(&app, state, None, after, order, PAGE).await?,
            ),
            Err(e) => return Err(e.into()),
        };
    let now = app.clock.now();
    let flash = admin.take_flash(&app);
    let filtered = state.is_some() || (!worker.is_empty() && worker_error.is_none());
    let here = format!(
        "/jobs?state={}&worker={}&order={}",
        encode_component(state.map_or("", |s| s.as_str())),
        encode_component(worker),
        encode_component(query.order.trim())
    );
    let body = html! {
        h1 { "Jobs" }
        p.lede { "The jobs, newest first unless you choose otherwise. Submit one below or with " code { "muster job run" } "." }
        (submit_form(&admin.session.csrf, &SubmitForm::default(), None))
        form.filters method="get" action="/jobs" role="search" aria-label="Filter jobs" {
            (page::state_field(
                &JobState::KNOWN.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
                state.map(|s| s.as_str()),
                state_error.as_deref(),
            ))
            div.field {
                label for="filter-worker" { "Worker" }
                input #filter-worker type="search" name="worker" value=(worker) autocomplete="off"
                    spellcheck="false"
                    aria-invalid=[worker_error.is_some().then_some("true")]
                    aria-describedby=(layout::described_by("filter-worker", false, worker_error.as_deref()));
                (layout::field_error("filter-worker", worker_error.as_deref()))
            }
            (page::order_field(order, "newest first", "oldest first"))
            div.actions {
                button type="submit" { "Filter" }
                @if filtered || order == ops::page::Order::Reverse { a.button.quiet href="/jobs" { "Clear" } }
            }
        }
        @if jobs.items.is_empty() {
            div.empty {
                @if filtered { p { "No job matches this filter." } }
                @else { p { "No jobs yet. Run one with the form above or " code { "muster job run -- echo hello" } "." } }
            }
        } @else {
            (table(now, &jobs.items, true))
        }
        (page::pager("Pages of jobs", &here, &query.after, jobs.next.as_ref()))
    };
    Ok(layout::page(
        "Jobs",
        Nav::Jobs,
        &admin.session.csrf,
        &flash,
        body,
    ))
}

/// A table of jobs; `with_worker` adds the worker column (a worker's own page leaves it out).
pub fn table(now: Timestamp, jobs: &[JobView], with_worker: bool) -> Markup {
    let mut columns = vec!["Job", "State", "Command"];
    if with_worker {
        columns.push("Worker");
    }
    columns.extend(["Created", "Took", "Exit"]);
    html! {
        div.table-wrap {
            table.data.jobs {
                caption.visually-hidden { "Jobs" }
                (layout::table_head(&columns, false))
                tbody {
                    @for job in jobs {
                        tr data-job=(job.id) {
                            th scope="row" data-label="Job" {
                                a href={ "/jobs/" (job.id) } { code.id { (job.id) } }
                            }
                            td data-label="State" { (fmt::badge(job.state.as_str())) }
                            td data-label="Command" { code.command { (fmt::text(&command_line(job))) } }
                            @if with_worker {
                                td data-label="Worker" {
                                    @match &job.worker {
                                        Some(w) => a.name href={ "/workers/" (encode_component(w)) } { (fmt::text(w)) },
                                        None => (layout::none()),
                                    }
                                }
                            }
                            td data-label="Created" { (fmt::when(now, Some(&job.created_at), "")) }
                            td data-label="Took" { (took(now, job)) }
                            td data-label="Exit" {
                                @match job.exit_code { Some(c) => (c), None => (layout::none()) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The form that submits a job: a command line (split as a POSIX shell would, without running
/// one), and where it runs: labels, a worker, or any worker.
fn submit_form(csrf: &str, given: &SubmitForm, error: Option<&str>) -> Markup {
    html! {
        details.card.submit-job open[error.is_some()] {
            summary { "Submit a job" }
            form method="post" action="/jobs" {
                input type="hidden" name="csrf" value=(csrf);
                @if let Some(error) = error {
                    p.notice.error role="alert" { (layout::message(error)) }
                }
                div.field.wide {
                    label for="job-command" { "Command" }
                    input #job-command type="text" name="command" value=(given.command) required
                        autocomplete="off" spellcheck="false" placeholder="uname -a"
                        aria-describedby="job-command-help";
                    p.help #job-command-help { "Split into arguments as a shell would; no shell runs it. Quote arguments with spaces." }
                }
                div.field {
                    label for="job-labels" { "On workers labelled" }
                    input #job-labels type="text" name="labels" value=(given.labels)
                        autocomplete="off" spellcheck="false" placeholder="region=eu"
                        aria-describedby="job-labels-help";
                    p.help #job-labels-help { code { "key=value" } ", several separated by commas" }
                }
                div.field {
                    label for="job-worker" { "Or on the worker" }
                    input #job-worker type="text" name="worker" value=(given.worker)
                        autocomplete="off" spellcheck="false" placeholder="any";
                }
                div.field {
                    label for="job-timeout" { "Time limit" }
                    input #job-timeout type="text" name="timeout" value=(given.timeout)
                        autocomplete="off" spellcheck="false" placeholder="none" aria-describedby="job-timeout-help";
                    p.help #job-timeout-help { "Like " code { "10m" } " or " code { "1h" } }
                }
                div.actions { button type="submit" { "Submit job" } }
            }
        }
    }
}

/// Reads the job form into the request `POST /api/v1/jobs` takes.
fn submit_request(form: &SubmitForm) -> Result<SubmitJobRequest, String> {
    let line = form.command.trim();
    if line.is_empty() {
        return Err("give the command to run".into());
    }
    let command = shlex::split(line)
        .filter(|words| !words.is_empty())
        .ok_or("the command has an unclosed quote")?;
    let mut labels = LabelMap::new();
    for part in form
        .labels
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        let (key, value) = Labels::parse_pair(part).map_err(|e| e.to_string())?;
        labels.insert(key, value);
    }
    Ok(SubmitJobRequest {
        command,
        worker: Some(form.worker.trim().to_owned()).filter(|w| !w.is_empty()),
        labels,
        env: Default::default(),
        timeout: Some(form.timeout.trim().to_owned()).filter(|t| !t.is_empty()),
        queue_timeout: None,
    })
}

/// `POST /jobs`: submits the job and shows its page, or the form again with what was wrong.
pub async fn submit(
    State(app): State<UiApp>,
    CsrfForm { admin, form }: CsrfForm<SubmitForm>,
) -> Result<Response, UiError> {
    let refused = match submit_request(&form) {
        Ok(request) => match ops::jobs::submit(&app, &admin.admin, request).await {
            Ok(job) => {
                admin.flash(&app, Flash::Done(format!("job `{}` was submitted", job.id)));
                return Ok(Redirect::to(&format!("/jobs/{}", job.id)).into_response());
            }
            Err(e) if e.status.is_server_error() => return Err(e.into()),
            Err(e) => match e.hint {
                Some(hint) => format!("{}; {hint}", e.message),
                None => e.message,
            },
        },
        Err(message) => message,
    };
    let flash = admin.take_flash(&app);
    let body = html! {
        p.breadcrumb { a href="/jobs" { "Jobs" } span aria-hidden="true" { " › " } }
        h1 { "Submit a job" }
        (submit_form(&admin.session.csrf, &form, Some(&refused)))
    };
    let mut response =
        layout::page("Submit a job", Nav::Jobs, &admin.session.csrf, &flash, body).into_response();
    *response.status_mut() = axum::http::StatusCode::UNPROCESSABLE_ENTITY;
    Ok(response)
}

/// The command as one line, arguments quoted where a shell would need it.
fn command_line(job: &JobView) -> String {
    job.command
        .iter()
        .map(|arg| {
            if !arg.is_empty()
                && arg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c))
            {
                arg.clone()
            } else {
                format!("'{}'", arg.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn took(now: Timestamp, job: &JobView) -> Markup {
    let start = job.started_at.as_deref().and_then(Timestamp::parse_rfc3339);
    let end = job
        .finished_at
        .as_deref()
        .and_then(Timestamp::parse_rfc3339);
    match (start, end) {
        (Some(s), Some(e)) => html! { (fmt::span(e.unix_millis() - s.unix_millis())) },
        (Some(s), None) => html! { (fmt::span(now.unix_millis() - s.unix_millis())) " so far" },
        _ => layout::none(),
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct DetailQuery {
    #[serde(default)]
    stream: String,
}

/// Which output the page shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Streams {
    Both,
    Only(u8),
}

impl Streams {
    fn parse(input: &str) -> Self {
        match input {
            "stdout" => Streams::Only(frame::STDOUT),
            "stderr" => Streams::Only(frame::STDERR),
            _ => Streams::Both,
        }
    }

    fn shows(self, stream: u8) -> bool {
        self == Streams::Both || self == Streams::Only(stream)
    }
}

pub async fn detail(
    State(app): State<UiApp>,
    admin: UiAdmin,
    Path(id): Path<String>,
    Query(query): Query<DetailQuery>,
) -> Result<Html<String>, UiError> {
    let job = ops::jobs::show(&app, &id).await?;
    let streams = Streams::parse(&query.stream);
    let live = live_part(&app, &admin, &job, streams).await?;
    let flash = admin.take_flash(&app);
    let active = job.state.is_active();
    let body = html! {
        p.breadcrumb { a href="/jobs" { "Jobs" } span aria-hidden="true" { " › " } }
        h1 { "Job " code { (job.id) } }
        p.command-line { code { (fmt::text(&command_line(&job))) } }
        @if active {
            div #job-live data-poll={ "/jobs/" (job.id) "/live?stream=" (encode_component(&query.stream)) } { (live) }
        } @else {
            div #job-live { (live) }
        }
    };
    Ok(layout::page(
        "Job",
        Nav::Jobs,
        &admin.session.csrf,
        &flash,
        body,
    ))
}

/// The part of a job's page that changes while it runs. Tells the script to stop polling once
/// the job has ended.
pub async fn live(
    State(app): State<UiApp>,
    admin: UiAdmin,
    Path(id): Path<String>,
    Query(query): Query<DetailQuery>,
) -> Result<Response, UiError> {
    let job = ops::jobs::show(&app, &id).await?;
    let part = live_part(&app, &admin, &job, Streams::parse(&query.stream)).await?;
    let mut response = Html(part.into_string()).into_response();
    if !job.state.is_active() {
        response
            .headers_mut()
            .insert("x-muster-poll", HeaderValue::from_static("stop"));
    }
    Ok(response)
}

async fn live_part(
    app: &UiApp,
    admin: &UiAdmin,
    job: &JobView,
    streams: Streams,
) -> Result<Markup, UiError> {
    let chunks = ops::jobs::stored_output(app, &job.id).await?;
    let now = app.clock.now();
    let (lines, dropped) = lines(&chunks, streams);
    let base = format!("/jobs/{}", job.id);
    let active = job.state.is_active();
    Ok(html! {
        // Inside the refreshed part, so the button goes away by itself when the job ends.
        @if active {
            form.inline method="post" action={ "/jobs/" (job.id) "/cancel" } {
                input type="hidden" name="csrf" value=(admin.session.csrf);
                button.danger.small type="submit" { "Cancel job" }
            }
        }
        dl.facts.columns {
            div { dt { "State" } dd { (fmt::badge(job.state.as_str())) } }
            div { dt { "Worker" } dd { @match &job.worker { Some(w) => (fmt::text(w)), None => span.muted { "not placed yet" } } } }
            div { dt { "Exit code" } dd { @match job.exit_code { Some(c) => (c), None => (layout::none()) } } }
            div { dt { "Runs on" } dd { (layout::ticks(&fmt::text(&job.selector))) } }
            div { dt { "Created" } dd { (fmt::exact_time(Some(&job.created_at))) } }
            div { dt { "Started" } dd { (fmt::exact_time(job.started_at.as_deref())) } }
            div { dt { "Finished" } dd { (fmt::exact_time(job.finished_at.as_deref())) } }
            div { dt { "Took" } dd { (took(now, job)) } }
            @if let Some(reason) = &job.reason {
                div.wide { dt { "Reason" } dd { (layout::ticks(&fmt::text(reason))) } }
            }
            @if !job.env_keys.is_empty() {
                div.wide { dt { "Environment" } dd { @for k in &job.env_keys { code { (k) } " " } span.muted { "(values hidden)" } } }
            }
        }
        section.output-section aria-labelledby="output-title" {
            div.output-head {
                h2 #output-title { "Output" }
                nav.segmented aria-label="Which output" {
                    (stream_link(&base, "", "All", streams == Streams::Both))
                    (stream_link(&base, "stdout", "stdout", streams == Streams::Only(frame::STDOUT)))
                    (stream_link(&base, "stderr", "stderr", streams == Streams::Only(frame::STDERR)))
                }
            }
            p.help {
                "Lines marked " span.stream-mark.err { "err" } " came from stderr, "
                span.stream-mark.out { "out" } " from stdout."
            }
            @if job.output_truncated {
                p.notice.warn { "The job printed more than the server keeps; the stored output stops early." }
            }
            @if dropped > 0 {
                p.notice.warn { "Showing the last " (MAX_LINES) " lines; " (dropped) " earlier lines are hidden. "
                    code { "muster job logs " (job.id) } " prints everything." }
            }
            @if lines.is_empty() {
                p.empty.muted {
                    @if job.state == JobState::Queued { "No output yet: the job waits for a worker." }
                    @else if job.state == JobState::Running { "No output yet." }
                    @else { "The job printed nothing." }
                }
            } @else {
                ol.output aria-label="Output lines" {
                    @for (stream, text) in &lines {
                        @if *stream == frame::STDERR {
                            li.err { span.stream-mark.err aria-hidden="true" { "err" } span.visually-hidden { "stderr: " } span.text { (text) } }
                        } @else {
                            li.out { span.stream-mark.out aria-hidden="true" { "out" } span.text { (text) } }
                        }
                    }
                }
            }
        }
    })
}

fn stream_link(base: &str, value: &str, label: &str, current: bool) -> Markup {
    let href = if value.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?stream={value}")
    };
    html! {
        @if current { a href=(href) aria-current="true" { (label) } }
        @else { a href=(href) { (label) } }
    }
}

/// Splits output into lines, each with the stream it came from. Consecutive chunks of one
/// stream are joined before decoding, so a character split across chunks survives. Returns the
/// last [`MAX_LINES`] lines and how many were dropped before them.
fn lines(chunks: &[OutputChunk], streams: Streams) -> (Vec<(u8, String)>, usize) {
    let mut out: Vec<(u8, String)> = Vec::new();
    let mut run: Vec<u8> = Vec::new();
    let mut run_stream = None;
    let flush = |stream: Option<u8>, bytes: &mut Vec<u8>, out: &mut Vec<(u8, String)>| {
        if let Some(stream) = stream
            && !bytes.is_empty()
        {
            let text = String::from_utf8_lossy(bytes);
            for line in text.trim_end_matches('\n').split('\n') {
                out.push((stream, line.trim_end_matches('\r').to_owned()));
            }
        }
        bytes.clear();
    };
    for chunk in chunks.iter().filter(|c| streams.shows(c.stream)) {
        if run_stream != Some(chunk.stream) {
            flush(run_stream, &mut run, &mut out);
            run_stream = Some(chunk.stream);
        }
        run.extend_from_slice(&chunk.data);
    }
    flush(run_stream, &mut run, &mut out);
    let dropped = out.len().saturating_sub(MAX_LINES);
    out.drain(..dropped);
    (out, dropped)
}

pub async fn cancel(
    State(app): State<UiApp>,
    Path(id): Path<String>,
    CsrfForm { admin, .. }: CsrfForm<NoFields>,
) -> Result<Response, UiError> {
    let job = ops::jobs::job_id(&id)?;
    match ops::jobs::cancel(&app, &admin.admin, job.as_str()).await {
        Ok(view) if view.state == JobState::Cancelled => {
            admin.flash(&app, Flash::Done("the job was cancelled".into()));
        }
        Ok(_) => admin.flash(
            &app,
            Flash::Done("the worker was told to stop the job".into()),
        ),
        Err(e) if e.status.is_server_error() => return Err(e.into()),
        Err(e) => admin.flash(&app, Flash::Failed(e.message)),
    }
    Ok(Redirect::to(&format!("/jobs/{}", job.as_str())).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(seq: u64, stream: u8, data: &[u8]) -> OutputChunk {
        OutputChunk {
            seq,
            stream,
            data: data.to_vec(),
        }
    }

    #[test]
    fn output_lines_keep_their_stream_and_split_characters() {
        let euro = "€".as_bytes();
        let chunks = vec![
            chunk(1, frame::STDOUT, b"hello\nwor"),
            chunk(2, frame::STDOUT, b"ld "),
            chunk(3, frame::STDOUT, &euro[..1]),
            chunk(4, frame::STDOUT, &euro[1..]),
            chunk(5, frame::STDERR, b"oops\n"),
        ];
        let (lines, dropped) = lines(&chunks, Streams::Both);
        assert_eq!(dropped, 0);
        assert_eq!(
            lines,
            vec![
                (frame::STDOUT, "hello".to_owned()),
                (frame::STDOUT, "world €".to_owned()),
                (frame::STDERR, "oops".to_owned()),
            ]
        );
        let (only_err, _) = super::lines(&chunks, Streams::Only(frame::STDERR));
        assert_eq!(only_err, vec![(frame::STDERR, "oops".to_owned())]);
    }

    #[test]
    fn commands_are_quoted_like_a_shell() {
        let mut job = JobView {
            id: "x".into(),
            state: JobState::Queued,
            worker: None,
            exit_code: None,
            command: vec!["sh".into(), "-c".into(), "echo it's <b>".into()],
            env_keys: vec![],
            selector: String::new(),
            created_at: String::new(),
            started_at: None,
            finished_at: None,
            reason: None,
            ending: None,
            timeout_ms: None,
            output_bytes: 0,
            output_truncated: false,
            placement: None,
        };
        assert_eq!(command_line(&job), "sh -c 'echo it'\\''s <b>'");
        job.command = vec!["ls".into(), "-la".into()];
        assert_eq!(command_line(&job), "ls -la");
    }
}
