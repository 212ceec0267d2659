//! Audit: who did what, when, from where — filterable by action and by text, newest first, in
//! pages of [`PAGE_SIZE`].

use axum::extract::{Query, State};
use axum::response::Html;
use maud::html;
use serde::Deserialize;

use crate::ops;
use crate::ui::UiApp;
use crate::ui::auth::UiAdmin;
use crate::ui::error::{UiError, encode_component};
use crate::ui::fmt;
use crate::ui::layout::{self, Nav};
use crate::ui::page;

const PAGE_SIZE: u32 = 100;
/// Action families, offered as suggestions in the filter.
const ACTIONS: [&str; 7] = [
    "enroll.",
    "enrollment.",
    "token.",
    "worker.",
    "job.",
    "ui.",
    "ui.signin",
];

#[derive(Debug, Default, Deserialize)]
pub struct AuditQuery {
    #[serde(default)]
    action: String,
    #[serde(default)]
    q: String,
    /// Only records about this worker (from its page's "All its audit records").
    #[serde(default)]
    worker: String,
    /// Where the page starts: the cursor of the previous page's last record.
    #[serde(default)]
    after: String,
}

pub async fn page(
    State(app): State<UiApp>,
    admin: UiAdmin,
    Query(query): Query<AuditQuery>,
) -> Result<Html<String>, UiError> {
    let action = query.action.trim().to_owned();
    let text = query.q.trim().to_owned();
    // A worker name that could not be one matches nothing; it is not worth an error message.
    let worker = query.worker.trim().to_owned();
    let mut errors: (Option<String>, Option<String>) = (None, None);
    if action.chars().count() > 64 {
        errors.0 = Some("an action is at most 64 characters".into());
    }
    if text.chars().count() > 200 {
        errors.1 = Some("search for at most 200 characters".into());
    }
    let filter = ops::audit::Filter {
        before: page::after_audit(&query.after),
        action: Some(action.as_str()).filter(|_| errors.0.is_none()),
        contains: Some(text.as_str()).filter(|_| errors.1.is_none()),
        worker: Some(worker.as_str()),
        limit: Some(PAGE_SIZE),
    };
    let entries = ops::audit::page(&app, filter).await?;
    let now = app.clock.now();
    let flash = admin.take_flash(&app);
    let here = format!(
        "/audit?action={}&q={}&worker={}",
        encode_component(&action),
        encode_component(&text),
        encode_component(&worker)
    );
    let filtered = !action.is_empty() || !text.is_empty() || !worker.is_empty();
    let body = html! {
        h1 { "Audit log" }
        @if worker.is_empty() {
            p.lede { "Every admin action and every enrollment attempt, accepted or refused, newest first." }
        } @else {
            p.lede #audit-worker {
                "Records about worker " a.name href={ "/workers/" (encode_component(&worker)) } { (worker) }
                " (its own actions and those on it), newest first."
            }
        }
        form.filters method="get" action="/audit" role="search" aria-label="Filter the audit log" {
            @if !worker.is_empty() { input type="hidden" name="worker" value=(worker); }
            div.field {
                label for="filter-action" { "Action starts with" }
                input #filter-action type="search" name="action" value=(action) list="actions"
                    autocomplete="off" spellcheck="false" placeholder="token."
                    aria-invalid=[errors.0.is_some().then_some("true")]
                    aria-describedby=(layout::described_by("filter-action", false, errors.0.as_deref()));
                datalist #actions { @for a in ACTIONS { option value=(a) {} } }
                (layout::field_error("filter-action", errors.0.as_deref()))
            }
            div.field {
                label for="filter-q" { "Text" }
                input #filter-q type="search" name="q" value=(text) autocomplete="off" spellcheck="false"
                    placeholder="edge-01"
                    aria-invalid=[errors.1.is_some().then_some("true")]
                    aria-describedby=(layout::described_by("filter-q", true, errors.1.as_deref()));
                p.help #filter-q-help { "In the actor, target or detail." }
                (layout::field_error("filter-q", errors.1.as_deref()))
            }
            div.actions {
                button type="submit" { "Filter" }
                @if filtered || !query.after.trim().is_empty() { a.button.quiet href="/audit" { "Clear" } }
            }
        }
        @if entries.items.is_empty() {
            div.empty { p { @if filtered { "No record matches this filter." } @else { "Nothing recorded yet." } } }
        } @else {
            div.table-wrap {
                table.data.audit {
                    caption.visually-hidden { "Audit records" }
                    (layout::table_head(
                        &["When", "Actor", "Action", "Target", "Outcome", "From", "Detail"],
                        false,
                    ))
                    tbody {
                        @for e in &entries.items {
                            tr {
                                td data-label="When" { (fmt::when(now, Some(&e.at), "")) }
                                td data-label="Actor" { code.wrap { (fmt::text(&e.actor)) } }
                                th scope="row" data-label="Action" { code { (fmt::text(&e.action)) } }
                                td data-label="Target" { (fmt::text(&e.target)) }
                                td data-label="Outcome" { (fmt::badge(e.outcome.as_str())) }
                                td data-label="From" {
                                    @match &e.remote_addr { Some(a) => (fmt::text(a)), None => (layout::none()) }
                                }
                                td.detail data-label="Detail" { (layout::ticks(&fmt::text(&e.detail))) }
                            }
                        }
                    }
                }
            }
        }
        (page::pager("Pages of the audit log", &here, &query.after, entries.next.as_ref()))
    };
    Ok(layout::page(
        "Audit",
        Nav::Audit,
        &admin.session.csrf,
        &flash,
        body,
    ))
}
