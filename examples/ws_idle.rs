//! Open N idle WebSocket connections and hold them (issue 6: 100,000
//! concurrent idle connections with <= 4 KiB of ustack memory each).
//! `scripts/idle-ws.sh` runs it against ustack in a namespace and measures.
//!
//! ```text
//! ws_idle --target 10.0.0.2:80 --source 10.0.0.10,10.0.0.11 --count 100000
//! ```
//!
//! Phases, each reported on stdout (one line each, for scripts):
//!
//! 1. raise RLIMIT_NOFILE to N + 64. If the hard limit is lower and cannot
//!    be raised (no CAP_SYS_RESOURCE, e.g. root in a container), it says so
//!    and splits the run over several processes of itself, each under the
//!    limit (`--processes` chooses the number); the parent adds up their
//!    reports, so the lines below look the same either way;
//! 2. open the connections, at most `--parallel` being set up at a time
//!    (`progress t=.. open=.. in_flight=.. failed=..` once a second), then
//!    `READY open=N failed=F secs=T deflate=D`;
//! 3. hold them (answering the server's pings) until `--hold` seconds have
//!    passed or SIGTERM/SIGINT arrives; on SIGUSR1, check a sample: a text
//!    message and a ping on `--sample` connections spread over all of them,
//!    each must come back (`CHECK sampled=K echoed=K ponged=K wrong=0 ok=true`);
//! 4. a last check, then close everything with Close frames (`DONE ...`).
//!
//! Exit status 0 when every connection opened, none was lost while held
//! and every check passed. Each process is a single thread with epoll; see
//! `examples/bench_common/ws_idle.rs` for the connection state machine.

#[path = "bench_common/ws_idle.rs"]
mod ws_idle;

use clap::Parser;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use ws_idle::{nofile_hard_limit, raise_nofile, Config, IdleClient};

#[derive(Parser, Debug, Clone)]
#[command(about = "Open and hold many idle WebSocket connections")]
struct Args {
    /// Server address and port.
    #[arg(long)]
    target: SocketAddrV4,
    /// Request path.
    #[arg(long, default_value = "/ws/echo")]
    path: String,
    /// Local source addresses (comma-separated or repeated); connection i uses source i % n.
    #[arg(long, value_delimiter = ',', required = true)]
    source: Vec<Ipv4Addr>,
    /// Connections to open.
    #[arg(long)]
    count: usize,
    /// Connections being set up at the same time at most (all processes).
    #[arg(long, default_value_t = 256)]
    parallel: usize,
    /// Seed of the handshake keys and masks.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Offer permessage-deflate, as browsers do.
    #[arg(long)]
    deflate: bool,
    /// Hold the connections this many seconds (default: until SIGTERM/SIGINT).
    #[arg(long)]
    hold: Option<f64>,
    /// Connections checked (echo + ping) on SIGUSR1 and at the end.
    #[arg(long, default_value_t = 200)]
    sample: usize,
    /// Seconds to wait for the sample's answers.
    #[arg(long, default_value_t = 15.0)]
    check_timeout: f64,
    /// Processes to spread the connections over (default: 1 if
    /// RLIMIT_NOFILE can be raised to count + 64, else as many as the hard
    /// limit requires).
    #[arg(long)]
    processes: Option<usize>,
    /// (internal) global number of this process's first connection.
    #[arg(long, default_value_t = 0, hide = true)]
    first_index: usize,
}

