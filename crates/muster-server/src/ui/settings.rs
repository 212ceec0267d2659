//! Settings → Security: auto-enrollment on and off, its write-only secret (set, or generated and
//! shown once), and its guard rails: a window that closes by itself, a maximum number of
//! enrollments, and a pattern new worker names must match. (About 500 lines: one page whose two
//! forms carry five fields, each with its label, help, error and the code that refills it after
//! a refusal; split, a field's markup and its handling would sit in different files.)

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use maud::{Markup, html};
use muster_core::Timestamp;
use muster_proto::api::{EnableEnrollmentRequest, EnrollmentStatus};
use serde::Deserialize;

use crate::error::AppError;
use crate::ops;
use crate::ui::UiApp;
use crate::ui::auth::UiAdmin;
use crate::ui::csrf::{CsrfForm, NoFields};
use crate::ui::error::UiError;
use crate::ui::fmt;
use crate::ui::layout::{self, Nav};
use crate::ui::session::Flash;

/// The enable form, as typed. The secret is never shown back, not even after an error.
#[derive(Default, Deserialize)]
pub struct EnableForm {
    #[serde(default)]
    secret_mode: String,
    #[serde(default)]
    secret: String,
    #[serde(default, rename = "for")]
    window: String,
    #[serde(default)]
    max_enrollments: String,
    #[serde(default)]
    name_pattern: String,
    #[serde(default)]
    expect: String,
}

/// Which form an error belongs to, and its field errors.
#[derive(Debug, Default)]
struct Errors {
    form: &'static str,
    fields: BTreeMap<&'static str, String>,
    general: Option<String>,
}

impl Errors {
    fn field(&self, form: &str, field: &str) -> Option<&str> {
        (self.form == form)
            .then(|| self.fields.get(field).map(String::as_str))
            .flatten()
    }

    fn general(&self, form: &str) -> Option<&str> {
        (self.form == form)
            .then_some(self.general.as_deref())
            .flatten()
    }

    fn is_empty(&self) -> bool {
        self.fields.is_empty() && self.general.is_none()
    }
}

pub async fn page(
    State(app): State<UiApp>,
    headers: HeaderMap,
    admin: UiAdmin,
) -> Result<Html<String>, UiError> {
    let flash = admin.take_flash(&app);
    render(&app, &headers, &admin, &flash, None, &Errors::default()).await
}

async fn render(
    app: &UiApp,
    headers: &HeaderMap,
    admin: &UiAdmin,
    flash: &[Flash],
    typed: Option<&EnableForm>,
    errors: &Errors,
) -> Result<Html<String>, UiError> {
    let status = ops::enrollment::status(app).await?;
    let now = app.clock.now();
    let generated = flash.iter().find_map(|f| match f {
        Flash::GeneratedSecret(secret) => Some(secret.as_str()),
        _ => None,
    });
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let csrf = admin.session.csrf.as_str();
    let body = html! {
        p.breadcrumb { "Settings" span aria-hidden="true" { " › " } }
        h1 { "Security" }
        (layout::settings_nav(layout::SettingsPage::Security))
        @if let Some(secret) = generated {
            (one_time_secret(app, host, secret))
        }
        section.card aria-labelledby="auto-title" {
            h2 #auto-title { "Auto-enrollment" }
            p.lede {
                "With auto-enrollment on, any machine started with a worker name and the shared secret joins the fleet "
                "and gets its own key. Switch it on only while you bring new machines up."
            }
            (status_facts(now, &status))
        }
        (enable_form(csrf, &status, typed, errors))
        @if status.secret_set_at.is_some() {
            (rotate_form(csrf, errors))
        }
        @if status.enabled {
            section.card aria-labelledby="disable-title" {
                h2 #disable-title { "Switch off" }
                p { "New enrollments are refused at once. Workers already enrolled keep working." }
                form method="post" action="/settings/security/disable" {
                    input type="hidden" name="csrf" value=(csrf);
                    div.actions { button.danger type="submit" { "Switch auto-enrollment off" } }
                }
            }
        }
    };
    Ok(layout::page(
        "Security settings",
        Nav::Settings,
        csrf,
        flash,
        body,
    ))
}

