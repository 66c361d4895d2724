//! Configuration errors that point at the exact place to fix.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based; 0 when the problem is not at one place in the file.
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl ConfigError {
    pub fn at(
        file: &Path,
        source: &str,
        span: Option<Range<usize>>,
        message: impl Into<String>,
    ) -> Self {
        let (line, column) = span.map_or((0, 0), |s| line_col(source, s.start));
        ConfigError::located(file, (line, column), message)
    }

    /// An error at an already computed 1-based (line, column).
    pub fn located(
        file: &Path,
        (line, column): (usize, usize),
        message: impl Into<String>,
    ) -> Self {
        ConfigError {
            file: file.to_path_buf(),
            line,
            column,
            message: message.into(),
        }
    }

    pub fn whole_file(file: &Path, message: impl Into<String>) -> Self {
        ConfigError {
            file: file.to_path_buf(),
            line: 0,
            column: 0,
            message: message.into(),
        }
    }

    /// From a `toml` error, keeping its position but not its source excerpt.
    pub fn from_toml(file: &Path, source: &str, e: &toml::de::Error) -> Self {
        ConfigError::at(file, source, e.span(), e.message().trim_end())
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file.display(),
                self.line,
                self.column,
                self.message
            )
        }
    }
}

impl std::error::Error for ConfigError {}

/// 1-based line and column (in characters) of a byte offset. Scans the file once; to locate
/// many offsets in one file, build a [`LineIndex`] instead.
pub fn line_col(source: &str, offset: usize) -> (usize, usize) {
    LineIndex::new(source).line_col(source, offset)
}

/// The byte offset at which every line of a file starts, computed once per file so that
/// locating a key costs a binary search plus a scan of its own line, not a scan of everything
/// before it (which made reading a file with thousands of tasks quadratic).
#[derive(Debug, Clone)]
pub struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    pub fn new(source: &str) -> Self {
        let starts = std::iter::once(0)
            .chain(source.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        LineIndex { starts }
    }

    /// 1-based line and column (in characters) of a byte offset of `source`, the text this
    /// index was built from.
    pub fn line_col(&self, source: &str, offset: usize) -> (usize, usize) {
        let offset = source.floor_char_boundary(offset.min(source.len()));
        // The last line start at or before `offset`; `starts[0] == 0`, so there is one.
        let line = self.starts.partition_point(|&s| s <= offset).max(1);
        let start = self.starts[line - 1].min(offset);
        let column = source[start..offset].chars().count() + 1;
        (line, column)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_lines_and_columns() {
        let src = "a = 1\nbb = 2\n";
        assert_eq!(line_col(src, 0), (1, 1));
        assert_eq!(line_col(src, 6), (2, 1));
        assert_eq!(line_col(src, 8), (2, 3));
        assert_eq!(line_col(src, 5), (1, 6));
        assert_eq!(line_col(src, 12), (2, 7));
        assert_eq!(line_col(src, 13), (3, 1));
        assert_eq!(line_col(src, 99), (3, 1));
    }

    #[test]
    fn the_index_agrees_with_a_plain_scan() {
        let src = "é = 1\n\nname = \"ü\"\r\nlast";
        let index = LineIndex::new(src);
        for offset in 0..=src.len() + 2 {
            let before = &src[..src.floor_char_boundary(offset.min(src.len()))];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            assert_eq!(
                index.line_col(src, offset),
                (line, column),
                "offset {offset}"
            );
        }
    }
}
