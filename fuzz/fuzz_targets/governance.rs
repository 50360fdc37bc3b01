//! Governance: entries as they arrive in the log (decoded with validation), and the
//! state machine fed arbitrary payloads and entries from members at increasing heights:
//! it must never panic, and a rejected transaction must leave the state as it was.
#![no_main]

use lamina_fuzz::{roundtrip, select};
use lamina_governance_core::{Entry, Envelope, Event, GOVERNANCE_CHAIN, GovernanceState};
use lamina_interfaces::{Genesis, NodeEntry};
use lamina_primitives::{Height, Keypair, Transaction};
use libfuzzer_sys::fuzz_target;

fn genesis() -> Genesis {
    let node = |i: u64| NodeEntry {
        name: format!("v{i}"),
        key: Keypair::for_testing(i).public(),
        addr: std::net::SocketAddr::from(([127, 0, 0, 1], 9000 + i as u16)),
        http: None,
        admin: None,
        chain: None,
    };
    let mut g: Genesis = serde_json::from_value(serde_json::json!({
        "network": "fuzz", "chains": [], "validators": [], "da_nodes": [],
    }))
    .expect("a minimal genesis");
    g.validators = (0..4).map(node).collect();
    g.da_nodes = (10..14).map(node).collect();
    g.governance.epoch_length = 3;
    g.governance.voting_period = 4;
    g
}

fuzz_target!(|data: &[u8]| {
    let Some((which, bytes)) = select(data, 3) else { return };
    match which {
        0 => {
            roundtrip::<Entry>(bytes);
        }
        1 => {
            roundtrip::<Envelope>(bytes);
        }
        _ => {
            // Chunks of the input, each a governance transaction from a member (the first
            // byte picks it), one block per chunk: an entry's encoding is sent for this
            // network (so the machine sees it), other bytes as the raw payload.
            let genesis = genesis();
            let network = genesis.network_id();
            let scope = genesis.tx_scope();
            let mut gov = GovernanceState::new(&genesis);
            for (i, chunk) in bytes.chunks(64).enumerate() {
                let Some((&who, payload)) = chunk.split_first() else { continue };
                let key = Keypair::for_testing(u64::from(who % 5));
                let tx = match lamina_primitives::decode::<Entry>(payload) {
                    Ok(entry) => Entry::transaction(&key, scope, network, i as u64, &entry).expect("decoded entries encode"),
                    Err(_) => Transaction::new_signed(&key, scope, GOVERNANCE_CHAIN, i as u64, payload.to_vec()),
                };
                let before = gov.clone();
                let height = Height(1 + 2 * i as u64);
                let events = gov.apply_block(height, &[tx]).expect("heights increase");
                if events.iter().any(|e| matches!(e, Event::TxRejected { .. })) {
                    let mut twin = before;
                    twin.apply_block(height, &[]).expect("heights increase");
                    assert_eq!(twin.digest(), gov.digest(), "a rejected transaction changed the state");
                }
            }
        }
    }
});
