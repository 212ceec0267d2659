//! Tokens: create one (its plaintext and a worker command line are shown once, right after),
//! list them with their effective state and bound machine, and revoke one after confirming.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use maud::{Markup, html};
use muster_core::{Labels, Timestamp};
use muster_proto::ErrorCode;
use muster_proto::api::{CreateTokenRequest, LabelMap, TokenState, TokenView};
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

/// What the create form holds, as typed (kept to show again next to an error).
#[derive(Debug, Default, Deserialize)]
pub struct CreateForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    duration: String,
    #[serde(default)]
    labels: String,
}

/// An error tied to one field of the form, or to the form as a whole.
#[derive(Debug, Default)]
struct Errors {
    fields: BTreeMap<&'static str, String>,
    form: Option<String>,
}

impl Errors {
    fn get(&self, field: &str) -> Option<&str> {
        self.fields.get(field).map(String::as_str)
    }
}

/// One `key=value` per line. Commas are allowed in values, so lines are the only separator.
pub(crate) fn parse_labels(text: &str) -> Result<LabelMap, String> {
    let mut map = LabelMap::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (k, v) = Labels::parse_pair(line).map_err(|e| e.to_string())?;
        if map.insert(k.clone(), v).is_some() {
            return Err(format!("label `{k}` is given twice"));
        }
    }
    Ok(map)
}

/// Tokens per page.
const PAGE: u32 = 100;

/// The list's filter and where its page starts.
#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    state: String,
    /// `reverse`: newest first.
    #[serde(default)]
    order: String,
    #[serde(default)]
    after: String,
}

pub async fn page(
    State(app): State<UiApp>,
    admin: UiAdmin,
    Query(query): Query<ListQuery>,
) -> Result<Html<String>, UiError> {
    let flash = admin.take_flash(&app);
    render(
        &app,
        &admin,
        &flash,
        &query,
        &CreateForm::default(),
        &Errors::default(),
    )
    .await
}

async fn render(
    app: &UiApp,
    admin: &UiAdmin,
    flash: &[Flash],
    query: &ListQuery,
    form: &CreateForm,
    errors: &Errors,
) -> Result<Html<String>, UiError> {
    let (state_error, state) = match ops::tokens::state_filter(Some(&query.state)) {
        Ok(state) => (None, state),
        Err(e) => (Some(e.message), None),
    };
    let order = page::order(&query.order);
    let tokens =
        ops::tokens::page(app, state, page::after_token(&query.after), order, PAGE).await?;
    let here = format!(
        "/tokens?state={}&order={}",
        encode_component(state.map_or("", |s| s.as_str())),
        encode_component(query.order.trim())
    );
    let now = app.clock.now();
    let created = flash.iter().find_map(|f| match f {
        Flash::CreatedToken {
            name,
            token,
            expires_at,
            command,
        } => Some((name, token, expires_at, command)),
        _ => None,
    });
    let duration = if form.duration.is_empty() {
        "24h"
    } else {
        form.duration.as_str()
    };
    let body = html! {
        h1 { "Tokens" }
        p.lede {
            "An enrollment token lets one machine join the fleet. It binds to the first machine that uses it, "
            "expires at a fixed time, and can be revoked at any moment, which disconnects its worker."
        }
        @if let Some((name, token, expires_at, command)) = created {
            section.card.secret aria-labelledby="created-title" {
                h2 #created-title { "Token " code { (name) } " created" }
                p.warning { strong { "Copy it now." } " This is the only time its secret is shown; it is stored only as a hash." }
                (layout::secret_row("Token", "created-token", token, "token"))
                (layout::secret_row("Worker command", "created-command", command, "worker command"))
                p.muted { "Expires " (fmt::when(now, Some(expires_at), "")) " (" (fmt::exact_time(Some(expires_at))) ")." }
                p.copy-status.visually-hidden aria-live="polite" {}
            }
        }
        section.card aria-labelledby="create-title" {
            h2 #create-title { "Create a token" }
            @if let Some(error) = &errors.form {
                p.notice.error role="alert" { (layout::message(error)) }
            }
            form.create-token method="post" action="/tokens" novalidate {
                input type="hidden" name="csrf" value=(admin.session.csrf);
                div.grid {
                    (text_field("name", "Name", &form.name, "edge-01",
                        "1–63 characters: a-z, 0-9, - and _. The worker takes this name.", errors.get("name")))
                    (text_field("duration", "Valid for", duration, "24h",
                        "For example 30m, 24h, 7d or 1h30m. The countdown starts now.", errors.get("duration")))
                    div.field.wide {
                        label for="labels" { "Labels " span.optional { "(optional)" } }
                        textarea #labels name="labels" rows="3" spellcheck="false" placeholder="region=eu"
                            aria-invalid=[errors.get("labels").is_some().then_some("true")]
                            aria-describedby=(layout::described_by("labels", true, errors.get("labels"))) { (form.labels) }
                        p.help #labels-help { "One " code { "key=value" } " per line. They win over labels the worker sets itself." }
                        (layout::field_error("labels", errors.get("labels")))
                    }
                }
                div.actions { button.primary type="submit" { "Create token" } }
            }
        }
        section aria-labelledby="list-title" {
            h2 #list-title { "All tokens" }
            form.filters method="get" action="/tokens" role="search" aria-label="Filter tokens" {
                (page::state_field(
                    &TokenState::KNOWN.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
                    state.map(|s| s.as_str()),
                    state_error.as_deref(),
                ))
                (page::order_field(order, "oldest first", "newest first"))
                div.actions {
                    button type="submit" { "Filter" }
                    @if state.is_some() || order == ops::page::Order::Reverse { a.button.quiet href="/tokens" { "Clear" } }
                }
            }
            (list(now, &tokens.items, state.is_some()))
            (page::pager("Pages of tokens", &here, &query.after, tokens.next.as_ref()))
        }
    };
    Ok(layout::page(
        "Tokens",
        Nav::Tokens,
        &admin.session.csrf,
        flash,
        body,
    ))
}

