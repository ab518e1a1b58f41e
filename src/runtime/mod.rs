//! The event loop: the only place that reads a clock or waits for I/O.
//!
//! ```text
//!            +-----------------------------+
//!   signals  |  signalfd (INT/TERM/USR1)   |
//!   -------->|                             |      poll(2) on both fds,
//!            |  TUN fd  <--> PcapWriter    |      timeout = next deadline
//!   kernel <-|-->  <--> FaultInjector      |
//!            |       <--> Stack <--> App   |
//!            +-----------------------------+
//! ```
//!
//! One turn of the loop:
//! 1. `now` = monotonic time since start, as a [`crate::time::Instant`];
//! 2. drain the device: `recv` until it has nothing (at most [`RX_BATCH`]
//!    packets per turn, so timers and transmission are never starved),
//!    `stack.handle_packet(now, pkt)` for each;
//! 3. `stack.handle_timeout(now)` if a timer is due;
//! 4. `app.poll(now, stack)`: services react to socket events;
//! 5. `stack.poll_transmit` until empty, `device.send` for each packet;
//! 6. sleep in `poll(2)` on the TUN fd and the signal fd until the earliest
//!    of `stack.poll_at()`, `app.poll_at()`, `device.poll_at()` (rounded up
//!    to the millisecond, so the loop never spins; idle = no CPU).
//!
//! ## Device order
//! `Stack <-> FaultInjector <-> PcapWriter <-> TunDevice`: the capture sits
//! directly on the TUN device, so the pcap shows what really crossed the
//! link (an outgoing packet lost by `--impair` is absent; an incoming one
//! is present even if the injector then drops it). That is what Wireshark on
//! the kernel side would show, and it keeps the file trustworthy as
//! evidence.
//!
//! ## Stopping
//! SIGINT or SIGTERM: the app closes every connection gracefully (FIN) and
//! refuses new ones; the loop runs on until all connections are closed or
//! `grace` has passed, then aborts what is left (RST), sends it, flushes
//! the pcap and returns. A second SIGINT/SIGTERM skips the grace period.
//!
//! ## Statistics
//! SIGUSR1 prints one `ustack-stats:` line to stderr; the same line is
//! printed at exit. Tests use it to check that connections are freed.

mod sys;

use crate::app::{App, AppConfig, AppError};
use crate::iface::{Config, Stack};
use crate::phy::fault::{FaultInjector, FaultStats, ImpairSpec};
use crate::phy::pcap::PcapWriter;
use crate::phy::tun::{TunDevice, TunError};
use crate::phy::Device;
use crate::tcp::{CongestionAlgorithm, State};
use crate::time::{min_deadline, Duration, Instant};
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
pub use sys::Signal;
use sys::SignalFd;

/// Packets read from the device per loop turn at most.
pub const RX_BATCH: usize = 256;

/// After this long without a packet, memory kept only for reuse is given
/// back ([`IdleTrim`]).
pub const IDLE_TRIM: Duration = Duration::from_secs(2);

/// Everything `ustack serve` needs to run.
#[derive(Clone, Debug)]
pub struct Options {
    /// TUN device name.
    pub tun: String,
    /// The stack's IPv4 address.
    pub addr: Ipv4Addr,
    /// Capture file (pcap, LINKTYPE_RAW).
    pub pcap: Option<PathBuf>,
    /// Seed of all randomness.
    pub seed: u64,
    /// Network impairment.
    pub impair: ImpairSpec,
    /// MTU override (default: the TUN device's MTU).
    pub mtu: Option<usize>,
    /// Simultaneous TCP connections.
    pub max_connections: usize,
    /// Congestion controller.
    pub cc: CongestionAlgorithm,
    /// The services.
    pub app: AppConfig,
    /// How long a graceful stop may take before the rest is aborted.
    pub grace: Duration,
    /// Resource limits (`--max-half-open`, `--tcp-max-retries`, ...).
    pub limits: crate::iface::Limits,
    /// Use TUN offloads (virtio-net header, checksum + TSO4). Switched off
    /// automatically with `--impair` (impairments act on real wire-sized
    /// segments) and with `--mtu` (the kernel segments at the device MTU).
    pub offload: bool,
    /// Connection event log, JSON lines (see [`crate::trace`]).
    pub trace: Option<PathBuf>,
    /// After a turn that moved packets, poll the device without sleeping
    /// for this long (`--busy-poll`; zero: always sleep).
    pub busy_poll: Duration,
}

