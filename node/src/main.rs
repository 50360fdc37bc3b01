//! The `lamina` binary: parses the command line, runs the command, exits with its status.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = lamina_node::cli::Cli::parse();
    if !cli.runs_a_service() {
        // Rust ignores SIGPIPE, so `println!` panics once a reader like `head` has
        // closed the pipe. A client command should end quietly instead, as Unix tools do.
        // SAFETY: resetting a signal disposition to its default before any thread starts.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    match lamina_node::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
