//! Settings → License: the edition, the license's state, licensee, seats and expiry with its
//! warning; a form to paste a license, the button that starts the trial, and removal (behind a
//! confirmation). The work is in [`crate::ops::license`], shared with the API.

use axum::extract::State;
use axum::response::{Html, IntoResponse, Redirect, Response};
use maud::{Markup, html};
use muster_core::Timestamp;
use muster_proto::api::{Edition, LicenseView};
use serde::Deserialize;

use crate::ops;
use crate::ui::UiApp;
use crate::ui::auth::UiAdmin;
use crate::ui::csrf::{CsrfForm, NoFields};
use crate::ui::error::UiError;
use crate::ui::fmt;
use crate::ui::layout::{self, Nav, SettingsPage};
use crate::ui::session::Flash;

const PATH: &str = "/settings/license";

#[derive(Default, Deserialize)]
pub struct InstallForm {
    #[serde(default)]
    license: String,
}

pub async fn page(State(app): State<UiApp>, admin: UiAdmin) -> Result<Html<String>, UiError> {
    let view = ops::license::show(&app).await?;
    let flash = admin.take_flash(&app);
    let now = app.clock.now();
    let csrf = admin.session.csrf.as_str();
    let body = html! {
        p.breadcrumb { "Settings" span aria-hidden="true" { " › " } }
        h1 { "License" }
        (layout::settings_nav(SettingsPage::License))
        section.card aria-labelledby="edition-title" {
            h2 #edition-title { (edition_name(view.edition)) }
            p.lede { (lede(&view)) }
            (facts(now, &view))
            // Unless the banner above already says it.
            @if let Some(warning) = view.warning.as_ref().filter(|w| admin.banner.as_ref().is_none_or(|b| &b.text != *w)) {
                p.notice.warn role="status" { (layout::message(warning)) }
            }
        }
        @if view.trial_started_at.is_none() && view.edition == Edition::Community {
            section.card aria-labelledby="trial-title" {
                h2 #trial-title { "Try it" }
                p { "The trial lets external workers join for 30 days, without a limit. It runs once per fleet." }
                form method="post" action="/settings/license/trial" {
                    input type="hidden" name="csrf" value=(csrf);
                    div.actions { button type="submit" { "Start the 30-day trial" } }
                }
            }
        }
        section.card aria-labelledby="install-title" {
            h2 #install-title { "Install a license" }
            form method="post" action="/settings/license/install" {
                input type="hidden" name="csrf" value=(csrf);
                div.field {
                    label for="license" { "License" }
                    textarea #license name="license" rows="5" spellcheck="false" autocomplete="off"
                        required aria-describedby="license-help" {}
                    p.help #license-help {
                        "Paste the license as you received it (one line starting with " code { "v4.public." }
                        "). It is checked here, offline, and takes effect at once on every replica."
                    }
                }
                div.actions { button type="submit" { "Install license" } }
            }
        }
        @if view.edition != Edition::Community {
            section.card aria-labelledby="remove-title" {
                h2 #remove-title { "Remove" }
                p { "Workers that joined stay connected and keep their jobs; new external workers are refused." }
                div.actions {
                    a.button.quiet href="/settings/license/remove" {
                        @if view.edition == Edition::Trial { "End the trial…" } @else { "Remove the license…" }
                    }
                }
            }
        }
    };
    Ok(layout::page("License", Nav::Settings, csrf, &flash, body))
}

fn edition_name(edition: Edition) -> &'static str {
    match edition {
        Edition::Community => "Community Edition",
        Edition::Trial => "Trial",
        Edition::Licensed => "Licensed",
        Edition::Unknown => "Unknown edition",
    }
}

fn lede(view: &LicenseView) -> &'static str {
    match view.edition {
        Edition::Community => {
            "Jobs run on the built-in worker. External workers cannot join until a license is installed or the trial starts."
        }
        _ if view.can_join => "External workers can join.",
        _ => "New external workers are refused; workers that joined keep working.",
    }
}

