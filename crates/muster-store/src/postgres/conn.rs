//! Connecting to PostgreSQL: the parsed connection string, the optional schema every connection
//! works in, and what each backend thread keeps per connection.

use std::collections::HashMap;
use std::time::Duration;

use postgres::{Client, NoTls, Statement};

use crate::error::{StoreError, StoreResult, with_causes};

/// Used when the connection string sets no `connect_timeout`. Without one, a server that drops
/// packets would hold a backend thread (and the work queued behind it) for the kernel's TCP
/// timeout, minutes, before the work could fail.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How to open one more connection. Shared by every backend thread, so a thread whose connection
/// broke can open a new one the same way.
pub(super) struct Connector {
    config: postgres::Config,
    schema: Option<String>,
}

impl Connector {
    pub(super) fn new(url: &str, schema: Option<&str>) -> StoreResult<Self> {
        // The parse error names the option that is wrong, never its value, so a password in
        // the string is not echoed.
        let mut config: postgres::Config = url.parse().map_err(|e: postgres::Error| {
            // The error's own text is "invalid connection string"; its cause says what is wrong.
            let what = match std::error::Error::source(&e) {
                Some(cause) => with_causes(cause),
                None => e.to_string(),
            };
            StoreError::Backend(format!("invalid PostgreSQL connection string: {what}"))
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            // Lets an operator tell muster's sessions apart in `pg_stat_activity`.
            config.application_name("muster");
        }
        let schema = schema.map(validate_schema).transpose()?;
        Ok(Self { config, schema })
    }

    /// The schema the store's tables live in, when one was chosen, already quoted for SQL.
    pub(super) fn quoted_schema(&self) -> Option<String> {
        self.schema.as_deref().map(quote_ident)
    }

    /// Opens a connection. Must run on a plain thread: the synchronous client drives its own
    /// runtime and panics if called from inside an async one.
    pub(super) fn connect(&self) -> StoreResult<Conn> {
        let mut client = self.config.connect(NoTls)?;
        if let Some(schema) = self.quoted_schema() {
            // Set per session, not per transaction, so every statement on this connection (and
            // the cached plans) resolves table names in the chosen schema. Setting a schema that
            // does not exist yet is allowed; migrations create it.
            client.batch_execute(&format!("SET search_path TO {schema}"))?;
        }
        Ok(Conn {
            client,
            statements: HashMap::new(),
            events_channel: self.events_channel(),
        })
    }

    /// The LISTEN/NOTIFY channel for replica events: one per schema, so stores sharing a
    /// database (tests, several fleets) do not hear each other.
    pub(super) fn events_channel(&self) -> String {
        match &self.schema {
            Some(schema) => format!("muster_events_{schema}"),
            None => "muster_events".to_owned(),
        }
    }
}

/// One connection and the statements prepared on it. Prepared statements belong to the session,
/// so the cache lives and dies with the connection.
pub(super) struct Conn {
    pub(super) client: Client,
    pub(super) statements: HashMap<String, Statement>,
    pub(super) events_channel: String,
}

/// Accepts only plain lower-case identifiers, so a schema name can never carry SQL and never
/// needs PostgreSQL's case-folding rules to be understood.
fn validate_schema(schema: &str) -> StoreResult<String> {
    let mut chars = schema.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    // PostgreSQL truncates identifiers beyond 63 bytes, which would silently merge two names.
    if first_ok && rest_ok && schema.len() <= 63 {
        Ok(schema.to_owned())
    } else {
        Err(StoreError::Backend(format!(
            "invalid schema name `{schema}`: use 1-63 characters of a-z, 0-9 and _, not starting with a digit"
        )))
    }
}

fn quote_ident(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_plain_identifiers() {
        assert!(validate_schema("muster_test_1").is_ok());
        assert!(validate_schema("_x").is_ok());
        for bad in [
            "",
            "1abc",
            "Muster",
            "a-b",
            "a\"b",
            "a;drop",
            &"a".repeat(64),
        ] {
            assert!(validate_schema(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn a_bad_connection_string_is_an_error_without_the_string() {
        let Err(StoreError::Backend(msg)) =
            Connector::new("postgres://u:s3cret@h:notaport/db", None)
        else {
            panic!("must be refused");
        };
        assert!(!msg.contains("s3cret"), "{msg}");
    }
}
