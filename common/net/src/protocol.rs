//! Protocols: their ALPN names, their wire types, and the handlers that serve them.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use lamina_primitives::{NodeId, Wire, codec};

use crate::error::{Reject, RejectKind};

/// A protocol's name and version, negotiated by ALPN as `lamina/<module>/<version>`.
///
/// A version bump is a new protocol: a peer that serves only `lamina/consensus/1` refuses
/// `lamina/consensus/2` during the handshake ([`crate::NetError::ProtocolMismatch`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProtocolId {
    /// Module name (`consensus`, `da`, `log`, ...): lowercase ASCII letters, digits, `-`.
    pub module: &'static str,
    /// Version of the protocol's messages and semantics.
    pub version: u32,
}

impl ProtocolId {
    /// `lamina/<module>/<version>`.
    pub const fn new(module: &'static str, version: u32) -> Self {
        ProtocolId { module, version }
    }

    /// The ALPN protocol name, as bytes.
    pub fn alpn(&self) -> Vec<u8> {
        self.to_string().into_bytes()
    }

    /// True if the module name is non-empty lowercase ASCII letters, digits and `-`.
    pub fn is_valid(&self) -> bool {
        !self.module.is_empty()
            && self.module.len() <= 64
            && self.module.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    }
}

impl fmt::Display for ProtocolId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "lamina/{}/{}", self.module, self.version)
    }
}

/// A typed protocol: its id and the [`Wire`] types of its requests, responses and
/// one-way messages. Use [`Empty`] for a part the protocol does not use.
///
/// ```
/// use lamina_net::{Empty, Protocol, ProtocolId};
/// use lamina_primitives::{BlockHeader, Height};
///
/// /// Ask a validator for the header at a height.
/// struct Headers;
/// impl Protocol for Headers {
///     const ID: ProtocolId = ProtocolId::new("headers", 1);
///     type Request = Height;
///     type Response = BlockHeader;
///     type Message = Empty;
/// }
/// ```
pub trait Protocol: Send + Sync + 'static {
    /// ALPN name and version.
    const ID: ProtocolId;
    /// Requests (decoded with validation and the type's size cap).
    type Request: Wire + Send + Sync + 'static;
    /// Responses.
    type Response: Wire + Send + Sync + 'static;
    /// One-way messages.
    type Message: Wire + Send + Sync + 'static;
}

/// Serves a typed protocol. Both ends of a connection may serve: either side can send
/// requests and messages over any connection of the protocol, in or out.
///
/// Contract:
/// * `request` answers one request; it runs in its own task, concurrently with others
///   from the same and other peers (up to `max_inflight_per_connection` per connection),
///   and is dropped if it exceeds `handler_timeout` (the requester gets a timeout
///   rejection). A panic is caught, counted, and answered with an internal rejection;
///   the endpoint keeps serving.
/// * `message` is called for each one-way message, **in order** per connection, one at a
///   time: a slow `message` pushes back on that peer only (QUIC flow control). Hand work
///   off to a channel rather than blocking. A panic is caught and counted.
/// * Bytes are validated before a handler sees them: a request or message that does not
///   decode is answered (or dropped) and counted without calling the handler.
pub trait Handler<P: Protocol>: Send + Sync + 'static {
    /// Answers a request from `peer`.
    fn request(&self, peer: NodeId, request: P::Request) -> impl Future<Output = Result<P::Response, Reject>> + Send {
        let _ = (peer, request);
        async { Err(Reject::new(RejectKind::Unsupported, "this protocol serves no requests")) }
    }

    /// Receives a one-way message from `peer`.
    fn message(&self, peer: NodeId, message: P::Message) -> impl Future<Output = ()> + Send {
        let _ = (peer, message);
        async {}
    }
}

impl<P: Protocol, H: Handler<P>> Handler<P> for Arc<H> {
    fn request(&self, peer: NodeId, request: P::Request) -> impl Future<Output = Result<P::Response, Reject>> + Send {
        H::request(self, peer, request)
    }

