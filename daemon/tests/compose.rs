//! The compose task kind end to end: the real gantry binary translates compose files inside
//! the Wasm sandbox and applies them to a Kubernetes API simulator served by this test; the
//! tests read the simulator's objects and the task logs to check what was done, and in
//! which order.

use std::path::PathBuf;

use serde_json::Value;

mod common;

use common::sim::{SimSite as Site, assert_ordered, copy_dir};

/// The compose kind runs no program: the namespace is all it is granted.
const PLUGINS: &str = "[plugins.compose]\nkube_namespaces = [\"shop\"]\n";

/// The simulator site, with the shop's compose file and `.env` under `shop/`.
async fn site() -> Site {
    let site = Site::new(PLUGINS).await;
    let fixture = common::repo_root().join("daemon/tests/fixtures/compose/shop");
    for f in ["compose.yaml", ".env"] {
        let text = std::fs::read_to_string(fixture.join(f)).unwrap();
        site.write(&format!("shop/{f}"), &text);
    }
    site
}

/// The time of day, in milliseconds, of the first log line containing `needle`
/// (lines start `2026-11-24T04:08:54.839Z`).
fn millis_at(log: &str, needle: &str) -> i64 {
    let line = log
        .lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in:\n{log}"));
    let time = line
        .split_once('T')
        .and_then(|(_, t)| t.split_once('Z'))
        .map(|(t, _)| t)
        .unwrap_or_else(|| panic!("no time in {line:?}"));
    let parts: Vec<f64> = time.split(':').map(|p| p.parse().unwrap()).collect();
    ((parts[0] * 3600.0 + parts[1] * 60.0 + parts[2]) * 1000.0) as i64
}

/// The shop's compose task, plus a smoke test reading the web service's address output.
fn workflow(params: &str) -> String {
    let timeout = if params.contains("wait_timeout") {
        ""
    } else {
        "wait_timeout = \"60s\"\n"
    };
    format!(
        "[app.shop]\nkind = \"compose\"\nfile = \"shop/compose.yaml\"\nnamespace = \"shop\"\ncreate_namespace = true\n{timeout}{params}\n\n[app.smoke]\nkind = \"exec\"\ncommand = [\"sh\", \"-c\", \"echo \\\"web is at $WEB\\\"\"]\nenv = {{ WEB = \"${{tasks.app.shop.outputs.web}}\" }}\n"
    )
}

