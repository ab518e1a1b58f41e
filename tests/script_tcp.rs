//! Packet scripts in the spirit of packetdrill: one ustack stack, a scripted
//! peer, and exact expectations on every segment the stack sends (flags,
//! relative seq/ack, window, options, timing). See `common_sim/script.rs`.

mod common_sim;
use common_sim::script::*;
use ustack::iface::DropReason;
use ustack::tcp::{State, TcpError};
use ustack::time::Duration;

fn cfg() -> ustack::iface::Config {
    script_config()
}

/// Config with RFC 6298's 1 s minimum RTO, so timings are round numbers.
fn cfg_rto1s() -> ustack::iface::Config {
    let mut c = script_config();
    c.tcp.rto_min = Duration::from_secs(1);
    c
}

// ------------------------------------------------------------- handshake

#[test]
fn passive_open_without_options() {
    let mut s = Script::passive(cfg());
    s.inject(0, seg("S").seq(0).mss(1460).win(65535));
    // No window scale, SACK or timestamps unless the peer offered them.
    s.expect_at(
        0,
        exp("S.")
            .seq(0)
            .ack(1)
            .mss(Some(1460))
            .ws(None)
            .sackp(false)
            .has_ts(false)
            .win(65535),
    );
    s.inject(5, seg(".").seq(1).ack(1));
    let h = s.stack.accept(s.listener.unwrap()).expect("accepted");
    assert_eq!(s.stack.state(h), Some(State::Established));
    s.expect_none_until(5000);
}

#[test]
fn passive_open_with_all_options() {
    let mut s = Script::passive(cfg());
    s.inject(0, seg("S").seq(0).mss(1460).ws(7).sackp().ts(1000, 0));
    // 256 kB receive buffer -> shift 3; TSecr echoes the SYN's TSval.
    s.expect_at(
        0,
        exp("S.")
            .seq(0)
            .ack(1)
            .mss(Some(1460))
            .ws(Some(3))
            .sackp(true)
            .ts_ecr(1000),
    );
    s.inject(1, seg(".").seq(1).ack(1).ts(1001, 0));
    assert!(s.stack.accept(s.listener.unwrap()).is_some());
}

#[test]
fn active_open() {
    let mut s = Script::new(cfg());
    let h = s.connect();
    let syn = s.expect_at(
        0,
        exp("S")
            .seq(0)
            .mss(Some(1460))
            .ws(Some(3))
            .sackp(true)
            .has_ts(true),
    );
    assert_eq!(syn.dst_port, LOCAL_PORT);
    s.peer_iss = 5_000_000;
    let sport = syn.src_port;
    s.inject(
        30,
        seg("S.")
            .seq(0)
            .ack(1)
            .mss(1400)
            .sport(LOCAL_PORT)
            .dport(sport),
    );
    s.expect_at(30, exp(".").seq(1).ack(1).has_ts(false));
    assert_eq!(s.stack.state(h), Some(State::Established));
    assert_eq!(s.stack.info(h).unwrap().mss, 1400);
}

#[test]
fn syn_ack_with_bad_ack_in_syn_sent_gets_rst() {
    let mut s = Script::new(cfg());
    let h = s.connect();
    let syn = s.expect(exp("S").seq(0));
    // RFC 9293 3.10.7.3: an unacceptable ACK -> <SEQ=SEG.ACK><CTL=RST>.
    s.inject(
        10,
        seg("S.")
            .seq(0)
            .ack(1000)
            .sport(LOCAL_PORT)
            .dport(syn.src_port),
    );
    s.expect_at(10, exp("R").seq(1000));
    assert_eq!(s.stack.state(h), Some(State::SynSent));
}

#[test]
fn rst_in_syn_sent_refuses_the_connection() {
    let mut s = Script::new(cfg());
    let h = s.connect();
    let syn = s.expect(exp("S").seq(0));
    s.inject(
        10,
        seg("R.")
            .seq(0)
            .ack(1)
            .sport(LOCAL_PORT)
            .dport(syn.src_port),
    );
    assert_eq!(
        s.stack.readiness(h).error,
        Some(TcpError::ConnectionRefused)
    );
    s.expect_none_until(10_000);
}

#[test]
fn syn_retransmission_backs_off_and_gives_up() {
    let mut c = cfg();
    c.tcp.max_syn_retries = 3;
    let mut s = Script::new(c);
    let h = s.connect();
    // RFC 6298 2.1 / 5.5: 1 s, then doubling.
    s.expect_at(0, exp("S").seq(0));
    s.expect_at(1000, exp("S").seq(0));
    s.expect_at(3000, exp("S").seq(0));
    s.expect_at(7000, exp("S").seq(0));
    s.expect_none_until(14_999);
    s.run_to(15_000);
    assert_eq!(s.stack.readiness(h).error, Some(TcpError::TimedOut));
    assert!(
        s.out.is_empty(),
        "no RST for a connection that never synchronized"
    );
}

#[test]
fn syn_ack_retransmission_backs_off() {
    let mut s = Script::passive(cfg());
    s.inject(0, seg("S").seq(0).mss(1460));
    s.expect_at(0, exp("S.").seq(0).ack(1));
    s.expect_at(1000, exp("S.").seq(0).ack(1));
    s.expect_at(3000, exp("S.").seq(0).ack(1));
    s.expect_at(7000, exp("S.").seq(0).ack(1));
    // The handshake still completes late.
    s.inject(7100, seg(".").seq(1).ack(1));
    assert!(s.stack.accept(s.listener.unwrap()).is_some());
}

