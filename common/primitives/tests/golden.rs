//! Golden vectors: freeze the encoding and the hash of every wire type. A change to any
//! of these strings is a wire-format or consensus change and must be deliberate: bump
//! the affected domain or type version and update the vector in the same commit.

#![allow(clippy::unwrap_used)]

use lamina_primitives::merkle::MerkleTree;
use lamina_primitives::{
    AvailabilityCertificate, Batch, Block, BlockHeader, ChainId, Committee, DataCommitment, Digest, FinalizedBlock,
    Height, InclusionProof, Keypair, Namespace, QuorumCertificate, Transaction, TxId, TxScope, View, Wire, decode,
    domains, encode,
};

struct Fixtures {
    tx: Transaction,
    batch: Batch,
    committee: Committee,
    qc: QuorumCertificate,
    commitment: DataCommitment,
    avail: AvailabilityCertificate,
    header: BlockHeader,
    block: Block,
    finalized: FinalizedBlock,
    proof: InclusionProof,
}

fn fixtures() -> Fixtures {
    let keys: Vec<Keypair> = (0..4).map(Keypair::for_testing).collect();
    let tx = Transaction::new_signed(&keys[0], TxScope::ChainOnly, ChainId(7), 42, b"transfer 10 to bob".to_vec());
    let tx2 = Transaction::new_signed(&keys[1], TxScope::ChainOnly, ChainId(7), 0, vec![]);
    let batch = Batch { namespace: Namespace::from(ChainId(7)), txs: vec![tx.clone(), tx2] };
    let committee = Committee::new(keys.iter().map(|k| k.public()).collect()).unwrap();
    let commitment = DataCommitment {
        data_root: domains::BATCH.hash(b"square"),
        square_width: 32,
        codec: 1,
        namespaces: vec![Namespace::from(ChainId(7)), Namespace::SETTLEMENT],
        blob_bytes: 1234,
    };
    let att = commitment.attestation_digest();
    let votes: Vec<_> = [0usize, 1, 3].iter().map(|&i| (i, keys[i].sign(&att))).collect();
    let avail = AvailabilityCertificate {
        commitment: commitment.clone(),
        signatures: QuorumCertificate::from_votes(att, 4, &votes),
    };
    let header = BlockHeader {
        height: Height(5),
        view: View(9),
        parent: domains::BLOCK_HEADER.hash(b"parent"),
        proposer: keys[2].public(),
        payload: Block::payload_digest(std::slice::from_ref(&avail)),
        timestamp_ms: 1_700_000_000_000,
    };
    let hd = header.digest();
    let qc_votes: Vec<_> = [1usize, 2, 3].iter().map(|&i| (i, keys[i].sign(&hd))).collect();
    let qc = QuorumCertificate::from_votes(hd, 4, &qc_votes);
    let block = Block { header: header.clone(), batches: vec![avail.clone()] };
    let finalized = FinalizedBlock { block: block.clone(), certificate: qc.clone() };
    let tree = MerkleTree::from_data(&[b"a".as_slice(), b"b", b"c", b"d", b"e"]);
    let proof = tree.proof(4).unwrap();
    Fixtures { tx, batch, committee, qc, commitment, avail, header, block, finalized, proof }
}

fn fingerprint<T: Wire + PartialEq + std::fmt::Debug>(v: &T) -> String {
    let bytes = encode(v).unwrap();
    let back: T = decode(&bytes).unwrap();
    assert_eq!(&back, v, "{} round trip", T::NAME);
    format!("{} {} {}", T::NAME, bytes.len(), &blake3::hash(&bytes).to_hex()[..32])
}

fn actual() -> Vec<String> {
    let f = fixtures();
    vec![
        fingerprint(&f.tx),
        fingerprint(&f.batch),
        fingerprint(&f.committee),
        fingerprint(&f.qc),
        fingerprint(&f.commitment),
        fingerprint(&f.avail),
        fingerprint(&f.header),
        fingerprint(&f.block),
        fingerprint(&f.finalized),
        fingerprint(&f.proof),
        fingerprint(&Digest([3; 32])),
        fingerprint(&TxId(Digest([4; 32]))),
        fingerprint(&Height(77)),
        format!("tx_id {}", f.tx.id()),
        format!("tx_sig {}", hex::encode(f.tx.signature.0)),
        format!("tx_network_message {}", TxScope::Network(Digest([9; 32])).message(&f.tx.id())),
        format!("attestation {}", f.commitment.attestation_digest()),
        format!("header {}", f.header.digest()),
        format!("payload {}", f.header.payload),
        format!("merkle_root {}", MerkleTree::from_data(&[b"a".as_slice(), b"b", b"c", b"d", b"e"]).root()),
        format!("empty_root {}", lamina_primitives::merkle::empty_root()),
        format!("test_key_0 {}", Keypair::for_testing(0).public()),
    ]
}

const GOLDEN: &[&str] = &[
    // GOLDEN-BEGIN
    "Transaction 138 70b2152c040f2b3524774ec39bbd0067",
    "Batch 274 516318f997d048eb3348102ec1dc0211",
    "Committee 136 3f2d37017b607abe6eb6d730dae268fa",
    "QuorumCertificate 241 4a9a558528d7c26348fcacfed3365ff1",
    "DataCommitment 69 6219fb44297e87c1f7450e71607c998a",
    "AvailabilityCertificate 310 5187c0f16de5348208a524a71ea86f17",
    "BlockHeader 120 6dbdf197717e9cc08f517a4992405b93",
    "Block 438 8a85b789c364a0021275a4d3a3d02560",
    "FinalizedBlock 679 36edb58d1da196ce86bfe2e691fcbf72",
    "InclusionProof 56 372810764dea71c6f337462cea892533",
    "Digest 32 1fb5fbf7762cd146e8d15a1c322c338f",
    "TxId 32 b1cd635b0dcadf09c456342a3f2504bf",
    "Height 8 10d98f7354eadd6ab1e55cfe668c8c11",
    "tx_id 7e58b44a182dd0b47693d762c2a5f8f395c77ec7bda7dce91c35bd797955fd32",
    "tx_sig 95636b46e413aed192e10a41634ad8736b041ca9bef53a05b8d814e2b48a3c44dfced7a759968b72cfabdddc182fc9229f328d19e073edeaf33a9e92062b3005",
    "tx_network_message dfb871705b50e9b18f2952c8f6b7e1ed11f52e9b85c139b95089a0e96c738e3a",
    "attestation 58d2ce7cae49db15b1bcdd6a99ccdf652e2619f83da502301c6d903ad893347d",
    "header 798011c141cab2d1ce45b2fc53b4235b7b40d4da5b8f1daccfb65c840fb98bc9",
    "payload fda14a7504897a2ee29321b9e4ec84528ae4d9f04246eea6cdac6779fc32e77c",
    "merkle_root 39f127b7a61c81f43287df23dfa3dc6b6e1461736f1962b98da590c5da60f286",
    "empty_root 0813f3c21a192754996d2f60de61ca9f184afa5d58b1fb43b168713f7f92183f",
    "test_key_0 b33a8129e211d532451d41e88a56f88155174ebcd0f2f4391fb43137c6b5e6f5",
    // GOLDEN-END
];

#[test]
fn golden_vectors_are_frozen() {
    let got = actual();
    if std::env::var_os("LAMINA_PRINT_GOLDEN").is_some() {
        for line in &got {
            println!("    \"{line}\",");
        }
    }
    assert_eq!(got, GOLDEN, "golden vectors changed: a wire-format or hash change");
}
