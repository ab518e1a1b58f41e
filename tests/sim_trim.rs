//! `Stack::trim_memory` (issue 7, soak): after a burst of connections the
//! stack's tables shrink back, an old handle never reaches a connection
//! that later takes its slot, and the stack works as before.

mod common_sim;

use common_sim::*;
use std::net::SocketAddrV4;
use ustack::phy::sim::LinkConfig;
use ustack::tcp::{SocketHandle, TcpError};
use ustack::time::Duration;

/// Open `n` connections from A to B, send `len` bytes on each, close both
/// ends, and run until both stacks are empty (TIME-WAIT included).
/// Returns A's handles (all dead by then).
fn burst(w: &mut Pair, l: ustack::tcp::ListenerHandle, n: usize, len: usize) -> Vec<SocketHandle> {
    let data = payload(n as u64, len);
    let to = SocketAddrV4::new(B_ADDR, PORT);
    let clients: Vec<SocketHandle> = (0..n).map(|_| w.a.connect(w.now, to).unwrap()).collect();
    let mut sent = vec![0usize; n];
    let mut servers: Vec<(SocketHandle, usize)> = Vec::new();
    let mut closed = vec![false; n];
    let mut buf = vec![0u8; 16384];
    let ok = w.run_until(w.now + Duration::from_secs(120), |w| {
        while w.a.poll_event().is_some() {}
        while w.b.poll_event().is_some() {}
        while let Some(h) = w.b.accept(l) {
            servers.push((h, 0));
        }
        for (i, &h) in clients.iter().enumerate() {
            if closed[i] {
                continue;
            }
            while sent[i] < len {
                match w.a.send(h, &data[sent[i]..]) {
                    Ok(k) => sent[i] += k,
                    Err(TcpError::WouldBlock) => break,
                    Err(e) => panic!("send: {e:?}"),
                }
            }
            if sent[i] == len {
                w.a.close(h);
                closed[i] = true;
            }
        }
        for (h, got) in servers.iter_mut() {
            loop {
                match w.b.recv(*h, &mut buf) {
                    Ok(0) => {
                        assert_eq!(*got, len, "bytes received before EOF");
                        w.b.close(*h);
                        break;
                    }
                    Ok(k) => {
                        assert_eq!(buf[..k], data[*got..*got + k], "data");
                        *got += k;
                    }
                    Err(_) => break,
                }
            }
        }
        closed.iter().all(|&c| c)
            && servers.len() == n
            && w.a.connection_count() == 0
            && w.b.connection_count() == 0
    });
    assert!(
        ok,
        "burst did not finish: a={} b={} connections",
        w.a.connection_count(),
        w.b.connection_count()
    );
    clients
}

#[test]
fn trim_after_a_burst_shrinks_tables_and_old_handles_stay_dead() {
    let mut w = pair(LinkConfig::default(), 3);
    let l = w.b.listen(PORT, 1024).unwrap();
    let empty = (w.a.table_bytes(), w.b.table_bytes());

    let old = burst(&mut w, l, 500, 3000);
    let grown = (w.a.table_bytes(), w.b.table_bytes());
    assert!(
        grown.0 > 100 * 1024 && grown.1 > 100 * 1024,
        "500 connections grew the tables: {grown:?} (empty {empty:?})"
    );

    let released = (w.a.trim_memory(), w.b.trim_memory());
    let trimmed = (w.a.table_bytes(), w.b.table_bytes());
    eprintln!("tables: empty {empty:?}, after 500 connections {grown:?}, trimmed {trimmed:?} (released {released:?})");
    assert!(
        trimmed.0 <= 1024 && trimmed.1 <= 1024,
        "tables after trim with no connection: {trimmed:?}"
    );
    // What trim reports is the tables' shrink plus the free buffers this
    // thread kept for reuse (the pools are per thread: both stacks here
    // share them, and the first trim empties them).
    assert!(released.0 >= grown.0 - trimmed.0, "{released:?}");
    assert!(released.1 >= grown.1 - trimmed.1, "{released:?}");
    assert_eq!(w.a.pooled_memory(), 0);

    // The stack works as before, and the new connections' slots (the same
    // indices as the old ones) do not answer to the old handles.
    let new = burst(&mut w, l, 50, 100_000);
    let to = SocketAddrV4::new(B_ADDR, PORT);
    let live: Vec<SocketHandle> = (0..old.len())
        .map(|_| w.a.connect(w.now, to).unwrap())
        .collect();
    for h in old.iter().chain(&new) {
        assert!(
            !live.contains(h),
            "a new connection got an old handle {h:?}"
        );
        assert_eq!(
            w.a.send(*h, b"x"),
            Err(TcpError::InvalidHandle),
            "old handle {h:?}"
        );
    }
    for h in &live {
        assert!(w.a.send(*h, b"x").is_ok(), "new handle {h:?}");
    }

    // Trimming with live connections changes nothing they do.
    w.a.trim_memory();
    w.b.trim_memory();
    for h in live {
        w.a.close(h);
    }
    w.advance(Duration::from_secs(1));
    while let Some(h) = w.b.accept(l) {
        w.b.close(h);
    }
    w.run_until(w.now + Duration::from_secs(60), |w| {
        w.a.connection_count() == 0 && w.b.connection_count() == 0
    });
    assert_eq!((w.a.connection_count(), w.b.connection_count()), (0, 0));
}

