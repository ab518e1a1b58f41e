//! The stack's counters as JSON, for `/api/stats`, `/ws/stats` and the
//! dashboard. Written by hand: the document is small and flat, and the
//! crate needs no serializer for it.

use crate::iface::Stack;
use std::fmt::Write;

/// Extra counters from outside the stack (the device chain: fault
/// injection), as `(name, value)` pairs, filled in by the runtime.
#[derive(Clone, Debug, Default)]
pub struct DeviceStats {
    /// Description of the impairment in force (`--impair`), if any.
    pub impairment: Option<String>,
    pub counters: Vec<(String, u64)>,
}

/// Escape a string for a JSON string literal.
pub fn json_escape(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
}

/// Connections listed one by one in the document at most (`states` and
/// `tcp.connections_live` count all of them).
pub const MAX_LISTED: usize = 1000;

/// The whole stats document.
pub fn stats_json(stack: &Stack, device: &DeviceStats, uptime_ms: u64) -> String {
    let s = stack.stats();
    let mut o = String::with_capacity(1024);
    o.push('{');
    let _ = write!(o, "\"uptime_ms\":{uptime_ms},\"seed\":{},", stack.seed());
    let _ = write!(o, "\"addr\":\"{}\",", stack.config().addr);
    let _ = write!(
        o,
        "\"packets_in\":{},\"packets_out\":{},\"bytes_in\":{},\"bytes_out\":{},",
        s.packets_in, s.packets_out, s.bytes_in, s.bytes_out
    );
    o.push_str("\"drops\":{");
    let mut first = true;
    for (reason, n) in s.drop_table() {
        if !first {
            o.push(',');
        }
        first = false;
        let _ = write!(o, "\"{}\":{n}", reason.label());
    }
    let _ = write!(o, "}},\"drops_total\":{},", s.total_drops());
    let tcp: [(&str, u64); 23] = [
        ("segments_in", s.tcp_segments_in),
        ("segments_out", s.tcp_segments_out),
        ("retransmissions", s.tcp_retransmissions),
        ("fast_retransmissions", s.tcp_fast_retransmissions),
        ("rto_timeouts", s.tcp_rto_timeouts),
        ("rsts_sent", s.tcp_rsts_sent),
        ("rsts_received", s.tcp_rsts_received),
        ("challenge_acks", s.tcp_challenge_acks),
        ("dup_acks_received", s.tcp_dup_acks_received),
        ("zero_window_probes", s.tcp_zero_window_probes),
        ("keepalive_probes", s.tcp_keepalive_probes),
        ("connections_opened", s.tcp_connections_opened),
        ("connections_accepted", s.tcp_connections_accepted),
        ("connections_closed", s.tcp_connections_closed),
        ("connections_reset", s.tcp_connections_reset),
        ("connections_timed_out", s.tcp_connections_timed_out),
        ("syn_cookies_sent", s.tcp_syn_cookies_sent),
        ("syn_cookies_accepted", s.tcp_syn_cookies_accepted),
        ("icmp_echo_replies", s.icmp_echo_replies),
        ("icmp_unreachables_sent", s.icmp_unreachables_sent),
        ("fragments_reassembled", s.fragments_reassembled),
        ("connections_live", stack.connection_count() as u64),
        ("buffer_memory", stack.buffer_memory() as u64),
    ];
    o.push_str("\"tcp\":{");
    for (i, (k, v)) in tcp.iter().enumerate() {
        if i > 0 {
            o.push(',');
        }
        let _ = write!(o, "\"{k}\":{v}");
    }
    o.push_str("},\"device\":{");
    match &device.impairment {
        Some(i) => {
            o.push_str("\"impairment\":\"");
            json_escape(i, &mut o);
            o.push('"');
        }
        None => o.push_str("\"impairment\":null"),
    }
    for (k, v) in &device.counters {
        o.push_str(",\"");
        json_escape(k, &mut o);
        let _ = write!(o, "\":{v}");
    }
    // Connections by state (all of them), then the first MAX_LISTED in
    // detail: with 100,000 idle connections the full list would be ~25 MB
    // per document, pushed every second to each /ws/stats subscriber.
    o.push_str("},\"states\":{");
    let mut states: Vec<(&str, usize)> = Vec::new();
    for st in stack.connection_states() {
        match states.iter_mut().find(|(n, _)| *n == st.name()) {
            Some((_, k)) => *k += 1,
            None => states.push((st.name(), 1)),
        }
    }
    states.sort();
    for (i, (name, n)) in states.iter().enumerate() {
        if i > 0 {
            o.push(',');
        }
        let _ = write!(o, "\"{name}\":{n}");
    }
    let _ = write!(
        o,
        "}},\"connections_listed\":{},\"connections\":[",
        states.iter().map(|(_, n)| n).sum::<usize>().min(MAX_LISTED)
    );
    for (i, c) in stack.connections_iter().take(MAX_LISTED).enumerate() {
        if i > 0 {
            o.push(',');
        }
        let _ = write!(
            o,
            "{{\"id\":{},\"local\":\"{}\",\"remote\":\"{}\",\"state\":\"{}\",\"bytes_in\":{},\"bytes_out\":{},\
             \"srtt_us\":{},\"rto_us\":{},\"cwnd\":{},\"ssthresh\":{},\"snd_wnd\":{},\"rcv_wnd\":{},\"retransmissions\":{},\"mss\":{}}}",
            c.handle.id(),
            c.local,
            c.remote,
            c.state.name(),
            c.bytes_in,
            c.bytes_out,
            c.srtt_us.map(|v| v.to_string()).unwrap_or_else(|| "null".into()),
            c.rto_us,
            c.cwnd,
            if c.ssthresh == u32::MAX { -1i64 } else { c.ssthresh as i64 },
            c.send_window,
            c.recv_window,
            c.retransmissions,
            c.mss
        );
    }
    // The latest state transitions of all connections, oldest first
    // (`t_ms`: milliseconds since start).
    o.push_str("],\"transitions\":[");
    for (i, t) in stack.recent_transitions().enumerate() {
        if i > 0 {
            o.push(',');
        }
        let _ = write!(
            o,
            "{{\"t_ms\":{},\"id\":{},\"local\":\"{}\",\"remote\":\"{}\",\"from\":\"{}\",\"to\":\"{}\"}}",
            t.t.total_millis(),
            t.id,
            t.local,
            t.remote,
            t.from.name(),
            t.to.name()
        );
    }
    o.push_str("]}");
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iface::Config;
    use std::net::Ipv4Addr;

    #[test]
    fn escapes_and_shapes() {
        let mut s = String::new();
        json_escape("a\"b\\c\nd\u{1}", &mut s);
        assert_eq!(s, "a\\\"b\\\\c\\nd\\u0001");
        let mut stack = Stack::new(Config::new(Ipv4Addr::new(10, 0, 0, 2)), 5);
        stack.handle_packet(crate::time::Instant::ZERO, &[0x45, 0, 0]);
        let dev = DeviceStats {
            impairment: Some("loss=1%".into()),
            counters: vec![("dropped_in".into(), 3)],
        };
        let j = stats_json(&stack, &dev, 1234);
        assert!(j.starts_with('{') && j.ends_with('}'));
        assert!(j.contains("\"uptime_ms\":1234"));
        assert!(j.contains("\"packets_in\":1"));
        assert!(j.contains("\"truncated\":1"), "{j}");
        assert!(j.contains("\"impairment\":\"loss=1%\""));
        assert!(j.contains("\"dropped_in\":3"));
        assert!(
            j.contains("\"states\":{},\"connections_listed\":0,\"connections\":[]"),
            "{j}"
        );
        assert!(j.ends_with("\"transitions\":[]}"), "{j}");
    }
}
