//! Printing results as a table, JSON or YAML.

use clap::ValueEnum;
use serde_json::Value;

/// How a command prints its result (`-o`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
    Yaml,
}

/// Prints `value` in `format`; `table` renders the table form.
pub fn print(format: Output, value: &Value, table: impl FnOnce(&Value) -> String) {
    let text = match format {
        Output::Json => serde_json::to_string_pretty(value).unwrap_or_default() + "\n",
        Output::Yaml => serde_norway::to_string(value).unwrap_or_default(),
        Output::Table => table(value),
    };
    print!("{text}");
}

/// Left-aligned columns, two spaces apart.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

pub fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

pub use weft_store::time::rfc3339;

#[cfg(test)]
mod tests {

    #[test]
    fn rfc3339_dates() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1_709_210_096_000), "2024-02-29T12:34:56Z");
    }

    #[test]
    fn tables_align() {
        let t = super::table(&["A", "B"], &[vec!["long-cell".into(), "x".into()]]);
        assert_eq!(t, "A          B\nlong-cell  x\n");
    }
}
