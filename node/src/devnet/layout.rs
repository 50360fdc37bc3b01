//! Creating a devnet on disk: keys, genesis, one home per node, free loopback ports.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use lamina_interfaces::{ChainSpec, ClientEntry, Genesis, NodeEntry};
use lamina_primitives::ChainId;

use super::state::{DevnetState, NodeRecord, Phase};
use crate::config::NodeConfig;
use crate::home::Home;
use crate::module::Module;

/// File name (in the devnet directory) of the devnet client's key.
pub const CLIENT_KEY_FILE: &str = "client.key";

/// The shape of a devnet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spec {
    /// Network name.
    pub network: String,
    /// Consensus validators.
    pub validators: usize,
    /// DA storage nodes.
    pub da_nodes: usize,
    /// Execution nodes, assigned to chains round-robin.
    pub execution: usize,
    /// Settlement nodes.
    pub settlement: usize,
    /// Bridge relayers.
    pub bridge: usize,
    /// Chains (ids 1..=chains).
    pub chains: usize,
    /// Funded deterministic test accounts per chain.
    pub funded_accounts: u64,
    /// Log filter written into every node's config.
    pub log_level: String,
    /// Challenge window of the genesis, in log heights.
    pub settlement_window: u64,
    /// Anchor window of the genesis, in log heights (at least the challenge window).
    pub anchor_window: u64,
    /// Execution nodes (by name) configured to post wrong claims (fault injection).
    pub faulty_claims: Vec<String>,
    /// Validators (by name) whose batcher disperses wrongly encoded squares (fault
    /// injection).
    pub faulty_dispersal: Vec<String>,
    /// The validators' idle heartbeat (`empty_block_delay_ms`): one empty block per
    /// interval while nothing is ordered.
    pub heartbeat: std::time::Duration,
    /// Ledger version (state machine) of every chain ([`crate::machines`]).
    pub ledger_version: u32,
    /// Governance epoch length of the genesis, in log heights.
    pub epoch_length: u64,
    /// Every node's client access is restricted (`[access] open = false`): only genesis
    /// nodes and clients, and client keys added by governance, may connect.
    pub closed_access: bool,
    /// Governance voting period of the genesis, in log heights.
    pub voting_period: u64,
    /// Committees change by vote (`[governance] committee_changes`).
    pub committee_changes: bool,
}

/// Settlement-ledger balance the devnet gives every execution and settlement node and
/// its client key (so they can bond claims and challenges).
pub const DEVNET_BOND_FUNDS: u64 = 1_000_000_000;

impl Spec {
    /// Checks the counts.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.validators == 0 || self.da_nodes == 0 {
            bail!("a devnet needs at least one validator and one DA node");
        }
        if self.chains == 0 {
            bail!("a devnet needs at least one chain");
        }
        let total = self.total();
        if total > 256 {
            bail!("{total} nodes is more than a devnet on one machine should run (at most 256)");
        }
        lamina_telemetry::logging::parse_filter(&self.log_level).context("--log-level")?;
        if self.settlement_window == 0 {
            bail!("--settlement-window must be at least 1 height");
        }
        if self.anchor_window < self.settlement_window.saturating_mul(4) {
            bail!(
                "--anchor-window ({}) must be at least 4 x --settlement-window ({})",
                self.anchor_window,
                self.settlement_window
            );
        }
        if self.bridge > 0 && (self.chains < 2 || self.settlement == 0) {
            bail!("bridge relayers need at least two chains and a settlement node (or pass --bridge 0)");
        }
        crate::machines::check(self.ledger_version)?;
        if self.ledger_version != lamina_execution_core::ledger::LEDGER_VERSION && self.bridge > 0 {
            bail!("the bridge needs the native ledger (ledger version 1); pass --bridge 0");
        }
        if self.heartbeat > std::time::Duration::from_secs(60) {
            bail!("--heartbeat must be at most 60s");
        }
        let names: Vec<String> = self.nodes().into_iter().map(|n| n.0).collect();
        for f in &self.faulty_claims {
            if !f.starts_with("execution-") || !names.contains(f) {
                bail!("--faulty-claims {f:?} is not an execution node of this devnet (execution-0 …)");
            }
        }
        for f in &self.faulty_dispersal {
            if !f.starts_with("validator-") || !names.contains(f) {
                bail!("--faulty-dispersal {f:?} is not a validator of this devnet (validator-0 …)");
            }
        }
        Ok(())
    }

    /// Number of nodes.
    pub fn total(&self) -> usize {
        self.validators + self.da_nodes + self.execution + self.settlement + self.bridge
    }

    /// `(name, module, chain)` of every node, in start order (servers before clients).
    pub fn nodes(&self) -> Vec<(String, Module, Option<ChainId>)> {
        let mut out = Vec::with_capacity(self.total());
        for m in Module::ALL {
            let (count, prefix) = match m {
                Module::Da => (self.da_nodes, "da"),
                Module::Consensus => (self.validators, "validator"),
                Module::Execution => (self.execution, "execution"),
                Module::Settlement => (self.settlement, "settlement"),
                Module::Bridge => (self.bridge, "bridge"),
            };
            for i in 0..count {
                let chain = (m == Module::Execution).then(|| ChainId(1 + (i % self.chains) as u64));
                out.push((format!("{prefix}-{i}"), m, chain));
            }
        }
        out
    }
}

