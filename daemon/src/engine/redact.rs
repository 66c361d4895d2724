//! Masking secrets in what people read. A run collects the values of its sensitive outputs
//! as tasks produce them; every event message and task log line passes through the run's
//! redactor before it is written or sent anywhere.

use std::borrow::Cow;
use std::sync::RwLock;

use super::runner::MASK;

/// Values shorter than this are not masked: a secret of one or two characters cannot be told
/// apart from ordinary text, and masking every "1" would make logs unreadable.
pub const MIN_SECRET_LEN: usize = 3;

/// A line of a secret of several lines is masked on its own from this length: key material
/// (a PEM body's 64 characters, a token), not the short lines any text has (`true`,
/// `apiVersion: v1`), which masked everywhere would garble logs and diffs.
pub const MIN_SECRET_LINE_LEN: usize = 16;

#[derive(Debug, Default)]
pub struct Redactor {
    secrets: RwLock<Vec<String>>,
}

impl Redactor {
    /// From now on, `value` is shown as `***`, as it is and as logs carry it: escaped on one
    /// line (`\n`, `\t`). A value of several lines is also masked line by line, as a program
    /// prints it: each line long enough to be key material (not PEM armour such as
    /// `-----END PRIVATE KEY-----`).
    pub fn add(&self, value: &str) {
        if value.len() < MIN_SECRET_LEN {
            return;
        }
        let mut forms = vec![value.to_string()];
        if value.contains('\n') {
            forms.extend(
                value
                    .lines()
                    .map(str::trim)
                    .filter(|line| line.len() >= MIN_SECRET_LINE_LEN && !line.starts_with("-----"))
                    .map(str::to_string),
            );
        }
        let escaped: Vec<String> = forms
            .iter()
            .map(|form| crate::logging::escape_control(form))
            .filter(|escaped| matches!(escaped, Cow::Owned(_)))
            .map(Cow::into_owned)
            .collect();
        forms.extend(escaped);
        let Ok(mut secrets) = self.secrets.write() else {
            return;
        };
        for form in forms {
            if !secrets.contains(&form) {
                secrets.push(form);
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
    fn a_secret_of_several_lines_is_masked_escaped_and_by_its_key_lines() {
        let r = Redactor::default();
        r.add("-----BEGIN KEY-----\r\nMIIEvQIBADANBgkqhkiG\n\tab\tcdefghijklmnopq\nkind: Config\ntrue\n-----END KEY-----\n");
        assert_eq!(
            r.apply("key=-----BEGIN KEY-----\\r\\nMIIEvQIBADANBgkqhkiG\\n\\tab\\tcdefghijklmnopq\\nkind: Config\\ntrue\\n-----END KEY-----\\n."),
            "key=***."
        );
        assert_eq!(r.apply("MIIEvQIBADANBgkqhkiG"), "***");
        // As a program's line reaches the log: escaped.
        assert_eq!(r.apply("ab\\tcdefghijklmnopq"), "***");
        assert_eq!(
            r.apply("  -----END KEY----- kind: Config untrue"),
            "  -----END KEY----- kind: Config untrue"
        );
    }
}
