//! A packetdrill-style harness: one ustack [`Stack`] and a scripted peer.
//!
//! A script injects segments at given (virtual) times and expects the
//! stack's replies, field by field:
//!
//! ```ignore
//! let mut s = Script::passive(cfg);                 // stack listens on :80
//! s.inject(0, seg("S").seq(0).win(65535).mss(1460));
//! s.expect_at(0, exp("S.").seq(0).ack(1).mss(1460));
//! s.inject(10, seg(".").seq(1).ack(1));
//! s.expect_none_until(1000);
//! ```
//!
//! Sequence numbers are **relative**, as in packetdrill: what the peer
//! sends is counted from the peer's ISS (`seq`), what the stack sends from
//! the stack's ISS (learned from its first SYN or SYN-ACK). `ack` works the
//! other way round. Times are milliseconds since the start.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddrV4};
use ustack::iface::{Config, Stack};
use ustack::tcp::{ListenerHandle, SocketHandle};
use ustack::time::{Duration, Instant};
use ustack::wire::{
    self, IpProtocol, Ipv4Packet, Ipv4Repr, SeqNumber, TcpFlags, TcpPacket, TcpRepr,
};

pub const STACK_ADDR: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
pub const PEER_ADDR: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 9);
pub const LOCAL_PORT: u16 = 80;
pub const PEER_PORT: u16 = 40000;

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;

/// "S." -> SYN|ACK; letters S F R P and '.' for ACK (tcpdump's notation).
pub fn flags(s: &str) -> u8 {
    s.chars().fold(0, |f, c| {
        f | match c {
            'S' => SYN,
            'F' => FIN,
            'R' => RST,
            'P' => PSH,
            '.' => ACK,
            _ => panic!("unknown flag {c:?} in {s:?}"),
        }
    })
}

/// A segment the peer sends.
#[derive(Clone, Debug)]
pub struct Seg {
    pub flags: u8,
    pub seq: u32,
    pub ack: Option<u32>,
    pub ack_abs: Option<u32>,
    pub win: u16,
    pub mss: Option<u16>,
    pub ws: Option<u8>,
    pub sackp: bool,
    pub sack: Vec<(u32, u32)>,
    pub ts: Option<(u32, u32)>,
    pub payload: Vec<u8>,
    pub src_port: u16,
    pub dst_port: Option<u16>,
}

pub fn seg(f: &str) -> Seg {
    Seg {
        flags: flags(f),
        seq: 0,
        ack: None,
        ack_abs: None,
        win: 65535,
        mss: None,
        ws: None,
        sackp: false,
        sack: Vec::new(),
        ts: None,
        payload: Vec::new(),
        src_port: PEER_PORT,
        dst_port: None,
    }
}

impl Seg {
    pub fn seq(mut self, v: u32) -> Self {
        self.seq = v;
        self
    }
    /// Acknowledge up to this many sequence numbers of the stack's (relative).
    pub fn ack(mut self, v: u32) -> Self {
        self.ack = Some(v);
        self
    }
    /// An absolute acknowledgment number (for segments to sockets that do not exist).
    pub fn ack_abs(mut self, v: u32) -> Self {
        self.ack_abs = Some(v);
        self
    }
    pub fn win(mut self, v: u16) -> Self {
        self.win = v;
        self
    }
    pub fn mss(mut self, v: u16) -> Self {
        self.mss = Some(v);
        self
    }
    pub fn ws(mut self, v: u8) -> Self {
        self.ws = Some(v);
        self
    }
    pub fn sackp(mut self) -> Self {
        self.sackp = true;
        self
    }
    /// SACK blocks, relative to the stack's ISS.
    pub fn sack(mut self, blocks: &[(u32, u32)]) -> Self {
        self.sack = blocks.to_vec();
        self
    }
    pub fn ts(mut self, val: u32, ecr: u32) -> Self {
        self.ts = Some((val, ecr));
        self
    }
    /// `n` bytes of payload (a recognizable pattern).
    pub fn len(mut self, n: usize) -> Self {
        self.payload = (0..n).map(|i| (self.seq as usize + i) as u8).collect();
        self
    }
    pub fn data(mut self, d: &[u8]) -> Self {
        self.payload = d.to_vec();
        self
    }
    pub fn dport(mut self, p: u16) -> Self {
        self.dst_port = Some(p);
        self
    }
    pub fn sport(mut self, p: u16) -> Self {
        self.src_port = p;
        self
    }
}

