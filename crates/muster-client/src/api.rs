//! The typed client for muster's REST API: the admin operations the CLI (and tests, and load
//! tools) use, and the enrollment call a worker makes.
//!
//! Over 400 lines because it is one method per REST endpoint (about 30, each a few lines) plus the
//! one place that turns transport failures and error bodies into [`ClientError`]s with their hints;
//! splitting the methods by resource would only spread one `impl Client` over several files.

use muster_proto::api::{
    AuditEntry, CreateTokenRequest, CreateWorkerRequest, CreatedToken, CreatedWorker,
    EnableEnrollmentRequest, EnableEnrollmentResponse, EnrollRequest, EnrollResponse,
    EnrollmentStatus, Health, InstallLicenseRequest, JobEvent, JobView, LicenseView,
    SubmitJobRequest, TokenView, WorkerView,
};
use muster_proto::{ErrorBody, ErrorDetail};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::trust::{Trust, TrustError};
use crate::{lines, links, trust};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error.
    #[error("{}", .detail.message)]
    Api { status: u16, detail: ErrorDetail },
    #[error("cannot reach the server at `{url}`: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the server at `{url}` presented a certificate that is not trusted")]
    UntrustedCertificate { url: String },
    #[error("`{url}` is a plain http:// URL but the server speaks HTTPS")]
    PlainHttpToHttps { url: String },
    #[error("`{url}` is an https:// URL but the server does not speak TLS")]
    NotTls { url: String },
    #[error("server URL `{0}` is malformed: expected `https://host:port`")]
    BadUrl(String),
    #[error(transparent)]
    Trust(#[from] TrustError),
    #[error("unexpected answer from the server: {0}")]
    Protocol(String),
}

impl ClientError {
    pub fn hint(&self) -> Option<String> {
        match self {
            ClientError::Api { detail, .. } => detail.hint.clone(),
            ClientError::Unreachable { .. } => Some("check the URL, and that the server is running and reachable from here".into()),
            ClientError::UntrustedCertificate { .. } => Some(
                "pass `--ca-file` with the server's CA certificate, or `--ca-fingerprint` with the fingerprint `muster serve` printed".into(),
            ),
            ClientError::PlainHttpToHttps { url } => Some(format!("use `{}`", url.replacen("http://", "https://", 1))),
            ClientError::NotTls { url } => Some(format!(
                "use `{}` if the server runs with `--no-tls`, or check the port",
                url.replacen("https://", "http://", 1)
            )),
            ClientError::BadUrl(_) => Some("for example `https://muster.example.com:7443`".into()),
            ClientError::Trust(_) | ClientError::Protocol(_) => None,
        }
    }

    /// The server's error code, when the server answered.
    pub fn code(&self) -> Option<muster_proto::ErrorCode> {
        match self {
            ClientError::Api { detail, .. } => Some(detail.code),
            _ => None,
        }
    }
}

