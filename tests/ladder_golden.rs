//! Golden tests of `ustack ladder`: four small connections are generated
//! deterministically with `ladder::synth` (wire emitters + pcap writer), and
//! their text and SVG drawings are compared with the files committed in
//! tests/data/. Regenerate them with `UPDATE_GOLDEN=1 cargo test --test
//! ladder_golden` and review the diff.

use std::path::PathBuf;
use ustack::ladder::synth::{ws_frame, Framing, Synth, C2S, S2C};
use ustack::ladder::{self, Select};
use ustack::wire::TcpFlags;

const A: TcpFlags = TcpFlags::ACK;
const FA: TcpFlags = TcpFlags(TcpFlags::FIN.0 | TcpFlags::ACK.0);

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

fn new_synth(port: u16, framing: Framing) -> Synth {
    Synth::new(
        "10.0.0.1:40000".parse().unwrap(),
        format!("10.0.0.2:{port}").parse().unwrap(),
    )
    .framing(framing)
}

fn handshake(s: &mut Synth) {
    s.send(0, C2S, Synth::syn(64240).with_syn_options(7));
    s.send(51, S2C, Synth::syn(65535).with_syn_options(7).with_ack(1));
    s.send(70, C2S, Synth::seg(A, 1, 1, 502));
}

const GET: &[u8] =
    b"GET /index.html HTTP/1.1\r\nHost: 10.0.0.2\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n";
const RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 13\r\n\r\nHello, world!";

/// Handshake, GET, response, orderly close (client closes first).
fn http(framing: Framing) -> Vec<u8> {
    let mut s = new_synth(80, framing);
    handshake(&mut s);
    let g = GET.len() as u32;
    let r = RESPONSE.len() as u32;
    s.send(90, C2S, Synth::seg(A, 1, 1, 502).with_payload(GET));
    s.send(310, S2C, Synth::seg(A, 1, 1 + g, 509));
    s.send(
        1_240,
        S2C,
        Synth::seg(A, 1, 1 + g, 509).with_payload(RESPONSE),
    );
    s.send(1_290, C2S, Synth::seg(A, 1 + g, 1 + r, 501));
    s.send(1_400, C2S, Synth::seg(FA, 1 + g, 1 + r, 501));
    s.send(1_520, S2C, Synth::seg(FA, 1 + r, 2 + g, 509));
    s.send(1_560, C2S, Synth::seg(A, 2 + g, 2 + r, 501));
    s.finish()
}

/// A bulk upload where the second segment is lost after the capture point:
/// three duplicate ACKs with SACK blocks, a fast retransmit, and later a
/// timeout retransmission of the last segment; the client aborts with RST.
fn retransmission() -> Vec<u8> {
    let mut s = new_synth(5001, Framing::Raw);
    handshake(&mut s);
    let mss = [0x61u8; 1000];
    for i in 0..5u32 {
        s.send(
            100 + 10 * i as u64,
            C2S,
            Synth::seg(A, 1 + 1000 * i, 1, 502).with_payload(&mss),
        );
    }
    // Segment 1001:2001 never arrives.
    s.send(560, S2C, Synth::seg(A, 1, 1001, 509));
    s.send(570, S2C, Synth::seg(A, 1, 1001, 509).with_sack(2001, 3001));
    s.send(580, S2C, Synth::seg(A, 1, 1001, 509).with_sack(2001, 4001));
    s.send(590, S2C, Synth::seg(A, 1, 1001, 509).with_sack(2001, 5001));
    // Fast retransmit (RFC 5681 3.2) after the third duplicate.
    s.send(600, C2S, Synth::seg(A, 1001, 1, 502).with_payload(&mss));
    s.send(1_050, S2C, Synth::seg(A, 1, 5001, 509));
    s.send(1_100, C2S, Synth::seg(A, 5001, 1, 502).with_payload(&mss));
    // Its ACK is lost: retransmission by timeout 200 ms later (RTO).
    s.send(201_100, C2S, Synth::seg(A, 5001, 1, 502).with_payload(&mss));
    s.send(201_550, S2C, Synth::seg(A, 1, 6001, 509));
    s.send(1_450_000, C2S, Synth::seg(TcpFlags::RST | A, 6001, 1, 0));
    s.finish()
}

