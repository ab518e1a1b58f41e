//! Scenario tests for [`WsConnection`], from byte literals.

use super::*;
use crate::ws::frame::emit_frame;

const T0: Instant = Instant::ZERO;
const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fn conn() -> WsConnection {
    WsConnection::new(T0, &WsConfig::default(), None)
}

fn conn_with(cfg: WsConfig, deflate: Option<DeflateParams>) -> WsConnection {
    WsConnection::new(T0, &cfg, deflate)
}

/// A masked client frame.
fn cframe(fin: bool, rsv1: bool, op: u8, payload: &[u8]) -> Vec<u8> {
    let h = FrameHeader {
        fin,
        rsv1,
        rsv2: false,
        rsv3: false,
        opcode: OpCode::Binary,
        mask: Some(KEY),
        payload_len: payload.len() as u64,
    };
    let mut out = Vec::new();
    h.emit(&mut out);
    out[0] = (out[0] & 0xf0) | op; // any opcode, reserved ones too
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], KEY, 0);
    out
}

fn events(c: &mut WsConnection) -> Vec<WsEvent> {
    std::iter::from_fn(|| c.poll_event()).collect()
}

fn output(c: &mut WsConnection) -> Vec<u8> {
    let mut v = vec![0u8; c.output_pending()];
    let n = c.poll_output(&mut v);
    v.truncate(n);
    v
}

/// Output after the events were taken (and thrown away).
fn drain_output(c: &mut WsConnection) -> Vec<u8> {
    let _ = events(c);
    output(c)
}

fn text(s: &str) -> WsEvent {
    WsEvent::Message(Message::Text(s.into()))
}

/// The close frame the server sent (code), if the output is exactly one.
fn sent_close_code(out: &[u8]) -> Option<u16> {
    let (h, n) = FrameHeader::parse(out).ok()??;
    (h.opcode == OpCode::Close && out.len() >= n + 2)
        .then(|| u16::from_be_bytes([out[n], out[n + 1]]))
}

fn assert_fails_with(input: &[u8], code: u16) {
    let mut c = conn();
    c.handle_input(T0, input);
    let ev = events(&mut c);
    assert!(ev.iter().any(|e| matches!(e, WsEvent::Error(_))), "{ev:?}");
    let out = output(&mut c);
    assert_eq!(
        sent_close_code(&out),
        Some(code),
        "input {input:02x?} → output {out:02x?}"
    );
}

#[test]
fn rfc6455_5_7_masked_hello() {
    let mut c = conn();
    c.handle_input(
        T0,
        &[
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ],
    );
    assert_eq!(events(&mut c), vec![text("Hello")]);
}

