//! Paged lists: `limit`, filters, opaque cursors and the `Link` header on `GET /api/v1/workers`,
//! `/tokens`, `/jobs` and `/audit`; their refusals; compressed answers.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::json;

use super::Api;

/// The target of a `Link: <…>; rel="next"` header.
fn next(link: Option<&str>) -> Option<String> {
    let link = link?;
    assert!(link.ends_with(r#">; rel="next""#), "{link}");
    Some(link.trim_start_matches('<').split('>').next()?.to_owned())
}

/// Every row of a list, following its pages from `first`, and how many pages it took.
async fn walk(api: &Api, first: &str, key: &str) -> (Vec<String>, usize) {
    let mut rows = Vec::new();
    let mut pages = 0;
    let mut url = Some(first.to_owned());
    while let Some(u) = url {
        let reply = api.get(&u).await.expect(StatusCode::OK);
        pages += 1;
        rows.extend(
            reply
                .body
                .as_array()
                .expect("a page is a JSON array")
                .iter()
                .map(|r| {
                    r[key]
                        .as_str()
                        .map_or_else(|| r[key].to_string(), str::to_owned)
                }),
        );
        url = next(reply.link.as_deref());
        assert!(pages < 100, "the pages never end");
    }
    (rows, pages)
}

async fn fleet(api: &Api) {
    for (name, pool) in [
        ("w-a", "gpu"),
        ("w-b", "cpu"),
        ("w-c", "gpu"),
        ("x-d", "cpu"),
        ("w-e", "gpu"),
    ] {
        api.post(
            "/api/v1/workers",
            json!({"name": name, "labels": {"pool": pool}}),
        )
        .await
        .expect(StatusCode::CREATED);
    }
}

#[tokio::test]
async fn workers_page_by_name_with_a_link_to_the_next_page_that_keeps_the_filters() {
    let api = Api::new();
    fleet(&api).await;
    let (names, pages) = walk(&api, "/api/v1/workers?limit=2", "name").await;
    assert_eq!(names, ["w-a", "w-b", "w-c", "w-e", "x-d"]);
    assert_eq!(pages, 3);
    // An exact fit names no empty page after it.
    assert_eq!(walk(&api, "/api/v1/workers?limit=5", "name").await.1, 1);

    let first = api
        .get("/api/v1/workers?limit=1&label=pool%3Dgpu&name=w-")
        .await
        .expect(StatusCode::OK);
    let link = next(first.link.as_deref()).expect("a next page");
    assert!(link.starts_with("/api/v1/workers?"), "{link}");
    assert!(
        link.contains("label=pool%3Dgpu") && link.contains("name=w-") && link.contains("limit=1"),
        "{link}"
    );
    let (gpu, _) = walk(&api, "/api/v1/workers?limit=1&label=pool%3Dgpu", "name").await;
    assert_eq!(gpu, ["w-a", "w-c", "w-e"]);
    let (with_pool, _) = walk(&api, "/api/v1/workers?label=pool&name=-", "name").await;
    assert_eq!(with_pool.len(), 5);
    let (both, _) = walk(&api, "/api/v1/workers?label=pool%3Dcpu&label=pool", "name").await;
    assert_eq!(both, ["w-b", "x-d"]);
    let (x, _) = walk(&api, "/api/v1/workers?name=x", "name").await;
    assert_eq!(x, ["x-d"]);
}

#[tokio::test]
async fn workers_sort_by_name_creation_or_last_contact_either_way_and_page_in_that_order() {
    let api = Api::new();
    fleet(&api).await;
    let (names, _) = walk(&api, "/api/v1/workers?sort=-name&limit=2", "name").await;
    assert_eq!(names, ["x-d", "w-e", "w-c", "w-b", "w-a"]);
    // The same order the store gives: creation time (several may share a millisecond), then
    // the name.
    let all = api.get("/api/v1/workers").await.expect(StatusCode::OK);
    let mut by_created: Vec<(String, String)> = all
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            let at = muster_core::Timestamp::parse_rfc3339(w["created_at"].as_str().unwrap())
                .unwrap()
                .unix_millis();
            (format!("{at:020}"), w["name"].as_str().unwrap().to_owned())
        })
        .collect();
    by_created.sort();
    let oldest_first: Vec<String> = by_created.into_iter().map(|(_, n)| n).collect();
    let (created, pages) = walk(&api, "/api/v1/workers?sort=created&limit=2", "name").await;
    assert_eq!(created, oldest_first);
    assert_eq!(pages, 3);
    let (newest, _) = walk(&api, "/api/v1/workers?sort=-created&limit=3", "name").await;
    assert_eq!(
        newest,
        oldest_first.iter().rev().cloned().collect::<Vec<_>>()
    );
    // None was ever seen: last contact ties, and the name decides.
    let (seen, _) = walk(&api, "/api/v1/workers?sort=last_seen&limit=1", "name").await;
    assert_eq!(seen, ["w-a", "w-b", "w-c", "w-e", "x-d"]);

    // Connected workers (found from the registry, not the store) sort the same way.
    for w in all.body.as_array().unwrap() {
        let name = w["name"].as_str().unwrap();
        if ["w-b", "w-e", "x-d"].contains(&name) {
            let id = muster_core::WorkerId::parse(w["id"].as_str().unwrap()).unwrap();
            api.connect(&id, name, 1);
        }
    }
    let (on, _) = walk(
        &api,
        "/api/v1/workers?status=connected&sort=-name&limit=1",
        "name",
    )
    .await;
    assert_eq!(on, ["x-d", "w-e", "w-b"]);

    // A cursor belongs to its order, and an order must be one of the three.
    let first = api
        .get("/api/v1/workers?sort=-created&limit=1")
        .await
        .expect(StatusCode::OK);
    let link = next(first.link.as_deref()).expect("a next page");
    assert!(
        link.contains("sort=-created"),
        "the link keeps the order: {link}"
    );
    let cursor = link
        .split("cursor=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    api.get(&format!("/api/v1/workers?cursor={cursor}"))
        .await
        .refused(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "`cursor` belongs to the list sorted by `-created`, not `name`",
        );
    let reply = api.get("/api/v1/workers?sort=status").await.refused(
        StatusCode::BAD_REQUEST,
        "bad_request",
        "unknown worker order `status`",
    );
    assert!(reply.hint().contains("last_seen"), "{}", reply.hint());
}

#[tokio::test]
async fn connected_and_disconnected_come_from_the_registry() {
    let api = Api::new();
    fleet(&api).await;
    let listed = api.get("/api/v1/workers").await.expect(StatusCode::OK);
    for w in listed.body.as_array().unwrap() {
        let name = w["name"].as_str().unwrap();
        if ["w-b", "w-e", "x-d"].contains(&name) {
            let id = muster_core::WorkerId::parse(w["id"].as_str().unwrap()).unwrap();
            api.connect(&id, name, 1);
        }
    }
    let (on, pages) = walk(&api, "/api/v1/workers?status=connected&limit=1", "name").await;
    assert_eq!(on, ["w-b", "w-e", "x-d"]);
    assert_eq!(pages, 3);
    let (on_gpu, _) = walk(
        &api,
        "/api/v1/workers?status=connected&label=pool%3Dgpu",
        "name",
    )
    .await;
    assert_eq!(on_gpu, ["w-e"]);
    let (off, _) = walk(&api, "/api/v1/workers?status=disconnected&limit=1", "name").await;
    assert_eq!(off, ["w-a", "w-c"]);
    api.post("/api/v1/workers/w-a/revoke", json!({}))
        .await
        .expect(StatusCode::OK);
    let (revoked, _) = walk(&api, "/api/v1/workers?status=revoked", "name").await;
    assert_eq!(revoked, ["w-a"]);
    let (off, _) = walk(&api, "/api/v1/workers?status=disconnected", "name").await;
    assert_eq!(off, ["w-c"]);
}

/// `status=connected` joins three sources: workers held by another replica (presence rows),
/// this replica's sessions with a row, and this replica's sessions whose row is not written yet.
/// Each page must hold the right ones in every order, none dropped or repeated at a page edge.
/// Nine connected is more than `ops::workers::FEW` in tests: the store's page path, not the
/// few-by-id one (which `connected_and_disconnected_come_from_the_registry` takes).
#[tokio::test]
async fn connected_pages_merge_other_replicas_and_sessions_with_and_without_a_row() {
    let api = Api::new();
    let mut ids = Vec::new();
    for i in 0..12 {
        let name = format!("n{:02}", (i * 5) % 12);
        let pool = if i % 2 == 0 { "gpu" } else { "cpu" };
        let reply = api
            .post(
                "/api/v1/workers",
                json!({"name": name, "labels": {"pool": pool}}),
            )
            .await
            .expect(StatusCode::CREATED);
        let id = muster_core::WorkerId::parse(reply.body["id"].as_str().unwrap()).unwrap();
        ids.push((id, name));
    }
    let mut connected = Vec::new();
    let mut rows = Vec::new();
    for (i, (id, name)) in ids.iter().enumerate() {
        match i % 4 {
            // Held elsewhere: only the row says so.
            0 => rows.push(muster_store::Presence {
                worker: id.clone(),
                replica: "replica-elsewhere".into(),
                conn_id: 9,
                connected_at: api.app.clock.now(),
                running: 0,
                slots: 1,
                remote_addr: None,
            }),
            // Here, with the row written.
            1 => {
                let session = api.connect(id, name, 1);
                rows.push(crate::replica::presence(&api.app, &session));
            }
            // Here, the row not written yet.
            2 => {
                api.connect(id, name, 1);
            }
            _ => continue,
        }
        connected.push(name.clone());
    }
    api.app
        .store
        .write(move |tx| rows.iter().try_for_each(|p| tx.put_presence(p)))
        .await
        .unwrap();
    let all = api.get("/api/v1/workers").await.expect(StatusCode::OK);
    let created: std::collections::HashMap<String, i64> = all
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            let name = w["name"].as_str().unwrap().to_owned();
            let at = muster_core::Timestamp::parse_rfc3339(w["created_at"].as_str().unwrap());
            (name, at.unwrap().unix_millis())
        })
        .collect();
    connected.sort();
    for (sort, key) in [("name", None), ("created", Some(&created))] {
        let mut expected = connected.clone();
        if let Some(at) = key {
            expected.sort_by_key(|n| (at[n], n.clone()));
        }
        for descending in [false, true] {
            let mut want = expected.clone();
            if descending {
                want.reverse();
            }
            let sign = if descending { "-" } else { "" };
            for limit in [1, 2, 5, 50] {
                let (got, _) = walk(
                    &api,
                    &format!("/api/v1/workers?status=connected&sort={sign}{sort}&limit={limit}"),
                    "name",
                )
                .await;
                assert_eq!(got, want, "sort={sign}{sort} limit={limit}");
            }
        }
    }
    let (gpu, _) = walk(
        &api,
        "/api/v1/workers?status=connected&label=pool%3Dgpu&limit=1",
        "name",
    )
    .await;
    let want: Vec<String> = ids
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 2 == 0 && i % 4 != 3)
        .map(|(_, (_, n))| n.clone())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(gpu, want);
}

