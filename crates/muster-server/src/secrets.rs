//! Checking the auto-enrollment secret without letting Argon2 become the bottleneck.
//!
//! The secret is stored only as a slow Argon2id hash, so one check costs tens of milliseconds of
//! CPU on purpose. A fleet bootstrapping hundreds of workers presents the *same* secret hundreds
//! of times, so once a presentation has been verified the server remembers it — as a keyed
//! SHA-256 under a random per-process key, never the secret itself — together with which secret
//! (by `secret_set_at`) it matched. A rotation changes `secret_set_at`, so old entries stop
//! counting. Nothing about this touches what is stored on disk. Checks that do need Argon2 run
//! on the [`SlowHashPool`]'s few threads, so a burst of wrong guesses can neither starve the
//! rest nor make the server hold more memory.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use muster_core::Timestamp;
use muster_core::credentials::SlowHash;
use rand::RngCore;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use crate::ratelimit::FailureLimiter;
use crate::slow_hash::SlowHashPool;

/// Verified presentations kept; in practice there is one valid secret at a time.
const CACHE_ENTRIES: usize = 64;

/// What checking a presented secret found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Match,
    Mismatch,
    /// Not checked: the address has failed (or is trying) too often; try again after this.
    RateLimited(Duration),
}

pub struct SecretVerifier {
    key: [u8; 32],
    verified: Mutex<HashMap<[u8; 32], i64>>,
    permits: Semaphore,
    pool: SlowHashPool,
}

impl Default for SecretVerifier {
    fn default() -> Self {
        Self::new()
    }
}

impl SecretVerifier {
    pub fn new() -> Self {
        let mut key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        let pool = SlowHashPool::new();
        Self {
            key,
            verified: Mutex::new(HashMap::new()),
            permits: Semaphore::new(pool.threads()),
            pool,
        }
    }

    /// The server's Argon2 threads. Other slow checks (the web UI's password) run there too, so
    /// the memory and CPU all secret checks can take stay bounded together.
    pub fn pool(&self) -> &SlowHashPool {
        &self.pool
    }

    fn fingerprint(&self, presented: &str) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(self.key);
        hasher.update(presented.as_bytes());
        hasher.finalize().into()
    }

    /// Whether `presented` is the secret hashed in `stored` (set at `set_at`).
    pub async fn verify(&self, presented: &str, stored: &SlowHash, set_at: Timestamp) -> bool {
        self.verify_limited(presented, stored, set_at, None).await == Verdict::Match
    }

    /// [`SecretVerifier::verify`], with a slow check counted against `limit`'s address: it is
    /// reserved once this check holds a permit (presentations answered from memory, like a
    /// fleet's burst of the right secret, cost nothing) and a mismatch is recorded before the
    /// permit is given back, so concurrent guesses cannot outrun the limit.
    pub async fn verify_limited(
        &self,
        presented: &str,
        stored: &SlowHash,
        set_at: Timestamp,
        limit: Option<(&FailureLimiter, IpAddr)>,
    ) -> Verdict {
        let fingerprint = self.fingerprint(presented);
        if self.cached(&fingerprint) == Some(set_at.unix_millis()) {
            return Verdict::Match;
        }
        let Ok(_permit) = self.permits.acquire().await else {
            return Verdict::Mismatch;
        };
        // Someone may have verified the same secret while we waited for a permit.
        if self.cached(&fingerprint) == Some(set_at.unix_millis()) {
            return Verdict::Match;
        }
        let reservation = match limit.map(|(limiter, addr)| limiter.reserve(addr)) {
            Some(Err(wait)) => return Verdict::RateLimited(wait),
            Some(Ok(reservation)) => Some(reservation),
            None => None,
        };
        let ok = self.pool.verify(stored.clone(), presented.to_owned()).await;
        if let Some(reservation) = reservation {
            reservation.settle(!ok);
        }
        if !ok {
            return Verdict::Mismatch;
        }
        {
            let mut cache = self.verified.lock().unwrap_or_else(|e| e.into_inner());
            if cache.len() >= CACHE_ENTRIES {
                cache.clear();
            }
            cache.insert(fingerprint, set_at.unix_millis());
        }
        Verdict::Match
    }

    fn cached(&self, fingerprint: &[u8; 32]) -> Option<i64> {
        self.verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(fingerprint)
            .copied()
    }

    /// Forgets every verified presentation (after a rotation or disable).
    pub fn forget(&self) {
        self.verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::OsRng;

    #[tokio::test]
    async fn verifies_once_then_remembers_only_for_the_same_secret_generation() {
        let verifier = SecretVerifier::new();
        let secret = "correct horse battery staple, and then some more";
        let hash = SlowHash::create(secret, &mut OsRng);
        let set_at = Timestamp::from_unix_millis(1);
        assert!(
            !verifier
                .verify("wrong wrong wrong wrong wrong wrong", &hash, set_at)
                .await
        );
        assert!(verifier.verify(secret, &hash, set_at).await);
        let started = std::time::Instant::now();
        for _ in 0..1000 {
            assert!(verifier.verify(secret, &hash, set_at).await);
        }
        eprintln!("1000 cached verifications in {:?}", started.elapsed());
        // A rotated secret (new set_at) is not vouched for by the cache.
        let rotated = SlowHash::create("an entirely different secret of length", &mut OsRng);
        assert!(
            !verifier
                .verify(secret, &rotated, Timestamp::from_unix_millis(2))
                .await
        );
    }
}
