//! smoltcp 0.14 serving the benchmark's HTTP routes on a TUN device: the
//! comparison point of `scripts/bench.sh`.
//!
//! ```text
//! sudo ip netns exec NS target/release/examples/smoltcp_server \
//!     --tun tun1 --addr 10.0.1.2/24 [--port 80] [--pool 64] [--buf 1048576] [--cc reno|cubic|none]
//! ```
//!
//! It uses smoltcp as shipped: its own `TunTapInterface` device (one packet
//! per read/write), `Interface::poll` and `phy::wait` on the poll delay, the
//! pattern of smoltcp's `examples/server.rs`. Connections come from a pool of
//! `--pool` TCP sockets listening on the same port (smoltcp has no accept
//! queue: each socket takes one connection and is re-armed with `listen`
//! once it is CLOSED or in TIME-WAIT, which smoltcp allows). Each socket has
//! `--buf` bytes of receive and send buffer (default 1 MiB, like ustack's
//! large-buffer setting, for a fair fight); the memory is only touched as
//! it is used.
//!
//! Port 81 is a WebSocket echo server (tungstenite over an in-memory pipe
//! fed from the smoltcp socket) for the round-trip-time workload; ustack
//! serves the same as `/ws/echo` on port 80.
//!
//! The HTTP logic (`GET /bytes/N`, `POST /sha256`, keep-alive, HTTP/1.0
//! close) is shared with the kernel server (`examples/bench_common/http.rs`)
//! and is written zero-copy into/out of smoltcp's socket buffers.

#[path = "bench_common/http.rs"]
mod http;

use smoltcp::iface::{Config, Interface, PollResult, SocketHandle, SocketSet};
use smoltcp::phy::{wait as phy_wait, Medium, TunTapInterface};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr, Ipv4Address};
use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};

struct Args {
    tun: String,
    addr: Ipv4Address,
    prefix: u8,
    port: u16,
    pool: usize,
    buf: usize,
    cc: tcp::CongestionControl,
}

fn usage() -> ! {
    eprintln!(
        "usage: smoltcp_server --tun NAME --addr A.B.C.D/LEN [--port 80] [--pool 64] [--buf 1048576] [--cc reno|cubic|none]"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut a = Args {
        tun: "tun0".into(),
        addr: Ipv4Address::new(10, 0, 0, 2),
        prefix: 24,
        port: 80,
        pool: 64,
        buf: 1 << 20,
        cc: tcp::CongestionControl::Reno,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().unwrap_or_else(|| usage());
        match k.as_str() {
            "--tun" => a.tun = v(),
            "--addr" => {
                let s = v();
                let (ip, len) = s.split_once('/').unwrap_or((&s, "24"));
                a.addr = ip.parse().unwrap_or_else(|_| usage());
                a.prefix = len.parse().unwrap_or_else(|_| usage());
            }
            "--port" => a.port = v().parse().unwrap_or_else(|_| usage()),
            "--pool" => a.pool = v().parse().unwrap_or_else(|_| usage()),
            "--buf" => a.buf = v().parse().unwrap_or_else(|_| usage()),
            "--cc" => {
                a.cc = match v().as_str() {
                    "reno" => tcp::CongestionControl::Reno,
                    "cubic" => tcp::CongestionControl::Cubic,
                    "none" => tcp::CongestionControl::None,
                    _ => usage(),
                }
            }
            _ => usage(),
        }
    }
    a
}

/// What the application does with one pooled socket.
enum Slot {
    /// Listening (or handshaking): no HTTP state yet.
    Idle,
    /// Serving requests.
    Active(Box<http::HttpConn>),
    /// A WebSocket echo connection (port 81).
    Ws(Box<WsConn>),
    /// We called `close`; waiting for CLOSED/TIME-WAIT to re-arm.
    Closing,
}

/// Port of the WebSocket echo pool.
const WS_PORT: u16 = 81;

/// Bytes between a smoltcp socket and tungstenite.
#[derive(Default)]
struct Bufs {
    input: Vec<u8>,
    output: Vec<u8>,
}

/// tungstenite's stream: reads what the socket received, `WouldBlock` when
/// there is nothing; writes are collected for the socket.
#[derive(Clone, Default)]
struct Pipe(Rc<RefCell<Bufs>>);

impl Read for Pipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut b = self.0.borrow_mut();
        if b.input.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(b.input.len());
        buf[..n].copy_from_slice(&b.input[..n]);
        b.input.drain(..n);
        Ok(n)
    }
}