#[test]
fn retransmitted_syn_in_syn_received_gets_the_syn_ack_again() {
    let mut s = Script::passive(cfg());
    s.inject(0, seg("S").seq(0).mss(1460));
    s.expect_at(0, exp("S.").seq(0).ack(1));
    s.inject(300, seg("S").seq(0).mss(1460));
    s.expect_at(300, exp("S.").seq(0).ack(1));
    assert_eq!(s.stack.connection_count(), 1);
}

#[test]
fn retransmitted_syn_and_the_ack_in_one_batch_leave_a_working_connection() {
    // The peer's retransmitted SYN and its ACK of our SYN-ACK arrive in the
    // same turn (found by the soak test): the SYN rewinds SND.NXT to resend
    // the SYN-ACK, then the ACK acknowledges it before anything was sent.
    // SND.NXT must not stay behind SND.UNA, or the connection never sends.
    let mut s = Script::passive(cfg());
    s.inject(0, seg("S").seq(0).mss(1460));
    s.expect_at(0, exp("S.").seq(0).ack(1));
    s.inject_batch(200, vec![seg("S").seq(0).mss(1460), seg(".").seq(1).ack(1)]);
    let h = s.stack.accept(s.listener.unwrap()).expect("accepted");
    assert_eq!(s.stack.state(h), Some(State::Established));
    // Data flows both ways.
    s.stack.send(h, b"hello").unwrap();
    s.run_to(200);
    s.expect_at(200, exp("P.").seq(1).ack(1).len(5));
    s.inject(210, seg("P.").seq(1).ack(6).data(b"hi"));
    let mut buf = [0u8; 8];
    assert_eq!(s.stack.recv(h, &mut buf), Ok(2));
}

// ---------------------------------------------------------- closed ports

#[test]
fn syn_to_closed_port_gets_rst_ack() {
    let mut s = Script::new(cfg());
    s.inject(0, seg("S").seq(0).dport(81));
    // RFC 9293 3.10.7.1: no ACK -> <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>.
    s.expect_at(0, exp("R.").seq_abs(0).ack(1));
    assert_eq!(s.stack.stats().drops(DropReason::TcpNoListener), 1);
}

#[test]
fn data_without_ack_to_closed_port_acks_its_length() {
    let mut s = Script::new(cfg());
    s.inject(0, seg("P").seq(100).len(10).dport(81));
    s.expect_at(0, exp("R.").seq_abs(0).ack(110));
    s.inject(1, seg("F").seq(200).len(5).dport(81));
    s.expect_at(1, exp("R.").seq_abs(0).ack(206)); // FIN counts one
}

#[test]
fn ack_to_closed_port_gets_rst_with_its_ack_as_seq() {
    let mut s = Script::new(cfg());
    s.inject(0, seg(".").seq(5).ack_abs(777).len(3).dport(81));
    s.expect_at(0, exp("R").seq_abs(777));
}

#[test]
fn ack_to_listener_gets_rst() {
    let mut s = Script::passive(cfg());
    s.inject(0, seg(".").seq(1).ack_abs(4242));
    s.expect_at(0, exp("R").seq_abs(4242));
    assert_eq!(s.stack.connection_count(), 0);
}

#[test]
fn rst_to_closed_port_is_never_answered() {
    let mut s = Script::passive(cfg());
    s.inject(0, seg("R").seq(1).dport(81));
    s.inject(1, seg("R.").seq(1).ack_abs(9).dport(80));
    s.expect_none_until(1000);
}

// ----------------------------------------------------------- acceptance

#[test]
fn out_of_window_data_is_acked_and_not_delivered() {
    let mut s = Script::established(cfg());
    let h = s.h();
    // Far beyond the 64 kB window.
    s.inject(10, seg(".").seq(1 + 300_000).ack(1).len(100));
    s.expect_at(10, exp(".").seq(1).ack(1));
    assert_eq!(s.stack.recv_queued(h), 0);
    assert_eq!(s.stack.stats().drops(DropReason::TcpOutOfWindow), 1);
}

#[test]
fn duplicate_data_is_reacked_at_once() {
    let mut s = Script::established(cfg());
    let h = s.h();
    s.inject(10, seg(".").seq(1).ack(1).len(100));
    s.expect_at(50, exp(".").seq(1).ack(101)); // delayed ACK (40 ms)
    s.inject(100, seg(".").seq(1).ack(1).len(100));
    s.expect_at(100, exp(".").seq(1).ack(101));
    assert_eq!(s.stack.recv_queued(h), 100, "delivered once");
}

// --------------------------------------------------------- RFC 5961

#[test]
fn rst_exactly_at_rcv_nxt_resets() {
    let mut s = Script::established(cfg());
    let h = s.h();
    s.inject(10, seg("R").seq(1));
    assert_eq!(s.stack.readiness(h).error, Some(TcpError::ConnectionReset));
    s.expect_none_until(1000);
}

#[test]
fn rst_in_window_but_not_exact_gets_challenge_ack() {
    let mut s = Script::established(cfg());
    let h = s.h();
    s.inject(10, seg("R").seq(500));
    s.expect_at(10, exp(".").seq(1).ack(1));
    assert_eq!(s.stack.state(h), Some(State::Established));
    assert_eq!(s.stack.stats().tcp_challenge_acks, 1);
}

#[test]
fn rst_out_of_window_is_ignored() {
    let mut s = Script::established(cfg());
    let h = s.h();
    s.inject(10, seg("R").seq(1 + 1_000_000));
    s.expect_none_until(1000);
    assert_eq!(s.stack.state(h), Some(State::Established));
}

