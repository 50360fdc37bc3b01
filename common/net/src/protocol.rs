//! Protocols: their ALPN names, their wire types, and the handlers that serve them.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use lamina_primitives::{NodeId, Wire, codec};

use crate::error::{Reject, RejectKind};

/// A protocol's name and the range of versions it speaks, negotiated by ALPN: each
/// version `v` of `min_version..=version` is one ALPN name `lamina/<module>/<v>`.
///
/// Versions let nodes upgrade independently. A node offers (as dialer) and serves (as
/// server) every version of its range, newest first, and the handshake settles on the
/// **highest version both ends speak**; ranges that do not overlap are refused during the
/// handshake ([`crate::NetError::ProtocolMismatch`]). The negotiated version of a
/// connection is reported by [`crate::Network::version`].
///
/// Contract for a range: all its versions share the protocol's wire types
/// ([`Protocol::Request`], [`Protocol::Response`], [`Protocol::Message`]). A newer
/// version may only *add* to an older one (new enum variants, new meaning of a value),
/// and a sender uses an addition only on connections whose negotiated version has it: it
/// checks [`crate::Network::version`] for the peer before sending a variant the older
/// versions lack. (An older peer that still receives one fails to decode it, answers
/// `Malformed` and counts a fault: a bug of the sender.) A change that older versions
/// cannot decode at all needs a new module name or a new set of wire types.
///
/// [`ProtocolId::new`] is a single version; [`ProtocolId::range`] speaks several.
/// `Display` names the newest version (`lamina/da/2`), which is also the protocol's name
/// in logs, metrics and `/status`; [`ProtocolId::range_name`] names the range
/// (`lamina/da/1..2`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProtocolId {
    /// Module name (`consensus`, `da`, `log`, ...): lowercase ASCII letters, digits, `-`.
    pub module: &'static str,
    /// The newest version of the protocol's messages and semantics that this node speaks.
    pub version: u32,
    /// The oldest version this node still speaks (`min_version <= version`).
    pub min_version: u32,
}

impl ProtocolId {
    /// Most versions one range may span (each is an ALPN name offered in every
    /// handshake).
    pub const MAX_VERSIONS: u32 = 16;

    /// One version: `lamina/<module>/<version>`.
    pub const fn new(module: &'static str, version: u32) -> Self {
        ProtocolId { module, version, min_version: version }
    }

    /// Versions `min..=max` of `module`, negotiated to the highest one both ends speak.
    /// Versions start at 1; a range with `min > max`, `min == 0` or more than
    /// [`ProtocolId::MAX_VERSIONS`] versions is not [valid](ProtocolId::is_valid), and
    /// registering it fails.
    pub const fn range(module: &'static str, min: u32, max: u32) -> Self {
        ProtocolId { module, version: max, min_version: min }
    }

    /// The ALPN protocol name of the newest version, as bytes.
    pub fn alpn(&self) -> Vec<u8> {
        self.alpn_of(self.version)
    }

    /// The versions this protocol speaks, newest first.
    pub fn versions(&self) -> impl Iterator<Item = u32> + use<> {
        (self.min_version..=self.version).rev()
    }

    /// The ALPN names of [`ProtocolId::versions`], newest first: what a dialer offers.
    pub fn alpns(&self) -> Vec<Vec<u8>> {
        self.versions().map(|v| self.alpn_of(v)).collect()
    }

    /// True if `version` is in the range.
    pub fn speaks(&self, version: u32) -> bool {
        (self.min_version..=self.version).contains(&version)
    }

    /// The version whose ALPN name is `alpn`, if it is one of this protocol's.
    pub fn version_of(&self, alpn: &[u8]) -> Option<u32> {
        let rest = alpn.strip_prefix(b"lamina/")?.strip_prefix(self.module.as_bytes())?.strip_prefix(b"/")?;
        // Canonical decimal only (no sign, no leading zero): exactly what `alpn_of` writes.
        if rest.is_empty() || (rest.len() > 1 && rest[0] == b'0') || !rest.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let v: u32 = std::str::from_utf8(rest).ok()?.parse().ok()?;
        self.speaks(v).then_some(v)
    }

    /// The range's name for messages: `lamina/<module>/<min>..<max>`, or the plain ALPN
    /// name (as `Display`) for a single version.
    pub fn range_name(&self) -> String {
        if self.min_version == self.version {
            self.to_string()
        } else {
            format!("lamina/{}/{}..{}", self.module, self.min_version, self.version)
        }
    }

    /// True if the module name is non-empty lowercase ASCII letters, digits and `-` (at
    /// most 64 bytes) and the versions are `1 <= min_version <= version`, at most
    /// [`ProtocolId::MAX_VERSIONS`] of them.
    pub fn is_valid(&self) -> bool {
        self.problem().is_none()
    }

