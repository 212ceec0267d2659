//! [`SqliteTx`]: one transaction (or, on the writer, one savepoint) on a backend thread's
//! connection, and the queries every primitive in `tx.rs` runs through.

use rusqlite::{Connection, Row};

use crate::error::{StoreError, StoreResult};
use crate::rows::{Column, ColumnSource};

pub struct SqliteTx<'c> {
    pub(super) conn: &'c Connection,
}

impl<'c> SqliteTx<'c> {
    pub fn new(conn: &'c Connection) -> Self {
        Self { conn }
    }

    /// Runs a query and decodes every row it returns with `decode`.
    pub(super) fn rows<T>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        decode: impl Fn(&Row<'_>) -> StoreResult<T>,
    ) -> StoreResult<Vec<T>> {
        let mut statement = self.conn.prepare_cached(sql)?;
        let mut rows = statement.query(params)?;
        let mut decoded = Vec::new();
        while let Some(row) = rows.next()? {
            decoded.push(decode(row)?);
        }
        Ok(decoded)
    }

    /// Runs a query and decodes its first row, if any, with `decode`.
    pub(super) fn first_row<T>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        decode: impl Fn(&Row<'_>) -> StoreResult<T>,
    ) -> StoreResult<Option<T>> {
        let mut statement = self.conn.prepare_cached(sql)?;
        let mut rows = statement.query(params)?;
        rows.next()?.map(decode).transpose()
    }
}

impl ColumnSource for Row<'_> {
    fn column<T: Column>(&self, i: usize) -> StoreResult<T> {
        self.get(i)
            .map_err(|e| StoreError::Corrupt(format!("column {i}: {e}")))
    }
}
