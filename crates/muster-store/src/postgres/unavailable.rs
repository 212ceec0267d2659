//! A [`Tx`] for when there is no database connection to run a job on.
//!
//! A [`Job`](crate::Job) can only reach its caller by being run. Dropping it instead would tell
//! the caller "the store is closed", which is false and sends an operator looking in the wrong
//! place. So the backend runs the job against this stand-in. Every call fails with the connection
//! error, nothing is written, and the job is then delivered with that same error.

use muster_core::audit::{AuditEvent, AuditRecord};
use muster_core::job::{Job, JobId, JobState};
use muster_core::{
    EnrolledVia, Labels, MachineId, Name, SecretHash, Timestamp, Token, Worker, WorkerId,
};

use crate::error::{StoreError, StoreResult};
use crate::tx::{AuditFilter, JobEnd, JobFilter, OutputChunk, Tx};

pub(super) struct Unavailable(pub(super) StoreError);

impl Unavailable {
    fn fail<T>(&self) -> StoreResult<T> {
        Err(self.0.clone())
    }
}

impl Tx for Unavailable {
    fn insert_token(&mut self, _: &Token) -> StoreResult<()> {
        self.fail()
    }
    fn get_token(&mut self, _: &Name) -> StoreResult<Option<Token>> {
        self.fail()
    }
    fn list_tokens(&mut self) -> StoreResult<Vec<Token>> {
        self.fail()
    }
    fn bind_token(&mut self, _: &Name, _: &MachineId, _: Timestamp) -> StoreResult<bool> {
        self.fail()
    }
    fn revoke_token(&mut self, _: &Name, _: Timestamp) -> StoreResult<bool> {
        self.fail()
    }
    fn insert_worker(&mut self, _: &Worker) -> StoreResult<()> {
        self.fail()
    }
    fn get_worker(&mut self, _: &WorkerId) -> StoreResult<Option<Worker>> {
        self.fail()
    }
    fn get_worker_by_name(&mut self, _: &Name) -> StoreResult<Option<Worker>> {
        self.fail()
    }
    fn get_worker_by_token(&mut self, _: &Name) -> StoreResult<Option<Worker>> {
        self.fail()
    }
    fn list_workers(&mut self) -> StoreResult<Vec<Worker>> {
        self.fail()
    }
    fn set_worker_key(&mut self, _: &WorkerId, _: &SecretHash) -> StoreResult<bool> {
        self.fail()
    }
    fn set_worker_labels(&mut self, _: &WorkerId, _: &Labels) -> StoreResult<bool> {
        self.fail()
    }
    fn bind_worker_machine(&mut self, _: &WorkerId, _: &MachineId) -> StoreResult<bool> {
        self.fail()
    }
    fn revoke_worker(&mut self, _: &WorkerId, _: Timestamp) -> StoreResult<bool> {
        self.fail()
    }
    fn delete_worker(&mut self, _: &WorkerId) -> StoreResult<bool> {
        self.fail()
    }
    fn touch_worker(&mut self, _: &WorkerId, _: Timestamp) -> StoreResult<()> {
        self.fail()
    }
    fn insert_audit(&mut self, _: &AuditEvent) -> StoreResult<()> {
        self.fail()
    }
    fn list_audit(&mut self, _: &AuditFilter) -> StoreResult<Vec<AuditRecord>> {
        self.fail()
    }
    fn get_setting(&mut self, _: &str) -> StoreResult<Option<String>> {
        self.fail()
    }
    fn put_setting(&mut self, _: &str, _: &str) -> StoreResult<()> {
        self.fail()
    }
    fn notify(&mut self, _: &str) -> StoreResult<()> {
        self.fail()
    }
    fn count_workers(&mut self, _: EnrolledVia, _: Option<Timestamp>) -> StoreResult<u64> {
        self.fail()
    }
    fn insert_job(&mut self, _: &Job) -> StoreResult<()> {
        self.fail()
    }
    fn get_job(&mut self, _: &JobId) -> StoreResult<Option<Job>> {
        self.fail()
    }
    fn list_jobs(&mut self, _: &JobFilter) -> StoreResult<Vec<Job>> {
        self.fail()
    }
    fn jobs_in_state(&mut self, _: JobState) -> StoreResult<Vec<Job>> {
        self.fail()
    }
    fn start_job(
        &mut self,
        _: &JobId,
        _: &WorkerId,
        _: &Name,
        _: &str,
        _: Timestamp,
    ) -> StoreResult<bool> {
        self.fail()
    }
    fn end_job(&mut self, _: &JobId, _: JobState, _: &JobEnd) -> StoreResult<bool> {
        self.fail()
    }
    fn append_output(&mut self, _: &JobId, _: u64, _: u8, _: &[u8]) -> StoreResult<()> {
        self.fail()
    }
    fn set_output_stats(&mut self, _: &JobId, _: u64, _: bool) -> StoreResult<()> {
        self.fail()
    }
    fn read_output(&mut self, _: &JobId, _: u64, _: u32) -> StoreResult<Vec<OutputChunk>> {
        self.fail()
    }
}
