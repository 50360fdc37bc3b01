//! Queries: balance, nonce, receipt, balance with a state proof, status; over QUIC
//! (`lamina/execution/1`) and HTTP/JSON.
//!
//! Every answer is taken from the committed (durable) view and names the height it
//! describes. HTTP routes (GET only, JSON bodies, amounts as decimal strings since they
//! exceed JSON's safe integers):
//!
//! | route | answer |
//! |---|---|
//! | `/status` | `{chain, height, state_root, receipts_root, data_root}` |
//! | `/balance/<account hex>[?asset=<id>]` | `{height, account, asset, amount}` |
//! | `/nonce/<account hex>` | `{height, account, nonce}` |
//! | `/receipt/<tx id hex>` | `{height, receipt}` or 404 (unknown, or included below the retained heights) |
//! | `/block/<height>/receipts[?skip=<n>]` | `{committed, height, total, receipts}` (at most [`MAX_BLOCK_RECEIPTS`] from `skip`), or 410 when the height was pruned |
//! | `/proof/balance/<account hex>[?asset=<id>]` | the balance with its [`lamina_execution_core::smt::StateProof`] against `state_root` |
//! | `/bridge/outbox/<dest chain>[?from=<seq>]` | outbound messages to that chain, with the height each was proven at |
//! | `/bridge/inbound/<source chain>[?from=<seq>]` | receipts (`delivered` / `timed_out`) of messages from that chain |
//! | `/bridge/totals` | the bridge counters per (peer chain, asset): what `lamina bridge audit` adds up |
//! | `/counter/<key hex>` | any counter key's value (96 hex digits; for chain machines other than the native ledger) |
//! | `/data/<key hex>` | any data key's value, hex (`null` when absent) |
//!
//! Balance, nonce, proof and bridge queries read the native ledger's keys; a chain
//! builder's machine ([`lamina_execution_core::ChainMachine`]) is read with the counter
//! and data queries, and its receipts carry its own failure type (`F` below).

use std::sync::Arc;

use lamina_execution_core::ledger::{self, AssetId, LedgerFailure};
use lamina_execution_core::{ChainFailure, CounterKey, DataKey, RawKey, StateRead};
use lamina_net::{Handler, Reject};
use lamina_primitives::{ChainId, Digest, Height, NodeId, PublicKey, TxId};
use tokio_util::sync::CancellationToken;

/// The protocol's messages, from `lamina-execution-client` (re-exported for the server).
pub use lamina_execution_client::protocol::*;

use crate::bridge::pair_totals;
use crate::node::Shared;

fn status<F>(shared: &Shared<F>) -> StatusInfo {
    let v = shared.read();
    StatusInfo {
        chain: v.chain,
        height: v.height,
        state_root: v.state_root,
        receipts_root: v.receipts_root,
        data_root: v.data_root,
    }
}

fn failed<F>(e: crate::Error) -> QueryResponse<F> {
    tracing::error!(target: "lamina::execution", error = %e, "query could not read the store");
    QueryResponse::Failed(e.to_string())
}

/// Answers a query from the committed view.
pub fn answer<F: ChainFailure>(shared: &Shared<F>, q: &QueryRequest) -> QueryResponse<F> {
    match q {
        QueryRequest::Status => QueryResponse::Status(status(shared)),
        QueryRequest::Balance(a, asset) => {
            let v = shared.read();
            QueryResponse::Balance(v.height, ledger::balance(&v.state, a, *asset))
        }
        QueryRequest::Nonce(a) => {
            let v = shared.read();
            QueryResponse::Nonce(v.height, ledger::nonce(&v.state, a))
        }
        QueryRequest::Receipt(id) => {
            let index = shared.read().index.clone();
            match index.get::<F>(id) {
                Ok(e) => QueryResponse::Receipt(e.map(|e| (e.height, e.receipt))),
                Err(e) => failed(e),
            }
        }
        QueryRequest::BlockReceipts(height, skip) => {
            let (committed, retained_from, records) = {
                let v = shared.read();
                (v.height, v.retained_from, v.records.clone())
            };
            if *height < retained_from {
                return QueryResponse::Pruned(retained_from);
            }
            if *height > committed {
                return QueryResponse::BlockReceipts(committed, *height, 0, Vec::new());
            }
            match records.get::<F>(*height) {
                Ok(Some(r)) => {
                    let total = r.receipts.len() as u32;
                    let page = r.receipts.into_iter().skip(*skip as usize).take(MAX_BLOCK_RECEIPTS).collect();
                    QueryResponse::BlockReceipts(committed, *height, total, page)
                }
                // Pruned meanwhile (the segment went after the view was read).
                Ok(None) => QueryResponse::Pruned(shared.read().retained_from),
                Err(e) => failed(e),
            }
        }
        QueryRequest::BalanceProof(a, asset) => {
            let v = shared.read();
            let key = ledger::balance_key(a, *asset);
            let info = StatusInfo {
                chain: v.chain,
                height: v.height,
                state_root: v.state_root,
                receipts_root: v.receipts_root,
                data_root: v.data_root,
            };
            match v.state.prove_counter(&key) {
                Ok((amount, proof)) => QueryResponse::BalanceProof(info, amount, proof),
                // A full state tree has no opaque nodes; answer with the balance only.
                Err(_) => QueryResponse::Balance(v.height, v.state.counter(&key)),
            }
        }
        QueryRequest::Outcomes(from) => {
            let v = shared.read();
            let start = v.recent.partition_point(|(h, _)| h < from);
            let (mut out, mut n) = (Vec::new(), 0usize);
            for (h, list) in v.recent.iter().skip(start) {
                if n > 0 && n + list.len() > MAX_OUTCOMES {
                    break;
                }
                n += list.len();
                out.push((*h, list.iter().map(|(id, o)| (*id, o.as_u8())).collect()));
            }
            QueryResponse::Outcomes(v.height, out)
        }
        QueryRequest::BridgeOutbox(dest, from) => {
            let v = shared.read();
            QueryResponse::Bridge(v.height, v.bridge.outbox_items(*dest, *from, MAX_BRIDGE_ITEMS, v.height))
        }
        QueryRequest::BridgeInbound(source, from) => {
            let v = shared.read();
            QueryResponse::Bridge(v.height, v.bridge.inbound_items(*source, *from, MAX_BRIDGE_ITEMS, v.height))
        }
        QueryRequest::BridgeTotals => {
            let v = shared.read();
            let totals = v
                .bridge
                .pairs
                .iter()
                .map(|((peer, asset), origin)| {
                    (*peer, *asset, origin.chain, origin.asset, pair_totals(&v.state, *peer, *asset))
                })
                .collect();
            QueryResponse::BridgeTotals(v.height, totals)
        }
        QueryRequest::Counter(key) => {
            let v = shared.read();
            QueryResponse::Counter(v.height, v.state.counter(key))
        }
        QueryRequest::Data(key) => {
            let v = shared.read();
            let value = v.state.data(key).filter(|d| d.len() <= MAX_DATA_VALUE).map(|d| d.to_vec());
            QueryResponse::Data(v.height, value)
        }
    }
}

