//! Client commands against a running network: `lamina tx`, `lamina query`, `lamina blob`
//! and `lamina da sample`.
//!
//! They find the network in a devnet directory (`--devnet <dir>`, default: the last one
//! `lamina devnet up` created), whose `devnet.json` names the genesis and the devnet's
//! client key, or in an explicit `--genesis <file> --client-key <file>`. The client key
//! must be one every service accepts: a genesis client (`[[clients]]`), or a key listed
//! in the services' `intake_clients` / `query_clients`. Each command binds its own QUIC
//! endpoint on `127.0.0.1:0` with that key and registers the clients it needs on it:
//!
//! * the consensus intake ([`lamina_consensus_client::IntakeClient`]) to submit;
//! * the execution query protocol ([`lamina_execution_client::protocol::QueryProtocol`])
//!   of the chain's execution node(s) for nonces, balances (with state proofs that are
//!   verified here), receipts and status;
//! * the DA client ([`lamina_da_client::DaClient`]) to disperse blobs (and check the
//!   availability certificate), retrieve a namespace's blobs (verified against the data
//!   root) and sample a square as a light client.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use lamina_execution_client::client::{QueryClient, kind};
use lamina_execution_client::protocol::{QueryRequest, QueryResponse, StatusInfo};
use lamina_execution_core::ledger::{self, AssetId, LedgerFailure};
use lamina_execution_core::{Receipt, Status};
use lamina_interfaces::{Blob, ChainSpec, Genesis, SubmitOutcome, TxSubmit as _};
use lamina_net::{Endpoint, EndpointConfig};
use lamina_primitives::{ChainId, Digest, Height, Keypair, Namespace, NodeId, PublicKey, TxId};

use crate::args::{ModuleCmd, parse_duration, parse_public_key};

/// How long to wait for the first connection to a service before calling it unreachable.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

// ------------------------------------------------------------------ command line

/// Where the network is and who we are on it.
#[derive(Debug, Clone, Args, Default)]
pub struct NetArgs {
    /// Devnet directory (default: the last one `lamina devnet up` created). Its
    /// `devnet.json` names the genesis and the client key.
    #[arg(long, conflicts_with = "genesis")]
    pub devnet: Option<PathBuf>,
    /// Genesis file of the network (instead of a devnet); needs a client key.
    #[arg(long)]
    pub genesis: Option<PathBuf>,
    /// Client key file: a genesis client, or a key the services list in their
    /// `intake_clients` / `query_clients` (default: the devnet's `client.key`).
    #[arg(long)]
    pub client_key: Option<PathBuf>,
}

/// `lamina tx ...`
#[derive(Debug, Subcommand)]
pub enum TxCmd {
    /// Sign a native-ledger transfer, submit it to consensus intake and wait for its receipt.
    Transfer(TransferArgs),
}

/// `lamina tx transfer` arguments.
#[derive(Debug, Clone, Args)]
pub struct TransferArgs {
    /// The chain (id).
    #[arg(long)]
    pub chain: u64,
    /// Recipient (64-hex-digit public key).
    #[arg(long, value_parser = parse_public_key)]
    pub to: PublicKey,
    /// Amount (in the asset's smallest unit).
    #[arg(long)]
    pub amount: u64,
    /// Asset id (0: the chain's native asset).
    #[arg(long, default_value_t = 0)]
    pub asset: u64,
    /// Sender: this funded deterministic test account of the chain (default: account 0,
    /// unless --key is given).
    #[arg(long, conflicts_with = "key")]
    pub from_test_account: Option<u64>,
    /// Sender: the key in this file.
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// Print the transaction id once intake accepted it; do not wait for the receipt.
    #[arg(long)]
    pub no_wait: bool,
    /// How long to wait for the receipt.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// The network.
    #[command(flatten)]
    pub net: NetArgs,
    /// Output format.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `lamina query ...`
#[derive(Debug, Subcommand)]
pub enum QueryCmd {
    /// An account's balance, optionally with a state proof verified here.
    Balance(BalanceArgs),
    /// An account's next nonce.
    Nonce(AccountArgs),
    /// A transaction's receipt and the height that included it.
    Receipt(ReceiptArgs),
    /// The execution node's committed height and roots.
    Status(ChainArgs),
}

/// The chain and network of a query.
#[derive(Debug, Clone, Args)]
pub struct ChainArgs {
    /// The chain (id).
    #[arg(long)]
    pub chain: u64,
    /// The network.
    #[command(flatten)]
    pub net: NetArgs,
    /// Output format.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `--json` for client commands that print a result.
#[derive(Debug, Clone, Copy, Args, Default)]
pub struct OutputArgs {
    /// Print the result as one JSON object (for scripts) instead of `key: value` lines.
    #[arg(long)]
    pub json: bool,
}

/// A command's result: `key: value` lines as they come, or (with `--json`) one JSON
/// object printed at the end. Heights, nonces and counts are JSON numbers; amounts
/// (up to 128 bits) and digests are strings.
pub(crate) struct Out {
    json: bool,
    fields: serde_json::Map<String, serde_json::Value>,
}

impl Out {
    pub(crate) fn new(o: OutputArgs) -> Self {
        Out { json: o.json, fields: serde_json::Map::new() }
    }

