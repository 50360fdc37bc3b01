//! The HTTP/JSON intake (what `lamina tx …` and wallets use).
//!
//! | request | answer |
//! |---|---|
//! | `POST /v1/tx` with a [`TxJson`] | `200 {"outcome":"accepted"\|"duplicate","id":"<hex>"}`, `503 {"error":"busy",…}` (retry later), `400 {"error":"bad_signature"\|"unknown_chain"\|"too_large"\|"malformed",…}` |
//! | `POST /v1/txs` with a JSON array of [`TxJson`] (at most 4096) | `200` with an array of the objects above, one per transaction |
//! | `GET /v1/tip` | `200 {"height": <finalized height>}` |
//!
//! Bodies over 16 MiB are refused with `413`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use lamina_interfaces::{SubmitError, SubmitOutcome};
use lamina_primitives::{ChainId, PublicKey, Signature, Transaction};
use tokio_util::sync::CancellationToken;

use crate::intake::Intake;
use crate::ledger::Ledger;
use crate::protocol::MAX_SUBMIT_TXS;

const MAX_BODY: usize = 16 << 20;
const MAX_CONNECTIONS: usize = 1024;

/// A transaction in JSON: integers as numbers, byte strings as lowercase hex.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TxJson {
    /// Chain id.
    pub chain_id: u64,
    /// Sender public key (64 hex digits).
    pub sender: PublicKey,
    /// Sender nonce.
    pub nonce: u64,
    /// Payload (hex).
    pub payload: String,
    /// ed25519 signature over the transaction id (128 hex digits).
    pub signature: Signature,
}

impl TxJson {
    /// The JSON form of a transaction.
    pub fn from_tx(tx: &Transaction) -> Self {
        TxJson {
            chain_id: tx.chain_id.0,
            sender: tx.sender,
            nonce: tx.nonce,
            payload: hex::encode(&tx.payload),
            signature: tx.signature,
        }
    }

    /// The transaction (fails on bad hex).
    pub fn to_tx(&self) -> Result<Transaction, String> {
        let payload = hex::decode(&self.payload).map_err(|e| format!("payload: {e}"))?;
        Ok(Transaction {
            chain_id: ChainId(self.chain_id),
            sender: self.sender,
            nonce: self.nonce,
            payload,
            signature: self.signature,
        })
    }
}

/// The JSON answer for one transaction and its HTTP status.
pub fn outcome_json(r: &Result<SubmitOutcome, SubmitError>) -> (StatusCode, serde_json::Value) {
    use serde_json::json;
    match r {
        Ok(SubmitOutcome::Accepted(id)) => (StatusCode::OK, json!({"outcome": "accepted", "id": id.to_string()})),
        Ok(SubmitOutcome::Duplicate(id)) => (StatusCode::OK, json!({"outcome": "duplicate", "id": id.to_string()})),
        Err(SubmitError::Busy(d)) => (StatusCode::SERVICE_UNAVAILABLE, json!({"error": "busy", "detail": d})),
        Err(SubmitError::TooLarge { size, max }) => {
            (StatusCode::BAD_REQUEST, json!({"error": "too_large", "detail": format!("{size} bytes > {max}")}))
        }
        Err(SubmitError::UnknownChain(c)) => (StatusCode::BAD_REQUEST, json!({"error": "unknown_chain", "detail": c})),
        Err(SubmitError::BadSignature) => (StatusCode::BAD_REQUEST, json!({"error": "bad_signature"})),
        Err(SubmitError::Malformed(d)) => (StatusCode::BAD_REQUEST, json!({"error": "malformed", "detail": d})),
        Err(SubmitError::Transport(d)) => (StatusCode::SERVICE_UNAVAILABLE, json!({"error": "busy", "detail": d})),
        Err(SubmitError::NotAdmitted(d)) => (StatusCode::FORBIDDEN, json!({"error": "not_admitted", "detail": d})),
    }
}

fn json(status: StatusCode, v: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn error(status: StatusCode, what: &str, detail: impl std::fmt::Display) -> Response<Full<Bytes>> {
    json(status, &serde_json::json!({"error": what, "detail": detail.to_string()}))
}

async fn route(intake: Intake, ledger: Arc<Ledger>, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    match (method, path.as_str()) {
        (Method::GET, "/v1/tip") => json(StatusCode::OK, &serde_json::json!({"height": ledger.tip().0})),
        (Method::POST, "/v1/tx") | (Method::POST, "/v1/txs") => {
            let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
                Ok(b) => b.to_bytes(),
                Err(e) => return error(StatusCode::PAYLOAD_TOO_LARGE, "too_large", e),
            };
            if path == "/v1/tx" {
                let tx =
                    match serde_json::from_slice::<TxJson>(&body).map_err(|e| e.to_string()).and_then(|t| t.to_tx()) {
                        Ok(t) => t,
                        Err(e) => return error(StatusCode::BAD_REQUEST, "malformed", e),
                    };
                let r = intake.submit_async(vec![tx]).await;
                let (status, v) =
                    r.first().map(outcome_json).unwrap_or((StatusCode::INTERNAL_SERVER_ERROR, serde_json::Value::Null));
                json(status, &v)
            } else {
                let list: Vec<TxJson> = match serde_json::from_slice(&body) {
                    Ok(l) => l,
                    Err(e) => return error(StatusCode::BAD_REQUEST, "malformed", e),
                };
                if list.len() > MAX_SUBMIT_TXS {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "malformed",
                        format!("more than {MAX_SUBMIT_TXS} transactions"),
                    );
                }
                let mut txs = Vec::with_capacity(list.len());
                for t in &list {
                    match t.to_tx() {
                        Ok(tx) => txs.push(tx),
                        Err(e) => return error(StatusCode::BAD_REQUEST, "malformed", e),
                    }
                }
                let results = intake.submit_async(txs).await;
                let arr: Vec<serde_json::Value> = results.iter().map(|r| outcome_json(r).1).collect();
                json(StatusCode::OK, &serde_json::Value::Array(arr))
            }
        }
        (_, "/v1/tx" | "/v1/txs" | "/v1/tip") => error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", path),
        _ => error(StatusCode::NOT_FOUND, "not_found", path),
    }
}

/// Binds the HTTP intake on `addr` (before serving, so bind errors surface at start).
pub(crate) async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, crate::Error> {
    tokio::net::TcpListener::bind(addr).await.map_err(|source| crate::Error::Http { addr, source })
}

/// Serves until `stop`; then finishes in-flight requests (bounded).
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    intake: Intake,
    ledger: Arc<Ledger>,
    stop: CancellationToken,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let tracker = tokio_util::task::TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            a = listener.accept() => a,
        };
        let Ok((stream, _peer)) = accepted else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else { continue };
        let (intake, ledger, stop) = (intake.clone(), ledger.clone(), stop.clone());
        tracker.spawn(async move {
            let _permit = permit;
            let svc = hyper::service::service_fn(move |req| {
                let (intake, ledger) = (intake.clone(), ledger.clone());
                async move { Ok::<_, Infallible>(route(intake, ledger, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), svc);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(2), conn.as_mut()).await;
                }
            }
        });
    }
    tracker.close();
    let _ = tokio::time::timeout(Duration::from_secs(2), tracker.wait()).await;
}
