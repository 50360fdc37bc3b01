//! Lamina's bridge core (types only for now): outbox/inbox messages and proofs against finalized roots.
