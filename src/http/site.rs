//! Static files: the embedded demo site or a directory, path safety,
//! content types, validators (ETag, Last-Modified), conditional requests
//! (RFC 9110 section 13) and byte ranges (RFC 9110 section 14).

use std::path::{Path, PathBuf};

use super::date::parse_http_date;
use super::request::{Method, Request};

/// Where static files come from.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Site {
    /// The files under `www/` compiled into the binary ([`EMBEDDED`]).
    #[default]
    Embedded,
    /// A directory on disk (`--www DIR`).
    Dir(PathBuf),
}

/// One file of the embedded site.
#[derive(Debug)]
pub struct EmbeddedFile {
    /// URL path, starting with `/` (`/index.html`).
    pub path: &'static str,
    pub data: &'static [u8],
    /// FNV-1a of the content, computed at compile time; the strong ETag.
    pub hash: u64,
}

/// Last-Modified of every embedded file: a fixed instant
/// (2025-01-01T00:00:00Z), so builds are reproducible and no clock is read.
pub const EMBEDDED_LAST_MODIFIED: u64 = 1_735_689_600;

/// FNV-1a, 64 bit. `const` so the embedded table's ETags are computed by
/// the compiler.
pub const fn fnv1a(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < data.len() {
        h ^= data[i] as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    h
}

/// `embed!("/path")` includes `www/path` and hashes it at compile time.
macro_rules! embed {
    ($p:literal) => {
        EmbeddedFile {
            path: $p,
            data: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/www", $p)),
            hash: fnv1a(include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/www",
                $p
            ))),
        }
    };
}

/// The embedded site. **To add a file, put it under `www/` and add a line
/// here**; the test `every_www_file_is_embedded` fails if you forget.
pub static EMBEDDED: &[EmbeddedFile] = &[
    embed!("/index.html"),
    embed!("/style.css"),
    embed!("/chat.js"),
    embed!("/http/index.html"),
    embed!("/dashboard/index.html"),
    embed!("/dashboard/dashboard.js"),
    embed!("/dashboard/dashboard.css"),
];

/// `Content-Type` by file extension (RFC 9110 8.3). Unknown types are sent
/// as `application/octet-stream`, which browsers download rather than guess.
pub fn content_type(path: &str) -> &'static str {
    let ext = path
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" | "map" => "application/json",
        "txt" | "md" => "text/plain; charset=utf-8",
        "xml" => "application/xml",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "wasm" => "application/wasm",
        "pdf" => "application/pdf",
        "woff2" => "font/woff2",
        "woff" => "font/woff",
        _ => "application/octet-stream",
    }
}

/// Why a request path was refused before any lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("path does not start with '/'")]
    NotAbsolute,
    #[error("bad percent-encoding")]
    BadPercent,
    #[error("encoded '/' (%2F) in a segment")]
    EncodedSlash,
    #[error("NUL byte in path")]
    Nul,
    #[error("backslash in path")]
    Backslash,
    #[error("'.' or '..' segment")]
    DotSegment,
    #[error("path is not UTF-8 after decoding")]
    NotUtf8,
    #[error("empty segment ('//')")]
    EmptySegment,
    #[error("hidden file (segment starting with '.')")]
    Hidden,
}

