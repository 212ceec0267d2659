//! Files a running server leaves in its data dir so that admin commands on the same machine find
//! it with no flags: where it listens, which certificate it uses, and the admin credential.

use serde::{Deserialize, Serialize};

/// `<data-dir>/server.json`, rewritten at every start.
pub const SERVER_FILE: &str = "server.json";
/// `<data-dir>/admin-token`, owner-only: the admin API credential.
pub const ADMIN_TOKEN_FILE: &str = "admin-token";
/// `<data-dir>/admin-password`, owner-only: the web UI password of user `admin`.
pub const ADMIN_PASSWORD_FILE: &str = "admin-password";
/// `<data-dir>/tls/cert.pem`: the self-signed certificate, when the server made one.
pub const SELF_SIGNED_CERT_FILE: &str = "tls/cert.pem";
pub const SELF_SIGNED_KEY_FILE: &str = "tls/key.pem";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ServerFile {
    /// A URL that reaches the server from this machine (`https://127.0.0.1:7443`).
    pub url: String,
    /// The address it listens on, as bound (the real port when `:0` was asked for).
    pub listen: String,
    pub pid: u32,
    /// `sha256:…` of the certificate's DER, when serving TLS.
    pub tls_fingerprint: Option<String>,
    /// The certificate file the server serves, to trust it locally.
    pub cert_file: Option<String>,
    pub started_at: String,
    pub version: String,
    /// The diagnostics listener (`http://127.0.0.1:7444`), when it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diag_url: Option<String>,
    /// Where the fleet's database is, for `muster backup` (absent from older servers' files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<DatabaseLocation>,
}

/// Where a server keeps its database. A PostgreSQL URL may hold a password, so it is not
/// written down: only that it is PostgreSQL.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum DatabaseLocation {
    Sqlite { path: String },
    Postgres,
}
