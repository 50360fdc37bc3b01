//! Lamina's bridge core: relayer planning (which receives and refunds are ready) and the cross-chain supply audit.
//!
//! What a relayer decides and what an audit checks, as pure functions of what the
//! chains and settlement report.
//!
//! The rules that make the bridge safe are the destination ledger's (proofs against
//! anchors of settlement's registry, one receipt per message, refunds only against a
//! finalized timeout receipt: `lamina_execution_core::ledger`). A relayer is therefore
//! untrusted: this crate only decides, from a channel's outbox, the destination's
//! receipts and the anchors, which receives and refunds are *ready* to submit
//! ([`plan_channel`]); a wrong decision costs the relayer a fee, never a forged credit.
//!
//! * [`Entry`]: an outbox message or a receipt, with the proof its execution node made
//!   at a claim cut.
//! * [`plan_channel`]: the receives and refunds of one channel that can be submitted now.
//! * [`audit`]: the supply invariant across chains from the bridge counters.
//!
//! # Example
//!
//! A relayer plans the channel `1 → 2`. Message 0 was proven at the claim cut of
//! height 10, which settlement has finalized as chain 1's anchor 0, so it is ready to be
//! received; message 1 is not covered by a cut yet.
//!
//! ```
//! use std::collections::BTreeMap;
//!
//! use lamina_bridge_core::{Action, Entry, Waiting, plan_channel};
//! use lamina_interfaces::{AnchoredProof, BridgeMessage, Origin, ReceiptKind};
//! use lamina_primitives::{ChainId, Digest, Height, Keypair};
//!
//! let outbox_entry = |sequence, proof| Entry {
//!     message: BridgeMessage {
//!         network: Digest([1; 32]),
//!         source: ChainId(1),
//!         dest: ChainId(2),
//!         sequence,
//!         sender: Keypair::for_testing(1).public(),
//!         nonce: sequence,
//!         recipient: Keypair::for_testing(2).public(),
//!         origin: Origin { chain: ChainId(1), asset: 0 },
//!         amount: 50,
//!         timeout: Height(100),
//!     },
//!     written_at: Height(5),
//!     receipt: None,
//!     proof,
//!     refunded_at: None,
//! };
//! let outbox = [outbox_entry(0, Some((Height(10), b"state proof".to_vec()))), outbox_entry(1, None)];
//! // Chain 1's finalized anchor whose range ends at a height (only 10); chain 2 has none.
//! let source_anchor = |to: Height| (to == Height(10)).then_some(0);
//!
//! let plan = plan_channel(0, &outbox, &BTreeMap::new(), source_anchor, |_| None, |_| false);
//! let [Action::Receive { message, proof }] = plan.actions.as_slice() else { panic!("{plan:?}") };
//! assert_eq!(message.sequence, 0);
//! assert_eq!(AnchoredProof::decode(proof).unwrap().anchor_index, 0);
//! assert_eq!(plan.open[&1], Waiting::Unproven);
//! assert_eq!(plan.cursor, 0);
//!
//! // Once chain 2 reports the delivery, message 0 is finished and the cursor passes it.
//! let delivered = Entry { receipt: Some(ReceiptKind::Delivered), ..outbox[0].clone() };
//! let plan = plan_channel(0, &outbox, &BTreeMap::from([(0, delivered)]), source_anchor, |_| None, |_| false);
//! assert!(plan.actions.is_empty());
//! assert_eq!(plan.cursor, 1);
//! ```

use std::collections::BTreeMap;

use lamina_interfaces::{AnchoredProof, BridgeMessage, ReceiptKind};
use lamina_primitives::{ChainId, Height};

/// An outbox message (`receipt: None`) or a destination's receipt, as an execution node
/// reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The message.
    pub message: BridgeMessage,
    /// Height that wrote the entry.
    pub written_at: Height,
    /// For receipts, what the destination recorded.
    pub receipt: Option<ReceiptKind>,
    /// (claim cut height, encoded state proof), once a cut covered the entry.
    pub proof: Option<(Height, Vec<u8>)>,
    /// For outbox entries, the height that refunded the message.
    pub refunded_at: Option<Height>,
}

/// What a relayer should submit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// A receive on `message.dest`.
    Receive {
        /// The message.
        message: BridgeMessage,
        /// The [`AnchoredProof`] bytes of its outbox entry.
        proof: Vec<u8>,
    },
    /// A refund on `message.source`.
    Refund {
        /// The message.
        message: BridgeMessage,
        /// The [`AnchoredProof`] bytes of the destination's timeout receipt.
        proof: Vec<u8>,
    },
}

