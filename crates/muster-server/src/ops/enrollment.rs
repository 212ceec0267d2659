//! Auto-enrollment: switching it on and off, its write-only secret, and its guard rails (a
//! window that closes by itself, a count, a name pattern).

use muster_core::audit::Outcome;
use muster_core::credentials::{SlowHash, generate_enrollment_secret, validate_shared_secret};
use muster_core::enrollment::NamePattern;
use muster_proto::ErrorCode;
use muster_proto::api::{EnableEnrollmentRequest, EnableEnrollmentResponse, EnrollmentStatus};
use muster_store::flows::enrollment::{self, Change, ChangeRefusal, Status, Window};
use rand::rngs::OsRng;

use crate::error::AppError;
use crate::ops::Actor;
use crate::state::AppState;
use crate::{validate, views};

pub async fn status(app: &AppState) -> Result<EnrollmentStatus, AppError> {
    let status = app.store.read(enrollment::status).await?;
    Ok(views::enrollment(&status, app.clock.now()))
}

/// The new secret a request asks for: given, generated, or none. Returns (hash, plaintext to
/// show once if generated).
async fn new_secret(
    req: &EnableEnrollmentRequest,
) -> Result<Option<(SlowHash, Option<String>)>, AppError> {
    let (secret, generated) = match (&req.secret, req.generate) {
        (Some(_), true) => {
            return Err(AppError::bad_request(
                ErrorCode::BadRequest,
                "give a secret or ask for one to be generated, not both",
            ));
        }
        (Some(secret), false) => {
            validate_shared_secret(secret).map_err(|e| {
                AppError::bad_request(ErrorCode::InvalidSecret, e)
                    .with_hint("use `--generate` for a random 43-character secret")
                    .with_field("secret")
            })?;
            (secret.clone(), false)
        }
        (None, true) => (generate_enrollment_secret(&mut OsRng), true),
        (None, false) => return Ok(None),
    };
    let to_hash = secret.clone();
    let hash = tokio::task::spawn_blocking(move || SlowHash::create(&to_hash, &mut OsRng))
        .await
        .map_err(AppError::internal)?;
    Ok(Some((hash, generated.then_some(secret))))
}

fn window(app: &AppState, req: &EnableEnrollmentRequest) -> Result<Window, AppError> {
    let closes_at = match &req.window {
        Some(d) => {
            let length = validate::duration(d).map_err(|e| e.with_field("for"))?;
            Some(app.clock.now().saturating_add(length))
        }
        None => None,
    };
    if req.max_enrollments == Some(0) {
        return Err(AppError::bad_request(
            ErrorCode::BadRequest,
            "`max_enrollments` must be at least 1",
        )
        .with_field("max_enrollments"));
    }
    let name_pattern = req
        .name_pattern
        .as_deref()
        .map(NamePattern::parse)
        .transpose()
        .map_err(|e| AppError::bad_request(ErrorCode::InvalidName, e).with_field("name_pattern"))?;
    let expected_names = req
        .expect
        .as_deref()
        .map(NamePattern::parse)
        .transpose()
        .map_err(|e| {
            AppError::bad_request(ErrorCode::InvalidName, e)
                .with_field("expect")
                .with_hint("for example `--expect 'edge-*'`: worker names are lowercase")
        })?;
    Ok(Window {
        closes_at,
        max_enrollments: req.max_enrollments,
        name_pattern,
        expected_names,
    })
}

async fn apply(
    app: &AppState,
    actor: &Actor,
    action: &str,
    change: Change,
    detail: String,
) -> Result<Status, AppError> {
    let now = app.clock.now();
    let event = app.audit_event(
        &actor.name,
        action,
        "auto-enrollment",
        actor.remote,
        Outcome::Ok,
        detail,
    );
    let status = app.store.write(move |tx| enrollment::change(tx, &change, now, &event)).await?.map_err(|r| match r {
        ChangeRefusal::NoSecret => AppError::bad_request(ErrorCode::InvalidSecret, "auto-enrollment has no secret yet")
            .with_hint("pass `--generate`, or `--secret-file FILE` with a secret of at least 32 characters"),
    })?;
    app.verifier.forget();
    Ok(status)
}

