//! PostgreSQL for the replica benchmark: a fresh database per run (dropped at the end), a check
//! that the server accepts the connections R replicas hold, and which PostgreSQL processes work
//! for the run (to add up their CPU time).

use std::collections::HashMap;

use anyhow::{Context, bail};
use muster_store::postgres::{CONNECTIONS_PER_STORE, POOL_SIZE};
use tokio_postgres::{Client, NoTls};

/// An admin connection to the PostgreSQL server (to its maintenance database, never the run's).
pub struct Postgres {
    client: Client,
    url: String,
    task: tokio::task::JoinHandle<()>,
}

/// How many more connections the PostgreSQL server takes.
#[derive(Debug, Clone, Copy)]
pub struct Capacity {
    pub max_connections: usize,
    pub reserved: usize,
    pub in_use: usize,
}

impl Capacity {
    pub fn free(&self) -> usize {
        self.max_connections
            .saturating_sub(self.reserved)
            .saturating_sub(self.in_use)
    }

    /// Refuses, saying what to change, when `replicas` would not all get their connections.
    pub fn check(&self, replicas: usize) -> anyhow::Result<()> {
        let needed = replicas * CONNECTIONS_PER_STORE;
        if needed <= self.free() {
            return Ok(());
        }
        bail!(
            "PostgreSQL takes {} more connections (max_connections {}, {} reserved for superusers, \
             {} in use) but {replicas} replicas hold {needed} ({CONNECTIONS_PER_STORE} each: a pool \
             of {POOL_SIZE}, one for the lease and one listening for the others); raise max_connections to at least {} \
             (`ALTER SYSTEM SET max_connections = …` and restart PostgreSQL), stop what holds the \
             others, or run fewer replicas",
            self.free(),
            self.max_connections,
            self.reserved,
            self.in_use,
            self.reserved + self.in_use + needed,
        )
    }
}

impl Postgres {
    /// Connects to `url` (a `postgres://` URL naming the maintenance database, usually
    /// `postgres`).
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        database_url(url, "check")?;
        let (client, connection) = tokio_postgres::connect(url, NoTls).await.with_context(|| {
            "PostgreSQL is not reachable with `--postgres` (default postgres://postgres@127.0.0.1:5432/postgres); \
             start it (`pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`) or pass \
             the URL of one that trusts this user"
        })?;
        let task = tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Self {
            client,
            url: url.to_owned(),
            task,
        })
    }

    pub async fn capacity(&self) -> anyhow::Result<Capacity> {
        let setting = |name: &'static str| async move {
            let row = self
                .client
                .query_one(
                    "SELECT setting::int FROM pg_settings WHERE name = $1",
                    &[&name],
                )
                .await
                .with_context(|| format!("cannot read PostgreSQL's `{name}`"))?;
            anyhow::Ok(usize::try_from(row.get::<_, i32>(0)).unwrap_or(0))
        };
        let in_use: i64 = self
            .client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'",
                &[],
            )
            .await?
            .get(0);
        // `in_use` counts this connection, the only one the benchmark holds.
        Ok(Capacity {
            max_connections: setting("max_connections").await?,
            reserved: setting("superuser_reserved_connections").await?,
            in_use: usize::try_from(in_use).unwrap_or(0),
        })
    }

    /// Creates the database `name` (a fresh one per run); returns the URL the replicas use.
    pub async fn create_database(&self, name: &str) -> anyhow::Result<String> {
        check_name(name)?;
        self.client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .with_context(|| format!("cannot create database `{name}`"))?;
        database_url(&self.url, name)
    }

    /// Drops the database `name`, closing what is still connected to it.
    pub async fn drop_database(&self, name: &str) -> anyhow::Result<()> {
        check_name(name)?;
        self.client
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await
            .with_context(|| format!("cannot drop database `{name}`"))
    }

    /// Connections open to database `name` now.
    pub async fn connections(&self, name: &str) -> anyhow::Result<usize> {
        let n: i64 = self
            .client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1",
                &[&name],
            )
            .await?
            .get(0);
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// The PostgreSQL processes working for database `name`: its connections' backends and the
    /// server's shared background processes (WAL writer, checkpointer, autovacuum…), which work
    /// for every database.
    pub async fn serving_pids(&self, name: &str) -> anyhow::Result<Vec<u32>> {
        let rows = self
            .client
            .query(
                "SELECT pid FROM pg_stat_activity
                 WHERE datname = $1 OR backend_type <> 'client backend'",
                &[&name],
            )
            .await?;
        Ok(rows
            .iter()
            .filter_map(|r| u32::try_from(r.get::<_, i32>(0)).ok())
            .collect())
    }

    /// CPU seconds used so far by each process serving database `name`.
    pub async fn cpu(&self, name: &str) -> anyhow::Result<CpuSnapshot> {
        let pids = self.serving_pids(name).await?;
        Ok(CpuSnapshot(
            pids.into_iter()
                .filter_map(|p| crate::sys::cpu_seconds(p).map(|s| (p, s)))
                .collect(),
        ))
    }

    pub async fn close(self) {
        drop(self.client);
        let _ = self.task.await;
    }
}

