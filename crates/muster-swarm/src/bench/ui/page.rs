//! The Workers page in headless Chromium: a cold first load (empty cache, signed-in session)
//! and what its live updates cost over a window with the fleet idle.
//!
//! Time to first render is the page's First Contentful Paint (`performance.getEntriesByType
//! ('paint')`), measured from navigation start. The table is rendered by the server, so the first
//! paint after the whole document has arrived shows the rows: the load records the navigation's
//! `responseEnd` (it must come before the paint), the number of rows and where the first one is
//! on the page (whether the first screen shows it). Bytes are counted two ways: the browser's own Resource Timing (`transferSize`
//! of the navigation and of every resource: headers and bodies as received, never the live
//! stream, whose entry only appears when it ends) and the counting proxy the browser reaches the
//! server through (TLS bytes on the wire, every connection, the live stream included).

use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;

use super::browser::Browser;
use super::proxy::{CountingProxy, Snapshot};
use crate::bench::http::Auth;

/// What the page's Performance API says about one load.
#[derive(Debug, Deserialize)]
pub struct Load {
    pub response_end_ms: f64,
    pub dom_content_loaded_ms: f64,
    pub load_ms: f64,
    pub first_contentful_paint_ms: Option<f64>,
    /// `transferSize` of the navigation and of every resource entry.
    pub transfer_bytes: f64,
    pub navigation_transfer_bytes: f64,
    pub navigation_decoded_bytes: f64,
    pub resources: u64,
    pub rows: u64,
    /// Where the first row's top is, in CSS pixels from the top of the page (the window is 900
    /// high).
    pub first_row_top_px: Option<f64>,
    pub dom_nodes: u64,
}

/// The script that reads [`Load`] (and the resource entries' count and bytes so far).
const READ_LOAD: &str = "
const nav = performance.getEntriesByType('navigation')[0];
const res = performance.getEntriesByType('resource');
const fcp = performance.getEntriesByType('paint').find(p => p.name === 'first-contentful-paint');
const row = document.querySelector('#fleet tbody tr');
return {
  response_end_ms: nav.responseEnd,
  dom_content_loaded_ms: nav.domContentLoadedEventEnd,
  load_ms: nav.loadEventEnd,
  first_contentful_paint_ms: fcp ? fcp.startTime : null,
  transfer_bytes: nav.transferSize + res.reduce((n, r) => n + r.transferSize, 0),
  navigation_transfer_bytes: nav.transferSize,
  navigation_decoded_bytes: nav.decodedBodySize,
  resources: res.length,
  rows: document.querySelectorAll('#fleet tbody tr').length,
  first_row_top_px: row ? row.getBoundingClientRect().top + window.scrollY : null,
  dom_nodes: document.getElementsByTagName('*').length,
};";

/// The resource entries so far: how many and their `transferSize` in all.
const READ_RESOURCES: &str = "
const res = performance.getEntriesByType('resource');
return [res.length, res.reduce((n, r) => n + r.transferSize, 0)];";

/// Gives the browser the signed-in session without loading any page that could fill its cache:
/// a cookie can only be set on a document of its site, and the health check is a few bytes of
/// JSON that the Workers page never asks for. (Not a 404: Chromium replaces a short error
/// answer with a page of its own, on which no cookie can be set.)
pub async fn sign_in(browser: &Browser, base: &str, session: &Auth) -> anyhow::Result<()> {
    let Auth::Cookie(pair) = session else {
        bail!("the browser needs a session cookie");
    };
    browser
        .client
        .goto(&format!("{base}/api/v1/health"))
        .await?;
    // Set by the page's script: chromedriver's own cookie command refuses a cookie for an IP
    // address ("invalid 'domain'"). The server reads only the value; `__Host-` cookies need
    // `Secure` and `Path=/`, which a script on an https page may set.
    browser
        .client
        .execute(
            "document.cookie = arguments[0] + '; Path=/; Secure; SameSite=Strict';",
            vec![serde_json::Value::String(pair.clone())],
        )
        .await?;
    Ok(())
}

/// Loads `url` and waits `settle` for what the page starts after its load event (the live
/// stream's connection): the page's own figures, and the proxy's bytes from before the
/// navigation to the end of `settle`.
pub async fn load(
    browser: &Browser,
    proxy: &CountingProxy,
    url: &str,
    settle: Duration,
) -> anyhow::Result<(Load, Snapshot)> {
    let before = proxy.snapshot();
    browser.client.goto(url).await?;
    tokio::time::sleep(settle).await;
    let wire = proxy.snapshot() - before;
    let load: Load = serde_json::from_value(browser.eval(READ_LOAD).await?)
        .context("the page's performance entries")?;
    if load.rows == 0 {
        bail!("the Workers page at {url} shows no row");
    }
    Ok((load, wire))
}

/// What the open page costs over `window`: the proxy's bytes and the requests the page made.
pub struct Live {
    pub wire: Snapshot,
    pub requests: u64,
    pub request_transfer_bytes: f64,
}

pub async fn live(
    browser: &Browser,
    proxy: &CountingProxy,
    window: Duration,
) -> anyhow::Result<Live> {
    let read = || async {
        let v: (u64, f64) = serde_json::from_value(browser.eval(READ_RESOURCES).await?)?;
        anyhow::Ok(v)
    };
    let (requests_before, transfer_before) = read().await?;
    let before = proxy.snapshot();
    tokio::time::sleep(window).await;
    let wire = proxy.snapshot() - before;
    let (requests_after, transfer_after) = read().await?;
    Ok(Live {
        wire,
        requests: requests_after - requests_before,
        request_transfer_bytes: transfer_after - transfer_before,
    })
}
