//! Typed configuration: endpoint-wide transport limits, reconnect backoff, and
//! per-protocol framing and timeouts. Every default is documented with its reason.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::{IdleTimeout, MtuDiscoveryConfig, TransportConfig, VarInt};
use serde::{Deserialize, Serialize};

use crate::error::NetError;

/// Serde for `Duration` as integer milliseconds (config files say `*_ms = 250`).
mod ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

/// QUIC limits applied to every connection of an endpoint (both directions).
///
/// quinn's own defaults leave the connection receive window unbounded and allow 100
/// streams per direction; these bound what one peer can make us hold:
///
/// * **per connection**: `connection_receive_window` (bytes quinn buffers before we read
///   them) + `connection_inbound_budget` (requests and messages read but not yet
///   handled: a frame claims its whole length from the budget when its 13-byte header
///   arrives, before its body is read, and releases it when its handler returns) +
///   64 KiB per open stream (bytes read ahead of a claim) + `send_window`;
/// * **per peer key**: at most `max_connections_per_peer` connections per protocol, and
///   all its connections together claim at most `peer_inbound_budget`.
///
/// Buffers grow with the bytes actually received, never with a length a header claims;
/// a frame that stops arriving for `read_stall_timeout` is dropped with its stream.
/// Responses are not claimed: they answer our own requests, so their memory is bounded
/// by how many we send (and by `max_response` each).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct TransportLimits {
    /// Bytes a peer may have in flight to us on one connection, all streams together.
    /// Default 16 MiB: several multi-MiB DA columns in flight, while 100 peers cost at
    /// most 1.6 GiB of receive buffers in the worst case. (quinn's default is unbounded.)
    pub connection_receive_window: u64,
    /// Bytes a peer may have in flight to us on one stream. Default 4 MiB: one large
    /// frame streams at full speed, and no single stream can take the whole connection
    /// window.
    pub stream_receive_window: u64,
    /// Bytes buffered for sending on one connection before writers wait. Default 16 MiB.
    pub send_window: u64,
    /// Concurrent bidirectional streams a peer may open. Default 64: a handful of
    /// request lanes, plus dedicated streams for large requests; bounds stream floods.
    pub max_concurrent_bidi_streams: u32,
    /// Concurrent unidirectional streams a peer may open. Default 64: the hello, the
    /// message stream, and one stream per large response in flight.
    pub max_concurrent_uni_streams: u32,
    /// Connection attempts being handshaken at once. Default 256 (quinn: 65,536): enough
    /// for a committee, small enough that a handshake flood stays cheap.
    pub max_incoming: usize,
    /// A connection with no packets for this long is closed, in milliseconds. Default
    /// 10 s (quinn: 30 s): faster failure detection on fixed peer links.
    #[serde(rename = "idle_timeout_ms", with = "ms")]
    #[schemars(with = "u64")]
    pub idle_timeout: Duration,
    /// Keep-alive interval, in milliseconds; below `idle_timeout_ms` (well below). Default
    /// 2 s.
    #[serde(rename = "keep_alive_ms", with = "ms")]
    #[schemars(with = "u64")]
    pub keep_alive: Duration,
    /// Upper bound for path MTU discovery (UDP payload bytes, 1200..=65527), and (if above
    /// 1472) the largest datagram accepted. Default 1452, quinn's and the usual
    /// Ethernet-path value. Links with larger MTUs (loopback, jumbo frames) may raise it:
    /// fewer, larger packets cost less CPU per byte. Up to [`GSO_MAX_UDP_PAYLOAD`]
    /// (6,500) datagrams are still written ten at a time (segmentation offload); above
    /// it, one per system call. `lamina devnet up` and `lamina bench` use 6,500 (all
    /// their nodes are on loopback); discovery stays below a smaller path MTU.
    pub max_udp_payload: u16,
    /// OS send/receive buffer requested for the UDP socket, in bytes (the kernel may cap it at
    /// `net.core.{r,w}mem_max`). Default 4 MiB, so that bursts at full speed are not
    /// dropped by the kernel.
    pub socket_buffer: usize,
    /// Bytes of requests and messages one connection may have in memory (read, not yet
    /// handled); a frame claims its length when its header arrives, before its body is
    /// read. Default 64 MiB: the largest frame of any protocol (a consensus message is at
    /// most 64 MiB) fits alone; a frame larger than the budget claims all of it.
    pub connection_inbound_budget: usize,
    /// Bytes of requests and messages all connections of one peer key together may have
    /// in memory (at least `connection_inbound_budget`, below 4 GiB). Default 128 MiB.
    pub peer_inbound_budget: usize,
    /// Connections one peer key may hold open to us per protocol. Default 8: a node
    /// needs one, plus room for reconnects racing the close of the old one and for a
    /// few command-line clients sharing a key. Beyond it, a new connection is closed at
    /// once with the reason.
    pub max_connections_per_peer: usize,
    /// Connections that keys a protocol does not pin may hold to it at once, all such
    /// keys together (open access: see [`crate::PeerSet::open_to_any`]). Default 256.
    /// Each such connection gets a 1 MiB receive window and shares one in-flight request
    /// limit (the protocol's `max_inflight_per_connection`) with the other strangers.
    /// Beyond it, a new one is closed at once with the reason. Those keys also share one
    /// inbound budget of `peer_inbound_budget` bytes, however many keys they use.
    pub max_open_connections: usize,
    /// Of those, connections from one IP address (any keys). Default 32: minting keys
    /// from one machine cannot take every stranger slot, while a NAT shared by many
    /// wallets still fits. Beyond it, a new one is closed at once with the reason.
    pub max_open_connections_per_ip: usize,
}