/// Free loopback ports: `n` UDP ports (QUIC) and `n` TCP ports (admin), all distinct
/// within their protocol ([`lamina_net::ports`]).
pub fn free_ports(n: usize) -> anyhow::Result<(Vec<SocketAddr>, Vec<SocketAddr>)> {
    let udp = lamina_net::ports::free_udp(n).context("no free UDP port")?;
    let tcp = lamina_net::ports::free_tcp(n).context("no free TCP port")?;
    Ok((udp, tcp))
}

/// Prepares `dir` for a new devnet: creates it, or clears the files of a previous,
/// stopped devnet. Refuses a directory with a running devnet or unrelated content.
pub fn prepare_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let state_path = dir.join(super::state::STATE_FILE);
    if state_path.exists() {
        let old = DevnetState::load(dir)?;
        let live = old.live_nodes();
        if !live.is_empty() || old.supervisor.is_some_and(|p| p != std::process::id() && super::state::is_alive(p)) {
            bail!(
                "a devnet is already running in {} ({} live processes); stop it with `lamina devnet down --dir {}`",
                dir.display(),
                live.len(),
                dir.display()
            );
        }
        for sub in ["nodes", "logs"] {
            let p = dir.join(sub);
            if p.exists() {
                std::fs::remove_dir_all(&p).with_context(|| format!("cannot remove {}", p.display()))?;
            }
        }
        for f in ["genesis.toml", CLIENT_KEY_FILE, super::state::STATE_FILE] {
            let p = dir.join(f);
            if p.exists() {
                std::fs::remove_file(&p).with_context(|| format!("cannot remove {}", p.display()))?;
            }
        }
    } else if std::fs::read_dir(dir)?.next().is_some() {
        bail!("{} is not empty and holds no devnet; choose an empty or new directory", dir.display());
    }
    Ok(())
}

