//! Workers: the fleet with live status, filters by name, label and status, and revoking a worker
//! after a confirmation step. One page of at most [`PAGE`] workers at a time, filtered and paged
//! by the server (`ops::workers::page`, the same pages as `GET /api/v1/workers`), so the page
//! stays small with a fleet of 100,000. The table refreshes itself (the script polls
//! `/workers/live` with the same filters and cursor, which answers with the same HTML the page
//! embeds); without JavaScript a reload does the same.

use axum::extract::{Path, Query, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use maud::{Markup, html};
use muster_core::{Labels, Timestamp};
use muster_proto::api::{EnrolledVia, WorkerStatus, WorkerView};
use serde::Deserialize;

use muster_store::WorkerSort;

use crate::ops;
use crate::ops::workers::Sort;
use crate::ui::UiApp;
use crate::ui::auth::UiAdmin;
use crate::ui::csrf::{CsrfForm, NoFields};
use crate::ui::error::{UiError, encode_component};
use crate::ui::fmt;
use crate::ui::layout::{self, Nav};
use crate::ui::session::Flash;
use crate::ui::{overview, page, worker};

/// Workers per page.
const PAGE: u32 = 100;

#[derive(Debug, Default, Deserialize)]
pub struct FilterQuery {
    #[serde(default)]
    name: String,
    #[serde(default)]
    label: String,
    #[serde(default)]
    status: String,
    /// The order (`name`, `created`, `last_seen`, `-` first for descending); name by default.
    #[serde(default)]
    sort: String,
    /// Where the page starts: the cursor of the previous page's last worker.
    #[serde(default)]
    after: String,
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

    /// The filter as the store and registry apply it (a rejected part filters nothing).
    fn to_ops(&self, status: Option<muster_core::WorkerStatus>) -> ops::workers::Filter {
        ops::workers::Filter {
            status,
            labels: self
                .labels
                .iter()
                .map(|(key, value)| muster_store::LabelMatch {
                    key: key.clone(),
                    value: value.clone(),
                })
                .collect(),
            name: Some(self.name.clone()).filter(|n| !n.is_empty()),
        }
    }

    fn is_empty(&self) -> bool {
        self.name.is_empty() && self.labels.is_empty()
    }
}

/// The status filter as chosen from the list (anything else: any status).
fn status(query: &FilterQuery) -> Option<muster_core::WorkerStatus> {
    muster_core::WorkerStatus::ALL
        .into_iter()
        .find(|s| s.as_str() == query.status.trim())
}

/// The order chosen (anything unknown: the default, by name).
fn sort(query: &FilterQuery) -> Sort {
    Sort::from_word(query.sort.trim()).unwrap_or_default()
}

/// The filters alone, for links that change the order.
fn filters_string(query: &FilterQuery) -> String {
    format!(
        "name={}&label={}&status={}",
        encode_component(query.name.trim()),
        encode_component(query.label.trim()),
        encode_component(query.status.trim())
    )
}

/// The filters and the order: what the pager and the live refresh keep.
fn query_string(query: &FilterQuery) -> String {
    format!("{}&sort={}", filters_string(query), sort(query).word())
}

/// The table's header. The sortable columns link to the same filters in their order (the one in
/// use the other way; times newest first) and the one in use says so (`aria-sort`, an arrow).
fn head(query: &FilterQuery) -> Markup {
    let current = sort(query);
    let columns = [
        ("Name", Some(WorkerSort::Name)),
        ("Status", None),
        ("Activity", None),
        ("Enrolled via", None),
        ("Machine", None),
        ("Labels", None),
        ("Created", Some(WorkerSort::Created)),
        ("Last seen", Some(WorkerSort::LastSeen)),
    ];
    let way = |s: Sort| {
        if s.descending {
            "descending"
        } else {
            "ascending"
        }
    };
    html! {
        thead {
            tr {
                @for (title, by) in columns {
                    @if let Some(by) = by {
                        @let here = current.by == by;
                        @let next = if here {
                            current.reversed()
                        } else {
                            Sort { by, descending: by != WorkerSort::Name }
                        };
                        th scope="col" aria-sort=[here.then(|| way(current))] {
                            a.sort data-sort=(by.as_str())
                                href={ "/workers?" (filters_string(query)) "&sort=" (next.word()) }
                                title={ "Sort by " (title.to_lowercase()) ", " (way(next)) } {
                                (title)
                                @if here {
                                    span.arrow aria-hidden="true" { @if current.descending { " ↓" } @else { " ↑" } }
                                }
                            }
                        }
                    } @else {
                        th scope="col" { (title) }
                    }
                }
                th scope="col" { span.visually-hidden { "Actions" } }
            }
        }
    }
}

/// How the page says its order, after "The machines in the fleet, ".
fn order_words(sort: Sort) -> &'static str {
    match (sort.by, sort.descending) {
        (WorkerSort::Name, false) => "in name order",
        (WorkerSort::Name, true) => "in reverse name order",
        (WorkerSort::Created, true) => "newest first",
        (WorkerSort::Created, false) => "oldest first",
        (WorkerSort::LastSeen, true) => "most recently seen first",
        (WorkerSort::LastSeen, false) => "longest unseen first",
    }
}

/// The page the query asks for: its workers, and the cursor of the next page.
async fn fetch(
    app: &UiApp,
    query: &FilterQuery,
    filter: &Filter,
) -> Result<ops::page::Page<WorkerView>, UiError> {
    let sort = sort(query);
    let after = page::after_worker(&query.after, sort);
    Ok(ops::workers::page(app, &filter.to_ops(status(query)), sort, after, PAGE).await?)
}

