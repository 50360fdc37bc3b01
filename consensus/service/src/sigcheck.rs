//! Intake's signature checks, coalesced across concurrent submissions.
//!
//! A wallet submits one transaction per request, and a load generator a handful, so
//! checking each request on its own verifies signatures one or two at a time: 38–47 µs
//! each on the development box, against 16 µs in a batch of 16 and 14 µs in a batch of
//! 1,024 (`benches/benches/primitives.rs`). A [`SigChecker`] puts every request's
//! signatures in one queue; a few verifier threads each take everything queued (up to
//! [`MAX_BATCH`] signatures) and check it as one batch. Nothing waits on a timer: an idle
//! checker verifies a lone request at once, and batches grow only while the verifiers are
//! busy, which is exactly when batching pays.
//!
//! Verdicts do not depend on how requests were grouped: ZIP-215 batch and single
//! verification accept the same signatures, and a batch with invalid entries is bisected
//! down to them ([`sig::verify_batch_each`]), so one client's bad signature never fails
//! another client's transaction.

use std::collections::VecDeque;
use std::sync::Arc;

use lamina_primitives::sig::{self, SignedDigest};
use parking_lot::{Condvar, Mutex};
use tokio::sync::oneshot;

/// Most signatures one verifier takes from the queue at once (a request larger than
/// this is still taken whole).
pub const MAX_BATCH: usize = 1024;

/// Most verifier threads (fewer on a machine with fewer cores).
pub const MAX_THREADS: usize = 4;

/// The coalescing checker. Dropping it stops its threads once the queue is empty.
pub(crate) struct SigChecker {
    shared: Arc<Shared>,
}

struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    open: bool,
}

struct Job {
    items: Vec<SignedDigest>,
    reply: oneshot::Sender<Vec<bool>>,
}

impl SigChecker {
    /// Starts `threads` verifier threads (at least one).
    pub(crate) fn start(threads: usize) -> std::io::Result<Self> {
        let shared =
            Arc::new(Shared { queue: Mutex::new(Queue { jobs: VecDeque::new(), open: true }), ready: Condvar::new() });
        for i in 0..threads.max(1) {
            let s = shared.clone();
            std::thread::Builder::new().name(format!("intake-sig-{i}")).spawn(move || s.run())?;
        }
        Ok(SigChecker { shared })
    }

    /// Verifier threads for this machine: its cores, at most [`MAX_THREADS`].
    pub(crate) fn default_threads() -> usize {
        std::thread::available_parallelism().map_or(1, |n| n.get()).min(MAX_THREADS)
    }

    /// One verdict per item, in order (true: the signature verifies).
    pub(crate) async fn check(&self, items: Vec<SignedDigest>) -> Vec<bool> {
        if items.is_empty() {
            return Vec::new();
        }
        let (reply, answer) = oneshot::channel();
        {
            let mut q = self.shared.queue.lock();
            q.jobs.push_back(Job { items, reply });
        }
        self.shared.ready.notify_one();
        // The threads answer every job they take; a dropped sender means they are gone
        // (a panic): answer "not verified" rather than accept unchecked signatures.
        answer.await.unwrap_or_default()
    }
}

impl Drop for SigChecker {
    fn drop(&mut self) {
        self.shared.queue.lock().open = false;
        self.shared.ready.notify_all();
    }
}

impl Shared {
    fn run(&self) {
        loop {
            let jobs = {
                let mut q = self.queue.lock();
                while q.jobs.is_empty() {
                    if !q.open {
                        return;
                    }
                    self.ready.wait(&mut q);
                }
                let mut taken = Vec::new();
                let mut n = 0;
                while let Some(job) = q.jobs.front() {
                    if !taken.is_empty() && n + job.items.len() > MAX_BATCH {
                        break;
                    }
                    n += job.items.len();
                    taken.extend(q.jobs.pop_front());
                }
                taken
            };
            let items: Vec<SignedDigest> = jobs.iter().flat_map(|j| j.items.iter().copied()).collect();
            metrics::counter!(crate::metrics::INTAKE_SIG_PASSES).increment(1);
            metrics::counter!(crate::metrics::INTAKE_SIGS).increment(items.len() as u64);
            let mut verdicts = sig::verify_batch_each(&items).into_iter();
            for job in jobs {
                let mine: Vec<bool> = verdicts.by_ref().take(job.items.len()).collect();
                // The submitter may have gone (its connection closed): nothing to tell.
                let _ = job.reply.send(mine);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use lamina_primitives::Keypair;
    use lamina_primitives::hash::domains;

    use super::*;

    fn item(n: u64, valid: bool) -> SignedDigest {
        let kp = Keypair::for_testing(n);
        let m = domains::TX_ID.hash(&n.to_le_bytes());
        let signature = if valid { kp.sign(&m) } else { kp.sign(&domains::TX_ID.hash(b"something else")) };
        SignedDigest { public_key: kp.public(), message: m, signature }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_requests_each_get_their_own_verdicts() {
        let checker = Arc::new(SigChecker::start(2).unwrap());
        let mut tasks = Vec::new();
        for r in 0..64u64 {
            let checker = checker.clone();
            tasks.push(tokio::spawn(async move {
                // Request r has r % 5 + 1 signatures; every seventh signature is bad.
                let items: Vec<SignedDigest> =
                    (0..r % 5 + 1).map(|i| item(r * 10 + i, (r * 10 + i) % 7 != 0)).collect();
                let expect: Vec<bool> = (0..r % 5 + 1).map(|i| (r * 10 + i) % 7 != 0).collect();
                assert_eq!(checker.check(items).await, expect, "request {r}");
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert!(checker.check(Vec::new()).await.is_empty());
    }

    #[tokio::test]
    async fn a_request_larger_than_a_batch_is_taken_whole() {
        let checker = SigChecker::start(1).unwrap();
        let items: Vec<SignedDigest> = (0..MAX_BATCH as u64 + 3).map(|i| item(i % 50, i != 5)).collect();
        let verdicts = checker.check(items).await;
        assert_eq!(verdicts.len(), MAX_BATCH + 3);
        assert_eq!(verdicts.iter().filter(|v| !**v).count(), 1);
        assert!(!verdicts[5]);
    }
}
