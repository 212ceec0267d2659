//! The REST API driven through the router without a socket (`tower::ServiceExt::oneshot`): for
//! every route, the success path and the main refusals, checking the status and the JSON body;
//! and that refused requests change nothing. Real sockets, TLS and the control channel's upgrade
//! are covered by muster-cli's `tests/it`.

mod enroll;
mod enrollment;
mod jobs;
mod license;
mod lists;
mod misc;
mod tokens;
mod webhooks;
mod workers;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use muster_core::credentials::SlowHash;
use muster_core::identity::{Binding, Proof, Purpose, WorkerKey};
use muster_core::{Labels, Name, WorkerId};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::control::registry::{Command, Session};
use crate::state::AppState;
use crate::ui::UiState;
use crate::ui::account::Account;

/// Where every test request comes from.
const REMOTE: ([u8; 4], u16) = ([192, 0, 2, 9], 5000);

/// How a request presents the admin credential.
#[derive(Debug, Clone, Copy)]
enum Auth {
    Admin,
    Missing,
    Wrong,
}

struct Api {
    app: AppState,
    ui: Arc<UiState>,
    _dir: tempfile::TempDir,
}

struct Reply {
    status: StatusCode,
    content_type: String,
    text: String,
    body: Value,
    /// The license warning for the admin (`muster-warning`), decoded.
    warning: Option<String>,
    /// The `Link` header, when the reply has one (the next page of a list).
    link: Option<String>,
}

impl Reply {
    /// Asserts the status, showing the body when it is not the one expected.
    #[track_caller]
    fn expect(self, status: StatusCode) -> Self {
        assert_eq!(self.status, status, "{}", self.text);
        self
    }

    /// Asserts an error reply: its status, its code and a part of its message.
    #[track_caller]
    fn refused(self, status: StatusCode, code: &str, message: &str) -> Self {
        let reply = self.expect(status);
        assert_eq!(reply.body["error"]["code"], code, "{}", reply.text);
        let text = reply.body["error"]["message"].as_str().unwrap_or_default();
        assert!(text.contains(message), "{text:?} lacks {message:?}");
        reply
    }

    fn hint(&self) -> &str {
        self.body["error"]["hint"].as_str().unwrap_or_default()
    }
}

impl Api {
    fn new() -> Self {
        let (app, dir) = AppState::for_tests();
        // The API never checks the UI's password, so no Argon2 hash is made for it.
        let ui = Arc::new(UiState::new(Account {
            user: "admin".into(),
            hash: SlowHash::from_stored(String::new()),
        }));
        Self { app, ui, _dir: dir }
    }

    /// A fresh server whose trial is running: external workers may join.
    async fn licensed() -> Self {
        let api = Self::new();
        api.post("/api/v1/license/trial", json!({}))
            .await
            .expect(StatusCode::OK);
        api
    }

