//! Reading `ustack serve --trace` files (JSON lines, see [`crate::trace`])
//! for the ladder diagram.
//!
//! The segment events of a trace carry the TCP header of every segment the
//! stack received or sent (not the payload), so the same [`Connection`]
//! analysis as for a pcap applies. Differences from a capture of the same
//! run: the trace is the stack's own view (a segment the fault injector
//! dropped on the way out is still in it, and each segment carries the
//! stack's decision, shown when it is not the ordinary one), and
//! application content (HTTP, WebSocket) is not recognized because payloads
//! are not recorded.

use super::{Connection, LadderError, Skipped, Trace, MAX_CONNECTIONS};
use crate::trace::json::{parse_line, Object};
use crate::trace::parse_flag_names;
use crate::wire::{SeqNumber, TcpFlags, TcpRepr};
use std::collections::HashMap;
use std::io::BufRead;
use std::net::SocketAddrV4;

/// Does this file start like a trace (a JSON object) rather than a pcap?
/// (No pcap or pcapng magic number starts with `{`.)
pub fn looks_like_trace(first_bytes: &[u8]) -> bool {
    first_bytes.first() == Some(&b'{')
}

fn field<T>(line: usize, what: &'static str, v: Option<T>) -> Result<T, LadderError> {
    v.ok_or(LadderError::BadTrace {
        line,
        why: format!("missing or bad field \"{what}\""),
    })
}

fn num<T: TryFrom<i64>>(o: &Object, line: usize, key: &'static str) -> Result<T, LadderError> {
    field(line, key, o.int(key).and_then(|v| T::try_from(v).ok()))
}

fn addr(o: &Object, line: usize, key: &'static str) -> Result<SocketAddrV4, LadderError> {
    field(line, key, o.str(key).and_then(|s| s.parse().ok()))
}

