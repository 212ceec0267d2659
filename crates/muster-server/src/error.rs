//! [`AppError`]: what an operation or a handler returns when it cannot do what was asked. It
//! tells the caller what they got wrong (and how to fix it) and hides internals, which are logged
//! instead.
//!
//! It sits below everything that answers a request (`ops`, `api`, `ui`, `control::connect`, the
//! listener), so each of them speaks the same error body without reaching into another.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use muster_proto::{ErrorBody, ErrorCode, ErrorDetail};

#[derive(Debug)]
pub struct AppError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
    pub hint: Option<String>,
    pub retry_after_ms: Option<u64>,
    /// The request field the error is about (its wire name), for a form that shows the error
    /// beside the field. Not part of the response body.
    pub field: Option<&'static str>,
}

impl AppError {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            hint: None,
            retry_after_ms: None,
            field: None,
        }
    }

    pub fn bad_request(code: ErrorCode, message: impl ToString) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message.to_string())
    }

    pub fn not_found(message: impl ToString) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            message.to_string(),
        )
    }

    pub fn conflict(code: ErrorCode, message: impl ToString) -> Self {
        Self::new(StatusCode::CONFLICT, code, message.to_string())
    }

    pub fn forbidden(code: ErrorCode, message: impl ToString) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message.to_string())
    }

    pub fn unauthorized(code: ErrorCode, message: impl ToString) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, message.to_string())
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn with_field(mut self, field: &'static str) -> Self {
        self.field = Some(field);
        self
    }

    pub fn with_retry_after(mut self, after: std::time::Duration) -> Self {
        self.retry_after_ms = Some(u64::try_from(after.as_millis()).unwrap_or(u64::MAX));
        self
    }

    /// Something broke on our side. The detail goes to the log, not to the caller.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            "internal server error",
        )
        .with_hint("the server log has the details")
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message.clone(),
                hint: self.hint.clone(),
                retry_after_ms: self.retry_after_ms,
            },
        }
    }
}

impl From<muster_store::StoreError> for AppError {
    fn from(error: muster_store::StoreError) -> Self {
        AppError::internal(error)
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if let Some(ms) = self.retry_after_ms {
            let secs = ms.div_ceil(1000).max(1);
            if let Ok(value) = secs.to_string().parse() {
                response
                    .headers_mut()
                    .insert(axum::http::header::RETRY_AFTER, value);
            }
        }
        response
    }
}