/// The server's receive buffer fills: zero window, probes (Linux style and
/// RFC 9293 style), a window update, and the rest of the data.
fn zero_window() -> Vec<u8> {
    let mut s = new_synth(7, Framing::Raw);
    handshake(&mut s);
    let d = [0x62u8; 1000];
    s.send(100, C2S, Synth::seg(A, 1, 1, 502).with_payload(&d));
    s.send(110, C2S, Synth::seg(A, 1001, 1, 502).with_payload(&d));
    s.send(400, S2C, Synth::seg(A, 1, 1001, 4));
    s.send(410, S2C, Synth::seg(A, 1, 2001, 0));
    // Linux probes with an empty segment one byte below snd.nxt.
    s.send(210_000, C2S, Synth::seg(A, 2000, 1, 502));
    s.send(210_300, S2C, Synth::seg(A, 1, 2001, 0));
    // An RFC 9293 probe: one new byte.
    s.send(
        620_000,
        C2S,
        Synth::seg(A, 2001, 1, 502).with_payload(&d[..1]),
    );
    s.send(620_300, S2C, Synth::seg(A, 1, 2001, 0));
    // The application reads: window update.
    s.send(900_000, S2C, Synth::seg(A, 1, 2001, 16));
    s.send(900_200, C2S, Synth::seg(A, 2001, 1, 502).with_payload(&d));
    s.send(900_500, S2C, Synth::seg(A, 1, 3001, 16));
    s.send(901_000, C2S, Synth::seg(FA, 3001, 1, 502));
    s.send(901_300, S2C, Synth::seg(FA, 1, 3002, 16));
    s.send(901_500, C2S, Synth::seg(A, 3002, 2, 502));
    s.finish()
}

const UPGRADE: &[u8] = b"GET /chat HTTP/1.1\r\nHost: 10.0.0.2\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
const SWITCH: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";

/// WebSocket: upgrade, a masked text frame and its echo, a close handshake.
fn websocket() -> Vec<u8> {
    let mut s = new_synth(80, Framing::Raw);
    handshake(&mut s);
    let key = [0x37, 0xfa, 0x21, 0x3d];
    let hello = ws_frame(1, Some(key), b"Hello");
    let echo = ws_frame(1, None, b"Hello");
    let close_c = ws_frame(8, Some(key), &1000u16.to_be_bytes());
    let close_s = ws_frame(8, None, &1000u16.to_be_bytes());
    let (mut c, mut v) = (1u32, 1u32);
    let next = |n: &mut u32, len: usize| {
        let old = *n;
        *n += len as u32;
        old
    };
    let sq = next(&mut c, UPGRADE.len());
    s.send(100, C2S, Synth::seg(A, sq, v, 502).with_payload(UPGRADE));
    let sq = next(&mut v, SWITCH.len());
    s.send(600, S2C, Synth::seg(A, sq, c, 509).with_payload(SWITCH));
    let sq = next(&mut c, hello.len());
    s.send(5_000, C2S, Synth::seg(A, sq, v, 502).with_payload(&hello));
    let sq = next(&mut v, echo.len());
    s.send(5_400, S2C, Synth::seg(A, sq, c, 509).with_payload(&echo));
    s.send(5_450, C2S, Synth::seg(A, c, v, 502));
    let sq = next(&mut c, close_c.len());
    s.send(9_000, C2S, Synth::seg(A, sq, v, 502).with_payload(&close_c));
    let sq = next(&mut v, close_s.len());
    s.send(9_300, S2C, Synth::seg(A, sq, c, 509).with_payload(&close_s));
    s.send(9_350, S2C, Synth::seg(FA, v, c, 509));
    s.send(9_500, C2S, Synth::seg(FA, c, v + 1, 502));
    s.send(9_700, S2C, Synth::seg(A, v + 1, c + 1, 509));
    s.finish()
}

/// Compare `got` with the golden file, or write it with UPDATE_GOLDEN=1.
fn golden(name: &str, got: &[u8]) {
    let path = data_dir().join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(data_dir()).unwrap();
        std::fs::write(&path, got).unwrap();
        return;
    }
    let want = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with UPDATE_GOLDEN=1 to create)",
            path.display()
        )
    });
    if want != got {
        let tmp = std::env::temp_dir().join(format!("ladder-got-{name}"));
        let _ = std::fs::write(&tmp, got);
        panic!(
            "{name} differs from the golden file; got written to {} (UPDATE_GOLDEN=1 to accept)",
            tmp.display()
        );
    }
}

/// Check pcap, text and SVG of one scenario; return the text.
fn check(name: &str, pcap: &[u8]) -> String {
    golden(&format!("ladder_{name}.pcap"), pcap);
    let trace = ladder::load(pcap).unwrap();
    let idx = trace.select(Select::First).unwrap();
    let text = ladder::text::render(&trace, idx, 200);
    golden(&format!("ladder_{name}.txt"), text.as_bytes());
    let svg = ladder::svg::render(&trace, idx, 200);
    golden(&format!("ladder_{name}.svg"), svg.as_bytes());
    text
}

fn line_with<'a>(text: &'a str, needle: &str) -> &'a str {
    text.lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in\n{text}"))
}

