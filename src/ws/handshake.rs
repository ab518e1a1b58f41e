//! The opening handshake, server side (RFC 6455 section 4.2).
//!
//! The client sends an HTTP/1.1 `GET` with
//!
//! ```text
//! Host: server.example.com
//! Upgrade: websocket
//! Connection: Upgrade
//! Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==
//! Sec-WebSocket-Version: 13
//! [Sec-WebSocket-Protocol: chat, superchat]
//! [Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits]
//! [Origin: http://example.com]
//! ```
//!
//! and the server answers `101 Switching Protocols` with
//! `Sec-WebSocket-Accept = base64(SHA-1(key + GUID))`, which proves that it
//! understood the WebSocket request (section 1.3). From the byte after the
//! response's empty line on, both sides speak frames.
//!
//! [`handshake`] does not parse HTTP: the [`http`](crate::http) module hands
//! over the request line and headers as a [`HandshakeRequest`]. Its result
//! contains the exact response bytes to write.

use super::deflate::{self, DeflateParams};
use super::WsConfig;
use base64::Engine;
use sha1::{Digest, Sha1};

/// The GUID of section 1.3 that is appended to the key.
pub const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// `base64(SHA-1(key + GUID))` (section 4.2.2, item 5.4).
pub fn accept_key(key: &str) -> String {
    let mut h = Sha1::new();
    h.update(key.as_bytes());
    h.update(GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

/// The parts of an HTTP request head that the handshake needs.
#[derive(Debug, Clone, Copy)]
pub struct HandshakeRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    /// `x` in `HTTP/1.x` (the HTTP module only accepts major version 1).
    pub version_minor: u8,
    /// Header (name, value) pairs in order; names are matched
    /// case-insensitively, repeated headers are allowed.
    pub headers: &'a [(&'a str, &'a [u8])],
}

/// Why a handshake was refused: one variant per rule of section 4.2.1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    #[error("method must be GET")]
    MethodNotGet,
    #[error("HTTP/1.1 or later is required")]
    HttpVersionTooOld,
    #[error("missing Host header")]
    MissingHost,
    #[error("Upgrade header must contain \"websocket\"")]
    MissingUpgradeWebsocket,
    #[error("Connection header must contain \"Upgrade\"")]
    MissingConnectionUpgrade,
    #[error("Sec-WebSocket-Version must be 13")]
    UnsupportedVersion,
    #[error("missing Sec-WebSocket-Key header")]
    MissingKey,
    #[error("more than one Sec-WebSocket-Key header")]
    DuplicateKey,
    #[error("Sec-WebSocket-Key must be base64 of 16 bytes")]
    BadKey,
    #[error("Origin not allowed")]
    OriginNotAllowed,
}

impl HandshakeError {
    /// HTTP status for the refusal: 426 for a version we do not speak
    /// (section 4.4), 403 for an origin we do not serve (section 4.2.2),
    /// 400 for everything else.
    pub fn status(&self) -> u16 {
        match self {
            HandshakeError::UnsupportedVersion => 426,
            HandshakeError::OriginNotAllowed => 403,
            _ => 400,
        }
    }
}

/// The decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeOutcome {
    /// Write `response`, then hand the connection to a
    /// [`WsConnection`](super::WsConnection) built with `deflate`.
    Accept {
        response: Vec<u8>,
        protocol: Option<String>,
        deflate: Option<DeflateParams>,
    },
    /// Write `response`; close the TCP connection afterwards if `close`.
    /// (After a 426 the client may retry on the same connection.)
    Reject {
        response: Vec<u8>,
        close: bool,
        error: HandshakeError,
    },
}

fn header_values<'a>(
    req: &'a HandshakeRequest<'a>,
    name: &'a str,
) -> impl Iterator<Item = &'a [u8]> + 'a {
    req.headers
        .iter()
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| *v)
}

/// Comma-separated tokens across all values of a header, trimmed.
fn header_tokens<'a>(req: &'a HandshakeRequest<'a>, name: &'a str) -> Vec<&'a str> {
    header_values(req, name)
        .filter_map(|v| core::str::from_utf8(v).ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim_matches(|c| c == ' ' || c == '\t'))
        .filter(|t| !t.is_empty())
        .collect()
}

fn has_token(req: &HandshakeRequest, name: &str, token: &str) -> bool {
    header_tokens(req, name)
        .iter()
        .any(|t| t.eq_ignore_ascii_case(token))
}

