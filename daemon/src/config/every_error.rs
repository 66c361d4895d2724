//! Every error in a TOML file read through serde, not only the first one serde stops at:
//! after a failed read the document is read again one setting at a time (one key of each
//! table), so each wrong setting is reported at its own file:line:col.

use std::path::Path;

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue, Deserializer};

use super::ConfigError;

/// Every error reading `source` as `T`; empty when it reads.
pub fn every_error<T: DeserializeOwned>(path: &Path, source: &str) -> Vec<ConfigError> {
    let (root, syntax) = DeTable::parse_recoverable(source);
    if !syntax.is_empty() {
        return syntax
            .iter()
            .map(|e| ConfigError::from_toml(path, source, e))
            .collect();
    }
    let whole = match T::deserialize(Deserializer::from(root.clone())) {
        Ok(_) => return Vec::new(),
        Err(e) => ConfigError::from_toml(path, source, &e),
    };
    let span = root.span();
    let mut errors: Vec<ConfigError> = Vec::new();
    for (key, value) in root.get_ref() {
        let parts: Vec<Spanned<DeValue<'_>>> = match value.get_ref() {
            DeValue::Table(table) if !table.is_empty() => table
                .iter()
                .map(|(k, v)| {
                    let mut one = DeTable::new();
                    one.insert(k.clone(), v.clone());
                    Spanned::new(value.span(), DeValue::Table(one))
                })
                .collect(),
            _ => vec![value.clone()],
        };
        for part in parts {
            let mut doc = DeTable::new();
            doc.insert(key.clone(), part);
            if let Err(e) = T::deserialize(Deserializer::from(Spanned::new(span.clone(), doc))) {
                let e = ConfigError::from_toml(path, source, &e);
                // A setting read alone may lack the siblings a table requires; those gaps
                // are reported by the whole read, not once per sibling.
                if !e.message.starts_with("missing field") && !errors.contains(&e) {
                    errors.push(e);
                }
            }
        }
    }
    if errors.is_empty() {
        errors.push(whole);
    }
    errors.sort_by_key(|e| (e.line, e.column));
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DaemonConfig;

    #[test]
    fn each_wrong_setting_is_reported_at_its_place() {
        let source = "plugin_dir = [\"x\"]\n[limits]\nmemory_mib = \"lots\"\n\n[daemon]\nshutdown_grace = \"soon\"\nwatch_debounce = \"1s\"\n[wasm]\npoolng = true\n";
        let errors = every_error::<DaemonConfig>(Path::new("gantry.toml"), source);
        let at: Vec<(usize, usize)> = errors.iter().map(|e| (e.line, e.column)).collect();
        assert_eq!(at, [(1, 1), (3, 14), (6, 18), (9, 1)], "{errors:#?}");
        assert!(
            every_error::<DaemonConfig>(Path::new("g"), "[limits]\nmemory_mib = 64\n").is_empty()
        );
    }

    #[test]
    fn syntax_errors_come_first_and_all_of_them() {
        let errors = every_error::<DaemonConfig>(Path::new("g"), "[limits\nx = \n");
        assert!(!errors.is_empty());
        assert!(errors.iter().all(|e| e.line > 0), "{errors:#?}");
    }
}
