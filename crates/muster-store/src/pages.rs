//! The SQL of one page of a list, written once for both backends.
//!
//! Every list pages by a keyset: the page after a row is "rows past it in the order", a range on
//! an index, so page 200 costs what page 1 does (an `OFFSET` would read and throw away every row
//! before it). Only the filters a caller gave appear in the statement, so each shape uses the
//! index made for it (migration 0009), and the number of shapes stays small (label filters are
//! bounded by the server, keys first, then pairs), which keeps the prepared-statement caches small.

use muster_core::job::JobState;
use muster_core::token::TokenState;

use crate::codec::JOB_COLUMNS;
use crate::rows::{TOKEN_COLUMNS, WORKER_COLUMNS};
use crate::tx::{FleetOverview, JobFilter, StoredStatus, TokenPage, WorkerPage, WorkerSort};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

/// A value bound to a placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Param {
    Text(String),
    Int(i64),
}

/// A statement and the values of its placeholders, in order.
#[derive(Debug)]
pub(crate) struct Statement {
    pub sql: String,
    pub params: Vec<Param>,
    /// Plan it with its values each time rather than once for all (PostgreSQL): a name
    /// substring is best served by the trigram index when it is rare and by walking the name
    /// index when it is common, which a plan made without the value cannot tell. At 100,000
    /// workers a substring nobody has takes 2.6 ms through the trigram index and 29 ms along
    /// the name index, a common one 1.6 ms along the name index.
    pub plan_each_time: bool,
    dialect: Dialect,
}

impl Statement {
    fn new(dialect: Dialect, select: String) -> Self {
        Self {
            sql: select,
            params: Vec::new(),
            plan_each_time: false,
            dialect,
        }
    }

    /// Binds `value` and returns its placeholder.
    fn bind(&mut self, value: Param) -> String {
        self.params.push(value);
        match self.dialect {
            Dialect::Sqlite => format!("?{}", self.params.len()),
            Dialect::Postgres => format!("${}", self.params.len()),
        }
    }

    fn text(&mut self, value: &str) -> String {
        self.bind(Param::Text(value.to_owned()))
    }

    fn int(&mut self, value: i64) -> String {
        self.bind(Param::Int(value))
    }

    fn and(&mut self, condition: &str) {
        self.sql.push_str(" AND ");
        self.sql.push_str(condition);
    }

    /// `column` contains `needle`, taken as plain text. On PostgreSQL it is a `LIKE '%…%'`
    /// (pattern characters escaped), which a trigram index serves where migration 0012 could
    /// make one; SQLite has no such index, and `instr` needs no escaping.
    fn contains(&mut self, column: &str, needle: &str) -> String {
        match self.dialect {
            Dialect::Sqlite => {
                let p = self.text(needle);
                format!("instr({column}, {p}) > 0")
            }
            Dialect::Postgres => {
                let p = self.text(&like_pattern(needle));
                self.plan_each_time = true;
                format!("{column} LIKE {p}")
            }
        }
    }
}

/// Label values the overview names at most.
const TOP_LABELS: i64 = 8;
const HOUR_MS: i64 = 3_600_000;

/// The fleet overview in one statement of counts, each on an index (migrations 0009 and 0011):
/// rows of (part, key, count). Parts: `status` (total, revoked, suspended, expired), `label`
/// (`key=value`, the most common first), and per hour since `now - hours` (the key is the
/// hour's number, 0 the oldest) `enrolled`, `revoked` and `expired`.
pub(crate) fn overview(dialect: Dialect, now: i64, hours: u32) -> Statement {
    let mut s = Statement::new(dialect, String::new());
    let now_p = s.int(now);
    let since = s.int(now - i64::from(hours) * HOUR_MS);
    let hour = s.int(HOUR_MS);
    let top = s.int(TOP_LABELS);
    let bucket = |column: &str| format!("CAST(({column} - {since}) / {hour} AS TEXT)");
    s.sql = format!(
        "SELECT 'status', 'total', COUNT(*) FROM workers
         UNION ALL SELECT 'status', 'revoked', COUNT(*) FROM workers WHERE revoked_at IS NOT NULL
         UNION ALL SELECT 'status', 'suspended', COUNT(*) FROM workers
             WHERE suspended_at IS NOT NULL AND revoked_at IS NULL
         UNION ALL SELECT 'status', 'expired', COUNT(*) FROM workers
             WHERE expires_at IS NOT NULL AND expires_at <= {now_p} AND revoked_at IS NULL AND suspended_at IS NULL
         UNION ALL SELECT 'label', pair, n FROM (
             SELECT key || '=' || value AS pair, COUNT(*) AS n FROM worker_labels
             GROUP BY key, value ORDER BY n DESC, pair LIMIT {top}) AS top_labels
         UNION ALL SELECT 'enrolled', {enrolled}, COUNT(*) FROM workers
             WHERE created_at >= {since} AND created_at <= {now_p} GROUP BY 2
         UNION ALL SELECT 'revoked', {revoked}, COUNT(*) FROM workers
             WHERE revoked_at IS NOT NULL AND revoked_at >= {since} AND revoked_at <= {now_p} GROUP BY 2
         UNION ALL SELECT 'expired', {expired}, COUNT(*) FROM workers
             WHERE expires_at IS NOT NULL AND expires_at >= {since} AND expires_at <= {now_p} GROUP BY 2",
        enrolled = bucket("created_at"),
        revoked = bucket("revoked_at"),
        expired = bucket("expires_at"),
    );
    s
}