    fn message(&self, peer: NodeId, message: P::Message) -> impl Future<Output = ()> + Send {
        H::message(self, peer, message)
    }
}

/// The handler of a client-only registration ([`crate::Endpoint::register_client`]): it
/// rejects every request as [`RejectKind::Unsupported`], naming the protocol, and drops
/// one-way messages. One type serves every protocol.
pub(crate) struct ClientOnly;

impl<P: Protocol> Handler<P> for ClientOnly {
    fn request(&self, peer: NodeId, request: P::Request) -> impl Future<Output = Result<P::Response, Reject>> + Send {
        let _ = (peer, request);
        async {
            Err(Reject::new(
                RejectKind::Unsupported,
                format!("this node is a client of {}: it serves no requests", P::ID),
            ))
        }
    }
}

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// The bytes-level handler: the escape hatch for zero-copy or untyped protocols.
///
/// Same contract as [`Handler`], but the bodies are raw frame bodies (already checked
/// against the protocol's `max_frame`, nothing more): decode them only through
/// `lamina_primitives::codec` (`access` for zero-copy, `decode` for owned values).
pub trait RawHandler: Send + Sync + 'static {
    /// Answers a request.
    fn request(&self, peer: NodeId, body: Bytes) -> BoxFuture<Result<Bytes, Reject>>;
    /// Receives a one-way message. An `Err` is counted as a bad message from the peer.
    fn message(&self, peer: NodeId, body: Bytes) -> BoxFuture<Result<(), Reject>>;
}

/// Adapts a typed [`Handler`] to a [`RawHandler`]: validated decode in, encode out.
pub(crate) struct Typed<P, H> {
    handler: Arc<H>,
    _p: PhantomData<fn() -> P>,
}

impl<P, H> Typed<P, H> {
    pub(crate) fn new(handler: Arc<H>) -> Self {
        Typed { handler, _p: PhantomData }
    }
}

impl<P: Protocol, H: Handler<P>> RawHandler for Typed<P, H> {
    fn request(&self, peer: NodeId, body: Bytes) -> BoxFuture<Result<Bytes, Reject>> {
        let handler = self.handler.clone();
        Box::pin(async move {
            let request =
                codec::decode::<P::Request>(&body).map_err(|e| Reject::new(RejectKind::Malformed, e.to_string()))?;
            let response = handler.request(peer, request).await?;
            codec::encode_aligned(&response)
                .map(Bytes::from_owner)
                .map_err(|e| Reject::internal(format!("cannot encode response: {e}")))
        })
    }

    fn message(&self, peer: NodeId, body: Bytes) -> BoxFuture<Result<(), Reject>> {
        let handler = self.handler.clone();
        Box::pin(async move {
            let message =
                codec::decode::<P::Message>(&body).map_err(|e| Reject::new(RejectKind::Malformed, e.to_string()))?;
            handler.message(peer, message).await;
            Ok(())
        })
    }
}

/// The wire type of a protocol part that is not used (no requests, or no messages). Its
/// encoding is empty.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Empty;

impl Wire for Empty {
    const NAME: &'static str = "Empty";
    const MAX_SIZE: usize = 0;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpn_names() {
        let p = ProtocolId::new("consensus", 1);
        assert_eq!(p.to_string(), "lamina/consensus/1");
        assert_eq!(p.alpn(), b"lamina/consensus/1".to_vec());
        assert!(p.is_valid());
        assert!(!ProtocolId::new("Bad Name", 1).is_valid());
        assert!(!ProtocolId::new("", 1).is_valid());
    }

    #[test]
    fn empty_round_trips() {
        let bytes = codec::encode(&Empty).unwrap();
        assert!(bytes.is_empty());
        assert_eq!(codec::decode::<Empty>(&bytes).unwrap(), Empty);
        assert!(codec::decode::<Empty>(&[1]).is_err());
    }
}