/// A segment the stack sent, parsed.
#[derive(Clone, Debug)]
pub struct Out {
    pub t: Instant,
    pub flags: u8,
    pub seq: u32,
    pub ack: u32,
    pub win: u16,
    pub mss: Option<u16>,
    pub ws: Option<u8>,
    pub sackp: bool,
    pub sack: Vec<(u32, u32)>,
    pub ts: Option<(u32, u32)>,
    pub payload: Vec<u8>,
    pub src_port: u16,
    pub dst_port: u16,
    pub pretty: String,
}

/// What a segment the stack sends must look like. Unset fields are not checked.
#[derive(Clone, Debug, Default)]
pub struct Exp {
    pub flags: u8,
    pub seq: Option<u32>,
    pub seq_abs: Option<u32>,
    pub ack: Option<u32>,
    pub ack_abs: Option<u32>,
    pub win: Option<u16>,
    pub len: Option<usize>,
    pub mss: Option<Option<u16>>,
    pub ws: Option<Option<u8>>,
    pub sackp: Option<bool>,
    pub sack: Option<Vec<(u32, u32)>>,
    pub ts_ecr: Option<u32>,
    pub has_ts: Option<bool>,
}

pub fn exp(f: &str) -> Exp {
    Exp {
        flags: flags(f),
        ..Default::default()
    }
}

impl Exp {
    pub fn seq(mut self, v: u32) -> Self {
        self.seq = Some(v);
        self
    }
    pub fn seq_abs(mut self, v: u32) -> Self {
        self.seq_abs = Some(v);
        self
    }
    pub fn ack(mut self, v: u32) -> Self {
        self.ack = Some(v);
        self
    }
    pub fn ack_abs(mut self, v: u32) -> Self {
        self.ack_abs = Some(v);
        self
    }
    pub fn win(mut self, v: u16) -> Self {
        self.win = Some(v);
        self
    }
    pub fn len(mut self, v: usize) -> Self {
        self.len = Some(v);
        self
    }
    pub fn mss(mut self, v: Option<u16>) -> Self {
        self.mss = Some(v);
        self
    }
    pub fn ws(mut self, v: Option<u8>) -> Self {
        self.ws = Some(v);
        self
    }
    pub fn sackp(mut self, v: bool) -> Self {
        self.sackp = Some(v);
        self
    }
    /// SACK blocks relative to the peer's ISS (empty: no SACK option).
    pub fn sack(mut self, v: &[(u32, u32)]) -> Self {
        self.sack = Some(v.to_vec());
        self
    }
    pub fn ts_ecr(mut self, v: u32) -> Self {
        self.ts_ecr = Some(v);
        self
    }
    pub fn has_ts(mut self, v: bool) -> Self {
        self.has_ts = Some(v);
        self
    }
}

/// The stack under test and the scripted peer.
pub struct Script {
    pub stack: Stack,
    pub now: Instant,
    pub peer_iss: u32,
    /// The stack's ISS, once seen.
    pub stack_iss: Option<u32>,
    pub out: VecDeque<Out>,
    pub listener: Option<ListenerHandle>,
    pub conn: Option<SocketHandle>,
    /// Non-TCP packets the stack sent (ICMP).
    pub other: Vec<Vec<u8>>,
    buf: Vec<u8>,
    pub log: Vec<String>,
}

pub fn ms(n: u64) -> Instant {
    Instant::from_millis(n)
}

/// Default config for scripts: plain RFC values, short MSL.
pub fn script_config() -> Config {
    let mut c = Config::new(STACK_ADDR);
    c.tcp.msl = Duration::from_secs(1);
    // The scripts' windows and scale factors are worked out for 256 KiB
    // buffers; pin them so a change of the defaults does not move them.
    c.tcp.recv_buffer = 256 * 1024;
    c.tcp.send_buffer = 256 * 1024;
    c
}

impl Script {
    pub fn new(config: Config) -> Script {
        Script {
            stack: Stack::new(config, 99),
            now: Instant::ZERO,
            peer_iss: 1_000_000,
            stack_iss: None,
            out: VecDeque::new(),
            listener: None,
            conn: None,
            other: Vec::new(),
            buf: vec![0; 70000],
            log: Vec::new(),
        }
    }