impl Default for TransportLimits {
    fn default() -> Self {
        TransportLimits {
            connection_receive_window: 16 << 20,
            stream_receive_window: 4 << 20,
            send_window: 16 << 20,
            max_concurrent_bidi_streams: 64,
            max_concurrent_uni_streams: 64,
            max_incoming: 256,
            idle_timeout: Duration::from_secs(10),
            keep_alive: Duration::from_secs(2),
            max_udp_payload: 1452,
            socket_buffer: 4 << 20,
            connection_inbound_budget: 64 << 20,
            peer_inbound_budget: 128 << 20,
            max_connections_per_peer: 8,
            max_open_connections: 256,
            max_open_connections_per_ip: 32,
        }
    }
}

impl TransportLimits {
    /// Checks that the limits are usable together.
    pub fn validate(&self) -> Result<(), NetError> {
        let bad = |m: &str| Err(NetError::Config(m.to_string()));
        if self.stream_receive_window == 0 || self.connection_receive_window < self.stream_receive_window {
            return bad("need 0 < stream_receive_window <= connection_receive_window");
        }
        if self.connection_receive_window > VarInt::MAX.into_inner() {
            return bad("connection_receive_window exceeds 2^62");
        }
        if self.send_window == 0 {
            return bad("send_window must be positive");
        }
        if self.max_concurrent_bidi_streams < 2 || self.max_concurrent_uni_streams < 2 {
            return bad("at least 2 concurrent bidi and uni streams are needed (hello + message streams)");
        }
        if self.max_incoming == 0 {
            return bad("max_incoming must be positive");
        }
        if self.idle_timeout.is_zero() || self.keep_alive.is_zero() || self.keep_alive >= self.idle_timeout {
            return bad("need 0 < keep_alive < idle_timeout");
        }
        if !(1200..=65_527).contains(&self.max_udp_payload) {
            return bad("max_udp_payload must be in 1200..=65527");
        }
        if self.connection_inbound_budget == 0 || self.peer_inbound_budget < self.connection_inbound_budget {
            return bad("need 0 < connection_inbound_budget <= peer_inbound_budget");
        }
        if self.peer_inbound_budget > u32::MAX as usize {
            return bad("peer_inbound_budget must be below 4 GiB");
        }
        if self.max_connections_per_peer == 0 {
            return bad("max_connections_per_peer must be positive");
        }
        Ok(())
    }

