//! The closed sets of words on the wire: job states, worker statuses, token states, how a worker
//! enrolled, output streams, audit outcomes, editions and license states.
//!
//! Each is an enum that serializes as the same lowercase word the JSON has always carried, so
//! scripts see no change, and each has an `Unknown` variant that any word it does not know
//! deserializes to: a newer server may add a state, and an older client must still read the
//! rest of the answer. `as_str()` (and `Display`) give the word back, for tables.

use serde::{Deserialize, Serialize};

/// Defines a wire enum: the variants with their words, an `Unknown` catch-all, `as_str`,
/// `Display` and `KNOWN` (every variant but `Unknown`, in order).
macro_rules! wire_words {
    (
        $(#[$meta:meta])*
        $name:ident { $( $(#[$vmeta:meta])* $variant:ident => $word:literal, )+ }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $( $(#[$vmeta])* #[serde(rename = $word)] $variant, )+
            /// A word this build does not know (sent by a newer peer).
            #[serde(other, rename = "unknown")]
            Unknown,
        }

        impl $name {
            /// Every known value, in the order a person would list them.
            pub const KNOWN: &'static [$name] = &[$($name::$variant),+];

            /// The word on the wire.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $word,)+
                    $name::Unknown => "unknown",
                }
            }
        }

        // Written out rather than derived: the derive does not see the `rename` a macro passes.
        #[cfg(feature = "openapi")]
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::schema::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .enum_values(Some([$($word,)+ "unknown"]))
                    .into()
            }
        }

        #[cfg(feature = "openapi")]
        impl utoipa::ToSchema for $name {
            fn name() -> std::borrow::Cow<'static, str> {
                std::borrow::Cow::Borrowed(stringify!($name))
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

wire_words! {
    /// Where a job is in its life.
    JobState {
        Queued => "queued",
        Running => "running",
        Succeeded => "succeeded",
        Failed => "failed",
        Cancelled => "cancelled",
        Lost => "lost",
    }
}

impl JobState {
    /// Queued or running: the job may still produce output or change state.
    pub fn is_active(self) -> bool {
        matches!(self, JobState::Queued | JobState::Running)
    }
}

wire_words! {
    /// A worker's status, as the admin sees it.
    WorkerStatus {
        Connected => "connected",
        Disconnected => "disconnected",
        Revoked => "revoked",
        Expired => "expired",
        Suspended => "suspended",
    }
}

wire_words! {
    /// An enrollment token's effective state.
    TokenState {
        Unused => "unused",
        Enrolled => "enrolled",
        Expired => "expired",
        Revoked => "revoked",
    }
}

wire_words! {
    /// How a worker got its identity.
    EnrolledVia {
        Token => "token",
        Secret => "secret",
        Precreated => "precreated",
        Builtin => "builtin",
    }
}

wire_words! {
    /// Which of a job's output streams a piece of output came from.
    OutputStream {
        Stdout => "stdout",
        Stderr => "stderr",
    }
}

wire_words! {
    /// Whether an audited action was done or refused.
    AuditOutcome {
        Ok => "ok",
        Refused => "refused",
    }
}

wire_words! {
    /// What a server runs: without a license, Community Edition.
    Edition {
        Community => "community",
        Trial => "trial",
        Licensed => "licensed",
    }
}

wire_words! {
    /// Where a license (or the trial) is in its life.
    LicenseState {
        Valid => "valid",
        Expiring => "expiring",
        Grace => "grace",
        Expired => "expired",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json<T: Serialize>(value: T) -> String {
        serde_json::to_string(&value).unwrap()
    }

    #[test]
    fn each_serializes_as_its_word() {
        for state in JobState::KNOWN {
            assert_eq!(json(state), format!("\"{state}\""));
        }
        assert_eq!(json(JobState::Cancelled), "\"cancelled\"");
        assert_eq!(json(WorkerStatus::Disconnected), "\"disconnected\"");
        assert_eq!(json(TokenState::Unused), "\"unused\"");
        assert_eq!(json(EnrolledVia::Precreated), "\"precreated\"");
        assert_eq!(json(OutputStream::Stderr), "\"stderr\"");
        assert_eq!(json(AuditOutcome::Refused), "\"refused\"");
    }

    #[test]
    fn words_round_trip() {
        fn check<T>(known: &[T])
        where
            T: Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug + Copy,
        {
            for value in known {
                let back: T = serde_json::from_str(&json(*value)).unwrap();
                assert_eq!(back, *value);
            }
        }
        check(JobState::KNOWN);
        check(WorkerStatus::KNOWN);
        check(TokenState::KNOWN);
        check(EnrolledVia::KNOWN);
        check(OutputStream::KNOWN);
        check(AuditOutcome::KNOWN);
        check(Edition::KNOWN);
        check(LicenseState::KNOWN);
    }

    #[test]
    fn a_word_from_a_newer_server_reads_as_unknown() {
        let state: JobState = serde_json::from_str("\"paused\"").unwrap();
        assert_eq!(state, JobState::Unknown);
        let status: WorkerStatus = serde_json::from_str("\"hibernating\"").unwrap();
        assert_eq!(status, WorkerStatus::Unknown);
        assert_eq!(status.as_str(), "unknown");
        let stream: OutputStream = serde_json::from_str("\"stdlog\"").unwrap();
        assert_eq!(stream, OutputStream::Unknown);
    }
}
