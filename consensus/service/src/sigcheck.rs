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
//! verification accept the same signatures. A pass that fails is re-checked request by
//! request, each bisected down to its bad entries ([`sig::verify_batch_each`]), so one
//! client's bad signature never fails, or splits the batch of, another client's
//! transactions. The queue is bounded ([`MAX_QUEUED`] signatures): beyond it a request
//! is answered busy at once.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use lamina_primitives::sig::{self, SignedDigest};
use parking_lot::{Condvar, Mutex};
use tokio::sync::oneshot;

/// Most signatures one verifier takes from the queue at once (a request larger than
/// this is still taken whole).
pub const MAX_BATCH: usize = 1024;

/// Most verifier threads (fewer on a machine with fewer cores).
pub const MAX_THREADS: usize = 4;

/// Most signatures waiting in the queue; a request that would go beyond is answered
/// busy at once instead of queueing (memory and waiting time stay bounded under a flood).
pub const MAX_QUEUED: usize = 64 * MAX_BATCH;

/// The coalescing checker. Dropping it stops its threads once the queue is empty.
pub(crate) struct SigChecker {
    shared: Arc<Shared>,
}

struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
    /// Verifier threads running; with none left (every spawn failed, or a panic),
    /// requests are checked on a blocking thread of their own.
    alive: AtomicUsize,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    /// Signatures in `jobs`.
    queued: usize,
    open: bool,
}

struct Job {
    items: Vec<SignedDigest>,
    reply: oneshot::Sender<Vec<bool>>,
}

impl SigChecker {
    /// Starts up to `threads` verifier threads (at least one is tried). If none can be
    /// started, every request is checked on its own blocking thread instead.
    pub(crate) fn start(threads: usize) -> Self {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue { jobs: VecDeque::new(), queued: 0, open: true }),
            ready: Condvar::new(),
            alive: AtomicUsize::new(0),
        });
        for i in 0..threads.max(1) {
            let s = shared.clone();
            s.alive.fetch_add(1, Ordering::AcqRel);
            let spawned = std::thread::Builder::new().name(format!("intake-sig-{i}")).spawn({
                let s = s.clone();
                move || {
                    let _exit = ExitGuard(&s);
                    s.run();
                }
            });
            if let Err(e) = spawned {
                s.alive.fetch_sub(1, Ordering::AcqRel);
                tracing::warn!(target: "lamina::consensus", error = %e, "cannot start an intake signature thread");
                break;
            }
        }
        SigChecker { shared }
    }

    /// Verifier threads for this machine: its cores, at most [`MAX_THREADS`].
    pub(crate) fn default_threads() -> usize {
        std::thread::available_parallelism().map_or(1, |n| n.get()).min(MAX_THREADS)
    }

    /// One verdict per item, in order (true: the signature verifies); `Err` says why
    /// the request could not be checked now (the caller answers busy).
    pub(crate) async fn check(&self, items: Vec<SignedDigest>) -> Result<Vec<bool>, String> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        if self.shared.alive.load(Ordering::Acquire) == 0 {
            return tokio::task::spawn_blocking(move || sig::verify_batch_each(&items))
                .await
                .map_err(|e| format!("signature check failed: {e}"));
        }
        let (reply, answer) = oneshot::channel();
        {
            let mut q = self.shared.queue.lock();
            if !q.open {
                return Err("validator is shutting down".into());
            }
            if q.queued > 0 && q.queued + items.len() > MAX_QUEUED {
                return Err(format!("{} signatures are waiting to be checked; retry shortly", q.queued));
            }
            q.queued += items.len();
            q.jobs.push_back(Job { items, reply });
        }
        self.shared.ready.notify_one();
        // Every taken job is answered; a dropped sender means its thread died.
        answer.await.map_err(|_| "signature check failed; retry".to_string())
    }
}

impl Drop for SigChecker {
    fn drop(&mut self) {
        self.shared.queue.lock().open = false;
        self.shared.ready.notify_all();
    }
}

/// Counts a verifier thread out when it ends, normally or by a panic; the last one out
/// drops the queued jobs, so their callers hear at once instead of waiting forever.
struct ExitGuard<'a>(&'a Shared);

impl Drop for ExitGuard<'_> {
    fn drop(&mut self) {
        if self.0.alive.fetch_sub(1, Ordering::AcqRel) == 1 {
            let mut q = self.0.queue.lock();
            q.jobs.clear();
            q.queued = 0;
        }
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
                q.queued -= n;
                taken
            };
            let items: Vec<SignedDigest> = jobs.iter().flat_map(|j| j.items.iter().copied()).collect();
            metrics::counter!(crate::metrics::INTAKE_SIG_PASSES).increment(1);
            metrics::counter!(crate::metrics::INTAKE_SIGS).increment(items.len() as u64);
            if sig::verify_batch(&items).is_ok() {
                for job in jobs {
                    let n = job.items.len();
                    // The submitter may have gone (its connection closed): nothing to tell.
                    let _ = job.reply.send(vec![true; n]);
                }
                continue;
            }
            // Some signature is bad: each request is checked (and bisected) on its own,
            // so the search for one client's bad signatures never splits, and slows,
            // the batches of the others.
            for job in jobs {
                let verdicts = sig::verify_batch_each(&job.items);
                let _ = job.reply.send(verdicts);
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
        let checker = Arc::new(SigChecker::start(2));
        let mut tasks = Vec::new();
        for r in 0..64u64 {
            let checker = checker.clone();
            tasks.push(tokio::spawn(async move {
                // Request r has r % 5 + 1 signatures; every seventh signature is bad.
                let items: Vec<SignedDigest> =
                    (0..r % 5 + 1).map(|i| item(r * 10 + i, (r * 10 + i) % 7 != 0)).collect();
                let expect: Vec<bool> = (0..r % 5 + 1).map(|i| (r * 10 + i) % 7 != 0).collect();
                assert_eq!(checker.check(items).await.unwrap(), expect, "request {r}");
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert!(checker.check(Vec::new()).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_request_larger_than_a_batch_is_taken_whole() {
        let checker = SigChecker::start(1);
        let items: Vec<SignedDigest> = (0..MAX_BATCH as u64 + 3).map(|i| item(i % 50, i != 5)).collect();
        let verdicts = checker.check(items).await.unwrap();
        assert_eq!(verdicts.len(), MAX_BATCH + 3);
        assert_eq!(verdicts.iter().filter(|v| !**v).count(), 1);
        assert!(!verdicts[5]);
    }
}
