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
//! Settlement's verifier re-executes only native-ledger chains; a registered machine's
//! claims are not fraud-checked by it (its chains are skipped with a warning).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::bail;
use lamina_execution_core::ChainMachine;
use lamina_execution_core::ledger::LEDGER_VERSION;
use lamina_interfaces::Genesis;
use lamina_net::Endpoint;
use lamina_primitives::ChainId;
use tokio_util::sync::CancellationToken;

use crate::modules::execution::NodeSeams;

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

#[derive(Clone)]
struct Registered {
    name: &'static str,
    run: Runner,
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
    reg.insert(version, Registered { name, run });
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
