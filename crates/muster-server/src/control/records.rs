//! Group commit for what sessions record: a channel opened or closed, a ticket saved
//! (`muster_store::flows::sessions`), written as [`super::group`] describes. One group at a
//! time: a record never holds up a worker's welcome, so there is no hurry, and the database's
//! connections are left to admissions.

use muster_store::flows::sessions::{self, SessionRecord};
use muster_store::{StoreResult, Tx};

use super::group::{Batch, Grouped};

/// Session records; [`Grouped::write`] answers, for a saved ticket, whether it was confirmed,
/// otherwise `true`.
pub type Records = Grouped<SessionRecords>;

pub struct SessionRecords;

impl Batch for SessionRecords {
    type Item = SessionRecord;
    type Answer = bool;
    const MAX_GROUP: usize = 512;
    const IN_FLIGHT: usize = 1;

    fn write(tx: &mut dyn Tx, items: &[SessionRecord]) -> StoreResult<Vec<bool>> {
        sessions::write(tx, items)
    }
}
