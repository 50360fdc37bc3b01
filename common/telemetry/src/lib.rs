//! Observability for Lamina apps: tracing subscriber, Prometheus exporter, admin HTTP server (/metrics, /livez, /readyz, /status).
