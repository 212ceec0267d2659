//! The fleet overview above the Workers page: how many workers are in each status, the most
//! common labels, and enrollments and cut-offs hour by hour over the last day, drawn as a small
//! SVG chart by the server (no script, nothing fetched from elsewhere).
//!
//! The counts come from one statement of counts on indexes ([`muster_store::Tx::fleet_overview`]),
//! never from loading the fleet, and are kept for a few seconds ([`Cache`]) so a burst of page
//! loads and live refreshes costs one query. Connected workers are counted fleet-wide: this
//! replica's sessions (always current) and the presence rows of every other replica (counted
//! with the rest, on the presence table's replica index).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::response::Html;
use maud::{Markup, html};
use muster_store::FleetOverview;

use crate::error::AppError;
use crate::ui::UiApp;
use crate::ui::auth::UiAdmin;
use crate::ui::error::{UiError, encode_component};

/// The hours the chart covers.
pub const HOURS: u32 = 24;
/// How long counts are reused.
const FRESH: Duration = Duration::from_secs(5);

/// The last counts and when they were taken.
#[derive(Default)]
pub struct Cache(Mutex<Option<(Instant, Counts)>>);

/// The overview's numbers: the store's counts and the workers other replicas hold.
#[derive(Debug, Clone, Default)]
pub struct Counts {
    pub fleet: FleetOverview,
    /// Workers connected to other replicas (their presence rows); 0 with one replica.
    pub elsewhere: u64,
}

impl Counts {
    /// Connected workers in the whole fleet: `here` (this replica's sessions, current) and
    /// those other replicas hold.
    pub fn connected(&self, here: usize) -> u64 {
        (here as u64).saturating_add(self.elsewhere)
    }
}

/// The counts, at most [`FRESH`] old.
pub async fn counts(app: &UiApp) -> Result<Counts, AppError> {
    if let Some((at, counts)) = app.ui.overview.0.lock().ok().and_then(|c| c.clone())
        && at.elapsed() < FRESH
    {
        return Ok(counts);
    }
    let now = app.clock.now();
    let replica = app.jobs.replica().to_owned();
    let counts = app
        .store
        .read(move |tx| {
            Ok(Counts {
                fleet: tx.fleet_overview(now, HOURS)?,
                elsewhere: tx.count_present_elsewhere(&replica, &[])?,
            })
        })
        .await?;
    if let Ok(mut cache) = app.ui.overview.0.lock() {
        *cache = Some((Instant::now(), counts.clone()));
    }
    Ok(counts)
}

/// `GET /workers/overview`: the overview alone, for the live page.
pub async fn fragment(State(app): State<UiApp>, _admin: UiAdmin) -> Result<Html<String>, UiError> {
    let counts = counts(&app).await?;
    Ok(Html(
        render(&counts.fleet, counts.connected(app.registry.len())).into_string(),
    ))
}

/// Workers in each status, connected ones told by the caller ([`Counts::connected`]).
fn statuses(o: &FleetOverview, connected: u64) -> [(&'static str, u64); 5] {
    let live = o.total.saturating_sub(o.revoked + o.suspended + o.expired);
    let connected = connected.min(live);
    [
        ("connected", connected),
        ("disconnected", live - connected),
        ("revoked", o.revoked),
        ("expired", o.expired),
        ("suspended", o.suspended),
    ]
}

pub fn render(o: &FleetOverview, connected: u64) -> Markup {
    html! {
        section.overview aria-labelledby="overview-title" {
            h2 #overview-title.visually-hidden { "Fleet overview" }
            div.tiles {
                a.tile.total href="/workers" {
                    span.count data-count="total" { (o.total) }
                    span.what { @if o.total == 1 { "worker" } @else { "workers" } }
                }
                @for (status, n) in statuses(o, connected) {
                    a class={ "tile status-" (status) } href={ "/workers?status=" (status) } {
                        span.count data-count=(status) { (n) }
                        span.what { (status) }
                    }
                }
            }
            div.overview-row {
                div.top-labels {
                    h3 { "Most common labels" }
                    @if o.labels.is_empty() {
                        p.muted { "No worker has labels." }
                    } @else {
                        ul.labels {
                            @for (pair, n) in &o.labels {
                                li {
                                    a href={ "/workers?label=" (encode_component(pair)) } {
                                        code { (pair) } " " span.n { (n) }
                                    }
                                }
                            }
                        }
                    }
                }
                div.chart-box {
                    h3 { "Last " (HOURS) " hours" }
                    (chart(&o.enrolled, &o.cut_off))
                    p.legend {
                        span.key.enrolled aria-hidden="true" {} "enrolled " strong { (o.enrolled.iter().sum::<u64>()) }
                        " · "
                        span.key.cut aria-hidden="true" {} "revoked or expired " strong { (o.cut_off.iter().sum::<u64>()) }
                    }
                }
            }
        }
    }
}

/// Two bars an hour, enrolled up and cut off down from a middle line, scaled to the busiest hour.
fn chart(enrolled: &[u64], cut: &[u64]) -> Markup {
    const W: u64 = 240;
    const H: u64 = 60;
    let hours = enrolled.len().max(1) as u64;
    let step = W / hours;
    let top = enrolled
        .iter()
        .chain(cut)
        .copied()
        .max()
        .unwrap_or(0)
        .max(1);
    let half = H / 2 - 1;
    let height = |n: u64| {
        if n == 0 {
            0
        } else {
            (n * half).div_ceil(top).max(1)
        }
    };
    let description = format!(
        "Workers enrolled per hour: {}. Revoked or expired per hour: {}. Oldest hour first.",
        join(enrolled),
        join(cut)
    );
    html! {
        svg.chart viewBox={ "0 0 " (W) " " (H) } width=(W) height=(H) role="img" aria-label=(description) {
            line.axis x1="0" y1=(H / 2) x2=(W) y2=(H / 2) {}
            @for (i, (&up, &down)) in enrolled.iter().zip(cut).enumerate() {
                @let x = i as u64 * step + 1;
                @if up > 0 {
                    rect.enrolled x=(x) y=(H / 2 - height(up)) width=(step - 2) height=(height(up)) {
                        title { (up) " enrolled" }
                    }
                }
                @if down > 0 {
                    rect.cut x=(x) y=(H / 2 + 1) width=(step - 2) height=(height(down)) {
                        title { (down) " revoked or expired" }
                    }
                }
            }
        }
    }
}

fn join(counts: &[u64]) -> String {
    counts
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_add_up_to_the_fleet() {
        let o = FleetOverview {
            total: 10,
            revoked: 2,
            suspended: 1,
            expired: 1,
            ..FleetOverview::default()
        };
        let s = statuses(&o, 4);
        assert_eq!(s.iter().map(|(_, n)| n).sum::<u64>(), 10);
        assert_eq!(s[0], ("connected", 4));
        assert_eq!(s[1], ("disconnected", 2));
        // More sessions than live records (a record removed while connected) never underflows.
        assert_eq!(statuses(&o, 99)[1], ("disconnected", 0));
    }

    #[test]
    fn the_chart_scales_to_the_busiest_hour() {
        let svg = chart(&[0, 5, 10], &[1, 0, 0]).into_string();
        assert_eq!(svg.matches("<rect").count(), 3);
        assert!(svg.contains("height=\"29\""), "{svg}");
        assert!(svg.contains("aria-label=\"Workers enrolled per hour: 0, 5, 10."));
    }
}
