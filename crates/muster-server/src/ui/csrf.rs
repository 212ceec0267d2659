//! [`CsrfForm`]: a POSTed form from a signed-in session, accepted only with that session's CSRF
//! token. Every form a page renders carries the token in a hidden `csrf` field; a page on
//! another site cannot read it, so it cannot forge the form (SameSite=Strict cookies already keep
//! the session cookie off cross-site requests; this holds even where that does not).

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::ui::UiApp;
use crate::ui::auth::UiAdmin;
use crate::ui::error::UiError;
use crate::ui::session::same_secret;

/// A form's fields and the admin who sent it, after the CSRF check.
pub struct CsrfForm<T> {
    pub admin: UiAdmin,
    pub form: T,
}

/// For forms that are only a button.
#[derive(Debug, Default, Deserialize)]
pub struct NoFields {}

#[derive(Deserialize)]
struct TokenOnly {
    csrf: Option<String>,
}

impl<T: DeserializeOwned> FromRequest<UiApp> for CsrfForm<T> {
    type Rejection = UiError;

    async fn from_request(req: Request, app: &UiApp) -> Result<Self, UiError> {
        let (mut parts, body) = req.into_parts();
        let admin = UiAdmin::from_request_parts(&mut parts, app).await?;
        let bytes = axum::body::to_bytes(body, crate::ui::MAX_FORM_BYTES)
            .await
            .map_err(|_| {
                UiError::page(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "Form too large",
                    "the form is larger than this server accepts",
                )
            })?;
        let presented = serde_urlencoded::from_bytes::<TokenOnly>(&bytes)
            .ok()
            .and_then(|t| t.csrf);
        if !presented.is_some_and(|t| same_secret(&t, &admin.session.csrf)) {
            tracing::warn!(
                path = %parts.uri.path(),
                remote = admin.admin.remote.map(tracing::field::display),
                "web UI form refused: missing or wrong CSRF token"
            );
            return Err(UiError::page(
                StatusCode::FORBIDDEN,
                "Form refused",
                "this form did not come from this site, or it was opened in an earlier session; go back, reload the page and try again",
            ));
        }
        let form = serde_urlencoded::from_bytes::<T>(&bytes)
            .map_err(|e| UiError::bad_request(format!("the form could not be read: {e}")))?;
        Ok(CsrfForm { admin, form })
    }
}