/// Serves [`QueryProtocol`] from the shared view.
#[derive(Debug)]
pub struct QuicQueries<F = LedgerFailure>(pub Arc<Shared<F>>);

impl<F> Clone for QuicQueries<F> {
    fn clone(&self) -> Self {
        QuicQueries(self.0.clone())
    }
}

impl<F: ChainFailure> Handler<QueryProtocol<F>> for QuicQueries<F> {
    async fn request(&self, _peer: NodeId, request: QueryRequest) -> Result<QueryResponse<F>, Reject> {
        Ok(answer(&self.0, &request))
    }
}

fn parse_key(s: &str) -> Result<RawKey, String> {
    let bytes = hex::decode(s).map_err(|_| format!("bad key {s:?} (96 hex digits)"))?;
    let raw: [u8; lamina_execution_core::key::KEY_LEN] =
        bytes.try_into().map_err(|_| format!("bad key {s:?} (96 hex digits)"))?;
    Ok(RawKey(raw))
}

fn parse_asset(query: Option<&str>) -> Result<AssetId, String> {
    match query.and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("asset="))) {
        None => Ok(AssetId::NATIVE),
        Some(a) => a.parse().map(AssetId).map_err(|_| format!("bad asset {a:?}")),
    }
}

fn parse_pk(s: &str) -> Result<PublicKey, String> {
    PublicKey::from_hex(s).map_err(|_| format!("bad account {s:?} (64 hex digits)"))
}

fn bridge_item_json(i: &BridgeItem) -> serde_json::Value {
    let m = lamina_interfaces::BridgeMessage::decode(&i.message).ok();
    serde_json::json!({
        "id": m.map(|m| m.id().to_hex()),
        "message": m,
        "written_at": i.written_at,
        "receipt": lamina_interfaces::ReceiptKind::from_u8(i.receipt),
        "proven_at": i.proof.as_ref().map(|p| p.0),
        "refunded_at": i.refunded_at,
    })
}

