//! End-to-end tests of ustack's HTTP/1.1 server (issue 4) with real clients
//! — curl, Python's `http.client`, raw sockets, wrk, 1,000 concurrent
//! connections — talking to ustack's own TCP over a TUN device in a
//! per-test network namespace (see `common`).
//!
//! Run as root (`sudo ./scripts/test.sh`); as a normal user they print
//! SKIPPED unless `USTACK_REQUIRE_E2E=1`.

mod common;

use common::*;
use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------- helpers

/// The embedded front page, byte for byte.
const INDEX_HTML: &[u8] = include_bytes!("../www/index.html");

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `curl` inside the namespace, always with a time limit.
fn curl(env: &Env, args: &[&str]) -> Output {
    let mut argv = vec!["curl", "-sS", "--max-time", "60"];
    argv.extend_from_slice(args);
    env.ns_cmd(&argv)
}

fn url(env: &Env, path: &str) -> String {
    format!("http://{}{}", env.addr, path)
}

/// `bash -o pipefail -c SCRIPT` inside the namespace (3 minutes at most).
fn ns_sh(env: &Env, script: &str) -> Output {
    env.ns_cmd(&["timeout", "180", "bash", "-o", "pipefail", "-c", script])
}

/// SHA-256 (hex) of `/bytes/n`, from the documented algorithm.
fn bytes_sha256(n: u64) -> String {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut off = 0u64;
    while off < n {
        let len = (n - off).min(buf.len() as u64) as usize;
        ustack::http::bytes_body(n, off, &mut buf[..len]);
        h.update(&buf[..len]);
        off += len as u64;
    }
    hex(&h.finalize())
}

fn bytes_of(n: u64, offset: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    ustack::http::bytes_body(n, offset, &mut v);
    v
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A parsed HTTP response (from a raw socket).
#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Read one response; `head_only` for answers to HEAD (no body despite
/// `Content-Length`). Every response of ustack has a `Content-Length`.
fn read_response(r: &mut BufReader<TcpStream>, head_only: bool) -> Resp {
    let mut line = String::new();
    r.read_line(&mut line).expect("read status line");
    assert!(line.starts_with("HTTP/1."), "status line: {line:?}");
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("status line: {line:?}"));
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).expect("read header line");
        let h = h.trim_end_matches(['\r', '\n']);
        if h.is_empty() {
            break;
        }
        let (n, v) = h.split_once(':').unwrap_or_else(|| panic!("header {h:?}"));
        headers.push((n.trim().to_string(), v.trim().to_string()));
    }
    let mut resp = Resp {
        status,
        headers,
        body: Vec::new(),
    };
    let no_body = head_only || status == 304 || status == 204 || (100..200).contains(&status);
    if !no_body {
        let len: usize = resp
            .header("Content-Length")
            .expect("Content-Length")
            .parse()
            .unwrap();
        resp.body = vec![0; len];
        r.read_exact(&mut resp.body).expect("read body");
    }
    resp
}

fn conn(to: SocketAddr) -> (TcpStream, BufReader<TcpStream>) {
    let s = connect(to);
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let r = BufReader::new(s.try_clone().unwrap());
    (s, r)
}

/// True if the server closed the connection (EOF) within `within`.
fn sees_eof(r: &mut BufReader<TcpStream>, within: Duration) -> bool {
    r.get_ref().set_read_timeout(Some(within)).unwrap();
    let mut b = [0u8; 1];
    matches!(r.read(&mut b), Ok(0))
}

// ---------------------------------------------------------------- curl

