//! Pages of a list: how many rows one holds, and the opaque cursor that names where the next one
//! starts. Lists are built for fleets of 100,000, so no list answers with everything at once.
//!
//! A cursor is the position of the last row of a page in the list's order (a keyset: a worker's
//! name; a token's creation time and name; a job's creation time and id; an audit record's
//! sequence number), encoded so callers treat it as a word and not a format. It carries no
//! filter: the filters travel beside it in the next page's URL (the `Link` header repeats them),
//! and a cursor used with other filters still means "after that row".

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use muster_core::job::JobId;
use muster_core::{Name, Timestamp};
use muster_proto::ErrorCode;

use muster_store::{WorkerPosition, WorkerSort};

use crate::error::AppError;
use crate::ops::workers::Sort;

/// Rows per page unless the caller asks for another count.
pub const DEFAULT_LIMIT: u32 = 500;
/// The most rows one page holds.
pub const MAX_LIMIT: u32 = 5_000;
/// The longest cursor this server gives out is far shorter; anything longer is not one of ours.
const MAX_CURSOR_LEN: usize = 256;

/// One page of a list, and where the next one starts (`None`: this was the last).
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<Cursor>,
}

impl<T> Page<T> {
    /// The page of `limit` from `rows`, fetched one past the limit to tell whether there is a
    /// next page: the cursor is then the position of the page's last row.
    pub fn cut<R>(
        mut rows: Vec<R>,
        limit: u32,
        view: impl Fn(&R) -> T,
        key: impl Fn(&R) -> Cursor,
    ) -> Self {
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        Self {
            next: if more { rows.last().map(&key) } else { None },
            items: rows.iter().map(view).collect(),
        }
    }
}

/// Where a page starts: after this row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cursor {
    /// A worker's position in the order it was listed in (which a page must be asked in again).
    Worker(Sort, WorkerPosition),
    Token(Timestamp, Name),
    Job(Timestamp, JobId),
    Audit(i64),
}

impl Cursor {
    fn kind(&self) -> &'static str {
        match self {
            Cursor::Worker(..) => "workers",
            Cursor::Token(..) => "tokens",
            Cursor::Job(..) => "jobs",
            Cursor::Audit(_) => "audit",
        }
    }

    /// The opaque word a client passes back as `cursor`.
    pub fn encode(&self) -> String {
        let plain = match self {
            // Name order ascending keeps the first form, so cursors given out before sorting
            // existed still work.
            Cursor::Worker(sort, at) if *sort == Sort::default() => format!("w1:{}", at.name),
            Cursor::Worker(sort, at) => format!("w2:{}:{}:{}", sort.word(), at.key, at.name),
            Cursor::Token(at, name) => format!("t1:{}:{name}", at.unix_millis()),
            Cursor::Job(at, id) => format!("j1:{}:{id}", at.unix_millis()),
            Cursor::Audit(seq) => format!("a1:{seq}"),
        };
        URL_SAFE_NO_PAD.encode(plain)
    }

    /// Reads a cursor given back by a client, for the list `like` names (its kind, any value).
    pub fn decode(input: &str, like: CursorKind) -> Result<Self, AppError> {
        let bad = || {
            AppError::bad_request(
                ErrorCode::BadRequest,
                format!("`cursor` is not one the {} list gave out", like.list()),
            )
            .with_hint(
                "follow the `Link: <…>; rel=\"next\"` header, or start again without `cursor`",
            )
        };
        if input.len() > MAX_CURSOR_LEN {
            return Err(bad());
        }
        let plain = URL_SAFE_NO_PAD.decode(input).map_err(|_| bad())?;
        let plain = String::from_utf8(plain).map_err(|_| bad())?;
        let (tag, rest) = plain.split_once(':').ok_or_else(bad)?;
        let at = |ms: &str| ms.parse::<i64>().ok().map(Timestamp::from_unix_millis);
        let cursor = match (tag, like) {
            ("w1", CursorKind::Worker) => Cursor::Worker(
                Sort::default(),
                WorkerPosition {
                    key: 0,
                    name: Name::parse(rest).map_err(|_| bad())?,
                },
            ),
            ("w2", CursorKind::Worker) => {
                let mut parts = rest.splitn(3, ':');
                let (Some(sort), Some(key), Some(name)) =
                    (parts.next(), parts.next(), parts.next())
                else {
                    return Err(bad());
                };
                let sort = Sort::from_word(sort).ok_or_else(bad)?;
                let key = key.parse::<i64>().map_err(|_| bad())?;
                if sort.by == WorkerSort::Name && key != 0 {
                    return Err(bad());
                }
                Cursor::Worker(
                    sort,
                    WorkerPosition {
                        key,
                        name: Name::parse(name).map_err(|_| bad())?,
                    },
                )
            }
            ("t1", CursorKind::Token) => {
                let (ms, name) = rest.split_once(':').ok_or_else(bad)?;
                Cursor::Token(
                    at(ms).ok_or_else(bad)?,
                    Name::parse(name).map_err(|_| bad())?,
                )
            }
            ("j1", CursorKind::Job) => {
                let (ms, id) = rest.split_once(':').ok_or_else(bad)?;
                Cursor::Job(
                    at(ms).ok_or_else(bad)?,
                    JobId::parse(id).map_err(|_| bad())?,
                )
            }
            ("a1", CursorKind::Audit) => Cursor::Audit(rest.parse().map_err(|_| bad())?),
            _ => return Err(bad()),
        };
        debug_assert_eq!(cursor.kind(), like.list());
        Ok(cursor)
    }
}