    async fn call(&self, method: Method, path: &str, auth: Auth, body: Option<Value>) -> Reply {
        let mut request = Request::builder().method(method).uri(path);
        request = match auth {
            Auth::Admin => request.header(
                header::AUTHORIZATION,
                format!("Bearer {}", AppState::TEST_ADMIN_TOKEN),
            ),
            Auth::Wrong => request.header(header::AUTHORIZATION, "Bearer ma_not-the-token"),
            Auth::Missing => request,
        };
        let body = match body {
            Some(json) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Body::from(json.to_string())
            }
            None => Body::empty(),
        };
        self.send(request.body(body).unwrap()).await
    }

    /// Sends a request from [`REMOTE`] and returns the answer with its body not read yet.
    async fn respond(&self, mut request: Request<Body>) -> axum::response::Response {
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(REMOTE)));
        crate::router(self.app.clone(), Arc::clone(&self.ui))
            .oneshot(request)
            .await
            .unwrap()
    }

    /// An admin's `GET` of `path`, its body not read yet (a stream that ends when the server
    /// ends it).
    async fn open(&self, path: &str) -> axum::response::Response {
        let request = Request::builder()
            .uri(path)
            .header(
                header::AUTHORIZATION,
                format!("Bearer {}", AppState::TEST_ADMIN_TOKEN),
            )
            .body(Body::empty())
            .unwrap();
        self.respond(request).await
    }

    async fn send(&self, request: Request<Body>) -> Reply {
        let response = self.respond(request).await;
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let warning = response
            .headers()
            .get(muster_proto::api::WARNING_HEADER)
            .map(|v| muster_proto::api::decode_warning(v.to_str().unwrap()));
        let link = response
            .headers()
            .get(header::LINK)
            .map(|v| v.to_str().unwrap().to_owned());
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            content_type,
            text,
            body,
            warning,
            link,
        }
    }

    /// Sends a request and returns the answer's headers and body bytes as they came.
    async fn send_raw(&self, request: Request<Body>) -> (axum::http::HeaderMap, bytes::Bytes) {
        let response = self.respond(request).await;
        let headers = response.headers().clone();
        (
            headers,
            response.into_body().collect().await.unwrap().to_bytes(),
        )
    }

    async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, Auth::Admin, None).await
    }

    async fn post(&self, path: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Auth::Admin, Some(body)).await
    }

    /// `POST /api/v1/enroll` as a worker makes it: a fresh nonce from the server, signed with
    /// the key of the machine the body names (the same machine always holds the same key).
    async fn enroll(&self, mut body: Value) -> Reply {
        let nonce = self
            .get("/api/v1/challenge")
            .await
            .expect(StatusCode::OK)
            .body["nonce"]
            .as_str()
            .unwrap()
            .to_owned();
        let machine = body["machine_id"].as_str().unwrap_or_default().to_owned();
        let key = machine_key(&machine);
        let public_key = key.public_key();
        let subject = match (body["token"].as_str(), body["name"].as_str()) {
            (Some(token), _) => token.split('.').next().unwrap_or_default().to_owned(),
            (None, Some(name)) => name.to_owned(),
            (None, None) => String::new(),
        };
        let binding = Binding::ServerNonce(nonce.as_bytes().to_vec());
        let proof = key.sign(&Proof {
            purpose: Purpose::Enroll,
            binding: &binding,
            subject: &subject,
            public_key: &public_key,
            ticket: None,
            process: None,
        });
        body["public_key"] = json!(public_key.to_string());
        body["proof"] = json!(proof.to_string());
        body["nonce"] = json!(nonce);
        self.post("/api/v1/enroll", body).await
    }

    async fn delete(&self, path: &str) -> Reply {
        self.call(Method::DELETE, path, Auth::Admin, None).await
    }

    /// Creates a token and returns its secret.
    async fn token(&self, name: &str) -> String {
        let reply = self
            .post("/api/v1/tokens", json!({"name": name, "duration": "1h"}))
            .await
            .expect(StatusCode::CREATED);
        reply.body["token"].as_str().unwrap().to_owned()
    }

    /// Creates a worker by hand and returns its id.
    async fn worker(&self, name: &str) -> WorkerId {
        let reply = self
            .post("/api/v1/workers", json!({"name": name}))
            .await
            .expect(StatusCode::CREATED);
        WorkerId::parse(reply.body["id"].as_str().unwrap()).unwrap()
    }

    /// Registers a live session for a worker, as if its control channel were open.
    fn connect(&self, worker: &WorkerId, name: &str, slots: u32) -> Arc<Session> {
        let session = Arc::new(Session::new(
            self.app.registry.next_conn_id(),
            worker.clone(),
            Name::parse(name).unwrap(),
            Some(SocketAddr::from(REMOTE)),
            self.app.clock.now(),
            slots,
            Labels::new(),
        ));
        self.app.registry.insert(Arc::clone(&session));
        session
    }

    /// Everything an admin can see: a refused request must leave all of it as it was.
    async fn everything(&self) -> Value {
        let mut all = serde_json::Map::new();
        for path in ["tokens", "workers", "jobs", "audit", "enrollment"] {
            let reply = self.get(&format!("/api/v1/{path}")).await;
            all.insert(path.into(), reply.expect(StatusCode::OK).body);
        }
        Value::Object(all)
    }

    /// The audit actions recorded so far, newest first.
    async fn actions(&self) -> Vec<String> {
        let reply = self.get("/api/v1/audit").await.expect(StatusCode::OK);
        reply
            .body
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                format!(
                    "{} {}",
                    e["action"].as_str().unwrap(),
                    e["outcome"].as_str().unwrap()
                )
            })
            .collect()
    }
}

/// The close commands a session was sent, by code.
fn closes(session: &Session) -> Vec<muster_proto::control::CloseCode> {
    session
        .inbox
        .drain()
        .into_iter()
        .filter_map(|c| match c {
            Command::Close { code, .. } => Some(code),
            Command::Send(_) | Command::Probe => None,
        })
        .collect()
}

/// The key a test machine holds: the same machine always the same key.
fn machine_key(machine: &str) -> WorkerKey {
    let mut seed = [5u8; 32];
    for (i, b) in machine.bytes().enumerate() {
        seed[i % 32] = seed[i % 32].wrapping_mul(33).wrapping_add(b);
    }
    WorkerKey::from_seed(seed)
}
