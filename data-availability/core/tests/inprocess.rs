//! The in-process `DataAvailability`: certificates verify against the committee, blobs
//! come back verified, absence is proven, submissions are deterministic.

#![allow(clippy::unwrap_used)]

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use lamina_da_core::InProcessDa;
use lamina_interfaces::{Blob, DaError, DataAvailability};
use lamina_primitives::{Batch, ChainId, Keypair, Namespace, Transaction, TxScope, codec};

/// Polls a future that never waits (the in-process implementation is synchronous).
fn now<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("in-process DA future was pending"),
    }
}

fn batch_blob(chain: u64, n: u64) -> (Batch, Blob) {
    let kp = Keypair::for_testing(chain);
    let ns = Namespace::from(ChainId(chain));
    let txs = (0..n)
        .map(|i| Transaction::new_signed(&kp, TxScope::ChainOnly, ChainId(chain), i, vec![i as u8; 100]))
        .collect();
    let batch = Batch { namespace: ns, txs };
    let blob = Blob { namespace: ns, data: codec::encode(&batch).unwrap() };
    (batch, blob)
}

#[test]
fn submit_then_fetch_each_namespace() {
    let da = InProcessDa::for_testing(4);
    let (b1, blob1) = batch_blob(1, 50);
    let (b2, blob2) = batch_blob(2, 7);
    let cert = now(da.submit(vec![blob2.clone(), blob1.clone()])).unwrap();
    cert.verify(da.committee(), da.threshold()).unwrap();
    assert_eq!(cert.commitment.namespaces, vec![blob1.namespace, blob2.namespace]);
    assert!(cert.commitment.namespaces_sorted());

    for (batch, blob) in [(b1, blob1.clone()), (b2, blob2.clone())] {
        let got = now(da.get_namespace(&cert.commitment, blob.namespace)).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(codec::decode::<Batch>(&got[0]).unwrap(), batch);
    }
    // Proven absence.
    let none = now(da.get_namespace(&cert.commitment, Namespace::from(ChainId(3)))).unwrap();
    assert!(none.is_empty());

    // Same blobs, same commitment.
    let again = now(da.submit(vec![blob2, blob1])).unwrap();
    assert_eq!(again.commitment, cert.commitment);

    // A commitment that misstates the square is refused.
    let mut lying = cert.commitment.clone();
    lying.blob_bytes += 1;
    assert!(matches!(now(da.get_namespace(&lying, Namespace::from(ChainId(1)))), Err(DaError::BadCommitment(_))));
    let mut unknown = cert.commitment;
    unknown.data_root.0[0] ^= 1;
    assert!(matches!(now(da.get_namespace(&unknown, Namespace::from(ChainId(1)))), Err(DaError::Unavailable(_))));
}

#[test]
fn bad_submissions_are_rejected() {
    let da = InProcessDa::for_testing(4);
    assert!(matches!(now(da.submit(vec![])), Err(DaError::Rejected(_))));
    assert!(matches!(
        now(da.submit(vec![Blob { namespace: Namespace::from(ChainId(1)), data: vec![] }])),
        Err(DaError::Rejected(_))
    ));
    assert!(matches!(
        now(da.submit(vec![Blob { namespace: Namespace::PADDING, data: vec![1] }])),
        Err(DaError::Rejected(_))
    ));
}
