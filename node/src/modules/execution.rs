//! The execution module: executes one chain's batches from the ordered log and DA.
//!
//! Runs the real execution service ([`lamina_execution_service::run_on`]) on the node's
//! QUIC endpoint, with the seams built here (layers never import each other; the binary
//! joins them):
//!
//! * the ordered log: the consensus layer's QUIC client
//!   ([`lamina_consensus_client::LogClient`]), which verifies every block's finality
//!   certificate and parent link;
//! * data availability: the DA layer's QUIC client ([`lamina_da_client::DaClient`]),
//!   which fetches the chain's namespace with completeness proofs;
//! * settlement: [`lamina_settlement_client::client::LogSettlement`] over the consensus
//!   intake client, so signed checkpoint claims are ordered under the settlement
//!   namespace.
//!
//! Peers (issue 2): it dials the validators (ready with `f + 1`, so at least one is
//! honest) and the DA nodes (ready with `n - t + 1` for DA threshold `t`, so at least one
//! signer of every availability certificate is reachable), and accepts bridge relayers.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use lamina_execution_service::Seams;
use lamina_net::Endpoint;
use lamina_settlement_client::client::LogSettlement;
use tokio_util::sync::CancellationToken;

use crate::context::NodeContext;
use crate::machines::NodeSeams;
use crate::module::{Module, ModuleConfig};
use crate::peers::{Need, PeerPlan};

/// Settings of the execution module (the `[execution]` section): the execution
/// service's own.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(transparent)]
pub struct Config(pub lamina_execution_service::Config);

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
        .accept("bridge_nodes", Module::Bridge, g.bridge_nodes.clone())
}

/// Runs the execution service until `shutdown`.
pub async fn start(ctx: NodeContext, config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let endpoint = Endpoint::bind(ctx.key(), ctx.endpoint.clone())
        .with_context(|| format!("cannot bind the QUIC endpoint on {}", ctx.endpoint.listen))?;
    let (reporter, plan) = crate::peers::serve_alongside(&ctx, &endpoint, peer_plan(&ctx), &shutdown).await?;
    let seams = match seams(&ctx, &endpoint, &plan, &shutdown).await {
        Ok(s) => s,
        Err(e) => {
            reporter.abort();
            endpoint.shutdown().await;
            // A stop while the anchor registry replays (it may wait for governance's
            // parameters) is a clean stop, not a failure.
            if shutdown.is_cancelled() {
                tracing::info!(target: "lamina::execution", error = format!("{e:#}"), "stopped while starting");
                return Ok(());
            }
            return Err(e);
        }
    };
    endpoint.report_to(ctx.health().clone(), Duration::from_millis(ctx.net.stats_interval_ms));
    let result = run_chain(endpoint, ctx.service, config.0, seams, shutdown).await;
    reporter.abort();
    result
}

/// Runs the execution service with the chain's machine: the native ledger, or the one
/// registered for the chain's ledger version ([`crate::machines`]).
async fn run_chain(
    endpoint: Endpoint,
    ctx: lamina_net::NodeContext,
    config: lamina_execution_service::Config,
    seams: NodeSeams,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let version = lamina_execution_service::chain_of(&ctx, &config)
        .ok()
        .and_then(|c| ctx.genesis.chain(c).map(|s| (c, s.ledger_version)));
    match version {
        Some((chain, v)) if v != lamina_execution_core::ledger::LEDGER_VERSION => {
            let Some(run) = crate::machines::runner(v) else {
                endpoint.shutdown().await;
                return crate::machines::check(v).with_context(|| format!("chain {chain}"));
            };
            let fut = match run(endpoint.clone(), ctx, config, seams, chain, shutdown) {
                Ok(f) => f,
                Err(e) => {
                    endpoint.shutdown().await;
                    return Err(e.context(format!("cannot build chain {chain}'s state machine")));
                }
            };
            Ok(fut.await?)
        }
        _ => Ok(lamina_execution_service::run_on(endpoint, ctx, config, seams, shutdown).await?),
    }
}

async fn seams(
    ctx: &NodeContext,
    endpoint: &Endpoint,
    plan: &crate::peers::PlanHandle,
    shutdown: &CancellationToken,
) -> anyhow::Result<NodeSeams> {
    let genesis = ctx.genesis();
    let log = lamina_consensus_client::LogClient::register(endpoint, genesis)
        .context("cannot start the ordered-log client")?;
    let da = Arc::new(
        lamina_da_client::DaClient::register(endpoint, genesis, Default::default())
            .context("cannot start the DA client")?,
    );
    let intake =
        lamina_consensus_client::IntakeClient::register(endpoint, genesis).context("cannot start the intake client")?;
    // Governance first: the fee each height charges comes from it.
    let params = crate::governed::spawn_on_client_node(ctx, &log, &da, &intake, plan, shutdown);
    let anchors =
        if genesis.bridge.enabled { Some(anchor_registry(ctx, &log, &da, &params, shutdown).await?) } else { None };
    Ok(Seams {
        log,
        da,
        settlement: LogSettlement::new(intake, ctx.key().clone(), ctx.genesis().tx_scope()),
        anchors,
        params: Some(params),
    })
}

/// Settlement's anchor registry for a bridged network: a settlement follower (the same
/// code a settlement node runs, without the verifier) in this process, with its own
/// store under `<data>/registry`, following the log beside execution. Bridge receives
/// and refunds are then checked against the anchors the log finalized, never against
/// an answer from the network.
async fn anchor_registry(
    ctx: &NodeContext,
    log: &lamina_consensus_client::LogClient,
    da: &Arc<lamina_da_client::DaClient>,
    params: &Arc<crate::governed::GovernedParams>,
    shutdown: &CancellationToken,
) -> anyhow::Result<Arc<dyn lamina_interfaces::AnchorRegistry>> {
    let genesis = ctx.genesis();
    let sctx = lamina_net::NodeContext::new(
        ctx.key().clone(),
        ctx.service.genesis.clone(),
        ctx.service.data_dir.join("registry"),
        lamina_interfaces::Health::new(),
    );
    let exec = Arc::new(lamina_execution_core::NativeChains::new(genesis).with_params(params.clone()));
    let config = lamina_settlement_service::Config::default();
    let mut follower = lamina_settlement_service::follower::Follower::open(
        &sctx,
        &config,
        exec,
        Arc::new(crate::modules::settlement::DaEncodingVerifier::for_genesis(genesis)),
        Some(params.clone()),
        shutdown,
    )
    .await
    .context("cannot open the anchor registry (settlement follower) under <data>/registry")?;
    let shared = follower.shared();
    // It forgets old anchors only once the execution node holds it at its next height.
    shared.wait_for_hold();
    let (log, da, shutdown) = (log.clone(), da.clone(), shutdown.clone());
    tokio::spawn(async move {
        let health = sctx.health.clone();
        if let Err(e) = follower.follow(&log, &da, None, &health, &shutdown).await {
            // Heights with bridge receives cannot execute without it: stop the node
            // loudly rather than let it wait forever.
            tracing::error!(target: "lamina::execution", error = %e, "anchor registry stopped; stopping the execution node");
            shutdown.cancel();
        }
        if let Err(e) = follower.close() {
            tracing::warn!(target: "lamina::execution", error = %e, "anchor registry store not closed cleanly");
        }
    });
    Ok(shared)
}
