//! The settlement module: replays the settlement namespace of the log (claims, bonds,
//! fraud proofs, finality) and, in verifier mode, checks every chain's claims.
//!
//! Runs the real settlement service ([`lamina_settlement_service::run_on`]) on the
//! node's QUIC endpoint, with the seams built here (layers never import each other; the
//! binary joins them):
//!
//! * the ordered log: the consensus layer's QUIC client
//!   ([`lamina_consensus_client::LogClient`]);
//! * data availability: the DA layer's QUIC client ([`lamina_da_client::DaClient`]);
//! * intake (the verifier's challenges): [`lamina_consensus_client::IntakeClient`];
//! * stateless re-execution and chain replicas: the execution layer's
//!   [`lamina_execution_core::NativeChains`] built from the genesis chain specs;
//! * bad-encoding proofs: the DA layer's [`lamina_da_core::BadEncodingProof`].
//!
//! Peers: it dials the validators (ready with `f + 1`) and the DA nodes (ready with
//! `n - t + 1`), and accepts queries from every genesis node and client.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use lamina_interfaces::EncodingFraudVerifier;
use lamina_net::Endpoint;
use lamina_primitives::Digest;
use tokio_util::sync::CancellationToken;

use crate::context::NodeContext;
use crate::module::{Module, ModuleConfig};
use crate::peers::{Need, PeerPlan};

/// Settings of the settlement module (the `[settlement]` section): the settlement
/// service's own.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(transparent)]
pub struct Config(pub lamina_settlement_service::Config);

impl ModuleConfig for Config {
    fn validate(&self) -> anyhow::Result<()> {
        Ok(self.0.validate()?)
    }
}

/// The peers this node needs, and which it accepts.
pub fn peer_plan(ctx: &NodeContext) -> PeerPlan {
    let g = ctx.genesis();
    let v = g.validator_committee();
    let da_needed = g.da_nodes.len() - g.da_threshold() + 1;
    PeerPlan::new()
        .dial("validators", Module::Consensus, g.validators.clone(), Need::AtLeast(v.max_faulty() + 1))
        .dial("da_nodes", Module::Da, g.da_nodes.clone(), Need::AtLeast(da_needed))
        .accept("execution_nodes", Module::Execution, g.execution_nodes.clone())
        .accept("bridge_nodes", Module::Bridge, g.bridge_nodes.clone())
}

/// Checks bad-encoding proofs with the DA layer's verifier, under the genesis's rule on
/// square widths.
#[derive(Debug, Clone, Copy, Default)]
pub struct DaEncodingVerifier {
    /// The genesis allows squares of any width ([`lamina_interfaces::Genesis::da_any_width`]).
    /// Where it does not, a proof over a width other than a power of two is refused, as
    /// releases before squares of any width refused it: settlement replicas of both
    /// releases then reach the same verdict on the same entry.
    pub any_width: bool,
}

impl DaEncodingVerifier {
    /// The verifier for `genesis`'s network.
    pub fn for_genesis(genesis: &lamina_interfaces::Genesis) -> Self {
        DaEncodingVerifier { any_width: genesis.da_any_width }
    }
}

impl EncodingFraudVerifier for DaEncodingVerifier {
    fn verify_bad_encoding(&self, data_root: &Digest, proof: &[u8]) -> Result<(), String> {
        let p: lamina_da_core::BadEncodingProof = lamina_primitives::decode(proof).map_err(|e| e.to_string())?;
        lamina_da_core::square::check_width_allowed(u64::from(p.roots.k), self.any_width).map_err(|e| e.to_string())?;
        p.verify(data_root).map_err(|e| e.to_string())
    }
}

