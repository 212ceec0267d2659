//! Signing in and out, and [`UiAdmin`]: the extractor every page uses to require a session.
//!
//! Cookies: the session cookie (`__Host-muster_session` over TLS, which browsers only accept
//! with `Secure` and `Path=/`; `muster_session` on plain HTTP) and, on the sign-in form only, a
//! short-lived `muster_signin` cookie whose value the form echoes (a double-submit token: a page
//! on another site cannot read it, so it cannot make a browser sign in). All are HttpOnly and
//! SameSite=Strict.

use std::net::SocketAddr;

use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use muster_core::audit::Outcome;
use muster_proto::ErrorCode;
use serde::Deserialize;

use crate::audit::{Attempt, RefusedAttempt};
use crate::listener::Remote;
use crate::ops::Actor;
use crate::ui::UiApp;
use crate::ui::error::UiError;
use crate::ui::layout;
use crate::ui::session::{self, Current, Flash, random_token, same_secret};

/// Who the UI's actions are recorded as in the audit log.
pub const ACTOR: &str = "web:admin";
/// Who a refused sign-in is recorded as. Not the user name typed: people type passwords into
/// the wrong field, and the audit log must never hold one.
const ANONYMOUS: &str = "web:anonymous";
const SIGNIN_COOKIE: &str = "muster_signin";

/// A signed-in admin: the session, and the identity the shared operations audit.
#[derive(Debug, Clone)]
pub struct UiAdmin {
    pub admin: Actor,
    pub session: Current,
    /// The license banner, for a page (a GET that is not a fragment); `None` otherwise.
    pub banner: Option<crate::license::Banner>,
}

impl UiAdmin {
    /// The notices waiting for this page (and removes them), the license banner first.
    pub fn take_flash(&self, app: &UiApp) -> Vec<Flash> {
        let mut flash = app.ui.sessions.take_flash(&self.session.id);
        if let Some(banner) = &self.banner {
            flash.insert(0, Flash::License(banner.clone()));
        }
        flash
    }

    pub fn flash(&self, app: &UiApp, flash: Flash) {
        app.ui.sessions.push_flash(&self.session.id, flash);
    }
}

fn session_cookie_name(app: &UiApp) -> &'static str {
    if app.tls {
        "__Host-muster_session"
    } else {
        "muster_session"
    }
}

/// The value of cookie `name` in the request, if any.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` value. `max_age` of zero deletes the cookie.
fn set_cookie(app: &UiApp, name: &str, value: &str, path: &str, max_age: u64) -> HeaderValue {
    let secure = if app.tls { "; Secure" } else { "" };
    let text = format!(
        "{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}"
    );
    // Names, values and paths here are base64url or fixed ASCII: always a valid header.
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("x=; Max-Age=0"))
}

impl FromRequestParts<UiApp> for UiAdmin {
    type Rejection = UiError;

    async fn from_request_parts(parts: &mut Parts, app: &UiApp) -> Result<Self, UiError> {
        let Remote(remote) = Remote::from_request_parts(parts, app)
            .await
            .unwrap_or(Remote(None));
        let fragment = parts.headers.contains_key("x-muster-fragment");
        let current = cookie(&parts.headers, session_cookie_name(app))
            .and_then(|id| app.ui.sessions.get(id, !fragment));
        match current {
            Some(session) => {
                crate::diag::http::record_actor(&parts.extensions, ACTOR);
                Ok(UiAdmin {
                    admin: Actor {
                        name: ACTOR.into(),
                        remote,
                    },
                    session,
                    // Read for pages only: not for forms (they redirect) nor the fragments a page
                    // polls every two seconds.
                    banner: if parts.method == axum::http::Method::GET && !fragment {
                        crate::license::current_banner(app).await
                    } else {
                        None
                    },
                })
            }
            None => Err(UiError::SignIn {
                next: (parts.method == axum::http::Method::GET)
                    .then(|| parts.uri.path_and_query().map(|p| p.as_str().to_owned()))
                    .flatten(),
                fragment,
            }),
        }
    }
}

