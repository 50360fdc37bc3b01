//! Bad-encoding fraud proofs: a disperser that encodes one row (or column) wrongly is
//! caught with a proof any verifier checks from the data root alone; a correct square
//! yields none, and a proof fabricated against a correct square is rejected.

#![allow(clippy::unwrap_used)]

use lamina_da_core::fraud::is_codeword;
use lamina_da_core::{
    Axis, BadEncodingProof, CodecId, CommittedSquare, Error, ExtendedSquare, OriginalSquare, Parallelism, SHARE_SIZE,
    extend, find_bad_encoding,
};
use lamina_interfaces::Blob;
use lamina_primitives::{Digest, Namespace, codec};

fn ods(codec: CodecId) -> OriginalSquare {
    let blobs = vec![
        Blob { namespace: Namespace([0, 0, 0, 0, 0, 0, 0, 1]), data: (0..40_000u32).map(|i| (i * 7) as u8).collect() },
        Blob { namespace: Namespace([0, 0, 0, 0, 0, 0, 0, 2]), data: (0..20_000u32).map(|i| (i * 3) as u8).collect() },
    ];
    OriginalSquare::from_blobs(&blobs, codec).unwrap()
}

/// A disperser whose row encoder is broken for row `bad_row`: one parity cell of that
/// row is wrong, and everything after it (column extension, all roots) is computed
/// honestly from the wrong bytes. Each column is still a codeword and every root matches
/// its bytes, so a DA node checking its columns cannot see the fault.
fn wrongly_encoded_row(codec: CodecId, bad_row: usize) -> CommittedSquare {
    let o = ods(codec);
    let k = o.k();
    let w = 2 * k;
    let good = extend(&o, codec, Parallelism::Sequential).unwrap();
    let mut cells = good.into_cells();
    // Corrupt parity cell (bad_row, k + 1) of Q2, then redo the column extension.
    let at = (bad_row * w + k + 1) * SHARE_SIZE;
    cells[at..at + SHARE_SIZE].iter_mut().for_each(|b| *b ^= 0x5C);
    for c in 0..w {
        let mut col: Vec<u8> = (0..w).flat_map(|r| cells[(r * w + c) * SHARE_SIZE..][..SHARE_SIZE].to_vec()).collect();
        let (data, parity) = col.split_at_mut(k * SHARE_SIZE);
        let data: Vec<&[u8]> = data.chunks(SHARE_SIZE).collect();
        let mut parity: Vec<&mut [u8]> = parity.chunks_mut(SHARE_SIZE).collect();
        codec.codec().encode(&data, &mut parity).unwrap();
        for r in k..w {
            cells[(r * w + c) * SHARE_SIZE..][..SHARE_SIZE].copy_from_slice(&col[r * SHARE_SIZE..][..SHARE_SIZE]);
        }
    }
    let eds = ExtendedSquare::from_cells(k, codec, cells).unwrap();
    for c in 0..w {
        assert!(is_codeword(codec, k, &eds.column(c)).unwrap(), "every column still a codeword");
    }
    assert!(!is_codeword(codec, k, eds.row(bad_row)).unwrap());
    CommittedSquare::commit(eds, o.table(), Parallelism::Rayon).unwrap()
}

#[test]
fn wrongly_encoded_row_yields_a_fraud_proof_that_verifies() {
    for codec in CodecId::ALL {
        for bad_row in [0usize, 5] {
            let sq = wrongly_encoded_row(codec, bad_row);
            let proof = find_bad_encoding(&sq).unwrap().expect("a bad row is found");
            assert_eq!(proof.axis, Axis::Row.as_u8());
            assert_eq!(proof.index as usize, bad_row);
            // Checked from the data root alone, after a trip over the wire.
            let bytes = codec::encode(&proof).unwrap();
            let decoded: BadEncodingProof = codec::decode(&bytes).unwrap();
            decoded.verify(&sq.data_root()).unwrap();
            // Only the first k cells count (the canonical rule): other cells of the same
            // bad row are refused, so the verdict never depends on which cells a
            // verifier happened to fetch.
            let k = sq.eds().k() as u32;
            let odd: Vec<u32> = (0..k).map(|i| 2 * i + 1).collect();
            let other = BadEncodingProof::create(&sq, Axis::Row, bad_row as u32, &odd).unwrap();
            assert!(matches!(other.verify(&sq.data_root()), Err(lamina_da_core::Error::Malformed { .. })));
            // Against another data root it is rejected.
            assert!(decoded.verify(&Digest([9; 32])).is_err());
        }
    }
}

