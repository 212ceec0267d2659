//! The edition and the license: show it, install one, start the trial, remove what is in force.
//! Each change is stored (so every replica holds it at once) with its audit record
//! (`license.changed`); a license that does not verify changes nothing.

use muster_core::audit::Outcome;
use muster_proto::ErrorCode;
use muster_proto::api::LicenseView;
use muster_store::flows::license::{self, Status, TrialRefusal};

use crate::error::AppError;
use crate::ops::Actor;
use crate::state::AppState;
use crate::views;

/// The audit action of every license change.
pub const ACTION: &str = "license.changed";

pub async fn status(app: &AppState) -> Result<Status, AppError> {
    let now = app.clock.now();
    Ok(app.store.read(move |tx| license::status(tx, now)).await?)
}

pub async fn show(app: &AppState) -> Result<LicenseView, AppError> {
    let status = status(app).await?;
    Ok(views::license(&status, app.clock.now()))
}

/// Verifies `text` against the issuers this server trusts and, if it is valid now, installs it
/// in place of whatever was in force.
pub async fn install(app: &AppState, actor: &Actor, text: &str) -> Result<LicenseView, AppError> {
    let now = app.clock.now();
    let verified = muster_license::verify(text, &app.licensing.issuers)
        .and_then(|l| muster_license::check_dates(&l, now).map(|()| l));
    let license = match verified {
        Ok(license) => license,
        Err(e) => {
            // Recorded, and nothing else changes; the reason never quotes the document.
            let event = app.audit_event(
                &actor.name,
                ACTION,
                "license",
                actor.remote,
                Outcome::Refused,
                format!("license refused: {e}"),
            );
            app.record(event).await;
            return Err(AppError::bad_request(ErrorCode::LicenseInvalid, &e)
                .with_hint(e.hint())
                .with_field("license"));
        }
    };
    let event = app.audit_event(
        &actor.name,
        ACTION,
        "license",
        actor.remote,
        Outcome::Ok,
        "",
    );
    let (stored, token) = (license.clone(), text.trim().to_owned());
    let status = app
        .store
        .write(move |tx| license::install(tx, &stored, &token, now, &event))
        .await?;
    tracing::info!(
        id = %license.id,
        licensee = %license.licensee,
        expires_at = %license.expires_at,
        "license installed"
    );
    Ok(views::license(&status, now))
}

/// Starts the fleet's one 30-day trial, without a worker limit.
pub async fn start_trial(app: &AppState, actor: &Actor) -> Result<LicenseView, AppError> {
    let now = app.clock.now();
    let event = app.audit_event(
        &actor.name,
        ACTION,
        "license",
        actor.remote,
        Outcome::Ok,
        "",
    );
    let status = app
        .store
        .write(move |tx| license::start_trial(tx, now, &event))
        .await?
        .map_err(|refusal| {
            let hint = match refusal {
                TrialRefusal::AlreadyRan(_) => {
                    "install a license with `muster license install FILE`"
                }
                TrialRefusal::Licensed(_) => {
                    "the installed license is in force; `muster license remove` removes it"
                }
            };
            AppError::conflict(ErrorCode::LicenseTrialUnavailable, refusal).with_hint(hint)
        })?;
    tracing::info!("trial started");
    Ok(views::license(&status, now))
}

/// Removes the license or ends the trial: the server runs Community Edition. Workers that
/// joined stay connected; new external workers are refused.
pub async fn remove(app: &AppState, actor: &Actor) -> Result<LicenseView, AppError> {
    let now = app.clock.now();
    let event = app.audit_event(
        &actor.name,
        ACTION,
        "license",
        actor.remote,
        Outcome::Ok,
        "",
    );
    let (removed, status) = app
        .store
        .write(move |tx| license::remove(tx, now, &event))
        .await?;
    if removed {
        tracing::info!("license removed; the server runs Community Edition");
    }
    Ok(views::license(&status, now))
}
