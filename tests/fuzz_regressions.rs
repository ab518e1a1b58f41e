//! Every input the fuzzers ever found a bug with, replayed (one file per
//! finding in `fuzz/regressions/<target>/`), plus a short run of the
//! stable fuzz driver's targets over the seed corpus. See
//! docs/reliability.md for the findings and `examples/fuzz.rs` for the
//! driver.

#[path = "../fuzz/targets.rs"]
mod targets;

use std::path::Path;

fn replay_dir(target: &str, sub: &str) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(sub)
        .join(target);
    let mut n = 0;
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return 0;
    };
    let mut files: Vec<_> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    files.sort();
    for f in files {
        let data = std::fs::read(&f).unwrap();
        let r = std::panic::catch_unwind(|| targets::run(target, &data));
        assert!(r.is_ok(), "{} fails", f.display());
        n += 1;
    }
    n
}

#[test]
fn regressions_and_corpus_pass() {
    for t in targets::TARGETS {
        replay_dir(t, "regressions");
        assert!(replay_dir(t, "corpus") > 0, "no corpus for {t}");
    }
}
