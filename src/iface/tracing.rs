//! The stack's hooks for the event trace ([`crate::trace`]).
//!
//! Everything the trace says is derived here, at the interface: a segment's
//! decision from the drop reason and the receiver's RCV.NXT before it was
//! processed, state transitions and congestion-window changes by comparing
//! a connection before and after each call (in `after_op`), timers from the
//! TCB's deadlines. The state machine is not touched. With tracing off the
//! hooks in `mod.rs` cost one branch each.
//!
//! The same segment hooks feed the segment recording behind live ladder
//! diagrams ([`crate::trace::segments`]) while it is armed.

use super::{conn_key, ConnKey, Stack, TW_TAG};
use crate::iface::DropReason;
use crate::tcp::socket::{seq_gt, seq_le, Tcb};
use crate::tcp::{SocketHandle, State};
use crate::time::Instant;
use crate::trace::segments::SegmentLog;
use crate::trace::{parse_tcp, Decision, Dir, EventKind, SegInfo, TraceEvent, Tracer, Transition};
use std::net::SocketAddrV4;

/// What `trace_in_pre` learnt about an incoming segment before the stack
/// processed it.
pub(super) struct InPre {
    /// Position of the segment event in the trace queue (full tracing).
    pos: Option<usize>,
    /// Number of its record in the segment log (live ladders).
    rec: Option<u64>,
    key: ConnKey,
    id: Option<u32>,
    /// RCV.NXT before processing, if the connection was synchronized.
    rcv_nxt: Option<u32>,
    seq: u32,
    len: u32,
    sack: bool,
}

/// A connection whose segments can be drawn as a live ladder diagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LadderTarget {
    pub handle: SocketHandle,
    pub local: SocketAddrV4,
    pub remote: SocketAddrV4,
    /// The state, if the connection is still open.
    pub state: Option<State>,
}

impl Stack {
    /// Record every event (state transitions, segments with decisions,
    /// timers, congestion changes) for [`Stack::drain_trace`]. Off by default.
    pub fn set_tracing(&mut self, on: bool) {
        self.trace.set_full(on);
    }

    /// Keep the last [`crate::trace::HISTORY_LIMIT`] state transitions of
    /// all connections for [`Stack::recent_transitions`] (the dashboard).
    /// Off by default.
    pub fn set_transition_history(&mut self, on: bool) {
        self.trace.set_history(on);
    }

    /// Move the recorded events to `out`, oldest first.
    pub fn drain_trace(&mut self, out: &mut Vec<TraceEvent>) {
        self.trace.drain(out);
    }

    /// The latest state transitions, oldest first (with
    /// [`Stack::set_transition_history`] on).
    pub fn recent_transitions(&self) -> impl Iterator<Item = &Transition> {
        self.trace.transitions()
    }

    /// Record recent segments for live ladder diagrams
    /// ([`crate::trace::segments`]): on while a dashboard is connected.
    /// Off (the default), the records are freed.
    pub fn set_segment_recording(&mut self, on: bool) {
        let now = self.trace.now;
        self.trace.segments.set_on(on, now);
    }

    /// The segment recording, for reading.
    pub fn segment_log(&self) -> &SegmentLog {
        &self.trace.segments
    }

    /// Give connection `t` a ring of recorded segments of its own (the
    /// dashboard selected it). False if too many connections are watched.
    pub fn watch_segments(&mut self, t: &LadderTarget) -> bool {
        self.trace.segments.watch(t.handle, t.local, t.remote)
    }

    /// Undo one [`Stack::watch_segments`].
    pub fn unwatch_segments(&mut self, t: &LadderTarget) {
        self.trace.segments.unwatch(t.handle);
    }

    /// The connection with number `id` (as `/api/stats` shows it) and, if
    /// given, remote address `remote`: the open one, else the latest one
    /// with recorded segments.
    pub fn ladder_target(&self, id: u32, remote: Option<SocketAddrV4>) -> Option<LadderTarget> {
        let live = self.slots.get(id as usize).and_then(|s| {
            let t = s.tcb.as_ref()?;
            (remote.is_none_or(|r| r == t.remote) && t.state() != State::Closed).then_some(
                LadderTarget {
                    handle: SocketHandle {
                        index: id,
                        generation: s.generation,
                    },
                    local: t.local,
                    remote: t.remote,
                    state: Some(t.state()),
                },
            )
        });
        live.or_else(|| {
            let (handle, local, remote) = self.trace.segments.find(id, remote)?;
            Some(self.target_of(handle, local, remote))
        })
    }