/// Runs the settlement service until `shutdown`.
pub async fn start(ctx: NodeContext, config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let endpoint = Endpoint::bind(ctx.key(), ctx.endpoint.clone())
        .with_context(|| format!("cannot bind the QUIC endpoint on {}", ctx.endpoint.listen))?;
    let (reporter, plan) = crate::peers::serve_alongside(&ctx, &endpoint, peer_plan(&ctx), &shutdown).await?;
    let seams = match seams(&ctx, &endpoint, &plan, &shutdown) {
        Ok(s) => s,
        Err(e) => {
            reporter.abort();
            endpoint.shutdown().await;
            return Err(e);
        }
    };
    endpoint.report_to(ctx.health().clone(), Duration::from_millis(ctx.net.stats_interval_ms));
    let result = lamina_settlement_service::run_on(endpoint, ctx.service, config.0, seams, shutdown).await;
    reporter.abort();
    Ok(result?)
}

type NodeSeams = lamina_settlement_service::Seams<
    lamina_consensus_client::LogClient,
    Arc<lamina_da_client::DaClient>,
    lamina_consensus_client::IntakeClient,
>;

fn seams(
    ctx: &NodeContext,
    endpoint: &Endpoint,
    plan: &crate::peers::PlanHandle,
    shutdown: &CancellationToken,
) -> anyhow::Result<NodeSeams> {
    let genesis = ctx.genesis();
    let log = lamina_consensus_client::LogClient::register(endpoint, genesis)
        .context("cannot start the ordered-log client")?;
    let da = lamina_da_client::DaClient::register(endpoint, genesis, Default::default())
        .context("cannot start the DA client")?;
    let submit =
        lamina_consensus_client::IntakeClient::register(endpoint, genesis).context("cannot start the intake client")?;
    let da = Arc::new(da);
    // Re-execution charges the fee governance set for each height, as execution did.
    let params = crate::governed::spawn_on_client_node(ctx, &log, &da, &submit, plan, shutdown);
    let exec = crate::machines::Chains::new(genesis.clone()).with_params(params.clone());
    Ok(lamina_settlement_service::Seams {
        log,
        da,
        submit,
        exec: Arc::new(exec),
        encoding: Arc::new(DaEncodingVerifier::for_genesis(genesis)),
        params: Some(params),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use lamina_da_core::fraud::{corrupt_row_encoding, find_bad_encoding};
    use lamina_da_core::{CodecId, CommittedSquare, Parallelism};
    use lamina_interfaces::Blob;
    use lamina_primitives::{ChainId, Namespace};

    /// A wrongly encoded square `k` wide and its bad-encoding proof, encoded.
    fn bad_square(k: usize) -> (Digest, Vec<u8>) {
        let blob = Blob { namespace: Namespace::from(ChainId(1)), data: vec![7; k * k * 512 - 100] };
        let sq = CommittedSquare::build(&[blob], CodecId::Leopard16, Parallelism::Sequential).expect("square");
        assert_eq!(sq.eds().k(), k);
        let bad = corrupt_row_encoding(sq, 0).expect("corrupt");
        let proof = find_bad_encoding(&bad).expect("search").expect("a bad row");
        (bad.data_root(), lamina_primitives::encode(&proof).expect("encode"))
    }

    /// Where the genesis does not allow squares of any width, a proof over a 10-wide
    /// square is refused, as releases before it refused it; one over a 16-wide square is
    /// accepted either way; and where the genesis allows them, the 10-wide one too.
    #[test]
    fn a_proof_over_a_width_the_genesis_does_not_allow_is_refused() {
        let (old_rule, new_rule) = (DaEncodingVerifier { any_width: false }, DaEncodingVerifier { any_width: true });
        let (root, proof) = bad_square(10);
        let err = old_rule.verify_bad_encoding(&root, &proof).unwrap_err();
        assert!(err.contains("not a power of two"), "{err}");
        new_rule.verify_bad_encoding(&root, &proof).expect("any width allowed");
        let (root, proof) = bad_square(16);
        old_rule.verify_bad_encoding(&root, &proof).expect("a power of two");
        new_rule.verify_bad_encoding(&root, &proof).expect("a power of two");
    }
}
