//! A stable-Rust fuzz driver: a seeded, coverage-less mutational loop over
//! the committed corpus in `fuzz/corpus/<target>/`, for machines without
//! cargo-fuzz (libFuzzer, coverage-guided, is the better tool: see
//! docs/reliability.md; scripts/test.sh falls back to this driver). The targets themselves are in
//! `fuzz/targets.rs`, shared with the libFuzzer binaries in `fuzz/fuzz_targets/`.
//!
//! ```text
//! cargo run --release --example fuzz -- <target|all> [--seconds N] [--seed N] [--max-len N]
//! ```
//!
//! Targets: `packet` (a whole Stack with an established connection),
//! `http` (HttpConnection), `ws` (WsConnection: frames, assembly, UTF-8,
//! deflate), `deflate` (permessage-deflate inflation, bombs).
//!
//! Every input that panics (or fails a target's assertion) is written to
//! `fuzz/crashes/<target>-<hash>` and the driver exits with status 1 after
//! printing how to replay it:
//! `cargo run --release --example fuzz -- <target> --replay FILE`.
//! Without coverage feedback the loop cannot discover deep paths by
//! itself; the corpus gives it valid starting points (handshakes, requests,
//! frames, compressed messages) and the mutations explore around them.

#[path = "../fuzz/targets.rs"]
mod targets;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

const INTERESTING: &[u8] = &[
    0, 1, 0x7f, 0x80, 0xff, 0xfe, b'\r', b'\n', b' ', b':', b'0', b'9', 0x7e,
];

