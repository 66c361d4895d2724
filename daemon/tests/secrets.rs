//! `${secrets.NAME}`: read from systemd credentials or a private secrets directory, handed
//! to the task, masked wherever a person reads, and never written to the state directory.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

const SECRET: &str = "pa55-w0rd-9c1e";

struct Site {
    tmp: tempfile::TempDir,
}

impl Site {
    fn new(secrets_dir_mode: u32) -> Site {
        let tmp = tempfile::tempdir().expect("tempdir");
        let cfg = tmp.path().join("config");
        std::fs::create_dir_all(cfg.join("workflows")).expect("workflows");
        let secrets = cfg.join("secrets");
        std::fs::create_dir_all(&secrets).expect("secrets");
        std::fs::write(secrets.join("db-password"), format!("{SECRET}\n")).expect("secret");
        std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(secrets_dir_mode))
            .expect("chmod");
        std::fs::write(
            cfg.join("gantry.toml"),
            "[daemon]\nsecrets_dir = \"secrets\"\n\n[plugins.exec]\nexec = [\"sh\"]\n",
        )
        .expect("gantry.toml");
        std::fs::write(
            cfg.join("workflows/app.toml"),
            "[jobs.use]\nkind = \"exec\"\n\
             command = [\"sh\", \"-c\", \"echo connecting with $DB_PASSWORD; echo ::gantry-outputs::; echo url=db://app:$DB_PASSWORD@db\"]\n\
             env = { DB_PASSWORD = \"${secrets.db-password}\" }\n\n\
             [jobs.token]\nkind = \"exec\"\n\
             command = [\"sh\", \"-c\", \"test -n \\\"$T\\\" && echo token-present\"]\n\
             env = { T = \"${secrets.api-token}\" }\n\n\
             [[steps]]\nname = \"s\"\ntasks = [\"jobs.use\", \"jobs.token\"]\n",
        )
        .expect("workflow");
        Site { tmp }
    }

    fn config(&self) -> PathBuf {
        self.tmp.path().join("config")
    }

    fn state(&self) -> PathBuf {
        self.tmp.path().join("state")
    }
}

#[test]
fn a_secret_reaches_the_task_and_nothing_a_person_or_the_state_directory_keeps() {
    let site = Site::new(0o700);
    let creds = site.tmp.path().join("credentials");
    std::fs::create_dir_all(&creds).expect("credentials");
    std::fs::write(creds.join("api-token"), "tok-from-systemd-77").expect("credential");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args(["--config", site.config().to_str().unwrap()])
        .args(["--state", site.state().to_str().unwrap()])
        .args(["run", "app"])
        .env("CREDENTIALS_DIRECTORY", &creds)
        .output()
        .expect("run gantry");
    let (code, printed) = common::daemon::code_and_text(&out);
    assert_eq!(code, 0, "{printed}");
    let logs = common::read_logs(&site.state());
    assert!(logs.contains("connecting with ***"), "{logs}");
    assert!(logs.contains("token-present"), "{logs}");
    let (_, shown) = common::gantry(&site.config(), &site.state(), &["runs"]);
    let kept = format!("{printed}\n{shown}\n{}", common::text_under(&site.state()));
    assert!(
        !kept.contains(SECRET),
        "the secret was written or shown:\n{kept}"
    );
    assert!(
        !kept.contains("tok-from-systemd-77"),
        "the credential leaked"
    );
    assert!(
        common::text_under(&site.state()).contains("${secrets.db-password}"),
        "history should record the reference"
    );
}

#[test]
fn a_secrets_directory_others_can_read_is_refused_with_the_fix() {
    let site = Site::new(0o755);
    let (code, printed) = common::gantry(&site.config(), &site.state(), &["run", "app"]);
    assert_ne!(code, 0, "{printed}");
    assert!(printed.contains("chmod 700"), "{printed}");
    assert!(!printed.contains(SECRET), "{printed}");
}

#[test]
fn a_missing_secret_fails_its_task_naming_where_to_put_it() {
    let site = Site::new(0o700);
    let (code, printed) = common::gantry(&site.config(), &site.state(), &["run", "app"]);
    assert_ne!(code, 0, "{printed}");
    assert!(
        printed.contains("secret `api-token` was not found"),
        "{printed}"
    );
}

#[test]
fn no_task_source_may_hold_the_secrets_directory() {
    let site = Site::new(0o700);
    std::fs::write(
        site.config().join("workflows/app.toml"),
        "[jobs.peek]\nkind = \"exec\"\nsource = \"secrets\"\ncommand = [\"sh\", \"-c\", \"true\"]\n\n[[steps]]\nname = \"s\"\ntasks = [\"jobs.peek\"]\n",
    )
    .expect("workflow");
    let (code, printed) = common::gantry(&site.config(), &site.state(), &["validate"]);
    assert_ne!(code, 0, "{printed}");
    assert!(printed.contains("which no plugin may read"), "{printed}");
}

/// A key of several lines, printed as it is and on one line with tabs: its key lines are
/// masked wherever they appear, and its armour stays readable.
#[test]
fn a_secret_of_several_lines_is_masked_however_a_program_prints_it() {
    let site = Site::new(0o700);
    let body = [
        "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7",
        "Vh2uDkqU8sPq3WcTq0Xo4Hc3yJ1nQm0rFv9sLz8pWbQeRtYu",
    ];
    std::fs::write(
        site.config().join("secrets/tls-key"),
        format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n{}\n-----END PRIVATE KEY-----\n",
            body[0], body[1]
        ),
    )
    .expect("secret");
    std::fs::write(
        site.config().join("workflows/app.toml"),
        r#"[jobs.key]
kind = "exec"
command = ["sh", "-c", "echo \"$KEY\"; printf '%s\\t' $KEY; echo"]
env = { KEY = "${secrets.tls-key}" }
"#,
    )
    .expect("workflow");
    let (code, printed) = common::gantry(&site.config(), &site.state(), &["run", "app"]);
    assert_eq!(code, 0, "{printed}");
    let logs = common::read_logs(&site.state());
    assert!(logs.contains("-----BEGIN PRIVATE KEY-----"), "{logs}");
    assert!(logs.contains("\\t***\\t***\\t"), "{logs}");
    let kept = format!("{printed}\n{}", common::text_under(&site.state()));
    for line in body {
        assert!(
            !kept.contains(line),
            "a key line was kept or shown:\n{kept}"
        );
    }
}
