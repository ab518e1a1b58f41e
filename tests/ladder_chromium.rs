//! The SVG drawing renders in a real browser: headless Chromium takes a
//! screenshot of tests/data/ladder_retrans.svg, and the PNG is decoded here
//! (flate2 + PNG row filters) to check that it is not blank and that the
//! red of the retransmission arrows is on it.
//!
//! Skipped (with a SKIPPED line) when Chromium is not installed, unless
//! USTACK_REQUIRE_E2E=1.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn chromium() -> Option<PathBuf> {
    for c in [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ] {
        if Path::new(c).exists() {
            return Some(PathBuf::from(c));
        }
    }
    None
}

/// A decoded 8-bit RGB(A) PNG: width, height, channels, pixels.
struct Image {
    width: usize,
    height: usize,
    channels: usize,
    data: Vec<u8>,
}

fn decode_png(b: &[u8]) -> Image {
    assert_eq!(&b[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
    let mut off = 8;
    let (mut width, mut height, mut channels) = (0, 0, 0);
    let mut idat = Vec::new();
    while off + 8 <= b.len() {
        let len = u32::from_be_bytes(b[off..off + 4].try_into().unwrap()) as usize;
        let kind = &b[off + 4..off + 8];
        let body = &b[off + 8..off + 8 + len];
        match kind {
            b"IHDR" => {
                width = u32::from_be_bytes(body[0..4].try_into().unwrap()) as usize;
                height = u32::from_be_bytes(body[4..8].try_into().unwrap()) as usize;
                assert_eq!(body[8], 8, "bit depth");
                channels = match body[9] {
                    2 => 3,
                    6 => 4,
                    t => panic!("unexpected PNG colour type {t}"),
                };
                assert_eq!(body[12], 0, "interlaced PNG");
            }
            b"IDAT" => idat.extend_from_slice(body),
            b"IEND" => break,
            _ => {}
        }
        off += 12 + len;
    }
    let mut raw = Vec::new();
    flate2::read::ZlibDecoder::new(&idat[..])
        .read_to_end(&mut raw)
        .unwrap();
    let stride = width * channels;
    assert_eq!(raw.len(), height * (stride + 1), "decoded size");
    let mut data = vec![0u8; height * stride];
    for y in 0..height {
        let filter = raw[y * (stride + 1)];
        let line = &raw[y * (stride + 1) + 1..(y + 1) * (stride + 1)];
        for x in 0..stride {
            let a = if x >= channels {
                data[y * stride + x - channels]
            } else {
                0
            } as i32;
            let up = if y > 0 { data[(y - 1) * stride + x] } else { 0 } as i32;
            let c = if x >= channels && y > 0 {
                data[(y - 1) * stride + x - channels]
            } else {
                0
            } as i32;
            let pred = match filter {
                0 => 0,
                1 => a,
                2 => up,
                3 => (a + up) / 2,
                4 => {
                    let p = a + up - c;
                    let (pa, pb, pc) = ((p - a).abs(), (p - up).abs(), (p - c).abs());
                    if pa <= pb && pa <= pc {
                        a
                    } else if pb <= pc {
                        up
                    } else {
                        c
                    }
                }
                f => panic!("bad PNG filter {f}"),
            };
            data[y * stride + x] = (line[x] as i32 + pred) as u8;
        }
    }
    Image {
        width,
        height,
        channels,
        data,
    }
}

#[test]
fn svg_renders_in_headless_chromium() {
    let Some(chrome) = chromium() else {
        if std::env::var("USTACK_REQUIRE_E2E").as_deref() == Ok("1") {
            panic!("chromium not installed and USTACK_REQUIRE_E2E=1");
        }
        println!("SKIPPED: svg_renders_in_headless_chromium (chromium not installed)");
        return;
    };
    let svg = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/ladder_retrans.svg");
    assert!(svg.exists(), "run the golden tests first");
    let dir = std::env::temp_dir().join(format!("ladder-chromium-{}", std::process::id()));
    let profile = dir.join("profile");
    std::fs::create_dir_all(&profile).unwrap();
    let png = dir.join("shot.png");
    let mut child = Command::new(chrome)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg("--window-size=1000,1400")
        .arg(format!("file://{}", svg.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish in 90 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let bytes = std::fs::read(&png).expect("chromium wrote no screenshot");
    assert!(
        bytes.len() > 30_000,
        "screenshot only {} bytes: blank?",
        bytes.len()
    );
    let img = decode_png(&bytes);
    assert_eq!((img.width, img.height), (1000, 1400));
    let px = img.data.chunks(img.channels);
    let (mut dark, mut red, mut blue) = (0usize, 0usize, 0usize);
    for p in px {
        let (r, g, b) = (p[0] as i32, p[1] as i32, p[2] as i32);
        if r + g + b < 200 {
            dark += 1; // text and black arrows
        }
        if r > 170 && g < 90 && b < 90 {
            red += 1; // retransmissions (#d62728), RST (#b00020)
        }
        if b > 150 && r < 80 && g < 130 {
            blue += 1; // the handshake (#1f5fbf)
        }
    }
    let total = img.width * img.height;
    assert!(dark > total / 200, "too few dark pixels: {dark} of {total}");
    assert!(red > 500, "retransmission red missing: {red}");
    assert!(blue > 300, "handshake blue missing: {blue}");
    let _ = std::fs::remove_dir_all(&dir);
}
