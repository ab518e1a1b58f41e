//! End-to-end tests of the runtime, the TUN device, the pcap writer and the
//! echo service, with the Linux kernel as the peer (see `common`).
//!
//! Run as root (`sudo ./scripts/test.sh`); as a normal user they print
//! SKIPPED unless `USTACK_REQUIRE_E2E=1`.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::Shutdown;
use std::process::Command;
use std::time::Duration;
use ustack::phy::pcap::Reader;

// ---------------------------------------------------------------- start-up, TUN, pcap, signals

/// The kernel's ICMP echo requests cross the TUN device and are captured
/// (this needs only the runtime, not the protocol core).
#[test]
fn kernel_ping_reaches_tun_and_pcap() {
    let Some(mut env) = e2e_env() else { return };
    let addr = env.addr.to_string();
    let _ = env.ns_cmd(&["ping", "-c", "3", "-i", "0.2", "-W", "1", &addr]);
    assert!(env.stop().success(), "exit status: {}", env.stderr());
    let pcap = Reader::open(&env.pcap).expect("pcap readable");
    let requests = pcap
        .records
        .iter()
        .filter(|r| {
            r.data.len() >= 28
                && r.data[0] >> 4 == 4
                && r.data[9] == 1 // ICMP
                && r.data[12..16] == env.kernel_addr.octets()
                && r.data[16..20] == env.addr.octets()
                && r.data[(r.data[0] & 0x0f) as usize * 4] == 8 // echo request
        })
        .count();
    assert_eq!(requests, 3, "echo requests in the capture");
    // Timestamps are wall-clock dates (after 2020), not times since start.
    assert!(pcap.records.iter().all(|r| r.ts.as_secs() > 1_577_836_800));
}

/// SIGTERM: exit 0 with a final stats line.
#[test]
fn sigterm_exits_cleanly_with_stats() {
    let Some(mut env) = e2e_env() else { return };
    let s = env.stats();
    assert_eq!(s.get("connections"), Some(&0));
    let status = env.stop();
    assert!(status.success(), "exit status {status}");
    let last = env
        .stderr()
        .lines()
        .filter(|l| l.starts_with("ustack-stats:"))
        .count();
    assert_eq!(
        last,
        2,
        "one stats line for SIGUSR1, one at exit: {}",
        env.stderr()
    );
}

/// Idle costs no CPU: the loop sleeps in poll(2) until the next deadline.
#[test]
fn idle_does_not_spin() {
    let Some(env) = e2e_env() else { return };
    let ticks = |pid: u32| -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = after.split_whitespace().collect();
        f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap() // utime + stime
    };
    let t0 = ticks(env.pid());
    std::thread::sleep(Duration::from_secs(2));
    let used = ticks(env.pid()) - t0;
    assert!(
        used <= 10,
        "{used} clock ticks (1/100 s) of CPU in 2 s idle"
    );
}

/// `ustack serve` runs with glibc's per-thread malloc cache off: it
/// restarts itself once with `GLIBC_TUNABLES` (src/main.rs), keeping its
/// pid and arguments. The cache would keep heap pages resident after load
/// (docs/reliability.md, "Soak").
#[test]
fn serve_runs_with_the_malloc_cache_off() {
    if std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("glibc.malloc.tcache_count")) {
        eprintln!("SKIPPED: GLIBC_TUNABLES sets glibc.malloc.tcache_count here (ustack keeps it)");
        return;
    }
    let Some(env) = e2e_env() else { return };
    let read = |what: &str| -> Vec<String> {
        std::fs::read(format!("/proc/{}/{what}", env.pid()))
            .unwrap()
            .split(|&b| b == 0)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect()
    };
    // glibc parses GLIBC_TUNABLES in place, ending each `name=value` with a
    // NUL: "a:b" then reads as "GLIBC_TUNABLES=a" and "b" in
    // /proc/PID/environ. So look for the setting among all the entries.
    let environ = read("environ");
    assert!(
        environ.iter().any(|v| v
            .trim_start_matches("GLIBC_TUNABLES=")
            .split(':')
            .any(|t| t == "glibc.malloc.tcache_count=0")),
        "no glibc.malloc.tcache_count=0 in ustack's environment (GLIBC_TUNABLES: {:?})",
        environ.iter().find(|v| v.starts_with("GLIBC_TUNABLES="))
    );
    let cmdline = read("cmdline");
    assert!(
        cmdline.iter().any(|a| a == "serve") && cmdline.contains(&env.tun),
        "{cmdline:?}"
    );
}