/// Why a message of a channel is not actionable yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Waiting {
    /// No claim cut covers the entry yet (its node has not proven it).
    Unproven,
    /// The cut's claim is not finalized (or was anchored at other heights).
    NotFinal,
    /// Delivered; nothing more to do.
    Done,
}

/// The plan for one channel `source → dest`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// What to submit now.
    pub actions: Vec<Action>,
    /// Messages still open (not delivered, not refunded), by sequence.
    pub open: BTreeMap<u64, Waiting>,
    /// Lowest sequence not finished (delivered, or timed out and refunded): the cursor
    /// a relayer may persist and resume from.
    pub cursor: u64,
}

/// Decides what to submit for a channel.
///
/// * `cursor`: the lowest sequence not known to be finished; the returned
///   [`Plan::cursor`] moves past a message only if every message from `cursor` up to it
///   is listed and finished (a gap in the listing never moves it);
/// * `outbox`: the source's messages to `dest` from `cursor` on, in sequence order;
/// * `receipts`: the destination's receipts of messages from the source, by sequence;
/// * `source_anchor(h)` / `dest_anchor(h)`: the index of the finalized anchor of that
///   chain whose range ends exactly at `h`, if any (a proof made at cut `h` verifies
///   only against it);
/// * `in_flight(seq)`: whether the relayer already submitted an action for the message
///   recently (not resubmitted).
///
/// A message without a receipt is received (its outbox proof anchored); a message whose
/// receipt is *timed out* and which the source has not refunded is refunded (the
/// receipt's proof anchored). Receives are submitted even after the timeout: the
/// destination then records the timeout that the refund needs.
pub fn plan_channel(
    cursor: u64,
    outbox: &[Entry],
    receipts: &BTreeMap<u64, Entry>,
    source_anchor: impl Fn(Height) -> Option<u64>,
    dest_anchor: impl Fn(Height) -> Option<u64>,
    in_flight: impl Fn(u64) -> bool,
) -> Plan {
    let mut plan = Plan { cursor, ..Plan::default() };
    let mut finished_prefix = true;
    for e in outbox {
        let seq = e.message.sequence;
        let receipt = receipts.get(&seq);
        let finished = match receipt.and_then(|r| r.receipt) {
            Some(ReceiptKind::Delivered) => true,
            Some(ReceiptKind::TimedOut) => e.refunded_at.is_some(),
            None => false,
        };
        if finished {
            if finished_prefix && seq == plan.cursor {
                plan.cursor = seq.saturating_add(1);
            } else {
                finished_prefix = false;
            }
            continue;
        }
        finished_prefix = false;
        let (entry, anchor_of): (&Entry, &dyn Fn(Height) -> Option<u64>) = match receipt {
            Some(r) => (r, &dest_anchor),
            None => (e, &source_anchor),
        };
        let waiting = match &entry.proof {
            None => Waiting::Unproven,
            Some((at, proof)) => match anchor_of(*at) {
                None => Waiting::NotFinal,
                Some(index) => {
                    if !in_flight(seq) {
                        let proof = AnchoredProof { anchor_index: index, state_proof: proof.clone() }.encode();
                        plan.actions.push(match receipt {
                            Some(_) => Action::Refund { message: e.message, proof },
                            None => Action::Receive { message: e.message, proof },
                        });
                    }
                    Waiting::Done
                }
            },
        };
        plan.open.insert(seq, waiting);
    }
    plan
}

/// One chain's bridge counters for one (peer chain, local asset) pair.
pub use lamina_interfaces::BridgeCounters as Counters;

/// A chain's counters at one height, keyed by (peer, origin chain, origin asset).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChainTotals {
    /// The chain.
    pub chain: ChainId,
    /// Its execution height.
    pub height: Height,
    /// Counters per (peer, origin chain, origin asset).
    pub pairs: BTreeMap<(ChainId, ChainId, u64), Counters>,
}

/// A broken invariant.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// The home chain's escrow is not sent − received back − refunded.
    #[error("chain {home}: escrow toward {away} of asset {asset} is {escrow}, counters say {expected}")]
    Escrow {
        /// Home chain.
        home: ChainId,
        /// Away chain.
        away: ChainId,
        /// Asset id at home.
        asset: u64,
        /// Escrow held.
        escrow: u128,
        /// out − in − refunded.
        expected: u128,
    },
    /// The away chain's wrapped supply is not received + refunded − sent.
    #[error("chain {away}: wrapped supply of {home}'s asset {asset} is {supply}, counters say {expected}")]
    Supply {
        /// Home chain.
        home: ChainId,
        /// Away chain.
        away: ChainId,
        /// Asset id at home.
        asset: u64,
        /// minted − burned.
        supply: i128,
        /// in + refunded − out.
        expected: i128,
    },
    /// More was delivered and refunded on a channel than was ever sent on it (a forged
    /// credit).
    #[error("channel {from} → {to}, asset {home}/{asset}: delivered {delivered} + refunded {refunded} > sent {sent}")]
    Overdrawn {
        /// Sending chain.
        from: ChainId,
        /// Receiving chain.
        to: ChainId,
        /// The asset's home chain.
        home: ChainId,
        /// Asset id at home.
        asset: u64,
        /// Received on `to`.
        delivered: u128,
        /// Refunded on `from`.
        refunded: u128,
        /// Sent by `from`.
        sent: u128,
    },
}