    /// A stack listening on port 80.
    pub fn passive(config: Config) -> Script {
        let mut s = Script::new(config);
        s.listener = Some(s.stack.listen(LOCAL_PORT, 16).unwrap());
        s
    }

    /// Run the passive handshake with the given SYN; returns the accepted
    /// handle. The SYN-ACK and final ACK are checked loosely.
    pub fn accept_with(&mut self, t: u64, syn: Seg) -> SocketHandle {
        self.inject(t, syn);
        self.expect_at(t, exp("S.").seq(0).ack(1));
        self.inject(t, seg(".").seq(1).ack(1));
        let h = self
            .stack
            .accept(self.listener.unwrap())
            .expect("accept after handshake");
        self.conn = Some(h);
        h
    }

    /// Passive handshake with timestamps: the SYN at `t_syn` carries TSval
    /// `tsval`, the ACK at `t_ack` carries `tsval + 1` and echoes the
    /// SYN-ACK's TSval. Returns the accepted handle.
    pub fn accept_with_timestamps(&mut self, t_syn: u64, t_ack: u64, tsval: u32) -> SocketHandle {
        self.inject(t_syn, seg("S").seq(0).mss(1460).ts(tsval, 0));
        let synack = self.expect_at(t_syn, exp("S.").ts_ecr(tsval));
        let ours = synack.ts.expect("SYN-ACK with timestamps").0;
        self.inject(t_ack, seg(".").seq(1).ack(1).ts(tsval + 1, ours));
        let h = self
            .stack
            .accept(self.listener.unwrap())
            .expect("accept after handshake");
        self.conn = Some(h);
        h
    }

    /// Passive open without options (MSS 1460, no scaling, no SACK, no timestamps).
    pub fn established(config: Config) -> Script {
        let mut s = Script::passive(config);
        s.accept_with(0, seg("S").seq(0).mss(1460));
        s
    }

    fn collect(&mut self) {
        let mut count = 0;
        while let Some(n) = self.stack.poll_transmit(self.now, &mut self.buf) {
            count += 1;
            if count > 10_000 {
                self.log.truncate(50);
                self.fail(format!("the stack sends without end at {:?}", self.now));
            }
            let bytes = self.buf[..n].to_vec();
            let Some(o) = parse_out(self.now, &bytes) else {
                self.log.push(format!(
                    "{:?} out {} (not TCP)",
                    self.now,
                    wire::PrettyPacket(&bytes)
                ));
                self.other.push(bytes);
                continue;
            };
            if o.flags & SYN != 0 && self.stack_iss.is_none() {
                self.stack_iss = Some(o.seq);
            }
            self.log.push(format!("{:?} out {}", self.now, o.pretty));
            self.out.push_back(o);
        }
    }

    /// Let virtual time run to `t` ms, firing timers on the way.
    pub fn run_to(&mut self, t: u64) {
        let target = ms(t);
        assert!(
            target >= self.now,
            "script goes back in time: {target:?} < {:?}",
            self.now
        );
        self.collect();
        while let Some(next) = self.stack.poll_at() {
            if next > target {
                break;
            }
            self.now = next.max(self.now);
            self.stack.handle_timeout(self.now);
            self.collect();
        }
        self.now = target;
        self.stack.handle_timeout(self.now);
        self.collect();
    }

    pub fn packet(&self, s: &Seg) -> Vec<u8> {
        let seq = self.peer_iss.wrapping_add(s.seq);
        let ack = match (s.ack_abs, s.ack) {
            (Some(a), _) => a,
            (None, Some(a)) => self
                .stack_iss
                .expect("stack ISS unknown: no SYN seen yet")
                .wrapping_add(a),
            (None, None) => 0,
        };
        let iss = self.stack_iss.unwrap_or(0);
        let mut sack = [None; 3];
        for (i, (l, r)) in s.sack.iter().take(3).enumerate() {
            sack[i] = Some((iss.wrapping_add(*l), iss.wrapping_add(*r)));
        }
        let tcp = TcpRepr {
            src_port: s.src_port,
            dst_port: s.dst_port.unwrap_or(LOCAL_PORT),
            flags: TcpFlags(s.flags),
            seq_number: SeqNumber(seq),
            ack_number: SeqNumber(ack),
            window_len: s.win,
            urgent_at: 0,
            max_seg_size: s.mss,
            window_scale: s.ws,
            sack_permitted: s.sackp,
            sack_ranges: sack,
            timestamp: s.ts,
            payload: &s.payload,
        };
        let ip = Ipv4Repr {
            src_addr: PEER_ADDR,
            dst_addr: STACK_ADDR,
            protocol: IpProtocol::Tcp,
            payload_len: 0,
            ttl: 64,
            ident: 1,
            dont_frag: true,
        };
        let mut buf = vec![0u8; 20 + tcp.buffer_len()];
        let n = wire::emit_ipv4_tcp(&mut buf, &ip, &tcp);
        buf.truncate(n);
        buf
    }

