//! What on-chain governance decides that the other layers read: parameters that change
//! by vote after the genesis (today a chain's fee), as a function of the log height.
//!
//! Governance is a pure function of the ordered log (`lamina-governance-core`), so the
//! value in force at a height is the same on every node. A reader executing height `h`
//! must use a view that has applied every height up to `h - 1` (a change decided at a
//! boundary `b` starts at `b + 1`): [`ParamsRegistry::applied`] tells it when it may.

use lamina_primitives::{ChainId, Height};

/// Parameters set by governance, as of a log height.
///
/// # Contract
///
/// `fee(chain, h)` is the flat fee of `chain` for transactions executed at log height
/// `h`. A view that has applied every height below `h` gives the same answer as any
/// later view. `None` means "the genesis value" (an unknown chain, or a view with no
/// governance at all); a view never answers `None` for a known chain at a height it
/// serves ([`ParamsRegistry::serves_from`]).
pub trait ParamsView: Send + Sync {
    /// The fee of `chain` at `height` (see the trait contract).
    fn fee(&self, chain: ChainId, height: Height) -> Option<u64>;
}

/// A parameters view built by following the log (a node's governance follower).
pub trait ParamsRegistry: ParamsView {
    /// Last log height applied: answers are final for heights up to `applied() + 1`.
    fn applied(&self) -> Height;
    /// Lowest height answered exactly (older history is forgotten). A reader about to
    /// execute a lower height must not use this view.
    fn serves_from(&self) -> Height;
}

/// The genesis values everywhere (no governance changes): what a chain composed without
/// a governance follower runs with.
#[derive(Clone, Copy, Debug, Default)]
pub struct GenesisParams;

impl ParamsView for GenesisParams {
    fn fee(&self, _: ChainId, _: Height) -> Option<u64> {
        None
    }
}