fn facts(now: Timestamp, view: &LicenseView) -> Markup {
    let workers = match (view.edition, view.max_workers) {
        (Edition::Community, _) => format!(
            "{} external, none may join in Community Edition",
            view.workers_used
        ),
        (_, Some(max)) => format!("{} of {max} used", view.workers_used),
        (_, None) => format!("{} used, no limit", view.workers_used),
    };
    html! {
        dl.facts {
            dt { "State" } dd { (fmt::badge(view.state.as_str())) }
            dt { "Licensee" } dd { @if let Some(l) = &view.licensee { (l) } @else { (layout::none()) } }
            dt { "Workers" } dd { (workers) }
            dt { "External joins" } dd {
                @if view.can_join { (fmt::badge("open")) } @else { (fmt::badge("refused")) }
            }
            dt { "Expires" } dd {
                (fmt::exact_time(view.expires_at.as_deref()))
                @if view.expires_at.is_some() { " (" (fmt::when(now, view.expires_at.as_deref(), "")) ")" }
            }
            dt { "Grace ends" } dd { (fmt::exact_time(view.grace_ends_at.as_deref())) }
            dt { "Issuer" } dd { (fmt::short_id(view.issuer.as_deref())) }
            dt { "Trial" } dd {
                @match (&view.trial_started_at, &view.trial_ends_at) {
                    (Some(start), Some(end)) => { (fmt::exact_time(Some(start))) " to " (fmt::exact_time(Some(end))) }
                    _ => { span.muted { "not used" } }
                }
            }
            @if let (Some(at), Some(message)) = (&view.last_refused_at, &view.last_refused) {
                dt { "Last refused" } dd { (fmt::when(now, Some(at), "")) ": " (layout::message(message)) }
            }
        }
    }
}

fn back(admin: &UiAdmin, app: &UiApp, flash: Flash) -> Response {
    admin.flash(app, flash);
    Redirect::to(PATH).into_response()
}

pub async fn install(
    State(app): State<UiApp>,
    CsrfForm { admin, form }: CsrfForm<InstallForm>,
) -> Result<Response, UiError> {
    Ok(
        match ops::license::install(&app, &admin.admin, &form.license).await {
            Ok(view) => back(
                &admin,
                &app,
                Flash::Done(format!(
                    "installed the license for `{}`",
                    view.licensee.unwrap_or_default()
                )),
            ),
            Err(e) => back(&admin, &app, Flash::Failed(refusal(&e))),
        },
    )
}

pub async fn trial(
    State(app): State<UiApp>,
    CsrfForm { admin, .. }: CsrfForm<NoFields>,
) -> Result<Response, UiError> {
    Ok(match ops::license::start_trial(&app, &admin.admin).await {
        Ok(view) => back(
            &admin,
            &app,
            Flash::Done(format!(
                "the 30-day trial started; it ends {}",
                view.expires_at.as_deref().map(fmt_day).unwrap_or_default()
            )),
        ),
        Err(e) => back(&admin, &app, Flash::Failed(refusal(&e))),
    })
}

pub async fn confirm_remove(
    State(app): State<UiApp>,
    admin: UiAdmin,
) -> Result<Html<String>, UiError> {
    let view = ops::license::show(&app).await?;
    let flash = admin.take_flash(&app);
    let body = html! {
        h1 { "Remove the license?" }
        div.card.confirm {
            p {
                "The server runs Community Edition from now on. Workers that joined stay connected and keep running their jobs; "
                "new external workers are refused until a license is installed."
            }
            @if view.edition == Edition::Trial {
                p { "The trial cannot be started again." }
            }
            (layout::confirm_form("/settings/license/remove", &admin.session.csrf, "Remove the license", PATH))
        }
    };
    Ok(layout::page(
        "Remove the license",
        Nav::Settings,
        &admin.session.csrf,
        &flash,
        body,
    ))
}

pub async fn remove(
    State(app): State<UiApp>,
    CsrfForm { admin, .. }: CsrfForm<NoFields>,
) -> Result<Response, UiError> {
    Ok(match ops::license::remove(&app, &admin.admin).await {
        Ok(_) => back(
            &admin,
            &app,
            Flash::Done("the license is removed; this server runs Community Edition".into()),
        ),
        Err(e) => back(&admin, &app, Flash::Failed(refusal(&e))),
    })
}

/// A refusal with its fix, for a notice.
fn refusal(error: &crate::error::AppError) -> String {
    match &error.hint {
        Some(hint) => format!("{}; {hint}", error.message),
        None => error.message.clone(),
    }
}

fn fmt_day(rfc3339: &str) -> String {
    rfc3339.get(..10).unwrap_or(rfc3339).to_owned()
}

#[cfg(test)]
mod tests;
