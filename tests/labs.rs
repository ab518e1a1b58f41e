//! The lab guides (docs/labs/*.md) are executable: each test below runs the
//! commands of one lab page in a fresh namespace and checks what the page
//! tells the student to observe. So the guides never go stale.
//!
//! A page marks its commands with fenced-block tags:
//!
//! * `lab-serve`: one line, `sudo ./netns-setup.sh run -- FLAGS`: the test
//!   starts ustack with FLAGS through the e2e harness (its own namespace,
//!   TUN and addresses; `--pcap` and `--seed` are the harness's, the pcap is
//!   copied to the file name the page uses when ustack stops);
//! * `lab`: shell run while ustack runs (terminal 2 of the page);
//! * `lab-after`: shell run after ustack stopped (captures are complete).
//!
//! Blocks run with `bash` in the test's directory, with `sudo` removed, the
//! namespace name `ustack` and the addresses `10.0.0.1`/`10.0.0.2` replaced
//! by the harness's, and the `ustack` binary on `PATH`; each block must exit
//! with status 0 within 120 s. Needs root (SKIPPED otherwise, unless
//! USTACK_REQUIRE_E2E=1).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

const LABS: [&str; 8] = [
    "01-handshake.md",
    "02-flow-control.md",
    "03-retransmission.md",
    "04-congestion.md",
    "05-closing.md",
    "06-http.md",
    "07-websocket.md",
    "08-chat.md",
];

fn lab_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs/labs")
        .join(name)
}

/// The tagged blocks of a lab page.
#[derive(Debug, Default)]
struct Lab {
    serve: Vec<String>,
    steps: Vec<String>,
    after: Vec<String>,
}

fn parse_lab(md: &str) -> Lab {
    let mut lab = Lab::default();
    let mut current: Option<(&str, String)> = None;
    for line in md.lines() {
        match &mut current {
            None => {
                if let Some(tag) = line.strip_prefix("```") {
                    let tag = tag.trim();
                    if matches!(tag, "lab" | "lab-serve" | "lab-after") {
                        current = Some((
                            match tag {
                                "lab" => "lab",
                                "lab-serve" => "lab-serve",
                                _ => "lab-after",
                            },
                            String::new(),
                        ));
                    } else {
                        current = Some(("other", String::new()));
                    }
                }
            }
            Some((tag, body)) => {
                if line.trim() == "```" {
                    let body = std::mem::take(body);
                    match *tag {
                        "lab" => lab.steps.push(body),
                        "lab-serve" => lab.serve.push(body),
                        "lab-after" => lab.after.push(body),
                        _ => {}
                    }
                    current = None;
                } else {
                    body.push_str(line);
                    body.push('\n');
                }
            }
        }
    }
    lab
}

/// The `ustack serve` flags of the page's `lab-serve` line, without the
/// ones the harness sets (`--pcap`, returned separately, and `--seed`), and
/// with `--trace` made absolute in `dir`.
fn serve_flags(line: &str, dir: &Path) -> (Vec<String>, Option<String>) {
    let (_, flags) = line
        .split_once(" -- ")
        .unwrap_or_else(|| panic!("lab-serve line without ` -- `: {line}"));
    let mut out = Vec::new();
    let mut pcap = None;
    let mut it = flags.split_whitespace();
    while let Some(a) = it.next() {
        match a {
            "--pcap" => pcap = it.next().map(String::from),
            "--seed" => {
                let seed = it.next();
                assert_eq!(seed, Some("1"), "labs use --seed 1, like the harness");
            }
            "--trace" => {
                let f = it.next().expect("--trace FILE");
                out.push(a.to_string());
                out.push(dir.join(f).to_string_lossy().into_owned());
            }
            _ => out.push(a.to_string()),
        }
    }
    (out, pcap)
}

fn adapt(script: &str, env: &common::Env) -> String {
    script
        .replace("sudo ", "")
        .replace(
            "ip netns exec ustack ",
            &format!("ip netns exec {} ", env.ns),
        )
        .replace("10.0.0.2", &env.addr.to_string())
        .replace("10.0.0.1", &env.kernel_addr.to_string())
}

fn run_block(script: &str, env: &common::Env) -> String {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_ustack"))
        .parent()
        .unwrap()
        .to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("timeout")
        .args(["120", "bash", "-c", script])
        .current_dir(&env.dir)
        .env("PATH", path)
        .output()
        .expect("run bash");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "lab block failed ({}):\n{script}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    format!("{stdout}{stderr}")
}

