//! The consensus service: mempool, batcher, WAL, catch-up and the ordered-log server, driving consensus-core over QUIC.