    /// The connection whose remote port is `port`: the latest one with
    /// recorded segments, else an open one.
    pub fn ladder_target_by_port(&self, port: u16) -> Option<LadderTarget> {
        if let Some((handle, local, remote)) = self.trace.segments.find_port(port) {
            return Some(self.target_of(handle, local, remote));
        }
        self.slots.iter().enumerate().find_map(|(i, s)| {
            let t = s.tcb.as_ref()?;
            (t.remote.port() == port).then_some(LadderTarget {
                handle: SocketHandle {
                    index: i as u32,
                    generation: s.generation,
                },
                local: t.local,
                remote: t.remote,
                state: Some(t.state()),
            })
        })
    }

    fn target_of(
        &self,
        handle: SocketHandle,
        local: SocketAddrV4,
        remote: SocketAddrV4,
    ) -> LadderTarget {
        let state = self
            .slots
            .get(handle.index as usize)
            .filter(|s| s.generation == handle.generation)
            .and_then(|s| s.tcb.as_ref())
            .map(|t| t.state())
            .or_else(|| {
                // Gone from its slot into a compact TIME-WAIT record?
                self.conns
                    .get(&conn_key(local, remote))
                    .filter(|&&i| i & TW_TAG != 0)
                    .map(|_| State::TimeWait)
            });
        LadderTarget {
            handle,
            local,
            remote,
            state,
        }
    }

    /// The handle of the connection in slot `idx` now.
    fn handle_of(&self, idx: u32) -> Option<SocketHandle> {
        let s = self.slots.get(idx as usize)?;
        Some(SocketHandle {
            index: idx,
            generation: s.generation,
        })
    }

    /// Before an incoming packet is processed: queue its segment event
    /// and record it.
    pub(super) fn trace_in_pre(&mut self, packet: &[u8]) -> Option<InPre> {
        let (src, dst, repr) = parse_tcp(packet)?;
        let key: ConnKey = (u32::from(*src.ip()), src.port(), dst.port());
        // (a compact TIME-WAIT record has no slot: no id until it is rebuilt)
        let id = self.conns.get(&key).copied().filter(|&i| i & TW_TAG == 0);
        let rcv_nxt = id
            .and_then(|i| self.slots.get(i as usize))
            .and_then(|s| s.tcb.as_ref())
            .filter(|t| t.state().is_synchronized())
            .map(|t| t.rcv_nxt());
        let seg = SegInfo::from_repr(Dir::In, &repr, Decision::Accepted);
        let now = self.trace.now;
        let pos = self.trace.push(TraceEvent {
            t: now,
            id,
            local: dst,
            remote: src,
            kind: EventKind::Segment(seg),
        });
        let rec = if self.trace.segments.armed(now) {
            let conn = id.and_then(|i| self.handle_of(i));
            let log = &mut self.trace.segments;
            log.record(now, conn, dst, src, seg, repr.payload);
            Some(log.last_n())
        } else {
            None
        };
        if pos.is_none() && rec.is_none() {
            return None;
        }
        Some(InPre {
            pos,
            rec,
            key,
            id,
            rcv_nxt,
            seq: repr.seq_number.0,
            len: repr.payload.len() as u32,
            sack: repr.sack_ranges[0].is_some(),
        })
    }