/// What an audit covered.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditReport {
    /// (home, away, asset at home) triples checked.
    pub pairs: usize,
    /// Escrowed in all (home side).
    pub escrowed: u128,
    /// Wrapped supply in all (away side).
    pub wrapped: u128,
}

/// Checks the supply invariant across chains.
///
/// `first` and `second` are every chain's totals read twice, the second read after the
/// first (wall clock) and at a height at least the highest of the first. Per chain the
/// escrow and wrapped supply must equal what its own counters say (one consistent
/// read: `second`). Across chains, what a chain received from a peer (monotone, read
/// *first*) plus what the peer refunded (read *second*) can never exceed what the peer
/// sent (read *second*): deliveries and refunds are disjoint sets of sent messages,
/// so reading receivers earlier than senders never raises a false alarm, while a
/// forged credit shows up as soon as it is read. Together these imply
/// `wrapped supply ≤ escrow` for every asset.
pub fn audit(first: &[ChainTotals], second: &[ChainTotals]) -> Result<AuditReport, Vec<Violation>> {
    let get = |set: &[ChainTotals], chain: ChainId, key: (ChainId, ChainId, u64)| -> Counters {
        set.iter().find(|t| t.chain == chain).and_then(|t| t.pairs.get(&key).copied()).unwrap_or_default()
    };
    // Every (home, away, asset) triple any chain reports.
    let mut triples = std::collections::BTreeSet::new();
    for t in first.iter().chain(second) {
        for (peer, home, asset) in t.pairs.keys() {
            let away = if *home == t.chain { *peer } else { t.chain };
            triples.insert((*home, away, *asset));
        }
    }
    let mut report = AuditReport::default();
    let mut bad = Vec::new();
    for (home, away, asset) in triples {
        report.pairs += 1;
        let h2 = get(second, home, (away, home, asset));
        let a2 = get(second, away, (home, home, asset));
        let h1 = get(first, home, (away, home, asset));
        let a1 = get(first, away, (home, home, asset));
        let expected = h2.out.saturating_sub(h2.inflow).saturating_sub(h2.refunded);
        if h2.out < h2.inflow.saturating_add(h2.refunded) || h2.escrow != expected {
            bad.push(Violation::Escrow { home, away, asset, escrow: h2.escrow, expected });
        }
        // Counters are u128 read from the network: compare without overflow.
        let wide = |v: u128| i128::try_from(v).unwrap_or(i128::MAX);
        let supply = wide(a2.minted).saturating_sub(wide(a2.burned));
        let expected = wide(a2.inflow).saturating_add(wide(a2.refunded)).saturating_sub(wide(a2.out));
        if supply != expected {
            bad.push(Violation::Supply { home, away, asset, supply, expected });
        }
        if a1.inflow.saturating_add(h2.refunded) > h2.out {
            bad.push(Violation::Overdrawn {
                from: home,
                to: away,
                home,
                asset,
                delivered: a1.inflow,
                refunded: h2.refunded,
                sent: h2.out,
            });
        }
        if h1.inflow.saturating_add(a2.refunded) > a2.out {
            bad.push(Violation::Overdrawn {
                from: away,
                to: home,
                home,
                asset,
                delivered: h1.inflow,
                refunded: a2.refunded,
                sent: a2.out,
            });
        }
        report.escrowed = report.escrowed.saturating_add(h2.escrow);
        report.wrapped = report.wrapped.saturating_add(u128::try_from(supply.max(0)).unwrap_or(0));
    }
    if bad.is_empty() { Ok(report) } else { Err(bad) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lamina_interfaces::Origin;
    use lamina_primitives::{Digest, PublicKey};

    fn msg(seq: u64) -> BridgeMessage {
        BridgeMessage {
            network: Digest([1; 32]),
            source: ChainId(1),
            dest: ChainId(2),
            sequence: seq,
            sender: PublicKey([2; 32]),
            nonce: seq,
            recipient: PublicKey([3; 32]),
            origin: Origin { chain: ChainId(1), asset: 0 },
            amount: 10,
            timeout: Height(100),
        }
    }

    fn out(seq: u64, proof_at: Option<u64>) -> Entry {
        Entry {
            message: msg(seq),
            written_at: Height(seq + 1),
            receipt: None,
            proof: proof_at.map(|h| (Height(h), vec![seq as u8])),
            refunded_at: None,
        }
    }

    fn receipt(seq: u64, kind: ReceiptKind, proof_at: Option<u64>) -> (u64, Entry) {
        (seq, Entry { receipt: Some(kind), ..out(seq, proof_at) })
    }

    #[test]
    fn plans_receives_for_anchored_messages_and_refunds_for_timeouts() {
        let outbox = vec![out(0, Some(10)), out(1, Some(10)), out(2, Some(20)), out(3, None), out(4, Some(10))];
        let receipts: BTreeMap<u64, Entry> =
            [receipt(0, ReceiptKind::Delivered, Some(30)), receipt(4, ReceiptKind::TimedOut, Some(30))]
                .into_iter()
                .collect();
        let anchors = |h: Height| (h == Height(10)).then_some(7);
        let dest = |h: Height| (h == Height(30)).then_some(2);
        let plan = plan_channel(0, &outbox, &receipts, anchors, dest, |_| false);
        assert_eq!(plan.cursor, 1, "0 is delivered, 1 is not");
        let kinds: Vec<_> = plan
            .actions
            .iter()
            .map(|a| match a {
                Action::Receive { message, proof } => {
                    assert_eq!(AnchoredProof::decode(proof).unwrap().anchor_index, 7);
                    ("receive", message.sequence)
                }
                Action::Refund { message, proof } => {
                    assert_eq!(AnchoredProof::decode(proof).unwrap().anchor_index, 2);
                    ("refund", message.sequence)
                }
            })
            .collect();
        assert_eq!(kinds, vec![("receive", 1), ("refund", 4)]);
        assert_eq!(plan.open[&2], Waiting::NotFinal);
        assert_eq!(plan.open[&3], Waiting::Unproven);
        // In flight: nothing resubmitted.
        assert!(plan_channel(0, &outbox, &receipts, anchors, dest, |_| true).actions.is_empty());
        // A listing that starts above the cursor (an entry missing) never moves it.
        let d = receipts.clone();
        assert_eq!(plan_channel(0, &outbox[1..], &d, anchors, dest, |_| false).cursor, 0);
    }

    #[test]
    fn cursor_passes_refunded_timeouts() {
        let mut o = out(0, Some(10));
        o.refunded_at = Some(Height(50));
        let receipts: BTreeMap<u64, Entry> = [receipt(0, ReceiptKind::TimedOut, Some(30))].into_iter().collect();
        let plan = plan_channel(0, &[o, out(1, None)], &receipts, |_| Some(0), |_| Some(0), |_| false);
        assert_eq!(plan.cursor, 1);
        assert!(plan.actions.is_empty());
    }

    fn totals(chain: u64, pairs: &[((u64, u64, u64), Counters)]) -> ChainTotals {
        ChainTotals {
            chain: ChainId(chain),
            height: Height(1),
            pairs: pairs.iter().map(|((p, h, a), c)| ((ChainId(*p), ChainId(*h), *a), *c)).collect(),
        }
    }

    #[test]
    fn audit_accepts_conserved_supply_and_flags_forged_credit() {
        // Home 1 sent 100, 30 came back, 10 refunded: escrow 60. Away 2 received 90 of
        // which it sent 30 back: supply 60.
        let home = totals(
            1,
            &[((2, 1, 0), Counters { out: 100, inflow: 30, refunded: 10, escrow: 60, ..Default::default() })],
        );
        let away =
            totals(2, &[((1, 1, 0), Counters { out: 30, inflow: 90, minted: 90, burned: 30, ..Default::default() })]);
        let r = audit(&[home.clone(), away.clone()], &[home.clone(), away.clone()]).unwrap();
        assert_eq!((r.pairs, r.escrowed, r.wrapped), (1, 60, 60));
        // A forged mint of 50 on the away chain.
        let forged =
            totals(2, &[((1, 1, 0), Counters { out: 30, inflow: 140, minted: 140, burned: 30, ..Default::default() })]);
        let v = audit(&[home.clone(), forged.clone()], &[home.clone(), forged]).unwrap_err();
        assert!(matches!(v[0], Violation::Overdrawn { delivered: 140, sent: 100, .. }), "{v:?}");
        // Escrow that does not match its own counters.
        let leaky = totals(
            1,
            &[((2, 1, 0), Counters { out: 100, inflow: 30, refunded: 10, escrow: 50, ..Default::default() })],
        );
        let v = audit(&[leaky.clone(), away.clone()], &[leaky, away]).unwrap_err();
        assert!(matches!(v[0], Violation::Escrow { escrow: 50, expected: 60, .. }));
    }
}
