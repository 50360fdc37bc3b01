//! Implementations of the seams for composing in one process and for tests: a
//! recording settlement sink and an on-disk ordered-log fixture. (The tests' in-memory
//! DA layer is `lamina_test_utils::FakeDa`; the in-process one with real squares is
//! `lamina_da_core::InProcessDa`.)

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lamina_interfaces::{CheckpointClaim, LogError, OrderedLog, Settlement, SettlementError};
use lamina_primitives::{FinalizedBlock, Height};

/// A settlement sink that records claims in memory (tests, single-process setups).
#[derive(Debug, Clone, Default)]
pub struct RecordingSettlement(pub Arc<Mutex<Vec<CheckpointClaim>>>);

impl Settlement for RecordingSettlement {
    async fn post_claim(&self, claim: CheckpointClaim) -> Result<(), SettlementError> {
        claim.verify_signature().map_err(|e| SettlementError::Rejected(e.to_string()))?;
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(claim);
        Ok(())
    }
}

/// An ordered log stored on disk in a lamina-store log (record `h - 1` holds block `h`):
/// the "real on-disk log" fixture for follower tests, and a way to replay a captured log.
/// Appends are durable; reads wait for missing heights (polling, so another handle in
/// the same process may append).
#[derive(Clone)]
pub struct FileLog {
    log: Arc<lamina_store::Log>,
    appended: Arc<tokio::sync::Notify>,
}

impl std::fmt::Debug for FileLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileLog").field("next", &self.log.next_seq()).finish()
    }
}

impl FileLog {
    /// Opens (or creates) the log in `dir`.
    pub fn open(dir: &Path) -> Result<Self, lamina_store::Error> {
        let log = lamina_store::Log::open(dir, lamina_store::Config { name: "file-log".into(), ..Default::default() })?;
        Ok(FileLog { log: Arc::new(log), appended: Arc::new(tokio::sync::Notify::new()) })
    }

    /// Appends the next block durably.
    pub fn append(&self, block: &FinalizedBlock) -> Result<(), LogError> {
        let want = Height(self.log.next_seq() + 1);
        if block.height() != want {
            return Err(LogError::Invalid(format!("appended height {} but next is {want}", block.height())));
        }
        let bytes = lamina_primitives::encode(block).map_err(|e| LogError::Invalid(e.to_string()))?;
        self.log.append_durable(&bytes).map_err(|e| LogError::Unavailable(e.to_string()))?;
        self.appended.notify_waiters();
        Ok(())
    }

    fn try_read(&self, from: Height, max: usize) -> Result<Vec<FinalizedBlock>, LogError> {
        if from.0 == 0 {
            return Err(LogError::GenesisHasNoBlock);
        }
        let mut out = Vec::new();
        for item in self.log.iter_from(from.0 - 1).take(max.max(1)) {
            let rec = item.map_err(|e| LogError::Unavailable(e.to_string()))?;
            let b: FinalizedBlock =
                lamina_primitives::decode(rec.bytes()).map_err(|e| LogError::Invalid(e.to_string()))?;
            out.push(b);
        }
        Ok(out)
    }
}

impl OrderedLog for FileLog {
    async fn read(&self, from: Height, max: usize) -> Result<Vec<FinalizedBlock>, LogError> {
        loop {
            let notified = self.appended.notified();
            let got = self.try_read(from, max)?;
            if !got.is_empty() {
                return Ok(got);
            }
            let _ = tokio::time::timeout(Duration::from_millis(50), notified).await;
        }
    }

    async fn tip(&self) -> Result<Height, LogError> {
        Ok(Height(self.log.next_seq()))
    }
}