    /// Why the id is not valid, if it is not.
    pub(crate) fn problem(&self) -> Option<String> {
        let name_ok = !self.module.is_empty()
            && self.module.len() <= 64
            && self.module.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !name_ok {
            Some(format!("invalid protocol module name {:?}", self.module))
        } else if self.min_version == 0 {
            Some(format!("protocol {:?}: versions start at 1", self.module))
        } else if self.min_version > self.version {
            Some(format!(
                "protocol {:?}: oldest version {} is newer than newest version {}",
                self.module, self.min_version, self.version
            ))
        } else if self.version - self.min_version >= Self::MAX_VERSIONS {
            Some(format!(
                "protocol {:?}: versions {}..{} span more than {} versions",
                self.module,
                self.min_version,
                self.version,
                Self::MAX_VERSIONS
            ))
        } else {
            None
        }
    }

    fn alpn_of(&self, version: u32) -> Vec<u8> {
        format!("lamina/{}/{}", self.module, version).into_bytes()
    }
}

impl fmt::Display for ProtocolId {
    /// `lamina/<module>/<version>`: the newest version's ALPN name.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "lamina/{}/{}", self.module, self.version)
    }
}

/// A typed protocol: its id and the [`Wire`] types of its requests, responses and
/// one-way messages. Use [`Empty`] for a part the protocol does not use.
///
/// When [`Protocol::ID`] is a [range](ProtocolId::range), every version of it uses these
/// same types: a newer version only adds variants or meaning, and a sender gates each
/// addition on the peer's negotiated [`crate::Network::version`] (see [`ProtocolId`]).
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
    /// Module name and the versions spoken (one ALPN name per version).
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

tokio::task_local! {
    /// The negotiated version of the connection whose request or message is being
    /// handled (set around every handler call).
    pub(crate) static REQUEST_VERSION: u32;
}

/// The protocol version negotiated on the connection that carried the request or
/// message being handled, when called from a [`Handler`] or [`RawHandler`] (in the
/// handler's own future, not in tasks it spawns); `None` anywhere else.
///
/// A handler uses it to answer in what that connection's version can decode: two
/// clients with one key may speak different versions of a range at the same time, so
/// the version of "the peer" ([`crate::Network::version`]) is not enough for answers.
pub fn request_version() -> Option<u32> {
    REQUEST_VERSION.try_with(|v| *v).ok()
}

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
        assert_eq!(p.alpns(), vec![b"lamina/consensus/1".to_vec()]);
        assert_eq!(p.range_name(), "lamina/consensus/1");
    }

    #[test]
    fn ranges_list_their_versions_newest_first() {
        let p = ProtocolId::range("da", 1, 3);
        assert!(p.is_valid());
        assert_eq!(p.to_string(), "lamina/da/3");
        assert_eq!(p.alpn(), b"lamina/da/3".to_vec());
        assert_eq!(p.versions().collect::<Vec<_>>(), vec![3, 2, 1]);
        assert_eq!(p.alpns(), vec![b"lamina/da/3".to_vec(), b"lamina/da/2".to_vec(), b"lamina/da/1".to_vec()]);
        assert_eq!(p.range_name(), "lamina/da/1..3");
        assert_eq!(ProtocolId::range("da", 2, 2), ProtocolId::new("da", 2));
        assert!(p.speaks(1) && p.speaks(3) && !p.speaks(0) && !p.speaks(4));
    }

    #[test]
    fn range_validation() {
        assert!(!ProtocolId::range("da", 2, 1).is_valid(), "min > max");
        assert!(!ProtocolId::range("da", 0, 1).is_valid(), "versions start at 1");
        assert!(!ProtocolId::new("da", 0).is_valid(), "versions start at 1");
        assert!(ProtocolId::range("da", 1, ProtocolId::MAX_VERSIONS).is_valid());
        assert!(!ProtocolId::range("da", 1, ProtocolId::MAX_VERSIONS + 1).is_valid(), "too many versions");
        assert!(!ProtocolId::range("da", 1, u32::MAX).is_valid(), "too many versions");
        assert!(ProtocolId::range("da", u32::MAX - 1, u32::MAX).is_valid());
        assert!(!ProtocolId::range("Da", 1, 2).is_valid(), "bad module name");
        assert!(ProtocolId::range("da", 2, 1).problem().unwrap().contains("newer than"));
    }

    #[test]
    fn versions_are_read_back_from_alpn_names() {
        let p = ProtocolId::range("da", 1, 12);
        assert_eq!(p.version_of(b"lamina/da/1"), Some(1));
        assert_eq!(p.version_of(b"lamina/da/12"), Some(12));
        assert_eq!(p.version_of(b"lamina/da/13"), None, "outside the range");
        assert_eq!(p.version_of(b"lamina/da/01"), None, "not canonical");
        assert_eq!(p.version_of(b"lamina/da/+1"), None);
        assert_eq!(p.version_of(b"lamina/da/"), None);
        assert_eq!(p.version_of(b"lamina/dax/1"), None, "another module");
        assert_eq!(p.version_of(b"lamina/d/1"), None);
        assert_eq!(p.version_of(b"lamina/da/99999999999"), None);
    }

    #[test]
    fn empty_round_trips() {
        let bytes = codec::encode(&Empty).unwrap();
        assert!(bytes.is_empty());
        assert_eq!(codec::decode::<Empty>(&bytes).unwrap(), Empty);
        assert!(codec::decode::<Empty>(&[1]).is_err());
    }
}