fn job_name(site: &Site) -> String {
    let jobs = site.names("batch/v1", "jobs", "shop");
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    jobs[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_services_deploy_in_dependency_order_and_become_ready() {
    let site = site().await;
    site.write(
        "workflows/shop.toml",
        &workflow("env = { GREETING = \"hi\" }"),
    );
    let (code, out) = site.gantry(&["run", "shop"]).await;
    assert_eq!(code, 0, "{out}");

    let log = site.log(&out, "shop", "app.shop");
    assert_ordered(
        &log,
        &[
            "applied PersistentVolumeClaim shop/dbdata",
            "applying service `db`",
            "waiting for `db` (service_healthy) before applying `migrate`",
            "applying service `migrate`",
            "waiting for `migrate` (service_completed_successfully) before applying `web`",
            "applying service `web`",
            "waiting up to 60 s for 6 objects",
        ],
    );
    // The database's pods take a second to become ready (kubesim's ready-after): the
    // migration was applied only after that, not as soon as the database was accepted.
    // (Times of day: a run across midnight wraps.)
    let waited = (millis_at(&log, "applying service `migrate`")
        - millis_at(&log, "applying service `db`"))
    .rem_euclid(24 * 3600 * 1000);
    assert!(waited >= 800, "waited only {waited} ms for db:\n{log}");

    let web = site.get("apps/v1", "deployments", "shop", "web").unwrap();
    assert_eq!(web["status"]["readyReplicas"], 1, "{web}");
    assert_eq!(web["metadata"]["labels"]["gantry.dev/task"], "app.shop");
    let c = &web["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        c["image"], "shop/web:1.0",
        "a default from ${{WEB_TAG:-1.0}}"
    );
    let env: Vec<(String, String)> = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().into(),
                e["value"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(
        env.contains(&(
            "DATABASE_URL".into(),
            "postgres://shop:s3cret@db:5432/shop".into()
        )),
        "the password comes from .env: {env:?}"
    );
    assert!(
        env.contains(&("GREETING".into(), "hi".into())),
        "the task's env wins: {env:?}"
    );

    let db = site.get("apps/v1", "deployments", "shop", "db").unwrap();
    assert_eq!(
        db["spec"]["strategy"]["type"], "Recreate",
        "it mounts a claim"
    );
    assert_eq!(db["status"]["readyReplicas"], 1);
    let probe = &db["spec"]["template"]["spec"]["containers"][0]["readinessProbe"];
    assert_eq!(probe["exec"]["command"][2], "pg_isready -U shop", "{probe}");
    let claim = site
        .get("v1", "persistentvolumeclaims", "shop", "dbdata")
        .unwrap();
    assert_eq!(claim["status"]["phase"], "Bound");
    let job = site
        .get("batch/v1", "jobs", "shop", &job_name(&site))
        .unwrap();
    assert!(job_name(&site).starts_with("migrate-"));
    assert_eq!(job["status"]["succeeded"], 1, "{job}");
    assert_eq!(
        job["spec"]["template"]["spec"]["containers"][0]["image"],
        "shop/migrate:7"
    );
    let svc = site.get("v1", "services", "shop", "web").unwrap();
    assert_eq!(svc["spec"]["type"], "ClusterIP");
    assert_eq!(svc["spec"]["ports"][0]["port"], 80);
    assert!(site.get("v1", "services", "shop", "db").is_some());
    assert!(
        site.get("apps/v1", "deployments", "shop", "cache")
            .is_none(),
        "the cache profile is not enabled"
    );

    let smoke = site.log(&out, "shop", "app.smoke");
    assert!(smoke.contains("web is at web.shop.svc:80"), "{smoke}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_update_only_their_service_removed_services_are_pruned_and_destroy_removes_all() {
    let site = site().await;
    site.write("workflows/shop.toml", &workflow("profiles = [\"cache\"]"));
    let (code, out) = site.gantry(&["run", "shop"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        site.get("apps/v1", "deployments", "shop", "cache")
            .is_some()
    );
    let generation = |name: &str| {
        site.get("apps/v1", "deployments", "shop", name).unwrap()["metadata"]["generation"].clone()
    };
    let (db_gen, web_gen) = (generation("db"), generation("web"));
    let job = job_name(&site);

    // The web image changes through the task's env; the cache service leaves the file.
    site.write(
        "workflows/shop.toml",
        &workflow("env = { WEB_TAG = \"2.0\" }"),
    );
    let (code, out) = site.gantry(&["diff", "shop"]).await;
    assert_eq!(code, 1, "{out}");
    let line = |target: &str| {
        out.lines()
            .find(|l| l.contains(target))
            .unwrap_or_else(|| panic!("no line for {target}:\n{out}"))
            .to_string()
    };
    assert!(line("apps/Deployment/shop/web").contains("update"), "{out}");
    assert!(
        line("apps/Deployment/shop/web").contains("spec.template.spec.containers"),
        "{out}"
    );
    assert!(
        line("apps/Deployment/shop/db").contains("unchanged"),
        "{out}"
    );
    assert!(
        line(&format!("batch/Job/shop/{job}")).contains("unchanged"),
        "{out}"
    );
    assert!(
        line("apps/Deployment/shop/cache").contains("delete"),
        "{out}"
    );

    let (code, out) = site.gantry(&["run", "shop"]).await;
    assert_eq!(code, 0, "{out}");
    let web = site.get("apps/v1", "deployments", "shop", "web").unwrap();
    assert_eq!(
        web["spec"]["template"]["spec"]["containers"][0]["image"],
        "shop/web:2.0"
    );
    assert_ne!(generation("web"), web_gen, "web was updated");
    assert_eq!(generation("db"), db_gen, "db was not touched");
    assert_eq!(job_name(&site), job, "the migration Job is the same");
    assert!(
        site.get("apps/v1", "deployments", "shop", "cache")
            .is_none(),
        "{out}"
    );
    assert!(
        site.get("v1", "services", "shop", "cache").is_none(),
        "{out}"
    );
    assert!(
        site.log(&out, "shop", "app.shop")
            .contains("pruned apps/Deployment/shop/cache")
    );

    // A changed one-shot service is a new Job; the old one is pruned.
    site.edit("shop/.env", "MIGRATE_TAG=7", "MIGRATE_TAG=8");
    let (code, out) = site.gantry(&["run", "shop"]).await;
    assert_eq!(code, 0, "{out}");
    assert_ne!(job_name(&site), job, "{out}");

    // The task leaves the workflow: everything it applied goes.
    site.write(
        "workflows/shop.toml",
        "[app.keep]\nkind = \"exec\"\ncommand = [\"sh\", \"-c\", \"true\"]\n",
    );
    let (code, out) = site.gantry(&["run", "shop"]).await;
    assert_eq!(code, 0, "{out}");
    for (v, plural) in [
        ("apps/v1", "deployments"),
        ("batch/v1", "jobs"),
        ("v1", "services"),
        ("v1", "persistentvolumeclaims"),
    ] {
        assert!(
            site.names(v, plural, "shop").is_empty(),
            "{plural} left: {out}"
        );
    }
    assert!(
        site.get("v1", "namespaces", "", "shop").is_some(),
        "the namespace stays"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_that_does_not_become_ready_puts_the_previous_objects_back() {
    let site = site().await;
    site.write("workflows/shop.toml", &workflow(""));
    let (code, out) = site.gantry(&["run", "shop"]).await;
    assert_eq!(code, 0, "{out}");

    // The new web image never becomes ready; a claim-free service added with it is new.
    site.edit(
        "shop/compose.yaml",
        "    ports: [\"8080:80\"]\n",
        "    ports: [\"8080:80\"]\n    labels:\n      kubesim.gantry.dev/never-ready: \"true\"\n",
    );
    site.edit(
        "shop/compose.yaml",
        "\nvolumes:\n",
        "\n  worker:\n    image: shop/worker:1\n\nvolumes:\n",
    );
    site.write(
        "workflows/shop.toml",
        &workflow("env = { WEB_TAG = \"2.0\" }\nwait_timeout = \"3s\""),
    );
    let (code, out) = site.gantry(&["run", "shop"]).await;
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("the previous objects were restored"), "{out}");
    let web = site.get("apps/v1", "deployments", "shop", "web").unwrap();
    assert_eq!(
        web["spec"]["template"]["spec"]["containers"][0]["image"], "shop/web:1.0",
        "the previous Deployment is back"
    );
    assert!(
        site.get("apps/v1", "deployments", "shop", "worker")
            .is_none(),
        "what the failed deploy created is gone: {out}"
    );
    assert!(site.get("apps/v1", "deployments", "shop", "db").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_migration_stops_the_deploy_before_the_services_that_wait_for_it() {
    let site = site().await;
    site.edit(
        "shop/compose.yaml",
        "    restart: \"no\"\n",
        "    restart: \"no\"\n    labels:\n      kubesim.gantry.dev/fail: \"true\"\n",
    );
    site.write("workflows/shop.toml", &workflow(""));
    let (code, out) = site.gantry(&["run", "shop"]).await;
    assert_ne!(code, 0, "{out}");
    let log = site.log(&out, "shop", "app.shop");
    assert!(log.contains("applying service `migrate`"), "{log}");
    assert!(!log.contains("applying service `web`"), "{log}");
    assert!(
        site.get("apps/v1", "deployments", "shop", "web").is_none(),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untranslatable_keys_and_missing_variables_are_validation_errors_at_file_and_line() {
    let site = site().await;
    site.write("workflows/shop.toml", &workflow(""));
    let (code, out) = site.gantry(&["validate"]).await;
    assert_eq!(code, 0, "{out}");

    site.edit(
        "shop/compose.yaml",
        "    expose: [\"5432\"]\n",
        "    expose: [\"5432\"]\n    network_mode: host\n",
    );
    site.edit(
        "shop/compose.yaml",
        "      - dbdata:/var/lib/postgresql/data\n",
        "      - dbdata:/var/lib/postgresql/data\n      - ./init.sql:/docker-entrypoint-initdb.d/init.sql\n",
    );
    let (code, out) = site.gantry(&["validate"]).await;
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("shop/compose.yaml:23:") && out.contains("host bind mount"),
        "{out}"
    );
    assert!(
        out.contains("shop/compose.yaml:25:") && out.contains("network_mode"),
        "{out}"
    );

    // A run refuses the same file before applying anything.
    let (code, out) = site.gantry(&["run", "shop"]).await;
    assert_ne!(code, 0, "{out}");
    assert!(site.get("apps/v1", "deployments", "shop", "db").is_none());

    site.write("shop/compose.yaml", "services:\n  api:\n    build: ./api\n");
    let (code, out) = site.gantry(&["validate"]).await;
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("shop/compose.yaml:3:") && out.contains("no `image`"),
        "{out}"
    );

    site.write(
        "shop/compose.yaml",
        "services:\n  db:\n    image: postgres\n    environment:\n      PW: ${DB_PASSWORD:?set DB_PASSWORD in .env}\n",
    );
    site.write("shop/.env", "# nothing\n");
    let (code, out) = site.gantry(&["validate"]).await;
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("shop/compose.yaml:5:") && out.contains("set DB_PASSWORD in .env"),
        "{out}"
    );
}

/// Tasks with the same parameters but sources of their own each get the verdict on their own
/// files, at their own place: a verdict is shared only by tasks asking the same question.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_parameters_over_different_sources_are_each_validated() {
    let site = site().await;
    let good = "services:\n  web:\n    image: shop/web:1\n";
    let bad_at_4 = "services:\n  web:\n    image: shop/web:1\n    network_mode: host\n";
    let bad_at_5 =
        "services:\n  web:\n    image: shop/web:1\n    ports: [\"80\"]\n    network_mode: host\n";
    for (dir, text) in [
        ("a", good),
        ("b", bad_at_4),
        ("c", bad_at_5),
        ("d", bad_at_4),
    ] {
        let path = site.config.path().join(dir).join("app/compose.yaml");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    let task = |name: &str, dir: &str| {
        format!(
            "[app.{name}]\nkind = \"compose\"\nsource = \"{dir}\"\nfile = \"app/compose.yaml\"\nnamespace = \"shop\"\n"
        )
    };
    site.write(
        "workflows/shop.toml",
        &[("one", "a"), ("two", "b"), ("three", "c"), ("four", "d")]
            .map(|(n, d)| task(n, d))
            .concat(),
    );
    let (code, out) = site.gantry(&["validate"]).await;
    assert_ne!(code, 0, "{out}");
    let reported = |place: &str| {
        out.lines()
            .any(|l| l.contains(place) && l.contains("network_mode"))
    };
    assert!(!out.contains("/a/app/compose.yaml"), "{out}");
    assert!(reported("/b/app/compose.yaml:4:"), "{out}");
    assert!(reported("/c/app/compose.yaml:5:"), "{out}");
    assert!(reported("/d/app/compose.yaml:4:"), "{out}");
}

/// The directory holding helm and terraform, and the offline provider mirror, installed by
/// the setup scripts. Missing under CI=true they fail the test; elsewhere it says how to get
/// them and passes without running.
fn tools() -> Option<(PathBuf, PathBuf)> {
    let root = common::repo_root();
    let tools = root.join("target/tools");
    if !tools.join("helm").is_file() {
        let _ = std::process::Command::new(root.join("scripts/setup-kube-tools.sh")).status();
    }
    let mirror = tools.join("terraform-providers");
    let provider = mirror.join(
        "registry.terraform.io/hashicorp/null/2.1.2/linux_amd64/terraform-provider-null_v2.1.2_x4",
    );
    if tools.join("helm").is_file() && tools.join("terraform").is_file() && provider.is_file() {
        return Some((tools.canonicalize().ok()?, mirror.canonicalize().ok()?));
    }
    let hint = "helm, terraform or the null provider is missing: run scripts/setup-kube-tools.sh and scripts/setup-terraform.sh";
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{hint}");
    }
    eprintln!("skipping: {hint}");
    None
}

/// A component the environment had before: removed from the workflow, it is cleaned up.
const LEGACY: &str = "\n[legacy.queue]\nkind = \"manifest\"\npath = \"legacy\"\nnamespace = \"env-demo\"\n\n[[steps]]\nname = \"legacy\"\ntasks = [\"legacy.queue\"]\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bunnyshell_example_runs_its_deploy_flow_end_to_end() {
    let Some((tools, mirror)) = tools() else {
        return;
    };
    let sim = common::sim::start_sim().await;
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("config");
    let state = tmp.path().join("state");
    copy_dir(&common::repo_root().join("examples/bunnyshell"), &config);
    let kubeconfig = tmp.path().join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig).unwrap();
    let shipped = std::fs::read_to_string(config.join("workflows/environment.toml")).unwrap();
    let compose_file = config.join("files/compose/docker-compose.yaml");
    let compose = std::fs::read_to_string(&compose_file).unwrap();

    let run = || {
        let (config, state, kubeconfig, tools, mirror) = (
            config.clone(),
            state.clone(),
            kubeconfig.clone(),
            tools.clone(),
            mirror.clone(),
        );
        tokio::task::spawn_blocking(move || {
            let path = format!(
                "{}:{}",
                tools.display(),
                std::env::var("PATH").unwrap_or_default()
            );
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_gantry"))
                .args(["--config", config.to_str().unwrap()])
                .args(["--state", state.to_str().unwrap()])
                .args(["run", "environment"])
                .env("PATH", path)
                .env("KUBECONFIG", kubeconfig)
                .env("GANTRY_TF_MIRROR", mirror)
                .output()
                .unwrap();
            common::daemon::code_and_text(&out)
        })
    };
    let get = |api_version: &str, plural: &str, name: &str| -> Option<Value> {
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let reg = sim.store.registry();
        let t = reg.by_plural(group, version, plural).unwrap();
        sim.store.get(t, "env-demo", name).ok()
    };
    let log =
        |out: &str, task: &str| common::task_log(&state, common::run_id(out), "environment", task);

    // The environment as it was: one more component, and a compose service since removed.
    std::fs::write(
        config.join("workflows/environment.toml"),
        format!("{shipped}{LEGACY}"),
    )
    .unwrap();
    std::fs::create_dir_all(config.join("files/legacy")).unwrap();
    std::fs::write(
        config.join("files/legacy/queue.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: queue}\ndata: {broker: amqp}\n",
    )
    .unwrap();
    std::fs::write(
        &compose_file,
        compose.replace(
            "\nvolumes:\n",
            "\n  worker:\n    image: registry.example.com/shop/worker:1\n\nvolumes:\n",
        ),
    )
    .unwrap();
    let (code, out) = run().await.unwrap();
    assert_eq!(code, 0, "{out}");
    assert!(get("v1", "configmaps", "queue").is_some(), "{out}");
    assert!(get("apps/v1", "deployments", "worker").is_some(), "{out}");

    // The environment as shipped: the legacy component is cleaned up, the worker pruned.
    std::fs::write(config.join("workflows/environment.toml"), &shipped).unwrap();
    std::fs::write(&compose_file, &compose).unwrap();
    let (code, out) = run().await.unwrap();
    assert_eq!(code, 0, "{out}");
    assert!(
        get("v1", "configmaps", "queue").is_none(),
        "cleaned up: {out}"
    );
    assert!(
        out.contains("legacy.queue") && out.contains("destroyed"),
        "{out}"
    );
    assert!(
        get("apps/v1", "deployments", "worker").is_none(),
        "pruned: {out}"
    );
    assert!(log(&out, "compose.app").contains("pruned apps/Deployment/env-demo/worker"));

    // Terraform → manifest → Helm → compose, outputs flowing from one to the next.
    let order: Vec<usize> = [
        "terraform.database",
        "manifests.settings",
        "helm.api",
        "compose.app",
        "checks.smoke",
    ]
    .iter()
    .map(|t| {
        out.lines()
            .position(|l| l.contains(t) && l.contains("succeeded"))
            .unwrap_or_else(|| panic!("{t} did not succeed:\n{out}"))
    })
    .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{out}");
    let settings = get("v1", "configmaps", "environment").unwrap();
    assert_eq!(settings["data"]["DATABASE_HOST"], "env-demo.db.internal");
    let api = get("apps/v1", "deployments", "api").unwrap();
    assert_eq!(api["status"]["readyReplicas"], 2, "{api}");
    let env = &api["spec"]["template"]["spec"]["containers"][0]["env"];
    assert_eq!(env[0]["value"], "env-demo.db.internal", "{env}");
    let frontend = get("apps/v1", "deployments", "frontend").unwrap();
    assert_eq!(frontend["status"]["readyReplicas"], 2, "{frontend}");
    let c = &frontend["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        c["image"], "registry.example.com/shop/frontend:1.4.2",
        "from .env"
    );
    assert!(
        c["env"].to_string().contains("http://api:8080"),
        "the Helm output reached the compose file: {c}"
    );
    let secret = get("v1", "secrets", "db-password").unwrap();
    assert!(
        secret["data"]["db_password"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );
    assert!(
        !out.contains("pw-"),
        "the password is shown to no one: {out}"
    );

    // Rollout strategy: the task's RollingUpdate bounds, Recreate where a claim is mounted.
    assert_eq!(
        frontend["spec"]["strategy"],
        serde_json::json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}})
    );
    assert_eq!(
        get("apps/v1", "deployments", "cache").unwrap()["spec"]["strategy"]["type"],
        "Recreate"
    );
    assert_eq!(
        get("apps/v1", "deployments", "api").unwrap()["spec"]["strategy"]["rollingUpdate"]["maxSurge"],
        1
    );

    // Readiness: the frontend waited for the cache to be healthy and the migration to finish.
    let compose_log = log(&out, "compose.app");
    let at = |n: &str| {
        compose_log
            .find(n)
            .unwrap_or_else(|| panic!("{n:?} not in:\n{compose_log}"))
    };
    assert!(
        at("waiting for `migrate` (service_completed_successfully)")
            < at("applying service `frontend`")
    );
    let smoke = log(&out, "checks.smoke");
    assert!(
        smoke.contains(
            "frontend at frontend.env-demo.svc:80, api on port 8080, database env-demo.db.internal"
        ),
        "{smoke}"
    );
}

#[test]
fn the_bunnyshell_example_is_a_valid_configuration() {
    let example = common::repo_root().join("examples/bunnyshell");
    let state = tempfile::tempdir().unwrap();
    let (code, out) = common::gantry(&example, state.path(), &["validate"]);
    assert_eq!(code, 0, "{out}");
}