#[test]
fn syn_in_established_gets_challenge_ack() {
    let mut s = Script::established(cfg());
    let h = s.h();
    s.inject(10, seg("S").seq(77).mss(1460));
    s.expect_at(10, exp(".").seq(1).ack(1));
    assert_eq!(s.stack.state(h), Some(State::Established));
}

#[test]
fn challenge_acks_are_rate_limited() {
    let mut c = cfg();
    c.tcp.challenge_ack_limit = 3;
    let mut s = Script::established(c);
    for i in 0..10 {
        s.inject(100 + i, seg("R").seq(500 + i as u32));
    }
    for _ in 0..3 {
        s.expect_by(110, exp(".").seq(1).ack(1));
    }
    s.expect_none_until(1050);
    s.inject(1200, seg("R").seq(600));
    s.expect_at(1200, exp(".").seq(1).ack(1));
    assert_eq!(s.stack.stats().tcp_challenge_acks, 4);
}

#[test]
fn ack_of_unsent_data_is_acked_and_dropped() {
    let mut s = Script::established(cfg());
    s.inject(10, seg(".").seq(1).ack(5000).len(10));
    s.expect_at(10, exp(".").seq(1).ack(1));
    assert_eq!(s.stack.recv_queued(s.h()), 0);
}

// ------------------------------------------------------- retransmission

#[test]
fn data_retransmission_rto_doubles() {
    let mut s = Script::passive(cfg_rto1s());
    s.accept_with(0, seg("S").seq(0).mss(1460));
    let h = s.h();
    s.stack.send(h, b"hello").unwrap();
    s.run_to(0);
    s.expect_at(0, exp("P.").seq(1).ack(1).len(5));
    s.expect_at(1000, exp("P.").seq(1).ack(1).len(5));
    s.expect_at(3000, exp("P.").seq(1).ack(1).len(5));
    s.expect_at(7000, exp("P.").seq(1).ack(1).len(5));
    s.inject(7100, seg(".").seq(1).ack(6));
    s.expect_none_until(30_000);
}

#[test]
fn fin_is_retransmitted() {
    let mut s = Script::passive(cfg_rto1s());
    s.accept_with(0, seg("S").seq(0).mss(1460));
    let h = s.h();
    s.stack.shutdown(h).unwrap();
    s.run_to(0);
    s.expect_at(0, exp("F.").seq(1).ack(1));
    s.expect_at(1000, exp("F.").seq(1).ack(1));
    s.expect_at(3000, exp("F.").seq(1).ack(1));
    s.inject(3500, seg(".").seq(1).ack(2));
    assert_eq!(s.stack.state(h), Some(State::FinWait2));
    s.expect_none_until(20_000);
}

#[test]
fn fast_retransmit_after_three_dup_acks() {
    let mut s = Script::established(cfg());
    let h = s.h();
    s.stack.send(h, &vec![7u8; 1460 * 4]).unwrap();
    s.run_to(0);
    for i in 0..4 {
        s.expect_at(0, exp(".").seq(1 + 1460 * i).len(1460));
    }
    for t in 10..13 {
        s.inject(t, seg(".").seq(1).ack(1));
    }
    s.expect_at(12, exp(".").seq(1).len(1460));
    assert_eq!(s.stack.stats().tcp_fast_retransmissions, 1);
}

// ------------------------------------------------------ windows, probes

#[test]
fn zero_window_probes_back_off() {
    let mut s = Script::established(cfg_rto1s());
    let h = s.h();
    // The peer closes its window.
    s.inject(10, seg(".").seq(1).ack(1).win(0));
    s.stack.send(h, b"data for a closed window").unwrap();
    s.run_to(10);
    s.expect_none_until(999);
    // Probes carry one byte beyond the window; intervals double.
    let p1 = s.expect(exp(".").seq(1).len(1));
    let p2 = s.expect(exp(".").seq(1).len(1));
    let p3 = s.expect(exp(".").seq(1).len(1));
    let g1 = p2.t - p1.t;
    let g2 = p3.t - p2.t;
    assert!(
        g2 >= g1 * 2 - Duration::from_millis(1),
        "persist backoff: {g1:?} then {g2:?}"
    );
    // Window opens: the rest flows.
    let t = p3.t.total_millis() + 10;
    s.inject(t, seg(".").seq(1).ack(1).win(1000));
    let o = s.expect_at(t, exp("P.").seq(1));
    assert_eq!(o.payload.len(), 24);
    assert!(s.stack.stats().tcp_zero_window_probes >= 3);
    assert_eq!(s.stack.state(h), Some(State::Established));
}