    /// At `t` ms, the peer sends `s`.
    pub fn inject(&mut self, t: u64, s: Seg) {
        self.run_to(t);
        let p = self.packet(&s);
        self.log
            .push(format!("{:?} in  {}", self.now, wire::PrettyPacket(&p)));
        self.stack.handle_packet(self.now, &p);
        self.collect();
    }

    /// At `t` ms, the peer's segments arrive together: all are processed
    /// before the stack may send anything (one event-loop turn draining the
    /// device).
    pub fn inject_batch(&mut self, t: u64, segs: Vec<Seg>) {
        self.run_to(t);
        for s in &segs {
            let p = self.packet(s);
            self.log
                .push(format!("{:?} in  {}", self.now, wire::PrettyPacket(&p)));
            self.stack.handle_packet(self.now, &p);
        }
        self.collect();
    }

    /// Inject raw bytes as a packet.
    pub fn inject_raw(&mut self, t: u64, p: &[u8]) {
        self.run_to(t);
        self.stack.handle_packet(self.now, p);
        self.collect();
    }

    fn fail(&self, msg: String) -> ! {
        panic!("{msg}\n--- script log ---\n{}", self.log.join("\n"));
    }

    /// The next segment the stack sends, whenever it comes (up to 10 min).
    pub fn next(&mut self) -> Out {
        if self.out.is_empty() {
            let limit = self.now + Duration::from_secs(600);
            let mut spins = 0;
            while self.out.is_empty() {
                match self.stack.poll_at() {
                    Some(next) if next <= limit => {
                        spins = if next <= self.now { spins + 1 } else { 0 };
                        if spins > 1000 {
                            self.fail(format!(
                                "stack timer stuck at {next:?} (now {:?})",
                                self.now
                            ));
                        }
                        self.now = next.max(self.now);
                        self.stack.handle_timeout(self.now);
                        self.collect();
                    }
                    _ => self.fail(format!(
                        "expected a segment, but the stack is silent after {:?}",
                        self.now
                    )),
                }
            }
        }
        self.out.pop_front().unwrap()
    }

    /// The next segment must match `e` (whenever it is sent).
    pub fn expect(&mut self, e: Exp) -> Out {
        let o = self.next();
        if let Err(why) = self.matches(&o, &e) {
            self.fail(format!("segment {} does not match {e:?}: {why}", o.pretty));
        }
        o
    }

    /// The next segment must match `e` and be sent exactly at `t` ms.
    pub fn expect_at(&mut self, t: u64, e: Exp) -> Out {
        let o = self.expect(e);
        if o.t != ms(t) {
            self.fail(format!(
                "segment {} sent at {:?}, expected at {t} ms",
                o.pretty, o.t
            ));
        }
        o
    }

    /// The next segment must match `e` and be sent no later than `t` ms.
    pub fn expect_by(&mut self, t: u64, e: Exp) -> Out {
        let o = self.expect(e);
        if o.t > ms(t) {
            self.fail(format!(
                "segment {} sent at {:?}, expected by {t} ms",
                o.pretty, o.t
            ));
        }
        o
    }

    /// Nothing is sent until `t` ms.
    pub fn expect_none_until(&mut self, t: u64) {
        if let Some(o) = self.out.front() {
            let o = o.pretty.clone();
            self.fail(format!("expected silence until {t} ms, but {o} is queued"));
        }
        let target = ms(t);
        self.collect();
        while let Some(next) = self.stack.poll_at() {
            if next > target {
                break;
            }
            self.now = next.max(self.now);
            self.stack.handle_timeout(self.now);
            self.collect();
            if let Some(o) = self.out.front() {
                let o = format!("{} at {:?}", o.pretty, o.t);
                self.fail(format!("expected silence until {t} ms, got {o}"));
            }
        }
        self.now = target.max(self.now);
    }

