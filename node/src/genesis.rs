//! Genesis files: reading, writing and editing the committee file (`genesis.toml`).
//!
//! The file is the TOML form of [`lamina_interfaces::Genesis`]. It can be built step
//! by step (`lamina genesis new`, `add-chain`, `add-node`: the ceremony operators run
//! when each node generated its own key), or generated whole for a devnet
//! ([`crate::devnet`]). Either way it is validated before any node uses it.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Context as _, bail};
use lamina_interfaces::{ChainSpec, Genesis, GenesisBalance, NodeEntry};
use lamina_primitives::{ChainId, PublicKey};

use crate::module::Module;

/// Reads and validates the genesis at `path`.
pub fn load(path: &Path) -> anyhow::Result<Genesis> {
    let g = load_unvalidated(path)?;
    check(&g).with_context(|| format!("{} is not a valid genesis", path.display()))?;
    Ok(g)
}

/// Reads the genesis at `path` without validating it (a ceremony in progress).
pub fn load_unvalidated(path: &Path) -> anyhow::Result<Genesis> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read genesis {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("{} is not a genesis file", path.display()))
}

/// [`Genesis::validate`] plus what the TOML form and the binary need: names unique and
/// non-empty, network name non-empty, amounts representable in TOML (at most
/// `i64::MAX`), node addresses distinct.
pub fn check(g: &Genesis) -> anyhow::Result<()> {
    g.validate()?;
    if g.network.trim().is_empty() {
        bail!("network name is empty");
    }
    let mut names: Vec<&str> = g.all_nodes().map(|n| n.name.as_str()).collect();
    if names.iter().any(|n| n.trim().is_empty()) {
        bail!("a node has an empty name");
    }
    names.sort_unstable();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        bail!("node name {:?} appears twice", w[0]);
    }
    let mut addrs: Vec<SocketAddr> = g.all_nodes().map(|n| n.addr).collect();
    addrs.sort_unstable();
    if let Some(w) = addrs.windows(2).find(|w| w[0] == w[1]) {
        bail!("QUIC address {} is used by two nodes", w[0]);
    }
    let mut admins: Vec<SocketAddr> = g.all_nodes().filter_map(|n| n.admin).collect();
    admins.sort_unstable();
    if let Some(w) = admins.windows(2).find(|w| w[0] == w[1]) {
        bail!("admin address {} is used by two nodes", w[0]);
    }
    let max = i64::MAX as u64;
    for c in &g.chains {
        if c.name.trim().is_empty() {
            bail!("chain {} has an empty name", c.id);
        }
        if c.funded_test_amount > max || c.balances.iter().any(|b| b.amount > max) {
            bail!("chain {}: amounts above {max} cannot be written in TOML", c.id);
        }
    }
    Ok(())
}

/// The TOML text of `g`, with a header naming its digest.
pub fn to_toml(g: &Genesis) -> anyhow::Result<String> {
    let body = toml::to_string_pretty(g).context("genesis cannot be written as TOML")?;
    Ok(format!("{}{body}", header(g)))
}

fn header(g: &Genesis) -> String {
    format!(
        "{HEADER_START} the committee file every node of network {:?} shares.\n\
         # Nodes are pinned by the keys below. Digest (of the canonical JSON form): {}\n\
         # Check it with `lamina genesis validate --file <this file>`.\n\n",
        g.network,
        g.digest()
    )
}

const HEADER_START: &str = "# Lamina genesis:";

/// Writes `g` to `path` atomically. When `path` already holds a genesis (the CLI's
/// `genesis add-node`, `add-chain`, … edit it in place), the comments an operator wrote
/// in it are kept (toml_edit): above or beside any key, above any table, and above or in
/// each node or chain entry (matched by `name`, or `id` for chains). Only the header,
/// which names the digest, is rewritten.
pub fn write(path: &Path, g: &Genesis) -> anyhow::Result<()> {
    let body = toml::to_string_pretty(g).context("genesis cannot be written as TOML")?;
    let old = std::fs::read_to_string(path).ok().and_then(|t| t.parse::<toml_edit::DocumentMut>().ok());
    let body = match old {
        Some(old) => keep_comments(&old, &body)?,
        None => body,
    };
    crate::home::write_atomic(path, format!("{}{body}", header(g)).as_bytes())
}

/// `new_text` with the comments of `old` carried over to the same keys and entries.
fn keep_comments(old: &toml_edit::DocumentMut, new_text: &str) -> anyhow::Result<String> {
    let mut new: toml_edit::DocumentMut = new_text.parse().context("genesis TOML does not parse back")?;
    carry_table(old.as_table(), new.as_table_mut());
    Ok(new.to_string())
}

