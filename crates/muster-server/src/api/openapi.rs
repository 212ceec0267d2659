//! `GET /api/v1/openapi.json`: the REST API described as OpenAPI 3.1, generated from the code:
//! each handler's `#[utoipa::path]` and the wire types' schemas (`muster-proto`'s `openapi`
//! feature). A test checks that every route [`super::routes`] has is described.

use std::sync::LazyLock;

use axum::Json;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use super::{audit, enroll, enrollment, events, jobs, license, tokens, webhooks, workers};
use crate::control::connect;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "muster",
        description = "The REST API of a muster server: enrollment tokens, workers, auto-enrollment, jobs, licences, the audit log, events and webhooks. Admin routes take the admin token as a bearer token."
    ),
    paths(
        super::health,
        openapi_json,
        tokens::create, tokens::list, tokens::show, tokens::revoke,
        workers::list, workers::create, workers::show, workers::remove, workers::revoke,
        audit::list,
        enrollment::status, enrollment::enable, enrollment::rotate, enrollment::disable,
        jobs::submit, jobs::list, jobs::show, jobs::output, jobs::cancel,
        license::show, license::install, license::remove, license::trial,
        enroll::enroll, enroll::challenge, enroll::preflight, connect::connect,
        events::stream,
        webhooks::create, webhooks::list, webhooks::remove, webhooks::test, webhooks::deliveries,
    ),
    modifiers(&AdminToken)
)]
pub struct ApiDoc;

/// The admin token, as the `admin` security scheme the routes name.
struct AdminToken;

impl utoipa::Modify for AdminToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The description, built once.
pub fn document() -> &'static utoipa::openapi::OpenApi {
    static DOC: LazyLock<utoipa::openapi::OpenApi> = LazyLock::new(ApiDoc::openapi);
    &DOC
}

#[utoipa::path(get, path = "/api/v1/openapi.json", responses((status = 200, description = "this description, as OpenAPI 3.1 JSON")))]
pub async fn openapi_json() -> Json<&'static utoipa::openapi::OpenApi> {
    Json(document())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The routes `api::routes` registers, read from its source: `(METHOD, PATH)`.
    fn routed() -> Vec<(String, String)> {
        let source = include_str!("mod.rs");
        let start = source.find("pub fn routes()").expect("routes()");
        let body = &source[start..];
        let body = &body[..body
            .find(".fallback(")
            .expect("the fallback ends the routes")];
        let mut found = Vec::new();
        for route in body.split(".route(").skip(1) {
            let path = route.split('"').nth(1).expect("a quoted path");
            let handlers = &route[route.find(',').expect("a handler")..];
            for method in ["get", "post", "put", "delete"] {
                let called = [
                    format!(" {method}("),
                    format!(".{method}("),
                    format!("::{method}("),
                ];
                if called.iter().any(|c| handlers.contains(c.as_str())) {
                    found.push((method.to_owned(), format!("/api/v1{path}")));
                }
            }
        }
        found
    }

    #[test]
    fn every_route_of_the_router_is_described() {
        let doc = document();
        let routes = routed();
        assert!(routes.len() > 30, "the parse found the routes: {routes:?}");
        for (method, path) in &routes {
            let item = doc
                .paths
                .paths
                .get(path)
                .unwrap_or_else(|| panic!("`{path}` is not described"));
            let operation = match method.as_str() {
                "get" => &item.get,
                "post" => &item.post,
                "put" => &item.put,
                "delete" => &item.delete,
                _ => unreachable!(),
            };
            assert!(operation.is_some(), "`{method} {path}` is not described");
        }
        // And nothing is described that the router does not have.
        let described: usize = doc
            .paths
            .paths
            .values()
            .map(|i| {
                [&i.get, &i.post, &i.put, &i.delete]
                    .iter()
                    .filter(|o| o.is_some())
                    .count()
            })
            .sum();
        assert_eq!(described, routes.len(), "{routes:?}");
    }

    #[test]
    fn the_wire_types_are_in_the_components() {
        let doc = serde_json::to_value(document()).expect("JSON");
        let schemas = &doc["components"]["schemas"];
        for name in [
            "TokenView",
            "WorkerView",
            "JobView",
            "ErrorBody",
            "Event",
            "DeliveryView",
        ] {
            assert!(schemas.get(name).is_some(), "no schema for {name}");
        }
        assert_eq!(
            doc["paths"]["/api/v1/tokens"]["get"]["security"][0]["admin"],
            serde_json::json!([])
        );
    }
}
