//! Test support for Lamina: deterministic simulation harness, fixtures and proptest strategies (dev-dependency only).
