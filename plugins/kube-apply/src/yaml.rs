//! Reading manifests the way kubectl reads them, so that a file gantry applies means what it
//! means to `kubectl apply`: documents split on `---` lines, YAML 1.1 scalars (`0644` is
//! octal, 420; `yes`/`no` are booleans, as sigs.k8s.io/yaml decodes them), `List` objects
//! contributing their items. Every object remembers the file and line it came from, and every
//! error names them, so a broken manifest set is refused before anything is applied.

use std::fmt;

use serde_json::Value;

/// Where an object or a problem is: a file (relative to the task's source) and a 1-based line.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Origin {
    pub file: String,
    pub line: u32,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.file)
        } else {
            write!(f, "{}:{}", self.file, self.line)
        }
    }
}

/// A manifest that cannot be read, with its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub file: String,
    pub line: u32,
    pub column: u32,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (0, _) => write!(f, "{}: {}", self.file, self.message),
            (l, 0) => write!(f, "{}:{l}: {}", self.file, self.message),
            (l, c) => write!(f, "{}:{l}:{c}: {}", self.file, self.message),
        }
    }
}

impl std::error::Error for ParseError {}

/// One object to apply and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub origin: Origin,
    pub object: Value,
}

/// One YAML document of a stream: its text and the line of the file it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document<'a> {
    pub first_line: u32,
    pub text: &'a str,
}

impl Document<'_> {
    /// True when the document holds nothing but blank lines and comments.
    pub fn is_empty(&self) -> bool {
        self.text.lines().all(|l| {
            let t = l.trim();
            t.is_empty() || t.starts_with('#')
        })
    }

    /// The value of a `# Source: PATH` comment (what `helm template` writes above each
    /// document), telling which template an object came from.
    pub fn source_comment(&self) -> Option<&str> {
        self.text
            .lines()
            .map(str::trim)
            .take_while(|l| l.is_empty() || l.starts_with('#'))
            .find_map(|l| l.strip_prefix("# Source:"))
            .map(str::trim)
    }
}

/// Splits a stream as kubectl's YAML reader does: a line that starts with `---` followed by
/// nothing but blanks ends one document and starts the next.
pub fn documents(text: &str) -> Vec<Document<'_>> {
    let mut out = Vec::new();
    let mut start = 0usize;
    let mut first_line = 1u32;
    let mut offset = 0usize;
    let mut line_no = 0u32;
    for line in text.split_inclusive('\n') {
        line_no += 1;
        let is_separator = line
            .strip_prefix("---")
            .is_some_and(|rest| rest.trim().is_empty());
        if is_separator {
            out.push(Document {
                first_line,
                text: &text[start..offset],
            });
            start = offset + line.len();
            first_line = line_no + 1;
        }
        offset += line.len();
    }
    out.push(Document {
        first_line,
        text: &text[start..],
    });
    out
}

/// Reads one document with kubectl's YAML 1.1 scalars; errors carry the line in the file.
pub fn read_document(file: &str, doc: &Document) -> Result<Value, ParseError> {
    let options = serde_saphyr::options! {
        legacy_octal_numbers: true,
    };
    serde_saphyr::from_str_with_options::<Value>(doc.text, options).map_err(|e| {
        let (line, column) = e
            .location()
            .map(|l| (l.line() as u32, l.column() as u32))
            .unwrap_or((0, 0));
        let message = e.to_string();
        // The parser's own message repeats a position relative to the document; ours is
        // relative to the file, so keep only the first line of its text.
        let message = message.lines().next().unwrap_or_default().to_string();
        ParseError {
            file: file.to_string(),
            line: if line == 0 {
                doc.first_line
            } else {
                doc.first_line + line - 1
            },
            column,
            message: format!("not valid YAML: {message}"),
        }
    })
}

/// Parses a file's documents into objects; `List` objects contribute their items. Every
/// object must be a mapping with `apiVersion`, `kind` and `metadata.name`.
pub fn parse(file: &str, text: &str) -> Result<Vec<Manifest>, ParseError> {
    let mut out = Vec::new();
    for doc in documents(text) {
        if doc.is_empty() {
            continue;
        }
        let value = read_document(file, &doc)?;
        let origin = Origin {
            file: file.to_string(),
            line: first_content_line(&doc),
        };
        collect(value, origin, &mut out)?;
    }
    Ok(out)
}