#[tokio::test]
async fn bad_limits_cursors_and_filters_are_refused_with_the_fix() {
    let api = Api::new();
    fleet(&api).await;
    for limit in ["0", "5001", "-3", "many"] {
        let reply = api
            .get(&format!("/api/v1/workers?limit={limit}"))
            .await
            .refused(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "`limit` must be a whole number from 1 to 5000",
            );
        assert!(reply.hint().contains("Link"), "{}", reply.hint());
    }
    for path in ["workers", "tokens", "jobs", "audit"] {
        api.get(&format!("/api/v1/{path}?limit=5000"))
            .await
            .expect(StatusCode::OK);
        api.get(&format!("/api/v1/{path}?cursor=bm90LWEtY3Vyc29y"))
            .await
            .refused(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "`cursor` is not one",
            );
    }
    // A cursor from one list is not one of another's.
    let tokens_cursor = {
        api.token("t1").await;
        api.token("t2").await;
        let reply = api
            .get("/api/v1/tokens?limit=1")
            .await
            .expect(StatusCode::OK);
        next(reply.link.as_deref()).unwrap()
    };
    let cursor = tokens_cursor.split("cursor=").nth(1).unwrap().to_owned();
    api.get(&format!("/api/v1/workers?cursor={cursor}"))
        .await
        .refused(StatusCode::BAD_REQUEST, "bad_request", "workers list");
    api.get("/api/v1/workers?status=sleeping").await.refused(
        StatusCode::BAD_REQUEST,
        "bad_request",
        "unknown worker status `sleeping`",
    );
    api.get("/api/v1/workers?label=Bad%20Key").await.refused(
        StatusCode::BAD_REQUEST,
        "invalid_label",
        "",
    );
    api.get("/api/v1/workers?colour=red").await.refused(
        StatusCode::BAD_REQUEST,
        "bad_request",
        "unknown query parameter `colour`",
    );
    let many: String = (0..17).map(|i| format!("label=k{i}&")).collect();
    api.get(&format!("/api/v1/workers?{many}")).await.refused(
        StatusCode::BAD_REQUEST,
        "bad_request",
        "more than 16 `label` filters",
    );
    api.get("/api/v1/tokens?state=asleep").await.refused(
        StatusCode::BAD_REQUEST,
        "bad_request",
        "unknown token state `asleep`",
    );
    api.get("/api/v1/jobs?state=asleep").await.refused(
        StatusCode::BAD_REQUEST,
        "bad_request",
        "unknown job state `asleep`",
    );
}

