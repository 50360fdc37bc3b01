//! Queries: status, a chain's finalized root (with a proof), claims, accounts; over QUIC
//! (`lamina/settlement/1`) and HTTP/JSON.
//!
//! Every answer is read from the settlement state after the last processed height.
//! HTTP routes (GET only, JSON bodies):
//!
//! | route | answer |
//! |---|---|
//! | `/status` | height, log tip, settlement state root, per chain: finalized height and root, pending claims |
//! | `/chain/<id>` | one chain's status |
//! | `/claims/<chain>` | the chain's recent claims, with status, inclusion height and deadline |
//! | `/claim/<id hex>` | one claim |
//! | `/anchor/<chain>/<height>` | the finalized root at or before `height`, with a Merkle proof against the chain's anchors root |
//! | `/account/<key hex>` | free and bonded balance on the settlement ledger |

use std::sync::Arc;

use lamina_net::{Empty, Handler, Protocol, ProtocolId, Reject};
use lamina_primitives::{ChainId, Digest, Height, NodeId, PublicKey};
use lamina_settlement_core::{ClaimRecord, ClaimStatus, SettlementState};
use tokio_util::sync::CancellationToken;

use crate::follower::Shared;

/// A query.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum SettlementRequest {
    /// Every chain's status.
    Status,
    /// One chain's status.
    Chain(ChainId),
    /// A chain's recent claims.
    Claims(ChainId),
    /// One claim by id.
    Claim(Digest),
    /// The finalized root of a chain at or before a height, with its proof.
    Anchor(ChainId, Height),
    /// A settlement-ledger account.
    Account(PublicKey),
}

impl lamina_primitives::Wire for SettlementRequest {
    const NAME: &'static str = "SettlementRequest";
    const MAX_SIZE: usize = 128;
}

/// One chain's settlement status.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct ChainStatus {
    /// The chain.
    pub chain: ChainId,
    /// Log height up to which the chain's state is final (0: nothing final yet).
    pub finalized_height: Height,
    /// The finalized state root (zero: none yet).
    pub finalized_root: Digest,
    /// The finalized chained receipts root.
    pub finalized_receipts_root: Digest,
    /// The claim that finalized it.
    pub finalized_claim: Digest,
    /// Settlement height at which it finalized.
    pub finalized_at: Height,
    /// Claims still inside their window.
    pub pending: u64,
    /// Root over the chain's finalized anchors (what anchor proofs verify against).
    pub anchors_root: Digest,
}

/// The service's status.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct StatusInfo {
    /// Last processed log height.
    pub height: Height,
    /// Highest log height seen.
    pub log_tip: Height,
    /// Digest of the whole settlement state.
    pub state_root: Digest,
    /// Challenge window, in log heights.
    pub window: u64,
    /// Per chain.
    pub chains: Vec<ChainStatus>,
    /// Squares proven wrongly encoded (verified [`lamina_settlement_core::Entry::BadEncoding`]
    /// proofs kept as evidence), in digest order; at most [`MAX_BAD_SQUARES`] listed.
    pub bad_squares: Vec<Digest>,
    /// How many squares have been proven wrongly encoded since genesis.
    pub bad_encodings: u64,
}

/// Most bad squares listed in a status answer.
pub const MAX_BAD_SQUARES: usize = 64;

/// A claim as settlement sees it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct ClaimInfo {
    /// Claim id.
    pub id: Digest,
    /// Chain.
    pub chain: ChainId,
    /// Parent claim id.
    pub parent: Digest,
    /// Range start (exclusive).
    pub from: Height,
    /// Range end (inclusive).
    pub to: Height,
    /// Claimed state root after `to`.
    pub state_root: Digest,
    /// Claimed chained receipts root.
    pub receipts_root: Digest,
    /// Steps in the claim.
    pub steps: u64,
    /// Claimer.
    pub claimer: PublicKey,
    /// Log height that included it.
    pub included_at: Height,
    /// Last height a challenge may be included (it finalizes after it).
    pub deadline: Height,
    /// `pending`, `finalized`, `slashed`, `orphaned` or `unavailable`.
    pub status: String,
}

