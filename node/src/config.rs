//! Node configuration: typed sections with defaults, layered file < environment < flags.
//!
//! `config/config.toml` is written by `lamina <module> init` with every field annotated
//! and its default shown ([`NodeConfig::to_annotated_toml`]). At start the file is read,
//! then environment variables and then command-line flags override it, and the result
//! is deserialized (unknown keys are errors) and validated ([`NodeConfig::validate`]).
//!
//! # Environment variables
//!
//! | variable | field |
//! |---|---|
//! | `LAMINA_ADMIN_ADDR` | `[node] admin_addr` |
//! | `LAMINA_SHUTDOWN_GRACE_MS` | `[node] shutdown_grace_ms` |
//! | `LAMINA_LISTEN_ADDR` | `[net] listen_addr` |
//! | `LAMINA_LOG_FORMAT` | `[log] format` |
//! | `LAMINA_LOG_LEVEL` | `[log] level` (beats `RUST_LOG`) |
//! | `RUST_LOG` | `[log] level` |
//! | `LAMINA_LOG_FILE` | `[log] file` |
//! | `LAMINA__<SECTION>__<FIELD>` | any field, e.g. `LAMINA__NET__CONNECT_TIMEOUT_MS=2000`, `LAMINA__NET__LIMITS__IDLE_TIMEOUT_MS=20000` |
//!
//! A generic variable naming another module's section (`LAMINA__CONSENSUS__…` seen by a
//! DA node) is skipped, so one environment can serve every module's processes.
//! Values of the generic `LAMINA__…` form are parsed as TOML values when they parse
//! (`2000`, `true`, `"text"`, `[1, 2]`) and taken as strings otherwise. `LAMINA_HOME`
//! chooses the home directory (see [`crate::home`]); other `LAMINA_*` variables are not
//! configuration.
//!
//! # Flags
//!
//! `--admin-addr`, `--listen-addr`, `--log-format`, `--log-level`, `--log-file`, and
//! `--set <section>.<field>=<value>` for any field.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use std::time::Duration;

use lamina_net::{Backoff, EndpointConfig, TransportLimits};
use lamina_telemetry::LogFormat;

use crate::annotated::AnnotatedToml;
use crate::module::{Module, ModuleConfig};
use crate::modules::{bridge, consensus, da, execution, settlement};

/// Format version of `config.toml`.
pub const CONFIG_VERSION: u32 = 1;

/// The whole `config.toml`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Format version of this file.
    pub config_version: u32,
    /// The module this home runs.
    pub module: Module,
    /// Process-level settings.
    #[serde(default)]
    pub node: NodeSection,
    /// Logging.
    #[serde(default)]
    pub log: LogSection,
    /// QUIC networking.
    #[serde(default)]
    pub net: NetSection,
    /// Who may use the client-facing protocols (re-read on SIGHUP).
    #[serde(default)]
    pub access: lamina_net::AccessPolicy,
    /// Consensus settings (consensus homes only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consensus: Option<consensus::Config>,
    /// DA settings (DA homes only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub da: Option<da::Config>,
    /// Execution settings (execution homes only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution: Option<execution::Config>,
    /// Settlement settings (settlement homes only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settlement: Option<settlement::Config>,
    /// Bridge settings (bridge homes only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge: Option<bridge::Config>,
}

/// `[node]`: process-level settings.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct NodeSection {
    /// Admin HTTP address serving `/metrics`, `/livez`, `/readyz` and `/status` (no
    /// authentication: keep it local or private). Unset: the `admin` address genesis
    /// lists for this node, else `127.0.0.1:<module default>`: 9100 (consensus), 9101
    /// (da), 9102 (execution), 9103 (settlement), 9104 (bridge).
    #[schemars(example = SocketAddr::from(([127, 0, 0, 1], 9100)))]
    pub admin_addr: Option<SocketAddr>,
    /// Longest time the service gets to drain and flush after SIGTERM/SIGINT before the
    /// process exits anyway (with a non-zero status), in milliseconds (100..=600000).
    /// Keep container/systemd stop timeouts above it.
    pub shutdown_grace_ms: u64,
}

impl Default for NodeSection {
    fn default() -> Self {
        NodeSection { admin_addr: None, shutdown_grace_ms: 10_000 }
    }
}

