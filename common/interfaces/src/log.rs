//! The ordered log: consensus's output, everyone else's input.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use lamina_primitives::{FinalizedBlock, Height};

/// Why a log read failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    /// The requested heights were pruned from this source; read from another or from a
    /// snapshot.
    #[error("height {requested} pruned; oldest available is {oldest}")]
    Pruned {
        /// First height asked for.
        requested: Height,
        /// Oldest height still served.
        oldest: Height,
    },
    /// Heights start at 1; 0 is the genesis and has no block.
    #[error("height 0 has no block")]
    GenesisHasNoBlock,
    /// The source is unreachable or failed; retrying (possibly elsewhere) may succeed.
    #[error("log unavailable: {0}")]
    Unavailable(String),
    /// The source sent something that does not verify (bad certificate, wrong height,
    /// gap). The caller should not trust this source.
    #[error("log source misbehaved: {0}")]
    Invalid(String),
    /// The log was shut down.
    #[error("log closed")]
    Closed,
}

/// A totally ordered, finalized log of blocks, read from a height.
///
/// # Contract
///
/// * Heights start at 1 and are consecutive; block `h` has `height() == h` and its
///   header's `parent` is the digest of block `h - 1`'s header.
/// * Every returned block is final: it carries a certificate of 2f+1 validator
///   signatures over [`lamina_primitives::BlockHeader::finalization_digest`], and it
///   will never be replaced. Reading the same height twice yields the same block, so
///   callers can restart from any height they persisted (reads are idempotent).
/// * Implementations may be remote and untrusted-in-transit; callers that do not trust
///   the source verify blocks with [`FinalizedBlock::verify`] against the genesis
///   committee.
pub trait OrderedLog: Send + Sync {
    /// Returns the blocks at heights `from, from + 1, …`, at least one and at most `max`,
    /// waiting until block `from` is finalized if it is not yet.
    fn read(&self, from: Height, max: usize) -> impl Future<Output = Result<Vec<FinalizedBlock>, LogError>> + Send;

    /// The highest finalized height this source knows (0 before the first block).
    fn tip(&self) -> impl Future<Output = Result<Height, LogError>> + Send;
}

/// An in-process ordered log: consensus (or a test) appends, readers wait for heights.
/// Cloning gives another handle to the same log.
#[derive(Clone, Default)]
pub struct InMemoryLog {
    inner: Arc<Mutex<LogState>>,
}

#[derive(Default)]
struct LogState {
    blocks: Vec<FinalizedBlock>,
    waiters: Vec<Waker>,
    closed: bool,
}

impl InMemoryLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LogState> {
        // A poisoned lock only means a reader panicked; the block list is still valid.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends the next block. Fails if its height is not `tip + 1`.
    pub fn append(&self, block: FinalizedBlock) -> Result<(), LogError> {
        let mut st = self.lock();
        let want = Height(st.blocks.len() as u64 + 1);
        if block.height() != want {
            return Err(LogError::Invalid(format!("appended height {} but next is {}", block.height(), want)));
        }
        st.blocks.push(block);
        for w in st.waiters.drain(..) {
            w.wake();
        }
        Ok(())
    }

    /// Wakes every reader with [`LogError::Closed`].
    pub fn close(&self) {
        let mut st = self.lock();
        st.closed = true;
        for w in st.waiters.drain(..) {
            w.wake();
        }
    }

    /// Number of blocks (= tip height).
    pub fn len(&self) -> usize {
        self.lock().blocks.len()
    }

    /// True before the first block.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The blocks from `from` on, without waiting (empty if none yet).
    pub fn try_read(&self, from: Height, max: usize) -> Result<Vec<FinalizedBlock>, LogError> {
        if from.0 == 0 {
            return Err(LogError::GenesisHasNoBlock);
        }
        let st = self.lock();
        let start = (from.0 - 1) as usize;
        Ok(st.blocks.iter().skip(start).take(max.max(1)).cloned().collect())
    }
}

struct ReadFuture {
    log: InMemoryLog,
    from: Height,
    max: usize,
}

impl Future for ReadFuture {
    type Output = Result<Vec<FinalizedBlock>, LogError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let got = self.log.try_read(self.from, self.max);
        match got {
            Err(e) => Poll::Ready(Err(e)),
            Ok(v) if !v.is_empty() => Poll::Ready(Ok(v)),
            Ok(_) => {
                let mut st = self.log.lock();
                if st.closed {
                    return Poll::Ready(Err(LogError::Closed));
                }
                // Re-check under the lock so an append between the read and here is seen.
                if st.blocks.len() as u64 >= self.from.0 {
                    drop(st);
                    cx.waker().wake_by_ref();
                } else {
                    st.waiters.push(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }
}

impl OrderedLog for InMemoryLog {
    fn read(&self, from: Height, max: usize) -> impl Future<Output = Result<Vec<FinalizedBlock>, LogError>> + Send {
        ReadFuture { log: self.clone(), from, max }
    }

    fn tip(&self) -> impl Future<Output = Result<Height, LogError>> + Send {
        let h = Height(self.len() as u64);
        std::future::ready(Ok(h))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lamina_primitives::{Block, BlockHeader};
    use std::task::Wake;

    struct Flag(std::sync::atomic::AtomicBool);
    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    fn block(h: u64) -> FinalizedBlock {
        FinalizedBlock {
            block: Block { header: BlockHeader { height: Height(h), ..Default::default() }, batches: vec![] },
            certificate: Default::default(),
        }
    }

    #[test]
    fn reader_waits_then_wakes_on_append() {
        let log = InMemoryLog::new();
        let flag = Arc::new(Flag(Default::default()));
        let waker = Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        let mut fut = Box::pin(log.read(Height(1), 10));
        assert!(fut.as_mut().poll(&mut cx).is_pending());
        log.append(block(1)).unwrap();
        assert!(flag.0.load(std::sync::atomic::Ordering::SeqCst));
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(Ok(v)) => assert_eq!(v.len(), 1),
            _ => panic!("expected the appended block"),
        }
    }

    #[test]
    fn append_rejects_gaps_and_reads_are_bounded() {
        let log = InMemoryLog::new();
        assert!(log.append(block(2)).is_err());
        for h in 1..=5 {
            log.append(block(h)).unwrap();
        }
        let v = log.try_read(Height(2), 2).unwrap();
        assert_eq!(v.iter().map(|b| b.height().0).collect::<Vec<_>>(), vec![2, 3]);
        assert_eq!(log.try_read(Height(0), 1), Err(LogError::GenesisHasNoBlock));
    }

    #[test]
    fn close_wakes_readers_with_error() {
        let log = InMemoryLog::new();
        let flag = Arc::new(Flag(Default::default()));
        let waker = Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        let mut fut = Box::pin(log.read(Height(1), 1));
        assert!(fut.as_mut().poll(&mut cx).is_pending());
        log.close();
        assert!(matches!(fut.as_mut().poll(&mut cx), Poll::Ready(Err(LogError::Closed))));
    }
}
