//! `ustack ladder` on captures of real Linux TCP: a fresh network namespace
//! (created and deleted here), a Python HTTP server and curl talking over
//! its loopback, captured by tshark twice at once: on `lo` (Ethernet
//! framing, LINKTYPE 1) and on `any` (Linux cooked, LINKTYPE 113/276).
//!
//! Skipped (with a SKIPPED line) unless running as root with `ip`,
//! `tshark`, `curl` and `python3` installed, or USTACK_REQUIRE_E2E=1 makes
//! a missing tool a failure.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Deletes the namespace and stops our processes, even when the test fails.
struct Netns {
    name: String,
    children: Vec<Child>,
}

impl Drop for Netns {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

impl Netns {
    fn cmd(&self, prog: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, prog]);
        c
    }
}

/// Start tshark in the namespace and wait until it says it is capturing.
fn start_tshark(ns: &Netns, iface: &str, out: &Path) -> Child {
    let mut child = ns
        .cmd("tshark")
        .args(["-i", iface, "-f", "tcp port 8080", "-F", "pcap", "-w"])
        .arg(out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("Capturing on") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(30))
        .expect("tshark did not start capturing");
    // "Capturing on" is printed a little before dumpcap's socket is live.
    std::thread::sleep(Duration::from_millis(1000));
    child
}

/// SIGINT (tshark then finishes the file) and wait.
fn stop(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn ladder(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ustack"))
        .arg("ladder")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn linux_loopback_http_capture() {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    let missing: Vec<&str> = ["ip", "tshark", "curl", "python3"]
        .into_iter()
        .filter(|t| !have(t))
        .collect();
    if !root || !missing.is_empty() {
        let why = format!("root={root}, missing tools {missing:?}");
        if std::env::var("USTACK_REQUIRE_E2E").as_deref() == Ok("1") {
            panic!("cannot run the Linux capture test: {why}");
        }
        println!("SKIPPED: linux_loopback_http_capture ({why})");
        return;
    }
    let name = format!("ladder-test-{}", std::process::id());
    assert!(Command::new("ip")
        .args(["netns", "add", &name])
        .status()
        .unwrap()
        .success());
    let mut ns = Netns {
        name,
        children: Vec::new(),
    };
    assert!(ns
        .cmd("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .unwrap()
        .success());

    let dir: PathBuf = std::env::temp_dir().join(format!("ladder-linux-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("index.html"), "<h1>hello ladder</h1>\n").unwrap();
    let server = ns
        .cmd("python3")
        .args(["-m", "http.server", "8080", "--bind", "127.0.0.1", "-d"])
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    ns.children.push(server);
    // Wait for the server with a TCP connect test (not captured yet).
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let ok = ns
            .cmd("python3")
            .args([
                "-c",
                "import socket; socket.create_connection(('127.0.0.1', 8080), 1).close()",
            ])
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ok {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "python http.server did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let lo_pcap = dir.join("lo.pcap");
    let any_pcap = dir.join("any.pcap");
    let mut t1 = start_tshark(&ns, "lo", &lo_pcap);
    let mut t2 = start_tshark(&ns, "any", &any_pcap);
    let out = ns
        .cmd("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "http://127.0.0.1:8080/index.html",
        ])
        .output()
        .unwrap();
    assert_eq!(out.stdout, b"200", "curl failed");
    std::thread::sleep(Duration::from_millis(500));
    stop(&mut t1);
    stop(&mut t2);

    let link_type = |p: &Path| {
        let b = std::fs::read(p).unwrap();
        u32::from_le_bytes(b[20..24].try_into().unwrap())
    };
    assert_eq!(link_type(&lo_pcap), 1, "lo is captured as Ethernet");
    let any = link_type(&any_pcap);
    assert!(any == 113 || any == 276, "`any` is Linux cooked, got {any}");
    for (pcap, link) in [(&lo_pcap, "ethernet"), (&any_pcap, "cooked")] {
        let (ok, text, err) = ladder(&[pcap.to_str().unwrap(), "--port", "8080"]);
        assert!(ok, "{link}: {err}");
        println!("--- {link} ---\n{text}");
        let arrow = |needle: &str, right: bool| {
            let l = text
                .lines()
                .find(|l| l.contains(needle))
                .unwrap_or_else(|| panic!("{link}: no {needle:?} line in\n{text}"));
            assert_eq!(l.contains("--->|"), right, "{link}: direction of {l}");
        };
        arrow("|---- SYN seq=0", true);
        arrow("SYN-ACK seq=0 ack=1", false);
        arrow("\"GET /index.html HTTP/1.1\"", true);
        arrow("\"HTTP/1.0 200 OK\"", false);
        assert!(text.contains("FIN-ACK"), "{link}: no FIN\n{text}");
        // Linux negotiates window scaling and SACK on loopback.
        assert!(text.contains("sackOK,TS,wscale"), "{link}\n{text}");
    }
    // Also the SVG, for a look by hand (left in the temp dir on failure).
    let svg = dir.join("lo.svg");
    let (ok, _, err) = ladder(&[lo_pcap.to_str().unwrap(), "--svg", svg.to_str().unwrap()]);
    assert!(ok, "{err}");
    if let Ok(keep) = std::env::var("LADDER_KEEP_SVG") {
        let _ = std::fs::copy(&svg, keep);
    }

    // tshark's default output format, pcapng, gets a clear error.
    let ng = dir.join("lo.pcapng");
    let st = Command::new("tshark")
        .args(["-r"])
        .arg(&lo_pcap)
        .args(["-F", "pcapng", "-w"])
        .arg(&ng)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let (ok, _, err) = ladder(&[ng.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("pcapng") && err.contains("tshark -F pcap"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
