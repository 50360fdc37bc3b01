//! `lamina settlement status|claims|anchor|account|challenge`: client commands against
//! the network's settlement nodes (the typed QUIC query client
//! [`lamina_settlement_client::client::SettlementClient`]), found the same way as the
//! other client commands (`--devnet`, or `--genesis` with `--client-key`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use lamina_interfaces::{Blob, DataAvailability as _, TxSubmit as _};
use lamina_primitives::{ChainId, Digest, Height, Namespace, PublicKey};
use lamina_settlement_client::client::SettlementClient;
use lamina_settlement_client::protocol::{ClaimInfo, SettlementRequest, SettlementResponse};
use lamina_settlement_core::{Challenge, Entry, WitnessRef};

use crate::args::{ModuleCmd, parse_public_key};
use crate::client::{Net, NetArgs, with_net};

const QUERY_TIMEOUT: Duration = Duration::from_secs(10);
/// Challenge witnesses larger than this go to DA (the challenge carries the commitment).
const INLINE_WITNESS: usize = 48 * 1024;

/// `lamina settlement ...`
#[derive(Debug, Subcommand)]
pub enum SettlementCmd {
    /// Module commands (init, start, config).
    #[command(flatten)]
    Module(ModuleCmd),
    /// Settlement height, and each chain's finalized height and root.
    Status(StatusArgs),
    /// A chain's recent claims with their status, inclusion height and deadline.
    Claims(ClaimsArgs),
    /// The finalized root of a chain at or before a height; its Merkle proof is
    /// checked here against the chain's anchors root.
    Anchor(AnchorArgs),
    /// A key's free and bonded balance on the settlement ledger.
    Account(AccountArgs),
    /// Post a challenge (fraud proof) against one step of a claim, with a witness file
    /// (the execution layer's encoded witness of the step's pre-state). The challenger
    /// bonds `challenge_bond`: a proof that does not verify pays it to the claimer.
    Challenge(ChallengeArgs),
}

/// `lamina settlement status` arguments.
#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// Only this chain.
    #[arg(long)]
    pub chain: Option<u64>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// The network.
    #[command(flatten)]
    pub net: NetArgs,
}

/// `lamina settlement claims` arguments.
#[derive(Debug, Clone, Args)]
pub struct ClaimsArgs {
    /// The chain.
    #[arg(long)]
    pub chain: u64,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// The network.
    #[command(flatten)]
    pub net: NetArgs,
}

/// `lamina settlement anchor` arguments.
#[derive(Debug, Clone, Args)]
pub struct AnchorArgs {
    /// The chain.
    #[arg(long)]
    pub chain: u64,
    /// Log height (default: the newest finalized).
    #[arg(long, default_value_t = u64::MAX)]
    pub height: u64,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// The network.
    #[command(flatten)]
    pub net: NetArgs,
}

/// `lamina settlement account` arguments.
#[derive(Debug, Clone, Args)]
pub struct AccountArgs {
    /// The key (64 hex digits).
    #[arg(value_parser = parse_public_key)]
    pub account: PublicKey,
    /// The network.
    #[command(flatten)]
    pub net: NetArgs,
}

/// `lamina settlement challenge` arguments.
#[derive(Debug, Clone, Args)]
pub struct ChallengeArgs {
    /// The claim id (64 hex digits).
    #[arg(long)]
    pub claim: String,
    /// Index of the challenged step in the claim.
    #[arg(long)]
    pub step: u32,
    /// File with the encoded witness of the step's pre-state.
    #[arg(long)]
    pub witness: PathBuf,
    /// The challenger's key (needs a settlement-ledger balance to bond).
    #[arg(long)]
    pub key: PathBuf,
    /// The network.
    #[command(flatten)]
    pub net: NetArgs,
}

/// Runs `lamina settlement <client command>` (module commands are dispatched by the
/// caller).
pub fn run(cmd: SettlementCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        SettlementCmd::Module(_) => bail!("module commands are run by `lamina settlement init|start|config`"),
        SettlementCmd::Status(a) => with_net(&a.net, None, async |net| status(net, &a).await),
        SettlementCmd::Claims(a) => with_net(&a.net, None, async |net| {
            let claims = match ask(net, &SettlementRequest::Claims(ChainId(a.chain))).await? {
                SettlementResponse::Claims(c) => c,
                _ => bail!("settlement node answered a claims query with something else"),
            };
            if a.json {
                println!("{}", serde_json::to_string_pretty(&claims)?);
            } else {
                print_claims(&claims);
            }
            Ok(ExitCode::SUCCESS)
        }),
        SettlementCmd::Anchor(a) => with_net(&a.net, None, async |net| anchor(net, &a).await),
        SettlementCmd::Account(a) => {
            with_net(&a.net, None, async |net| match ask(net, &SettlementRequest::Account(a.account)).await? {
                SettlementResponse::Account(acc) => {
                    println!("account: {}", acc.account);
                    println!("free: {}", acc.free);
                    println!("bonded: {}", acc.bonded);
                    println!("next_nonce: {}", acc.next_nonce);
                    Ok(ExitCode::SUCCESS)
                }
                _ => bail!("settlement node answered an account query with something else"),
            })
        }
        SettlementCmd::Challenge(a) => {
            let key = a.key.clone();
            with_net(&a.net, Some(&key), async |net| challenge(net, &a).await)
        }
    }
}

async fn ask(net: &Net, req: &SettlementRequest) -> anyhow::Result<SettlementResponse> {
    if net.genesis.settlement_nodes.is_empty() {
        bail!("{} has no settlement node in its genesis", net.source);
    }
    let client =
        SettlementClient::register(&net.endpoint, &net.genesis).context("cannot start the settlement client")?;
    client.query(req, QUERY_TIMEOUT).await.with_context(|| format!("settlement node of {} unreachable", net.source))
}

