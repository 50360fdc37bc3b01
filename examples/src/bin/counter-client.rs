//! `counter-client`: a wallet's run against a running counter-chain devnet
//! ([`lamina_examples::scenario`]). Exits non-zero, with the reason, when an outcome or
//! the state differs from what the counter machine defines.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use lamina_primitives::ChainId;

/// Runs the counter scenario with a fresh wallet key against a devnet.
#[derive(Parser)]
struct Args {
    /// The devnet directory (default: the last one `devnet up` created).
    #[arg(long)]
    devnet: Option<PathBuf>,
    /// The counter chain.
    #[arg(long, default_value_t = 1)]
    chain: u64,
    /// Longest wait for each receipt.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = match args.devnet {
        Some(d) => d,
        None => lamina_node::devnet::last_dir().context("no devnet found; pass --devnet <dir>")?,
    };
    let state = lamina_node::devnet::state::DevnetState::load(&dir)
        .with_context(|| format!("no devnet at {}", dir.display()))?;
    let genesis = lamina_node::genesis::load(&state.genesis)?;
    let report = lamina_examples::scenario::run(&genesis, ChainId(args.chain), args.timeout).await?;
    println!("{report}");
    Ok(())
}