#[tokio::test]
async fn tokens_jobs_and_audit_page_too() {
    let api = Api::new();
    for n in ["t1", "t2", "t3"] {
        api.token(n).await;
    }
    api.post("/api/v1/tokens/t2/revoke", json!({}))
        .await
        .expect(StatusCode::OK);
    let (tokens, pages) = walk(&api, "/api/v1/tokens?limit=1", "name").await;
    assert_eq!(tokens, ["t1", "t2", "t3"]);
    assert_eq!(pages, 3);
    let (unused, _) = walk(&api, "/api/v1/tokens?limit=1&state=unused", "name").await;
    assert_eq!(unused, ["t1", "t3"]);

    let mut ids = Vec::new();
    for _ in 0..3 {
        let job = api
            .post(
                "/api/v1/jobs",
                json!({"command": ["true"], "labels": {"pool": "none"}}),
            )
            .await
            .expect(StatusCode::CREATED);
        ids.push(job.body["id"].as_str().unwrap().to_owned());
    }
    let (jobs, pages) = walk(&api, "/api/v1/jobs?limit=2&state=queued", "id").await;
    assert_eq!(pages, 2);
    let mut sorted = jobs.clone();
    sorted.sort();
    ids.sort();
    assert_eq!(sorted, ids, "every job once");

    let (all, _) = walk(&api, "/api/v1/audit?limit=500", "seq").await;
    let (paged, pages) = walk(&api, "/api/v1/audit?limit=2", "seq").await;
    assert_eq!(paged, all);
    assert_eq!(pages, all.len().div_ceil(2));
}

