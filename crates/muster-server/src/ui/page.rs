//! Paging a list page: reading the `after` cursor of a page's URL, and the links to the first
//! and the next page. The cursors are the API's ([`ops::page::Cursor`]); a stale or mangled one
//! starts again at the first page rather than failing the page.

use maud::{Markup, html};
use muster_core::job::JobId;
use muster_core::{Name, Timestamp};

use muster_store::WorkerPosition;

use crate::ops::page::{Cursor, CursorKind, Order};
use crate::ops::workers::Sort;
use crate::ui::error::encode_component;
use crate::ui::layout;

fn decode(word: &str, kind: CursorKind) -> Option<Cursor> {
    match word.trim() {
        "" => None,
        word => Cursor::decode(word, kind).ok(),
    }
}

/// Where a page of workers in the order `sort` starts; a cursor of another order starts again.
pub fn after_worker(word: &str, sort: Sort) -> Option<WorkerPosition> {
    match decode(word, CursorKind::Worker) {
        Some(Cursor::Worker(given, at)) if given == sort => Some(at),
        _ => None,
    }
}

pub fn after_token(word: &str) -> Option<(Timestamp, Name)> {
    match decode(word, CursorKind::Token) {
        Some(Cursor::Token(at, name)) => Some((at, name)),
        _ => None,
    }
}

pub fn after_job(word: &str) -> Option<(Timestamp, JobId)> {
    match decode(word, CursorKind::Job) {
        Some(Cursor::Job(at, id)) => Some((at, id)),
        _ => None,
    }
}

pub fn after_audit(word: &str) -> Option<i64> {
    match decode(word, CursorKind::Audit) {
        Some(Cursor::Audit(seq)) => Some(seq),
        _ => None,
    }
}

/// The order a list page asks for (`order=reverse`), its own otherwise.
pub fn order(word: &str) -> Order {
    match word.trim() {
        "reverse" => Order::Reverse,
        _ => Order::Forward,
    }
}

/// The `order` field of a filter form: the list's own order or the reverse, named for the
/// list (`newest first`, `oldest first`).
pub fn order_field(order: Order, forward: &str, reverse: &str) -> Markup {
    html! {
        div.field {
            label for="filter-order" { "Order" }
            select #filter-order name="order" {
                option value="" selected[order == Order::Forward] { (forward) }
                option value="reverse" selected[order == Order::Reverse] { (reverse) }
            }
        }
    }
}

/// The `state` field of a filter form: "any" or one of `states`, with the error of a state the
/// list does not know.
pub fn state_field(states: &[&str], chosen: Option<&str>, error: Option<&str>) -> Markup {
    html! {
        div.field {
            label for="filter-state" { "State" }
            select #filter-state name="state"
                aria-invalid=[error.is_some().then_some("true")]
                aria-describedby=(layout::described_by("filter-state", false, error)) {
                option value="" selected[chosen.is_none()] { "any" }
                @for s in states {
                    option value=(s) selected[chosen == Some(*s)] { (s) }
                }
            }
            (layout::field_error("filter-state", error))
        }
    }
}

/// The links under a paged table: back to the first page (when this is a later one) and on to
/// the next (when there is one). `here` is the page's URL with its filters and without `after`.
pub fn pager(what: &str, here: &str, after: &str, next: Option<&Cursor>) -> Markup {
    let later = !after.trim().is_empty();
    let join = if here.contains('?') { '&' } else { '?' };
    html! {
        @if later || next.is_some() {
            nav.pager aria-label=(what) {
                @if later {
                    a.button.quiet href=(here) { "First page" }
                    " "
                }
                @if let Some(next) = next {
                    a.button.quiet #next-page href={ (here) (join) "after=" (encode_component(&next.encode())) } { "Next page" }
                }
            }
        }
    }
}
