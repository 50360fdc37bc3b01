//! Metric names of the DA client (`lamina_da_<thing>_<unit>`; counters end in `_total`).
//!
//! Client side:
//! * `lamina_da_disperse_seconds`: time from blobs to certificate (histogram).
//! * `lamina_da_dispersals_total{outcome}`: `certified`, `failed`.
//! * `lamina_da_retrievals_total{outcome}`: `ok`, `absent`, `failed`, `bad_encoding`.
//! * `lamina_da_rows_rebuilt_total`: rows decoded from parity during retrieval.
//! * `lamina_da_misbehaving_answers_total{node}`: answers that failed verification.
//! * `lamina_da_samples_total{outcome}`: `verified`, `invalid`, `missing`.
//! * `lamina_da_sampling_confidence`: confidence of the last sampling run (gauge).

pub(crate) const DISPERSE_SECONDS: &str = "lamina_da_disperse_seconds";
pub(crate) const DISPERSALS: &str = "lamina_da_dispersals_total";
pub(crate) const RETRIEVALS: &str = "lamina_da_retrievals_total";
pub(crate) const ROWS_REBUILT: &str = "lamina_da_rows_rebuilt_total";
pub(crate) const MISBEHAVING: &str = "lamina_da_misbehaving_answers_total";
pub(crate) const SAMPLES: &str = "lamina_da_samples_total";
pub(crate) const SAMPLING_CONFIDENCE: &str = "lamina_da_sampling_confidence";