/// A decor prefix without the header lines [`header`] writes (they are regenerated).
fn without_header(prefix: &str) -> String {
    let mut lines = prefix.split_inclusive('\n').peekable();
    if lines.peek().is_some_and(|l| l.starts_with(HEADER_START)) {
        // The three header lines and the blank line after them.
        return lines.skip(3).skip_while(|l| l.trim().is_empty()).collect();
    }
    prefix.to_string()
}

fn carry_decor(old: &toml_edit::Decor, new: &mut toml_edit::Decor) {
    if let Some(p) = old.prefix().and_then(|p| p.as_str()) {
        new.set_prefix(without_header(p));
    }
    if let Some(s) = old.suffix().and_then(|s| s.as_str()) {
        new.set_suffix(s.to_string());
    }
}

fn carry_table(old: &toml_edit::Table, new: &mut toml_edit::Table) {
    for (mut key, item) in new.iter_mut() {
        let Some((old_key, old_item)) = old.get_key_value(key.get()) else { continue };
        carry_decor(old_key.leaf_decor(), key.leaf_decor_mut());
        carry_item(old_item, item);
    }
}

fn carry_item(old: &toml_edit::Item, new: &mut toml_edit::Item) {
    use toml_edit::Item;
    match (old, new) {
        (Item::Table(o), Item::Table(n)) => {
            carry_decor(o.decor(), n.decor_mut());
            carry_table(o, n);
        }
        (Item::ArrayOfTables(o), Item::ArrayOfTables(n)) => {
            for t in n.iter_mut() {
                if let Some(ot) = o.iter().find(|ot| same_entry(ot, t)) {
                    carry_decor(ot.decor(), t.decor_mut());
                    carry_table(ot, t);
                }
            }
        }
        (Item::Value(o), Item::Value(n)) => {
            // Only a trailing comment (`x = 1 # why`): the spacing is the new file's.
            if let Some(s) = o.decor().suffix().and_then(|s| s.as_str())
                && s.contains('#')
            {
                n.decor_mut().set_suffix(s.to_string());
            }
        }
        _ => {}
    }
}

/// The same node or chain entry in two versions of a genesis: same `name`, else same `id`.
fn same_entry(a: &toml_edit::Table, b: &toml_edit::Table) -> bool {
    ["name", "id"].iter().find_map(|k| {
        let (x, y) = (a.get(k)?.as_value()?, b.get(k)?.as_value()?);
        Some(x.to_string().trim() == y.to_string().trim())
    }) == Some(true)
}

/// An empty genesis for `network` (no chains or nodes yet). Its transactions'
/// signatures bind the network id, and its DA squares may have any width, as every new
/// network's do.
pub fn empty(network: &str) -> Genesis {
    Genesis {
        bridge: Default::default(),
        governance: Default::default(),
        tx_binds_network: true,
        da_any_width: true,
        network: network.to_string(),
        chains: vec![],
        validators: vec![],
        da_nodes: vec![],
        execution_nodes: vec![],
        settlement_nodes: vec![],
        bridge_nodes: vec![],
        da_threshold: None,
        clients: Vec::new(),
        settlement: Default::default(),
    }
}

/// The node list of `role` in `g`, mutably.
pub fn role_mut(g: &mut Genesis, role: Module) -> &mut Vec<NodeEntry> {
    match role {
        Module::Consensus => &mut g.validators,
        Module::Da => &mut g.da_nodes,
        Module::Execution => &mut g.execution_nodes,
        Module::Settlement => &mut g.settlement_nodes,
        Module::Bridge => &mut g.bridge_nodes,
    }
}

/// Adds a node to `role`; refuses duplicate names, keys and addresses, and an execution
/// node without a known chain (or a chain on another role).
pub fn add_node(g: &mut Genesis, role: Module, entry: NodeEntry) -> anyhow::Result<()> {
    if let Some(n) = g.all_nodes().find(|n| n.name == entry.name || n.key == entry.key || n.addr == entry.addr) {
        bail!("node {:?} already uses this name, key or address", n.name);
    }
    match (role, entry.chain) {
        (Module::Execution, Some(c)) if g.chain(c).is_none() => bail!("chain {c} is not in the genesis; add it first"),
        (Module::Execution, None) => bail!("an execution node needs --chain"),
        (Module::Execution, Some(_)) | (_, None) => {}
        (_, Some(_)) => bail!("only execution nodes name a chain"),
    }
    role_mut(g, role).push(entry);
    Ok(())
}

