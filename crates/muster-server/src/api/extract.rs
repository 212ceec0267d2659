//! Extractors that turn malformed requests into clear [`AppError`]s instead of axum's defaults,
//! and [`Admin`]: the admin token checked, the caller made an [`Actor`] for the operations.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use muster_proto::ErrorCode;
use serde::de::DeserializeOwned;

use crate::error::AppError;
use crate::listener::Remote;
use crate::ops::Actor;
use crate::state::AppState;

/// The largest request body the API accepts. Nothing it takes comes near this.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// JSON body with errors that name the problem (`missing field `duration``).
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(json_error(rejection)),
        }
    }
}

fn json_error(rejection: JsonRejection) -> AppError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return AppError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::PayloadTooLarge,
            format!("request body is larger than {} KiB", MAX_BODY_BYTES / 1024),
        );
    }
    let hint = match rejection {
        JsonRejection::MissingJsonContentType(_) => {
            "send the body with `content-type: application/json`"
        }
        _ => "send a JSON object with the fields this endpoint documents",
    };
    AppError::bad_request(
        ErrorCode::BadRequest,
        format!("malformed request: {}", rejection.body_text()),
    )
    .with_hint(hint)
}

/// The `Host` the caller reached the server at, for the command lines the server prints (see
/// [`crate::ops::paste`]).
pub fn host(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
}

/// A query string with errors in the API's shape (`400` with the reason) instead of axum's
/// plain-text rejection.
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(ApiQuery(value)),
            Err(rejection) => Err(AppError::bad_request(
                ErrorCode::BadRequest,
                rejection.body_text(),
            )),
        }
    }
}

/// An authenticated admin, as the actor the operations audit. Takes `Authorization: Bearer
/// <admin token>`.
#[derive(Debug, Clone)]
pub struct Admin(pub Actor);

pub fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let Remote(remote) = Remote::from_request_parts(parts, state)
            .await
            .unwrap_or(Remote(None));
        let Some(token) = bearer(parts) else {
            return Err(AppError::unauthorized(ErrorCode::Unauthorized, "missing admin credential").with_hint(
                "on the server's machine the CLI reads it from the data dir; elsewhere pass `--admin-token` or set MUSTER_ADMIN_TOKEN",
            ));
        };
        if !state.admin_token_hash.matches(token) {
            return Err(AppError::unauthorized(
                ErrorCode::Unauthorized,
                "the admin credential is not valid",
            )
            .with_hint("use the token in the server's data dir (`admin-token`)"));
        }
        if let Some(call) = parts.extensions.get::<crate::api::license::AdminCall>() {
            call.mark();
        }
        let actor = Actor {
            name: "admin".into(),
            remote,
        };
        crate::diag::http::record_actor(&parts.extensions, &actor.name);
        Ok(Admin(actor))
    }
}
