//! The page shell: head, skip link, navigation, notices, footer; and small pieces every page
//! uses (messages, field errors).

use axum::response::Html;
use maud::{DOCTYPE, Markup, PreEscaped, html};

use crate::ui::assets;
use crate::ui::session::Flash;

/// The section a page belongs to, for the navigation's `aria-current`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Workers,
    Tokens,
    Jobs,
    Audit,
    Settings,
}

const SECTIONS: [(Nav, &str, &str); 5] = [
    (Nav::Workers, "/workers", "Workers"),
    (Nav::Tokens, "/tokens", "Tokens"),
    (Nav::Jobs, "/jobs", "Jobs"),
    (Nav::Audit, "/audit", "Audit"),
    (Nav::Settings, "/settings/security", "Settings"),
];

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            meta name="color-scheme" content="light";
            title { (title) " · muster" }
            link rel="icon" href=(assets::url("icon.svg")) type="image/svg+xml";
            link rel="stylesheet" href=(assets::url("app.css"));
            script src=(assets::url("app.js")) defer {}
        }
    }
}

fn brand() -> Markup {
    html! {
        a.brand href="/workers" {
            img src=(assets::url("icon.svg")) alt="" width="24" height="24";
            span { "muster" }
        }
    }
}

fn footer() -> Markup {
    html! {
        footer.site {
            "muster " (env!("CARGO_PKG_VERSION"))
        }
    }
}

/// A signed-in page: navigation, sign-out, the session's notices, then `body`.
pub fn page(title: &str, current: Nav, csrf: &str, flash: &[Flash], body: Markup) -> Html<String> {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                a.skip href="#main" { "Skip to main content" }
                header.site {
                    div.bar {
                        (brand())
                        nav aria-label="Main" {
                            ul {
                                @for (nav, href, label) in SECTIONS {
                                    li {
                                        @if nav == current {
                                            a href=(href) aria-current="page" { (label) }
                                        } @else {
                                            a href=(href) { (label) }
                                        }
                                    }
                                }
                            }
                        }
                        form.signout method="post" action="/signout" {
                            input type="hidden" name="csrf" value=(csrf);
                            button.quiet type="submit" { "Sign out" }
                        }
                    }
                }
                main #main tabindex="-1" {
                    (notices(flash))
                    (body)
                }
                (footer())
            }
        }
    };
    Html(markup.into_string())
}

/// A page without navigation: sign-in and errors.
pub fn bare_page(title: &str, body: Markup) -> Html<String> {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body.bare {
                a.skip href="#main" { "Skip to main content" }
                header.site { div.bar { (brand()) } }
                main #main tabindex="-1" { (body) }
                (footer())
            }
        }
    };
    Html(markup.into_string())
}

/// The plain notices waiting for this page. One-time secrets are shown by the page they belong
/// to, never here.
fn notices(flash: &[Flash]) -> Markup {
    html! {
        @for item in flash {
            @match item {
                Flash::License(banner) => (license_banner(banner)),
                Flash::Done(text) => p.notice.ok role="status" { (message(text)) },
                Flash::Failed(text) => p.notice.error role="alert" { (message(text)) },
                _ => {},
            }
        }
    }
}

/// The license banner every page shows while a license nears or passes its end, or external
/// workers are being refused.
fn license_banner(banner: &crate::license::Banner) -> Markup {
    let text =
        html! { (message(&banner.text)) " " a href="/settings/license" { "License settings" } };
    match banner.level {
        crate::license::Level::Warning => html! { p.notice.warn.license role="status" { (text) } },
        crate::license::Level::Error => html! { p.notice.error.license role="alert" { (text) } },
    }
}

/// The pages under Settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettingsPage {
    Security,
    License,
}