    /// A text field.
    pub(crate) fn put(&mut self, key: &str, v: impl std::fmt::Display) {
        if self.json {
            self.fields.insert(key.into(), v.to_string().into());
        } else {
            println!("{key}: {v}");
        }
    }

    /// A numeric field.
    pub(crate) fn num(&mut self, key: &str, v: u64) {
        if self.json {
            self.fields.insert(key.into(), v.into());
        } else {
            println!("{key}: {v}");
        }
    }

    /// A structured field (JSON only; text output prints its own lines).
    pub(crate) fn raw(&mut self, key: &str, v: serde_json::Value) {
        if self.json {
            self.fields.insert(key.into(), v);
        }
    }

    /// Prints the JSON object (nothing more in text mode).
    pub(crate) fn finish(self) {
        if self.json {
            println!("{}", serde_json::Value::Object(self.fields));
        }
    }
}

/// `lamina query balance` arguments.
#[derive(Debug, Clone, Args)]
pub struct BalanceArgs {
    /// The account (64-hex-digit public key).
    #[arg(value_parser = parse_public_key)]
    pub account: PublicKey,
    /// Asset id (0: the chain's native asset).
    #[arg(long, default_value_t = 0)]
    pub asset: u64,
    /// Fetch a Merkle proof of the balance and verify it against the reported state root.
    #[arg(long)]
    pub proof: bool,
    /// Chain and network.
    #[command(flatten)]
    pub chain: ChainArgs,
}

/// `lamina query nonce` arguments.
#[derive(Debug, Clone, Args)]
pub struct AccountArgs {
    /// The account (64-hex-digit public key).
    #[arg(value_parser = parse_public_key)]
    pub account: PublicKey,
    /// Chain and network.
    #[command(flatten)]
    pub chain: ChainArgs,
}

/// `lamina query receipt` arguments.
#[derive(Debug, Clone, Args)]
pub struct ReceiptArgs {
    /// The transaction id (64 hex digits, as `lamina tx transfer` prints it).
    #[arg(value_parser = parse_tx_id)]
    pub tx: TxId,
    /// Chain and network.
    #[command(flatten)]
    pub chain: ChainArgs,
}

/// `lamina blob ...`
#[derive(Debug, Subcommand)]
pub enum BlobCmd {
    /// Disperse a blob to the DA nodes; prints the certified data root.
    Submit(BlobSubmitArgs),
    /// Fetch a namespace's blobs from a square, verified against its data root.
    Get(BlobGetArgs),
}

/// `lamina blob submit` arguments.
#[derive(Debug, Clone, Args)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["file", "data"])))]
pub struct BlobSubmitArgs {
    /// Namespace: a chain id (decimal), or 16 hex digits (optionally 0x-prefixed).
    #[arg(long, value_parser = parse_namespace)]
    pub namespace: Namespace,
    /// Read the blob from this file.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// The blob is this string (UTF-8 bytes).
    #[arg(long)]
    pub data: Option<String>,
    /// The network.
    #[command(flatten)]
    pub net: NetArgs,
    /// Output format.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `lamina blob get` arguments.
#[derive(Debug, Clone, Args)]
pub struct BlobGetArgs {
    /// Namespace: a chain id (decimal), or 16 hex digits (optionally 0x-prefixed).
    #[arg(long, value_parser = parse_namespace)]
    pub namespace: Namespace,
    /// Data root of the square (64 hex digits, as `blob submit` prints it).
    #[arg(long, value_parser = parse_digest)]
    pub data_root: Digest,
    /// Write the blobs here instead of standard output (several blobs: concatenated).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The network.
    #[command(flatten)]
    pub net: NetArgs,
}

/// `lamina da ...`: the module commands, plus light-client sampling.
#[derive(Debug, Subcommand)]
pub enum DaCmd {
    /// Module commands (init, start, config).
    #[command(flatten)]
    Module(ModuleCmd),
    /// Light-client sampling of a square against the DA nodes.
    Sample(SampleArgs),
}

/// `lamina da sample` arguments.
#[derive(Debug, Clone, Args)]
pub struct SampleArgs {
    /// Data root of the square (64 hex digits).
    #[arg(value_parser = parse_digest)]
    pub data_root: Digest,
    /// Cells to sample.
    #[arg(long, default_value_t = 16)]
    pub samples: u32,
    /// The network.
    #[command(flatten)]
    pub net: NetArgs,
    /// Output format.
    #[command(flatten)]
    pub output: OutputArgs,
}

fn parse_tx_id(s: &str) -> anyhow::Result<TxId> {
    Ok(TxId(parse_digest(s)?))
}

fn parse_digest(s: &str) -> anyhow::Result<Digest> {
    Digest::from_hex(s.trim()).with_context(|| format!("{s:?} is not 64 hex digits"))
}

/// Parses a namespace: a decimal chain id, or 16 hex digits (optionally `0x`-prefixed).
pub fn parse_namespace(s: &str) -> anyhow::Result<Namespace> {
    let s = s.trim();
    let hex_part = s.strip_prefix("0x").unwrap_or(s);
    if hex_part.len() == 16 && hex_part.bytes().all(|b| b.is_ascii_hexdigit()) {
        let mut ns = [0u8; 8];
        hex::decode_to_slice(hex_part, &mut ns).with_context(|| format!("{s:?} is not 16 hex digits"))?;
        return Ok(Namespace(ns));
    }
    let id: u64 =
        s.parse().with_context(|| format!("{s:?} is neither a chain id (decimal) nor a namespace (16 hex digits)"))?;
    Ok(Namespace::from(ChainId(id)))
}

// ------------------------------------------------------------------ the network

/// A resolved network: genesis, client key, and a bound client endpoint.
pub(crate) struct Net {
    pub(crate) genesis: Genesis,
    pub(crate) endpoint: Endpoint,
    /// Where the network was found (for error messages).
    pub(crate) source: String,
    /// The DA client, registered on `endpoint` on first use ([`Net::da`]): a protocol
    /// registers once per endpoint, and a command may need it twice (a witness to
    /// disperse and a governance replay).
    da: std::sync::OnceLock<std::sync::Arc<lamina_da_client::DaClient>>,
    /// [`Net::committee`]'s answer, replayed at most once per command (the replay
    /// registers the log protocol on `endpoint`, which can be done only once).
    committee: tokio::sync::OnceCell<Option<Vec<lamina_interfaces::NodeEntry>>>,
}

/// Points `intake` at `committee`, saying so on stderr.
fn use_committee(intake: &lamina_consensus_client::IntakeClient, committee: &[lamina_interfaces::NodeEntry]) {
    intake.set_validators(committee);
    eprintln!("submitting to the committee governance decided: {} validators", intake.validators().len());
}

/// The devnet directory: `--devnet`, else the last one `devnet up` created.
fn devnet_dir(flag: Option<&Path>) -> anyhow::Result<PathBuf> {
    match flag {
        Some(d) => crate::home::absolute(d),
        None => crate::devnet::last_dir()
            .context("no devnet found; pass --devnet <dir>, or --genesis <file> --client-key <file>"),
    }
}

impl Net {
    /// Resolves the genesis and key (`fallback_key`: used when no client key is given
    /// and there is no devnet, e.g. the sender's own key) and binds an endpoint.
    fn open(args: &NetArgs, fallback_key: Option<&Path>) -> anyhow::Result<Net> {
        let (genesis_path, key_path, source) = match &args.genesis {
            Some(g) => {
                let key =
                    args.client_key.clone().or_else(|| fallback_key.map(Path::to_path_buf)).with_context(|| {
                        format!("--genesis {} needs --client-key <file> (a key the services accept)", g.display())
                    })?;
                (g.clone(), key, format!("genesis {}", g.display()))
            }
            None => {
                let dir = devnet_dir(args.devnet.as_deref())?;
                let state = crate::devnet::state::DevnetState::load(&dir)
                    .with_context(|| format!("no devnet found at {}", dir.display()))?;
                use crate::devnet::state::Phase;
                if matches!(state.phase, Phase::Stopped | Phase::Failed) {
                    bail!(
                        "the devnet at {} is not running (phase {:?}); start one with `lamina devnet up --keep`",
                        dir.display(),
                        state.phase
                    );
                }
                let key = match &args.client_key {
                    Some(k) => k.clone(),
                    None if state.client_key.as_os_str().is_empty() => {
                        bail!("the devnet at {} has no client key; pass --client-key <file>", dir.display())
                    }
                    None => state.client_key.clone(),
                };
                (state.genesis.clone(), key, format!("devnet {}", dir.display()))
            }
        };
        let genesis = crate::genesis::load(&genesis_path)?;
        let key = crate::keys::read(&key_path).with_context(|| format!("cannot read the client key of {source}"))?;
        let endpoint = Endpoint::bind(&key, EndpointConfig::new(std::net::SocketAddr::from(([127, 0, 0, 1], 0))))
            .context("cannot bind a client QUIC endpoint on 127.0.0.1")?;
        Ok(Net { genesis, endpoint, source, da: std::sync::OnceLock::new(), committee: tokio::sync::OnceCell::new() })
    }