#[test]
fn rfc6455_5_7_fragmented_hello_with_ping_in_between() {
    let mut c = conn();
    let mut input = cframe(false, false, 0x1, b"Hel");
    input.extend(cframe(true, false, 0x9, b"Hello"));
    input.extend(cframe(true, false, 0x0, b"lo"));
    c.handle_input(T0, &input);
    assert_eq!(events(&mut c), vec![text("Hello")]);
    // The pong carries the ping's payload, unmasked: 8a 05 "Hello".
    assert_eq!(output(&mut c), [0x8a, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
}

#[test]
fn every_truncated_prefix_parses_to_the_same_result() {
    let mut stream = cframe(false, false, 0x1, "κόσ".as_bytes());
    stream.extend(cframe(true, false, 0x9, b"p"));
    stream.extend(cframe(true, false, 0x0, "με".as_bytes()));
    stream.extend(cframe(true, false, 0x2, &[7u8; 300]));
    stream.extend(cframe(true, false, 0x2, &vec![9u8; 70000]));
    let expect = |c: &mut WsConnection| {
        let ev = events(c);
        assert_eq!(ev.len(), 3);
        assert_eq!(ev[0], text("κόσμε"));
        assert_eq!(ev[1], WsEvent::Message(Message::Binary(vec![7u8; 300])));
        assert_eq!(ev[2], WsEvent::Message(Message::Binary(vec![9u8; 70000])));
    };
    // Split in two at every point of the small part, and in 1-byte steps.
    for cut in 0..400 {
        let mut c = conn();
        c.handle_input(T0, &stream[..cut]);
        c.handle_input(T0, &stream[cut..]);
        expect(&mut c);
    }
    let mut c = conn();
    for b in stream.chunks(1) {
        c.handle_input(T0, b);
    }
    expect(&mut c);
}

#[test]
fn reply_to_a_message_before_a_bad_frame_goes_out_before_the_close() {
    // Autobahn 3.2: a valid text, then a frame with RSV2, in one read.
    let mut input = cframe(true, false, 0x1, b"Hello");
    let mut bad = cframe(true, false, 0x1, b"x");
    bad[0] |= 0x20;
    input.extend(bad);
    let mut c = conn();
    c.handle_input(T0, &input);
    assert_eq!(c.poll_event(), Some(text("Hello")));
    c.send(Message::Text("Hello".into())).unwrap();
    assert!(matches!(
        c.poll_event(),
        Some(WsEvent::Error(WsError::ReservedBits))
    ));
    assert!(c.send(Message::Text("late".into())).is_err());
    let out = output(&mut c);
    assert_eq!(&out[..7], b"\x81\x05Hello");
    assert_eq!(sent_close_code(&out[7..]), Some(1002));
    assert!(c.wants_tcp_close());
}

#[test]
fn unmasked_client_frame_is_1002() {
    assert_fails_with(&[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f], 1002);
}

#[test]
fn rsv_bits_without_extension_are_1002() {
    let mut f = cframe(true, false, 0x1, b"x");
    f[0] |= 0x40;
    assert_fails_with(&f, 1002);
    let mut f = cframe(true, false, 0x1, b"x");
    f[0] |= 0x20;
    assert_fails_with(&f, 1002);
    let mut f = cframe(true, false, 0x1, b"x");
    f[0] |= 0x10;
    assert_fails_with(&f, 1002);
}

#[test]
fn opcode_and_fragmentation_rules() {
    assert_fails_with(&cframe(true, false, 0x3, b""), 1002);
    assert_fails_with(&cframe(true, false, 0xb, b""), 1002);
    assert_fails_with(&cframe(true, false, 0x0, b"x"), 1002); // continuation without start
    let mut f = cframe(false, false, 0x1, b"a");
    f.extend(cframe(true, false, 0x1, b"b")); // new message while one is open
    assert_fails_with(&f, 1002);
    assert_fails_with(&cframe(false, false, 0x9, b""), 1002); // fragmented ping
    assert_fails_with(&cframe(true, false, 0x9, &[0u8; 126]), 1002); // ping > 125
    assert_fails_with(&[0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4], 1002);
    // MSB set
}

#[test]
fn close_code_rules() {
    for (code, expect) in [
        (1000u16, 1000u16),
        (1001, 1001),
        (1002, 1002),
        (1003, 1003),
        (1007, 1007),
        (1011, 1011),
        (3000, 3000),
        (4999, 4999),
        (999, 1002),
        (1004, 1002),
        (1005, 1002),
        (1006, 1002),
        (1015, 1002),
        (1016, 1002),
        (2999, 1002),
        (5000, 1002),
        (65535, 1002),
    ] {
        let mut c = conn();
        c.handle_input(T0, &cframe(true, false, 0x8, &code.to_be_bytes()));
        assert_eq!(
            sent_close_code(&drain_output(&mut c)),
            Some(expect),
            "code {code}"
        );
        assert!(c.wants_tcp_close() || expect != code);
    }
}

#[test]
fn close_payload_rules() {
    // Empty close → empty close echoed, clean.
    let mut c = conn();
    c.handle_input(T0, &cframe(true, false, 0x8, b""));
    assert_eq!(
        events(&mut c),
        vec![WsEvent::Closed {
            code: None,
            reason: String::new(),
            clean: true
        }]
    );
    assert_eq!(output(&mut c), [0x88, 0x00]);
    assert!(c.wants_tcp_close());
    // One byte → 1002.
    assert_fails_with(&cframe(true, false, 0x8, &[0x03]), 1002);
    // Invalid UTF-8 reason → 1007.
    assert_fails_with(&cframe(true, false, 0x8, &[0x03, 0xe8, 0xff]), 1007);
    // Code + reason echoes the code.
    let mut c = conn();
    c.handle_input(T0, &cframe(true, false, 0x8, b"\x03\xe8bye"));
    assert!(!c.wants_tcp_close(), "the echo is not written yet");
    assert_eq!(
        events(&mut c),
        vec![WsEvent::Closed {
            code: Some(1000),
            reason: "bye".into(),
            clean: true
        }]
    );
    assert_eq!(output(&mut c), [0x88, 0x02, 0x03, 0xe8]);
    assert!(c.wants_tcp_close());
    // Nothing is read after the close.
    c.handle_input(T0, &cframe(true, false, 0x1, b"late"));
    assert!(events(&mut c).is_empty());
}

#[test]
fn server_initiated_close_and_timeout() {
    let mut c = conn();
    c.close(T0, 1001, "going");
    assert_eq!(output(&mut c), b"\x88\x07\x03\xe9going");
    assert!(!c.wants_tcp_close());
    assert_eq!(c.send(Message::Text("x".into())), Err(WsError::Closing));
    // Data arriving meanwhile is skipped, the peer's close completes it.
    c.handle_input(T0, &cframe(true, false, 0x1, b"ignored"));
    c.handle_input(T0, &cframe(true, false, 0x8, &1001u16.to_be_bytes()));
    assert!(c.wants_tcp_close());
    assert!(output(&mut c).is_empty(), "no second close");
    assert_eq!(
        events(&mut c),
        vec![WsEvent::Closed {
            code: Some(1001),
            reason: String::new(),
            clean: true
        }]
    );

    let mut c = conn();
    c.close(T0, 1000, "");
    let deadline = c.poll_at().unwrap();
    assert_eq!(deadline, T0 + WsConfig::default().close_timeout);
    c.handle_timeout(deadline - Duration::from_millis(1));
    assert!(!c.wants_tcp_close());
    c.handle_timeout(deadline);
    assert!(c.wants_tcp_close());
    assert!(events(&mut c).contains(&WsEvent::Error(WsError::CloseTimeout)));
}

#[test]
fn utf8_split_across_fragments() {
    // "€" = e2 82 ac split over three frames.
    let mut c = conn();
    let mut f = cframe(false, false, 0x1, &[0xe2]);
    f.extend(cframe(false, false, 0x0, &[0x82]));
    f.extend(cframe(true, false, 0x0, &[0xac]));
    c.handle_input(T0, &f);
    assert_eq!(events(&mut c), vec![text("€")]);
    // Truncated at the end of the message → 1007.
    let mut f = cframe(false, false, 0x1, b"ok");
    f.extend(cframe(true, false, 0x0, &[0xe2, 0x82]));
    assert_fails_with(&f, 1007);
}

#[test]
fn utf8_fails_fast_inside_an_unfinished_frame() {
    // A frame announcing 100 bytes whose 4th byte is invalid: the error
    // comes before the remaining 96 bytes arrive.
    let mut payload = b"abc\xff".to_vec();
    payload.resize(100, b'x');
    let f = cframe(false, false, 0x1, &payload);
    let header_len = 2 + 4;
    let mut c = conn();
    c.handle_input(T0, &f[..header_len + 4]);
    let ev = events(&mut c);
    assert_eq!(ev[0], WsEvent::Error(WsError::InvalidUtf8 { position: 3 }));
    assert_eq!(sent_close_code(&drain_output(&mut c)), Some(1007));
    // The frame structure is intact: the peer's close still completes.
    c.handle_input(T0, &f[header_len + 4..]);
    c.handle_input(T0, &cframe(true, false, 0x8, &1007u16.to_be_bytes()));
    assert!(c.wants_tcp_close());
}

#[test]
fn limits_give_1009() {
    let cfg = WsConfig {
        max_frame: 100,
        max_message: 150,
        ..Default::default()
    };
    let mut c = conn_with(cfg.clone(), None);
    c.handle_input(T0, &cframe(true, false, 0x2, &[0u8; 101]));
    assert_eq!(sent_close_code(&drain_output(&mut c)), Some(1009));
    let mut c = conn_with(cfg, None);
    let mut f = cframe(false, false, 0x2, &[0u8; 100]);
    f.extend(cframe(true, false, 0x0, &[0u8; 51]));
    c.handle_input(T0, &f);
    assert_eq!(sent_close_code(&drain_output(&mut c)), Some(1009));
}

#[test]
fn send_and_backpressure() {
    let cfg = WsConfig {
        max_output_buffer: 10,
        ..Default::default()
    };
    let mut c = conn_with(cfg, None);
    c.send(Message::Text("Hello".into())).unwrap();
    c.send(Message::Binary(vec![1; 10])).unwrap();
    assert_eq!(
        c.send(Message::Text("x".into())),
        Err(WsError::OutputBufferFull {
            pending: 19,
            max: 10
        })
    );
    let out = output(&mut c);
    assert_eq!(&out[..7], &[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
    assert_eq!(&out[7..9], &[0x82, 0x0a]);
    assert!(c.send(Message::Text("x".into())).is_ok());
}

#[test]
fn keepalive_ping_and_expiry() {
    let k = Duration::from_secs(10);
    let cfg = WsConfig {
        keepalive_ping: Some(k),
        ..Default::default()
    };
    let mut c = conn_with(cfg, None);
    assert_eq!(c.poll_at(), Some(T0 + k));
    c.handle_timeout(T0 + k);
    assert_eq!(output(&mut c), b"\x89\x09keepalive");
    // A pong resets it.
    c.handle_input(T0 + k, &cframe(true, false, 0xa, b"keepalive"));
    assert_eq!(events(&mut c), vec![WsEvent::Pong(b"keepalive".to_vec())]);
    assert_eq!(c.poll_at(), Some(T0 + k + k));
    c.handle_timeout(T0 + k + k);
    assert_eq!(output(&mut c), b"\x89\x09keepalive");
    // Silence for another interval → close 1001.
    c.handle_timeout(T0 + k * 3);
    assert_eq!(sent_close_code(&drain_output(&mut c)), Some(1001));
}

#[test]
fn eof_without_close_is_1006() {
    let mut c = conn();
    c.handle_eof(T0);
    assert!(c.wants_tcp_close());
    assert_eq!(
        events(&mut c),
        vec![WsEvent::Closed {
            code: Some(1006),
            reason: String::new(),
            clean: false
        }]
    );
}

#[test]
fn rfc7692_compressed_hello_and_deflate_round_trip() {
    let mut c = conn_with(WsConfig::default(), Some(DeflateParams::default()));
    // 7.2.3.1: "Hello" compressed is f2 48 cd c9 c9 07 00 with RSV1.
    c.handle_input(
        T0,
        &cframe(true, true, 0x1, &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]),
    );
    assert_eq!(events(&mut c), vec![text("Hello")]);
    // Fragmented compressed message: RSV1 only on the first frame.
    let mut f = cframe(false, true, 0x1, &[0xf2, 0x48]);
    f.extend(cframe(true, false, 0x0, &[0xcd, 0xc9, 0xc9, 0x07, 0x00]));
    c.handle_input(T0, &f);
    assert_eq!(events(&mut c), vec![text("Hello")]);
    // RSV1 on a continuation frame → 1002.
    let mut f = cframe(false, true, 0x1, &[0xf2]);
    f.extend(cframe(true, true, 0x0, &[0x48]));
    c.handle_input(T0, &f);
    assert_eq!(sent_close_code(&drain_output(&mut c)), Some(1002));
    // Outgoing: compressed with RSV1, decodable by a fresh inflater.
    let mut c = conn_with(WsConfig::default(), Some(DeflateParams::default()));
    c.send(Message::Text("Hello".into())).unwrap();
    let out = output(&mut c);
    assert_eq!(out[0], 0xc1); // FIN | RSV1 | text
    assert_eq!(&out[2..], &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
}

#[test]
fn rsv1_on_control_frame_with_deflate_is_1002() {
    let mut c = conn_with(WsConfig::default(), Some(DeflateParams::default()));
    c.handle_input(T0, &cframe(true, true, 0x9, b""));
    assert_eq!(sent_close_code(&drain_output(&mut c)), Some(1002));
}

#[test]
fn decompression_bomb_is_1009() {
    let cfg = WsConfig {
        max_message: 1 << 20,
        ..Default::default()
    };
    let mut c = conn_with(cfg, Some(DeflateParams::default()));
    let mut tx = crate::ws::deflate::DeflateCodec::new(DeflateParams::default());
    let z = tx.compress_message(&vec![b'a'; 8 << 20]);
    c.handle_input(T0, &cframe(true, true, 0x2, &z));
    assert_eq!(sent_close_code(&drain_output(&mut c)), Some(1009));
}

#[test]
fn tungstenite_client_frames_cross_check() {
    use tungstenite::protocol::frame::{Frame, Utf8Bytes};
    let mut frame = Frame::message(
        Utf8Bytes::from_static("Hello tungstenite"),
        tungstenite::protocol::frame::coding::OpCode::Data(
            tungstenite::protocol::frame::coding::Data::Text,
        ),
        true,
    );
    frame.header_mut().mask = Some([0xde, 0xad, 0xbe, 0xef]);
    let mut bytes = Vec::new();
    frame.format(&mut bytes).unwrap();
    assert_eq!(&bytes[2..6], &[0xde, 0xad, 0xbe, 0xef]);
    let mut c = conn();
    c.handle_input(T0, &bytes);
    assert_eq!(events(&mut c), vec![text("Hello tungstenite")]);
    // And our server frame parses in tungstenite.
    let mut out = Vec::new();
    emit_frame(&mut out, OpCode::Binary, false, &[1, 2, 3]);
    let mut cur = std::io::Cursor::new(out);
    let mut fr = tungstenite::protocol::frame::FrameSocket::new(&mut cur);
    let f = fr.read(None).unwrap().unwrap();
    assert_eq!(f.payload(), &[1, 2, 3]);
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]
        #[test]
        fn arbitrary_bytes_never_panic_and_memory_stays_bounded(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..20),
            deflate in any::<bool>(),
        ) {
            let cfg = WsConfig { max_frame: 1000, max_message: 2000, max_output_buffer: 4000, ..Default::default() };
            let mut c = conn_with(cfg, deflate.then(DeflateParams::default));
            for (i, ch) in chunks.iter().enumerate() {
                c.handle_input(Instant::from_millis(i as u64), ch);
                while let Some(_e) = c.poll_event() {}
                prop_assert!(c.output_pending() <= 4000 + 200);
                if let Some(m) = &c.message { prop_assert!(m.buf.capacity() <= 2001 + 4096); }
            }
            c.handle_timeout(Instant::from_secs(100));
            c.handle_eof(Instant::from_secs(100));
            prop_assert!(c.wants_tcp_close());
        }
    }
}

/// Heap bytes an idle connection holds in its own buffers (capacities).
fn held(c: &WsConnection) -> usize {
    c.control.capacity()
        + c.scratch.capacity()
        + c.out.capacity()
        + c.events.capacity() * std::mem::size_of::<WsEvent>()
}

#[test]
fn idle_connection_holds_no_buffers_and_no_zlib_state() {
    // Deflate without context takeover (what the server negotiates by
    // default): messages in both directions, pings, then idle.
    let p = DeflateParams {
        server_no_context_takeover: true,
        client_no_context_takeover: true,
        ..Default::default()
    };
    let mut c = conn_with(WsConfig::default(), Some(p));
    assert_eq!(held(&c), 0, "a fresh connection allocates nothing");
    assert_eq!(c.codec.as_ref().unwrap().holds_state(), (false, false));
    let mut client = crate::ws::deflate::DeflateCodec::new(p);
    for i in 0..3 {
        let msg = format!("message {i} message {i} message {i}");
        let z = client.compress_message(msg.as_bytes());
        // Split the frame so the inflater lives across two inputs.
        let f = cframe(true, true, 0x1, &z);
        c.handle_input(T0, &f[..f.len() / 2]);
        assert!(c.codec.as_ref().unwrap().holds_state().1);
        c.handle_input(T0, &f[f.len() / 2..]);
        assert_eq!(events(&mut c), vec![text(&msg)]);
        c.send(Message::Text(msg)).unwrap();
        c.handle_input(T0, &cframe(true, false, 0x9, b"ping"));
        assert!(!output(&mut c).is_empty());
        assert_eq!(
            c.codec.as_ref().unwrap().holds_state(),
            (false, false),
            "zlib state is given back after each message"
        );
        assert_eq!(held(&c), 0, "idle again: no buffer kept");
    }
    // With context takeover the windows must survive, so they stay, but
    // only once used.
    let mut c = conn_with(WsConfig::default(), Some(DeflateParams::default()));
    assert_eq!(c.codec.as_ref().unwrap().holds_state(), (false, false));
    c.send(Message::Text("x".into())).unwrap();
    assert_eq!(c.codec.as_ref().unwrap().holds_state(), (true, false));
}

#[test]
fn connection_struct_size_is_pinned() {
    // What every idle WebSocket costs inline (inside the web service's
    // boxed per-connection state), x86_64: 456 bytes. The issue-6 budget
    // is 4096 bytes per idle connection for everything (TCB, slab slot,
    // maps, this); this pin makes growth a conscious decision. Big,
    // rarely used state goes behind `Option<Box<..>>` (like the deflate
    // codec's flate2 handles, 2 x ~150 bytes: the codec is 24).
    assert!(
        std::mem::size_of::<WsConnection>() <= 480,
        "{}",
        std::mem::size_of::<WsConnection>()
    );
}