/// One to eight stacked mutations (AFL-style havoc).
fn mutate(rng: &mut Rng, input: &mut Vec<u8>, corpus: &[Vec<u8>], max_len: usize) {
    let rounds = 1 << rng.below(4);
    for _ in 0..rounds {
        let len = input.len();
        match rng.below(11) {
            0 if len > 0 => {
                let i = rng.below(len);
                input[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                input[i] = rng.next() as u8;
            }
            2 if len > 0 => {
                let i = rng.below(len);
                input[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
            3 if len > 0 => {
                // Delete a block.
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(64));
                input.drain(i..i + n);
            }
            4 => {
                // Insert random bytes.
                let i = rng.below(len + 1);
                let n = 1 + rng.below(16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                input.splice(i..i, bytes);
            }
            5 if len > 0 => {
                // Duplicate a block.
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(256));
                let block = input[i..i + n].to_vec();
                let at = rng.below(len + 1);
                input.splice(at..at, block);
            }
            6 if !corpus.is_empty() => {
                // Splice with another corpus entry.
                let other = &corpus[rng.below(corpus.len())];
                if !other.is_empty() {
                    let a = rng.below(other.len());
                    let b = a + rng.below(other.len() - a) + 1;
                    let at = rng.below(len + 1);
                    input.splice(at..at, other[a..b].iter().copied());
                }
            }
            7 if len >= 2 => {
                // Arithmetic on a 16-bit big-endian field.
                let i = rng.below(len - 1);
                let v = u16::from_be_bytes([input[i], input[i + 1]]);
                let d = (rng.below(64) as u16).wrapping_sub(32);
                input[i..i + 2].copy_from_slice(&v.wrapping_add(d).to_be_bytes());
            }
            8 if len >= 4 => {
                // Arithmetic on a 32-bit field (sequence numbers).
                let i = rng.below(len - 3);
                let v = u32::from_be_bytes([input[i], input[i + 1], input[i + 2], input[i + 3]]);
                let d = (rng.next() as u32) % 200_000;
                let v = if rng.below(2) == 0 {
                    v.wrapping_add(d)
                } else {
                    v.wrapping_sub(d)
                };
                input[i..i + 4].copy_from_slice(&v.to_be_bytes());
            }
            9 if len > 0 => {
                // Truncate.
                input.truncate(rng.below(len));
            }
            _ => {
                // Insert a separator byte (targets split on 0xFF / 0xFE).
                let i = rng.below(len + 1);
                input.insert(i, if rng.below(2) == 0 { 0xFF } else { 0xFE });
            }
        }
    }
    input.truncate(max_len);
}

fn load_corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    let mut out: Vec<Vec<u8>> = files.iter().filter_map(|p| std::fs::read(p).ok()).collect();
    if out.is_empty() {
        out.push(Vec::new());
    }
    out
}

fn hash(data: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for b in data {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}

/// Run one input, catching panics. `Err(message)` on a finding.
fn run_one(target: &str, data: &[u8]) -> Result<(), String> {
    std::panic::catch_unwind(|| {
        targets::run(target, data);
    })
    .map_err(|e| {
        e.downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panic".into())
    })
}

fn save_crash(target: &str, data: &[u8]) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/crashes");
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(format!("{target}-{:016x}", hash(data)));
    let _ = std::fs::write(&path, data);
    path
}

/// Fuzz one target for `secs`; returns (execs, findings).
fn fuzz(target: &str, secs: f64, seed: u64, max_len: usize) -> (u64, u32) {
    let corpus = load_corpus(target);
    // Every corpus entry must pass as it is.
    for c in &corpus {
        if let Err(msg) = run_one(target, c) {
            let p = save_crash(target, c);
            eprintln!(
                "fuzz {target}: corpus entry fails: {msg} (saved {})",
                p.display()
            );
            return (0, 1);
        }
    }
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    let mut execs = 0u64;
    let mut findings = 0u32;
    let mut last_report = start;
    let mut input = Vec::new();
    while Instant::now() < deadline {
        input.clear();
        input.extend_from_slice(&corpus[rng.below(corpus.len())]);
        mutate(&mut rng, &mut input, &corpus, max_len);
        execs += 1;
        if let Err(msg) = run_one(target, &input) {
            findings += 1;
            let p = save_crash(target, &input);
            eprintln!(
                "fuzz {target}: FINDING after {execs} execs: {msg}\n  saved {}",
                p.display()
            );
            if findings >= 5 {
                break;
            }
        }
        if last_report.elapsed() >= Duration::from_secs(30) {
            last_report = Instant::now();
            let t = start.elapsed().as_secs_f64();
            eprintln!(
                "fuzz {target}: {execs} execs in {t:.0} s ({:.0}/s)",
                execs as f64 / t
            );
        }
    }
    let t = start.elapsed().as_secs_f64().max(1e-9);
    println!(
        "fuzz {target}: {execs} execs in {t:.1} s ({:.0} execs/s), {} corpus entries, seed {seed}, {findings} findings",
        execs as f64 / t,
        corpus.len()
    );
    (execs, findings)
}

/// A masked client frame (RFC 6455 5.2), mask key 0x37fa213d.
fn ws_frame(fin: bool, rsv1: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![(fin as u8) << 7 | (rsv1 as u8) << 6 | opcode];
    let n = payload.len();
    if n < 126 {
        f.push(0x80 | n as u8);
    } else if n < 65536 {
        f.push(0x80 | 126);
        f.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        f.push(0x80 | 127);
        f.extend_from_slice(&(n as u64).to_be_bytes());
    }
    let key = [0x37, 0xfa, 0x21, 0x3d];
    f.extend_from_slice(&key);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    f
}

/// A packet record for the `packet` target.
fn record(mode: u8, p: &[u8]) -> Vec<u8> {
    let mut r = vec![mode, (p.len() >> 8) as u8, p.len() as u8];
    r.extend_from_slice(p);
    r
}

/// Write the seed corpus (`--gen-corpus`): valid inputs of each target.
fn gen_corpus() {
    use ustack::ws::deflate::{DeflateCodec, DeflateParams};
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let write = |t: &str, name: &str, data: &[u8]| {
        let d = base.join(t);
        std::fs::create_dir_all(&d).expect("mkdir corpus");
        std::fs::write(d.join(name), data).expect("write corpus");
    };
    // packet: segments that fit the established connection of the target.
    let (_, iss, _, _) = targets::established_stack();
    let ack = iss.wrapping_add(1);
    let tp = targets::tcp_packet;
    let mut seq = Vec::new();
    seq.extend(record(
        2,
        &tp(
            0x18,
            1006,
            ack.wrapping_add(1460),
            b"GET / HTTP/1.1\r\n\r\n",
            false,
        ),
    ));
    seq.extend(record(
        40,
        &tp(0x10, 1024, ack.wrapping_add(20000), b"", false),
    ));
    seq.extend(record(
        2,
        &tp(0x11, 1024, ack.wrapping_add(20000), b"", false),
    ));
    write("packet", "data-ack-fin", &seq);
    let mut ooo = Vec::new();
    ooo.extend(record(2, &tp(0x18, 2006, ack, &[b'x'; 500], false)));
    ooo.extend(record(2, &tp(0x18, 1506, ack, &[b'y'; 500], false)));
    ooo.extend(record(2, &tp(0x18, 1006, ack, &[b'z'; 500], false)));
    write("packet", "out-of-order", &ooo);
    let mut blind = Vec::new();
    for k in 0..8u32 {
        blind.extend(record(1, &tp(0x04, 1006 + k * 5000, 0, b"", false)));
        blind.extend(record(1, &tp(0x02, 1006 + k * 7000, 0, b"", true)));
        blind.extend(record(
            1,
            &tp(
                0x18,
                1006 + k * 9000,
                ack.wrapping_sub(k * 100_000),
                b"evil",
                false,
            ),
        ));
    }
    write("packet", "blind-injection", &blind);
    let mut flood = Vec::new();
    for k in 0..16u16 {
        let mut p = tp(0x02, 7000 + k as u32, 0, b"", k % 2 == 0);
        p[20..22].copy_from_slice(&(1024 + k).to_be_bytes());
        flood.extend(record(1, &p));
    }
    // A cookie ACK from one of them (the target recomputes checksums).
    let mut p = tp(0x10, 7001, 0x1234_5678, b"hi", false);
    p[20..22].copy_from_slice(&1024u16.to_be_bytes());
    flood.extend(record(1, &p));
    write("packet", "syn-flood", &flood);
    write(
        "packet",
        "zero-window",
        &record(2, &{
            let mut p = tp(0x10, 1006, ack.wrapping_add(1000), b"", false);
            p[34..36].copy_from_slice(&[0, 0]);
            p
        }),
    );
    // http
    write("http", "get", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    write("http", "pipelined", b"GET /bytes/100 HTTP/1.1\r\nHost: x\r\n\r\nGET /api/stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    write(
        "http",
        "post-sha",
        b"POST /sha256 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
    );
    write("http", "chunked", b"POST /sha256 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nTrailer: x\r\n\r\n");
    write("http", "upgrade", b"GET /ws/echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n\x81\x80abcd");
    write("http", "slowloris", b"GET / HTTP/1.1\r\n\xfeX-a: b\r\n\xfeX-b: c\r\n\xfe\xfe\xfe\xfe\xfe\xfe\xfe\xfe\xfe\xfe\xfe\xfe");
    write("http", "http10-head", b"HEAD /bytes/10 HTTP/1.0\r\n\r\nGET /x%20y HTTP/1.1\r\nHost: x\r\nRange: bytes=0-1\r\n\r\n");
    // ws (first byte: mode; bit 0 = deflate)
    let mut plain = vec![0u8];
    plain.extend(ws_frame(true, false, 1, b"hello"));
    plain.extend(ws_frame(false, false, 2, b"frag1"));
    plain.extend(ws_frame(true, false, 9, b"ping"));
    plain.extend(ws_frame(true, false, 0, b"frag2"));
    plain.extend([0xFE, 0xFE]);
    plain.extend(ws_frame(true, false, 8, &[0x03, 0xe8, b'b', b'y', b'e']));
    write("ws", "plain", &plain);
    let mut codec = DeflateCodec::new(DeflateParams::default());
    let mut defl = vec![1u8];
    defl.extend(ws_frame(
        true,
        true,
        1,
        &codec.compress_message(b"hello hello hello hello"),
    ));
    defl.extend(ws_frame(
        true,
        true,
        2,
        &codec.compress_message(&[0u8; 1000]),
    ));
    write("ws", "deflate", &defl);
    let mut bomb_codec = DeflateCodec::new(DeflateParams::default());
    let bomb = bomb_codec.compress_message(&vec![0u8; 4 << 20]);
    let mut wsb = vec![1u8];
    wsb.extend(ws_frame(true, true, 2, &bomb));
    write("ws", "deflate-bomb", &wsb);
    write(
        "ws",
        "utf8-bad",
        &[
            &[0u8][..],
            &ws_frame(
                true,
                false,
                1,
                &[
                    0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc, 0xce, 0xb5, 0xed, 0xa0,
                    0x80,
                ],
            ),
        ]
        .concat(),
    );
    write(
        "ws",
        "len64",
        &[&[0u8][..], &ws_frame(true, false, 2, &vec![b'a'; 70000])].concat(),
    );
    // deflate (first byte: mode)
    let mut c = DeflateCodec::new(DeflateParams::default());
    let mut d = vec![0u8];
    d.extend(c.compress_message(b"The quick brown fox jumps over the lazy dog"));
    d.extend([0xFE, 0xFE]);
    d.extend(c.compress_message(b"The quick brown fox jumps over the lazy dog again"));
    write("deflate", "two-messages", &d);
    write("deflate", "bomb", &[&[0u8][..], &bomb].concat());
    println!("corpus written to {}", base.display());
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: fuzz <packet|http|ws|deflate|all> [--seconds N] [--seed N] [--max-len N] [--replay FILE]";
    if args.first().map(String::as_str) == Some("--gen-corpus") {
        gen_corpus();
        return;
    }
    let Some(target) = args.first().cloned() else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let mut secs = 30.0;
    let mut seed = 1u64;
    let mut max_len = 16384;
    let mut replay = None;
    let mut i = 1;
    while i < args.len() {
        let v = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--seconds" => secs = v.parse().unwrap_or(secs),
            "--seed" => seed = v.parse().unwrap_or(seed),
            "--max-len" => max_len = v.parse().unwrap_or(max_len),
            "--replay" => replay = Some(v),
            _ => {
                eprintln!("{usage}");
                std::process::exit(2);
            }
        }
        i += 2;
    }
    // Findings print their own message; keep the default hook quiet.
    std::panic::set_hook(Box::new(|_| {}));
    if let Some(file) = replay {
        let data = std::fs::read(&file).unwrap_or_else(|e| panic!("read {file}: {e}"));
        let _ = std::panic::take_hook();
        targets::run(&target, &data);
        println!("replay {file}: no finding");
        return;
    }
    let names: Vec<&str> = if target == "all" {
        targets::TARGETS.to_vec()
    } else if targets::TARGETS.contains(&target.as_str()) {
        vec![target.as_str()]
    } else {
        eprintln!("unknown target {target}; {usage}");
        std::process::exit(2);
    };
    let per = secs / names.len() as f64;
    let mut total_findings = 0;
    for name in names {
        let (_, f) = fuzz(name, per, seed, max_len);
        total_findings += f;
    }
    if total_findings > 0 {
        std::process::exit(1);
    }
}
