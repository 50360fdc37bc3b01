//! Intake is `lamina/intake/1..2`: version 2 adds the `NotAdmitted` answer. A client
//! that speaks only version 1 and one that speaks 1..2 use the same validator (real
//! QUIC on 127.0.0.1); each is answered in what its version can decode, and a refused
//! transaction changes nothing.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use lamina_consensus_client::IntakeClient;
use lamina_consensus_client::protocol::{SubmitRequest, SubmitResponse, WireOutcome};
use lamina_interfaces::{SubmitError, SubmitOutcome, TxSubmit};
use lamina_net::{Empty, Endpoint, EndpointConfig, PeerSet, Protocol, ProtocolConfig, ProtocolId};
use lamina_primitives::{ChainId, Keypair, Transaction};

const WAIT: Duration = Duration::from_secs(30);

/// A client built before version 2: the same messages, version 1 only.
struct IntakeV1;
impl Protocol for IntakeV1 {
    const ID: ProtocolId = ProtocolId::new("intake", 1);
    type Request = SubmitRequest;
    type Response = SubmitResponse;
    type Message = Empty;
}

#[test]
fn a_v1_and_a_v2_intake_client_use_one_validator_each_answered_in_its_version() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let g = Arc::new(genesis(1));
        let v = start(&g, 0, dir.path(), config(), test_da(&g)).await;
        // The admission rule under test: chain 2 does not admit this sender.
        let closed = Keypair::for_testing(77).public();
        v.intake().set_admission(move |tx| {
            (tx.chain_id == ChainId(2) && tx.sender == closed).then(|| "chain 2 is closed to this key".to_string())
        });
        let refused = Transaction::new_signed(&Keypair::for_testing(77), g.tx_scope(), ChainId(2), 0, vec![1]);
        let admitted =
            |n: u64| Transaction::new_signed(&Keypair::for_testing(78), g.tx_scope(), ChainId(1), n, vec![2]);
        let validator = g.validators[0].key;

        // Version 1..2 (today's client): the typed refusal.
        let ep2 = Endpoint::bind(&client_key(), EndpointConfig::new("127.0.0.1:0".parse().unwrap())).unwrap();
        let v2 = IntakeClient::register(&ep2, &g).unwrap();
        v2.wait_for_validators(1, WAIT).await.unwrap();
        let mut answer = v2.submit(refused.clone()).await;
        for _ in 0..100 {
            // Busy until the validator has ordered its first height.
            if !matches!(answer, Err(SubmitError::Busy(_))) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            answer = v2.submit(refused.clone()).await;
        }
        match answer {
            Err(SubmitError::NotAdmitted(why)) => assert!(why.contains("closed to this key"), "{why}"),
            other => panic!("expected NotAdmitted, got {other:?}"),
        }
        assert!(matches!(v2.submit(admitted(0)).await, Ok(SubmitOutcome::Accepted(_))));

        // Version 1 only (an older client): the same validator negotiates version 1 and
        // answers the refusal as Malformed with the reason, which that client decodes.
        let ep1 = Endpoint::bind(&client_key(), EndpointConfig::new("127.0.0.1:0".parse().unwrap())).unwrap();
        let peers = PeerSet::dial_entries(&g.validators);
        let v1 = ep1.register_client::<IntakeV1>(peers, ProtocolConfig::for_protocol::<IntakeV1>()).unwrap();
        v1.wait_connected(&validator, WAIT).await.unwrap();
        assert_eq!(v1.version(&validator), Some(1));
        assert_eq!(v2.version(&validator), Some(2));
        let out = v1.request(&validator, &SubmitRequest { txs: vec![refused.clone(), admitted(1)] }).await.unwrap();
        match &out.results[..] {
            [WireOutcome::Malformed(why), WireOutcome::Accepted(id)] => {
                assert!(why.starts_with("not admitted: ") && why.contains("closed to this key"), "{why}");
                assert_eq!(*id, admitted(1).id().0.0);
            }
            other => panic!("unexpected answer to a version-1 client: {other:?}"),
        }
        // The refused transaction was never taken.
        let again = v2.submit(refused).await;
        assert!(matches!(again, Err(SubmitError::NotAdmitted(_))), "{again:?}");

        ep1.shutdown().await;
        ep2.shutdown().await;
        v.stop().await.unwrap();
    });
}