impl PathError {
    /// Malformed paths are 400; paths that are well formed but name
    /// something we never serve are 404.
    pub fn status(&self) -> super::Status {
        match self {
            PathError::EmptySegment | PathError::Hidden => super::Status::NOT_FOUND,
            _ => super::Status::BAD_REQUEST,
        }
    }
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Split a (percent-encoded) path into decoded segments. A path ending in
/// `/` yields a last empty segment (a directory). Everything that could
/// escape the site root or confuse a file system is refused: `.`/`..`
/// segments, `%2F`, backslashes, NUL, and hidden files.
pub fn decode_path(path: &str) -> Result<Vec<String>, PathError> {
    let rest = path.strip_prefix('/').ok_or(PathError::NotAbsolute)?;
    let raw: Vec<&str> = rest.split('/').collect();
    let last = raw.len() - 1;
    let mut out = Vec::with_capacity(raw.len());
    for (i, seg) in raw.iter().enumerate() {
        let b = seg.as_bytes();
        let mut dec = Vec::with_capacity(b.len());
        let mut j = 0;
        while j < b.len() {
            if b[j] == b'%' {
                let (Some(h), Some(l)) = (
                    b.get(j + 1).and_then(|&c| hex(c)),
                    b.get(j + 2).and_then(|&c| hex(c)),
                ) else {
                    return Err(PathError::BadPercent);
                };
                dec.push(h << 4 | l);
                j += 3;
            } else {
                dec.push(b[j]);
                j += 1;
            }
        }
        if dec.contains(&b'/') {
            return Err(PathError::EncodedSlash);
        }
        if dec.contains(&0) {
            return Err(PathError::Nul);
        }
        if dec.contains(&b'\\') {
            return Err(PathError::Backslash);
        }
        let s = String::from_utf8(dec).map_err(|_| PathError::NotUtf8)?;
        if s == "." || s == ".." {
            return Err(PathError::DotSegment);
        }
        if s.is_empty() && i != last {
            return Err(PathError::EmptySegment);
        }
        if s.starts_with('.') {
            return Err(PathError::Hidden);
        }
        out.push(s);
    }
    Ok(out)
}

/// A file found for a request, with its validators.
#[derive(Debug)]
pub struct Resource {
    pub len: u64,
    /// Strong entity-tag, with quotes.
    pub etag: String,
    /// Seconds since the epoch.
    pub last_modified: u64,
    pub content_type: &'static str,
    pub source: Source,
}

#[derive(Debug)]
pub enum Source {
    Static(&'static [u8]),
    File(std::fs::File),
}

/// The result of looking a path up.
#[derive(Debug)]
pub enum Lookup {
    Found(Resource),
    /// A directory asked for without the trailing slash: 301 to this path.
    Redirect(String),
    NotFound,
    BadPath(PathError),
}

impl Site {
    /// Look up the (still encoded) request `path`. For [`Site::Dir`] this
    /// touches the file system (stat, open); it never reads a clock.
    pub fn lookup(&self, path: &str) -> Lookup {
        let segs = match decode_path(path) {
            Ok(s) => s,
            Err(e) => return Lookup::BadPath(e),
        };
        let is_dir = segs.last().is_some_and(|s| s.is_empty());
        match self {
            Site::Embedded => {
                let joined = format!("/{}", segs.join("/"));
                let want = if is_dir {
                    format!("{joined}index.html")
                } else {
                    joined.clone()
                };
                if let Some(f) = EMBEDDED.iter().find(|f| f.path == want) {
                    return Lookup::Found(Resource {
                        len: f.data.len() as u64,
                        etag: format!("\"{:016x}\"", f.hash),
                        last_modified: EMBEDDED_LAST_MODIFIED,
                        content_type: content_type(f.path),
                        source: Source::Static(f.data),
                    });
                }
                if !is_dir
                    && EMBEDDED
                        .iter()
                        .any(|f| f.path == format!("{joined}/index.html"))
                {
                    return Lookup::Redirect(format!("{path}/"));
                }
                Lookup::NotFound
            }
            Site::Dir(root) => lookup_dir(root, path, &segs, is_dir),
        }
    }
}

/// Canonicalize `p` and make sure it is still inside `root` (so a symlink
/// pointing out of the site is "not found").
fn inside(root: &Path, p: &Path) -> Option<PathBuf> {
    let c = std::fs::canonicalize(p).ok()?;
    c.starts_with(root).then_some(c)
}

fn lookup_dir(root: &Path, path: &str, segs: &[String], is_dir: bool) -> Lookup {
    let Ok(root) = std::fs::canonicalize(root) else {
        return Lookup::NotFound;
    };
    let mut p = root.clone();
    for s in segs.iter().filter(|s| !s.is_empty()) {
        p.push(s);
    }
    let Some(mut file) = inside(&root, &p) else {
        return Lookup::NotFound;
    };
    let Ok(mut meta) = std::fs::metadata(&file) else {
        return Lookup::NotFound;
    };
    if meta.is_dir() {
        if !is_dir {
            return Lookup::Redirect(format!("{path}/"));
        }
        let Some(index) = inside(&root, &file.join("index.html")) else {
            return Lookup::NotFound;
        };
        file = index;
        let Ok(m) = std::fs::metadata(&file) else {
            return Lookup::NotFound;
        };
        meta = m;
    } else if is_dir {
        return Lookup::NotFound;
    }
    if !meta.is_file() {
        return Lookup::NotFound;
    }
    let Ok(f) = std::fs::File::open(&file) else {
        return Lookup::NotFound;
    };
    let (secs, nanos) = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| (d.as_secs(), d.subsec_nanos()))
        .unwrap_or((0, 0));
    Lookup::Found(Resource {
        len: meta.len(),
        etag: format!("\"{:x}-{:x}.{:x}\"", meta.len(), secs, nanos),
        last_modified: secs,
        content_type: content_type(&file.to_string_lossy()),
        source: Source::File(f),
    })
}

/// One entity-tag from an `If-Match` / `If-None-Match` / `If-Range` list.
#[derive(Debug, PartialEq, Eq)]
struct Tag<'a> {
    weak: bool,
    /// Including the quotes.
    opaque: &'a str,
}

