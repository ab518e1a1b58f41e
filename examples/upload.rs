//! One HTTP upload with a chosen TCP congestion control, for `scripts/bench.sh`.
//!
//! ```text
//! upload http://10.0.0.2/discard SIZE [--cc cubic|bbr|reno|default] [--chunk BYTES]
//! ```
//!
//! In an upload the *client's* kernel TCP is the sender, so its congestion
//! control decides how it sends, whatever the server does. curl cannot
//! choose one (it gets the namespace default, which a network namespace
//! inherits and, here, cannot change to anything but reno: the kernel only
//! lets the initial namespace pick a "restricted" default). This client sets
//! it per socket with `TCP_CONGESTION` (root may pick any loaded module) and
//! otherwise sends like curl: `TCP_NODELAY`, `write(2)`s of 64 KiB
//! (curl's upload buffer), `Content-Length` framing.
//!
//! It POSTs SIZE zero bytes and checks the answer: `POST /discard` must
//! answer the byte count, `POST /sha256` the SHA-256 of SIZE zero bytes
//! (computed here beforehand). Prints one line:
//! `gbit_per_s bytes cpu_user_s cpu_sys_s cc` (the client's own CPU time, to
//! show whether the client is the bottleneck). Exit status 1 on a wrong or
//! missing answer.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

fn die(msg: String) -> ! {
    eprintln!("upload: {msg}");
    std::process::exit(1)
}

/// (user, system) CPU seconds of this process.
fn cpu_times() -> (f64, f64) {
    // SAFETY: getrusage fills the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF and a valid pointer.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let s = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (s(ru.ru_utime), s(ru.ru_stime))
}

fn set_congestion(stream: &TcpStream, cc: &str) {
    let fd = stream.as_raw_fd();
    // SAFETY: a valid socket fd, and a buffer of the length given.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_CONGESTION,
            cc.as_ptr().cast(),
            cc.len() as libc::socklen_t,
        )
    };
    if rc != 0 {
        die(format!(
            "TCP_CONGESTION {cc}: {} (see /proc/sys/net/ipv4/tcp_available_congestion_control)",
            std::io::Error::last_os_error()
        ));
    }
}

fn congestion(stream: &TcpStream) -> String {
    let mut buf = [0u8; 16];
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: a valid socket fd, buffer and length.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_CONGESTION,
            buf.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return "?".into();
    }
    let b = &buf[..len as usize];
    String::from_utf8_lossy(&b[..b.iter().position(|&c| c == 0).unwrap_or(b.len())]).into()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: upload http://HOST[:PORT]/PATH SIZE [--cc NAME|default] [--chunk BYTES]";
    let (Some(url), Some(size)) = (args.get(1), args.get(2).and_then(|s| s.parse::<u64>().ok()))
    else {
        die(usage.into())
    };
    let mut cc = "default".to_string();
    let mut chunk = 64 * 1024;
    let mut i = 3;
    while i < args.len() {
        match (args[i].as_str(), args.get(i + 1)) {
            ("--cc", Some(v)) => cc = v.clone(),
            ("--chunk", Some(v)) => {
                chunk = v
                    .parse()
                    .ok()
                    .filter(|&c: &usize| c > 0)
                    .unwrap_or_else(|| die(format!("bad --chunk {v}")))
            }
            _ => die(usage.into()),
        }
        i += 2;
    }
    let rest = url
        .strip_prefix("http://")
        .unwrap_or_else(|| die(format!("not an http:// URL: {url}")));
    let (hostport, path) = match rest.find('/') {
        Some(p) => (&rest[..p], &rest[p..]),
        None => (rest, "/"),
    };
    let expected = match path {
        "/discard" => size.to_string(),
        "/sha256" => {
            let mut h = Sha256::new();
            let zeros = vec![0u8; 1 << 20];
            let mut left = size;
            while left > 0 {
                let n = left.min(zeros.len() as u64) as usize;
                h.update(&zeros[..n]);
                left -= n as u64;
            }
            h.finalize().iter().map(|b| format!("{b:02x}")).collect()
        }
        _ => die(format!(
            "path {path}: only /discard and /sha256 have a known answer"
        )),
    };
    let addr = if hostport.contains(':') {
        hostport.to_string()
    } else {
        format!("{hostport}:80")
    };
    let mut stream =
        TcpStream::connect(&addr).unwrap_or_else(|e| die(format!("connect {addr}: {e}")));
    if cc != "default" {
        set_congestion(&stream, &cc);
    }
    let cc_used = congestion(&stream);
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));

    let (u0, s0) = cpu_times();
    let t0 = Instant::now();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {hostport}\r\nContent-Type: application/octet-stream\r\nContent-Length: {size}\r\n\r\n"
    );
    stream
        .write_all(head.as_bytes())
        .unwrap_or_else(|e| die(format!("send: {e}")));
    let zeros = vec![0u8; chunk];
    let mut left = size;
    while left > 0 {
        let n = left.min(chunk as u64) as usize;
        stream
            .write_all(&zeros[..n])
            .unwrap_or_else(|e| die(format!("send after {} bytes: {e}", size - left)));
        left -= n as u64;
    }
    // The answer: a head and a short body (Content-Length framed).
    let mut resp = Vec::new();
    let mut buf = [0u8; 4096];
    let body = loop {
        let n = stream
            .read(&mut buf)
            .unwrap_or_else(|e| die(format!("reading the answer: {e}")));
        if n == 0 {
            die(format!(
                "connection closed; answer so far: {:?}",
                String::from_utf8_lossy(&resp)
            ));
        }
        resp.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&resp).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let len: usize = text[..end]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())
                        .flatten()
                })
                .unwrap_or(0);
            if resp.len() >= end + 4 + len {
                if !text.starts_with("HTTP/1.1 200") {
                    die(format!("answer: {}", text.lines().next().unwrap_or("")));
                }
                break text[end + 4..end + 4 + len].trim().to_string();
            }
        }
    };
    let secs = t0.elapsed().as_secs_f64();
    let (u1, s1) = cpu_times();
    if body != expected {
        die(format!("wrong answer {body:?}, expected {expected:?}"));
    }
    println!(
        "{:.3} {size} {:.2} {:.2} {cc_used}",
        size as f64 * 8.0 / secs / 1e9,
        u1 - u0,
        s1 - s0
    );
}
