//! Command-line pieces shared by several commands: the `lamina <module> init | start |
//! config` arguments, the config-override flags, and value parsers (durations, keys). A
//! leaf below the command files: [`crate::cli`] and every command file may use it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use lamina_primitives::PublicKey;
use lamina_telemetry::LogFormat;

use crate::config::Override;

/// `lamina <module> ...`
#[derive(Debug, Subcommand)]
pub enum ModuleCmd {
    /// Create a home: annotated config, key (0600), genesis, data/VERSION.
    Init(InitArgs),
    /// Run the module's service until SIGTERM/SIGINT.
    Start(StartArgs),
    /// Print the effective configuration (file < environment < flags), annotated.
    Config(StartArgs),
    /// Migrate the home's data to this binary's format version (with the node stopped);
    /// `start` refuses data of an older version and names this command.
    Migrate(HomeArg),
}

/// Home selection.
#[derive(Debug, Clone, Args)]
pub struct HomeArg {
    /// Home directory (default: $LAMINA_HOME, else `$XDG_DATA_HOME/lamina/<module>`).
    #[arg(long)]
    pub home: Option<PathBuf>,
}

/// Flags that override configuration fields (beating the file and the environment).
#[derive(Debug, Clone, Args, Default)]
pub struct ConfigFlags {
    /// `[node] admin_addr`: admin HTTP address.
    #[arg(long)]
    pub admin_addr: Option<SocketAddr>,
    /// `[net] listen_addr`: UDP address to bind.
    #[arg(long)]
    pub listen_addr: Option<SocketAddr>,
    /// `[log] format`: text | json.
    #[arg(long)]
    pub log_format: Option<LogFormat>,
    /// `[log] level`: filter in RUST_LOG syntax.
    #[arg(long)]
    pub log_level: Option<String>,
    /// `[log] file`: also append logs to this file.
    #[arg(long)]
    pub log_file: Option<PathBuf>,
    /// Any field: `<section>.<field>=<value>` (value parsed as TOML, else a string).
    #[arg(long = "set", value_name = "SECTION.FIELD=VALUE")]
    pub set: Vec<String>,
}

impl ConfigFlags {
    /// The flags as overrides, in the order they apply.
    pub fn overrides(&self) -> anyhow::Result<Vec<Override>> {
        let mut out = Vec::new();
        if let Some(a) = self.admin_addr {
            out.push(Override::string("node.admin_addr", a.to_string(), "--admin-addr"));
        }
        if let Some(a) = self.listen_addr {
            out.push(Override::string("net.listen_addr", a.to_string(), "--listen-addr"));
        }
        if let Some(f) = self.log_format {
            out.push(Override::string("log.format", f.to_string(), "--log-format"));
        }
        if let Some(l) = &self.log_level {
            out.push(Override::string("log.level", l.clone(), "--log-level"));
        }
        if let Some(f) = &self.log_file {
            let f = f.to_str().context("--log-file is not UTF-8")?;
            out.push(Override::string("log.file", f, "--log-file"));
        }
        for s in &self.set {
            let (path, value) =
                s.split_once('=').with_context(|| format!("--set {s:?}: expected <section>.<field>=<value>"))?;
            if path.trim().is_empty() {
                bail!("--set {s:?}: empty field path");
            }
            out.push(Override::parsed(path.trim(), value, format!("--set {path}")));
        }
        Ok(out)
    }
}

/// `lamina <module> init` arguments.
#[derive(Debug, Clone, Args)]
pub struct InitArgs {
    /// Home selection.
    #[command(flatten)]
    pub home: HomeArg,
    /// Copy this genesis file into `config/genesis.toml`.
    #[arg(long)]
    pub genesis: Option<PathBuf>,
    /// Import this key file instead of generating a key.
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// Rewrite config.toml (and genesis.toml) of an initialized home; keys and data are kept.
    #[arg(long)]
    pub force: bool,
    /// Values to write into config.toml instead of the defaults.
    #[command(flatten)]
    pub config: ConfigFlags,
}

/// `lamina <module> start` / `config` arguments.
#[derive(Debug, Clone, Args)]
pub struct StartArgs {
    /// Home selection.
    #[command(flatten)]
    pub home: HomeArg,
    /// Overrides.
    #[command(flatten)]
    pub config: ConfigFlags,
}

/// Parses a 64-hex-digit public key.
pub fn parse_public_key(s: &str) -> anyhow::Result<PublicKey> {
    PublicKey::from_hex(s.trim()).with_context(|| format!("{s:?} is not a 64-hex-digit public key"))
}

/// Parses `500ms`, `5s`, `2m`, `1h`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    let s = s.trim();
    // A bare number is seconds (fractions allowed); anything else is humantime's
    // format: 500ms, 5s, 2m, 1m30s, 1h 15m, 2days.
    let d = match s.parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=1.0e9).contains(&v) => Duration::from_secs_f64(v),
        Ok(_) => bail!("duration {s:?} is out of range"),
        Err(_) => humantime::parse_duration(s)
            .map_err(|e| anyhow::anyhow!("{s:?} is not a duration ({e}; e.g. 500ms, 5s, 2m, 1m30s, 1h)"))?,
    };
    if d > Duration::from_secs(1_000_000_000) {
        bail!("duration {s:?} is out of range");
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1h 15m").unwrap(), Duration::from_secs(4500));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn flags_become_overrides_in_order() {
        let f = ConfigFlags {
            admin_addr: Some("127.0.0.1:1".parse().unwrap()),
            log_level: Some("debug".into()),
            set: vec!["net.ping_interval_ms=900".into()],
            ..Default::default()
        };
        let o = f.overrides().unwrap();
        assert_eq!(o[0].path, ["node", "admin_addr"]);
        assert_eq!(o[1].value, toml::Value::String("debug".into()));
        assert_eq!(o[2].value, toml::Value::Integer(900));
        let bad = ConfigFlags { set: vec!["novalue".into()], ..Default::default() };
        assert!(bad.overrides().is_err());
    }
}