impl Write for Pipe {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.borrow_mut().output.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

type WsHandshake = tungstenite::handshake::MidHandshake<
    tungstenite::handshake::server::ServerHandshake<
        Pipe,
        tungstenite::handshake::server::NoCallback,
    >,
>;

/// A WebSocket echo connection.
enum Ws {
    Start,
    Handshake(Box<WsHandshake>),
    Open(Box<tungstenite::WebSocket<Pipe>>),
    Failed,
}

struct WsConn {
    pipe: Pipe,
    ws: Ws,
}

impl WsConn {
    /// Run tungstenite on whatever input arrived; echo data messages.
    fn drive(&mut self) {
        loop {
            self.ws = match std::mem::replace(&mut self.ws, Ws::Failed) {
                Ws::Start => match tungstenite::accept(self.pipe.clone()) {
                    Ok(ws) => Ws::Open(Box::new(ws)),
                    Err(tungstenite::HandshakeError::Interrupted(m)) => {
                        self.ws = Ws::Handshake(Box::new(m));
                        return;
                    }
                    Err(_) => Ws::Failed,
                },
                Ws::Handshake(m) => match (*m).handshake() {
                    Ok(ws) => Ws::Open(Box::new(ws)),
                    Err(tungstenite::HandshakeError::Interrupted(m)) => {
                        self.ws = Ws::Handshake(Box::new(m));
                        return;
                    }
                    Err(_) => Ws::Failed,
                },
                Ws::Open(mut ws) => {
                    loop {
                        match ws.read() {
                            Ok(m) if m.is_binary() || m.is_text() => {
                                if ws.send(m).is_err() {
                                    self.ws = Ws::Failed;
                                    return;
                                }
                            }
                            Ok(_) => {}
                            Err(tungstenite::Error::Io(e))
                                if e.kind() == io::ErrorKind::WouldBlock =>
                            {
                                let _ = ws.flush();
                                break;
                            }
                            Err(_) => {
                                self.ws = Ws::Failed;
                                return;
                            }
                        }
                    }
                    self.ws = Ws::Open(ws);
                    return;
                }
                Ws::Failed => return,
            };
        }
    }
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

fn main() {
    let args = parse_args();
    // SIGINT/SIGTERM end the loop so the process exits cleanly (the bench
    // script reads its CPU time before stopping it, so this is only tidiness).
    // SAFETY: installing an async-signal-safe handler that stores an atomic.
    #[allow(unsafe_code)]
    unsafe {
        libc::signal(
            libc::SIGINT,
            on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
        );
        libc::signal(
            libc::SIGTERM,
            on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
        );
    }

    let mut device = TunTapInterface::new(&args.tun, Medium::Ip).unwrap_or_else(|e| {
        eprintln!("smoltcp_server: open TUN {}: {e}", args.tun);
        std::process::exit(1)
    });
    let fd = device.as_raw_fd();
    let mut config = Config::new(HardwareAddress::Ip);
    config.random_seed = 0x5eed;
    let mut iface = Interface::new(config, &mut device, Instant::now());
    iface.update_ip_addrs(|addrs| {
        let _ = addrs.push(IpCidr::new(IpAddress::Ipv4(args.addr), args.prefix));
    });

    let mut sockets = SocketSet::new(vec![]);
    let mut pool: Vec<(SocketHandle, Slot, u16)> = Vec::with_capacity(args.pool + 4);
    for i in 0..args.pool + 4 {
        let port = if i < args.pool { args.port } else { WS_PORT };
        let rx = tcp::SocketBuffer::new(vec![0u8; args.buf]);
        let tx = tcp::SocketBuffer::new(vec![0u8; args.buf]);
        let mut s = tcp::Socket::new(rx, tx);
        s.set_congestion_control(args.cc);
        s.set_nagle_enabled(false);
        s.listen(port).expect("listen");
        pool.push((sockets.add(s), Slot::Idle, port));
    }
    eprintln!(
        "smoltcp_server: {} on {} ({}/{}), port {}, {} sockets x {} B buffers, cc {:?}",
        std::process::id(),
        args.tun,
        args.addr,
        args.prefix,
        args.port,
        args.pool,
        args.buf,
        args.cc
    );

    while !STOP.load(Ordering::Relaxed) {
        let now = Instant::now();
        iface.poll(now, &mut device, &mut sockets);
        for (h, slot, port) in pool.iter_mut() {
            let s = sockets.get_mut::<tcp::Socket>(*h);
            if !s.is_open() {
                // CLOSED or TIME-WAIT: take the next connection.
                let _ = s.listen(*port);
                *slot = Slot::Idle;
                continue;
            }
            if matches!(slot, Slot::Idle) && s.may_send() {
                *slot = if *port == WS_PORT {
                    Slot::Ws(Box::new(WsConn {
                        pipe: Pipe::default(),
                        ws: Ws::Start,
                    }))
                } else {
                    Slot::Active(Box::default())
                };
            }
            if let Slot::Ws(w) = slot {
                while s.can_recv() {
                    let bufs = &w.pipe.0;
                    let n = s.recv(|b| {
                        bufs.borrow_mut().input.extend_from_slice(b);
                        (b.len(), b.len())
                    });
                    if !matches!(n, Ok(n) if n > 0) {
                        break;
                    }
                }
                w.drive();
                {
                    let mut b = w.pipe.0.borrow_mut();
                    while !b.output.is_empty() && s.can_send() {
                        match s.send_slice(&b.output) {
                            Ok(n) if n > 0 => {
                                b.output.drain(..n);
                            }
                            _ => break,
                        }
                    }
                }
                if matches!(w.ws, Ws::Failed) || !s.may_recv() {
                    s.close();
                    *slot = Slot::Closing;
                }
                continue;
            }
            let Slot::Active(c) = slot else { continue };
            loop {
                let mut progress = false;
                if c.wants_input() && s.can_recv() {
                    let n = s.recv(|b| {
                        let n = c.input(b);
                        (n, n)
                    });
                    progress |= matches!(n, Ok(n) if n > 0);
                }
                if c.has_output() && s.can_send() {
                    let n = s.send(|b| {
                        let n = c.output(b);
                        (n, n)
                    });
                    progress |= matches!(n, Ok(n) if n > 0);
                }
                if !progress {
                    break;
                }
            }
            let peer_done = !s.may_recv() && !c.has_output() && (!c.wants_input() || !s.can_recv());
            if c.should_close() || peer_done {
                s.close();
                *slot = Slot::Closing;
            }
        }
        // Send what the application just queued before sleeping: egress
        // only. (`poll` would also take in packets that arrived meanwhile,
        // and the application would not see them before the next packet
        // woke it: with the last segment of an upload that was a stall until
        // some timer fired, ~60 s, seen in bench.sh's smoltcp uploads
        // before session 6.)
        let mut changed = false;
        while iface.poll_egress(Instant::now(), &mut device, &mut sockets)
            == PollResult::SocketStateChanged
        {
            changed = true;
        }
        if changed {
            continue;
        }
        let delay = iface.poll_delay(Instant::now(), &sockets);
        if let Err(e) = phy_wait(fd, delay) {
            if e.kind() != std::io::ErrorKind::Interrupted {
                eprintln!("smoltcp_server: wait: {e}");
                break;
            }
        }
    }
    eprintln!("smoltcp_server: stopped");
}
