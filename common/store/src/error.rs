//! The crate's one error type.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong in the log.
///
/// Two kinds matter to callers: [`Error::Corruption`] means the bytes on disk are not
/// what this log wrote (bit rot, a misdirected or lost write, tampering) below the point
/// that was acknowledged as durable: the node must halt or repair from peers, never
/// continue as if nothing happened. [`Error::Io`] and [`Error::Failed`] are local faults:
/// after a failed write or sync the log is fail-stop and refuses all further writes.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O operation failed. If it was a write or a sync, the log is now failed.
    #[error("store i/o error during {op}: {source}")]
    Io {
        /// What the log was doing.
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// An earlier write or sync failed; the log refuses further appends and syncs
    /// (fail-stop: after a failed fsync the page cache cannot be trusted, so the process
    /// must restart and recover from what is on disk).
    #[error("store is failed after an earlier error ({reason}); restart and recover")]
    Failed {
        /// The first error.
        reason: String,
    },
    /// Another process (or another `Log` in this process) holds the directory lock.
    #[error("store directory {path} is locked by another open log")]
    Locked {
        /// The log directory.
        path: PathBuf,
    },
    /// A record is larger than the configured maximum (which is at most what fits in an
    /// empty segment). Records never span segments.
    #[error("record of {len} bytes exceeds the maximum of {max}")]
    RecordTooLarge {
        /// Payload length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Data on disk is damaged where it must be intact: a record below the durable
    /// watermark, a segment header, a gap between segments, or a record read back with
    /// a bad checksum. Never silently dropped or repaired.
    #[error("store corruption in segment {segment} at offset {offset} (seq {seq:?}): {reason}")]
    Corruption {
        /// Segment id.
        segment: u64,
        /// Byte offset in the segment.
        offset: u64,
        /// Sequence number of the damaged record, when known.
        seq: Option<u64>,
        /// What was found.
        reason: String,
    },
    /// [`Log::wait_durable`](crate::Log::wait_durable) was asked about a record that has
    /// not been appended yet.
    #[error("record {seq} has not been appended (next sequence number is {next})")]
    NotAppended {
        /// The sequence number asked about.
        seq: u64,
        /// The next sequence number the log will assign.
        next: u64,
    },
    /// The configuration is invalid.
    #[error("invalid store config: {0}")]
    Config(String),
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(op: &'static str) -> impl FnOnce(io::Error) -> Error {
        move |source| Error::Io { op, source }
    }

    /// True for [`Error::Corruption`].
    pub fn is_corruption(&self) -> bool {
        matches!(self, Error::Corruption { .. })
    }
}