async fn status(net: &Net, a: &StatusArgs) -> anyhow::Result<ExitCode> {
    let SettlementResponse::Status(mut s) = ask(net, &SettlementRequest::Status).await? else {
        bail!("settlement node answered a status query with something else")
    };
    if let Some(c) = a.chain {
        s.chains.retain(|x| x.chain == ChainId(c));
        if s.chains.is_empty() {
            bail!("chain {c} is unknown to the settlement layer of {}", net.source);
        }
    }
    if a.json {
        match a.chain {
            Some(_) => println!("{}", serde_json::to_string_pretty(&s.chains[0])?),
            None => println!("{}", serde_json::to_string_pretty(&s)?),
        }
        return Ok(ExitCode::SUCCESS);
    }
    println!("settlement height: {} (log tip {}, window {} heights)", s.height.0, s.log_tip.0, s.window);
    println!("state root: {}", s.state_root);
    println!("squares proven wrongly encoded: {}", s.bad_encodings);
    for root in &s.bad_squares {
        println!("  bad square {root}");
    }
    for c in &s.chains {
        println!(
            "chain {}: finalized height {} root {} (claim {}, final at {}); {} pending claim(s)",
            c.chain.0, c.finalized_height.0, c.finalized_root, c.finalized_claim, c.finalized_at.0, c.pending
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn print_claims(claims: &[ClaimInfo]) {
    let rows = claims.iter().map(|c| {
        vec![
            c.id.to_hex()[..16].to_string(),
            c.from.0.to_string(),
            c.to.0.to_string(),
            c.included_at.0.to_string(),
            c.deadline.0.to_string(),
            c.status.to_string(),
            c.claimer.to_hex()[..16].to_string(),
        ]
    });
    print!(
        "{}",
        crate::table::plain(
            &["CLAIM", "FROM", "TO", "INCLUDED", "DEADLINE", "STATUS", "CLAIMER"],
            &[1, 2, 3, 4],
            rows,
            ""
        )
    );
}

async fn anchor(net: &Net, a: &AnchorArgs) -> anyhow::Result<ExitCode> {
    let SettlementResponse::Anchor(anchor) =
        ask(net, &SettlementRequest::Anchor(ChainId(a.chain), Height(a.height))).await?
    else {
        bail!("settlement node answered an anchor query with something else")
    };
    let Some(an) = anchor else { bail!("nothing of chain {} is finalized at or before height {}", a.chain, a.height) };
    lamina_settlement_core::AnchorProof {
        anchor: lamina_settlement_core::Anchor {
            chain: an.chain,
            index: an.index,
            to: an.height,
            claim: an.claim,
            state_root: an.state_root,
            receipts_root: an.receipts_root,
            finalized_at: an.finalized_at,
        },
        proof: lamina_primitives::merkle::InclusionProof {
            index: an.index,
            leaf_count: an.leaf_count,
            siblings: an.siblings.clone(),
        },
    }
    .verify(&an.anchors_root)
    .with_context(|| format!("the anchor proof does NOT verify against anchors root {}", an.anchors_root))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&an)?);
    } else {
        println!("chain: {}", an.chain.0);
        println!("height: {}", an.height.0);
        println!("state_root: {}", an.state_root);
        println!("receipts_root: {}", an.receipts_root);
        println!("claim: {}", an.claim);
        println!("finalized_at: {}", an.finalized_at.0);
        println!("proof: verified (anchor {} of {} under anchors root {})", an.index, an.leaf_count, an.anchors_root);
    }
    Ok(ExitCode::SUCCESS)
}

async fn challenge(net: &Net, a: &ChallengeArgs) -> anyhow::Result<ExitCode> {
    let claim =
        Digest::from_hex(&a.claim).map_err(|_| anyhow::anyhow!("bad claim id {:?} (64 hex digits)", a.claim))?;
    let witness = std::fs::read(&a.witness).with_context(|| format!("cannot read {}", a.witness.display()))?;
    let key = crate::keys::read(&a.key)?;
    let witness = if witness.len() <= INLINE_WITNESS {
        WitnessRef::Inline(witness)
    } else {
        let da = net.da_following().await?;
        let hash = lamina_settlement_core::witness_hash(&witness);
        let len = witness.len() as u64;
        let cert = da
            .submit(vec![Blob { namespace: Namespace::SETTLEMENT, data: witness }])
            .await
            .context("cannot disperse the witness to DA")?;
        eprintln!("witness dispersed to DA: data root {}", cert.commitment.data_root);
        WitnessRef::Da { commitment: cert.commitment, namespace: Namespace::SETTLEMENT, hash, len }
    };
    let entry = Entry::Challenge(Challenge { claim, step: a.step, witness });
    // The key's next usable nonce on the settlement ledger (nonces only increase per key).
    let nonce = match ask(net, &SettlementRequest::Account(key.public())).await? {
        SettlementResponse::Account(acc) => acc.next_nonce,
        _ => bail!("settlement node answered an account query with something else"),
    };
    let tx = Entry::transaction(&key, net.genesis.tx_scope(), nonce, &entry).context("cannot encode the challenge")?;
    let intake = net.intake().await?;
    let outcome = intake.submit(tx.clone()).await.context("intake refused the challenge")?;
    println!("challenge submitted: tx {} ({outcome:?})", tx.id());
    println!("follow it with `lamina settlement claims --chain <id>` (the claim turns `slashed` if the proof holds)");
    Ok(ExitCode::SUCCESS)
}
