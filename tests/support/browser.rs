//! Headless Chromium driven over WebDriver (Debian's `chromium` and `chromium-driver`): a
//! `chromedriver` process on a free 127.0.0.1 port, one session, and the few commands the
//! console tests need. The process is killed when the `Browser` is dropped.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};

use super::process::{free_port, log_file, Process};
use super::wait::{wait_until, WAIT_LIMIT};

/// The W3C name of an element reference in WebDriver answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A headless browser session.
pub struct Browser {
    base: String,
    session: String,
    client: reqwest::blocking::Client,
    _driver: Process,
    _profile: tempfile::TempDir,
}

/// An element found on the current page.
#[derive(Clone, Debug)]
pub struct Element(String);

/// Where a test's screenshots go: `target/console-screenshots/`.
pub fn screenshot_dir() -> PathBuf {
    let dir = super::process::repo_path("target/console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// True when `chromium` and `chromedriver` are installed.
pub fn available() -> bool {
    Path::new("/usr/bin/chromium").exists() && Path::new("/usr/bin/chromedriver").exists()
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a fresh profile, `width`x`height`.
    pub fn start(width: u32, height: u32) -> Browser {
        let port = free_port();
        let profile = tempfile::tempdir().unwrap();
        let mut cmd = std::process::Command::new("/usr/bin/chromedriver");
        cmd.arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdin(Stdio::null())
            .stdout(log_file(&profile.path().join("chromedriver.log")))
            .stderr(log_file(&profile.path().join("chromedriver.err")));
        let driver = Process::spawn("chromedriver", cmd);
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .unwrap();
        let ready = wait_until(WAIT_LIMIT, || {
            client
                .get(format!("{base}/status"))
                .send()
                .ok()
                .and_then(|r| r.json::<Value>().ok())
                .is_some_and(|v| v["value"]["ready"] == json!(true))
        });
        assert!(ready, "chromedriver did not become ready");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-first-run", "--disable-extensions", "--disable-background-networking",
                    "--disable-sync", "--disable-component-update", "--disable-default-apps",
                    "--no-proxy-server", "--password-store=basic",
                    format!("--window-size={width},{height}"),
                    format!("--user-data-dir={}", profile.path().join("profile").display()),
                ]
            }
        }}});
        let resp: Value = client
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .expect("new session")
            .json()
            .expect("new session answer");
        let session = resp["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {resp}"))
            .to_string();
        let b = Browser {
            base,
            session,
            client,
            _driver: driver,
            _profile: profile,
        };
        b.command(
            "POST",
            "timeouts",
            json!({"implicit": 5000, "pageLoad": 60000, "script": 30000}),
        );
        b
    }

    fn command(&self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}/session/{}/{path}", self.base, self.session);
        let req = match method {
            "GET" => self.client.get(url),
            "DELETE" => self.client.delete(url),
            _ => self.client.post(url).json(&body),
        };
        let resp: Value = req
            .send()
            .unwrap_or_else(|e| panic!("webdriver {path}: {e}"))
            .json()
            .unwrap_or_else(|e| panic!("webdriver {path}: {e}"));
        if let Some(err) = resp["value"].get("error") {
            panic!(
                "webdriver {path}: {err}: {}\npage: {}",
                resp["value"]["message"],
                self.url()
            );
        }
        resp["value"].clone()
    }

    /// Loads `url` and waits for it.
    pub fn goto(&self, url: &str) {
        self.command("POST", "url", json!({"url": url}));
    }

    /// The current URL.
    pub fn url(&self) -> String {
        let url = format!("{}/session/{}/url", self.base, self.session);
        self.client
            .get(url)
            .send()
            .ok()
            .and_then(|r| r.json::<Value>().ok())
            .and_then(|v| v["value"].as_str().map(str::to_string))
            .unwrap_or_default()
    }

    /// The page's title.
    pub fn title(&self) -> String {
        self.command("GET", "title", Value::Null)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The page's HTML.
    pub fn source(&self) -> String {
        self.command("GET", "source", Value::Null)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The first element matching a CSS selector (waiting up to the implicit wait); panics
    /// when there is none.
    pub fn find(&self, css: &str) -> Element {
        let v = self.command(
            "POST",
            "element",
            json!({"using": "css selector", "value": css}),
        );
        Element(v[ELEMENT].as_str().unwrap().to_string())
    }

    /// Every element matching a CSS selector (possibly none, after the implicit wait).
    pub fn find_all(&self, css: &str) -> Vec<Element> {
        let v = self.command(
            "POST",
            "elements",
            json!({"using": "css selector", "value": css}),
        );
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|e| Element(e[ELEMENT].as_str().unwrap().to_string()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Clicks an element.
    pub fn click(&self, e: &Element) {
        self.command("POST", &format!("element/{}/click", e.0), json!({}));
    }

    /// Types into an element (`\u{E007}` is Enter).
    pub fn type_into(&self, e: &Element, text: &str) {
        self.command(
            "POST",
            &format!("element/{}/value", e.0),
            json!({"text": text}),
        );
    }

    /// The rendered text of an element.
    pub fn text(&self, e: &Element) -> String {
        self.command("GET", &format!("element/{}/text", e.0), Value::Null)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// An attribute or property of an element.
    pub fn attribute(&self, e: &Element, name: &str) -> Option<String> {
        self.command(
            "GET",
            &format!("element/{}/property/{name}", e.0),
            Value::Null,
        )
        .as_str()
        .map(str::to_string)
    }

    /// The texts of every element matching `css`.
    pub fn texts(&self, css: &str) -> Vec<String> {
        self.find_all(css).iter().map(|e| self.text(e)).collect()
    }

    /// The element that has the keyboard focus.
    pub fn active(&self) -> Element {
        let v = self.command("GET", "element/active", Value::Null);
        Element(v[ELEMENT].as_str().unwrap().to_string())
    }

    /// Presses and releases each key of `keys` (`\u{E004}` is Tab, `\u{E007}` Enter) on the
    /// focused element, as a keyboard would.
    pub fn press(&self, keys: &str) {
        let actions: Vec<Value> = keys
            .chars()
            .flat_map(|k| {
                let k = k.to_string();
                [
                    json!({"type": "keyDown", "value": k}),
                    json!({"type": "keyUp", "value": k}),
                ]
            })
            .collect();
        self.command(
            "POST",
            "actions",
            json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]}),
        );
    }

    /// Runs a script in the page and returns its result.
    pub fn execute(&self, script: &str, args: Value) -> Value {
        self.command(
            "POST",
            "execute/sync",
            json!({"script": script, "args": args}),
        )
    }

    /// Resizes the window.
    pub fn resize(&self, width: u32, height: u32) {
        self.command(
            "POST",
            "window/rect",
            json!({"width": width, "height": height}),
        );
    }

    /// Saves a PNG of the viewport as `<screenshot_dir>/<name>.png`; returns its path.
    pub fn screenshot(&self, name: &str) -> PathBuf {
        let data = self.command("GET", "screenshot", Value::Null);
        let png = base64::engine::general_purpose::STANDARD
            .decode(data.as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        let path = screenshot_dir().join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let url = format!("{}/session/{}", self.base, self.session);
        let _ = self.client.delete(url).send();
    }
}
