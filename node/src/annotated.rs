//! Annotated TOML: the writer behind `config.toml` and `lamina <module> config`, which puts
//! each field's comment above it. A leaf: it knows nothing about modules or sections.
//!
//! A config struct's fields are written by [`AnnotatedToml::fields_of`] from its JSON
//! schema ([`schemars::JsonSchema`]): the comment above a key is the field's doc comment,
//! so a field's doc comment is its operator documentation and is written once.

use std::fmt::Write as _;

use serde_json::Value as Json;

/// Width of a comment line, `# ` included.
const WIDTH: usize = 100;

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

/// The JSON schema of `T` with every subschema inline (no `$ref`), properties in
/// declaration order.
pub fn schema_of<T: schemars::JsonSchema>() -> schemars::Schema {
    schemars::generate::SchemaSettings::draft2020_12()
        .with(|s| s.inline_subschemas = true)
        .into_generator()
        .into_root_schema_for::<T>()
}

/// The properties of an object schema, in declaration order (none for a non-object).
fn properties(schema: &Json) -> impl Iterator<Item = (&String, &Json)> {
    schema.get("properties").and_then(Json::as_object).into_iter().flatten()
}

/// A schema's description (a field's or type's doc comment), or "".
fn description(schema: &Json) -> &str {
    schema.get("description").and_then(Json::as_str).unwrap_or("")
}

/// A schema's first example (`#[schemars(example = ...)]`) as a TOML value.
fn example(schema: &Json) -> Option<String> {
    let first = schema.get("examples")?.as_array()?.first()?;
    toml::Value::try_from(first).ok().map(|v| v.to_string())
}

/// Turns rustdoc markdown into plain comment text: intra-doc links `` [`Foo`] `` and
/// `` [`foo`](path) `` become `` `Foo` `` and `` `foo` ``, `[text](target)` becomes `text`,
/// `crate::`/`self::`/`super::` prefixes inside backticks go, and `**bold**` loses its
/// stars.
fn plain(text: &str) -> String {
    let text = text.replace("**", "");
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(open) = rest.find('[') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find(']') else {
            out.push_str(&rest[open..]);
            return strip_paths(&out);
        };
        let inner = &after[..close];
        let mut tail = &after[close + 1..];
        // `[text](target)`: drop the target.
        if let Some(t) = tail.strip_prefix('(')
            && let Some(end) = t.find(')')
        {
            tail = &t[end + 1..];
            out.push_str(inner);
        } else if inner.starts_with('`') && inner.ends_with('`') && inner.len() > 1 {
            // `` [`Foo`] ``: an intra-doc link.
            out.push_str(inner);
        } else {
            out.push('[');
            out.push_str(inner);
            out.push(']');
        }
        rest = tail;
    }
    out.push_str(rest);
    strip_paths(&out)
}

fn strip_paths(text: &str) -> String {
    text.replace("`crate::", "`").replace("`self::", "`").replace("`super::", "`")
}

/// Comment lines for a doc comment: paragraphs (separated by blank lines) reflowed and
/// wrapped to [`WIDTH`], list items (`* `, `- `) on lines of their own, and an empty `#`
/// line between paragraphs.
fn comment_lines(doc: &str) -> Vec<String> {
    let doc = plain(doc);
    let mut lines = Vec::new();
    for (i, para) in doc.split("\n\n").map(str::trim).filter(|p| !p.is_empty()).enumerate() {
        if i > 0 {
            lines.push(String::new());
        }
        // Split into items: a list item starts a new item, other lines continue one.
        let mut items: Vec<(String, String)> = Vec::new();
        for line in para.lines().map(str::trim) {
            let bullet = ["* ", "- "].iter().find(|b| line.starts_with(**b));
            match (bullet, items.last_mut()) {
                (None, Some((_, text))) => {
                    text.push(' ');
                    text.push_str(line);
                }
                (None, None) => items.push((String::new(), line.to_string())),
                (Some(b), _) => items.push((b.to_string(), line[b.len()..].to_string())),
            }
        }
        for (bullet, text) in items {
            let indent = " ".repeat(bullet.len());
            let mut line = bullet.clone();
            for word in words(&text) {
                if line.len() > bullet.len() && line.len() + 1 + word.len() + 2 > WIDTH {
                    lines.push(std::mem::replace(&mut line, indent.clone()));
                }
                if line.len() > bullet.len() {
                    line.push(' ');
                }
                line.push_str(&word);
            }
            lines.push(line);
        }
    }
    lines
}

