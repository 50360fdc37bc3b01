//! Node identity on the wire: certificates derived from node keys, pinned-key verifiers.
//!
//! # Identity
//!
//! A node's identity is its ed25519 public key ([`NodeId`]). Its TLS certificate is a
//! self-signed X.509 certificate whose SubjectPublicKeyInfo is that same key: the
//! 32-byte seed of the node's [`Keypair`] is wrapped as PKCS#8 v1 (RFC 8410) and handed
//! to rcgen (certificate) and rustls (handshake signatures). Nothing else in the
//! certificate matters: names, validity dates, extensions and the self-signature are
//! not checked by the peer, because possession of the key is proved by the TLS 1.3
//! `CertificateVerify` signature, which the verifiers below check against the pinned
//! key. Certificates never expire; rotating a key means changing the pinned peer sets.
//!
//! # Pinning
//!
//! * Client side (`PinnedServerVerifier`): one verifier per dial, pinned to exactly
//!   the key that was dialed. The TLS server name is ignored.
//! * Server side (`PinnedClientVerifier`): client certificates are mandatory; a key is
//!   accepted only if it is in the union of the peer sets of the protocols this endpoint
//!   serves. (rustls does not tell a verifier which ALPN protocol was negotiated, so the
//!   per-protocol check happens right after the handshake, before any application byte
//!   is read: see `endpoint.rs`.)
//! * Both: the certificate must carry an Ed25519 key, the chain must be a single
//!   certificate, and the handshake signature must be `ed25519` (the only scheme
//!   offered). TLS 1.2 is disabled (QUIC requires 1.3). Session resumption and 0-RTT are
//!   disabled on both sides: a resumed handshake carries no certificate, so pinning would
//!   rest on a ticket instead of a fresh signature by the pinned key.

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, Mutex, RwLock};

use lamina_primitives::{Domain, Keypair, NodeId, PublicKey};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer, ServerName, SubjectPublicKeyInfoDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::sign::CertifiedKey;
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};

use crate::error::NetError;

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): the key follows.
const ED25519_SPKI_PREFIX: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];
/// DER prefix of an Ed25519 PKCS#8 v1 private key (RFC 8410): the 32-byte seed follows.
const ED25519_PKCS8_V1_PREFIX: [u8; 16] =
    [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];

/// The TLS server name sent by clients. Ignored by verification (identity is the key).
pub(crate) const SERVER_NAME: &str = "lamina";

/// Domain of the stateless-reset key derived from the node key.
static RESET_KEY_DOMAIN: Domain = Domain::new("lamina net stateless reset v1");

/// A node's TLS material: its certificate and signing key, derived from its [`Keypair`].
#[derive(Clone)]
pub struct Identity {
    id: NodeId,
    certified: Arc<CertifiedKey>,
    provider: Arc<CryptoProvider>,
    reset_key: [u8; 32],
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity({:?})", self.id)
    }
}