/// A finalized root with its proof.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct AnchorInfo {
    /// Chain.
    pub chain: ChainId,
    /// Log height the root describes.
    pub height: Height,
    /// Finalized state root.
    pub state_root: Digest,
    /// Finalized chained receipts root.
    pub receipts_root: Digest,
    /// The claim.
    pub claim: Digest,
    /// Settlement height at which it finalized.
    pub finalized_at: Height,
    /// The chain's anchors root the proof verifies against.
    pub anchors_root: Digest,
    /// Leaf index in the chain's anchor list.
    pub index: u64,
    /// Number of anchors.
    pub leaf_count: u64,
    /// Merkle siblings, leaf level upwards.
    pub siblings: Vec<Digest>,
}

/// A settlement-ledger account.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct AccountInfo {
    /// The key.
    pub account: PublicKey,
    /// Spendable for bonds.
    pub free: u64,
    /// Locked in bonds.
    pub bonded: u64,
    /// Smallest nonce its next settlement transaction may use.
    pub next_nonce: u64,
}

/// An answer.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum SettlementResponse {
    /// Status.
    Status(StatusInfo),
    /// A chain (`None`: unknown).
    Chain(Option<ChainStatus>),
    /// Claims, newest first.
    Claims(Vec<ClaimInfo>),
    /// A claim (`None`: unknown or pruned).
    Claim(Option<ClaimInfo>),
    /// An anchor (`None`: nothing final at or before that height).
    Anchor(Option<AnchorInfo>),
    /// An account.
    Account(AccountInfo),
}

impl lamina_primitives::Wire for SettlementResponse {
    const NAME: &'static str = "SettlementResponse";
    const MAX_SIZE: usize = 4 * 1024 * 1024;
}

/// The QUIC query protocol.
#[derive(Debug)]
pub struct SettlementProtocol;

impl Protocol for SettlementProtocol {
    const ID: ProtocolId = ProtocolId::new("settlement", 1);
    type Request = SettlementRequest;
    type Response = SettlementResponse;
    type Message = Empty;
}

/// Most claims one [`SettlementResponse::Claims`] lists.
pub const MAX_CLAIMS: usize = 256;

fn claim_info(r: &ClaimRecord) -> ClaimInfo {
    let c = &r.claim;
    ClaimInfo {
        id: r.id,
        chain: c.chain_id,
        parent: c.parent,
        from: c.from,
        to: c.to,
        state_root: c.state_root,
        receipts_root: c.receipts_root,
        steps: c.steps.len() as u64,
        claimer: c.claimer,
        included_at: r.included_at,
        deadline: r.deadline,
        status: status_name(r.status).to_string(),
    }
}

/// The lowercase name of a claim status (`pending`, `finalized`, …).
pub fn status_name(s: ClaimStatus) -> &'static str {
    match s {
        ClaimStatus::Pending => "pending",
        ClaimStatus::Finalized => "finalized",
        ClaimStatus::Slashed => "slashed",
        ClaimStatus::Orphaned => "orphaned",
    }
}

fn chain_status(s: &SettlementState, chain: ChainId) -> Option<ChainStatus> {
    if !s.params().chains.contains_key(&chain) {
        return None;
    }
    let a = s.finalized(chain);
    Some(ChainStatus {
        chain,
        finalized_height: a.map(|a| a.to).unwrap_or_default(),
        finalized_root: a.map(|a| a.state_root).unwrap_or_default(),
        finalized_receipts_root: a.map(|a| a.receipts_root).unwrap_or_default(),
        finalized_claim: a.map(|a| a.claim).unwrap_or_default(),
        finalized_at: a.map(|a| a.finalized_at).unwrap_or_default(),
        pending: s.claims(chain).filter(|r| r.status == ClaimStatus::Pending).count() as u64,
        anchors_root: s.anchors_root(chain),
    })
}