/// Adds a chain; refuses reserved or repeated ids.
pub fn add_chain(g: &mut Genesis, chain: ChainSpec) -> anyhow::Result<()> {
    if !chain.id.is_user_chain() {
        bail!("chain id {} is reserved (ids must be in 1..{})", chain.id, ChainId::RESERVED_START);
    }
    if g.chain(chain.id).is_some() {
        bail!("chain {} is already in the genesis", chain.id);
    }
    g.chains.push(chain);
    Ok(())
}

/// Parses `KEY=AMOUNT` (hex public key, decimal amount).
pub fn parse_balance(s: &str) -> anyhow::Result<GenesisBalance> {
    let (k, a) = s.split_once('=').with_context(|| format!("{s:?}: expected <public key hex>=<amount>"))?;
    let account = PublicKey::from_hex(k.trim()).with_context(|| format!("{k:?} is not a 64-hex-digit public key"))?;
    let amount: u64 = a.trim().parse().with_context(|| format!("{a:?} is not an amount"))?;
    Ok(GenesisBalance { account, amount })
}

/// Parses a voting member `<name>=<public key hex>:<weight>`.
pub fn parse_member(s: &str) -> anyhow::Result<lamina_interfaces::MemberEntry> {
    let (name, rest) =
        s.split_once('=').with_context(|| format!("{s:?}: expected <name>=<public key hex>:<weight>"))?;
    let (k, w) = rest.split_once(':').with_context(|| format!("{s:?}: expected <name>=<public key hex>:<weight>"))?;
    let key = PublicKey::from_hex(k.trim()).with_context(|| format!("{k:?} is not a 64-hex-digit public key"))?;
    let weight: u64 = w.trim().parse().with_context(|| format!("{w:?} is not a weight"))?;
    if name.trim().is_empty() {
        bail!("{s:?}: the member needs a name");
    }
    Ok(lamina_interfaces::MemberEntry { name: name.trim().to_string(), key, weight })
}

