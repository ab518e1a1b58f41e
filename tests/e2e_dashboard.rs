//! The live dashboard (`/dashboard`) in a real browser: headless Chromium
//! inside the test's namespace loads the page from ustack, while a slow
//! `curl --limit-rate` download is running; the test drives Chromium over
//! the DevTools protocol (CDP, a WebSocket: tungstenite), waits a few real
//! seconds so several `/ws/stats` pushes arrive, then checks the DOM (the
//! WebSocket is open, the download's connection is in the table as
//! ESTABLISHED, the plots are drawn, the transitions list shows the
//! handshake) and takes a screenshot, kept as an artifact in
//! `target/e2e-artifacts/dashboard.png` (`USTACK_DASHBOARD_PNG=path`
//! chooses another place, e.g. docs/img/dashboard.png).
//!
//! Needs root and chromium (SKIPPED otherwise, unless USTACK_REQUIRE_E2E=1).

mod common;

use base64::Engine as _;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tungstenite::Message;

/// Chromium's DevTools port inside the namespace (each test has its own
/// namespace, so the port cannot clash with anything).
const CDP_PORT: u16 = 9229;

struct Browser {
    child: Child,
    profile: PathBuf,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill(); // this PID only
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

fn start_chromium(env: &common::Env, url: &str) -> Browser {
    let profile = env.dir.join("chromium-profile");
    let child = Command::new("ip")
        .args(["netns", "exec", &env.ns, "chromium"])
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=1400,1250",
            &format!("--remote-debugging-port={CDP_PORT}"),
            &format!("--user-data-dir={}", profile.display()),
            url,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn chromium");
    Browser { child, profile }
}

/// GET a DevTools HTTP endpoint (`/json/list`).
fn http_get(path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", CDP_PORT)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    // The DevTools server keeps the connection open: read until the JSON
    // array is complete (or the server goes quiet).
    let mut body = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        body.extend_from_slice(&buf[..n]);
        if body.trim_ascii_end().ends_with(b"]") {
            break;
        }
    }
    Some(String::from_utf8_lossy(&body).into_owned())
}

/// The page target's WebSocket URL.
fn page_ws_url() -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(list) = http_get("/json/list") {
            // Each target is an object; take the one of type "page".
            for obj in list.split('{') {
                if obj.contains("\"type\": \"page\"") || obj.contains("\"type\":\"page\"") {
                    if let Some(i) = obj.find("ws://") {
                        let url: String = obj[i..].chars().take_while(|c| *c != '"').collect();
                        return url;
                    }
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "chromium's DevTools endpoint did not come up"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

struct Cdp {
    ws: tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>>,
    next_id: u32,
}

impl Cdp {
    /// Send a command and return the raw JSON of its reply.
    fn call(&mut self, method: &str, params: &str) -> String {
        self.next_id += 1;
        let id = self.next_id;
        let msg = format!("{{\"id\":{id},\"method\":\"{method}\",\"params\":{params}}}");
        self.ws.send(Message::text(msg)).expect("CDP send");
        let want = format!("{{\"id\":{id},");
        loop {
            match self.ws.read().expect("CDP read") {
                Message::Text(t) if t.as_str().starts_with(&want) => return t.as_str().to_string(),
                _ => {} // events and other replies
            }
        }
    }

    /// Evaluate a JavaScript expression that returns a string without quotes.
    fn eval(&mut self, expr: &str) -> String {
        let params = format!(
            "{{\"expression\":{},\"returnByValue\":true}}",
            json_string(expr)
        );
        let r = self.call("Runtime.evaluate", &params);
        let key = "\"value\":\"";
        let i = r
            .find(key)
            .unwrap_or_else(|| panic!("no string value in {r}"));
        r[i + key.len()..]
            .chars()
            .take_while(|c| *c != '"')
            .collect()
    }
}

fn json_string(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

#[test]
fn dashboard_shows_a_live_connection_in_headless_chromium() {
    if !common::require_tool("chromium") || !common::require_tool("curl") {
        return;
    }
    // Delay and a little loss make the plots worth looking at: cwnd grows,
    // falls on a loss, and the RTT is visible. The picture in the README
    // was taken by this test.
    let Some(env) = common::e2e_env_with(&["--no-offload", "--impair", "delay=15ms,out:loss=0.5%"])
    else {
        return;
    };
    let base = format!("http://{}", env.addr);
    // A slow download, running during the whole test.
    let mut curl = Command::new("ip")
        .args([
            "netns",
            "exec",
            &env.ns,
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "--limit-rate",
            "400k",
        ])
        .arg(format!("{base}/bytes/50000000"))
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn curl");
    let browser = start_chromium(&env, &format!("{base}/dashboard"));

    let (status, rows, plot_paths, transitions, png) = env.in_ns(|| {
        let url = page_ws_url();
        let tcp = TcpStream::connect(("127.0.0.1", CDP_PORT)).expect("connect to DevTools");
        let (ws, _) = tungstenite::client(url.as_str(), tungstenite::stream::MaybeTlsStream::Plain(tcp))
            .unwrap_or_else(|e| panic!("CDP WebSocket {url}: {e}"));
        let mut cdp = Cdp { ws, next_id: 0 };
        // Several pushes of /ws/stats (one per second).
        std::thread::sleep(Duration::from_secs(9));
        let status = cdp.eval("document.getElementById('status').dataset.ws");
        let rows = cdp.eval(
            "[...document.querySelectorAll('#conn-rows tr[data-key]')].map(r => r.dataset.state + ' ' + r.dataset.remote).join(';')",
        );
        let plot_paths = cdp.eval("String(document.querySelectorAll('#plot-seq path, #plot-cwnd path, #plot-rtt path').length)");
        let transitions = cdp.eval(
            "[...document.querySelectorAll('#transitions li[data-to]')].map(l => l.dataset.to).join(',')",
        );
        let shot = cdp.call("Page.captureScreenshot", "{\"format\":\"png\"}");
        let key = "\"data\":\"";
        let i = shot.find(key).expect("screenshot data");
        let b64: String = shot[i + key.len()..].chars().take_while(|c| *c != '"').collect();
        let png = base64::engine::general_purpose::STANDARD.decode(b64).expect("base64 PNG");
        (status, rows, plot_paths, transitions, png)
    });
    drop(browser);
    let _ = curl.kill(); // this PID only
    let _ = curl.wait();

    let out = std::env::var_os("USTACK_DASHBOARD_PNG")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("../e2e-artifacts/dashboard.png")
        });
    if let Some(dir) = out.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    std::fs::write(&out, &png).expect("write screenshot");
    eprintln!("dashboard screenshot: {}", out.display());

    assert_eq!(
        status, "open",
        "the page's WebSocket to /ws/stats is not open"
    );
    let kernel = env.kernel_addr.to_string();
    assert!(
        rows.split(';')
            .any(|r| r.starts_with("ESTABLISHED ") && r.contains(&kernel)),
        "no ESTABLISHED connection from {kernel} in the table: {rows:?}"
    );
    let paths: usize = plot_paths.parse().unwrap_or(0);
    assert!(paths >= 5, "plots not drawn ({paths} paths)");
    assert!(
        transitions.contains("ESTABLISHED"),
        "no transition to ESTABLISHED listed: {transitions:?}"
    );
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "screenshot too small to show anything"
    );
}