/// Reads the rows of [`overview`].
pub(crate) fn read_overview(
    rows: impl IntoIterator<Item = (String, String, i64)>,
    hours: u32,
) -> FleetOverview {
    let mut o = FleetOverview {
        enrolled: vec![0; hours as usize],
        cut_off: vec![0; hours as usize],
        ..FleetOverview::default()
    };
    for (part, key, n) in rows {
        let n = u64::try_from(n).unwrap_or(0);
        let slot = key.parse::<usize>().ok().map(|h| h.min(hours as usize - 1));
        match (part.as_str(), key.as_str(), slot) {
            ("status", "total", _) => o.total = n,
            ("status", "revoked", _) => o.revoked = n,
            ("status", "suspended", _) => o.suspended = n,
            ("status", "expired", _) => o.expired = n,
            ("label", pair, _) => o.labels.push((pair.to_owned(), n)),
            ("enrolled", _, Some(h)) => o.enrolled[h] += n,
            ("revoked" | "expired", _, Some(h)) => o.cut_off[h] += n,
            _ => {}
        }
    }
    o
}

/// `%needle%` for `LIKE`, with `\\`, `%` and `_` in the needle escaped (PostgreSQL's default
/// escape character is the backslash).
fn like_pattern(needle: &str) -> String {
    let mut pattern = String::with_capacity(needle.len() + 2);
    pattern.push('%');
    for c in needle.chars() {
        if matches!(c, '\\' | '%' | '_') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

pub(crate) fn workers(page: &WorkerPage, dialect: Dialect) -> Statement {
    let mut s = Statement::new(
        dialect,
        format!("SELECT {WORKER_COLUMNS} FROM workers WHERE TRUE"),
    );
    // The sort column as its index has it (migration 0013), so the keyset and the order both
    // walk that index.
    let column = match page.sort {
        WorkerSort::Name => None,
        WorkerSort::Created => Some("created_at"),
        WorkerSort::LastSeen => Some("COALESCE(last_seen_at, 0)"),
    };
    let past = if page.descending { "<" } else { ">" };
    if let Some(after) = &page.after {
        match column {
            None => {
                let n = s.text(after.name.as_str());
                s.and(&format!("name {past} {n}"));
            }
            Some(column) => {
                let k = s.int(after.key);
                let n = s.text(after.name.as_str());
                // The bound on the column alone is implied by the pair's, but SQLite seeks an
                // expression index only with it (without, it walks the index from the start).
                s.and(&format!(
                    "{column} {past}= {k} AND ({column}, name) {past} ({k}, {n})"
                ));
            }
        }
    }
    if let Some(needle) = &page.name_contains {
        let c = s.contains("name", needle);
        s.and(&c);
    }
    let now = page.now.unix_millis();
    match page.status {
        None => {}
        Some(StoredStatus::Revoked) => s.and("revoked_at IS NOT NULL"),
        Some(StoredStatus::Suspended) => {
            s.and("revoked_at IS NULL AND suspended_at IS NOT NULL");
        }
        Some(StoredStatus::Expired) => {
            let p = s.int(now);
            s.and(&format!(
                "revoked_at IS NULL AND suspended_at IS NULL AND expires_at IS NOT NULL AND expires_at <= {p}"
            ));
        }
        Some(StoredStatus::Live) => {
            let p = s.int(now);
            s.and(&format!(
                "revoked_at IS NULL AND suspended_at IS NULL AND (expires_at IS NULL OR expires_at > {p})"
            ));
        }
    }
    if page.present {
        // One probe of the presence table's key per row walked along the order's index.
        s.and("EXISTS (SELECT 1 FROM worker_presence p WHERE p.worker_id = workers.id)");
    }
    // Keys alone first, then pairs: the statement's shape depends only on how many of each.
    let mut labels: Vec<_> = page.labels.iter().collect();
    labels.sort_by_key(|l| l.value.is_some());
    for label in labels {
        let k = s.text(&label.key);
        let condition = match &label.value {
            None => format!("id IN (SELECT worker_id FROM worker_labels WHERE key = {k})"),
            Some(value) => {
                let v = s.text(value);
                format!(
                    "id IN (SELECT worker_id FROM worker_labels WHERE key = {k} AND value = {v})"
                )
            }
        };
        s.and(&condition);
    }
    let limit = s.int(i64::from(page.limit));
    let way = if page.descending { " DESC" } else { "" };
    let order = match column {
        None => format!("name{way}"),
        Some(column) => format!("{column}{way}, name{way}"),
    };
    s.sql.push_str(&format!(" ORDER BY {order} LIMIT {limit}"));
    s
}

/// How many workers other replicas than `here` hold a channel of (presence rows) that carry every
/// label pair in `labels` (all of them when it is empty). Pairs are bound in the order given,
/// so the statement's shape depends only on how many there are.
pub(crate) fn present_elsewhere(
    here: &str,
    labels: &[(String, String)],
    dialect: Dialect,
) -> Statement {
    let mut s = Statement::new(
        dialect,
        "SELECT COUNT(*) FROM worker_presence WHERE TRUE".to_owned(),
    );
    let r = s.text(here);
    s.and(&format!("replica <> {r}"));
    for (key, value) in labels {
        let (k, v) = (s.text(key), s.text(value));
        s.and(&format!(
            "worker_id IN (SELECT worker_id FROM worker_labels WHERE key = {k} AND value = {v})"
        ));
    }
    s
}

pub(crate) fn tokens(page: &TokenPage, dialect: Dialect) -> Statement {
    let mut s = Statement::new(
        dialect,
        format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE TRUE"),
    );
    if let Some((at, name)) = &page.after {
        let a = s.int(at.unix_millis());
        let n = s.text(name.as_str());
        let past = if page.reverse { "<" } else { ">" };
        s.and(&format!("(created_at, name) {past} ({a}, {n})"));
    }
    // The effective state, as `Token::state_at` decides it: revoked first, then expired.
    let now = page.now.unix_millis();
    match page.state {
        None => {}
        Some(TokenState::Revoked) => s.and("revoked_at IS NOT NULL"),
        Some(TokenState::Expired) => {
            let p = s.int(now);
            s.and(&format!("revoked_at IS NULL AND expires_at <= {p}"));
        }
        Some(TokenState::Enrolled) => {
            let p = s.int(now);
            s.and(&format!(
                "revoked_at IS NULL AND expires_at > {p} AND bound_machine IS NOT NULL"
            ));
        }
        Some(TokenState::Unused) => {
            let p = s.int(now);
            s.and(&format!(
                "revoked_at IS NULL AND expires_at > {p} AND bound_machine IS NULL"
            ));
        }
    }
    let limit = s.int(i64::from(page.limit));
    let order = if page.reverse {
        "created_at DESC, name DESC"
    } else {
        "created_at, name"
    };
    s.sql.push_str(&format!(" ORDER BY {order} LIMIT {limit}"));
    s
}

pub(crate) fn jobs(filter: &JobFilter, dialect: Dialect) -> Statement {
    let mut s = Statement::new(
        dialect,
        format!("SELECT {JOB_COLUMNS} FROM jobs WHERE TRUE"),
    );
    if let Some(state) = filter.state {
        let p = s.text(JobState::as_str(state));
        s.and(&format!("state = {p}"));
    }
    if let Some(worker) = &filter.worker {
        let p = s.text(worker.as_str());
        s.and(&format!("worker_name = {p}"));
    }
    if let Some((at, id)) = &filter.before {
        let a = s.int(at.unix_millis());
        let i = s.text(id.as_str());
        let past = if filter.reverse { ">" } else { "<" };
        s.and(&format!("(created_at, id) {past} ({a}, {i})"));
    }
    let limit = s.int(i64::from(filter.limit));
    let order = if filter.reverse {
        "created_at, id"
    } else {
        "created_at DESC, id DESC"
    };
    s.sql.push_str(&format!(" ORDER BY {order} LIMIT {limit}"));
    s
}

#[cfg(test)]
mod tests {
    use muster_core::{Name, Timestamp};

    use super::*;
    use crate::tx::{LabelMatch, WorkerPosition};

    fn page() -> WorkerPage {
        WorkerPage {
            after: None,
            sort: WorkerSort::Name,
            descending: false,
            name_contains: None,
            labels: Vec::new(),
            status: None,
            present: false,
            now: Timestamp::from_unix_millis(5),
            limit: 10,
        }
    }

    #[test]
    fn a_bare_page_has_no_filter() {
        let s = workers(&page(), Dialect::Sqlite);
        assert!(
            s.sql.ends_with("WHERE TRUE ORDER BY name LIMIT ?1"),
            "{}",
            s.sql
        );
        assert_eq!(s.params, vec![Param::Int(10)]);
    }

    #[test]
    fn label_keys_come_before_pairs_whatever_the_order_given() {
        let mut a = page();
        a.labels = vec![
            LabelMatch {
                key: "pool".into(),
                value: Some("gpu".into()),
            },
            LabelMatch {
                key: "zone".into(),
                value: None,
            },
        ];
        let mut b = a.clone();
        b.labels.reverse();
        let w1 = WorkerPosition {
            key: 0,
            name: Name::parse("w1").unwrap(),
        };
        a.after = Some(w1.clone());
        b.after = Some(w1);
        let (sa, sb) = (
            workers(&a, Dialect::Postgres),
            workers(&b, Dialect::Postgres),
        );
        assert_eq!(sa.sql, sb.sql);
        assert_eq!(sa.params, sb.params);
        assert!(sa.sql.contains("name > $1"), "{}", sa.sql);
        assert_eq!(sa.params[1], Param::Text("zone".into()));
    }

    #[test]
    fn each_order_pages_by_its_own_keyset_either_way() {
        let mut q = page();
        q.after = Some(WorkerPosition {
            key: 7,
            name: Name::parse("w1").unwrap(),
        });
        q.sort = WorkerSort::LastSeen;
        q.descending = true;
        let s = workers(&q, Dialect::Postgres);
        assert!(
            s.sql
                .contains("(COALESCE(last_seen_at, 0), name) < ($1, $2)"),
            "{}",
            s.sql
        );
        assert!(
            s.sql
                .ends_with("ORDER BY COALESCE(last_seen_at, 0) DESC, name DESC LIMIT $3"),
            "{}",
            s.sql
        );
        assert_eq!(s.params[..2], [Param::Int(7), Param::Text("w1".into())]);
        q.sort = WorkerSort::Created;
        q.descending = false;
        let s = workers(&q, Dialect::Sqlite);
        assert!(s.sql.contains("(created_at, name) > (?1, ?2)"), "{}", s.sql);
        assert!(
            s.sql.ends_with("ORDER BY created_at, name LIMIT ?3"),
            "{}",
            s.sql
        );
        q.sort = WorkerSort::Name;
        q.descending = true;
        let s = workers(&q, Dialect::Sqlite);
        assert!(s.sql.contains("name < ?1"), "{}", s.sql);
        assert_eq!(s.params[0], Param::Text("w1".into()), "no key for names");
    }

    #[test]
    fn a_name_substring_is_plain_text_in_either_dialect() {
        let mut q = page();
        q.name_contains = Some(r"a_%\b".into());
        let pg = workers(&q, Dialect::Postgres);
        assert!(pg.sql.contains("name LIKE $1"), "{}", pg.sql);
        assert_eq!(pg.params[0], Param::Text(r"%a\_\%\\b%".into()));
        let lite = workers(&q, Dialect::Sqlite);
        assert!(lite.sql.contains("instr(name, ?1) > 0"), "{}", lite.sql);
        assert_eq!(lite.params[0], Param::Text(r"a_%\b".into()));
    }
}
