//! The Linux kernel's TCP serving the benchmark's HTTP routes: the reference
//! point of `scripts/bench.sh` (run it in a namespace joined to the client by
//! a veth pair).
//!
//! ```text
//! cargo run --release --example kernel_server -- 0.0.0.0:80
//! ```
//!
//! Port 81 (same address) is a WebSocket echo server (tungstenite) for the
//! round-trip-time workload: ustack serves it as `/ws/echo` on port 80.
//!
//! Blocking std sockets, one thread per connection; the HTTP logic
//! (`GET /bytes/N`, `POST /sha256`, keep-alive) is the same code the smoltcp
//! comparison server uses (`examples/bench_common/http.rs`).

#[path = "bench_common/http.rs"]
mod http;

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};

fn serve(mut s: TcpStream) {
    let _ = s.set_nodelay(true);
    let mut conn = http::HttpConn::new();
    let mut inbuf = vec![0u8; 256 * 1024];
    let mut have = 0usize; // unconsumed bytes at the start of inbuf
    let mut outbuf = vec![0u8; 256 * 1024];
    let mut eof = false;
    loop {
        // Write everything the connection has to say.
        while conn.has_output() {
            let n = conn.output(&mut outbuf);
            if s.write_all(&outbuf[..n]).is_err() {
                return;
            }
        }
        if conn.should_close() {
            let _ = s.shutdown(std::net::Shutdown::Write);
            // Drain until the peer closes so it never sees a RST.
            let mut sink = [0u8; 4096];
            while matches!(s.read(&mut sink), Ok(n) if n > 0) {}
            return;
        }
        // Feed buffered input first (pipelined requests).
        if have > 0 && conn.wants_input() {
            let used = conn.input(&inbuf[..have]);
            inbuf.copy_within(used..have, 0);
            have -= used;
            if used > 0 || conn.has_output() {
                continue;
            }
        }
        if eof {
            return;
        }
        match s.read(&mut inbuf[have..]) {
            Ok(0) => eof = true,
            Ok(n) => have += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// WebSocket echo: every data message is sent back.
fn ws_echo(s: TcpStream) {
    let _ = s.set_nodelay(true);
    let Ok(mut ws) = tungstenite::accept(s) else {
        return;
    };
    while let Ok(m) = ws.read() {
        if (m.is_binary() || m.is_text()) && ws.send(m).is_err() {
            return;
        }
    }
}

fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "0.0.0.0:80".to_string());
    let listener = match TcpListener::bind(&addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("kernel_server: bind {addr}: {e}");
            std::process::exit(1);
        }
    };
    eprintln!("kernel_server: listening on {addr}");
    let ws_addr = listener
        .local_addr()
        .map(|a| std::net::SocketAddr::new(a.ip(), 81));
    if let Ok(ws_listener) = ws_addr.and_then(TcpListener::bind) {
        std::thread::spawn(move || {
            for s in ws_listener.incoming().flatten() {
                std::thread::spawn(move || ws_echo(s));
            }
        });
    }
    for s in listener.incoming() {
        match s {
            Ok(s) => {
                std::thread::spawn(move || serve(s));
            }
            Err(e) => eprintln!("kernel_server: accept: {e}"),
        }
    }
}