#[test]
fn curl_get_front_page() {
    let Some(env) = e2e_env() else { return };
    if !require_tool("curl") {
        return;
    }
    let head = env.dir.join("head");
    let body = env.dir.join("body");
    let out = curl(
        &env,
        &[
            "-D",
            head.to_str().unwrap(),
            "-o",
            body.to_str().unwrap(),
            &url(&env, "/"),
        ],
    );
    assert!(out.status.success(), "curl: {}", text(&out.stderr));
    let head = std::fs::read_to_string(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(
        lower.contains("\r\ncontent-type: text/html; charset=utf-8\r\n"),
        "{head}"
    );
    assert!(
        lower.contains(&format!("\r\ncontent-length: {}\r\n", INDEX_HTML.len())),
        "{head}"
    );
    assert!(lower.contains("\r\netag: \""), "{head}");
    let body = std::fs::read(body).unwrap();
    assert_eq!(body, INDEX_HTML, "the page is the embedded www/index.html");
    assert!(text(&body).contains("<h1>ustack</h1>"));
}

#[test]
fn curl_head_has_headers_but_no_body() {
    let Some(env) = e2e_env() else { return };
    if !require_tool("curl") {
        return;
    }
    let out = curl(&env, &["-I", &url(&env, "/bytes/12345")]);
    assert!(out.status.success(), "curl: {}", text(&out.stderr));
    let head = text(&out.stdout).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200 ok\r\n"), "{head}");
    assert!(head.contains("\r\ncontent-length: 12345\r\n"), "{head}");
    assert!(
        head.contains("\r\ncontent-type: application/octet-stream\r\n"),
        "{head}"
    );
    // On the wire: HEAD then GET on one connection; the GET's response
    // starts right after the HEAD's head, so the HEAD sent no body.
    let to = env.sock(80);
    env.in_ns(|| {
        let (mut s, mut r) = conn(to);
        s.write_all(b"HEAD /bytes/12345 HTTP/1.1\r\nHost: x\r\n\r\nGET /bytes/3 HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let h = read_response(&mut r, true);
        assert_eq!((h.status, h.header("Content-Length")), (200, Some("12345")));
        let g = read_response(&mut r, false);
        assert_eq!(g.status, 200);
        assert_eq!(g.body, bytes_of(3, 0, 3));
    });
}

#[test]
fn curl_reuses_one_connection_for_two_urls() {
    let Some(env) = e2e_env() else { return };
    if !require_tool("curl") {
        return;
    }
    let before = env.stats()["accepted"];
    let out = curl(
        &env,
        &[
            "-v",
            "-o",
            "/dev/null",
            "-o",
            "/dev/null",
            &url(&env, "/"),
            &url(&env, "/bytes/1000"),
        ],
    );
    let err = text(&out.stderr);
    assert!(out.status.success(), "curl: {err}");
    assert!(err.contains("Re-using existing"), "curl -v: {err}");
    assert_eq!(
        err.matches("< HTTP/1.1 200 OK").count(),
        2,
        "two 200 responses: {err}"
    );
    assert_eq!(
        env.stats()["accepted"] - before,
        1,
        "ustack accepted exactly one connection"
    );
}

#[test]
fn curl_range_resume_completes_a_partial_download() {
    let Some(env) = e2e_env() else { return };
    if !require_tool("curl") {
        return;
    }
    const N: u64 = 1_000_000;
    let file = env.dir.join("partial");
    let f = file.to_str().unwrap();
    // A partial download: the first 123,457 bytes.
    let out = curl(
        &env,
        &["-r", "0-123456", "-o", f, &url(&env, "/bytes/1000000")],
    );
    assert!(out.status.success(), "curl -r: {}", text(&out.stderr));
    assert_eq!(std::fs::metadata(&file).unwrap().len(), 123_457);
    // Resume: curl asks for bytes=123457- and appends.
    let out = curl(
        &env,
        &["-v", "-C", "-", "-o", f, &url(&env, "/bytes/1000000")],
    );
    let err = text(&out.stderr);
    assert!(out.status.success(), "curl -C -: {err}");
    assert!(err.contains("Range: bytes=123457-"), "{err}");
    assert!(err.contains("< HTTP/1.1 206 Partial Content"), "{err}");
    assert!(
        err.contains("< Content-Range: bytes 123457-999999/1000000"),
        "{err}"
    );
    let got = std::fs::read(&file).unwrap();
    assert_eq!(got.len() as u64, N);
    assert!(got == bytes_of(N, 0, N as usize), "resumed file differs");
}

#[test]
fn etag_gives_304_on_second_request() {
    let Some(env) = e2e_env() else { return };
    if !require_tool("curl") {
        return;
    }
    for path in ["/", "/bytes/777"] {
        let out = curl(&env, &["-D", "-", "-o", "/dev/null", &url(&env, path)]);
        assert!(out.status.success(), "curl: {}", text(&out.stderr));
        let head = text(&out.stdout);
        let etag = head
            .lines()
            .find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.eq_ignore_ascii_case("etag").then(|| v.trim().to_string())
            })
            .unwrap_or_else(|| panic!("no ETag for {path}: {head}"));
        let out = curl(
            &env,
            &[
                "-D",
                "-",
                "-H",
                &format!("If-None-Match: {etag}"),
                &url(&env, path),
            ],
        );
        assert!(out.status.success(), "curl: {}", text(&out.stderr));
        let again = text(&out.stdout);
        assert!(
            again.starts_with("HTTP/1.1 304 Not Modified\r\n"),
            "{path}: {again}"
        );
        assert!(again.ends_with("\r\n\r\n"), "304 has no body: {again:?}");
        assert!(again.contains(&etag), "304 repeats the ETag: {again}");
        // A different tag gets the full answer.
        let out = curl(
            &env,
            &[
                "-D",
                "-",
                "-o",
                "/dev/null",
                "-H",
                "If-None-Match: \"other\"",
                &url(&env, path),
            ],
        );
        assert!(text(&out.stdout).starts_with("HTTP/1.1 200 OK"), "{path}");
    }
}