/// Run one lab page; returns everything its blocks printed.
fn run_lab(name: &str) -> Option<String> {
    let md = std::fs::read_to_string(lab_path(name)).expect("read lab page");
    let lab = parse_lab(&md);
    assert_eq!(lab.serve.len(), 1, "{name}: exactly one lab-serve block");
    // The flags need the directory, which the harness creates: parse twice.
    let probe_dir = std::env::temp_dir();
    let (flags_probe, _) = serve_flags(lab.serve[0].trim(), &probe_dir);
    let trace_file = flags_probe
        .iter()
        .position(|a| a == "--trace")
        .and_then(|i| flags_probe.get(i + 1))
        .map(|p| {
            Path::new(p)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        });
    // Start ustack with the trace in a temporary name, fixed up below.
    let mut flags: Vec<String> = Vec::new();
    let mut skip = false;
    for a in &flags_probe {
        if skip {
            skip = false;
            continue;
        }
        if a == "--trace" {
            skip = true;
            continue;
        }
        flags.push(a.clone());
    }
    let trace_tmp = trace_file.as_ref().map(|_| {
        std::env::temp_dir().join(format!("ustack-lab-{}-{name}.jsonl", std::process::id()))
    });
    if let Some(t) = &trace_tmp {
        flags.push("--trace".into());
        flags.push(t.to_string_lossy().into_owned());
    }
    let args: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut env = common::e2e_env_with(&args)?;
    let (_, pcap_name) = serve_flags(lab.serve[0].trim(), &env.dir);

    let mut output = String::new();
    for step in &lab.steps {
        output.push_str(&run_block(&adapt(step, &env), &env));
    }
    let status = env.stop();
    assert!(
        status.success(),
        "ustack exited with {status}: {}",
        env.stderr()
    );
    if let Some(p) = pcap_name {
        std::fs::copy(&env.pcap, env.dir.join(p)).expect("copy the capture");
    }
    if let (Some(t), Some(file)) = (trace_tmp, trace_file) {
        // (rename fails across file systems: copy then.)
        let dest = env.dir.join(file);
        if std::fs::rename(&t, &dest).is_err() {
            std::fs::copy(&t, &dest).expect("move the trace");
            let _ = std::fs::remove_file(&t);
        }
    }
    for step in &lab.after {
        output.push_str(&run_block(&adapt(step, &env), &env));
    }
    eprintln!("--- {name} output\n{output}");
    Some(output)
}

/// The last number printed alone on a line (by `grep -c`), or 0.
fn count_line(out: &str) -> u64 {
    out.lines()
        .filter_map(|l| l.trim().parse().ok())
        .next_back()
        .unwrap_or(0)
}

fn has(out: &str, what: &str) {
    assert!(
        out.contains(what),
        "expected {what:?} in the lab's output:\n{out}"
    );
}

#[test]
fn every_lab_page_is_runnable_and_linked() {
    let index = std::fs::read_to_string(lab_path("README.md")).unwrap();
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    for name in LABS {
        let lab = parse_lab(&std::fs::read_to_string(lab_path(name)).unwrap());
        assert_eq!(lab.serve.len(), 1, "{name}: one lab-serve block");
        assert!(
            lab.serve[0]
                .trim()
                .starts_with("sudo ./netns-setup.sh run -- "),
            "{name}"
        );
        assert!(
            !lab.steps.is_empty() && !lab.after.is_empty(),
            "{name}: lab and lab-after blocks"
        );
        assert!(
            index.contains(&format!("({name})")),
            "docs/labs/README.md does not link {name}"
        );
        assert!(
            readme.contains(&format!("docs/labs/{name}")),
            "README.md does not link {name}"
        );
    }
}