/// The links between the Settings pages.
pub fn settings_nav(current: SettingsPage) -> Markup {
    let pages = [
        (SettingsPage::Security, "/settings/security", "Security"),
        (SettingsPage::License, "/settings/license", "License"),
    ];
    html! {
        nav.settings aria-label="Settings" {
            ul {
                @for (page, href, label) in pages {
                    li {
                        @if page == current {
                            a href=(href) aria-current="page" { (label) }
                        } @else {
                            a href=(href) { (label) }
                        }
                    }
                }
            }
        }
    }
}

/// A message from the shared operations (`no worker named `x``) as a sentence for a page:
/// capitalised, with the backticked parts as code.
pub fn message(text: &str) -> Markup {
    ticks(&sentence(text))
}

/// Text whose backticked parts (the CLI's way of quoting values) become code.
pub fn ticks(text: &str) -> Markup {
    html! {
        @for (i, part) in text.split('`').enumerate() {
            @if i % 2 == 1 { code { (part) } } @else { (part) }
        }
    }
}

/// Capitalises the first letter and ends the sentence with a full stop.
pub fn sentence(text: &str) -> String {
    let mut chars = text.trim().chars();
    let mut out = match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect::<String>(),
        None => return String::new(),
    };
    if !out.ends_with(['.', '!', '?']) {
        out.push('.');
    }
    out
}

/// An input's error line, tied to the input by `aria-describedby` (`<id>-error`).
pub fn field_error(id: &str, error: Option<&str>) -> Markup {
    html! {
        @if let Some(error) = error {
            p.field-error id={ (id) "-error" } { (message(error)) }
        }
    }
}

/// The `aria-describedby` of an input with help text (`<id>-help`) and maybe an error.
pub fn described_by(id: &str, has_help: bool, error: Option<&str>) -> String {
    let mut ids = Vec::new();
    if has_help {
        ids.push(format!("{id}-help"));
    }
    if error.is_some() {
        ids.push(format!("{id}-error"));
    }
    ids.join(" ")
}

/// A button that copies the text of the element with id `target`. Hidden until the script
/// shows it: without JavaScript there is nothing to click, and the text is selectable anyway.
pub fn copy_button(target: &str, what: &str) -> Markup {
    html! {
        button.copy type="button" data-copy=(target) hidden {
            "Copy " span.visually-hidden { (what) }
        }
    }
}

/// One line of a one-time secret on a page: its label, the value in the element with id `id`,
/// and the button that copies it (`what` is the button's name for a screen reader).
pub fn secret_row(label: &str, id: &str, value: &str, what: &str) -> Markup {
    html! {
        div.secret-row {
            span.secret-label { (label) }
            code.secret id=(id) { (value) }
            (copy_button(id, what))
        }
    }
}

/// The last step of a confirmation page: a form that posts to `action` with the session's CSRF
/// token, its one dangerous button, and a way back to `cancel` that changes nothing.
pub fn confirm_form(action: &str, csrf: &str, button: &str, cancel: &str) -> Markup {
    html! {
        form method="post" action=(action) {
            input type="hidden" name="csrf" value=(csrf);
            div.actions {
                button.danger type="submit" { (button) }
                a.button.quiet href=(cancel) { "Cancel" }
            }
        }
    }
}

/// A data table's header row: one column heading per name, and with `actions` a last column for
/// the rows' buttons, named for screen readers only.
pub fn table_head(columns: &[&str], actions: bool) -> Markup {
    html! {
        thead {
            tr {
                @for column in columns {
                    th scope="col" { (column) }
                }
                @if actions {
                    th scope="col" { span.visually-hidden { "Actions" } }
                }
            }
        }
    }
}

/// An empty-looking cell that still says something to a screen reader.
pub fn none() -> Markup {
    html! { span.muted aria-label="none" { (PreEscaped("&mdash;")) } }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_become_sentences_with_code() {
        assert_eq!(sentence("no worker named `x`"), "No worker named `x`.");
        assert_eq!(sentence("done."), "Done.");
        assert_eq!(
            message("no worker named `<x>`").into_string(),
            "No worker named <code>&lt;x&gt;</code>."
        );
    }
}
