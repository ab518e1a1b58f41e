//! `ustack`: the command line.
//!
//! `ustack serve --tun tun0 --addr 10.0.0.2` runs the stack on a TUN device
//! (see netns-setup.sh to create one in a network namespace).

use clap::{Parser, Subcommand};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitCode;
use ustack::phy::fault::ImpairSpec;
use ustack::runtime::{self, Options, RuntimeError};
use ustack::tcp::CongestionAlgorithm;
use ustack::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "ustack",
    version,
    about = "A userspace TCP/IPv4 stack on a Linux TUN device"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
#[allow(clippy::large_enum_variant)] // parsed once
enum Command {
    /// Run the stack and its services on a TUN device.
    Serve(ServeArgs),
    /// Draw a TCP connection from a pcap file as a time-sequence (ladder) diagram.
    Ladder(ustack::ladder::LadderArgs),
}

#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// TUN device to attach to (created if it does not exist).
    #[arg(long, default_value = "tun0")]
    tun: String,
    /// The stack's IPv4 address (the kernel side of the TUN has another one in the same subnet).
    #[arg(long, default_value = "10.0.0.2")]
    addr: Ipv4Addr,
    /// Write every packet crossing the TUN device to this pcap file.
    #[arg(long, value_name = "FILE")]
    pcap: Option<PathBuf>,
    /// Seed of all randomness (ISNs, fault injection); default: from the clock, printed at start.
    #[arg(long)]
    seed: Option<u64>,
    /// TCP echo port (0 = off).
    #[arg(long, default_value_t = 7)]
    echo_port: u16,
    /// HTTP port (0 = off).
    #[arg(long, default_value_t = 80)]
    http_port: u16,
    /// Directory of static files for the HTTP server.
    #[arg(long, value_name = "DIR")]
    www: Option<PathBuf>,
    /// Impair the link, e.g. "loss=2%,delay=20ms,jitter=5ms,out:rate=50mbit" (prefix in:/out: for one direction).
    #[arg(long, value_name = "SPEC", value_parser = parse_impair)]
    impair: Option<ImpairSpec>,
    /// MTU (default: the TUN device's).
    #[arg(long)]
    mtu: Option<usize>,
    /// Plain TUN I/O: one wire-sized packet per read/write, no virtio-net
    /// header, no segmentation offload (for labs and comparisons; the pcap
    /// then shows exactly the segments on the wire).
    #[arg(long)]
    no_offload: bool,
    /// Write a connection event log to this file (JSON lines: segments with
    /// the stack's decision, state transitions, timers, cwnd changes).
    /// `ustack ladder FILE` draws it.
    #[arg(long, value_name = "FILE")]
    trace: Option<PathBuf>,
    /// Maximum simultaneous TCP connections.
    #[arg(long, default_value_t = 200_000)]
    max_connections: usize,
    /// Half-open (SYN-RECEIVED) connections kept at most (all listeners);
    /// beyond, SYNs get SYN cookies [default: 4096].
    #[arg(long)]
    max_half_open: Option<usize>,
    /// Drop SYNs instead of answering with SYN cookies when the half-open queue is full.
    #[arg(long)]
    no_syn_cookies: bool,
    /// Budget for all connections' buffers, e.g. 512M; over it new connections
    /// are refused and receive windows stop growing [default: 512M].
    #[arg(long, value_parser = parse_size)]
    max_buffer_memory: Option<usize>,
    /// Receive buffer per connection, e.g. 256K [default: 1M].
    #[arg(long, value_parser = parse_size)]
    recv_buffer: Option<usize>,
    /// Send buffer per connection, e.g. 256K [default: 1M].
    #[arg(long, value_parser = parse_size)]
    send_buffer: Option<usize>,
    /// Retransmissions of one segment before the connection is aborted (TimedOut) [default: 15].
    #[arg(long)]
    tcp_max_retries: Option<u32>,
    /// Congestion control algorithm.
    #[arg(long, default_value = "cubic", value_parser = parse_cc)]
    cc: CongestionAlgorithm,
    /// Seconds to let connections close gracefully on SIGINT/SIGTERM before aborting them.
    #[arg(long, default_value_t = 2.0)]
    grace: f64,
    /// After a turn that moved packets, keep polling the TUN device without
    /// sleeping for this many microseconds (0 = always sleep in poll(2)).
    /// Saves a sleep/wake-up per request under load; costs CPU while busy.
    #[arg(long, value_name = "USEC", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    busy_poll: u64,
}

fn parse_impair(s: &str) -> Result<ImpairSpec, String> {
    s.parse::<ImpairSpec>().map_err(|e| e.to_string())
}

/// A byte count with an optional K/M/G suffix (powers of 1024).
fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let (num, mult) = match t.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&t[..t.len() - 1], 1usize << 10),
        Some('M') => (&t[..t.len() - 1], 1 << 20),
        Some('G') => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    num.parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("{s:?} is not a size (e.g. 65536, 256K, 1M)"))
}

fn parse_cc(s: &str) -> Result<CongestionAlgorithm, String> {
    match s.to_ascii_lowercase().as_str() {
        "newreno" | "reno" => Ok(CongestionAlgorithm::NewReno),
        "cubic" => Ok(CongestionAlgorithm::Cubic),
        _ => Err(format!(
            "unknown congestion control {s:?} (available: cubic, newreno)"
        )),
    }
}

