//! `lamina gov propose|vote|status`: on-chain governance from the command line.
//!
//! Governance is a pure function of the ordered log (`lamina-governance-core`), so the
//! CLI needs no governance server: it reads the log from the validators
//! ([`LogClient`]), fetches the squares that carry the governance namespace from DA
//! ([`DaClient`]), and replays them into a
//! [`GovernanceState`](lamina_governance_core::GovernanceState), the same state every
//! node that follows the log computes. Proposals and votes are ordinary transactions
//! posted through consensus intake, signed by a voting member's key.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use lamina_consensus_client::LogClient;
use lamina_da_client::DaClient;
use lamina_governance_core::{Action, Entry, Event, Membership, NodeSpec, Param, Proposal, Status};
use lamina_interfaces::TxSubmit as _;
use lamina_primitives::{Height, PublicKey, TxId};

use crate::args::{parse_duration, parse_public_key};
use crate::client::{CONNECT_TIMEOUT, Net, NetArgs, OutputArgs, with_net};

/// `lamina gov ...`
#[derive(Debug, Subcommand)]
pub enum GovCmd {
    /// Open a proposal (signed by a voting member's key); it passes by the members'
    /// weighted vote and applies at the next epoch boundary.
    #[command(subcommand)]
    Propose(ProposeCmd),
    /// Vote on an open proposal.
    Vote(VoteArgs),
    /// The current epoch (committees, client keys, members, parameters) and the
    /// proposals with their tallies, replayed from the log.
    Status(StatusArgs),
}

/// What a proposal changes.
#[derive(Debug, Subcommand)]
pub enum ProposeCmd {
    /// Add a consensus validator.
    AddValidator {
        /// The new node.
        #[command(flatten)]
        node: NodeArgs,
        /// Signer, reason, network.
        #[command(flatten)]
        common: ProposeArgs,
    },
    /// Remove a consensus validator.
    RemoveValidator {
        /// Its public key (hex).
        #[arg(long, value_parser = parse_public_key)]
        key: PublicKey,
        /// Signer, reason, network.
        #[command(flatten)]
        common: ProposeArgs,
    },
    /// Add a DA storage node.
    AddDaNode {
        /// The new node.
        #[command(flatten)]
        node: NodeArgs,
        /// Signer, reason, network.
        #[command(flatten)]
        common: ProposeArgs,
    },
    /// Remove a DA storage node.
    RemoveDaNode {
        /// Its public key (hex).
        #[arg(long, value_parser = parse_public_key)]
        key: PublicKey,
        /// Signer, reason, network.
        #[command(flatten)]
        common: ProposeArgs,
    },
    /// Add a client key (it may connect where `[access] open = false`).
    AddClient {
        /// A name for it.
        #[arg(long)]
        name: String,
        /// The client's public key (hex).
        #[arg(long, value_parser = parse_public_key)]
        key: PublicKey,
        /// Signer, reason, network.
        #[command(flatten)]
        common: ProposeArgs,
    },
    /// Remove a client key.
    RemoveClient {
        /// The client's public key (hex).
        #[arg(long, value_parser = parse_public_key)]
        key: PublicKey,
        /// Signer, reason, network.
        #[command(flatten)]
        common: ProposeArgs,
    },
    /// Change a parameter: `fee:<chain>`, `max_batches_per_block`, `max_batch_bytes`,
    /// `challenge_window`, `bridge_inflow_limit`, `bridge_window_heights`.
    SetParam {
        /// The parameter.
        #[arg(value_parser = parse_param)]
        param: Param,
        /// Its new value.
        value: u64,
        /// Signer, reason, network.
        #[command(flatten)]
        common: ProposeArgs,
    },
    /// Set a voting member's weight: a new key joins, weight 0 removes a member.
    SetMember {
        /// The member's name.
        #[arg(long)]
        name: String,
        /// The member's public key (hex).
        #[arg(long, value_parser = parse_public_key)]
        key: PublicKey,
        /// Its weight (0 removes it).
        #[arg(long)]
        weight: u64,
        /// Signer, reason, network.
        #[command(flatten)]
        common: ProposeArgs,
    },
}

