//! The `tracing` subscriber: text or JSON, `RUST_LOG`-style filters, optional log file.
//!
//! Events always go to standard error (so standard output stays free for command
//! output); with [`LogConfig::file`] set they are also appended to that file, without
//! ANSI colours. Each event is formatted into one buffer and written with one `write`
//! to a file opened in append mode, so lines from concurrent threads do not interleave.
//! Writes are unbuffered: nothing is lost when the process exits, and there is nothing
//! to flush at shutdown.
//!
//! Filter syntax is `tracing_subscriber::EnvFilter`'s (the `RUST_LOG` syntax):
//! `info`, `lamina::net=debug,info`, `warn,lamina::consensus[view]=trace`. Lamina's
//! events use targets of the form `lamina::<module>`.

use std::fmt;
use std::fs::OpenOptions;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::Registry;
use tracing_subscriber::util::SubscriberInitExt;

use crate::TelemetryError;

/// Output format of log lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (for log shippers).
    Json,
}

impl FromStr for LogFormat {
    type Err = TelemetryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "text" | "plain" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(TelemetryError::BadFormat(s.to_string())),
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        })
    }
}

/// How to log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogConfig {
    /// Line format.
    pub format: LogFormat,
    /// Filter directives in `RUST_LOG` syntax (`"info"`, `"lamina::net=debug,info"`).
    pub filter: String,
    /// Also append events to this file.
    pub file: Option<PathBuf>,
    /// Colour the text output on standard error (ignored for JSON and for the file).
    pub ansi: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { format: LogFormat::Text, filter: "info".into(), file: None, ansi: false }
    }
}

/// Parses `filter` (`RUST_LOG` syntax) strictly: an unknown level or malformed directive
/// is an error instead of being silently ignored.
pub fn parse_filter(filter: &str) -> Result<EnvFilter, TelemetryError> {
    EnvFilter::builder()
        .parse(filter)
        .map_err(|e| TelemetryError::BadFilter { filter: filter.to_string(), reason: e.to_string() })
}

type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync + 'static>;

fn stderr_layer(format: LogFormat, ansi: bool) -> BoxedLayer {
    let base = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_target(true);
    match format {
        LogFormat::Text => base.with_ansi(ansi).boxed(),
        LogFormat::Json => base.json().flatten_event(true).with_current_span(true).boxed(),
    }
}

fn file_layer(format: LogFormat, file: Arc<std::fs::File>) -> BoxedLayer {
    let base = tracing_subscriber::fmt::layer().with_writer(file).with_ansi(false).with_target(true);
    match format {
        LogFormat::Text => base.boxed(),
        LogFormat::Json => base.json().flatten_event(true).with_current_span(true).boxed(),
    }
}

/// Builds the subscriber described by `config` without installing it.
pub fn subscriber(config: &LogConfig) -> Result<impl tracing::Subscriber + Send + Sync + 'static, TelemetryError> {
    let filter = parse_filter(&config.filter)?;
    let mut layers: Vec<BoxedLayer> = vec![stderr_layer(config.format, config.ansi)];
    if let Some(path) = &config.file {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| TelemetryError::LogFile { path: path.clone(), source })?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| TelemetryError::LogFile { path: path.clone(), source })?;
        layers.push(file_layer(config.format, Arc::new(file)));
    }
    Ok(tracing_subscriber::registry().with(layers).with(filter))
}

/// Installs the subscriber described by `config` as the process-wide default, and routes
/// `log` records (from dependencies such as quinn and rustls) into it.
pub fn init(config: &LogConfig) -> Result<(), TelemetryError> {
    subscriber(config)?.try_init().map_err(|_| TelemetryError::SubscriberInstalled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_and_print() {
        assert_eq!("json".parse::<LogFormat>().unwrap(), LogFormat::Json);
        assert_eq!("Text".parse::<LogFormat>().unwrap(), LogFormat::Text);
        assert!(matches!("yaml".parse::<LogFormat>(), Err(TelemetryError::BadFormat(_))));
        assert_eq!(LogFormat::Json.to_string(), "json");
    }

    #[test]
    fn filters_are_parsed_strictly() {
        parse_filter("info").unwrap();
        parse_filter("lamina::net=debug,warn").unwrap();
        assert!(matches!(parse_filter("lamina=loud"), Err(TelemetryError::BadFilter { .. })));
    }

    #[test]
    fn file_output_respects_filter_and_format() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs").join("node.log");
        let cfg = LogConfig {
            format: LogFormat::Json,
            filter: "lamina::test=debug,warn".into(),
            file: Some(path.clone()),
            ansi: false,
        };
        let sub = subscriber(&cfg).unwrap();
        tracing::subscriber::with_default(sub, || {
            tracing::debug!(target: "lamina::test", height = 7u64, "kept");
            tracing::debug!(target: "lamina::other", "dropped by the filter");
            tracing::info!(target: "lamina::other", "also dropped");
            tracing::warn!(target: "lamina::other", "kept too");
        });
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0]["message"], "kept");
        assert_eq!(lines[0]["height"], 7);
        assert_eq!(lines[0]["target"], "lamina::test");
        assert_eq!(lines[1]["message"], "kept too");
        assert_eq!(lines[1]["level"], "WARN");
    }

    #[test]
    fn text_file_output_has_no_ansi_codes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.log");
        let cfg = LogConfig { format: LogFormat::Text, filter: "info".into(), file: Some(path.clone()), ansi: true };
        tracing::subscriber::with_default(subscriber(&cfg).unwrap(), || {
            tracing::info!(target: "lamina::test", "hello");
        });
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("hello") && text.contains("lamina::test"), "{text}");
        assert!(!text.contains('\u{1b}'), "{text:?}");
    }

    #[test]
    fn unopenable_log_file_is_a_typed_error() {
        let dir = tempfile::tempdir().unwrap();
        // A directory cannot be opened as a log file.
        let cfg = LogConfig { file: Some(dir.path().to_path_buf()), ..LogConfig::default() };
        assert!(matches!(subscriber(&cfg), Err(TelemetryError::LogFile { .. })));
    }
}
