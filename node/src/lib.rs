//! The lamina binary: CLI, config, keys, genesis, module start, devnet launcher and benchmark harness entry.
//!
//! `main.rs` only parses the command line and calls [`cli::run`]; everything else lives
//! here so it can be unit-tested:
//!
//! * [`cli`]: the clap command tree and its dispatch (nothing imports it but `main`);
//! * [`module`], [`annotated`], [`args`]: leaves every other file may use (the module
//!   enum and its config shape, the annotated-TOML writer, shared flags and parsers);
//! * [`module_cmd`]: `lamina <module> init | start | config`;
//! * [`home`], [`config`], [`keys`], [`genesis`], [`init`]: the operator's files;
//! * [`machines`]: the chain machines this binary executes (the native ledger, and a
//!   chain builder's registered ones);
//! * [`service`]: `lamina <module> start` (config layering, telemetry, admin server,
//!   signals, graceful shutdown) around [`modules`], one file per module;
//! * [`peers`]: the shared "connect to the peers the role needs and report them" service;
//! * [`devnet`]: `lamina devnet up | down | status`, a multi-process local network;
//! * `load` (feature `bench`, on by default): `lamina bench` and the built-in load of
//!   `devnet up`, on the benchmark harness (`lamina-benches`), which a build without the
//!   feature does not link;
//! * [`client`]: `lamina tx | query | blob | da sample`, client commands against a running network;
//! * [`settlement_client`]: `lamina settlement status | claims | anchor | account | challenge`;
//! * [`gov`]: `lamina gov propose | vote | status`, on-chain governance replayed from the log;
//! * [`governed`]: following governance (for `gov` and for module nodes, which apply each
//!   epoch's client keys without a restart);
//! * [`bridge_net`], [`bridge_client`]: the bridge's network seam and `lamina bridge transfer | status | audit`.
//!
//! `anyhow` is used throughout: this is an app, not a library other crates build on.

pub mod annotated;
pub mod args;
pub mod bridge_client;
pub mod bridge_load;
pub mod bridge_net;
pub mod build_info;
pub mod cli;
pub mod client;
pub mod config;
pub mod context;
pub mod devnet;
pub mod execution_cmd;
pub mod genesis;
pub mod gov;
pub mod governed;
pub mod home;
pub mod init;
pub mod keys;
#[cfg(feature = "bench")]
pub mod load;
pub mod machines;
pub mod module;
pub mod module_cmd;
pub mod modules;
pub mod peers;
pub mod service;
pub mod settlement_client;
pub mod signals;
pub mod table;
