//! What on-chain governance decides that the other layers read: parameters that change
//! by vote after the genesis (a chain's fee, the bridge's rate limit and window,
//! settlement's challenge window), as a function of
//! the log height.
//!
//! Governance is a pure function of the ordered log (`lamina-governance-core`), so the
//! value in force at a height is the same on every node. A change applies at the end of
//! an epoch boundary `b` and holds from `b + 1`, so a view that has applied height `a`
//! already knows every value up to the next boundary after `a`: a reader executing
//! height `h` waits only until [`ParamsRegistry::final_through`] reaches `h`.

use lamina_primitives::{ChainId, Height};

/// A parameter governance may change that a step reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GovernedParam {
    /// A chain's flat fee per transaction ([`crate::ChainSpec::fee`] at genesis).
    Fee(ChainId),
    /// The bridge's inflow limit per window ([`crate::BridgeSpec::inflow_limit`]; 0: none).
    BridgeInflowLimit,
    /// The bridge's rate-limit window in heights ([`crate::BridgeSpec::window_heights`]).
    /// Windows are aligned to the height a length took effect from
    /// ([`ParamsView::since`]), so a change never maps onto an old window's usage.
    BridgeWindowHeights,
    /// Settlement's challenge window in heights ([`crate::SettlementSpec::challenge_window`]):
    /// a claim's deadline is fixed when it is included, from the window in force at that
    /// height, and a later change does not move it.
    ChallengeWindow,
}

/// Parameters set by governance, as of a log height.
///
/// # Contract
///
/// `value(p, h)` is the value of `p` for a step executed at log height `h`. A view whose
/// [`ParamsRegistry::final_through`] is at least `h` gives the same answer as any later
/// view. `None`
/// means "the genesis value" (an unknown chain, or a view with no governance at all); a
/// view never answers `None` for a known parameter at a height it serves
/// ([`ParamsRegistry::serves_from`]).
pub trait ParamsView: Send + Sync {
    /// The value of `param` at `height` (see the trait contract).
    fn value(&self, param: GovernedParam, height: Height) -> Option<u64>;

    /// The height from which [`ParamsView::value`]'s answer for `height` holds: `1` for
    /// the genesis value, else the first height after the boundary that applied the
    /// change. `None`: the view does not say (the genesis view, whose values hold from
    /// height 1); a view that answers `value` for a governed change should answer this
    /// too, as the bridge's windows are aligned to it.
    fn since(&self, param: GovernedParam, height: Height) -> Option<Height> {
        let _ = (param, height);
        None
    }
}

/// A parameters view built by following the log (a node's governance follower).
pub trait ParamsRegistry: ParamsView {
    /// The highest height whose answers are final: the first epoch boundary after the
    /// last height applied (changes apply only at boundaries, from the height after).
    fn final_through(&self) -> Height;
    /// Lowest height answered exactly (older history is forgotten). A reader about to
    /// execute a lower height must not use this view.
    fn serves_from(&self) -> Height;
    /// The answers as they stand now, frozen: what the registry learns or forgets
    /// later does not change them. A reader checks the frozen view's
    /// [`ParamsRegistry::serves_from`] and executes with that same view, so no
    /// forgetting can fall between the check and the step.
    fn frozen(&self) -> std::sync::Arc<dyn ParamsRegistry>;
}

/// The genesis values everywhere (no governance changes): what a chain composed without
/// a governance follower runs with.
#[derive(Clone, Copy, Debug, Default)]
pub struct GenesisParams;

impl ParamsView for GenesisParams {
    fn value(&self, _: GovernedParam, _: Height) -> Option<u64> {
        None
    }
}
