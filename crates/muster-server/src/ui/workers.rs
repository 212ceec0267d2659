//! Workers: the fleet with live status, filters by name and label, and revoking a worker after
//! a confirmation step. The table refreshes itself (the script polls `/workers/live`, which
//! answers with the same HTML the page embeds); without JavaScript a reload does the same.

use axum::extract::{Path, Query, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use maud::{Markup, html};
use muster_core::{Labels, Timestamp};
use muster_proto::api::{EnrolledVia, WorkerStatus, WorkerView};
use serde::Deserialize;

use crate::ops;
use crate::ui::UiApp;
use crate::ui::auth::UiAdmin;
use crate::ui::csrf::{CsrfForm, NoFields};
use crate::ui::error::{UiError, encode_component};
use crate::ui::fmt;
use crate::ui::layout::{self, Nav};
use crate::ui::session::Flash;

#[derive(Debug, Default, Deserialize)]
pub struct FilterQuery {
    #[serde(default)]
    name: String,
    #[serde(default)]
    label: String,
}

/// A checked filter: what to match, and what was wrong with what was typed.
#[derive(Debug, Default)]
struct Filter {
    name: String,
    labels: Vec<(String, Option<String>)>,
    name_error: Option<String>,
    label_error: Option<String>,
}

impl Filter {
    fn parse(query: &FilterQuery) -> Self {
        let mut filter = Filter::default();
        let name = query.name.trim();
        if name.chars().count() > 63 {
            filter.name_error = Some("a worker name is at most 63 characters".into());
        } else {
            filter.name = name.to_lowercase();
        }
        for part in query
            .label
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            // A bare key matches any value; `key=value` must match exactly. Both are checked with
            // the domain's label rules so the message names the rule.
            let checked = match part.split_once('=') {
                Some(_) => Labels::parse_pair(part).map(|(k, v)| (k, Some(v))),
                None => Labels::parse_pair(&format!("{part}=x")).map(|(k, _)| (k, None)),
            };
            match checked {
                Ok(pair) => filter.labels.push(pair),
                Err(e) => {
                    filter.label_error = Some(e.to_string());
                    filter.labels.clear();
                    break;
                }
            }
        }
        filter
    }

    fn matches(&self, worker: &WorkerView) -> bool {
        worker.name.contains(&self.name)
            && self
                .labels
                .iter()
                .all(|(k, v)| match (worker.labels.get(k), v) {
                    (Some(have), Some(want)) => have == want,
                    (Some(_), None) => true,
                    (None, _) => false,
                })
    }

    fn is_empty(&self) -> bool {
        self.name.is_empty() && self.labels.is_empty()
    }
}

fn query_string(query: &FilterQuery) -> String {
    format!(
        "name={}&label={}",
        encode_component(query.name.trim()),
        encode_component(query.label.trim())
    )
}

pub async fn page(
    State(app): State<UiApp>,
    admin: UiAdmin,
    Query(query): Query<FilterQuery>,
) -> Result<Html<String>, UiError> {
    let filter = Filter::parse(&query);
    let workers = ops::workers::list(&app).await?;
    let now = app.clock.now();
    let flash = admin.take_flash(&app);
    let body = html! {
        h1 { "Workers" }
        p.lede { "The machines in the fleet. New workers appear here by themselves." }
        form.filters method="get" action="/workers" role="search" aria-label="Filter workers" {
            div.field {
                label for="filter-name" { "Name contains" }
                input #filter-name type="search" name="name" value=(query.name.trim())
                    autocomplete="off" spellcheck="false"
                    aria-invalid=[filter.name_error.is_some().then_some("true")]
                    aria-describedby=(layout::described_by("filter-name", false, filter.name_error.as_deref()));
                (layout::field_error("filter-name", filter.name_error.as_deref()))
            }
            div.field {
                label for="filter-label" { "Label" }
                input #filter-label type="search" name="label" value=(query.label.trim())
                    autocomplete="off" spellcheck="false" placeholder="region=eu"
                    aria-invalid=[filter.label_error.is_some().then_some("true")]
                    aria-describedby=(layout::described_by("filter-label", true, filter.label_error.as_deref()));
                p.help #filter-label-help { code { "key" } " or " code { "key=value" } "; several separated by commas" }
                (layout::field_error("filter-label", filter.label_error.as_deref()))
            }
            div.actions {
                button type="submit" { "Filter" }
                @if !filter.is_empty() || filter.name_error.is_some() || filter.label_error.is_some() {
                    a.button.quiet href="/workers" { "Clear" }
                }
            }
        }
        p #fleet-live.visually-hidden aria-live="polite" {}
        div #fleet data-poll={ "/workers/live?" (query_string(&query)) } {
            (fleet(now, &workers, &filter))
        }
    };
    Ok(layout::page(
        "Workers",
        Nav::Workers,
        &admin.session.csrf,
        &flash,
        body,
    ))
}

