//! Pages of lists: keyset paging that visits every row once in a stable order, and each filter
//! (a worker's labels, name, status; a token's effective state; a job's state) answered the same
//! by every backend.

use muster_core::job::{Job, JobId, Selector};
use muster_core::{Labels, Name, Token, TokenState, Worker};

use super::{at, audit, name, precreated};
use crate::tx::{JobFilter, LabelMatch, Presence, StoredStatus, TokenPage, WorkerPage, WorkerSort};
use crate::{Store, flows};

fn labelled(worker_name: &str, labels: &str) -> Worker {
    let mut w = precreated(worker_name);
    w.labels = Labels::parse_list(labels).expect("labels");
    w
}

fn page(limit: u32) -> WorkerPage {
    WorkerPage {
        after: None,
        sort: WorkerSort::Name,
        descending: false,
        name_contains: None,
        labels: Vec::new(),
        status: None,
        present: false,
        now: at(1_000),
        limit,
    }
}

fn label(key: &str, value: Option<&str>) -> LabelMatch {
    LabelMatch {
        key: key.into(),
        value: value.map(Into::into),
    }
}

async fn insert_all(store: &Store, workers: &[Worker]) {
    let stored = workers.to_vec();
    store
        .write(move |tx| {
            for w in &stored {
                tx.insert_worker(w)?;
            }
            Ok(())
        })
        .await
        .expect("insert");
}

/// Every worker the query matches, walking the pages `limit` at a time.
async fn walk(store: &Store, mut query: WorkerPage) -> Vec<String> {
    let mut names = Vec::new();
    loop {
        let q = query.clone();
        let page = store
            .read(move |tx| tx.page_workers(&q))
            .await
            .expect("page");
        assert!(
            page.len() <= query.limit as usize,
            "a page holds at most its limit"
        );
        names.extend(page.iter().map(|w| w.name.to_string()));
        if page.len() < query.limit as usize {
            return names;
        }
        query.after = page.last().map(|w| query.sort.position_of(w));
    }
}

pub async fn workers_page_in_name_order_with_every_filter(store: Store) {
    let mut workers = Vec::new();
    for i in 0..23 {
        let labels = match i % 3 {
            0 => "pool=gpu,zone=eu",
            1 => "pool=cpu,zone=eu",
            _ => "pool=cpu",
        };
        let mut w = labelled(&format!("w{i:02}"), labels);
        if i == 4 {
            w.revoked_at = Some(at(10));
        }
        if i == 5 {
            w.identity.suspended_at = Some(at(10));
        }
        if i == 6 {
            w.expires_at = Some(at(500));
        }
        if i == 7 {
            w.expires_at = Some(at(5_000));
        }
        workers.push(w);
    }
    insert_all(&store, &workers).await;
    let all: Vec<String> = workers.iter().map(|w| w.name.to_string()).collect();

    // Any page size visits every worker once, in name order.
    for limit in [1, 4, 23, 100] {
        assert_eq!(walk(&store, page(limit)).await, all, "limit {limit}");
    }

    let names = |pick: &dyn Fn(usize) -> bool| -> Vec<String> {
        (0..23)
            .filter(|i| pick(*i))
            .map(|i| format!("w{i:02}"))
            .collect()
    };
    let mut q = page(4);
    q.labels = vec![label("pool", Some("gpu"))];
    assert_eq!(walk(&store, q.clone()).await, names(&|i| i % 3 == 0));
    q.labels = vec![label("zone", None)];
    assert_eq!(walk(&store, q.clone()).await, names(&|i| i % 3 != 2));
    q.labels = vec![label("zone", None), label("pool", Some("cpu"))];
    assert_eq!(walk(&store, q.clone()).await, names(&|i| i % 3 == 1));
    q.labels = vec![label("pool", Some("tpu"))];
    assert!(walk(&store, q.clone()).await.is_empty());

    let mut q = page(2);
    q.name_contains = Some("w1".into());
    assert_eq!(
        walk(&store, q.clone()).await,
        names(&|i| (10..20).contains(&i))
    );
    q.name_contains = Some("_".into());
    assert!(
        walk(&store, q).await.is_empty(),
        "`_` is text, not a pattern"
    );

    let by_status = |status| {
        let mut q = page(3);
        q.status = Some(status);
        walk(&store, q)
    };
    assert_eq!(by_status(StoredStatus::Revoked).await, ["w04"]);
    assert_eq!(by_status(StoredStatus::Suspended).await, ["w05"]);
    assert_eq!(by_status(StoredStatus::Expired).await, ["w06"]);
    assert_eq!(
        by_status(StoredStatus::Live).await,
        names(&|i| ![4, 5, 6].contains(&i))
    );

    // The label filter follows every write of labels, and a removed worker leaves no trace.
    let (w00, w01) = (workers[0].id.clone(), workers[1].id.clone());
    store
        .write(move |tx| {
            tx.set_worker_labels(&w01, &Labels::parse_list("pool=gpu").expect("labels"))?;
            tx.delete_worker(&w00)
        })
        .await
        .expect("write");
    let mut q = page(50);
    q.labels = vec![label("pool", Some("gpu"))];
    let gpu = walk(&store, q.clone()).await;
    assert_eq!(gpu[..2], ["w01".to_owned(), "w03".to_owned()]);
    q.labels = vec![label("zone", Some("eu")), label("pool", Some("gpu"))];
    assert_eq!(
        walk(&store, q).await,
        names(&|i| i % 3 == 0 && i != 0),
        "w01 lost its zone label"
    );
}

