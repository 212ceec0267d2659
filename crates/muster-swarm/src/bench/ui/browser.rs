//! Headless Chromium under chromedriver (Debian's `chromium` and `chromium-driver`), driven over
//! WebDriver with fantoccini, as the UI tests drive it (`crates/muster-cli/tests/ui/browser.rs`),
//! with errors instead of test panics.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use fantoccini::{Client, ClientBuilder};
use serde_json::json;

/// A laptop screen, as the UI tests use.
const WINDOW: (u32, u32) = (1280, 900);

pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

fn bin(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.into())
}

impl Browser {
    /// Starts chromedriver on a free port and a fresh headless Chromium profile (an empty cache).
    pub async fn start() -> anyhow::Result<Self> {
        let chromium = bin("CHROME_BIN", "/usr/bin/chromium");
        let chromedriver = bin("CHROMEDRIVER_BIN", "/usr/bin/chromedriver");
        for path in [&chromium, &chromedriver] {
            if !std::path::Path::new(path).exists() {
                bail!(
                    "`{path}` is missing: `apt-get update && apt-get install -y chromium chromium-driver` \
                     (or set CHROME_BIN / CHROMEDRIVER_BIN)"
                );
            }
        }
        let port = super::super::procs::free_port()?;
        // Its own process group, so Chromium (chromedriver's child) goes with it.
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start `{chromedriver}`"))?;
        let profile = tempfile::tempdir()?;
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert("acceptInsecureCerts".into(), json!(true));
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": [
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-background-networking",
                    "--no-first-run",
                    "--disable-dev-shm-usage",
                    format!("--user-data-dir={}", profile.path().display()),
                    format!("--window-size={},{}", WINDOW.0, WINDOW.1),
                ],
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(60);
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(client) => break client,
                Err(e) if Instant::now() > deadline => {
                    bail!("Chromium did not start under chromedriver: {e}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
        Ok(Self {
            client,
            driver,
            _profile: profile,
        })
    }

    /// Runs `script` (a function body) and returns what it returns.
    pub async fn eval(&self, script: &str) -> anyhow::Result<serde_json::Value> {
        Ok(self.client.execute(script, vec![]).await?)
    }

    /// Runs `script`, whose last argument is the callback that ends it.
    pub async fn eval_async(&self, script: &str) -> anyhow::Result<serde_json::Value> {
        Ok(self.client.execute_async(script, vec![]).await?)
    }

    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The whole group: chromedriver and the Chromium it started.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.driver.id())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
