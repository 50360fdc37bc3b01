//! Per-connection counters, exported through the `metrics` facade and as a snapshot.
//!
//! Metrics (labels `protocol` = the protocol's name, i.e. the ALPN name of its newest
//! version, whichever version a connection negotiated; `peer` = genesis name or key
//! prefix):
//!
//! | name | type | meaning |
//! |---|---|---|
//! | `lamina_net_sent_bytes_total` | counter | frame bytes written (headers included) |
//! | `lamina_net_received_bytes_total` | counter | frame bytes read |
//! | `lamina_net_sent_messages_total` | counter | frames written (requests, responses, messages) |
//! | `lamina_net_received_messages_total` | counter | frames read |
//! | `lamina_net_errors_total` | counter, + `kind` | faults on a connection, by [`Fault`] |
//! | `lamina_net_rtt_seconds` | gauge | smoothed RTT from quinn's path stats |
//! | `lamina_net_connections` | gauge, + `direction` | live connections |
//! | `lamina_net_handshake_failures_total` | counter, `reason` only | refused or failed handshakes |

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use lamina_primitives::NodeId;
use serde::Serialize;

/// Something that went wrong on a connection, counted by kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fault {
    /// The peer sent a frame longer than our limit.
    FrameTooLarge,
    /// The peer sent bytes that are not a frame expected on that stream.
    MalformedFrame,
    /// A frame body did not decode as the protocol's type (request, response or message).
    Decode,
    /// Our handler panicked.
    HandlerPanic,
    /// Our handler exceeded its time limit.
    HandlerTimeout,
    /// The peer reset or stopped one of our streams.
    StreamReset,
    /// One of our requests timed out.
    RequestTimeout,
    /// The peer rejected one of our requests.
    Rejected,
    /// A frame of the peer stopped arriving for `read_stall_timeout`; its stream was
    /// stopped.
    Stalled,
    /// A request or message of the peer waited for room in its inbound budget (the peer
    /// sends faster than we handle, or holds budget with unfinished frames).
    BudgetWait,
}

impl Fault {
    const ALL: [Fault; 10] = [
        Fault::FrameTooLarge,
        Fault::MalformedFrame,
        Fault::Decode,
        Fault::HandlerPanic,
        Fault::HandlerTimeout,
        Fault::StreamReset,
        Fault::RequestTimeout,
        Fault::Rejected,
        Fault::Stalled,
        Fault::BudgetWait,
    ];

    /// The metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            Fault::FrameTooLarge => "frame_too_large",
            Fault::MalformedFrame => "malformed_frame",
            Fault::Decode => "decode",
            Fault::HandlerPanic => "handler_panic",
            Fault::HandlerTimeout => "handler_timeout",
            Fault::StreamReset => "stream_reset",
            Fault::RequestTimeout => "request_timeout",
            Fault::Rejected => "rejected",
            Fault::Stalled => "stalled",
            Fault::BudgetWait => "budget_wait",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Counters of one connection. Each increment also goes to the `metrics` facade
/// (through handles registered once per connection, so the hot path does no lookups).
pub(crate) struct ConnStats {
    labels: Vec<metrics::Label>,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) msgs_out: AtomicU64,
    pub(crate) msgs_in: AtomicU64,
    faults: [AtomicU64; Fault::ALL.len()],
    m_bytes_out: metrics::Counter,
    m_bytes_in: metrics::Counter,
    m_msgs_out: metrics::Counter,
    m_msgs_in: metrics::Counter,
    m_rtt: metrics::Gauge,
}

impl ConnStats {
    pub(crate) fn new(protocol: &str, peer: &str) -> Self {
        let labels =
            vec![metrics::Label::new("protocol", protocol.to_string()), metrics::Label::new("peer", peer.to_string())];
        ConnStats {
            m_bytes_out: metrics::counter!("lamina_net_sent_bytes_total", labels.clone()),
            m_bytes_in: metrics::counter!("lamina_net_received_bytes_total", labels.clone()),
            m_msgs_out: metrics::counter!("lamina_net_sent_messages_total", labels.clone()),
            m_msgs_in: metrics::counter!("lamina_net_received_messages_total", labels.clone()),
            m_rtt: metrics::gauge!("lamina_net_rtt_seconds", labels.clone()),
            labels,
            bytes_out: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            msgs_out: AtomicU64::new(0),
            msgs_in: AtomicU64::new(0),
            faults: Default::default(),
        }
    }

    /// Records frames written.
    pub(crate) fn sent(&self, frames: u64, bytes: u64) {
        self.msgs_out.fetch_add(frames, Ordering::Relaxed);
        self.bytes_out.fetch_add(bytes, Ordering::Relaxed);
        self.m_msgs_out.increment(frames);
        self.m_bytes_out.increment(bytes);
    }

