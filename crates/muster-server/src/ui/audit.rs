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
    before: Option<String>,
}

pub async fn page(
    State(app): State<UiApp>,
    admin: UiAdmin,
    Query(query): Query<AuditQuery>,
) -> Result<Html<String>, UiError> {
    let action = query.action.trim().to_owned();
    let text = query.q.trim().to_owned();
    let mut errors: (Option<String>, Option<String>) = (None, None);
    if action.chars().count() > 64 {
        errors.0 = Some("an action is at most 64 characters".into());
    }
    if text.chars().count() > 200 {
        errors.1 = Some("search for at most 200 characters".into());
    }
    let before = match query.before.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(b) => Some(
            b.parse::<i64>()
                .map_err(|_| UiError::bad_request("the page marker `before` must be a number"))?,
        ),
    };
    let filter = ops::audit::Filter {
        before,
        action: Some(action.as_str()).filter(|_| errors.0.is_none()),
        contains: Some(text.as_str()).filter(|_| errors.1.is_none()),
        limit: Some(PAGE_SIZE),
    };
    let entries = ops::audit::list(&app, filter).await?;
    let now = app.clock.now();
    let flash = admin.take_flash(&app);
    let older = (entries.len() == PAGE_SIZE as usize)
        .then(|| entries.last().map(|e| e.seq))
        .flatten();
    let filtered = !action.is_empty() || !text.is_empty();
    let body = html! {
        h1 { "Audit log" }
        p.lede { "Every admin action and every enrollment attempt, accepted or refused, newest first." }
        form.filters method="get" action="/audit" role="search" aria-label="Filter the audit log" {
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
                @if filtered || before.is_some() { a.button.quiet href="/audit" { "Clear" } }
            }
        }
        @if entries.is_empty() {
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
                        @for e in &entries {
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
            @if let Some(seq) = older {
                p.pager {
                    a.button href={ "/audit?action=" (encode_component(&action)) "&q=" (encode_component(&text)) "&before=" (seq) } {
                        "Older records"
                    }
                }
            }
        }
    };
    Ok(layout::page(
        "Audit",
        Nav::Audit,
        &admin.session.csrf,
        &flash,
        body,
    ))
}
