//! Wire messages of the protocol and the digests their signatures cover.
//!
//! Every signature is over a domain-separated [`Digest`]:
//!
//! | vote | signed digest |
//! |---|---|
//! | notarize `(v, d)` | `H("lamina consensus notarize v1", network ‖ v ‖ d)` |
//! | nullify `v` | `H("lamina consensus nullify v1", network ‖ v)` |
//! | finalize `(v, d)` | [`BlockHeader::finalization_digest`](lamina_primitives::BlockHeader::finalization_digest) of the block `d` (fixed by primitives, so that downstream layers verify [`lamina_primitives::FinalizedBlock`]s without this crate) |
//!
//! `d` is a [`BlockHeader::digest`](lamina_primitives::BlockHeader::digest), which itself binds the height, view, parent,
//! proposer, payload and timestamp. A proposal is authenticated by the leader's notarize
//! signature on its own block (the proposal *is* the leader's notarize vote).

use lamina_primitives::codec::limits;
use lamina_primitives::{
    AvailabilityCertificate, Block, Digest, Domain, FinalizedBlock, Height, QuorumCertificate, Signature, View, Wire,
    domains,
};

/// Domain of notarize votes.
pub static NOTARIZE: Domain = Domain::new("lamina consensus notarize v1");
/// Domain of nullify votes.
pub static NULLIFY: Domain = Domain::new("lamina consensus nullify v1");

/// The three kinds of vote (and of certificate: 2f+1 votes of one kind on one subject).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
#[rkyv(derive(Debug, PartialEq, Eq))]
pub enum VoteKind {
    /// "This proposal is valid and I saw nothing else from the leader of this view."
    Notarize,
    /// "This view failed (timeout or invalid proposal)."
    Nullify,
    /// "I saw this block notarized and never nullified its view" (or: it is an ancestor of
    /// a finalized block).
    Finalize,
}

/// The digest a vote of `kind` on `(view, digest)` signs. `digest` is ignored for
/// nullify votes.
pub fn vote_digest(network: &Digest, kind: VoteKind, view: View, digest: &Digest) -> Digest {
    match kind {
        VoteKind::Notarize => NOTARIZE.hash_parts(&[network.as_bytes(), &view.0.to_le_bytes(), digest.as_bytes()]),
        VoteKind::Nullify => NULLIFY.hash_parts(&[network.as_bytes(), &view.0.to_le_bytes()]),
        VoteKind::Finalize => domains::CONSENSUS_FINALIZE.hash(digest.as_bytes()),
    }
}

/// One validator's signed vote.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Vote {
    /// Which vote.
    pub kind: VoteKind,
    /// The view voted in (for finalize: the view of the block).
    pub view: View,
    /// The block header digest ([`Digest::ZERO`] for nullify).
    pub digest: Digest,
    /// The signer's index in the validator committee. Votes are sent by their signers
    /// only, so it must equal the authenticated sender.
    pub signer: u32,
    /// Signature over [`vote_digest`].
    pub signature: Signature,
}

/// 2f+1 votes of one kind on one subject.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Certificate {
    /// Notarization, nullification or finalization.
    pub kind: VoteKind,
    /// The view.
    pub view: View,
    /// The block header digest ([`Digest::ZERO`] for a nullification).
    pub digest: Digest,
    /// The signatures; `qc.digest` is the [`vote_digest`] of `(kind, view, digest)`. For a
    /// finalization this is exactly the certificate of a [`FinalizedBlock`].
    pub qc: QuorumCertificate,
}

/// A leader's block for its view, with the certificates a validator needs to check
/// that it extends the right parent.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Proposal {
    /// The block; `block.header.view` is the view, `block.header.proposer` the leader.
    pub block: Block,
    /// The leader's notarize signature on the block (its vote and its authentication).
    pub signature: Signature,
    /// The parent's notarization or finalization (none when the parent is the genesis),
    /// then nullifications of views skipped between the parent and this view (at most
    /// [`MAX_PROPOSAL_CERTIFICATES`] in all; a validator missing more fetches them).
    pub certificates: Vec<Certificate>,
}

/// Most certificates carried by one proposal.
pub const MAX_PROPOSAL_CERTIFICATES: usize = 32;

/// A lagging validator asks a peer for what it missed.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct SyncRequest {
    /// The requester's finalized height: finalized blocks above it are wanted.
    pub tip: Height,
    /// Certificates (and notarized blocks) of views from here on are wanted.
    pub from_view: View,
}

