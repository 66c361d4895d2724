//! The `terraform` task kind end to end through `gantry run` and `gantry diff`, with the real
//! Terraform 1.0 and the null provider installed offline by `scripts/setup-terraform.sh`:
//! outputs in and out, a sensitive output that reaches a later task and no person, a replace
//! shown by diff and applied, destroy of a removed task from its last deployed
//! configuration, a held state lock explained, and a cancelled apply leaving no lock.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// The module every test deploys (see its comments).
const MODULE: &str = include_str!("fixtures/terraform/db/main.tf");

/// Terraform and its provider mirror, installed by the setup script. Missing under CI they
/// fail the test; elsewhere the test says how to get them and passes without running.
fn tools() -> Option<(PathBuf, PathBuf)> {
    let tools = common::repo_root().join("target/tools");
    let terraform = tools.join("terraform");
    let mirror = tools.join("terraform-providers");
    let provider = mirror.join(
        "registry.terraform.io/hashicorp/null/2.1.2/linux_amd64/terraform-provider-null_v2.1.2_x4",
    );
    if terraform.is_file() && provider.is_file() {
        return Some((
            terraform.canonicalize().expect("terraform path"),
            mirror.canonicalize().expect("mirror path"),
        ));
    }
    let message = format!(
        "{} or the null provider is missing: run scripts/setup-terraform.sh",
        terraform.display()
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{message}");
    }
    eprintln!("skipping: {message}");
    None
}

/// A config directory holding the module under `files/modules/db`, and a state directory.
struct Site {
    _tmp: tempfile::TempDir,
    config: PathBuf,
    state: PathBuf,
    mirror: PathBuf,
}

impl Site {
    fn new() -> Option<Site> {
        let (terraform, mirror) = tools()?;
        let tmp = tempfile::tempdir().expect("tempdir");
        let config = tmp.path().join("config");
        std::fs::create_dir_all(config.join("workflows")).expect("workflows");
        std::fs::create_dir_all(config.join("files/modules/db")).expect("module dir");
        std::fs::write(config.join("files/modules/db/main.tf"), MODULE).expect("module");
        std::fs::write(
            config.join("gantry.toml"),
            format!(
                "[plugins.exec]\nexec = [\"sh\", \"sleep\", \"cat\", \"env\", \"id\", \"setsid\", \"timeout\", \"touch\", \"rm\", \"mkdir\", \"date\", \"sha256sum\", \"ln\", \"mkfifo\"]\n\n[plugins.terraform]\nexec = [\"{}\", \"sh\", \"sleep\"]\nexec_paths = [\"{}\"]\n",
                terraform.display(),
                mirror.display()
            ),
        )
        .expect("gantry.toml");
        let state = tmp.path().join("state");
        Some(Site {
            _tmp: tmp,
            config,
            state,
            mirror,
        })
    }

    /// Writes `workflows/NAME.toml`, with `{MIRROR}` standing for the provider mirror.
    fn workflow(&self, name: &str, text: &str) {
        let text = text.replace("{MIRROR}", &self.mirror.display().to_string());
        std::fs::write(self.config.join(format!("workflows/{name}.toml")), text).expect("workflow");
    }

    fn gantry(&self, args: &[&str]) -> (i32, String) {
        common::gantry(&self.config, &self.state, args)
    }

    /// `gantry run`, which must end with `code`; what it printed.
    fn run(&self, workflow: &str, code: i32) -> String {
        let (got, out) = self.gantry(&["run", workflow]);
        assert_eq!(got, code, "gantry run {workflow}:\n{out}");
        out
    }

    /// A task's log in the run that printed `out`.
    fn log(&self, out: &str, workflow: &str, task: &str) -> String {
        common::task_log(&self.state, common::run_id(out), workflow, task)
    }

    fn workspace(&self, workflow: &str, task: &str) -> PathBuf {
        self.state.join("workspaces").join(workflow).join(task)
    }

