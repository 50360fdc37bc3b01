//! The command line (clap derive) and the dispatch of each command.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use lamina_interfaces::{ChainSpec, NodeEntry};
use lamina_primitives::{ChainId, PublicKey};

use crate::args::{ModuleCmd, parse_public_key};
use crate::home::Home;
use crate::module::Module;

/// Lamina: a modular ledger engine (consensus, data availability, execution,
/// settlement and bridge as separate services over QUIC).
#[derive(Debug, Parser)]
#[command(name = "lamina", version = crate::build_info::VERSION, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// True for commands that run a service or supervise processes (`<module> start`,
    /// `devnet up`): they must outlive a closed stdout. Every other command (`devnet
    /// status` and `down` included) is a short client command whose output may be piped
    /// into `head`.
    pub fn runs_a_service(&self) -> bool {
        use crate::client::DaCmd;
        use crate::settlement_client::SettlementCmd;
        match &self.command {
            Command::Devnet(d) => matches!(d, crate::devnet::DevnetCmd::Up(_)),
            Command::Consensus(m)
            | Command::Execution(crate::execution_cmd::ExecutionCmd::Module(m))
            | Command::Bridge(crate::bridge_client::BridgeCmd::Module(m))
            | Command::Da(DaCmd::Module(m))
            | Command::Settlement(SettlementCmd::Module(m)) => matches!(m, ModuleCmd::Start(_)),
            _ => false,
        }
    }
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Node keys: generate and show.
    #[command(subcommand)]
    Keys(KeysCmd),
    /// Build and check the genesis (committee) file.
    #[command(subcommand)]
    Genesis(GenesisCmd),
    /// The consensus module (BFT validator).
    #[command(subcommand)]
    Consensus(ModuleCmd),
    /// The data-availability module (DA storage node), and light-client sampling.
    #[command(subcommand)]
    Da(crate::client::DaCmd),
    /// The execution module (one chain's executor), and its state snapshots.
    #[command(subcommand)]
    Execution(crate::execution_cmd::ExecutionCmd),
    /// The settlement module, and queries of claims and finalized roots.
    #[command(subcommand)]
    Settlement(crate::settlement_client::SettlementCmd),
    /// The bridge: the relayer module, and transfers, message status and the supply audit.
    #[command(subcommand)]
    Bridge(crate::bridge_client::BridgeCmd),
    /// A throwaway local network: every node as its own process on loopback.
    #[command(subcommand)]
    Devnet(crate::devnet::DevnetCmd),
    /// On-chain governance: propose and vote on membership and parameter changes, and
    /// see the current epoch.
    #[command(subcommand)]
    Gov(crate::gov::GovCmd),
    /// Transactions: sign, submit to consensus intake, wait for the receipt.
    #[command(subcommand)]
    Tx(crate::client::TxCmd),
    /// Queries to a chain's execution node: balances (with proofs), nonces, receipts.
    #[command(subcommand)]
    Query(crate::client::QueryCmd),
    /// Blobs on the DA layer: submit (disperse and certify) and get (retrieve and verify).
    #[command(subcommand)]
    Blob(crate::client::BlobCmd),
    /// Benchmark: open-loop load sweeps against fresh multi-process devnets; writes
    /// results.json, CSV, SVG plots and a markdown summary.
    #[cfg(feature = "bench")]
    Bench(crate::load::BenchArgs),
}

/// `lamina keys ...`
#[derive(Debug, Subcommand)]
pub enum KeysCmd {
    /// Generate an ed25519 key from the OS RNG into a new 0600 file; print its public key.
    Generate {
        /// Where to write the key (refuses to overwrite).
        #[arg(long, default_value = "lamina.key")]
        out: PathBuf,
    },
    /// Print the public key of a key file (checks its permissions and consistency).
    Show {
        /// The key file.
        #[arg(long, conflicts_with = "home")]
        key: Option<PathBuf>,
        /// A home directory: shows `config/node.key`.
        #[arg(long)]
        home: Option<PathBuf>,
    },
}