/// Block the signals we handle, so they stay pending until we look
/// (no asynchronous handler). Children inherit the mask.
fn block_signals() -> libc::sigset_t {
    // SAFETY: sigset manipulation on a local set; sigprocmask on this
    // (single) thread before any other thread exists.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGUSR1);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// A pending signal of `set`, if any (does not wait).
fn take_signal(set: &libc::sigset_t) -> Option<i32> {
    let zero = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: sigtimedwait with a valid set, no siginfo, a zero timeout.
    let s = unsafe { libc::sigtimedwait(set, std::ptr::null_mut(), &zero) };
    (s > 0).then_some(s)
}

fn say(line: String) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn main() {
    let a = Args::parse();
    let sigs = block_signals();
    let want = a.count as u64 + 64;
    let procs = match a.processes {
        Some(n) => n.clamp(1, a.count.max(1)),
        None => match raise_nofile(want) {
            Ok(_) => 1,
            Err(e) => {
                let hard = nofile_hard_limit().unwrap_or(0);
                if hard < 1088 {
                    eprintln!("ws_idle: {e}");
                    std::process::exit(1);
                }
                let per = (hard - 64) as usize;
                let n = a.count.div_ceil(per);
                say(format!(
                    "ws_idle: {e}; using {n} processes of at most {per} connections each"
                ));
                n
            }
        },
    };
    if procs > 1 {
        parent(&a, procs, &sigs)
    } else {
        single(&a, &sigs)
    }
}

/// One process holding all (or its share of the) connections.
fn single(a: &Args, sigs: &libc::sigset_t) -> ! {
    match raise_nofile(a.count as u64 + 64) {
        Ok(n) => say(format!("ws_idle: RLIMIT_NOFILE {n}")),
        Err(e) => {
            eprintln!("ws_idle: {e}");
            std::process::exit(1);
        }
    }
    let mut cfg = Config::new(a.target, a.source.clone(), a.count);
    cfg.path = a.path.clone();
    cfg.parallel = a.parallel.max(1);
    cfg.seed = a.seed;
    cfg.deflate = a.deflate;
    cfg.first_index = a.first_index;
    let mut client = IdleClient::new(cfg).unwrap_or_else(|e| {
        eprintln!("ws_idle: {e}");
        std::process::exit(1)
    });
    let t0 = Instant::now();
    let res = client.open_all(|s, t| {
        say(format!(
            "progress t={:.1}s open={} in_flight={} failed={}",
            t.as_secs_f64(),
            s.open,
            s.in_flight,
            s.failed
        ));
    });
    if let Err(e) = res {
        eprintln!("ws_idle: epoll: {e}");
        std::process::exit(1);
    }
    let s = client.stats().clone();
    say(format!(
        "READY open={} failed={} secs={:.1} deflate={}",
        s.open,
        s.failed,
        t0.elapsed().as_secs_f64(),
        s.deflate_accepted
    ));
    for (why, n) in client.errors() {
        say(format!("error count={n} {why}"));
    }
    let mut all_ok = s.failed == 0;
    let check_timeout = Duration::from_secs_f64(a.check_timeout.clamp(0.1, 3600.0));
    let hold_end = a
        .hold
        .map(|h| Instant::now() + Duration::from_secs_f64(h.clamp(0.0, 1e7)));
    let mut last_report = Instant::now();
    let check =
        |client: &mut IdleClient, all_ok: &mut bool| match client.check(a.sample, check_timeout) {
            Ok(c) => {
                say(format!(
                    "CHECK sampled={} echoed={} ponged={} wrong={} ok={}",
                    c.sampled,
                    c.echoed,
                    c.ponged,
                    c.wrong,
                    c.ok()
                ));
                *all_ok &= c.ok();
            }
            Err(e) => {
                say(format!("CHECK error {e}"));
                *all_ok = false;
            }
        };
    loop {
        if hold_end.is_some_and(|t| Instant::now() >= t) {
            break;
        }
        match take_signal(sigs) {
            Some(libc::SIGUSR1) => check(&mut client, &mut all_ok),
            Some(_) => break,
            None => {}
        }
        if let Err(e) = client.poll(Duration::from_millis(200)) {
            eprintln!("ws_idle: epoll: {e}");
            std::process::exit(1);
        }
        if last_report.elapsed() >= Duration::from_secs(10) {
            last_report = Instant::now();
            let s = client.stats();
            say(format!(
                "hold t={:.0}s open={} closed_by_peer={} pings_answered={}",
                t0.elapsed().as_secs_f64(),
                s.open,
                s.closed_by_peer,
                s.pings_answered
            ));
        }
    }
    check(&mut client, &mut all_ok);
    let s = client.stats().clone();
    all_ok &= s.closed_by_peer == 0;
    client.close_all();
    // Let the Close frames and FINs leave before the process exits.
    let _ = client.hold(Duration::from_millis(500));
    say(format!(
        "DONE opened={} failed={} closed_by_peer={} pings_answered={} ok={}",
        s.opened, s.failed, s.closed_by_peer, s.pings_answered, all_ok
    ));
    for (why, n) in client.errors() {
        say(format!("error count={n} {why}"));
    }
    std::process::exit(if all_ok { 0 } else { 1 });
}

/// `key=value` fields of a report line.
fn fields(line: &str) -> BTreeMap<&str, &str> {
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .collect()
}

fn num(f: &BTreeMap<&str, &str>, k: &str) -> f64 {
    f.get(k)
        .map(|v| v.trim_end_matches('s'))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// The latest lines of each kind from each child.
#[derive(Default, Clone)]
struct ChildState {
    progress: Option<String>,
    ready: Option<String>,
    hold: Option<String>,
    check: Option<String>,
    done: Option<String>,
    /// Error lines after READY / after DONE.
    errors: Vec<String>,
    eof: bool,
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on the PID of a child we spawned and have not reaped.
    unsafe { libc::kill(child.id() as libc::pid_t, sig) };
}

/// Run the connections in `procs` child processes and add up their reports.
fn parent(a: &Args, procs: usize, sigs: &libc::sigset_t) -> ! {
    let exe = std::env::current_exe().unwrap_or_else(|e| {
        eprintln!("ws_idle: cannot find my own executable: {e}");
        std::process::exit(1)
    });
    let sources: Vec<String> = a.source.iter().map(|s| s.to_string()).collect();
    let (tx, rx) = mpsc::channel::<(usize, Option<String>)>();
    let mut children = Vec::new();
    let mut first = 0;
    for k in 0..procs {
        let count = a.count / procs + usize::from(k < a.count % procs);
        let mut cmd = Command::new(&exe);
        cmd.arg("--target")
            .arg(a.target.to_string())
            .arg("--path")
            .arg(&a.path)
            .arg("--source")
            .arg(sources.join(","))
            .arg("--count")
            .arg(count.to_string())
            .arg("--first-index")
            .arg(first.to_string())
            .arg("--parallel")
            .arg((a.parallel / procs).max(1).to_string())
            .arg("--seed")
            .arg(a.seed.to_string())
            .arg("--sample")
            .arg((a.sample / procs).max(1).to_string())
            .arg("--check-timeout")
            .arg(a.check_timeout.to_string())
            .arg("--processes")
            .arg("1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        if a.deflate {
            cmd.arg("--deflate");
        }
        // SAFETY: prctl in the forked child before exec, async-signal-safe.
        // The child dies with us (no orphaned sockets if we are killed).
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        first += count;
        let mut child = cmd.spawn().unwrap_or_else(|e| {
            eprintln!("ws_idle: spawn {}: {e}", exe.display());
            std::process::exit(1)
        });
        let out = child.stdout.take().expect("piped stdout");
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send((k, Some(line)));
            }
            let _ = tx.send((k, None));
        });
        children.push(child);
    }
    drop(tx);
    let mut st = vec![ChildState::default(); procs];
    let t0 = Instant::now();
    let mut receive = |st: &mut Vec<ChildState>, timeout: Duration| {
        if let Ok((k, line)) = rx.recv_timeout(timeout) {
            let c = &mut st[k];
            match line {
                None => c.eof = true,
                Some(l) => {
                    let kind = l.split_whitespace().next().unwrap_or("").to_string();
                    match kind.as_str() {
                        "progress" => c.progress = Some(l),
                        "READY" => c.ready = Some(l),
                        "hold" => c.hold = Some(l),
                        "CHECK" => c.check = Some(l),
                        "DONE" => c.done = Some(l),
                        "error" => c.errors.push(l),
                        _ => say(format!("[{k}] {l}")),
                    }
                }
            }
        }
    };
    let sum = |lines: Vec<&Option<String>>, key: &str| -> f64 {
        lines
            .iter()
            .filter_map(|l| l.as_deref())
            .map(|l| num(&fields(l), key))
            .sum()
    };
    // Phase 1: opening.
    let mut last = Instant::now();
    loop {
        receive(&mut st, Duration::from_millis(100));
        if st.iter().all(|c| c.ready.is_some()) {
            break;
        }
        if st.iter().any(|c| c.eof && c.ready.is_none()) {
            eprintln!("ws_idle: a child process exited before its connections were open");
            for c in &children {
                signal(c, libc::SIGKILL);
            }
            std::process::exit(1);
        }
        if last.elapsed() >= Duration::from_secs(1) {
            last = Instant::now();
            let p: Vec<&Option<String>> = st.iter().map(|c| &c.progress).collect();
            say(format!(
                "progress t={:.1}s open={} in_flight={} failed={}",
                t0.elapsed().as_secs_f64(),
                sum(p.clone(), "open"),
                sum(p.clone(), "in_flight"),
                sum(p, "failed")
            ));
        }
    }
    let r: Vec<&Option<String>> = st.iter().map(|c| &c.ready).collect();
    say(format!(
        "READY open={} failed={} secs={:.1} deflate={}",
        sum(r.clone(), "open"),
        sum(r.clone(), "failed"),
        t0.elapsed().as_secs_f64(),
        sum(r, "deflate")
    ));
    print_errors(&mut st);
    // Phase 2: holding; SIGUSR1 = check on every child.
    let hold_end = a
        .hold
        .map(|h| Instant::now() + Duration::from_secs_f64(h.clamp(0.0, 1e7)));
    let mut last_hold = Instant::now();
    let wait_all = |st: &mut Vec<ChildState>,
                    receive: &mut dyn FnMut(&mut Vec<ChildState>, Duration),
                    what: fn(&ChildState) -> bool| {
        let end = Instant::now() + Duration::from_secs(3600);
        while !st.iter().all(|c| what(c) || c.eof) && Instant::now() < end {
            receive(st, Duration::from_millis(100));
        }
    };
    let report_check = |st: &mut Vec<ChildState>| {
        let c: Vec<&Option<String>> = st.iter().map(|c| &c.check).collect();
        let ok = st
            .iter()
            .all(|c| c.check.as_deref().is_some_and(|l| l.contains("ok=true")));
        say(format!(
            "CHECK sampled={} echoed={} ponged={} wrong={} ok={ok}",
            sum(c.clone(), "sampled"),
            sum(c.clone(), "echoed"),
            sum(c.clone(), "ponged"),
            sum(c, "wrong")
        ));
        ok
    };
    loop {
        if hold_end.is_some_and(|t| Instant::now() >= t) {
            break;
        }
        match take_signal(sigs) {
            Some(libc::SIGUSR1) => {
                for c in st.iter_mut() {
                    c.check = None;
                }
                for c in &children {
                    signal(c, libc::SIGUSR1);
                }
                wait_all(&mut st, &mut receive, |c| c.check.is_some());
                report_check(&mut st);
            }
            Some(_) => break,
            None => {}
        }
        receive(&mut st, Duration::from_millis(100));
        if st.iter().any(|c| c.eof) {
            eprintln!("ws_idle: a child process exited while holding");
            break;
        }
        if last_hold.elapsed() >= Duration::from_secs(10) && st.iter().all(|c| c.hold.is_some()) {
            last_hold = Instant::now();
            let h: Vec<&Option<String>> = st.iter().map(|c| &c.hold).collect();
            say(format!(
                "hold t={:.0}s open={} closed_by_peer={} pings_answered={}",
                t0.elapsed().as_secs_f64(),
                sum(h.clone(), "open"),
                sum(h.clone(), "closed_by_peer"),
                sum(h, "pings_answered")
            ));
        }
    }
    // Phase 3: each child checks once more, closes and reports DONE.
    for c in st.iter_mut() {
        c.check = None;
    }
    for c in &children {
        signal(c, libc::SIGTERM);
    }
    wait_all(&mut st, &mut receive, |c| c.done.is_some());
    let check_ok = report_check(&mut st);
    let mut ok = check_ok
        && st
            .iter()
            .all(|c| c.done.as_deref().is_some_and(|l| l.contains("ok=true")));
    for mut c in children {
        match c.wait() {
            Ok(s) if s.success() => {}
            _ => ok = false,
        }
    }
    // The error lines that follow each DONE.
    while !st.iter().all(|c| c.eof) {
        receive(&mut st, Duration::from_millis(100));
    }
    let d: Vec<&Option<String>> = st.iter().map(|c| &c.done).collect();
    say(format!(
        "DONE opened={} failed={} closed_by_peer={} pings_answered={} ok={ok}",
        sum(d.clone(), "opened"),
        sum(d.clone(), "failed"),
        sum(d.clone(), "closed_by_peer"),
        sum(d, "pings_answered")
    ));
    print_errors(&mut st);
    std::process::exit(if ok { 0 } else { 1 });
}

/// Add up the children's `error count=N why` lines collected so far.
fn print_errors(st: &mut [ChildState]) {
    let mut total: BTreeMap<String, u64> = BTreeMap::new();
    for c in st.iter_mut() {
        for l in c.errors.drain(..) {
            let rest = l.trim_start_matches("error ");
            if let Some((n, why)) = rest.split_once(' ') {
                let n: u64 = n.trim_start_matches("count=").parse().unwrap_or(0);
                *total.entry(why.to_string()).or_insert(0) += n;
            }
        }
    }
    for (why, n) in total {
        say(format!("error count={n} {why}"));
    }
}