    /// The quinn transport configuration for these limits.
    pub(crate) fn transport_config(&self) -> Result<Arc<TransportConfig>, NetError> {
        let varint = |v: u64, what: &str| {
            VarInt::from_u64(v).map_err(|_| NetError::Config(format!("{what} {v} does not fit a QUIC varint")))
        };
        let mut t = TransportConfig::default();
        t.receive_window(varint(self.connection_receive_window, "connection_receive_window")?)
            .stream_receive_window(varint(self.stream_receive_window, "stream_receive_window")?)
            .send_window(self.send_window)
            .max_concurrent_bidi_streams(VarInt::from_u32(self.max_concurrent_bidi_streams))
            .max_concurrent_uni_streams(VarInt::from_u32(self.max_concurrent_uni_streams))
            .max_idle_timeout(Some(
                IdleTimeout::try_from(self.idle_timeout)
                    .map_err(|_| NetError::Config("idle_timeout too large".into()))?,
            ))
            .keep_alive_interval(Some(self.keep_alive))
            // We use no datagrams: no receive buffer, no attack surface.
            .datagram_receive_buffer_size(None);
        let mut mtu = MtuDiscoveryConfig::default();
        mtu.upper_bound(self.max_udp_payload);
        t.mtu_discovery_config(Some(mtu));
        // quinn 0.11 hands the kernel up to 10 datagrams per send (its private
        // MAX_TRANSMIT_SEGMENTS) as one segmented (GSO) write, and the kernel refuses a
        // write above 64 KiB (`large_datagrams_survive_bulk_transfers_above_the_offload_limit`
        // would catch a larger batch): with datagrams above
        // GSO_MAX_UDP_PAYLOAD such writes are dropped, discovery sees the loss and falls
        // back to 1,200 bytes (measured at 8,952 on loopback). Larger datagrams are
        // therefore sent one per system call.
        if self.max_udp_payload > GSO_MAX_UDP_PAYLOAD {
            t.enable_segmentation_offload(false);
        }
        Ok(Arc::new(t))
    }
}

/// The largest `max_udp_payload` sent with segmentation offload: ten such datagrams
/// (quinn's batch) fit one 64 KiB UDP write.
pub const GSO_MAX_UDP_PAYLOAD: u16 = 6_500;

/// Reconnect backoff for dialed peers: exponential, capped, jittered.
///
/// Attempt `n` (0-based, counting consecutive failures) waits a uniformly random time in
/// `[d/2, d]` with `d = min(initial * 2^n, max)`. The jitter spreads the redials of many
/// nodes that lost the same peer at the same moment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Backoff {
    /// First delay, in milliseconds. Default 100.
    #[serde(rename = "initial_ms", with = "ms")]
    #[schemars(with = "u64")]
    pub initial: Duration,
    /// Longest delay (the cap), in milliseconds; at least `initial_ms`. Default 5000: a
    /// restarted peer is found again within about 5 s.
    #[serde(rename = "max_ms", with = "ms")]
    #[schemars(with = "u64")]
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { initial: Duration::from_millis(100), max: Duration::from_secs(5) }
    }
}

impl Backoff {
    /// The un-jittered delay before attempt `attempt` (0-based).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// The delay before attempt `attempt`, jittered with `unit`, a uniform random number
    /// in `[0, 1)`: `ceiling * (1 + unit) / 2`.
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        let ceiling = self.ceiling(attempt);
        ceiling.mul_f64((1.0 + unit.clamp(0.0, 1.0)) / 2.0)
    }

    /// Checks `0 < initial <= max`.
    pub fn validate(&self) -> Result<(), NetError> {
        if self.initial.is_zero() || self.initial > self.max {
            return Err(NetError::Config("backoff: need 0 < initial <= max".into()));
        }
        Ok(())
    }
}

/// Endpoint-wide configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EndpointConfig {
    /// UDP address to bind. Default `0.0.0.0:0` (any port; services bind the address in
    /// the genesis).
    pub listen: SocketAddr,
    /// QUIC limits.
    pub limits: TransportLimits,
    /// Reconnect backoff for dialed peers.
    pub backoff: Backoff,
    /// Limit for a dial: handshake plus the server's acceptance. Default 5 s.
    #[serde(rename = "connect_timeout_ms", with = "ms")]
    pub connect_timeout: Duration,
    /// How long [`crate::Endpoint::shutdown`] lets in-flight requests finish before
    /// closing connections. Default 5 s.
    #[serde(rename = "shutdown_grace_ms", with = "ms")]
    pub shutdown_grace: Duration,
    /// How often per-connection RTT gauges are refreshed. Default 1 s.
    #[serde(rename = "stats_interval_ms", with = "ms")]
    pub stats_interval: Duration,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        EndpointConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 0)),
            limits: TransportLimits::default(),
            backoff: Backoff::default(),
            connect_timeout: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(5),
            stats_interval: Duration::from_secs(1),
        }
    }
}

