//! One worker's page (labels, key fingerprint, how it enrolled, its token, its recent jobs and
//! its audit trail), pre-creating a worker (its API key and paste-ready command shown once, on
//! its page) and removing one after a confirmation step.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use maud::html;
use muster_proto::api::{CreateWorkerRequest, EnrolledVia, WorkerStatus};
use serde::Deserialize;

use crate::ops;
use crate::ui::UiApp;
use crate::ui::auth::UiAdmin;
use crate::ui::csrf::{CsrfForm, NoFields};
use crate::ui::error::{UiError, encode_component};
use crate::ui::layout::{self, Nav};
use crate::ui::session::Flash;
use crate::ui::{fmt, jobs, tokens};
use crate::validate;

/// Jobs and audit records the page shows (the Jobs and Audit pages, filtered, show more).
const RECENT: u32 = 20;

pub async fn page(
    State(app): State<UiApp>,
    admin: UiAdmin,
    Path(name): Path<String>,
) -> Result<Html<String>, UiError> {
    let worker = ops::workers::show(&app, &name).await?;
    let record = ops::workers::find(&app, &validate::name(&worker.name)?).await?;
    let fingerprint = record
        .as_ref()
        .and_then(|r| r.identity.public_key.as_ref())
        .map(|k| k.fingerprint());
    let recent = ops::jobs::page(
        &app,
        None,
        Some(&worker.name),
        None,
        ops::page::Order::Forward,
        RECENT,
    )
    .await?;
    // Read by worker along the store's indexes (target, actor), not found by text and filtered.
    let trail = ops::audit::page(
        &app,
        ops::audit::Filter {
            worker: Some(&worker.name),
            limit: Some(RECENT),
            ..Default::default()
        },
    )
    .await?;
    let now = app.clock.now();
    let flash = admin.take_flash(&app);
    let created = flash.iter().find_map(|f| match f {
        Flash::CreatedWorker {
            name,
            api_key,
            command,
        } if *name == worker.name => Some((api_key, command)),
        _ => None,
    });
    let connected = worker.status == WorkerStatus::Connected;
    let encoded = encode_component(&worker.name);
    let body = html! {
        p.breadcrumb { a href="/workers" { "Workers" } span aria-hidden="true" { " › " } }
        h1 { "Worker " span.name { (worker.name) } " " (fmt::badge(worker.status.as_str())) }
        @if let Some((api_key, command)) = created {
            section.card.secret aria-labelledby="created-title" {
                h2 #created-title { "Worker " code { (worker.name) } " created" }
                p.warning { strong { "Copy it now." } " This is the only time its API key is shown; it is stored only as a hash." }
                (layout::secret_row("API key", "created-key", api_key, "API key"))
                (layout::secret_row("Worker command", "created-command", command, "worker command"))
                p.muted { "Run the command on the machine that should be this worker. The first machine to connect with the key binds it." }
                p.copy-status.visually-hidden aria-live="polite" {}
            }
        }
        div.actions.page-actions {
            @if worker.enrolled_via != EnrolledVia::Builtin && worker.status != WorkerStatus::Revoked {
                a.button.danger.small #revoke href={ "/workers/" (encoded) "/revoke" } { "Revoke" }
            }
            @if worker.enrolled_via != EnrolledVia::Builtin && !connected {
                a.button.danger.small #remove href={ "/workers/" (encoded) "/remove" } { "Remove" }
            }
            a.button.quiet.small href={ "/jobs?worker=" (encoded) } { "All its jobs" }
            a.button.quiet.small href={ "/audit?worker=" (encoded) } { "All its audit records" }
        }
        dl.facts.columns {
            div { dt { "Status" } dd { (fmt::badge(worker.status.as_str())) } }
            div { dt { "Activity" } dd {
                @if connected { (worker.running_jobs) "/" (worker.slots) " running" } @else { (layout::none()) }
            } }
            div { dt { "Last seen" } dd {
                @if connected { "now" } @else { (fmt::when(now, worker.last_seen_at.as_deref(), "never")) }
            } }
            div { dt { "Connected from" } dd { @match &worker.remote_addr { Some(a) => code { (a) }, None => (layout::none()) } } }
            div { dt { "Enrolled via" } dd { (worker.enrolled_via) } }
            div { dt { "Token" } dd {
                @match &worker.token {
                    Some(t) => code { (t) },
                    None => (layout::none()),
                }
            } }
            div { dt { "Created" } dd { (fmt::exact_time(Some(&worker.created_at))) } }
            div { dt { "Expires" } dd { (fmt::exact_time(worker.expires_at.as_deref())) } }
            @if worker.revoked_at.is_some() {
                div { dt { "Revoked" } dd { (fmt::exact_time(worker.revoked_at.as_deref())) } }
            }
            div.wide { dt { "Key fingerprint" } dd {
                @match &fingerprint { Some(f) => code #fingerprint { (f) }, None => span.muted { "no key yet (it has not connected)" } }
            } }
            div.wide { dt { "Worker id" } dd { code { (worker.id) } } }
            div.wide { dt { "Machine" } dd { @match &worker.machine_id { Some(m) => code { (m) }, None => span.muted { "not bound yet" } } } }
            div.wide { dt { "Labels" } dd { (fmt::labels(&worker.labels)) } }
        }
        section aria-labelledby="jobs-title" {
            h2 #jobs-title { "Recent jobs" }
            @if recent.items.is_empty() {
                p.muted { "No jobs ran on this worker." }
            } @else {
                (jobs::table(now, &recent.items, false))
            }
        }
        section aria-labelledby="audit-title" {
            h2 #audit-title { "Audit trail" }
            @if trail.items.is_empty() {
                p.muted { "Nothing recorded about this worker." }
            } @else {
                ol.trail {
                    @for e in &trail.items {
                        li {
                            (fmt::when(now, Some(&e.at), "")) " "
                            code { (fmt::text(&e.action)) } " "
                            (fmt::badge(e.outcome.as_str())) " "
                            span.muted { (layout::ticks(&fmt::text(&e.detail))) }
                        }
                    }
                }
                // Older records continue on the Audit page, filtered to this worker, where these end.
                @if let Some(next) = &trail.next {
                    p { a #audit-more href={ "/audit?worker=" (encoded) "&after=" (encode_component(&next.encode())) } { "Older records" } }
                }
            }
        }
    };
    Ok(layout::page(
        "Worker",
        Nav::Workers,
        &admin.session.csrf,
        &flash,
        body,
    ))
}

/// The pre-create form's fields.
#[derive(Debug, Default, Deserialize)]
pub struct CreateForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    labels: String,
}

/// The form on the Workers page that pre-creates a worker.
pub fn create_form(csrf: &str) -> maud::Markup {
    html! {
        details.card.create-worker {
            summary { "Pre-create a worker" }
            p.help { "For a machine that should join with an API key instead of a token. Its key and command are shown once, on its page." }
            form method="post" action="/workers" {
                input type="hidden" name="csrf" value=(csrf);
                div.grid {
                    div.field {
                        label for="worker-name" { "Name" }
                        input #worker-name type="text" name="name" required autocomplete="off"
                            spellcheck="false" placeholder="edge-01" aria-describedby="worker-name-help";
                        p.help #worker-name-help { "1–63 characters: a-z, 0-9, - and _." }
                    }
                    div.field {
                        label for="worker-labels" { "Labels " span.optional { "(optional)" } }
                        textarea #worker-labels name="labels" rows="2" spellcheck="false" placeholder="region=eu"
                            aria-describedby="worker-labels-help" {}
                        p.help #worker-labels-help { "One " code { "key=value" } " per line." }
                    }
                }
                div.actions { button.primary type="submit" { "Create worker" } }
            }
        }
    }
}

/// `POST /workers`: creates the worker and shows its page with the key, once.
pub async fn create(
    State(app): State<UiApp>,
    headers: HeaderMap,
    CsrfForm { admin, form }: CsrfForm<CreateForm>,
) -> Result<Response, UiError> {
    let labels = match tokens::parse_labels(&form.labels) {
        Ok(labels) => labels,
        Err(e) => {
            admin.flash(&app, Flash::Failed(e));
            return Ok(Redirect::to("/workers").into_response());
        }
    };
    let req = CreateWorkerRequest {
        name: form.name.trim().to_owned(),
        labels,
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    match ops::workers::create(&app, &admin.admin, host, &req).await {
        Ok(created) => {
            let to = format!("/workers/{}", encode_component(&created.name));
            admin.flash(
                &app,
                Flash::CreatedWorker {
                    name: created.name,
                    api_key: created.api_key,
                    command: created.worker_command,
                },
            );
            Ok(Redirect::to(&to).into_response())
        }
        Err(e) if e.status.is_server_error() => Err(e.into()),
        Err(e) => {
            admin.flash(&app, Flash::Failed(e.message));
            Ok(Redirect::to("/workers").into_response())
        }
    }
}

pub async fn confirm_remove(
    State(app): State<UiApp>,
    admin: UiAdmin,
    Path(name): Path<String>,
) -> Result<Html<String>, UiError> {
    let worker = ops::workers::show(&app, &name).await?;
    let flash = admin.take_flash(&app);
    let body = html! {
        h1 { "Remove worker " code { (worker.name) } "?" }
        div.card.confirm {
            p {
                "Its record is deleted and its name is free again. Its jobs and audit records stay. "
                "A connected worker must be revoked first."
            }
            (layout::confirm_form(
                &format!("/workers/{}/remove", encode_component(&worker.name)),
                &admin.session.csrf,
                &format!("Remove {}", worker.name),
                &format!("/workers/{}", encode_component(&worker.name)),
            ))
        }
    };
    Ok(layout::page(
        "Remove worker",
        Nav::Workers,
        &admin.session.csrf,
        &flash,
        body,
    ))
}

pub async fn remove(
    State(app): State<UiApp>,
    Path(name): Path<String>,
    CsrfForm { admin, .. }: CsrfForm<NoFields>,
) -> Result<Response, UiError> {
    match ops::workers::remove(&app, &admin.admin, &name).await {
        Ok(()) => {
            admin.flash(&app, Flash::Done(format!("worker `{name}` was removed")));
            Ok(Redirect::to("/workers").into_response())
        }
        Err(e) if e.status.is_server_error() => Err(e.into()),
        Err(e) => {
            let message = match e.hint {
                Some(hint) => format!("{}; {hint}", e.message),
                None => e.message,
            };
            admin.flash(&app, Flash::Failed(message));
            Ok(Redirect::to(&format!("/workers/{}", encode_component(&name))).into_response())
        }
    }
}