/// The words of `text` for wrapping: whitespace-separated, except that a code span
/// (`` `like this` ``) stays one word.
fn words(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut open = false;
    for w in text.split_whitespace() {
        match out.last_mut() {
            Some(last) if open => {
                last.push(' ');
                last.push_str(w);
            }
            _ => out.push(w.to_string()),
        }
        open ^= w.matches('`').count() % 2 == 1;
    }
    out
}

impl AnnotatedToml {
    /// A `# ...` line per line of `text`.
    pub fn comment(&mut self, text: &str) {
        for line in text.lines() {
            let _ = writeln!(self.out, "# {line}");
        }
    }

    /// `doc` (a doc comment) as wrapped comment lines.
    fn doc(&mut self, doc: &str) {
        for line in comment_lines(doc) {
            let _ = writeln!(self.out, "#{}{line}", if line.is_empty() { "" } else { " " });
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

    /// The fields of `value`, the config struct of table `section` (whose header the
    /// caller wrote), from `T`'s schema, in declaration order: each field's doc comment
    /// as its comment, then `key = value`; an unset optional field as its commented
    /// example (`# key = example`, from `#[schemars(example = ...)]`). Fields holding a
    /// struct become `[section.field]` tables after the plain keys, commented with the
    /// field's doc comment (else the struct's), recursively.
    pub fn fields_of<T: schemars::JsonSchema + serde::Serialize>(&mut self, section: &str, value: &T) {
        let schema = schema_of::<T>();
        match toml::Table::try_from(value) {
            Ok(table) => self.table_body(section, schema.as_value(), &table),
            // A config type TOML cannot hold: a programming error, which the round-trip
            // tests of every config catch (no field is written, so none survives).
            Err(e) => self.comment(&format!("<[{section}] is unrepresentable in TOML: {e}>")),
        }
    }

    fn table_body(&mut self, section: &str, schema: &Json, table: &toml::Table) {
        let mut tables = Vec::new();
        for (key, field) in properties(schema) {
            match table.get(key) {
                Some(toml::Value::Table(sub)) => tables.push((key, field, sub)),
                Some(value) => {
                    self.doc(description(field));
                    let _ = writeln!(self.out, "{key} = {value}");
                }
                None => {
                    self.doc(description(field));
                    let example = example(field).unwrap_or_else(|| "<no example>".into());
                    let _ = writeln!(self.out, "# {key} = {example}");
                }
            }
        }
        for (key, field, sub) in tables {
            let name = format!("{section}.{key}");
            self.blank();
            self.doc(description(field));
            let _ = writeln!(self.out, "[{name}]");
            self.table_body(&name, field, sub);
        }
    }

    /// The document.
    pub fn finish(self) -> String {
        self.out
    }
}

/// A visitor of config fields: `(table, key, field schema, value)`.
type Visitor<'f> = dyn FnMut(&str, &str, &Json, Option<&toml::Value>) + 'f;

/// Calls `f(table, key, field schema, value)` for every field of the schema `schema` of
/// `table` and of its nested tables (`value` is `None` for an unset field), then for
/// every key of a table that the schema lacks (with `Json::Null` for the schema).
fn visit(path: &str, schema: &Json, table: &toml::Table, f: &mut Visitor<'_>) {
    for (key, field) in properties(schema) {
        let value = table.get(key);
        f(path, key, field, value);
        if let Some(toml::Value::Table(sub)) = value {
            visit(&format!("{path}.{key}"), field, sub, f);
        }
    }
    for key in table.keys().filter(|k| !properties(schema).any(|(p, _)| p == *k)) {
        f(path, key, &Json::Null, table.get(key));
    }
}

fn visit_value<T: schemars::JsonSchema + serde::Serialize>(
    section: &str,
    value: &T,
    f: &mut Visitor<'_>,
) -> Result<(), String> {
    let table = toml::Table::try_from(value).map_err(|e| format!("{section}: not a TOML table: {e}"))?;
    visit(section, schema_of::<T>().as_value(), &table, f);
    Ok(())
}

/// What keeps `value`'s fields from being fully documented in config.toml, one line each
/// (`table.key: why`): a field without a doc comment, an unset optional field without an
/// example, a serialized key that the schema lacks. Empty when every field of every
/// table has its comment.
pub fn undocumented<T: schemars::JsonSchema + serde::Serialize>(section: &str, value: &T) -> Vec<String> {
    let mut out = Vec::new();
    let result = visit_value(section, value, &mut |path, key, field, value| {
        if field.is_null() {
            out.push(format!("{path}.{key}: serialized but not in the schema"));
        } else if description(field).trim().is_empty() {
            out.push(format!("{path}.{key}: no doc comment"));
        }
        if value.is_none() && example(field).is_none() {
            out.push(format!("{path}.{key}: unset and no #[schemars(example = ...)]"));
        }
    });
    out.extend(result.err());
    out
}

/// The fields `value` leaves unset (optional fields that are `None`), as (table, key,
/// example written for it).
pub fn unset_fields<T: schemars::JsonSchema + serde::Serialize>(
    section: &str,
    value: &T,
) -> Vec<(String, String, Option<String>)> {
    let mut out = Vec::new();
    let _ = visit_value(section, value, &mut |path, key, field, value| {
        if value.is_none() {
            out.push((path.to_string(), key.to_string(), example(field)));
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An inner table.
    #[derive(Default, serde::Serialize, schemars::JsonSchema)]
    struct Inner {
        /// A number, see [`Outer`] and [the docs](https://example.org).
        n: u32,
    }

    /// The outer table.
    #[derive(Default, serde::Serialize, schemars::JsonSchema)]
    struct Outer {
        /// **TEST ONLY:** the first field, whose comment is long enough to be wrapped onto a second
        /// line at a hundred columns by the writer.
        ///
        /// A second paragraph:
        /// * one item,
        /// * [`crate::annotated::AnnotatedToml`].
        a: bool,
        /// Nested.
        inner: Inner,
        /// Unset: an example.
        #[schemars(example = 7)]
        opt: Option<u32>,
        /// Plain after the table.
        b: String,
    }

    #[test]
    fn fields_come_from_the_schema_with_tables_last() {
        let mut d = AnnotatedToml::default();
        d.fields_of("s", &Outer::default());
        let text = d.finish();
        let want = "\
# TEST ONLY: the first field, whose comment is long enough to be wrapped onto a second line at a
# hundred columns by the writer.
#
# A second paragraph:
# * one item,
# * `annotated::AnnotatedToml`.
a = false
# Unset: an example.
# opt = 7
# Plain after the table.
b = \"\"

# Nested.
[s.inner]
# A number, see `Outer` and the docs.
n = 0
";
        assert_eq!(text, want);
        assert!(text.lines().all(|l| l.len() <= WIDTH), "{text}");
        assert!(undocumented("s", &Outer::default()).is_empty());
    }

    #[test]
    fn a_field_without_a_doc_comment_or_example_is_reported() {
        #[derive(Default, serde::Serialize, schemars::JsonSchema)]
        struct Bad {
            /// Documented.
            ok: u8,
            bare: u8,
            /// Optional, without an example.
            opt: Option<u8>,
        }
        let problems = undocumented("bad", &Bad::default());
        assert_eq!(problems, ["bad.bare: no doc comment", "bad.opt: unset and no #[schemars(example = ...)]"]);
    }
}