fn one_time_secret(app: &UiApp, host: Option<&str>, secret: &str) -> Markup {
    let command = ops::paste::with_secret(app, host, Some(secret));
    html! {
        section.card.secret aria-labelledby="secret-title" {
            h2 #secret-title { "New enrollment secret" }
            p.warning { strong { "Copy it now." } " This is the only time it is shown; the server keeps only a hash." }
            (layout::secret_row("Secret", "generated-secret", secret, "secret"))
            (layout::secret_row("Worker command", "secret-command", &command, "worker command"))
            p.muted {
                "Replace " code { "NAME" } " with a unique worker name. Once a worker has enrolled, remove the "
                "secret from its configuration: it keeps its own key in its state dir."
            }
        }
    }
}

fn status_facts(now: Timestamp, status: &EnrollmentStatus) -> Markup {
    let closed = status
        .window_closes_at
        .as_deref()
        .and_then(Timestamp::parse_rfc3339)
        .is_some_and(|at| at <= now);
    let limit_reached = status
        .max_enrollments
        .is_some_and(|max| status.enrollments_in_window >= max);
    html! {
        dl.facts {
            dt { "Status" }
            dd {
                @if status.enabled {
                    (fmt::badge("on"))
                } @else {
                    (fmt::badge("off"))
                    @if status.secret_set_at.is_some() && closed {
                        " " span.muted { "the window closed " (fmt::when(now, status.window_closes_at.as_deref(), "")) }
                    } @else if status.secret_set_at.is_some() && limit_reached {
                        " " span.muted { "every enrollment the window allowed was used" }
                    }
                }
            }
            dt { "Secret" }
            dd {
                @match &status.secret_set_at {
                    Some(at) => { "set " (fmt::when(now, Some(at), "")) " " span.muted { "(write-only: never shown again)" } },
                    None => span.muted { "not set" },
                }
            }
            dt { "Workers enrolled with it" }
            dd { (status.enrolled_count) }
            dt { "Window" }
            dd {
                @match &status.window_closes_at {
                    Some(at) if !closed => { "closes " (fmt::when(now, Some(at), "")) },
                    Some(at) => { "closed " (fmt::when(now, Some(at), "")) },
                    None => span.muted { "no time limit" },
                }
            }
            dt { "Enrollments in this window" }
            dd {
                (status.enrollments_in_window)
                @if let Some(max) = status.max_enrollments { " of at most " (max) }
            }
            dt { "Allowed names" }
            dd {
                @match &status.name_pattern {
                    Some(p) => code { (p) },
                    None => span.muted { "any name" },
                }
            }
            dt { "Expected names" }
            dd {
                @match &status.expected_names {
                    Some(p) => code { (p) },
                    None => span.muted { "not set" },
                }
            }
        }
    }
}

fn secret_choice(form: &str, has_secret: bool, chosen: &str, errors: &Errors) -> Markup {
    let chosen = match chosen {
        "keep" | "generate" | "set" => chosen,
        _ if has_secret && form == "enable" => "keep",
        _ => "generate",
    };
    let error = errors.field(form, "secret");
    let input_id = format!("{form}-secret");
    html! {
        fieldset.choices {
            legend { "Secret" }
            @if has_secret && form == "enable" {
                label.choice {
                    input type="radio" name="secret_mode" value="keep" checked[chosen == "keep"];
                    " Keep the current secret"
                }
            }
            label.choice {
                input type="radio" name="secret_mode" value="generate" checked[chosen == "generate"];
                " Generate a random secret " span.muted { "(shown once)" }
            }
            label.choice {
                input type="radio" name="secret_mode" value="set" checked[chosen == "set"];
                " Use this secret:"
            }
            div.field.indent {
                label.visually-hidden for=(input_id) { "Your secret" }
                input id=(input_id) type="password" name="secret" autocomplete="new-password"
                    spellcheck="false"
                    aria-invalid=[error.is_some().then_some("true")]
                    aria-describedby=(layout::described_by(&input_id, true, error));
                p.help id={ (input_id) "-help" } { "At least 32 characters, no spaces. It is stored only as a hash." }
                (layout::field_error(&input_id, error))
            }
        }
    }
}