    /// Terraform's local state of a task, as JSON.
    fn tf_state(&self, workflow: &str, task: &str) -> serde_json::Value {
        let path = self
            .workspace(workflow, task)
            .join("state/terraform.tfstate");
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::from_str(&text).expect("state is JSON")
    }
}

/// A line of the CLI's output about `task` containing every one of `parts`.
fn line_with(out: &str, task: &str, parts: &[&str]) -> bool {
    out.lines()
        .any(|l| l.contains(task) && parts.iter().all(|p| l.contains(p)))
}

/// Every file under `dir`.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

const PIPELINE: &str = r#"
[infra.params]
kind = "exec"
command = ["sh", "-c", "echo ::gantry-outputs::; echo name=orders; echo port=5432"]

[infra.db]
kind = "terraform"
path = "modules/db"
plugin_dir = "{MIRROR}"
vars = { name = "${tasks.infra.params.outputs.name}", port = "${tasks.infra.params.outputs.port}", tags = { team = "shop", tier = "data" } }

[services.api]
kind = "exec"
command = ["sh", "-c", "echo \"connecting to $DB_HOST:$DB_PORT as team $TEAM\"; echo \"password $DB_PASSWORD\"; printf %s \"$DB_PASSWORD\" | sha256sum"]
env = { DB_HOST = "${tasks.infra.db.outputs.host}", DB_PORT = "${tasks.infra.db.outputs.port}", DB_PASSWORD = "${tasks.infra.db.outputs.password}", TEAM = "${tasks.infra.db.outputs.tags}" }

[[steps]]
name = "params"
tasks = ["infra.params"]

[[steps]]
name = "infra"
tasks = ["infra.db"]

[[steps]]
name = "apps"
tasks = ["services.api"]
"#;

#[test]
fn outputs_flow_through_terraform_and_its_secret_reaches_the_next_task_but_no_person() {
    let Some(site) = Site::new() else { return };
    site.workflow("shop", PIPELINE);
    let out = site.run("shop", 0);
    for task in ["infra.params", "infra.db", "services.api"] {
        assert!(line_with(&out, task, &["succeeded"]), "{task}:\n{out}");
    }
    // Typed variables in, typed outputs out.
    assert!(out.contains("output host=orders.db.internal"), "{out}");
    assert!(out.contains("output port=5432"), "{out}");
    assert!(out.contains("output password=***"), "{out}");
    let db_log = site.log(&out, "shop", "infra.db");
    // Terraform's own output, streamed into the task's log.
    assert!(
        db_log.contains("Terraform has been successfully initialized"),
        "{db_log}"
    );
    assert!(db_log.contains("created database orders"), "{db_log}");
    assert!(
        db_log.contains("Apply complete! Resources: 1 added"),
        "{db_log}"
    );

    let state = site.tf_state("shop", "infra.db");
    let secret = state["outputs"]["password"]["value"]
        .as_str()
        .expect("the password output in the state")
        .to_string();
    assert!(secret.len() > 5, "{secret}");
    let api_log = site.log(&out, "shop", "services.api");
    assert!(
        api_log.contains(
            "connecting to orders.db.internal:5432 as team {\"team\":\"shop\",\"tier\":\"data\"}"
        ),
        "{api_log}"
    );
    // The later task had the real value: its digest is in the log, the value is not.
    let digest = hex::encode(Sha256::digest(secret.as_bytes()));
    assert!(api_log.contains(&digest), "{api_log}");
    assert!(api_log.contains("password ***"), "{api_log}");
    assert!(!out.contains(&secret), "the CLI shows the secret:\n{out}");
    // Logs, history and events; the workspace holds it by necessity (Terraform's state).
    let workspaces = site.state.join("workspaces");
    let cache = site.state.join("cache");
    for path in files(&site.state) {
        if path.starts_with(&workspaces) || path.starts_with(&cache) {
            continue;
        }
        let bytes = std::fs::read(&path).expect("read");
        assert!(
            !String::from_utf8_lossy(&bytes).contains(&secret),
            "{} holds the secret",
            path.display()
        );
    }
    let (code, shown) = site.gantry(&["diff", "shop"]);
    assert_eq!(code, 0, "{shown}");
    assert!(!shown.contains(&secret), "{shown}");
    assert!(
        line_with(&shown, "infra.db", &["unchanged", "null_resource.db"]),
        "{shown}"
    );
}