/// Creates keys, the genesis and every home under `dir` (prepared by [`prepare_dir`]).
/// Returns the state (phase `Starting`, no pids yet).
pub fn create(dir: &Path, spec: &Spec) -> anyhow::Result<DevnetState> {
    spec.validate()?;
    let nodes = spec.nodes();
    let (quic, admin) = free_ports(nodes.len())?;
    let nodes_dir = dir.join("nodes");
    let logs_dir = dir.join("logs");
    std::fs::create_dir_all(&logs_dir).with_context(|| format!("cannot create {}", logs_dir.display()))?;

    let mut genesis = Genesis {
        // Relayers need chains to relay between and settlement's anchors.
        bridge: lamina_interfaces::BridgeSpec {
            enabled: spec.bridge > 0 && spec.chains >= 2 && spec.settlement > 0,
            ..Default::default()
        },
        network: spec.network.clone(),
        chains: (1..=spec.chains as u64)
            .map(|id| ChainSpec {
                id: ChainId(id),
                name: format!("chain-{id}"),
                balances: vec![],
                funded_test_accounts: spec.funded_accounts,
                funded_test_accounts_seed: (id - 1) * 1_000_000,
                funded_test_amount: 1_000_000_000_000,
                fee: 0,
                fee_collector: Default::default(),
                ledger_version: spec.ledger_version,
            })
            .collect(),
        validators: vec![],
        da_nodes: vec![],
        execution_nodes: vec![],
        settlement_nodes: vec![],
        bridge_nodes: vec![],
        da_threshold: None,
        clients: Vec::new(),
        settlement: lamina_interfaces::SettlementSpec {
            challenge_window: spec.settlement_window,
            anchor_window: spec.anchor_window,
            ..Default::default()
        },
        governance: lamina_interfaces::GovernanceSpec {
            epoch_length: spec.epoch_length,
            voting_period: spec.voting_period,
            committee_changes: spec.committee_changes,
            ..Default::default()
        },
        tx_binds_network: true,
        da_any_width: true,
    };
    let client = crate::keys::generate()?;
    let client_key = dir.join(CLIENT_KEY_FILE);
    crate::keys::write(&client_key, &client)?;
    genesis.clients.push(ClientEntry { name: "devnet-client".into(), key: client.public() });
    // The devnet's client key may also bond challenges (`lamina settlement challenge`).
    genesis
        .settlement
        .balances
        .push(lamina_interfaces::GenesisBalance { account: client.public(), amount: DEVNET_BOND_FUNDS });
    let mut keys = Vec::with_capacity(nodes.len());
    let mut records = Vec::with_capacity(nodes.len());
    for (i, (name, module, chain)) in nodes.iter().enumerate() {
        let key = crate::keys::generate()?;
        crate::genesis::role_mut(&mut genesis, *module).push(NodeEntry {
            name: name.clone(),
            key: key.public(),
            addr: quic[i],
            http: None,
            admin: Some(admin[i]),
            chain: *chain,
        });
        records.push(NodeRecord {
            name: name.clone(),
            module: *module,
            home: nodes_dir.join(name),
            quic: quic[i],
            admin: admin[i],
            log: logs_dir.join(format!("{name}.log")),
            pid: None,
            exit: None,
        });
        if matches!(module, Module::Execution | Module::Settlement) {
            genesis
                .settlement
                .balances
                .push(lamina_interfaces::GenesisBalance { account: key.public(), amount: DEVNET_BOND_FUNDS });
        }
        keys.push(key);
    }
    crate::genesis::check(&genesis).context("generated devnet genesis is invalid")?;
    let genesis_path = dir.join("genesis.toml");
    crate::genesis::write(&genesis_path, &genesis)?;

    for (rec, key) in records.iter().zip(&keys) {
        let home = Home::new(&rec.home);
        home.create_layout()?;
        crate::keys::write(&home.key_file(), key)?;
        let mut config = NodeConfig::new(rec.module);
        config.log.level = spec.log_level.clone();
        config.access.open = !spec.closed_access;
        // Every node of a devnet talks over loopback (MTU 64 KiB): path MTU discovery may
        // go up to the largest datagram still sent with segmentation offload, which
        // halves QUIC's CPU per byte against the Ethernet-path default (BENCHMARKS.md,
        // "larger datagrams on loopback").
        config.net.limits.max_udp_payload = lamina_net::GSO_MAX_UDP_PAYLOAD;
        if let Some(s) = config.settlement.as_mut() {
            // Every devnet settlement node verifies: it is what makes claims final safely.
            s.0.verifier = true;
        }
        if let Some(e) = config.execution.as_mut() {
            e.0.faulty_claims = spec.faulty_claims.contains(&rec.name);
        }
        if let Some(c) = config.consensus.as_mut() {
            c.0.empty_block_delay_ms = spec.heartbeat.as_millis() as u64;
            // The validators share this machine's cores: each checks intake signatures
            // on its share of them, so that verifier threads do not outnumber the cores
            // (BENCHMARKS.md, "one intake signature thread per validator").
            c.0.mempool.signature_threads = intake_signature_threads(spec.validators);
            c.0.faulty_dispersal = spec.faulty_dispersal.contains(&rec.name);
        }
        crate::init::init(&crate::init::InitOptions {
            module: rec.module,
            home,
            genesis: Some(genesis_path.clone()),
            import_key: None,
            force: false,
            config,
        })
        .with_context(|| format!("cannot initialize {}", rec.name))?;
    }
    Ok(DevnetState {
        dir: dir.to_path_buf(),
        supervisor: Some(std::process::id()),
        kept: false,
        phase: Phase::Starting,
        genesis: genesis_path,
        client_key,
        nodes: records,
    })
}

