//! Request bodies in Kubernetes' protobuf encoding.
//!
//! Typed clients (kubectl's `create namespace`, helm's release storage) send built-in objects
//! as protobuf and the API server has no JSON fallback for writes, so the simulator decodes
//! the kinds such clients write: Namespace, Secret, ConfigMap and DeleteOptions here, the
//! workloads, Services, Ingresses, RBAC and the rest through [`crate::proto_kinds`].
//! Responses are always JSON, which every client accepts.

use base64::Engine;
use serde_json::{Map, Value, json};

/// Every protobuf body starts with this, then a `runtime.Unknown` message.
const MAGIC: &[u8] = b"k8s\0";

#[derive(Debug, PartialEq)]
pub(crate) enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

/// The fields of one message, in order, as (number, value).
pub(crate) fn fields(mut buf: &[u8]) -> Result<Vec<(u64, Field<'_>)>, String> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let key = varint(&mut buf)?;
        let value = match key & 7 {
            0 => Field::Varint(varint(&mut buf)?),
            2 => {
                let len = usize::try_from(varint(&mut buf)?).map_err(|_| "length overflow")?;
                if len > buf.len() {
                    return Err("truncated protobuf field".into());
                }
                let (v, rest) = buf.split_at(len);
                buf = rest;
                Field::Bytes(v)
            }
            1 => {
                buf = buf.get(8..).ok_or("truncated fixed64")?;
                Field::Varint(0)
            }
            5 => {
                buf = buf.get(4..).ok_or("truncated fixed32")?;
                Field::Varint(0)
            }
            w => return Err(format!("unsupported protobuf wire type {w}")),
        };
        out.push((key >> 3, value));
    }
    Ok(out)
}

fn varint(buf: &mut &[u8]) -> Result<u64, String> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = buf.split_first().ok_or("truncated varint")?;
        *buf = rest;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err("varint too long".into())
}

fn text(f: &Field) -> Result<String, String> {
    match f {
        Field::Bytes(b) => String::from_utf8(b.to_vec()).map_err(|_| "string is not UTF-8".into()),
        Field::Varint(_) => Err("expected a string".into()),
    }
}

fn number(f: &Field) -> i64 {
    match f {
        Field::Varint(v) => *v as i64,
        Field::Bytes(_) => 0,
    }
}

fn bytes<'a>(f: &Field<'a>) -> &'a [u8] {
    match f {
        Field::Bytes(b) => b,
        Field::Varint(_) => &[],
    }
}

/// One `map<string, string|bytes>` entry.
fn map_entry(f: &Field, as_base64: bool) -> Result<(String, Value), String> {
    let (mut k, mut v) = (String::new(), Value::String(String::new()));
    for (n, f) in fields(bytes(f))? {
        match n {
            1 => k = text(&f)?,
            2 if as_base64 => {
                v = Value::String(base64::engine::general_purpose::STANDARD.encode(bytes(&f)))
            }
            2 => v = Value::String(text(&f)?),
            _ => {}
        }
    }
    Ok((k, v))
}

fn insert_entry(obj: &mut Value, key: &str, f: &Field, as_base64: bool) -> Result<(), String> {
    let (k, v) = map_entry(f, as_base64)?;
    if !obj.get(key).is_some_and(Value::is_object) {
        obj[key] = Value::Object(Map::new());
    }
    obj[key][k] = v;
    Ok(())
}

fn push(obj: &mut Value, key: &str, v: Value) {
    if !obj.get(key).is_some_and(Value::is_array) {
        obj[key] = json!([]);
    }
    if let Some(a) = obj[key].as_array_mut() {
        a.push(v);
    }
}

pub(crate) fn object_meta(buf: &[u8]) -> Result<Value, String> {
    let mut m = json!({});
    for (n, f) in fields(buf)? {
        match n {
            // Go writes empty strings too; JSON would leave them out.
            1 | 2 | 3 | 5 | 6 => {
                let value = text(&f)?;
                if !value.is_empty() {
                    let key = match n {
                        1 => "name",
                        2 => "generateName",
                        3 => "namespace",
                        5 => "uid",
                        _ => "resourceVersion",
                    };
                    m[key] = json!(value);
                }
            }
            11 => insert_entry(&mut m, "labels", &f, false)?,
            12 => insert_entry(&mut m, "annotations", &f, false)?,
            13 => {
                let mut r = json!({});
                for (n, f) in fields(bytes(&f))? {
                    match n {
                        1 => r["kind"] = json!(text(&f)?),
                        3 => r["name"] = json!(text(&f)?),
                        4 => r["uid"] = json!(text(&f)?),
                        5 => r["apiVersion"] = json!(text(&f)?),
                        6 => r["controller"] = json!(number(&f) != 0),
                        7 => r["blockOwnerDeletion"] = json!(number(&f) != 0),
                        _ => {}
                    }
                }
                push(&mut m, "ownerReferences", r);
            }
            14 => push(&mut m, "finalizers", json!(text(&f)?)),
            _ => {}
        }
    }
    Ok(m)
}

