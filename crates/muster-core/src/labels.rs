//! Labels: `key=value` pairs attached to tokens and workers, used to place jobs.

use std::collections::BTreeMap;

use crate::name::shorten;

pub const MAX_KEY_LEN: usize = 128;
pub const MAX_VALUE_LEN: usize = 255;
/// A worker with more labels than this is almost certainly a misconfiguration; the bound also
/// keeps one worker record from growing without limit.
pub const MAX_LABELS: usize = 64;

/// A validated set of labels, ordered by key so that output and storage are deterministic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Labels(BTreeMap<String, String>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    #[error("label `{0}` is not of the form key=value")]
    MissingEquals(String),
    #[error("label key must not be empty (in `{0}`)")]
    EmptyKey(String),
    #[error("label key `{0}` is longer than 128 characters")]
    KeyTooLong(String),
    #[error(
        "label key `{key}` contains `{bad}`; keys use only lowercase a-z, 0-9, `-`, `_`, `.` and `/`"
    )]
    BadKeyCharacter { key: String, bad: char },
    #[error("label key `{0}` must start with a lowercase letter or a digit")]
    BadKeyStart(String),
    #[error("value of label `{0}` is longer than 255 characters")]
    ValueTooLong(String),
    #[error("value of label `{0}` contains a control character; values must be printable")]
    ValueNotPrintable(String),
    #[error("label `{0}` is given twice")]
    Duplicate(String),
    #[error("more than 64 labels given")]
    TooMany,
    #[error(
        "{count} labels once the worker's own and the enrolled ones are combined, more than 64"
    )]
    TooManyCombined { count: usize },
}

fn is_key_char(c: char) -> bool {
    crate::name::is_name_char(c) || c == '.' || c == '/'
}

fn validate_key(key: &str, whole: &str) -> Result<(), LabelError> {
    if key.is_empty() {
        return Err(LabelError::EmptyKey(shorten(whole)));
    }
    if key.chars().count() > MAX_KEY_LEN {
        return Err(LabelError::KeyTooLong(shorten(key)));
    }
    if let Some(bad) = key.chars().find(|c| !is_key_char(*c)) {
        return Err(LabelError::BadKeyCharacter {
            key: shorten(key),
            bad,
        });
    }
    let first = key.as_bytes()[0];
    if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
        return Err(LabelError::BadKeyStart(key.to_owned()));
    }
    Ok(())
}

fn validate_value(key: &str, value: &str) -> Result<(), LabelError> {
    if value.chars().count() > MAX_VALUE_LEN {
        return Err(LabelError::ValueTooLong(key.to_owned()));
    }
    if value.chars().any(char::is_control) {
        return Err(LabelError::ValueNotPrintable(key.to_owned()));
    }
    Ok(())
}

impl Labels {
    /// Checks a label key alone (a filter on the key, whatever its value).
    pub fn check_key(key: &str) -> Result<(), LabelError> {
        validate_key(key, key)
    }

    pub fn new() -> Self {
        Self::default()
    }

    /// Parses one `key=value` argument.
    pub fn parse_pair(input: &str) -> Result<(String, String), LabelError> {
        let (key, value) = input
            .split_once('=')
            .ok_or_else(|| LabelError::MissingEquals(shorten(input)))?;
        validate_key(key, input)?;
        validate_value(key, value)?;
        Ok((key.to_owned(), value.to_owned()))
    }