#[tokio::test]
async fn lists_are_gzipped_for_a_client_that_accepts_it() {
    let api = Api::new();
    fleet(&api).await;
    let request = |encoding: Option<&str>| {
        let mut r = Request::builder().uri("/api/v1/workers").header(
            header::AUTHORIZATION,
            format!("Bearer {}", crate::state::AppState::TEST_ADMIN_TOKEN),
        );
        if let Some(e) = encoding {
            r = r.header(header::ACCEPT_ENCODING, e);
        }
        r.body(Body::empty()).unwrap()
    };
    let plain = api.send(request(None)).await.expect(StatusCode::OK);
    assert!(plain.body.is_array());
    let gzipped = api.send_raw(request(Some("gzip"))).await;
    assert_eq!(gzipped.0.get(header::CONTENT_ENCODING).unwrap(), "gzip");
    assert!(
        gzipped.1.len() < plain.text.len(),
        "{} < {}",
        gzipped.1.len(),
        plain.text.len()
    );
}

#[tokio::test]
async fn small_answers_go_uncompressed_even_to_a_client_that_accepts_gzip() {
    let api = Api::new();
    // A worker's challenge: a few dozen bytes, where a compressor's setup would cost more than
    // it saves.
    let request = Request::builder()
        .uri("/api/v1/challenge")
        .header(header::ACCEPT_ENCODING, "gzip")
        .body(Body::empty())
        .unwrap();
    let (headers, body) = api.send_raw(request).await;
    assert!(
        headers.get(header::CONTENT_ENCODING).is_none(),
        "{headers:?}"
    );
    let challenge: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(challenge["nonce"].is_string(), "{challenge}");
}
