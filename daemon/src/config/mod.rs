//! Configuration: `gantry.toml` (daemon settings and plugin grants), parsed with errors that
//! name file, line and column.

pub mod daemon;
pub mod duration;
pub mod error;
pub mod every_error;
pub mod template;
pub mod toml_walk;
pub mod workflow;

pub use daemon::DaemonConfig;
pub use error::ConfigError;

/// The largest configuration file read; anything bigger is a mistake or an attack.
pub const MAX_FILE_BYTES: u64 = 8 << 20;

/// Reads one configuration file, refusing what is not a regular file (a FIFO would block the
/// reader forever) or is larger than [`MAX_FILE_BYTES`]. `Ok(None)` when it does not exist.
pub fn read_file(path: &std::path::Path) -> Result<Option<String>, ConfigError> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ConfigError::whole_file(path, format!("cannot read: {e}"))),
    };
    if !meta.is_file() {
        return Err(ConfigError::whole_file(
            path,
            "not a regular file; configuration files must be plain files",
        ));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(ConfigError::whole_file(
            path,
            format!(
                "{} bytes is more than the {} MiB a configuration file may have",
                meta.len(),
                MAX_FILE_BYTES >> 20
            ),
        ));
    }
    let bytes = std::fs::read(path)
        .map_err(|e| ConfigError::whole_file(path, format!("cannot read: {e}")))?;
    String::from_utf8(bytes).map(Some).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let text = String::from_utf8_lossy(&e.as_bytes()[..at]).into_owned();
        ConfigError::at(path, &text, Some(at..at), "not valid UTF-8 here")
    })
}