// ---------------------------------------------------------------- needs the protocol core

#[test]
fn ping_gets_replies() {
    let Some(env) = e2e_env() else { return };
    let out = env.ns_cmd(&[
        "ping",
        "-c",
        "3",
        "-i",
        "0.2",
        "-W",
        "2",
        &env.addr.to_string(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("3 received"),
        "ping: {text}"
    );
}

#[test]
fn closed_port_is_refused() {
    let Some(env) = e2e_env() else { return };
    let to = env.sock(9);
    let err = env
        .in_ns(|| std::net::TcpStream::connect_timeout(&to, Duration::from_secs(5)).unwrap_err());
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
}

#[test]
fn echo_one_byte() {
    let Some(env) = e2e_env() else { return };
    let to = env.sock(7);
    env.in_ns(|| echo_roundtrip(to, 1, 1));
}

#[test]
fn echo_one_megabyte() {
    let Some(env) = e2e_env() else { return };
    let to = env.sock(7);
    env.in_ns(|| echo_roundtrip(to, 1 << 20, 2));
}

#[test]
fn echo_hundred_megabytes() {
    let Some(env) = e2e_env() else { return };
    let to = env.sock(7);
    let t = std::time::Instant::now();
    env.in_ns(|| echo_roundtrip(to, 100 << 20, 3));
    eprintln!("100 MB echoed in {:?}", t.elapsed());
}

#[test]
fn echo_200_parallel_connections() {
    let Some(env) = e2e_env() else { return };
    let to = env.sock(7);
    env.in_ns(|| {
        // Threads spawned here inherit the namespace.
        std::thread::scope(|s| {
            for i in 0..200u64 {
                std::thread::Builder::new()
                    .stack_size(256 * 1024)
                    .spawn_scoped(s, move || echo_roundtrip(to, 1 << 20, 100 + i))
                    .unwrap();
            }
        })
    });
    let s = env.wait_stats(Duration::from_secs(10), |s| s["app_handles"] == 0);
    assert!(s["accepted"] >= 200, "{s:?}");
}

/// Through a lossy, delayed link (`--impair`) the echo is still byte-exact:
/// TCP retransmits what the fault injector dropped.
#[test]
fn echo_through_impaired_link() {
    let Some(env) = e2e_env_with(&["--impair", "loss=2%,delay=5ms,jitter=1ms"]) else {
        return;
    };
    let to = env.sock(7);
    env.in_ns(|| echo_roundtrip(to, 1 << 20, 5));
    let s = env.stats();
    assert!(
        s["fault_in_lost"] + s["fault_out_lost"] > 0,
        "the injector lost nothing? {s:?}"
    );
    assert!(s["retransmissions"] > 0, "{s:?}");
}

/// The kernel shuts down its write side first and still receives the rest
/// of the echo, then EOF.
#[test]
fn half_close_by_kernel() {
    let Some(env) = e2e_env() else { return };
    let to = env.sock(7);
    env.in_ns(|| {
        let mut s = connect(to);
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        s.write_all(&data).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let mut back = Vec::new();
        s.read_to_end(&mut back).unwrap(); // returns at EOF (our FIN)
        assert_eq!(back.len(), data.len());
        assert!(back == data, "echo differs");
    });
}

/// The kernel aborts (RST) in the middle of a transfer: ustack frees the connection.
#[test]
fn kernel_reset_frees_connection() {
    let Some(env) = e2e_env() else { return };
    let to = env.sock(7);
    env.in_ns(|| {
        let mut s = connect(to);
        // Send 2 MB without reading: the echo backs up, buffers fill on both sides.
        s.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
        let chunk = vec![0x5au8; 64 * 1024];
        for _ in 0..32 {
            if s.write_all(&chunk).is_err() {
                break; // windows closed: that is the "mid-transfer" we want
            }
        }
        set_linger_zero(&s);
        drop(s); // close with SO_LINGER 0 = RST
    });
    let s = env.wait_stats(Duration::from_secs(10), |s| {
        s["connections"] == 0 && s["app_handles"] == 0
    });
    assert!(s["rsts_received"] >= 1, "{s:?}");
}

/// The capture of an echo session shows the handshake and both FINs.
#[test]
fn pcap_of_echo_session_in_tshark() {
    if !require_tool("tshark") {
        return;
    }
    let Some(mut env) = e2e_env() else { return };
    let to = env.sock(7);
    env.in_ns(|| echo_roundtrip(to, 1000, 4));
    std::thread::sleep(Duration::from_millis(300)); // final ACKs
    assert!(env.stop().success());
    let out = Command::new("tshark")
        .args(["-r"])
        .arg(&env.pcap)
        .args([
            "-Y",
            "tcp",
            "-T",
            "fields",
            "-e",
            "ip.src",
            "-e",
            "tcp.flags.syn",
            "-e",
            "tcp.flags.ack",
            "-e",
            "tcp.flags.fin",
        ])
        .output()
        .expect("run tshark");
    assert!(
        out.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    // Boolean fields print as 1/0 (tshark < 4.2) or True/False (newer).
    let bit = |f: &str| f == "1" || f == "True";
    let rows: Vec<(String, bool, bool, bool)> = text
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f.len() == 4).then(|| (f[0].to_string(), bit(f[1]), bit(f[2]), bit(f[3])))
        })
        .collect();
    let has = |src: &str, syn: bool, ack: bool, fin: bool| {
        rows.iter().any(|r| *r == (src.to_string(), syn, ack, fin))
    };
    let (k, u) = (env.kernel_addr.to_string(), env.addr.to_string());
    assert!(has(&k, true, false, false), "SYN from the kernel:\n{text}");
    assert!(has(&u, true, true, false), "SYN-ACK from ustack:\n{text}");
    assert!(has(&k, false, true, true), "FIN from the kernel:\n{text}");
    assert!(has(&u, false, true, true), "FIN from ustack:\n{text}");
}

