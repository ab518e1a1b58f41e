//! WebSocket (RFC 6455) with permessage-deflate (RFC 7692), server side,
//! sans-IO.
//!
//! This module never touches a socket or a clock. The glue that owns a TCP
//! connection does:
//!
//! 1. parse the HTTP request head (the [`http`](crate::http) module) and call
//!    [`handshake`] with a [`HandshakeRequest`]: it answers
//!    [`HandshakeOutcome::Accept`] with the `101 Switching Protocols` bytes to
//!    write, or [`HandshakeOutcome::Reject`] with a 400/403/426 response;
//! 2. create a [`WsConnection`] with the negotiated [`DeflateParams`];
//! 3. loop: feed received bytes to [`WsConnection::handle_input`], take
//!    [`WsEvent`]s from [`WsConnection::poll_event`], queue messages with
//!    [`WsConnection::send`], write what [`WsConnection::poll_output`] gives
//!    to TCP, call [`WsConnection::handle_timeout`] at
//!    [`WsConnection::poll_at`], and close TCP once
//!    [`WsConnection::wants_tcp_close`] is true and the output is flushed.
//!
//! `examples/ws_echo_std.rs` drives exactly this loop over `std::net` and is
//! what runs against the Autobahn|Testsuite (`scripts/autobahn.sh`).
//!
//! Files, bottom to top: [`mask`] (XOR masking), [`utf8`] (incremental
//! validator), [`frame`] (header codec), [`deflate`] (RFC 7692 negotiation
//! and the compressor pair), [`handshake`] (RFC 6455 section 4.2),
//! [`connection`] (message assembly, control frames, close handshake,
//! limits, keepalive), [`broker`] (chat rooms).

pub mod broker;
pub mod connection;
pub mod deflate;
pub mod frame;
pub mod handshake;
pub mod mask;
pub mod utf8;

pub use broker::{valid_room_name, Broker, ConnId};
pub use connection::{WsConnection, WsEvent};
pub use deflate::DeflateParams;
pub use frame::{FrameHeader, OpCode};
pub use handshake::{accept_key, handshake, HandshakeError, HandshakeOutcome, HandshakeRequest};

use crate::time::Duration;

/// A complete data message (RFC 6455 section 5.6). Control frames (ping,
/// pong, close) are answered by [`WsConnection`] itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Text(String),
    Binary(Vec<u8>),
}

