//! What every HTTP request leaves behind: a `request` span around its handling (method and route
//! template), a count in `muster_http_requests_total`, and, for an admin's action, one INFO line
//! (method, route, status, actor, duration). Other requests (workers enrolling and connecting,
//! page views, assets) log that line at DEBUG: a fleet's reconnects would drown the admins'
//! actions.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use super::metrics::metrics;

/// Where an extractor that authenticated an admin leaves the actor's name for the request line.
/// The middleware puts an empty one in every request's extensions.
#[derive(Clone, Default)]
pub struct ActorSlot(Arc<OnceLock<String>>);

impl ActorSlot {
    /// Records who is acting; the first name recorded stays.
    pub fn set(&self, actor: &str) {
        let _ = self.0.set(actor.to_owned());
    }

    fn get(&self) -> Option<&str> {
        self.0.get().map(String::as_str)
    }
}

/// Records the actor of the request whose extensions are `extensions`, if it carries a slot.
pub fn record_actor(extensions: &axum::http::Extensions, actor: &str) {
    if let Some(slot) = extensions.get::<ActorSlot>() {
        slot.set(actor);
    }
}

/// The middleware: wraps the request in its span, and counts and logs it once answered.
pub async fn track(mut request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let method = request.method().clone();
    let slot = ActorSlot::default();
    request.extensions_mut().insert(slot.clone());
    let span = tracing::info_span!("request", method = %method, route = %route);
    let started = Instant::now();
    let response = next.run(request).instrument(span.clone()).await;
    let status = response.status().as_u16();
    metrics().http_request(&route, status);
    let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let _entered = span.enter();
    match slot.get() {
        Some(actor) if is_admin_action(&method, &route) => {
            tracing::info!(status, actor, duration_ms, "admin request");
        }
        actor => {
            tracing::debug!(status, actor = actor.unwrap_or("-"), duration_ms, "request");
        }
    }
    response
}

/// Every API request an admin makes; in the web UI only the ones that change something (its
/// pages and their refreshes every two seconds are views).
fn is_admin_action(method: &Method, route: &str) -> bool {
    route.starts_with("/api/") || method != Method::GET
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_actions_are_api_requests_and_ui_changes() {
        assert!(is_admin_action(&Method::GET, "/api/v1/tokens"));
        assert!(is_admin_action(&Method::POST, "/ui/tokens"));
        assert!(!is_admin_action(&Method::GET, "/ui/workers"));
    }

    #[test]
    fn the_first_actor_recorded_stays() {
        let slot = ActorSlot::default();
        let mut extensions = axum::http::Extensions::new();
        extensions.insert(slot.clone());
        record_actor(&extensions, "admin");
        record_actor(&extensions, "someone else");
        assert_eq!(slot.get(), Some("admin"));
        // A request without a slot (a test that builds a router without the middleware) is
        // simply not recorded.
        record_actor(&axum::http::Extensions::new(), "admin");
    }
}
