//! Timed HTTP requests against a running server, as an admin client (bearer token) or as a
//! signed-in browser session (its cookie). Bytes are counted as sent on the wire: compression
//! is left to each request, so asking for gzip gives the compressed size.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use reqwest::header::{ACCEPT_ENCODING, COOKIE, LINK, SET_COOKIE};

use crate::stats::{Summary, summarize};

/// Who a request is from.
#[derive(Clone)]
pub enum Auth {
    /// The admin API's bearer token.
    Bearer(String),
    /// A web UI session: the `Cookie` header's value.
    Cookie(String),
}

/// A client that trusts the server of a data dir (by its fingerprint, as the CLI does).
pub struct Http {
    http: reqwest::Client,
    pub base: String,
    /// The admin token from the data dir.
    pub admin: Auth,
}

/// One answer: its body's size as sent, and the `Link` header's next page.
pub struct Answer {
    pub bytes: usize,
    pub next: Option<String>,
}

/// A figure: latencies (ms) of sequential requests and the bytes of the last answer.
pub struct Timed {
    pub ms: Summary,
    pub bytes: usize,
}

impl Http {
    pub fn for_data_dir(data: &Path) -> anyhow::Result<Self> {
        let local = muster_client::local::discover(data).map_err(|e| anyhow::anyhow!("{e}"))?;
        let tls = local.trust.client_config()?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls((*tls).clone())
            .no_gzip()
            // A sign-in answers with a redirect whose cookie is what we want.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(60))
            .build()?;
        let token = local
            .admin_token
            .context("no admin credential in the data dir")?;
        Ok(Self {
            http,
            base: local.url,
            admin: Auth::Bearer(token),
        })
    }

    fn request(&self, path: &str, auth: &Auth, gzip: bool) -> reqwest::RequestBuilder {
        let mut request = self.http.get(format!("{}{path}", self.base));
        request = match auth {
            Auth::Bearer(token) => request.bearer_auth(token),
            Auth::Cookie(cookie) => request.header(COOKIE, cookie),
        };
        if gzip {
            request = request.header(ACCEPT_ENCODING, "gzip");
        }
        request
    }

    pub async fn get(&self, path: &str, auth: &Auth, gzip: bool) -> anyhow::Result<Answer> {
        let response = self.request(path, auth, gzip).send().await?;
        if !response.status().is_success() {
            bail!("`{path}` answered {}", response.status());
        }
        let next = response
            .headers()
            .get(LINK)
            .and_then(|v| v.to_str().ok())
            .and_then(muster_client::links::next);
        let bytes = response.bytes().await?.len();
        Ok(Answer { bytes, next })
    }

    /// `requests` sequential GETs of `path` after five untimed ones.
    pub async fn timed(
        &self,
        path: &str,
        auth: &Auth,
        gzip: bool,
        requests: usize,
    ) -> anyhow::Result<Timed> {
        for _ in 0..5 {
            self.get(path, auth, gzip).await?;
        }
        let mut ms = Vec::with_capacity(requests);
        let mut bytes = 0;
        for _ in 0..requests.max(1) {
            let start = Instant::now();
            bytes = self.get(path, auth, gzip).await?.bytes;
            ms.push(start.elapsed().as_secs_f64() * 1000.0);
        }
        Ok(Timed {
            ms: summarize(&ms).context("no samples")?,
            bytes,
        })
    }

    /// Signs in to the web UI as `admin` with `password`, as the sign-in form does (its
    /// double-submit token from the form's cookie), and returns the session's `Cookie` value.
    pub async fn sign_in(&self, password: &str) -> anyhow::Result<Auth> {
        let form = self
            .http
            .get(format!("{}/signin", self.base))
            .send()
            .await?;
        let signin = cookie_pair(&form, "muster_signin").context("no sign-in cookie")?;
        let csrf = signin.split_once('=').map_or("", |(_, v)| v).to_owned();
        let answer = self
            .http
            .post(format!("{}/signin", self.base))
            .header(COOKIE, &signin)
            .form(&[
                ("csrf", csrf.as_str()),
                ("user", "admin"),
                ("password", password),
                ("next", "/workers"),
            ])
            .send()
            .await?;
        if !answer.status().is_redirection() {
            bail!("sign-in answered {}", answer.status());
        }
        let session = cookie_pair(&answer, "__Host-muster_session")
            .or_else(|| cookie_pair(&answer, "muster_session"))
            .context("the sign-in set no session cookie")?;
        Ok(Auth::Cookie(session))
    }
}

/// `name=value` of the cookie `name` an answer sets.
fn cookie_pair(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .find(|pair| pair.split_once('=').is_some_and(|(n, _)| n.trim() == name))
        .map(str::to_owned)
}
