//! End-to-end test harness: the Linux kernel as the peer.
//!
//! Each test gets its own network namespace (`u<pid>-<n>`) with its own TUN
//! device and subnet, made by `netns-setup.sh up`, and its own `ustack
//! serve` process attached to the TUN inside that namespace, capturing into
//! a pcap file in a per-test temporary directory. Tests are therefore
//! independent and can run in parallel. [`Env`]'s `Drop` kills the process
//! (by PID) and removes the namespace (which removes the TUN device), also
//! when the test panics.
//!
//! The tests need root (CAP_NET_ADMIN). Without it they print
//! `SKIPPED: needs root (CAP_NET_ADMIN)` and pass — unless
//! `USTACK_REQUIRE_E2E=1`, which turns a skip into a failure (CI sets it).
#![allow(dead_code)]

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// How long `ustack` may take to print its banner.
const START_TIMEOUT: Duration = Duration::from_secs(15);

fn required() -> bool {
    std::env::var("USTACK_REQUIRE_E2E").is_ok_and(|v| v == "1")
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Skip (or fail under `USTACK_REQUIRE_E2E=1`) when a tool is missing.
pub fn require_tool(tool: &str) -> bool {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        if required() {
            panic!(
                "USTACK_REQUIRE_E2E=1 but `{tool}` is not installed (scripts/test.sh installs it)"
            );
        }
        eprintln!("SKIPPED: needs `{tool}`");
    }
    found
}

/// A running ustack in its own namespace.
pub struct Env {
    /// Namespace name (also the prefix of its veth names, if any).
    pub ns: String,
    pub tun: String,
    /// The kernel's address on the TUN (A.B.C.1).
    pub kernel_addr: Ipv4Addr,
    /// ustack's address (A.B.C.2).
    pub addr: Ipv4Addr,
    /// Per-test temporary directory (pcap, logs).
    pub dir: PathBuf,
    pub pcap: PathBuf,
    pub stderr_path: PathBuf,
    child: Option<Child>,
    pid: u32,
}

/// Set up a namespace and start `ustack serve` with default options.
/// `None` (after printing SKIPPED) when not root.
pub fn e2e_env() -> Option<Env> {
    e2e_env_with(&[])
}

/// Like [`e2e_env`], with extra `ustack serve` arguments.
pub fn e2e_env_with(extra_args: &[&str]) -> Option<Env> {
    e2e_allowed().then(|| Env::start(extra_args))
}

/// Whether e2e tests can run here (root); prints SKIPPED if not (and
/// panics instead under `USTACK_REQUIRE_E2E=1`).
pub fn e2e_allowed() -> bool {
    if !is_root() {
        if required() {
            panic!("USTACK_REQUIRE_E2E=1 but the e2e tests are not running as root (they need CAP_NET_ADMIN)");
        }
        eprintln!("SKIPPED: needs root (CAP_NET_ADMIN)");
        return false;
    }
    true
}

/// Skip (or fail under `USTACK_REQUIRE_E2E=1`) when a Python module is missing.
pub fn require_python_module(module: &str) -> bool {
    let found = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        if required() {
            panic!(
                "USTACK_REQUIRE_E2E=1 but python3 has no `{module}` (scripts/test.sh installs it)"
            );
        }
        eprintln!("SKIPPED: needs python3 `{module}`");
    }
    found
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("netns-setup.sh")
}

