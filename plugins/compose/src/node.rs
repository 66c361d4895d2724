//! A compose file as a tree of YAML nodes that remember their line and column.
//!
//! The translation walks this tree by hand instead of deserialising into fixed structs, so
//! every key it does not translate can be reported at its place in the file rather than
//! being dropped by a permissive struct or refused without a location by a strict one.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// One YAML node and where it is written (1-based; 0 when the parser could not tell).
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub line: u32,
    pub column: u32,
    pub value: Val,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Entries in file order; keys are written as strings whatever their YAML type.
    Map(Vec<(String, Node)>),
}

impl Node {
    pub fn new(value: Val) -> Node {
        Node {
            line: 0,
            column: 0,
            value,
        }
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Val::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn entries(&self) -> &[(String, Node)] {
        match &self.value {
            Val::Map(entries) => entries,
            _ => &[],
        }
    }

    pub fn items(&self) -> &[Node] {
        match &self.value {
            Val::Seq(items) => items,
            _ => &[],
        }
    }

    pub fn is_map(&self) -> bool {
        matches!(self.value, Val::Map(_))
    }

    pub fn is_null(&self) -> bool {
        matches!(self.value, Val::Null)
    }

    /// A scalar as the text compose means by it (`80`, `true`, `0.5`); None for collections
    /// and null.
    pub fn scalar(&self) -> Option<String> {
        match &self.value {
            Val::Bool(b) => Some(b.to_string()),
            Val::Int(i) => Some(i.to_string()),
            Val::Float(f) => Some(f.to_string()),
            Val::Str(s) => Some(s.clone()),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Val::Str(s) => Some(s),
            _ => None,
        }
    }

    /// An integer, also when interpolation left it as a string (`replicas: ${N:-2}`).
    pub fn as_int(&self) -> Option<i64> {
        match &self.value {
            Val::Int(i) => Some(*i),
            Val::Str(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match &self.value {
            Val::Bool(b) => Some(*b),
            Val::Str(s) => match s.trim() {
                "true" | "True" | "TRUE" => Some(true),
                "false" | "False" | "FALSE" => Some(false),
                _ => None,
            },
            _ => None,
        }
    }

    /// A string or a list of strings, as compose allows for `command`, `profiles`, ...
    pub fn strings(&self) -> Option<Vec<String>> {
        match &self.value {
            Val::Seq(items) => items.iter().map(Node::scalar).collect(),
            _ => self.scalar().map(|s| vec![s]),
        }
    }

    /// Rewrites every string scalar (keys stay as written, as compose does).
    pub fn map_strings<E>(
        &mut self,
        f: &mut impl FnMut(&str, u32) -> Result<String, E>,
    ) -> Result<(), E> {
        let line = self.line;
        match &mut self.value {
            Val::Str(s) => *s = f(s, line)?,
            Val::Seq(items) => {
                for i in items {
                    i.map_strings(f)?;
                }
            }
            Val::Map(entries) => {
                for (_, v) in entries {
                    v.map_strings(f)?;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// Parses one YAML document into a located tree; errors carry the line and column.
pub fn parse(text: &str) -> Result<Node, (u32, u32, String)> {
    if text.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#')
    }) {
        return Ok(Node::new(Val::Null));
    }
    serde_saphyr::from_str::<Node>(text).map_err(|e| {
        let (line, column) = e
            .location()
            .map(|l| (l.line() as u32, l.column() as u32))
            .unwrap_or((0, 0));
        let message = e.to_string();
        let message = message.lines().next().unwrap_or_default().to_string();
        (line, column, format!("not valid YAML: {message}"))
    })
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
        let s = Spanned::<Val>::deserialize(d)?;
        Ok(Node {
            line: u32::try_from(s.referenced.line()).unwrap_or(0),
            column: u32::try_from(s.referenced.column()).unwrap_or(0),
            value: s.value,
        })
    }
}

impl<'de> Deserialize<'de> for Val {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Val, D::Error> {
        d.deserialize_any(ValVisitor)
    }
}

struct ValVisitor;

impl<'de> Visitor<'de> for ValVisitor {
    type Value = Val;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a YAML value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Val, E> {
        Ok(Val::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Val, E> {
        Ok(Val::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Val, E> {
        i64::try_from(v)
            .map(Val::Int)
            .or_else(|_| Ok(Val::Str(v.to_string())))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Val, E> {
        Ok(Val::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Val, E> {
        Ok(Val::Str(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Val, E> {
        Ok(Val::Str(v))
    }
    fn visit_none<E>(self) -> Result<Val, E> {
        Ok(Val::Null)
    }
    fn visit_unit<E>(self) -> Result<Val, E> {
        Ok(Val::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Val, D::Error> {
        Val::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Val, A::Error> {
        let mut items = Vec::new();
        while let Some(n) = seq.next_element::<Node>()? {
            items.push(n);
        }
        Ok(Val::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Val, A::Error> {
        let mut entries: Vec<(String, Node)> = Vec::new();
        while let Some(key) = map.next_key::<Key>()? {
            let value = map.next_value::<Node>()?;
            // A later key wins, as in YAML merges (`<<`) where explicit keys override.
            if let Some(slot) = entries.iter_mut().find(|(k, _)| *k == key.0) {
                slot.1 = value;
            } else {
                entries.push((key.0, value));
            }
        }
        Ok(Val::Map(entries))
    }
}

/// A mapping key of any scalar type, kept as text.
struct Key(String);

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
        match Val::deserialize(d)? {
            Val::Str(s) => Ok(Key(s)),
            Val::Int(i) => Ok(Key(i.to_string())),
            Val::Bool(b) => Ok(Key(b.to_string())),
            Val::Float(f) => Ok(Key(f.to_string())),
            Val::Null => Ok(Key(String::new())),
            _ => Err(de::Error::custom("a mapping key must be a scalar")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_know_their_lines() {
        let text = "services:\n  web:\n    image: nginx\n    ports:\n      - \"80:80\"\n";
        let root = parse(text).unwrap();
        let web = root.get("services").unwrap().get("web").unwrap();
        assert_eq!(web.get("image").unwrap().line, 3);
        assert_eq!(web.get("ports").unwrap().items()[0].line, 5);
        assert_eq!(web.get("image").unwrap().as_str(), Some("nginx"));
    }

    #[test]
    fn merges_and_anchors_are_followed() {
        let text = "x-base: &base\n  image: app\n  restart: always\nservices:\n  a:\n    <<: *base\n    restart: \"no\"\n";
        let root = parse(text).unwrap();
        let a = root.get("services").unwrap().get("a").unwrap();
        assert_eq!(a.get("image").unwrap().as_str(), Some("app"));
        assert_eq!(a.get("restart").unwrap().as_str(), Some("no"));
    }

    #[test]
    fn errors_have_a_line() {
        let (line, _, msg) = parse("services:\n  web: [\n").unwrap_err();
        assert!(line >= 2, "{line} {msg}");
    }
}