/// The part of the page the script refreshes.
pub async fn live(
    State(app): State<UiApp>,
    _admin: UiAdmin,
    Query(query): Query<FilterQuery>,
) -> Result<Html<String>, UiError> {
    let filter = Filter::parse(&query);
    let workers = ops::workers::list(&app).await?;
    Ok(Html(
        fleet(app.clock.now(), &workers, &filter).into_string(),
    ))
}

fn summary(shown: &[&WorkerView], total: usize) -> String {
    let connected = shown
        .iter()
        .filter(|w| w.status == WorkerStatus::Connected)
        .count();
    let busy = shown.iter().filter(|w| w.running_jobs > 0).count();
    let noun = if total == 1 { "worker" } else { "workers" };
    if shown.len() == total {
        format!("{total} {noun}: {connected} connected, {busy} busy")
    } else {
        format!(
            "{} of {total} {noun} match: {connected} connected, {busy} busy",
            shown.len()
        )
    }
}

fn fleet(now: Timestamp, workers: &[WorkerView], filter: &Filter) -> Markup {
    let mut shown: Vec<&WorkerView> = workers.iter().filter(|w| filter.matches(w)).collect();
    shown.sort_by(|a, b| a.name.cmp(&b.name));
    html! {
        p.summary data-live-summary { (summary(&shown, workers.len())) }
        @if shown.is_empty() {
            div.empty {
                @if workers.is_empty() {
                    p { "No workers yet." }
                    p {
                        "Create an enrollment token on the " a href="/tokens" { "Tokens" } " page, or switch on "
                        a href="/settings/security" { "auto-enrollment" } ", then start "
                        code { "muster worker" } " on a machine."
                    }
                } @else {
                    p { "No worker matches this filter." }
                }
            }
        } @else {
            div.table-wrap {
                table.data {
                    caption.visually-hidden { "Workers" }
                    (layout::table_head(
                        &["Name", "Status", "Activity", "Enrolled via", "Machine", "Labels", "Last seen"],
                        true,
                    ))
                    tbody {
                        @for w in &shown {
                            (row(now, w))
                        }
                    }
                }
            }
        }
    }
}

fn row(now: Timestamp, w: &WorkerView) -> Markup {
    let connected = w.status == WorkerStatus::Connected;
    html! {
        tr data-status=(w.status) {
            th scope="row" data-label="Name" { span.name { (w.name) } }
            td data-label="Status" { (fmt::badge(w.status.as_str())) }
            td data-label="Activity" {
                @if !connected {
                    (layout::none())
                } @else if w.running_jobs > 0 {
                    span.activity.busy { "busy" } " " span.muted { (w.running_jobs) "/" (w.slots) " running" }
                } @else {
                    span.activity { "idle" } " " span.muted { "0/" (w.slots) " running" }
                }
            }
            td data-label="Enrolled via" {
                (w.enrolled_via)
                @if let Some(token) = &w.token {
                    " " span.muted { "(" code { (token) } ")" }
                }
            }
            td data-label="Machine" { (fmt::short_id(w.machine_id.as_deref())) }
            td data-label="Labels" { (fmt::labels(&w.labels)) }
            td data-label="Last seen" {
                @if connected { "now" } @else { (fmt::when(now, w.last_seen_at.as_deref(), "never")) }
            }
            td.row-actions {
                @if w.enrolled_via == EnrolledVia::Builtin {
                    span.muted title="The built-in worker runs inside the server; start the server with --no-builtin-worker to do without it" {
                        "cannot be revoked"
                    }
                } @else if w.status != WorkerStatus::Revoked {
                    a.button.danger.small id={ "revoke-" (w.name) } href={ "/workers/" (w.name) "/revoke" } {
                        "Revoke" span.visually-hidden { " " (w.name) }
                    }
                }
            }
        }
    }
}