/// Checks a base URL and returns it without a trailing slash.
pub fn normalize_url(url: &str) -> Result<String, ClientError> {
    let parsed = reqwest::Url::parse(url).map_err(|_| ClientError::BadUrl(url.into()))?;
    let ok_scheme = matches!(parsed.scheme(), "http" | "https");
    if !ok_scheme
        || parsed.host_str().is_none()
        || parsed.query().is_some()
        || !parsed.username().is_empty()
    {
        return Err(ClientError::BadUrl(url.into()));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

/// More pages than a list of 100,000 rows has at its smallest page size of interest: a server
/// that keeps naming another page is not listing anything.
const MAX_PAGES: usize = 100_000;

/// Called with each warning the server sends an admin (a license near its end, a worker
/// prepared that cannot join), decoded.
pub type WarningHook = std::sync::Arc<dyn Fn(&str) + Send + Sync>;

#[derive(Clone)]
pub struct Client {
    base: String,
    http: reqwest::Client,
    admin_token: Option<String>,
    on_warning: Option<WarningHook>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl Client {
    pub fn new(
        base_url: &str,
        trust: &Trust,
        admin_token: Option<String>,
    ) -> Result<Self, ClientError> {
        let base = normalize_url(base_url)?;
        let tls = trust.client_config()?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls((*tls).clone())
            .connect_timeout(std::time::Duration::from_secs(10))
            .timeout(std::time::Duration::from_secs(20))
            .build()
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        Ok(Self {
            base,
            http,
            admin_token,
            on_warning: None,
        })
    }

    /// Passes every warning the server sends with an answer to `hook`.
    pub fn with_warnings(mut self, hook: WarningHook) -> Self {
        self.on_warning = Some(hook);
        self
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<T, ClientError> {
        let response = self.send(method, path, body).await?;
        let bytes = response
            .bytes()
            .await
            .map_err(|e| self.transport_error(e))?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Protocol(e.to_string()))
    }

    /// A `GET`, decoded.
    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call(Method::GET, path, None::<&()>).await
    }

    /// A `POST` without a body (an action on the resource at `path`), decoded.
    async fn post_empty<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call(Method::POST, path, None::<&()>).await
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<reqwest::Response, ClientError> {
        self.request(method, path, body, None).await
    }

    /// Sends a request and turns an error answer into a [`ClientError`]. `timeout` replaces the
    /// client's overall timeout (following a job may take as long as the job).
    async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
        timeout: Option<std::time::Duration>,
    ) -> Result<reqwest::Response, ClientError> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(timeout) = timeout {
            request = request.timeout(timeout);
        }
        if let Some(token) = &self.admin_token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| self.transport_error(e))?;
        if response.headers().contains_key("x-muster-wrong-scheme") {
            return Err(ClientError::PlainHttpToHttps {
                url: self.base.clone(),
            });
        }
        if response.status().is_success() {
            if let Some(hook) = &self.on_warning
                && let Some(warning) = response
                    .headers()
                    .get(muster_proto::api::WARNING_HEADER)
                    .and_then(|v| v.to_str().ok())
            {
                hook(&muster_proto::api::decode_warning(warning));
            }
            return Ok(response);
        }
        let status = response.status();
        let bytes = response.bytes().await.unwrap_or_default();
        match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(body) => Err(ClientError::Api {
                status: status.as_u16(),
                detail: body.error,
            }),
            Err(_) => Err(ClientError::Protocol(format!(
                "HTTP {status} without a muster error body; is `{}` a muster server?",
                self.base
            ))),
        }
    }

    fn transport_error(&self, error: reqwest::Error) -> ClientError {
        if trust::is_untrusted_certificate(&error) {
            return ClientError::UntrustedCertificate {
                url: self.base.clone(),
            };
        }
        if trust::is_not_tls(&error) {
            return ClientError::NotTls {
                url: self.base.clone(),
            };
        }
        let mut reason = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(s) = source {
            reason = s.to_string();
            source = s.source();
        }
        ClientError::Unreachable {
            url: self.base.clone(),
            reason,
        }
    }

    pub async fn health(&self) -> Result<Health, ClientError> {
        self.get(muster_proto::paths::HEALTH).await
    }

    /// A nonce to sign (a worker proving it holds its key), good for a minute.
    pub async fn challenge(&self) -> Result<muster_proto::api::Challenge, ClientError> {
        self.call(Method::GET, muster_proto::paths::CHALLENGE, None::<&()>)
            .await
    }

    /// What a worker checks before it joins: the server's clock, edition and auto-enrollment.
    pub async fn preflight(&self) -> Result<muster_proto::api::Preflight, ClientError> {
        self.get(muster_proto::paths::PREFLIGHT).await
    }

    pub async fn create_token(
        &self,
        req: &CreateTokenRequest,
    ) -> Result<CreatedToken, ClientError> {
        self.call(Method::POST, "/api/v1/tokens", Some(req)).await
    }

    /// Every token (`state` and other filters in `query`), following the pages.
    pub async fn list_tokens(&self) -> Result<Vec<TokenView>, ClientError> {
        self.list_all("/api/v1/tokens", &[]).await
    }

    /// `GET path?query`, then every page its `Link: <…>; rel="next"` headers name, in order.
    pub async fn list_all<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Vec<T>, ClientError> {
        let mut all = Vec::new();
        let mut next = Some(with_query(path, query));
        let mut pages = 0usize;
        while let Some(url) = next.take() {
            let (rows, link) = self.list_page::<T>(&url).await?;
            all.extend(rows);
            pages += 1;
            if pages > MAX_PAGES {
                return Err(ClientError::Protocol(format!(
                    "`{path}` named more than {MAX_PAGES} pages"
                )));
            }
            // A next page that names the one just read would never end.
            next = link.filter(|l| *l != url);
        }
        Ok(all)
    }

    /// One page of a list at `path_and_query`, and the path of the next page, if there is one.
    pub async fn list_page<T: DeserializeOwned>(
        &self,
        path_and_query: &str,
    ) -> Result<(Vec<T>, Option<String>), ClientError> {
        let response = self.send(Method::GET, path_and_query, None::<&()>).await?;
        let next = response
            .headers()
            .get_all(reqwest::header::LINK)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(links::next);
        let bytes = response
            .bytes()
            .await
            .map_err(|e| self.transport_error(e))?;
        let rows =
            serde_json::from_slice(&bytes).map_err(|e| ClientError::Protocol(e.to_string()))?;
        Ok((rows, next))
    }

    pub async fn show_token(&self, name: &str) -> Result<TokenView, ClientError> {
        self.get(&format!("/api/v1/tokens/{}", path_segment(name)))
            .await
    }

    pub async fn revoke_token(&self, name: &str) -> Result<TokenView, ClientError> {
        self.post_empty(&format!("/api/v1/tokens/{}/revoke", path_segment(name)))
            .await
    }

    /// The whole fleet, following the pages. `query` takes the list's filters (`status`,
    /// `label`, `name`) and `limit`, the page size.
    pub async fn list_workers_where(
        &self,
        query: &[(&str, String)],
    ) -> Result<Vec<WorkerView>, ClientError> {
        self.list_all("/api/v1/workers", query).await
    }

    pub async fn list_workers(&self) -> Result<Vec<WorkerView>, ClientError> {
        self.list_workers_where(&[]).await
    }

    pub async fn show_worker(&self, name: &str) -> Result<WorkerView, ClientError> {
        self.get(&format!("/api/v1/workers/{}", path_segment(name)))
            .await
    }

    pub async fn create_worker(
        &self,
        req: &CreateWorkerRequest,
    ) -> Result<CreatedWorker, ClientError> {
        self.call(Method::POST, "/api/v1/workers", Some(req)).await
    }

    pub async fn revoke_worker(&self, name: &str) -> Result<WorkerView, ClientError> {
        self.post_empty(&format!("/api/v1/workers/{}/revoke", path_segment(name)))
            .await
    }

    pub async fn remove_worker(&self, name: &str) -> Result<(), ClientError> {
        self.send(
            Method::DELETE,
            &format!("/api/v1/workers/{}", path_segment(name)),
            None::<&()>,
        )
        .await?;
        Ok(())
    }

    pub async fn enrollment_status(&self) -> Result<EnrollmentStatus, ClientError> {
        self.get("/api/v1/enrollment").await
    }

    pub async fn enable_enrollment(
        &self,
        req: &EnableEnrollmentRequest,
    ) -> Result<EnableEnrollmentResponse, ClientError> {
        self.call(Method::POST, "/api/v1/enrollment/enable", Some(req))
            .await
    }

    pub async fn rotate_enrollment(
        &self,
        req: &EnableEnrollmentRequest,
    ) -> Result<EnableEnrollmentResponse, ClientError> {
        self.call(Method::POST, "/api/v1/enrollment/rotate", Some(req))
            .await
    }

    pub async fn disable_enrollment(&self) -> Result<EnrollmentStatus, ClientError> {
        self.post_empty("/api/v1/enrollment/disable").await
    }

    pub async fn create_webhook(
        &self,
        req: &muster_proto::api::CreateWebhookRequest,
    ) -> Result<muster_proto::api::WebhookView, ClientError> {
        self.call(Method::POST, "/api/v1/webhooks", Some(req)).await
    }

    pub async fn list_webhooks(&self) -> Result<Vec<muster_proto::api::WebhookView>, ClientError> {
        self.get("/api/v1/webhooks").await
    }

    pub async fn remove_webhook(&self, id: &str) -> Result<(), ClientError> {
        self.send(
            Method::DELETE,
            &format!("/api/v1/webhooks/{}", path_segment(id)),
            None::<&()>,
        )
        .await?;
        Ok(())
    }

    /// Sends a test event now; answers with its delivery after the first attempt.
    pub async fn test_webhook(
        &self,
        id: &str,
    ) -> Result<muster_proto::api::DeliveryView, ClientError> {
        self.post_empty(&format!("/api/v1/webhooks/{}/test", path_segment(id)))
            .await
    }

    /// A webhook's delivery log, newest first.
    pub async fn webhook_deliveries(
        &self,
        id: &str,
        limit: u32,
    ) -> Result<Vec<muster_proto::api::DeliveryView>, ClientError> {
        self.get(&format!(
            "/api/v1/webhooks/{}/deliveries?limit={limit}",
            path_segment(id)
        ))
        .await
    }

    /// `GET /api/v1/audit` with query parameters (`limit`, `before`, `action`, `q`).
    pub async fn audit(&self, query: &[(&str, String)]) -> Result<Vec<AuditEntry>, ClientError> {
        self.get(&with_query("/api/v1/audit", query)).await
    }

    pub async fn submit_job(&self, req: &SubmitJobRequest) -> Result<JobView, ClientError> {
        self.call(Method::POST, "/api/v1/jobs", Some(req)).await
    }

    /// `GET /api/v1/jobs` with `state`, `worker` and `limit` query parameters.
    pub async fn list_jobs(&self, query: &[(&str, String)]) -> Result<Vec<JobView>, ClientError> {
        self.get(&with_query("/api/v1/jobs", query)).await
    }

    pub async fn show_job(&self, id: &str) -> Result<JobView, ClientError> {
        self.get(&format!("/api/v1/jobs/{}", path_segment(id)))
            .await
    }

    pub async fn cancel_job(&self, id: &str) -> Result<JobView, ClientError> {
        self.post_empty(&format!("/api/v1/jobs/{}/cancel", path_segment(id)))
            .await
    }

    /// A job's output: what is stored, then (with `follow`) what arrives live until it ends.
    pub async fn job_output(
        &self,
        id: &str,
        after: u64,
        follow: bool,
    ) -> Result<JobEvents, ClientError> {
        let path = format!(
            "/api/v1/jobs/{}/output?after={after}&follow={follow}",
            path_segment(id)
        );
        let response = self.send_streaming(Method::GET, &path).await?;
        Ok(JobEvents {
            response,
            lines: lines::LineSplitter::new(lines::MAX_LINE),
            base: self.base.clone(),
        })
    }

    async fn send_streaming(
        &self,
        method: Method,
        path: &str,
    ) -> Result<reqwest::Response, ClientError> {
        let year = std::time::Duration::from_secs(365 * 24 * 3600);
        self.request(method, path, None::<&()>, Some(year)).await
    }

    pub async fn license(&self) -> Result<LicenseView, ClientError> {
        self.get("/api/v1/license").await
    }

    pub async fn install_license(&self, license: &str) -> Result<LicenseView, ClientError> {
        let req = InstallLicenseRequest {
            license: license.to_owned(),
        };
        self.call(Method::PUT, "/api/v1/license", Some(&req)).await
    }

    pub async fn start_trial(&self) -> Result<LicenseView, ClientError> {
        self.post_empty("/api/v1/license/trial").await
    }

    pub async fn remove_license(&self) -> Result<LicenseView, ClientError> {
        self.call(Method::DELETE, "/api/v1/license", None::<&()>)
            .await
    }

    /// A machine asks for its worker identity.
    pub async fn enroll(&self, req: &EnrollRequest) -> Result<EnrollResponse, ClientError> {
        self.call(Method::POST, muster_proto::paths::ENROLL, Some(req))
            .await
    }

    /// Any other JSON call, for endpoints newer than this client's typed methods.
    pub async fn raw<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<T, ClientError> {
        self.call(method, path, body).await
    }
}