/// A plain-text HTTP error response (also for the glue, e.g. a 404 for an
/// invalid chat room name).
pub fn error_response(
    status: u16,
    body: &str,
    close: bool,
    extra_headers: &[(&str, &str)],
) -> Vec<u8> {
    let reason = match status {
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        426 => "Upgrade Required",
        _ => "Error",
    };
    let mut s = format!("HTTP/1.1 {status} {reason}\r\n");
    for (k, v) in extra_headers {
        s.push_str(&format!("{k}: {v}\r\n"));
    }
    s.push_str("Content-Type: text/plain; charset=utf-8\r\n");
    s.push_str(&format!("Content-Length: {}\r\n", body.len() + 1));
    if close {
        s.push_str("Connection: close\r\n");
    }
    s.push_str("\r\n");
    s.push_str(body);
    s.push('\n');
    s.into_bytes()
}

fn check(req: &HandshakeRequest, config: &WsConfig) -> Result<String, HandshakeError> {
    use HandshakeError::*;
    // 4.2.1 item 1: "An HTTP/1.1 or higher GET request".
    if req.method != "GET" {
        return Err(MethodNotGet);
    }
    if req.version_minor < 1 {
        return Err(HttpVersionTooOld);
    }
    // Item 2: a Host header field.
    if header_values(req, "host").next().is_none() {
        return Err(MissingHost);
    }
    // Item 3: Upgrade includes "websocket" (case-insensitive).
    if !has_token(req, "upgrade", "websocket") {
        return Err(MissingUpgradeWebsocket);
    }
    // Item 4: Connection includes the token "Upgrade" (case-insensitive),
    // e.g. "keep-alive, Upgrade" as Firefox sends.
    if !has_token(req, "connection", "upgrade") {
        return Err(MissingConnectionUpgrade);
    }
    // Item 6: version 13; anything else → 426 with our version (4.4).
    let versions: Vec<&[u8]> = header_values(req, "sec-websocket-version").collect();
    if versions.len() != 1 || versions[0].trim_ascii() != b"13" {
        return Err(UnsupportedVersion);
    }
    // Item 5: the key, base64 of a 16-byte nonce.
    let mut keys = header_values(req, "sec-websocket-key");
    let key = keys.next().ok_or(MissingKey)?;
    if keys.next().is_some() {
        return Err(DuplicateKey);
    }
    let key = core::str::from_utf8(key.trim_ascii()).map_err(|_| BadKey)?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(key)
        .map_err(|_| BadKey)?;
    if decoded.len() != 16 {
        return Err(BadKey);
    }
    // Item 7 (optional): Origin, checked against an allow-list.
    if let Some(allowed) = &config.origins {
        let origin = header_values(req, "origin")
            .next()
            .and_then(|v| core::str::from_utf8(v).ok());
        match origin {
            Some(o) if allowed.iter().any(|a| a.eq_ignore_ascii_case(o.trim())) => {}
            _ => return Err(OriginNotAllowed),
        }
    }
    Ok(key.to_string())
}

