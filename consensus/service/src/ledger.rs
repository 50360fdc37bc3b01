//! The validator's copy of the ordered log: finalized blocks in a `lamina-store` log
//! (record `h - 1` is the block at height `h`), and [`LocalLog`], the in-process
//! [`OrderedLog`] over it.
//!
//! Appends are not synced one by one (a lost tail is fetched again from peers after a
//! crash: the blocks carry their certificates); [`Ledger::sync`] makes the tip durable
//! before the WAL records it protects are pruned.

use std::path::Path;
use std::sync::Arc;

use lamina_interfaces::{LogError, OrderedLog};
use lamina_primitives::{Digest, FinalizedBlock, Height, codec};
use lamina_store::{Config as StoreConfig, Log};
use tokio::sync::watch;

use crate::error::Error;

/// The finalized blocks this validator has output.
pub struct Ledger {
    log: Log,
    tip: watch::Sender<u64>,
    /// Digest of the tip block (to check that appends chain).
    last: parking_lot::Mutex<Digest>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger").field("tip", &*self.tip.borrow()).finish()
    }
}

impl Ledger {
    /// Opens (or creates) the log in `dir` and checks its tail.
    pub fn open(dir: &Path, segment_bytes: u64) -> Result<Self, Error> {
        let cfg = StoreConfig {
            segment_size: segment_bytes,
            max_record_size: StoreConfig::capacity(segment_bytes).min(64 << 20),
            name: "consensus-log".into(),
            ..StoreConfig::default()
        };
        let log = Log::open(dir, cfg).map_err(Error::store("ordered log"))?;
        let tip = log.next_seq();
        let mut last = Digest::ZERO;
        if tip > 0 {
            let fb = read_at(&log, tip - 1)?;
            if fb.height().0 != tip {
                return Err(Error::BrokenLog(tip));
            }
            last = fb.block.digest();
        }
        let (tx, _) = watch::channel(tip);
        Ok(Ledger { log, tip: tx, last: parking_lot::Mutex::new(last) })
    }

    /// Appends the next block (its height must be tip + 1 and it must extend the tip).
    pub fn append(&self, fb: &FinalizedBlock) -> Result<(), Error> {
        let mut last = self.last.lock();
        let want = self.log.next_seq() + 1;
        if fb.height().0 != want || fb.block.header.parent != *last {
            return Err(Error::BrokenLog(fb.height().0));
        }
        let bytes = codec::encode(fb).map_err(|e| Error::Decode {
            what: "ordered log",
            seq: want - 1,
            reason: e.to_string(),
        })?;
        self.log.append(&bytes).map_err(Error::store("ordered log"))?;
        *last = fb.block.digest();
        drop(last);
        self.tip.send_replace(want);
        Ok(())
    }

    /// Height of the last block.
    pub fn tip(&self) -> Height {
        Height(*self.tip.borrow())
    }

    /// The oldest height still stored (1 until something is pruned).
    pub fn first(&self) -> Height {
        Height(self.log.first_seq() + 1)
    }

    /// Deletes the store segments whose blocks are all below `height` (whole segments:
    /// some blocks below it may stay). Returns how many segments went.
    pub fn prune_below(&self, height: Height) -> Result<usize, Error> {
        self.log.prune_below(height.0.saturating_sub(1)).map_err(Error::store("ordered log"))
    }

    /// Makes every appended block durable (blocking: call from a blocking context).
    pub fn sync(&self) -> Result<Height, Error> {
        self.log.sync().map_err(Error::store("ordered log"))?;
        Ok(Height(self.log.durable_seq().map_or(0, |s| s + 1)))
    }

    /// The blocks from `from` on: at most `max`, and at most about `max_bytes` (at least
    /// one block if any); [`Error::Pruned`] when `from` is below [`Ledger::first`].
    pub fn read(&self, from: Height, max: usize, max_bytes: usize) -> Result<Vec<FinalizedBlock>, Error> {
        let first = self.first();
        if from.0.max(1) < first.0 {
            return Err(Error::Pruned(first.0));
        }
        let tip = self.tip().0;
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let mut h = from.0.max(1);
        while h <= tip && out.len() < max.max(1) {
            let rec = self.log.read(h - 1).map_err(Error::store("ordered log"))?;
            let Some(rec) = rec else { break };
            if !out.is_empty() && bytes + rec.len() > max_bytes {
                break;
            }
            bytes += rec.len();
            out.push(decode_record(h - 1, &rec)?);
            h += 1;
        }
        Ok(out)
    }

    /// The last `count` blocks (for restarting the core).
    pub fn recent(&self, count: u64) -> Result<Vec<FinalizedBlock>, Error> {
        let tip = self.tip().0;
        let from = tip.saturating_sub(count) + 1;
        (from..=tip).map(|h| read_at(&self.log, h - 1)).collect()
    }

    /// A receiver that changes whenever the tip does.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.tip.subscribe()
    }

    /// Syncs and closes the store.
    pub fn close(self) -> Result<(), Error> {
        self.log.close().map_err(Error::store("ordered log"))
    }
}

fn read_at(log: &Log, seq: u64) -> Result<FinalizedBlock, Error> {
    let rec = log.read(seq).map_err(Error::store("ordered log"))?.ok_or(Error::BrokenLog(seq + 1))?;
    decode_record(seq, &rec)
}