/// `[log]`: logging.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    /// Line format: "text" or "json".
    #[schemars(with = "String")]
    pub format: LogFormat,
    /// Filter in `RUST_LOG` syntax, e.g. "info" or "lamina::net=debug,info".
    pub level: String,
    /// Also append log lines to this file (relative paths are relative to the home).
    #[schemars(example = &"data/node.log")]
    pub file: Option<PathBuf>,
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection { format: LogFormat::Text, level: "info".into(), file: None }
    }
}

/// `[net]`: QUIC networking. Maps onto [`lamina_net::EndpointConfig`]
/// ([`NetSection::endpoint_config`]) plus the peer service's ping interval.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct NetSection {
    /// UDP address to bind. Unset: the address genesis lists for this node's key.
    #[schemars(example = SocketAddr::from(([0, 0, 0, 0], 7000)))]
    pub listen_addr: Option<SocketAddr>,
    /// Time allowed for one dial (handshake plus the peer's acceptance), in milliseconds.
    pub connect_timeout_ms: u64,
    /// Time in-flight requests get at shutdown before connections close, in
    /// milliseconds (part of, and below, `node.shutdown_grace_ms`).
    pub shutdown_grace_ms: u64,
    /// How often per-connection statistics (RTT, bytes) are refreshed for metrics and
    /// `/status`, in milliseconds.
    pub stats_interval_ms: u64,
    /// How often each connected peer is asked to confirm it runs the same genesis
    /// (which also measures the application round trip), in milliseconds; at least 100
    /// and at most half of `net.limits.idle_timeout_ms`.
    pub ping_interval_ms: u64,
    /// QUIC limits per connection (both directions); they bound the memory a peer can
    /// use.
    pub limits: TransportLimits,
    /// Redialing a lost or unreachable peer: the delay doubles per failure from
    /// `initial_ms` up to `max_ms`, with jitter (each wait is uniform in
    /// `[delay/2, delay]`).
    pub backoff: Backoff,
}

impl Default for NetSection {
    fn default() -> Self {
        let e = EndpointConfig::default();
        NetSection {
            listen_addr: None,
            connect_timeout_ms: e.connect_timeout.as_millis() as u64,
            shutdown_grace_ms: e.shutdown_grace.as_millis() as u64,
            stats_interval_ms: e.stats_interval.as_millis() as u64,
            ping_interval_ms: 1_000,
            limits: e.limits,
            backoff: e.backoff,
        }
    }
}

impl NetSection {
    /// The endpoint configuration, binding `listen` (the resolved listen address).
    pub fn endpoint_config(&self, listen: SocketAddr) -> EndpointConfig {
        EndpointConfig {
            listen,
            limits: self.limits.clone(),
            backoff: self.backoff.clone(),
            connect_timeout: Duration::from_millis(self.connect_timeout_ms),
            shutdown_grace: Duration::from_millis(self.shutdown_grace_ms),
            stats_interval: Duration::from_millis(self.stats_interval_ms),
        }
    }

    /// The ping interval.
    pub fn ping_interval(&self) -> Duration {
        Duration::from_millis(self.ping_interval_ms)
    }
}

impl NodeConfig {
    /// The defaults for a `module` home.
    pub fn new(module: Module) -> Self {
        let mut c = NodeConfig {
            config_version: CONFIG_VERSION,
            module,
            node: NodeSection::default(),
            log: LogSection::default(),
            net: NetSection::default(),
            access: lamina_net::AccessPolicy::default(),
            consensus: None,
            da: None,
            execution: None,
            settlement: None,
            bridge: None,
        };
        match module {
            Module::Consensus => c.consensus = Some(Default::default()),
            Module::Da => c.da = Some(Default::default()),
            Module::Execution => c.execution = Some(Default::default()),
            Module::Settlement => c.settlement = Some(Default::default()),
            Module::Bridge => c.bridge = Some(Default::default()),
        }
        c
    }

