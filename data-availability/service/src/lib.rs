//! The DA service: disperser, DA storage node, retrieval and light sampler over QUIC.