/// `lamina genesis ...`
#[derive(Debug, Subcommand)]
pub enum GenesisCmd {
    /// Start a genesis file with no chains or nodes.
    New {
        /// The file to create.
        #[arg(long, default_value = "genesis.toml")]
        out: PathBuf,
        /// Network name (part of the genesis digest).
        #[arg(long)]
        network: String,
        /// DA signatures per availability certificate (default: 2f+1 of the DA nodes).
        #[arg(long)]
        da_threshold: Option<usize>,
        /// Replace an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Add a chain (namespace) with its genesis balances.
    AddChain {
        /// The genesis file to edit.
        #[arg(long, default_value = "genesis.toml")]
        file: PathBuf,
        /// Chain id (1 ..= 2^64 - 257).
        #[arg(long)]
        id: u64,
        /// Chain name.
        #[arg(long)]
        name: String,
        /// A genesis balance `<public key hex>=<amount>` (repeatable).
        #[arg(long = "balance", value_name = "KEY=AMOUNT")]
        balances: Vec<String>,
        /// Deterministic test accounts to fund (devnets and benchmarks only).
        #[arg(long, default_value_t = 0)]
        funded_test_accounts: u64,
        /// First test-key index of the funded test accounts.
        #[arg(long, default_value_t = 0)]
        funded_test_seed: u64,
        /// Amount given to each funded test account.
        #[arg(long, default_value_t = 0)]
        funded_test_amount: u64,
        /// Flat fee per transaction in the native asset (part of the chain's transition
        /// function: every replica and verifier uses it).
        #[arg(long, default_value_t = 0)]
        fee: u64,
        /// Who receives fees (64 hex digits; required when --fee is not 0).
        #[arg(long, value_parser = parse_public_key)]
        fee_collector: Option<PublicKey>,
    },
    /// Set the settlement parameters (windows in log heights, bonds) and fund keys on the
    /// settlement ledger (claimers and challengers bond from it).
    Settlement {
        /// The genesis file to edit.
        #[arg(long, default_value = "genesis.toml")]
        file: PathBuf,
        /// Challenge window in log heights.
        #[arg(long)]
        window: Option<u64>,
        /// Bond per claim.
        #[arg(long)]
        claim_bond: Option<u64>,
        /// Bond per challenge.
        #[arg(long)]
        challenge_bond: Option<u64>,
        /// Percent of a slashed claim bond paid to the challenger (0..=100).
        #[arg(long)]
        reward_percent: Option<u8>,
        /// A settlement-ledger balance `<public key hex>=<amount>` (repeatable; adds to
        /// an existing balance of the key).
        #[arg(long = "balance", value_name = "KEY=AMOUNT")]
        balances: Vec<String>,
    },
    /// Set on-chain governance's rules and voting members (`[governance]`): who votes,
    /// with what weight, and how epochs and votes count heights.
    Governance {
        /// The genesis file to edit.
        #[arg(long, default_value = "genesis.toml")]
        file: PathBuf,
        /// A voting member `<name>=<public key hex>:<weight>` (repeatable; replaces a
        /// member of the same key). Without members, the validators vote, weight 1 each.
        #[arg(long = "member", value_name = "NAME=KEY:WEIGHT")]
        members: Vec<String>,
        /// Heights per epoch: passed proposals apply after the next multiple.
        #[arg(long)]
        epoch_length: Option<u64>,
        /// Heights a proposal stays open.
        #[arg(long)]
        voting_period: Option<u64>,
        /// Validators added or removed by vote join or leave the consensus committee.
        #[arg(long)]
        committee_changes: bool,
        /// Percent of the total weight that must vote (1..=100).
        #[arg(long)]
        quorum_percent: Option<u8>,
        /// Percent of the weight voting that must vote yes (1..=100).
        #[arg(long)]
        threshold_percent: Option<u8>,
    },
    /// Add a node to a role.
    AddNode {
        /// The genesis file to edit.
        #[arg(long, default_value = "genesis.toml")]
        file: PathBuf,
        /// The node's module: consensus | da | execution | settlement | bridge.
        #[arg(long)]
        role: Module,
        /// Unique node name.
        #[arg(long)]
        name: String,
        /// The node's public key (hex).
        #[arg(long, required_unless_present_any = ["key_file", "home"], value_parser = parse_public_key)]
        key: Option<PublicKey>,
        /// Read the public key from this key file.
        #[arg(long, conflicts_with_all = ["key", "home"])]
        key_file: Option<PathBuf>,
        /// Read the public key from this home's `config/node.key`.
        #[arg(long, conflicts_with_all = ["key", "key_file"])]
        home: Option<PathBuf>,
        /// QUIC (UDP) address where the node serves.
        #[arg(long)]
        addr: SocketAddr,
        /// Admin HTTP address (`/metrics`, `/readyz`, ...).
        #[arg(long)]
        admin: Option<SocketAddr>,
        /// Client HTTP address, where the role has one.
        #[arg(long)]
        http: Option<SocketAddr>,
        /// For execution nodes: the chain it executes.
        #[arg(long)]
        chain: Option<u64>,
    },
    /// Validate a genesis file and print its summary and digest.
    Validate {
        /// The genesis file.
        #[arg(long, default_value = "genesis.toml")]
        file: PathBuf,
    },
}

/// The whole `lamina` binary: parses the command line, runs the command, prints a fatal
/// error once and returns the exit status. A chain builder's binary calls this after
/// registering its machines ([`crate::machines::register`]).
pub fn main() -> std::process::ExitCode {
    use clap::Parser as _;
    let cli = Cli::parse();
    if !cli.runs_a_service() {
        // Rust ignores SIGPIPE, so `println!` panics once a reader like `head` has
        // closed the pipe. A client command should end quietly instead, as Unix tools do.
        // SAFETY: resetting a signal disposition to its default before any thread starts.
        let _ = unsafe {
            nix::sys::signal::signal(nix::sys::signal::Signal::SIGPIPE, nix::sys::signal::SigHandler::SigDfl)
        };
    }
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Keys(c) => keys(c),
        Command::Genesis(c) => genesis(c),
        Command::Consensus(c) => crate::module_cmd::run(Module::Consensus, c),
        Command::Da(crate::client::DaCmd::Module(c)) => crate::module_cmd::run(Module::Da, c),
        Command::Da(crate::client::DaCmd::Sample(a)) => crate::client::da_sample(a),
        Command::Execution(c) => crate::execution_cmd::run(c),
        Command::Settlement(crate::settlement_client::SettlementCmd::Module(c)) => {
            crate::module_cmd::run(Module::Settlement, c)
        }
        Command::Settlement(c) => crate::settlement_client::run(c),
        Command::Bridge(crate::bridge_client::BridgeCmd::Module(c)) => crate::module_cmd::run(Module::Bridge, c),
        Command::Bridge(c) => crate::bridge_client::run(c),
        Command::Devnet(c) => crate::devnet::run(c),
        Command::Tx(c) => crate::client::tx(c),
        Command::Gov(c) => crate::gov::run(c),
        Command::Query(c) => crate::client::query(c),
        Command::Blob(c) => crate::client::blob(c),
        #[cfg(feature = "bench")]
        Command::Bench(a) => crate::load::bench(a),
    }
}