impl Env {
    fn start(extra_args: &[&str]) -> Env {
        let pid = std::process::id();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let ns = format!("u{}-{}", pid % 10_000_000, n);
        let tun = format!("t{}-{}", pid % 10_000_000, n);
        // A subnet unique per test in this process: 10.<64 + pid % 64>.<n>.0/24.
        let b = 64 + (pid % 64) as u8;
        let c = (n % 250) as u8;
        let kernel_addr = Ipv4Addr::new(10, b, c, 1);
        let addr = Ipv4Addr::new(10, b, c, 2);
        let dir = std::env::temp_dir().join(format!("ustack-e2e-{pid}-{n}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        let pcap = dir.join("capture.pcap");
        let stderr_path = dir.join("ustack.stderr");

        let mut env = Env {
            ns,
            tun,
            kernel_addr,
            addr,
            dir,
            pcap,
            stderr_path,
            child: None,
            pid: 0,
        };
        let out = Command::new("bash")
            .arg(script())
            .args([
                "up",
                "--netns",
                &env.ns,
                "--tun",
                &env.tun,
                "--subnet",
                &format!("10.{b}.{c}.0/24"),
            ])
            .output()
            .expect("run netns-setup.sh");
        assert!(
            out.status.success(),
            "netns-setup.sh up failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );

        let stderr = File::create(&env.stderr_path).expect("create stderr log");
        let addr_s = env.addr.to_string();
        let pcap_s = env.pcap.to_string_lossy().into_owned();
        let mut args: Vec<&str> = vec![
            "serve", "--tun", &env.tun, "--addr", &addr_s, "--pcap", &pcap_s,
        ];
        // Seed 1 unless the test chooses one.
        if !extra_args.contains(&"--seed") {
            args.extend_from_slice(&["--seed", "1"]);
        }
        args.extend_from_slice(extra_args);
        // `ip netns exec` execs the command itself, so the child's PID is ustack's.
        let mut child = Command::new("ip")
            .args(["netns", "exec", &env.ns, env!("CARGO_BIN_EXE_ustack")])
            .args(&args)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "ustack=info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn ustack");
        env.pid = child.id();
        let stdout = child.stdout.take().expect("stdout pipe");
        env.child = Some(child);

        // Wait for the banner (the TUN is attached and the loop runs).
        let (tx, rx) = mpsc::channel();
        let log_path = env.dir.join("ustack.stdout");
        std::thread::spawn(move || {
            let mut log = File::create(log_path).ok();
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(f) = log.as_mut() {
                    let _ = writeln!(f, "{line}");
                }
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(line) if line.contains(" listening on ") => break,
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Some(status) =
                        env.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
                    {
                        panic!("ustack exited during start-up ({status}): {}", env.stderr());
                    }
                    assert!(
                        Instant::now() < deadline,
                        "ustack did not start within {START_TIMEOUT:?}: {}",
                        env.stderr()
                    );
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    panic!("ustack closed stdout during start-up: {}", env.stderr());
                }
            }
        }
        env
    }

    /// The process id of ustack.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// `addr:port` of ustack.
    pub fn sock(&self, port: u16) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(self.addr, port))
    }

    /// Everything ustack wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Run a command inside the namespace (`ip netns exec NS ...`).
    pub fn ns_cmd(&self, argv: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .args(argv)
            .output()
            .expect("ip netns exec")
    }

    /// Run `f` on a thread that has entered the namespace, so std sockets
    /// it creates (and threads it spawns) live there.
    pub fn in_ns<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/var/run/netns/{}", self.ns);
        std::thread::scope(|s| {
            s.spawn(move || {
                enter_netns(&path);
                f()
            })
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e))
        })
    }

    /// Ask ustack for its counters (SIGUSR1) and parse the `ustack-stats:` line.
    pub fn stats(&self) -> HashMap<String, u64> {
        let before = self.stats_lines().len();
        signal(self.pid, libc::SIGUSR1);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let lines = self.stats_lines();
            if lines.len() > before {
                return parse_stats(lines.last().map(String::as_str).unwrap_or(""));
            }
            assert!(
                Instant::now() < deadline,
                "ustack printed no stats line after SIGUSR1: {}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stats_lines(&self) -> Vec<String> {
        self.stderr()
            .lines()
            .filter(|l| l.starts_with("ustack-stats:"))
            .map(String::from)
            .collect()
    }

    /// Poll the stats until `pred` holds (or panic after `timeout`).
    pub fn wait_stats(
        &self,
        timeout: Duration,
        pred: impl Fn(&HashMap<String, u64>) -> bool,
    ) -> HashMap<String, u64> {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.stats();
            if pred(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "stats condition not reached within {timeout:?}; last: {s:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stop ustack with SIGTERM (graceful: it flushes the pcap) and wait.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("ustack already stopped");
        signal(self.pid, libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(st) = child.try_wait().expect("wait for ustack") {
                return st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "ustack did not exit within 10 s of SIGTERM: {}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill(); // SIGKILL to this PID only
            let _ = child.wait();
        }
        let _ = Command::new("bash")
            .arg(script())
            .args(["down", "--netns", &self.ns])
            .output();
        if std::thread::panicking() {
            eprintln!(
                "e2e: test failed; ustack logs and capture kept in {}",
                self.dir.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) on the PID of a child we spawned and have not reaped.
    let rc = unsafe { libc::kill(pid as libc::pid_t, sig) };
    assert_eq!(
        rc,
        0,
        "kill({pid}, {sig}): {}",
        std::io::Error::last_os_error()
    );
}

fn enter_netns(path: &str) {
    let f = File::open(path).unwrap_or_else(|e| panic!("open {path}: {e}"));
    // SAFETY: setns on a valid namespace fd; affects only the calling thread.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns({path}): {}", std::io::Error::last_os_error());
}

/// Parse `ustack-stats: a=1 b=2 ...`.
pub fn parse_stats(line: &str) -> HashMap<String, u64> {
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .filter_map(|(k, v)| v.parse().ok().map(|v| (k.to_string(), v)))
        .collect()
}

/// Set SO_LINGER {on, 0}: `close` then sends RST instead of FIN.
pub fn set_linger_zero(s: &TcpStream) {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt with a valid fd and a correctly sized `linger`.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&l as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_LINGER: {}", std::io::Error::last_os_error());
}

/// A deterministic byte stream (xorshift), so both ends of a transfer can
/// generate and check it without holding it all in memory.
pub struct Pattern(u64);

impl Pattern {
    pub fn new(seed: u64) -> Pattern {
        Pattern(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            *b = self.0 as u8;
        }
    }
}

/// Connect with a timeout (retrying while the stack comes up).
pub fn connect(to: SocketAddr) -> TcpStream {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match TcpStream::connect_timeout(&to, Duration::from_secs(3)) {
            Ok(s) => {
                s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                s.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
                return s;
            }
            Err(e) if Instant::now() < deadline && e.kind() == std::io::ErrorKind::TimedOut => {
                continue
            }
            Err(e) => panic!("connect {to}: {e}"),
        }
    }
}

/// Send `len` pattern bytes to an echo server on one connection while
/// reading the echo on another thread; assert the echo is byte-exact and
/// ends with EOF after our half-close.
pub fn echo_roundtrip(to: SocketAddr, len: usize, seed: u64) {
    let s = connect(to);
    let mut reader = s.try_clone().unwrap();
    std::thread::scope(|sc| {
        let w = sc.spawn(|| {
            let mut s = &s;
            let mut p = Pattern::new(seed);
            let mut buf = vec![0u8; 64 * 1024];
            let mut left = len;
            while left > 0 {
                let n = left.min(buf.len());
                p.fill(&mut buf[..n]);
                s.write_all(&buf[..n]).expect("write to echo");
                left -= n;
            }
            s.shutdown(std::net::Shutdown::Write).expect("shutdown(WR)");
        });
        let mut p = Pattern::new(seed);
        let mut got = vec![0u8; 64 * 1024];
        let mut want = vec![0u8; 64 * 1024];
        let mut total = 0usize;
        loop {
            let n = reader
                .read(&mut got)
                .unwrap_or_else(|e| panic!("read echo after {total} bytes: {e}"));
            if n == 0 {
                break;
            }
            p.fill(&mut want[..n]);
            assert!(
                got[..n] == want[..n],
                "echo differs in bytes {total}..{}",
                total + n
            );
            total += n;
            assert!(total <= len, "echo returned more bytes than sent");
        }
        assert_eq!(total, len, "echo ended (EOF) early");
        w.join().unwrap();
    });
}
