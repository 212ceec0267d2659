//! Finding the server on this machine through its data dir, with no flags.

use std::path::{Path, PathBuf};

use muster_proto::local::{self, ServerFile};

use crate::trust::{Trust, parse_fingerprint};

#[derive(Debug, Clone)]
pub struct LocalServer {
    pub url: String,
    pub trust: Trust,
    pub admin_token: Option<String>,
    pub server_file: ServerFile,
}

#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    #[error("no muster server has run with data dir `{0}`")]
    NoServerFile(PathBuf),
    #[error("cannot read `{path}`: {reason}")]
    Unreadable { path: PathBuf, reason: String },
}

impl DiscoverError {
    pub fn hint(&self) -> String {
        match self {
            DiscoverError::NoServerFile(_) => "start one with `muster serve`, point at its data dir with `--data-dir`, or pass `--url` and `--admin-token`".into(),
            DiscoverError::Unreadable { .. } => "run the command as the user that runs `muster serve`, or pass `--url` and `--admin-token`".into(),
        }
    }
}

/// Reads `server.json` and `admin-token` from `data_dir`. The certificate is pinned by the
/// fingerprint the server recorded, so a self-signed server is trusted with no further setup.
pub fn discover(data_dir: &Path) -> Result<LocalServer, DiscoverError> {
    let path = data_dir.join(local::SERVER_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(DiscoverError::NoServerFile(data_dir.to_path_buf()));
        }
        Err(e) => {
            return Err(DiscoverError::Unreadable {
                path,
                reason: e.to_string(),
            });
        }
    };
    let server_file: ServerFile =
        serde_json::from_str(&text).map_err(|e| DiscoverError::Unreadable {
            path: path.clone(),
            reason: e.to_string(),
        })?;
    let trust = match server_file
        .tls_fingerprint
        .as_deref()
        .map(parse_fingerprint)
    {
        Some(Ok(digest)) => Trust::Fingerprint(digest),
        _ => Trust::System,
    };
    let token_path = data_dir.join(local::ADMIN_TOKEN_FILE);
    let admin_token = match std::fs::read_to_string(&token_path) {
        Ok(t) => Some(t.trim().to_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            return Err(DiscoverError::Unreadable {
                path: token_path,
                reason: e.to_string(),
            });
        }
    };
    Ok(LocalServer {
        url: server_file.url.clone(),
        trust,
        admin_token,
        server_file,
    })
}
