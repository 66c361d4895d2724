//! The Debian package installs: built by `packaging/build-deb.sh` from this build's binary
//! and installed with dpkg into a scratch root (as bootstrapping tools do), where its
//! maintainer scripts create the `gantry` user and the directories the units expect.

use std::path::Path;
use std::process::Command;

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn the_debian_package_installs_the_binary_units_user_and_directories() {
    if !have("dpkg-deb") || !have("dpkg") || !have("systemd-sysusers") {
        eprintln!("skipped: dpkg and systemd-sysusers are needed");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/build-deb.sh");
    // The test binary carries its debug info: compressing it would only take time.
    let built = Command::new(&script)
        .env("DEB_COMPRESSION", "none")
        .arg(env!("CARGO_BIN_EXE_gantry"))
        .arg(tmp.path().join("out"))
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let deb = String::from_utf8_lossy(&built.stdout).trim().to_string();
    assert!(deb.ends_with(".deb"), "{deb}");

    let root = tmp.path().join("root");
    std::fs::create_dir_all(root.join("var/lib/dpkg/info")).unwrap();
    std::fs::create_dir_all(root.join("var/lib/dpkg/updates")).unwrap();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("var/lib/dpkg/status"), "").unwrap();
    let installed = Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .args([
            "--force-script-chrootless",
            "--force-depends",
            "--log=/dev/null",
            "-i",
            &deb,
        ])
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&installed.stdout),
        String::from_utf8_lossy(&installed.stderr)
    );
    assert!(installed.status.success(), "{said}");
    for file in [
        "usr/bin/gantry",
        "usr/lib/systemd/system/gantry.service",
        "usr/lib/systemd/system/gantry.socket",
        "usr/lib/sysusers.d/gantry.conf",
        "usr/lib/tmpfiles.d/gantry.conf",
        "usr/share/bash-completion/completions/gantry",
    ] {
        assert!(root.join(file).is_file(), "{file} missing: {said}");
    }
    for dir in [
        "etc/gantry/workflows",
        "etc/gantry/plugins",
        "var/lib/gantry",
    ] {
        assert!(root.join(dir).is_dir(), "{dir} missing: {said}");
    }
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap_or_default();
    assert!(passwd.lines().any(|l| l.starts_with("gantry:")), "{passwd}");
    let version = Command::new(root.join("usr/bin/gantry"))
        .arg("version")
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&version.stdout)
            .contains(&format!("gantry {}", env!("CARGO_PKG_VERSION"))),
        "{version:?}"
    );
}
