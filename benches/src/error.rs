//! The harness's one error type.

use std::path::PathBuf;

/// Why a benchmark could not run or its results could not be written.
///
/// Faults *during* a run (a process that will not restart, a target that refuses
/// transactions) are not errors: they are recorded in the results (fault markers with
/// their outcome, rejected counts). Errors are for what makes a run meaningless or
/// impossible.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The spec is inconsistent (empty sweep, zero duration, rate not positive, …).
    #[error("invalid bench spec: {0}")]
    Spec(String),
    /// The workload cannot be generated for this deployment (too few funded accounts,
    /// a payload size the chosen payload kind cannot have, …).
    #[error("workload: {0}")]
    Workload(String),
    /// Pre-generating a point's transactions would take more memory than allowed.
    #[error("point at {rate} tx/s needs about {need} bytes of pre-signed transactions, over the limit of {limit}")]
    Memory {
        /// Offered rate of the point.
        rate: f64,
        /// Estimated bytes.
        need: u64,
        /// The spec's limit.
        limit: u64,
    },
    /// The cluster seam failed (start, stop, a fault that could not be issued).
    #[error("cluster: {0}")]
    Cluster(String),
    /// The target could not be connected.
    #[error("target: {0}")]
    Target(String),
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Results could not be serialized, or a results document does not follow the schema.
    #[error("results: {0}")]
    Results(String),
    /// A plot could not be drawn.
    #[error("plot {path}: {reason}")]
    Plot {
        /// The SVG file.
        path: PathBuf,
        /// What plotters reported.
        reason: String,
    },
    /// The load runtime could not be built.
    #[error("runtime: {0}")]
    Runtime(String),
    /// A `/proc` file was missing or malformed.
    #[error("/proc/{pid}: {reason}")]
    Proc {
        /// The process.
        pid: u32,
        /// What was wrong.
        reason: String,
    },
}

impl BenchError {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        BenchError::Io { path: path.into(), source }
    }
}
