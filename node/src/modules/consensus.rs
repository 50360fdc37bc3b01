//! The consensus module: a BFT validator (mempool, batcher, ordering).
//!
//! The service is `lamina_consensus_service::run_on`: it binds the node's QUIC endpoint
//! (the `[net]` settings and listen address, else the genesis address) with its pinned
//! key and serves, on that one endpoint, `lamina/consensus/1` to the other validators,
//! `lamina/intake/1` (transaction intake) and `lamina/log/1` (the ordered log) to every
//! genesis node and the configured `intake_clients`, plus the HTTP/JSON intake on the
//! validator's genesis `http` address. Batches are made available through the DA
//! client (`lamina_da_client::DaClient`, `lamina/da/1..2`, dialing the DA committee governance decided, else the genesis one)
//! registered on the same endpoint. The WAL and the ordered log live under
//! `data/consensus/`.
//!
//! Readiness: `peers` (a quorum of validators connected, counting this one) and
//! `caught_up` (no finalized block known that is not yet in the local log), plus the
//! shared `lamina/node/1` genesis check's per-group needs (see [`peer_plan`] and
//! [`crate::peers`]), which also lets nodes still on the shared peer service see this
//! one.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context as _;
use lamina_net::Endpoint;
use lamina_primitives::Committee;
use tokio_util::sync::CancellationToken;

use crate::context::NodeContext;
use crate::module::{Module, ModuleConfig};
use crate::peers::{Need, PeerPlan, others};

/// Settings of the consensus module (the `[consensus]` section): the consensus
/// service's own config, wrapped so that this file can give it its [`ModuleConfig`]
/// impl.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(transparent)]
pub struct Config(pub lamina_consensus_service::Config);

impl ModuleConfig for Config {
    fn validate(&self) -> anyhow::Result<()> {
        Ok(self.0.validate()?)
    }
}

/// The peers this node needs, and which it accepts, on the shared `lamina/node/1`
/// genesis check: reported in `/status` (`peers`) with readiness checks per dialed group
/// (`peers:validators`, `peers:da_nodes`), next to the service's own `peers` and
/// `caught_up` checks on its consensus connections.
pub fn peer_plan(ctx: &NodeContext) -> PeerPlan {
    let g = ctx.genesis();
    let committee = g.validator_committee();
    PeerPlan::new()
        .dial("validators", Module::Consensus, others(&g.validators, &ctx.me), Need::AtLeast(committee.quorum() - 1))
        .dial("da_nodes", Module::Da, g.da_nodes.clone(), Need::AtLeast(g.da_threshold()))
        .accept("execution_nodes", Module::Execution, g.execution_nodes.clone())
        .accept("settlement_nodes", Module::Settlement, g.settlement_nodes.clone())
        .accept("bridge_nodes", Module::Bridge, g.bridge_nodes.clone())
}