impl EndpointConfig {
    /// The default configuration listening on `listen`.
    pub fn new(listen: SocketAddr) -> Self {
        EndpointConfig { listen, ..Self::default() }
    }

    /// Checks every part.
    pub fn validate(&self) -> Result<(), NetError> {
        self.limits.validate()?;
        self.backoff.validate()?;
        if self.connect_timeout.is_zero() || self.stats_interval.is_zero() {
            return Err(NetError::Config("connect_timeout and stats_interval must be positive".into()));
        }
        Ok(())
    }
}

/// Per-protocol configuration: framing limits per direction, request lanes, timeouts.
///
/// Each size limit is checked from a frame's 13-byte header, before its body is read: a
/// longer incoming frame resets its stream (the peer gets
/// [`crate::StreamError::FrameTooLarge`]) and is counted; a longer outgoing one fails
/// locally with [`NetError::FrameTooLarge`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProtocolConfig {
    /// Largest request body, in bytes. Default 4 MiB; [`ProtocolConfig::for_protocol`]
    /// uses the request type's `Wire::MAX_SIZE` (a log request is 64 bytes, so a peer
    /// cannot make a validator buffer more than that per log request).
    pub max_request: usize,
    /// Largest response body. Default 4 MiB; `for_protocol`: the response type's.
    pub max_response: usize,
    /// Largest one-way message body. Default 4 MiB; `for_protocol`: the message type's.
    pub max_message: usize,
    /// Requests and responses up to this size share the connection's long-lived,
    /// pipelined request lanes; larger ones get a stream of their own, so that a large
    /// transfer never delays small messages queued behind it. Default 64 KiB.
    pub inline_max: usize,
    /// Long-lived request streams per connection, used round-robin. Default 2.
    pub lanes: usize,
    /// Time allowed for a request, from sending to the response. Default 10 s.
    #[serde(rename = "request_timeout_ms", with = "ms")]
    pub request_timeout: Duration,
    /// Time a handler may take before the request is answered with a timeout rejection
    /// (and the handler future is dropped). Default 30 s.
    #[serde(rename = "handler_timeout_ms", with = "ms")]
    pub handler_timeout: Duration,
    /// Requests from one connection being handled at once; beyond it, reading from that
    /// connection's streams pauses (QUIC flow control pushes back on the peer). Default
    /// 1024.
    pub max_inflight_per_connection: usize,
    /// Frames queued per stream writer before senders wait. Default 1024.
    pub send_queue: usize,
    /// A frame that has started to arrive and then gets no bytes for this long is
    /// dropped: its stream is stopped ([`crate::StreamError::Stalled`]) and its budget
    /// released, so that a peer cannot hold memory with frames it never finishes.
    /// Default 10 s.
    #[serde(rename = "read_stall_timeout_ms", with = "ms")]
    pub read_stall_timeout: Duration,
}

impl Default for ProtocolConfig {
    fn default() -> Self {
        ProtocolConfig {
            max_request: 4 << 20,
            max_response: 4 << 20,
            max_message: 4 << 20,
            inline_max: 64 << 10,
            lanes: 2,
            request_timeout: Duration::from_secs(10),
            handler_timeout: Duration::from_secs(30),
            max_inflight_per_connection: 1024,
            send_queue: 1024,
            read_stall_timeout: Duration::from_secs(10),
        }
    }
}

impl ProtocolConfig {
    /// Defaults, with each size limit the `MAX_SIZE` of the protocol's wire type for
    /// that direction (at least 1 byte, at most `u32::MAX`).
    pub fn for_protocol<P: crate::Protocol>() -> Self {
        use lamina_primitives::Wire;
        let limit = |n: usize| n.clamp(1, u32::MAX as usize);
        ProtocolConfig {
            max_request: limit(<P::Request as Wire>::MAX_SIZE),
            max_response: limit(<P::Response as Wire>::MAX_SIZE),
            max_message: limit(<P::Message as Wire>::MAX_SIZE),
            ..Self::default()
        }
    }

