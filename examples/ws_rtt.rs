//! WebSocket echo round-trip time, for `scripts/bench.sh`.
//!
//! ```text
//! ws_rtt ws://10.0.0.2/ws/echo [MESSAGES=2000] [SIZE=32]
//! ```
//!
//! Connects (TCP_NODELAY), sends one binary message, waits for its echo,
//! and repeats; 100 warm-up round trips are not counted. Prints
//! `median_us p99_us messages` on one line.

use std::net::TcpStream;
use std::time::Instant;
use tungstenite::Message;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(url) = args.get(1) else {
        eprintln!("usage: ws_rtt ws://HOST[:PORT]/PATH [MESSAGES] [SIZE]");
        std::process::exit(2)
    };
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2000);
    let size: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(32);
    let hostport = url
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .unwrap_or("");
    let addr = if hostport.contains(':') {
        hostport.to_string()
    } else {
        format!("{hostport}:80")
    };
    let stream = TcpStream::connect(&addr).unwrap_or_else(|e| {
        eprintln!("ws_rtt: connect {addr}: {e}");
        std::process::exit(1)
    });
    let _ = stream.set_nodelay(true);
    let (mut ws, _) = tungstenite::client(url.as_str(), stream).unwrap_or_else(|e| {
        eprintln!("ws_rtt: handshake: {e}");
        std::process::exit(1)
    });
    let payload: Vec<u8> = (0..size).map(|i| i as u8).collect();
    let mut rtts = Vec::with_capacity(n);
    for i in 0..n + 100 {
        let t0 = Instant::now();
        if let Err(e) = ws.send(Message::binary(payload.clone())) {
            eprintln!("ws_rtt: send: {e}");
            std::process::exit(1)
        }
        loop {
            match ws.read() {
                Ok(Message::Binary(b)) => {
                    if b.as_ref() != payload.as_slice() {
                        eprintln!("ws_rtt: wrong echo");
                        std::process::exit(1)
                    }
                    break;
                }
                Ok(_) => continue,
                Err(e) => {
                    eprintln!("ws_rtt: read: {e}");
                    std::process::exit(1)
                }
            }
        }
        if i >= 100 {
            rtts.push(t0.elapsed().as_secs_f64() * 1e6);
        }
    }
    let _ = ws.close(None);
    rtts.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let med = rtts[rtts.len() / 2];
    let p99 = rtts[(rtts.len() * 99 / 100).min(rtts.len() - 1)];
    println!("{med:.1} {p99:.1} {}", rtts.len());
}