    /// Records one frame read.
    pub(crate) fn received(&self, bytes: u64) {
        self.msgs_in.fetch_add(1, Ordering::Relaxed);
        self.bytes_in.fetch_add(bytes, Ordering::Relaxed);
        self.m_msgs_in.increment(1);
        self.m_bytes_in.increment(bytes);
    }

    /// Records a fault.
    pub(crate) fn fault(&self, f: Fault) {
        self.faults[f.index()].fetch_add(1, Ordering::Relaxed);
        let mut labels = self.labels.clone();
        labels.push(metrics::Label::new("kind", f.as_str()));
        metrics::counter!("lamina_net_errors_total", labels).increment(1);
    }

    pub(crate) fn fault_count(&self, f: Fault) -> u64 {
        self.faults[f.index()].load(Ordering::Relaxed)
    }

    pub(crate) fn set_rtt(&self, rtt: std::time::Duration) {
        self.m_rtt.set(rtt.as_secs_f64());
    }

    pub(crate) fn faults(&self) -> BTreeMap<&'static str, u64> {
        Fault::ALL
            .iter()
            .filter_map(|f| {
                let n = self.fault_count(*f);
                (n > 0).then_some((f.as_str(), n))
            })
            .collect()
    }
}

/// Which side opened a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// We dialed.
    Outbound,
    /// The peer dialed.
    Inbound,
}

impl Direction {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Direction::Outbound => "outbound",
            Direction::Inbound => "inbound",
        }
    }
}

/// One live connection, as shown in `/status`.
#[derive(Clone, Debug, Serialize)]
pub struct ConnectionSnapshot {
    /// The peer's key.
    pub peer: NodeId,
    /// The peer's label (genesis name or key prefix).
    pub peer_label: String,
    /// The peer's address.
    pub remote_addr: SocketAddr,
    /// Who dialed.
    pub direction: Direction,
    /// The protocol version negotiated for this connection (the highest both nodes
    /// speak).
    pub version: u32,
    /// Smoothed round-trip time, milliseconds.
    pub rtt_ms: f64,
    /// Seconds since the connection was established.
    pub connected_secs: f64,
    /// Frame bytes written.
    pub bytes_out: u64,
    /// Frame bytes read.
    pub bytes_in: u64,
    /// Frames written.
    pub messages_out: u64,
    /// Frames read.
    pub messages_in: u64,
    /// Requests of ours awaiting a response.
    pub pending_requests: usize,
    /// Bytes of the peer's requests and messages held now (claimed from its inbound
    /// budget: being received or being handled).
    pub inbound_claimed_bytes: usize,
    /// UDP datagrams lost (quinn path stats).
    pub lost_packets: u64,
    /// Congestion window, bytes (quinn path stats).
    pub cwnd: u64,
    /// The largest UDP payload this connection sends now, bytes: what path MTU
    /// discovery reached, up to `max_udp_payload` (quinn path stats).
    pub path_mtu: u16,
    /// Faults by kind (only non-zero ones).
    pub errors: BTreeMap<&'static str, u64>,
}

/// One protocol, as shown in `/status`.
#[derive(Clone, Debug, Serialize)]
pub struct ProtocolSnapshot {
    /// ALPN name of the newest version served (`lamina/<module>/<version>`).
    pub protocol: String,
    /// The oldest version served: this node speaks `min_version` up to the version in
    /// `protocol`.
    pub min_version: u32,
    /// Keys allowed to connect.
    pub peers_allowed: usize,
    /// Keys dialed by this node.
    pub peers_dialed: usize,
    /// Distinct peers with at least one live connection.
    pub peers_connected: usize,
    /// Live connections.
    pub connections: Vec<ConnectionSnapshot>,
}

/// The whole endpoint, as shown in `/status` (field `net`).
#[derive(Clone, Debug, Serialize)]
pub struct NetSnapshot {
    /// This node's key.
    pub node: NodeId,
    /// The bound UDP address.
    pub local_addr: SocketAddr,
    /// Protocols served, by ALPN name.
    pub protocols: Vec<ProtocolSnapshot>,
    /// Failed or refused handshakes, by reason.
    pub handshake_failures: BTreeMap<&'static str, u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_faults() {
        let s = ConnStats::new("lamina/t/1", "p");
        s.sent(2, 100);
        s.received(10);
        s.fault(Fault::Decode);
        s.fault(Fault::Decode);
        assert_eq!(s.msgs_out.load(Ordering::Relaxed), 2);
        assert_eq!(s.bytes_in.load(Ordering::Relaxed), 10);
        assert_eq!(s.faults().get("decode"), Some(&2));
        assert_eq!(s.faults().len(), 1);
        for (i, f) in Fault::ALL.iter().enumerate() {
            assert_eq!(f.index(), i);
        }
    }
}
