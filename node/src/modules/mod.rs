//! The five modules the binary runs, one file each, behind one shape.
//!
//! Each module file (`consensus.rs`, `da.rs`, `execution.rs`, `settlement.rs`,
//! `bridge.rs`) provides:
//!
//! * `Config`: the module's own settings (the `[<module>]` section of `config.toml`),
//!   implementing [`ModuleConfig`] (defaults, `validate()`, annotated TOML);
//! * `async fn start(ctx: NodeContext, config: Config, shutdown: CancellationToken) -> anyhow::Result<()>`:
//!   runs the module's service until `shutdown` is cancelled, then stops intake, drains,
//!   flushes and returns `Ok(())`. An `Err` is a fatal local fault: the process exits
//!   non-zero.
//!
//! The binary ([`crate::service`]) does everything around it: home, config layering,
//! logging, metrics, the admin server, signals, and building the [`NodeContext`]. A
//! layer engineer replaces one file with their real service
//! (`lamina_<layer>_service::run_on(endpoint, ctx, config, seams, shutdown)`), keeping the
//! shape.

use std::fmt;
use std::str::FromStr;

use lamina_interfaces::{Genesis, NodeEntry};
use tokio_util::sync::CancellationToken;

use crate::config::{AnnotatedToml, NodeConfig};
use crate::context::NodeContext;

pub mod bridge;
pub mod consensus;
pub mod da;
pub mod execution;
pub mod settlement;

/// A module (role) of the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Module {
    /// Consensus validator (BFT ordering, mempool).
    Consensus,
    /// Data-availability storage node.
    Da,
    /// Execution service for one chain.
    Execution,
    /// Settlement service.
    Settlement,
    /// Bridge relayer.
    Bridge,
}

impl Module {
    /// Every module, in start order for a devnet (servers before their clients).
    pub const ALL: [Module; 5] = [Module::Da, Module::Consensus, Module::Execution, Module::Settlement, Module::Bridge];

    /// The module's name on the command line and in files.
    pub fn as_str(self) -> &'static str {
        match self {
            Module::Consensus => "consensus",
            Module::Da => "da",
            Module::Execution => "execution",
            Module::Settlement => "settlement",
            Module::Bridge => "bridge",
        }
    }

    /// What genesis calls nodes of this role (`"validators"`, `"DA nodes"`, …).
    pub fn role_name(self) -> &'static str {
        match self {
            Module::Consensus => "validators",
            Module::Da => "DA nodes",
            Module::Execution => "execution nodes",
            Module::Settlement => "settlement nodes",
            Module::Bridge => "bridge nodes",
        }
    }

    /// The nodes of this role in `genesis`.
    pub fn entries(self, genesis: &Genesis) -> &[NodeEntry] {
        match self {
            Module::Consensus => &genesis.validators,
            Module::Da => &genesis.da_nodes,
            Module::Execution => &genesis.execution_nodes,
            Module::Settlement => &genesis.settlement_nodes,
            Module::Bridge => &genesis.bridge_nodes,
        }
    }

    /// Default admin port when neither config nor genesis names one (127.0.0.1).
    pub fn default_admin_port(self) -> u16 {
        match self {
            Module::Consensus => 9100,
            Module::Da => 9101,
            Module::Execution => 9102,
            Module::Settlement => 9103,
            Module::Bridge => 9104,
        }
    }
}

impl fmt::Display for Module {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Module {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Module::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| anyhow::anyhow!("unknown module {s:?} (consensus | da | execution | settlement | bridge)"))
    }
}

/// What every module's `Config` provides.
pub trait ModuleConfig:
    serde::Serialize + serde::de::DeserializeOwned + Default + Clone + PartialEq + fmt::Debug
{
    /// Checks values that types cannot (ranges, consistency).
    fn validate(&self) -> anyhow::Result<()>;

    /// Writes the fields of the module's section, each with a comment (the section
    /// header is written by the caller).
    fn annotate(&self, doc: &mut AnnotatedToml);
}

/// Runs `config.module`'s service: the one place that maps a module to its file.
pub async fn start(ctx: NodeContext, config: NodeConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    match ctx.module {
        Module::Consensus => consensus::start(ctx, config.consensus.unwrap_or_default(), shutdown).await,
        Module::Da => da::start(ctx, config.da.unwrap_or_default(), shutdown).await,
        Module::Execution => execution::start(ctx, config.execution.unwrap_or_default(), shutdown).await,
        Module::Settlement => settlement::start(ctx, config.settlement.unwrap_or_default(), shutdown).await,
        Module::Bridge => bridge::start(ctx, config.bridge.unwrap_or_default(), shutdown).await,
    }
}
