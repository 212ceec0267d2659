//! Group commit for admissions (`muster_store::flows::identity::open_sessions`): in a reconnect
//! storm, the admissions that arrive together share one transaction and one commit, each in a
//! savepoint, instead of costing PostgreSQL a transaction each. An admission is still committed
//! before its worker is answered: the worker's ticket ledger, which clone detection judges,
//! never runs ahead of what the database holds.

use muster_store::flows::identity::{self, Connection, GroupedOpen};
use muster_store::{StoreResult, Tx};

use super::group::{Batch, Grouped};

pub type Admissions = Grouped<AdmissionBatch>;

pub struct AdmissionBatch;

impl Batch for AdmissionBatch {
    type Item = Connection;
    type Answer = GroupedOpen;
    /// PostgreSQL keeps at most 64 subtransactions of a transaction in shared memory (each
    /// admission that writes is one, its savepoint); past that every other session's snapshot
    /// must look them up on disk (`pg_subtrans`), which would slow the whole database for as long
    /// as the group runs. A group of 64 also keeps the first admission's wait short.
    const MAX_GROUP: usize = 64;
    /// Several groups at once, on as many of the pool's connections (eight): one group's round
    /// trips do not hold up the next, and the others stay free for the rest of the server.
    const IN_FLIGHT: usize = 3;

    fn write(tx: &mut dyn Tx, items: &[Connection]) -> StoreResult<Vec<GroupedOpen>> {
        identity::open_sessions(tx, items)
    }
}