impl Identity {
    /// Derives the certificate and TLS signing key from the node key.
    pub fn new(keypair: &Keypair) -> Result<Self, NetError> {
        let secret = keypair.secret();
        let mut pkcs8 = Vec::with_capacity(48);
        pkcs8.extend_from_slice(&ED25519_PKCS8_V1_PREFIX);
        pkcs8.extend_from_slice(secret.seed());
        let der = PrivatePkcs8KeyDer::from(pkcs8);
        let rc_key = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&der, &rcgen::PKCS_ED25519)
            .map_err(|e| NetError::Tls(format!("node key as rcgen key: {e}")))?;
        let mut params = rcgen::CertificateParams::new(vec![SERVER_NAME.to_string()])
            .map_err(|e| NetError::Tls(format!("certificate parameters: {e}")))?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(rcgen::DnType::CommonName, format!("lamina node {}", keypair.public().to_hex()));
        let cert = params.self_signed(&rc_key).map_err(|e| NetError::Tls(format!("self-signing: {e}")))?;
        let cert_der = cert.der().clone();
        // The certificate must carry exactly the node key (checked, not assumed).
        if ed25519_key_of(&cert_der) != Some(keypair.public()) {
            return Err(NetError::Tls("generated certificate does not carry the node key".into()));
        }
        let signing = rustls::crypto::ring::sign::any_eddsa_type(&der)
            .map_err(|e| NetError::Tls(format!("node key as TLS signing key: {e}")))?;
        let certified = Arc::new(CertifiedKey::new(vec![cert_der], signing));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let reset_key = RESET_KEY_DOMAIN.hash(secret.seed()).0;
        Ok(Identity { id: keypair.public(), certified, provider, reset_key })
    }

    /// The node's identity (its public key).
    pub fn node_id(&self) -> NodeId {
        self.id
    }

    /// The node's self-signed certificate (DER).
    pub fn certificate(&self) -> &CertificateDer<'static> {
        &self.certified.cert[0]
    }

    /// A client config for one dial, pinned to `expected`, offering `alpns` (a
    /// protocol's versions, newest first; the server picks among them).
    pub(crate) fn client_config(
        &self,
        expected: NodeId,
        alpns: Vec<Vec<u8>>,
    ) -> Result<(rustls::ClientConfig, Arc<PinnedServerVerifier>), NetError> {
        let verifier = Arc::new(PinnedServerVerifier::new(expected, self.provider.clone()));
        let mut cfg = rustls::ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| NetError::Tls(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(verifier.clone())
            .with_client_cert_resolver(Arc::new(FixedClientCert(self.certified.clone())));
        cfg.alpn_protocols = alpns;
        cfg.resumption = rustls::client::Resumption::disabled();
        cfg.enable_early_data = false;
        Ok((cfg, verifier))
    }

    /// The server config: client certificates mandatory, pinned to `allowed`, serving
    /// `alpns`. Their order is the server's preference: rustls picks the first of them
    /// that the client offered.
    pub(crate) fn server_config(
        &self,
        allowed: Arc<RwLock<Allowed>>,
        alpns: Vec<Vec<u8>>,
    ) -> Result<rustls::ServerConfig, NetError> {
        let verifier =
            Arc::new(PinnedClientVerifier { allowed, algorithms: self.provider.signature_verification_algorithms });
        let mut cfg = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| NetError::Tls(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(Arc::new(FixedServerCert(self.certified.clone())));
        cfg.alpn_protocols = alpns;
        cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        cfg.send_tls13_tickets = 0;
        cfg.max_early_data_size = 0;
        Ok(cfg)
    }

    /// The stateless-reset key: derived from the node key, so that a node restarted on
    /// the same address can reset its peers' stale connections at once instead of
    /// leaving them to the idle timeout.
    pub(crate) fn reset_key(&self) -> Arc<dyn quinn_proto::crypto::HmacKey> {
        Arc::new(ResetKey(self.reset_key))
    }
}

/// The Ed25519 key carried by a certificate, if it is a well-formed X.509 certificate
/// with an Ed25519 SubjectPublicKeyInfo.
pub fn ed25519_key_of(cert: &CertificateDer<'_>) -> Option<PublicKey> {
    let parsed = rustls::server::ParsedCertificate::try_from(cert).ok()?;
    key_of_spki(&parsed.subject_public_key_info())
}

fn key_of_spki(spki: &SubjectPublicKeyInfoDer<'_>) -> Option<PublicKey> {
    let bytes: &[u8] = spki.as_ref();
    if bytes.len() != ED25519_SPKI_PREFIX.len() + 32 || bytes[..ED25519_SPKI_PREFIX.len()] != ED25519_SPKI_PREFIX {
        return None;
    }
    let mut key = [0u8; 32];
    key.copy_from_slice(&bytes[ED25519_SPKI_PREFIX.len()..]);
    Some(PublicKey(key))
}

/// Why a presented certificate was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum CertRejection {
    /// Not a single well-formed certificate with an Ed25519 key.
    NotEd25519,
    /// A well-formed key that is not the pinned one (or not in the pinned set).
    Unpinned(NodeId),
}

fn check_chain(end_entity: &CertificateDer<'_>, intermediates: &[CertificateDer<'_>]) -> Result<NodeId, CertRejection> {
    if !intermediates.is_empty() {
        return Err(CertRejection::NotEd25519);
    }
    ed25519_key_of(end_entity).ok_or(CertRejection::NotEd25519)
}

