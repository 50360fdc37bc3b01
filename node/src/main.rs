//! The `lamina` binary: parses the command line, runs the command, exits with its status
//! ([`lamina_node::cli::main`]).

fn main() -> std::process::ExitCode {
    lamina_node::cli::main()
}
