//! Lamina DA client: the DA protocol's messages, and DaClient (disperser, retrieval, light sampler) without DA node internals.
//!
//! * [`DaClient`]: the QUIC implementation of [`lamina_interfaces::DataAvailability`]:
//!   `submit` disperses a square and returns the availability certificate;
//!   `get_namespace` retrieves and verifies a namespace's blobs, rebuilding from any `k`
//!   columns and blaming nodes that serve bad data; [`DaClient::sample`] is the light
//!   sampler, and [`sample_once`] the body of `lamina da sample <data-root>`.
//! * [`protocol`]: `lamina/da/1..2`'s requests and responses, which DA storage nodes
//!   (`lamina-da-service`) answer, and [`protocol::protocol_config`], its settings.
//!
//! It links no column store and no server: a wallet, a light client or a validator's
//! disperser uses it alone.

pub mod client;
pub mod config;
pub mod error;
pub mod metrics;
pub mod protocol;

pub use client::{CellSample, DaClient, RetrieveError, sample_once};
pub use config::ClientConfig;
pub use error::{Error, Result};
pub use protocol::protocol_config;

/// Registers the `# HELP` text of every metric this crate emits with the installed
/// `metrics` recorder (call once, after installing it; the binary does, through the
/// DA service's `describe_metrics`).
pub fn describe_metrics() {
    ::metrics::describe_counter!(
        "lamina_da_dispersals_total",
        "DA client dispersals finished, by outcome (certified, failed)."
    );
    ::metrics::describe_histogram!(
        "lamina_da_disperse_seconds",
        "Duration of each DA client dispersal, from blobs to availability certificate or failure, in seconds; no labels."
    );
    ::metrics::describe_counter!(
        "lamina_da_misbehaving_answers_total",
        "DA node answers that failed the client's verification, by node (first 16 hex characters of its key)."
    );
    ::metrics::describe_counter!(
        "lamina_da_retrievals_total",
        "DA client namespace retrievals finished, by outcome (ok, absent, bad_encoding, failed)."
    );
    ::metrics::describe_counter!(
        "lamina_da_rows_rebuilt_total",
        "Square rows the DA client reconstructed by erasure decoding during retrieval (cells missing or inconsistent with the row root); no labels."
    );
    ::metrics::describe_counter!(
        "lamina_da_samples_total",
        "DA sampling results, by outcome (verified or invalid per node answer, missing per cell no node answered correctly)."
    );
    ::metrics::describe_gauge!(
        "lamina_da_sampling_confidence",
        "Availability confidence (0 to 1) of the last sampling run, 0 when any sample failed; no labels."
    );
}