    /// The chain `id` of the genesis.
    fn chain(&self, id: u64) -> anyhow::Result<&ChainSpec> {
        self.genesis.chain(ChainId(id)).with_context(|| {
            let known: Vec<String> = self.genesis.chains.iter().map(|c| c.id.0.to_string()).collect();
            format!("chain {id} is unknown to {} (chains: {})", self.source, known.join(", "))
        })
    }

    /// A genesis node's name, for output.
    fn name_of(&self, id: &NodeId) -> String {
        self.genesis.node(id).map(|n| n.name.clone()).unwrap_or_else(|| id.to_hex()[..16].to_string())
    }

    /// A query client for the execution node(s) of `chain`.
    fn queries(&self, chain: u64) -> anyhow::Result<Queries> {
        self.chain(chain)?;
        let chain = ChainId(chain);
        let client = QueryClient::register_chain(&self.endpoint, &self.genesis, chain)
            .context("cannot start the execution query client")?;
        if client.nodes(chain).is_empty() {
            bail!("chain {chain} has no execution node in the genesis of {}", self.source);
        }
        Ok(Queries { client, chain })
    }

    /// An intake client for the validators that order the next heights: where
    /// committees change by vote, the committee governance decided (replayed from the
    /// log the way `lamina gov` does, resuming from what the last command kept; if that
    /// fails, the genesis validators, with the client's failover), else the genesis
    /// validators. See [`Net::intake_to`].
    pub(crate) async fn intake(&self) -> anyhow::Result<lamina_consensus_client::IntakeClient> {
        self.intake_to(self.committee().await).await
    }