/// Parse `#entity-tag` or `*` (RFC 9110 8.8.3). `None` = `*`; an invalid
/// list yields the tags before the error (a recipient treats it as
/// not matching).
fn parse_tags(v: &str) -> Option<Vec<Tag<'_>>> {
    if v.trim() == "*" {
        return None;
    }
    let mut out = Vec::new();
    let mut s = v;
    loop {
        s = s.trim_start_matches([' ', '\t', ',']);
        if s.is_empty() {
            break;
        }
        let (weak, rest) = match s.strip_prefix("W/") {
            Some(r) => (true, r),
            None => (false, s),
        };
        let Some(body) = rest.strip_prefix('"') else {
            break;
        };
        let Some(end) = body.find('"') else { break };
        out.push(Tag {
            weak,
            opaque: &rest[..end + 2],
        });
        s = &body[end + 1..];
    }
    Some(out)
}

/// What to send for a GET/HEAD of a resource, after the preconditions and
/// `Range` have been evaluated in the order of RFC 9110 13.2.2.
#[derive(Debug, PartialEq, Eq)]
pub enum Selection {
    /// 200 with the whole representation.
    Full,
    /// 304.
    NotModified,
    /// 412.
    PreconditionFailed,
    /// 206 with bytes `start..=end`.
    Partial { start: u64, end: u64 },
    /// 416.
    Unsatisfiable,
}

/// At most this many ranges are looked at; more is answered with the whole
/// representation (a defence against range amplification, RFC 9110 14.2).
pub const MAX_RANGES: usize = 16;

/// Evaluate preconditions and Range for a representation with validators
/// `etag` (strong, quoted) and `last_modified`, of `len` bytes.
pub fn select(req: &Request, etag: &str, last_modified: u64, len: u64) -> Selection {
    let get_or_head = matches!(req.method, Method::Get | Method::Head);
    // 1. If-Match: strong comparison (RFC 9110 13.1.1).
    if let Some(v) = req.header_str("if-match") {
        let ok = match parse_tags(v) {
            None => true,
            Some(tags) => tags.iter().any(|t| !t.weak && t.opaque == etag),
        };
        if !ok {
            return Selection::PreconditionFailed;
        }
    } else if let Some(d) = req
        .header_str("if-unmodified-since")
        .and_then(parse_http_date)
    {
        // 2. If-Unmodified-Since (only without If-Match).
        if last_modified > d {
            return Selection::PreconditionFailed;
        }
    }
    // 3. If-None-Match: weak comparison (RFC 9110 13.1.2).
    if let Some(v) = req.header_str("if-none-match") {
        let matched = match parse_tags(v) {
            None => true,
            Some(tags) => tags.iter().any(|t| t.opaque == etag),
        };
        if matched {
            return if get_or_head {
                Selection::NotModified
            } else {
                Selection::PreconditionFailed
            };
        }
    } else if get_or_head {
        // 4. If-Modified-Since (only without If-None-Match, only GET/HEAD).
        if let Some(d) = req
            .header_str("if-modified-since")
            .and_then(parse_http_date)
        {
            if last_modified <= d {
                return Selection::NotModified;
            }
        }
    }
    // 5. Range: defined for GET only (RFC 9110 14.2); ignored for HEAD.
    if req.method != Method::Get {
        return Selection::Full;
    }
    let Some(range) = req.header_str("range") else {
        return Selection::Full;
    };
    if let Some(ir) = req.header_str("if-range") {
        // RFC 9110 13.1.5: an entity-tag must match strongly; a date must
        // equal Last-Modified exactly. Otherwise send the whole thing.
        let matches = if ir.starts_with("W/") {
            false
        } else if ir.starts_with('"') {
            ir == etag
        } else {
            parse_http_date(ir) == Some(last_modified)
        };
        if !matches {
            return Selection::Full;
        }
    }
    parse_range(range, len)
}

