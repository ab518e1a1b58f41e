//! An application that reads only when the stack tells it to
//! (`Event::Socket`) never misses data, even under 25 % loss both ways,
//! where data arrives in bursts when a retransmission fills a hole (issue
//! 7: an upload under 25 % loss stalled with data apparently unread; this
//! shows the stack's notifications are not the cause).
mod common_sim;
use common_sim::*;
use std::net::SocketAddrV4;
use ustack::phy::sim::LinkConfig;
use ustack::tcp::Event;
use ustack::time::Duration;

#[test]
fn event_driven_reader_under_heavy_loss() {
    for seed in std::env::var("SIMSEED")
        .ok()
        .map(|s| s.parse::<u64>().unwrap())
        .map(|s| s..s + 1)
        .unwrap_or(1..20u64)
    {
        let mut link = LinkConfig::with_latency(Duration::from_millis(1));
        link.loss = 0.25;
        let mut w = pair(link, seed);
        let l = w.b.listen(PORT, 16).unwrap();
        let data = payload(seed, 300_000);
        let c = w.a.connect(w.now, SocketAddrV4::new(B_ADDR, PORT)).unwrap();
        let mut sent = 0;
        let mut got = 0usize;
        let mut server = None;
        let mut buf = vec![0u8; 65536];
        let mut last_progress = w.now;
        let mut stuck = None;
        let start = w.now;
        w.run_until(w.now + Duration::from_secs(3000), |w| {
            while w.a.poll_event().is_some() {}
            while sent < data.len() {
                match w.a.send(c, &data[sent..]) {
                    Ok(n) => sent += n,
                    Err(_) => break,
                }
            }
            let mut wake = false;
            while let Some(ev) = w.b.poll_event() {
                match ev {
                    Event::Incoming(_) => {
                        if let Some(h) = w.b.accept(l) {
                            server = Some(h);
                            wake = true;
                        }
                    }
                    Event::Socket(h) if Some(h) == server => wake = true,
                    _ => {}
                }
            }
            if let Some(h) = server {
                if wake {
                    loop {
                        match w.b.recv(h, &mut buf) {
                            Ok(n) if n > 0 => {
                                got += n;
                                last_progress = w.now;
                            }
                            _ => break,
                        }
                    }
                } else if w.now > last_progress + Duration::from_secs(100) && stuck.is_none() {
                    // No event for 100 s: is data waiting anyway?
                    if let Ok(n) = w.b.recv(h, &mut buf) {
                        if n > 0 {
                            stuck = Some((w.now, got, n));
                            got += n;
                            last_progress = w.now;
                        }
                    }
                }
            }
            got == data.len() || stuck.is_some()
        });
        assert!(
            stuck.is_none(),
            "seed {seed}: data waiting without an event: {stuck:?}"
        );
        assert_eq!(
            got,
            data.len(),
            "seed {seed}: transfer did not finish by {:?}",
            w.now
        );
        eprintln!(
            "sim_wakeup: seed {seed}: 300 kB under 25 % loss both ways in {:?} (virtual)",
            w.now - start
        );
        if std::env::var("SIMDBG").is_ok() {
            eprintln!("{:?}\nB: {:?}", w.a.stats(), w.b.stats());
        }
    }
}
