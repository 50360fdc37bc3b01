//! The DA service: the DA storage node over QUIC (its clients are lamina-da-client).
//!
//! Thin async drivers around `lamina-da-core`, over `lamina-net` (QUIC, pinned keys,
//! ALPN `lamina/da/1..2`) and `lamina-store` (the column store).
//!
//! * [`run`] (or [`run_on`] with an endpoint the caller bound): the DA storage node role. Verifies each received column (its root, and
//!   that it is a codeword of the committed codec), stores it durably, signs an
//!   attestation over the [`lamina_primitives::DataCommitment`] once it holds every
//!   column assigned to it ([`lamina_da_core::Assignment`]), serves headers, columns,
//!   column ranges and samples with proofs, and prunes by retention. [`run_following`]
//!   also follows the ordered log and keeps each square for `retain_heights` log
//!   heights after the block that ordered it (at least settlement's challenge window
//!   plus a margin, [`min_retain_heights`]); squares no block carried keep the
//!   wall-clock `retention_secs`.
//! * `DaClient` (in `lamina-da-client`, with the protocol's messages): the QUIC
//!   implementation of [`lamina_interfaces::DataAvailability`] that dispersers,
//!   retrieval clients and light samplers use.
//! * [`lamina_da_core::InProcessDa`] is the in-process implementation of the same trait.
//!
//! Bad input from the network (malformed or oversize requests, columns that do not
//! match their root or are not codewords, wrong proofs) gets a typed rejection and a
//! metric ([`metrics`]); the node keeps serving everyone else.
//!
//! Known limits (not done yet): a DA node does not re-check *rows* (it holds only
//! columns), so a wrongly encoded row is caught by retrieval clients, which produce a
//! fraud proof; there is no gossip of fraud proofs to light clients yet; a node that
//! missed a dispersal does not fetch its columns from peers afterwards (repair by
//! peers); dispersal sends each node its columns directly from the disperser.

pub mod config;
pub mod error;
pub mod metrics;
mod node;
pub mod store;

pub use config::Config;
pub use error::{Error, Result};
/// The DA protocol's messages, from `lamina-da-client` (which the node's server answers).
pub use lamina_da_client::protocol;
pub use node::{DaCommittees, DaNode, ReadHandle, accepted_peers, min_retain_heights, run, run_following, run_on};

/// Registers the `# HELP` text of every metric this crate emits with the installed
/// `metrics` recorder (call once, after installing it; the binary does).
pub fn describe_metrics() {
    lamina_store::describe_metrics();
    lamina_da_client::describe_metrics();
    ::metrics::describe_counter!(
        "lamina_da_node_attestations_total",
        "Attestations signed by this DA node once it held every column assigned to it for a square; no labels."
    );
    ::metrics::describe_counter!(
        "lamina_da_node_columns_stored_total",
        "Columns verified and stored by this DA node from store requests; no labels."
    );
    ::metrics::describe_counter!(
        "lamina_da_node_pruned_squares_total",
        "Squares dropped from this DA node's column store by retention (log heights, or the wall-clock period for squares no block carried); no labels."
    );
    ::metrics::describe_gauge!(
        "lamina_da_node_followed_height",
        "Last ordered-log height this DA node followed to learn which block ordered each square (0: it follows no log); no labels."
    );
    ::metrics::describe_counter!(
        "lamina_da_node_rejected_total",
        "Requests this DA node refused, by reason (bad_header, bad_commitment, not_in_committee, unknown_committee, not_assigned, bad_column, not_codeword, unknown_square, bad_request, quota_exceeded)."
    );
    ::metrics::describe_counter!(
        "lamina_da_node_served_total",
        "Requests this DA node answered, by kind (header, roots, column, ranges, disperser, sample)."
    );
    ::metrics::describe_gauge!(
        "lamina_da_node_squares",
        "Squares held in this DA node's column store (set at open, after each store and after pruning); no labels."
    );
}
