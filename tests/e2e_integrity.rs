//! Data integrity under a hostile link (issue 7), with the Linux kernel as
//! the peer: transfers through `--impair` (loss, reordering, duplication,
//! corruption, delay, jitter) must arrive complete and byte-exact, and a
//! receiver that stops reading (zero window) must lose nothing.
//!
//! Sizes: the issue's 100 MB download and 100 MB upload per seed at
//! `loss=5%,reorder=5%,dup=2%,corrupt=0.5%` both ways (about 20 s for all
//! three seeds in parallel: ustack sends at ~8-11 MB/s there, the kernel at
//! ~30-45 MB/s). `USTACK_INTEGRITY_DOWNLOAD_MB=N` / `_UPLOAD_MB=N` change
//! the sizes.
//!
//! Run as root: `sudo cargo test --release --test e2e_integrity`.

mod common;

use common::*;
use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

const LOSSY: &str = "loss=5%,reorder=5%,dup=2%,corrupt=0.5%";

fn download_mb() -> u64 {
    std::env::var("USTACK_INTEGRITY_DOWNLOAD_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100)
}

/// Read an HTTP/1.1 response head; returns the Content-Length.
fn read_head(r: &mut BufReader<&TcpStream>) -> u64 {
    let mut status = String::new();
    r.read_line(&mut status).expect("status line");
    assert!(status.starts_with("HTTP/1.1 200"), "status: {status:?}");
    let mut len = None;
    loop {
        let mut line = String::new();
        r.read_line(&mut line).expect("header line");
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().ok();
            }
        }
    }
    len.expect("Content-Length")
}