fn rejection_error(r: &CertRejection) -> rustls::Error {
    match r {
        CertRejection::NotEd25519 => rustls::Error::InvalidCertificate(CertificateError::BadEncoding),
        // -> TLS alert access_denied, which the dialing side maps to NetError::AccessDenied.
        CertRejection::Unpinned(_) => {
            rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure)
        }
    }
}

/// Verifies the TLS 1.3 handshake signature: Ed25519 only, by the certificate's key.
fn verify_signature(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
    algorithms: &WebPkiSupportedAlgorithms,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    if dss.scheme != SignatureScheme::ED25519 {
        return Err(rustls::Error::PeerMisbehaved(rustls::PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme));
    }
    let parsed = rustls::server::ParsedCertificate::try_from(cert)?;
    let spki = parsed.subject_public_key_info();
    if key_of_spki(&spki).is_none() {
        return Err(rustls::Error::InvalidCertificate(CertificateError::BadEncoding));
    }
    rustls::crypto::verify_tls13_signature_with_raw_key(message, &spki, dss, algorithms)
}

fn tls12_refused() -> rustls::Error {
    rustls::Error::PeerIncompatible(rustls::PeerIncompatible::Tls12NotOffered)
}

/// Client-side verifier: accepts exactly one key (the one dialed). Remembers why it
/// refused, so that the dial can report a typed error.
pub(crate) struct PinnedServerVerifier {
    expected: NodeId,
    algorithms: WebPkiSupportedAlgorithms,
    rejected: Mutex<Option<CertRejection>>,
}

impl fmt::Debug for PinnedServerVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PinnedServerVerifier({:?})", self.expected)
    }
}

impl PinnedServerVerifier {
    fn new(expected: NodeId, provider: Arc<CryptoProvider>) -> Self {
        PinnedServerVerifier {
            expected,
            algorithms: provider.signature_verification_algorithms,
            rejected: Mutex::new(None),
        }
    }

    /// The pinned key.
    pub(crate) fn expected(&self) -> NodeId {
        self.expected
    }

