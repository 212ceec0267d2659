//! The fleet as admins see it: listing and showing workers, creating one by hand, revoking and
//! removing one.

use std::collections::{HashMap, HashSet};

use muster_core::audit::Outcome;
use muster_core::credentials::generate_id;
use muster_core::worker::WorkerStatus;
use muster_core::{ApiKey, EnrolledVia, Labels, Name, Worker, WorkerId};
use muster_proto::ErrorCode;
use muster_proto::api::{CreateWorkerRequest, CreatedWorker, WorkerView};
use muster_proto::control::CloseCode;
use muster_store::Presence;
use muster_store::flows::workers::{self, CreateWorkerRefusal, WorkerRefusal};
use muster_store::{LabelMatch, StoredStatus, WorkerPage, WorkerPosition, WorkerSort};
use rand::rngs::OsRng;

use crate::error::AppError;
use crate::ops::Actor;
use crate::ops::cut::{self, Cut};
use crate::ops::page::{self, Cursor, Page};
use crate::state::AppState;
use crate::{validate, views};

/// Which workers a page lists. Every filter given must hold.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub status: Option<WorkerStatus>,
    pub labels: Vec<LabelMatch>,
    /// Only names containing this text.
    pub name: Option<String>,
}

/// The order of a page of workers: by name (the default), creation or last contact, either way
/// (`sort=created`, `sort=-last_seen`: a leading `-` for descending).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sort {
    pub by: WorkerSort,
    pub descending: bool,
}

impl Sort {
    /// Reads `sort` as a request gives it; empty means the default, anything unknown is refused.
    pub fn parse(given: Option<&str>) -> Result<Self, AppError> {
        match given.map(str::trim).filter(|s| !s.is_empty()) {
            None => Ok(Self::default()),
            Some(word) => Self::from_word(word).ok_or_else(|| {
                AppError::bad_request(
                    ErrorCode::BadRequest,
                    format!("unknown worker order `{}`", page::shown(word)),
                )
                .with_hint("sort by name, created or last_seen; a leading `-` sorts descending, like `-last_seen`")
            }),
        }
    }

    /// `name`, `-created`…: the word of [`Sort::parse`].
    pub fn from_word(word: &str) -> Option<Self> {
        let (descending, column) = match word.strip_prefix('-') {
            Some(column) => (true, column),
            None => (false, word),
        };
        let by = WorkerSort::ALL.into_iter().find(|s| s.as_str() == column)?;
        Some(Self { by, descending })
    }

    pub fn word(self) -> String {
        let sign = if self.descending { "-" } else { "" };
        format!("{sign}{}", self.by.as_str())
    }

    /// The same column the other way.
    pub fn reversed(self) -> Self {
        Self {
            descending: !self.descending,
            ..self
        }
    }

    /// Whether `w` comes after `after` in this order.
    fn is_past(self, w: &Worker, after: &WorkerPosition) -> bool {
        self.passes(&self.by.position_of(w), after)
    }

    /// Whether position `at` comes after `after` in this order.
    fn passes(self, at: &WorkerPosition, after: &WorkerPosition) -> bool {
        if self.descending {
            at < after
        } else {
            at > after
        }
    }
}

/// The most `label` filters one request may give.
pub const MAX_LABEL_FILTERS: usize = 16;

