//! The `lamina` binary: parses the command line, runs the command, exits with its status
//! ([`lamina_node::cli::main`]).

/// jemalloc instead of glibc's malloc: glibc keeps memory freed on one of its per-thread
/// arenas for that arena, so a node's resident memory crept up for its first 30-50
/// minutes under steady load (+30% for an execution node in the 60-minute soak, +5% on
/// jemalloc); jemalloc returns freed pages to the kernel after a decay (DESIGN.md,
/// "Long-lived nodes"; BENCHMARKS.md).
/// Built with the crate's `background_threads` feature (`node/Cargo.toml`).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    lamina_node::cli::main()
}