/// The line of a document's first line that is not blank or a comment.
pub fn first_content_line(doc: &Document) -> u32 {
    let skipped = doc
        .text
        .lines()
        .take_while(|l| {
            let t = l.trim();
            t.is_empty() || t.starts_with('#')
        })
        .count() as u32;
    doc.first_line + skipped
}

/// Adds `value` (one object or a `List`) to `out`, checking the fields every object needs.
pub fn collect(value: Value, origin: Origin, out: &mut Vec<Manifest>) -> Result<(), ParseError> {
    match value {
        Value::Null => Ok(()),
        Value::Object(ref map)
            if map.get("kind").and_then(Value::as_str) == Some("List")
                || map
                    .get("kind")
                    .and_then(Value::as_str)
                    .is_some_and(|k| k.ends_with("List") && map.contains_key("items")) =>
        {
            let items = map
                .get("items")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for item in items {
                out.push(check(origin.clone(), item)?);
            }
            Ok(())
        }
        Value::Object(_) => {
            out.push(check(origin, value)?);
            Ok(())
        }
        _ => Err(error_at(&origin, "a manifest must be a mapping")),
    }
}

fn error_at(origin: &Origin, message: &str) -> ParseError {
    ParseError {
        file: origin.file.clone(),
        line: origin.line,
        column: 0,
        message: message.to_string(),
    }
}

fn check(origin: Origin, object: Value) -> Result<Manifest, ParseError> {
    if !object.is_object() {
        return Err(error_at(&origin, "a List item must be a mapping"));
    }
    for (ptr, field) in [
        ("/apiVersion", "apiVersion"),
        ("/kind", "kind"),
        ("/metadata/name", "metadata.name"),
    ] {
        if object
            .pointer(ptr)
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err(error_at(&origin, &format!("`{field}` is required")));
        }
    }
    Ok(Manifest { origin, object })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn documents_split_on_separator_lines_only() {
        let text = "a: 1\n---\nb: 2\n--- \n# just a comment\n---\nc: '---'\n";
        let docs = documents(text);
        assert_eq!(docs.len(), 4);
        assert_eq!(docs[1].first_line, 3);
        assert!(docs[2].is_empty());
        assert_eq!(docs[3].first_line, 7);
        assert_eq!(docs[3].text, "c: '---'\n");
    }

    #[test]
    fn scalars_are_read_as_kubectl_reads_them() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\nmode: 0644\nhex: 0x1F\nflag: yes\nplain: 644\n";
        let ms = parse("a.yaml", text).unwrap();
        assert_eq!(ms[0].object["mode"], json!(420));
        assert_eq!(ms[0].object["hex"], json!(31));
        assert_eq!(ms[0].object["flag"], json!(true));
        assert_eq!(ms[0].object["plain"], json!(644));
    }

    #[test]
    fn errors_name_the_file_and_the_line() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\n  labels: [unclosed\n";
        let err = parse("k8s/app.yaml", text).unwrap_err();
        assert_eq!(err.file, "k8s/app.yaml");
        assert!(err.line >= 9, "{err}");
        assert!(err.to_string().starts_with("k8s/app.yaml:"), "{err}");

        let err = parse(
            "x.yaml",
            "# head\n---\n\napiVersion: v1\nkind: ConfigMap\nmetadata: {}\n",
        )
        .unwrap_err();
        assert_eq!(err.line, 4, "{err}");
        assert!(err.message.contains("metadata.name"), "{err}");
        assert!(parse("x.yaml", "- 1\n- 2\n").is_err());
    }

    #[test]
    fn lists_contribute_their_items() {
        let text = "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: a}}\n- {apiVersion: v1, kind: Secret, metadata: {name: b}}\n";
        let ms = parse("l.yaml", text).unwrap();
        assert_eq!(ms.len(), 2);
        assert_eq!(ms[1].object["kind"], "Secret");
        assert_eq!(ms[1].origin.to_string(), "l.yaml:1");
    }

    #[test]
    fn helm_source_comments_are_found() {
        let text = "---\n# Source: web/templates/svc.yaml\napiVersion: v1\nkind: Service\nmetadata: {name: s}\n";
        let docs = documents(text);
        assert_eq!(docs[1].source_comment(), Some("web/templates/svc.yaml"));
        assert_eq!(first_content_line(&docs[1]), 3);
    }
}