#[test]
fn wrongly_encoded_column_yields_a_fraud_proof() {
    let codec = CodecId::Leopard16;
    let o = ods(codec);
    let k = o.k();
    let mut eds = extend(&o, codec, Parallelism::Sequential).unwrap();
    // Change one cell of Q4 only: column k+2 and row k+3 both stop being codewords.
    let w = 2 * k;
    let at = ((k + 3) * w + k + 2) * SHARE_SIZE;
    eds.cells_mut()[at] ^= 1;
    let sq = CommittedSquare::commit(eds, o.table(), Parallelism::Sequential).unwrap();
    let proof = find_bad_encoding(&sq).unwrap().unwrap();
    // Rows are checked first: row k+3 is reported.
    assert_eq!((proof.axis, proof.index as usize), (Axis::Row.as_u8(), k + 3));
    proof.verify(&sq.data_root()).unwrap();
    let first_k: Vec<u32> = (0..k as u32).collect();
    let col = BadEncodingProof::create(&sq, Axis::Col, (k + 2) as u32, &first_k).unwrap();
    col.verify(&sq.data_root()).unwrap();
}

#[test]
fn correct_square_yields_no_proof_and_forged_proofs_are_rejected() {
    for codec in CodecId::ALL {
        let sq = CommittedSquare::build(
            &[Blob { namespace: Namespace([1; 8]), data: vec![3; 30_000] }],
            codec,
            Parallelism::Rayon,
        )
        .unwrap();
        assert!(find_bad_encoding(&sq).unwrap().is_none());
        let k = sq.eds().k() as u32;
        let first_k: Vec<u32> = (0..k).collect();
        for axis in [Axis::Row, Axis::Col] {
            let forged = BadEncodingProof::create(&sq, axis, 1, &first_k).unwrap();
            assert!(matches!(forged.verify(&sq.data_root()), Err(Error::NotFraud { .. })));
        }
    }
}

#[test]
fn malformed_fraud_proofs_are_rejected() {
    let sq = wrongly_encoded_row(CodecId::Leopard16, 2);
    let root = sq.data_root();
    let good = find_bad_encoding(&sq).unwrap().unwrap();
    good.verify(&root).unwrap();
    // A cell whose chunk was altered no longer matches its column root.
    let mut p = good.clone();
    p.cells[0].chunk[0] ^= 1;
    assert!(matches!(p.verify(&root), Err(Error::ProofMismatch { .. })));
    // Too few cells, a repeated position, a wrong orthogonal root, a wrong axis root.
    let mut p = good.clone();
    p.cells.pop();
    assert!(matches!(p.verify(&root), Err(Error::Malformed { .. })));
    let mut p = good.clone();
    p.cells[1] = p.cells[0].clone();
    assert!(matches!(p.verify(&root), Err(Error::Malformed { .. })));
    let mut p = good.clone();
    p.orthogonal_roots[0].0[0] ^= 1;
    assert!(matches!(p.verify(&root), Err(Error::ProofMismatch { .. })));
    let mut p = good.clone();
    p.axis_root.0[0] ^= 1;
    assert!(matches!(p.verify(&root), Err(Error::ProofMismatch { .. })));
    let mut p = good;
    p.index += 1;
    assert!(p.verify(&root).is_err());
}
