//! `one-process`: a whole Lamina network in one process — validators (consensus), DA
//! nodes and an execution node running the counter machine — then a wallet's run against
//! it ([`lamina_examples::scenario`]).
//!
//! The layers are composed exactly as the `lamina` binary composes them, through the same
//! seams (`OrderedLog`, `DataAvailability`, `Settlement`, `TxSubmit`), but each node is a
//! set of tasks on one tokio runtime instead of a process; they still talk over real
//! QUIC on loopback, with their own keys, homes and stores. Swap one layer by changing
//! the module that runs it.

use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use lamina_examples::counter::{COUNTER_LEDGER_VERSION, CounterMachine};
use lamina_interfaces::Health;
use lamina_node::devnet::layout::{self, Spec};
use lamina_node::home::Home;
use lamina_node::module::Module;
use lamina_primitives::ChainId;
use tokio_util::sync::CancellationToken;

/// Runs a network in this process and a counter scenario against it.
#[derive(Parser)]
struct Args {
    /// Validators (each also runs a DA node).
    #[arg(long, default_value_t = 4)]
    validators: usize,
    /// Where the homes go (default: a temporary directory, removed at exit).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
    /// Longest wait for readiness and for each receipt.
    #[arg(long, default_value = "90s", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    lamina_node::machines::register(COUNTER_LEDGER_VERSION, "counter", |_g, chain| Ok(CounterMachine::new(chain)))?;
    let tmp = tempfile::tempdir()?;
    let dir = args.dir.clone().unwrap_or_else(|| tmp.path().join("net"));
    layout::prepare_dir(&dir)?;
    let spec = Spec {
        network: "one-process".into(),
        validators: args.validators,
        da_nodes: args.validators,
        execution: 1,
        settlement: 0,
        bridge: 0,
        chains: 1,
        funded_accounts: 0,
        log_level: "warn".into(),
        settlement_window: 100,
        anchor_window: lamina_interfaces::DEFAULT_ANCHOR_WINDOW,
        faulty_claims: vec![],
        faulty_dispersal: vec![],
        heartbeat: Duration::from_secs(1),
        ledger_version: COUNTER_LEDGER_VERSION,
        epoch_length: lamina_interfaces::genesis::DEFAULT_EPOCH_LENGTH,
        voting_period: lamina_interfaces::genesis::DEFAULT_VOTING_PERIOD,
        closed_access: false,
        committee_changes: false,
    };
    let state = layout::create(&dir, &spec)?;
    let genesis = lamina_node::genesis::load(&state.genesis)?;

    // Every node of the layout, started in this process: servers (DA, consensus) first.
    let shutdown = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    let mut healths = Vec::new();
    for module in Module::ALL {
        for node in state.nodes.iter().filter(|n| n.module == module) {
            let home = Home::new(&node.home);
            let config = lamina_node::service::load_config(&home, module, &[])?;
            let health = Health::new();
            let ctx = lamina_node::service::context(module, &home, &config, health.clone())
                .with_context(|| format!("node {}", node.name))?;
            healths.push((node.name.clone(), health));
            let (name, stop) = (node.name.clone(), shutdown.clone());
            tasks.spawn(async move { (name, lamina_node::service::start_module(ctx, config, stop).await) });
        }
    }
    println!("{} nodes started in this process ({}); waiting until ready", healths.len(), dir.display());
    let deadline = tokio::time::Instant::now() + args.timeout;
    while let Some((name, _)) = healths.iter().find(|(_, h)| !h.is_ready()) {
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!("{name} not ready within {:?}", args.timeout);
        }
        if let Some(Ok((name, Err(e)))) = tasks.try_join_next() {
            anyhow::bail!("{name} stopped: {e:#}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("ready; running the counter scenario with a fresh wallet");
    let result = lamina_examples::scenario::run(&genesis, ChainId(1), args.timeout).await;
    shutdown.cancel();
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok((name, Err(e))) => eprintln!("{name} stopped with an error: {e:#}"),
            Err(e) => eprintln!("a node task failed: {e}"),
            Ok((_, Ok(()))) => {}
        }
    }
    let report = result?;
    println!("{report}");
    println!("all {} nodes stopped cleanly", healths.len());
    Ok(())
}
