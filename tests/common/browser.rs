//! A real browser for the web console's tests: Debian's headless Chromium driven over WebDriver
//! (its `chromedriver`) by fantoccini.
//!
//! Chromium and chromedriver are installed with apt when they are missing and the test runs as
//! root (as the bwrap runtime installs bubblewrap); otherwise the test fails with the command
//! to run: a browser test that skips itself would pass without testing anything.
//!
//! Every wait here is bounded and its failure prints what the page showed (its text and its
//! HTML), the first thing the reader of a failure needs. The test side polls the browser; the
//! page itself never polls the core (it has the live stream).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use tempfile::TempDir;

/// Where Debian's `chromium` package puts the browser.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// Where Debian's `chromium-driver` package puts the driver.
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The apt command that installs both (what `.ci/run` runs), with a colour emoji font so that
/// the screenshots show the ✅ and ❌ the pages carry (without it they are boxes; nothing else
/// depends on it).
pub const PACKAGES: [&str; 3] = ["chromium", "chromium-driver", "fonts-noto-color-emoji"];
/// How long any wait for the page lasts before it fails.
pub const WAIT: Duration = Duration::from_secs(45);

/// Where screenshots go: outside git, in the target dir, one file per name.
pub fn screenshot_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_TARGET_TMPDIR"), "/console-screenshots"))
}

/// Finds Chromium and chromedriver, installing Debian's packages with apt when they are missing
/// and this test runs as root with apt-get; otherwise fails, saying what to install. One test
/// at a time installs (the others wait for it).
pub fn ensure_installed() {
    static INSTALLING: Mutex<()> = Mutex::new(());
    let _one = INSTALLING.lock().unwrap_or_else(|e| e.into_inner());
    let present = || Path::new(CHROMIUM).is_file() && Path::new(CHROMEDRIVER).is_file();
    if present() {
        return;
    }
    super::apt::install(
        &PACKAGES,
        &format!(
            "the browser tests need Debian's chromium and chromium-driver ({CHROMIUM}, {CHROMEDRIVER})"
        ),
    );
    assert!(
        present(),
        "the packages are installed but {CHROMIUM} or {CHROMEDRIVER} is still missing"
    );
}

/// A chromedriver on a loopback port of its own, with one headless Chromium session. Dropping
/// it ends the driver and the browser it started (their own process group).
pub struct Browser {
    pub client: Client,
    driver: Child,
    /// Chromium's profile: fresh for each browser, so no cookie or cache crosses tests.
    _profile: TempDir,
}

impl Browser {
    /// Starts chromedriver, waits until it answers `/status`, and opens a browser session.
    pub async fn start() -> Self {
        ensure_installed();
        let port = super::free_port();
        let mut driver = {
            use std::os::unix::process::CommandExt;
            Command::new(CHROMEDRIVER)
                .arg(format!("--port={port}"))
                .arg("--allowed-ips=127.0.0.1")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                // Its own process group, so that the drop ends Chromium with it.
                .process_group(0)
                .spawn()
                .expect("chromedriver starts")
        };
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + WAIT;
        loop {
            let ready = match http.get(format!("{base}/status")).send().await {
                Ok(r) => r
                    .json::<Value>()
                    .await
                    .is_ok_and(|v| v["value"]["ready"] == true),
                Err(_) => false,
            };
            if ready {
                break;
            }
            if let Some(status) = driver.try_wait().expect("chromedriver waits") {
                panic!("chromedriver exited before it was ready ({status})");
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver on port {port} did not answer /status in {WAIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = tempfile::tempdir().expect("a profile dir");
        let args = [
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            // This machine's network is closed: Chromium's own connections (updates, sync,
            // field trials) would be refused and slow everything down.
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            format!("--user-data-dir={}", profile.path().display()),
            "--window-size=1400,1000".to_owned(),
        ];
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({"binary": CHROMIUM, "args": args}),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&base)
            .await
            .unwrap_or_else(|e| panic!("no Chromium session from chromedriver at {base}: {e}"));
        Self {
            client,
            driver,
            _profile: profile,
        }
    }

    /// Opens `url` and waits until it has loaded.
    pub async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("cannot open {url}: {e}"));
    }

    /// The page's URL now.
    pub async fn url(&self) -> String {
        self.client.current_url().await.expect("a URL").to_string()
    }

    /// What the page shows, for a failure message: its URL, text and HTML (each bounded).
    pub async fn describe(&self) -> String {
        let url = self.client.current_url().await.map(|u| u.to_string());
        let text = self
            .js("return document.body ? document.body.innerText : ''")
            .await;
        let html = self.client.source().await.unwrap_or_default();
        format!(
            "--- the page: {} ---\n--- its text ---\n{}\n--- its HTML ---\n{}\n",
            url.unwrap_or_else(|e| format!("(no URL: {e})")),
            bounded(text.as_str().unwrap_or_default(), 6000),
            bounded(&html, 20000)
        )
    }

