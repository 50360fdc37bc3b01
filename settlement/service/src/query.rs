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

use lamina_net::{Handler, Reject};
use lamina_primitives::{ChainId, Digest, Height, NodeId, PublicKey};
use lamina_settlement_core::{ClaimRecord, ClaimStatus, SettlementState};
use tokio_util::sync::CancellationToken;

use crate::follower::Shared;

/// The protocol's messages, from `lamina-settlement-client` (re-exported for the server).
pub use lamina_settlement_client::protocol::*;

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
            window: s.window(),
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