fn with_query(path: &str, query: &[(&str, String)]) -> String {
    let mut out = path.to_owned();
    for (i, (k, v)) in query.iter().enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        out.push_str(k);
        out.push('=');
        out.push_str(&path_segment(v));
    }
    out
}

/// The events of a job's output stream, one at a time.
pub struct JobEvents {
    response: reqwest::Response,
    lines: lines::LineSplitter,
    base: String,
}

impl JobEvents {
    /// The next event, or `None` when the stream ends.
    pub async fn next(&mut self) -> Result<Option<JobEvent>, ClientError> {
        loop {
            let line = self
                .lines
                .next_line()
                .map_err(|e| ClientError::Protocol(format!("bad output stream: {e}")))?;
            if let Some(line) = line {
                return serde_json::from_slice(line)
                    .map(Some)
                    .map_err(|e| ClientError::Protocol(format!("bad output event: {e}")));
            }
            match self.response.chunk().await {
                Ok(Some(chunk)) => self.lines.push(&chunk),
                Ok(None) => return Ok(None),
                Err(e) => {
                    return Err(ClientError::Unreachable {
                        url: self.base.clone(),
                        reason: e.to_string(),
                    });
                }
            }
        }
    }
}

/// Percent-encodes a value for use in a path or query.
fn path_segment(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Whether a status means "try again later".
pub fn is_retryable_status(status: u16) -> bool {
    status == StatusCode::SERVICE_UNAVAILABLE.as_u16()
        || status == StatusCode::TOO_MANY_REQUESTS.as_u16()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        assert_eq!(normalize_url("https://h:7443/").unwrap(), "https://h:7443");
        for bad in [
            "h:7443",
            "ftp://h",
            "https://",
            "not a url",
            "https://u:p@h",
        ] {
            assert!(
                matches!(normalize_url(bad), Err(ClientError::BadUrl(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(path_segment("a b/c"), "a%20b%2Fc");
        assert_eq!(path_segment("token."), "token.");
    }
}
