//! `counter-chain`: the `lamina` binary with the counter machine
//! ([`lamina_examples::counter`]) registered as ledger version 100.
//!
//! Every `lamina` command works unchanged; chains whose genesis spec says
//! `ledger_version = 100` execute the counter machine. Try:
//!
//! ```text
//! counter-chain devnet up --keep --ledger-version 100 --chains 1 --settlement 1 --load 0
//! counter-client          # a wallet's run against that devnet
//! counter-chain devnet down
//! ```

use lamina_examples::counter::{COUNTER_LEDGER_VERSION, CounterMachine};

fn main() -> std::process::ExitCode {
    if let Err(e) = lamina_node::machines::register(COUNTER_LEDGER_VERSION, "counter", |_genesis, chain| {
        Ok(CounterMachine::new(chain))
    }) {
        eprintln!("error: {e:#}");
        return std::process::ExitCode::FAILURE;
    }
    lamina_node::cli::main()
}