fn describe(window: &Window, secret_changed: bool) -> String {
    let mut parts = Vec::new();
    if secret_changed {
        parts.push("secret set".to_owned());
    }
    if let Some(at) = window.closes_at {
        parts.push(format!("window closes {at}"));
    }
    if let Some(max) = window.max_enrollments {
        parts.push(format!("at most {max} enrollments"));
    }
    if let Some(p) = &window.name_pattern {
        parts.push(format!("names matching `{}`", p.as_str()));
    }
    if let Some(p) = &window.expected_names {
        parts.push(format!("expecting names matching `{}`", p.as_str()));
    }
    if parts.is_empty() {
        "enabled".into()
    } else {
        parts.join("; ")
    }
}

/// Switches auto-enrollment on, optionally with a new secret, and opens a new window with the
/// request's guard rails.
pub async fn enable(
    app: &AppState,
    actor: &Actor,
    host: Option<&str>,
    req: &EnableEnrollmentRequest,
) -> Result<EnableEnrollmentResponse, AppError> {
    let window = window(app, req)?;
    let secret = new_secret(req).await?;
    let detail = describe(&window, secret.is_some());
    let (hash, generated) = match secret {
        Some((hash, generated)) => (Some(hash), generated),
        None => (None, None),
    };
    let change = Change {
        enabled: Some(true),
        secret: hash,
        new_window: Some(window),
    };
    let status = apply(app, actor, "enrollment.enable", change, detail).await?;
    tracing::info!("auto-enrollment enabled");
    Ok(EnableEnrollmentResponse {
        status: views::enrollment(&status, app.clock.now()),
        worker_command: crate::ops::paste::with_secret(app, host, generated.as_deref()),
        generated_secret: generated,
    })
}

/// Replaces the secret, leaving the switch and the guard rails as they are.
pub async fn rotate(
    app: &AppState,
    actor: &Actor,
    host: Option<&str>,
    req: &EnableEnrollmentRequest,
) -> Result<EnableEnrollmentResponse, AppError> {
    if req.window.is_some()
        || req.max_enrollments.is_some()
        || req.name_pattern.is_some()
        || req.expect.is_some()
    {
        return Err(AppError::bad_request(
            ErrorCode::BadRequest,
            "rotate only replaces the secret",
        )
        .with_hint("set guard rails with `muster enrollment enable`"));
    }
    let Some((hash, generated)) = new_secret(req).await? else {
        return Err(
            AppError::bad_request(ErrorCode::InvalidSecret, "rotate needs a new secret")
                .with_hint("pass `--generate`, or `--secret-file FILE`")
                .with_field("secret"),
        );
    };
    let change = Change {
        enabled: None,
        secret: Some(hash),
        new_window: None,
    };
    let status = apply(
        app,
        actor,
        "enrollment.rotate",
        change,
        "secret replaced".into(),
    )
    .await?;
    tracing::info!("auto-enrollment secret rotated");
    Ok(EnableEnrollmentResponse {
        status: views::enrollment(&status, app.clock.now()),
        worker_command: crate::ops::paste::with_secret(app, host, generated.as_deref()),
        generated_secret: generated,
    })
}

/// Blocks new enrollments at once; workers already enrolled keep working.
pub async fn disable(app: &AppState, actor: &Actor) -> Result<EnrollmentStatus, AppError> {
    let change = Change {
        enabled: Some(false),
        secret: None,
        new_window: None,
    };
    let status = apply(app, actor, "enrollment.disable", change, "disabled".into()).await?;
    tracing::info!("auto-enrollment disabled");
    Ok(views::enrollment(&status, app.clock.now()))
}