/// Which way a list runs: its own order (workers by name, tokens oldest first, jobs and audit
/// newest first) or the reverse. A cursor means "after this row" in the order it was given in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Order {
    #[default]
    Forward,
    Reverse,
}

/// Which list a cursor belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CursorKind {
    Worker,
    Token,
    Job,
    Audit,
}

impl CursorKind {
    fn list(self) -> &'static str {
        match self {
            CursorKind::Worker => "workers",
            CursorKind::Token => "tokens",
            CursorKind::Job => "jobs",
            CursorKind::Audit => "audit",
        }
    }
}

/// The page size a caller asked for: [`DEFAULT_LIMIT`] when none, refused outside
/// `1..=`[`MAX_LIMIT`] (a silent clamp would leave a script believing it read everything).
pub fn limit(given: Option<&str>) -> Result<u32, AppError> {
    let Some(given) = given.filter(|g| !g.is_empty()) else {
        return Ok(DEFAULT_LIMIT);
    };
    match given.parse::<u32>() {
        Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        _ => Err(AppError::bad_request(
            ErrorCode::BadRequest,
            format!("`limit` must be a whole number from 1 to {MAX_LIMIT}, not `{}`", crate::ops::page::shown(given)),
        )
        .with_hint(format!(
            "ask for at most {MAX_LIMIT} rows and follow the `Link: <…>; rel=\"next\"` header for the rest"
        ))),
    }
}

/// A caller's text, short and printable, for an error message.
pub fn shown(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(32)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if text.chars().count() > 32 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_stay_in_their_list() {
        let cases = [
            (
                Cursor::Worker(
                    Sort::default(),
                    WorkerPosition {
                        key: 0,
                        name: Name::parse("w-01").unwrap(),
                    },
                ),
                CursorKind::Worker,
            ),
            (
                Cursor::Worker(
                    Sort {
                        by: WorkerSort::LastSeen,
                        descending: true,
                    },
                    WorkerPosition {
                        key: -5,
                        name: Name::parse("w-02").unwrap(),
                    },
                ),
                CursorKind::Worker,
            ),
            (
                Cursor::Token(Timestamp::from_unix_millis(7), Name::parse("t_1").unwrap()),
                CursorKind::Token,
            ),
            (
                Cursor::Job(
                    Timestamp::from_unix_millis(-1),
                    JobId::parse("00000000000000a1").unwrap(),
                ),
                CursorKind::Job,
            ),
            (Cursor::Audit(42), CursorKind::Audit),
        ];
        for (cursor, kind) in &cases {
            let word = cursor.encode();
            assert_eq!(&Cursor::decode(&word, *kind).unwrap(), cursor);
            for (_, other) in cases.iter().filter(|(_, k)| k != kind) {
                assert!(
                    Cursor::decode(&word, *other).is_err(),
                    "{word} is not a {other:?} cursor"
                );
            }
        }
        for junk in ["", "!!", "dzE6", &"a".repeat(300), "dzE6QUJD"] {
            assert!(Cursor::decode(junk, CursorKind::Worker).is_err(), "{junk}");
        }
    }

    #[test]
    fn limits_are_refused_outside_their_bounds() {
        assert_eq!(limit(None).unwrap(), DEFAULT_LIMIT);
        assert_eq!(limit(Some("1")).unwrap(), 1);
        assert_eq!(limit(Some("5000")).unwrap(), 5000);
        for bad in ["0", "5001", "-1", "ten", "99999999999"] {
            let err = limit(Some(bad)).unwrap_err();
            assert!(err.message.contains("from 1 to 5000"), "{}", err.message);
        }
    }
}
