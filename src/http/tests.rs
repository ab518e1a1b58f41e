//! Connection-level tests: byte strings in, byte strings out, virtual clock.

use super::*;
use proptest::prelude::*;

struct Ctx {
    time: Option<u64>,
}

impl Context for Ctx {
    fn stats_json(&mut self) -> String {
        "{\"tcp\":{\"active\":1}}".into()
    }
    fn websocket_route(&self, path: &str) -> bool {
        path == "/ws/chat"
    }
    fn unix_time(&mut self) -> Option<u64> {
        self.time
    }
    fn ladder(&mut self, query: Option<&str>) -> Option<(u16, &'static str, String)> {
        Some(match query {
            Some(q) => (200, "image/svg+xml", format!("<svg>{q}</svg>")),
            None => (400, "text/plain; charset=utf-8", "which?\n".into()),
        })
    }
}

/// A context that serves no ladder (the trait's default).
struct PlainCtx;

impl Context for PlainCtx {
    fn stats_json(&mut self) -> String {
        String::new()
    }
    fn websocket_route(&self, _path: &str) -> bool {
        false
    }
}

const T0: Instant = Instant::ZERO;

fn conn() -> HttpConnection {
    HttpConnection::new(T0, Arc::new(ServerConfig::default()))
}

fn conn_with(limits: HttpLimits) -> HttpConnection {
    HttpConnection::new(
        T0,
        Arc::new(ServerConfig {
            limits,
            site: Site::Embedded,
        }),
    )
}

/// Pull all output, in pieces of `step` bytes.
fn drain_step(c: &mut HttpConnection, now: Instant, step: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; step];
    loop {
        let n = c.poll_output(now, &mut buf, &mut Ctx { time: None });
        assert!(n <= step);
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&buf[..n]);
    }
}

fn drain(c: &mut HttpConnection) -> Vec<u8> {
    drain_step(c, T0, 1000)
}

/// Feed everything (re-offering what was not consumed after draining) and
/// return all output.
fn exchange(c: &mut HttpConnection, input: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = input;
    loop {
        let n = c.handle_input(T0, rest, &mut Ctx { time: None });
        rest = &rest[n..];
        let o = drain(c);
        let stuck = o.is_empty() && n == 0;
        out.extend_from_slice(&o);
        if rest.is_empty() || stuck || c.wants_close() {
            return out;
        }
    }
}

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

/// Parse one response from `bytes`; `head` = answer to a HEAD request.
fn parse_resp(bytes: &[u8], head: bool) -> (Resp, &[u8]) {
    let mut hs = [httparse::EMPTY_HEADER; 32];
    let mut r = httparse::Response::new(&mut hs);
    let len = match r.parse(bytes) {
        Ok(httparse::Status::Complete(n)) => n,
        other => panic!(
            "bad response {other:?}: {:?}",
            String::from_utf8_lossy(bytes)
        ),
    };
    let status = r.code.unwrap();
    let headers: Vec<(String, String)> = r
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_string(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    let cl: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.parse().unwrap())
        .unwrap_or(0);
    let blen = if head || status == 304 || status == 204 || status < 200 {
        0
    } else {
        cl
    };
    let body = bytes[len..len + blen].to_vec();
    (
        Resp {
            status,
            headers,
            body,
        },
        &bytes[len + blen..],
    )
}

fn one(input: &[u8]) -> (Resp, HttpConnection) {
    let mut c = conn();
    let out = exchange(&mut c, input);
    let head = input.starts_with(b"HEAD");
    let (r, rest) = parse_resp(&out, head);
    assert!(
        rest.is_empty(),
        "extra output {:?}",
        String::from_utf8_lossy(rest)
    );
    (r, c)
}

fn index() -> &'static [u8] {
    site::EMBEDDED
        .iter()
        .find(|f| f.path == "/index.html")
        .unwrap()
        .data
}

#[test]
fn get_index() {
    let (r, c) = one(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, index());
    assert!(String::from_utf8_lossy(&r.body).contains("<h1>ustack</h1>"));
    assert_eq!(r.header("Server"), Some("ustack"));
    assert_eq!(r.header("Content-Type"), Some("text/html; charset=utf-8"));
    assert_eq!(
        r.header("Content-Length"),
        Some(index().len().to_string().as_str())
    );
    assert_eq!(
        r.header("Last-Modified"),
        Some("Wed, 01 Jan 2025 00:00:00 GMT")
    );
    assert!(r.header("ETag").is_some());
    assert_eq!(r.header("Connection"), None);
    assert_eq!(r.header("Date"), None);
    assert!(!c.wants_close(), "HTTP/1.1 keeps the connection");
}