/// Parse `bytes=...` against a representation of `len` bytes (RFC 9110
/// 14.1.2). An invalid header or another unit is ignored (200); exactly one
/// satisfiable range gives 206; several give 200 with the whole body (we do
/// not produce multipart/byteranges); none gives 416.
pub fn parse_range(v: &str, len: u64) -> Selection {
    let Some((unit, set)) = v.split_once('=') else {
        return Selection::Full;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return Selection::Full;
    }
    let specs: Vec<&str> = set
        .split(',')
        .map(|s| s.trim_matches([' ', '\t']))
        .filter(|s| !s.is_empty())
        .collect();
    if specs.is_empty() || specs.len() > MAX_RANGES {
        return Selection::Full;
    }
    let num = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        // Longer than u64: treat as "very large" (still a valid number).
        Some(s.parse().unwrap_or(u64::MAX))
    };
    let mut found = Vec::new();
    for spec in specs {
        let Some((a, b)) = spec.split_once('-') else {
            return Selection::Full;
        };
        if a.is_empty() {
            // suffix-range: the last n bytes.
            let Some(n) = num(b) else {
                return Selection::Full;
            };
            if n > 0 && len > 0 {
                found.push((len.saturating_sub(n), len - 1));
            }
        } else {
            let Some(first) = num(a) else {
                return Selection::Full;
            };
            let last = if b.is_empty() {
                u64::MAX
            } else {
                let Some(last) = num(b) else {
                    return Selection::Full;
                };
                if last < first {
                    return Selection::Full; // invalid range-spec
                }
                last
            };
            if first < len {
                found.push((first, last.min(len - 1)));
            }
        }
    }
    match found.as_slice() {
        [] => Selection::Unsatisfiable,
        [(start, end)] => Selection::Partial {
            start: *start,
            end: *end,
        },
        _ => Selection::Full,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::Version;

    fn req(method: Method, headers: &[(&str, &str)]) -> Request {
        Request {
            method,
            target: "/".into(),
            path: "/".into(),
            query: None,
            version: Version::Http11,
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
                .collect(),
        }
    }

    #[test]
    fn traversal_attempts_are_refused() {
        let cases: &[(&str, PathError)] = &[
            ("/../etc/passwd", PathError::DotSegment),
            ("/a/../../etc/passwd", PathError::DotSegment),
            ("/%2e%2e/etc/passwd", PathError::DotSegment),
            ("/%2E%2E/etc/passwd", PathError::DotSegment),
            ("/.%2e/x", PathError::DotSegment),
            ("/./index.html", PathError::DotSegment),
            ("/a/..", PathError::DotSegment),
            ("/..%2fetc/passwd", PathError::EncodedSlash),
            ("/%2fetc/passwd", PathError::EncodedSlash),
            ("/a%2F..%2F..%2Fb", PathError::EncodedSlash),
            ("/..\\etc\\passwd", PathError::Backslash),
            ("/%5c..%5cetc", PathError::Backslash),
            ("/index.html%00.txt", PathError::Nul),
            ("/%", PathError::BadPercent),
            ("/%zz", PathError::BadPercent),
            ("/%2", PathError::BadPercent),
            ("/%ff%fe", PathError::NotUtf8),
            ("//etc/passwd", PathError::EmptySegment),
            ("/.git/config", PathError::Hidden),
            ("/.htaccess", PathError::Hidden),
            ("etc/passwd", PathError::NotAbsolute),
        ];
        for (p, e) in cases {
            assert_eq!(decode_path(p), Err(*e), "{p}");
            assert!(
                matches!(Site::Embedded.lookup(p), Lookup::BadPath(x) if x == *e),
                "{p}"
            );
        }
        assert_eq!(decode_path("/a%20b/c/").unwrap(), vec!["a b", "c", ""]);
        assert_eq!(decode_path("/").unwrap(), vec![""]);
        assert_eq!(decode_path("/caf%C3%A9").unwrap(), vec!["café"]);
    }

    #[test]
    fn embedded_lookup_and_redirect() {
        match Site::Embedded.lookup("/") {
            Lookup::Found(r) => {
                assert_eq!(r.content_type, "text/html; charset=utf-8");
                assert!(r.etag.starts_with('"') && r.etag.ends_with('"'));
                assert_eq!(r.last_modified, EMBEDDED_LAST_MODIFIED);
            }
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(Site::Embedded.lookup("/style.css"), Lookup::Found(r) if r.content_type.starts_with("text/css"))
        );
        assert!(matches!(Site::Embedded.lookup("/http"), Lookup::Redirect(l) if l == "/http/"));
        assert!(matches!(Site::Embedded.lookup("/http/"), Lookup::Found(_)));
        assert!(matches!(Site::Embedded.lookup("/nope"), Lookup::NotFound));
        assert!(matches!(
            Site::Embedded.lookup("/index.html/"),
            Lookup::NotFound
        ));
    }

    #[test]
    fn every_www_file_is_embedded() {
        fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    walk(&p, base, out);
                } else {
                    out.push(format!(
                        "/{}",
                        p.strip_prefix(base).unwrap().to_string_lossy()
                    ));
                }
            }
        }
        let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("www");
        let mut files = Vec::new();
        walk(&base, &base, &mut files);
        for f in files {
            assert!(
                EMBEDDED.iter().any(|e| e.path == f),
                "www{f} is not listed in http::site::EMBEDDED"
            );
        }
    }

    /// A scratch directory under the system temp dir, removed on drop.
    struct Scratch(PathBuf);
    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn dir_site_stays_inside_root() {
        let base = std::env::temp_dir().join(format!("ustack-http-test-{}", std::process::id()));
        let _guard = Scratch(base.clone());
        let root = base.join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("index.html"), b"<h1>hi</h1>").unwrap();
        std::fs::write(root.join("sub/index.html"), b"sub").unwrap();
        std::fs::write(root.join("a.txt"), b"hello").unwrap();
        std::fs::write(base.join("secret.txt"), b"secret").unwrap();
        std::os::unix::fs::symlink(base.join("secret.txt"), root.join("link.txt")).unwrap();
        std::os::unix::fs::symlink(&base, root.join("up")).unwrap();
        std::os::unix::fs::symlink(root.join("a.txt"), root.join("inner.txt")).unwrap();
        let site = Site::Dir(root.clone());
        match site.lookup("/a.txt") {
            Lookup::Found(r) => {
                assert_eq!(r.len, 5);
                assert_eq!(r.content_type, "text/plain; charset=utf-8");
                assert!(r.etag.starts_with("\"5-"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(site.lookup("/"), Lookup::Found(r) if r.len == 11));
        assert!(matches!(site.lookup("/sub"), Lookup::Redirect(l) if l == "/sub/"));
        assert!(matches!(site.lookup("/sub/"), Lookup::Found(r) if r.len == 3));
        // Symlinks inside the root are fine; out of it they do not exist.
        assert!(matches!(site.lookup("/inner.txt"), Lookup::Found(_)));
        assert!(matches!(site.lookup("/link.txt"), Lookup::NotFound));
        assert!(matches!(site.lookup("/up/secret.txt"), Lookup::NotFound));
        assert!(matches!(site.lookup("/up/"), Lookup::NotFound));
        assert!(matches!(
            site.lookup("/../secret.txt"),
            Lookup::BadPath(PathError::DotSegment)
        ));
        assert!(matches!(
            site.lookup("/%2e%2e/secret.txt"),
            Lookup::BadPath(PathError::DotSegment)
        ));
        assert!(matches!(site.lookup("/missing"), Lookup::NotFound));
        assert!(matches!(site.lookup("/a.txt/"), Lookup::NotFound));
    }

    #[test]
    fn ranges() {
        let cases: &[(&str, Selection)] = &[
            ("bytes=0-9", Selection::Partial { start: 0, end: 9 }),
            ("bytes=10-", Selection::Partial { start: 10, end: 99 }),
            ("bytes=-10", Selection::Partial { start: 90, end: 99 }),
            ("bytes=-1000", Selection::Partial { start: 0, end: 99 }),
            ("bytes=50-1000", Selection::Partial { start: 50, end: 99 }),
            ("BYTES = 5-5", Selection::Partial { start: 5, end: 5 }),
            ("bytes=99999999999999999999999-", Selection::Unsatisfiable),
            ("bytes=100-", Selection::Unsatisfiable),
            ("bytes=100-200", Selection::Unsatisfiable),
            ("bytes=-0", Selection::Unsatisfiable),
            ("bytes=0-1,5-6", Selection::Full),
            (
                "bytes=200-300, 0-1",
                Selection::Partial { start: 0, end: 1 },
            ),
            ("bytes=5-1", Selection::Full),
            ("bytes=a-b", Selection::Full),
            ("bytes=", Selection::Full),
            ("items=0-1", Selection::Full),
            ("bytes 0-1", Selection::Full),
        ];
        for (h, want) in cases {
            assert_eq!(parse_range(h, 100), *want, "{h}");
        }
        assert_eq!(parse_range("bytes=0-", 0), Selection::Unsatisfiable);
        let many: Vec<String> = (0..20).map(|i| format!("{i}-{i}")).collect();
        assert_eq!(
            parse_range(&format!("bytes={}", many.join(",")), 100),
            Selection::Full
        );
    }

    #[test]
    fn conditionals() {
        let e = "\"abc\"";
        let lm = 784_111_777; // Sun, 06 Nov 1994 08:49:37 GMT
        let g = |h: &[(&str, &str)]| select(&req(Method::Get, h), e, lm, 100);
        assert_eq!(g(&[]), Selection::Full);
        assert_eq!(g(&[("If-None-Match", "\"abc\"")]), Selection::NotModified);
        assert_eq!(g(&[("If-None-Match", "W/\"abc\"")]), Selection::NotModified);
        assert_eq!(
            g(&[("If-None-Match", "\"x\", \"abc\"")]),
            Selection::NotModified
        );
        assert_eq!(g(&[("If-None-Match", "*")]), Selection::NotModified);
        assert_eq!(g(&[("If-None-Match", "\"x\"")]), Selection::Full);
        // If-None-Match wins over If-Modified-Since.
        assert_eq!(
            g(&[
                ("If-None-Match", "\"x\""),
                ("If-Modified-Since", "Sun, 06 Nov 1994 08:49:37 GMT")
            ]),
            Selection::Full
        );
        assert_eq!(
            g(&[("If-Modified-Since", "Sun, 06 Nov 1994 08:49:37 GMT")]),
            Selection::NotModified
        );
        assert_eq!(
            g(&[("If-Modified-Since", "Sun, 06 Nov 1994 08:49:36 GMT")]),
            Selection::Full
        );
        assert_eq!(g(&[("If-Modified-Since", "not a date")]), Selection::Full);
        assert_eq!(g(&[("If-Match", "\"abc\"")]), Selection::Full);
        assert_eq!(
            g(&[("If-Match", "W/\"abc\"")]),
            Selection::PreconditionFailed
        );
        assert_eq!(g(&[("If-Match", "\"zzz\"")]), Selection::PreconditionFailed);
        assert_eq!(
            g(&[("If-Unmodified-Since", "Sun, 06 Nov 1994 08:49:36 GMT")]),
            Selection::PreconditionFailed
        );
        assert_eq!(
            g(&[("If-Unmodified-Since", "Sun, 06 Nov 1994 08:49:37 GMT")]),
            Selection::Full
        );
        // Range with If-Range.
        assert_eq!(
            g(&[("Range", "bytes=0-0")]),
            Selection::Partial { start: 0, end: 0 }
        );
        assert_eq!(
            g(&[("Range", "bytes=0-0"), ("If-Range", "\"abc\"")]),
            Selection::Partial { start: 0, end: 0 }
        );
        assert_eq!(
            g(&[("Range", "bytes=0-0"), ("If-Range", "\"old\"")]),
            Selection::Full
        );
        assert_eq!(
            g(&[("Range", "bytes=0-0"), ("If-Range", "W/\"abc\"")]),
            Selection::Full
        );
        assert_eq!(
            g(&[
                ("Range", "bytes=0-0"),
                ("If-Range", "Sun, 06 Nov 1994 08:49:37 GMT")
            ]),
            Selection::Partial { start: 0, end: 0 }
        );
        assert_eq!(
            g(&[
                ("Range", "bytes=0-0"),
                ("If-Range", "Sun, 06 Nov 1994 08:49:38 GMT")
            ]),
            Selection::Full
        );
        assert_eq!(g(&[("Range", "bytes=500-")]), Selection::Unsatisfiable);
        // HEAD ignores Range but honours validators.
        let h = |hs: &[(&str, &str)]| select(&req(Method::Head, hs), e, lm, 100);
        assert_eq!(h(&[("Range", "bytes=0-0")]), Selection::Full);
        assert_eq!(h(&[("If-None-Match", "\"abc\"")]), Selection::NotModified);
    }
}
