//! The one reader of `${...}` references in parameters: `${tasks.GROUP.NAME.outputs.KEY}`,
//! `${env.NAME}` and `${secrets.NAME}`. The plan checks them, the scheduler fills them in,
//! and a grant's `exec_paths` expand a leading `${env.NAME}` with it.

/// `${tasks.GROUP.NAME.outputs.KEY}`, `${env.NAME}` and `${secrets.NAME}` references in
/// parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    Output {
        task: String,
        key: String,
    },
    Env(String),
    /// A secret the daemon reads when the task runs (`crate::secrets`).
    Secret(String),
}

/// Every `${...}` in `text`, or the first malformed one.
pub fn references(text: &str) -> Result<Vec<Reference>, String> {
    let mut refs = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unterminated `${{` in `{text}`"))?;
        let inner = &after[..end];
        let parts: Vec<&str> = inner.split('.').collect();
        let r = match parts.as_slice() {
            ["tasks", group, name, "outputs", key]
                if [group, name, key].iter().all(|p| !p.is_empty()) =>
            {
                Reference::Output {
                    task: format!("{group}.{name}"),
                    key: (*key).to_string(),
                }
            }
            ["env", name] if !name.is_empty() => Reference::Env((*name).to_string()),
            ["secrets", name] if !name.is_empty() => Reference::Secret((*name).to_string()),
            _ => {
                return Err(format!(
                    "`${{{inner}}}` is not a reference; use ${{tasks.GROUP.NAME.outputs.KEY}}, ${{env.NAME}} or ${{secrets.NAME}}"
                ));
            }
        };
        refs.push(r);
        rest = &after[end + 1..];
    }
    Ok(refs)
}

/// Replaces every `${...}` reference in the strings of `value` with what `lookup` says.
pub fn substitute(
    value: &mut serde_json::Value,
    lookup: &dyn Fn(&Reference) -> Result<String, String>,
) -> Result<(), String> {
    match value {
        serde_json::Value::String(s) if s.contains("${") => {
            let mut out = String::new();
            let mut rest = s.as_str();
            let refs = references(s)?;
            for r in refs {
                let start = rest.find("${").unwrap_or(rest.len());
                let end = rest[start..]
                    .find('}')
                    .map_or(rest.len(), |e| start + e + 1);
                out.push_str(&rest[..start]);
                out.push_str(&lookup(&r)?);
                rest = &rest[end..];
            }
            out.push_str(rest);
            *s = out;
        }
        serde_json::Value::Array(items) => {
            items.iter_mut().try_for_each(|i| substitute(i, lookup))?
        }
        serde_json::Value::Object(map) => {
            map.values_mut().try_for_each(|v| substitute(v, lookup))?
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitution_replaces_every_reference() {
        let mut v = serde_json::json!({"url": "http://${tasks.infra.db.outputs.host}:${tasks.infra.db.outputs.port}/x", "n": [ "${env.A}" ]});
        substitute(&mut v, &|r| {
            Ok(match r {
                Reference::Output { key, .. } => key.to_uppercase(),
                Reference::Env(n) => format!("env-{n}"),
                Reference::Secret(n) => format!("secret-{n}"),
            })
        })
        .unwrap();
        assert_eq!(v["url"], "http://HOST:PORT/x");
        assert_eq!(v["n"][0], "env-A");
    }
}