#[test]
fn one_gigabyte_download_is_correct() {
    let Some(env) = e2e_env() else { return };
    if !require_tool("curl") || !require_tool("sha256sum") {
        return;
    }
    const N: u64 = 1_000_000_000;
    let (want, (out, secs)) = std::thread::scope(|s| {
        let want = s.spawn(|| bytes_sha256(N));
        let t = Instant::now();
        let out = ns_sh(
            &env,
            &format!(
                "curl -sS --max-time 170 {} | sha256sum",
                url(&env, "/bytes/1000000000")
            ),
        );
        (want.join().unwrap(), (out, t.elapsed().as_secs_f64()))
    });
    assert!(
        out.status.success(),
        "curl | sha256sum: {}",
        text(&out.stderr)
    );
    let got = text(&out.stdout);
    assert_eq!(got.split_whitespace().next(), Some(want.as_str()));
    eprintln!(
        "1 GB downloaded in {secs:.1} s ({:.0} Mbit/s)",
        N as f64 * 8.0 / secs / 1e6
    );
}

#[test]
fn hundred_megabyte_upload_to_sha256() {
    let Some(env) = e2e_env() else { return };
    if !require_tool("curl") {
        return;
    }
    let path = env.dir.join("upload.bin");
    let want = write_pattern_file(&path, 100 << 20, 42);
    let t = Instant::now();
    let out = curl(
        &env,
        &[
            "--data-binary",
            &format!("@{}", path.display()),
            "-H",
            "Content-Type: application/octet-stream",
            &url(&env, "/sha256"),
        ],
    );
    assert!(out.status.success(), "curl: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("{want}\n"));
    eprintln!("100 MB uploaded and hashed in {:?}", t.elapsed());
    // The same upload, chunked.
    let out = curl(
        &env,
        &[
            "-H",
            "Transfer-Encoding: chunked",
            "--data-binary",
            &format!("@{}", path.display()),
            &url(&env, "/sha256"),
        ],
    );
    assert!(out.status.success(), "curl chunked: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("{want}\n"));
}

/// Write `len` pattern bytes to `path`; returns their SHA-256 (hex).
fn write_pattern_file(path: &Path, len: usize, seed: u64) -> String {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut p = Pattern::new(seed);
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len());
        p.fill(&mut buf[..n]);
        h.update(&buf[..n]);
        f.write_all(&buf[..n]).unwrap();
        left -= n;
    }
    f.flush().unwrap();
    hex(&h.finalize())
}

// ---------------------------------------------------------------- Python http.client