/// Every order (name, creation, last contact; either way) visits each worker once at any page
/// size, ties on the column broken by the name and never-seen workers as the oldest, with a
/// filter too; and a worker seen again moves in the last-contact order.
pub async fn workers_page_in_every_order_either_way(store: Store) {
    let mut workers = Vec::new();
    for i in 0..17_i64 {
        let mut w = labelled(
            &format!("w{i:02}"),
            if i % 2 == 0 { "pool=gpu" } else { "" },
        );
        // Creation instants with ties, not in name order.
        w.created_at = at((i * 7) % 5);
        // Some never seen, some seen at the same instant.
        w.last_seen_at = match i % 4 {
            0 => None,
            1 => Some(at(50)),
            _ => Some(at(100 - i)),
        };
        workers.push(w);
    }
    insert_all(&store, &workers).await;
    for sort in WorkerSort::ALL {
        for descending in [false, true] {
            let mut expected: Vec<&Worker> = workers.iter().collect();
            expected.sort_by_key(|w| sort.position_of(w));
            if descending {
                expected.reverse();
            }
            let expected: Vec<String> = expected.iter().map(|w| w.name.to_string()).collect();
            for limit in [1, 3, 17, 50] {
                let mut q = page(limit);
                q.sort = sort;
                q.descending = descending;
                assert_eq!(
                    walk(&store, q).await,
                    expected,
                    "{sort:?} descending {descending} limit {limit}"
                );
            }
            let mut q = page(2);
            q.sort = sort;
            q.descending = descending;
            q.labels = vec![label("pool", Some("gpu"))];
            let gpu: Vec<String> = expected
                .iter()
                .filter(|n| n[1..].parse::<i64>().is_ok_and(|i| i % 2 == 0))
                .cloned()
                .collect();
            assert_eq!(walk(&store, q).await, gpu, "{sort:?} with a filter");
        }
    }
    connected_workers_page_in_every_order(&store, &workers).await;
    // Seen now, w00 (never seen) leads the newest-first order of last contact.
    let w00 = workers[0].id.clone();
    store
        .write(move |tx| tx.touch_worker(&w00, at(1_000)))
        .await
        .expect("touch");
    let mut q = page(1);
    q.sort = WorkerSort::LastSeen;
    q.descending = true;
    assert_eq!(walk(&store, q).await[0], "w00");
}

