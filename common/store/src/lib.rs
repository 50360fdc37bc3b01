//! Lamina's durable storage: a memmap2 segmented append-only log with checksums, group commit and crash recovery.
