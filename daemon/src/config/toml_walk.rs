//! Reading a TOML document with positions: a thin layer over `toml::de::DeTable` that turns
//! type mismatches into `ConfigError`s naming file, line and column, and collects every
//! error instead of stopping at the first.

use std::ops::Range;
use std::path::Path;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::ConfigError;
use super::error::LineIndex;

/// A position in a file, for messages about things found there.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Loc {
    pub line: usize,
    pub column: usize,
}

/// One file being read, and the errors found in it so far.
pub struct Doc<'a> {
    pub path: &'a Path,
    pub source: &'a str,
    pub errors: Vec<ConfigError>,
    lines: LineIndex,
}

pub type Value<'i> = Spanned<DeValue<'i>>;

impl<'a> Doc<'a> {
    pub fn new(path: &'a Path, source: &'a str) -> Self {
        Doc {
            path,
            source,
            errors: Vec::new(),
            lines: LineIndex::new(source),
        }
    }

    pub fn loc(&self, span: Range<usize>) -> Loc {
        let (line, column) = self.lines.line_col(self.source, span.start);
        Loc { line, column }
    }

    pub fn error(&mut self, span: Range<usize>, message: impl Into<String>) {
        let at = self.lines.line_col(self.source, span.start);
        self.errors
            .push(ConfigError::located(self.path, at, message));
    }

    pub fn error_at(&mut self, loc: Loc, message: impl Into<String>) {
        self.errors.push(ConfigError {
            file: self.path.to_path_buf(),
            line: loc.line,
            column: loc.column,
            message: message.into(),
        });
    }

    pub fn string(&mut self, key: &str, v: &Value<'_>) -> Option<String> {
        match v.get_ref() {
            DeValue::String(s) => Some(s.to_string()),
            other => {
                self.error(
                    v.span(),
                    format!("`{key}` must be a string, not {}", type_name(other)),
                );
                None
            }
        }
    }

    pub fn bool(&mut self, key: &str, v: &Value<'_>) -> Option<bool> {
        match v.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            other => {
                self.error(
                    v.span(),
                    format!("`{key}` must be true or false, not {}", type_name(other)),
                );
                None
            }
        }
    }

    pub fn integer(&mut self, key: &str, v: &Value<'_>, min: i64, max: i64) -> Option<i64> {
        let parsed = match v.get_ref() {
            DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix()).ok(),
            _ => None,
        };
        match parsed {
            Some(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                self.error(
                    v.span(),
                    format!("`{key}` must be a whole number from {min} to {max}"),
                );
                None
            }
        }
    }

    pub fn duration(&mut self, key: &str, v: &Value<'_>) -> Option<std::time::Duration> {
        let text = self.string(key, v)?;
        match super::duration::parse(&text) {
            Ok(d) => Some(d),
            Err(e) => {
                self.error(v.span(), format!("`{key}`: {e}"));
                None
            }
        }
    }

    /// A list of strings, each with its position.
    pub fn strings(&mut self, key: &str, v: &Value<'_>) -> Vec<(String, Range<usize>)> {
        match v.get_ref() {
            DeValue::Array(items) => items
                .iter()
                .filter_map(|item| self.string(key, item).map(|s| (s, item.span())))
                .collect(),
            other => {
                self.error(
                    v.span(),
                    format!(
                        "`{key}` must be a list of strings, not {}",
                        type_name(other)
                    ),
                );
                Vec::new()
            }
        }
    }

    pub fn table<'v, 'i>(&mut self, key: &str, v: &'v Value<'i>) -> Option<&'v DeTable<'i>> {
        match v.get_ref() {
            DeValue::Table(t) => Some(t),
            other => {
                self.error(
                    v.span(),
                    format!("`{key}` must be a table, not {}", type_name(other)),
                );
                None
            }
        }
    }
}

pub fn type_name(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "a list",
        DeValue::Table(_) => "a table",
    }
}

/// The JSON form of a TOML value, as plugins receive their parameters.
pub fn to_json(v: &DeValue<'_>) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        DeValue::String(s) => J::String(s.to_string()),
        DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix()).map_or(J::Null, J::from),
        DeValue::Float(f) => f
            .as_str()
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or(J::Null, J::Number),
        DeValue::Boolean(b) => J::Bool(*b),
        DeValue::Datetime(d) => J::String(d.to_string()),
        DeValue::Array(items) => J::Array(items.iter().map(|i| to_json(i.get_ref())).collect()),
        DeValue::Table(t) => J::Object(
            t.iter()
                .map(|(k, v)| (k.get_ref().to_string(), to_json(v.get_ref())))
                .collect(),
        ),
    }
}