fn enable_form(
    csrf: &str,
    status: &EnrollmentStatus,
    typed: Option<&EnableForm>,
    errors: &Errors,
) -> Markup {
    let has_secret = status.secret_set_at.is_some();
    let max = match typed {
        Some(t) => t.max_enrollments.clone(),
        None => status
            .max_enrollments
            .map(|m| m.to_string())
            .unwrap_or_default(),
    };
    let pattern = match typed {
        Some(t) => t.name_pattern.clone(),
        None => status.name_pattern.clone().unwrap_or_default(),
    };
    let expect = match typed {
        Some(t) => t.expect.clone(),
        None => status.expected_names.clone().unwrap_or_default(),
    };
    let window = typed.map(|t| t.window.clone()).unwrap_or_default();
    let mode = typed.map(|t| t.secret_mode.as_str()).unwrap_or("");
    let field = |name: &str| errors.field("enable", name);
    html! {
        section.card aria-labelledby="enable-title" {
            h2 #enable-title {
                @if status.enabled { "Change auto-enrollment" } @else { "Switch auto-enrollment on" }
            }
            @if let Some(error) = errors.general("enable") {
                p.notice.error role="alert" { (layout::message(error)) }
            }
            form method="post" action="/settings/security/enable" novalidate {
                input type="hidden" name="csrf" value=(csrf);
                (secret_choice("enable", has_secret, mode, errors))
                div.grid {
                    div.field {
                        label for="for" { "Switch off after" }
                        input #for type="text" name="for" value=(window) placeholder="2h" autocomplete="off"
                            spellcheck="false" aria-invalid=[field("for").is_some().then_some("true")]
                            aria-describedby=(layout::described_by("for", true, field("for")));
                        p.help #for-help { "Optional. Like 30m, 2h or 1d; empty: on until you switch it off." }
                        (layout::field_error("for", field("for")))
                    }
                    div.field {
                        label for="max_enrollments" { "Enrollment limit" }
                        input #max_enrollments type="text" inputmode="numeric" name="max_enrollments" value=(max)
                            placeholder="10" autocomplete="off"
                            aria-invalid=[field("max_enrollments").is_some().then_some("true")]
                            aria-describedby=(layout::described_by("max_enrollments", true, field("max_enrollments")));
                        p.help #max_enrollments-help { "Optional. At most this many, counted from now; empty: no limit." }
                        (layout::field_error("max_enrollments", field("max_enrollments")))
                    }
                    div.field {
                        label for="name_pattern" { "Allowed names" }
                        input #name_pattern type="text" name="name_pattern" value=(pattern) placeholder="edge-*"
                            autocomplete="off" spellcheck="false"
                            aria-invalid=[field("name_pattern").is_some().then_some("true")]
                            aria-describedby=(layout::described_by("name_pattern", true, field("name_pattern")));
                        p.help #name_pattern-help { "Optional. " code { "*" } " matches any run of characters, " code { "?" } " one; empty: any name." }
                        (layout::field_error("name_pattern", field("name_pattern")))
                    }
                    div.field {
                        label for="expect" { "Expected names" }
                        input #expect type="text" name="expect" value=(expect) placeholder="edge-*"
                            autocomplete="off" spellcheck="false"
                            aria-invalid=[field("expect").is_some().then_some("true")]
                            aria-describedby=(layout::described_by("expect", true, field("expect")));
                        p.help #expect-help { "Optional. Other names still enroll, flagged on their " code { "worker.enrolled" } " event." }
                        (layout::field_error("expect", field("expect")))
                    }
                }
                div.actions {
                    button.primary type="submit" {
                        @if status.enabled { "Save" } @else { "Switch on" }
                    }
                }
            }
        }
    }
}

fn rotate_form(csrf: &str, errors: &Errors) -> Markup {
    html! {
        section.card aria-labelledby="rotate-title" {
            h2 #rotate-title { "Rotate the secret" }
            p { "Workers already enrolled keep working; new ones need the new secret. The switch and the guard rails stay as they are." }
            @if let Some(error) = errors.general("rotate") {
                p.notice.error role="alert" { (layout::message(error)) }
            }
            form method="post" action="/settings/security/rotate" novalidate {
                input type="hidden" name="csrf" value=(csrf);
                (secret_choice("rotate", true, "", errors))
                div.actions { button type="submit" { "Rotate secret" } }
            }
        }
    }
}

/// Turns the form's secret choice into the request's `secret`/`generate`.
fn secret_request(
    form_name: &'static str,
    form: &EnableForm,
    errors: &mut Errors,
) -> (Option<String>, bool) {
    errors.form = form_name;
    match form.secret_mode.as_str() {
        "generate" => (None, true),
        "set" if form.secret.is_empty() => {
            errors.fields.insert(
                "secret",
                "enter a secret of at least 32 characters, or choose to generate one".into(),
            );
            (None, false)
        }
        "set" => (Some(form.secret.clone()), false),
        "keep" if form_name == "enable" => (None, false),
        _ => {
            errors
                .fields
                .insert("secret", "choose how to set the secret".into());
            (None, false)
        }
    }
}