/// Decodes a protobuf request body into the JSON object it stands for.
pub fn decode(body: &[u8]) -> Result<Value, String> {
    let envelope = body
        .strip_prefix(MAGIC)
        .ok_or("a protobuf body must start with the k8s magic prefix")?;
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
    for (n, f) in fields(envelope)? {
        match n {
            1 => {
                for (n, f) in fields(bytes(&f))? {
                    match n {
                        1 => api_version = text(&f)?,
                        2 => kind = text(&f)?,
                        _ => {}
                    }
                }
            }
            2 => raw = bytes(&f),
            _ => {}
        }
    }
    let mut obj = json!({"apiVersion": api_version, "kind": kind});
    if crate::proto_kinds::known(&kind) {
        if let Value::Object(m) = &mut obj {
            m.extend(crate::proto_kinds::decode(&kind, raw)?);
        }
        return Ok(obj);
    }
    for (n, f) in fields(raw)? {
        match (kind.as_str(), n) {
            ("Namespace" | "Secret" | "ConfigMap", 1) => obj["metadata"] = object_meta(bytes(&f))?,
            ("Namespace", 2) => {
                obj["spec"] = json!({});
                for (_, f) in fields(bytes(&f))? {
                    push(&mut obj["spec"], "finalizers", json!(text(&f)?));
                }
            }
            ("Secret", 2) => insert_entry(&mut obj, "data", &f, true)?,
            ("Secret", 3) => obj["type"] = json!(text(&f)?),
            ("Secret", 4) | ("ConfigMap", 2) => insert_entry(
                &mut obj,
                if kind == "Secret" {
                    "stringData"
                } else {
                    "data"
                },
                &f,
                false,
            )?,
            ("Secret", 5) | ("ConfigMap", 4) => obj["immutable"] = json!(number(&f) != 0),
            ("ConfigMap", 3) => insert_entry(&mut obj, "binaryData", &f, true)?,
            ("DeleteOptions", 1) => obj["gracePeriodSeconds"] = json!(number(&f)),
            ("DeleteOptions", 3) => obj["orphanDependents"] = json!(number(&f) != 0),
            ("DeleteOptions", 4) => obj["propagationPolicy"] = json!(text(&f)?),
            ("DeleteOptions", 5) => push(&mut obj, "dryRun", json!(text(&f)?)),
            ("Namespace" | "Secret" | "ConfigMap" | "DeleteOptions", _) => {}
            _ => {
                return Err(format!(
                    "the simulator reads {kind} only as JSON; send it as application/json"
                ));
            }
        }
    }
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(n: u64, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![((n << 3) | 2) as u8, payload.len() as u8];
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn decodes_a_secret() {
        let entry = [field(1, b"release"), field(2, b"\x01\x02")].concat();
        let label = [field(1, b"owner"), field(2, b"helm")].concat();
        let meta = [field(1, b"sh.helm.release.v1.demo.v1"), field(11, &label)].concat();
        let secret = [
            field(1, &meta),
            field(2, &entry),
            field(3, b"helm.sh/release.v1"),
        ]
        .concat();
        let type_meta = [field(1, b"v1"), field(2, b"Secret")].concat();
        let body = [MAGIC.to_vec(), field(1, &type_meta), field(2, &secret)].concat();
        let v = decode(&body).unwrap();
        assert_eq!(v["kind"], "Secret");
        assert_eq!(v["metadata"]["labels"]["owner"], "helm");
        assert_eq!(v["data"]["release"], "AQI=");
        assert_eq!(v["type"], "helm.sh/release.v1");
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        let type_meta = [field(1, b"apps/v1"), field(2, b"StatefulSet")].concat();
        let body = [
            MAGIC.to_vec(),
            field(1, &type_meta),
            field(2, &field(1, b"")),
        ]
        .concat();
        assert!(decode(&body).unwrap_err().contains("StatefulSet"));
        assert!(decode(b"{}").is_err());
    }
}