fn keys(cmd: KeysCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        KeysCmd::Generate { out } => {
            let key = crate::keys::generate()?;
            crate::keys::write(&out, &key)?;
            eprintln!("wrote {} (mode 0600)", out.display());
            println!("{}", key.public());
        }
        KeysCmd::Show { key, home } => {
            let path = match (key, home) {
                (Some(k), _) => k,
                (None, Some(h)) => Home::new(h).key_file(),
                (None, None) => PathBuf::from("lamina.key"),
            };
            println!("{}", crate::keys::read_public(&path)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn genesis(cmd: GenesisCmd) -> anyhow::Result<ExitCode> {
    use crate::genesis as g;
    match cmd {
        GenesisCmd::New { out, network, da_threshold, force } => {
            if out.exists() && !force {
                bail!("{} exists; pass --force to replace it", out.display());
            }
            let mut gen_ = g::empty(&network);
            gen_.da_threshold = da_threshold;
            g::write(&out, &gen_)?;
            eprintln!("wrote {}; add chains and nodes with `lamina genesis add-chain` / `add-node`", out.display());
        }
        GenesisCmd::AddChain {
            file,
            id,
            name,
            balances,
            funded_test_accounts,
            funded_test_seed,
            funded_test_amount,
            fee,
            fee_collector,
        } => {
            if fee > 0 && fee_collector.is_none() {
                bail!("--fee {fee} needs --fee-collector <public key>");
            }
            let mut gen_ = g::load_unvalidated(&file)?;
            let balances = balances.iter().map(|b| g::parse_balance(b)).collect::<anyhow::Result<Vec<_>>>()?;
            g::add_chain(
                &mut gen_,
                ChainSpec {
                    id: ChainId(id),
                    name,
                    balances,
                    funded_test_accounts,
                    funded_test_accounts_seed: funded_test_seed,
                    funded_test_amount,
                    fee,
                    fee_collector: fee_collector.unwrap_or_default(),
                    ledger_version: 1,
                },
            )?;
            g::write(&file, &gen_)?;
            eprintln!("added chain {id} to {}", file.display());
        }
        GenesisCmd::Settlement { file, window, claim_bond, challenge_bond, reward_percent, balances } => {
            let mut gen_ = g::load_unvalidated(&file)?;
            let st = &mut gen_.settlement;
            if let Some(w) = window {
                st.challenge_window = w;
            }
            if let Some(b) = claim_bond {
                st.claim_bond = b;
            }
            if let Some(b) = challenge_bond {
                st.challenge_bond = b;
            }
            if let Some(r) = reward_percent {
                st.challenger_reward_percent = r;
            }
            for b in &balances {
                let b = g::parse_balance(b)?;
                match st.balances.iter_mut().find(|x| x.account == b.account) {
                    Some(x) => x.amount = x.amount.checked_add(b.amount).context("settlement balance overflows u64")?,
                    None => st.balances.push(b),
                }
            }
            let summary = format!(
                "settlement: window {} heights, claim bond {}, challenge bond {}, reward {}%, {} funded key(s)",
                st.challenge_window,
                st.claim_bond,
                st.challenge_bond,
                st.challenger_reward_percent,
                st.balances.len(),
            );
            g::write(&file, &gen_)?;
            eprintln!("{summary} in {}", file.display());
        }
        GenesisCmd::Governance {
            file,
            members,
            epoch_length,
            voting_period,
            quorum_percent,
            threshold_percent,
            committee_changes,
        } => {
            let mut gen_ = g::load_unvalidated(&file)?;
            let gov = &mut gen_.governance;
            for m in &members {
                let m = g::parse_member(m)?;
                match gov.members.iter_mut().find(|x| x.key == m.key) {
                    Some(x) => *x = m,
                    None => gov.members.push(m),
                }
            }
            if let Some(v) = epoch_length {
                gov.epoch_length = v;
            }
            if let Some(v) = voting_period {
                gov.voting_period = v;
            }
            if let Some(v) = quorum_percent {
                gov.quorum_percent = v;
            }
            if let Some(v) = threshold_percent {
                gov.threshold_percent = v;
            }
            if committee_changes {
                gov.committee_changes = true;
            }
            let total: u64 = gen_.governance_members().iter().map(|m| m.weight).sum();
            let gov = &gen_.governance;
            let summary = format!(
                "governance: {} (total weight {total}), epochs of {} heights, votes open {} heights, quorum {}%, threshold {}%",
                if gov.members.is_empty() {
                    "the validators vote".to_string()
                } else {
                    format!("{} members", gov.members.len())
                },
                gov.epoch_length,
                gov.voting_period,
                gov.quorum_percent,
                gov.threshold_percent,
            );
            g::write(&file, &gen_)?;
            eprintln!("{summary} in {}", file.display());
        }
        GenesisCmd::AddNode { file, role, name, key, key_file, home, addr, admin, http, chain } => {
            let key = match (key, key_file, home) {
                (Some(k), _, _) => k,
                (None, Some(f), _) => crate::keys::read_public(&f)?,
                (None, None, Some(h)) => crate::keys::read_public(&Home::new(h).key_file())?,
                (None, None, None) => bail!("give --key, --key-file or --home"),
            };
            let mut gen_ = g::load_unvalidated(&file)?;
            g::add_node(
                &mut gen_,
                role,
                NodeEntry { name: name.clone(), key, addr, http, admin, chain: chain.map(ChainId) },
            )?;
            g::write(&file, &gen_)?;
            eprintln!("added {role} node {name:?} ({key}) to {}", file.display());
        }
        GenesisCmd::Validate { file } => {
            let gen_ = g::load(&file)?;
            print!("{}", g::summary(&gen_));
            println!("valid");
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