const SINGLE: &str = r#"
[infra.db]
kind = "terraform"
path = "modules/db"
plugin_dir = "{MIRROR}"
lock_timeout = "{LOCK_TIMEOUT}"
vars = { name = "{NAME}", port = 5432, delay = {DELAY} }
"#;

fn single(name: &str, delay: u32, lock_timeout: &str) -> String {
    SINGLE
        .replace("{NAME}", name)
        .replace("{DELAY}", &delay.to_string())
        .replace("{LOCK_TIMEOUT}", lock_timeout)
}

#[test]
fn a_changed_variable_is_a_replace_in_diff_and_is_applied() {
    let Some(site) = Site::new() else { return };
    site.workflow("db", &single("alpha", 0, "5s"));
    let (code, shown) = site.gantry(&["diff", "db"]);
    assert_eq!(code, 1, "{shown}");
    assert!(
        line_with(&shown, "infra.db", &["create", "null_resource.db"]),
        "{shown}"
    );
    site.run("db", 0);

    site.workflow("db", &single("beta", 0, "5s"));
    let (code, shown) = site.gantry(&["diff", "db"]);
    assert_eq!(code, 1, "{shown}");
    assert!(
        line_with(
            &shown,
            "infra.db",
            &[
                "replace",
                "null_resource.db",
                "triggers.name: \"alpha\" → \"beta\"",
                "forces replacement"
            ]
        ),
        "{shown}"
    );
    // A diff changes nothing: the state still holds the first database.
    let state = site.tf_state("db", "infra.db");
    assert_eq!(state["outputs"]["host"]["value"], "alpha.db.internal");

    let out = site.run("db", 0);
    assert!(out.contains("output host=beta.db.internal"), "{out}");
    let log = site.log(&out, "db", "infra.db");
    assert!(log.contains("destroyed database alpha"), "{log}");
    assert!(log.contains("created database beta"), "{log}");
    assert!(
        log.contains("Apply complete! Resources: 1 added, 0 changed, 1 destroyed"),
        "{log}"
    );
}

#[test]
fn a_removed_task_is_destroyed_with_its_last_deployed_configuration_after_its_module_is_gone() {
    let Some(site) = Site::new() else { return };
    let with_db = format!(
        "{}\n[jobs.other]\nkind = \"exec\"\ncommand = [\"sh\", \"-c\", \"true\"]\n",
        single("gamma", 0, "5s")
    );
    site.workflow("db", &with_db);
    site.run("db", 0);
    assert!(site.workspace("db", "infra.db").join("deployed").is_dir());
    let state = site.tf_state("db", "infra.db");
    assert_eq!(
        state["resources"].as_array().map(Vec::len),
        Some(1),
        "{state}"
    );

    // The task leaves the workflow and its module is deleted.
    site.workflow(
        "db",
        "[jobs.other]\nkind = \"exec\"\ncommand = [\"sh\", \"-c\", \"true\"]\n",
    );
    std::fs::remove_dir_all(site.config.join("files/modules")).expect("remove the module");
    let out = site.run("db", 0);
    assert!(
        line_with(&out, "infra.db", &["destroyed"]),
        "the removed task was not destroyed:\n{out}"
    );
    let log = site.log(&out, "db", "infra.db");
    assert!(
        log.contains("destroying with the configuration last deployed"),
        "{log}"
    );
    assert!(log.contains("destroyed database gamma"), "{log}");
    assert!(
        log.contains("Destroy complete! Resources: 1 destroyed."),
        "{log}"
    );
    assert!(
        log.contains("the state holds no resources any more"),
        "{log}"
    );
    assert!(
        !site.workspace("db", "infra.db").exists(),
        "a destroyed task's workspace goes"
    );
    // Nothing is left to destroy on the next deploy.
    let out = site.run("db", 0);
    assert!(!out.contains("infra.db"), "{out}");
}

