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
            return StoreError::Conflict(match db.constraint() {
                Some(constraint) => format!("{} (`{constraint}`)", db.message()),
                None => db.message().to_owned(),
            });
        }
        StoreError::Backend(error.to_string())
    }
}

pub type StoreResult<T> = Result<T, StoreError>;