pub async fn confirm_revoke(
    State(app): State<UiApp>,
    admin: UiAdmin,
    Path(name): Path<String>,
) -> Result<Response, UiError> {
    let worker = ops::workers::show(&app, &name).await?;
    let flash = admin.take_flash(&app);
    if worker.status == WorkerStatus::Revoked {
        admin.flash(
            &app,
            Flash::Done(format!("worker `{}` is already revoked", worker.name)),
        );
        return Ok(Redirect::to("/workers").into_response());
    }
    let now = app.clock.now();
    let body = html! {
        h1 { "Revoke worker " code { (worker.name) } "?" }
        div.card.confirm {
            p {
                "The worker is disconnected at once and refused from now on, whichever way it enrolled. "
                "Jobs running on it end as " em { "lost" } ". This cannot be undone."
            }
            @if let Some(token) = &worker.token {
                p { "Its enrollment token " code { (token) } " is revoked with it." }
            }
            dl.facts {
                dt { "Status" } dd { (fmt::badge(worker.status.as_str())) }
                dt { "Enrolled via" } dd { (worker.enrolled_via) }
                dt { "Machine" } dd { (fmt::short_id(worker.machine_id.as_deref())) }
                dt { "Last seen" } dd {
                    @if worker.status == WorkerStatus::Connected { "now" } @else { (fmt::when(now, worker.last_seen_at.as_deref(), "never")) }
                }
            }
            (layout::confirm_form(
                &format!("/workers/{}/revoke", worker.name),
                &admin.session.csrf,
                &format!("Revoke {}", worker.name),
                "/workers",
            ))
        }
    };
    Ok(layout::page(
        "Revoke worker",
        Nav::Workers,
        &admin.session.csrf,
        &flash,
        body,
    )
    .into_response())
}

pub async fn revoke(
    State(app): State<UiApp>,
    Path(name): Path<String>,
    CsrfForm { admin, .. }: CsrfForm<NoFields>,
) -> Response {
    match ops::workers::revoke(&app, &admin.admin, &name).await {
        Ok(worker) => admin.flash(
            &app,
            Flash::Done(format!(
                "worker `{}` is revoked and was disconnected",
                worker.name
            )),
        ),
        Err(e) if e.status.is_server_error() => {
            return UiError::from(e).into_response();
        }
        Err(e) => admin.flash(&app, Flash::Failed(e.message)),
    }
    Redirect::to("/workers").into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(name: &str, labels: &[(&str, &str)]) -> WorkerView {
        WorkerView {
            id: "0".repeat(32),
            name: name.into(),
            status: WorkerStatus::Connected,
            enrolled_via: EnrolledVia::Secret,
            machine_id: None,
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            last_seen_at: None,
            created_at: String::new(),
            expires_at: None,
            revoked_at: None,
            token: None,
            running_jobs: 0,
            slots: 1,
            remote_addr: None,
            confinement: None,
            replica: None,
        }
    }

    fn filter(name: &str, label: &str) -> Filter {
        Filter::parse(&FilterQuery {
            name: name.into(),
            label: label.into(),
        })
    }

    #[test]
    fn filters_match_names_and_labels() {
        let eu = worker("edge-eu-1", &[("region", "eu"), ("gpu", "a100")]);
        let us = worker("edge-us-1", &[("region", "us")]);
        assert!(filter("EU", "").matches(&eu), "names match without case");
        assert!(!filter("eu", "").matches(&us));
        assert!(filter("", "region=eu").matches(&eu));
        assert!(!filter("", "region=eu").matches(&us));
        assert!(
            filter("", "gpu").matches(&eu),
            "a bare key matches any value"
        );
        assert!(!filter("", "gpu").matches(&us));
        assert!(filter("edge", "region=eu, gpu").matches(&eu));
        let bad = filter("", "Region=eu");
        assert!(
            bad.label_error
                .as_ref()
                .is_some_and(|e| e.contains("Region"))
        );
        assert!(bad.matches(&us), "a rejected filter filters nothing");
        assert!(filter(&"x".repeat(64), "").name_error.is_some());
    }
}
