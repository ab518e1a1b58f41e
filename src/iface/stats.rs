//! Counters: every packet in and out, and every drop with its reason.

use core::fmt;

macro_rules! drop_reasons {
    ($( $name:ident => $label:literal, )*) => {
        /// Why a packet was dropped. Every drop is counted under exactly one reason.
        #[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
        #[repr(u8)]
        pub enum DropReason { $( $name, )* }

        impl DropReason {
            pub const ALL: &'static [DropReason] = &[ $( DropReason::$name, )* ];
            /// A stable snake_case name (used in JSON and logs).
            pub fn label(&self) -> &'static str {
                match self { $( DropReason::$name => $label, )* }
            }
        }
    };
}

drop_reasons! {
    Truncated => "truncated",
    BadVersion => "bad_ip_version",
    BadHeaderLen => "bad_ip_header_len",
    BadTotalLen => "bad_ip_total_len",
    BadIpChecksum => "bad_ip_checksum",
    BadSourceAddr => "bad_source_addr",
    NotForUs => "not_for_us",
    TtlExpired => "ttl_expired",
    FragmentInvalid => "fragment_invalid",
    FragmentOverlap => "fragment_overlap",
    FragmentTimeout => "fragment_timeout",
    FragmentNoMemory => "fragment_no_memory",
    UnknownProtocol => "unknown_protocol",
    BadIcmp => "bad_icmp",
    IcmpIgnored => "icmp_ignored",
    BadTcpChecksum => "bad_tcp_checksum",
    BadTcpHeader => "bad_tcp_header",
    TcpNoListener => "tcp_no_listener",
    TcpBacklogFull => "tcp_backlog_full",
    TcpHalfOpenFull => "tcp_half_open_full",
    TcpMemoryBudget => "tcp_memory_budget",
    TcpTooManyConnections => "tcp_too_many_connections",
    TcpOutOfWindow => "tcp_out_of_window",
    TcpBadAck => "tcp_bad_ack",
    TcpRstInvalid => "tcp_rst_invalid",
    TcpInvalidFlags => "tcp_invalid_flags",
    TcpNoMemory => "tcp_no_memory",
    TcpPawsRejected => "tcp_paws_rejected",
    TcpOther => "tcp_other",
    DeviceError => "device_error",
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// The stack's counters.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub packets_in: u64,
    pub packets_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    drops: [u64; 32],
    pub icmp_echo_replies: u64,
    pub icmp_unreachables_sent: u64,
    pub fragments_reassembled: u64,
    pub tcp_segments_in: u64,
    pub tcp_segments_out: u64,
    pub tcp_retransmissions: u64,
    pub tcp_fast_retransmissions: u64,
    pub tcp_rto_timeouts: u64,
    pub tcp_rsts_sent: u64,
    pub tcp_rsts_received: u64,
    pub tcp_challenge_acks: u64,
    pub tcp_dup_acks_received: u64,
    pub tcp_zero_window_probes: u64,
    pub tcp_keepalive_probes: u64,
    pub tcp_connections_opened: u64,
    pub tcp_connections_accepted: u64,
    pub tcp_connections_closed: u64,
    pub tcp_connections_reset: u64,
    pub tcp_connections_timed_out: u64,
    pub tcp_syn_cookies_sent: u64,
    pub tcp_syn_cookies_accepted: u64,
    /// TIME-WAIT connections ended early because `max_time_wait` was reached.
    pub tcp_time_wait_recycled: u64,
    /// RFC 8985 tail loss probes sent.
    pub tcp_tlp_probes: u64,
    /// RFC 6675 SACK-based recovery episodes entered.
    pub tcp_sack_recoveries: u64,
    /// RFC 2883 D-SACK blocks received.
    pub tcp_dsacks_received: u64,
    /// Segments marked lost by RACK / IsLost.
    pub tcp_segments_marked_lost: u64,
    /// Recovery episodes undone because D-SACKs or timestamps showed every
    /// retransmission in them unneeded.
    pub tcp_spurious_recoveries: u64,
    /// Retransmission timeouts undone the same way (RFC 3522 / RFC 4015).
    pub tcp_spurious_rtos: u64,
    /// Retransmissions a timestamp echo showed unneeded (RFC 3522: the ACK
    /// that covered the hole echoed the original transmission).
    pub tcp_spurious_retransmits_ts: u64,
    /// RFC 9406 HyStart++: slow start ended by a delay increase (entered
    /// CSS), CSS found the increase spurious (back to slow start), and CSS
    /// ran its rounds (congestion avoidance without a loss).
    pub tcp_hystart_css_entered: u64,
    pub tcp_hystart_css_resumed: u64,
    pub tcp_hystart_css_completed: u64,
}

impl Stats {
    pub fn count_drop(&mut self, reason: DropReason) {
        self.drops[reason as usize] += 1;
    }
    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize]
    }
    pub fn total_drops(&self) -> u64 {
        self.drops.iter().sum()
    }
    /// Every reason with a non-zero count.
    pub fn drop_table(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL
            .iter()
            .map(|r| (*r, self.drops(*r)))
            .filter(|(_, n)| *n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn drop_reasons_fit_and_count() {
        assert!(DropReason::ALL.len() <= 32);
        let mut s = Stats::default();
        s.count_drop(DropReason::BadIpChecksum);
        s.count_drop(DropReason::BadIpChecksum);
        s.count_drop(DropReason::NotForUs);
        assert_eq!(s.drops(DropReason::BadIpChecksum), 2);
        assert_eq!(s.total_drops(), 3);
        assert_eq!(s.drop_table().count(), 2);
        assert_eq!(DropReason::TcpOutOfWindow.label(), "tcp_out_of_window");
    }
}