    /// The same configuration with every size limit set to `max` (tests, tools).
    pub fn with_max_frame(self, max: usize) -> Self {
        ProtocolConfig { max_request: max, max_response: max, max_message: max, ..self }
    }

    /// The largest of the three size limits.
    pub fn max_frame(&self) -> usize {
        self.max_request.max(self.max_response).max(self.max_message)
    }

    /// Checks the values.
    pub fn validate(&self) -> Result<(), NetError> {
        let bad = |m: &str| Err(NetError::Config(m.to_string()));
        for (what, v) in
            [("max_request", self.max_request), ("max_response", self.max_response), ("max_message", self.max_message)]
        {
            if v == 0 || v > u32::MAX as usize {
                return Err(NetError::Config(format!("{what} must be in 1..=u32::MAX")));
            }
        }
        if self.read_stall_timeout.is_zero() {
            return bad("read_stall_timeout must be positive");
        }
        if self.lanes == 0 || self.lanes > 16 {
            return bad("lanes must be in 1..=16");
        }
        if self.request_timeout.is_zero() || self.handler_timeout.is_zero() {
            return bad("timeouts must be positive");
        }
        if self.max_inflight_per_connection == 0 || self.send_queue == 0 {
            return bad("max_inflight_per_connection and send_queue must be positive");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate() {
        EndpointConfig::default().validate().unwrap();
        ProtocolConfig::default().validate().unwrap();
        TransportLimits::default().transport_config().unwrap();
    }

    #[test]
    fn backoff_is_exponential_capped_and_jittered() {
        let b = Backoff { initial: Duration::from_millis(100), max: Duration::from_secs(1) };
        assert_eq!(b.ceiling(0), Duration::from_millis(100));
        assert_eq!(b.ceiling(1), Duration::from_millis(200));
        assert_eq!(b.ceiling(3), Duration::from_millis(800));
        assert_eq!(b.ceiling(4), Duration::from_secs(1));
        assert_eq!(b.ceiling(1000), Duration::from_secs(1));
        for attempt in 0..40 {
            for unit in [0.0, 0.3, 0.999, 5.0] {
                let d = b.delay(attempt, unit);
                assert!(d >= b.ceiling(attempt) / 2 && d <= b.ceiling(attempt), "{attempt} {unit}");
            }
        }
    }

    #[test]
    fn limits_follow_each_direction_of_the_protocol() {
        #[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
        struct Small(u8);
        impl lamina_primitives::Wire for Small {
            const NAME: &'static str = "Small";
            const MAX_SIZE: usize = 64;
        }
        #[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
        struct Big(u8);
        impl lamina_primitives::Wire for Big {
            const NAME: &'static str = "Big";
            const MAX_SIZE: usize = 32 << 20;
        }
        struct LogLike;
        impl crate::Protocol for LogLike {
            const ID: crate::ProtocolId = crate::ProtocolId::new("loglike", 1);
            type Request = Small;
            type Response = Big;
            type Message = crate::Empty;
        }
        let c = ProtocolConfig::for_protocol::<LogLike>();
        assert_eq!((c.max_request, c.max_response, c.max_message), (64, 32 << 20, 1));
        assert_eq!(c.max_frame(), 32 << 20);
        c.validate().unwrap();
    }

    #[test]
    fn bad_limits_rejected() {
        let l = TransportLimits { connection_receive_window: 1, ..Default::default() };
        assert!(l.validate().is_err());
        let l = TransportLimits { keep_alive: Duration::from_secs(20), ..Default::default() };
        assert!(l.validate().is_err());
        let p = ProtocolConfig { lanes: 0, ..Default::default() };
        assert!(p.validate().is_err());
        let l = TransportLimits { peer_inbound_budget: 1 << 20, ..Default::default() };
        assert!(l.validate().is_err(), "peer budget below the connection budget");
        let l = TransportLimits { max_connections_per_peer: 0, ..Default::default() };
        assert!(l.validate().is_err());
    }

    #[test]
    fn config_round_trips_through_serde_with_millisecond_fields() {
        let c = EndpointConfig::default();
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["limits"]["idle_timeout_ms"], 10_000);
        let back: EndpointConfig = serde_json::from_value(json).unwrap();
        assert_eq!(back, c);
    }
}
