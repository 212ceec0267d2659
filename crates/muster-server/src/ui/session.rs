//! Signed-in browser sessions, in memory.
//!
//! A session is a random 256-bit id in an HttpOnly, SameSite=Strict cookie, mapped here to its
//! CSRF token, its timestamps and the messages waiting for the next page. Keeping them in memory
//! means a server restart signs everyone out, which is acceptable for an admin console with a
//! handful of users and keeps session ids off disk. Sessions end after [`IDLE_TIMEOUT`] without a
//! request, after [`MAX_LIFETIME`] in any case, and at sign-out.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use subtle::ConstantTimeEq;
use tokio::time::Instant;

/// A session unused for this long is gone.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// No session lives longer than this, however busy.
pub const MAX_LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);
/// Sessions kept at most; the oldest go first. Far more than any admin team needs, small enough
/// that a flood of sign-ins cannot grow memory without bound.
const MAX_SESSIONS: usize = 1_000;

/// 256 random bits, base64url: a session id or a CSRF token.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Constant-time string equality, so a wrong guess teaches an attacker nothing about how close
/// it was.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Something to show once on the next page the session sees.
#[derive(Clone, PartialEq, Eq)]
pub enum Flash {
    Done(String),
    Failed(String),
    /// A token's plaintext and a worker command line that contains it: shown once.
    CreatedToken {
        name: String,
        token: String,
        expires_at: String,
        command: String,
    },
    /// A pre-created worker's API key and the command that starts it: shown once.
    CreatedWorker {
        name: String,
        api_key: String,
        command: String,
    },
    /// A generated auto-enrollment secret: shown once.
    GeneratedSecret(String),
    /// The license banner, added to a page's notices when it is shown (never stored).
    License(crate::license::Banner),
}

impl std::fmt::Debug for Flash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Flash::Done(text) => write!(f, "Done({text:?})"),
            Flash::Failed(text) => write!(f, "Failed({text:?})"),
            Flash::CreatedToken { name, .. } => write!(f, "CreatedToken({name}, <redacted>)"),
            Flash::CreatedWorker { name, .. } => write!(f, "CreatedWorker({name}, <redacted>)"),
            Flash::GeneratedSecret(_) => f.write_str("GeneratedSecret(<redacted>)"),
            Flash::License(banner) => write!(f, "License({:?})", banner.text),
        }
    }
}

struct Session {
    csrf: String,
    created: Instant,
    last_used: Instant,
    flash: Vec<Flash>,
}

impl Session {
    fn alive(&self, now: Instant) -> bool {
        now.duration_since(self.last_used) < IDLE_TIMEOUT
            && now.duration_since(self.created) < MAX_LIFETIME
    }
}

/// What a request learns about its session.
#[derive(Clone)]
pub struct Current {
    pub id: String,
    pub csrf: String,
}

impl std::fmt::Debug for Current {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Current(<redacted>)")
    }
}

#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a session (at sign-in: a fresh id every time, so no id chosen before sign-in can
    /// be carried over) and returns it.
    pub fn start(&self) -> Current {
        let now = Instant::now();
        let current = Current {
            id: random_token(),
            csrf: random_token(),
        };
        let mut map = self.map();
        map.retain(|_, s| s.alive(now));
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map
                .iter()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(id, _)| id.clone())
        {
            map.remove(&oldest);
        }
        map.insert(
            current.id.clone(),
            Session {
                csrf: current.csrf.clone(),
                created: now,
                last_used: now,
                flash: Vec::new(),
            },
        );
        current
    }

    /// The live session with this id, marking it used.
    pub fn touch(&self, id: &str) -> Option<Current> {
        self.get(id, true)
    }

    /// The live session with this id. `used` is false for the page script's background
    /// refreshes: a page left open must not keep its session alive past the idle timeout.
    pub fn get(&self, id: &str, used: bool) -> Option<Current> {
        let now = Instant::now();
        let mut map = self.map();
        let session = map.get_mut(id)?;
        if !session.alive(now) {
            map.remove(id);
            return None;
        }
        if used {
            session.last_used = now;
        }
        Some(Current {
            id: id.to_owned(),
            csrf: session.csrf.clone(),
        })
    }

    pub fn end(&self, id: &str) {
        self.map().remove(id);
    }

    pub fn push_flash(&self, id: &str, flash: Flash) {
        if let Some(session) = self.map().get_mut(id) {
            session.flash.push(flash);
        }
    }

    /// The waiting messages, removed: a one-time secret is gone once a page has shown it.
    pub fn take_flash(&self, id: &str) -> Vec<Flash> {
        self.map()
            .get_mut(id)
            .map(|s| std::mem::take(&mut s.flash))
            .unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        self.map().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn sessions_expire_when_idle_and_at_their_lifetime() {
        let sessions = Sessions::default();
        let a = sessions.start();
        assert!(sessions.touch(&a.id).is_some());
        tokio::time::advance(IDLE_TIMEOUT + Duration::from_secs(1)).await;
        assert!(sessions.touch(&a.id).is_none(), "idle session ended");

        let polled = sessions.start();
        for _ in 0..4 {
            tokio::time::advance(IDLE_TIMEOUT / 4 - Duration::from_secs(1)).await;
            assert!(sessions.get(&polled.id, false).is_some());
        }
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(
            sessions.get(&polled.id, false).is_none(),
            "background refreshes do not keep a session alive"
        );

        let b = sessions.start();
        for _ in 0..(MAX_LIFETIME.as_secs() / 600) {
            tokio::time::advance(Duration::from_secs(600)).await;
            let _ = sessions.touch(&b.id);
        }
        tokio::time::advance(Duration::from_secs(600)).await;
        assert!(sessions.touch(&b.id).is_none(), "busy session still ends");
    }

    #[tokio::test]
    async fn flash_is_shown_once_and_secrets_are_redacted_in_debug() {
        let sessions = Sessions::default();
        let s = sessions.start();
        sessions.push_flash(&s.id, Flash::GeneratedSecret("hunter2-but-longer".into()));
        let taken = sessions.take_flash(&s.id);
        assert_eq!(taken.len(), 1);
        assert!(!format!("{taken:?}").contains("hunter2"));
        assert!(sessions.take_flash(&s.id).is_empty());
    }

    #[test]
    fn tokens_are_256_bits_and_compared_exactly() {
        let t = random_token();
        assert_eq!(t.len(), 43);
        assert!(same_secret(&t, &t.clone()));
        assert!(!same_secret(&t, &random_token()));
        assert!(!same_secret(&t, &t[..42]));
    }
}