impl Filter {
    /// Reads the filters of `GET /api/v1/workers` (and the pages that share them): `status`,
    /// `label` (`k` or `k=v`, repeatable) and `name` (a substring). Empty values mean "any".
    pub fn parse<'a>(
        status: Option<&str>,
        labels: impl IntoIterator<Item = &'a str>,
        name: Option<&str>,
    ) -> Result<Self, AppError> {
        let status = match status.map(str::trim).filter(|s| !s.is_empty()) {
            None => None,
            Some(word) => Some(
                WorkerStatus::ALL
                    .into_iter()
                    .find(|s| s.as_str() == word)
                    .ok_or_else(|| {
                        AppError::bad_request(
                            ErrorCode::BadRequest,
                            format!("unknown worker status `{}`", page::shown(word)),
                        )
                        .with_hint(
                            "statuses are connected, disconnected, revoked, expired, suspended",
                        )
                    })?,
            ),
        };
        let mut matches = Vec::new();
        for given in labels.into_iter().map(str::trim).filter(|l| !l.is_empty()) {
            if matches.len() == MAX_LABEL_FILTERS {
                return Err(AppError::bad_request(
                    ErrorCode::BadRequest,
                    format!("more than {MAX_LABEL_FILTERS} `label` filters"),
                )
                .with_hint("a worker must carry every label given; narrow the list with fewer"));
            }
            let label = match given.split_once('=') {
                Some(_) => Labels::parse_pair(given).map(|(key, value)| LabelMatch {
                    key,
                    value: Some(value),
                }),
                None => Labels::check_key(given).map(|()| LabelMatch {
                    key: given.to_owned(),
                    value: None,
                }),
            }
            .map_err(|e| {
                AppError::bad_request(ErrorCode::InvalidLabel, e)
                    .with_hint("filter on a label with `key` or `key=value`, like `pool=gpu`")
            })?;
            matches.push(label);
        }
        let name = match name.map(str::trim).filter(|n| !n.is_empty()) {
            None => None,
            Some(n) if n.chars().count() <= muster_core::name::MAX_NAME_LEN => Some(n.to_owned()),
            Some(n) => {
                return Err(AppError::bad_request(
                    ErrorCode::InvalidName,
                    format!(
                        "`name` filter `{}` is longer than a name can be",
                        page::shown(n)
                    ),
                )
                .with_hint("names are at most 63 characters; give part of one"));
            }
        };
        Ok(Self {
            status,
            labels: matches,
            name,
        })
    }

    fn stored(&self) -> Option<StoredStatus> {
        self.status.map(|s| match s {
            WorkerStatus::Connected | WorkerStatus::Disconnected => StoredStatus::Live,
            WorkerStatus::Revoked => StoredStatus::Revoked,
            WorkerStatus::Expired => StoredStatus::Expired,
            WorkerStatus::Suspended => StoredStatus::Suspended,
        })
    }

    /// Whether a stored worker passes every filter (for rows not fetched through the store's
    /// filters: the connected workers, which only the registry knows).
    fn admits(&self, w: &Worker, status: WorkerStatus) -> bool {
        self.status.is_none_or(|s| s == status)
            && self
                .name
                .as_deref()
                .is_none_or(|n| w.name.as_str().contains(n))
            && self
                .labels
                .iter()
                .all(|l| match (w.labels.get(&l.key), &l.value) {
                    (Some(_), None) => true,
                    (Some(have), Some(want)) => have == want,
                    (None, _) => false,
                })
    }
}