/// Holds Terraform's local state lock the way Terraform does (a POSIX write lock on the state
/// file, and the lock's description beside it) from this process, as another Terraform would.
struct HeldLock {
    _file: std::fs::File,
    info: PathBuf,
}

impl HeldLock {
    fn take(state_file: &Path, id: &str, who: &str) -> HeldLock {
        use std::os::fd::AsRawFd;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(state_file)
            .expect("open the state file");
        // SAFETY: an all-zero flock is a valid value; the fields that matter are set below.
        let mut lock: libc::flock = unsafe { std::mem::zeroed() };
        lock.l_type = libc::F_WRLCK as libc::c_short;
        lock.l_whence = libc::SEEK_SET as libc::c_short;
        // SAFETY: fcntl on an open descriptor we own with a valid flock.
        let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLK, &lock) };
        assert_eq!(rc, 0, "cannot lock {}", state_file.display());
        let info = state_file.with_file_name(".terraform.tfstate.lock.info");
        let created = humantime::format_rfc3339_seconds(
            std::time::SystemTime::now() - Duration::from_secs(125),
        );
        std::fs::write(
            &info,
            serde_json::json!({
                "ID": id, "Operation": "OperationTypeApply", "Info": "", "Who": who,
                "Version": "1.0.3", "Created": created.to_string(),
                "Path": state_file.display().to_string(),
            })
            .to_string(),
        )
        .expect("lock info");
        HeldLock { _file: file, info }
    }
}

impl Drop for HeldLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.info);
    }
}

#[test]
fn a_lock_held_by_another_process_fails_with_its_id_holder_age_and_the_fix() {
    let Some(site) = Site::new() else { return };
    site.workflow("db", &single("delta", 0, "1s"));
    site.run("db", 0);
    let state_file = site
        .workspace("db", "infra.db")
        .join("state/terraform.tfstate");
    const ID: &str = "4bd1f6c2-0000-4e2b-9c1a-5f7d2a1e0b33";
    let held = HeldLock::take(&state_file, ID, "ops@bastion");

    site.workflow("db", &single("epsilon", 0, "1s"));
    let out = site.run("db", 3);
    assert!(
        line_with(
            &out,
            "infra.db",
            &[
                "FAILED",
                &format!("lock ID {ID}"),
                "held by ops@bastion for apply",
                "ago",
                &format!("terraform force-unlock {ID}"),
                "workspaces/db/infra.db/work"
            ]
        ),
        "{out}"
    );
    // force_unlock does not touch a lock that is not this task's own.
    let forced =
        single("epsilon", 0, "1s").replace("lock_timeout", "force_unlock = true\nlock_timeout");
    site.workflow("db", &forced);
    let out = site.run("db", 3);
    assert!(
        line_with(&out, "infra.db", &["FAILED", &format!("lock ID {ID}")]),
        "{out}"
    );

    drop(held);
    let out = site.run("db", 0);
    assert!(out.contains("output host=epsilon.db.internal"), "{out}");
}

/// Waits until `path` contains `needle`.
fn wait_for(path: impl Fn() -> Option<PathBuf>, needle: &str, child: &mut Child, within: Duration) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Some(p) = path()
            && std::fs::read_to_string(&p).is_ok_and(|t| t.contains(needle))
        {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("gantry exited with {status} before `{needle}` appeared");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    panic!("`{needle}` did not appear within {within:?}");
}