    /// Runs `script` (a function body: `return …` gives the value) in the page.
    pub async fn js(&self, script: &str) -> Value {
        self.client
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Waits until the element `css` is in the page and returns it; fails with `what` and the
    /// page after [`WAIT`].
    pub async fn wait_for(&self, css: &str, what: &str) -> Element {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(e) = self.client.find(Locator::Css(css)).await {
                return e;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out waiting for {what} (`{css}`)\n{}",
                    self.describe().await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until no element matches `css`.
    pub async fn wait_gone(&self, css: &str, what: &str) {
        self.wait_js(
            &format!("return document.querySelector({}) === null", json!(css)),
            what,
        )
        .await;
    }

    /// Waits until the script `script` (a function body) returns `true`.
    pub async fn wait_js(&self, script: &str, what: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            if self.js(script).await == Value::Bool(true) {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out waiting for {what} (`{script}`)\n{}",
                    self.describe().await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the element `css` contains `needle` in its text; returns that text.
    pub async fn wait_text(&self, css: &str, needle: &str, what: &str) -> String {
        let script = format!(
            "const e = document.querySelector({}); return e !== null && e.innerText.includes({})",
            json!(css),
            json!(needle)
        );
        self.wait_js(&script, what).await;
        self.text(css).await
    }

    /// The text of the element `css` (which must be there). The live page replaces elements
    /// as events arrive: an element found, then replaced before its text is read, is "stale"
    /// (a CI run failed that way), so it is found again, a few times.
    pub async fn text(&self, css: &str) -> String {
        let mut tries = 0;
        loop {
            let e = self.wait_for(css, css).await;
            match e.text().await {
                Ok(t) => return t,
                Err(err) if tries < 20 && err.to_string().contains("stale element") => {
                    tries += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Err(err) => panic!("text of {css}: {err}"),
            }
        }
    }

    /// Whether an element matches `css` now (no wait).
    pub async fn has(&self, css: &str) -> bool {
        self.client.find(Locator::Css(css)).await.is_ok()
    }

    /// Clicks the element `css`, once it is there.
    pub async fn click(&self, css: &str) {
        let e = self.wait_for(css, css).await;
        if let Err(err) = e.click().await {
            panic!("cannot click {css}: {err}\n{}", self.describe().await);
        }
    }

    /// Types `text` into the input `css`.
    pub async fn type_into(&self, css: &str, text: &str) {
        let e = self.wait_for(css, css).await;
        e.send_keys(text)
            .await
            .unwrap_or_else(|err| panic!("cannot type into {css}: {err}"));
    }

    /// The value of cookie `name` as the browser holds it (HttpOnly ones too), if any.
    pub async fn cookie(&self, name: &str) -> Option<fantoccini::cookies::Cookie<'static>> {
        self.client.get_named_cookie(name).await.ok()
    }

    /// Counts every `fetch` and `XMLHttpRequest` the page makes from now on into
    /// `window.__posts` (their URLs): how a test knows that nothing was posted. Called again on
    /// the same page, it empties the count (the page's functions are wrapped once).
    pub async fn count_posts(&self) {
        self.js(
            "window.__posts = [];
             if (window.__counting) { return true; }
             window.__counting = true;
             const f = window.fetch;
             window.fetch = function (u, o) { window.__posts.push(String(u && u.url || u)); return f.apply(this, arguments); };
             const open = XMLHttpRequest.prototype.open;
             XMLHttpRequest.prototype.open = function (m, u) { window.__posts.push(String(u)); return open.apply(this, arguments); };
             return true",
        )
        .await;
    }

    /// The URLs counted since [`Browser::count_posts`].
    pub async fn posts(&self) -> Vec<String> {
        match self.js("return window.__posts || null").await {
            Value::Array(a) => a
                .into_iter()
                .map(|v| v.as_str().unwrap_or_default().to_owned())
                .collect(),
            other => panic!("posts are not counted on this page (was it reloaded?): {other}"),
        }
    }

    /// Saves a screenshot of the window as `<target tmp>/console-screenshots/<name>.png`,
    /// prints the path and returns it.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self
            .client
            .screenshot()
            .await
            .unwrap_or_else(|e| panic!("screenshot {name}: {e}"));
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).expect("the screenshot dir");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, &png).expect("the screenshot is written");
        eprintln!("screenshot: {}", path.display());
        path
    }

    /// Ends the browser session (Chromium exits), then the driver.
    pub async fn close(self) {
        // Dropping ends the driver whatever the session's close says.
        if let Err(e) = self.client.clone().close().await {
            eprintln!("browser: closing the session: {e}");
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The driver and every browser process it started: their own group.
        let group = nix::unistd::Pid::from_raw(self.driver.id() as i32);
        if let Err(e) = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL) {
            eprintln!("browser: ending chromedriver's group: {e}");
        }
        if let Err(e) = self.driver.wait() {
            eprintln!("browser: waiting for chromedriver: {e}");
        }
    }
}

/// At most `max` bytes of `s` (cut at a char boundary), with a mark where it was cut.
fn bounded(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes more)", &s[..end], s.len() - end)
}
