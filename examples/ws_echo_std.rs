//! A throwaway WebSocket echo server over `std::net`, to show how the
//! sans-IO [`ustack::ws`] codec is driven and to run the Autobahn|Testsuite
//! against it without the userspace TCP stack:
//!
//! ```text
//! cargo run --release --example ws_echo_std -- 127.0.0.1:9001
//! scripts/autobahn.sh ws://127.0.0.1:9001/ws/echo
//! ```
//!
//! One thread per connection: read the HTTP head (httparse), call
//! [`handshake`], then pump bytes between the socket and a [`WsConnection`].
//! This file is the only place here that reads a clock or does I/O.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::{Duration as StdDuration, Instant as StdInstant};
use ustack::time::Instant;
use ustack::ws::{handshake, HandshakeOutcome, HandshakeRequest, WsConfig, WsConnection, WsEvent};

fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".into());
    let listener = TcpListener::bind(&addr).expect("bind");
    eprintln!("ws_echo_std listening on {addr}");
    let epoch = StdInstant::now();
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        std::thread::spawn(move || {
            if let Err(e) = serve(stream, epoch) {
                eprintln!("connection error: {e}");
            }
        });
    }
}

fn now(epoch: StdInstant) -> Instant {
    Instant::from_micros(epoch.elapsed().as_micros() as u64)
}

fn serve(mut s: TcpStream, epoch: StdInstant) -> std::io::Result<()> {
    s.set_nodelay(true)?;
    let config = WsConfig {
        max_frame: 16 << 20,
        max_message: 64 << 20,
        keepalive_ping: None,
        close_timeout: ustack::time::Duration::from_secs(3),
        ..WsConfig::default()
    };
    // 1. The HTTP request head (bounded to 16 KiB).
    let mut head = Vec::new();
    let mut buf = vec![0u8; 256 * 1024];
    let body_start = loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&head) {
            Ok(httparse::Status::Complete(len)) => break len,
            Ok(httparse::Status::Partial) if head.len() < 16 * 1024 => continue,
            _ => {
                s.write_all(
                    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                )?;
                return Ok(());
            }
        }
    };
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let _ = req.parse(&head);
    let pairs: Vec<(&str, &[u8])> = req.headers.iter().map(|h| (h.name, h.value)).collect();
    let hreq = HandshakeRequest {
        method: req.method.unwrap_or(""),
        path: req.path.unwrap_or(""),
        version_minor: req.version.unwrap_or(0),
        headers: &pairs,
    };
    // 2. The handshake decision.
    let deflate = match handshake(&hreq, &["chat.v1"], &config) {
        HandshakeOutcome::Accept {
            response, deflate, ..
        } => {
            s.write_all(&response)?;
            deflate
        }
        HandshakeOutcome::Reject { response, .. } => {
            s.write_all(&response)?;
            return Ok(());
        }
    };
    // 3. The frame pump.
    let mut ws = WsConnection::new(now(epoch), &config, deflate);
    ws.handle_input(now(epoch), &head[body_start..]);
    loop {
        while let Some(ev) = ws.poll_event() {
            match ev {
                WsEvent::Message(m) => {
                    if ws.send(m).is_err() && !ws.is_closing() {
                        ws.close(now(epoch), 1008, "output buffer full");
                    }
                }
                WsEvent::Closed { .. } | WsEvent::Pong(_) | WsEvent::Error(_) => {}
            }
        }
        // Write everything (blocking), zero-copy from the codec's buffer.
        while ws.output_pending() > 0 {
            let n = s.write(ws.output_chunk())?;
            ws.consume_output(n);
        }
        if ws.wants_tcp_close() {
            // Close our side, then drain until the peer closes too, so the
            // kernel does not answer unread data with a RST that could
            // destroy our Close frame in flight.
            s.shutdown(Shutdown::Write)?;
            s.set_read_timeout(Some(StdDuration::from_secs(2)))?;
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 {
                    break;
                }
            }
            return Ok(());
        }
        let t = now(epoch);
        let wait = ws.poll_at().map(|d| {
            StdDuration::from_micros((d - t).as_micros() as u64).max(StdDuration::from_millis(1))
        });
        s.set_read_timeout(wait)?;
        match s.read(&mut buf) {
            Ok(0) => ws.handle_eof(now(epoch)),
            Ok(n) => ws.handle_input(now(epoch), &buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                ws.handle_timeout(now(epoch))
            }
            Err(_) => ws.handle_eof(now(epoch)),
        }
    }
}
