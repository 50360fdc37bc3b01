//! QUIC transport for Lamina: pinned-key mutual TLS, ALPN per protocol, framed typed messages, limits, reconnects.
