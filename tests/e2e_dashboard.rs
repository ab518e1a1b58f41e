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
//! The second test checks the live ladder diagram: the test opens an HTTP
//! keep-alive connection and a WebSocket to ustack while the dashboard is
//! open, selects each in the table, and reads the diagram's arrows from the
//! DOM (handshake, request and response with their HTTP labels, the
//! WebSocket upgrade and frames, a frame sent after the selection);
//! screenshot in `target/e2e-artifacts/dashboard-ladder.png`. The third
//! checks, without a browser, that `GET /api/ladder` marks the
//! retransmissions of a download through `--impair out:loss=10%`.
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

    /// Evaluate an expression (a string, or a promise of one) and return
    /// the string, escapes decoded.
    fn eval_text(&mut self, expr: &str) -> String {
        let params = format!(
            "{{\"expression\":{},\"returnByValue\":true,\"awaitPromise\":true}}",
            json_string(expr)
        );
        let r = self.call("Runtime.evaluate", &params);
        let key = "\"value\":\"";
        let i = r
            .find(key)
            .unwrap_or_else(|| panic!("no string value in {r}"));
        json_unescape(&r[i + key.len()..])
    }

    /// Evaluate `expr` every 300 ms until `ok` accepts its value (or panic
    /// after `secs` seconds with the last value).
    fn wait_for(&mut self, what: &str, secs: u64, expr: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        // The page may still be loading: an exception is a value too.
        let guarded = format!("(() => {{ try {{ return String({expr}); }} catch (e) {{ return 'error: ' + e; }} }})()");
        loop {
            let v = self.eval_text(&guarded);
            if ok(&v) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: still {v:?} after {secs} s"
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    fn screenshot(&mut self) -> Vec<u8> {
        let shot = self.call("Page.captureScreenshot", "{\"format\":\"png\"}");
        let key = "\"data\":\"";
        let i = shot.find(key).expect("screenshot data");
        let b64: String = shot[i + key.len()..]
            .chars()
            .take_while(|c| *c != '"')
            .collect();
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("base64 PNG")
    }
}

/// Decode a JSON string body (after the opening quote) up to its closing quote.
fn json_unescape(s: &str) -> String {
    let mut out = String::new();
    let mut it = s.chars();
    while let Some(c) = it.next() {
        match c {
            '"' => break,
            '\\' => match it.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('r') => out.push('\r'),
                Some('u') => {
                    let hex: String = it.by_ref().take(4).collect();
                    if let Some(ch) = u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                        out.push(ch);
                    }
                }
                Some(other) => out.push(other),
                None => break,
            },
            c => out.push(c),
        }
    }
    out
}

/// Where a screenshot artifact goes: `target/e2e-artifacts/NAME`.
fn artifact(name: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("../e2e-artifacts")
        .join(name);
    if let Some(dir) = p.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    p
}

/// One HTTP/1.1 request on a keep-alive connection; returns the head and
/// the body (the response must have a Content-Length).
fn http_request(s: &mut TcpStream, path: &str) -> (String, Vec<u8>) {
    // One write, so the request is one segment (the ladder labels it).
    let req = format!("GET {path} HTTP/1.1\r\nHost: ustack\r\n\r\n");
    s.write_all(req.as_bytes()).expect("send request");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .expect("Content-Length");
            while buf.len() < end + 4 + len {
                let n = s.read(&mut chunk).expect("read body");
                assert!(n > 0, "EOF in the body of {path}");
                buf.extend_from_slice(&chunk[..n]);
            }
            return (head, buf[end + 4..end + 4 + len].to_vec());
        }
        let n = s.read(&mut chunk).expect("read head");
        assert!(n > 0, "EOF before the head of {path}");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The ladder's arrows as the page shows them: one line per segment, the
/// TCP label, then ` | ` and the marks line (tags, application content).
const LADDER_ROWS: &str = "(() => { const r = document.getElementById('ladder').shadowRoot; \
    if (!r) return ''; \
    return [...r.querySelectorAll('svg g')].map(g => [...g.querySelectorAll('text.lbl')] \
      .map(t => t.textContent).join(' | ')).join('\\n'); })()";

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