    /// Where committees change by vote, the validators that order the next heights
    /// ([`crate::governed::cli_committee`]); `None` (the genesis validators) elsewhere,
    /// and, with a warning, where the replay fails.
    pub(crate) async fn committee(&self) -> Option<Vec<lamina_interfaces::NodeEntry>> {
        if !self.genesis.governance.committee_changes {
            return None;
        }
        self.committee.get_or_init(|| self.replay_committee()).await.clone()
    }

    /// The replay behind [`Net::committee`].
    async fn replay_committee(&self) -> Option<Vec<lamina_interfaces::NodeEntry>> {
        let da = match self.da() {
            Ok(da) => da,
            Err(e) => {
                eprintln!("warning: {e:#}; submitting to the genesis validators");
                return None;
            }
        };
        match crate::governed::cli_committee(&self.endpoint, &self.genesis, da, &self.source, CONNECT_TIMEOUT).await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("warning: cannot replay governance ({e:#}); submitting to the genesis validators");
                None
            }
        }
    }

    /// Points `intake` at [`Net::committee`] where it is known, saying so on stderr.
    pub(crate) async fn route_to_committee(&self, intake: &lamina_consensus_client::IntakeClient) {
        if let Some(c) = self.committee().await {
            use_committee(intake, &c);
        }
    }