/// Runs the consensus validator until `shutdown`.
pub async fn start(ctx: NodeContext, config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let endpoint = Endpoint::bind(ctx.key(), ctx.endpoint.clone())
        .with_context(|| format!("cannot bind the QUIC endpoint on {}", ctx.endpoint.listen))?;
    let da_config = lamina_da_client::ClientConfig { faulty_encoding: config.0.faulty_dispersal, ..Default::default() };
    if config.0.faulty_dispersal {
        tracing::warn!(target: "lamina::consensus", "faulty_dispersal is on: every square this validator disperses is wrongly encoded (test/demo only)");
    }
    let da = match lamina_da_client::DaClient::register(&endpoint, ctx.genesis(), da_config) {
        Ok(d) => d,
        Err(e) => {
            endpoint.shutdown().await;
            return Err(e).context("cannot start the DA client");
        }
    };
    let da = Arc::new(da);
    let (reporter, plan) = crate::peers::serve_alongside(&ctx, &endpoint, peer_plan(&ctx), &shutdown).await?;
    endpoint.report_to(ctx.health().clone(), Duration::from_millis(ctx.net.stats_interval_ms));
    let (genesis, access, health) = (ctx.genesis().clone(), ctx.service.access.clone(), ctx.health().clone());
    let gov_dir = ctx.service.data_dir.join("governance");
    // Where committees change by vote, the validator runs the epochs governance decides:
    // it starts knowing no height's committee and its core starts once this node's
    // governance follower (below, on its own log) reports the schedule.
    let changes = genesis.governance.committee_changes;
    let initial = changes.then(|| lamina_consensus_service::Schedule::unknown(genesis.validators.clone()));
    let started = lamina_consensus_service::start_with_schedule(endpoint, ctx.service, config.0, da.clone(), initial);
    let validator = match started.await {
        Ok(v) => v,
        Err(e) => {
            reporter.abort();
            return Err(e.into());
        }
    };
    // Governance follows this validator's own log: each epoch's client keys apply to
    // intake and the log server without a restart.
    let dispersal = da.clone();
    let follower = crate::governed::Follower::resume(&genesis, validator.log(), da, &gov_dir);
    // Intake admits governance transactions from the epoch's voting members only, so a
    // stranger cannot make every node fetch and check governance squares.
    let members = Arc::new(RwLock::new(crate::governed::Members::of(follower.state())));
    let admitted = members.clone();
    validator.intake().set_admission(move |tx| admitted.read().unwrap_or_else(|e| e.into_inner()).refuse(tx));
    let (schedule_tx, mut schedule_rx) = tokio::sync::watch::channel(None);
    // Governance's block limit in force after the follower's height: this validator's
    // proposals order at most it (a proposer policy; validity uses the network's cap).
    let (limit_tx, mut limit_rx) = tokio::sync::watch::channel(None::<usize>);
    let g = genesis.clone();
    let me = ctx.me.clone();
    let intake = validator.intake();
    let on_epoch = move |state: &lamina_governance_core::GovernanceState| {
        *members.write().unwrap_or_else(|e| e.into_inner()) = crate::governed::Members::of(state);
        // Governance's batch size limit: this validator's batches stay within the
        // smallest limit of the epochs they may be ordered in (a validity rule of each
        // epoch where committees change by vote), and intake refuses a transaction
        // that cannot fit in one.
        intake.set_batch_bytes(state.batch_bytes_from(state.height().next()));
        let limit = state
            .value_at(lamina_governance_core::Param::MaxBatchesPerBlock, state.height().next())
            .map(|v| usize::try_from(v).unwrap_or(usize::MAX));
        limit_tx.send_if_modified(|l| std::mem::replace(l, limit) != limit);
        // The other validators of the epoch pass the `lamina/node/1` check and count
        // for readiness, those added by vote included.
        if let Some(validators) = crate::governed::member_validators(&g, state) {
            let need = Committee { members: validators.iter().map(|v| v.key).collect() }.quorum().saturating_sub(1);
            plan.set_group("validators", others(&validators, &me), Some(Need::AtLeast(need)));
        }
        if changes {
            // The batcher disperses to the DA committee of the heights after the
            // follower's (this validator's own log): a batch it certifies is ordered in
            // that committee's consensus epoch or the next, whose core still accepts it.
            // Dispersal needs the threshold of the current DA committee.
            if let Some(committees) = crate::governed::da_committees(&g, state) {
                committees.apply(&dispersal);
                let (c, nodes) = committees.current();
                plan.set_group("da_nodes", nodes, Some(Need::AtLeast(c.threshold)));
            }
            let schedule = crate::governed::consensus_schedule(&g, state);
            schedule_tx.send_if_modified(|s| {
                let new = s.as_ref() != Some(&schedule);
                *s = Some(schedule);
                new
            });
        }
    };
    let stop_gov = shutdown.child_token();
    // Validators read the block limit (above), through this closure rather than the
    // parameter registry: no step of theirs waits for governance.
    let gov = crate::governed::spawn_client_access(genesis, follower, access, None, health, on_epoch, stop_gov.clone());
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = validator.failed() => break,
            changed = limit_rx.changed(), if !limit_rx.is_closed() => {
                if changed.is_ok() {
                    let limit = *limit_rx.borrow_and_update();
                    if let Err(e) = validator.set_batch_limit(limit).await {
                        tracing::error!(target: "lamina::consensus", error = %e, "cannot apply governance's block limit");
                    }
                }
            }
            changed = schedule_rx.changed() => {
                if changed.is_err() {
                    // The follower stopped: no schedule will come; wait for the end.
                    tokio::select! {
                        _ = shutdown.cancelled() => {}
                        _ = validator.failed() => {}
                    }
                    break;
                }
                let schedule = schedule_rx.borrow_and_update().clone();
                if let Some(s) = schedule
                    && let Err(e) = validator.set_schedule(s).await
                {
                    tracing::error!(target: "lamina::consensus", error = %e, "cannot apply the committee schedule");
                }
            }
        }
    }
    stop_gov.cancel();
    let _ = gov.await;
    let result = validator.stop().await;
    reporter.abort();
    Ok(result?)
}