/// Answers a query from the shared state.
pub fn answer(shared: &Shared, q: &SettlementRequest) -> SettlementResponse {
    let s = shared.read();
    match q {
        SettlementRequest::Status => SettlementResponse::Status(StatusInfo {
            height: s.height(),
            log_tip: shared.log_tip().max(s.height()),
            state_root: s.state_root(),
            window: s.params().window,
            chains: s.params().chains.keys().filter_map(|c| chain_status(&s, *c)).collect(),
            bad_squares: s.bad_data_roots().take(MAX_BAD_SQUARES).copied().collect(),
            bad_encodings: s.stats().bad_encodings,
        }),
        SettlementRequest::Chain(c) => SettlementResponse::Chain(chain_status(&s, *c)),
        SettlementRequest::Claims(c) => {
            SettlementResponse::Claims(s.claims(*c).take(MAX_CLAIMS).map(claim_info).collect())
        }
        SettlementRequest::Claim(id) => SettlementResponse::Claim(s.claim(id).map(claim_info)),
        SettlementRequest::Anchor(c, h) => SettlementResponse::Anchor(s.anchor_proof(*c, *h).map(|p| AnchorInfo {
            chain: *c,
            height: p.anchor.to,
            state_root: p.anchor.state_root,
            receipts_root: p.anchor.receipts_root,
            claim: p.anchor.claim,
            finalized_at: p.anchor.finalized_at,
            anchors_root: s.anchors_root(*c),
            index: p.proof.index,
            leaf_count: p.proof.leaf_count,
            siblings: p.proof.siblings.clone(),
        })),
        SettlementRequest::Account(k) => {
            let a = s.account(k);
            SettlementResponse::Account(AccountInfo {
                account: *k,
                free: a.free,
                bonded: a.bonded,
                next_nonce: a.next_nonce,
            })
        }
    }
}

/// Serves [`SettlementProtocol`] from the shared state.
#[derive(Debug, Clone)]
pub struct QuicQueries(pub Arc<Shared>);

impl Handler<SettlementProtocol> for QuicQueries {
    async fn request(&self, _peer: NodeId, request: SettlementRequest) -> Result<SettlementResponse, Reject> {
        Ok(answer(&self.0, &request))
    }
}

/// Parses an HTTP path into a request.
pub fn parse_route(path: &str) -> Result<SettlementRequest, (u16, String)> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let chain = |s: &str| s.parse().map(ChainId).map_err(|_| (400, format!("bad chain {s:?}")));
    let height = |s: &str| s.parse().map(Height).map_err(|_| (400, format!("bad height {s:?}")));
    match parts.as_slice() {
        ["status"] => Ok(SettlementRequest::Status),
        ["chain", c] => Ok(SettlementRequest::Chain(chain(c)?)),
        ["claims", c] => Ok(SettlementRequest::Claims(chain(c)?)),
        ["claim", id] => {
            Ok(SettlementRequest::Claim(Digest::from_hex(id).map_err(|_| (400, format!("bad claim id {id:?}")))?))
        }
        ["anchor", c, h] => Ok(SettlementRequest::Anchor(chain(c)?, height(h)?)),
        ["account", k] => Ok(SettlementRequest::Account(
            PublicKey::from_hex(k).map_err(|_| (400, format!("bad account {k:?} (64 hex digits)")))?,
        )),
        _ => Err((
            404,
            format!(
                "no route {path}; try /status /chain/<id> /claims/<chain> /claim/<id> /anchor/<chain>/<height> /account/<key>"
            ),
        )),
    }
}

/// The JSON form of an answer (status code, body).
pub fn to_json(r: &SettlementResponse) -> (u16, serde_json::Value) {
    use serde_json::json;
    let v = |x: serde_json::Result<serde_json::Value>| x.unwrap_or_default();
    match r {
        SettlementResponse::Status(s) => (200, v(serde_json::to_value(s))),
        SettlementResponse::Chain(Some(c)) => (200, v(serde_json::to_value(c))),
        SettlementResponse::Claims(c) => (200, v(serde_json::to_value(c))),
        SettlementResponse::Claim(Some(c)) => (200, v(serde_json::to_value(c))),
        SettlementResponse::Anchor(Some(a)) => (200, v(serde_json::to_value(a))),
        SettlementResponse::Account(a) => (200, v(serde_json::to_value(a))),
        SettlementResponse::Chain(None) => (404, json!({"error": "unknown chain"})),
        SettlementResponse::Claim(None) => (404, json!({"error": "unknown claim"})),
        SettlementResponse::Anchor(None) => (404, json!({"error": "nothing finalized at or before that height"})),
    }
}

/// Answers one HTTP request target (its query string is ignored).
fn http_answer(shared: &Shared, target: &str) -> (u16, serde_json::Value) {
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    match parse_route(path) {
        Ok(q) => to_json(&answer(shared, &q)),
        Err((code, msg)) => (code, serde_json::json!({ "error": msg })),
    }
}

/// Serves the HTTP/JSON queries on `listener` until `shutdown`
/// ([`lamina_net::http::serve_json`]).
pub async fn serve_http(listener: tokio::net::TcpListener, shared: Arc<Shared>, shutdown: CancellationToken) {
    lamina_net::http::serve_json(listener, move |t: &str| http_answer(&shared, t), "settlement", shutdown).await;
}
