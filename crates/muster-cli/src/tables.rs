//! Every human table the admin commands print, as pure functions of the server's answer and
//! `now` (for the relative times), so each is snapshot-tested as printed.
//!
//! Every cell goes through [`add_row`], which escapes control characters: stored text (an audit
//! detail, a job's reason, a command) may come from a worker or an anonymous caller, and a raw
//! line feed would forge a row, an escape sequence drive the admin's terminal.

use comfy_table::Table;
use muster_core::Timestamp;
use muster_core::text::escape_controls;
use muster_proto::api::{
    AuditEntry, DeliveryView, Edition, EnrollmentStatus, JobView, LicenseView, TokenView,
    WebhookView, WorkerStatus, WorkerView,
};
use muster_proto::confinement::Confinement;

use crate::output::{labels, or_dash, render, table, when};

/// `muster token list`.
pub fn tokens(tokens: &[TokenView], now: Timestamp) -> String {
    let mut t = table(&["NAME", "STATE", "EXPIRES", "BOUND MACHINE", "LABELS"]);
    for token in tokens {
        add_row(
            &mut t,
            vec![
                token.name.clone(),
                token.state.to_string(),
                when(Some(&token.expires_at), now),
                or_dash(token.bound_machine.as_deref()),
                labels(&token.labels),
            ],
        );
    }
    render(&t)
}

/// `muster token show`.
pub fn token(token: &TokenView, now: Timestamp) -> String {
    fields(vec![
        ("name", token.name.clone()),
        ("state", token.state.to_string()),
        ("created", when(Some(&token.created_at), now)),
        ("expires", when(Some(&token.expires_at), now)),
        ("bound machine", or_dash(token.bound_machine.as_deref())),
        ("enrolled", when(token.enrolled_at.as_deref(), now)),
        ("revoked", when(token.revoked_at.as_deref(), now)),
        ("worker", or_dash(token.worker.as_deref())),
        ("labels", labels(&token.labels)),
    ])
}

/// `muster workers list`.
pub fn workers(workers: &[WorkerView], now: Timestamp) -> String {
    let mut t = table(&[
        "NAME",
        "STATUS",
        "JOBS",
        "ENROLLED VIA",
        "MACHINE",
        "LABELS",
        "LAST SEEN",
    ]);
    for w in workers {
        add_row(
            &mut t,
            vec![
                w.name.clone(),
                w.status.to_string(),
                jobs(w),
                w.enrolled_via.to_string(),
                or_dash(w.machine_id.as_deref()),
                labels(&w.labels),
                when(w.last_seen_at.as_deref(), now),
            ],
        );
    }
    render(&t)
}

/// `muster workers show`.
pub fn worker(w: &WorkerView, now: Timestamp) -> String {
    fields(vec![
        ("name", w.name.clone()),
        ("id", w.id.clone()),
        ("status", w.status.to_string()),
        ("jobs", jobs(w)),
        ("enrolled via", w.enrolled_via.to_string()),
        ("token", or_dash(w.token.as_deref())),
        ("machine", or_dash(w.machine_id.as_deref())),
        ("labels", labels(&w.labels)),
        ("created", when(Some(&w.created_at), now)),
        ("expires", when(w.expires_at.as_deref(), now)),
        ("revoked", when(w.revoked_at.as_deref(), now)),
        ("last seen", when(w.last_seen_at.as_deref(), now)),
        ("address", or_dash(w.remote_addr.as_deref())),
        // Which server replica holds its channel (every replica names the same one).
        ("replica", or_dash(w.replica.as_deref())),
        ("confinement", confinement(w.confinement.as_ref())),
    ])
}

/// How a connected worker confines its jobs: `landlock (ABI 7)`, `none: <why>`, or `-`.
fn confinement(c: Option<&Confinement>) -> String {
    match c {
        Some(Confinement::Landlock { abi }) => format!("landlock (ABI {abi})"),
        Some(Confinement::Unconfined { reason }) => format!("none: {reason}"),
        None => "-".into(),
    }
}

/// A worker's jobs column: `busy 2/4`, or `-` when it is not connected.
fn jobs(w: &WorkerView) -> String {
    if w.status != WorkerStatus::Connected {
        return "-".into();
    }
    let state = if w.running_jobs == 0 { "idle" } else { "busy" };
    format!("{state} {}/{}", w.running_jobs, w.slots)
}

/// `muster job list`.
pub fn jobs_list(jobs: &[JobView], now: Timestamp) -> String {
    let mut t = table(&["ID", "STATE", "WORKER", "EXIT", "CREATED", "COMMAND"]);
    for j in jobs {
        add_row(
            &mut t,
            vec![
                j.id.clone(),
                j.state.to_string(),
                or_dash(j.worker.as_deref()),
                j.exit_code.map_or("-".into(), |c| c.to_string()),
                when(Some(&j.created_at), now),
                shorten(&j.command.join(" "), 60),
            ],
        );
    }
    render(&t)
}

/// `muster job show` (and `job run --detach`).
pub fn job(j: &JobView, now: Timestamp) -> String {
    let output = if j.output_truncated {
        format!("{} bytes (truncated)", j.output_bytes)
    } else {
        format!("{} bytes", j.output_bytes)
    };
    let mut rows = vec![
        ("id", j.id.clone()),
        ("state", j.state.to_string()),
        ("command", j.command.join(" ")),
        ("placement", j.selector.clone()),
        ("worker", or_dash(j.worker.as_deref())),
        (
            "exit code",
            j.exit_code.map_or("-".into(), |c| c.to_string()),
        ),
        ("reason", or_dash(j.reason.as_deref())),
        ("created", when(Some(&j.created_at), now)),
        ("started", when(j.started_at.as_deref(), now)),
        ("finished", when(j.finished_at.as_deref(), now)),
        ("output", output),
    ];
    if !j.env_keys.is_empty() {
        rows.push(("env", j.env_keys.join(", ")));
    }
    fields(rows)
}

fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        format!("{}…", text.chars().take(max - 1).collect::<String>())
    }
}

/// `muster audit`.
pub fn audit(entries: &[AuditEntry]) -> String {
    let mut t = table(&[
        "TIME", "ACTOR", "ACTION", "TARGET", "FROM", "OUTCOME", "DETAIL",
    ]);
    for e in entries {
        add_row(
            &mut t,
            vec![
                e.at.split('.').next().unwrap_or(&e.at).replace('T', " "),
                e.actor.clone(),
                e.action.clone(),
                e.target.clone(),
                or_dash(e.remote_addr.as_deref()),
                e.outcome.to_string(),
                e.detail.clone(),
            ],
        );
    }
    render(&t)
}

/// `muster enrollment status` (and the status after enable, disable and rotate).
pub fn enrollment(s: &EnrollmentStatus, now: Timestamp) -> String {
    let used = match s.max_enrollments {
        Some(max) => format!("{} of {max}", s.enrollments_in_window),
        None => s.enrollments_in_window.to_string(),
    };
    let mut t = table(&["SETTING", "VALUE"]);
    let rows = [
        (
            "auto-enrollment",
            if s.enabled { "enabled" } else { "disabled" }.to_owned(),
        ),
        (
            "secret set",
            s.secret_set_at
                .as_deref()
                .map_or("never".into(), |t| when(Some(t), now)),
        ),
        ("workers enrolled with it", s.enrolled_count.to_string()),
        ("window closes", when(s.window_closes_at.as_deref(), now)),
        ("enrollments in this window", used),
        ("name pattern", or_dash(s.name_pattern.as_deref())),
        ("expected names", or_dash(s.expected_names.as_deref())),
    ];
    for (setting, value) in rows {
        add_row(&mut t, vec![setting.to_owned(), value]);
    }
    render(&t)
}

/// `muster license show` (and the license after install, trial and remove).
pub fn webhooks(hooks: &[WebhookView], now: Timestamp) -> String {
    let mut t = table(&["ID", "URL", "EVENTS", "CREATED"]);
    for w in hooks {
        let events = if w.events.is_empty() {
            "every event".to_owned()
        } else {
            w.events.join(", ")
        };
        add_row(
            &mut t,
            vec![
                w.id.clone(),
                w.url.clone(),
                events,
                when(Some(&w.created_at), now),
            ],
        );
    }
    render(&t)
}

pub fn deliveries(log: &[DeliveryView], now: Timestamp) -> String {
    let mut t = table(&[
        "EVENT", "TYPE", "STATE", "ATTEMPTS", "LAST", "STATUS", "NEXT", "ERROR",
    ]);
    for d in log {
        add_row(
            &mut t,
            vec![
                d.event_id.clone(),
                d.event_type.clone(),
                d.state.clone(),
                d.attempts.to_string(),
                when(d.last_attempt_at.as_deref(), now),
                d.last_status
                    .map_or_else(|| "-".to_owned(), |s| s.to_string()),
                when(d.next_attempt_at.as_deref(), now),
                or_dash(d.last_error.as_deref()),
            ],
        );
    }
    render(&t)
}

pub fn license(l: &LicenseView, now: Timestamp) -> String {
    let workers = match (l.edition, l.max_workers) {
        (Edition::Community, _) => format!(
            "{} external, none may join in Community Edition",
            l.workers_used
        ),
        (_, Some(max)) => format!("{} of {max} used", l.workers_used),
        (_, None) => format!("{} used, no limit", l.workers_used),
    };
    let trial = match (&l.trial_started_at, &l.trial_ends_at) {
        (Some(start), Some(end)) => format!(
            "{} to {}",
            start.get(..10).unwrap_or(start),
            end.get(..10).unwrap_or(end)
        ),
        _ => "not used".to_owned(),
    };
    fields(vec![
        ("edition", l.edition.to_string()),
        ("state", l.state.to_string()),
        ("licensee", or_dash(l.licensee.as_deref())),
        ("workers", workers),
        (
            "external joins",
            if l.can_join { "open" } else { "refused" }.to_owned(),
        ),
        ("expires", when(l.expires_at.as_deref(), now)),
        ("grace ends", when(l.grace_ends_at.as_deref(), now)),
        ("issuer", or_dash(l.issuer.as_deref())),
        ("id", or_dash(l.id.as_deref())),
        ("trial", trial),
    ])
}

/// Adds a row whose every cell has its control characters escaped (`\n`, `\x1b`): the one way
/// tables here add rows.
fn add_row(table: &mut Table, cells: Vec<String>) {
    table.add_row(
        cells
            .iter()
            .map(|cell| escape_controls(cell).into_owned())
            .collect::<Vec<_>>(),
    );
}

/// A `FIELD VALUE` table for one record.
fn fields(rows: Vec<(&str, String)>) -> String {
    let mut t = table(&["FIELD", "VALUE"]);
    for (field, value) in rows {
        add_row(&mut t, vec![field.to_owned(), value]);
    }
    render(&t)
}

#[cfg(test)]
mod tests;