/// Where to go after signing in: only a path on this site, never `//elsewhere`. Browsers drop
/// tabs and newlines from URLs (`/\t/evil` becomes `//evil`), so only visible characters pass.
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && n.bytes().all(|b| b.is_ascii_graphic())
                && !n.contains('\\')
                && !n.starts_with("/signin")
                && n.len() <= 512 =>
        {
            n
        }
        _ => "/workers",
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct SigninQuery {
    next: Option<String>,
    signed_out: Option<String>,
}

pub async fn signin_page(
    State(app): State<UiApp>,
    headers: HeaderMap,
    Query(query): Query<SigninQuery>,
) -> Response {
    if cookie(&headers, session_cookie_name(&app))
        .and_then(|id| app.ui.sessions.touch(id))
        .is_some()
    {
        return Redirect::to(safe_next(query.next.as_deref())).into_response();
    }
    let notice = query
        .signed_out
        .is_some()
        .then_some(Notice::Ok("You are signed out."));
    signin_form(&app, StatusCode::OK, query.next.as_deref(), "", notice)
}

enum Notice<'a> {
    Ok(&'a str),
    Error(&'a str),
}

/// The sign-in form, with a fresh double-submit token in a cookie and a hidden field.
fn signin_form(
    app: &UiApp,
    status: StatusCode,
    next: Option<&str>,
    user: &str,
    notice: Option<Notice<'_>>,
) -> Response {
    let token = random_token();
    let next = safe_next(next);
    let error = matches!(notice, Some(Notice::Error(_)));
    let body = html! {
        div.signin {
            h1 { "Sign in" }
            @match notice {
                Some(Notice::Ok(text)) => p.notice.ok role="status" { (text) },
                Some(Notice::Error(text)) => p.notice.error role="alert" #signin-error { (text) },
                None => {},
            }
            form.card method="post" action="/signin" {
                input type="hidden" name="csrf" value=(token);
                input type="hidden" name="next" value=(next);
                div.field {
                    label for="user" { "User name" }
                    input #user type="text" name="user" value=(if user.is_empty() { "admin" } else { user })
                        autocomplete="username" required autocapitalize="none" spellcheck="false";
                }
                div.field {
                    label for="password" { "Password" }
                    input #password type="password" name="password" autocomplete="current-password"
                        required autofocus aria-invalid=[error.then_some("true")]
                        aria-describedby=[error.then_some("signin-error")];
                }
                button.primary type="submit" { "Sign in" }
            }
            details.help {
                summary { "Where is the password?" }
                p {
                    "The first start of " code { "muster serve" } " wrote it to "
                    code { "admin-password" } " in the server's data dir (readable by its owner only) "
                    "and printed that path. To set a new password, write it into that file and restart the server."
                }
            }
        }
    };
    let mut response = (status, layout::bare_page("Sign in", body)).into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(app, SIGNIN_COOKIE, &token, "/signin", 3600),
    );
    response
}

#[derive(Deserialize)]
pub struct SigninForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    user: String,
    #[serde(default)]
    password: String,
    next: Option<String>,
}

