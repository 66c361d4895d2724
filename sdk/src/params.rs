//! Typed access to a task's parameters, which arrive as the JSON form of its TOML table.

use serde::de::DeserializeOwned;
use std::time::Duration;

use crate::{HookContext, TaskContext, TaskError, ValidateContext, ValidationIssue};

/// Deserialises parameters into a plugin's own struct.
pub trait ParamsExt {
    fn raw_params(&self) -> &str;

    /// The parameters as `T`; a mismatch is an `invalid-config` error naming the field.
    fn params<T: DeserializeOwned>(&self) -> Result<T, TaskError> {
        serde_json::from_str(self.raw_params()).map_err(|e| TaskError::InvalidConfig(describe(&e)))
    }
}

impl ParamsExt for TaskContext {
    fn raw_params(&self) -> &str {
        &self.params
    }
}

impl ParamsExt for HookContext {
    fn raw_params(&self) -> &str {
        &self.params
    }
}

impl ParamsExt for ValidateContext {
    fn raw_params(&self) -> &str {
        &self.params
    }
}

/// `validate` for plugins whose parameters are one serde struct: no issues when it parses.
pub fn validate_params<T: DeserializeOwned>(params: &str) -> Vec<ValidationIssue> {
    match serde_json::from_str::<T>(params) {
        Ok(_) => Vec::new(),
        Err(e) => vec![ValidationIssue::new(
            &field_of(&e.to_string()).unwrap_or_default(),
            describe(&e),
        )],
    }
}

/// serde_json reports positions in the JSON the host made, which mean nothing to the
/// operator, so keep only the message.
fn describe(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// The field named in messages such as "unknown field `x`" or "missing field `y`".
fn field_of(message: &str) -> Option<String> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(message[start..start + len].to_string())
}

/// Parses durations as operators write them: "500ms", "30s", "5m", "1h 30m".
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("`{text}` is not a duration ({e}); write e.g. \"30s\" or \"5m\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_as_operators_write_them() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration(" 2s "), Ok(Duration::from_secs(2)));
        assert!(parse_duration("10").unwrap_err().contains("not a duration"));
        assert!(parse_duration("3 fortnights").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("").is_err());
    }

    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct P {
        command: Vec<String>,
    }

    #[test]
    fn validation_names_the_field() {
        let issues = validate_params::<P>(r#"{"command":["x"],"comand":1}"#);
        assert_eq!(issues.len(), 1);
        assert_eq!(issues[0].field, "comand");
        assert!(!issues[0].message.contains("line"), "{}", issues[0].message);
        let issues = validate_params::<P>("{}");
        assert_eq!(issues[0].field, "command");
        assert!(validate_params::<P>(r#"{"command":[]}"#).is_empty());
    }
}