/// A node a proposal adds.
#[derive(Debug, Clone, Args)]
pub struct NodeArgs {
    /// Its name.
    #[arg(long)]
    pub name: String,
    /// Its public key (hex; `lamina keys show`).
    #[arg(long, value_parser = parse_public_key)]
    pub key: PublicKey,
    /// Its QUIC address (`ip:port`).
    #[arg(long)]
    pub addr: String,
    /// Its HTTP address for clients (`ip:port`), if it serves one.
    #[arg(long)]
    pub http: Option<String>,
}

/// What every governance transaction needs.
#[derive(Debug, Clone, Args)]
pub struct Signer {
    /// The voting member's key file (for a devnet: a validator's
    /// `nodes/<name>/config/node.key`).
    #[arg(long)]
    pub member_key: PathBuf,
    /// Return once intake accepted the transaction, without waiting for the log.
    #[arg(long)]
    pub no_wait: bool,
    /// How long to wait for the transaction to reach the log.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Heights (after the newest this command saw) during which the transaction may be
    /// applied; later it is rejected as expired, so it cannot be replayed into another
    /// meaning.
    #[arg(long, default_value_t = 1_000)]
    pub valid_for: u64,
    /// Output format.
    #[command(flatten)]
    pub output: OutputArgs,
    /// The network.
    #[command(flatten)]
    pub net: NetArgs,
}

/// A proposal's signer and reason.
#[derive(Debug, Clone, Args)]
pub struct ProposeArgs {
    /// Why, for the other members (at most 280 bytes).
    #[arg(long, default_value = "")]
    pub reason: String,
    /// Signer, waiting, output, network.
    #[command(flatten)]
    pub signer: Signer,
}

/// `lamina gov vote` arguments.
#[derive(Debug, Clone, Args)]
pub struct VoteArgs {
    /// The proposal's id.
    pub proposal: u64,
    /// The vote.
    #[arg(value_enum)]
    pub choice: Choice,
    /// Signer, waiting, output, network.
    #[command(flatten)]
    pub signer: Signer,
}

/// `lamina gov status` arguments.
#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// Print JSON: the epoch, its membership and the proposals kept.
    #[arg(long)]
    pub json: bool,
    /// The network.
    #[command(flatten)]
    pub net: NetArgs,
}

fn parse_param(s: &str) -> anyhow::Result<Param> {
    Param::parse(s).with_context(|| {
        format!(
            "{s:?} is not a parameter: fee:<chain>, max_batches_per_block, max_batch_bytes, challenge_window, \
             bridge_inflow_limit, bridge_window_heights"
        )
    })
}

/// A vote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Choice {
    /// Approve.
    Yes,
    /// Reject.
    No,
}

/// Runs `lamina gov ...`.
pub fn run(cmd: GovCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        GovCmd::Status(a) => with_net(&a.net, None, async |net| status(net, a.json).await),
        GovCmd::Vote(a) => {
            let what = What::Vote { proposal: a.proposal, approve: a.choice == Choice::Yes };
            with_net(&a.signer.net, Some(&a.signer.member_key), async |net| submit(net, &a.signer, what).await)
        }
        GovCmd::Propose(p) => {
            let (action, common) = action_of(p);
            let what = What::Propose { action, reason: common.reason.clone() };
            let signer = &common.signer;
            with_net(&signer.net, Some(&signer.member_key), async |net| submit(net, signer, what).await)
        }
    }
}

/// What a command asks for, before the log tells the rest (the validity height, the
/// proposal's opening transaction).
enum What {
    Propose { action: Action, reason: String },
    Vote { proposal: u64, approve: bool },
}