/// One page of the fleet in the order `sort`: at most `limit` workers after `after` that pass
/// `filter`, with their live status (this replica's sessions and the store's presence rows, so
/// every replica answers the same).
///
/// Whether a worker is connected lives in the registry and the presence rows, not in its
/// record, so the two statuses that depend on it are found differently: `connected` is the
/// store's page of workers with a presence row, with this replica's sessions that have none yet
/// ([`connected`]); `disconnected` pages through the store's live workers and leaves out the
/// connected ones.
/// Every other filter is the store's, on an index.
pub async fn page(
    app: &AppState,
    filter: &Filter,
    sort: Sort,
    after: Option<WorkerPosition>,
    limit: u32,
) -> Result<Page<WorkerView>, AppError> {
    let now = app.clock.now();
    let want = limit as usize + 1;
    let mut found: Vec<Worker> = Vec::with_capacity(want);
    if filter.status == Some(WorkerStatus::Connected) {
        found = connected(app, filter, sort, after, limit).await?;
    } else {
        let disconnected_only = filter.status == Some(WorkerStatus::Disconnected);
        let mut query = WorkerPage {
            after,
            sort: sort.by,
            descending: sort.descending,
            name_contains: filter.name.clone(),
            labels: filter.labels.clone(),
            status: filter.stored(),
            present: false,
            now,
            limit: limit + 1,
        };
        loop {
            let q = query.clone();
            let (rows, elsewhere) = app
                .store
                .read(move |tx| {
                    let rows = tx.page_workers(&q)?;
                    let mut elsewhere = HashSet::new();
                    if disconnected_only {
                        for w in &rows {
                            if tx.presence_of(&w.id)?.is_some() {
                                elsewhere.insert(w.id.clone());
                            }
                        }
                    }
                    Ok((rows, elsewhere))
                })
                .await?;
            let last_page = rows.len() < want;
            query.after = rows.last().map(|w| sort.by.position_of(w));
            found.extend(rows.into_iter().filter(|w| {
                !disconnected_only
                    || !(app.registry.is_connected(&w.id) || elsewhere.contains(&w.id))
            }));
            if last_page || found.len() >= want {
                break;
            }
        }
    }
    let ids: Vec<WorkerId> = found.iter().take(want).map(|w| w.id.clone()).collect();
    let presence: HashMap<WorkerId, Presence> = app
        .store
        .read(move |tx| {
            let mut rows = HashMap::new();
            for id in ids {
                if let Some(row) = tx.presence_of(&id)? {
                    rows.insert(id, row);
                }
            }
            Ok(rows)
        })
        .await?;
    Ok(Page::cut(
        found,
        limit,
        |w| view(app, w, presence.get(&w.id), now),
        |w| Cursor::Worker(sort, sort.by.position_of(w)),
    ))
}

/// The connected workers of one page (`limit + 1` at most, for the cursor): the store's page of
/// workers with a presence row (one statement on the order's index, whatever the fleet's size),
/// and this replica's sessions that have none yet (their row is written just after the welcome;
/// a failed write leaves none), merged in order.
///
/// Only the sessions that could fall on this page are looked at in the name order (their names
/// are in the registry): past `after` and, when the store's page is full, not past its last row.
/// The other orders need the record's times, so every session of this replica is checked
/// against the presence rows, and only the records of those without a row are read. With few
/// connected workers in all ([`FEW`]), each is read by id instead.
async fn connected(
    app: &AppState,
    filter: &Filter,
    sort: Sort,
    after: Option<WorkerPosition>,
    limit: u32,
) -> Result<Vec<Worker>, AppError> {
    let want = limit as usize + 1;
    let now = app.clock.now();
    let query = WorkerPage {
        after: after.clone(),
        sort: sort.by,
        descending: sort.descending,
        name_contains: filter.name.clone(),
        labels: filter.labels.clone(),
        status: filter.stored(),
        present: true,
        now,
        limit: limit + 1,
    };
    let by_name = sort.by == WorkerSort::Name;
    let named = |name: &Name| WorkerPosition {
        key: 0,
        name: name.clone(),
    };
    let sessions: Vec<(WorkerId, Name)> = app
        .registry
        .all()
        .iter()
        .filter(|s| {
            !by_name
                || (after
                    .as_ref()
                    .is_none_or(|a| sort.passes(&named(&s.name), a))
                    && filter
                        .name
                        .as_deref()
                        .is_none_or(|n| s.name.as_str().contains(n)))
        })
        .map(|s| (s.worker_id.clone(), s.name.clone()))
        .collect();
    let (mut found, unrecorded) = app
        .store
        .read(move |tx| {
            // Few connected in a large fleet: walking the order's index for them would pass
            // over many others (100 among 100,000: ~70 ms), reading them by id is cheaper.
            if tx.count_present_elsewhere(NO_REPLICA, &[])? <= FEW {
                let mut ids: HashSet<WorkerId> =
                    tx.all_presence()?.into_iter().map(|p| p.worker).collect();
                ids.extend(sessions.into_iter().map(|(id, _)| id));
                let records = ids.iter().map(|id| tx.get_worker(id));
                return Ok((
                    Vec::new(),
                    records
                        .filter_map(Result::transpose)
                        .collect::<Result<_, _>>()?,
                ));
            }
            let rows = tx.page_workers(&query)?;
            let last = (by_name && rows.len() >= want)
                .then(|| rows.last().map(|w| sort.by.position_of(w)))
                .flatten();
            let maybe: Vec<WorkerId> = sessions
                .into_iter()
                .filter(|(_, name)| !last.as_ref().is_some_and(|l| sort.passes(&named(name), l)))
                .map(|(id, _)| id)
                .collect();
            // Many to check (the orders by time check every session): one statement for the
            // presence rows rather than a probe each.
            let present: Option<HashSet<WorkerId>> = if maybe.len() > FEW as usize {
                Some(tx.all_presence()?.into_iter().map(|p| p.worker).collect())
            } else {
                None
            };
            let mut unrecorded = Vec::new();
            for id in &maybe {
                let has_row = match &present {
                    Some(rows) => rows.contains(id),
                    None => tx.presence_of(id)?.is_some(),
                };
                if !has_row && let Some(w) = tx.get_worker(id)? {
                    unrecorded.push(w);
                }
            }
            Ok((rows, unrecorded))
        })
        .await?;
    found.extend(unrecorded.into_iter().filter(|w| {
        after.as_ref().is_none_or(|a| sort.is_past(w, a)) && filter.admits(w, w.status(true, now))
    }));
    found.sort_by_cached_key(|w| sort.by.position_of(w));
    if sort.descending {
        found.reverse();
    }
    found.truncate(want);
    Ok(found)
}

