//! The five modules (roles) the binary runs, and the shape of a module's own config
//! section. A leaf of the binary's import graph: every other file may use it.

use std::fmt;
use std::str::FromStr;

use lamina_interfaces::{Genesis, NodeEntry};

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

/// What every module's `Config` provides. Its section of `config.toml` is written from
/// its schema ([`crate::annotated::AnnotatedToml::fields_of`]): every field's doc comment
/// is the comment above it, and every optional field has a `#[schemars(example = ...)]`.
pub trait ModuleConfig:
    serde::Serialize + serde::de::DeserializeOwned + schemars::JsonSchema + Default + Clone + PartialEq + fmt::Debug
{
    /// Checks values that types cannot (ranges, consistency).
    fn validate(&self) -> anyhow::Result<()>;
}