/// GET /bytes/N and compare every byte with `ustack::http::bytes_body`.
/// Returns the throughput in MB/s.
fn download_and_check(to: SocketAddr, n: u64, timeout: Duration) -> f64 {
    let start = Instant::now();
    let s = connect(to);
    s.set_read_timeout(Some(timeout)).unwrap();
    (&s).write_all(
        format!("GET /bytes/{n} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .unwrap();
    let mut r = BufReader::with_capacity(256 * 1024, &s);
    assert_eq!(read_head(&mut r), n);
    let mut got = vec![0u8; 256 * 1024];
    let mut want = vec![0u8; 256 * 1024];
    let mut off = 0u64;
    let mut hasher_got = Sha256::new();
    while off < n {
        assert!(
            start.elapsed() < timeout,
            "download: only {off} of {n} bytes after {timeout:?}"
        );
        let k = r
            .read(&mut got)
            .unwrap_or_else(|e| panic!("read after {off} bytes: {e}"));
        assert!(k > 0, "EOF after {off} of {n} bytes");
        let k = k.min((n - off) as usize);
        ustack::http::bytes_body(n, off, &mut want[..k]);
        assert!(
            got[..k] == want[..k],
            "bytes {off}..{} differ",
            off + k as u64
        );
        hasher_got.update(&got[..k]);
        off += k as u64;
    }
    let mut rest = Vec::new();
    let _ = r.read_to_end(&mut rest);
    assert!(rest.is_empty(), "{} bytes after the body", rest.len());
    let _ = hasher_got.finalize();
    n as f64 / 1e6 / start.elapsed().as_secs_f64()
}

/// POST `n` pattern bytes to /sha256 and compare the digest with ours.
/// Returns the throughput in MB/s.
fn upload_and_check(to: SocketAddr, n: u64, seed: u64, timeout: Duration) -> f64 {
    let start = Instant::now();
    let s = connect(to);
    s.set_read_timeout(Some(timeout)).unwrap();
    s.set_write_timeout(Some(timeout)).unwrap();
    let mut w = &s;
    w.write_all(
        format!(
            "POST /sha256 HTTP/1.1\r\nHost: x\r\nContent-Length: {n}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
    let mut p = Pattern::new(seed);
    let mut buf = vec![0u8; 256 * 1024];
    let mut hasher = Sha256::new();
    let mut left = n;
    while left > 0 {
        assert!(
            start.elapsed() < timeout,
            "upload: {left} bytes left after {timeout:?}"
        );
        let k = left.min(buf.len() as u64) as usize;
        p.fill(&mut buf[..k]);
        hasher.update(&buf[..k]);
        w.write_all(&buf[..k])
            .unwrap_or_else(|e| panic!("write with {left} bytes left: {e}"));
        left -= k as u64;
    }
    let want: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut r = BufReader::new(&s);
    let len = read_head(&mut r);
    let mut body = vec![0u8; len as usize];
    r.read_exact(&mut body).expect("digest body");
    let body = String::from_utf8_lossy(&body);
    assert_eq!(body.trim(), want, "sha256 of the upload");
    n as f64 / 1e6 / start.elapsed().as_secs_f64()
}

fn report(what: &str, mbps: f64) {
    eprintln!("e2e_integrity: {what}: {mbps:.2} MB/s");
}

fn upload_mb() -> u64 {
    std::env::var("USTACK_INTEGRITY_UPLOAD_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100)
}

/// 5 % loss, 5 % reordering, 2 % duplication, 0.5 % corruption, both
/// ways; three seeds (in parallel, one namespace each); a 100 MB download
/// (ustack sends, every byte compared) and a 100 MB upload (ustack
/// receives, SHA-256 compared) per seed.
#[test]
fn lossy_link_three_seeds_download_and_upload() {
    let (down_mb, up_mb) = (download_mb(), upload_mb());
    std::thread::scope(|sc| {
        let runs: Vec<_> = ["11", "12", "13"]
            .into_iter()
            .map(|seed| {
                sc.spawn(move || {
                    let Some(env) = e2e_env_with(&["--impair", LOSSY, "--seed", seed]) else {
                        return;
                    };
                    let to = env.sock(80);
                    let down = env.in_ns(|| {
                        download_and_check(
                            to,
                            down_mb << 20,
                            Duration::from_secs(60 + down_mb * 10),
                        )
                    });
                    report(&format!("{LOSSY} seed {seed}: download {down_mb} MB"), down);
                    let up = env.in_ns(|| {
                        upload_and_check(
                            to,
                            up_mb << 20,
                            seed.parse().unwrap(),
                            Duration::from_secs(30 + up_mb * 2),
                        )
                    });
                    report(&format!("{LOSSY} seed {seed}: upload {up_mb} MB"), up);
                    let s = env.stats();
                    assert!(s["retransmissions"] > 0, "the link lost nothing? {s:?}");
                })
            })
            .collect();
        for r in runs {
            r.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
        }
    });
}

/// 25 % loss in both directions at once: a 5 MB upload (the kernel
/// sends, ustack receives) is slow but complete and correct, for several
/// seeds (`USTACK_Q25_SEEDS`, default 4,5,7: the slowest of seeds 1-8).
/// The kernel's retransmission timer backs off for tens of seconds here
/// (a quarter of its retransmissions and a quarter of ustack's ACKs are
/// lost), so this needs HTTP's body timeout to measure silence and to
/// outlast the back-off (`HttpLimits::body_timeout`, 240 s). The kernel
/// sends with the namespace's default congestion control (BBR on these
/// machines; with Reno its RTO reached 117 s: docs/reliability.md).
/// The 408s seen in sessions 2 and 5 came from ustack's ACK of a
/// duplicate echoing an older copy's timestamp, which made the kernel
/// measure its whole backed-off RTO as an RTT (fixed in session 6:
/// "Fixed: a stalled upload under 25 % loss" in docs/reliability.md).
#[test]
fn quarter_loss_both_ways_upload_is_correct() {
    // Per-packet loss: with offload, --impair would lose whole 64 KB
    // super-segments (docs/reliability.md).
    let seeds = std::env::var("USTACK_Q25_SEEDS").unwrap_or_else(|_| "4,5,7".into());
    for seed in seeds.split(',') {
        let Some(env) = e2e_env_with(&["--impair", "loss=25%", "--seed", seed, "--no-offload"])
        else {
            return;
        };
        let to = env.sock(80);
        let n: u64 = seed.parse().unwrap();
        let mbps = env.in_ns(|| upload_and_check(to, 5 << 20, n, Duration::from_secs(900)));
        report(
            &format!("loss=25% both ways, seed {seed}: upload 5 MB"),
            mbps,
        );
        let s = env.stats();
        assert!(s["fault_in_lost"] > 0 && s["fault_out_lost"] > 0, "{s:?}");
    }
}

/// 25 % loss in both directions at once, ustack sending: slow but
/// complete and correct. 512 kB by default (about a minute: the time goes
/// to retransmission timeouts, since cwnd stays at one or two segments);
/// `USTACK_Q25_DOWN_KB=5120` runs the issue's 5 MB (394 s in session 3;
/// docs/reliability.md).
#[test]
fn quarter_loss_both_ways_download() {
    let Some(env) = e2e_env_with(&["--impair", "loss=25%", "--seed", "6", "--no-offload"]) else {
        return;
    };
    let to = env.sock(80);
    let kb: u64 = std::env::var("USTACK_Q25_DOWN_KB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512);
    let mbps = env.in_ns(|| download_and_check(to, kb << 10, Duration::from_secs(3600)));
    report(&format!("loss=25% both ways: download {kb} kB"), mbps);
    let s = env.stats();
    eprintln!("{s:?}");
    assert!(s["fault_in_lost"] > 0 && s["fault_out_lost"] > 0, "{s:?}");
}

/// 25 % loss on one direction's data path: slow, but complete and correct
/// (both directions at once: the two tests above). A 5 MB TCP echo with
/// `in:loss=25%` (the kernel's data and ACKs are lost; no application
/// timeout on the echo port), and a 128 kB download with `out:loss=25%`
/// (ustack sends; docs/reliability.md).
#[test]
fn quarter_loss_is_slow_but_correct() {
    std::thread::scope(|sc| {
        let up = sc.spawn(|| {
            let Some(env) = e2e_env_with(&["--impair", "in:loss=25%"]) else {
                return;
            };
            let to = env.sock(7);
            let t = Instant::now();
            env.in_ns(|| echo_roundtrip(to, 5 << 20, 25));
            report(
                "in:loss=25%: echo 5 MB",
                5.0 * 1.048576 / t.elapsed().as_secs_f64(),
            );
        });
        let down = sc.spawn(|| {
            let Some(env) = e2e_env_with(&["--impair", "out:loss=25%"]) else {
                return;
            };
            let to = env.sock(80);
            let mbps = env.in_ns(|| download_and_check(to, 128 << 10, Duration::from_secs(170)));
            report("out:loss=25%: download 128 kB", mbps);
        });
        for t in [up, down] {
            t.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
        }
    });
}

/// 200 ms delay with 100 ms jitter (so heavy reordering) both ways.
#[test]
fn delay_and_jitter_transfer_is_correct() {
    let Some(env) = e2e_env_with(&["--impair", "delay=200ms,jitter=100ms"]) else {
        return;
    };
    let to = env.sock(80);
    // Correctness, not speed, is the point here (the issue: "slow, but
    // complete and correct"). Session 1's ustack sent at ~10 kB/s under
    // this much reordering; since RACK's adaptive reordering window it
    // sends about as fast as the kernel does (docs/reliability.md). The
    // bound stays generous: a shared machine can be slow.
    let down = env.in_ns(|| download_and_check(to, 1 << 20, Duration::from_secs(240)));
    report("delay=200ms,jitter=100ms: download 1 MB", down);
    let up = env.in_ns(|| upload_and_check(to, 4 << 20, 9, Duration::from_secs(90)));
    report("delay=200ms,jitter=100ms: upload 4 MB", up);
    // For the record (docs/reliability.md): how much of ustack's sending
    // was retransmission, though the link lost nothing.
    let s = env.stats();
    eprintln!(
        "e2e_integrity: delay=200ms,jitter=100ms: packets out {}, retransmissions {} (no loss injected)",
        s["packets_out"], s["retransmissions"]
    );
}

/// Echo 10 MB while the kernel side stops reading for 4 s: ustack's send
/// window closes, it probes the zero window (RFC 9293 3.8.6.1), and when
/// reading resumes everything arrives intact. The probes are in the pcap.
#[test]
fn zero_window_stall_loses_nothing_and_probes() {
    let Some(mut env) = e2e_env_with(&["--no-offload"]) else {
        return;
    };
    let to = env.sock(7);
    let len = 10usize << 20;
    env.in_ns(|| {
        let s = connect(to);
        // A small receive buffer, so the window closes quickly.
        let mut reader = s.try_clone().unwrap();
        std::thread::scope(|sc| {
            sc.spawn(|| {
                let mut w = &s;
                let mut p = Pattern::new(77);
                let mut buf = vec![0u8; 64 * 1024];
                let mut left = len;
                while left > 0 {
                    let n = left.min(buf.len());
                    p.fill(&mut buf[..n]);
                    w.write_all(&buf[..n]).expect("write to echo");
                    left -= n;
                }
                s.shutdown(std::net::Shutdown::Write).unwrap();
            });
            let mut p = Pattern::new(77);
            let mut got = vec![0u8; 64 * 1024];
            let mut want = vec![0u8; 64 * 1024];
            let mut total = 0usize;
            let mut stalled = false;
            loop {
                if !stalled && total >= 1 << 20 {
                    // Stop reading: the kernel's receive buffer fills, its
                    // window goes to zero and ustack must probe.
                    stalled = true;
                    std::thread::sleep(Duration::from_secs(4));
                }
                let n = reader
                    .read(&mut got)
                    .unwrap_or_else(|e| panic!("read echo after {total}: {e}"));
                if n == 0 {
                    break;
                }
                p.fill(&mut want[..n]);
                assert!(got[..n] == want[..n], "echo differs at {total}");
                total += n;
            }
            assert_eq!(total, len);
        });
    });
    assert!(env.stop().success());
    if !require_tool("tshark") {
        return;
    }
    let out = Command::new("tshark")
        .args([
            "-r",
            env.pcap.to_str().unwrap(),
            "-Y",
            "tcp.analysis.zero_window_probe || tcp.analysis.zero_window",
            "-T",
            "fields",
            "-e",
            "ip.src",
            "-e",
            "tcp.analysis.zero_window_probe",
            "-e",
            "tcp.analysis.zero_window",
        ])
        .output()
        .expect("tshark");
    let text = String::from_utf8_lossy(&out.stdout);
    let me = env.addr.to_string();
    let kernel = env.kernel_addr.to_string();
    let zero_windows = text.lines().filter(|l| l.starts_with(&kernel)).count();
    let probes = text
        .lines()
        .filter(|l| l.starts_with(&me) && l.split('\t').nth(1).is_some_and(|f| !f.is_empty()))
        .count();
    eprintln!("e2e_integrity: zero-window stall: {zero_windows} zero-window advertisements by the kernel, {probes} probes by ustack");
    assert!(
        zero_windows > 0,
        "the kernel never advertised a zero window: {text}"
    );
    assert!(
        probes > 0,
        "no zero-window probe from ustack in the capture: {text}"
    );
}