/// The peer shrinks its window to zero with a flight outstanding (and
/// drops it); the retransmission timeout then hands over to the persist
/// timer. When the window opens again, the flight must be resent: the
/// retransmission timer runs again (found by fuzzing: before the fix no
/// timer ran and the connection hung forever).
#[test]
fn flight_is_resent_when_a_window_shrunk_to_zero_opens() {
    let mut s = Script::passive(cfg_rto1s());
    // With SACK (the scoreboard's pipe is what kept the flight from going).
    let h = s.accept_with(0, seg("S").seq(0).mss(1460).sackp());
    // A full initial window (10 segments, cwnd-limited: more is queued).
    s.stack.send(h, &vec![5u8; 1460 * 12]).unwrap();
    s.run_to(0);
    for i in 0..10 {
        s.expect_at(0, exp(".").seq(1 + 1460 * i).len(1460));
    }
    s.inject(10, seg(".").seq(1).ack(1).win(0));
    // A tail loss probe at 200 ms; the RTO (1 s later) finds a zero
    // window and hands over to the persist timer. The window opens before
    // the persist timer's first probe.
    s.expect_by(201, exp(".").seq(1 + 1460 * 9).len(1460));
    let t = 1500;
    s.run_to(t);
    s.inject(t, seg(".").seq(1).ack(1).win(65535));
    // The window is open and nothing was acknowledged: the flight goes
    // again, at the latest one (backed-off) RTO later.
    let o = s.next();
    assert_eq!(o.seq, s.stack_iss.unwrap().wrapping_add(1), "{}", o.pretty);
    assert!(o.payload.len() > 1 && o.t <= ms(t + 8000), "{}", o.pretty);
    s.inject(o.t.total_millis() + 10, seg(".").seq(1).ack(1 + 1460 * 12));
    assert_eq!(s.stack.state(h), Some(State::Established));
}

#[test]
fn peer_mss_536_is_respected() {
    let mut s = Script::passive(cfg());
    s.accept_with(0, seg("S").seq(0).mss(536));
    let h = s.h();
    s.stack.set_nodelay(h, true);
    s.stack.send(h, &vec![1u8; 5000]).unwrap();
    s.run_to(0);
    let mut total = 0;
    while total < 5000 {
        let o = s.next();
        assert!(
            o.payload.len() <= 536,
            "segment of {} bytes",
            o.payload.len()
        );
        total += o.payload.len();
        if o.payload.len() < 536 && total < 5000 {
            // cwnd may stop us: ack everything so far.
            s.inject(
                s.now.total_millis() + 1,
                seg(".").seq(1).ack(1 + total as u32),
            );
        }
        if s.out.is_empty() && total < 5000 {
            s.inject(
                s.now.total_millis() + 1,
                seg(".").seq(1).ack(1 + total as u32),
            );
        }
    }
}

#[test]
fn missing_mss_option_means_536() {
    let mut s = Script::passive(cfg());
    s.accept_with(0, seg("S").seq(0));
    assert_eq!(s.stack.info(s.h()).unwrap().mss, 536);
}

#[test]
fn peer_window_scale_is_applied_to_our_sends() {
    let mut s = Script::passive(cfg());
    // The SYN's window is never scaled (RFC 7323 2.2): 512 bytes.
    s.inject(0, seg("S").seq(0).mss(1460).ws(7).win(512));
    s.expect_at(0, exp("S.").seq(0).ack(1).ws(Some(3)));
    // Window field 4 with shift 7: 512 bytes.
    s.inject(1, seg(".").seq(1).ack(1).win(4));
    let h = s.stack.accept(s.listener.unwrap()).unwrap();
    s.conn = Some(h);
    s.stack.send(h, &vec![1u8; 3000]).unwrap();
    s.run_to(1);
    let o = s.next();
    let o = if o.payload.is_empty() { s.next() } else { o }; // a window update may come first
    assert_eq!(
        (o.seq.wrapping_sub(s.stack_iss.unwrap()), o.payload.len()),
        (1, 512),
        "{}",
        s.log.join("\n")
    );
    s.expect_none_until(150);
    assert_eq!(s.stack.info(h).unwrap().send_window, 512);
    // Field 8 << 7 = 1024 more bytes once the first 512 are acked.
    s.inject(160, seg(".").seq(1).ack(513).win(8));
    let o = s.expect_at(160, exp(".").seq(513));
    assert_eq!(o.payload.len(), 1024);
}

#[test]
fn our_advertised_window_is_scaled() {
    let mut s = Script::passive(cfg());
    s.accept_with(0, seg("S").seq(0).mss(1460).ws(7));
    s.inject(1, seg(".").seq(1).ack(1).len(1000));
    let o = s.expect_at(41, exp(".").ack(1001));
    // 256 kB buffer gives shift 3; receive-window auto-tuning starts the
    // window at `recv_buffer_initial` (64 KiB): (65536 - 1000) >> 3 rounded up.
    let expected = (65_536u32 - 1000).div_ceil(8) as u16;
    assert_eq!(o.win, expected);
}

#[test]
fn timestamps_are_echoed() {
    let mut s = Script::passive(cfg());
    s.inject(0, seg("S").seq(0).mss(1460).ts(100, 0));
    s.expect_at(0, exp("S.").ts_ecr(100));
    s.inject(1, seg(".").seq(1).ack(1).ts(101, 0));
    s.stack.accept(s.listener.unwrap()).unwrap();
    s.inject(2, seg(".").seq(1).ack(1).ts(150, 0).len(10));
    s.expect(exp(".").ack(11).ts_ecr(150));
    s.inject(100, seg(".").seq(11).ack(1).ts(250, 0).len(10));
    s.expect(exp(".").ack(21).ts_ecr(250));
}

#[test]
fn paws_drops_old_timestamps() {
    let mut s = Script::passive(cfg());
    s.inject(0, seg("S").seq(0).mss(1460).ts(1000, 0));
    s.expect(exp("S."));
    s.inject(1, seg(".").seq(1).ack(1).ts(1001, 0));
    let h = s.stack.accept(s.listener.unwrap()).unwrap();
    s.inject(2, seg(".").seq(1).ack(1).ts(500, 0).len(10));
    s.expect_at(2, exp(".").ack(1));
    assert_eq!(s.stack.recv_queued(h), 0);
    assert_eq!(s.stack.stats().drops(DropReason::TcpPawsRejected), 1);
}