    /// Checks what types cannot.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.config_version != CONFIG_VERSION {
            bail!("config_version {} is not supported by this binary (supports {CONFIG_VERSION})", self.config_version);
        }
        lamina_telemetry::logging::parse_filter(&self.log.level).context("[log] level")?;
        if !(100..=600_000).contains(&self.node.shutdown_grace_ms) {
            bail!("[node] shutdown_grace_ms must be within 100..=600000, got {}", self.node.shutdown_grace_ms);
        }
        let n = &self.net;
        n.endpoint_config(SocketAddr::from(([127, 0, 0, 1], 0))).validate().context("[net]")?;
        if n.ping_interval_ms < 100 || u128::from(n.ping_interval_ms) * 2 > n.limits.idle_timeout.as_millis() {
            bail!(
                "[net] ping_interval_ms ({}) must be at least 100 and at most half of [net.limits] idle_timeout_ms ({})",
                n.ping_interval_ms,
                n.limits.idle_timeout.as_millis()
            );
        }
        if n.shutdown_grace_ms >= self.node.shutdown_grace_ms {
            bail!(
                "[net] shutdown_grace_ms ({}) must be below [node] shutdown_grace_ms ({}): the endpoint drains \
                 within the node's grace period",
                n.shutdown_grace_ms,
                self.node.shutdown_grace_ms
            );
        }
        let present = [
            (Module::Consensus, self.consensus.is_some()),
            (Module::Da, self.da.is_some()),
            (Module::Execution, self.execution.is_some()),
            (Module::Settlement, self.settlement.is_some()),
            (Module::Bridge, self.bridge.is_some()),
        ];
        for (m, is) in present {
            if is && m != self.module {
                bail!("section [{m}] does not apply to a {} home", self.module);
            }
        }
        match self.module {
            Module::Consensus => self.consensus.clone().unwrap_or_default().validate(),
            Module::Da => self.da.clone().unwrap_or_default().validate(),
            Module::Execution => self.execution.clone().unwrap_or_default().validate(),
            Module::Settlement => self.settlement.clone().unwrap_or_default().validate(),
            Module::Bridge => self.bridge.clone().unwrap_or_default().validate(),
        }
        .with_context(|| format!("[{}]", self.module))
    }

    /// The annotated `config.toml` for these values: every field with a comment, values
    /// as set (defaults after `init`), unset optional fields as commented examples.
    pub fn to_annotated_toml(&self) -> String {
        let mut d = AnnotatedToml::default();
        let m = self.module;
        d.comment(&format!("Lamina node configuration for a `{m}` home; written by `lamina {m} init`."));
        d.comment("Every field is shown with its current value (the defaults, unless edited).");
        d.comment("Precedence: this file < LAMINA_* environment variables < command-line flags.");
        d.comment("Environment: LAMINA_ADMIN_ADDR, LAMINA_SHUTDOWN_GRACE_MS, LAMINA_LISTEN_ADDR, LAMINA_LOG_FORMAT,");
        d.comment("LAMINA_LOG_LEVEL (beats RUST_LOG), LAMINA_LOG_FILE; any field: LAMINA__<SECTION>__<FIELD>=<value>.");
        d.comment(&format!("Flags: lamina {m} start --admin-addr --listen-addr --log-format --log-level --log-file"));
        d.comment("       --set <section>.<field>=<value>. See the effective result with `lamina <module> config`.");
        d.blank();
        d.field("Format version of this file (do not edit).", "config_version", &self.config_version);
        d.field("The module this home runs: consensus | da | execution | settlement | bridge.", "module", &self.module);

        d.section("node", "Process-level settings.");
        d.fields_of("node", &self.node);
        d.section("log", "Logging (to standard error, and to `file` if set).");
        d.fields_of("log", &self.log);
        d.section("net", "QUIC networking (peers and their keys come from config/genesis.toml).");
        d.fields_of("net", &self.net);
        d.section(
            "access",
            "Who may use this node's client-facing protocols: transaction intake and the ordered log\n\
             (validators), queries (execution, settlement), blob reads and samples (DA). Genesis nodes and\n\
             genesis [[clients]] always may. Re-read on SIGHUP (`kill -HUP <pid>`): no restart needed.",
        );
        d.fields_of("access", &self.access);

        d.section(m.as_str(), &format!("Settings of the {m} service."));
        match m {
            Module::Consensus => d.fields_of(m.as_str(), &self.consensus.clone().unwrap_or_default()),
            Module::Da => d.fields_of(m.as_str(), &self.da.clone().unwrap_or_default()),
            Module::Execution => d.fields_of(m.as_str(), &self.execution.clone().unwrap_or_default()),
            Module::Settlement => d.fields_of(m.as_str(), &self.settlement.clone().unwrap_or_default()),
            Module::Bridge => d.fields_of(m.as_str(), &self.bridge.clone().unwrap_or_default()),
        }
        d.finish()
    }
}