#[test]
fn python_http_client() {
    let Some(env) = e2e_env() else { return };
    if !require_tool("python3") {
        return;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/http_client.py");
    let out = env.ns_cmd(&["timeout", "60", "python3", script, &env.addr.to_string()]);
    let so = text(&out.stdout);
    assert!(
        out.status.success(),
        "http_client.py failed:\n{so}\n{}",
        text(&out.stderr)
    );
    assert!(so.contains("http_client.py: OK"), "{so}");
}

// ---------------------------------------------------------------- raw sockets

#[test]
fn pipelined_requests_are_answered_in_order() {
    let Some(env) = e2e_env() else { return };
    let to = env.sock(80);
    env.in_ns(|| {
        let (mut s, mut r) = conn(to);
        // Three requests in one write (one TCP segment).
        s.write_all(
            b"GET /bytes/5 HTTP/1.1\r\nHost: x\r\n\r\n\
              POST /sha256 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc\
              GET /bytes/7 HTTP/1.1\r\nHost: x\r\n\r\n",
        )
        .unwrap();
        let a = read_response(&mut r, false);
        let b = read_response(&mut r, false);
        let c = read_response(&mut r, false);
        assert_eq!((a.status, a.body.clone()), (200, bytes_of(5, 0, 5)));
        assert_eq!(b.status, 200);
        assert_eq!(
            text(&b.body),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\n"
        );
        assert_eq!((c.status, c.body.clone()), (200, bytes_of(7, 0, 7)));
        // The connection is still open for more.
        s.write_all(b"GET /bytes/1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let d = read_response(&mut r, false);
        assert_eq!((d.status, d.header("Connection")), (200, Some("close")));
        assert!(sees_eof(&mut r, Duration::from_secs(10)));
    });
}

#[test]
fn malformed_requests_get_the_right_status() {
    let Some(env) = e2e_env() else { return };
    let to = env.sock(80);
    let long_uri = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(9000));
    let long_hdr = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "b".repeat(9000)
    );
    let cases: Vec<(&str, Vec<u8>, u16, bool)> = vec![
        ("garbage", b"HELLO THERE\r\n\r\n".to_vec(), 400, true),
        ("no Host", b"GET / HTTP/1.1\r\n\r\n".to_vec(), 400, true),
        (
            "CL and TE",
            b"POST /sha256 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(),
            400,
            true,
        ),
        ("long URI", long_uri.into_bytes(), 414, true),
        ("long header", long_hdr.into_bytes(), 431, true),
        ("HTTP/1.2", b"GET / HTTP/1.2\r\nHost: x\r\n\r\n".to_vec(), 505, true),
        ("PATCH", b"PATCH / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), 501, false),
        ("DELETE", b"DELETE /index.html HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), 405, false),
        ("GET /sha256", b"GET /sha256 HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), 405, false),
        ("missing", b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), 404, false),
        ("dot-dot", b"GET /../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), 400, false),
    ];
    env.in_ns(|| {
        for (name, req, status, closes) in &cases {
            let (mut s, mut r) = conn(to);
            s.write_all(req).unwrap();
            let resp = read_response(&mut r, false);
            assert_eq!(resp.status, *status, "{name}: {resp:?}");
            if *status == 405 {
                let allow = resp
                    .header("Allow")
                    .unwrap_or_else(|| panic!("{name}: 405 without Allow"));
                let method = std::str::from_utf8(req).unwrap().split(' ').next().unwrap();
                assert!(allow.contains("OPTIONS"), "{name}: Allow: {allow}");
                assert!(!allow.contains(method), "{name}: Allow: {allow}");
            }
            if *closes {
                assert_eq!(resp.header("Connection"), Some("close"), "{name}");
                assert!(
                    sees_eof(&mut r, Duration::from_secs(10)),
                    "{name}: server closes"
                );
            } else {
                // The connection survives the error.
                s.write_all(b"GET /bytes/2 HTTP/1.1\r\nHost: x\r\n\r\n")
                    .unwrap();
                let ok = read_response(&mut r, false);
                assert_eq!(
                    ok.status, 200,
                    "{name}: next request on the same connection"
                );
            }
        }
    });
}

/// The header timeout is 10 s: a head that never completes gets 408 and
/// the connection closes.
#[test]
fn incomplete_head_times_out_with_408() {
    let Some(env) = e2e_env() else { return };
    let to = env.sock(80);
    env.in_ns(|| {
        let (mut s, mut r) = conn(to);
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
        let t = Instant::now();
        let resp = read_response(&mut r, false);
        let waited = t.elapsed();
        assert_eq!(resp.status, 408, "{resp:?}");
        assert_eq!(resp.header("Connection"), Some("close"));
        assert!(
            waited >= Duration::from_secs(8) && waited <= Duration::from_secs(15),
            "408 after {waited:?} (header timeout 10 s)"
        );
        assert!(sees_eof(&mut r, Duration::from_secs(10)));
    });
}

#[test]
fn http10_with_and_without_keep_alive() {
    let Some(env) = e2e_env() else { return };
    let to = env.sock(80);
    env.in_ns(|| {
        // Plain HTTP/1.0: one response, then the server closes.
        let (mut s, mut r) = conn(to);
        s.write_all(b"GET /bytes/10 HTTP/1.0\r\n\r\n").unwrap();
        let a = read_response(&mut r, false);
        assert_eq!((a.status, a.body.clone()), (200, bytes_of(10, 0, 10)));
        assert_ne!(a.header("Connection"), Some("keep-alive"));
        assert!(sees_eof(&mut r, Duration::from_secs(10)), "HTTP/1.0 closes");

        // HTTP/1.0 with keep-alive: the connection stays for a second request.
        let (mut s, mut r) = conn(to);
        s.write_all(b"GET /bytes/10 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .unwrap();
        let a = read_response(&mut r, false);
        assert_eq!(a.status, 200);
        assert_eq!(a.header("Connection"), Some("keep-alive"));
        s.write_all(b"HEAD / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .unwrap();
        let b = read_response(&mut r, true);
        assert_eq!(b.status, 200);
        let len = INDEX_HTML.len().to_string();
        assert_eq!(b.header("Content-Length"), Some(len.as_str()));
        s.write_all(b"GET /bytes/4 HTTP/1.0\r\n\r\n").unwrap();
        let c = read_response(&mut r, false);
        assert_eq!((c.status, c.body.clone()), (200, bytes_of(4, 0, 4)));
        assert!(
            sees_eof(&mut r, Duration::from_secs(10)),
            "closes without keep-alive"
        );
    });
}

// ---------------------------------------------------------------- many connections

/// 3,000 one-request connections in a row (what `ab` does, slower): each
/// leaves timers behind that outlive it (the HTTP header timer 10 s out,
/// the linger timer 5 s out, retransmission timers), and ustack closes
/// first, so they sit in TIME-WAIT. The timer queues compact themselves:
/// right after the burst they hold at most about the floor of each queue
/// (1,024) plus twice the live connections, not two or more entries per
/// connection ever made.
#[test]
fn connection_burst_leaves_no_pile_of_stale_timers() {
    let Some(env) = e2e_env() else { return };
    let to = env.sock(80);
    let n = 3000;
    env.in_ns(|| {
        for i in 0..n {
            let (mut s, mut r) = conn(to);
            s.write_all(b"GET /bytes/10 HTTP/1.0\r\n\r\n").unwrap();
            let a = read_response(&mut r, false);
            assert_eq!(a.status, 200, "request {i}");
            assert!(
                sees_eof(&mut r, Duration::from_secs(10)),
                "request {i}: server closes"
            );
        }
    });
    let st = env.stats();
    let (entries, live) = (st["timer_entries"], st["connections"] - st["time_wait"]);
    eprintln!(
        "after {n} connections: {entries} timer entries, {} connections ({} in TIME-WAIT)",
        st["connections"], st["time_wait"]
    );
    assert!(
        st["time_wait"] > 1000,
        "ustack closed first: TIME-WAIT holds them ({st:?})"
    );
    assert!(
        entries <= 2 * (1024 + 1) + 4 * live,
        "{entries} timer entries after {n} connections ({live} live, not in TIME-WAIT)"
    );
}

fn raise_fd_limit(want: u64) {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid, correctly sized struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut l), 0);
        if l.rlim_cur < want {
            l.rlim_cur = want.min(l.rlim_max);
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &l), 0);
        }
    }
}