#[test]
fn paws_tolerates_one_tick_of_reordering_like_linux() {
    let mut s = Script::passive(cfg());
    s.inject(0, seg("S").seq(0).mss(1460).ts(1000, 0));
    s.expect(exp("S."));
    s.inject(1, seg(".").seq(1).ack(1).ts(1001, 0));
    let h = s.stack.accept(s.listener.unwrap()).unwrap();
    // In order, TSval 1002: TS.Recent becomes 1002.
    s.inject(2, seg(".").seq(1).ack(1).ts(1002, 0).len(10));
    s.expect(exp(".").ack(11));
    // Sent a tick earlier, arriving after it (reordered): accepted.
    s.inject(100, seg(".").seq(11).ack(1).ts(1001, 0).len(10));
    s.expect(exp(".").ack(21));
    assert_eq!(s.stack.recv_queued(h), 20);
    // Two ticks behind: an old duplicate, dropped.
    s.inject(200, seg(".").seq(21).ack(1).ts(1000, 0).len(10));
    s.expect_at(200, exp(".").ack(21));
    assert_eq!(s.stack.recv_queued(h), 20);
    assert_eq!(s.stack.stats().drops(DropReason::TcpPawsRejected), 1);
}

#[test]
fn sack_blocks_for_out_of_order_data() {
    let mut s = Script::passive(cfg());
    s.accept_with(0, seg("S").seq(0).mss(1460).sackp());
    s.inject(10, seg(".").seq(1001).ack(1).len(500));
    s.expect_at(10, exp(".").ack(1).sack(&[(1001, 1501)]));
    s.inject(11, seg(".").seq(2001).ack(1).len(500));
    // The most recent block first (RFC 2018 4).
    s.expect_at(11, exp(".").ack(1).sack(&[(2001, 2501), (1001, 1501)]));
    s.inject(12, seg(".").seq(1).ack(1).len(1000));
    // Filling the first hole: immediate ACK, the remaining block reported.
    s.expect_at(12, exp(".").ack(1501).sack(&[(2001, 2501)]));
    s.inject(13, seg(".").seq(1501).ack(1).len(500));
    s.expect_at(13, exp(".").ack(2501).sack(&[]));
    assert_eq!(s.stack.recv_queued(s.h()), 2500);
}

#[test]
fn out_of_order_data_gets_an_immediate_dup_ack() {
    let mut s = Script::established(cfg());
    s.inject(10, seg(".").seq(1461).ack(1).len(1460));
    s.expect_at(10, exp(".").ack(1).sack(&[]));
    s.inject(11, seg(".").seq(2921).ack(1).len(1460));
    s.expect_at(11, exp(".").ack(1));
}

#[test]
fn delayed_ack_timer_and_every_second_segment() {
    let mut s = Script::established(cfg());
    // One small segment: ACK after the delayed-ACK timeout (40 ms; RFC 1122
    // allows up to 500 ms, RFC 9293 recommends < 200 ms).
    s.inject(10, seg(".").seq(1).ack(1).len(100));
    s.expect_none_until(49);
    s.expect_at(50, exp(".").ack(101));
    // Two full-sized segments: ACK at once (RFC 5681 4.2).
    s.inject(100, seg(".").seq(101).ack(1).len(1460));
    s.expect_none_until(100);
    s.inject(101, seg(".").seq(1561).ack(1).len(1460));
    s.expect_at(101, exp(".").ack(3021));
}

// ---------------------------------------------------------- close paths

#[test]
fn active_close_fin_wait_1_2_time_wait() {
    let mut s = Script::established(cfg());
    let h = s.h();
    s.stack.close(h);
    s.run_to(10);
    s.expect_at(0, exp("F.").seq(1).ack(1));
    assert_eq!(s.stack.connections()[0].state, State::FinWait1);
    s.inject(20, seg(".").seq(1).ack(2));
    assert_eq!(s.stack.connections()[0].state, State::FinWait2);
    s.inject(30, seg("F.").seq(1).ack(2));
    s.expect_at(30, exp(".").seq(2).ack(2));
    assert_eq!(s.stack.connections()[0].state, State::TimeWait);
    // 2 * MSL (1 s in the script config). TIME-WAIT expires from the
    // stack's FIFO of TIME-WAIT connections: once the earlier timers have
    // run out, the timer heap is empty though the connection waits.
    s.run_to(1500);
    assert_eq!(s.stack.connection_count(), 1);
    assert_eq!(s.stack.timer_entries(), 0);
    s.run_to(2029);
    assert_eq!(s.stack.connection_count(), 1);
    s.run_to(2031);
    assert_eq!(s.stack.connection_count(), 0);
}

#[test]
fn passive_close_close_wait_last_ack() {
    let mut s = Script::established(cfg());
    let h = s.h();
    s.inject(10, seg("F.").seq(1).ack(1));
    s.expect_at(10, exp(".").seq(1).ack(2));
    assert_eq!(s.stack.state(h), Some(State::CloseWait));
    let mut b = [0u8; 4];
    assert_eq!(s.stack.recv(h, &mut b), Ok(0));
    s.stack.close(h);
    s.run_to(20);
    s.expect_at(10, exp("F.").seq(1).ack(2));
    assert_eq!(s.stack.connections()[0].state, State::LastAck);
    s.inject(30, seg(".").seq(2).ack(2));
    assert_eq!(s.stack.connection_count(), 0);
    s.expect_none_until(5000);
}