fn action_of(p: ProposeCmd) -> (Action, ProposeArgs) {
    let spec = |n: NodeArgs| NodeSpec { name: n.name, key: n.key, addr: n.addr, http: n.http };
    match p {
        ProposeCmd::AddValidator { node, common } => (Action::AddValidator(spec(node)), common),
        ProposeCmd::RemoveValidator { key, common } => (Action::RemoveValidator { key }, common),
        ProposeCmd::AddDaNode { node, common } => (Action::AddDaNode(spec(node)), common),
        ProposeCmd::RemoveDaNode { key, common } => (Action::RemoveDaNode { key }, common),
        ProposeCmd::AddClient { name, key, common } => (Action::AddClient { name, key }, common),
        ProposeCmd::RemoveClient { key, common } => (Action::RemoveClient { key }, common),
        ProposeCmd::SetParam { param, value, common } => (Action::SetParam { param, value }, common),
        ProposeCmd::SetMember { name, key, weight, common } => (Action::SetMemberWeight { name, key, weight }, common),
    }
}

// ------------------------------------------------------------------ replay

type Follower = crate::governed::Follower<LogClient, std::sync::Arc<DaClient>>;

/// A follower of `net`'s log and DA layer ([`crate::governed::cli_follower`]).
async fn follower(net: &Net) -> anyhow::Result<Follower> {
    crate::governed::cli_follower(&net.endpoint, &net.genesis, net.da()?, &net.source, CONNECT_TIMEOUT).await
}

// ------------------------------------------------------------------ propose and vote

async fn submit(net: &Net, signer: &Signer, what: What) -> anyhow::Result<ExitCode> {
    let key = crate::keys::read(&signer.member_key).context("cannot read the member key")?;
    let me = key.public();
    let mut follower = follower(net).await?;
    follower.catch_up().await?;
    follower.save();
    let state = follower.state();
    // What can never be accepted is refused here, with the reason the log would give.
    if state.epoch().membership.weight(&me) == 0 {
        let members: Vec<String> =
            state.epoch().membership.members.iter().map(|m| format!("{} ({})", m.name, m.key)).collect();
        bail!("{me} is not a voting member of epoch {}; members: {}", state.epoch().number, members.join(", "));
    }
    let valid_until = state.height().0.saturating_add(signer.valid_for);
    let entry = match what {
        What::Propose { action, reason } => {
            state
                .epoch()
                .membership
                .check(&action)
                .with_context(|| format!("the proposal \"{action}\" would be rejected"))?;
            if let Some(gap) = not_applied_yet(&action, net.genesis.governance.committee_changes) {
                eprintln!("note: governance records this change, but {gap}");
            }
            Entry::Propose { action, reason, valid_until }
        }
        What::Vote { proposal, approve } => match state.proposal(proposal) {
            None => bail!("there is no proposal {proposal} (see `lamina gov status`)"),
            Some(p) if p.status != Status::Open => bail!("proposal {proposal} is {}: it takes no votes", p.status),
            Some(p) if p.votes.contains_key(&me) => bail!("{me} already voted on proposal {proposal}"),
            Some(p) if !p.electorate.contains_key(&me) => {
                bail!("{me} joined after proposal {proposal} opened: it may not vote on it")
            }
            Some(p) => Entry::Vote { proposal, proposal_tx: p.tx.0, approve, valid_until },
        },
    };
    // The log's next nonce, or past the last one this machine used for the key (a
    // transaction sent with --no-wait may not be in the log yet; gaps are allowed).
    let nonces = crate::governed::NonceBook::for_network(&net.genesis);
    let nonce = state.next_nonce(&me).max(nonces.as_ref().map_or(0, |b| b.next(&me)));
    let tx = Entry::transaction(&key, net.genesis.tx_scope(), net.genesis.network_id(), nonce, &entry)?;
    let id = tx.id();
    let intake = net.intake_to(crate::governed::intake_committee(&net.genesis, state)).await?;
    intake.submit(tx).await.map_err(|e| anyhow::anyhow!("consensus intake refused {id}: {e}"))?;
    if let Some(book) = &nonces {
        book.used(&me, nonce);
    }
    eprintln!("accepted by intake: {id} (nonce {nonce}, valid until height {valid_until})");
    let mut out = crate::client::Out::new(signer.output);
    out.put("tx", id);
    if signer.no_wait {
        out.finish();
        return Ok(ExitCode::SUCCESS);
    }
    let outcome = wait_in_log(&mut follower, id, signer.timeout).await?;
    follower.save();
    let ok = report(&follower, &outcome, &mut out);
    out.finish();
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// A batch size limit as `lamina gov status` prints it (0: none set).
fn batch_limit(bytes: u64) -> String {
    if bytes == 0 { "any size (no batch limit)".into() } else { format!("at most {bytes} bytes") }
}

/// What the nodes of this network do not apply of `action` (committee changes where the
/// genesis leaves `committee_changes` off): said before such a proposal is submitted,
/// so nobody expects more than a record.
fn not_applied_yet(action: &Action, committee_changes: bool) -> Option<&'static str> {
    match action {
        Action::AddValidator(_)
        | Action::RemoveValidator { .. }
        | Action::AddDaNode(_)
        | Action::RemoveDaNode { .. }
            if committee_changes =>
        {
            None
        }
        Action::AddValidator(_)
        | Action::RemoveValidator { .. }
        | Action::AddDaNode(_)
        | Action::RemoveDaNode { .. } => Some(
            "this network's genesis does not let committees change ([governance] committee_changes is off): \
                 validators and DA nodes keep the genesis committees (the epoch's recorded membership is shown by \
                 `lamina gov status`)",
        ),
        Action::SetParam { .. } => None,
        Action::AddClient { .. } | Action::RemoveClient { .. } | Action::SetMemberWeight { .. } => None,
    }
}

