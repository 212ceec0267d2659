//! The admin account that signs in to the web UI.
//!
//! There is one account, `admin`. Its password lives in the owner-only file
//! `<data-dir>/admin-password`; the store keeps only an Argon2id hash of it (setting
//! `ui_admin`). At every start the server reconciles the two:
//!
//! - nothing stored and no file: a random password is generated, written to the file, and hashed;
//! - a file whose password does not match the stored hash: the operator wrote a new password
//!   there, so it becomes the password (this is how a forgotten password is reset — whoever can
//!   write the data dir administers the server anyway);
//! - no file but a stored hash: the operator removed the file after reading it; nothing changes.

use std::path::{Path, PathBuf};

use muster_core::Timestamp;
use muster_core::audit::{AuditEvent, Outcome};
use muster_core::credentials::SlowHash;
use muster_store::{Store, StoreError};
use rand::rngs::OsRng;
use serde::{Deserialize, Serialize};

use crate::slow_hash::SlowHashPool;
use crate::ui::session::random_token;

/// The one user name the UI knows.
pub const USER: &str = "admin";
/// Where the hash is kept in the store's settings.
const SETTING: &str = "ui_admin";
/// The shortest password an operator may write into the file.
pub const MIN_PASSWORD_CHARS: usize = 12;

#[derive(Serialize, Deserialize)]
struct Stored {
    user: String,
    password_hash: String,
    set_at: i64,
}

/// The account as the server holds it: a name and a slow hash, never the password.
#[derive(Debug, Clone)]
pub struct Account {
    pub user: String,
    pub hash: SlowHash,
}

impl Account {
    /// Checks a sign-in on the server's Argon2 threads. Runs Argon2 whatever the user name, so a
    /// wrong name takes as long to refuse as a wrong password.
    pub async fn check(&self, pool: &SlowHashPool, user: &str, password: &str) -> bool {
        let password_ok = pool.verify(self.hash.clone(), password.to_owned()).await;
        password_ok && user == self.user
    }
}

/// Why the account could not be set up at start.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("cannot read the admin account: {0}")]
    Read(#[source] StoreError),
    #[error("the stored admin account is corrupt: {0}")]
    Corrupt(#[source] serde_json::Error),
    #[error(transparent)]
    File(#[from] muster_fs::FsError),
    #[error(
        "the admin password in `{}` is {length} characters long; it must be at least {MIN_PASSWORD_CHARS}",
        path.display()
    )]
    TooShort { path: PathBuf, length: usize },
    #[error("cannot hash the admin password: {0}")]
    Hash(#[from] tokio::task::JoinError),
    #[error("cannot store the admin account: {0}")]
    Store(#[source] StoreError),
}

impl AccountError {
    /// What the operator can do about it, when there is something to do.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            AccountError::TooShort { .. } => Some(
                "write a longer password into the file, or delete the file to keep the current password",
            ),
            _ => None,
        }
    }
}

/// What `bootstrap` did, for the start-up banner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bootstrap {
    /// A new password was generated and written to the file.
    Generated,
    /// The password in the file replaced the stored one.
    Replaced,
    Unchanged,
}

/// Makes sure the admin account exists and agrees with the password file.
pub async fn bootstrap(
    store: &Store,
    password_file: &Path,
    now: Timestamp,
) -> Result<(Account, Bootstrap), AccountError> {
    let stored = store
        .read(|tx| tx.get_setting(SETTING))
        .await
        .map_err(AccountError::Read)?
        .map(|json| serde_json::from_str::<Stored>(&json))
        .transpose()
        .map_err(AccountError::Corrupt)?;
    let in_file = muster_fs::read_optional(password_file)?
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty());

    let (password, outcome) = match (&stored, in_file) {
        (Some(stored), None) => {
            return Ok((
                Account {
                    user: stored.user.clone(),
                    hash: SlowHash::from_stored(stored.password_hash.clone()),
                },
                Bootstrap::Unchanged,
            ));
        }
        (Some(stored), Some(password)) => {
            let hash = SlowHash::from_stored(stored.password_hash.clone());
            let check = password.clone();
            let matches = tokio::task::spawn_blocking(move || hash.verify(&check)).await?;
            if matches {
                return Ok((
                    Account {
                        user: stored.user.clone(),
                        hash: SlowHash::from_stored(stored.password_hash.clone()),
                    },
                    Bootstrap::Unchanged,
                ));
            }
            (password, Bootstrap::Replaced)
        }
        (None, Some(password)) => (password, Bootstrap::Replaced),
        (None, None) => {
            let password = random_token();
            muster_fs::write_private(password_file, format!("{password}\n").as_bytes())?;
            (password, Bootstrap::Generated)
        }
    };
    let length = password.chars().count();
    if length < MIN_PASSWORD_CHARS {
        return Err(AccountError::TooShort {
            path: password_file.to_owned(),
            length,
        });
    }
    let hash = tokio::task::spawn_blocking(move || SlowHash::create(&password, &mut OsRng)).await?;
    let record = Stored {
        user: USER.to_owned(),
        password_hash: hash.as_stored().to_owned(),
        set_at: now.unix_millis(),
    };
    let json = serde_json::to_string(&record).map_err(AccountError::Corrupt)?;
    let event = AuditEvent {
        expected: None,
        at: now,
        actor: "server".into(),
        action: "ui.password.set".into(),
        target: USER.into(),
        remote_addr: None,
        outcome: Outcome::Ok,
        detail: match outcome {
            Bootstrap::Generated => "initial password generated into the data dir".into(),
            _ => "password replaced from the file in the data dir".into(),
        },
    };
    store
        .write(move |tx| {
            tx.put_setting(SETTING, &json)?;
            tx.insert_audit(&event)
        })
        .await
        .map_err(AccountError::Store)?;
    Ok((
        Account {
            user: USER.to_owned(),
            hash,
        },
        outcome,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn generates_once_then_follows_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("db")).unwrap();
        let file = dir.path().join("admin-password");
        let now = Timestamp::from_unix_millis(1_000);

        let pool = SlowHashPool::with_threads(1);
        let (account, what) = bootstrap(&store, &file, now).await.unwrap();
        assert_eq!(what, Bootstrap::Generated);
        let password = std::fs::read_to_string(&file).unwrap().trim().to_owned();
        assert!(account.check(&pool, "admin", &password).await);
        assert!(!account.check(&pool, "root", &password).await);
        assert!(!account.hash.as_stored().contains(&password));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "owner-only");

        let (_, what) = bootstrap(&store, &file, now).await.unwrap();
        assert_eq!(what, Bootstrap::Unchanged);
        std::fs::remove_file(&file).unwrap();
        let (account, what) = bootstrap(&store, &file, now).await.unwrap();
        assert_eq!(what, Bootstrap::Unchanged, "a removed file changes nothing");
        assert!(account.check(&pool, "admin", &password).await);

        std::fs::write(&file, "short\n").unwrap();
        let err = bootstrap(&store, &file, now).await.unwrap_err();
        assert!(err.to_string().contains("at least 12"), "{err}");
        assert!(err.hint().is_some_and(|h| h.contains("longer password")));

        std::fs::write(&file, "a brand new admin password\n").unwrap();
        let (account, what) = bootstrap(&store, &file, now).await.unwrap();
        assert_eq!(what, Bootstrap::Replaced);
        assert!(
            account
                .check(&pool, "admin", "a brand new admin password")
                .await
        );
        assert!(!account.check(&pool, "admin", &password).await);
        store.close();
    }
}