#[test]
fn simultaneous_close_through_closing() {
    let mut s = Script::established(cfg());
    let h = s.h();
    s.stack.shutdown(h).unwrap();
    s.run_to(0);
    s.expect_at(0, exp("F.").seq(1).ack(1));
    // The peer's FIN crosses ours: it does not ACK our FIN.
    s.inject(10, seg("F.").seq(1).ack(1));
    s.expect_at(10, exp(".").seq(2).ack(2));
    assert_eq!(s.stack.state(h), Some(State::Closing));
    s.inject(20, seg(".").seq(2).ack(2));
    assert_eq!(s.stack.state(h), Some(State::TimeWait));
}

#[test]
fn time_wait_reacks_a_retransmitted_fin() {
    let mut s = Script::established(cfg());
    let h = s.h();
    s.stack.shutdown(h).unwrap();
    s.run_to(0);
    s.expect_at(0, exp("F.").seq(1).ack(1));
    s.inject(10, seg("F.").seq(1).ack(2));
    s.expect_at(10, exp(".").seq(2).ack(2));
    assert_eq!(s.stack.state(h), Some(State::TimeWait));
    // Our ACK was lost; the peer retransmits its FIN at 1.5 s.
    s.inject(1500, seg("F.").seq(1).ack(2));
    s.expect_at(1500, exp(".").seq(2).ack(2));
    // ... and the 2*MSL timer restarts (RFC 9293 3.10.7.4).
    s.stack.close(h);
    s.run_to(3400);
    assert_eq!(s.stack.connection_count(), 1);
    s.run_to(3600);
    assert_eq!(s.stack.connection_count(), 0);
}

#[test]
fn fin_with_data_in_one_segment() {
    let mut s = Script::established(cfg());
    let h = s.h();
    s.inject(10, seg("FP.").seq(1).ack(1).data(b"bye"));
    s.expect_at(10, exp(".").ack(5));
    let mut b = [0u8; 8];
    assert_eq!(s.stack.recv(h, &mut b), Ok(3));
    assert_eq!(s.stack.recv(h, &mut b), Ok(0));
}

#[test]
fn out_of_order_fin_waits_for_the_hole() {
    let mut s = Script::established(cfg());
    let h = s.h();
    s.inject(10, seg("F.").seq(101).ack(1).len(50));
    s.expect_at(10, exp(".").ack(1));
    assert_eq!(s.stack.state(h), Some(State::Established));
    s.inject(20, seg(".").seq(1).ack(1).len(100));
    s.expect_at(20, exp(".").ack(152));
    assert_eq!(s.stack.state(h), Some(State::CloseWait));
    assert_eq!(s.stack.recv_queued(h), 150);
}

// ------------------------------------------------------------ wrap-around

#[test]
fn sequence_numbers_wrap() {
    let mut s = Script::passive(cfg());
    s.peer_iss = u32::MAX - 100;
    s.stack.set_isn_for_test(Some(u32::MAX - 50));
    let h = s.accept_with(0, seg("S").seq(0).mss(1000));
    assert_eq!(s.stack_iss, Some(u32::MAX - 50));
    // Peer data across the wrap.
    s.inject(10, seg(".").seq(1).ack(1).len(1000));
    s.inject(11, seg(".").seq(1001).ack(1).len(1000));
    s.expect_at(11, exp(".").ack(2001));
    assert_eq!(s.stack.recv_queued(h), 2000);
    // Our data across the wrap.
    s.run_to(12);
    s.stack.set_nodelay(h, true);
    s.stack.send(h, &[5u8; 3000]).unwrap();
    s.run_to(12);
    s.expect_at(12, exp(".").seq(1).len(1000));
    s.expect_at(12, exp(".").seq(1001).len(1000));
    s.expect_at(12, exp("P.").seq(2001).len(1000));
    s.inject(20, seg(".").seq(2001).ack(3001));
    assert_eq!(s.stack.send_queued(h), 0);
    // Close across the wrap as well.
    s.inject(30, seg("F.").seq(2001).ack(3001));
    s.expect_at(30, exp(".").seq(3001).ack(2002));
}

#[test]
fn timestamp_sample_after_an_rto_ends_the_back_off() {
    // RFC 7323 4 / RFC 6298 5.7: an ACK of a retransmitted segment that
    // echoes the retransmission's TSval is a valid RTT sample, and a
    // valid sample ends the exponential back-off (Linux does the same).
    let mut s = Script::passive(cfg_rto1s());
    let h = s.accept_with_timestamps(0, 0, 1000);
    s.stack.send(h, &vec![1u8; 1448 * 2]).unwrap();
    s.run_to(0);
    let a = s.expect_at(0, exp(".").seq(1).len(1448));
    s.expect_at(0, exp(".").seq(1 + 1448).len(1448));
    // A is acknowledged after 100 ms (an RTT sample); B is lost.
    s.inject(100, seg(".").seq(1).ack(1 + 1448).ts(1002, a.ts.unwrap().0));
    s.stack.send(h, &vec![2u8; 1448]).unwrap();
    s.run_to(100);
    s.expect_at(100, exp(".").seq(1 + 1448 * 2).len(1448));
    // The RTO (1 s) retransmits B and doubles the timer.
    let rb = s.expect_at(1100, exp(".").seq(1 + 1448).len(1448));
    // The ACK of B echoes the retransmission's TSval: 100 ms sample.
    s.inject(
        1200,
        seg(".").seq(1).ack(1 + 1448 * 2).ts(1003, rb.ts.unwrap().0),
    );
    // C goes again (everything in flight was marked lost by the RTO).
    s.expect_at(1200, exp(".").seq(1 + 1448 * 2).len(1448));
    // Its timer is the un-backed-off 1 s, not 2 s.
    s.expect_at(2200, exp(".").seq(1 + 1448 * 2).len(1448));
}

