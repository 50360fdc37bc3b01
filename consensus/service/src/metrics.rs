//! Metric names (`lamina_consensus_*`). The library emits through the `metrics` facade;
//! the binary installs the Prometheus exporter.
//!
//! | name | type | labels | meaning |
//! |---|---|---|---|
//! | `lamina_consensus_height` | gauge | | finalized height |
//! | `lamina_consensus_view` | gauge | | current view |
//! | `lamina_consensus_proposals_total` | counter | | proposals made by this validator |
//! | `lamina_consensus_votes_total` | counter | `kind` | votes sent (notarize, nullify, finalize) |
//! | `lamina_consensus_timeouts_total` | counter | | views this validator left by timeout |
//! | `lamina_consensus_certificates_total` | counter | | certificates formed here |
//! | `lamina_consensus_finalization_latency_seconds` | histogram | | proposal timestamp to local finalization |
//! | `lamina_consensus_batch_latency_seconds` | histogram | | batch cut to its block finalized (own batches) |
//! | `lamina_consensus_mempool_txs` | gauge | | transactions held |
//! | `lamina_consensus_mempool_bytes` | gauge | | bytes held |
//! | `lamina_consensus_mempool_parked` | gauge | | transactions parked behind a nonce gap |
//! | `lamina_consensus_nonce_gaps_released_total` | counter | | parked transactions queued after `nonce_gap_ms` without their missing nonce |
//! | `lamina_consensus_pending_batches` | gauge | | certified batches waiting for a block |
//! | `lamina_consensus_batches_total` | counter | `namespace` | batches (blobs) cut, per namespace |
//! | `lamina_consensus_batch_txs_total` | counter | `namespace` | transactions batched, per namespace |
//! | `lamina_consensus_da_failures_total` | counter | | failed dispersals (retried) |
//! | `lamina_consensus_intake_total` | counter | `outcome` | intake answers |
//! | `lamina_consensus_intake_signature_passes_total` | counter | | intake verifier passes (one batch each) |
//! | `lamina_consensus_intake_signatures_total` | counter | | signatures those passes checked |
//! | `lamina_consensus_peer_faults_total` | counter | `kind` | rejected peer messages (bad signature, equivocation, invalid proposal, ...) |
//! | `lamina_consensus_wal_sync_seconds` | histogram | | WAL group-commit fsync time |
//! | `lamina_consensus_messages_total` | counter | `kind` | consensus messages received |
//!
//! Malformed and oversize frames are rejected and counted by the transport
//! (`lamina_net_errors_total{protocol="lamina/consensus/1"}`).

/// Finalized height.
pub const HEIGHT: &str = "lamina_consensus_height";
/// Current view.
pub const VIEW: &str = "lamina_consensus_view";
/// Proposals made.
pub const PROPOSALS: &str = "lamina_consensus_proposals_total";
/// Votes sent, by kind.
pub const VOTES: &str = "lamina_consensus_votes_total";
/// Views left by timeout.
pub const TIMEOUTS: &str = "lamina_consensus_timeouts_total";
/// Certificates formed.
pub const CERTIFICATES: &str = "lamina_consensus_certificates_total";
/// Proposal to finalization.
pub const FINALIZATION_LATENCY: &str = "lamina_consensus_finalization_latency_seconds";
/// Batch cut to ordered.
pub const BATCH_LATENCY: &str = "lamina_consensus_batch_latency_seconds";
/// Mempool transactions.
pub const MEMPOOL_TXS: &str = "lamina_consensus_mempool_txs";
/// Mempool bytes.
pub const MEMPOOL_BYTES: &str = "lamina_consensus_mempool_bytes";
/// Certified batches waiting for a block.
pub const PENDING_BATCHES: &str = "lamina_consensus_pending_batches";
/// Batches cut per namespace.
pub const BATCHES: &str = "lamina_consensus_batches_total";
/// Transactions batched per namespace.
pub const BATCH_TXS: &str = "lamina_consensus_batch_txs_total";
/// Failed dispersals.
pub const DA_FAILURES: &str = "lamina_consensus_da_failures_total";
/// Intake answers.
pub const INTAKE: &str = "lamina_consensus_intake_total";
/// Intake verifier passes.
pub const INTAKE_SIG_PASSES: &str = "lamina_consensus_intake_signature_passes_total";
/// Signatures checked by intake verifier passes.
pub const INTAKE_SIGS: &str = "lamina_consensus_intake_signatures_total";
/// Peer faults.
pub const FAULTS: &str = "lamina_consensus_peer_faults_total";
/// WAL fsync time.
pub const WAL_SYNC: &str = "lamina_consensus_wal_sync_seconds";
/// Messages received.
pub const MESSAGES: &str = "lamina_consensus_messages_total";
/// Transactions parked behind a nonce gap.
pub const MEMPOOL_PARKED: &str = "lamina_consensus_mempool_parked";
/// Parked transactions queued after the gap timeout.
pub const NONCE_GAPS_RELEASED: &str = "lamina_consensus_nonce_gaps_released_total";
