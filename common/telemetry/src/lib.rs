//! Observability for Lamina apps: tracing subscriber, Prometheus exporter, admin HTTP server (/metrics, /livez, /readyz, /status).
//!
//! Only apps (the `lamina` binary, the benchmark harness) depend on this crate: libraries
//! emit `tracing` events and `metrics` through the facades and record readiness in a
//! [`lamina_interfaces::Health`] handle; the app installs the subscriber and the exporter
//! once and serves them here.
//!
//! * [`logging`]: a `tracing` subscriber with text or JSON output, `RUST_LOG`-style
//!   filters and an optional log file.
//! * [`prometheus`]: installs the `metrics` recorder (Prometheus text, rendered on
//!   demand, no listener of its own) and adds cheap process metrics from `/proc/self`.
//! * [`admin`]: the per-service admin HTTP server: `/metrics`, `/livez`, `/readyz`,
//!   `/status`.
//! * [`client`]: a tiny HTTP/1 client for those endpoints (used by `lamina devnet status`
//!   and other CLI commands).

use std::net::SocketAddr;
use std::path::PathBuf;

pub mod admin;
pub mod client;
pub mod logging;
pub mod process;
pub mod prometheus;

pub use admin::{AdminServer, AdminState};
pub use client::HttpResponse;
pub use logging::{LogConfig, LogFormat};
pub use prometheus::MetricsHandle;

/// Everything that can go wrong in telemetry setup, serving or HTTP requests.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// A log filter does not parse (`RUST_LOG` syntax).
    #[error("invalid log filter {filter:?}: {reason}")]
    BadFilter {
        /// The filter as given.
        filter: String,
        /// The parser's complaint.
        reason: String,
    },
    /// A log format name is neither `text` nor `json`.
    #[error("unknown log format {0:?} (expected \"text\" or \"json\")")]
    BadFormat(String),
    /// The log file cannot be opened for appending.
    #[error("cannot open log file {path}: {source}")]
    LogFile {
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A global `tracing` subscriber is already installed in this process.
    #[error("a global tracing subscriber is already installed")]
    SubscriberInstalled,
    /// The Prometheus recorder could not be installed (one is already installed).
    #[error("cannot install the Prometheus recorder: {0}")]
    Recorder(String),
    /// The admin server cannot bind its address.
    #[error("cannot bind admin server on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// An HTTP request failed (connect, protocol or I/O error).
    #[error("HTTP GET http://{addr}{path} failed: {reason}")]
    Http {
        /// The server.
        addr: SocketAddr,
        /// The request path.
        path: String,
        /// What failed.
        reason: String,
    },
    /// An HTTP request did not complete in time.
    #[error("HTTP GET http://{addr}{path} timed out")]
    Timeout {
        /// The server.
        addr: SocketAddr,
        /// The request path.
        path: String,
    },
    /// A response body is larger than the client accepts.
    #[error("response from http://{addr}{path} exceeds {limit} bytes")]
    TooLarge {
        /// The server.
        addr: SocketAddr,
        /// The request path.
        path: String,
        /// The limit in bytes.
        limit: usize,
    },
    /// A response body is not the JSON the caller expected.
    #[error("response from http://{addr}{path} is not JSON: {source}")]
    BadJson {
        /// The server.
        addr: SocketAddr,
        /// The request path.
        path: String,
        /// The parser's complaint.
        source: serde_json::Error,
    },
}