    /// After it was processed: fill in the decision.
    pub(super) fn trace_in_post(&mut self, pre: InPre, result: &Result<(), DropReason>) {
        // Data entirely below RCV.NXT fails the acceptability test of RFC
        // 9293 3.10.7.4 like any out-of-window segment (and is re-ACKed),
        // but it has a better name: a duplicate.
        let old = |nxt: u32| pre.len > 0 && seq_le(pre.seq.wrapping_add(pre.len), nxt);
        let decision = match (result, pre.rcv_nxt) {
            (Err(DropReason::TcpOutOfWindow) | Ok(()), Some(nxt)) if old(nxt) => {
                Decision::Duplicate
            }
            (Err(DropReason::TcpOutOfWindow), _) => Decision::OutOfWindow,
            (Err(r), _) => Decision::Dropped(*r),
            (Ok(()), Some(nxt)) if pre.len > 0 && seq_gt(pre.seq, nxt) => Decision::OutOfOrder,
            (Ok(()), _) if pre.sack => Decision::Sacked,
            (Ok(()), _) => Decision::Accepted,
        };
        // A SYN to a listener created the connection: name it.
        let id = pre.id.or_else(|| {
            self.conns
                .get(&pre.key)
                .copied()
                .filter(|&i| i & TW_TAG == 0)
        });
        if let Some(pos) = pre.pos {
            self.trace.set_decision(pos, decision, id);
        }
        if let Some(n) = pre.rec {
            let conn = id.and_then(|i| self.handle_of(i));
            self.trace.segments.set_decision(n, decision, conn);
        }
    }

    /// A packet was handed to the device: trace and record it if it is TCP.
    pub(super) fn trace_out(&mut self, packet: &[u8], id: Option<u32>, retransmission: bool) {
        let Some((src, dst, repr)) = parse_tcp(packet) else {
            return;
        };
        let decision = if retransmission {
            Decision::Retransmitted
        } else {
            Decision::Sent
        };
        let seg = SegInfo::from_repr(Dir::Out, &repr, decision);
        let now = self.trace.now;
        self.trace.push(TraceEvent {
            t: now,
            id,
            local: src,
            remote: dst,
            kind: EventKind::Segment(seg),
        });
        if self.trace.segments.armed(now) {
            let conn = id.and_then(|i| self.handle_of(i));
            self.trace
                .segments
                .record(now, conn, src, dst, seg, repr.payload);
        }
    }
}

/// The timers of `tcb` due at `now`, just before they run.
pub(super) fn trace_timers(tracer: &mut Tracer, idx: u32, tcb: &Tcb, now: Instant) {
    for name in tcb.due_timers(now) {
        tracer.push(TraceEvent {
            t: now,
            id: Some(idx),
            local: tcb.local,
            remote: tcb.remote,
            kind: EventKind::Timer(name),
        });
    }
}

#[cfg(test)]
mod tests {
    use crate::iface::{Config, Stack};
    use crate::tcp::State;
    use crate::time::{Duration, Instant};
    use crate::trace::{Decision, Dir, EventKind, TraceEvent};
    use std::net::{Ipv4Addr, SocketAddrV4};

    const C: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const S: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

    /// Move every packet from `a` to `b` (dropping those `lose` selects).
    fn pump(
        now: Instant,
        a: &mut Stack,
        b: &mut Stack,
        lose: &mut dyn FnMut(&[u8]) -> bool,
    ) -> usize {
        let mut buf = vec![0u8; 2000];
        let mut n = 0;
        while let Some(len) = a.poll_transmit(now, &mut buf) {
            if !lose(&buf[..len]) {
                b.handle_packet(now, &buf[..len]);
            }
            n += 1;
        }
        n
    }

    fn exchange(now: Instant, c: &mut Stack, s: &mut Stack) {
        while pump(now, c, s, &mut |_| false) + pump(now, s, c, &mut |_| false) > 0 {}
    }

