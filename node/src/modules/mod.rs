//! The five modules the binary runs, one file each, behind one shape.
//!
//! Each module file (`consensus.rs`, `da.rs`, `execution.rs`, `settlement.rs`,
//! `bridge.rs`) provides:
//!
//! * `Config`: the module's own settings (the `[<module>]` section of `config.toml`),
//!   implementing [`crate::module::ModuleConfig`] (defaults, `validate()`, and a JSON schema
//!   whose field doc comments are the comments of its annotated TOML);
//! * `async fn start(ctx: NodeContext, config: Config, shutdown: CancellationToken) -> anyhow::Result<()>`:
//!   runs the module's service until `shutdown` is cancelled, then stops intake, drains,
//!   flushes and returns `Ok(())`. An `Err` is a fatal local fault: the process exits
//!   non-zero.
//!
//! The binary ([`crate::service`], whose `start_module` maps a module to its file) does everything around it: home, config layering,
//! logging, metrics, the admin server, signals, and building the [`crate::context::NodeContext`]. A
//! layer engineer replaces one file with their real service
//! (`lamina_<layer>_service::run_on(endpoint, ctx, config, seams, shutdown)`), keeping the
//! shape.

pub mod bridge;
pub mod consensus;
pub mod da;
pub mod execution;
pub mod settlement;
