//! Lamina's BFT shared-sequencer protocol as a pure state machine.
//!
//! The core orders 32-byte commitments (availability certificates of DA blobs), never
//! payloads. It has no clock, sockets, files, threads or randomness: a driver feeds it
//! [`Core::handle_message`], [`Core::handle_timeout`] and [`Core::submit_batch`] with a
//! monotonic `now`, and performs the returned [`Action`]s in order. The service crate
//! drives it over QUIC with a WAL; the deterministic simulation in this crate's tests
//! drives it over a seeded simulated network.
//!
//! # Protocol: Simplex with finality in three message delays
//!
//! `n = 3f + 1` validators (any `n >= 1` works; the quorum is `n - f`). Views `1, 2, …`;
//! the leader of view `v` is validator `v mod n` (round robin). A *certificate* is a
//! quorum of signatures of one kind on one subject (a [`lamina_primitives::QuorumCertificate`],
//! verified as one ZIP-215 batch). Each validator, in view `v`:
//!
//! 1. **Propose** (leader only). Pick the parent: the block notarized in the highest view
//!    `u < v` such that every view in `(u, v)` is nullified (the finalized tip when the
//!    walk reaches it). Propose `B` = (height = parent + 1, view `v`, parent digest,
//!    payload = the pending availability certificates not already ordered on the parent's
//!    chain). The proposal is the leader's notarize vote and carries the parent's
//!    certificate and the skipped views' nullifications.
//! 2. **Notarize.** On the first valid proposal of the current view, send
//!    `notarize(v, B)` to all. Valid means: signed by the view's leader; the parent is the
//!    tip or a block notarized in view `u`, with every view in `(u, v)` nullified; height
//!    and timestamp follow the parent; the payload digest matches; **every availability
//!    certificate verifies against the DA committee** and none is already ordered on the
//!    chain (or in the last [`Config::dedup_window`] heights). An invalid proposal is
//!    rejected, reported as the leader's [`FaultKind::InvalidProposal`], and the
//!    validator nullifies the view at once.
//! 3. **Notarization → next view.** On 2f+1 `notarize(v, B)` (or a notarization
//!    certificate), enter view `v + 1` and, unless it nullified `v`, send `finalize(v, B)`.
//! 4. **Timeout → nullify.** If no valid proposal arrives within `leader_timeout`, or no
//!    notarization within `notarization_timeout`, send `nullify(v)` (and never a finalize
//!    vote for `v` afterwards). On 2f+1 `nullify(v)` enter view `v + 1`.
//! 5. **Finalization.** On 2f+1 `finalize(v, B)`, `B` and all its ancestors are final.
//!    The finalize vote signs [`lamina_primitives::BlockHeader::finalization_digest`], so
//!    the finalization certificate *is* the certificate of the ordered log's
//!    [`lamina_primitives::FinalizedBlock`], checkable with `FinalizedBlock::verify`.
//!
//! Good path: proposal (1 delay) → notarize votes (2) → finalize votes (3): **finality in
//! three message delays**; a new block every two (the next leader proposes as soon as
//! it sees the notarization: proposals are pipelined, they never wait for finalization).
//!
//! Any certificate for a view `w >= v` moves a validator to `w + 1` (certificates are
//! self-authenticating, so laggards jump ahead). Certificates formed locally are
//! broadcast; a vote for an old view is answered with the certificates that end it;
//! the retry timer re-sends the nullify vote and the certificate that entered the view.
//!
//! # Safety (in brief)
//!
//! 1. *At most one block is notarized per view*: two notarizations would need two
//!    quorums of 2f+1 that intersect in an honest validator, who notarizes once per view.
//! 2. *If `B` is finalized in view `v` by 2f+1 proper finalize votes, view `v` is never
//!    nullified*: f+1 honest validators sent `finalize(v, B)` and therefore never send
//!    `nullify(v)`, leaving at most 2f nullify votes.
//! 3. *Every block notarized in a view above `v` descends from `B`*: by induction on the
//!    view `w > v`; honest validators notarize a block only if its parent is notarized in
//!    some view `u < w` and every view in `(u, w)` is nullified. `u < v` is impossible
//!    (view `v` would be nullified, contradicting 2); `u = v` means the parent is `B`
//!    (by 1); `u > v` means the parent descends from `B` (induction).
//! 4. Hence finalized blocks lie on one chain and heights are never finalized twice.
//!
//! # Liveness (in brief)
//!
//! After GST with message delay `δ`, once an honest leader's view is entered by all
//! honest validators within `δ` of each other (certificates are broadcast and relayed,
//! so they are), its proposal extends a block every honest validator can check
//! (missing parents and certificates are fetched from the leader) and is notarized and
//! finalized within `3δ`, provided `leader_timeout > 2δ`. Views with a faulty leader end
//! by timeout and nullification; with round robin, at most f consecutive views fail.
//! Crashed or partitioned validators catch up by [`SyncRequest`]: finalized blocks from
//! the responder's ordered log ([`Action::ServeFinalized`]) and certificates and bodies
//! of the views above its tip.
//!
//! # Deviations from the Simplex paper (and from commonware's simplex)
//!
//! * **Own certificate per log entry.** The paper finalizes all ancestors of a finalized
//!   block implicitly. Our log format needs 2f+1 signatures over each block's own
//!   finalization digest, so a validator that sees a finalized block whose ancestors lack
//!   a certificate sends *late* finalize votes for those ancestors, even in views it
//!   nullified. Safety argument: a late vote is sent only for an ancestor of a block that
//!   already holds a finalization certificate. The highest certified block has only
//!   proper honest votes (no higher certificate existed when they were cast), so it is
//!   final by (2)–(3); every lower certified block either has f+1 proper honest votes
//!   (final by (2)–(3)) or an honest late vote, which makes it an ancestor of a higher
//!   certified block. By induction every certified block is on the one final chain.
//!   The honest-validator rule that matters is therefore: never `nullify(v)` after any
//!   `finalize(v, ·)`, and never a *proper* finalize after `nullify(v)`.
//! * **Proposal = leader's notarize vote** (as in commonware), and proposals carry the
//!   parent's certificate and skipped nullifications (at most
//!   [`messages::MAX_PROPOSAL_CERTIFICATES`]) so that a lagging voter rarely has to
//!   fetch.
//! * **Idle heartbeat**: a leader with nothing to order waits
//!   [`Config::empty_block_delay`] (1 s) before proposing an empty block, so an idle
//!   network makes one block a second instead of spinning; a batch arriving meanwhile is
//!   proposed at once. A view that starts with nothing to order gets that much longer
//!   before validators time out, until a batch arrives.
//! * **Minimum block interval**: under load, a leader proposes no sooner than
//!   [`Config::min_block_interval`] (50 ms) after it entered its view, so blocks grow
//!   instead of heights multiplying: the fixed cost of a height (votes, signatures, WAL
//!   syncs, messages) is paid at most once per interval, not once per network round trip.
//! * **Leaders are round robin**, not random; and the *payload* is the set of pending
//!   availability certificates, which every validator announces to all others
//!   ([`Message::Batch`]) so that any leader can order any validator's batches.
//! * **Network binding**: notarize and nullify votes bind the network id (genesis
//!   digest); finalize votes sign exactly `finalization_digest()` (fixed by primitives so
//!   downstream layers need not know the network id), and are bound to the network only
//!   through the header chain.
//! * **Equivocation evidence** is reported ([`FaultKind::Equivocation`]) but there is no
//!   slashing.
//! * **Epochs**: the committee may change at boundary heights, one core per epoch, each
//!   epoch owning its own range of views ([`epoch`]).
//!
//! # Crash safety
//!
//! Every proposal and vote is preceded by an [`Action::Persist`] of a [`WalRecord`];
//! the driver makes it durable before sending. A restarted core, given its WAL and the
//! tail of its ordered log ([`Recovered`]), resumes at or above the highest view it acted
//! in and never signs a conflicting message (it re-sends an interrupted proposal as is).
//!
//! # Example
//!
//! Four validators (f = 1) order one batch. The loop plays the driver over an in-memory
//! network: it delivers every broadcast and send, and collects each core's
//! [`Action::Finalized`] blocks, its ordered log.
//!
//! ```
//! use std::collections::VecDeque;
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! use lamina_consensus_core::{Action, Config, Core, Recovered, Zip215};
//! use lamina_primitives::{
//!     AvailabilityCertificate, Committee, DataCommitment, Digest, Height, Keypair, QuorumCertificate,
//! };
//!
//! let committee = |ids: &[u64]| Committee::new(ids.iter().map(|&i| Keypair::for_testing(i).public()).collect());
//! let config = Config::new(Digest([7; 32]), committee(&[0, 1, 2, 3]).unwrap(), committee(&[9]).unwrap(), 1);
//! let now = Duration::from_millis(1);
//! let mut cores: Vec<Core> = (0..4)
//!     .map(|i| {
//!         let key = Arc::new(Keypair::for_testing(i));
//!         Core::new(config.clone(), key, Arc::new(Zip215), Recovered::default(), now, 0).unwrap().0
//!     })
//!     .collect();
//!
//! // A batch certified by the DA committee (one member here), given to validator 1,
//! // the leader of view 1, which proposes it once `min_block_interval` has passed since
//! // it entered the view (its timer: `next_deadline`, then `handle_timeout`).
//! let commitment = DataCommitment { data_root: Digest([1; 32]), square_width: 1, ..Default::default() };
//! let digest = commitment.attestation_digest();
//! let signatures = QuorumCertificate::from_votes(digest, 1, &[(0, Keypair::for_testing(9).sign(&digest))]);
//! let batch = AvailabilityCertificate { commitment, signatures };
//! let mut actions = cores[1].submit_batch(now, batch.clone()).unwrap();
//! let now = cores[1].next_deadline().unwrap();
//! assert_eq!(now, Duration::from_millis(1) + config.min_block_interval);
//! actions.extend(cores[1].handle_timeout(now));
//!
//! // (validator that emitted it, action), performed in order.
//! let mut network: VecDeque<(usize, Action)> = actions.into_iter().map(|a| (1, a)).collect();
//! let mut logs = vec![Vec::new(); 4];
//! while let Some((from, action)) = network.pop_front() {
//!     let deliveries = match action {
//!         Action::Broadcast(m) => (0..4).filter(|&to| to != from).map(|to| (to, m.clone())).collect(),
//!         Action::Send { to, message } => vec![(to, message)],
//!         Action::Finalized(block) => {
//!             logs[from].push(block);
//!             vec![]
//!         }
//!         _ => vec![], // Persist (a WAL write), PruneWal, ServeFinalized, Fault
//!     };
//!     for (to, m) in deliveries {
//!         network.extend(cores[to].handle_message(now, from, m).into_iter().map(|a| (to, a)));
//!     }
//! }
//!
//! // Every validator output the same block 1, ordering the batch, with a certificate of
//! // 2f+1 finalize votes (not always the same 2f+1) that anyone downstream checks against
//! // the committee.
//! for (core, log) in cores.iter().zip(&logs) {
//!     assert_eq!(core.finalized_height(), Height(1));
//!     assert_eq!(log.len(), 1);
//!     assert_eq!(log[0].block, logs[0][0].block);
//!     assert_eq!(log[0].block.batches, vec![batch.clone()]);
//!     log[0].verify(&config.validators).unwrap();
//! }
//! ```

pub mod action;
pub mod config;
pub mod crypto;
pub mod engine;
pub mod epoch;
pub mod error;
pub mod mempool;
pub mod messages;
pub mod wal;

pub use action::{Action, Evidence, Fault, FaultKind, ProposalError};
pub use config::Config;
pub use crypto::{Signer, Verifier, Zip215};
pub use engine::{Core, Stats};
pub use epoch::{
    CommitteeSchedule, EpochCheckError, EpochInfo, VIEWS_PER_EPOCH, check_finalized, epoch_of, first_view, last_view,
};
pub use error::{ConfigError, Error};
pub use mempool::{Cut, Mempool, MempoolLimits, MempoolStats, Requeued};
pub use messages::{Certificate, Message, Proposal, SyncRequest, SyncResponse, Vote, VoteKind, vote_digest};
pub use wal::{Recovered, WalRecord};