/// Follows the log until `id` is applied or rejected; returns its events.
async fn wait_in_log(follower: &mut Follower, id: TxId, timeout: Duration) -> anyhow::Result<Vec<Event>> {
    let started = Instant::now();
    loop {
        // A failed read or DA fetch is retried until the timeout: the follower keeps the
        // events of what it applied before the failure for the next call.
        let events = match follower.catch_up().await {
            Ok(events) => events,
            Err(e) if started.elapsed() < timeout => {
                eprintln!("following the log: {e:#}; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        let ours = |e: &Event| match e {
            Event::Proposed { tx, .. } | Event::Voted { tx, .. } | Event::TxRejected { tx, .. } => *tx == id,
            _ => false,
        };
        if let Some(i) = events.iter().position(ours) {
            return Ok(events[i..].to_vec());
        }
        if started.elapsed() >= timeout {
            bail!("{id} is not in the log after {timeout:?} (it may still be ordered: see `lamina gov status`)");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Prints what happened to our transaction (the first event) and what followed in the
/// same catch-up; false if it was rejected.
fn report(follower: &Follower, events: &[Event], out: &mut crate::client::Out) -> bool {
    let state = follower.state();
    let proposal = match events.first() {
        Some(Event::TxRejected { error, .. }) => {
            out.put("rejected", error);
            return false;
        }
        Some(Event::Proposed { id, .. }) | Some(Event::Voted { id, .. }) => *id,
        _ => return false,
    };
    out.num("proposal", proposal);
    if let Some(p) = state.proposal(proposal) {
        out.put("status", &p.status);
        out.num("yes", p.yes);
        out.num("no", p.no);
        out.num("total_weight", p.total_weight());
        out.num("closes_at", p.closes_at.0);
        // The boundary it applies (or applied) at.
        match p.status {
            Status::Passed { at } => out.num("applies_at", state.boundary_at_or_after(at).0),
            Status::Applied { at, .. } | Status::Failed { at, .. } => out.num("applies_at", at.0),
            _ => {}
        }
    }
    out.num("height", state.height().0);
    out.num("epoch", state.epoch().number);
    true
}

// ------------------------------------------------------------------ status

async fn status(net: &Net, json: bool) -> anyhow::Result<ExitCode> {
    let mut follower = follower(net).await?;
    follower.catch_up().await?;
    follower.save();
    let state = follower.state();
    let epoch = state.epoch();
    let next_boundary = state.boundary_at_or_after(Height(state.height().0 + 1));
    if json {
        let v = serde_json::json!({
            "height": state.height().0,
            "epoch": epoch.number,
            "first_height": epoch.first_height.0,
            "next_boundary": next_boundary.0,
            "params": state.params(),
            "membership": epoch.membership,
            "committee_changes": net.genesis.governance.committee_changes,
            "committees": state.committees().collect::<Vec<_>>(),
            "committee_known_through": state.committee_known_through().0,
            "digest": state.digest().to_string(),
            "proposals": state.proposals().collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    let p = state.params();
    println!(
        "height {}: epoch {} (from height {}; next boundary {}; epochs of {} heights)",
        state.height().0,
        epoch.number,
        epoch.first_height.0,
        next_boundary.0,
        p.epoch_length
    );
    print_membership(&epoch.membership);
    if net.genesis.governance.committee_changes {
        for c in state.committees() {
            println!(
                "consensus epoch {}: {} validators and {} DA nodes (certificates need {}), blocks of at most {} \
                 batches of {}, from height {}",
                c.epoch,
                c.validators.len(),
                c.da_nodes.len(),
                c.da_threshold,
                c.max_batches_per_block,
                batch_limit(c.max_batch_bytes),
                c.first_height.0
            );
        }
    } else {
        println!("consensus: the genesis validators ([governance] committee_changes is off)");
    }
    println!(
        "votes: quorum {}% of the weight, {}% yes of those voting, open {} heights",
        p.quorum_percent, p.threshold_percent, p.voting_period
    );
    let rows: Vec<Vec<String>> = state.proposals().map(proposal_row).collect();
    if rows.is_empty() {
        println!("proposals: none");
    } else {
        println!("proposals:");
        print!(
            "{}",
            crate::table::plain(&["ID", "STATUS", "ACTION", "YES", "NO", "OF", "CLOSES"], &[0, 3, 4, 5, 6], rows, "  ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn proposal_row(p: &Proposal) -> Vec<String> {
    vec![
        p.id.to_string(),
        p.status.to_string(),
        p.action.to_string(),
        p.yes.to_string(),
        p.no.to_string(),
        p.total_weight().to_string(),
        p.closes_at.0.to_string(),
    ]
}

fn print_membership(m: &Membership) {
    let nodes = |role: &str, list: &[lamina_interfaces::NodeEntry]| {
        let names: Vec<String> = list.iter().map(|n| format!("{} {}", n.name, n.addr)).collect();
        println!("{role} ({}): {}", list.len(), names.join(", "));
    };
    nodes("validators", &m.validators);
    nodes("DA nodes", &m.da_nodes);
    println!("DA threshold: {}", m.da_threshold());
    let clients: Vec<&str> = m.clients.iter().map(|c| c.name.as_str()).collect();
    println!("clients ({}): {}", m.clients.len(), clients.join(", "));
    let members: Vec<String> = m.members.iter().map(|x| format!("{} ({})", x.name, x.weight)).collect();
    println!("members ({}, weight {}): {}", m.members.len(), m.total_weight(), members.join(", "));
    let s = &m.settings;
    let fees: Vec<String> = s.fees.iter().map(|(c, f)| format!("chain {} {f}", c.0)).collect();
    println!(
        "parameters: fees [{}], max_batches_per_block {}, max_batch_bytes {}, challenge_window {}, \
         bridge_inflow_limit {}, bridge_window_heights {}",
        fees.join(", "),
        s.max_batches_per_block,
        if s.max_batch_bytes == 0 { "0 (no limit)".to_string() } else { s.max_batch_bytes.to_string() },
        s.challenge_window,
        s.bridge_inflow_limit,
        s.bridge_window_heights
    );
}
