//! Masking secrets in what people read. A run collects the values of its sensitive outputs
//! as tasks produce them; every event message and task log line passes through the run's
//! redactor before it is written or sent anywhere.

use std::borrow::Cow;
use std::sync::RwLock;

use super::runner::MASK;

/// Values shorter than this are not masked: a secret of one or two characters cannot be told
/// apart from ordinary text, and masking every "1" would make logs unreadable.
pub const MIN_SECRET_LEN: usize = 3;

#[derive(Debug, Default)]
pub struct Redactor {
    secrets: RwLock<Vec<String>>,
}

impl Redactor {
    /// From now on, `value` is shown as `***`. A value of several lines is also masked as
    /// logs carry it: escaped on one line (`\n`), and line by line, as a program prints it.
    pub fn add(&self, value: &str) {
        let escaped = crate::logging::escape_control(value);
        let forms = std::iter::once(value)
            .chain((escaped != value).then_some(escaped.as_ref()))
            .chain(
                value
                    .lines()
                    .filter(|_| value.contains('\n'))
                    .map(str::trim),
            )
            .filter(|form| form.len() >= MIN_SECRET_LEN);
        let Ok(mut secrets) = self.secrets.write() else {
            return;
        };
        for form in forms {
            if !secrets.iter().any(|s| s == form) {
                secrets.push(form.to_string());
            }
        }
        // Longest first, so a secret that contains another is masked whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }

    /// `text` with every known secret masked.
    pub fn apply<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let Ok(secrets) = self.secrets.read() else {
            return Cow::Borrowed(text);
        };
        let mut out = Cow::Borrowed(text);
        for secret in secrets.iter() {
            if out.contains(secret.as_str()) {
                out = Cow::Owned(out.replace(secret.as_str(), MASK));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_known_values_longest_first() {
        let r = Redactor::default();
        r.add("s3cret");
        r.add("s3cret-and-more");
        r.add("ab");
        assert_eq!(
            r.apply("token=s3cret-and-more, again s3cret, ab"),
            "token=***, again ***, ab"
        );
        assert!(matches!(r.apply("nothing here"), Cow::Borrowed(_)));
    }

    #[test]
    fn a_secret_of_several_lines_is_masked_escaped_and_line_by_line() {
        let r = Redactor::default();
        r.add("-----BEGIN KEY-----\r\nMIIEvQIBADANBg\n-----END KEY-----\n");
        assert_eq!(
            r.apply("key=-----BEGIN KEY-----\\r\\nMIIEvQIBADANBg\\n-----END KEY-----\\n."),
            "key=***."
        );
        assert_eq!(r.apply("MIIEvQIBADANBg"), "***");
        assert_eq!(r.apply("  -----END KEY-----"), "  ***");
    }
}
