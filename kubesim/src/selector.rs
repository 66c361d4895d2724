//! Label and field selectors as list and watch requests send them.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
enum Op {
    Eq(String),
    NotEq(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    NotExists,
}

#[derive(Debug, Clone, PartialEq)]
struct Requirement {
    key: String,
    op: Op,
}

/// A parsed selector; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selector {
    reqs: Vec<Requirement>,
    /// Field selectors address object fields by dotted path; label selectors address labels.
    fields: bool,
}

impl Selector {
    pub fn labels(s: &str) -> Result<Self, String> {
        Ok(Selector {
            reqs: parse(s)?,
            fields: false,
        })
    }

    pub fn fields(s: &str) -> Result<Self, String> {
        let reqs = parse(s)?;
        if let Some(r) = reqs
            .iter()
            .find(|r| !matches!(r.op, Op::Eq(_) | Op::NotEq(_)))
        {
            return Err(format!(
                "field selector {:?}: only =, == and != are supported",
                r.key
            ));
        }
        Ok(Selector { reqs, fields: true })
    }

    /// A `metav1.LabelSelector` as objects carry it (`matchLabels`, `matchExpressions`).
    /// `None` when it is not well formed; an empty one selects everything, as the label
    /// selector conversion in Kubernetes does.
    pub fn from_label_selector(sel: &Value) -> Option<Self> {
        let mut reqs = Vec::new();
        if let Some(m) = sel.get("matchLabels").filter(|m| !m.is_null()) {
            for (k, v) in m.as_object()? {
                reqs.push(Requirement {
                    key: k.clone(),
                    op: Op::Eq(v.as_str()?.to_string()),
                });
            }
        }
        if let Some(exprs) = sel.get("matchExpressions").filter(|m| !m.is_null()) {
            for e in exprs.as_array()? {
                let key = e.get("key")?.as_str()?.to_string();
                let values: Vec<String> = match e.get("values").filter(|v| !v.is_null()) {
                    Some(v) => v
                        .as_array()?
                        .iter()
                        .map(|v| v.as_str().map(str::to_string))
                        .collect::<Option<_>>()?,
                    None => Vec::new(),
                };
                let op = match e.get("operator")?.as_str()? {
                    "In" => Op::In(values),
                    "NotIn" => Op::NotIn(values),
                    "Exists" => Op::Exists,
                    "DoesNotExist" => Op::NotExists,
                    _ => return None,
                };
                reqs.push(Requirement { key, op });
            }
        }
        Some(Selector {
            reqs,
            fields: false,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.reqs.is_empty()
    }

    /// Whether a label map (`{"app": "web"}`) satisfies this label selector.
    pub fn matches_labels(&self, labels: &Value) -> bool {
        let wrapped = serde_json::json!({"metadata": {"labels": labels}});
        self.matches(&wrapped)
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.reqs.iter().all(|r| {
            let actual = if self.fields {
                field_value(obj, &r.key)
            } else {
                obj.pointer("/metadata/labels")
                    .and_then(|l| l.get(&r.key))
                    .and_then(Value::as_str)
                    .map(str::to_string)
            };
            match &r.op {
                Op::Eq(v) => actual.as_deref() == Some(v.as_str()),
                Op::NotEq(v) => actual.as_deref() != Some(v.as_str()),
                Op::In(vs) => actual.is_some_and(|a| vs.contains(&a)),
                Op::NotIn(vs) => !actual.is_some_and(|a| vs.contains(&a)),
                Op::Exists => actual.is_some(),
                Op::NotExists => actual.is_none(),
            }
        })
    }
}

fn field_value(obj: &Value, dotted: &str) -> Option<String> {
    let pointer = format!("/{}", dotted.replace('.', "/"));
    match obj.pointer(&pointer) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Null) | None => {
            // An unset namespace reads as "" so `metadata.namespace!=x` works on cluster objects.
            (dotted == "metadata.namespace").then(String::new)
        }
        Some(other) => Some(other.to_string()),
    }
}

fn parse(s: &str) -> Result<Vec<Requirement>, String> {
    let mut reqs = Vec::new();
    for part in split_top(s) {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        reqs.push(parse_one(part)?);
    }
    Ok(reqs)
}

/// Splits on commas outside parentheses.
fn split_top(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn parse_one(part: &str) -> Result<Requirement, String> {
    let bad = || format!("invalid selector requirement {part:?}");
    if let Some(key) = part.strip_prefix('!') {
        return Ok(Requirement {
            key: key.trim().to_string(),
            op: Op::NotExists,
        });
    }
    for (sep, make) in [
        ("!=", Op::NotEq as fn(String) -> Op),
        ("==", Op::Eq),
        ("=", Op::Eq),
    ] {
        if let Some((k, v)) = part.split_once(sep) {
            return Ok(Requirement {
                key: k.trim().to_string(),
                op: make(v.trim().to_string()),
            });
        }
    }
    let words: Vec<&str> = part.splitn(2, char::is_whitespace).collect();
    if words.len() == 2 {
        let rest = words[1].trim();
        let (neg, list) = if let Some(l) = rest.strip_prefix("notin") {
            (true, l)
        } else if let Some(l) = rest.strip_prefix("in") {
            (false, l)
        } else {
            return Err(bad());
        };
        let list = list
            .trim()
            .strip_prefix('(')
            .and_then(|l| l.strip_suffix(')'))
            .ok_or_else(bad)?;
        let values = list.split(',').map(|v| v.trim().to_string()).collect();
        return Ok(Requirement {
            key: words[0].to_string(),
            op: if neg {
                Op::NotIn(values)
            } else {
                Op::In(values)
            },
        });
    }
    if part
        .chars()
        .all(|c| c.is_alphanumeric() || "-_./".contains(c))
    {
        return Ok(Requirement {
            key: part.to_string(),
            op: Op::Exists,
        });
    }
    Err(bad())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_selector_forms() {
        let o = json!({"metadata": {"labels": {"app": "web", "tier": "fe"}}});
        for (s, want) in [
            ("app=web", true),
            ("app==web,tier!=be", true),
            ("app in (api, web)", true),
            ("tier notin (fe)", false),
            ("app", true),
            ("!app", false),
            ("", true),
        ] {
            assert_eq!(Selector::labels(s).unwrap().matches(&o), want, "{s}");
        }
        assert!(Selector::labels("app in web").is_err());
    }

    #[test]
    fn field_selector_reads_object_fields() {
        let o =
            json!({"metadata": {"name": "a", "namespace": "x"}, "status": {"phase": "Running"}});
        assert!(
            Selector::fields("metadata.name=a,status.phase=Running")
                .unwrap()
                .matches(&o)
        );
        assert!(
            !Selector::fields("metadata.namespace!=x")
                .unwrap()
                .matches(&o)
        );
    }
}