/// One override of one config field, and where it came from (for error messages).
#[derive(Clone, Debug, PartialEq)]
pub struct Override {
    /// The field's path (`["node", "admin_addr"]`).
    pub path: Vec<String>,
    /// The value.
    pub value: toml::Value,
    /// Where it came from (`"LAMINA_ADMIN_ADDR"`, `"--log-level"`).
    pub source: String,
}

impl Override {
    /// An override of `path` (dotted) with a string value.
    pub fn string(path: &str, value: impl Into<String>, source: impl Into<String>) -> Self {
        Override {
            path: path.split('.').map(str::to_string).collect(),
            value: toml::Value::String(value.into()),
            source: source.into(),
        }
    }

    /// An override of `path` (dotted) whose value is parsed as TOML when it parses, and
    /// taken as a string otherwise.
    pub fn parsed(path: &str, raw: &str, source: impl Into<String>) -> Self {
        Override { path: path.split('.').map(str::to_string).collect(), value: parse_value(raw), source: source.into() }
    }
}

/// `raw` as a TOML value if it is one (`2000`, `true`, `"x"`, `[1]`), else as a string.
pub fn parse_value(raw: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()))
}

/// The named environment variables and the fields they set, in increasing precedence.
pub const ENV_VARS: &[(&str, &str)] = &[
    ("RUST_LOG", "log.level"),
    ("LAMINA_LOG_LEVEL", "log.level"),
    ("LAMINA_LOG_FORMAT", "log.format"),
    ("LAMINA_LOG_FILE", "log.file"),
    ("LAMINA_ADMIN_ADDR", "node.admin_addr"),
    ("LAMINA_SHUTDOWN_GRACE_MS", "node.shutdown_grace_ms"),
    ("LAMINA_LISTEN_ADDR", "net.listen_addr"),
];

/// The overrides found in `vars` (pass `std::env::vars_os()`), in precedence order.
pub fn env_overrides(vars: impl IntoIterator<Item = (OsString, OsString)>) -> anyhow::Result<Vec<Override>> {
    let vars: Vec<(String, String)> = vars
        .into_iter()
        .filter_map(|(k, v)| {
            let k = k.into_string().ok()?;
            (k == "RUST_LOG" || k.starts_with("LAMINA_")).then_some((k, v))
        })
        .map(|(k, v)| {
            v.into_string()
                .map(|v| (k.clone(), v))
                .map_err(|_| anyhow::anyhow!("environment variable {k} is not UTF-8"))
        })
        .collect::<anyhow::Result<_>>()?;
    let mut out = Vec::new();
    for (name, path) in ENV_VARS {
        if let Some((_, v)) = vars.iter().find(|(k, _)| k == name) {
            if name.ends_with("_MS") {
                out.push(Override::parsed(path, v, *name));
            } else {
                out.push(Override::string(path, v.clone(), *name));
            }
        }
    }
    let mut generic: Vec<&(String, String)> = vars.iter().filter(|(k, _)| k.starts_with("LAMINA__")).collect();
    generic.sort();
    for (k, v) in generic {
        let path: Vec<String> = k["LAMINA__".len()..].split("__").map(|p| p.to_ascii_lowercase()).collect();
        if path.iter().any(String::is_empty) {
            bail!("environment variable {k}: expected LAMINA__<SECTION>__<FIELD>");
        }
        out.push(Override { path, value: parse_value(v), source: k.clone() });
    }
    Ok(out)
}

