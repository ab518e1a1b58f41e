//! End-to-end tests of ustack's WebSocket endpoints (issue 5) with real
//! clients — `tungstenite` from a thread inside the namespace, raw sockets
//! for the handshake errors, Python's `websockets` — over ustack's own TCP
//! on a TUN device in a per-test network namespace (see `common`).
//!
//! Endpoints: `/ws/echo`, `/ws/chat/<room>` (sub-protocol `chat.v1`; each
//! message goes to all OTHER members; join/leave JSON notices), `/ws/stats`
//! (the `/api/stats` JSON pushed once a second).
//!
//! Run as root (`sudo ./scripts/test.sh`); as a normal user they print
//! SKIPPED unless `USTACK_REQUIRE_E2E=1`.

mod common;

use common::*;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use tungstenite::client::IntoClientRequest;
use tungstenite::http::HeaderValue;
use tungstenite::protocol::frame::coding::{Data, OpCode};
use tungstenite::protocol::frame::Frame;
use tungstenite::{Message, WebSocket};

type Ws = WebSocket<TcpStream>;

/// Open a WebSocket to `path` (optionally offering `protocol`).
fn ws_connect(to: SocketAddr, path: &str, protocol: Option<&str>) -> (Ws, Option<String>) {
    let stream = connect(to);
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut req = format!("ws://{to}{path}").into_client_request().unwrap();
    if let Some(p) = protocol {
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_str(p).unwrap());
    }
    let (ws, resp) =
        tungstenite::client(req, stream).unwrap_or_else(|e| panic!("handshake {path}: {e}"));
    let proto = resp
        .headers()
        .get("Sec-WebSocket-Protocol")
        .map(|v| v.to_str().unwrap().to_string());
    (ws, proto)
}

/// The next data message (pings are answered by tungstenite; pongs skipped).
fn next_data(ws: &mut Ws) -> Message {
    loop {
        match ws.read().expect("read WebSocket message") {
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
            m => return m,
        }
    }
}

fn next_text(ws: &mut Ws) -> String {
    match next_data(ws) {
        Message::Text(t) => t.as_str().to_string(),
        m => panic!("expected a text message, got {m:?}"),
    }
}

/// A JSON field of a broker notice (they are flat and small).
fn json_field(doc: &str, key: &str) -> Option<String> {
    let pat = format!("\"{key}\":");
    let rest = &doc[doc.find(&pat)? + pat.len()..];
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    Some(rest[..end].trim_matches('"').to_string())
}

fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; len];
    Pattern::new(seed).fill(&mut v);
    v
}

// ---------------------------------------------------------------- echo

#[test]
fn echo_text_and_binary_of_many_sizes() {
    let Some(env) = e2e_env() else { return };
    let to = env.sock(80);
    env.in_ns(|| {
        let (mut ws, proto) = ws_connect(to, "/ws/echo", None);
        assert_eq!(proto, None);
        let t = Instant::now();
        for (i, &len) in [0usize, 1, 125, 126, 65535, 65536, 1 << 20, 16_000_000]
            .iter()
            .enumerate()
        {
            let bin = payload(len, i as u64);
            ws.send(Message::binary(bin.clone())).unwrap();
            match next_data(&mut ws) {
                Message::Binary(b) => {
                    assert!(b[..] == bin[..], "binary echo of {len} bytes differs")
                }
                m => panic!("binary {len}: got {m:?}"),
            }
            // Text: ASCII and multi-byte UTF-8 ("é" is 2 bytes, "€" 3).
            let mut s = String::with_capacity(len);
            for c in "é€x".chars().cycle() {
                if s.len() + c.len_utf8() > len {
                    break;
                }
                s.push(c);
            }
            while s.len() < len {
                s.push('x');
            }
            ws.send(Message::text(s.clone())).unwrap();
            assert_eq!(next_text(&mut ws), s, "text echo of {} bytes", s.len());
        }
        ws.close(None).unwrap();
        // The server answers the close; then the stream ends.
        loop {
            match ws.read() {
                Ok(_) => continue,
                Err(tungstenite::Error::ConnectionClosed) => break,
                Err(e) => panic!("after close: {e}"),
            }
        }
        eprintln!("echo sizes done in {:?}", t.elapsed());
    });
}

