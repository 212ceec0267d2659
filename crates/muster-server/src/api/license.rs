//! `/api/v1/license`: the edition and the license (show, install, remove) and
//! `/api/v1/license/trial`. The work is in [`crate::ops::license`], shared with the web UI.
//!
//! Also [`warnings`], the layer that puts a license warning for the admin on admin answers
//! (the `muster-warning` header, which the CLI prints on stderr): an expiry near or past on
//! every one, and on an answer that prepared an external worker ([`PreparesWorker`]) the reason
//! none could join now.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Json;
use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use muster_proto::api::{self as wire, InstallLicenseRequest, LicenseView};

use crate::api::extract::{Admin, ApiJson};
use crate::error::AppError;
use crate::state::AppState;
use crate::{license, ops};

pub async fn show(State(app): State<AppState>, _: Admin) -> Result<Json<LicenseView>, AppError> {
    Ok(Json(ops::license::show(&app).await?))
}

pub async fn install(
    State(app): State<AppState>,
    Admin(actor): Admin,
    ApiJson(req): ApiJson<InstallLicenseRequest>,
) -> Result<Json<LicenseView>, AppError> {
    Ok(Json(
        ops::license::install(&app, &actor, &req.license).await?,
    ))
}

pub async fn remove(
    State(app): State<AppState>,
    Admin(actor): Admin,
) -> Result<Json<LicenseView>, AppError> {
    Ok(Json(ops::license::remove(&app, &actor).await?))
}

pub async fn trial(
    State(app): State<AppState>,
    Admin(actor): Admin,
) -> Result<Json<LicenseView>, AppError> {
    Ok(Json(ops::license::start_trial(&app, &actor).await?))
}

/// On a response: the handler prepared an external worker (a token, a pre-created worker,
/// auto-enrollment switched on).
#[derive(Debug, Clone, Copy)]
pub struct PreparesWorker;

/// In a request's extensions: set by [`Admin`] once the caller proved to be the admin, so only
/// admins are told about the license.
#[derive(Debug, Clone, Default)]
pub struct AdminCall(Arc<AtomicBool>);

impl AdminCall {
    pub fn mark(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Adds the license warning, if there is one, to a successful admin answer.
pub async fn warnings(State(app): State<AppState>, mut request: Request, next: Next) -> Response {
    let admin = AdminCall::default();
    request.extensions_mut().insert(admin.clone());
    let mut response = next.run(request).await;
    if !response.status().is_success() || !admin.0.load(Ordering::Relaxed) {
        return response;
    }
    let prepares = response.extensions().get::<PreparesWorker>().is_some();
    let now = app.clock.now();
    let facts = app
        .store
        .read(move |tx| {
            let grant = muster_store::flows::license::grant(tx)?;
            // Counted only where it can matter: the seats left for the worker just prepared,
            // under a license that has a limit. A count that reaches the limit is the one the
            // warning names, so only then is the fleet counted whole; otherwise counting stops
            // at the limit (a whole-fleet count per `workers create` made minting a large
            // fleet quadratic).
            let limit = match muster_core::license::may_join(grant.as_ref(), now) {
                Ok(Some(limit)) if prepares => limit,
                _ => return Ok((grant, 0)),
            };
            let mut used = tx.count_seated_workers(now, limit)?;
            if used >= limit {
                used = tx.count_seated_workers(now, u64::MAX)?;
            }
            Ok((grant, used))
        })
        .await;
    let warning = match facts {
        Ok((grant, used)) => license::admin_warning(grant.as_ref(), used, now, prepares),
        Err(e) => {
            tracing::error!(error = %e, "cannot read the license for the admin's warning");
            None
        }
    };
    if let Some(value) = warning.and_then(|w| HeaderValue::from_str(&wire::encode_warning(&w)).ok())
    {
        response.headers_mut().insert(wire::WARNING_HEADER, value);
    }
    response
}
