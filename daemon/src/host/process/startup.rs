//! The files a granted program needs to be executed at all: the program itself, the ELF
//! loader named in its `PT_INTERP` header, and for a script the interpreter of its `#!` line
//! (following `/usr/bin/env NAME`). Only these, and what the grant's `exec_paths` add, may be
//! executed by a confined program: a program granted alone cannot start another one.

use std::io::Read;
use std::path::{Path, PathBuf};

/// The longest `#!` line read.
const MAX_SHEBANG: usize = 256;
/// Bytes of an executable read to find its loader; ELF program headers sit at the start.
const MAX_HEADER_READ: u64 = 64 * 1024;
/// Script interpreters followed through (a script run by a script run by a binary).
const MAX_INTERPRETER_DEPTH: usize = 3;

/// Where programs named by an `env` shebang are looked up (the PATH programs get).
const SEARCH_PATH: &str = super::SAFE_PATH;

/// `program` (canonical) and every file the kernel opens to execute it.
pub fn files_to_start(program: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    add(program, &mut files, 0);
    files
}

fn add(path: &Path, files: &mut Vec<PathBuf>, depth: usize) {
    let Ok(real) = path.canonicalize() else {
        return;
    };
    if files.contains(&real) {
        return;
    }
    files.push(real.clone());
    let Ok(head) = read_head(&real) else {
        return;
    };
    if let Some(loader) = elf_interpreter(&head) {
        add(&loader, files, depth);
    } else if depth < MAX_INTERPRETER_DEPTH {
        for interpreter in script_interpreters(&head) {
            add(&interpreter, files, depth + 1);
        }
    }
}

fn read_head(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_HEADER_READ)
        .read_to_end(&mut head)?;
    Ok(head)
}

/// The loader an ELF executable asks for, if it is dynamically linked.
fn elf_interpreter(data: &[u8]) -> Option<PathBuf> {
    use object::read::elf::{FileHeader, ProgramHeader};
    fn of<H: FileHeader>(data: &[u8]) -> Option<PathBuf> {
        let header = H::parse(data).ok()?;
        let endian = header.endian().ok()?;
        header
            .program_headers(endian, data)
            .ok()?
            .iter()
            .find_map(|ph| ph.interpreter(endian, data).ok().flatten())
            .and_then(|raw| std::str::from_utf8(raw).ok())
            .map(PathBuf::from)
    }
    match data.get(4) {
        Some(1) => of::<object::elf::FileHeader32<object::Endianness>>(data),
        Some(2) => of::<object::elf::FileHeader64<object::Endianness>>(data),
        _ => None,
    }
}

/// The interpreter of a `#!` script; for `#!/usr/bin/env NAME`, env and NAME as found on
/// the PATH programs get.
fn script_interpreters(head: &[u8]) -> Vec<PathBuf> {
    let Some(line) = head.strip_prefix(b"#!") else {
        return Vec::new();
    };
    let line = &line[..line.len().min(MAX_SHEBANG)];
    let Some(line) = line
        .iter()
        .position(|&b| b == b'\n')
        .and_then(|end| std::str::from_utf8(&line[..end]).ok())
    else {
        return Vec::new();
    };
    let mut words = line.split_whitespace();
    let Some(interpreter) = words.next().map(PathBuf::from) else {
        return Vec::new();
    };
    let mut found = vec![interpreter.clone()];
    if interpreter.file_name().is_some_and(|n| n == "env")
        && let Some(name) = words.find(|w| !w.starts_with('-'))
        && let Some(path) = SEARCH_PATH
            .split(':')
            .map(|dir| Path::new(dir).join(name))
            .find(|p| p.is_file())
    {
        found.push(path);
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dynamic_program_needs_its_loader() {
        let sh = Path::new("/bin/sh");
        let files = files_to_start(sh);
        assert_eq!(files[0], sh.canonicalize().unwrap());
        assert!(
            files.iter().any(|f| f
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("ld-"))),
            "{files:?}"
        );
    }

    #[test]
    fn a_script_needs_its_interpreter() {
        let dir = tempfile::tempdir().unwrap();
        let direct = dir.path().join("direct");
        std::fs::write(&direct, "#!/bin/sh -e\necho hi\n").unwrap();
        let via_env = dir.path().join("via-env");
        std::fs::write(&via_env, "#!/usr/bin/env -S sh -e\necho hi\n").unwrap();
        let sh = Path::new("/bin/sh").canonicalize().unwrap();
        assert!(files_to_start(&direct).contains(&sh));
        let through_env = files_to_start(&via_env);
        assert!(
            through_env.iter().any(|f| f.ends_with("env")),
            "{through_env:?}"
        );
        assert!(through_env.contains(&sh), "{through_env:?}");
        assert!(script_interpreters(b"no shebang").is_empty());
    }
}
