//! [`UiError`]: what a page answers when it cannot do what was asked. Like the API's
//! `AppError`, it tells the person what went wrong and hides internals, which go to the log.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;

use crate::error::AppError;
use crate::ui::layout;

#[derive(Debug)]
pub enum UiError {
    /// No signed-in session. A page is sent to sign in (and back afterwards); a fragment
    /// request from the page's script gets a bare 401 so the script can say so.
    SignIn {
        next: Option<String>,
        fragment: bool,
    },
    /// An error page with a message for the person.
    Page {
        status: StatusCode,
        title: &'static str,
        message: String,
    },
}

impl UiError {
    pub fn page(status: StatusCode, title: &'static str, message: impl Into<String>) -> Self {
        Self::Page {
            status,
            title,
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::page(StatusCode::NOT_FOUND, "Not found", message)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::page(StatusCode::BAD_REQUEST, "Bad request", message)
    }
}

impl From<AppError> for UiError {
    fn from(error: AppError) -> Self {
        let title = match error.status {
            StatusCode::NOT_FOUND => "Not found",
            StatusCode::CONFLICT => "Not possible",
            s if s.is_server_error() => "Something went wrong",
            _ => "Bad request",
        };
        Self::page(error.status, title, error.message)
    }
}

impl From<muster_store::StoreError> for UiError {
    fn from(error: muster_store::StoreError) -> Self {
        AppError::from(error).into()
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        match self {
            UiError::SignIn { fragment: true, .. } => {
                (StatusCode::UNAUTHORIZED, "sign in again").into_response()
            }
            UiError::SignIn { next, .. } => {
                let target = match next.as_deref().filter(|n| *n != "/workers") {
                    Some(next) => format!("/signin?next={}", encode_component(next)),
                    None => "/signin".to_owned(),
                };
                Redirect::to(&target).into_response()
            }
            UiError::Page {
                status,
                title,
                message,
            } => {
                let body = html! {
                    h1 { (title) }
                    p.notice.error role="alert" { (layout::message(&message)) }
                    p { a href="/workers" { "Back to the workers" } }
                };
                let mut response = (status, layout::bare_page(title, body)).into_response();
                if status == StatusCode::TOO_MANY_REQUESTS {
                    response
                        .headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
                }
                response
            }
        }
    }
}

/// Percent-encodes a query value (everything but unreserved characters).
pub fn encode_component(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    for byte in input.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
