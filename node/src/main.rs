//! The `lamina` binary: parses the command line, runs the command, exits with its status
//! ([`lamina_node::cli::main`]).

/// jemalloc instead of glibc's malloc: glibc keeps memory freed on one of its per-thread
/// arenas for that arena, so a node's resident memory crept up for its first 30-50
/// minutes under steady load (+30% for an execution node in the 60-minute soak, +5% on
/// jemalloc); jemalloc returns freed pages to the kernel after a decay (DESIGN.md,
/// "Long-lived nodes"; BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, which it reads when it starts (`malloc_conf`, under the prefix
/// tikv-jemalloc-sys gives its symbols): a background thread purges freed pages on their
/// decay schedule, so an idle node gives memory back without allocating again.
#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: MallocConf = MallocConf(c"background_thread:true".as_ptr());

/// A C string pointer that may sit in a `static` (jemalloc only reads it).
#[repr(transparent)]
struct MallocConf(*const std::ffi::c_char);

// SAFETY: the pointer is to a `'static` C string literal and is never written through.
unsafe impl Sync for MallocConf {}

fn main() -> std::process::ExitCode {
    lamina_node::cli::main()
}
