//! The state a task records after a deploy: the objects it applied (for rollback and to reach
//! inventory entries by their API version), plus whatever the plugin adds. It is stored
//! deflated and base64-encoded, because charts with many CustomResourceDefinitions easily
//! exceed the host's output-size cap as plain JSON; the older plain JSON array is still read.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

const PREFIX: &str = "deflate+base64:";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// The applied objects, as sent to the API server.
    #[serde(default)]
    pub objects: Vec<Value>,
    /// What the plugin keeps besides (hooks to run on destroy, the chart version, ...).
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub extra: Value,
}

impl State {
    pub fn encode(&self) -> Result<String, String> {
        let json = serde_json::to_vec(self).map_err(|e| e.to_string())?;
        let packed = miniz_oxide::deflate::compress_to_vec(&json, 8);
        Ok(format!(
            "{PREFIX}{}",
            base64::engine::general_purpose::STANDARD.encode(packed)
        ))
    }

    /// Reads what `encode` wrote, or the plain JSON array of objects older versions wrote.
    pub fn decode(text: &str) -> Result<State, String> {
        if let Some(b64) = text.strip_prefix(PREFIX) {
            let packed = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|e| format!("the recorded state is not base64: {e}"))?;
            // Bounded, so a corrupt record cannot exhaust the plugin's memory.
            let json = miniz_oxide::inflate::decompress_to_vec_with_limit(&packed, 64 << 20)
                .map_err(|e| format!("the recorded state does not inflate: {e:?}"))?;
            return serde_json::from_slice(&json)
                .map_err(|e| format!("the recorded state does not parse: {e}"));
        }
        let value: Value = serde_json::from_str(text)
            .map_err(|e| format!("the recorded state does not parse: {e}"))?;
        match value {
            Value::Array(objects) => Ok(State {
                objects,
                extra: Value::Null,
            }),
            other => serde_json::from_value(other)
                .map_err(|e| format!("the recorded state does not parse: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trip_is_compressed_and_old_state_is_read() {
        let big = "x".repeat(100_000);
        let s = State {
            objects: vec![json!({"kind": "CustomResourceDefinition", "spec": big})],
            extra: json!({"chart": "web"}),
        };
        let text = s.encode().unwrap();
        assert!(text.len() < 2_000, "{}", text.len());
        assert_eq!(State::decode(&text).unwrap(), s);
        let old = State::decode(r#"[{"kind": "ConfigMap"}]"#).unwrap();
        assert_eq!(old.objects.len(), 1);
        assert!(State::decode("deflate+base64:!!").is_err());
    }
}
