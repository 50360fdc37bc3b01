//! Lamina's data-availability core: 2D Reed-Solomon squares, namespaced commitments, proofs, sampling, repair, fraud proofs.