#[test]
fn http_get_and_close() {
    let text = check("http", &http(Framing::Raw));
    let syn = line_with(&text, "SYN seq=0");
    assert!(syn.contains("[mss 1460,sackOK,TS,wscale 7]") && syn.contains("--->|"));
    assert!(line_with(&text, "SYN-ACK seq=0 ack=1").contains("|<---"));
    // Windows after the handshake are scaled by 2^7.
    assert!(line_with(&text, "ACK seq=1 ack=1 win=64256").contains("--->|"));
    let get = line_with(&text, "\"GET /index.html HTTP/1.1\"");
    assert!(get.contains("PSH-ACK seq=1:82 ack=1 win=64256 len=81"));
    assert!(line_with(&text, "\"HTTP/1.1 200 OK\"").contains("|<---"));
    assert!(line_with(&text, "FIN-ACK seq=82").contains("--->|"));
    assert!(line_with(&text, "FIN-ACK seq=78 ack=83").contains("|<---"));
    assert!(!text.contains('*'), "no analysis marks expected:\n{text}");
}

#[test]
fn other_framings_draw_the_same() {
    let base = ladder::text::render(&ladder::load(&http(Framing::Raw)[..]).unwrap(), 0, 200);
    for f in [
        Framing::Ethernet,
        Framing::LinuxSll,
        Framing::LinuxSll2,
        Framing::RawBigEndianNanos,
    ] {
        let t = ladder::load(&http(f)[..]).unwrap();
        assert_eq!(ladder::text::render(&t, 0, 200), base, "{f:?}");
    }
}

#[test]
fn retransmission_and_dup_acks() {
    let text = check("retrans", &retransmission());
    assert!(line_with(&text, "*DUP-ACK #1*").contains("SACK 2001:3001"));
    assert!(line_with(&text, "*DUP-ACK #2*").contains("SACK 2001:4001"));
    assert!(line_with(&text, "*DUP-ACK #3*").contains("SACK 2001:5001"));
    assert!(line_with(&text, "seq=1001:2001 ack=1 win=64256 len=1000 *RETRANS*").contains("--->|"));
    assert_eq!(text.matches("*RETRANS*").count(), 2);
    assert!(line_with(&text, "RST-ACK").contains("*RST*"));
    assert!(text.contains("s idle ~"), "the 1.25 s pause is shown");
}

#[test]
fn zero_window_and_probes() {
    let text = check("zerowin", &zero_window());
    assert!(line_with(&text, "ack=2001 win=0 *ZERO-WINDOW*").contains("|<---"));
    assert_eq!(text.matches("*ZERO-WINDOW-PROBE*").count(), 2);
    assert!(line_with(&text, "seq=2000 ack=1").contains("*ZERO-WINDOW-PROBE*"));
    assert!(line_with(&text, "seq=2001:2002").contains("*ZERO-WINDOW-PROBE*"));
    assert!(line_with(&text, "*WINDOW-UPDATE*").contains("win=2048"));
    // After the window opens the probed byte is sent with the rest: in order.
    assert!(!line_with(&text, "seq=2001:3001").contains('*'));
}

#[test]
fn websocket_upgrade_and_frames() {
    let text = check("websocket", &websocket());
    assert!(line_with(&text, "\"GET /chat HTTP/1.1\"").contains("WebSocket upgrade"));
    assert!(line_with(&text, "\"HTTP/1.1 101 Switching Protocols\"").contains("WebSocket accepted"));
    assert!(line_with(&text, "WS text FIN masked len=5 \"Hello\"").contains("--->|"));
    assert!(line_with(&text, "WS text FIN len=5 \"Hello\"").contains("|<---"));
    assert!(line_with(&text, "WS close 1000 masked").contains("--->|"));
    assert!(line_with(&text, "WS close 1000 ---").contains("|<---"));
}

#[test]
fn max_cuts_the_drawing_and_says_so() {
    let trace = ladder::load(&retransmission()[..]).unwrap();
    let text = ladder::text::render(&trace, 0, 5);
    assert_eq!(
        text.lines()
            .filter(|l| l.contains("|---- ") || l.contains("|<--- "))
            .count(),
        5
    );
    assert!(text.contains("... 13 more segments not drawn (--max 5) ..."));
    assert!(
        text.contains("18 segments, 8000 payload bytes; 5 drawn, 13 more not drawn (raise --max)")
    );
    let svg = ladder::svg::render(&trace, 0, 5);
    assert!(svg.contains("13 more segments not drawn (--max 5)"));
}

#[test]
fn cli_draws_text_and_svg() {
    let dir = std::env::temp_dir().join(format!("ladder-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pcap = dir.join("http.pcap");
    std::fs::write(&pcap, http(Framing::Raw)).unwrap();
    let svg = dir.join("out.svg");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ustack"))
        .args([
            "ladder",
            pcap.to_str().unwrap(),
            "--text",
            "--svg",
            svg.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want = ladder::text::render(&ladder::load(&http(Framing::Raw)[..]).unwrap(), 0, 200);
    assert_eq!(String::from_utf8_lossy(&out.stdout), want);
    assert!(std::fs::read_to_string(&svg).unwrap().starts_with("<?xml"));
    let _ = std::fs::remove_dir_all(&dir);
}
