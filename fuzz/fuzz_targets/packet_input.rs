//! cargo-fuzz target `packet` (libFuzzer; needs nightly Rust):
//! `cargo +nightly fuzz run packet_input -- fuzz/corpus/packet` from the crate root.
//! The target itself is shared with the stable driver `examples/fuzz.rs`:
//! see `fuzz/targets.rs`.
#![no_main]

#[path = "../targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    targets::run("packet", data);
});
