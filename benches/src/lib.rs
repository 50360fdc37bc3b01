//! Lamina benchmarks: criterion micro-benchmarks and the macro harness (load generator, sweeps, results, plots).
