//! `lamina devnet up | down | status`: a throwaway network on this machine.
//!
//! `up` creates (in a new temp directory, or `--dir`) a genesis, keys and one home per
//! node, with free loopback ports, then starts every node as its own OS process
//! (`lamina <module> start --home <home>`, logging to `<dir>/logs/<name>.log`), waits
//! until every `/readyz` answers 200, shows a live status line, and on Ctrl-C or SIGTERM
//! stops them all: SIGTERM to each, a grace period, SIGKILL for stragglers. A node that
//! dies on its own is reported at once (with the tail of its log); the others keep
//! running and `up` exits non-zero at the end.
//!
//! `<dir>/devnet.json` records the nodes, their pids and addresses, and the phase, so
//! that `status` and `down` work from another terminal; with `--keep`, `up` returns once
//! the network is ready and leaves it running (detached) until `down`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};

pub mod control;
pub mod layout;
pub mod load;
pub mod state;
pub mod supervisor;

use crate::args::parse_duration;

/// `devnet up --load`'s default (signed transfers per second).
#[cfg(feature = "bench")]
pub const DEFAULT_LOAD: u64 = 10_000;
/// `devnet up --load`'s default: no load generator without the `bench` feature.
#[cfg(not(feature = "bench"))]
pub const DEFAULT_LOAD: u64 = 0;

/// `lamina devnet ...`
#[derive(Debug, Subcommand)]
pub enum DevnetCmd {
    /// Create and run a local network until Ctrl-C (or --duration, --exit-after-ready, --keep).
    Up(Box<UpArgs>),
    /// Stop a network left running with `up --keep` (or one supervised in another terminal).
    Down(DirArgs),
    /// Show every node's admin /status as a table.
    Status(StatusArgs),
}

/// `devnet up` options.
#[derive(Debug, Clone, Args)]
pub struct UpArgs {
    /// Directory for the network (default: a new temp directory, kept for its logs).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Consensus validators.
    #[arg(long, default_value_t = 4)]
    pub validators: usize,
    /// DA storage nodes.
    #[arg(long, default_value_t = 4)]
    pub da_nodes: usize,
    /// Execution nodes, assigned to chains round-robin (default: one per chain).
    #[arg(long)]
    pub execution: Option<usize>,
    /// Settlement nodes (the first runs in verifier mode: it re-executes every chain's
    /// claims and challenges wrong ones).
    #[arg(long, default_value_t = 1)]
    pub settlement: usize,
    /// Challenge window of the devnet's genesis, in log heights (a loaded devnet makes
    /// tens of heights per second, an idle one one per --heartbeat; production windows
    /// are days' worth).
    #[arg(long, default_value_t = 100)]
    pub settlement_window: u64,
    /// Anchor window of the devnet's genesis, in log heights: an anchor stays usable
    /// for bridge proofs this long after its chain's next one finalized, then nodes
    /// forget it (at least 4 x --settlement-window; default 20,000 or that).
    #[arg(long)]
    pub anchor_window: Option<u64>,
    /// The validators' idle heartbeat: with nothing to order, one empty block per
    /// interval (shorter: windows counted in heights pass faster on an idle devnet, at
    /// the cost of idle CPU).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub heartbeat: Duration,
    /// Governance epoch length of the devnet's genesis, in log heights: passed proposals
    /// (`lamina gov`) take effect after the next multiple of it.
    #[arg(long, default_value_t = 20)]
    pub epoch_length: u64,
    /// Governance voting period of the devnet's genesis, in log heights.
    #[arg(long, default_value_t = 100)]
    pub voting_period: u64,
    /// Validators added or removed by vote join or leave the consensus committee
    /// (`[governance] committee_changes` in the genesis).
    #[arg(long)]
    pub committee_changes: bool,
    /// Restrict every node's client access (`[access] open = false`), as a consortium
    /// would: only genesis nodes and clients, and client keys added by a vote
    /// (`lamina gov propose add-client`), may connect.
    #[arg(long)]
    pub closed_access: bool,
    /// The state machine of every chain, by ledger version: 1 is the native ledger; a
    /// chain builder's binary also runs the versions it registers
    /// (`lamina_node::machines`). With another version, the built-in load (native
    /// transfers) and the bridge are off.
    #[arg(long, default_value_t = lamina_execution_core::ledger::LEDGER_VERSION)]
    pub ledger_version: u32,
    /// Execution nodes (by name, e.g. `execution-0`) that post wrong state roots in their
    /// claims: fault injection to show the fraud path (challenged, slashed, never
    /// final). Give the chain a second, honest node (`--execution 4` with 2 chains) so
    /// its range still finalizes.
    #[arg(long, value_delimiter = ',')]
    pub faulty_claims: Vec<String>,
    /// Validators (by name, e.g. `validator-0`) that disperse every square with a
    /// wrongly encoded row: fault injection to show that execution nodes agree on it
    /// (the chain's data in that square counts as absent), keep going, and that the
    /// settlement verifier posts the proof.
    #[arg(long, value_delimiter = ',')]
    pub faulty_dispersal: Vec<String>,
    /// Bridge relayers (default: one when there are at least two chains and a settlement
    /// node). With at least one, the genesis enables the bridge: every execution node
    /// then follows settlement's anchors in-process. `--bridge 0` turns the bridge off.
    #[arg(long)]
    pub bridge: Option<usize>,
    /// Chains (namespaces), ids 1..=N.
    #[arg(long, default_value_t = 2)]
    pub chains: usize,
    /// Funded deterministic test accounts per chain.
    #[arg(long, default_value_t = 10_000)]
    pub funded_accounts: u64,
    /// Built-in load once the network is ready: signed transfers per second, spread over
    /// the chains (0: none). Not with --keep or --exit-after-ready.
    /// The default is what this 2-core reference box executes end to end with
    /// sub-second latency (see BENCHMARKS.md); 0 in a binary built without the `bench`
    /// feature, which has no load generator.
    #[arg(long, default_value_t = DEFAULT_LOAD)]
    pub load: u64,
    /// Share of the built-in load sent as bridge locks (each chain to the next), each
    /// followed until credited on its destination; the summary adds their latency (lock
    /// → credited, p50/p99 in ms and log heights) and delivered messages/s per chain.
    #[arg(long, default_value_t = 0.0)]
    pub bridge_share: f64,
    /// After the built-in load finishes (or --duration passes), measure the idle network's
    /// CPU over this window, after a 3 s settle, and print it with the summary (all node
    /// processes summed, in % of one core). 0 skips it.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub idle_cpu: Duration,
    /// How long the built-in load runs (then, without --duration, the devnet stops).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub load_duration: Duration,
    /// Accounts per chain the load sends from and to (fewer: more contention, and each
    /// sender's transactions closer together; a sender whose transactions reach the log
    /// out of nonce order has the later ones rejected, and the rest of its run with them).
    #[arg(long, default_value_t = 10_000)]
    pub load_accounts: u64,
    /// Network name.
    #[arg(long, default_value = "devnet")]
    pub network: String,
    /// Log filter for every node (RUST_LOG syntax).
    #[arg(long, default_value = "info")]
    pub log_level: String,
    /// Once ready, leave the network running detached and return (stop it with `devnet down`).
    #[arg(long, conflicts_with_all = ["exit_after_ready", "duration"])]
    pub keep: bool,
    /// After every node stopped cleanly, keep their data directories (`nodes/*/data`,
    /// about 2.7 GB for the default topology). Without it only configs and logs stay.
    #[arg(long)]
    pub keep_data: bool,
    /// Once ready, stop the network and exit (for scripts and tests).
    #[arg(long, conflicts_with = "duration")]
    pub exit_after_ready: bool,
    /// Once ready, run for this long, then stop (e.g. 30s, 5m).
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Give up if the network is not ready within this time.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub ready_timeout: Duration,
    /// Time each node gets to stop after SIGTERM before it is killed.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub grace: Duration,
}

