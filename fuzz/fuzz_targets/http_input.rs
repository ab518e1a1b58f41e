//! cargo-fuzz target `http` (libFuzzer; on stable Rust with RUSTC_BOOTSTRAP=1):
//! `RUSTC_BOOTSTRAP=1 cargo fuzz run -s none http_input fuzz/corpus/http` from the crate root.
//! The target itself is shared with the stable driver `examples/fuzz.rs`:
//! see `fuzz/targets.rs`.
#![no_main]

#[path = "../targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    targets::run("http", data);
});