pub async fn signin(
    State(app): State<UiApp>,
    Remote(remote): Remote,
    headers: HeaderMap,
    form: Result<axum::Form<SigninForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(axum::Form(form)) = form else {
        return UiError::bad_request("the sign-in form could not be read").into_response();
    };
    let next = form.next.as_deref();
    let user = form.user.trim();
    let fresh = cookie(&headers, SIGNIN_COOKIE).is_some_and(|c| same_secret(c, &form.csrf));
    if !fresh {
        return signin_form(
            &app,
            StatusCode::FORBIDDEN,
            next,
            user,
            Some(Notice::Error(
                "The sign-in form expired or did not come from this site. Please try again.",
            )),
        );
    }
    if user.is_empty() || form.password.is_empty() {
        return signin_form(
            &app,
            StatusCode::BAD_REQUEST,
            next,
            user,
            Some(Notice::Error("Enter the user name and the password.")),
        );
    }
    let ip = remote.map(|a| a.ip());
    // The attempt counts against the address from before the password is checked until it is
    // settled, so a burst of concurrent guesses cannot all be checked against the limit at once:
    // at most the limit's worth of Argon2 checks run per address and window.
    let reservation = match ip.map(|ip| app.ui.limiter.reserve(ip)) {
        Some(Err(_wait)) => {
            refuse(
                &app,
                remote,
                ErrorCode::RateLimited,
                "too many failed sign-ins from this address",
            )
            .await;
            return signin_form(
                &app,
                StatusCode::TOO_MANY_REQUESTS,
                next,
                user,
                Some(Notice::Error(
                    "Too many failed sign-ins from your address. Wait a minute, then try again.",
                )),
            );
        }
        Some(Ok(reservation)) => Some(reservation),
        None => None,
    };
    let ok = check_password(&app, user, &form.password).await;
    if let Some(reservation) = reservation {
        reservation.settle(!ok);
    }
    if !ok {
        refuse(
            &app,
            remote,
            ErrorCode::Unauthorized,
            "wrong user name or password",
        )
        .await;
        tracing::info!(
            remote = ip.map(tracing::field::display),
            "web UI sign-in refused: wrong user name or password"
        );
        return signin_form(
            &app,
            StatusCode::UNAUTHORIZED,
            next,
            user,
            Some(Notice::Error("Wrong user name or password.")),
        );
    }
    let session = app.ui.sessions.start();
    let event = app.audit_event(
        ACTOR,
        "ui.signin",
        "admin",
        remote,
        Outcome::Ok,
        "signed in",
    );
    app.record(event).await;
    tracing::info!(remote = ip.map(tracing::field::display), "web UI sign-in");
    let mut response = Redirect::to(safe_next(next)).into_response();
    let headers = response.headers_mut();
    headers.append(
        header::SET_COOKIE,
        set_cookie(
            &app,
            session_cookie_name(&app),
            &session.id,
            "/",
            session::MAX_LIFETIME.as_secs(),
        ),
    );
    headers.append(
        header::SET_COOKIE,
        set_cookie(&app, SIGNIN_COOKIE, "", "/signin", 0),
    );
    response
}

/// Records a refused sign-in among the refused anonymous attempts (see [`crate::audit`]).
async fn refuse(app: &UiApp, remote: Option<SocketAddr>, reason: ErrorCode, detail: &str) {
    app.record_refusal(RefusedAttempt {
        attempt: Attempt::SignIn,
        reason,
        remote,
        actor: ANONYMOUS.into(),
        target: "admin".into(),
        detail: detail.into(),
    })
    .await;
}

/// Checks the password on the server's Argon2 threads, one sign-in at a time.
async fn check_password(app: &UiApp, user: &str, password: &str) -> bool {
    let Ok(_permit) = app.ui.password_checks.acquire().await else {
        return false;
    };
    app.ui
        .account
        .check(app.verifier.pool(), user, password)
        .await
}

pub async fn signout(
    State(app): State<UiApp>,
    crate::ui::csrf::CsrfForm { admin, .. }: crate::ui::csrf::CsrfForm<crate::ui::csrf::NoFields>,
) -> Response {
    app.ui.sessions.end(&admin.session.id);
    let event = app.audit_event(
        ACTOR,
        "ui.signout",
        "admin",
        admin.admin.remote,
        Outcome::Ok,
        "signed out",
    );
    app.record(event).await;
    let mut response = Redirect::to("/signin?signed_out=1").into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(&app, session_cookie_name(&app), "", "/", 0),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(safe_next(Some("/tokens?x=1")), "/tokens?x=1");
        assert_eq!(safe_next(Some("//evil.example/")), "/workers");
        assert_eq!(safe_next(Some("https://evil.example/")), "/workers");
        assert_eq!(safe_next(Some("/\\evil.example")), "/workers");
        assert_eq!(safe_next(Some("/signin")), "/workers");
        assert_eq!(safe_next(Some("/\t/evil.example")), "/workers");
        assert_eq!(safe_next(Some("/\n/evil.example")), "/workers");
        assert_eq!(safe_next(None), "/workers");
    }

    #[test]
    fn cookies_are_found_by_exact_name() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; muster_session_x=2; muster_session=3"),
        );
        assert_eq!(cookie(&headers, "muster_session"), Some("3"));
        assert_eq!(cookie(&headers, "missing"), None);
    }
}