    /// Parses repeated `--label key=value` arguments. A key given twice is an error rather than a
    /// silent overwrite: one of the two values would otherwise be lost without a word.
    pub fn parse_all<'a>(inputs: impl IntoIterator<Item = &'a str>) -> Result<Self, LabelError> {
        let mut labels = Labels::new();
        for input in inputs {
            let (key, value) = Self::parse_pair(input)?;
            labels.insert(key, value)?;
        }
        Ok(labels)
    }

    /// Parses the comma-separated form used by `MUSTER_WORKER_LABELS` (`k=v,k=v`). Values given
    /// this way cannot contain a comma.
    pub fn parse_list(input: &str) -> Result<Self, LabelError> {
        Self::parse_all(input.split(',').map(str::trim).filter(|s| !s.is_empty()))
    }

    /// Builds labels from stored or received pairs, validating each one.
    pub fn from_pairs(
        pairs: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, LabelError> {
        let mut labels = Labels::new();
        for (key, value) in pairs {
            validate_key(&key, &key)?;
            validate_value(&key, &value)?;
            labels.insert(key, value)?;
        }
        Ok(labels)
    }

    fn insert(&mut self, key: String, value: String) -> Result<(), LabelError> {
        if self.0.contains_key(&key) {
            return Err(LabelError::Duplicate(key));
        }
        if self.0.len() >= MAX_LABELS {
            return Err(LabelError::TooMany);
        }
        self.0.insert(key, value);
        Ok(())
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// True when every label in `selector` is present here with the same value: the rule used
    /// to place a job on a worker.
    pub fn is_superset_of(&self, selector: &Labels) -> bool {
        selector.iter().all(|(k, v)| self.get(k) == Some(v))
    }

    /// These labels with `overrides` laid over them. Used where an admin's labels (on a token)
    /// must win over the ones a worker asserts about itself. Refused when the result would hold
    /// more than [`MAX_LABELS`]: a record over the limit could not be read back.
    pub fn merged_with(&self, overrides: &Labels) -> Result<Labels, LabelError> {
        let mut merged = self.0.clone();
        for (k, v) in overrides.iter() {
            merged.insert(k.to_owned(), v.to_owned());
        }
        if merged.len() > MAX_LABELS {
            return Err(LabelError::TooManyCombined {
                count: merged.len(),
            });
        }
        Ok(Labels(merged))
    }

    pub fn as_map(&self) -> &BTreeMap<String, String> {
        &self.0
    }

    pub fn into_map(self) -> BTreeMap<String, String> {
        self.0
    }
}

impl std::fmt::Display for Labels {
    /// `k=v,k=v`, the same form `MUSTER_WORKER_LABELS` takes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut first = true;
        for (k, v) in self.iter() {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            write!(f, "{k}={v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pairs_and_lists() {
        let labels = Labels::parse_all(["region=us-east", "kubernetes.io/arch=amd64"]).unwrap();
        assert_eq!(labels.get("region"), Some("us-east"));
        assert_eq!(labels.get("kubernetes.io/arch"), Some("amd64"));
        let list = Labels::parse_list("a=1, b=two words ,").unwrap();
        assert_eq!(list.get("b"), Some("two words"));
        assert_eq!(list.to_string(), "a=1,b=two words");
    }

    #[test]
    fn refuses_bad_labels_naming_the_rule() {
        assert!(matches!(
            Labels::parse_pair("novalue"),
            Err(LabelError::MissingEquals(_))
        ));
        assert!(matches!(
            Labels::parse_pair("=v"),
            Err(LabelError::EmptyKey(_))
        ));
        assert!(matches!(
            Labels::parse_pair("Key=v"),
            Err(LabelError::BadKeyCharacter { bad: 'K', .. })
        ));
        assert!(matches!(
            Labels::parse_pair(".k=v"),
            Err(LabelError::BadKeyStart(_))
        ));
        assert!(matches!(
            Labels::parse_pair(&format!("k={}", "x".repeat(256))),
            Err(LabelError::ValueTooLong(_))
        ));
        assert!(matches!(
            Labels::parse_pair("k=a\nb"),
            Err(LabelError::ValueNotPrintable(_))
        ));
        assert!(matches!(
            Labels::parse_all(["k=1", "k=2"]),
            Err(LabelError::Duplicate(_))
        ));
    }

    fn numbered(prefix: &str, n: usize) -> Labels {
        Labels::parse_all(
            (0..n)
                .map(|i| format!("{prefix}{i}=v"))
                .collect::<Vec<_>>()
                .iter()
                .map(String::as_str),
        )
        .unwrap()
    }

    #[test]
    fn merging_keeps_the_overrides_and_never_passes_the_limit() {
        let worker = Labels::parse_list("region=us,gpu=yes").unwrap();
        let token = Labels::parse_list("region=eu").unwrap();
        let merged = worker.merged_with(&token).unwrap();
        assert_eq!(merged.to_string(), "gpu=yes,region=eu");
        // 40 on a token and 30 on a worker: no malice, still over the limit.
        assert_eq!(
            numbered("w", 30).merged_with(&numbered("t", 40)),
            Err(LabelError::TooManyCombined { count: 70 })
        );
        // Exactly at the limit is fine, and shared keys count once.
        assert_eq!(
            numbered("k", 64)
                .merged_with(&numbered("k", 64))
                .unwrap()
                .len(),
            64
        );
        assert!(numbered("a", 63).merged_with(&numbered("b", 1)).is_ok());
        assert!(numbered("a", 64).merged_with(&numbered("b", 1)).is_err());
    }

    #[test]
    fn superset_matching() {
        let worker = Labels::parse_list("region=eu,gpu=yes").unwrap();
        assert!(worker.is_superset_of(&Labels::parse_list("gpu=yes").unwrap()));
        assert!(worker.is_superset_of(&Labels::new()));
        assert!(!worker.is_superset_of(&Labels::parse_list("gpu=no").unwrap()));
        assert!(!worker.is_superset_of(&Labels::parse_list("zone=a").unwrap()));
    }
}
