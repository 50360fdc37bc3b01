//! The crate's one error type, split into "the peer misbehaved or refused" and "local
//! fault", plus the reasons a handler may reject a request.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use lamina_primitives::{CodecError, NodeId};

/// Errors of the transport.
///
/// [`NetError::is_peer_fault`] separates what the remote side did (refused our key,
/// sent an oversize or malformed frame, rejected a request: score or drop the peer) from
/// local faults and plain connectivity (bad configuration, bind failure, shutdown:
/// fail-stop or retry).
#[derive(Debug, Clone, thiserror::Error)]
pub enum NetError {
    // ---- identity and protocol (during or right after the handshake) ----
    /// We dialed `expected`, but the server proved possession of another key (or of no
    /// Ed25519 key at all). The handshake was aborted.
    #[error("dialed {expected} but the peer presented {}", presented.map(|k| k.to_string()).unwrap_or_else(|| "no Ed25519 key".into()))]
    UnexpectedPeerKey {
        /// The pinned key we dialed.
        expected: NodeId,
        /// The key in the certificate the server sent, if it had one.
        presented: Option<NodeId>,
    },
    /// A connecting peer's key is not pinned by us (for any served protocol, or for the
    /// protocol it asked for).
    #[error("peer {peer} is not allowed to use {protocol}")]
    PeerNotAllowed {
        /// The refused key.
        peer: NodeId,
        /// The protocol asked for (empty if refused during the TLS handshake).
        protocol: String,
    },
    /// The peer refused our key: it does not pin us for this protocol.
    #[error("peer at {addr} refused our key for {protocol}: {reason}")]
    AccessDenied {
        /// Where we dialed.
        addr: SocketAddr,
        /// The protocol we asked for.
        protocol: String,
        /// What the peer said.
        reason: String,
    },
    /// No common ALPN protocol: the peer serves other protocols, or versions of ours
    /// outside our range.
    #[error("protocol mismatch with {addr}: offered {offered}, peer serves [{}]", served.join(", "))]
    ProtocolMismatch {
        /// Where we dialed.
        addr: SocketAddr,
        /// What we offered: `lamina/<module>/<version>`, or `lamina/<module>/<min>..<max>`
        /// for a range ([`crate::ProtocolId::range_name`]).
        offered: String,
        /// The versions of the offered module the peer serves, in the same form (from its
        /// refusal; empty if it did not say or serves none of that module).
        served: Vec<String>,
    },
    /// The TLS/QUIC handshake failed for another reason (timeout, bad certificate, ...).
    #[error("handshake with {addr} failed: {reason}")]
    Handshake {
        /// The remote address.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },

    // ---- frames and messages ----
    /// A frame longer than the protocol's limit (sent or received).
    #[error("frame of {size} bytes exceeds the limit of {max}")]
    FrameTooLarge {
        /// The frame's length.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// Bytes that are not a valid frame (unknown kind, truncated, unexpected on this
    /// stream).
    #[error("malformed frame: {0}")]
    MalformedFrame(String),
    /// A frame whose body is not a valid encoding of the expected type.
    #[error("undecodable message: {0}")]
    Decode(CodecError),
    /// The remote handler refused the request.
    #[error("request rejected ({}): {}", .0.kind, .0.reason)]
    Rejected(Reject),
    /// The peer reset the stream carrying the request, with a reason code.
    #[error("stream reset by peer: {0}")]
    StreamReset(StreamError),

    // ---- connectivity ----
    /// No live connection to the peer for the protocol (it may be reconnecting).
    #[error("not connected to {peer} for {protocol}")]
    NotConnected {
        /// The peer.
        peer: NodeId,
        /// The protocol.
        protocol: String,
    },
    /// The peer is not in the protocol's peer set.
    #[error("peer {0} is not in the peer set")]
    UnknownPeer(NodeId),
    /// The connection closed or was lost while the operation was in progress.
    #[error("connection lost: {0}")]
    ConnectionLost(String),
    /// The operation did not complete in time.
    #[error("timed out after {0:?}")]
    Timeout(Duration),

    // ---- local faults ----
    /// Could not bind the UDP socket.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: Arc<std::io::Error>,
    },
    /// TLS material or configuration could not be built.
    #[error("TLS setup: {0}")]
    Tls(String),
    /// Invalid configuration (limits, registration).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A value could not be encoded (exceeds its own type's limit).
    #[error("cannot encode: {0}")]
    Encode(CodecError),
    /// The endpoint is shutting down or shut down.
    #[error("endpoint is shut down")]
    Shutdown,
}

impl NetError {
    /// True when the remote side misbehaved or refused: a reason to score or drop the
    /// peer rather than to fail locally.
    pub fn is_peer_fault(&self) -> bool {
        matches!(
            self,
            NetError::UnexpectedPeerKey { .. }
                | NetError::PeerNotAllowed { .. }
                | NetError::AccessDenied { .. }
                | NetError::ProtocolMismatch { .. }
                | NetError::MalformedFrame(_)
                | NetError::Decode(_)
                | NetError::Rejected(_)
                | NetError::StreamReset(_)
        )
    }

