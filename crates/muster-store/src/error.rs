//! Store errors: what went wrong below the domain. Domain refusals (a revoked token, a name in
//! use) are not errors here; flows return them as values.

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule was broken (e.g. a name already taken). The string names the rule.
    #[error("{0}")]
    Conflict(String),
    /// The database refused or failed. Logged with detail; shown to users only as "internal".
    #[error("database error: {0}")]
    Backend(String),
    /// A stored row does not parse as a domain value: the database was edited by hand or by a
    /// newer version.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The store is shutting down or its writer is gone.
    #[error("the store is closed")]
    Closed,
    /// The database's schema was written by a newer muster: this build does not know its last
    /// migration, so it cannot tell what the data means and refuses to touch it.
    #[error(
        "the database was written by a newer muster (schema version {found}; this build knows versions up to {known})"
    )]
    SchemaTooNew { found: i64, known: i64 },
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        if let rusqlite::Error::SqliteFailure(e, ref msg) = error
            && e.code == rusqlite::ErrorCode::ConstraintViolation
        {
            return StoreError::Conflict(
                msg.clone().unwrap_or_else(|| "constraint violated".into()),
            );
        }
        StoreError::Backend(error.to_string())
    }
}

impl From<postgres::Error> for StoreError {
    fn from(error: postgres::Error) -> Self {
        // Class 23 is "integrity constraint violation" (23505 is a unique violation). All of it
        // maps to `Conflict`, as SQLite's constraint failures do, so both backends answer alike.
        if let Some(db) = error.as_db_error()
            && db.code().code().starts_with("23")
        {
            // The message names the constraint: `duplicate key value violates unique
            // constraint "workers_name_key"`.
            return StoreError::Conflict(db.message().to_owned());
        }
        StoreError::Backend(with_causes(&error))
    }
}

/// An error's text followed by its causes'. The PostgreSQL client's own text names only the
/// kind of failure ("db error", "error connecting to server"); what happened is in its sources.
pub(crate) fn with_causes(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message = format!("{message}: {cause}");
        source = cause.source();
    }
    message
}

pub type StoreResult<T> = Result<T, StoreError>;