#[test]
fn echo_of_fragmented_messages_with_interleaved_ping() {
    let Some(env) = e2e_env() else { return };
    let to = env.sock(80);
    env.in_ns(|| {
        let (mut ws, _) = ws_connect(to, "/ws/echo", None);
        // Text in three fragments, a ping between two of them (RFC 6455 5.4:
        // control frames may be injected in the middle of a fragmented message).
        ws.write(Message::Frame(Frame::message(
            &b"Hel"[..],
            OpCode::Data(Data::Text),
            false,
        )))
        .unwrap();
        ws.write(Message::Frame(Frame::message(
            &b"lo, "[..],
            OpCode::Data(Data::Continue),
            false,
        )))
        .unwrap();
        ws.write(Message::Ping(b"p1".to_vec().into())).unwrap();
        // A 2-byte UTF-8 character split across two fragments.
        ws.write(Message::Frame(Frame::message(
            &b"w\xc3"[..],
            OpCode::Data(Data::Continue),
            false,
        )))
        .unwrap();
        ws.write(Message::Frame(Frame::message(
            &b"\xb6rld"[..],
            OpCode::Data(Data::Continue),
            true,
        )))
        .unwrap();
        ws.flush().unwrap();
        let mut got_pong = false;
        let text = loop {
            match ws.read().unwrap() {
                Message::Pong(p) => {
                    assert_eq!(&p[..], b"p1");
                    got_pong = true;
                }
                Message::Text(t) => break t.as_str().to_string(),
                m => panic!("unexpected {m:?}"),
            }
        };
        assert_eq!(text, "Hello, wörld");
        assert!(
            got_pong,
            "the ping inside the fragmented message was answered first"
        );

        // Binary: 300 KB in 3 fragments of 100 KB.
        let data = payload(300_000, 9);
        for (i, part) in data.chunks(100_000).enumerate() {
            let op = if i == 0 { Data::Binary } else { Data::Continue };
            ws.write(Message::Frame(Frame::message(
                part.to_vec(),
                OpCode::Data(op),
                i == 2,
            )))
            .unwrap();
        }
        ws.flush().unwrap();
        match next_data(&mut ws) {
            Message::Binary(b) => assert!(b[..] == data[..], "fragmented binary echo differs"),
            m => panic!("got {m:?}"),
        }
    });
}

// ---------------------------------------------------------------- handshake

/// Send a raw handshake request; return the response head (lowercased
/// header names are kept as sent; we search case-insensitively).
fn raw_handshake(to: SocketAddr, path: &str, extra: &str) -> String {
    let mut s = connect(to);
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n{extra}\r\n"
    )
    .unwrap();
    let mut r = BufReader::new(s);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).expect("read response head") == 0 {
            break;
        }
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    head
}

fn has_header(head: &str, name: &str, value: &str) -> bool {
    head.lines().any(|l| {
        l.split_once(':').is_some_and(|(n, v)| {
            n.trim().eq_ignore_ascii_case(name) && v.trim().eq_ignore_ascii_case(value)
        })
    })
}

const KEY: &str = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

