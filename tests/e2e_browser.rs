//! End-to-end tests with a real browser: headless Chromium inside the test
//! namespace loads the demo site from ustack (HTTP over ustack's own TCP),
//! renders it, and chats through `/ws/chat/<room>` with a Python client.
//!
//! Artifacts (screenshots) are kept under `target/tmp/e2e-browser/`.
//!
//! Run as root (`sudo ./scripts/test.sh`); as a normal user they print
//! SKIPPED unless `USTACK_REQUIRE_E2E=1`. They also need `chromium`
//! (Debian package `chromium`) and, for the chat, Python's `websockets`.

mod common;

use common::*;
use std::path::PathBuf;

fn artifacts() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("e2e-browser");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The Chromium binary (Debian: `chromium`; elsewhere `chromium-browser`).
fn chromium() -> Option<&'static str> {
    for c in ["chromium", "chromium-browser"] {
        let found = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {c}"))
            .stdout(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if found {
            return Some(c);
        }
    }
    require_tool("chromium"); // prints SKIPPED or panics under USTACK_REQUIRE_E2E=1
    None
}

/// Chromium's flags for a clean, quiet, isolated headless run.
fn chromium_args(profile: &str) -> Vec<String> {
    [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("--user-data-dir={profile}")])
    .collect()
}

/// `--dump-dom` of the front page: the DOM after scripts ran contains the
/// heading and the chat UI; `--screenshot` keeps a picture of it.
#[test]
fn chromium_renders_the_front_page() {
    let Some(env) = e2e_env() else { return };
    let Some(chromium) = chromium() else { return };
    let url = format!("http://{}/", env.addr);

    let profile = env.dir.join("chromium-profile");
    let mut argv: Vec<String> = vec!["timeout".into(), "90".into(), chromium.into()];
    argv.extend(chromium_args(profile.to_str().unwrap()));
    argv.extend([
        "--virtual-time-budget=3000".into(),
        "--dump-dom".into(),
        url.clone(),
    ]);
    let argv_ref: Vec<&str> = argv.iter().map(String::as_str).collect();
    let out = env.ns_cmd(&argv_ref);
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "chromium --dump-dom: {}\n{dom}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        dom.contains("<h1>ustack</h1>"),
        "heading in the DOM:\n{dom}"
    );
    assert!(
        dom.contains("id=\"messages\""),
        "chat UI in the DOM:\n{dom}"
    );
    // chat.js ran: the stats panel was connected to /ws/stats.
    assert!(
        !dom.contains("connecting to <code>/ws/stats</code>"),
        "the page's script ran and opened /ws/stats:\n{dom}"
    );

    let shot = artifacts().join("front.png");
    let _ = std::fs::remove_file(&shot);
    let profile = env.dir.join("chromium-profile-2");
    let mut argv: Vec<String> = vec!["timeout".into(), "90".into(), chromium.into()];
    argv.extend(chromium_args(profile.to_str().unwrap()));
    argv.extend([
        "--window-size=1100,900".into(),
        "--virtual-time-budget=3000".into(),
        format!("--screenshot={}", shot.display()),
        url,
    ]);
    let argv_ref: Vec<&str> = argv.iter().map(String::as_str).collect();
    let out = env.ns_cmd(&argv_ref);
    assert!(
        out.status.success(),
        "chromium --screenshot: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 5000,
        "a real PNG"
    );
    eprintln!("screenshot: {}", shot.display());
}

/// The browser joins a chat room and exchanges messages with a Python
/// client through ustack (driven over the DevTools protocol).
#[test]
fn chromium_chats_with_a_python_client() {
    let Some(env) = e2e_env() else { return };
    let Some(chromium) = chromium() else { return };
    if !require_tool("python3") {
        return;
    }
    let ok = env
        .ns_cmd(&["python3", "-c", "import websockets"])
        .status
        .success();
    if !ok {
        if std::env::var("USTACK_REQUIRE_E2E").is_ok_and(|v| v == "1") {
            panic!("USTACK_REQUIRE_E2E=1 but Python's `websockets` is not installed (pip install websockets)");
        }
        eprintln!("SKIPPED: needs Python's `websockets` (pip install websockets)");
        return;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/browser_chat.py");
    let out_dir = artifacts();
    let out = env.ns_cmd(&[
        "timeout",
        "120",
        "python3",
        script,
        &env.addr.to_string(),
        chromium,
        out_dir.to_str().unwrap(),
    ]);
    let so = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "browser_chat.py failed:\n{so}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(so.contains("browser_chat.py: OK"), "{so}");
    assert!(so.contains("hello from python"), "{so}");
    eprintln!("screenshot: {}", out_dir.join("chat.png").display());
}