/// Certificates and blocks of views that the responder has not finalized yet.
#[derive(Clone, Debug, PartialEq, Eq, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct SyncResponse {
    /// Notarizations, nullifications and finalizations, increasing by view.
    pub certificates: Vec<Certificate>,
    /// Bodies of the blocks those certificates name (as far as the responder has them).
    pub blocks: Vec<Block>,
}

/// Everything validators say to each other.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum Message {
    /// A leader's proposal.
    Propose(Proposal),
    /// A vote.
    Vote(Vote),
    /// A certificate (sent when formed, when helping a laggard, and on retry).
    Certificate(Certificate),
    /// A certified batch announced for any leader to order.
    Batch(AvailabilityCertificate),
    /// Catch-up request.
    SyncRequest(SyncRequest),
    /// Catch-up answer for the not-yet-finalized region.
    SyncResponse(SyncResponse),
    /// Catch-up answer for the finalized region: consecutive finalized blocks.
    Finalized(Vec<FinalizedBlock>),
}

impl Message {
    /// Short name, for metrics labels and logs.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Message::Propose(_) => "propose",
            Message::Vote(v) => match v.kind {
                VoteKind::Notarize => "notarize",
                VoteKind::Nullify => "nullify",
                VoteKind::Finalize => "finalize",
            },
            Message::Certificate(_) => "certificate",
            Message::Batch(_) => "batch",
            Message::SyncRequest(_) => "sync_request",
            Message::SyncResponse(_) => "sync_response",
            Message::Finalized(_) => "finalized",
        }
    }
}

/// Largest encoded message: a catch-up response of [`crate::Config::sync_max_blocks`]
/// blocks is cut to this size by the sender.
pub const MAX_MESSAGE_SIZE: usize = 64 << 20;

impl Wire for Message {
    const NAME: &'static str = "consensus::Message";
    const MAX_SIZE: usize = MAX_MESSAGE_SIZE;
}

impl Wire for Vote {
    const NAME: &'static str = "consensus::Vote";
    const MAX_SIZE: usize = 256;
}

impl Wire for Certificate {
    const NAME: &'static str = "consensus::Certificate";
    const MAX_SIZE: usize = 256 + 72 * limits::MAX_COMMITTEE;
}

#[cfg(test)]
mod tests {
    use super::*;
    use lamina_primitives::{BlockHeader, Keypair, decode, encode};

    #[test]
    fn vote_digests_are_separated_and_bound() {
        let net = Digest([1; 32]);
        let d = Digest([2; 32]);
        let a = vote_digest(&net, VoteKind::Notarize, View(3), &d);
        assert_ne!(a, vote_digest(&net, VoteKind::Notarize, View(4), &d));
        assert_ne!(a, vote_digest(&Digest([9; 32]), VoteKind::Notarize, View(3), &d));
        assert_ne!(a, vote_digest(&net, VoteKind::Finalize, View(3), &d));
        assert_eq!(
            vote_digest(&net, VoteKind::Nullify, View(3), &d),
            vote_digest(&net, VoteKind::Nullify, View(3), &Digest::ZERO)
        );
        let h = BlockHeader { height: Height(1), view: View(3), ..Default::default() };
        assert_eq!(vote_digest(&net, VoteKind::Finalize, View(3), &h.digest()), h.finalization_digest());
    }

    #[test]
    fn messages_round_trip_and_reject_garbage() {
        let kp = Keypair::for_testing(1);
        let d = Digest([7; 32]);
        let vote = Vote { kind: VoteKind::Finalize, view: View(9), digest: d, signer: 2, signature: kp.sign(&d) };
        let msgs = vec![
            Message::Vote(vote.clone()),
            Message::Certificate(Certificate {
                kind: VoteKind::Nullify,
                view: View(1),
                digest: Digest::ZERO,
                qc: QuorumCertificate::from_votes(d, 4, &[(0, vote.signature)]),
            }),
            Message::SyncRequest(SyncRequest { tip: Height(3), from_view: View(4) }),
            Message::Finalized(vec![FinalizedBlock::default()]),
            Message::Propose(Proposal { block: Block::default(), signature: vote.signature, certificates: vec![] }),
        ];
        for m in msgs {
            let bytes = encode(&m).unwrap();
            assert_eq!(decode::<Message>(&bytes).unwrap(), m);
            for cut in [0, bytes.len() / 2, bytes.len() - 1] {
                assert!(decode::<Message>(&bytes[..cut]).is_err());
            }
        }
        let mut bytes = encode(&Message::Vote(vote)).unwrap();
        let n = bytes.len();
        // The enum tag is the first byte of the root object, which ends the buffer: an
        // unknown tag must be refused.
        bytes[n - std::mem::size_of::<ArchivedMessage>()] = 0xEE;
        assert!(decode::<Message>(&bytes).is_err());
    }
}
