//! Headless Chromium driven over WebDriver (Debian's `chromium` and `chromium-driver`).

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

/// Debian's paths; `CHROME_BIN` and `CHROMEDRIVER_BIN` point elsewhere.
fn chromium() -> String {
    std::env::var("CHROME_BIN").unwrap_or_else(|_| "/usr/bin/chromium".into())
}

fn chromedriver() -> String {
    std::env::var("CHROMEDRIVER_BIN").unwrap_or_else(|_| "/usr/bin/chromedriver".into())
}
/// A laptop screen.
pub const DESKTOP: (u32, u32) = (1280, 900);
/// A phone in portrait (an iPhone 12-14 class viewport).
pub const PHONE: (u32, u32) = (390, 844);

fn missing(what: &str) -> ! {
    panic!(
        "the web UI tests need {what}, which is not installed or cannot start.\n\
         hint: run `scripts/test` (it installs `chromium` and `chromium-driver` with apt-get), \
         or `apt-get update && apt-get install -y chromium chromium-driver`"
    )
}

pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
    screenshots: PathBuf,
}

impl Browser {
    pub async fn start() -> Browser {
        let (chromium, chromedriver) = (chromium(), chromedriver());
        for (path, what) in [(&chromium, "Chromium"), (&chromedriver, "chromedriver")] {
            if !Path::new(path).exists() {
                missing(&format!("{what} (`{path}`)"));
            }
        }
        let port = {
            let probe = TcpListener::bind("127.0.0.1:0").expect("a free port");
            probe.local_addr().expect("an address").port()
        };
        // Its own process group, so that Chromium (chromedriver's child) goes with it even when a
        // failing test drops the browser without closing it.
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| missing(&format!("chromedriver ({e})")));
        let profile = tempfile::tempdir().expect("a temp dir");
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
                    "--hide-scrollbars",
                    format!("--user-data-dir={}", profile.path().display()),
                    format!("--window-size={},{}", DESKTOP.0, DESKTOP.1),
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
                Err(e) if Instant::now() > deadline => missing(&format!(
                    "a Chromium that starts under chromedriver (last error: {e})"
                )),
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
        let screenshots = screenshot_dir();
        std::fs::create_dir_all(&screenshots).expect("the screenshot dir");
        let browser = Browser {
            client,
            driver,
            _profile: profile,
            screenshots,
        };
        browser.resize(DESKTOP).await;
        browser
    }

    pub async fn resize(&self, (width, height): (u32, u32)) {
        self.client
            .set_window_size(width, height)
            .await
            .expect("the window can be resized");
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("the page loads");
    }

    pub async fn find(&self, css: &str) -> Element {
        match self.client.find(Locator::Css(css)).await {
            Ok(element) => element,
            Err(e) => panic!(
                "no `{css}` on {}: {e}\n{}",
                self.url().await,
                self.text().await
            ),
        }
    }

    pub async fn has(&self, css: &str) -> bool {
        self.client.find(Locator::Css(css)).await.is_ok()
    }

    /// Waits for an element, without touching the page (no reload).
    pub async fn wait_for(&self, css: &str, within: Duration) -> Element {
        match self
            .client
            .wait()
            .at_most(within)
            .every(Duration::from_millis(100))
            .for_element(Locator::Css(css))
            .await
        {
            Ok(element) => element,
            Err(e) => panic!(
                "`{css}` did not appear within {within:?} on {}: {e}\n{}",
                self.url().await,
                self.text().await
            ),
        }
    }

    pub async fn fill(&self, css: &str, text: &str) {
        let input = self.find(css).await;
        input.clear().await.expect("the input can be cleared");
        input.send_keys(text).await.expect("the input takes keys");
    }

    pub async fn click(&self, css: &str) {
        self.find(css)
            .await
            .click()
            .await
            .expect("the element can be clicked");
    }

    /// The visible text of the page.
    pub async fn text(&self) -> String {
        match self.client.find(Locator::Css("body")).await {
            Ok(body) => body.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    pub async fn source(&self) -> String {
        self.client.source().await.expect("the page source")
    }

    /// Waits until the current URL contains `part` (a form submission has navigated).
    pub async fn wait_url(&self, part: &str, within: Duration) {
        let deadline = std::time::Instant::now() + within;
        loop {
            let url = self.url().await;
            if url.contains(part) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the URL never contained `{part}`; it is {url}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn url(&self) -> String {
        self.client
            .current_url()
            .await
            .map(|u| u.to_string())
            .unwrap_or_default()
    }

    pub async fn path(&self) -> String {
        self.client
            .current_url()
            .await
            .map(|u| u.path().to_owned())
            .unwrap_or_default()
    }

    /// The text of the first element matching `css`, waiting for it to appear.
    pub async fn wait_text(&self, css: &str, within: Duration) -> String {
        self.wait_for(css, within)
            .await
            .text()
            .await
            .expect("the element has text")
    }

    /// Whether the page is wider than the window (it would scroll sideways).
    pub async fn overflows_sideways(&self) -> bool {
        self.client
            .execute(
                "return document.documentElement.scrollWidth > window.innerWidth;",
                vec![],
            )
            .await
            .expect("the page runs a script")
            == serde_json::json!(true)
    }

    /// Saves a screenshot of the whole page (the window grows to the page's height for it) as
    /// `target/ui-screenshots/NAME.png`.
    ///
    /// Each page is also checked for what the Content-Security-Policy would block: inline
    /// styles, inline scripts and event-handler attributes.
    pub async fn screenshot(&self, name: &str, (width, height): (u32, u32)) {
        let inline = self
            .client
            .execute(
                "return document.querySelectorAll('[style], script:not([src]), [onclick], [onload], [onsubmit]').length;",
                vec![],
            )
            .await
            .expect("the page runs a script");
        assert_eq!(inline, serde_json::json!(0), "{name}: nothing inline");
        // The window's height includes the browser's own frame: add it, so the viewport holds
        // the whole page.
        let full = self
            .client
            .execute(
                "return document.documentElement.scrollHeight + window.outerHeight - window.innerHeight;",
                vec![],
            )
            .await
            .ok()
            .and_then(|v| v.as_u64())
            .and_then(|h| u32::try_from(h).ok())
            .unwrap_or(height)
            .clamp(height, 4000);
        self.resize((width, full)).await;
        let png = self.client.screenshot().await.expect("a screenshot");
        self.resize((width, height)).await;
        let path = self.screenshots.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("the screenshot is saved");
        eprintln!("screenshot: {}", path.display());
    }

    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
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

/// `target/ui-screenshots`, found from this test binary's own path (`target/debug/deps/…`).
fn screenshot_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("target"))
        .join("ui-screenshots")
}
