//! [`ServeError`]: why `muster serve` could not start, each with the fix when there is one.

use std::path::PathBuf;

use muster_fs::FsError;
use muster_store::StoreError;

use crate::tls::TlsError;
use crate::ui::account::AccountError;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot resolve listen address `{listen}`: {source}")]
    Resolve {
        listen: String,
        source: std::io::Error,
    },
    #[error("refusing to serve plain HTTP on `{listen}`, which is not a loopback address")]
    PlaintextNotLoopback { listen: String },
    #[error(
        "data dir `{}` is in use by another muster server (pid {holder})",
        path.display()
    )]
    DataDirInUse { path: PathBuf, holder: String },
    #[error("cannot use the data dir: {0}")]
    DataDir(#[source] FsError),
    #[error("cannot listen on `{listen}`: {source}")]
    Listen {
        listen: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    DiagListen(#[from] crate::diag::DiagBindError),
    #[error("cannot read the address the server listens on: {0}")]
    LocalAddr(#[source] std::io::Error),
    /// `what` names the database: "the embedded database", "database `PATH`".
    #[error("cannot open {what}: {source}")]
    Sqlite { what: String, source: StoreError },
    /// The URL may hold a password, so the message does not repeat it.
    #[error("cannot open the PostgreSQL database given by `--database`: {0}")]
    Postgres(#[source] StoreError),
    #[error("database URL must start with `sqlite:` or `postgres://`")]
    DatabaseUrl,
    #[error("cannot recover jobs from the database: {0}")]
    Recover(#[source] StoreError),
    /// A file in the data dir (the admin credential, the server file, the server id).
    #[error(transparent)]
    File(#[from] FsError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Account(#[from] AccountError),
    #[error("cannot use license issuer key file `{}`: {reason}", path.display())]
    LicenseIssuerKey { path: PathBuf, reason: String },
}

impl ServeError {
    /// What the operator can do about it, when there is something to do.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            ServeError::Resolve { .. } => Some("use host:port, like 127.0.0.1:7443"),
            ServeError::PlaintextNotLoopback { .. } => {
                Some("drop `--no-tls`, or add `--allow-plaintext` if a TLS proxy sits in front")
            }
            ServeError::DataDirInUse { .. } => {
                Some("stop it first, or give this one its own `--data-dir`")
            }
            ServeError::DataDir(_) => Some("check the path and permissions of `--data-dir`"),
            ServeError::Listen { .. } => {
                Some("another program may hold the port; choose another with `--listen`")
            }
            ServeError::DiagListen(_) => Some(
                "choose another address with `--diag-listen` (MUSTER_DIAG_LISTEN), or `--diag-listen off`",
            ),
            ServeError::Sqlite {
                source: StoreError::SchemaTooNew { .. },
                ..
            }
            | ServeError::Postgres(StoreError::SchemaTooNew { .. }) => Some(
                "run the muster version that last used this database (or a newer one), or restore a backup made by this version",
            ),
            ServeError::Postgres(_) => Some(
                "check that the server is reachable and that the URL's user, host, port and database are right",
            ),
            ServeError::DatabaseUrl => {
                Some("omit `--database` to use the embedded SQLite database")
            }
            ServeError::Account(e) => e.hint(),
            ServeError::LicenseIssuerKey { .. } => Some(
                "`--license-issuer-key` takes a file of issuer public keys, one `k4.public.…` per line, as `muster-license keygen` writes them",
            ),
            ServeError::LocalAddr(_)
            | ServeError::Sqlite { .. }
            | ServeError::Recover(_)
            | ServeError::File(_)
            | ServeError::Tls(_) => None,
        }
    }
}