#[test]
fn lab1_handshake_isn_and_closed_port() {
    if !common::require_tool("curl") || !common::require_tool("tshark") {
        return;
    }
    let Some(out) = run_lab("01-handshake.md") else {
        return;
    };
    assert_eq!(out.matches("port 80: HTTP 200").count(), 2, "{out}");
    has(&out, "port 81: connection refused");
    // The ladder of the first connection: the three segments of the handshake.
    let syn = out.find("SYN seq=0").expect("SYN in the ladder");
    let synack = out
        .find("SYN-ACK seq=0 ack=1")
        .expect("SYN-ACK in the ladder");
    assert!(syn < synack);
    has(&out, "RST-ACK");
    has(&out, "\"from\":\"LISTEN\",\"to\":\"SYN-RECEIVED\"");
    has(&out, "\"from\":\"SYN-RECEIVED\",\"to\":\"ESTABLISHED\"");
    // tshark lists 3 SYNs from the kernel and 2 SYN-ACKs from ustack.
    let syns = out
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.len() == 4 && f[2].contains('S') && f[3].parse::<u32>().is_ok())
        .count();
    assert!(syns >= 5, "tshark SYN lines: {out}");
}

#[test]
fn lab2_zero_window_and_probes() {
    let Some(out) = run_lab("02-flow-control.md") else {
        return;
    };
    has(&out, "read 200");
    has(&out, "ZERO-WINDOW");
    has(&out, "WINDOW-UPDATE");
    has(&out, "ZERO-WINDOW-PROBE");
    // `grep -c` of the persist timer events: a number > 0.
    assert!(count_line(&out) > 0, "no persist timer in the trace: {out}");
}

#[test]
fn lab3_retransmissions_under_loss() {
    if !common::require_tool("curl") {
        return;
    }
    let Some(out) = run_lab("03-retransmission.md") else {
        return;
    };
    has(&out, "got 500000 bytes");
    has(&out, "RETRANS");
    has(&out, "\"sack\":\"");
    // `grep -c` of the retransmitted segments: a number > 0.
    assert!(
        count_line(&out) > 0,
        "no retransmitted segment in the trace: {out}"
    );
}

#[test]
fn lab4_cwnd_over_time() {
    if !common::require_tool("curl") {
        return;
    }
    let Some(out) = run_lab("04-congestion.md") else {
        return;
    };
    has(&out, "got 3000000 bytes");
    let rows: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.len() == 3 && f[0].contains('.') && f[0].parse::<f64>().is_ok())
        .collect();
    assert!(
        rows.iter().any(|r| r[2] == "inf"),
        "no slow-start row: {out}"
    );
    assert!(
        rows.iter().any(|r| r[2].parse::<f64>().is_ok()),
        "ssthresh never set by a loss: {out}"
    );
}

#[test]
fn lab5_fin_half_close_time_wait_rst() {
    if !common::require_tool("curl") {
        return;
    }
    let Some(out) = run_lab("05-closing.md") else {
        return;
    };
    has(&out, "echo after our FIN: b'half-close test\\n'");
    has(&out, "aborted");
    has(&out, "HTTP 200, server closed");
    has(&out, "ESTABLISHED -> CLOSE-WAIT");
    has(&out, "CLOSE-WAIT -> LAST-ACK");
    has(&out, "ESTABLISHED -> FIN-WAIT-1");
    has(&out, "-> TIME-WAIT");
    has(&out, "RST");
}

#[test]
fn lab6_keep_alive_vs_new_connections() {
    if !common::require_tool("curl") || !common::require_tool("tshark") {
        return;
    }
    let Some(out) = run_lab("06-http.md") else {
        return;
    };
    assert_eq!(out.matches("0 new connection(s)").count(), 2, "{out}");
    assert_eq!(out.matches("1 new connection(s)").count(), 4, "{out}");
    has(&out, "4 TCP connections");
    has(&out, "GET /http/");
    assert_eq!(
        out.lines().last().map(str::trim),
        Some("4"),
        "SYN count: {out}"
    );
}

#[test]
fn lab7_websocket_by_hand() {
    let Some(out) = run_lab("07-websocket.md") else {
        return;
    };
    has(&out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    has(&out, "HTTP/1.1 101 Switching Protocols");
    has(&out, "accept key matches");
    has(&out, "echo: fin=1 opcode=1 b'hello'");
    has(&out, "b'fragmented'");
    has(&out, "pong: fin=1 opcode=10 b'are you there?'");
    has(&out, "close: fin=1 opcode=8");
    has(&out, "the server closes TCP: True");
    has(&out, "WS text");
}

#[test]
fn lab8_chat_through_the_broker() {
    let Some(out) = run_lab("08-chat.md") else {
        return;
    };
    has(&out, "bob got:    hello Bob, this is Alice");
    has(&out, "alice got:  hi Alice");
    has(&out, "\"count\":2");
    has(&out, "2 TCP connections");
    has(&out, "WS text");
}
