//! The chain machines this binary executes: the native ledger, and those a chain builder
//! registers before handing control to [`crate::cli::run`].
//!
//! A genesis chain spec names its machine by `ledger_version`. Version
//! [`LEDGER_VERSION`] is the native ledger; any other version must be registered here
//! ([`register`]) by the binary that runs the chain, or the execution module refuses to
//! start for it (and `devnet up` refuses to create it). A chain builder's binary is the
//! `lamina` binary plus one `register` call (see the `examples/` workspace member's
//! `counter-chain`): every command, the devnet, config, keys, metrics and deploy files
//! work unchanged, and `devnet up` runs copies of that binary.
//!
//! Settlement re-executes only native-ledger chains: for a registered machine's chain it
//! knows the genesis root ([`Chains`]), so claims are accepted and finalize after the
//! challenge window, but no fraud proof can be built or checked for them (the verifier
//! skips such chains with a warning).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::bail;
use lamina_execution_core::ChainMachine;
use lamina_execution_core::ledger::LEDGER_VERSION;
use lamina_interfaces::Genesis;
use lamina_interfaces::{ChainReplica, StatelessError, StatelessExecutor, StepEnv, StepOutcome};
use lamina_net::Endpoint;
use lamina_primitives::{ChainId, Digest, Transaction};
use tokio_util::sync::CancellationToken;

/// The seams the binary gives an execution service: the ordered-log and DA clients and
/// settlement through the log (a registered machine's runner receives them built).
pub type NodeSeams = lamina_execution_service::Seams<
    lamina_consensus_client::LogClient,
    Arc<lamina_da_client::DaClient>,
    lamina_settlement_client::client::LogSettlement<lamina_consensus_client::IntakeClient>,
>;

type RunFuture = Pin<Box<dyn Future<Output = Result<(), lamina_execution_service::Error>> + Send>>;

/// Starts the execution service with one registered machine.
type Runner = Arc<
    dyn Fn(
            Endpoint,
            lamina_net::NodeContext,
            lamina_execution_service::Config,
            NodeSeams,
            ChainId,
            CancellationToken,
        ) -> anyhow::Result<RunFuture>
        + Send
        + Sync,
>;

/// The genesis state root of a chain of one registered machine.
type GenesisRoot = Arc<dyn Fn(&Genesis, ChainId) -> anyhow::Result<Digest> + Send + Sync>;

#[derive(Clone)]
struct Registered {
    name: &'static str,
    run: Runner,
    genesis_root: GenesisRoot,
}

fn registry() -> &'static Mutex<BTreeMap<u32, Registered>> {
    static REGISTRY: OnceLock<Mutex<BTreeMap<u32, Registered>>> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

/// Registers the chain machine of ledger version `version` (named `name` in messages):
/// chains whose genesis spec names that version run `make(genesis, chain)`. Call before
/// [`crate::cli::run`]. Fails for the native version or one already registered.
pub fn register<M: ChainMachine>(
    version: u32,
    name: &'static str,
    make: fn(&Genesis, ChainId) -> anyhow::Result<M>,
) -> anyhow::Result<()> {
    if version == LEDGER_VERSION {
        bail!("ledger version {version} is the native ledger's");
    }
    let mut reg = registry().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(r) = reg.get(&version) {
        bail!("ledger version {version} is already registered (as {})", r.name);
    }
    let run: Runner = Arc::new(move |endpoint, ctx, config, seams, chain, shutdown| {
        let machine = make(&ctx.genesis, chain)?;
        Ok(Box::pin(lamina_execution_service::run_machine_on(endpoint, ctx, config, seams, machine, shutdown)))
    });
    let genesis_root: GenesisRoot = Arc::new(move |genesis, chain| {
        let spec = genesis.chain(chain).ok_or_else(|| anyhow::anyhow!("chain {chain} not in genesis"))?;
        let mut state = lamina_execution_core::AuthenticatedState::new();
        Ok(state.apply(&make(genesis, chain)?.genesis(spec), false))
    });
    reg.insert(version, Registered { name, run, genesis_root });
    Ok(())
}

/// The ledger versions this binary executes, with their names (the native ledger first).
pub fn implemented() -> Vec<(u32, &'static str)> {
    let reg = registry().lock().unwrap_or_else(|e| e.into_inner());
    std::iter::once((LEDGER_VERSION, "native ledger")).chain(reg.iter().map(|(v, r)| (*v, r.name))).collect()
}

/// Fails unless this binary executes ledger `version`, listing those it does.
pub fn check(version: u32) -> anyhow::Result<()> {
    let known = implemented();
    if known.iter().any(|(v, _)| *v == version) {
        return Ok(());
    }
    let list: Vec<String> = known.iter().map(|(v, n)| format!("{v} ({n})")).collect();
    bail!("ledger version {version} is not executed by this binary (it runs: {})", list.join(", "))
}

/// The runner of a registered version (`None` for the native ledger or an unknown one).
pub(crate) fn runner(version: u32) -> Option<Runner> {
    registry().lock().unwrap_or_else(|e| e.into_inner()).get(&version).map(|r| r.run.clone())
}

/// Settlement's execution seam for every chain this binary runs: the native ledger's
/// ([`lamina_execution_core::NativeChains`]), plus the genesis roots of registered
/// machines' chains (so their claims extend a known root). Re-execution and replicas
/// stay native-only: [`StatelessError::UnknownChain`] for other chains.
pub struct Chains {
    native: lamina_execution_core::NativeChains,
    genesis: Arc<Genesis>,
}

impl Chains {
    /// The chains of `genesis`.
    pub fn new(genesis: Arc<Genesis>) -> Self {
        Chains { native: lamina_execution_core::NativeChains::new(&genesis), genesis }
    }

    /// The same chains charging governance's fee from `params`
    /// ([`lamina_execution_core::NativeChains::with_params`]).
    pub fn with_params(self, params: Arc<dyn lamina_interfaces::ParamsView>) -> Self {
        Chains { native: self.native.with_params(params), genesis: self.genesis }
    }
}

impl StatelessExecutor for Chains {
    fn reexecute(
        &self,
        chain: ChainId,
        env: &StepEnv,
        pre_state_root: &Digest,
        witness: &[u8],
        txs: &[Transaction],
    ) -> Result<StepOutcome, StatelessError> {
        self.native.reexecute(chain, env, pre_state_root, witness, txs)
    }

    fn genesis_root(&self, chain: ChainId) -> Result<Digest, StatelessError> {
        match self.native.genesis_root(chain) {
            Err(StatelessError::UnknownChain(_)) => {
                let version = self.genesis.chain(chain).ok_or(StatelessError::UnknownChain(chain))?.ledger_version;
                let root =
                    registry().lock().unwrap_or_else(|e| e.into_inner()).get(&version).map(|r| r.genesis_root.clone());
                let root = root.ok_or(StatelessError::UnknownChain(chain))?;
                root(&self.genesis, chain).map_err(|e| {
                    tracing::error!(target: "lamina::settlement", %chain, error = format!("{e:#}"), "genesis root of a registered machine");
                    StatelessError::UnknownChain(chain)
                })
            }
            r => r,
        }
    }

    fn replica(&self, chain: ChainId) -> Result<Box<dyn ChainReplica>, StatelessError> {
        self.native.replica(chain)
    }
}
