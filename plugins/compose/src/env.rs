//! Variables: `.env` and `env_file` files, and interpolation of `${VAR}` in compose values
//! as the compose specification defines it.

use std::collections::BTreeMap;

/// One `KEY=VALUE` of a dotenv file and its 1-based line.
pub type Pair = (String, String, u32);

/// Reads a dotenv file: `KEY=VALUE` lines, `#` comments, an optional `export ` prefix,
/// single quotes taken literally, double quotes with `\n`, `\t`, `\"` and `\\` escapes,
/// and `#` after a blank ending an unquoted value. Errors name the 1-based line.
pub fn parse_dotenv(text: &str) -> Result<Vec<Pair>, (u32, String)> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line_no = i as u32 + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
        let Some((key, value)) = line.split_once('=') else {
            // A bare name passes the variable through from the environment in compose;
            // without a host environment it has no value, so it is left out.
            if is_name(line) {
                continue;
            }
            return Err((line_no, format!("`{line}` is not KEY=VALUE")));
        };
        let key = key.trim();
        if !is_name(key) {
            return Err((line_no, format!("`{key}` is not a variable name")));
        }
        let value = value.trim();
        let value = if let Some(rest) = value.strip_prefix('\'') {
            match rest.find('\'') {
                Some(end) => rest[..end].to_string(),
                None => return Err((line_no, "unterminated single quote".into())),
            }
        } else if let Some(rest) = value.strip_prefix('"') {
            let mut s = String::new();
            let mut chars = rest.chars();
            let mut closed = false;
            while let Some(c) = chars.next() {
                match c {
                    '"' => {
                        closed = true;
                        break;
                    }
                    '\\' => match chars.next() {
                        Some('n') => s.push('\n'),
                        Some('t') => s.push('\t'),
                        Some(other) => s.push(other),
                        None => s.push('\\'),
                    },
                    c => s.push(c),
                }
            }
            if !closed {
                return Err((line_no, "unterminated double quote".into()));
            }
            s
        } else {
            match value.find(" #") {
                Some(i) => value[..i].trim_end().to_string(),
                None => value.to_string(),
            }
        };
        out.push((key.to_string(), value, line_no));
    }
    Ok(out)
}

fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Variables for interpolation, and the names used without a value (compose substitutes an
/// empty string and warns).
#[derive(Debug, Default)]
pub struct Interpolator {
    pub vars: BTreeMap<String, String>,
    pub unset: std::collections::BTreeSet<String>,
}

impl Interpolator {
    pub fn new(vars: BTreeMap<String, String>) -> Interpolator {
        Interpolator {
            vars,
            unset: Default::default(),
        }
    }

    /// Replaces `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?error}`,
    /// `${VAR?error}`, `${VAR:+alt}`, `${VAR+alt}`; `$$` is a literal `$`. Defaults and
    /// alternatives are interpolated themselves.
    pub fn interpolate(&mut self, text: &str) -> Result<String, String> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(i) = rest.find('$') {
            out.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            if let Some(r) = after.strip_prefix('$') {
                out.push('$');
                rest = r;
            } else if let Some(body) = after.strip_prefix('{') {
                let end =
                    closing_brace(body).ok_or_else(|| format!("unterminated `${{` in `{text}`"))?;
                out.push_str(&self.expand(&body[..end])?);
                rest = &body[end + 1..];
            } else {
                let len = after
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .count();
                if len == 0 || after.starts_with(|c: char| c.is_ascii_digit()) {
                    // A lone `$` is kept, as compose keeps it.
                    out.push('$');
                    rest = after;
                } else {
                    out.push_str(&self.lookup(&after[..len]));
                    rest = &after[len..];
                }
            }
        }
        out.push_str(rest);
        Ok(out)
    }

    fn lookup(&mut self, name: &str) -> String {
        match self.vars.get(name) {
            Some(v) => v.clone(),
            None => {
                self.unset.insert(name.to_string());
                String::new()
            }
        }
    }

    fn expand(&mut self, body: &str) -> Result<String, String> {
        let name_len = body
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .count();
        let (name, op) = body.split_at(name_len);
        if !is_name(name) {
            return Err(format!("`${{{body}}}` is not a valid variable reference"));
        }
        let value = self.vars.get(name).cloned();
        let set = value.is_some();
        let nonempty = value.as_deref().is_some_and(|v| !v.is_empty());
        let (colon, op) = match op.strip_prefix(':') {
            Some(o) => (true, o),
            None => (false, op),
        };
        let present = if colon { nonempty } else { set };
        if op.is_empty() && !colon {
            return Ok(self.lookup(name));
        }
        let (kind, arg) = op.split_at(op.chars().next().map_or(0, char::len_utf8));
        match kind {
            "-" if present => Ok(value.unwrap_or_default()),
            "-" => self.interpolate(arg),
            "?" if present => Ok(value.unwrap_or_default()),
            "?" => {
                let why = self.interpolate(arg)?;
                Err(if why.is_empty() {
                    format!("required variable {name} is missing a value")
                } else {
                    format!("required variable {name} is missing a value: {why}")
                })
            }
            "+" if present => self.interpolate(arg),
            "+" => Ok(String::new()),
            _ => Err(format!("`${{{body}}}` is not a valid variable reference")),
        }
    }
}

/// The index of the `}` that closes a `${` whose body starts `body`, nested ones skipped.
fn closing_brace(body: &str) -> Option<usize> {
    let mut depth = 0usize;
    let bytes = body.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 1;
            }
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Interpolator {
        Interpolator::new(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn interpolation_follows_the_specification() {
        let mut i = vars(&[("TAG", "1.2"), ("EMPTY", "")]);
        assert_eq!(i.interpolate("app:${TAG}").unwrap(), "app:1.2");
        assert_eq!(i.interpolate("app:$TAG-x").unwrap(), "app:1.2-x");
        assert_eq!(i.interpolate("${EMPTY:-d}").unwrap(), "d");
        assert_eq!(i.interpolate("${EMPTY-d}").unwrap(), "");
        assert_eq!(i.interpolate("${NOPE:-${TAG}}").unwrap(), "1.2");
        assert_eq!(i.interpolate("${TAG:+set}").unwrap(), "set");
        assert_eq!(i.interpolate("$$TAG costs $5").unwrap(), "$TAG costs $5");
        let e = i.interpolate("${DB_PASSWORD:?set it in .env}").unwrap_err();
        assert!(
            e.contains("DB_PASSWORD") && e.contains("set it in .env"),
            "{e}"
        );
        assert_eq!(i.interpolate("${MISSING}").unwrap(), "");
        assert!(i.unset.contains("MISSING"));
        assert!(i.interpolate("${TAG").is_err());
    }

    #[test]
    fn dotenv_files_are_read() {
        let text = "# c\nexport A=1\nB='x y'\nC=\"a\\nb\"\nD=plain # comment\n\nPASS\n";
        let got = parse_dotenv(text).unwrap();
        let m: BTreeMap<_, _> = got
            .iter()
            .map(|(k, v, _)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(m["A"], "1");
        assert_eq!(m["B"], "x y");
        assert_eq!(m["C"], "a\nb");
        assert_eq!(m["D"], "plain");
        assert_eq!(parse_dotenv("ok=1\n1bad=2\n").unwrap_err().0, 2);
    }
}