/// Only workers with a presence row (held by any replica), in every order, with a filter, and
/// none of them lost or repeated across pages; a row dropped takes its worker off the list.
async fn connected_workers_page_in_every_order(store: &Store, workers: &[Worker]) {
    let held: Vec<(muster_core::WorkerId, &str)> = workers
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 3 != 1)
        .map(|(i, w)| {
            (
                w.id.clone(),
                if i % 2 == 0 { "replica-a" } else { "replica-b" },
            )
        })
        .collect();
    let rows: Vec<Presence> = held
        .iter()
        .zip(1..)
        .map(|((worker, replica), conn_id)| Presence {
            worker: worker.clone(),
            replica: (*replica).to_owned(),
            conn_id,
            connected_at: at(1),
            running: 0,
            slots: 1,
            remote_addr: None,
        })
        .collect();
    store
        .write(move |tx| rows.iter().try_for_each(|p| tx.put_presence(p)))
        .await
        .expect("presence");
    let is_held =
        |w: &Worker, held: &[(muster_core::WorkerId, &str)]| held.iter().any(|(id, _)| *id == w.id);
    for sort in WorkerSort::ALL {
        for descending in [false, true] {
            let mut expected: Vec<&Worker> = workers.iter().filter(|w| is_held(w, &held)).collect();
            expected.sort_by_key(|w| sort.position_of(w));
            if descending {
                expected.reverse();
            }
            for limit in [1, 4, 50] {
                let mut q = page(limit);
                q.sort = sort;
                q.descending = descending;
                q.present = true;
                q.status = Some(StoredStatus::Live);
                let names: Vec<String> = expected.iter().map(|w| w.name.to_string()).collect();
                assert_eq!(
                    walk(store, q.clone()).await,
                    names,
                    "{sort:?} {descending} {limit}"
                );
                q.labels = vec![label("pool", Some("gpu"))];
                let gpu: Vec<String> = expected
                    .iter()
                    .filter(|w| w.labels.get("pool").is_some_and(|p| p == "gpu"))
                    .map(|w| w.name.to_string())
                    .collect();
                assert_eq!(walk(store, q).await, gpu, "{sort:?} {descending} gpu");
            }
        }
    }
    let (gone, replica) = held[0].clone();
    let replica = replica.to_owned();
    store
        .write(move |tx| tx.drop_presence(&gone, &replica, 1))
        .await
        .expect("drop");
    let mut q = page(3);
    q.present = true;
    let names = walk(store, q).await;
    assert_eq!(names.len(), held.len() - 1);
    assert!(!names.contains(&workers[0].name.to_string()), "{names:?}");
}

async fn add_token(store: &Store, token_name: &str, created: i64, lifetime: u64) {
    let token = Token::new(
        name(token_name),
        muster_core::SecretHash::of(token_name),
        Labels::new(),
        at(created),
        std::time::Duration::from_millis(lifetime),
    );
    let ev = audit("token.create", token_name);
    store
        .write(move |tx| flows::tokens::create(tx, &token, &ev))
        .await
        .expect("store")
        .expect("created");
}

pub async fn tokens_page_oldest_first_by_effective_state(store: Store) {
    // Several tokens share a creation instant: the name orders them.
    for (n, created, lifetime) in [
        ("t-c", 0, 100_000),
        ("t-a", 0, 100_000),
        ("t-b", 0, 10),
        ("t-d", 5, 100_000),
        ("t-e", 7, 100_000),
    ] {
        add_token(&store, n, created, lifetime).await;
    }
    store
        .write(|tx| {
            tx.bind_token(
                &name("t-d"),
                &muster_core::MachineId::parse("machine-d").expect("machine"),
                at(8),
            )?;
            tx.revoke_token(&name("t-e"), at(9))
        })
        .await
        .expect("write");
    let walk_in = |reverse: bool, state: Option<TokenState>, limit: u32| {
        let store = store.clone();
        async move {
            let mut query = TokenPage {
                reverse,
                after: None,
                state,
                now: at(1_000),
                limit,
            };
            let mut names = Vec::new();
            loop {
                let q = query.clone();
                let page = store
                    .read(move |tx| tx.page_tokens(&q))
                    .await
                    .expect("page");
                names.extend(page.iter().map(|t| t.name.to_string()));
                if page.len() < limit as usize {
                    return names;
                }
                query.after = page.last().map(|t| (t.created_at, t.name.clone()));
            }
        }
    };
    let walk = |state: Option<TokenState>, limit: u32| walk_in(false, state, limit);
    for limit in [1, 2, 5, 10] {
        assert_eq!(
            walk(None, limit).await,
            ["t-a", "t-b", "t-c", "t-d", "t-e"],
            "limit {limit}"
        );
        assert_eq!(
            walk_in(true, None, limit).await,
            ["t-e", "t-d", "t-c", "t-b", "t-a"],
            "newest first, limit {limit}"
        );
    }
    assert_eq!(walk(Some(TokenState::Unused), 1).await, ["t-a", "t-c"]);
    assert_eq!(walk(Some(TokenState::Expired), 1).await, ["t-b"]);
    assert_eq!(walk(Some(TokenState::Enrolled), 1).await, ["t-d"]);
    assert_eq!(walk(Some(TokenState::Revoked), 1).await, ["t-e"]);
}