fn apply(table: &mut toml::Table, o: &Override) -> anyhow::Result<()> {
    let (last, parents) = o.path.split_last().with_context(|| format!("{}: empty field path", o.source))?;
    let mut t = table;
    for p in parents {
        let entry = t.entry(p.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        t = entry.as_table_mut().with_context(|| format!("{}: `{p}` is not a section", o.source))?;
    }
    t.insert(last.clone(), o.value.clone());
    Ok(())
}

/// True when `o` sets a field of another module's section (`consensus.…` for a DA
/// home). The environment is often shared by every process of a machine (a devnet, one
/// systemd environment file), so such an environment override is skipped rather than
/// refused; a section of another module in the file itself is still an error.
fn for_other_module(table: &toml::Table, o: &Override) -> bool {
    let Some(first) = o.path.first() else { return false };
    let Ok(section) = first.parse::<Module>() else { return false };
    let home = table.get("module").and_then(toml::Value::as_str).and_then(|m| m.parse::<Module>().ok());
    home.is_some_and(|home| home != section)
}

/// Parses `file_text`, applies `env` then `flags`, deserializes and validates.
/// Environment overrides of another module's section (`LAMINA__CONSENSUS__…` for a DA
/// home) are skipped: the environment is often shared by every process of a machine.
pub fn load_layered(file_text: &str, origin: &str, env: &[Override], flags: &[Override]) -> anyhow::Result<NodeConfig> {
    let mut table: toml::Table = toml::from_str(file_text).with_context(|| format!("{origin} is not valid TOML"))?;
    let env: Vec<Override> = env.iter().filter(|o| !for_other_module(&table, o)).cloned().collect();
    let env = env.as_slice();
    for o in env.iter().chain(flags) {
        apply(&mut table, o)?;
    }
    let cfg: NodeConfig = toml::Value::Table(table).try_into().map_err(|e: toml::de::Error| {
        let applied: Vec<String> =
            env.iter().chain(flags).map(|o| format!("{}={}", o.source, o.path.join("."))).collect();
        if applied.is_empty() {
            anyhow::anyhow!("{origin}: {e}")
        } else {
            anyhow::anyhow!("{origin} with overrides [{}]: {e}", applied.join(", "))
        }
    })?;
    cfg.validate().with_context(|| format!("invalid configuration ({origin} and overrides)"))?;
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs.iter().map(|(k, v)| (OsString::from(k), OsString::from(v))).collect()
    }

    fn nondefault(module: Module) -> NodeConfig {
        let mut c = NodeConfig::new(module);
        c.node.admin_addr = Some("127.0.0.1:1234".parse().unwrap());
        c.node.shutdown_grace_ms = 777;
        c.log = LogSection { format: LogFormat::Json, level: "debug".into(), file: Some("x/y.log".into()) };
        c.net = NetSection {
            listen_addr: Some("127.0.0.1:7777".parse().unwrap()),
            connect_timeout_ms: 1_111,
            shutdown_grace_ms: 333,
            stats_interval_ms: 444,
            ping_interval_ms: 555,
            limits: TransportLimits {
                connection_receive_window: 1 << 25,
                stream_receive_window: 1 << 21,
                send_window: 1 << 23,
                max_concurrent_bidi_streams: 7,
                max_concurrent_uni_streams: 9,
                max_incoming: 11,
                idle_timeout: Duration::from_millis(12_345),
                keep_alive: Duration::from_millis(1_234),
                max_udp_payload: 1_400,
                socket_buffer: 1 << 20,
                connection_inbound_budget: 3 << 20,
                peer_inbound_budget: 5 << 20,
                max_connections_per_peer: 13,
                max_open_connections: 14,
                max_open_connections_per_ip: 15,
            },
            backoff: Backoff { initial: Duration::from_millis(77), max: Duration::from_millis(7_777) },
        };
        c.access = lamina_net::AccessPolicy {
            open: false,
            allowed_clients: vec![lamina_primitives::Keypair::for_testing(5).public()],
        };
        c
    }

    #[test]
    fn annotated_toml_round_trips_defaults_and_every_field() {
        for m in Module::ALL {
            let d = NodeConfig::new(m);
            d.validate().unwrap();
            let text = d.to_annotated_toml();
            assert_eq!(load_layered(&text, "default", &[], &[]).unwrap(), d, "{text}");
            // Every field is written (non-default values all survive the round trip).
            let c = nondefault(m);
            assert_eq!(load_layered(&c.to_annotated_toml(), "nondefault", &[], &[]).unwrap(), c);
        }
    }

    #[test]
    fn every_key_has_a_comment_above_it() {
        for m in Module::ALL {
            let text = nondefault(m).to_annotated_toml();
            let lines: Vec<&str> = text.lines().collect();
            let mut keys = 0;
            for (i, l) in lines.iter().enumerate() {
                let is_key = !l.starts_with('#') && !l.starts_with('[') && l.contains(" = ");
                let is_table = l.starts_with('[');
                if is_key || is_table {
                    keys += usize::from(is_key);
                    assert!(i > 0 && lines[i - 1].starts_with('#'), "no comment above {l:?} in\n{text}");
                }
            }
            // config_version, module, 2 node, 3 log, 6 net fields.
            assert!(keys >= 13, "{keys} keys in\n{text}");
        }
    }

    /// Every field of the serialized config (including those of `lamina_net`'s types,
    /// should they grow) is written by the annotator with a comment above it.
    #[test]
    fn every_serialized_field_is_annotated() {
        fn leaves(prefix: &str, t: &toml::Table, out: &mut Vec<(String, String)>) {
            for (k, v) in t {
                match v {
                    toml::Value::Table(sub) => leaves(&format!("{prefix}{k}."), sub, out),
                    _ => out.push((prefix.trim_end_matches('.').to_string(), k.clone())),
                }
            }
        }
        for m in Module::ALL {
            let c = nondefault(m);
            let table = toml::Table::try_from(&c).unwrap();
            let mut fields = Vec::new();
            leaves("", &table, &mut fields);
            let text = c.to_annotated_toml();
            let lines: Vec<&str> = text.lines().collect();
            for (section, key) in fields {
                let header = format!("[{section}]");
                let start = if section.is_empty() {
                    0
                } else {
                    lines.iter().position(|l| *l == header).unwrap_or_else(|| panic!("no {header} in\n{text}"))
                };
                let at = lines[start..]
                    .iter()
                    .position(|l| l.starts_with(&format!("{key} = ")))
                    .unwrap_or_else(|| panic!("{section}.{key} is not written in\n{text}"));
                assert!(lines[start + at - 1].starts_with('#'), "{section}.{key} has no comment");
            }
        }
    }

    /// `f` applied to every section of `c` that `to_annotated_toml` writes from a schema.
    fn per_section<R>(c: &NodeConfig, f: fn(&str, &dyn Section) -> Vec<R>) -> Vec<R> {
        let module: Box<dyn Section> = match c.module {
            Module::Consensus => Box::new(c.consensus.clone().unwrap_or_default()),
            Module::Da => Box::new(c.da.clone().unwrap_or_default()),
            Module::Execution => Box::new(c.execution.clone().unwrap_or_default()),
            Module::Settlement => Box::new(c.settlement.clone().unwrap_or_default()),
            Module::Bridge => Box::new(c.bridge.clone().unwrap_or_default()),
        };
        let mut out = f("node", &c.node);
        out.extend(f("log", &c.log));
        out.extend(f("net", &c.net));
        out.extend(f("access", &c.access));
        out.extend(f(c.module.as_str(), module.as_ref()));
        out
    }

    /// A config section, object-safe: what the tests ask of its schema.
    trait Section {
        fn undocumented(&self, name: &str) -> Vec<String>;
        fn unset(&self, name: &str) -> Vec<(String, String, Option<String>)>;
    }

    impl<T: schemars::JsonSchema + serde::Serialize> Section for T {
        fn undocumented(&self, name: &str) -> Vec<String> {
            crate::annotated::undocumented(name, self)
        }
        fn unset(&self, name: &str) -> Vec<(String, String, Option<String>)> {
            crate::annotated::unset_fields(name, self)
        }
    }

    /// Every field of every section (the node's own and each module's, nested tables
    /// included) has a non-empty doc comment, and every serialized key is in the schema:
    /// a field added without a doc comment fails here.
    #[test]
    fn every_field_of_every_section_has_a_doc_comment() {
        for m in Module::ALL {
            for c in [NodeConfig::new(m), nondefault(m)] {
                let problems = per_section(&c, |name, s| s.undocumented(name));
                assert!(problems.is_empty(), "{m}: {problems:#?}");
                let text = c.to_annotated_toml();
                let long: Vec<&str> = text.lines().filter(|l| l.chars().count() > 100).collect();
                assert!(long.is_empty(), "{m}: lines over 100 columns: {long:#?}");
            }
        }
    }

    /// Every optional field that is unset by default is written as a commented example,
    /// `# key = example`, in its own table, and the examples are valid: uncommenting them
    /// all gives a config that loads, validates and sets every one of those fields.
    #[test]
    fn every_unset_optional_field_renders_its_commented_example() {
        for m in Module::ALL {
            let c = NodeConfig::new(m);
            let unset = per_section(&c, |name, s| s.unset(name));
            let keys: Vec<String> = unset.iter().map(|(t, k, _)| format!("{t}.{k}")).collect();
            for want in ["node.admin_addr", "log.file", "net.listen_addr"] {
                assert!(keys.iter().any(|k| k == want), "{m}: {want} is not among the unset fields {keys:?}");
            }
            let text = c.to_annotated_toml();
            let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
            for (table, key, example) in &unset {
                let example = example.as_ref().unwrap_or_else(|| panic!("{table}.{key} has no example"));
                let start = lines.iter().position(|l| *l == format!("[{table}]")).expect("table header");
                let end =
                    lines[start + 1..].iter().position(|l| l.starts_with('[')).map_or(lines.len(), |e| start + 1 + e);
                let line = format!("# {key} = {example}");
                let at = lines[start..end]
                    .iter()
                    .position(|l| *l == line)
                    .unwrap_or_else(|| panic!("no {line:?} in [{table}] of\n{text}"));
                assert!(lines[start + at - 1].starts_with("# "), "{table}.{key}: no comment above its example");
                lines[start + at] = format!("{key} = {example}");
            }
            let set = load_layered(&lines.join("\n"), "examples", &[], &[])
                .unwrap_or_else(|e| panic!("{m}: the uncommented examples do not load: {e:#}"));
            let still = per_section(&set, |name, s| s.unset(name));
            assert!(still.is_empty(), "{m}: still unset with every example uncommented: {still:?}");
        }
    }

    #[test]
    fn layering_is_file_then_env_then_flags() {
        let mut file = NodeConfig::new(Module::Consensus);
        file.node.admin_addr = Some("127.0.0.1:1000".parse().unwrap());
        file.log.level = "warn".into();
        file.net.connect_timeout_ms = 4_000;
        let text = file.to_annotated_toml();

        // File only.
        let c = load_layered(&text, "f", &[], &[]).unwrap();
        assert_eq!(c.node.admin_addr, Some("127.0.0.1:1000".parse().unwrap()));

        // Environment beats the file.
        let e = env_overrides(env(&[
            ("LAMINA_ADMIN_ADDR", "127.0.0.1:2000"),
            ("RUST_LOG", "debug"),
            ("LAMINA__NET__CONNECT_TIMEOUT_MS", "5000"),
            ("LAMINA__NET__LIMITS__IDLE_TIMEOUT_MS", "50000"),
            ("LAMINA_HOME", "/ignored"),
            ("LAMINA_LONG_TESTS", "1"),
            ("PATH", "/bin"),
        ]))
        .unwrap();
        let c = load_layered(&text, "f", &e, &[]).unwrap();
        assert_eq!(c.node.admin_addr, Some("127.0.0.1:2000".parse().unwrap()));
        assert_eq!(c.log.level, "debug");
        assert_eq!(c.net.connect_timeout_ms, 5_000);
        assert_eq!(c.net.limits.idle_timeout, Duration::from_secs(50));

        // LAMINA_LOG_LEVEL beats RUST_LOG.
        let e2 = env_overrides(env(&[("RUST_LOG", "debug"), ("LAMINA_LOG_LEVEL", "trace")])).unwrap();
        assert_eq!(load_layered(&text, "f", &e2, &[]).unwrap().log.level, "trace");

        // Flags beat the environment.
        let flags = vec![
            Override::string("node.admin_addr", "127.0.0.1:3000", "--admin-addr"),
            Override::parsed("net.limits.idle_timeout_ms", "60000", "--set"),
        ];
        let c = load_layered(&text, "f", &e, &flags).unwrap();
        assert_eq!(c.node.admin_addr, Some("127.0.0.1:3000".parse().unwrap()));
        assert_eq!(c.net.limits.idle_timeout, Duration::from_secs(60));
        assert_eq!(c.net.connect_timeout_ms, 5_000, "from the environment");
        assert_eq!(c.log.level, "debug", "untouched by flags, still from the environment");
    }

    #[test]
    fn environment_of_another_module_is_skipped_but_a_file_section_is_refused() {
        let shared = env_overrides(env(&[
            ("LAMINA__CONSENSUS__BATCH__MAX_INFLIGHT", "1"),
            ("LAMINA__DA__RETENTION_SECS", "oops: not even a number"),
        ]))
        .unwrap();
        let consensus = load_layered(&NodeConfig::new(Module::Consensus).to_annotated_toml(), "f", &shared, &[]);
        assert_eq!(consensus.unwrap().consensus.unwrap().0.batch.max_inflight, 1);
        // A DA home skips the consensus override; its own bad value is still reported.
        let da = format!(
            "{:#}",
            load_layered(&NodeConfig::new(Module::Da).to_annotated_toml(), "f", &shared, &[]).unwrap_err()
        );
        assert!(da.contains("LAMINA__DA__RETENTION_SECS") && !da.contains("CONSENSUS"), "{da}");
        // A flag naming another module's section is still an error.
        let flag = [Override::parsed("consensus.batch.max_inflight", "1", "--set")];
        let err = format!(
            "{:#}",
            load_layered(&NodeConfig::new(Module::Da).to_annotated_toml(), "f", &[], &flag).unwrap_err()
        );
        assert!(err.contains("does not apply to a da home"), "{err}");
    }

    #[test]
    fn bad_values_are_reported_with_their_source() {
        let text = NodeConfig::new(Module::Da).to_annotated_toml();
        let e = env_overrides(env(&[("LAMINA_ADMIN_ADDR", "not-an-address")])).unwrap();
        let err = format!("{:#}", load_layered(&text, "config.toml", &e, &[]).unwrap_err());
        assert!(err.contains("LAMINA_ADMIN_ADDR"), "{err}");

        let e = env_overrides(env(&[("LAMINA__NET__NO_SUCH_FIELD", "1")])).unwrap();
        let err = format!("{:#}", load_layered(&text, "config.toml", &e, &[]).unwrap_err());
        assert!(err.contains("no_such_field"), "{err}");

        let flags = [Override::string("log.level", "lamina=shouting", "--log-level")];
        let err = format!("{:#}", load_layered(&text, "config.toml", &[], &flags).unwrap_err());
        assert!(err.contains("[log] level"), "{err}");

        let err = format!("{:#}", load_layered("module = [", "config.toml", &[], &[]).unwrap_err());
        assert!(err.contains("not valid TOML"), "{err}");
    }

    #[test]
    fn validation_rejects_inconsistent_values() {
        let mut c = NodeConfig::new(Module::Consensus);
        c.net.ping_interval_ms = c.net.limits.idle_timeout.as_millis() as u64;
        assert!(c.validate().is_err());
        let mut c = NodeConfig::new(Module::Consensus);
        c.net.backoff.max = Duration::from_millis(10);
        c.net.backoff.initial = Duration::from_millis(20);
        assert!(c.validate().is_err());
        let mut c = NodeConfig::new(Module::Consensus);
        c.net.shutdown_grace_ms = c.node.shutdown_grace_ms;
        assert!(c.validate().unwrap_err().to_string().contains("shutdown_grace_ms"));
        let mut c = NodeConfig::new(Module::Consensus);
        c.da = Some(Default::default());
        assert!(c.validate().unwrap_err().to_string().contains("[da]"));
        let mut c = NodeConfig::new(Module::Consensus);
        c.config_version = 2;
        assert!(c.validate().is_err());
    }

    #[test]
    fn values_parse_as_toml_or_fall_back_to_strings() {
        assert_eq!(parse_value("5000"), toml::Value::Integer(5000));
        assert_eq!(parse_value("true"), toml::Value::Boolean(true));
        assert_eq!(parse_value("\"5000\""), toml::Value::String("5000".into()));
        assert_eq!(parse_value("127.0.0.1:80"), toml::Value::String("127.0.0.1:80".into()));
        assert_eq!(parse_value("info"), toml::Value::String("info".into()));
    }
}