#[test]
fn duplicates_after_a_lost_ack_echo_their_own_tsval() {
    // The peer's ACK of our ACK was not the issue here: our ACK of its
    // segment was lost, it retransmitted, and the duplicate ACK must echo
    // the retransmission's TSval (as Linux does), or the peer measures
    // an RTT from its first copy.
    let mut s = Script::passive(cfg());
    s.inject(0, seg("S").seq(0).mss(1460).ts(1000, 0));
    s.expect(exp("S."));
    s.inject(1, seg(".").seq(1).ack(1).ts(1001, 0));
    let h = s.stack.accept(s.listener.unwrap()).unwrap();
    s.inject(2, seg(".").seq(1).ack(1).ts(1002, 0).len(10));
    s.expect(exp(".").ack(11).ts_ecr(1002));
    s.inject(300, seg(".").seq(1).ack(1).ts(1300, 0).len(10));
    s.expect_at(300, exp(".").ack(11).ts_ecr(1300));
    // An older duplicate (not ending at RCV.NXT): its ACK echoes its own
    // TSval (the peer's RTT sample from it is its real RTT, not the time
    // since its previous copy), but TS.Recent does not move.
    s.inject(400, seg(".").seq(11).ack(1).ts(1400, 0).len(10));
    s.expect(exp(".").ack(21).ts_ecr(1400));
    s.inject(500, seg(".").seq(1).ack(1).ts(1500, 0).len(10));
    s.expect_at(500, exp(".").ack(21).ts_ecr(1500));
    // Once only: the next ACK echoes TS.Recent again.
    s.stack.send(h, b"x").unwrap();
    s.run_to(500);
    s.expect_at(500, exp("P.").seq(1).len(1).ts_ecr(1400));
    // TS.Recent is still 1400: an in-order segment stamped 1450 (older
    // than the duplicate's 1500) passes PAWS and is taken.
    s.inject(600, seg(".").seq(21).ack(2).ts(1450, 0).len(10));
    s.expect(exp(".").ack(31).ts_ecr(1450));
    assert_eq!(s.stack.recv_queued(h), 30);
    // A "duplicate" from far below the receive window (not a copy of
    // anything recent) is answered with TS.Recent.
    s.inject(
        700,
        seg(".")
            .seq(31u32.wrapping_sub(1 << 30))
            .ack(2)
            .ts(1700, 0)
            .len(10),
    );
    s.expect_at(700, exp(".").ack(31).ts_ecr(1450));
}

#[test]
fn an_echo_older_than_the_retransmission_is_no_rtt_sample() {
    // RFC 8985 6.2 step 2 (and Linux): after an RTO, an ACK whose TSecr
    // predates the retransmission was caused by the first copy (its first
    // ACK was lost): "now - TSecr" is not the path's RTT.
    let mut s = Script::passive(cfg_rto1s());
    let h = s.accept_with_timestamps(0, 10, 1000);
    let srtt0 = s.stack.info(h).unwrap().srtt_us.expect("handshake sample");
    assert!(srtt0 <= 11_000, "{srtt0}");
    s.stack.send(h, b"hello").unwrap();
    s.run_to(10);
    let first = s.expect_at(10, exp("P.").seq(1).len(5));
    s.expect_at(1010, exp("P.").seq(1).len(5));
    // The ACK echoes the first copy's TSval, 1.2 s after it was sent.
    s.inject(1210, seg(".").seq(1).ack(6).ts(1002, first.ts.unwrap().0));
    let srtt = s.stack.info(h).unwrap().srtt_us.unwrap();
    assert_eq!(srtt, srtt0, "a stale echo was taken as an RTT sample");
}

// ------------------------------------------- compact TIME-WAIT records

/// Everything the stack sent and what it listed, for one TIME-WAIT
/// scenario run with compact records on or off.
struct TwRun {
    log: Vec<String>,
    transitions: Vec<String>,
    records_seen: usize,
    closed: u64,
}

