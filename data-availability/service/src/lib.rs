//! The DA service: disperser, DA storage node, retrieval and light sampler over QUIC.
//!
//! Thin async drivers around `lamina-da-core`, over `lamina-net` (QUIC, pinned keys,
//! ALPN `lamina/da/1`) and `lamina-store` (the column store).
//!
//! * [`run`] (or [`run_on`] with an endpoint the caller bound): the DA storage node role. Verifies each received column (its root, and
//!   that it is a codeword of the committed codec), stores it durably, signs an
//!   attestation over the [`lamina_primitives::DataCommitment`] once it holds every
//!   column assigned to it ([`lamina_da_core::Assignment`]), serves headers, columns,
//!   column ranges and samples with proofs, and prunes squares older than the retention.
//! * [`DaClient`]: the QUIC implementation of [`lamina_interfaces::DataAvailability`]:
//!   `submit` disperses a square and returns the availability certificate;
//!   `get_namespace` retrieves and verifies a namespace's blobs, rebuilding from any `k`
//!   columns and blaming nodes that serve bad data; [`DaClient::sample`] is the light
//!   sampler, and [`sample_once`] the body of `lamina da sample <data-root>`.
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

mod client;
pub mod config;
pub mod error;
pub mod metrics;
mod node;
pub mod protocol;
pub mod store;

pub use client::{CellSample, DaClient, RetrieveError, sample_once};
pub use config::{ClientConfig, Config};
pub use error::{Error, Result};
pub use node::{DaNode, accepted_peers, protocol_config, run, run_on};