    /// True for local faults (configuration, bind, encoding, shutdown).
    pub fn is_local_fault(&self) -> bool {
        matches!(
            self,
            NetError::Bind { .. } | NetError::Tls(_) | NetError::Config(_) | NetError::Encode(_) | NetError::Shutdown
        )
    }

    /// A short stable name, used as the `kind` label of `lamina_net_errors_total`.
    pub fn kind(&self) -> &'static str {
        match self {
            NetError::UnexpectedPeerKey { .. } => "unexpected_peer_key",
            NetError::PeerNotAllowed { .. } => "peer_not_allowed",
            NetError::AccessDenied { .. } => "access_denied",
            NetError::ProtocolMismatch { .. } => "protocol_mismatch",
            NetError::Handshake { .. } => "handshake",
            NetError::FrameTooLarge { .. } => "frame_too_large",
            NetError::MalformedFrame(_) => "malformed_frame",
            NetError::Decode(_) => "decode",
            NetError::Rejected(_) => "rejected",
            NetError::StreamReset(_) => "stream_reset",
            NetError::NotConnected { .. } => "not_connected",
            NetError::UnknownPeer(_) => "unknown_peer",
            NetError::ConnectionLost(_) => "connection_lost",
            NetError::Timeout(_) => "timeout",
            NetError::Bind { .. } => "bind",
            NetError::Tls(_) => "tls",
            NetError::Config(_) => "config",
            NetError::Encode(_) => "encode",
            NetError::Shutdown => "shutdown",
        }
    }
}

/// Why a handler rejected a request. Sent to the requester as an error frame and
/// surfaced there as [`NetError::Rejected`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    /// The category.
    pub kind: RejectKind,
    /// Human-readable detail (truncated to 1 KiB on the wire).
    pub reason: String,
}

impl Reject {
    /// A rejection of `kind` with `reason`.
    pub fn new(kind: RejectKind, reason: impl Into<String>) -> Self {
        Reject { kind, reason: reason.into() }
    }

    /// The request was understood but is invalid (the requester misbehaved).
    pub fn bad_request(reason: impl Into<String>) -> Self {
        Self::new(RejectKind::BadRequest, reason)
    }

    /// The service cannot answer now (not ready, overloaded, shutting down).
    pub fn unavailable(reason: impl Into<String>) -> Self {
        Self::new(RejectKind::Unavailable, reason)
    }

    /// The service failed (a bug or a local fault on the answering side).
    pub fn internal(reason: impl Into<String>) -> Self {
        Self::new(RejectKind::Internal, reason)
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut reason = self.reason.as_bytes();
        if reason.len() > 1024 {
            let mut cut = 1024;
            while !self.reason.is_char_boundary(cut) {
                cut -= 1;
            }
            reason = &reason[..cut];
        }
        let mut out = Vec::with_capacity(1 + reason.len());
        out.push(self.kind as u8);
        out.extend_from_slice(reason);
        out
    }

    pub(crate) fn decode(body: &[u8]) -> Reject {
        let Some((&k, rest)) = body.split_first() else {
            return Reject::new(RejectKind::Internal, "empty error frame");
        };
        Reject { kind: RejectKind::from_u8(k), reason: String::from_utf8_lossy(rest).into_owned() }
    }
}