pub async fn page(
    State(app): State<UiApp>,
    admin: UiAdmin,
    Query(query): Query<FilterQuery>,
) -> Result<Html<String>, UiError> {
    let filter = Filter::parse(&query);
    let page = fetch(&app, &query, &filter).await?;
    let counts = overview::counts(&app).await?;
    let connected = counts.connected(app.registry.len());
    let now = app.clock.now();
    let flash = admin.take_flash(&app);
    let chosen = status(&query);
    let body = html! {
        h1 { "Workers" }
        p.lede { "The machines in the fleet, " (order_words(sort(&query))) ". Changes appear here by themselves." }
        div #overview data-refresh="/workers/overview" {
            (overview::render(&counts.fleet, connected))
        }
        (worker::create_form(&admin.session.csrf))
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
            div.field {
                label for="filter-status" { "Status" }
                select #filter-status name="status" {
                    option value="" selected[chosen.is_none()] { "any" }
                    @for s in muster_core::WorkerStatus::ALL {
                        option value=(s.as_str()) selected[chosen == Some(s)] { (s.as_str()) }
                    }
                }
            }
            // The order, also where the table's headings are hidden (phones) or without a pointer.
            div.field {
                label for="filter-sort" { "Order" }
                select #filter-sort name="sort" {
                    @for by in WorkerSort::ALL {
                        @for descending in [false, true] {
                            @let option = Sort { by, descending };
                            option value=(option.word()) selected[option == sort(&query)] { (order_words(option)) }
                        }
                    }
                }
            }
            div.actions {
                button type="submit" { "Filter" }
                @if !filter.is_empty() || chosen.is_some() || filter.name_error.is_some() || filter.label_error.is_some() {
                    a.button.quiet href={ "/workers?sort=" (sort(&query).word()) } { "Clear" }
                }
            }
        }
        p #fleet-live.visually-hidden aria-live="polite" {}
        div #fleet data-poll={ "/workers/live?" (query_string(&query)) "&after=" (encode_component(query.after.trim())) }
            data-events="/workers/events" {
            (fleet(now, &page, &query, connected, !filter.is_empty() || chosen.is_some()))
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
    let page = fetch(&app, &query, &filter).await?;
    let filtered = !filter.is_empty() || status(&query).is_some();
    let connected = overview::counts(&app).await?.connected(app.registry.len());
    Ok(Html(
        fleet(app.clock.now(), &page, &query, connected, filtered).into_string(),
    ))
}

fn summary(shown: &[WorkerView], connected_in_fleet: u64, first_page: bool) -> String {
    let connected = shown
        .iter()
        .filter(|w| w.status == WorkerStatus::Connected)
        .count();
    let busy = shown.iter().filter(|w| w.running_jobs > 0).count();
    let noun = if shown.len() == 1 {
        "worker"
    } else {
        "workers"
    };
    let place = if first_page { "" } else { " (a later page)" };
    format!(
        "{} {noun} shown{place}: {connected} connected, {busy} busy; {connected_in_fleet} connected in the whole fleet",
        shown.len()
    )
}

fn fleet(
    now: Timestamp,
    page: &ops::page::Page<WorkerView>,
    query: &FilterQuery,
    connected_in_fleet: u64,
    filtered: bool,
) -> Markup {
    let shown = &page.items;
    let first_page = query.after.trim().is_empty();
    html! {
        p.summary data-live-summary { (summary(shown, connected_in_fleet, first_page)) }
        @if shown.is_empty() {
            div.empty {
                @if !filtered && first_page {
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
                    (head(query))
                    tbody {
                        @for w in shown {
                            (row(now, w))
                        }
                    }
                }
            }
        }
        (page::pager("Pages of workers", &format!("/workers?{}", query_string(query)), &query.after, page.next.as_ref()))
    }
}

/// One worker's row; the live page replaces it by `data-name` when the worker changes.
pub fn row(now: Timestamp, w: &WorkerView) -> Markup {
    let connected = w.status == WorkerStatus::Connected;
    html! {
        tr data-status=(w.status) data-name=(w.name) {
            th scope="row" data-label="Name" { a.name href={ "/workers/" (encode_component(&w.name)) } title=(w.name) { (w.name) } }
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
            td data-label="Created" { (fmt::when(now, Some(&w.created_at), "")) }
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

    fn filter(name: &str, label: &str) -> Filter {
        Filter::parse(&FilterQuery {
            name: name.into(),
            label: label.into(),
            ..FilterQuery::default()
        })
    }

    #[test]
    fn filters_become_the_store_s_filters() {
        let f = filter("EU", "region=eu, gpu").to_ops(None);
        assert_eq!(f.name.as_deref(), Some("eu"), "names match without case");
        assert_eq!(
            f.labels,
            [
                muster_store::LabelMatch {
                    key: "region".into(),
                    value: Some("eu".into())
                },
                muster_store::LabelMatch {
                    key: "gpu".into(),
                    value: None
                },
            ],
            "a bare key matches any value"
        );
        let bad = filter("", "Region=eu");
        assert!(
            bad.label_error
                .as_ref()
                .is_some_and(|e| e.contains("Region"))
        );
        assert!(
            bad.to_ops(None).labels.is_empty(),
            "a rejected filter filters nothing"
        );
        assert!(filter(&"x".repeat(64), "").name_error.is_some());
    }
}