/// Deletes the node data (`nodes/*/data`) of a stopped network (a devnet or a bench
/// network), keeping its configs and logs. Best effort: what cannot be removed is left
/// and reported.
pub fn drop_node_data(net: &Path) {
    let Ok(nodes) = std::fs::read_dir(net.join("nodes")) else { return };
    for node in nodes.flatten() {
        let data = node.path().join("data");
        if data.exists()
            && let Err(e) = std::fs::remove_dir_all(&data)
        {
            eprintln!("cannot remove {}: {e}", data.display());
        }
    }
}

/// A new directory under the system temp dir, kept after exit (it holds the logs).
pub fn temp_dir() -> anyhow::Result<PathBuf> {
    Ok(tempfile::Builder::new().prefix("lamina-devnet-").tempdir().context("cannot create a temp directory")?.keep())
}

/// Intake signature threads for each of `validators` validators on this machine: its
/// cores shared among them, at least 1, at most the service's 4.
fn intake_signature_threads(validators: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores / validators.max(1)).clamp(1, 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Spec {
        Spec {
            network: "t".into(),
            validators: 4,
            da_nodes: 3,
            execution: 3,
            settlement: 1,
            bridge: 1,
            chains: 2,
            funded_accounts: 10,
            log_level: "info".into(),
            settlement_window: 8,
            anchor_window: 32,
            faulty_claims: vec!["execution-2".into()],
            faulty_dispersal: vec![],
            heartbeat: std::time::Duration::from_secs(1),
            ledger_version: 1,
            epoch_length: 20,
            voting_period: 100,
            closed_access: false,
            committee_changes: false,
        }
    }

    #[test]
    fn validators_share_the_cores_for_intake_signatures() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(intake_signature_threads(1), cores.min(4));
        assert_eq!(intake_signature_threads(cores * 2), 1, "at least one each");
        assert_eq!(intake_signature_threads(0), cores.min(4));
    }

    #[test]
    fn node_list_orders_servers_first_and_spreads_chains() {
        let n = spec().nodes();
        assert_eq!(n.len(), 12);
        assert_eq!(n[0].0, "da-0");
        assert_eq!(n[3].0, "validator-0");
        let exec: Vec<_> = n.iter().filter(|x| x.1 == Module::Execution).map(|x| x.2.unwrap().0).collect();
        assert_eq!(exec, [1, 2, 1]);
        assert!(Spec { validators: 0, ..spec() }.validate().is_err());
        assert!(Spec { chains: 0, ..spec() }.validate().is_err());
    }

    #[test]
    fn creates_a_valid_network_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        prepare_dir(dir.path()).unwrap();
        let st = create(dir.path(), &spec()).unwrap();
        let g = crate::genesis::load(&st.genesis).unwrap();
        assert_eq!(g.validators.len(), 4);
        assert_eq!(g.chains.len(), 2);
        for rec in &st.nodes {
            let home = Home::new(&rec.home);
            let key = crate::keys::read(&home.key_file()).unwrap();
            let entry = rec.module.entries(&g).iter().find(|e| e.key == key.public()).unwrap();
            assert_eq!(entry.name, rec.name);
            assert_eq!(entry.admin, Some(rec.admin));
            home.check_data_version().unwrap();
            assert_eq!(crate::genesis::load(&home.genesis_file()).unwrap(), g);
        }
        st.save().unwrap();
        // A stopped devnet's directory can be reused; unrelated content is refused.
        prepare_dir(dir.path()).unwrap();
        assert!(!dir.path().join("nodes").exists());
        std::fs::write(dir.path().join("unrelated"), "x").unwrap();
        assert!(prepare_dir(dir.path()).is_err());
    }
}