#[test]
fn exact_response_bytes_for_an_error() {
    let mut c = conn();
    let out = exchange(&mut c, b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(
        out,
        b"HTTP/1.1 404 Not Found\r\nServer: ustack\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 14\r\n\r\n404 Not Found\n"
    );
}

#[test]
fn date_header_when_the_runtime_has_a_clock() {
    let mut c = conn();
    c.handle_input(
        T0,
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        &mut Ctx {
            time: Some(784_111_777),
        },
    );
    let out = drain(&mut c);
    assert_eq!(
        parse_resp(&out, false).0.header("Date"),
        Some("Sun, 06 Nov 1994 08:49:37 GMT")
    );
}

const VALID: &[&[u8]] = &[
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /style.css HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n",
    b"HEAD /bytes/100 HTTP/1.0\r\n\r\n",
    b"POST /sha256 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
    b"POST /sha256 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n2;x=y\r\nbc\r\n0\r\nT: v\r\n\r\n",
    b"\r\nGET /api/stats HTTP/1.1\r\nHost: x\r\n\r\n",
];

#[test]
fn every_truncated_prefix_needs_more_then_completes() {
    for v in VALID {
        let head = v.starts_with(b"HEAD");
        let (full, _) = parse_resp(&exchange(&mut conn(), v), head);
        assert!(full.status == 200, "{full:?}");
        for cut in 0..v.len() {
            let mut c = conn();
            let n = c.handle_input(T0, &v[..cut], &mut Ctx { time: None });
            assert_eq!(n, cut);
            assert!(
                drain(&mut c).is_empty(),
                "output after {cut} bytes of {:?}",
                String::from_utf8_lossy(v)
            );
            assert!(!c.wants_close());
            let out = exchange(&mut c, &v[cut..]);
            let (r, rest) = parse_resp(&out, head);
            assert!(rest.is_empty());
            assert_eq!((r.status, &r.body), (full.status, &full.body), "cut {cut}");
        }
    }
}

#[test]
fn error_statuses() {
    let long_uri = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(9000));
    let long_hdr = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX: {}\r\n\r\n",
        "a".repeat(9000)
    );
    let many: String = (0..70).map(|i| format!("X-{i}: v\r\n")).collect();
    let many = format!("GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n");
    // (request, status, connection closes)
    let cases: Vec<(Vec<u8>, u16, bool)> = vec![
        (b"GET / HTTP/1.1\r\nHost: x\r\nbad header\r\n\r\n".to_vec(), 400, true),
        (b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), 400, true),
        (b"GET / HTTP/1.1\r\n\r\n".to_vec(), 400, true),
        (b"POST /sha256 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(), 400, true),
        (b"POST /sha256 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 2\r\n\r\n".to_vec(), 400, true),
        (b"POST /sha256 HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n".to_vec(), 400, true),
        (b"POST /sha256 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec(), 400, true),
        (b"POST /sha256 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n".to_vec(), 501, true),
        (b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), 404, false),
        (b"GET /../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), 400, false),
        (b"GET /%2e%2e/etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), 400, false),
        (b"GET /..%2f..%2fetc/passwd HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), 400, false),
        (b"GET /..\\..\\etc HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), 400, false),
        (b"GET /index.html%00 HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), 400, false),
        (b"GET /.git/config HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), 404, false),
        (b"GET /bytes/abc HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), 404, false),
        (b"GET /bytes/99999999999999999999 HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), 404, false),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi".to_vec(), 405, false),
        (b"DELETE /index.html HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), 405, false),
        (b"GET /sha256 HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), 405, false),
        (b"TRACE / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), 405, false),
        (b"PATCH / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), 501, false),
        (b"get / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), 501, false),
        (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n".to_vec(), 413, true),
        (b"GET / HTTP/1.1\r\nHost: x\r\nExpect: something\r\n\r\n".to_vec(), 417, true),
        (long_uri.into_bytes(), 414, true),
        (long_hdr.into_bytes(), 431, true),
        (many.into_bytes(), 431, true),
        (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n".to_vec(), 505, true),
        (b"GET / HTTP/1.2\r\nHost: x\r\n\r\n".to_vec(), 505, true),
        (b"GET /ws/chat HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), 426, false),
        (b"GET /ws/nope HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n".to_vec(), 404, false),
        (b"OPTIONS /x HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), 204, false),
        (b"GET * HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), 400, false),
    ];
    for (input, status, closes) in cases {
        let what = String::from_utf8_lossy(&input[..input.len().min(60)]).into_owned();
        let (r, c) = one(&input);
        assert_eq!(r.status, status, "{what}");
        assert_eq!(c.wants_close(), closes, "{what}");
        assert_eq!(r.header("Connection") == Some("close"), closes, "{what}");
        if status >= 400 {
            let text = String::from_utf8(r.body.clone()).unwrap();
            assert!(text.starts_with(&status.to_string()), "{what}: {text}");
        }
        if status == 405 {
            assert!(r.header("Allow").is_some(), "{what}");
        }
        if status == 426 {
            assert_eq!(r.header("Upgrade"), Some("websocket"));
        }
    }
}

#[test]
fn allow_headers() {
    assert_eq!(
        one(b"GET /sha256 HTTP/1.1\r\nHost: x\r\n\r\n")
            .0
            .header("Allow"),
        Some("POST, OPTIONS")
    );
    assert_eq!(
        one(b"PUT / HTTP/1.1\r\nHost: x\r\n\r\n").0.header("Allow"),
        Some("GET, HEAD, OPTIONS")
    );
    let (r, _) = one(b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(
        (r.status, r.header("Allow")),
        (204, Some("GET, HEAD, POST, OPTIONS"))
    );
    assert_eq!(r.header("Content-Length"), None);
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let mut c = conn();
    let out = exchange(
        &mut c,
        b"GET /bytes/5 HTTP/1.1\r\nHost: x\r\n\r\nHEAD / HTTP/1.1\r\nHost: x\r\n\r\nPOST /sha256 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET /nope HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    let (a, rest) = parse_resp(&out, false);
    let (b, rest) = parse_resp(rest, true);
    let (s, rest) = parse_resp(rest, false);
    let (d, rest) = parse_resp(rest, false);
    assert!(rest.is_empty());
    let mut five = [0u8; 5];
    bytes_body(5, 0, &mut five);
    assert_eq!((a.status, a.body.as_slice()), (200, &five[..]));
    assert_eq!((b.status, b.body.len()), (200, 0));
    assert_eq!(
        s.body,
        b"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\n"
    );
    assert_eq!(d.status, 404);
    assert!(!c.wants_close());
}

#[test]
fn pipelined_input_is_bounded_and_pushed_back() {
    let req = b"GET /bytes/100000 HTTP/1.1\r\nHost: x\r\n\r\n";
    let input: Vec<u8> = req.iter().copied().cycle().take(req.len() * 1000).collect();
    let mut c = conn();
    let n = c.handle_input(T0, &input, &mut Ctx { time: None });
    assert!(
        n < input.len(),
        "input must be pushed back while the first response is written"
    );
    assert!(c.inbuf.len() <= c.limits().input_buffer());
    // Everything is answered eventually, in order.
    let out = exchange(&mut c, &input[n..]);
    let mut all = drain(&mut c);
    let mut total = Vec::new();
    total.extend_from_slice(&out);
    total.append(&mut all);
    // Count complete responses (the first was partly produced before `exchange`).
    let count = total
        .windows(17)
        .filter(|w| w == b"HTTP/1.1 200 OK\r\n")
        .count();
    assert!(count >= 999, "{count}");
}

#[test]
fn head_has_the_same_headers_and_no_body() {
    let (g, _) = one(b"GET /bytes/1234 HTTP/1.1\r\nHost: x\r\n\r\n");
    let (h, _) = one(b"HEAD /bytes/1234 HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(g.headers, h.headers);
    assert_eq!(h.header("Content-Length"), Some("1234"));
    assert!(h.body.is_empty());
    let mut c = conn();
    let out = exchange(&mut c, b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(out.ends_with(b"\r\n\r\n"), "no body bytes after the head");
}

#[test]
fn persistence_rules() {
    // (request, Connection header in the answer, closes)
    let cases: &[(&[u8], Option<&str>, bool)] = &[
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", None, false),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            Some("close"),
            true,
        ),
        (b"GET / HTTP/1.0\r\n\r\n", Some("close"), true),
        (
            b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
            Some("keep-alive"),
            false,
        ),
        (
            b"GET / HTTP/1.0\r\nConnection: Keep-Alive, foo\r\n\r\n",
            Some("keep-alive"),
            false,
        ),
    ];
    for (req, hdr, closes) in cases {
        let (r, c) = one(req);
        assert_eq!(
            r.header("Connection"),
            *hdr,
            "{:?}",
            String::from_utf8_lossy(req)
        );
        assert_eq!(
            c.wants_close(),
            *closes,
            "{:?}",
            String::from_utf8_lossy(req)
        );
    }
    // After Connection: close, later pipelined requests are not answered.
    let mut c = conn();
    let out = exchange(
        &mut c,
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    let (_, rest) = parse_resp(&out, false);
    assert!(rest.is_empty());
    assert!(c.wants_close());
}

fn sha_request_chunked(body: &[u8], chunk: usize) -> Vec<u8> {
    let mut r = b"POST /sha256 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for c in body.chunks(chunk) {
        r.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        r.extend_from_slice(c);
        r.extend_from_slice(b"\r\n");
    }
    r.extend_from_slice(b"0\r\n\r\n");
    r
}

#[test]
fn chunked_body_split_at_every_byte() {
    let req = sha_request_chunked(b"abc", 1);
    for cut in 0..=req.len() {
        let mut c = conn();
        let n1 = c.handle_input(T0, &req[..cut], &mut Ctx { time: None });
        let n2 = c.handle_input(T0, &req[cut..], &mut Ctx { time: None });
        assert_eq!(n1 + n2, req.len());
        let out = drain(&mut c);
        let (r, rest) = parse_resp(&out, false);
        assert!(rest.is_empty());
        assert_eq!(
            r.body, b"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\n",
            "cut {cut}"
        );
    }
    // And one byte at a time.
    let mut c = conn();
    for b in req.chunks(1) {
        assert_eq!(c.handle_input(T0, b, &mut Ctx { time: None }), 1);
    }
    assert_eq!(parse_resp(&drain(&mut c), false).0.status, 200);
}

#[test]
fn sha256_known_vectors() {
    let (r, _) = one(b"POST /sha256 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(
        r.body,
        b"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n"
    );
    let (r, _) = one(b"POST /sha256 HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(
        r.body,
        b"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n"
    );
    let (r, _) = one(b"POST /sha256 HTTP/1.1\r\nHost: x\r\nContent-Length: 56\r\n\r\nabcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq");
    assert_eq!(
        r.body,
        b"248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1\n"
    );
    // One million 'a' (FIPS 180-2 example), streamed in 1000-byte pieces,
    // with Content-Length and chunked.
    let million = vec![b'a'; 1_000_000];
    let digest = b"cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0\n";
    let mut c = conn();
    c.handle_input(
        T0,
        b"POST /sha256 HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n",
        &mut Ctx { time: None },
    );
    for piece in million.chunks(1000) {
        assert_eq!(c.handle_input(T0, piece, &mut Ctx { time: None }), 1000);
        assert!(c.inbuf.is_empty(), "body bytes are not buffered");
    }
    assert_eq!(parse_resp(&drain(&mut c), false).0.body, digest);
    let (r, _) = one(&sha_request_chunked(&million, 4096));
    assert_eq!(r.body, digest);
}

#[test]
fn expect_100_continue() {
    let mut c = conn();
    let head =
        b"POST /sha256 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n";
    c.handle_input(T0, head, &mut Ctx { time: None });
    assert_eq!(drain(&mut c), b"HTTP/1.1 100 Continue\r\n\r\n");
    c.handle_input(T0, b"abc", &mut Ctx { time: None });
    let (r, _) = parse_resp(&drain(&mut c), false);
    assert_eq!(r.status, 200);
    assert!(!c.wants_close());
    // A route that does not want the body: final answer at once, no 100, close.
    let mut c = conn();
    c.handle_input(
        T0,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n",
        &mut Ctx { time: None },
    );
    let out = drain(&mut c);
    let (r, rest) = parse_resp(&out, false);
    assert!(rest.is_empty());
    assert_eq!((r.status, r.header("Connection")), (405, Some("close")));
    assert!(c.wants_close());
    // HTTP/1.0 ignores Expect.
    let (r, _) =
        one(b"POST /sha256 HTTP/1.0\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\nabc");
    assert_eq!(r.status, 200);
}

#[test]
fn get_with_a_body_discards_it_and_keeps_going() {
    let mut c = conn();
    let out = exchange(
        &mut c,
        b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nxyz\r\n0\r\n\r\nGET /bytes/3 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi",
    );
    let (a, rest) = parse_resp(&out, false);
    let (b, rest) = parse_resp(rest, false);
    assert!(rest.is_empty());
    assert_eq!((a.status, b.status, b.body.len()), (200, 200, 3));
    // A chunked body over max_body on a discarding route: 413 and close.
    let mut c = conn_with(HttpLimits {
        max_body: 10,
        ..Default::default()
    });
    let out = exchange(
        &mut c,
        &sha_request_chunked(&[b'x'; 20], 5).replace_prefix(b"POST /sha256", b"POST /nope!"),
    );
    assert_eq!(parse_resp(&out, false).0.status, 413);
    assert!(c.wants_close());
}

trait ReplacePrefix {
    fn replace_prefix(&self, from: &[u8], to: &[u8]) -> Vec<u8>;
}
impl ReplacePrefix for Vec<u8> {
    fn replace_prefix(&self, from: &[u8], to: &[u8]) -> Vec<u8> {
        assert!(self.starts_with(from));
        let mut v = to.to_vec();
        v.extend_from_slice(&self[from.len()..]);
        v
    }
}

#[test]
fn bytes_route_streams_and_supports_ranges() {
    let (r, _) = one(b"GET /bytes/100000 HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut expect = vec![0u8; 100_000];
    bytes_body(100_000, 0, &mut expect);
    assert_eq!(r.body, expect);
    assert_eq!(r.header("Content-Type"), Some("application/octet-stream"));
    let (r, _) = one(b"GET /bytes/100000 HTTP/1.1\r\nHost: x\r\nRange: bytes=1000-1099\r\n\r\n");
    assert_eq!(r.status, 206);
    assert_eq!(r.header("Content-Range"), Some("bytes 1000-1099/100000"));
    assert_eq!(r.body, &expect[1000..1100]);
    let (r, _) = one(b"GET /bytes/100000 HTTP/1.1\r\nHost: x\r\nRange: bytes=-7\r\n\r\n");
    assert_eq!(r.body, &expect[100_000 - 7..]);
    let (r, _) = one(b"GET /bytes/10 HTTP/1.1\r\nHost: x\r\nRange: bytes=10-\r\n\r\n");
    assert_eq!(
        (r.status, r.header("Content-Range")),
        (416, Some("bytes */10"))
    );
    let (r, _) = one(b"GET /bytes/0 HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!((r.status, r.body.len()), (200, 0));
}

#[test]
fn ten_gigabytes_are_streamed_without_buffering() {
    let mut c = conn();
    c.handle_input(
        T0,
        b"GET /bytes/10000000000 HTTP/1.1\r\nHost: x\r\n\r\n",
        &mut Ctx { time: None },
    );
    let mut buf = vec![0u8; 65536];
    let n = c.poll_output(T0, &mut buf, &mut Ctx { time: None });
    assert_eq!(n, buf.len(), "fills the whole buffer");
    let (r, body) = {
        let mut hs = [httparse::EMPTY_HEADER; 16];
        let mut resp = httparse::Response::new(&mut hs);
        let httparse::Status::Complete(len) = resp.parse(&buf).unwrap() else {
            panic!()
        };
        let cl = resp
            .headers
            .iter()
            .find(|h| h.name == "Content-Length")
            .unwrap()
            .value
            .to_vec();
        (cl, buf[len..].to_vec())
    };
    assert_eq!(r, b"10000000000");
    let mut expect = vec![0u8; body.len()];
    bytes_body(10_000_000_000, 0, &mut expect);
    assert_eq!(body, expect);
    // A range near the end: produced directly, no prefix generated.
    let mut c = conn();
    let (r, _) = parse_resp(
        &exchange(
            &mut c,
            b"GET /bytes/10000000000 HTTP/1.1\r\nHost: x\r\nRange: bytes=9999999990-\r\n\r\n",
        ),
        false,
    );
    let mut tail = [0u8; 10];
    bytes_body(10_000_000_000, 9_999_999_990, &mut tail);
    assert_eq!((r.status, r.body.as_slice()), (206, &tail[..]));
}

#[test]
fn conditional_requests_on_static_files() {
    let (r, _) = one(b"GET /style.css HTTP/1.1\r\nHost: x\r\n\r\n");
    let etag = r.header("ETag").unwrap().to_string();
    let lm = r.header("Last-Modified").unwrap().to_string();
    let css = r.body.clone();
    let req = format!("GET /style.css HTTP/1.1\r\nHost: x\r\nIf-None-Match: {etag}\r\n\r\n");
    let (r, _) = one(req.as_bytes());
    assert_eq!(
        (r.status, r.header("ETag"), r.body.len()),
        (304, Some(etag.as_str()), 0)
    );
    assert_eq!(r.header("Content-Length"), None);
    let req = format!("GET /style.css HTTP/1.1\r\nHost: x\r\nIf-Modified-Since: {lm}\r\n\r\n");
    assert_eq!(one(req.as_bytes()).0.status, 304);
    let req = b"GET /style.css HTTP/1.1\r\nHost: x\r\nIf-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n";
    assert_eq!(one(req).0.status, 200);
    let req = format!(
        "GET /style.css HTTP/1.1\r\nHost: x\r\nRange: bytes=0-9\r\nIf-Range: {etag}\r\n\r\n"
    );
    let (r, _) = one(req.as_bytes());
    assert_eq!((r.status, r.body.as_slice()), (206, &css[..10]));
    let req =
        b"GET /style.css HTTP/1.1\r\nHost: x\r\nRange: bytes=0-9\r\nIf-Range: \"stale\"\r\n\r\n";
    assert_eq!(one(req).0.status, 200);
    let req = b"GET /style.css HTTP/1.1\r\nHost: x\r\nIf-Match: \"stale\"\r\n\r\n";
    assert_eq!(one(req).0.status, 412);
    let req = b"GET /style.css HTTP/1.1\r\nHost: x\r\nRange: bytes=0-1,5-6\r\n\r\n";
    let (r, _) = one(req);
    assert_eq!(
        (r.status, r.body.len()),
        (200, css.len()),
        "several ranges: whole body"
    );
}

#[test]
fn directory_redirect() {
    let (r, _) = one(b"GET /http HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!((r.status, r.header("Location")), (301, Some("/http/")));
    let (r, _) = one(b"GET /http?a=1 HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.header("Location"), Some("/http/?a=1"));
    assert_eq!(one(b"GET /http/ HTTP/1.1\r\nHost: x\r\n\r\n").0.status, 200);
    // absolute-form request-target (RFC 9112 3.2.2)
    assert_eq!(
        one(b"GET http://x/http/ HTTP/1.1\r\nHost: x\r\n\r\n")
            .0
            .status,
        200
    );
}

#[test]
fn api_stats() {
    let (r, _) = one(b"GET /api/stats HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.body, b"{\"tcp\":{\"active\":1}}");
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    assert_eq!(r.header("Cache-Control"), Some("no-store"));
}

#[test]
fn api_ladder_passes_the_query_and_the_answer_through() {
    let (r, _) = one(b"GET /api/ladder?conn=3&format=svg HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"<svg>conn=3&format=svg</svg>");
    assert_eq!(r.header("Content-Type"), Some("image/svg+xml"));
    assert_eq!(r.header("Cache-Control"), Some("no-store"));
    let (r, _) = one(b"GET /api/ladder HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!((r.status, &r.body[..]), (400, &b"which?\n"[..]));
    // A server whose context has no ladders answers 404.
    let mut c = conn();
    let req = b"GET /api/ladder?conn=1 HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_eq!(c.handle_input(T0, req, &mut PlainCtx), req.len());
    let mut buf = vec![0u8; 4096];
    let n = c.poll_output(T0, &mut buf, &mut PlainCtx);
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 404 "),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
}

#[test]
fn websocket_upgrade_is_handed_over() {
    let mut c = conn();
    let head = b"GET /ws/chat?room=a HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    let mut input = head.to_vec();
    input.extend_from_slice(b"\x81\x85frame");
    let n = c.handle_input(T0, &input, &mut Ctx { time: None });
    assert_eq!(n, input.len());
    assert!(drain(&mut c).is_empty(), "the HTTP side writes nothing");
    let up = c.take_upgrade().expect("upgrade");
    assert_eq!(up.request.path, "/ws/chat");
    assert_eq!(up.request.query.as_deref(), Some("room=a"));
    assert_eq!(
        up.request.header("sec-websocket-key"),
        Some(&b"dGhlIHNhbXBsZSBub25jZQ=="[..])
    );
    assert_eq!(up.leftover, b"\x81\x85frame");
    assert!(c.take_upgrade().is_none());
    assert!(c.is_upgraded() && !c.wants_close());
    assert_eq!(
        c.handle_input(T0, b"more", &mut Ctx { time: None }),
        0,
        "later bytes stay with the caller"
    );
    assert_eq!(c.poll_at(), None);
    // An upgrade pipelined behind another request is handed over after it.
    let mut c = conn();
    let mut input = b"GET /bytes/1 HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
    input.extend_from_slice(head);
    c.handle_input(T0, &input, &mut Ctx { time: None });
    assert!(c.take_upgrade().is_none());
    let out = drain(&mut c);
    let (r, rest) = parse_resp(&out, false);
    assert!(rest.is_empty());
    assert_eq!(r.status, 200);
    assert!(c.take_upgrade().is_some());
}

#[test]
fn header_timeout_sends_408() {
    let mut c = conn();
    let t1 = Instant::from_secs(1);
    c.handle_input(t1, b"GET / HTTP/1.1\r\nHo", &mut Ctx { time: None });
    assert_eq!(c.poll_at(), Some(t1 + Duration::from_secs(10)));
    // Dribbling more bytes does not extend the deadline (slowloris).
    c.handle_input(Instant::from_secs(9), b"st: x\r\n", &mut Ctx { time: None });
    c.handle_timeout(Instant::from_secs(10));
    assert!(drain(&mut c).is_empty(), "not yet");
    c.handle_timeout(Instant::from_secs(11));
    let (r, _) = parse_resp(&drain(&mut c), false);
    assert_eq!((r.status, r.header("Connection")), (408, Some("close")));
    assert!(c.wants_close());
}

#[test]
fn idle_connections_close_silently() {
    // Never sends anything.
    let mut c = conn();
    assert_eq!(c.poll_at(), Some(T0 + Duration::from_secs(10)));
    c.handle_timeout(Instant::from_secs(10));
    assert!(c.wants_close());
    assert!(drain(&mut c).is_empty());
    // Kept alive after a response, then idle.
    let mut c = conn();
    exchange(&mut c, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(c.poll_at(), Some(T0 + Duration::from_secs(30)));
    c.handle_timeout(Instant::from_secs(29));
    assert!(!c.wants_close());
    c.handle_timeout(Instant::from_secs(30));
    assert!(c.wants_close());
    assert!(drain(&mut c).is_empty());
}

#[test]
fn slow_body_times_out() {
    let mut c = conn();
    c.handle_input(
        T0,
        b"POST /sha256 HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab",
        &mut Ctx { time: None },
    );
    c.handle_input(Instant::from_secs(20), b"cd", &mut Ctx { time: None });
    // Silence is measured from the last progress, not from the start.
    assert_eq!(c.poll_at(), Some(Instant::from_secs(20 + 240)));
    c.handle_timeout(Instant::from_secs(259));
    assert!(drain(&mut c).is_empty());
    c.handle_timeout(Instant::from_secs(260));
    assert_eq!(parse_resp(&drain(&mut c), false).0.status, 408);
    assert!(c.wants_close());
}

/// A body with long silences (a peer in retransmission back-off on a lossy
/// path) completes as long as no silence reaches `body_timeout`.
#[test]
fn body_with_long_silences_completes() {
    let mut c = conn();
    let mut t = T0;
    c.handle_input(
        t,
        b"POST /sha256 HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nab",
        &mut Ctx { time: None },
    );
    for piece in [b"cd", b"ef"] {
        // 200 s of silence (more than one maximal Linux RTO), timers checked on the way.
        t += Duration::from_secs(200);
        c.handle_timeout(t);
        assert!(drain(&mut c).is_empty(), "no 408 after 200 s of silence");
        c.handle_input(t, piece, &mut Ctx { time: None });
    }
    let out = drain(&mut c);
    assert_eq!(parse_resp(&out, false).0.status, 200);
    assert!(!c.wants_close());
}

#[test]
fn stalled_reader_is_dropped() {
    let mut c = conn();
    c.handle_input(
        T0,
        b"GET /bytes/1000000 HTTP/1.1\r\nHost: x\r\n\r\n",
        &mut Ctx { time: None },
    );
    let mut buf = [0u8; 100];
    assert_eq!(
        c.poll_output(Instant::from_secs(1), &mut buf, &mut Ctx { time: None }),
        100
    );
    assert_eq!(c.poll_at(), Some(Instant::from_secs(121)));
    c.handle_timeout(Instant::from_secs(121));
    assert!(c.wants_close());
}

#[test]
fn eof_handling() {
    // Complete request then FIN: answered, then closed.
    let mut c = conn();
    c.handle_input(
        T0,
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /bytes/1 HTTP/1.1\r\nHost: x\r\n\r\n",
        &mut Ctx { time: None },
    );
    c.handle_eof(T0);
    assert!(!c.wants_close());
    let out = drain(&mut c);
    let (_, rest) = parse_resp(&out, false);
    let (r, rest) = parse_resp(rest, false);
    assert!(rest.is_empty());
    assert_eq!(r.body.len(), 1);
    assert!(c.wants_close());
    // Half a request then FIN: closed without an answer.
    let mut c = conn();
    c.handle_input(T0, b"GET / HT", &mut Ctx { time: None });
    c.handle_eof(T0);
    assert!(c.wants_close());
    assert!(drain(&mut c).is_empty());
    // Body cut short.
    let mut c = conn();
    c.handle_input(
        T0,
        b"POST /sha256 HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\nab",
        &mut Ctx { time: None },
    );
    c.handle_eof(T0);
    assert!(c.wants_close());
}

#[test]
fn output_in_tiny_pieces_is_identical() {
    let req = b"GET /bytes/5000 HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut a = conn();
    a.handle_input(T0, req, &mut Ctx { time: None });
    let big = drain_step(&mut a, T0, 100_000);
    let mut b = conn();
    b.handle_input(T0, req, &mut Ctx { time: None });
    let small = drain_step(&mut b, T0, 7);
    assert_eq!(big, small);
}

#[test]
fn dir_site_over_a_connection() {
    let base = std::env::temp_dir().join(format!("ustack-http-conn-{}", std::process::id()));
    std::fs::create_dir_all(&base).unwrap();
    std::fs::write(base.join("f.json"), b"{\"a\":1234567890}").unwrap();
    let cfg = ServerConfig {
        limits: HttpLimits::default(),
        site: Site::Dir(base.clone()),
    };
    let mut c = HttpConnection::new(T0, Arc::new(cfg));
    let out = exchange(&mut c, b"GET /f.json HTTP/1.1\r\nHost: x\r\n\r\nGET /f.json HTTP/1.1\r\nHost: x\r\nRange: bytes=5-9\r\n\r\n");
    let _ = std::fs::remove_dir_all(&base);
    let (a, rest) = parse_resp(&out, false);
    let (b, _) = parse_resp(rest, false);
    assert_eq!(
        (a.status, a.header("Content-Type"), a.body.as_slice()),
        (200, Some("application/json"), &b"{\"a\":1234567890}"[..])
    );
    assert_eq!((b.status, b.body.as_slice()), (206, &b"12345"[..]));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Arbitrary bytes, in arbitrary pieces: no panic, bounded buffers,
    /// output never beyond the buffer given.
    #[test]
    fn arbitrary_input_never_panics(data in proptest::collection::vec(any::<u8>(), 0..3000), cuts in proptest::collection::vec(1usize..400, 1..20)) {
        let mut c = conn_with(HttpLimits { max_uri: 200, max_header_bytes: 300, max_headers: 8, max_body: 100, ..Default::default() });
        let mut rest: &[u8] = &data;
        let mut i = 0;
        let mut buf = [0u8; 512];
        while !rest.is_empty() && i < 200 {
            let cut = cuts[i % cuts.len()].min(rest.len());
            let n = c.handle_input(T0, &rest[..cut], &mut Ctx { time: None });
            prop_assert!(n <= cut);
            rest = &rest[n..];
            prop_assert!(c.inbuf.len() <= c.limits().input_buffer());
            let k = c.poll_output(T0, &mut buf, &mut Ctx { time: None });
            prop_assert!(k <= buf.len());
            prop_assert!(c.out.len() < 4096);
            if c.wants_close() || c.is_upgraded() { break; }
            i += 1;
        }
        c.handle_eof(T0);
        c.handle_timeout(Instant::from_secs(1000));
        let _ = drain_step(&mut c, T0, 64);
    }

    /// Valid requests with random pipelining and random splits give the same
    /// answers as when sent whole.
    #[test]
    fn random_splits_same_answers(cuts in proptest::collection::vec(1usize..50, 1..10)) {
        let input: Vec<u8> = VALID.concat();
        let whole = exchange(&mut conn(), &input);
        let mut c = conn();
        let mut rest: &[u8] = &input;
        let mut out = Vec::new();
        let mut i = 0;
        while !rest.is_empty() {
            let cut = cuts[i % cuts.len()].min(rest.len());
            let n = c.handle_input(T0, &rest[..cut], &mut Ctx { time: None });
            rest = &rest[n..];
            out.extend(drain_step(&mut c, T0, 33));
            i += 1;
        }
        prop_assert_eq!(out, whole);
    }
}

#[test]
fn discard_counts_a_body_of_any_size_and_keeps_the_connection() {
    let (r, _) = one(b"POST /discard HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"0\n");
    // Far beyond max_body (1 MiB), in pieces, none of it buffered; then a
    // second request on the same connection.
    let mut c = conn();
    let n: u64 = 5 * 1024 * 1024 + 3;
    let head = format!("POST /discard HTTP/1.1\r\nHost: x\r\nContent-Length: {n}\r\n\r\n");
    c.handle_input(T0, head.as_bytes(), &mut Ctx { time: None });
    let piece = vec![7u8; 4096];
    let mut left = n;
    while left > 0 {
        let k = left.min(4096) as usize;
        assert_eq!(c.handle_input(T0, &piece[..k], &mut Ctx { time: None }), k);
        assert!(c.inbuf.is_empty(), "body bytes are not buffered");
        left -= k as u64;
    }
    let out = drain(&mut c);
    let (r, rest) = parse_resp(&out, false);
    assert!(rest.is_empty());
    assert_eq!(r.status, 200);
    assert_eq!(r.body, format!("{n}\n").as_bytes());
    let (r, _) = {
        c.handle_input(T0, &sha_request_chunked(b"abc", 1), &mut Ctx { time: None });
        let out = drain(&mut c);
        let (r, rest) = parse_resp(&out, false);
        (r, rest.to_vec())
    };
    assert_eq!(
        r.body,
        b"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\n"
    );
    // GET is not allowed.
    let (r, _) = one(b"GET /discard HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.status, 405);
}