/// Up to this many connected workers (or sessions to check) are read (or checked) one by one.
/// Tests connect a handful: smaller there, so they take every path.
const FEW: u64 = if cfg!(test) { 4 } else { 512 };
/// No replica is named this: every presence row is "elsewhere" from it.
const NO_REPLICA: &str = "";

/// Every worker with its live status and stored record. Live status comes from this replica's
/// own sessions and, for workers other replicas hold, the store's presence rows: every replica
/// answers the same.
pub async fn list(app: &AppState) -> Result<Vec<WorkerView>, AppError> {
    let (workers, presence) = app
        .store
        .read(|tx| Ok((tx.list_workers()?, tx.all_presence()?)))
        .await?;
    let presence: HashMap<&WorkerId, &Presence> = presence.iter().map(|p| (&p.worker, p)).collect();
    let now = app.clock.now();
    Ok(workers
        .iter()
        .map(|w| view(app, w, presence.get(&w.id).copied(), now))
        .collect())
}

pub async fn show(app: &AppState, name: &str) -> Result<WorkerView, AppError> {
    let name = validate::name(name)?;
    let worker = find(app, &name)
        .await?
        .ok_or_else(|| no_such_worker(&name))?;
    let id = worker.id.clone();
    let presence = app.store.read(move |tx| tx.presence_of(&id)).await?;
    Ok(view(app, &worker, presence.as_ref(), app.clock.now()))
}

fn view(
    app: &AppState,
    worker: &Worker,
    presence: Option<&Presence>,
    now: muster_core::Timestamp,
) -> WorkerView {
    let session = app.registry.get(&worker.id);
    let live = views::Live::of(&worker.id, session.as_deref(), presence, app.jobs.replica());
    views::worker(worker, now, live)
}

/// The stored worker with this name, if there is one.
pub async fn find(app: &AppState, name: &Name) -> Result<Option<Worker>, AppError> {
    let key = name.clone();
    Ok(app
        .store
        .read(move |tx| tx.get_worker_by_name(&key))
        .await?)
}

pub fn no_such_worker(name: &Name) -> AppError {
    AppError::not_found(format!("no worker named `{name}`"))
        .with_hint("`muster workers list` shows the workers there are")
}

pub fn refusal(refusal: WorkerRefusal) -> AppError {
    match refusal {
        WorkerRefusal::NotFound(n) => no_such_worker(&n),
        WorkerRefusal::Builtin => AppError::conflict(
            ErrorCode::Conflict,
            "the built-in worker cannot be revoked or removed",
        )
        .with_hint("start the server with `--no-builtin-worker` to run without it"),
    }
}

