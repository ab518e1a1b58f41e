//! Randomized transfers over an impaired simulated network.
//!
//! Each case draws a seed; from it: the transfer sizes both ways (0 bytes to
//! a few MB, both directions at once), and per direction a latency (0-100
//! ms), loss (0-10%), duplication, reordering, corruption and sometimes a
//! bandwidth limit with a small drop-tail queue. The case passes when both
//! applications receive exactly the bytes the other sent, both see EOF, and
//! both stacks end with no connection at all (TIME-WAIT expired, slots freed).
//!
//! A failure prints its seed; rerun just that case with
//! `USTACK_SIM_SEED=<seed> cargo test --test sim_random`.
//! `USTACK_SIM_CASES=<n>` runs more cases.

mod common_sim;
use common_sim::*;
use ustack::phy::sim::LinkConfig;
use ustack::rand::Rng;
use ustack::time::Duration;

fn random_link(rng: &mut Rng) -> LinkConfig {
    let mut l = LinkConfig {
        latency: Duration::from_micros(rng.below(100_001)),
        loss: if rng.chance(0.3) {
            0.0
        } else {
            rng.next_f64() * 0.10
        },
        duplicate: if rng.chance(0.5) {
            0.0
        } else {
            rng.next_f64() * 0.05
        },
        reorder: if rng.chance(0.5) {
            0.0
        } else {
            rng.next_f64() * 0.10
        },
        reorder_delay: Duration::from_micros(1 + rng.below(30_000)),
        corrupt: if rng.chance(0.5) {
            0.0
        } else {
            rng.next_f64() * 0.03
        },
        ..Default::default()
    };
    if rng.chance(0.4) {
        // 1 - 100 Mbit/s with a 16 - 256 kB queue.
        l.bandwidth_bps = Some(1_000_000 + rng.below(99_000_000));
        l.queue_bytes = 16 * 1024 + rng.below(240 * 1024) as usize;
    }
    l
}

/// Half the cases use the defaults; the others vary buffers, MSS, Nagle
/// and turn the RFC 7323 / 2018 options off at random.
fn random_config(rng: &mut Rng, addr: std::net::Ipv4Addr) -> ustack::iface::Config {
    let mut c = config(addr);
    if rng.chance(0.5) {
        c.tcp.recv_buffer = 2048 + rng.below(300_000) as usize;
        c.tcp.send_buffer = 2048 + rng.below(300_000) as usize;
        c.tcp.mss = 200 + rng.below(1261) as u16;
        c.tcp.nagle = rng.chance(0.5);
        c.tcp.window_scaling = rng.chance(0.5);
        c.tcp.timestamps = rng.chance(0.5);
        c.tcp.sack = rng.chance(0.5);
    }
    c
}

fn random_size(rng: &mut Rng) -> usize {
    match rng.below(10) {
        0 => 0,
        1 => 1 + rng.below(10) as usize,
        2..=5 => rng.below(20_000) as usize,
        6..=8 => rng.below(300_000) as usize,
        _ => rng.below(2_500_000) as usize,
    }
}

fn run_case(seed: u64) -> Result<(), String> {
    let mut rng = Rng::derive(seed, "case");
    let ab = random_link(&mut rng);
    let ba = random_link(&mut rng);
    let n_ab = random_size(&mut rng);
    let n_ba = random_size(&mut rng);
    let ca = random_config(&mut rng, A_ADDR);
    let cb = random_config(&mut rng, B_ADDR);
    let desc = format!(
        "seed {seed}: {n_ab} B a->b, {n_ba} B b->a, ab {ab:?}, ba {ba:?}, a {:?}, b {:?}",
        ca.tcp, cb.tcp
    );
    let mut w = pair_with(ca, cb, ab, ba, seed);
    let mut t = Transfer::start(&mut w, payload(seed, n_ab), payload(seed ^ 0xffff, n_ba));
    t.run(&mut w, Duration::from_secs(3600))
        .map_err(|e| format!("{desc}\n  {e}"))
}

#[test]
fn random_transfers_under_impairments() {
    if let Ok(s) = std::env::var("USTACK_SIM_SEED") {
        let seed: u64 = s.parse().expect("USTACK_SIM_SEED is a number");
        if let Err(e) = run_case(seed) {
            panic!("FAILED {e}");
        }
        return;
    }
    let cases: u64 = std::env::var("USTACK_SIM_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(150);
    let mut failures = Vec::new();
    for i in 0..cases {
        let seed = 0x5eed_0000 + i;
        if let Err(e) = run_case(seed) {
            eprintln!("FAILED {e}");
            failures.push(seed);
        }
    }
    assert!(
        failures.is_empty(),
        "failing seeds (rerun with USTACK_SIM_SEED=...): {failures:?}"
    );
}