/// An active close with timestamps, then the segments TIME-WAIT must
/// answer (RFC 9293 3.10.7.4, RFC 7323, RFC 5961): a retransmitted FIN
/// (re-ACK, 2*MSL restarts), an old-TSval segment (PAWS: ACK), an
/// in-window RST that is not exact (challenge ACK), data below RCV.NXT
/// (ACK), then the connection runs out its restarted 2*MSL.
fn time_wait_scenario(compact: bool) -> TwRun {
    let mut c = cfg();
    c.compact_time_wait = compact;
    let mut s = Script::passive(c);
    s.stack.set_transition_history(true); // as the runtime does
    let h = s.accept_with_timestamps(0, 1, 1000);
    s.stack.close(h); // the application lets go: nobody holds it
    s.run_to(10);
    s.expect_at(1, exp("F.").seq(1).ack(1).ts_ecr(1001));
    s.inject(20, seg("F.").seq(1).ack(2).ts(1020, 0));
    s.expect_at(20, exp(".").seq(2).ack(2).ts_ecr(1020));
    let mut records_seen = s.stack.time_wait_records();
    assert_eq!(s.stack.time_wait_count(), 1);
    assert_eq!(s.stack.connection_count(), 1);
    let listed = s.stack.connections();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].state, State::TimeWait);
    // Listed under the id (handle) it had, as the transitions name it; the
    // application let go of it, so the handle no longer works.
    assert_eq!(listed[0].handle, h);
    assert_eq!(s.stack.state(h), None);
    // Our ACK was lost: the FIN again, at 500 ms.
    s.inject(500, seg("F.").seq(1).ack(2).ts(1500, 0));
    s.expect_at(500, exp(".").seq(2).ack(2));
    records_seen = records_seen.max(s.stack.time_wait_records());
    // PAWS: a TSval older than TS.Recent.
    s.inject(600, seg(".").seq(2).ack(2).ts(900, 0));
    s.expect_at(600, exp(".").seq(2).ack(2));
    // A RST in the window but not at RCV.NXT: challenge ACK, no close.
    s.inject(700, seg("R.").seq(100).ack(2).ts(1700, 0));
    s.expect_at(700, exp(".").seq(2).ack(2));
    assert_eq!(s.stack.time_wait_count(), 1);
    // Data entirely below RCV.NXT.
    s.inject(800, seg(".").seq(0).ack(2).ts(1800, 0).len(1));
    s.expect_at(800, exp(".").seq(2).ack(2));
    records_seen = records_seen.max(s.stack.time_wait_records());
    // 2*MSL = 2 s from the retransmitted FIN at 500 ms.
    s.run_to(2400);
    assert_eq!(s.stack.connection_count(), 1);
    s.run_to(2600);
    assert_eq!(s.stack.connection_count(), 0);
    assert_eq!(s.stack.time_wait_count(), 0);
    assert_eq!(s.stack.time_wait_records(), 0);
    s.expect_none_until(10_000);
    let transitions = s
        .stack
        .recent_transitions()
        .map(|t| {
            format!(
                "{:?} {} {} {:?}->{:?}",
                t.t, t.local, t.remote, t.from, t.to
            )
        })
        .collect();
    TwRun {
        log: s.log.clone(),
        transitions,
        records_seen,
        closed: s.stack.stats().tcp_connections_closed,
    }
}

#[test]
fn time_wait_records_answer_exactly_as_the_tcb_does() {
    let whole = time_wait_scenario(false);
    let compact = time_wait_scenario(true);
    assert_eq!(whole.records_seen, 0);
    assert_eq!(
        compact.records_seen, 1,
        "the connection was kept as a record"
    );
    // Every packet in and out, byte for byte (timestamps included), and
    // the state history are the same.
    assert_eq!(whole.log, compact.log);
    assert_eq!(whole.transitions, compact.transitions);
    assert!(
        compact
            .transitions
            .last()
            .unwrap()
            .ends_with("TimeWait->Closed"),
        "{:?}",
        compact.transitions
    );
    assert_eq!(whole.closed, 1);
    assert_eq!(compact.closed, 1);
}

/// A new SYN above RCV.NXT reopens a TIME-WAIT connection (RFC 6191,
/// RFC 1122 4.2.2.13); an exact RST ends it (RFC 9293 3.10.7.4); the
/// oldest is recycled past `max_time_wait`. Same packets with records.
fn time_wait_reuse_scenario(compact: bool) -> (Vec<String>, u64) {
    let mut c = cfg();
    c.compact_time_wait = compact;
    c.max_time_wait = 2;
    let mut s = Script::passive(c);
    let mut t = 0;
    let close_one = |s: &mut Script, sport: u16, t: &mut u64| {
        s.inject(*t, seg("S").seq(0).mss(1460).sport(sport));
        let synack = s.expect(exp("S.").ack(1));
        s.stack_iss = Some(synack.seq);
        s.inject(*t, seg(".").seq(1).ack(1).sport(sport));
        let h = s.stack.accept(s.listener.unwrap()).unwrap();
        s.stack.close(h);
        s.run_to(*t);
        s.expect(exp("F.").seq(1).ack(1));
        s.inject(*t + 1, seg("F.").seq(1).ack(2).sport(sport));
        s.expect(exp(".").seq(2).ack(2));
        *t += 10;
    };
    for port in [40001, 40002, 40003] {
        close_one(&mut s, port, &mut t);
    }
    // Three closed, two kept: the first was recycled.
    assert_eq!(s.stack.time_wait_count(), 2);
    if compact {
        assert_eq!(s.stack.time_wait_records(), 2);
    }
    // An exact RST ends the second (40002)...
    let tw = s.stack.connections();
    assert_eq!(tw.len(), 2);
    assert!(tw.iter().all(|c| c.state == State::TimeWait));
    s.inject(100, seg("R").seq(2).sport(40002));
    assert_eq!(s.stack.time_wait_count(), 1);
    // ...and a SYN above RCV.NXT on 40003 reopens it as a new connection.
    s.inject(110, seg("S").seq(1000).mss(1460).sport(40003));
    s.expect(exp("S.").ack(1001));
    assert_eq!(s.stack.time_wait_count(), 0);
    assert_eq!(s.stack.connection_count(), 1);
    s.expect_none_until(150);
    (s.log.clone(), s.stack.stats().tcp_time_wait_recycled)
}

#[test]
fn time_wait_records_reopen_reset_and_recycle_like_tcbs() {
    let (whole, rw) = time_wait_reuse_scenario(false);
    let (compact, rc) = time_wait_reuse_scenario(true);
    assert_eq!(whole, compact);
    assert_eq!((rw, rc), (1, 1));
}
