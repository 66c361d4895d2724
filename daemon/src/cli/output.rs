//! How read commands print: aligned text tables (`wide` adds columns), or the same answer as
//! JSON or YAML for scripts (`-o json|yaml`; `--json` stays as the short form of `-o json`).

use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Wide,
    Json,
    Yaml,
}

#[derive(Debug, Clone, clap::Args)]
pub struct Output {
    /// Output format: text, wide (more columns), json or yaml.
    #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
    format: Format,
    /// The same as -o json.
    #[arg(long)]
    json: bool,
}

impl Output {
    pub fn format(&self) -> Format {
        if self.json { Format::Json } else { self.format }
    }

    pub fn wide(&self) -> bool {
        self.format() == Format::Wide
    }

    /// Prints `value` when the format is a structured one; false when the caller prints
    /// text instead.
    pub fn structured(&self, value: &Value) -> bool {
        match self.format() {
            Format::Json => {
                println!(
                    "{}",
                    serde_json::to_string_pretty(value).unwrap_or_default()
                );
                true
            }
            Format::Yaml => {
                print!("{}", to_yaml(value));
                true
            }
            Format::Text | Format::Wide => false,
        }
    }
}

/// `value` as a YAML document (JSON, which YAML reads too, should the serializer refuse).
pub fn to_yaml(value: &Value) -> String {
    serde_saphyr::to_string(value)
        .unwrap_or_else(|_| serde_json::to_string_pretty(value).unwrap_or_default() + "\n")
}

/// Rows under a header, each column as wide as its widest cell, so long values and many
/// rows stay aligned; the last column is not padded.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut out = String::new();
        for (i, cell) in cells.enumerate() {
            if i + 1 < widths.len() {
                let pad = widths[i] - cell.chars().count().min(widths[i]);
                out.push_str(cell);
                out.push_str(&" ".repeat(pad + 2));
            } else {
                out.push_str(cell);
            }
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(&mut header.iter().copied());
    for row in rows {
        out.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    out
}

/// A duration in milliseconds the way people read it: `850ms`, `12.3s`, `4m05s`, `2h03m`.
pub fn duration(ms: i64) -> String {
    let ms = ms.max(0);
    match ms {
        0..=999 => format!("{ms}ms"),
        1_000..=59_999 => format!("{:.1}s", ms as f64 / 1000.0),
        60_000..=3_599_999 => format!("{}m{:02}s", ms / 60_000, ms % 60_000 / 1000),
        _ => format!("{}h{:02}m", ms / 3_600_000, ms % 3_600_000 / 60_000),
    }
}

/// A moment in Unix milliseconds as local-agnostic UTC, to the second.
pub fn moment(ms: i64) -> String {
    let t =
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_seconds(t)
        .to_string()
        .replace('T', " ")
        .trim_end_matches('Z')
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_fit_their_widest_cell() {
        let rows = vec![
            vec!["a-very-long-run-id".to_string(), "ok".into(), "x".into()],
            vec!["b".to_string(), "succeeded_with_errors".into(), "y".into()],
        ];
        assert_eq!(
            table(&["RUN", "STATE", "LAST"], &rows),
            "RUN                 STATE                  LAST\na-very-long-run-id  ok                     x\nb                   succeeded_with_errors  y\n"
        );
    }

    #[test]
    fn durations_and_moments_read_well() {
        assert_eq!(duration(850), "850ms");
        assert_eq!(duration(12_340), "12.3s");
        assert_eq!(duration(245_000), "4m05s");
        assert_eq!(duration(7_380_000), "2h03m");
        assert_eq!(moment(0), "1970-01-01 00:00:00");
    }

    #[test]
    fn yaml_is_yaml() {
        let y = to_yaml(&serde_json::json!({"runs": [{"id": "r1", "state": "failed"}]}));
        assert!(y.contains("runs:") && y.contains("id: r1"), "{y}");
    }
}