    fn matches(&self, o: &Out, e: &Exp) -> Result<(), String> {
        if o.flags & !PSH != e.flags & !PSH {
            return Err(format!("flags {:#x} != {:#x}", o.flags, e.flags));
        }
        let iss = self.stack_iss.unwrap_or(0);
        if let Some(s) = e.seq {
            let rel = o.seq.wrapping_sub(iss);
            if rel != s {
                return Err(format!("relative seq {rel} != {s}"));
            }
        }
        if let Some(s) = e.seq_abs {
            if o.seq != s {
                return Err(format!("seq {} != {s}", o.seq));
            }
        }
        if let Some(a) = e.ack {
            let rel = o.ack.wrapping_sub(self.peer_iss);
            if rel != a {
                return Err(format!("relative ack {rel} != {a}"));
            }
        }
        if let Some(a) = e.ack_abs {
            if o.ack != a {
                return Err(format!("ack {} != {a}", o.ack));
            }
        }
        if let Some(w) = e.win {
            if o.win != w {
                return Err(format!("window {} != {w}", o.win));
            }
        }
        if let Some(l) = e.len {
            if o.payload.len() != l {
                return Err(format!("length {} != {l}", o.payload.len()));
            }
        }
        if let Some(m) = e.mss {
            if o.mss != m {
                return Err(format!("mss {:?} != {m:?}", o.mss));
            }
        }
        if let Some(w) = e.ws {
            if o.ws != w {
                return Err(format!("wscale {:?} != {w:?}", o.ws));
            }
        }
        if let Some(p) = e.sackp {
            if o.sackp != p {
                return Err(format!("sackOK {} != {p}", o.sackp));
            }
        }
        if let Some(blocks) = &e.sack {
            let rel: Vec<(u32, u32)> = o
                .sack
                .iter()
                .map(|(l, r)| (l.wrapping_sub(self.peer_iss), r.wrapping_sub(self.peer_iss)))
                .collect();
            if &rel != blocks {
                return Err(format!("SACK {rel:?} != {blocks:?}"));
            }
        }
        if let Some(h) = e.has_ts {
            if o.ts.is_some() != h {
                return Err(format!("timestamp option present: {}", o.ts.is_some()));
            }
        }
        if let Some(ecr) = e.ts_ecr {
            match o.ts {
                Some((_, got)) if got == ecr => {}
                other => return Err(format!("TSecr {other:?} != {ecr}")),
            }
        }
        Ok(())
    }

    /// The socket the script works with.
    pub fn h(&self) -> SocketHandle {
        self.conn.expect("no connection yet")
    }

    /// Active open to the peer; the stack's SYN is the next segment.
    pub fn connect(&mut self) -> SocketHandle {
        let h = self
            .stack
            .connect(self.now, SocketAddrV4::new(PEER_ADDR, LOCAL_PORT))
            .unwrap();
        self.conn = Some(h);
        self.collect();
        h
    }
}

/// Parse a TCP packet the stack sent (`None` for other protocols).
pub fn parse_out(t: Instant, bytes: &[u8]) -> Option<Out> {
    let ip = Ipv4Packet::new_checked(bytes).expect("stack sent a bad IPv4 packet");
    assert!(ip.verify_checksum(), "stack sent a bad IPv4 checksum");
    if ip.protocol() != IpProtocol::Tcp {
        return None;
    }
    let tcp = TcpPacket::new_checked(ip.payload()).expect("stack sent a bad TCP header");
    let r = TcpRepr::parse(&tcp, ip.src_addr(), ip.dst_addr(), true)
        .expect("stack sent a bad TCP segment");
    Some(Out {
        t,
        flags: r.flags.0,
        seq: r.seq_number.0,
        ack: r.ack_number.0,
        win: r.window_len,
        mss: r.max_seg_size,
        ws: r.window_scale,
        sackp: r.sack_permitted,
        sack: r.sack_ranges.iter().flatten().copied().collect(),
        ts: r.timestamp,
        payload: r.payload.to_vec(),
        src_port: r.src_port,
        dst_port: r.dst_port,
        pretty: wire::PrettyPacket(bytes).to_string(),
    })
}