/// A short human summary: roles, counts, chains, digest.
pub fn summary(g: &Genesis) -> String {
    let mut s = format!("network {:?}, digest {}\n", g.network, g.digest());
    s += &format!(
        "  {} validators (quorum {}), {} DA nodes (threshold {}), {} execution, {} settlement, {} bridge\n",
        g.validators.len(),
        g.validator_committee().quorum(),
        g.da_nodes.len(),
        g.da_threshold(),
        g.execution_nodes.len(),
        g.settlement_nodes.len(),
        g.bridge_nodes.len()
    );
    for c in &g.chains {
        s += &format!(
            "  chain {} {:?}: {} balances, {} funded test accounts\n",
            c.id,
            c.name,
            c.balances.len(),
            c.funded_test_accounts
        );
    }
    let members = g.governance_members();
    let gov = &g.governance;
    s += &format!(
        "  governance: {} voting members (weight {}), epochs of {} heights, quorum {}%, threshold {}%\n",
        members.len(),
        members.iter().map(|m| m.weight).sum::<u64>(),
        gov.epoch_length,
        gov.quorum_percent,
        gov.threshold_percent
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use lamina_primitives::Keypair;

    fn node(i: u64, chain: Option<u64>) -> NodeEntry {
        NodeEntry {
            name: format!("n{i}"),
            key: Keypair::for_testing(i).public(),
            addr: SocketAddr::from(([127, 0, 0, 1], 7000 + i as u16)),
            http: None,
            admin: Some(SocketAddr::from(([127, 0, 0, 1], 9000 + i as u16))),
            chain: chain.map(ChainId),
        }
    }

    fn chain(id: u64) -> ChainSpec {
        ChainSpec {
            id: ChainId(id),
            name: format!("chain-{id}"),
            balances: vec![GenesisBalance { account: Keypair::for_testing(99).public(), amount: 5 }],
            funded_test_accounts: 10,
            funded_test_accounts_seed: 1000,
            funded_test_amount: 1_000_000,
            fee: 0,
            fee_collector: Default::default(),
            ledger_version: 1,
        }
    }

    fn built() -> Genesis {
        let mut g = empty("testnet");
        add_chain(&mut g, chain(1)).unwrap();
        for i in 0..4 {
            add_node(&mut g, Module::Consensus, node(i, None)).unwrap();
        }
        for i in 4..8 {
            add_node(&mut g, Module::Da, node(i, None)).unwrap();
        }
        add_node(&mut g, Module::Execution, node(8, Some(1))).unwrap();
        add_node(&mut g, Module::Settlement, node(9, None)).unwrap();
        g
    }

    #[test]
    fn built_genesis_validates_and_round_trips_through_a_file() {
        let g = built();
        check(&g).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("genesis.toml");
        write(&path, &g).unwrap();
        let back = load(&path).unwrap();
        assert_eq!(back, g);
        assert_eq!(back.digest(), g.digest());
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(&g.digest().to_string()));
        assert!(summary(&g).contains("4 validators (quorum 3), 4 DA nodes (threshold 3)"));
    }

    #[test]
    fn editing_refuses_inconsistent_additions() {
        let mut g = built();
        assert!(add_node(&mut g, Module::Da, node(0, None)).is_err(), "duplicate key/name");
        let mut dup_addr = node(20, None);
        dup_addr.addr = g.validators[0].addr;
        assert!(add_node(&mut g, Module::Da, dup_addr).is_err());
        assert!(add_node(&mut g, Module::Execution, node(21, None)).unwrap_err().to_string().contains("--chain"));
        assert!(add_node(&mut g, Module::Execution, node(22, Some(7))).unwrap_err().to_string().contains("chain 7"));
        assert!(add_node(&mut g, Module::Consensus, node(23, Some(1))).is_err());
        assert!(add_chain(&mut g, chain(1)).is_err());
        assert!(add_chain(&mut g, chain(0)).is_err());
        assert!(add_chain(&mut g, chain(ChainId::RESERVED_START)).is_err());
        add_chain(&mut g, chain(2)).unwrap();
    }

    #[test]
    fn check_catches_what_the_file_format_and_binary_need() {
        let mut g = built();
        g.validators[1].name = g.validators[0].name.clone();
        assert!(check(&g).unwrap_err().to_string().contains("appears twice"));
        let mut g = built();
        g.da_nodes[0].admin = g.validators[0].admin;
        assert!(check(&g).unwrap_err().to_string().contains("admin address"));
        let mut g = built();
        g.chains[0].funded_test_amount = u64::MAX;
        assert!(check(&g).is_err());
        let mut g = built();
        g.validators.clear();
        assert!(check(&g).is_err());
        let mut g = built();
        g.network = " ".into();
        assert!(check(&g).is_err());
    }

    #[test]
    fn unreadable_and_garbage_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(&dir.path().join("missing.toml")).is_err());
        let p = dir.path().join("g.toml");
        std::fs::write(&p, "network = 3\n").unwrap();
        assert!(load(&p).unwrap_err().to_string().contains("not a genesis"));
        std::fs::write(&p, to_toml(&empty("x")).unwrap()).unwrap();
        assert!(format!("{:#}", load(&p).unwrap_err()).contains("no validators"));
    }

    #[test]
    fn rewriting_keeps_an_operators_comments() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("genesis.toml");
        let mut g = empty("net");
        g.validators.push(NodeEntry {
            name: "v0".into(),
            key: Keypair::for_testing(1).public(),
            addr: "127.0.0.1:9000".parse().unwrap(),
            http: None,
            admin: None,
            chain: None,
        });
        write(&p, &g).unwrap();
        // An operator annotates the file by hand.
        let text = std::fs::read_to_string(&p).unwrap();
        let text = text
            .replacen("network = ", "# Our consortium's network.\nnetwork = ", 1)
            .replacen("[[validators]]\n", "# Run by ACME (ops@acme.example).\n[[validators]]\n", 1)
            .replacen("addr = \"127.0.0.1:9000\"", "addr = \"127.0.0.1:9000\" # behind the LB", 1);
        std::fs::write(&p, &text).unwrap();
        // The CLI adds a node: the comments stay, the content is the new genesis.
        g.validators.insert(
            0,
            NodeEntry {
                name: "a-new".into(),
                key: Keypair::for_testing(2).public(),
                addr: "127.0.0.1:9001".parse().unwrap(),
                http: None,
                admin: None,
                chain: None,
            },
        );
        write(&p, &g).unwrap();
        let after = std::fs::read_to_string(&p).unwrap();
        assert!(after.contains("# Our consortium's network.\nnetwork = "), "{after}");
        assert!(after.contains("# Run by ACME (ops@acme.example).\n[[validators]]\nname = \"v0\""), "{after}");
        assert!(after.contains("addr = \"127.0.0.1:9000\" # behind the LB"), "{after}");
        assert_eq!(after.matches(HEADER_START).count(), 1, "{after}");
        assert!(after.contains(&g.digest().to_string()), "{after}");
        let back: Genesis = toml::from_str(&after).unwrap();
        assert_eq!(back, g);
    }

    #[test]
    fn balances_parse() {
        let k = Keypair::for_testing(1).public();
        assert_eq!(parse_balance(&format!("{k}=12")).unwrap(), GenesisBalance { account: k, amount: 12 });
        assert!(parse_balance("abc=1").is_err());
        assert!(parse_balance(&format!("{k}")).is_err());
        assert!(parse_balance(&format!("{k}=-1")).is_err());
    }
}