/// Selecting a devnet directory.
#[derive(Debug, Clone, Args)]
pub struct DirArgs {
    /// The devnet directory (default: the last one `devnet up` created).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Time each node gets to stop after SIGTERM before it is killed.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub grace: Duration,
}

/// `devnet status` options.
#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// The devnet directory (default: the last one `devnet up` created).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Print every node's /status document as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Runs a devnet command.
pub fn run(cmd: DevnetCmd) -> anyhow::Result<ExitCode> {
    // One thread: child processes are spawned from the main thread, which is what
    // PR_SET_PDEATHSIG ties them to (the signal fires when the *thread* that forked
    // them exits).
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the runtime")?;
    rt.block_on(async move {
        match cmd {
            DevnetCmd::Up(a) => supervisor::up(*a).await,
            DevnetCmd::Down(a) => control::down(resolve_dir(a.dir)?, a.grace).await,
            DevnetCmd::Status(a) => control::status(resolve_dir(a.dir)?, a.json).await,
        }
    })
}

/// File remembering the last devnet directory (`$XDG_DATA_HOME/lamina/devnet-last`).
fn last_dir_file() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "lamina").map(|d| d.data_dir().join("devnet-last"))
}

/// Records `dir` as the last devnet (best effort: a read-only home only loses the default).
pub fn remember_dir(dir: &std::path::Path) {
    if let Some(f) = last_dir_file() {
        if let Some(parent) = f.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        let _ = std::fs::write(f, dir.as_os_str().as_encoded_bytes());
    }
}

/// The directory the last `lamina devnet up` recorded.
pub fn last_dir() -> anyhow::Result<PathBuf> {
    let f = last_dir_file().context("no home directory to find the last devnet in")?;
    let text = std::fs::read_to_string(&f)
        .with_context(|| format!("{} is missing (no `lamina devnet up` yet?)", f.display()))?;
    Ok(PathBuf::from(text.trim_end_matches('\n')))
}

fn resolve_dir(dir: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    match dir {
        Some(d) => crate::home::absolute(&d),
        None => last_dir().context("no --dir given"),
    }
}
