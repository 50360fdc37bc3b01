//! Lamina's execution core: state-machine seam, native ledger, sequential and parallel executors, authenticated state.
