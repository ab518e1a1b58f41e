//! cargo-fuzz target `ws` (libFuzzer; needs nightly Rust):
//! `cargo +nightly fuzz run ws_input -- fuzz/corpus/ws` from the crate root.
//! The target itself is shared with the stable driver `examples/fuzz.rs`:
//! see `fuzz/targets.rs`.
#![no_main]

#[path = "../targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    targets::run("ws", data);
});
