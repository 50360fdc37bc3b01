//! QUIC transport for Lamina: pinned-key mutual TLS, ALPN per protocol, framed typed messages, limits, reconnects.
//!
//! Every Lamina service talks to its peers through this crate. One [`Endpoint`] per node
//! (one UDP socket, the node's key) serves any number of **protocols**, each named by
//! ALPN (`lamina/<module>/<version>`) and each with its own pinned peer set and handler:
//! a validator speaks `lamina/consensus/1` to validators, serves the ordered log to
//! execution nodes, and talks DA to DA nodes, all on one socket.
//!
//! A protocol may speak a **range of versions** ([`ProtocolId::range`], e.g.
//! `lamina/da/1..2`: one ALPN name per version), so that nodes upgrade one at a time: the
//! dialer offers all its versions, the server serves all of its own, newest first, and
//! the handshake settles on the highest version both speak ([`Network::version`] reports
//! it per peer). The versions of a range share the wire types; a sender uses what only
//! newer versions have when the peer's negotiated version has it ([`ProtocolId`]).
//!
//! ```no_run
//! use std::time::Duration;
//! use lamina_net::{Endpoint, EndpointConfig, Empty, Handler, PeerSet, Protocol, ProtocolConfig, ProtocolId, Reject};
//! use lamina_primitives::{BlockHeader, Height, Keypair, NodeId};
//!
//! struct Headers;
//! impl Protocol for Headers {
//!     const ID: ProtocolId = ProtocolId::new("headers", 1);
//!     type Request = Height;
//!     type Response = BlockHeader;
//!     type Message = Empty;
//! }
//!
//! struct Serve;
//! impl Handler<Headers> for Serve {
//!     async fn request(&self, _peer: NodeId, h: Height) -> Result<BlockHeader, Reject> {
//!         Err(Reject::unavailable(format!("no header at {h}")))
//!     }
//! }
//!
//! # async fn demo(key: Keypair, other: NodeId, other_addr: std::net::SocketAddr) -> Result<(), lamina_net::NetError> {
//! let endpoint = Endpoint::bind(&key, EndpointConfig::new("127.0.0.1:7000".parse().unwrap()))?;
//! let peers = PeerSet::new().with_dial(other, other_addr);
//! let net = endpoint.register(Serve, peers, ProtocolConfig::for_protocol::<Headers>())?;
//! net.wait_connected(&other, Duration::from_secs(5)).await?;
//! let header = net.request(&other, &Height(7)).await?;
//! # let _ = header;
//! endpoint.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # What it promises
//!
//! * **Identity = key.** A node's certificate is derived from its ed25519 key; both
//!   sides of every handshake verify the other's key against pinned keys, and refuse
//!   anything else *during the handshake* ([`tls`] explains the details).
//! * **Protocols.** Each connection runs the highest version of its protocol that both
//!   ends speak. A peer offering no protocol version we serve is refused with a TLS
//!   `no_application_protocol` alert; the dialer gets [`NetError::ProtocolMismatch`]
//!   naming the versions it offered and those we serve of that module (`offered
//!   lamina/echo/3..4, peer serves [lamina/echo/1..2]`), at once rather than after
//!   redials. A key pinned for one protocol cannot use another
//!   ([`NetError::AccessDenied`]).
//! * **Messaging.** Typed request/response ([`Network::request`]) and one-way messages
//!   ([`Network::send`], [`Network::broadcast`]), decoded only through
//!   `lamina_primitives::codec` (size cap, then validation). Requests are pipelined on a
//!   few long-lived streams per connection; large payloads get their own stream.
//!   [`RawNetwork`] and [`RawHandler`] are the bytes-level escape hatch.
//! * **Robustness.** Bounded windows and stream counts ([`TransportLimits`]), a frame
//!   limit per protocol, a bounded number of in-flight handlers per connection, handler
//!   time limits, panics caught. A bad frame fails its stream, is counted, and disturbs
//!   nothing else. Dialed peers are redialed with capped, jittered exponential backoff.
//! * **Observability.** `lamina_net_*` metrics per protocol and peer (see [`stats`]),
//!   and [`Endpoint::snapshot`] for `/status`.
//! * **Shutdown.** [`Endpoint::shutdown`]: stop intake, drain in-flight requests
//!   (bounded), close with code 0, wait for the socket to go idle.
//! * **HTTP queries.** [`http::serve_json`]: the one small HTTP/1.1 JSON server (hyper)
//!   the services' read-only query routes share.
//!
//! Services receive a [`NodeContext`] (key, genesis, data directory, health) from the
//! binary, with peer sets per genesis role.

mod access;
mod config;
mod conn;
mod context;
mod endpoint;
mod error;
pub mod frame;
pub mod http;
mod peers;
pub mod ports;
mod protocol;
pub mod stats;
pub mod tls;

pub use access::{Access, AccessPolicy, GovernedClients};
pub use config::{Backoff, EndpointConfig, GSO_MAX_UDP_PAYLOAD, ProtocolConfig, TransportLimits};
pub use context::{NodeContext, Role};
pub use endpoint::{Endpoint, Network, RawNetwork, WeakNetwork};
pub use error::{NetError, Reject, RejectKind, StreamError};
pub use peers::{Peer, PeerSet};
pub use protocol::{BoxFuture, Empty, Handler, Protocol, ProtocolId, RawHandler, request_version};
pub use stats::{ConnectionSnapshot, Direction, Fault, NetSnapshot, ProtocolSnapshot};
pub use tls::Identity;

/// Registers the `# HELP` text of every metric this crate emits with the installed
/// `metrics` recorder (call once, after installing it; the binary does).
pub fn describe_metrics() {
    ::metrics::describe_gauge!(
        "lamina_net_connections",
        "Live QUIC connections, by protocol (ALPN name) and direction (inbound, outbound)."
    );
    ::metrics::describe_counter!(
        "lamina_net_errors_total",
        "Faults on QUIC connections, by protocol, peer and kind (frame_too_large, malformed_frame, decode, handler_panic, handler_timeout, stream_reset, request_timeout, rejected, stalled, budget_wait)."
    );
    ::metrics::describe_counter!(
        "lamina_net_handshake_failures_total",
        "Incoming QUIC connections refused or failed during the handshake, by reason (peer_not_allowed, protocol_mismatch, refused_by_peer, handshake, timeout, too_many_open_connections, too_many_connections)."
    );
    ::metrics::describe_counter!(
        "lamina_net_received_bytes_total",
        "Frame bytes read from peers, by protocol and peer."
    );
    ::metrics::describe_counter!("lamina_net_received_messages_total", "Frames read from peers, by protocol and peer.");
    ::metrics::describe_gauge!(
        "lamina_net_rtt_seconds",
        "Smoothed round-trip time of the connection from QUIC path stats, in seconds, by protocol and peer."
    );
    ::metrics::describe_counter!(
        "lamina_net_sent_bytes_total",
        "Frame bytes written to peers (headers included), by protocol and peer."
    );
    ::metrics::describe_counter!(
        "lamina_net_sent_messages_total",
        "Frames written to peers (requests, responses and messages), by protocol and peer."
    );
}