pub async fn jobs_page_newest_first_past_ties(store: Store) {
    let ids = ["00000000000000c1", "00000000000000c2", "00000000000000c3"];
    for (i, id) in ids.iter().enumerate() {
        // Two jobs submitted in the same millisecond: the id breaks the tie.
        let created = if i < 2 { 5 } else { 9 };
        let job = Job::queued(
            JobId::parse(id).expect("id"),
            vec!["true".into()],
            Selector {
                worker: Some(Name::parse("w").expect("name")),
                labels: Labels::new(),
            },
            at(created),
            at(created + 600_000),
        );
        let ev = audit("job.submit", id);
        store
            .write(move |tx| flows::jobs::submit(tx, &job, &ev))
            .await
            .expect("submitted");
    }
    let mut filter = JobFilter {
        limit: 1,
        ..Default::default()
    };
    let mut seen = Vec::new();
    loop {
        let f = filter.clone();
        let page = store.read(move |tx| tx.list_jobs(&f)).await.expect("page");
        let Some(last) = page.last() else { break };
        filter.before = Some((last.created_at, last.id.clone()));
        seen.extend(page.iter().map(|j| j.id.to_string()));
    }
    assert_eq!(
        seen,
        ["00000000000000c3", "00000000000000c2", "00000000000000c1"]
    );
    filter.before = None;
    filter.limit = 10;
    filter.state = Some(muster_core::job::JobState::Queued);
    let f = filter.clone();
    assert_eq!(
        store
            .read(move |tx| tx.list_jobs(&f))
            .await
            .expect("list")
            .len(),
        3
    );
    filter.state = Some(muster_core::job::JobState::Running);
    assert!(
        store
            .read(move |tx| tx.list_jobs(&filter))
            .await
            .expect("list")
            .is_empty()
    );
}

pub async fn fleet_overview_counts_statuses_labels_and_hours(store: Store) {
    const HOUR: i64 = 3_600_000;
    let mut workers = vec![
        labelled("ok", "pool=gpu"),
        labelled("gone", "pool=gpu"),
        labelled("paused", "pool=cpu"),
        labelled("late", ""),
    ];
    for w in &mut workers {
        w.created_at = at(0);
    }
    workers[1].created_at = at(2 * HOUR);
    workers[1].revoked_at = Some(at(3 * HOUR));
    workers[2].identity.suspended_at = Some(at(HOUR));
    workers[3].expires_at = Some(at(4 * HOUR));
    store
        .write(move |tx| {
            for w in &workers {
                tx.insert_worker(w)?;
            }
            Ok(())
        })
        .await
        .expect("insert");
    // Six hours up to now: the oldest hour starts an hour before the first worker.
    let o = store
        .read(|tx| tx.fleet_overview(at(5 * HOUR), 6))
        .await
        .expect("overview");
    assert_eq!((o.total, o.revoked, o.suspended, o.expired), (4, 1, 1, 1));
    assert_eq!(
        o.labels,
        [("pool=gpu".to_owned(), 2), ("pool=cpu".to_owned(), 1)]
    );
    assert_eq!(o.enrolled, [0, 3, 0, 1, 0, 0]);
    assert_eq!(o.cut_off, [0, 0, 0, 0, 1, 1]);
    // Nothing falls outside the window, however short.
    let o = store
        .read(|tx| tx.fleet_overview(at(5 * HOUR), 1))
        .await
        .expect("overview");
    assert_eq!((o.enrolled.len(), o.cut_off.iter().sum::<u64>()), (1, 1));
}