    /// Why the server's certificate was refused, if it was.
    pub(crate) fn rejection(&self) -> Option<CertRejection> {
        self.rejected.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl ServerCertVerifier for PinnedServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let outcome = check_chain(end_entity, intermediates)
            .and_then(|key| if key == self.expected { Ok(()) } else { Err(CertRejection::Unpinned(key)) });
        match outcome {
            Ok(()) => Ok(ServerCertVerified::assertion()),
            Err(r) => {
                let err = rejection_error(&r);
                *self.rejected.lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
                Err(err)
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(tls12_refused())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

/// Who the TLS layer lets finish a handshake: the union of the served protocols' pinned
/// keys, or any key when one served protocol is open. (Which protocol a key may use is
/// checked once the handshake names it.)
#[derive(Debug, Default)]
pub(crate) struct Allowed {
    pub(crate) keys: HashSet<NodeId>,
    pub(crate) any: bool,
}

/// Server-side verifier: client certificates are mandatory, must be a single
/// self-signed Ed25519 certificate, and must carry a key in the shared allowed set
/// (any key when a served protocol is open).
pub(crate) struct PinnedClientVerifier {
    allowed: Arc<RwLock<Allowed>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl fmt::Debug for PinnedClientVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PinnedClientVerifier")
    }
}

impl ClientCertVerifier for PinnedClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let key = check_chain(end_entity, intermediates).map_err(|r| rejection_error(&r))?;
        let allowed = {
            let a = self.allowed.read().unwrap_or_else(|e| e.into_inner());
            a.any || a.keys.contains(&key)
        };
        if allowed {
            Ok(ClientCertVerified::assertion())
        } else {
            tracing::debug!(target: "lamina::net", peer = %key, "refused a client key that no served protocol pins");
            Err(rejection_error(&CertRejection::Unpinned(key)))
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(tls12_refused())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

#[derive(Debug)]
struct FixedClientCert(Arc<CertifiedKey>);

impl rustls::client::ResolvesClientCert for FixedClientCert {
    fn resolve(&self, _root_hint_subjects: &[&[u8]], sigschemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        sigschemes.contains(&SignatureScheme::ED25519).then(|| self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

#[derive(Debug)]
struct FixedServerCert(Arc<CertifiedKey>);

impl rustls::server::ResolvesServerCert for FixedServerCert {
    fn resolve(&self, _client_hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// Keyed blake3 as the HMAC for QUIC stateless-reset tokens.
struct ResetKey([u8; 32]);

impl quinn_proto::crypto::HmacKey for ResetKey {
    fn sign(&self, data: &[u8], signature_out: &mut [u8]) {
        let tag = blake3::keyed_hash(&self.0, data);
        let n = signature_out.len().min(32);
        signature_out[..n].copy_from_slice(&tag.as_bytes()[..n]);
    }

    fn signature_len(&self) -> usize {
        32
    }

    fn verify(&self, data: &[u8], signature: &[u8]) -> Result<(), quinn_proto::crypto::CryptoError> {
        let tag = blake3::keyed_hash(&self.0, data);
        // Constant-time comparison over the full tag length.
        if signature.len() != 32 {
            return Err(quinn_proto::crypto::CryptoError);
        }
        let diff = tag.as_bytes().iter().zip(signature).fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if diff == 0 { Ok(()) } else { Err(quinn_proto::crypto::CryptoError) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_carries_the_node_key() {
        let kp = Keypair::for_testing(1);
        let id = Identity::new(&kp).unwrap();
        assert_eq!(ed25519_key_of(id.certificate()), Some(kp.public()));
        assert_eq!(id.node_id(), kp.public());
        // Deterministic key, per-node material.
        let other = Identity::new(&Keypair::for_testing(2)).unwrap();
        assert_ne!(ed25519_key_of(other.certificate()), Some(kp.public()));
        assert_ne!(id.reset_key, other.reset_key);
    }

    #[test]
    fn garbage_certificates_have_no_key() {
        assert_eq!(ed25519_key_of(&CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x00])), None);
        assert_eq!(ed25519_key_of(&CertificateDer::from(Vec::new())), None);
    }

    #[test]
    fn server_verifier_pins_exactly_the_dialed_key() {
        let a = Identity::new(&Keypair::for_testing(1)).unwrap();
        let b = Identity::new(&Keypair::for_testing(2)).unwrap();
        let v = PinnedServerVerifier::new(a.node_id(), a.provider.clone());
        let name = ServerName::try_from(SERVER_NAME).unwrap();
        assert!(v.verify_server_cert(a.certificate(), &[], &name, &[], UnixTime::now()).is_ok());
        assert!(v.rejection().is_none());
        assert!(v.verify_server_cert(b.certificate(), &[], &name, &[], UnixTime::now()).is_err());
        assert_eq!(v.rejection(), Some(CertRejection::Unpinned(b.node_id())));
        // A chain is refused even if the leaf is right.
        assert!(
            v.verify_server_cert(a.certificate(), &[b.certificate().clone()], &name, &[], UnixTime::now()).is_err()
        );
    }

    #[test]
    fn client_verifier_uses_the_shared_allowed_set() {
        let a = Identity::new(&Keypair::for_testing(1)).unwrap();
        let b = Identity::new(&Keypair::for_testing(2)).unwrap();
        let allowed = Arc::new(RwLock::new(Allowed::default()));
        let v =
            PinnedClientVerifier { allowed: allowed.clone(), algorithms: a.provider.signature_verification_algorithms };
        assert!(v.verify_client_cert(a.certificate(), &[], UnixTime::now()).is_err());
        allowed.write().unwrap().keys.insert(a.node_id());
        assert!(v.verify_client_cert(a.certificate(), &[], UnixTime::now()).is_ok());
        assert!(v.verify_client_cert(b.certificate(), &[], UnixTime::now()).is_err());
        // Open access: any well-formed certificate passes (the protocol decides).
        allowed.write().unwrap().any = true;
        assert!(v.verify_client_cert(b.certificate(), &[], UnixTime::now()).is_ok());
    }

    #[test]
    fn reset_key_signs_and_verifies() {
        use quinn_proto::crypto::HmacKey;
        let k = ResetKey([7; 32]);
        let mut sig = [0u8; 32];
        k.sign(b"cid", &mut sig);
        assert!(k.verify(b"cid", &sig).is_ok());
        sig[3] ^= 1;
        assert!(k.verify(b"cid", &sig).is_err());
        assert!(k.verify(b"cid", &sig[..16]).is_err());
    }
}
