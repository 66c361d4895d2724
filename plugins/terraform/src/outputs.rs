//! `terraform output -json` turned into task outputs.
//!
//! Terraform prints `{"NAME": {"sensitive": bool, "type": ..., "value": ...}}`. Outputs are
//! strings to gantry: a string stays as it is (so `${tasks.infra.db.outputs.host}` is the
//! bare host name), anything else becomes its compact JSON (`5432`, `true`, `["a","b"]`), which
//! a later Terraform task's `vars` or a manifest can take as it is. Sensitive outputs are
//! marked so, which keeps them out of everything a person reads.

use gantry_sdk::Output;
use serde_json::Value;

pub fn parse_outputs(json: &str) -> Result<Vec<Output>, String> {
    let text = json.trim();
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let value: Value = serde_json::from_str(text)
        .map_err(|e| format!("`terraform output -json` did not print JSON: {e}"))?;
    let Value::Object(map) = value else {
        return Err("`terraform output -json` did not print an object".into());
    };
    let mut outputs = Vec::new();
    for (name, entry) in map {
        let sensitive = entry
            .get("sensitive")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let value = match entry.get("value") {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => return Err(format!("output `{name}` has no value")),
        };
        outputs.push(if sensitive {
            Output::sensitive(name, value)
        } else {
            Output::new(name, value)
        });
    }
    Ok(outputs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_and_sensitive_outputs() {
        let json = r#"{
          "host": {"sensitive": false, "type": "string", "value": "db1.internal"},
          "password": {"sensitive": true, "type": "string", "value": "hunter2"},
          "port": {"sensitive": false, "type": "number", "value": 5432},
          "tags": {"sensitive": false, "type": ["map", "string"], "value": {"a": "b"}},
          "ready": {"sensitive": false, "type": "bool", "value": true}
        }"#;
        let outputs = parse_outputs(json).unwrap();
        let get = |k: &str| outputs.iter().find(|o| o.key == k).unwrap();
        assert_eq!(get("host").value, "db1.internal");
        assert!(!get("host").sensitive);
        assert_eq!(get("password").value, "hunter2");
        assert!(get("password").sensitive);
        assert_eq!(get("port").value, "5432");
        assert_eq!(get("tags").value, r#"{"a":"b"}"#);
        assert_eq!(get("ready").value, "true");
    }

    #[test]
    fn no_outputs_and_bad_output() {
        assert!(parse_outputs("{}\n").unwrap().is_empty());
        assert!(parse_outputs("").unwrap().is_empty());
        assert!(parse_outputs("[1]").is_err());
        assert!(parse_outputs("{\"x\": {}}").unwrap_err().contains("`x`"));
        assert!(parse_outputs("Error: nope").is_err());
    }
}