/// Revokes a worker however it enrolled and, once that is on disk, closes its session.
pub async fn revoke(app: &AppState, actor: &Actor, name: &str) -> Result<WorkerView, AppError> {
    let name = validate::name(name)?;
    let now = app.clock.now();
    let event = app.audit_event(
        &actor.name,
        "worker.revoke",
        name.as_str(),
        actor.remote,
        Outcome::Ok,
        "revoked",
    );
    let key = name.clone();
    cut::write_then_cut(
        app,
        move |tx| workers::revoke(tx, &key, now, &event),
        |result| {
            let revoked = result.as_ref().ok()?;
            Some(Cut::new(
                revoked.id.clone(),
                CloseCode::Revoked,
                "the worker was revoked",
            ))
        },
    )
    .await?
    .map_err(refusal)?;
    show(app, name.as_str()).await
}

/// Creates a worker by hand and returns its API key, this once.
pub async fn create(
    app: &AppState,
    actor: &Actor,
    host: Option<&str>,
    req: &CreateWorkerRequest,
) -> Result<CreatedWorker, AppError> {
    let name = validate::name(&req.name)?;
    let labels = validate::labels(&req.labels)?;
    let key = ApiKey::generate(&mut OsRng);
    let now = app.clock.now();
    let id = WorkerId::parse(&generate_id(&mut OsRng)).map_err(AppError::internal)?;
    let worker = Worker {
        id: id.clone(),
        name: name.clone(),
        enrolled_via: EnrolledVia::Precreated,
        token_name: None,
        machine_id: None,
        labels,
        key_hash: key.hash(),
        created_at: now,
        expires_at: None,
        revoked_at: None,
        last_seen_at: None,
        identity: Default::default(),
    };
    let event = app.audit_event(
        &actor.name,
        "worker.create",
        name.as_str(),
        actor.remote,
        Outcome::Ok,
        format!("worker {id} created by hand"),
    );
    app.store
        .write(move |tx| workers::create(tx, &worker, now, Some(&event)))
        .await?
        .map_err(|r| match r {
            CreateWorkerRefusal::WorkerExists(_) | CreateWorkerRefusal::TokenExists(_) => {
                AppError::conflict(ErrorCode::NameInUse, r).with_hint("choose another name")
            }
        })?;
    Ok(CreatedWorker {
        worker_command: crate::ops::paste::precreated(app, host, id.as_str(), key.expose()),
        id: id.to_string(),
        name: name.to_string(),
        api_key: key.expose().to_owned(),
    })
}

/// Deletes a worker that is not connected, freeing its name. The built-in worker stays.
pub async fn remove(app: &AppState, actor: &Actor, name: &str) -> Result<(), AppError> {
    let name = validate::name(name)?;
    let found = find(app, &name).await?;
    // The built-in worker is always connected; "revoke it first" would be no advice for it.
    if found
        .as_ref()
        .is_some_and(|w| w.enrolled_via == EnrolledVia::Builtin)
    {
        return Err(refusal(workers::WorkerRefusal::Builtin));
    }
    let connected_elsewhere = match &found {
        Some(worker) => {
            let id = worker.id.clone();
            app.store
                .read(move |tx| tx.presence_of(&id))
                .await?
                .is_some()
        }
        None => false,
    };
    // Connected here, or to another replica.
    if let Some(worker) = found
        && (app.registry.is_connected(&worker.id) || connected_elsewhere)
    {
        return Err(AppError::conflict(
            ErrorCode::Conflict,
            format!("worker `{name}` is connected"),
        )
        .with_hint(format!(
            "revoke it first (`muster workers revoke {name}`), then remove it"
        )));
    }
    let event = app.audit_event(
        &actor.name,
        "worker.remove",
        name.as_str(),
        actor.remote,
        Outcome::Ok,
        "removed",
    );
    let key = name.clone();
    // It may have connected between the check and the delete: it has no record now.
    cut::write_then_cut(
        app,
        move |tx| workers::remove(tx, &key, &event),
        |result| {
            let id = result.as_ref().ok()?;
            Some(Cut::new(
                id.clone(),
                CloseCode::Removed,
                "the worker was removed",
            ))
        },
    )
    .await?
    .map_err(refusal)?;
    Ok(())
}