/// 1,000 connections open at once, each gets its own correct answer, and a
/// normal client is served meanwhile.
#[test]
fn thousand_concurrent_connections() {
    let Some(env) = e2e_env() else { return };
    const N: usize = 1000;
    raise_fd_limit(4096);
    let to = env.sock(80);
    env.in_ns(|| {
        let t = Instant::now();
        // 1. Open all of them.
        let mut socks: Vec<TcpStream> = (0..N).map(|_| connect(to)).collect();
        let opened = t.elapsed();
        // 2. A normal client is served while they are all open and idle.
        let (mut s, mut r) = conn(to);
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let page = read_response(&mut r, false);
        assert_eq!((page.status, page.body.as_slice()), (200, INDEX_HTML));
        // 3. Send a request on each: /bytes/<100 + i>, so each answer is
        //    distinguishable.
        for (i, s) in socks.iter_mut().enumerate() {
            write!(
                s,
                "GET /bytes/{} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                100 + i
            )
            .unwrap();
        }
        // 4. Read all the answers.
        for (i, s) in socks.into_iter().enumerate() {
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            let mut r = BufReader::new(s);
            let resp = read_response(&mut r, false);
            assert_eq!(resp.status, 200, "connection {i}");
            assert!(
                resp.body == bytes_of(100 + i as u64, 0, 100 + i),
                "connection {i}: wrong body"
            );
        }
        // The normal client's connection still works.
        s.write_all(b"GET /bytes/9 HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        assert_eq!(read_response(&mut r, false).body, bytes_of(9, 0, 9));
        eprintln!(
            "{N} connections opened in {opened:?}, all answered in {:?}",
            t.elapsed()
        );
    });
}

// ---------------------------------------------------------------- wrk

/// Parse wrk's summary: (requests/s, socket errors, non-2xx/3xx).
fn wrk_summary(out: &str) -> (f64, u64, u64) {
    let rps = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Requests/sec in wrk output:\n{out}"));
    // "Socket errors: connect 0, read 0, write 0, timeout 0"
    let socket_errors = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("Socket errors:"))
        .map(|v| {
            v.split(',')
                .filter_map(|kv| kv.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    let non2xx = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("Non-2xx or 3xx responses:"))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0);
    (rps, socket_errors, non2xx)
}

fn run_wrk(env: &Env, extra: &[&str]) -> String {
    let u = url(env, "/bytes/100");
    let mut argv = vec![
        "timeout",
        "60",
        "wrk",
        "-t1",
        "-c32",
        "-d5s",
        "--timeout",
        "5s",
    ];
    argv.extend_from_slice(extra);
    argv.push(&u);
    let out = env.ns_cmd(&argv);
    let so = text(&out.stdout);
    assert!(out.status.success(), "wrk: {so}\n{}", text(&out.stderr));
    so
}

#[test]
fn wrk_keep_alive_and_connection_close() {
    let Some(env) = e2e_env() else { return };
    if !require_tool("wrk") {
        return;
    }
    let ka = run_wrk(&env, &[]);
    let (rps, errors, non2xx) = wrk_summary(&ka);
    eprintln!("wrk keep-alive: {rps:.0} req/s");
    assert_eq!((errors, non2xx), (0, 0), "wrk keep-alive:\n{ka}");
    assert!(rps > 0.0);

    let close = run_wrk(&env, &["-H", "Connection: close"]);
    let (rps, errors, non2xx) = wrk_summary(&close);
    eprintln!("wrk Connection: close: {rps:.0} req/s");
    assert_eq!((errors, non2xx), (0, 0), "wrk Connection: close:\n{close}");
    assert!(rps > 0.0);
}