    fn segs(evs: &[TraceEvent]) -> Vec<(Dir, String, Decision)> {
        evs.iter()
            .filter_map(|e| match e.kind {
                EventKind::Segment(s) => {
                    Some((s.dir, crate::trace::flag_names(s.flags), s.decision))
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn handshake_data_loss_and_close_are_traced() {
        let mut c = Stack::new(Config::new(C), 1);
        let mut s = Stack::new(Config::new(S), 2);
        s.set_tracing(true);
        s.set_transition_history(true);
        let l = s.listen(80, 8).unwrap();
        let mut now = Instant::from_millis(1);
        let h = c.connect(now, SocketAddrV4::new(S, 80)).unwrap();
        exchange(now, &mut c, &mut s);
        let sh = s.accept(l).unwrap();
        let mut evs = Vec::new();
        s.drain_trace(&mut evs);
        assert_eq!(
            segs(&evs),
            vec![
                (Dir::In, "SYN".into(), Decision::Accepted),
                (Dir::Out, "SYN,ACK".into(), Decision::Sent),
                (Dir::In, "ACK".into(), Decision::Accepted),
            ]
        );
        let states: Vec<(State, State)> = evs
            .iter()
            .filter_map(|e| match e.kind {
                EventKind::State { from, to } => Some((from, to)),
                _ => None,
            })
            .collect();
        assert_eq!(
            states,
            vec![
                (State::Listen, State::SynReceived),
                (State::SynReceived, State::Established)
            ]
        );
        // The segment that caused a transition is logged before it.
        let syn = evs
            .iter()
            .position(|e| matches!(e.kind, EventKind::Segment(_)))
            .unwrap();
        let st = evs
            .iter()
            .position(|e| matches!(e.kind, EventKind::State { .. }))
            .unwrap();
        assert!(syn < st);
        assert!(evs
            .iter()
            .any(|e| matches!(e.kind, EventKind::Congestion { .. })));
        assert!(evs.iter().all(|e| e.id == Some(sh.id())));

        // The server sends two segments; the first is lost on the way.
        s.set_nodelay(sh, true);
        s.send(sh, &[1u8; 2000]).unwrap();
        let mut first = true;
        pump(now, &mut s, &mut c, &mut |_| std::mem::take(&mut first));
        pump(now, &mut c, &mut s, &mut |_| false);
        evs.clear();
        s.drain_trace(&mut evs);
        // The retransmission timer fires and the data goes out again.
        now += Duration::from_secs(2);
        s.handle_timeout(now);
        exchange(now, &mut c, &mut s);
        s.drain_trace(&mut evs);
        assert!(
            evs.iter().any(|e| e.kind == EventKind::Timer("rto")),
            "{evs:?}"
        );
        assert!(segs(&evs)
            .iter()
            .any(|(d, _, dec)| *d == Dir::Out && *dec == Decision::Retransmitted));
        assert!(evs
            .iter()
            .any(|e| matches!(e.kind, EventKind::Congestion { .. })));

        // The same client segment again: a duplicate.
        let mut buf = vec![0u8; 2000];
        c.send(h, b"hello").unwrap();
        let n = c.poll_transmit(now, &mut buf).unwrap();
        s.handle_packet(now, &buf[..n]);
        s.handle_packet(now, &buf[..n]);
        evs.clear();
        s.drain_trace(&mut evs);
        let d: Vec<Decision> = segs(&evs)
            .into_iter()
            .filter(|x| x.0 == Dir::In)
            .map(|x| x.2)
            .collect();
        assert_eq!(d, vec![Decision::Accepted, Decision::Duplicate]);

        // A closed port: the SYN is dropped (no listener) and answered by a RST with no connection.
        let _ = c.connect(now, SocketAddrV4::new(S, 81)).unwrap();
        exchange(now, &mut c, &mut s);
        evs.clear();
        s.drain_trace(&mut evs);
        let nolisten: Vec<(Dir, String, Decision)> = segs(&evs);
        assert!(nolisten.contains(&(
            Dir::In,
            "SYN".into(),
            Decision::Dropped(crate::iface::DropReason::TcpNoListener)
        )));
        assert!(nolisten.contains(&(Dir::Out, "RST,ACK".into(), Decision::Sent)));
        let port81 = evs.iter().filter(|e| e.local.port() == 81);
        assert!(port81.clone().count() >= 2);
        assert!(port81.into_iter().all(|e| e.id.is_none()));

        // Close: the server goes through FIN-WAIT-1 etc.; the history has it.
        let mut sink = [0u8; 64];
        assert_eq!(s.recv(sh, &mut sink), Ok(5));
        s.close(sh);
        exchange(now, &mut c, &mut s);
        let to: Vec<State> = s.recent_transitions().map(|t| t.to).collect();
        assert!(to.contains(&State::FinWait1), "{to:?}");
    }

    /// Client request, server answer in two segments of which the first is
    /// lost, the RTO, the retransmission; returns the server stack and the
    /// server's handle.
    fn lossy_exchange(record: bool) -> (Stack, crate::tcp::SocketHandle) {
        let mut c = Stack::new(Config::new(C), 1);
        let mut s = Stack::new(Config::new(S), 2);
        s.set_segment_recording(record);
        let l = s.listen(80, 8).unwrap();
        let mut now = Instant::from_millis(1);
        let h = c.connect(now, SocketAddrV4::new(S, 80)).unwrap();
        exchange(now, &mut c, &mut s);
        let sh = s.accept(l).unwrap();
        c.send(h, b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
        exchange(now, &mut c, &mut s);
        let mut sink = [0u8; 64];
        assert!(s.recv(sh, &mut sink).unwrap() > 0);
        s.set_nodelay(sh, true);
        let mut answer = b"HTTP/1.1 200 OK\r\nContent-Length: 1990\r\n\r\n".to_vec();
        answer.resize(2000, b'x');
        s.send(sh, &answer).unwrap();
        let mut first = true;
        pump(now, &mut s, &mut c, &mut |_| std::mem::take(&mut first));
        pump(now, &mut c, &mut s, &mut |_| false);
        now += Duration::from_secs(2);
        s.handle_timeout(now);
        exchange(now, &mut c, &mut s);
        (s, sh)
    }

    #[test]
    fn live_ladder_shows_handshake_data_and_the_retransmission() {
        let (s, sh) = lossy_exchange(true);
        let t = s.ladder_target(sh.id(), None).expect("the connection");
        assert_eq!(t.handle, sh);
        assert_eq!(t.state, Some(State::Established));
        let rec = s.segment_log().of(t.handle, t.local, t.remote);
        let trace = crate::ladder::live::trace(&rec, t.local, t.remote, 100);
        let c = &trace.connections[0];
        assert_eq!(c.client, t.remote, "the peer opened the connection");
        let flags: Vec<String> = c.segments.iter().map(|s| s.flag_name()).collect();
        assert_eq!(&flags[..3], ["SYN", "SYN-ACK", "ACK"], "{flags:?}");
        assert_eq!(c.segments[0].seq, 0, "relative sequence numbers");
        assert!(c.segments[0].options.iter().any(|o| o.starts_with("mss")));
        // The request, recognized from the recorded payload prefix.
        let req = c
            .segments
            .iter()
            .find(|s| s.from_client && s.len > 0)
            .unwrap();
        assert_eq!(req.app, vec!["\"GET /x HTTP/1.1\"".to_string()]);
        // The response's first segment (sent, then lost on the way) and its
        // retransmission, marked by the ladder's analysis and by the stack.
        let sent: Vec<&crate::ladder::Segment> = c
            .segments
            .iter()
            .filter(|s| !s.from_client && s.len > 0)
            .collect();
        assert_eq!(sent[0].app, vec!["\"HTTP/1.1 200 OK\"".to_string()]);
        let re = sent
            .iter()
            .find(|s| s.tags.contains(&crate::ladder::Tag::Retransmission))
            .expect("a retransmission in the ladder");
        assert_eq!(re.seq, sent[0].seq);
        assert!(re.frame > sent[0].frame);
        assert_eq!(re.decision.as_deref(), Some("retransmitted"));
        let text = crate::ladder::text::render_connection(&trace, c, sh.id() as usize, 100);
        assert!(
            text.contains("*RETRANS*") && text.contains("(stack: retransmitted)"),
            "{text}"
        );
        assert!(text.contains("recorded by ustack"), "{text}");
    }

    #[test]
    fn recording_off_keeps_nothing() {
        let (s, sh) = lossy_exchange(false);
        assert_eq!(s.segment_log().records(), 0);
        let t = s
            .ladder_target(sh.id(), None)
            .expect("the connection is open");
        assert!(s
            .segment_log()
            .of(t.handle, t.local, t.remote)
            .records
            .is_empty());
    }

    #[test]
    fn off_by_default_records_nothing() {
        let mut c = Stack::new(Config::new(C), 1);
        let mut s = Stack::new(Config::new(S), 2);
        s.listen(80, 8).unwrap();
        let now = Instant::from_millis(1);
        c.connect(now, SocketAddrV4::new(S, 80)).unwrap();
        exchange(now, &mut c, &mut s);
        let mut evs = Vec::new();
        s.drain_trace(&mut evs);
        assert!(evs.is_empty());
        assert_eq!(s.recent_transitions().count(), 0);
    }
}