fn text_field(
    id: &str,
    label: &str,
    value: &str,
    placeholder: &str,
    help: &str,
    error: Option<&str>,
) -> Markup {
    html! {
        div.field {
            label for=(id) { (label) }
            input id=(id) type="text" name=(id) value=(value) placeholder=(placeholder)
                autocomplete="off" spellcheck="false" required
                aria-invalid=[error.is_some().then_some("true")]
                aria-describedby=(layout::described_by(id, true, error));
            p.help id={ (id) "-help" } { (help) }
            (layout::field_error(id, error))
        }
    }
}

fn list(now: Timestamp, tokens: &[TokenView], filtered: bool) -> Markup {
    html! {
        @if tokens.is_empty() {
            div.empty { p { @if filtered { "No token matches this filter." } @else { "No tokens yet." } } }
        } @else {
            div.table-wrap {
                table.data {
                    caption.visually-hidden { "Enrollment tokens" }
                    (layout::table_head(
                        &["Name", "State", "Expires", "Bound machine", "Worker", "Labels", "Created"],
                        true,
                    ))
                    tbody {
                        @for t in tokens {
                            tr {
                                th scope="row" data-label="Name" { span.name { (t.name) } }
                                td data-label="State" { (fmt::badge(t.state.as_str())) }
                                td data-label="Expires" { (fmt::when(now, Some(&t.expires_at), "")) }
                                td data-label="Bound machine" { (fmt::short_id(t.bound_machine.as_deref())) }
                                td data-label="Worker" {
                                    @match &t.worker {
                                        Some(w) => a.name href={ "/workers/" (encode_component(w)) } { (w) },
                                        None => (layout::none()),
                                    }
                                }
                                td data-label="Labels" { (fmt::labels(&t.labels)) }
                                td data-label="Created" { (fmt::when(now, Some(&t.created_at), "")) }
                                td.row-actions {
                                    @if matches!(t.state, TokenState::Unused | TokenState::Enrolled) {
                                        a.button.danger.small href={ "/tokens/" (t.name) "/revoke" } {
                                            "Revoke" span.visually-hidden { " token " (t.name) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

pub async fn create(
    State(app): State<UiApp>,
    headers: HeaderMap,
    CsrfForm { admin, form }: CsrfForm<CreateForm>,
) -> Result<Response, UiError> {
    let mut errors = Errors::default();
    let labels = match parse_labels(&form.labels) {
        Ok(labels) => labels,
        Err(e) => {
            errors.fields.insert("labels", e);
            LabelMap::new()
        }
    };
    if form.name.trim().is_empty() {
        errors
            .fields
            .insert("name", "enter a name for the token".into());
    }
    if form.duration.trim().is_empty() {
        errors.fields.insert(
            "duration",
            "enter how long the token is valid, like `24h`".into(),
        );
    }
    if errors.fields.is_empty() {
        let req = CreateTokenRequest {
            name: form.name.trim().to_owned(),
            duration: form.duration.trim().to_owned(),
            labels,
        };
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        match ops::tokens::create(&app, &admin.admin, host, &req).await {
            Ok(created) => {
                admin.flash(
                    &app,
                    Flash::CreatedToken {
                        name: created.name,
                        token: created.token,
                        expires_at: created.expires_at,
                        command: created.worker_command,
                    },
                );
                return Ok(Redirect::to("/tokens").into_response());
            }
            Err(e) if e.status.is_server_error() => return Err(e.into()),
            Err(e) => {
                let field = match e.code {
                    ErrorCode::InvalidName | ErrorCode::TokenExists | ErrorCode::NameInUse => {
                        Some("name")
                    }
                    ErrorCode::InvalidDuration => Some("duration"),
                    ErrorCode::InvalidLabel => Some("labels"),
                    _ => None,
                };
                match field {
                    Some(field) => {
                        errors.fields.insert(field, e.message);
                    }
                    None => errors.form = Some(e.message),
                }
            }
        }
    }
    let flash = admin.take_flash(&app);
    let page = render(&app, &admin, &flash, &ListQuery::default(), &form, &errors).await?;
    Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
}

pub async fn confirm_revoke(
    State(app): State<UiApp>,
    admin: UiAdmin,
    Path(name): Path<String>,
) -> Result<Response, UiError> {
    let token = ops::tokens::show(&app, &name).await?;
    if matches!(token.state, TokenState::Revoked | TokenState::Expired) {
        admin.flash(
            &app,
            Flash::Done(format!("token `{}` is already {}", token.name, token.state)),
        );
        return Ok(Redirect::to("/tokens").into_response());
    }
    let flash = admin.take_flash(&app);
    let body = html! {
        h1 { "Revoke token " code { (token.name) } "?" }
        div.card.confirm {
            @match &token.worker {
                Some(worker) => p {
                    "The token can no longer be used, and the worker " code { (worker) }
                    " that enrolled with it is disconnected at once and refused from now on. This cannot be undone."
                },
                None => p { "Nobody can enroll with this token any more. This cannot be undone." },
            }
            (layout::confirm_form(
                &format!("/tokens/{}/revoke", token.name),
                &admin.session.csrf,
                &format!("Revoke {}", token.name),
                "/tokens",
            ))
        }
    };
    Ok(layout::page(
        "Revoke token",
        Nav::Tokens,
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
) -> Result<Response, UiError> {
    match ops::tokens::revoke(&app, &admin.admin, &name).await {
        Ok(token) => {
            let text = match &token.worker {
                Some(w) => format!(
                    "token `{}` is revoked; worker `{w}` was cut off",
                    token.name
                ),
                None => format!("token `{}` is revoked", token.name),
            };
            admin.flash(&app, Flash::Done(text));
        }
        Err(e) if e.status.is_server_error() => return Err(e.into()),
        Err(e) => admin.flash(&app, Flash::Failed(e.message)),
    }
    Ok(Redirect::to("/tokens").into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_one_per_line_with_the_domain_rules() {
        let map = parse_labels("region=eu\n\n gpu=a, b \n").unwrap();
        assert_eq!(map.get("gpu").map(String::as_str), Some("a, b"));
        assert!(parse_labels("nokey").unwrap_err().contains("key=value"));
        assert!(parse_labels("a=1\na=2").unwrap_err().contains("twice"));
    }
}