/// Decide on an upgrade request.
///
/// `supported_protocols` is the server's list of sub-protocols in order of
/// preference: the first one the client also offered is selected (the
/// *server's* preference wins; section 4.2.2 leaves the choice to the
/// server). A protocol the client did not offer is never selected; with no
/// match no `Sec-WebSocket-Protocol` header is sent, and it is up to the
/// client to give up. permessage-deflate is negotiated if `config.deflate`.
pub fn handshake(
    req: &HandshakeRequest,
    supported_protocols: &[&str],
    config: &WsConfig,
) -> HandshakeOutcome {
    let key = match check(req, config) {
        Ok(k) => k,
        Err(error) => {
            let status = error.status();
            let close = status != 426;
            let extra: &[(&str, &str)] = if status == 426 {
                &[("Sec-WebSocket-Version", "13")]
            } else {
                &[]
            };
            return HandshakeOutcome::Reject {
                response: error_response(status, &error.to_string(), close, extra),
                close,
                error,
            };
        }
    };
    let offered = header_tokens(req, "sec-websocket-protocol");
    let protocol = supported_protocols
        .iter()
        .find(|p| offered.iter().any(|o| o == *p))
        .map(|p| p.to_string());
    let deflate = if config.deflate {
        deflate::negotiate(header_values(req, "sec-websocket-extensions")).map(|mut p| {
            if !config.deflate_context_takeover {
                // RFC 7692 7.1.1.1 / 7.1.1.2: the server may ask for both,
                // offered or not (saves the per-connection zlib state).
                p.server_no_context_takeover = true;
                p.client_no_context_takeover = true;
            }
            p
        })
    } else {
        None
    };
    let mut s = String::from(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n",
    );
    s.push_str(&format!("Sec-WebSocket-Accept: {}\r\n", accept_key(&key)));
    if let Some(p) = &protocol {
        s.push_str(&format!("Sec-WebSocket-Protocol: {p}\r\n"));
    }
    if let Some(d) = &deflate {
        s.push_str(&format!(
            "Sec-WebSocket-Extensions: {}\r\n",
            d.response_header()
        ));
    }
    s.push_str("\r\n");
    HandshakeOutcome::Accept {
        response: s.into_bytes(),
        protocol,
        deflate,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"dGhlIHNhbXBsZSBub25jZQ==";

    fn base() -> Vec<(&'static str, &'static [u8])> {
        vec![
            ("Host", b"server.example.com"),
            ("Upgrade", b"websocket"),
            ("Connection", b"Upgrade"),
            ("Sec-WebSocket-Key", KEY),
            ("Sec-WebSocket-Version", b"13"),
        ]
    }

    fn run(headers: &[(&str, &[u8])], protos: &[&str], cfg: &WsConfig) -> HandshakeOutcome {
        let req = HandshakeRequest {
            method: "GET",
            path: "/chat",
            version_minor: 1,
            headers,
        };
        handshake(&req, protos, cfg)
    }

    fn without(name: &str) -> Vec<(&'static str, &'static [u8])> {
        base()
            .into_iter()
            .filter(|(n, _)| !n.eq_ignore_ascii_case(name))
            .collect()
    }

    fn with(name: &'static str, v: &'static [u8]) -> Vec<(&'static str, &'static [u8])> {
        let mut h = without(name);
        h.push((name, v));
        h
    }

    fn rejected(o: HandshakeOutcome) -> (u16, HandshakeError, String) {
        match o {
            HandshakeOutcome::Reject {
                response, error, ..
            } => {
                let s = String::from_utf8(response).unwrap();
                let code = s[9..12].parse().unwrap();
                (code, error, s)
            }
            other => panic!("expected reject, got {other:?}"),
        }
    }

    #[test]
    fn rfc6455_accept_key_example() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn accepts_rfc_example_request() {
        match run(&base(), &[], &WsConfig::default()) {
            HandshakeOutcome::Accept {
                response,
                protocol,
                deflate,
            } => {
                assert_eq!(
                    String::from_utf8(response).unwrap(),
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                     Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
                );
                assert_eq!(protocol, None);
                assert_eq!(deflate, None);
            }
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn method_and_version() {
        let h = base();
        let req = HandshakeRequest {
            method: "POST",
            path: "/",
            version_minor: 1,
            headers: &h,
        };
        assert_eq!(
            rejected(handshake(&req, &[], &WsConfig::default())).1,
            HandshakeError::MethodNotGet
        );
        let req = HandshakeRequest {
            method: "GET",
            path: "/",
            version_minor: 0,
            headers: &h,
        };
        assert_eq!(
            rejected(handshake(&req, &[], &WsConfig::default())).1,
            HandshakeError::HttpVersionTooOld
        );
    }

    #[test]
    fn missing_host_is_400_with_reason() {
        let (code, err, body) = rejected(run(&without("host"), &[], &WsConfig::default()));
        assert_eq!((code, err), (400, HandshakeError::MissingHost));
        assert!(body.ends_with("missing Host header\n"), "{body}");
        assert!(body.contains("Connection: close\r\n"));
    }

    #[test]
    fn upgrade_header_rules() {
        let cfg = WsConfig::default();
        let (c, e, _) = rejected(run(&with("Upgrade", b"h2c"), &[], &cfg));
        assert_eq!((c, e), (400, HandshakeError::MissingUpgradeWebsocket));
        assert!(matches!(
            run(&with("Upgrade", b"WebSocket"), &[], &cfg),
            HandshakeOutcome::Accept { .. }
        ));
        assert!(matches!(
            run(&with("Upgrade", b"foo/1, websocket"), &[], &cfg),
            HandshakeOutcome::Accept { .. }
        ));
        let (_, e, _) = rejected(run(&without("upgrade"), &[], &cfg));
        assert_eq!(e, HandshakeError::MissingUpgradeWebsocket);
    }

    #[test]
    fn connection_token_list() {
        let cfg = WsConfig::default();
        assert!(matches!(
            run(&with("Connection", b"keep-alive, Upgrade"), &[], &cfg),
            HandshakeOutcome::Accept { .. }
        ));
        assert!(matches!(
            run(&with("Connection", b"upgrade"), &[], &cfg),
            HandshakeOutcome::Accept { .. }
        ));
        let (_, e, _) = rejected(run(&with("Connection", b"keep-alive"), &[], &cfg));
        assert_eq!(e, HandshakeError::MissingConnectionUpgrade);
        // "Upgraded" is not the token "Upgrade".
        let (_, e, _) = rejected(run(&with("Connection", b"Upgraded"), &[], &cfg));
        assert_eq!(e, HandshakeError::MissingConnectionUpgrade);
    }

    #[test]
    fn key_rules() {
        let cfg = WsConfig::default();
        let (c, e, _) = rejected(run(&with("Sec-WebSocket-Key", b"c2hvcnQ="), &[], &cfg));
        assert_eq!((c, e), (400, HandshakeError::BadKey));
        let (_, e, _) = rejected(run(&with("Sec-WebSocket-Key", b"not base64!!"), &[], &cfg));
        assert_eq!(e, HandshakeError::BadKey);
        let (_, e, _) = rejected(run(&without("sec-websocket-key"), &[], &cfg));
        assert_eq!(e, HandshakeError::MissingKey);
        let mut h = base();
        h.push(("Sec-WebSocket-Key", KEY));
        assert_eq!(rejected(run(&h, &[], &cfg)).1, HandshakeError::DuplicateKey);
    }

    #[test]
    fn version_8_is_426_with_our_version() {
        let (code, e, s) = rejected(run(
            &with("Sec-WebSocket-Version", b"8"),
            &[],
            &WsConfig::default(),
        ));
        assert_eq!((code, e), (426, HandshakeError::UnsupportedVersion));
        assert!(s.contains("Sec-WebSocket-Version: 13\r\n"));
        let o = run(&without("sec-websocket-version"), &[], &WsConfig::default());
        assert_eq!(rejected(o).0, 426);
    }

    #[test]
    fn protocol_selection_prefers_server_order_and_never_invents() {
        let cfg = WsConfig::default();
        let h = with("Sec-WebSocket-Protocol", b"superchat, chat.v1");
        match run(&h, &["chat.v1", "superchat"], &cfg) {
            HandshakeOutcome::Accept {
                protocol, response, ..
            } => {
                assert_eq!(protocol.as_deref(), Some("chat.v1"));
                assert!(String::from_utf8(response)
                    .unwrap()
                    .contains("Sec-WebSocket-Protocol: chat.v1\r\n"));
            }
            o => panic!("{o:?}"),
        }
        match run(&h, &["other"], &cfg) {
            HandshakeOutcome::Accept {
                protocol, response, ..
            } => {
                assert_eq!(protocol, None);
                assert!(!String::from_utf8(response)
                    .unwrap()
                    .contains("Sec-WebSocket-Protocol"));
            }
            o => panic!("{o:?}"),
        }
        // Offers across repeated header lines count too.
        let mut h = base();
        h.push(("Sec-WebSocket-Protocol", b"a"));
        h.push(("Sec-WebSocket-Protocol", b"b"));
        match run(&h, &["b"], &cfg) {
            HandshakeOutcome::Accept { protocol, .. } => assert_eq!(protocol.as_deref(), Some("b")),
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn origin_allow_list_is_403() {
        let cfg = WsConfig {
            origins: Some(vec!["http://good.example".into()]),
            ..Default::default()
        };
        let (c, e, _) = rejected(run(&with("Origin", b"http://evil.example"), &[], &cfg));
        assert_eq!((c, e), (403, HandshakeError::OriginNotAllowed));
        assert_eq!(rejected(run(&base(), &[], &cfg)).0, 403);
        assert!(matches!(
            run(&with("Origin", b"http://good.example"), &[], &cfg),
            HandshakeOutcome::Accept { .. }
        ));
    }

    #[test]
    fn deflate_negotiated_into_response() {
        let h = with(
            "Sec-WebSocket-Extensions",
            b"permessage-deflate; client_max_window_bits",
        );
        match run(&h, &[], &WsConfig::default()) {
            HandshakeOutcome::Accept {
                deflate, response, ..
            } => {
                let d = deflate.expect("negotiated");
                assert!(d.server_no_context_takeover && d.client_no_context_takeover);
                assert!(String::from_utf8(response).unwrap().contains(
                    "Sec-WebSocket-Extensions: permessage-deflate; \
                     server_no_context_takeover; client_no_context_takeover\r\n"
                ));
            }
            o => panic!("{o:?}"),
        }
        // With context takeover allowed, the client's offer is taken as it is.
        let cfg = WsConfig {
            deflate_context_takeover: true,
            ..Default::default()
        };
        match run(&h, &[], &cfg) {
            HandshakeOutcome::Accept {
                deflate, response, ..
            } => {
                assert_eq!(deflate, Some(DeflateParams::default()));
                assert!(String::from_utf8(response)
                    .unwrap()
                    .contains("Sec-WebSocket-Extensions: permessage-deflate\r\n"));
            }
            o => panic!("{o:?}"),
        }
        let cfg = WsConfig {
            deflate: false,
            ..Default::default()
        };
        match run(&h, &[], &cfg) {
            HandshakeOutcome::Accept { deflate, .. } => assert!(deflate.is_none()),
            o => panic!("{o:?}"),
        }
    }
}
