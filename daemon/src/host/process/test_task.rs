//! A task's directories and a grant of the system's programs, for tests that confine and
//! start programs.

use std::path::PathBuf;

use super::grant::ProgramGrant;
use crate::host::TaskDirs;

pub struct Task {
    _tmp: tempfile::TempDir,
    pub dirs: TaskDirs,
    pub grant: ProgramGrant,
}

/// A task with a source and a scratch directory of its own, whose programs may run what is
/// under `/usr`, `/bin` and the library directories.
pub fn task() -> Task {
    let tmp = tempfile::tempdir().unwrap();
    let dirs = TaskDirs {
        source: tmp.path().join("src"),
        scratch: Some(tmp.path().join("scratch")),
        workspace: None,
        spoiled: Default::default(),
    };
    std::fs::create_dir_all(&dirs.source).unwrap();
    std::fs::create_dir_all(tmp.path().join("scratch")).unwrap();
    let grant = ProgramGrant {
        runnable: ["/usr", "/bin", "/lib", "/lib64"]
            .into_iter()
            .map(PathBuf::from)
            .collect(),
        ..ProgramGrant::default()
    };
    Task {
        _tmp: tmp,
        dirs,
        grant,
    }
}
