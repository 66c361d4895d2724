//! `${secrets.NAME}`: values the operator hands the daemon without writing them into a
//! workflow or its environment. They are read, when a task needs them, from systemd
//! credentials (`LoadCredential=` / `LoadCredentialEncrypted=`, found in
//! `$CREDENTIALS_DIRECTORY`) or from `[daemon] secrets_dir`, a directory only the daemon's
//! user may read. A value read joins the run's redactor before it is used, so it is masked in
//! every log, event and error; history records the reference, never the value.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The largest secret read; a bigger file is refused rather than truncated.
pub const MAX_SECRET_BYTES: u64 = 64 * 1024;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SecretError {
    #[error(
        "`{0}` is not a secret name: use letters, digits, `_`, `-` and `.`, not starting with `.`"
    )]
    BadName(String),
    #[error(
        "secret `{name}` was not found: put it in a file named {name} in {where_}, or give the daemon a systemd credential of that name (LoadCredential={name}:PATH)"
    )]
    Missing { name: String, where_: String },
    #[error("secret `{name}`: {path}: {reason}")]
    Unreadable {
        name: String,
        path: PathBuf,
        reason: String,
    },
    #[error("{path} holds secrets but {reason}; {fix}")]
    NotPrivate {
        path: PathBuf,
        reason: String,
        fix: String,
    },
}

/// Where secrets are looked up, first match wins; values are read once per store.
#[derive(Debug, Default)]
pub struct SecretStore {
    /// systemd's credentials directory, trusted as systemd made it.
    credentials: Option<PathBuf>,
    /// The operator's directory, checked to be private before each read.
    dir: Option<PathBuf>,
    read: Mutex<BTreeMap<String, String>>,
}

impl SecretStore {
    /// The daemon's sources: `$CREDENTIALS_DIRECTORY` and `secrets_dir` (relative to the
    /// configuration directory).
    pub fn new(config_dir: &Path, secrets_dir: Option<&Path>) -> SecretStore {
        SecretStore {
            credentials: std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from),
            dir: secrets_dir.map(|d| config_dir.join(d)),
            read: Mutex::default(),
        }
    }

    /// The value of secret `name`.
    pub fn get(&self, name: &str) -> Result<String, SecretError> {
        if !valid_name(name) {
            return Err(SecretError::BadName(name.to_string()));
        }
        if let Some(value) = self.read.lock().ok().and_then(|r| r.get(name).cloned()) {
            return Ok(value);
        }
        let value = self.read_value(name)?;
        if let Ok(mut read) = self.read.lock() {
            read.insert(name.to_string(), value.clone());
        }
        Ok(value)
    }

    /// The value of secret `name`, masked by `redactor` from now on: the one way a secret
    /// is handed to a task, so none reaches a person unmasked.
    pub fn reveal(
        &self,
        name: &str,
        redactor: &crate::engine::redact::Redactor,
    ) -> Result<String, SecretError> {
        let value = self.get(name)?;
        redactor.add(&value);
        Ok(value)
    }

    fn read_value(&self, name: &str) -> Result<String, SecretError> {
        if let Some(dir) = &self.credentials
            && let Some(value) = read_file(name, &dir.join(name))?
        {
            return Ok(value);
        }
        if let Some(dir) = &self.dir {
            check_private(dir)?;
            if let Some(value) = read_file(name, &dir.join(name))? {
                return Ok(value);
            }
        }
        let mut places: Vec<String> = Vec::new();
        if let Some(d) = &self.credentials {
            places.push(format!("$CREDENTIALS_DIRECTORY ({})", d.display()));
        }
        if let Some(d) = &self.dir {
            places.push(d.display().to_string());
        }
        Err(SecretError::Missing {
            name: name.to_string(),
            where_: if places.is_empty() {
                "the directory named by [daemon] secrets_dir in gantry.toml".into()
            } else {
                places.join(" or ")
            },
        })
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// The secret in `path`, without one trailing newline; `None` when there is no such file.
fn read_file(name: &str, path: &Path) -> Result<Option<String>, SecretError> {
    let unreadable = |reason: String| SecretError::Unreadable {
        name: name.to_string(),
        path: path.to_path_buf(),
        reason,
    };
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(unreadable(e.to_string())),
    };
    if !meta.is_file() {
        return Err(unreadable("not a regular file".into()));
    }
    if meta.len() > MAX_SECRET_BYTES {
        return Err(unreadable(format!(
            "{} bytes, more than the {MAX_SECRET_BYTES} a secret may have",
            meta.len()
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| unreadable(e.to_string()))?;
    let mut text = String::from_utf8(bytes).map_err(|_| unreadable("not UTF-8 text".into()))?;
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    Ok(Some(text))
}

/// Refuses a secrets directory anyone but the daemon's user (or root) owns or can read.
fn check_private(dir: &Path) -> Result<(), SecretError> {
    let not_private = |reason: String, fix: String| SecretError::NotPrivate {
        path: dir.to_path_buf(),
        reason,
        fix,
    };
    let meta = std::fs::metadata(dir).map_err(|e| {
        not_private(
            format!("it cannot be read ({e})"),
            "create it with mode 0700".into(),
        )
    })?;
    // SAFETY: geteuid cannot fail and touches no memory.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me && meta.uid() != 0 {
        return Err(not_private(
            format!("it is owned by uid {}", meta.uid()),
            format!(
                "chown it to the daemon's user (uid {me}): chown {me} {}",
                dir.display()
            ),
        ));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(not_private(
            format!("its mode is {:04o}", meta.mode() & 0o7777),
            format!("chmod 700 {}", dir.display()),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn store(dir: &Path) -> SecretStore {
        SecretStore {
            credentials: None,
            dir: Some(dir.to_path_buf()),
            read: Mutex::default(),
        }
    }

    #[test]
    fn reads_a_private_directory_and_refuses_an_open_one() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("secrets");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::write(dir.join("db-password"), "hunter22\n").unwrap();
        assert_eq!(store(&dir).get("db-password").unwrap(), "hunter22");
        assert!(matches!(
            store(&dir).get("nope"),
            Err(SecretError::Missing { .. })
        ));
        assert!(matches!(
            store(&dir).get("../etc/passwd"),
            Err(SecretError::BadName(_))
        ));
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let e = store(&dir).get("db-password").unwrap_err();
        assert!(e.to_string().contains("chmod 700"), "{e}");
    }
}