    /// [`Net::da`], pointed at the DA committees governance decided where committees
    /// change by vote (replayed the way [`Net::committee`] does; with a warning and the
    /// genesis committee if that fails), so that squares of a committee changed by vote
    /// are found and new ones go to the current committee.
    pub(crate) async fn da_following(&self) -> anyhow::Result<std::sync::Arc<lamina_da_client::DaClient>> {
        let da = self.da()?;
        if self.genesis.governance.committee_changes {
            // The replay's follower points this client at the committees as it goes.
            let _ = self.committee().await;
        }
        Ok(da)
    }

    /// The DA client on this command's endpoint (registered on first use).
    pub(crate) fn da(&self) -> anyhow::Result<std::sync::Arc<lamina_da_client::DaClient>> {
        if let Some(da) = self.da.get() {
            return Ok(da.clone());
        }
        let da = lamina_da_client::DaClient::register(&self.endpoint, &self.genesis, Default::default())
            .context("cannot start the DA client")?;
        Ok(self.da.get_or_init(|| std::sync::Arc::new(da)).clone())
    }

    /// An intake client for `committee` (the genesis validators if `None`), connected
    /// to all of them if they come within `CONNECT_TIMEOUT` (so a sender's own
    /// validator gets its transaction), else to any one within what is left of the wait.
    pub(crate) async fn intake_to(
        &self,
        committee: Option<Vec<lamina_interfaces::NodeEntry>>,
    ) -> anyhow::Result<lamina_consensus_client::IntakeClient> {
        let intake = lamina_consensus_client::IntakeClient::register(&self.endpoint, &self.genesis)
            .context("cannot start the intake client")?;
        if let Some(c) = committee {
            use_committee(&intake, &c);
        }
        let all = intake.validators().len();
        let started = std::time::Instant::now();
        if intake.wait_for_validators(all, CONNECT_TIMEOUT).await.is_err() {
            let left = CONNECT_TIMEOUT.saturating_sub(started.elapsed()).max(Duration::from_millis(100));
            intake.wait_for_validators(1, left).await.with_context(|| {
                format!(
                    "consensus intake unreachable: no validator of {} connected (waited up to {CONNECT_TIMEOUT:?})",
                    self.source
                )
            })?;
        }
        Ok(intake)
    }

    async fn close(self) {
        self.endpoint.shutdown().await;
    }
}

/// Queries to one chain's execution nodes ([`QueryClient`]).
struct Queries {
    client: QueryClient,
    chain: ChainId,
}

impl Queries {
    /// Asks the first execution node of the chain that answers.
    async fn ask(&self, req: &QueryRequest) -> anyhow::Result<QueryResponse> {
        Ok(self.client.ask(self.chain, req).await?)
    }

    async fn nonce(&self, account: &PublicKey) -> anyhow::Result<(Height, u64)> {
        Ok(self.client.nonce(self.chain, *account).await?)
    }

