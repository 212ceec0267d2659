//! The diagnostics endpoints through their router, on a real store and a real main listener
//! (bound to port 0): readiness follows the listener and the store, and metrics render.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use tokio::sync::watch;
use tower::ServiceExt;

use super::*;
use crate::listener::Listener;

async fn get(router: &Router, path: &str) -> (StatusCode, String, String) {
    let response = router
        .clone()
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        content_type,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

/// A main listener serving an empty app until the returned sender says stop.
async fn serving(listener: &Listener) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    let tcp = crate::listener::bind(&["127.0.0.1:0".parse().unwrap()]).unwrap();
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(listener.clone().serve(tcp, Router::new(), stopped));
    // The accept loop marks itself running as it starts.
    for _ in 0..100 {
        if listener.health().accepting().is_ok() {
            break;
        }
        tokio::task::yield_now().await;
    }
    (stop, task)
}

#[tokio::test]
async fn livez_answers_while_the_process_serves() {
    let (app, _dir) = AppState::for_tests();
    let router = router(Diagnostics::new(app, Listener::new(None).health()));
    let (status, _, body) = get(&router, "/livez").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok\n"));
}

#[tokio::test]
async fn readyz_follows_the_main_listener() {
    let (app, _dir) = AppState::for_tests();
    let listener = Listener::new(None);
    let router = router(Diagnostics::new(app, listener.health()));

    let (status, _, body) = get(&router, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.contains("store: ok"), "{body}");
    assert!(body.contains("listener: not accepting"), "{body}");

    let (stop, task) = serving(&listener).await;
    let (status, _, body) = get(&router, "/readyz").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, "store: ok\nlistener: ok\n");

    // Shutting down: not ready any more.
    stop.send(true).unwrap();
    task.await.unwrap();
    let (status, _, body) = get(&router, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
}

#[tokio::test]
async fn readyz_fails_when_the_store_does_not_answer() {
    let (app, _dir) = AppState::for_tests();
    let listener = Listener::new(None);
    let (_stop, _task) = serving(&listener).await;
    let router = router(Diagnostics::new(app.clone(), listener.health()));
    app.store.close();
    let (status, _, body) = get(&router, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.contains("store: the store failed"), "{body}");
    assert!(body.contains("listener: ok"), "{body}");
}

#[tokio::test]
async fn metrics_render_in_prometheus_text_format() {
    let (app, _dir) = AppState::for_tests();
    let router = router(Diagnostics::new(app, Listener::new(None).health()));
    let (status, content_type, body) = get(&router, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned())))
        .expect("a Prometheus text-format scrape");
    for name in [
        "muster_workers_connected",
        "muster_jobs_queued",
        "muster_tls_handshakes_in_flight",
        "muster_build_info",
    ] {
        assert!(
            scrape.samples.iter().any(|s| s.metric == name),
            "{name} missing from:\n{body}"
        );
    }
}

#[test]
fn off_turns_the_listener_off_and_anything_else_is_an_address() {
    assert_eq!(DiagListen::parse("off"), DiagListen::Off);
    assert_eq!(DiagListen::parse("OFF"), DiagListen::Off);
    assert_eq!(
        DiagListen::parse("0.0.0.0:9100"),
        DiagListen::Address("0.0.0.0:9100".into())
    );
}

#[tokio::test]
async fn an_explicit_address_that_cannot_be_bound_is_an_error_and_the_default_is_not() {
    let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let error = bind(&DiagListen::Address(address.clone()))
        .await
        .expect_err("the port is taken");
    assert!(error.to_string().contains(&address), "{error}");
    assert!(bind(&DiagListen::Off).await.unwrap().is_none());
}
