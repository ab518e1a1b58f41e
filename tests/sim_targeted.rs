//! Targeted scenarios over the simulated network: each test sets up one
//! situation the TCP core must survive and checks the exact outcome.

mod common_sim;
use common_sim::*;
use std::net::SocketAddrV4;
use ustack::iface::DropReason;
use ustack::phy::sim::LinkConfig;
use ustack::tcp::{State, TcpError};
use ustack::time::{Duration, Instant};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn lossy(loss: f64) -> LinkConfig {
    LinkConfig {
        latency: ms(20),
        loss,
        ..Default::default()
    }
}

/// Establish a connection a -> b:80 and return (client, server) handles.
fn establish(w: &mut Pair) -> (ustack::tcp::SocketHandle, ustack::tcp::SocketHandle) {
    let l = w.b.listen(PORT, 16).unwrap();
    let c = w.a.connect(w.now, SocketAddrV4::new(B_ADDR, PORT)).unwrap();
    let mut s = None;
    let deadline = w.now + Duration::from_secs(30);
    assert!(w.run_until(deadline, |w| {
        if s.is_none() {
            s = w.b.accept(l);
        }
        s.is_some() && w.a.state(c) == Some(State::Established)
    }));
    (c, s.unwrap())
}

#[test]
fn small_transfer_completes_at_25_percent_loss() {
    for seed in 0..10 {
        let mut w = pair(lossy(0.25), seed);
        let mut t = Transfer::start(&mut w, payload(seed, 20_000), payload(seed + 100, 5_000));
        if let Err(e) = t.run(&mut w, Duration::from_secs(3600)) {
            panic!("seed {seed}: {e}");
        }
        assert!(
            w.a.stats().tcp_retransmissions + w.b.stats().tcp_retransmissions > 0,
            "seed {seed}"
        );
    }
}