/// CPU seconds per process at one instant.
#[derive(Debug, Clone, Default)]
pub struct CpuSnapshot(HashMap<u32, f64>);

impl CpuSnapshot {
    /// CPU seconds the processes of `self` used since `before`. A process that started in
    /// between counts whole; one that ended in between is missed (its time is gone with it).
    pub fn since(&self, before: &CpuSnapshot) -> f64 {
        self.0
            .iter()
            .map(|(pid, now)| now - before.0.get(pid).copied().unwrap_or(0.0))
            .filter(|d| *d > 0.0)
            .sum()
    }
}

/// `url` with its database replaced by `name`.
fn database_url(url: &str, name: &str) -> anyhow::Result<String> {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority_at = base
        .find("://")
        .filter(|_| base.starts_with("postgres://") || base.starts_with("postgresql://"))
        .map(|i| i + 3)
        .with_context(
            || "`--postgres` must be a URL, like postgres://postgres@127.0.0.1:5432/postgres",
        )?;
    let authority_end = base[authority_at..]
        .find('/')
        .map_or(base.len(), |i| authority_at + i);
    let mut out = format!("{}/{name}", &base[..authority_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    Ok(out)
}

/// Database names are made here, never taken from elsewhere; this keeps the SQL they are
/// spliced into safe anyway.
fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        bail!("`{name}` is not a database name the benchmark makes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_of_a_url_is_replaced() {
        assert_eq!(
            database_url(
                "postgres://postgres@127.0.0.1:5432/postgres",
                "muster_bench_1"
            )
            .unwrap(),
            "postgres://postgres@127.0.0.1:5432/muster_bench_1"
        );
        assert_eq!(
            database_url("postgresql://u:p@db:5433?connect_timeout=5", "b").unwrap(),
            "postgresql://u:p@db:5433/b?connect_timeout=5"
        );
        assert!(database_url("host=127.0.0.1 user=postgres", "b").is_err());
    }

    #[test]
    fn capacity_counts_the_replicas_connections() {
        // Exactly five replicas' connections free: five fit, six do not.
        let in_use = 97 - 5 * CONNECTIONS_PER_STORE;
        let c = Capacity {
            max_connections: 100,
            reserved: 3,
            in_use,
        };
        assert_eq!(c.free(), 5 * CONNECTIONS_PER_STORE);
        assert!(c.check(5).is_ok());
        let err = c.check(6).unwrap_err().to_string();
        let six = 6 * CONNECTIONS_PER_STORE;
        assert!(err.contains(&format!("6 replicas hold {six}")), "{err}");
        let least = six + 3 + in_use;
        assert!(
            err.contains(&format!("max_connections to at least {least}")),
            "{err}"
        );
    }

    #[test]
    fn only_made_names_are_spliced_into_sql() {
        assert!(check_name("muster_bench_20261130t1915").is_ok());
        assert!(check_name("x; DROP DATABASE postgres").is_err());
        assert!(check_name("1abc").is_err());
    }

    #[test]
    fn cpu_since_counts_new_processes_whole() {
        let before = CpuSnapshot([(1, 1.0), (2, 5.0)].into());
        let after = CpuSnapshot([(1, 1.5), (3, 0.25)].into());
        assert!((after.since(&before) - 0.75).abs() < 1e-9);
    }
}