// ---------------------------------------------------------------- command line (no root needed)

fn ustack(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ustack"))
        .args(args)
        .output()
        .expect("run ustack")
}

#[test]
fn bad_impair_spec_is_a_clear_error() {
    let out = ustack(&["serve", "--impair", "loss=abc"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("invalid --impair part \"loss=abc\": expected a percentage like 2%"),
        "{err}"
    );
}

#[test]
fn bad_address_is_a_clear_error() {
    let out = ustack(&["serve", "--addr", "10.0.0"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--addr"));
}

#[test]
fn bad_tun_name_is_a_clear_error() {
    let out = ustack(&["serve", "--tun", "a-very-long-interface-name"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("invalid TUN device name") && err.contains("longer than 15 bytes"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "one-line error: {err}");
}

/// Without CAP_NET_ADMIN the error says so (run as `nobody` via setpriv).
#[test]
fn unprivileged_user_gets_permission_message() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 || !require_tool("setpriv") {
        eprintln!("SKIPPED: needs root to switch to an unprivileged user");
        return;
    }
    // A copy `nobody` can execute, whatever the permissions of target/.
    let dir = std::env::temp_dir().join(format!("ustack-nobody-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bin = dir.join("ustack");
    std::fs::copy(env!("CARGO_BIN_EXE_ustack"), &bin).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&bin)
        .args(["serve", "--tun", "unpriv0"])
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("opening /dev/net/tun needs root or CAP_NET_ADMIN"),
        "{err}"
    );
}

/// Offload settings outlive the process on a persistent TUN device: after a
/// run with offloads (the default), a `--no-offload` run on the same device
/// must still get complete checksums from the kernel (it resets them).
/// Regression: the plain run dropped every SYN as `bad_tcp_checksum`.
#[test]
fn plain_mode_after_offload_mode_on_the_same_device() {
    let Some(mut env) = e2e_env() else { return };
    let to = env.sock(7);
    env.in_ns(|| echo_roundtrip(to, 300_000, 11));
    assert!(env.stop().success());
    let mut child = Command::new("ip")
        .args([
            "netns",
            "exec",
            &env.ns,
            env!("CARGO_BIN_EXE_ustack"),
            "serve",
            "--tun",
            &env.tun,
        ])
        .args([
            "--addr",
            &env.addr.to_string(),
            "--no-offload",
            "--http-port",
            "0",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start ustack again");
    let ok = env.in_ns(|| {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if std::net::TcpStream::connect_timeout(&to, Duration::from_millis(500)).is_ok() {
                echo_roundtrip(to, 300_000, 12);
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    });
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        ok,
        "the --no-offload run on a device last used with offloads accepted no connection"
    );
}
