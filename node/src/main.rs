//! The `lamina` binary: parses the command line, runs the command, exits with its status.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = lamina_node::cli::Cli::parse();
    match lamina_node::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
