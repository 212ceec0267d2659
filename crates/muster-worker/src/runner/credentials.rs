//! Which identity a worker runs as, when its state dir holds one and its configuration names a
//! credential too: the credential kinds, the check that the two name the same worker, which
//! refusals mean the server will never take the cached identity again, and the errors that say
//! which state dir holds what and how to go on.

use muster_proto::ErrorCode;

use crate::config::WorkerConfig;
use crate::error::{Cause, WorkerError};
use crate::state_dir::{CachedIdentity, StateDir};

/// How this worker will prove who it is.
pub(super) enum Credential {
    Cached(CachedIdentity),
    Precreated { worker_id: String, api_key: String },
    Token(String),
    Secret { name: String, key: String },
}

/// The configured enrollment credential, if any: the worker name it is for (a token's name, or
/// the configured name with the secret), its text, and the credential.
pub(super) fn configured_enrollment(config: &WorkerConfig) -> Option<(String, String, Credential)> {
    match (&config.token, &config.enrollment_key, &config.name) {
        (Some(token), _, _) => Some((
            token.split('.').next().unwrap_or_default().to_owned(),
            token.clone(),
            Credential::Token(token.clone()),
        )),
        (None, Some(key), Some(name)) => Some((
            name.clone(),
            key.clone(),
            Credential::Secret {
                name: name.clone(),
                key: key.clone(),
            },
        )),
        _ => None,
    }
}

/// The state dir holds one worker, the configuration names another: never pick one silently.
pub(super) fn identity_conflict(
    state: &StateDir,
    cached: &CachedIdentity,
    configured: &str,
    what: &str,
) -> WorkerError {
    WorkerError::config(
        format!(
            "the state dir `{}` holds worker `{}`, but {what} is for `{configured}`",
            state.root().display(),
            cached.name
        ),
        format!(
            "to run `{configured}` on this machine, give it its own `--state-dir` (or delete `{}`); to keep running `{}`, remove {what} from the configuration",
            state.identity_path().display(),
            cached.name
        ),
    )
}

/// Whether a failure means the server will never again take this identity.
pub(super) fn refuses_identity(cause: Cause) -> bool {
    use muster_proto::control::CloseCode;
    matches!(
        cause,
        Cause::Refused(
            ErrorCode::UnknownIdentity
                | ErrorCode::WorkerRevoked
                | ErrorCode::WorkerExpired
                | ErrorCode::TokenRevoked
                | ErrorCode::TokenExpired
        ) | Cause::Closed(
            CloseCode::Revoked | CloseCode::Expired | CloseCode::Removed | CloseCode::Superseded
        )
    )
}

/// The server refused the cached identity of `name` for good and no fresh credential is
/// configured: the same failure (and exit code), with the state dir and the way on.
pub(super) fn cached_identity_refused(
    state: &StateDir,
    name: &str,
    error: &WorkerError,
) -> WorkerError {
    if error.cause() == Cause::Refused(ErrorCode::UnknownIdentity) {
        return unknown_cached_identity(state);
    }
    WorkerError::new(
        error.cause(),
        error.message().to_owned(),
        format!(
            "`{}` holds this identity of `{name}`; to join again, start with a new enrollment token or the auto-enrollment secret (the worker enrolls with it and replaces the cached identity), or with a fresh `--state-dir`",
            state.identity_path().display()
        ),
    )
}

/// The server does not know the identity this worker cached: say which file holds it.
pub(crate) fn unknown_cached_identity(state: &StateDir) -> WorkerError {
    WorkerError::new(
        Cause::Refused(ErrorCode::UnknownIdentity),
        format!(
            "the server does not know the identity cached in `{}`",
            state.identity_path().display()
        ),
        "the worker was removed or superseded, or the state dir belongs to another server; start with a fresh `--state-dir` (or delete that file) to enroll again",
    )
}
