//! Metrics emitted through the `metrics` facade (the binary installs the exporter).
//!
//! Every series carries the label `log` = [`Config::name`](crate::Config::name).
//!
//! | name | kind | meaning |
//! |---|---|---|
//! | `lamina_store_appended_records_total` | counter | records written to segment files |
//! | `lamina_store_written_bytes_total` | counter | record bytes written (headers included) |
//! | `lamina_store_syncs_total` | counter | group-commit fdatasyncs |
//! | `lamina_store_sync_seconds` | histogram | duration of each group-commit fdatasync |
//! | `lamina_store_durable_seq` | gauge | highest durable sequence number |
//! | `lamina_store_segments_created_total` | counter | segments created (rotation) |
//! | `lamina_store_segments_pruned_total` | counter | segments deleted by pruning |
//! | `lamina_store_truncated_bytes_total` | counter | torn-tail bytes discarded at open |
//! | `lamina_store_failures_total` | counter | fatal write/sync errors (the log is failed) |

use metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};

/// Handles to the log's metric series.
pub(crate) struct Metrics {
    pub appended: Counter,
    pub written_bytes: Counter,
    pub syncs: Counter,
    pub sync_seconds: Histogram,
    pub durable_seq: Gauge,
    pub segments_created: Counter,
    pub segments_pruned: Counter,
    pub truncated_bytes: Counter,
    pub failures: Counter,
}

impl Metrics {
    pub fn new(name: &str) -> Self {
        let l = || metrics::Label::new("log", name.to_string());
        Metrics {
            appended: counter!("lamina_store_appended_records_total", vec![l()]),
            written_bytes: counter!("lamina_store_written_bytes_total", vec![l()]),
            syncs: counter!("lamina_store_syncs_total", vec![l()]),
            sync_seconds: histogram!("lamina_store_sync_seconds", vec![l()]),
            durable_seq: gauge!("lamina_store_durable_seq", vec![l()]),
            segments_created: counter!("lamina_store_segments_created_total", vec![l()]),
            segments_pruned: counter!("lamina_store_segments_pruned_total", vec![l()]),
            truncated_bytes: counter!("lamina_store_truncated_bytes_total", vec![l()]),
            failures: counter!("lamina_store_failures_total", vec![l()]),
        }
    }
}