#[test]
fn zero_window_is_probed_until_the_reader_resumes() {
    let mut cb = config(B_ADDR);
    cb.tcp.recv_buffer = 8 * 1024;
    let mut w = pair_with(
        config(A_ADDR),
        cb,
        LinkConfig::with_latency(ms(10)),
        LinkConfig::with_latency(ms(10)),
        7,
    );
    let (c, s) = establish(&mut w);
    let data = payload(1, 200_000);
    let mut sent = 0;
    // The reader does not read for 20 s: the window closes.
    let pause_end = w.now + Duration::from_secs(20);
    w.run_until(pause_end, |w| {
        if let Ok(n) = w.a.send(c, &data[sent..]) {
            sent += n;
        }
        false
    });
    assert_eq!(w.b.recv_queued(s), 8 * 1024, "receive buffer full");
    let info = w.a.info(c).unwrap();
    assert_eq!(info.send_window, 0, "peer advertises a zero window");
    assert_eq!(
        info.state,
        State::Established,
        "a closed window is not a dead peer"
    );
    let probes = w.a.stats().tcp_zero_window_probes;
    // Persist backoff: RTO 200ms-ish doubling to a 60 s cap; within 20 s a handful of probes.
    assert!(
        (3..=15).contains(&probes),
        "zero-window probes sent: {probes}"
    );
    // Now read everything.
    let mut got = Vec::new();
    let mut buf = vec![0u8; 4096];
    assert!(w.run_until(w.now + Duration::from_secs(600), |w| {
        if sent < data.len() {
            if let Ok(n) = w.a.send(c, &data[sent..]) {
                sent += n;
            }
        }
        while let Ok(n) = w.b.recv(s, &mut buf) {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        got.len() == data.len()
    }));
    assert!(got == data);
    assert_eq!(w.a.readiness(c).error, None);
}

#[test]
fn dead_link_aborts_with_timed_out_after_max_retries() {
    let mut ca = config(A_ADDR);
    ca.tcp.max_retries = 5;
    let mut w = pair_with(
        ca,
        config(B_ADDR),
        LinkConfig::with_latency(ms(10)),
        LinkConfig::with_latency(ms(10)),
        3,
    );
    let (c, _s) = establish(&mut w);
    w.ab.set_down(true);
    w.ba.set_down(true);
    let t0 = w.now;
    w.a.send(c, b"hello, is anybody there?").unwrap();
    let mut seen = None;
    assert!(w.run_until(t0 + Duration::from_secs(3600), |w| {
        let r = w.a.readiness(c);
        if r.closed {
            seen = Some((r.error, w.now));
        }
        r.closed
    }));
    let (err, at) = seen.unwrap();
    assert_eq!(err, Some(TcpError::TimedOut));
    let mut buf = [0u8; 10];
    assert_eq!(w.a.recv(c, &mut buf), Err(TcpError::TimedOut));
    assert_eq!(w.a.send(c, b"x"), Err(TcpError::TimedOut));
    // RTO 1 s initial (no sample beyond the handshake's ~20 ms, clamped to
    // >= 200 ms), doubling: 5 retries then abort. The total is the sum of 6
    // backed-off timeouts: between 0.2*63 s and 1*63 s.
    let took = at - t0;
    assert!(
        took >= Duration::from_millis(200 * 63) && took <= Duration::from_secs(63),
        "{took:?}"
    );
    assert_eq!(w.a.stats().tcp_connections_timed_out, 1);
    assert_eq!(w.a.stats().tcp_rto_timeouts, 5);
}

#[test]
fn simultaneous_open() {
    let mut w = pair(LinkConfig::with_latency(ms(30)), 11);
    let c =
        w.a.connect_from(w.now, 5000, SocketAddrV4::new(B_ADDR, 6000))
            .unwrap();
    let s =
        w.b.connect_from(w.now, 6000, SocketAddrV4::new(A_ADDR, 5000))
            .unwrap();
    let mut saw_syn_received = false;
    assert!(w.run_until(w.now + Duration::from_secs(10), |w| {
        saw_syn_received |= w.a.state(c) == Some(State::SynReceived);
        w.a.state(c) == Some(State::Established) && w.b.state(s) == Some(State::Established)
    }));
    assert!(
        saw_syn_received,
        "both sides pass through SYN-RECEIVED (RFC 9293 figure 8)"
    );
    // Data flows both ways.
    w.a.send(c, b"ping").unwrap();
    w.b.send(s, b"pong").unwrap();
    w.advance(Duration::from_secs(1));
    let mut buf = [0u8; 8];
    assert_eq!(w.b.recv(s, &mut buf), Ok(4));
    assert_eq!(&buf[..4], b"ping");
    assert_eq!(w.a.recv(c, &mut buf), Ok(4));
    assert_eq!(&buf[..4], b"pong");
}

#[test]
fn simultaneous_close_goes_through_closing() {
    let mut w = pair(LinkConfig::with_latency(ms(30)), 12);
    let (c, s) = establish(&mut w);
    w.a.shutdown(c).unwrap();
    w.b.shutdown(s).unwrap();
    let (mut a_closing, mut b_closing) = (false, false);
    assert!(w.run_until(w.now + Duration::from_secs(1), |w| {
        a_closing |= w.a.state(c) == Some(State::Closing);
        b_closing |= w.b.state(s) == Some(State::Closing);
        w.a.state(c) == Some(State::TimeWait) && w.b.state(s) == Some(State::TimeWait)
    }));
    assert!(
        a_closing && b_closing,
        "FIN-WAIT-1 -> CLOSING -> TIME-WAIT on both sides"
    );
    let mut buf = [0u8; 4];
    assert_eq!(w.a.recv(c, &mut buf), Ok(0));
    assert_eq!(w.b.recv(s, &mut buf), Ok(0));
    w.a.close(c);
    w.b.close(s);
    w.advance(Duration::from_secs(3));
    assert_eq!((w.a.connection_count(), w.b.connection_count()), (0, 0));
}

#[test]
fn half_close_lets_the_other_side_keep_sending() {
    let mut w = pair(lossy(0.02), 13);
    let (c, s) = establish(&mut w);
    w.a.send(c, b"request").unwrap();
    w.a.shutdown(c).unwrap();
    let reply = payload(5, 300_000);
    let mut sent = 0;
    let mut got = Vec::new();
    let mut server_eof = false;
    let mut buf = vec![0u8; 8192];
    assert!(w.run_until(w.now + Duration::from_secs(600), |w| {
        // The server reads the request and EOF, then answers.
        while !server_eof {
            match w.b.recv(s, &mut buf) {
                Ok(0) => server_eof = true,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        if server_eof && sent < reply.len() {
            if let Ok(n) = w.b.send(s, &reply[sent..]) {
                sent += n;
            }
            if sent == reply.len() {
                w.b.close(s);
            }
        }
        while let Ok(n) = w.a.recv(c, &mut buf) {
            if n == 0 {
                return true;
            }
            got.extend_from_slice(&buf[..n]);
        }
        false
    }));
    assert!(got == reply);
    assert_eq!(w.a.state(c), Some(State::TimeWait));
}

#[test]
fn abort_sends_rst_and_the_peer_sees_reset() {
    let mut w = pair(LinkConfig::with_latency(ms(5)), 14);
    let (c, s) = establish(&mut w);
    w.a.abort(c);
    w.advance(ms(100));
    let r = w.b.readiness(s);
    assert!(r.closed);
    assert_eq!(r.error, Some(TcpError::ConnectionReset));
    let mut buf = [0u8; 4];
    assert_eq!(w.b.recv(s, &mut buf), Err(TcpError::ConnectionReset));
    assert_eq!(w.a.stats().tcp_rsts_sent, 1);
    assert_eq!(w.b.stats().tcp_rsts_received, 1);
    assert_eq!(
        w.a.connection_count(),
        0,
        "aborted connection freed at once"
    );
    w.b.close(s);
    assert_eq!(w.b.connection_count(), 0);
}

#[test]
fn close_with_unread_data_resets() {
    let mut w = pair(LinkConfig::with_latency(ms(5)), 15);
    let (c, s) = establish(&mut w);
    w.a.send(c, b"unread").unwrap();
    w.advance(ms(100));
    assert_eq!(w.b.recv_queued(s), 6);
    w.b.close(s);
    w.advance(ms(100));
    assert_eq!(w.a.readiness(c).error, Some(TcpError::ConnectionReset));
}

#[test]
fn time_wait_lasts_two_msl() {
    let mut w = pair(LinkConfig::with_latency(ms(5)), 16);
    let (c, s) = establish(&mut w);
    w.a.close(c);
    let mut entered = None;
    w.run_until(w.now + Duration::from_secs(1), |w| {
        if entered.is_none() && w.a.connections().iter().any(|i| i.state == State::TimeWait) {
            entered = Some(w.now);
        }
        // The server closes as soon as it reads EOF.
        let mut b = [0u8; 4];
        if w.b.recv(s, &mut b) == Ok(0) {
            w.b.close(s);
        }
        false
    });
    let t = entered.expect("client reached TIME-WAIT");
    // msl = 1 s in the test config: TIME-WAIT lasts 2 s.
    w.run_to(t + ms(1990));
    assert_eq!(
        w.a.connection_count(),
        1,
        "still in TIME-WAIT just before 2*MSL"
    );
    w.run_to(t + ms(2010));
    assert_eq!(w.a.connection_count(), 0, "freed after 2*MSL");
    assert_eq!(w.b.connection_count(), 0);
}

#[test]
fn keepalive_probes_keep_an_idle_connection_and_detect_a_dead_one() {
    let mut w = pair(LinkConfig::with_latency(ms(5)), 17);
    let (c, _s) = establish(&mut w);
    let mut ca = w.a.config().tcp.clone();
    ca.keepalive_interval = Duration::from_secs(1);
    let _ = ca;
    w.a.set_keepalive(w.now, c, Some(Duration::from_secs(10)));
    w.advance(Duration::from_secs(100));
    let probes = w.a.stats().tcp_keepalive_probes;
    assert!(
        (9..=10).contains(&probes),
        "one probe per 10 s idle: {probes}"
    );
    assert_eq!(w.a.state(c), Some(State::Established));
    // The peer vanishes: after the idle time, keepalive_probes (9) unanswered
    // probes every keepalive_interval (75 s) abort the connection.
    w.ab.set_down(true);
    w.ba.set_down(true);
    let t0 = w.now;
    let mut at = None;
    w.run_until(t0 + Duration::from_secs(2000), |w| {
        if w.a.readiness(c).closed {
            at = Some(w.now);
            return true;
        }
        false
    });
    let at = at.expect("keepalive gave up");
    assert_eq!(w.a.readiness(c).error, Some(TcpError::TimedOut));
    let took = at - t0;
    assert!(
        took >= Duration::from_secs(9 * 75) && took <= Duration::from_secs(10 + 9 * 75 + 1),
        "{took:?}"
    );
}

#[test]
fn many_concurrent_connections() {
    let mut w = pair(lossy(0.02), 18);
    let l = w.b.listen(PORT, 512).unwrap();
    const N: usize = 200;
    let mut clients: Vec<Side> = (0..N)
        .map(|i| Side::new(payload(i as u64, 5_000 + i * 37)))
        .collect();
    let mut servers: Vec<Side> = Vec::new();
    for cl in clients.iter_mut() {
        cl.handle = Some(w.a.connect(w.now, SocketAddrV4::new(B_ADDR, PORT)).unwrap());
    }
    let ok = w.run_until(w.now + Duration::from_secs(600), |w| {
        while let Some(h) = w.b.accept(l) {
            let mut s = Side::new(Vec::new());
            s.handle = Some(h);
            s.echo = true;
            servers.push(s);
        }
        while w.a.poll_event().is_some() {}
        while w.b.poll_event().is_some() {}
        for cl in clients.iter_mut() {
            cl.pump(&mut w.a);
        }
        for s in servers.iter_mut() {
            s.pump(&mut w.b);
        }
        clients.iter().all(|c| c.closed)
            && w.a.connection_count() == 0
            && w.b.connection_count() == 0
    });
    for (i, c) in clients.iter().enumerate() {
        assert_eq!(c.error, None, "client {i}");
        if c.received != c.to_send {
            eprintln!(
                "t={:?} servers {} client {i}: {:?} sent {} shut {} eof {} closed {}; a={:?}",
                w.now,
                servers.len(),
                c.handle.map(|h| w.a.state(h)),
                c.sent,
                c.shut,
                c.eof,
                c.closed,
                w.a.stats()
            );
            if let Some(s) = servers.first() {
                eprintln!(
                    "server recv {} sent {} eof {} shut {}",
                    s.received.len(),
                    s.sent,
                    s.eof,
                    s.shut
                );
            }
        }
        assert!(
            c.received == c.to_send,
            "client {i}: echo differs ({} vs {})",
            c.received.len(),
            c.to_send.len()
        );
    }
    assert!(
        ok,
        "all closed and freed: a={} b={} clients closed {} servers closed {}",
        w.a.connection_count(),
        w.b.connection_count(),
        clients.iter().filter(|c| c.closed).count(),
        servers.iter().filter(|c| c.closed).count()
    );
    assert_eq!(servers.len(), N);
}

#[test]
fn sequence_numbers_wrap_around() {
    // Both ISNs just below 2^32: every counter wraps within the first kilobytes.
    for (seed, isn) in [
        (21u64, u32::MAX - 10),
        (22, u32::MAX - 3000),
        (23, u32::MAX),
    ] {
        let mut w = pair(lossy(0.05), seed);
        w.a.set_isn_for_test(Some(isn));
        w.b.set_isn_for_test(Some(isn.wrapping_sub(500)));
        let mut t = Transfer::start(&mut w, payload(seed, 400_000), payload(seed + 1, 300_000));
        if let Err(e) = t.run(&mut w, Duration::from_secs(3600)) {
            panic!("isn {isn:#x}: {e}");
        }
    }
}

#[test]
fn corrupted_packets_are_dropped_by_checksum_and_counted() {
    let link = LinkConfig {
        latency: ms(10),
        corrupt: 0.2,
        ..Default::default()
    };
    let mut w = pair(link, 24);
    let mut t = Transfer::start(&mut w, payload(1, 100_000), payload(2, 100_000));
    t.run(&mut w, Duration::from_secs(3600)).unwrap();
    let drops = |s: &ustack::iface::Stack| {
        s.stats().drops(DropReason::BadTcpChecksum) + s.stats().drops(DropReason::BadIpChecksum)
    };
    assert!(drops(&w.a) + drops(&w.b) > 10);
    let _ = Instant::ZERO;
}

#[test]
fn a_link_dying_at_any_moment_leaks_nothing() {
    // Cut the link at various moments (handshake, transfer, close); every
    // connection must end (TimedOut or a normal close) and, once the
    // applications release their handles, no state may be left behind.
    for (seed, cut_ms) in [
        (31u64, 5u64),
        (32, 25),
        (33, 200),
        (34, 900),
        (35, 1500),
        (36, 2500),
        (37, 4000),
    ] {
        let mut ca = config(A_ADDR);
        ca.tcp.max_retries = 6;
        ca.tcp.fin_wait2_timeout = Duration::from_secs(30);
        let mut cb = config(B_ADDR);
        cb.tcp.max_retries = 6;
        cb.tcp.fin_wait2_timeout = Duration::from_secs(30);
        let mut w = pair_with(ca, cb, lossy(0.0), lossy(0.0), seed);
        let mut t = Transfer::start(&mut w, payload(seed, 300_000), payload(seed + 1, 200_000));
        let cut = Instant::from_millis(cut_ms);
        w.run_until(cut, |w| {
            t.step(w);
            false
        });
        w.ab.set_down(true);
        w.ba.set_down(true);
        w.run_until(w.now + Duration::from_secs(4 * 3600), |w| {
            t.step(w);
            false
        });
        for (side, st) in [(&t.client, &mut w.a), (&t.server, &mut w.b)] {
            if let Some(h) = side.handle {
                st.close(h);
            }
        }
        w.advance(Duration::from_secs(3600));
        assert_eq!(
            (w.a.connection_count(), w.b.connection_count()),
            (0, 0),
            "seed {seed} cut at {cut_ms} ms: a={:?} b={:?}",
            w.a.connections()
                .iter()
                .map(|c| c.state)
                .collect::<Vec<_>>(),
            w.b.connections()
                .iter()
                .map(|c| c.state)
                .collect::<Vec<_>>()
        );
    }
}