#[test]
fn cancelling_mid_apply_stops_terraform_gracefully_and_leaves_no_lock() {
    let Some(site) = Site::new() else { return };
    site.workflow("db", &single("zeta", 60, "0s"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args(["--config", site.config.to_str().expect("utf-8 path")])
        .args(["--state", site.state.to_str().expect("utf-8 path")])
        .args(["run", "db"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start gantry run");
    let logs = site.state.join("logs");
    // The only run's log.
    let run_log = || Some(std::fs::read_dir(&logs).ok()?.flatten().next()?.path());
    // The provisioner is sleeping: Terraform holds the state lock in the middle of an apply.
    wait_for(
        run_log,
        "Provisioning with 'local-exec'",
        &mut child,
        Duration::from_secs(120),
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        site.workspace("db", "infra.db")
            .join("state/.terraform.tfstate.lock.info")
            .exists(),
        "the apply should hold the lock now"
    );
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let started = Instant::now();
    let out = loop {
        if let Ok(Some(_)) = child.try_wait() {
            break child.wait_with_output().expect("output");
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("gantry run did not stop after SIGINT");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{text}");
    // Well within the grace: Terraform stopped on SIGTERM rather than being killed.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let log = site.log(&text, "db", "infra.db");
    assert!(log.contains("Interrupt received"), "{log}");
    let state_dir = site.workspace("db", "infra.db").join("state");
    assert!(
        !state_dir.join(".terraform.tfstate.lock.info").exists(),
        "a lock was left behind"
    );
    // And the next run takes the lock at once (lock_timeout = "0s").
    site.workflow("db", &single("zeta", 0, "0s"));
    let out = site.run("db", 0);
    assert!(out.contains("output host=zeta.db.internal"), "{out}");
}

const ROLLING: &str = r#"
on_failure = "rollback"

[infra.db]
kind = "terraform"
path = "modules/db"
plugin_dir = "{MIRROR}"
{ROLLBACK}
vars = { name = "{NAME}", port = 5432 }

[services.check]
kind = "exec"
command = ["sh", "-c", "echo checking; exit {EXIT}"]

[[steps]]
name = "infra"
tasks = ["infra.db"]

[[steps]]
name = "services"
tasks = ["services.check"]
"#;

fn rolling(rollback: &str, name: &str, exit: u8) -> String {
    ROLLING
        .replace("{ROLLBACK}", rollback)
        .replace("{NAME}", name)
        .replace("{EXIT}", &exit.to_string())
}

#[test]
fn rollback_reapplies_the_previous_configuration_only_when_asked_to() {
    let Some(site) = Site::new() else { return };
    // By default a failed run leaves the infrastructure as it applied it, and says so.
    site.workflow("db", &rolling("", "alpha", 0));
    site.run("db", 0);
    site.workflow("db", &rolling("", "beta", 1));
    let out = site.run("db", 1);
    assert!(
        line_with(&out, "infra.db", &["cannot roll back", "reapply_previous"]),
        "{out}"
    );
    let state = site.tf_state("db", "infra.db");
    assert_eq!(state["outputs"]["host"]["value"], "beta.db.internal");

    // With reapply_previous, the configuration deployed before the run is applied again.
    let reapply = "rollback = \"reapply_previous\"";
    site.workflow("db", &rolling(reapply, "gamma", 0));
    site.run("db", 0);
    site.workflow("db", &rolling(reapply, "delta", 1));
    let out = site.run("db", 1);
    assert!(line_with(&out, "infra.db", &["rolled back"]), "{out}");
    let log = site.log(&out, "db", "infra.db");
    assert!(log.contains("created database delta"), "{log}");
    assert!(
        log.contains("re-applying the configuration deployed before this run"),
        "{log}"
    );
    assert!(log.contains("created database gamma"), "{log}");
    let state = site.tf_state("db", "infra.db");
    assert_eq!(state["outputs"]["host"]["value"], "gamma.db.internal");
    // What is deployed now is gamma: removing the task destroys gamma.
    site.workflow(
        "db",
        "[services.check]\nkind = \"exec\"\ncommand = [\"sh\", \"-c\", \"true\"]\n",
    );
    let out = site.run("db", 0);
    let log = site.log(&out, "db", "infra.db");
    assert!(log.contains("destroyed database gamma"), "{log}");
}

#[test]
fn the_example_runs_its_infrastructure_before_the_manifests_that_use_its_outputs() {
    let Some((terraform, mirror)) = tools() else {
        return;
    };
    let example = common::repo_root().join("examples/terraform");
    let state = tempfile::tempdir().expect("tempdir");
    let tools_dir = terraform.parent().expect("tools dir").to_path_buf();
    let path = format!(
        "{}:{}",
        tools_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let output = Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args(["--config", example.to_str().expect("utf-8 path")])
        .args(["--state", state.path().to_str().expect("utf-8 path")])
        .args(["run", "--sim", "shop"])
        .env("PATH", path)
        .env("GANTRY_TF_MIRROR", &mirror)
        .output()
        .expect("run gantry");
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.status.code(), Some(0), "{out}");
    assert!(out.contains("output host=shop.db.internal"), "{out}");
    assert!(out.contains("output password=***"), "{out}");
    assert!(out.contains("output fqdn=db.staging.example"), "{out}");
    assert!(line_with(&out, "services.shop", &["succeeded"]), "{out}");
    let run = common::run_id(&out);
    let shop = common::task_log(state.path(), run, "shop", "services.shop");
    assert!(shop.contains("applied Secret shop/shop-database"), "{shop}");
    assert!(
        shop.contains("applied ConfigMap shop/shop-database"),
        "{shop}"
    );
    // The DNS task ran in its own Terraform workspace.
    assert!(
        state
            .path()
            .join("workspaces/shop/infra.dns/state/terraform.tfstate.d/staging/terraform.tfstate")
            .is_file()
    );
}

#[test]
fn the_example_is_a_valid_configuration() {
    let example = common::repo_root().join("examples/terraform");
    let state = tempfile::tempdir().expect("tempdir");
    let (code, out) = common::gantry(&example, state.path(), &["validate"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ok: 1 workflows, 3 tasks"), "{out}");
}

const TWO_AT_ONCE: &str = r#"
[infra.orders]
kind = "terraform"
path = "modules/db"
plugin_dir = "{MIRROR}"
vars = { name = "orders", port = 5432 }

[infra.billing]
kind = "terraform"
path = "modules/db"
plugin_dir = "{MIRROR}"
workspace = "billing"
vars = { name = "billing", port = 5433 }

[[steps]]
name = "infra"
tasks = ["infra.orders", "infra.billing"]
"#;

#[test]
fn tasks_running_at_once_share_the_provider_mirror_and_keep_their_own_state() {
    let Some(site) = Site::new() else { return };
    site.workflow("infra", TWO_AT_ONCE);
    let out = site.run("infra", 0);
    assert!(out.contains("output host=orders.db.internal"), "{out}");
    assert!(out.contains("output host=billing.db.internal"), "{out}");
    let orders = site.tf_state("infra", "infra.orders");
    assert_eq!(orders["outputs"]["port"]["value"], 5432);
    let billing = site
        .workspace("infra", "infra.billing")
        .join("state/terraform.tfstate.d/billing/terraform.tfstate");
    let billing: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&billing).expect("billing state"))
            .expect("JSON");
    assert_eq!(billing["outputs"]["port"]["value"], 5433);
    // The mirror is only read: nothing was written into it.
    let written: Vec<PathBuf> = files(&site.mirror)
        .into_iter()
        .filter(|p| !p.ends_with("terraform-provider-null_v2.1.2_x4"))
        .collect();
    assert!(written.is_empty(), "{written:?}");
}