/// A seed from the clock and the pid, for runs without `--seed`.
fn default_seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let mut x = t.as_nanos() as u64 ^ ((std::process::id() as u64) << 32);
    // Keep it short enough to type: 0..10^9.
    ustack::rand::splitmix64(&mut x) % 1_000_000_000
}

fn serve(a: ServeArgs) -> Result<(), RuntimeError> {
    let seed = a.seed.unwrap_or_else(default_seed);
    let mut opts = Options::new(&a.tun, a.addr, seed);
    opts.pcap = a.pcap;
    opts.impair = a.impair.unwrap_or_default();
    opts.mtu = a.mtu;
    opts.offload = !a.no_offload;
    opts.trace = a.trace;
    opts.max_connections = a.max_connections;
    opts.cc = a.cc;
    opts.limits = ustack::iface::Limits {
        max_half_open: a.max_half_open,
        syn_cookies: a.no_syn_cookies.then_some(false),
        max_buffer_memory: a.max_buffer_memory,
        recv_buffer: a.recv_buffer,
        send_buffer: a.send_buffer,
        max_retries: a.tcp_max_retries,
    };
    opts.app.echo_port = a.echo_port;
    opts.app.http_port = a.http_port;
    opts.app.www = a.www;
    opts.grace = Duration::from_secs_f64(if a.grace.is_finite() {
        a.grace.clamp(0.0, 3600.0)
    } else {
        2.0
    });
    opts.busy_poll = Duration::from_micros(a.busy_poll);
    runtime::run(opts)
}

/// The glibc tunable that sizes malloc's per-thread cache of freed blocks.
const TCACHE_TUNABLE: &str = "glibc.malloc.tcache_count";

/// Switch off glibc malloc's per-thread cache ("tcache") for `serve`.
///
/// glibc keeps up to 7 freed blocks of every small size (up to 1 KiB) per
/// thread, for quick reuse. `malloc_trim`, which the runtime calls when it
/// is idle, never empties that cache, and after a burst of load its blocks
/// lie all over the heap, each keeping its page resident: 30 minutes of
/// `scripts/soak.sh` left the heap 676 kB larger after idle with the cache,
/// 88 kB without (docs/reliability.md, "Soak"). ustack gains nothing from
/// the cache: its data path does not allocate (`cargo bench --bench alloc`).
///
/// glibc takes the setting only from the environment at start-up
/// (`GLIBC_TUNABLES`, see "Memory Allocation Tunables" in its manual), so
/// `serve` adds it and executes itself once more, same arguments. Whoever
/// sets `glibc.malloc.tcache_count` themselves gets their value and no
/// restart. Other C libraries have no tcache: nothing to do.
fn restart_without_malloc_cache() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::os::unix::process::CommandExt;
        let current = std::env::var_os("GLIBC_TUNABLES");
        let Some(tunables) = tunables_without_tcache(current.as_deref()) else {
            return;
        };
        let mut args = std::env::args_os();
        let argv0 = args.next().unwrap_or_else(|| "ustack".into());
        // /proc/self/exe: this very binary, even if its file was replaced.
        let err = std::process::Command::new("/proc/self/exe")
            .arg0(argv0)
            .args(args)
            .env("GLIBC_TUNABLES", tunables)
            .exec();
        log::warn!(
            "could not restart with {TCACHE_TUNABLE}=0 ({err}); running with malloc's \
             per-thread cache, the idle trim returns less memory"
        );
    }
}

/// `GLIBC_TUNABLES` with the tcache switched off, or None when the variable
/// already says something about it (or is not text).
#[cfg_attr(not(all(target_os = "linux", target_env = "gnu")), allow(dead_code))]
fn tunables_without_tcache(current: Option<&std::ffi::OsStr>) -> Option<String> {
    let current = match current {
        None => "",
        Some(v) => v.to_str()?,
    };
    if current
        .split(':')
        .any(|t| t.split('=').next() == Some(TCACHE_TUNABLE))
    {
        return None;
    }
    Some(if current.is_empty() {
        format!("{TCACHE_TUNABLE}=0")
    } else {
        format!("{current}:{TCACHE_TUNABLE}=0")
    })
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("ustack=info"))
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(a) => {
            restart_without_malloc_cache();
            serve(a)
        }
        Command::Ladder(a) => {
            return match ustack::ladder::run(&a) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("ustack ladder: error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ustack: error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn tcache_tunable_is_added_once_and_an_explicit_one_is_kept() {
        let t = |v: Option<&str>| tunables_without_tcache(v.map(OsStr::new));
        assert_eq!(t(None).as_deref(), Some("glibc.malloc.tcache_count=0"));
        assert_eq!(t(Some("")).as_deref(), Some("glibc.malloc.tcache_count=0"));
        assert_eq!(
            t(Some("glibc.malloc.arena_max=1")).as_deref(),
            Some("glibc.malloc.arena_max=1:glibc.malloc.tcache_count=0")
        );
        // After the restart (no loop), and a user's own choice.
        assert_eq!(t(Some("glibc.malloc.tcache_count=0")), None);
        assert_eq!(
            t(Some("glibc.malloc.arena_max=1:glibc.malloc.tcache_count=7")),
            None
        );
        // A longer name that merely starts the same is another tunable.
        assert_eq!(
            t(Some("glibc.malloc.tcache_count_x=1")).as_deref(),
            Some("glibc.malloc.tcache_count_x=1:glibc.malloc.tcache_count=0")
        );
    }
}