/// Files an error from the shared operation under the field it is about. The form's fields
/// carry the request's names, so the operation's word for the field is the form's too.
fn file_error(errors: &mut Errors, error: AppError) {
    match error.field {
        Some(field) => {
            errors.fields.insert(field, error.message);
        }
        None => errors.general = Some(error.message),
    }
}

fn done(app: &UiApp, admin: &UiAdmin, text: &str, generated: Option<String>) -> Response {
    if let Some(secret) = generated {
        admin.flash(app, Flash::GeneratedSecret(secret));
    }
    admin.flash(app, Flash::Done(text.to_owned()));
    Redirect::to("/settings/security").into_response()
}

async fn failed(
    app: &UiApp,
    headers: &HeaderMap,
    admin: &UiAdmin,
    typed: &EnableForm,
    errors: &Errors,
) -> Result<Response, UiError> {
    let flash = admin.take_flash(app);
    let page = render(app, headers, admin, &flash, Some(typed), errors).await?;
    Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
}

pub async fn enable(
    State(app): State<UiApp>,
    headers: HeaderMap,
    CsrfForm { admin, form }: CsrfForm<EnableForm>,
) -> Result<Response, UiError> {
    let mut errors = Errors::default();
    let (secret, generate) = secret_request("enable", &form, &mut errors);
    let max_text = form.max_enrollments.trim();
    let max_enrollments = if max_text.is_empty() {
        None
    } else {
        match max_text.parse::<u64>() {
            Ok(n) if n >= 1 => Some(n),
            _ => {
                errors.fields.insert(
                    "max_enrollments",
                    "enter a whole number of at least 1, or leave it empty for no limit".into(),
                );
                None
            }
        }
    };
    if !errors.is_empty() {
        return failed(&app, &headers, &admin, &form, &errors).await;
    }
    let request = EnableEnrollmentRequest {
        secret,
        generate,
        window: Some(form.window.trim())
            .filter(|w| !w.is_empty())
            .map(str::to_owned),
        max_enrollments,
        name_pattern: Some(form.name_pattern.trim())
            .filter(|p| !p.is_empty())
            .map(str::to_owned),
        expect: Some(form.expect.trim())
            .filter(|p| !p.is_empty())
            .map(str::to_owned),
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    match ops::enrollment::enable(&app, &admin.admin, host, &request).await {
        Ok(response) => {
            let text = if response.generated_secret.is_some() {
                "auto-enrollment is on with a new generated secret"
            } else if request.secret.is_some() {
                "auto-enrollment is on with the secret you entered"
            } else {
                "auto-enrollment is on"
            };
            Ok(done(&app, &admin, text, response.generated_secret))
        }
        Err(e) if e.status.is_server_error() => Err(e.into()),
        Err(e) => {
            file_error(&mut errors, e);
            failed(&app, &headers, &admin, &form, &errors).await
        }
    }
}

pub async fn rotate(
    State(app): State<UiApp>,
    headers: HeaderMap,
    CsrfForm { admin, form }: CsrfForm<EnableForm>,
) -> Result<Response, UiError> {
    let mut errors = Errors::default();
    let (secret, generate) = secret_request("rotate", &form, &mut errors);
    if !errors.is_empty() {
        return failed(&app, &headers, &admin, &EnableForm::default(), &errors).await;
    }
    let request = EnableEnrollmentRequest {
        secret,
        generate,
        ..EnableEnrollmentRequest::default()
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    match ops::enrollment::rotate(&app, &admin.admin, host, &request).await {
        Ok(response) => Ok(done(
            &app,
            &admin,
            "the secret is replaced; workers already enrolled keep working",
            response.generated_secret,
        )),
        Err(e) if e.status.is_server_error() => Err(e.into()),
        Err(e) => {
            file_error(&mut errors, e);
            failed(&app, &headers, &admin, &EnableForm::default(), &errors).await
        }
    }
}

pub async fn disable(
    State(app): State<UiApp>,
    CsrfForm { admin, .. }: CsrfForm<NoFields>,
) -> Result<Response, UiError> {
    ops::enrollment::disable(&app, &admin.admin).await?;
    Ok(done(
        &app,
        &admin,
        "auto-enrollment is off; workers already enrolled keep working",
        None,
    ))
}