fn decode_record(seq: u64, bytes: &[u8]) -> Result<FinalizedBlock, Error> {
    let fb: FinalizedBlock =
        codec::decode(bytes).map_err(|e| Error::Decode { what: "ordered log", seq, reason: e.to_string() })?;
    if fb.height().0 != seq + 1 {
        return Err(Error::BrokenLog(seq + 1));
    }
    Ok(fb)
}

/// The in-process [`OrderedLog`]: reads this validator's ledger, waiting for new blocks.
/// Cloning gives another handle.
#[derive(Clone, Debug)]
pub struct LocalLog {
    ledger: Arc<Ledger>,
}

impl LocalLog {
    /// A reader over `ledger`.
    pub fn new(ledger: Arc<Ledger>) -> Self {
        LocalLog { ledger }
    }

    /// Blocks from `from`, waiting at most `wait` for block `from` (then an empty vector).
    pub async fn read_wait(
        &self,
        from: Height,
        max: usize,
        max_bytes: usize,
        wait: std::time::Duration,
    ) -> Result<Vec<FinalizedBlock>, LogError> {
        if from.0 == 0 {
            return Err(LogError::GenesisHasNoBlock);
        }
        let mut rx = self.ledger.subscribe();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if *rx.borrow_and_update() >= from.0 {
                return self.ledger.read(from, max, max_bytes).map_err(|e| match e {
                    Error::Pruned(oldest) => LogError::Pruned { requested: from, oldest: Height(oldest) },
                    e => LogError::Unavailable(e.to_string()),
                });
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) => return Err(LogError::Closed),
                Err(_) => return Ok(Vec::new()),
            }
        }
    }
}

impl OrderedLog for LocalLog {
    fn read(&self, from: Height, max: usize) -> impl Future<Output = Result<Vec<FinalizedBlock>, LogError>> + Send {
        let this = self.clone();
        async move {
            loop {
                let v = this
                    .read_wait(from, max, crate::protocol::MAX_LOG_RESPONSE, std::time::Duration::from_secs(3600))
                    .await?;
                if !v.is_empty() {
                    return Ok(v);
                }
            }
        }
    }

    fn tip(&self) -> impl Future<Output = Result<Height, LogError>> + Send {
        std::future::ready(Ok(self.ledger.tip()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lamina_primitives::{Block, BlockHeader};

    fn fb(h: u64, parent: Digest) -> FinalizedBlock {
        FinalizedBlock {
            block: Block { header: BlockHeader { height: Height(h), parent, ..Default::default() }, batches: vec![] },
            certificate: Default::default(),
        }
    }

    #[test]
    fn appends_chain_survive_reopen_and_reads_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        {
            let l = Ledger::open(dir.path(), 16 << 20).unwrap();
            let mut parent = Digest::ZERO;
            for h in 1..=5 {
                let b = fb(h, parent);
                parent = b.block.digest();
                l.append(&b).unwrap();
            }
            assert!(l.append(&fb(7, parent)).is_err(), "gap refused");
            assert!(l.append(&fb(6, Digest::ZERO)).is_err(), "wrong parent refused");
            l.sync().unwrap();
        }
        let l = Ledger::open(dir.path(), 16 << 20).unwrap();
        assert_eq!(l.tip(), Height(5));
        let got = l.read(Height(2), 2, 1 << 20).unwrap();
        assert_eq!(got.iter().map(|b| b.height().0).collect::<Vec<_>>(), vec![2, 3]);
        assert_eq!(l.read(Height(4), 10, 1).unwrap().len(), 1, "at least one block even over the byte limit");
        assert_eq!(l.recent(2).unwrap().len(), 2);
        let next = fb(6, l.recent(1).unwrap()[0].block.digest());
        l.append(&next).unwrap();
    }

    /// Retention: pruning deletes whole segments below a height; reads below the oldest
    /// kept height are refused as pruned (typed, also through the `OrderedLog` view), the
    /// rest reads as before, and a reopened ledger keeps its tip and oldest height.
    #[tokio::test]
    async fn pruned_heights_are_refused_and_the_rest_still_reads() {
        let dir = tempfile::tempdir().unwrap();
        let l = Arc::new(Ledger::open(dir.path(), 64 << 10).unwrap());
        let mut parent = Digest::ZERO;
        for h in 1..=2000 {
            let b = fb(h, parent);
            parent = b.block.digest();
            l.append(&b).unwrap();
        }
        l.sync().unwrap();
        assert_eq!(l.first(), Height(1));
        assert!(l.prune_below(Height(1500)).unwrap() > 0);
        let first = l.first();
        assert!(first > Height(1) && first <= Height(1500), "{first}");
        assert!(matches!(l.read(Height(1), 5, 1 << 20), Err(Error::Pruned(o)) if o == first.0));
        assert_eq!(l.read(first, 1, 1 << 20).unwrap()[0].height(), first);
        let local = LocalLog::new(l.clone());
        match local.read_wait(Height(3), 1, 1 << 20, std::time::Duration::ZERO).await {
            Err(LogError::Pruned { requested, oldest }) => assert_eq!((requested, oldest), (Height(3), first)),
            other => panic!("expected pruned, got {other:?}"),
        }
        drop(local);
        let l = Arc::into_inner(l).unwrap();
        l.close().unwrap();
        let l = Ledger::open(dir.path(), 64 << 10).unwrap();
        assert_eq!((l.tip(), l.first()), (Height(2000), first));
        assert_eq!(l.recent(3).unwrap().len(), 3);
    }
}