/// Trimming does not free a slot in use: with one connection at the end of
/// the slot table and all others gone, the table keeps it (and it works).
#[test]
fn trim_keeps_a_live_connection_at_the_end_of_the_table() {
    let mut w = pair(LinkConfig::default(), 4);
    let l = w.b.listen(PORT, 1024).unwrap();
    burst(&mut w, l, 100, 10);
    let to = SocketAddrV4::new(B_ADDR, PORT);
    let hs: Vec<SocketHandle> = (0..100).map(|_| w.a.connect(w.now, to).unwrap()).collect();
    let last = *hs.last().unwrap();
    for &h in &hs[..99] {
        w.a.abort(h);
    }
    w.advance(Duration::from_millis(100));
    assert_eq!(w.a.connection_count(), 1);
    let before = w.a.table_bytes();
    w.a.trim_memory();
    assert!(w.a.table_bytes() <= before);
    let servers: Vec<SocketHandle> = std::iter::from_fn(|| w.b.accept(l)).collect();
    assert_eq!(w.a.send(last, b"after trim"), Ok(10));
    w.advance(Duration::from_millis(100));
    let mut buf = [0u8; 64];
    let got: Vec<Vec<u8>> = servers
        .iter()
        .filter_map(|&h| match w.b.recv(h, &mut buf) {
            Ok(n) if n > 0 => Some(buf[..n].to_vec()),
            _ => None,
        })
        .collect();
    assert_eq!(
        got,
        vec![b"after trim".to_vec()],
        "one server connection got the data"
    );
}

/// A stream of short connections (each opened, used and aborted within half
/// a millisecond, while its retransmission timers were a second out) leaves
/// stale timer entries behind; the stack's timer queue compacts itself so
/// that they never outnumber the live connections by more than the floor
/// (`ustack::timer`), and the connections still work.
#[test]
fn timer_queue_stays_bounded_under_connection_churn() {
    let mut w = pair(LinkConfig::default(), 5);
    let l = w.b.listen(PORT, 1024).unwrap();
    let to = SocketAddrV4::new(B_ADDR, PORT);
    let mut most = (0, 0);
    let mut buf = [0u8; 64];
    for i in 0..8000 {
        let h = w.a.connect(w.now, to).unwrap();
        w.advance(Duration::from_micros(100));
        let s = w.b.accept(l).expect("accepted");
        assert_eq!(w.a.send(h, b"hello"), Ok(5), "connection {i}");
        w.advance(Duration::from_micros(100));
        assert_eq!(w.b.recv(s, &mut buf), Ok(5), "connection {i}");
        w.a.abort(h);
        w.b.abort(s);
        w.advance(Duration::from_micros(300));
        most = (
            most.0.max(w.a.timer_entries()),
            most.1.max(w.b.timer_entries()),
        );
        while w.a.poll_event().is_some() {}
        while w.b.poll_event().is_some() {}
    }
    assert_eq!((w.a.connection_count(), w.b.connection_count()), (0, 0));
    let bound = ustack::timer::COMPACT_FLOOR + 1;
    assert!(
        most.0 <= bound && most.1 <= bound,
        "timer entries reached {most:?} with at most one connection open (bound {bound})"
    );
}
