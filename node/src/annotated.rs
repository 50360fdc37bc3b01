//! Annotated TOML: the writer behind `config.toml` and `lamina <module> config`, which puts
//! each field's comment above it. A leaf: it knows nothing about modules or sections.

use std::fmt::Write as _;

/// A builder for annotated TOML: every field preceded by its comment.
#[derive(Default, Debug)]
pub struct AnnotatedToml {
    out: String,
}

fn toml_value<T: serde::Serialize + ?Sized>(v: &T) -> String {
    // Every config value is a scalar, string, array or table, which TOML can hold; a
    // failure here is a programming error in a config type, caught by the round-trip
    // tests of every module config.
    toml::Value::try_from(v).map(|v| v.to_string()).unwrap_or_else(|e| format!("\"<unrepresentable: {e}>\""))
}

impl AnnotatedToml {
    /// A `# ...` line per line of `text`.
    pub fn comment(&mut self, text: &str) {
        for line in text.lines() {
            let _ = writeln!(self.out, "# {line}");
        }
    }

    /// An empty line.
    pub fn blank(&mut self) {
        self.out.push('\n');
    }

    /// A `[name]` table header, preceded by its comment.
    pub fn section(&mut self, name: &str, doc: &str) {
        self.blank();
        self.comment(doc);
        let _ = writeln!(self.out, "[{name}]");
    }

    /// `key = value`, preceded by its comment.
    pub fn field<T: serde::Serialize + ?Sized>(&mut self, doc: &str, key: &str, value: &T) {
        self.comment(doc);
        let _ = writeln!(self.out, "{key} = {}", toml_value(value));
    }

    /// `key = value` when set; when unset, a commented example `# key = example`.
    pub fn optional<T: serde::Serialize>(&mut self, doc: &str, key: &str, value: &Option<T>, example: &str) {
        self.comment(doc);
        match value {
            Some(v) => {
                let _ = writeln!(self.out, "{key} = {}", toml_value(v));
            }
            None => {
                let _ = writeln!(self.out, "# {key} = {example}");
            }
        }
    }

    /// The document.
    pub fn finish(self) -> String {
        self.out
    }
}