#[test]
fn handshake_subprotocols_versions_and_bad_keys() {
    let Some(env) = e2e_env() else { return };
    let to = env.sock(80);
    env.in_ns(|| {
        // RFC 6455 1.3 example key → accept value.
        let ok = raw_handshake(
            to,
            "/ws/echo",
            &format!("{KEY}Sec-WebSocket-Version: 13\r\n"),
        );
        assert!(ok.starts_with("HTTP/1.1 101 "), "{ok}");
        assert!(
            has_header(&ok, "Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
            "{ok}"
        );

        // chat.v1 offered on /ws/chat → selected.
        let chat = raw_handshake(
            to,
            "/ws/chat/hs",
            &format!(
                "{KEY}Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: other, chat.v1\r\n"
            ),
        );
        assert!(chat.starts_with("HTTP/1.1 101 "), "{chat}");
        assert!(
            has_header(&chat, "Sec-WebSocket-Protocol", "chat.v1"),
            "{chat}"
        );

        // chat.v1 offered on /ws/echo → accepted without the header.
        let echo = raw_handshake(
            to,
            "/ws/echo",
            &format!("{KEY}Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: chat.v1\r\n"),
        );
        assert!(echo.starts_with("HTTP/1.1 101 "), "{echo}");
        assert!(
            !echo.to_ascii_lowercase().contains("sec-websocket-protocol"),
            "{echo}"
        );

        // Version 8 → 426 naming the version we speak (RFC 6455 4.4).
        let v8 = raw_handshake(
            to,
            "/ws/echo",
            &format!("{KEY}Sec-WebSocket-Version: 8\r\n"),
        );
        assert!(v8.starts_with("HTTP/1.1 426 "), "{v8}");
        assert!(has_header(&v8, "Sec-WebSocket-Version", "13"), "{v8}");

        // A key that is not 16 bytes in base64 → 400.
        for bad in ["c2hvcnQ=", "not base64 at all!!", ""] {
            let r = raw_handshake(
                to,
                "/ws/echo",
                &format!("Sec-WebSocket-Key: {bad}\r\nSec-WebSocket-Version: 13\r\n"),
            );
            assert!(r.starts_with("HTTP/1.1 400 "), "key {bad:?}: {r}");
        }
        // No key at all → 400.
        let r = raw_handshake(to, "/ws/echo", "Sec-WebSocket-Version: 13\r\n");
        assert!(r.starts_with("HTTP/1.1 400 "), "{r}");
        // Unknown endpoint → 404.
        let r = raw_handshake(
            to,
            "/ws/nope",
            &format!("{KEY}Sec-WebSocket-Version: 13\r\n"),
        );
        assert!(r.starts_with("HTTP/1.1 404 "), "{r}");
    });
}

#[test]
fn tungstenite_selects_chat_v1() {
    let Some(env) = e2e_env() else { return };
    let to = env.sock(80);
    env.in_ns(|| {
        let (_ws, proto) = ws_connect(to, "/ws/chat/lab", Some("chat.v1"));
        assert_eq!(proto.as_deref(), Some("chat.v1"));
        let (_ws, proto) = ws_connect(to, "/ws/echo", None);
        assert_eq!(proto, None);
    });
}

// ---------------------------------------------------------------- chat

#[test]
fn chat_room_relays_between_two_clients() {
    let Some(env) = e2e_env() else { return };
    let to = env.sock(80);
    env.in_ns(|| {
        let (mut a, pa) = ws_connect(to, "/ws/chat/lab", Some("chat.v1"));
        assert_eq!(pa.as_deref(), Some("chat.v1"));
        let ja = next_text(&mut a);
        assert_eq!(json_field(&ja, "type").as_deref(), Some("join"), "{ja}");
        assert_eq!(json_field(&ja, "room").as_deref(), Some("lab"), "{ja}");
        assert_eq!(json_field(&ja, "count").as_deref(), Some("1"), "{ja}");
        let id_a = json_field(&ja, "id").unwrap();

        let (mut b, _) = ws_connect(to, "/ws/chat/lab", Some("chat.v1"));
        // Both see B's join, with count 2.
        let jb = next_text(&mut b);
        let jb_at_a = next_text(&mut a);
        assert_eq!(jb, jb_at_a);
        assert_eq!(json_field(&jb, "count").as_deref(), Some("2"), "{jb}");
        let id_b = json_field(&jb, "id").unwrap();
        assert_ne!(id_a, id_b);

        // A client in another room hears nothing of this one.
        let (mut other, _) = ws_connect(to, "/ws/chat/elsewhere", Some("chat.v1"));
        let _own_join = next_text(&mut other);

        a.send(Message::text("hello from A")).unwrap();
        assert_eq!(next_text(&mut b), "hello from A");
        b.send(Message::binary(vec![1u8, 2, 3])).unwrap();
        match next_data(&mut a) {
            Message::Binary(d) => assert_eq!(&d[..], &[1, 2, 3]),
            m => panic!("{m:?}"),
        }
        b.send(Message::text("ping from B")).unwrap();
        assert_eq!(next_text(&mut a), "ping from B");

        // B leaves: A gets the leave notice.
        b.close(None).unwrap();
        let lv = next_text(&mut a);
        assert_eq!(json_field(&lv, "type").as_deref(), Some("leave"), "{lv}");
        assert_eq!(json_field(&lv, "id"), Some(id_b));
        assert_eq!(json_field(&lv, "count").as_deref(), Some("1"), "{lv}");

        // The other room got nothing: its next message is our probe's echo... there
        // is no echo in chat, so check that nothing arrives within 300 ms.
        other
            .get_ref()
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        match other.read() {
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            r => panic!("another room received {r:?}"),
        }
    });
}

// ---------------------------------------------------------------- stats push

#[test]
fn stats_are_pushed_every_second_unasked() {
    let Some(env) = e2e_env() else { return };
    let to = env.sock(80);
    env.in_ns(|| {
        let (mut ws, _) = ws_connect(to, "/ws/stats", None);
        let t0 = Instant::now();
        let mut times = Vec::new();
        let mut uptimes = Vec::new();
        for _ in 0..3 {
            let doc = next_text(&mut ws);
            times.push(t0.elapsed());
            assert!(doc.starts_with('{') && doc.ends_with('}'), "{doc}");
            for key in [
                "packets_in",
                "packets_out",
                "drops_total",
                "retransmissions",
                "connections_live",
            ] {
                assert!(doc.contains(&format!("\"{key}\":")), "{key} in {doc}");
            }
            uptimes.push(
                json_field(&doc, "uptime_ms")
                    .unwrap()
                    .parse::<u64>()
                    .unwrap(),
            );
        }
        assert!(
            times[0] < Duration::from_millis(500),
            "first push at once: {times:?}"
        );
        for w in times.windows(2) {
            let gap = w[1] - w[0];
            assert!(
                gap >= Duration::from_millis(700) && gap <= Duration::from_millis(2500),
                "pushes ~1 s apart: {times:?}"
            );
        }
        assert!(uptimes.windows(2).all(|w| w[1] > w[0]), "{uptimes:?}");
    });
}

// ---------------------------------------------------------------- Python websockets

/// `python3 -c "import websockets"` inside the namespace; SKIPPED (or a
/// failure under USTACK_REQUIRE_E2E=1) without it.
pub fn require_py_websockets(env: &Env) -> bool {
    if !require_tool("python3") {
        return false;
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
    }
    ok
}

#[test]
fn python_websockets_echo_and_chat() {
    let Some(env) = e2e_env() else { return };
    if !require_py_websockets(&env) {
        return;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/ws_client.py");
    let out = env.ns_cmd(&["timeout", "60", "python3", script, &env.addr.to_string()]);
    let so = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "ws_client.py failed:\n{so}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(so.contains("ws_client.py: OK"), "{so}");
    eprint!("{so}");
}

// ---------------------------------------------------------------- Autobahn

/// Autobahn|Testsuite, sections 1-11 (301 cases, no compression), against
/// `/ws/echo` over the TUN device: `scripts/autobahn-e2e.sh --quick` (its
/// own namespace and ustack process; it installs the suite on first use).
/// The full run (517 cases) is `sudo scripts/autobahn-e2e.sh`.
#[test]
fn autobahn_quick_over_tun() {
    let required = std::env::var("USTACK_REQUIRE_E2E").is_ok_and(|v| v == "1");
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        assert!(!required, "USTACK_REQUIRE_E2E=1 but not root");
        eprintln!("SKIPPED: needs root (CAP_NET_ADMIN)");
        return;
    }
    let has_py2 = std::process::Command::new("sh")
        .arg("-c")
        .arg("command -v python2.7 || test -x \"$(pyenv root 2>/dev/null)/versions/2.7.18/bin/python2.7\"")
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has_py2 {
        assert!(
            !required,
            "USTACK_REQUIRE_E2E=1 but no Python 2.7 for Autobahn|Testsuite (pyenv install 2.7.18)"
        );
        eprintln!("SKIPPED: needs Python 2.7 for Autobahn|Testsuite");
        return;
    }
    let outdir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("autobahn-quick");
    let out = std::process::Command::new("timeout")
        .args([
            "900",
            "bash",
            concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/autobahn-e2e.sh"),
        ])
        .args(["--quick", "--bin", env!("CARGO_BIN_EXE_ustack")])
        .env("OUTDIR", &outdir)
        .output()
        .expect("run scripts/autobahn-e2e.sh");
    let so = String::from_utf8_lossy(&out.stdout);
    let se = String::from_utf8_lossy(&out.stderr);
    eprintln!("{so}{se}");
    assert!(
        out.status.success(),
        "Autobahn (quick) failed; reports in {}",
        outdir.display()
    );
    assert!(so.contains("autobahn: 301 passed, 0 failed"), "{so}");
}