/// Categories of [`Reject`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RejectKind {
    /// The request was decoded but is invalid.
    BadRequest = 1,
    /// The request bytes could not be decoded as the protocol's request type.
    Malformed = 2,
    /// The protocol has no request/response (or this request type is not served).
    Unsupported = 3,
    /// Not now: not ready, overloaded or shutting down.
    Unavailable = 4,
    /// The handler did not answer within its time limit.
    Timeout = 5,
    /// The handler failed or panicked.
    Internal = 6,
}

impl RejectKind {
    fn from_u8(k: u8) -> Self {
        match k {
            1 => RejectKind::BadRequest,
            2 => RejectKind::Malformed,
            3 => RejectKind::Unsupported,
            4 => RejectKind::Unavailable,
            5 => RejectKind::Timeout,
            _ => RejectKind::Internal,
        }
    }
}

impl fmt::Display for RejectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RejectKind::BadRequest => "bad request",
            RejectKind::Malformed => "malformed",
            RejectKind::Unsupported => "unsupported",
            RejectKind::Unavailable => "unavailable",
            RejectKind::Timeout => "timeout",
            RejectKind::Internal => "internal",
        })
    }
}

/// Why a stream was reset or stopped (the QUIC application error code on the stream).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamError {
    /// The receiver got a frame longer than its limit.
    FrameTooLarge,
    /// The receiver got bytes that are not a frame it expects on this stream.
    MalformedFrame,
    /// The endpoint is shutting down.
    Shutdown,
    /// A frame stopped arriving for longer than the receiver's `read_stall_timeout`.
    Stalled,
    /// A code this version does not know.
    Other(u64),
}

impl StreamError {
    pub(crate) const FRAME_TOO_LARGE: u32 = 1;
    pub(crate) const MALFORMED_FRAME: u32 = 2;
    pub(crate) const SHUTDOWN: u32 = 3;
    pub(crate) const STALLED: u32 = 4;

    /// The reason for a QUIC stream error code (as seen in a reset or stop).
    pub fn from_code(code: u64) -> Self {
        match code {
            c if c == u64::from(Self::FRAME_TOO_LARGE) => StreamError::FrameTooLarge,
            c if c == u64::from(Self::MALFORMED_FRAME) => StreamError::MalformedFrame,
            c if c == u64::from(Self::SHUTDOWN) => StreamError::Shutdown,
            c if c == u64::from(Self::STALLED) => StreamError::Stalled,
            c => StreamError::Other(c),
        }
    }
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamError::FrameTooLarge => f.write_str("frame too large"),
            StreamError::MalformedFrame => f.write_str("malformed frame"),
            StreamError::Shutdown => f.write_str("peer shutting down"),
            StreamError::Stalled => f.write_str("frame stalled"),
            StreamError::Other(c) => write!(f, "code {c}"),
        }
    }
}

/// Connection close codes (QUIC application error codes on CONNECTION_CLOSE).
pub(crate) mod close {
    /// Orderly shutdown of the endpoint.
    pub const SHUTDOWN: u32 = 0;
    /// The peer's key is not allowed for the negotiated protocol.
    pub const NOT_ALLOWED: u32 = 1;
    /// The peer broke the framing protocol at connection level.
    pub const PROTOCOL_VIOLATION: u32 = 2;
    /// The peer was removed from the peer set.
    pub const REMOVED: u32 = 3;
    /// The peer's key already holds `max_connections_per_peer` connections.
    pub const TOO_MANY_CONNECTIONS: u32 = 4;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reject_round_trips_and_truncates() {
        let r = Reject::bad_request("nope");
        assert_eq!(Reject::decode(&r.encode()), r);
        let long = Reject::internal("é".repeat(1000));
        let back = Reject::decode(&long.encode());
        assert!(back.reason.len() <= 1024);
        assert!(long.reason.starts_with(&back.reason));
        assert_eq!(Reject::decode(&[]).kind, RejectKind::Internal);
        assert_eq!(Reject::decode(&[200, b'x']).kind, RejectKind::Internal);
    }

    #[test]
    fn classification() {
        assert!(NetError::MalformedFrame("x".into()).is_peer_fault());
        assert!(!NetError::Shutdown.is_peer_fault());
        assert!(NetError::Shutdown.is_local_fault());
        assert_eq!(NetError::Timeout(Duration::from_secs(1)).kind(), "timeout");
    }
}