/// Routes one HTTP path to (status code, JSON body).
pub fn route<F: ChainFailure>(shared: &Shared<F>, target: &str) -> (u16, serde_json::Value) {
    use serde_json::json;
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let res: Result<serde_json::Value, (u16, String)> = (|| match parts.as_slice() {
        ["status"] => Ok(serde_json::to_value(status(shared)).unwrap_or_default()),
        ["balance", a] => {
            let (pk, asset) = (parse_pk(a).map_err(|e| (400, e))?, parse_asset(query).map_err(|e| (400, e))?);
            match answer(shared, &QueryRequest::Balance(pk, asset)) {
                QueryResponse::Balance(h, amount) => {
                    Ok(json!({"height": h, "account": pk, "asset": asset, "amount": amount.to_string()}))
                }
                _ => Err((500, "unexpected answer".into())),
            }
        }
        ["nonce", a] => {
            let pk = parse_pk(a).map_err(|e| (400, e))?;
            match answer(shared, &QueryRequest::Nonce(pk)) {
                QueryResponse::Nonce(h, n) => Ok(json!({"height": h, "account": pk, "nonce": n})),
                _ => Err((500, "unexpected answer".into())),
            }
        }
        ["receipt", id] => {
            let id = Digest::from_hex(id).map_err(|_| (400, format!("bad tx id {id:?}")))?;
            match answer(shared, &QueryRequest::Receipt(TxId(id))) {
                QueryResponse::Receipt(Some((h, r))) => Ok(json!({"height": h, "receipt": r})),
                QueryResponse::Receipt(None) => {
                    let from = shared.read().retained_from;
                    Err((404, format!("unknown transaction (receipts are kept from height {from} on)")))
                }
                QueryResponse::Failed(e) => Err((500, e)),
                _ => Err((500, "unexpected answer".into())),
            }
        }
        ["block", h, "receipts"] => {
            let height = h.parse().map(Height).map_err(|_| (400, format!("bad height {h:?}")))?;
            let skip = match query.and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("skip="))) {
                None => 0,
                Some(n) => n.parse().map_err(|_| (400, format!("bad skip {n:?}")))?,
            };
            match answer(shared, &QueryRequest::BlockReceipts(height, skip)) {
                QueryResponse::BlockReceipts(committed, height, total, receipts) => {
                    Ok(json!({"committed": committed, "height": height, "total": total, "receipts": receipts}))
                }
                QueryResponse::Pruned(from) => {
                    Err((410, format!("height {height} was pruned: records are kept from height {from} on")))
                }
                QueryResponse::Failed(e) => Err((500, e)),
                _ => Err((500, "unexpected answer".into())),
            }
        }
        ["proof", "balance", a] => {
            let (pk, asset) = (parse_pk(a).map_err(|e| (400, e))?, parse_asset(query).map_err(|e| (400, e))?);
            match answer(shared, &QueryRequest::BalanceProof(pk, asset)) {
                QueryResponse::BalanceProof(info, amount, proof) => Ok(json!({
                    "status": info, "account": pk, "asset": asset, "amount": amount.to_string(), "proof": proof
                })),
                _ => Err((500, "no proof".into())),
            }
        }
        ["bridge", "outbox", dest] | ["bridge", "inbound", dest] => {
            let chain = dest.parse().map(ChainId).map_err(|_| (400, format!("bad chain {dest:?}")))?;
            let from = match query.and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("from="))) {
                None => 0,
                Some(f) => f.parse().map_err(|_| (400, format!("bad from {f:?}")))?,
            };
            let req = if parts[1] == "outbox" {
                QueryRequest::BridgeOutbox(chain, from)
            } else {
                QueryRequest::BridgeInbound(chain, from)
            };
            match answer(shared, &req) {
                QueryResponse::Bridge(h, items) => Ok(json!({
                    "height": h,
                    "items": items.iter().map(bridge_item_json).collect::<Vec<_>>(),
                })),
                _ => Err((500, "unexpected answer".into())),
            }
        }
        ["bridge", "totals"] => match answer(shared, &QueryRequest::BridgeTotals) {
            QueryResponse::BridgeTotals(h, t) => Ok(json!({
                "height": h,
                "pairs": t.iter().map(|(peer, asset, oc, oa, c)| json!({
                    "peer": peer, "asset": asset.0.to_string(),
                    "origin_chain": oc, "origin_asset": oa.to_string(),
                    "out": c.out.to_string(), "in": c.inflow.to_string(), "refunded": c.refunded.to_string(),
                    "escrow": c.escrow.to_string(), "minted": c.minted.to_string(), "burned": c.burned.to_string(),
                })).collect::<Vec<_>>(),
            })),
            _ => Err((500, "unexpected answer".into())),
        },
        ["counter", k] => {
            let key = CounterKey::from_raw(parse_key(k).map_err(|e| (400, e))?)
                .ok_or_else(|| (400, format!("{k} is a data key, not a counter key")))?;
            match answer(shared, &QueryRequest::Counter(key)) {
                QueryResponse::Counter(h, value) => Ok(json!({"height": h, "key": k, "value": value.to_string()})),
                _ => Err((500, "unexpected answer".into())),
            }
        }
        ["data", k] => {
            let key = DataKey::from_raw(parse_key(k).map_err(|e| (400, e))?)
                .ok_or_else(|| (400, format!("{k} is a counter key, not a data key")))?;
            match answer(shared, &QueryRequest::Data(key)) {
                QueryResponse::Data(h, value) => {
                    Ok(json!({"height": h, "key": k, "value": value.map(|v| hex::encode(&v))}))
                }
                _ => Err((500, "unexpected answer".into())),
            }
        }
        _ => Err((404, format!("no route {path}"))),
    })();
    match res {
        Ok(v) => (200, v),
        Err((code, msg)) => (code, json!({ "error": msg })),
    }
}

/// Serves the HTTP/JSON queries on `listener` until `shutdown`
/// ([`lamina_net::http::serve_json`]).
pub async fn serve_http<F: ChainFailure>(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared<F>>,
    shutdown: CancellationToken,
) {
    lamina_net::http::serve_json(listener, move |t: &str| route(&shared, t), "execution", shutdown).await;
}
