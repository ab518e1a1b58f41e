//! # ustack — a userspace TCP/IPv4 stack
//!
//! ustack reads raw IPv4 packets from a Linux TUN device, runs its own TCP,
//! and serves HTTP/1.1 and WebSocket over that TCP, all in one process.
//!
//! ## The layers, bottom to top (dependencies point only downwards)
//!
//! | module | what it is | may use |
//! |---|---|---|
//! | [`wire`] | packet formats: IPv4, ICMPv4, TCP (+ options), checksums, sequence numbers. No state. | nothing |
//! | [`phy`] | devices: the `Device` trait, the Linux TUN device, an in-memory simulated link, and wrappers (pcap writer, fault injector) | `wire` |
//! | [`iface`] | the host: IPv4 validation and reassembly, ICMP echo / unreachable, demultiplexing to TCP, RSTs for closed ports, drop counters | `wire`, `tcp` |
//! | [`tcp`] | the RFC 9293 state machine, sliding windows, retransmission, congestion control, the socket API | `wire` |
//! | [`http`], [`ws`] | sans-IO HTTP/1.1 and WebSocket codecs working on byte buffers | nothing below |
//! | [`app`] | services (echo, HTTP server, WebSocket endpoints, chat broker) glued to sockets through the public socket API only | `iface`, `tcp`, `http`, `ws` |
//! | [`trace`] | the connection event log (`--trace`): events the stack records when asked, drained by the runtime | `wire`, `tcp`, `iface` types |
//! | [`runtime`] | the event loop over the TUN fd, signals: **the only place that reads a clock or does I/O** | everything |
//!
//! ## Who owns time and randomness
//!
//! Everything below [`runtime`] is *sans-IO*: it never reads the clock, sleeps,
//! or makes a syscall. Time is passed in as a [`time::Instant`] on every call
//! (`handle_*`), output is pulled (`poll_*`), and `poll_at()` says when the
//! core next needs to be called. All randomness (initial sequence number
//! secret, fault injection, test workloads) comes from a [`rand::Rng`] seeded
//! from one `--seed`, so any run can be repeated exactly.
#![deny(unsafe_code)]

pub mod app;
pub mod hash;
pub mod http;
pub mod iface;
pub mod ladder;
pub mod phy;
pub mod rand;
pub mod runtime;
pub mod spare;
pub mod tcp;
pub mod time;
pub mod timer;
pub mod trace;
pub mod wire;
pub mod ws;