impl Options {
    pub fn new(tun: &str, addr: Ipv4Addr, seed: u64) -> Options {
        Options {
            tun: tun.to_string(),
            addr,
            pcap: None,
            seed,
            impair: ImpairSpec::default(),
            mtu: None,
            max_connections: 200_000,
            cc: CongestionAlgorithm::default(),
            app: AppConfig::default(),
            grace: Duration::from_secs(2),
            limits: crate::iface::Limits::default(),
            offload: true,
            trace: None,
            busy_poll: Duration::ZERO,
        }
    }
}

/// Why the runtime could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Tun(#[from] TunError),
    #[error("cannot create pcap file {path}: {source}")]
    Pcap {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write trace file {path}: {source}")]
    Trace {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("--mtu {0}: must be between 576 and the TUN device's MTU {1}")]
    BadMtu(usize, usize),
    #[error(transparent)]
    App(#[from] AppError),
    #[error("{op}: {source}")]
    Io {
        op: &'static str,
        source: std::io::Error,
    },
}

/// The monotonic clock, as `Instant`s since the runtime started.
struct Clock {
    start: std::time::Instant,
}

impl Clock {
    fn now(&self) -> Instant {
        Instant::from_micros(self.start.elapsed().as_micros() as u64)
    }
}

/// The device stack the runtime drives (see "Device order").
type Link = FaultInjector<Box<dyn Device>>;

/// Open the TUN device and wrap it; also returns the TUN fd to poll on
/// (valid as long as the returned device lives).
fn open_link(
    opts: &Options,
    wall_base: Duration,
) -> Result<(Link, std::os::fd::RawFd), RuntimeError> {
    let tso = opts.offload && opts.impair == ImpairSpec::default() && opts.mtu.is_none();
    let tun = TunDevice::open_with(&opts.tun, crate::phy::tun::Offload { tso })?;
    let fd = tun.as_raw_fd();
    let dev: Box<dyn Device> = match &opts.pcap {
        Some(path) => Box::new(PcapWriter::create(tun, path, wall_base).map_err(|source| {
            RuntimeError::Pcap {
                path: path.clone(),
                source,
            }
        })?),
        None => Box::new(tun),
    };
    Ok((FaultInjector::new(dev, opts.impair, opts.seed), fd))
}

/// One line of counters, `key=value` separated by spaces (for logs and tests).
pub fn stats_line(stack: &Stack, app: &App, fault: &FaultStats) -> String {
    let (mut conns, mut established, mut time_wait) = (0, 0, 0);
    for st in stack.connection_states() {
        conns += 1;
        established += (st == State::Established) as usize;
        time_wait += (st == State::TimeWait) as usize;
    }
    let s = stack.stats();
    let mut line = format!(
        "ustack-stats: connections={} established={} time_wait={} app_handles={} packets_in={} packets_out={} \
         bytes_in={} bytes_out={} accepted={} closed={} reset={} rsts_received={} rsts_sent={} retransmissions={} \
         drops={} fault_in_lost={} fault_out_lost={} buffer_memory={} timer_entries={}",
        conns,
        established,
        time_wait,
        app.connections(),
        s.packets_in,
        s.packets_out,
        s.bytes_in,
        s.bytes_out,
        s.tcp_connections_accepted,
        s.tcp_connections_closed,
        s.tcp_connections_reset,
        s.tcp_rsts_received,
        s.tcp_rsts_sent,
        s.tcp_retransmissions,
        s.total_drops(),
        fault.inbound.lost,
        fault.outbound.lost,
        stack.buffer_memory(),
        stack.timer_entries() + app.timer_entries(),
    );
    if let Some((used, free)) = sys::heap_usage() {
        line.push_str(&format!(" heap_in_use={used} heap_free={free}"));
    }
    for (reason, n) in s.drop_table() {
        line.push_str(&format!(" drop_{}={}", reason.label(), n));
    }
    line
}

/// Milliseconds to sleep until `deadline`, rounded up (so we never wake
/// before it and spin); -1 = no deadline.
fn timeout_ms(now: Instant, deadline: Option<Instant>) -> i32 {
    match deadline {
        None => -1,
        Some(d) if d <= now => 0,
        Some(d) => {
            let us = (d - now).as_micros();
            us.div_ceil(1000).min(i32::MAX as u128) as i32
        }
    }
}

/// Run `ustack serve` until SIGINT/SIGTERM.
pub fn run(opts: Options) -> Result<(), RuntimeError> {
    let clock = Clock {
        start: std::time::Instant::now(),
    };
    let wall_base = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();

    let mut signals = SignalFd::new().map_err(|source| RuntimeError::Io {
        op: "signalfd",
        source,
    })?;
    let (mut dev, tun_fd) = open_link(&opts, wall_base)?;

    let caps = dev.caps();
    let mtu = match opts.mtu {
        Some(m) if !(576..=caps.mtu).contains(&m) => return Err(RuntimeError::BadMtu(m, caps.mtu)),
        Some(m) => m,
        None => caps.mtu,
    };
    let mut config = Config::new(opts.addr);
    config.mtu = mtu;
    config.max_tso_size = caps.max_tso_size;
    config.tx_checksum_offload = caps.tx_checksum_offload;
    config.max_connections = opts.max_connections;
    config.tcp.congestion = opts.cc;
    opts.limits.apply(&mut config);
    let mut stack = Stack::new(config, opts.seed);
    // The dashboard shows recent state transitions (a small ring, cheap).
    stack.set_transition_history(true);
    let mut trace = match &opts.trace {
        Some(path) => {
            stack.set_tracing(true);
            Some(TraceWriter::create(path, &opts, wall_base)?)
        }
        None => None,
    };
    let mut app = App::build(&opts.app, &mut stack)?;

    let services = app.service_names();
    let mut svc = Vec::new();
    if opts.app.echo_port != 0 {
        svc.push(format!("echo :{}", opts.app.echo_port));
    }
    if opts.app.http_port != 0 {
        svc.push(format!("http :{}", opts.app.http_port));
    }
    println!(
        "ustack {} listening on {} via {} (mtu {}): {} — seed {} (repeat with --seed {})",
        env!("CARGO_PKG_VERSION"),
        opts.addr,
        opts.tun,
        mtu,
        if svc.is_empty() {
            "no services".to_string()
        } else {
            svc.join(", ")
        },
        opts.seed,
        opts.seed
    );
    log::info!("services running: {services:?}");
    if opts.impair != ImpairSpec::default() {
        println!("impairment: {}", opts.impair);
    }
    // Make the banner visible at once even when stdout is a pipe.
    use std::io::Write as _;
    let _ = std::io::stdout().flush();

    let mut rx = vec![0u8; 65536];
    let mut tx = vec![0u8; caps.max_tso_size.unwrap_or(0).max(mtu).max(65536)];
    let mut stop_deadline: Option<Instant> = None;
    let device_stats = opts.app.device_stats.clone();
    let impaired = opts.impair != ImpairSpec::default();
    let impair_text = opts.impair.to_string();
    if impaired {
        device_stats.borrow_mut().impairment = Some(impair_text.clone());
    }
    let mut next_device_stats = Instant::ZERO;
    let mut idle = IdleTrim::default();
    // Checked once at start (a signal may be pending before the first poll).
    let mut signal_ready = true;
    // Busy polling (`--busy-poll`): spin instead of sleeping until then.
    let mut busy_until = Instant::ZERO;

    loop {
        let now = clock.now();
        // What the fault injector did, for /api/stats (twice a second).
        if impaired && now >= next_device_stats {
            let f = dev.stats();
            let mut d = device_stats.borrow_mut();
            d.counters.clear();
            for (dir, s) in [("in", &f.inbound), ("out", &f.outbound)] {
                for (k, v) in [
                    ("packets", s.packets),
                    ("lost", s.lost),
                    ("duplicated", s.duplicated),
                    ("corrupted", s.corrupted),
                    ("reordered", s.reordered),
                    ("delayed", s.delayed),
                    ("queue_drops", s.queue_drops),
                ] {
                    d.counters.push((format!("fault_{dir}_{k}"), v));
                }
            }
            next_device_stats = now + Duration::from_millis(500);
        }

        // 1. Input. Always ask the device: a non-blocking read that finds
        //    nothing costs one syscall, and a fault injector may have held
        //    packets due now.
        let mut received = 0;
        while received < RX_BATCH {
            match dev.recv_meta(now, &mut rx) {
                Ok(Some((n, meta))) => {
                    stack.handle_packet_with(now, &rx[..n], meta);
                    received += 1;
                }
                Ok(None) => break,
                Err(e) => {
                    // A TUN read fails only when the device is gone
                    // (deleted: EBADFD) or broken; polling on would spin.
                    let _ = dev.flush();
                    eprintln!("{}", stats_line(&stack, &app, &dev.stats()));
                    return Err(RuntimeError::Io {
                        op: "reading from the TUN device (was it deleted?)",
                        source: e,
                    });
                }
            }
        }
        if received > 0 {
            idle.activity(now);
            busy_until = now + opts.busy_poll;
        }
        // 2. Timers.
        if stack.poll_at().is_some_and(|t| t <= now) {
            stack.handle_timeout(now);
        }
        // 3. Applications.
        app.poll(now, &mut stack);
        // 4. Output.
        transmit(now, &mut stack, &mut dev, &mut tx);
        if let Some(t) = trace.as_mut() {
            t.write(now, &mut stack)?;
        }

        // 5. Signals (only when poll said the signalfd is readable: one
        //    system call less per turn).
        while signal_ready {
            match signals.read() {
                Ok(Some(Signal::Stats)) => eprintln!("{}", stats_line(&stack, &app, &dev.stats())),
                Ok(Some(Signal::Stop)) if stop_deadline.is_none() => {
                    log::info!(
                        "stopping: closing {} connections (grace {:?})",
                        app.connections(),
                        opts.grace
                    );
                    app.shutdown(now, &mut stack);
                    transmit(now, &mut stack, &mut dev, &mut tx);
                    stop_deadline = Some(now + opts.grace);
                }
                Ok(Some(Signal::Stop)) => {
                    log::info!("second stop signal: aborting now");
                    stop_deadline = Some(now);
                }
                Ok(None) => signal_ready = false,
                Err(e) => {
                    return Err(RuntimeError::Io {
                        op: "read signalfd",
                        source: e,
                    })
                }
            }
        }
        if let Some(deadline) = stop_deadline {
            let all_closed = app.connections() == 0
                && stack
                    .connections()
                    .iter()
                    .all(|c| matches!(c.state, State::TimeWait | State::Closed));
            if all_closed || now >= deadline {
                if !all_closed {
                    log::info!(
                        "grace period over: aborting {} connections",
                        app.connections()
                    );
                }
                app.abort_all(&mut stack);
                transmit(now, &mut stack, &mut dev, &mut tx);
                if let Some(t) = trace.as_mut() {
                    t.write(now, &mut stack)?;
                    t.flush()?;
                }
                if let Err(e) = dev.flush() {
                    log::error!("flushing the capture: {e}");
                }
                eprintln!("{}", stats_line(&stack, &app, &dev.stats()));
                return Ok(());
            }
        }

        // Idle for a while: give memory kept for reuse back.
        if idle.due(now, stack.connection_count()) {
            trim_memory(&mut stack, &mut app, &mut dev);
            idle.trimmed(stack.connection_count());
        }

        // 6. Sleep until input or the next deadline.
        let deadline = [stack.poll_at(), app.poll_at(), dev.poll_at(), stop_deadline]
            .into_iter()
            .chain([idle.poll_at()])
            .fold(None, min_deadline);
        let spinning = clock.now() < busy_until;
        if spinning && received > 0 && received < RX_BATCH {
            // Busy polling: straight back to reading (signals are looked at
            // once the spin ends, at most `busy_poll` later).
            continue;
        }
        let timeout = if received == RX_BATCH || spinning {
            0
        } else {
            timeout_ms(clock.now(), deadline)
        };
        let [_, sig] = sys::poll_readable([tun_fd, signals.as_raw_fd()], timeout)
            .map_err(|source| RuntimeError::Io { op: "poll", source })?;
        // The TUN fd is read on every turn anyway (non-blocking).
        signal_ready = sig;
    }
}

/// When to give memory back: once [`IDLE_TRIM`] has passed without a
/// packet, and again in the same quiet period whenever the number of
/// connections has halved since (TIME-WAIT and idle connections end one by
/// one after the load stops), so a long quiet period costs a few trims, not
/// one per connection.
#[derive(Debug, Default)]
struct IdleTrim {
    last_activity: Instant,
    /// Connections at the last trim in this quiet period (None: not yet).
    trimmed_at: Option<usize>,
}

impl IdleTrim {
    fn activity(&mut self, now: Instant) {
        self.last_activity = now;
        self.trimmed_at = None;
    }

    fn due(&self, now: Instant, connections: usize) -> bool {
        now >= self.last_activity + IDLE_TRIM
            && self
                .trimmed_at
                .is_none_or(|n| connections < n && connections <= n / 2)
    }

    fn trimmed(&mut self, connections: usize) {
        self.trimmed_at = Some(connections);
    }

    /// The first trim of a quiet period needs a wake-up (later ones follow
    /// timer wake-ups, which is when connections end).
    fn poll_at(&self) -> Option<Instant> {
        self.trimmed_at
            .is_none()
            .then_some(self.last_activity + IDLE_TRIM)
    }
}

/// Give memory back to the system: the stack's and the services' tables
/// shrink, the fault injector drops its spare packet buffers, then the
/// allocator returns free pages (`malloc_trim`).
fn trim_memory(stack: &mut Stack, app: &mut App, dev: &mut Link) {
    let tables = stack.trim_memory() + app.trim_memory() + dev.trim_memory();
    sys::malloc_trim();
    log::debug!("idle: trimmed {tables} bytes of tables, malloc_trim");
}

/// Writes the stack's trace events to the `--trace` file, one JSON object
/// per line, flushing at most every 200 ms (and at exit).
struct TraceWriter {
    path: PathBuf,
    out: std::io::BufWriter<std::fs::File>,
    events: Vec<crate::trace::TraceEvent>,
    line: String,
    next_flush: Instant,
}

impl TraceWriter {
    fn create(
        path: &std::path::Path,
        opts: &Options,
        wall_base: Duration,
    ) -> Result<TraceWriter, RuntimeError> {
        use std::io::Write as _;
        let err = |source| RuntimeError::Trace {
            path: path.to_path_buf(),
            source,
        };
        let f = std::fs::File::create(path).map_err(err)?;
        let mut out = std::io::BufWriter::with_capacity(1 << 16, f);
        let header = crate::trace::header_line(opts.addr, opts.seed, wall_base.as_micros() as u64);
        writeln!(out, "{header}").map_err(err)?;
        Ok(TraceWriter {
            path: path.to_path_buf(),
            out,
            events: Vec::new(),
            line: String::new(),
            next_flush: Instant::ZERO,
        })
    }

    fn write(&mut self, now: Instant, stack: &mut Stack) -> Result<(), RuntimeError> {
        use std::io::Write as _;
        stack.drain_trace(&mut self.events);
        if self.events.is_empty() {
            return Ok(());
        }
        for ev in self.events.drain(..) {
            self.line.clear();
            ev.write_json(&mut self.line);
            self.line.push('\n');
            self.out
                .write_all(self.line.as_bytes())
                .map_err(|source| RuntimeError::Trace {
                    path: self.path.clone(),
                    source,
                })?;
        }
        if now >= self.next_flush {
            self.flush()?;
            self.next_flush = now + Duration::from_millis(200);
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), RuntimeError> {
        use std::io::Write as _;
        self.out.flush().map_err(|source| RuntimeError::Trace {
            path: self.path.clone(),
            source,
        })
    }
}

/// Send everything the stack has to send: headers from `buf`, payload
/// straight from the connections' send buffers (one `writev` each).
fn transmit(now: Instant, stack: &mut Stack, dev: &mut Link, buf: &mut [u8]) {
    while let Some((n, [a, b])) = stack.poll_transmit_parts(now, buf) {
        let n = n.min(buf.len());
        if let Err(e) = dev.send_parts(now, &[&buf[..n], a, b]) {
            log::warn!("device send ({} bytes): {e}", n + a.len() + b.len());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_rounds_up_and_never_spins() {
        let now = Instant::from_micros(1000);
        assert_eq!(timeout_ms(now, None), -1);
        assert_eq!(timeout_ms(now, Some(Instant::from_micros(500))), 0);
        assert_eq!(timeout_ms(now, Some(now)), 0);
        assert_eq!(timeout_ms(now, Some(Instant::from_micros(1001))), 1);
        assert_eq!(timeout_ms(now, Some(Instant::from_micros(2000))), 1);
        assert_eq!(timeout_ms(now, Some(Instant::from_micros(2001))), 2);
        assert_eq!(
            timeout_ms(now, Some(Instant::from_secs(1u64 << 40))),
            i32::MAX
        );
    }

    #[test]
    fn stats_line_format() {
        let mut stack = Stack::new(Config::new(Ipv4Addr::new(10, 0, 0, 2)), 1);
        let app = App::build(&AppConfig::default(), &mut stack).unwrap();
        let line = stats_line(&stack, &app, &FaultStats::default());
        assert!(
            line.starts_with("ustack-stats: connections=0 established=0 "),
            "{line}"
        );
        assert!(line.contains(" rsts_received=0 "), "{line}");
    }
}