/// Read a trace and group its segment events into connections.
pub fn load<R: BufRead>(input: R) -> Result<Trace, LadderError> {
    let mut trace = Trace {
        link_type: 0,
        records: 0,
        connections: Vec::new(),
        skipped: Skipped::default(),
        start_nanos: 0,
        live: false,
    };
    let mut wall_us: u64 = 0;
    let mut by_pair: HashMap<(SocketAddrV4, SocketAddrV4), usize> = HashMap::new();
    let mut n = 0usize;
    for line in input.lines() {
        let line = line.map_err(LadderError::Read)?;
        n += 1;
        if line.trim().is_empty() {
            continue;
        }
        let o = parse_line(&line).map_err(|e| LadderError::BadTrace {
            line: n,
            why: e.to_string(),
        })?;
        match o.str("ev") {
            Some("trace_start") => {
                wall_us = o
                    .int("wall_us")
                    .and_then(|v| u64::try_from(v).ok())
                    .unwrap_or(0);
                continue;
            }
            Some("seg") => {}
            Some(_) => continue,
            None => {
                return Err(LadderError::BadTrace {
                    line: n,
                    why: "no \"ev\" field".into(),
                })
            }
        }
        trace.records += 1;
        let t_us: u64 = num(&o, n, "t_us")?;
        let ts_nanos = wall_us.saturating_add(t_us).saturating_mul(1000);
        if trace.records == 1 {
            trace.start_nanos = ts_nanos;
        }
        let local = addr(&o, n, "local")?;
        let remote = addr(&o, n, "remote")?;
        let (src, dst) = match o.str("dir") {
            Some("in") => (remote, local),
            Some("out") => (local, remote),
            _ => {
                return Err(LadderError::BadTrace {
                    line: n,
                    why: "missing or bad field \"dir\"".into(),
                })
            }
        };
        let flags = TcpFlags(field(
            n,
            "flags",
            o.str("flags").and_then(parse_flag_names),
        )?);
        let mut sack = [None; 3];
        if let Some(s) = o.str("sack") {
            for (slot, block) in sack.iter_mut().zip(s.split(' ')) {
                let (l, r) = field(n, "sack", block.split_once('-'))?;
                *slot = Some((
                    field(n, "sack", l.parse().ok())?,
                    field(n, "sack", r.parse().ok())?,
                ));
            }
        }
        let tcp = TcpRepr {
            src_port: src.port(),
            dst_port: dst.port(),
            flags,
            seq_number: SeqNumber(num(&o, n, "seq")?),
            ack_number: SeqNumber(num(&o, n, "ack")?),
            window_len: num(&o, n, "win")?,
            urgent_at: 0,
            max_seg_size: o.int("mss").and_then(|v| u16::try_from(v).ok()),
            window_scale: o.int("wscale").and_then(|v| u8::try_from(v).ok()),
            sack_permitted: o.bool("sack_ok").unwrap_or(false),
            sack_ranges: sack,
            timestamp: o
                .int("tsval")
                .zip(o.int("tsecr"))
                .and_then(|(v, e)| Some((u32::try_from(v).ok()?, u32::try_from(e).ok()?))),
            payload: &[],
        };
        let len: u32 = num(&o, n, "len")?;
        // Group by the unordered pair of endpoints, as for a pcap.
        let key = if src <= dst { (src, dst) } else { (dst, src) };
        let new_syn = flags.syn() && !flags.ack();
        let idx = match by_pair.get(&key) {
            Some(&i) if !(new_syn && trace.connections[i].closed) => i,
            _ => {
                if trace.connections.len() >= MAX_CONNECTIONS {
                    trace.skipped.too_many_connections += 1;
                    continue;
                }
                let (client, server) = if flags.syn() && !flags.ack() {
                    (src, dst)
                } else if flags.syn() || src.port() < dst.port() {
                    (dst, src)
                } else {
                    (src, dst)
                };
                trace
                    .connections
                    .push(Connection::new(client, server, ts_nanos));
                by_pair.insert(key, trace.connections.len() - 1);
                trace.connections.len() - 1
            }
        };
        let c = &mut trace.connections[idx];
        let from_client = src == c.client;
        if let Some(seg) = c.push(n, ts_nanos, from_client, &tcp, len as usize) {
            seg.decision = o
                .str("decision")
                .and_then(|d| super::conn::decision_note(d, o.str("reason")));
        }
    }
    if n == 0 {
        return Err(LadderError::Empty);
    }
    Ok(trace)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ladder::Tag;

    const TRACE: &str = r#"{"ev":"trace_start","version":1,"addr":"10.0.0.2","seed":1,"wall_us":1000000}
{"t_us":10,"ev":"seg","dir":"in","id":0,"local":"10.0.0.2:80","remote":"10.0.0.1:40000","flags":"SYN","seq":100,"ack":0,"win":64240,"len":0,"mss":1460,"wscale":7,"sack_ok":true,"tsval":1,"tsecr":0,"decision":"accepted"}
{"t_us":10,"ev":"state","id":0,"local":"10.0.0.2:80","remote":"10.0.0.1:40000","from":"LISTEN","to":"SYN-RECEIVED"}
{"t_us":20,"ev":"seg","dir":"out","id":0,"local":"10.0.0.2:80","remote":"10.0.0.1:40000","flags":"SYN,ACK","seq":5000,"ack":101,"win":65535,"len":0,"mss":1460,"wscale":5,"decision":"sent"}
{"t_us":30,"ev":"seg","dir":"in","id":0,"local":"10.0.0.2:80","remote":"10.0.0.1:40000","flags":"ACK","seq":101,"ack":5001,"win":502,"len":0,"decision":"accepted"}
{"t_us":40,"ev":"seg","dir":"out","id":0,"local":"10.0.0.2:80","remote":"10.0.0.1:40000","flags":"PSH,ACK","seq":5001,"ack":101,"win":2048,"len":100,"decision":"sent"}
{"t_us":250040,"ev":"timer","id":0,"local":"10.0.0.2:80","remote":"10.0.0.1:40000","timer":"rto"}
{"t_us":250040,"ev":"seg","dir":"out","id":0,"local":"10.0.0.2:80","remote":"10.0.0.1:40000","flags":"PSH,ACK","seq":5001,"ack":101,"win":2048,"len":100,"decision":"retransmitted"}
"#;

    #[test]
    fn draws_segments_of_a_trace() {
        assert!(looks_like_trace(TRACE.as_bytes()));
        let t = load(TRACE.as_bytes()).unwrap();
        assert_eq!(t.connections.len(), 1);
        let c = &t.connections[0];
        assert_eq!(c.client, "10.0.0.1:40000".parse().unwrap());
        assert_eq!(c.segments.len(), 5);
        assert_eq!(c.segments[3].seq, 1);
        assert_eq!(c.segments[3].window, 2048 << 5);
        assert_eq!(c.segments[4].tags, vec![Tag::Retransmission]);
        assert_eq!(c.segments[4].decision.as_deref(), Some("retransmitted"));
        assert_eq!(c.segments[0].decision, None);
        assert_eq!(
            c.segments[4].time,
            std::time::Duration::from_micros(250_030)
        );
        assert_eq!(t.start_nanos, 1_000_010_000);
        let text = crate::ladder::text::render(&t, 0, 100);
        assert!(
            text.contains("SYN-ACK") && text.contains("RETRANS"),
            "{text}"
        );
    }

    #[test]
    fn bad_lines_are_typed_errors_with_line_numbers() {
        let e = load(&b"{\"ev\":\"seg\",\"t_us\":1}\n"[..]).unwrap_err();
        assert!(matches!(e, LadderError::BadTrace { line: 1, .. }), "{e}");
        let e = load(&b"\n{\"ev\":\"seg\",\"t_us\":x}\n"[..]).unwrap_err();
        assert!(matches!(e, LadderError::BadTrace { line: 2, .. }), "{e}");
        // Every prefix of a good trace: a trace or an error, never a panic.
        for i in 0..TRACE.len() {
            let _ = load(&TRACE.as_bytes()[..i]);
        }
    }
}
