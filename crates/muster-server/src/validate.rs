//! Input validation shared by the operations: each failure becomes a 400 naming the rule.

use std::collections::BTreeMap;
use std::time::Duration;

use muster_core::{Labels, Name};
use muster_proto::ErrorCode;

use crate::error::AppError;

pub fn name(input: &str) -> Result<Name, AppError> {
    Name::parse(input).map_err(|e| {
        AppError::bad_request(ErrorCode::InvalidName, e)
            .with_hint("names look like `ingest-01`: lowercase a-z, 0-9, `-` and `_`")
    })
}

pub fn duration(input: &str) -> Result<Duration, AppError> {
    muster_core::parse_duration(input).map_err(|e| {
        AppError::bad_request(ErrorCode::InvalidDuration, e)
            .with_hint("give a positive duration with a unit, like `24h` or `1h30m`")
    })
}

pub fn labels(map: &BTreeMap<String, String>) -> Result<Labels, AppError> {
    Labels::from_pairs(map.clone()).map_err(|e| {
        AppError::bad_request(ErrorCode::InvalidLabel, e)
            .with_hint("labels are `key=value`, like `region=eu`")
    })
}
