//! Metric names (`lamina_da_<thing>_<unit>`; counters end in `_total`).
//!
//! Node side:
//! * `lamina_da_node_columns_stored_total`: columns verified and stored.
//! * `lamina_da_node_attestations_total`: attestations signed.
//! * `lamina_da_node_rejected_total{reason}`: requests refused (`bad_header`,
//!   `bad_commitment`, `not_assigned`, `bad_column`, `not_codeword`, `unknown_square`,
//!   `bad_request`), the node keeps serving.
//! * `lamina_da_node_served_total{kind}`: answers served (`header`, `roots`, `column`,
//!   `ranges`, `sample`).
//! * `lamina_da_node_squares`: squares held (gauge).
//! * `lamina_da_node_pruned_squares_total`: squares dropped by retention.
//! * `lamina_da_node_followed_height`: last log height the node followed (gauge; 0 for
//!   a node that follows no log).
//!
//!
//! The client side's metrics are `lamina-da-client`'s.

pub(crate) const COLUMNS_STORED: &str = "lamina_da_node_columns_stored_total";
pub(crate) const ATTESTATIONS: &str = "lamina_da_node_attestations_total";
pub(crate) const REJECTED: &str = "lamina_da_node_rejected_total";
pub(crate) const SERVED: &str = "lamina_da_node_served_total";
pub(crate) const SQUARES: &str = "lamina_da_node_squares";
pub(crate) const PRUNED: &str = "lamina_da_node_pruned_squares_total";
pub(crate) const FOLLOWED: &str = "lamina_da_node_followed_height";