#[test]
fn dashboard_draws_the_ladder_of_a_selected_connection() {
    if !common::require_tool("chromium") {
        return;
    }
    let Some(env) = common::e2e_env_with(&["--no-offload"]) else {
        return;
    };
    let base = format!("http://{}", env.addr);
    let browser = start_chromium(&env, &format!("{base}/dashboard"));
    let sock = env.sock(80);
    let addr = env.addr;

    let (http_rows, ws_rows, later_rows, status, json_check, png) = env.in_ns(|| {
        let url = page_ws_url();
        let tcp = TcpStream::connect(("127.0.0.1", CDP_PORT)).expect("connect to DevTools");
        let (ws, _) = tungstenite::client(url.as_str(), tungstenite::stream::MaybeTlsStream::Plain(tcp))
            .unwrap_or_else(|e| panic!("CDP WebSocket {url}: {e}"));
        let mut cdp = Cdp { ws, next_id: 0 };
        // The dashboard is connected: from now on ustack records segments.
        cdp.wait_for("the page's /ws/stats", 20, "document.getElementById('status').dataset.ws", |v| v == "open");

        // Our connections, opened after the dashboard.
        let mut http = common::connect(sock);
        let (head, body) = http_request(&mut http, "/bytes/3000");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert_eq!(body.len(), 3000);
        let http_peer = http.local_addr().unwrap().to_string();
        let ws_tcp = common::connect(sock);
        let ws_peer = ws_tcp.local_addr().unwrap().to_string();
        let (mut wsc, _) = tungstenite::client(format!("ws://{addr}/ws/echo").as_str(), ws_tcp)
            .expect("WebSocket to /ws/echo");
        wsc.send(Message::text("hello ladder")).expect("ws send");
        assert_eq!(wsc.read().expect("ws echo").into_text().unwrap().as_str(), "hello ladder");

        // Select the HTTP connection in the table and read its ladder.
        let row = |peer: &str| format!("document.querySelector('#conn-rows tr[data-remote=\\'{peer}\\']')");
        cdp.wait_for("the HTTP connection's row", 15, &format!("String(!!{})", row(&http_peer)), |v| v == "true");
        cdp.eval_text(&format!("{}.click(), 'ok'", row(&http_peer)));
        let http_rows = cdp.wait_for("the HTTP connection's ladder", 15, LADDER_ROWS, |v| {
            v.lines().count() >= 6 && v.contains("HTTP/1.1 200 OK")
        });
        let status = cdp.eval_text("document.getElementById('ladder-status').textContent");
        // The JSON form of the same ladder parses, and has the handshake.
        let json_check = cdp.eval_text(&format!(
            "fetch('/api/ladder?port={}&format=json').then(r => r.json()).then(j => j.segments.slice(0, 3).map(s => s.flags).join(','))",
            http_peer.rsplit(':').next().unwrap()
        ));

        // Then the WebSocket; a frame sent after the selection shows up live.
        cdp.wait_for("the WebSocket's row", 15, &format!("String(!!{})", row(&ws_peer)), |v| v == "true");
        cdp.eval_text(&format!("{}.click(), 'ok'", row(&ws_peer)));
        let ws_rows = cdp.wait_for("the WebSocket's ladder", 15, LADDER_ROWS, |v| v.contains("WebSocket accepted"));
        wsc.send(Message::text("sent while watched")).expect("ws send");
        assert_eq!(wsc.read().expect("ws echo").into_text().unwrap().as_str(), "sent while watched");
        let later_rows = cdp.wait_for("the new frame in the ladder", 15, LADDER_ROWS, |v| v.contains("sent while wat"));

        cdp.eval_text("document.getElementById('ladder-panel').scrollIntoView(), 'ok'");
        std::thread::sleep(Duration::from_millis(500));
        let png = cdp.screenshot();
        drop(wsc);
        drop(http);
        (http_rows, ws_rows, later_rows, status, json_check, png)
    });
    drop(browser);

    let out = artifact("dashboard-ladder.png");
    std::fs::write(&out, &png).expect("write screenshot");
    eprintln!("dashboard ladder screenshot: {}", out.display());
    eprintln!("HTTP connection's ladder:\n{http_rows}\nWebSocket's ladder:\n{later_rows}");

    // The handshake, in order, with relative numbers and options.
    let rows: Vec<&str> = http_rows.lines().collect();
    assert!(
        rows[0].starts_with("SYN seq=0 win=") && rows[0].contains("[mss "),
        "{rows:?}"
    );
    assert!(rows[1].starts_with("SYN-ACK seq=0 ack=1 "), "{rows:?}");
    assert!(rows[2].starts_with("ACK seq=1 ack=1 "), "{rows:?}");
    // The request and the response, labelled by the HTTP recognizer.
    assert!(
        rows.iter()
            .any(|r| r.starts_with("PSH-ACK seq=1:") && r.contains("\"GET /bytes/3000 HTTP/1.1\"")),
        "{rows:?}"
    );
    assert!(
        rows.iter()
            .any(|r| r.contains("len=") && r.contains("\"HTTP/1.1 200 OK\"")),
        "{rows:?}"
    );
    assert!(
        status.contains("ESTABLISHED") && status.contains("segments recorded"),
        "{status}"
    );
    assert_eq!(json_check, "SYN,SYN-ACK,ACK");
    // The WebSocket: upgrade, accept, frames (the client masks its frames).
    assert!(
        ws_rows.contains("\"GET /ws/echo HTTP/1.1\"") && ws_rows.contains("WebSocket upgrade"),
        "{ws_rows}"
    );
    assert!(
        ws_rows.contains("\"HTTP/1.1 101 Switching Protocols\"  WebSocket accepted"),
        "{ws_rows}"
    );
    assert!(
        ws_rows.contains("WS text FIN masked len=12 \"hello ladder\""),
        "{ws_rows}"
    );
    assert!(
        ws_rows.contains("WS text FIN len=12 \"hello ladder\""),
        "{ws_rows}"
    );
    assert!(
        later_rows.contains("WS text FIN masked len=18 \"sent while watched\""),
        "{later_rows}"
    );
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "screenshot too small to show anything"
    );
}