impl Message {
    pub fn len(&self) -> usize {
        match self {
            Message::Text(s) => s.len(),
            Message::Binary(b) => b.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Close status codes (RFC 6455 section 7.4.1).
pub mod close_code {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL_ERROR: u16 = 1002;
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// Never sent on the wire: "no status code was present".
    pub const NO_STATUS: u16 = 1005;
    /// Never sent on the wire: "closed without a close frame".
    pub const ABNORMAL: u16 = 1006;
    pub const INVALID_PAYLOAD: u16 = 1007;
    pub const POLICY_VIOLATION: u16 = 1008;
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    pub const MANDATORY_EXTENSION: u16 = 1010;
    pub const INTERNAL_ERROR: u16 = 1011;

    /// May this code appear in a close frame? 1000-1003 and 1007-1011 are
    /// defined by RFC 6455 (1012-1014 were registered later with IANA and
    /// are accepted too); 3000-3999 are registered by libraries and
    /// 4000-4999 are private. 1004, 1005, 1006, 1015 are reserved and must
    /// never be sent; everything below 1000 and 1016-2999 is invalid
    /// (section 7.4.2). Codes 5000+ are not defined.
    pub fn is_valid_on_wire(code: u16) -> bool {
        matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

/// Errors: one variant per broken rule. [`WsError::close_code`] says which
/// close code the connection fails with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WsError {
    #[error("reserved opcode {0:#x} (RFC 6455 5.2)")]
    ReservedOpcode(u8),
    #[error("fragmented control frame (RFC 6455 5.5)")]
    FragmentedControlFrame,
    #[error("control frame payload longer than 125 bytes (RFC 6455 5.5)")]
    ControlFrameTooLong,
    #[error("64-bit payload length with the most significant bit set (RFC 6455 5.2)")]
    LengthMsbSet,
    #[error("frame from client is not masked (RFC 6455 5.1)")]
    UnmaskedFrame,
    #[error("RSV bits set without a negotiated extension (RFC 6455 5.2)")]
    ReservedBits,
    #[error("continuation frame without a message in progress (RFC 6455 5.4)")]
    UnexpectedContinuation,
    #[error("new data frame while a fragmented message is in progress (RFC 6455 5.4)")]
    ExpectedContinuation,
    #[error("invalid UTF-8 in text message at byte {position} (RFC 6455 8.1)")]
    InvalidUtf8 { position: usize },
    #[error("close frame with a 1-byte payload (RFC 6455 5.5.1)")]
    CloseFrameTooShort,
    #[error("invalid close code {0} (RFC 6455 7.4)")]
    InvalidCloseCode(u16),
    #[error("close reason is not valid UTF-8 (RFC 6455 5.5.1)")]
    InvalidCloseReason,
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    FrameTooLarge { len: u64, max: usize },
    #[error("message exceeds the limit of {max} bytes")]
    MessageTooLarge { max: usize },
    #[error("permessage-deflate data does not inflate (RFC 7692 7.2.2): {0}")]
    Inflate(String),
    #[error("connection is closing: no more messages may be sent")]
    Closing,
    #[error("output buffer holds {pending} bytes, over the limit of {max}")]
    OutputBufferFull { pending: usize, max: usize },
    #[error("peer did not answer our close frame in time")]
    CloseTimeout,
    #[error("peer silent after a keepalive ping")]
    KeepaliveTimeout,
    #[error("TCP closed without a close frame")]
    UnexpectedEof,
}

impl WsError {
    /// The close code that reports this error to the peer (section 7.4.1).
    pub fn close_code(&self) -> u16 {
        use WsError::*;
        match self {
            InvalidUtf8 { .. } | InvalidCloseReason => close_code::INVALID_PAYLOAD,
            FrameTooLarge { .. } | MessageTooLarge { .. } => close_code::MESSAGE_TOO_BIG,
            OutputBufferFull { .. } => close_code::POLICY_VIOLATION,
            CloseTimeout | KeepaliveTimeout => close_code::GOING_AWAY,
            UnexpectedEof => close_code::ABNORMAL,
            _ => close_code::PROTOCOL_ERROR,
        }
    }
}

/// Limits and policy for WebSocket endpoints.
#[derive(Debug, Clone)]
pub struct WsConfig {
    /// Largest accepted frame payload (checked on the header: larger → 1009).
    pub max_frame: usize,
    /// Largest accepted message after reassembly and inflation (→ 1009).
    pub max_message: usize,
    /// Offer-acceptance of permessage-deflate at all.
    pub deflate: bool,
    /// Keep the LZ77 windows from message to message (context takeover,
    /// better compression of similar messages) when the client allows it.
    /// Off by default: the server then answers every offer with
    /// `server_no_context_takeover; client_no_context_takeover` (RFC 7692
    /// 7.1.1.1 and 7.1.1.2 allow a server to ask for both), so no zlib
    /// state (~300 KiB with context takeover) has to live across messages
    /// and an idle connection holds none ([`deflate::DeflateCodec`]).
    pub deflate_context_takeover: bool,
    /// If set, the `Origin` header must be one of these (else 403).
    pub origins: Option<Vec<String>>,
    /// Send a ping after this much silence from the peer; if the peer stays
    /// silent for another such interval, close with 1001.
    pub keepalive_ping: Option<Duration>,
    /// How long to wait for the peer's close frame after sending ours.
    pub close_timeout: Duration,
    /// [`WsConnection::send`] refuses new messages while more than this many
    /// output bytes are waiting to be written.
    pub max_output_buffer: usize,
}

impl Default for WsConfig {
    fn default() -> Self {
        WsConfig {
            max_frame: 16 << 20,
            max_message: 64 << 20,
            deflate: true,
            deflate_context_takeover: false,
            origins: None,
            keepalive_ping: Some(Duration::from_secs(30)),
            close_timeout: Duration::from_secs(5),
            max_output_buffer: 64 << 20,
        }
    }
}