    async fn receipt(&self, tx: TxId) -> anyhow::Result<Option<(Height, Receipt<LedgerFailure>)>> {
        Ok(self.client.receipt(self.chain, tx).await?)
    }
}

fn status_text(s: &Status<LedgerFailure>) -> String {
    match s {
        Status::Success => "success".into(),
        Status::Failed(f) => format!("failed ({f})"),
        Status::Rejected(f) => format!("rejected ({f})"),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the runtime")
}

/// Runs `f` on a network opened from `args`, closing the endpoint afterwards.
pub(crate) fn with_net<F>(args: &NetArgs, fallback_key: Option<&Path>, f: F) -> anyhow::Result<ExitCode>
where
    F: AsyncFnOnce(&Net) -> anyhow::Result<ExitCode>,
{
    let rt = runtime()?;
    rt.block_on(async {
        let net = Net::open(args, fallback_key)?;
        let out = f(&net).await;
        net.close().await;
        out
    })
}

// ------------------------------------------------------------------ tx

/// Runs `lamina tx ...`.
pub fn tx(cmd: TxCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        TxCmd::Transfer(a) => with_net(&a.net, a.key.as_deref(), async |net| transfer(net, &a).await),
    }
}

async fn transfer(net: &Net, a: &TransferArgs) -> anyhow::Result<ExitCode> {
    if a.amount == 0 {
        bail!("amount 0: a transfer must move something (the ledger rejects zero transfers)");
    }
    let chain = net.chain(a.chain)?;
    let sender = match &a.key {
        Some(path) => crate::keys::read(path).context("cannot read the sender key")?,
        None => {
            let i = a.from_test_account.unwrap_or(0);
            if i >= chain.funded_test_accounts {
                bail!(
                    "chain {} has {} funded test accounts; --from-test-account {i} is out of range",
                    a.chain,
                    chain.funded_test_accounts
                );
            }
            Keypair::for_testing(chain.funded_test_accounts_seed + i)
        }
    };
    let queries = net.queries(a.chain)?;
    let (_, nonce) = queries.nonce(&sender.public()).await.context("cannot read the sender's nonce")?;
    // What can never succeed is refused here, before it costs the network: the sender
    // must hold the amount, as of the node's last height. The fee is not counted:
    // governance may have changed the genesis fee (a receipt says `fee_unpaid` if the
    // sender cannot pay the fee in force).
    let (asset, need) = (AssetId(a.asset), a.amount);
    if need > 0 {
        let (h, have) = match queries.ask(&QueryRequest::Balance(sender.public(), asset)).await? {
            QueryResponse::Balance(h, amount) => (h, amount),
            other => bail!("execution node answered a balance query with {}", kind(&other)),
        };
        if have < u128::from(need) {
            bail!(
                "sender {} holds {have} of asset {} on chain {} (height {}); this transfer needs {need}, plus \
                 the chain's fee in the native asset 0",
                sender.public(),
                asset.0,
                a.chain,
                h.0,
            );
        }
    }
    let tx =
        ledger::transfer(&sender, net.genesis.tx_scope(), ChainId(a.chain), nonce, a.to, AssetId(a.asset), a.amount);
    let id = tx.id();

    let intake = net.intake().await?;
    let outcome = intake.submit(tx).await.map_err(|e| anyhow::anyhow!("consensus intake refused {id}: {e}"))?;
    let mut out = Out::new(a.output);
    out.put("tx", id);
    eprintln!(
        "{} by intake: {} -> {}, {} of asset {}, nonce {nonce}",
        match outcome {
            SubmitOutcome::Accepted(_) => "accepted",
            SubmitOutcome::Duplicate(_) => "already known",
        },
        sender.public(),
        a.to,
        a.amount,
        a.asset
    );
    if a.no_wait {
        out.finish();
        return Ok(ExitCode::SUCCESS);
    }
    let started = Instant::now();
    let receipt = loop {
        if let Some(r) = queries.receipt(id).await? {
            break r;
        }
        if started.elapsed() >= a.timeout {
            bail!(
                "receipt timeout: chain {}'s execution node has no receipt for {id} after {:?} (it may still be \
                 ordered; check later with `lamina query receipt {id} --chain {}`)",
                a.chain,
                a.timeout,
                a.chain
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let (height, receipt) = receipt;
    out.put("receipt", status_text(&receipt.status));
    out.num("height", height.0);
    out.finish();
    Ok(if receipt.is_success() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

// ------------------------------------------------------------------ query

/// Runs `lamina query ...`.
pub fn query(cmd: QueryCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        QueryCmd::Balance(a) => with_net(&a.chain.net, None, async |net| balance(net, &a).await),
        QueryCmd::Nonce(a) => with_net(&a.chain.net, None, async |net| {
            let (h, n) = net.queries(a.chain.chain)?.nonce(&a.account).await?;
            let mut out = Out::new(a.chain.output);
            out.num("nonce", n);
            out.num("height", h.0);
            out.finish();
            Ok(ExitCode::SUCCESS)
        }),
        QueryCmd::Receipt(a) => {
            with_net(&a.chain.net, None, async |net| match net.queries(a.chain.chain)?.receipt(a.tx).await? {
                Some((h, r)) => {
                    let mut out = Out::new(a.chain.output);
                    out.put("receipt", status_text(&r.status));
                    out.num("height", h.0);
                    out.finish();
                    Ok(ExitCode::SUCCESS)
                }
                None => {
                    bail!("chain {}'s execution node has no receipt for {} (not executed yet?)", a.chain.chain, a.tx)
                }
            })
        }
        QueryCmd::Status(a) => {
            with_net(&a.net, None, async |net| match net.queries(a.chain)?.ask(&QueryRequest::Status).await? {
                QueryResponse::Status(s) => {
                    let mut out = Out::new(a.output);
                    print_status(&mut out, &s);
                    out.finish();
                    Ok(ExitCode::SUCCESS)
                }
                other => bail!("execution node answered a status query with {}", kind(&other)),
            })
        }
    }
}

fn print_status(out: &mut Out, s: &StatusInfo) {
    out.num("chain", s.chain.0);
    out.num("height", s.height.0);
    out.put("state_root", s.state_root);
    out.put("receipts_root", s.receipts_root);
    out.put("data_root", s.data_root);
}

async fn balance(net: &Net, a: &BalanceArgs) -> anyhow::Result<ExitCode> {
    let queries = net.queries(a.chain.chain)?;
    let asset = AssetId(a.asset);
    let mut out = Out::new(a.chain.output);
    if !a.proof {
        return match queries.ask(&QueryRequest::Balance(a.account, asset)).await? {
            QueryResponse::Balance(h, amount) => {
                out.put("balance", amount);
                out.num("height", h.0);
                out.finish();
                Ok(ExitCode::SUCCESS)
            }
            other => bail!("execution node answered a balance query with {}", kind(&other)),
        };
    }
    match queries.ask(&QueryRequest::BalanceProof(a.account, asset)).await? {
        QueryResponse::BalanceProof(info, amount, proof) => {
            if info.chain != ChainId(a.chain.chain) {
                bail!("execution node answered for chain {} instead of {}", info.chain.0, a.chain.chain);
            }
            let key = ledger::balance_key(&a.account, asset);
            lamina_execution_core::state::verify_counter(&info.state_root, &key, amount, &proof)
                .with_context(|| format!("the balance proof does NOT verify against state root {}", info.state_root))?;
            out.put("balance", amount);
            out.num("height", info.height.0);
            out.put("state_root", info.state_root);
            out.put(
                "proof",
                format!("verified (balance {amount} under state root {} at height {})", info.state_root, info.height.0),
            );
            out.finish();
            Ok(ExitCode::SUCCESS)
        }
        QueryResponse::Balance(..) => bail!("the execution node could not produce a proof for this balance"),
        other => bail!("execution node answered a balance-proof query with {}", kind(&other)),
    }
}

// ------------------------------------------------------------------ blob and da

async fn wait_da(net: &Net, da: &lamina_da_client::DaClient, n: usize) -> anyhow::Result<()> {
    da.wait_for_nodes(n, CONNECT_TIMEOUT).await.with_context(|| {
        format!(
            "DA nodes unreachable: fewer than {n} of the {} of {} connected",
            net.genesis.da_nodes.len(),
            net.source
        )
    })
}

/// Runs `lamina blob ...`.
pub fn blob(cmd: BlobCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        BlobCmd::Submit(a) => {
            let ns = a.namespace;
            if ns == Namespace::MIN || ns.is_reserved() {
                bail!(
                    "namespace {} is reserved (0 and {} and above belong to the engine); use a chain id or \
                     another namespace",
                    ns.as_u64(),
                    lamina_primitives::ChainId::RESERVED_START
                );
            }
            // Checked before the blob is read: a file too large for any square must not
            // cost the client its size in memory first.
            let limit = lamina_da_core::max_blob_bytes(lamina_da_client::ClientConfig::default().codec_id());
            let too_large = |len: u64| {
                anyhow::anyhow!("the blob is {len} bytes; one DA square holds at most {limit} bytes: split it")
            };
            let data = match (&a.file, &a.data) {
                (Some(f), _) => {
                    let len = std::fs::metadata(f).with_context(|| format!("cannot read {}", f.display()))?.len();
                    if len > limit {
                        return Err(too_large(len));
                    }
                    std::fs::read(f).with_context(|| format!("cannot read {}", f.display()))?
                }
                (None, Some(d)) => d.clone().into_bytes(),
                (None, None) => bail!("give --file <path> or --data <string>"),
            };
            if data.len() as u64 > limit {
                return Err(too_large(data.len() as u64));
            }
            if data.is_empty() {
                bail!("the blob is empty (DA refuses empty blobs)");
            }
            with_net(&a.net, None, async |net| blob_submit(net, a.namespace, data, a.output).await)
        }
        BlobCmd::Get(a) => with_net(&a.net, None, async |net| blob_get(net, &a).await),
    }
}

async fn blob_submit(net: &Net, namespace: Namespace, data: Vec<u8>, output: OutputArgs) -> anyhow::Result<ExitCode> {
    let da = net.da_following().await?;
    // The committee it disperses to: the genesis one, or where committees change by
    // vote the one governance decided for the next heights.
    let committee = da.committees().swap_remove(0);
    let threshold = committee.threshold;
    wait_da(net, &da, threshold).await?;
    let len = data.len();
    let cert = da.disperse(vec![Blob { namespace, data }]).await.context("DA dispersal failed")?;
    committee.verify(&cert).context("the availability certificate does not verify against the DA committee")?;
    let c = &cert.commitment;
    let mut out = Out::new(output);
    out.put("data_root", c.data_root);
    out.put("namespace", namespace);
    out.num("square_width", u64::from(c.square_width));
    out.num("blob_bytes", len as u64);
    out.put(
        "certificate",
        format!("{} DA signatures (threshold {threshold}), verified", cert.signatures.signer_indices().len()),
    );
    out.finish();
    Ok(ExitCode::SUCCESS)
}

async fn blob_get(net: &Net, a: &BlobGetArgs) -> anyhow::Result<ExitCode> {
    let da = net.da_following().await?;
    wait_da(net, &da, 1).await?;
    let commitment = da.commitment_of(a.data_root).await.context("cannot fetch the square's header")?;
    let blobs = da
        .retrieve(&commitment, a.namespace)
        .await
        .with_context(|| format!("cannot retrieve namespace {} from square {}", a.namespace, a.data_root))?;
    if blobs.is_empty() {
        bail!(
            "square {} holds no blob in namespace {} (absence proven by its namespace table)",
            a.data_root,
            a.namespace
        );
    }
    let bytes: Vec<u8> = blobs.concat();
    match &a.out {
        Some(path) => std::fs::write(path, &bytes).with_context(|| format!("cannot write {}", path.display()))?,
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(&bytes).context("cannot write to standard output")?;
            out.flush()?;
        }
    }
    let sizes: Vec<String> = blobs.iter().map(|b| b.len().to_string()).collect();
    eprintln!(
        "{} blob(s) of namespace {} ({} bytes), verified against data root {}",
        blobs.len(),
        a.namespace,
        sizes.join(" + "),
        a.data_root
    );
    Ok(ExitCode::SUCCESS)
}

/// Runs `lamina da sample`.
pub fn da_sample(a: SampleArgs) -> anyhow::Result<ExitCode> {
    if a.samples == 0 {
        bail!("--samples must be at least 1");
    }
    with_net(&a.net, None, async |net| {
        let da = net.da_following().await?;
        wait_da(net, &da, 1).await?;
        let (outcome, cells) =
            da.sample_cells(a.data_root, a.samples).await.with_context(|| format!("cannot sample {}", a.data_root))?;
        let mut out = Out::new(a.output);
        let mut samples = Vec::new();
        for c in &cells {
            let from = c.served_by.as_ref().map(|node| net.name_of(node));
            if !out.json {
                match &from {
                    Some(from) => println!("sample ({}, {}): verified (from {from})", c.row, c.col),
                    None => println!("sample ({}, {}): MISSING", c.row, c.col),
                }
            }
            samples.push(serde_json::json!({"row": c.row, "col": c.col, "verified": from.is_some(), "from": from}));
        }
        out.raw("samples", serde_json::Value::Array(samples));
        out.put("verified", format!("{} of {}", outcome.verified, outcome.requested));
        if outcome.invalid_answers > 0 {
            out.num("invalid answers", outcome.invalid_answers as u64);
        }
        out.put("available", outcome.available);
        out.put("confidence", format!("{:.6}", outcome.confidence));
        out.finish();
        Ok(if outcome.available { ExitCode::SUCCESS } else { ExitCode::FAILURE })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_parse() {
        assert_eq!(parse_namespace("1").unwrap(), Namespace::from(ChainId(1)));
        assert_eq!(parse_namespace("0000000000000002").unwrap(), Namespace::from(ChainId(2)));
        assert_eq!(parse_namespace("0x00000000000000ff").unwrap(), Namespace::from(ChainId(255)));
        assert!(parse_namespace("chain-1").is_err());
        assert!(parse_namespace("").is_err());
    }
}
