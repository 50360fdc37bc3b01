//! Plain-text tables for CLI output (comfy-table, without borders): columns sized to
//! their widest cell, numbers right-aligned.

use comfy_table::{CellAlignment, Table, presets};

/// A table with `headers`; columns whose index is in `right` are right-aligned. Each
/// line starts with `indent`.
pub fn plain(headers: &[&str], right: &[usize], rows: impl IntoIterator<Item = Vec<String>>, indent: &str) -> String {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING).set_header(headers.iter().copied());
    for row in rows {
        t.add_row(row);
    }
    for &i in right {
        if let Some(c) = t.column_mut(i) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
    // The preset pads every cell by one space on each side; trim the outer ones.
    t.lines().map(|l| format!("{indent}{}\n", l.trim_end().strip_prefix(' ').unwrap_or(&l))).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn columns_fit_their_widest_cell_and_numbers_align_right() {
        let out = super::plain(
            &["NAME", "PID", "STATE"],
            &[1],
            [vec!["validator-0".into(), "7".into(), "running".into()], vec!["da-1".into(), "12345".into(), "-".into()]],
            "  ",
        );
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        assert!(lines[0].starts_with("  NAME"), "{out}");
        // The PID column ends at the same place on every line.
        let end = |l: &str, s: &str| l.find(s).unwrap() + s.len();
        assert_eq!(end(lines[1], " 7"), end(lines[2], "12345"), "{out}");
        assert_eq!(end(lines[0], "PID"), end(lines[2], "12345"), "{out}");
    }
}