#[test]
fn api_ladder_marks_retransmissions_of_a_lossy_download() {
    let Some(env) = common::e2e_env_with(&["--no-offload", "--impair", "out:loss=10%"]) else {
        return;
    };
    let sock = env.sock(80);
    let (ladder, retransmissions) = env.in_ns(|| {
        let mut api = common::connect(sock);
        // Nothing is recording yet (no dashboard): this request arms it.
        let (head, _) = http_request(&mut api, "/api/ladder?conn=999999");
        assert!(head.starts_with("HTTP/1.1 404"), "{head}");
        let mut dl = common::connect(sock);
        let port = dl.local_addr().unwrap().port();
        let (head, body) = http_request(&mut dl, "/bytes/200000");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert_eq!(body.len(), 200_000);
        let (head, text) = http_request(
            &mut api,
            &format!("/api/ladder?port={port}&format=text&max=2000"),
        );
        assert!(
            head.starts_with("HTTP/1.1 200") && head.contains("text/plain"),
            "{head}"
        );
        let (head, json) = http_request(
            &mut api,
            &format!("/api/ladder?port={port}&format=json&max=2000"),
        );
        assert!(head.contains("application/json"), "{head}");
        let json = String::from_utf8(json).unwrap();
        (
            String::from_utf8(text).unwrap(),
            json.matches("\"RETRANS\"").count(),
        )
    });
    let stats = env.stats();
    eprintln!("{ladder}");
    let sent = stats.get("retransmissions").copied().unwrap_or(0);
    assert!(sent > 0, "the loss caused no retransmission: {stats:?}");
    let lines: Vec<&str> = ladder.lines().collect();
    assert!(
        lines.iter().any(|l| l.contains("---- SYN seq=0")),
        "no SYN:\n{ladder}"
    );
    let marked: Vec<&&str> = lines
        .iter()
        .filter(|l| {
            l.contains("*RETRANS*") && l.contains("(stack: retransmitted)") && l.contains("<---")
        })
        .collect();
    assert!(!marked.is_empty(), "no retransmission marked:\n{ladder}");
    assert!(
        retransmissions >= marked.len(),
        "JSON has {retransmissions} RETRANS tags"
    );
}
