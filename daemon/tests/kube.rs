//! The manifest task kind and the kube capability end to end: the real gantry binary runs
//! workflows against a Kubernetes API simulator served by this test, and the tests read the
//! simulator's objects to check what was done.

mod common;

use common::sim::{SimSite as Site, outcome_line};

/// The manifest kind may deploy to `shop` only.
const PLUGINS: &str = "[plugins.manifest]\nkube_namespaces = [\"shop\"]\n";

async fn site() -> Site {
    Site::new(PLUGINS).await
}

const WEB: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: ${vars.replicas}
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: "shop/web:1"}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80}]
"#;

fn one_task(params: &str) -> String {
    format!(
        "[app.web]\nkind = \"manifest\"\nnamespace = \"shop\"\ncreate_namespace = true\n{params}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applies_labels_waits_for_readiness_and_records_ownership() {
    let site = site().await;
    site.write("k8s/web.yaml", WEB);
    site.write(
        "workflows/shop.toml",
        &one_task(
            "path = \"k8s\"\nmax_surge = 1\nmax_unavailable = 0\nvars = { replicas = \"3\" }",
        ),
    );
    let (code, out) = site.gantry(&["run", "shop"]).await;
    assert_eq!(code, 0, "{out}");

    let d = site
        .get("apps/v1", "deployments", "shop", "web")
        .expect("deployment applied");
    assert_eq!(d["metadata"]["labels"]["gantry.dev/task"], "app.web");
    assert_eq!(d["metadata"]["labels"]["gantry.dev/workflow"], "shop");
    assert_eq!(d["spec"]["replicas"], 3);
    assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxSurge"], 1);
    assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"], 0);
    assert_eq!(
        d["status"]["readyReplicas"], 3,
        "the task waited for the rollout"
    );
    let managers = d["metadata"]["managedFields"].as_array().unwrap();
    assert!(
        managers
            .iter()
            .any(|m| m["manager"] == "gantry" && m["operation"] == "Apply"),
        "{managers:?}"
    );
    let svc = site
        .get("v1", "services", "shop", "web")
        .expect("service applied");
    assert!(
        svc["spec"]["clusterIP"]
            .as_str()
            .is_some_and(|ip| ip.starts_with("10.96."))
    );
    let log = site.log(&out, "shop", "app.web");
    assert!(log.contains("created namespace shop"), "{log}");
    assert!(log.contains("all objects are ready"), "{log}");
    assert!(out.contains("output objects=2"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_that_never_becomes_ready_times_out_and_halts_the_workflow() {
    let site = site().await;
    site.write(
        "k8s/web.yaml",
        &WEB.replace(
            "metadata: {labels: {app: web}}",
            "metadata: {labels: {app: web}, annotations: {kubesim.gantry.dev/never-ready: \"true\"}}",
        ),
    );
    site.write(
        "workflows/shop.toml",
        &format!(
            "{}\n[app.after]\nkind = \"exec\"\ncommand = [\"sh\", \"-c\", \"echo after\"]\n\n[[steps]]\nname = \"deploy\"\ntasks = [\"app.web\"]\nhalt_on_error = true\n\n[[steps]]\nname = \"later\"\ntasks = [\"app.after\"]\n",
            one_task("path = \"k8s\"\nwait_timeout = \"2s\"\nvars = { replicas = \"2\" }")
        ),
    );
    let (code, out) = site.gantry(&["run", "shop"]).await;
    assert_eq!(code, 1, "{out}");
    let web = outcome_line(&out, "app.web");
    assert!(
        web.contains("failed") && web.contains("not ready after 2 s"),
        "{out}"
    );
    assert!(out.contains("0 of 2 updated replicas available"), "{out}");
    assert!(
        !outcome_line(&out, "app.after").contains("succeeded"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_job_fails_its_task_and_halts_without_waiting_for_the_timeout() {
    let site = site().await;
    // Beside the Job, a rollout that never finishes: the Job's failure alone decides.
    let stuck = WEB.replace(
        "metadata: {labels: {app: web}}",
        "metadata: {labels: {app: web}, annotations: {kubesim.gantry.dev/never-ready: \"true\"}}",
    );
    site.write(
        "k8s/job.yaml",
        &format!("apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: migrate\n  annotations: {{kubesim.gantry.dev/fail: \"true\"}}\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{{name: m, image: migrate}}]\n---\n{stuck}"),
    );
    site.write(
        "workflows/shop.toml",
        &format!(
            "{}\n[app.after]\nkind = \"exec\"\ncommand = [\"sh\", \"-c\", \"echo after\"]\n\n[[steps]]\nname = \"migrate\"\ntasks = [\"app.web\"]\nhalt_on_error = true\n\n[[steps]]\nname = \"later\"\ntasks = [\"app.after\"]\n",
            one_task(
                "path = \"k8s/job.yaml\"\nwait_timeout = \"10m\"\ntimeout = \"60s\"\nvars = { replicas = \"1\" }"
            )
        ),
    );
    let (code, out) = site.gantry(&["run", "shop"]).await;
    assert_eq!(code, 1, "{out}");
    let web = outcome_line(&out, "app.web");
    assert!(
        web.contains("failed: Job shop/migrate: job BackoffLimitExceeded"),
        "{out}"
    );
    assert!(
        !web.contains("not ready after"),
        "a timeout, not the failure: {out}"
    );
    assert!(
        !outcome_line(&out, "app.after").contains("succeeded"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_removed_from_the_manifests_are_pruned_on_the_next_deploy() {
    let site = site().await;
    let cm = |name: &str| {
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\ndata: {{k: v}}\n")
    };
    site.write("k8s/a.yaml", &cm("a"));
    site.write("k8s/b.yaml", &cm("b"));
    site.write("workflows/shop.toml", &one_task("path = \"k8s\""));
    let (code, out) = site.gantry(&["run", "shop"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(site.get("v1", "configmaps", "shop", "b").is_some());

    site.remove("k8s/b.yaml");
    let (code, out) = site.gantry(&["run", "shop"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(site.get("v1", "configmaps", "shop", "a").is_some());
    assert!(
        site.get("v1", "configmaps", "shop", "b").is_none(),
        "b was pruned"
    );
    assert!(
        site.log(&out, "shop", "app.web")
            .contains("pruned /ConfigMap/shop/b")
    );
}

/// A Job's pod template cannot change in place: a real API server answers 422 "field is
/// immutable", kubesim does too, and the task fails saying how to get past it; with
/// `recreate_on_immutable` the Job is deleted and created anew.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_job_is_refused_as_immutable_or_recreated_when_asked() {
    let site = site().await;
    let job = |version: &str| {
        format!(
            "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: migrate\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{{name: m, image: \"migrate:{version}\"}}]\n"
        )
    };
    site.write("k8s/job.yaml", &job("1"));
    site.write("workflows/shop.toml", &one_task("path = \"k8s\""));
    let (code, out) = site.gantry(&["run", "shop"]).await;
    assert_eq!(code, 0, "{out}");

    site.write("k8s/job.yaml", &job("2"));
    let (code, out) = site.gantry(&["run", "shop"]).await;
    assert_ne!(code, 0, "{out}");
    let web = outcome_line(&out, "app.web");
    assert!(web.contains("field is immutable"), "{out}");
    assert!(web.contains("set recreate_on_immutable = true"), "{out}");

    site.write(
        "workflows/shop.toml",
        &one_task("path = \"k8s\"\nrecreate_on_immutable = true"),
    );
    let (code, out) = site.gantry(&["run", "shop"]).await;
    assert_eq!(code, 0, "{out}");
    let live = site.get("batch/v1", "jobs", "shop", "migrate").unwrap();
    assert_eq!(
        live["spec"]["template"]["spec"]["containers"][0]["image"],
        "migrate:2"
    );
}

const ROLLBACK_WORKFLOW: &str = r#"
on_failure = "rollback"

[app.web]
kind = "manifest"
path = "k8s"
namespace = "shop"
create_namespace = true
vars = { replicas = "REPLICAS" }

[app.check]
kind = "exec"
command = ["sh", "-c", "CHECK"]

[[steps]]
name = "deploy"
tasks = ["app.web"]

[[steps]]
name = "check"
tasks = ["app.check"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_restores_the_previous_objects_and_removes_new_ones() {
    let site = site().await;
    site.write("k8s/web.yaml", WEB);
    let workflow = |replicas: &str, check: &str| {
        ROLLBACK_WORKFLOW
            .replace("REPLICAS", replicas)
            .replace("CHECK", check)
    };
    site.write("workflows/shop.toml", &workflow("1", "true"));
    let (code, out) = site.gantry(&["run", "shop"]).await;
    assert_eq!(code, 0, "{out}");

    site.write(
        "k8s/extra.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: extra}\ndata: {k: v}\n",
    );
    site.write(
        "workflows/shop.toml",
        &workflow("4", "echo smoke test failed >&2; exit 1"),
    );
    let (code, out) = site.gantry(&["run", "shop"]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("rolled back"), "{out}");
    let d = site.get("apps/v1", "deployments", "shop", "web").unwrap();
    assert_eq!(
        d["spec"]["replicas"], 1,
        "the previous replica count is back"
    );
    assert!(
        site.get("v1", "configmaps", "shop", "extra").is_none(),
        "an object the failed run added is removed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_mounting_a_claim_is_forced_to_recreate() {
    let site = site().await;
    site.write(
        "k8s/db.yaml",
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: data}\nspec:\n  accessModes: [ReadWriteOnce]\n  resources: {requests: {storage: 1Gi}}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: db}\nspec:\n  selector: {matchLabels: {app: db}}\n  template:\n    metadata: {labels: {app: db}}\n    spec:\n      containers: [{name: db, image: postgres}]\n      volumes: [{name: data, persistentVolumeClaim: {claimName: data}}]\n",
    );
    site.write(
        "workflows/shop.toml",
        &one_task("path = \"k8s\"\nmax_surge = 2"),
    );
    let (code, out) = site.gantry(&["run", "shop"]).await;
    assert_eq!(code, 0, "{out}");
    let d = site.get("apps/v1", "deployments", "shop", "db").unwrap();
    assert_eq!(
        d["spec"]["strategy"],
        serde_json::json!({"type": "Recreate"})
    );
    let pvc = site
        .get("v1", "persistentvolumeclaims", "shop", "data")
        .unwrap();
    assert_eq!(pvc["status"]["phase"], "Bound");
    let log = site.log(&out, "shop", "app.web");
    assert!(
        log.contains("mounts PersistentVolumeClaim data") && log.contains("Recreate"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diff_reports_creates_updates_unchanged_and_prunes() {
    let site = site().await;
    let cm = |name: &str| {
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\ndata: {{k: v}}\n")
    };
    // An image bump at the end of a long name: the diff shows both lines whole.
    let long = "registry.example.com/team/shop/web-frontend-with-a-rather-long-name";
    let web = |tag: &str| WEB.replace("shop/web:1", &format!("{long}:{tag}"));
    site.write("k8s/web.yaml", &web("1.0.1"));
    site.write("k8s/old.yaml", &cm("old"));
    site.write("k8s/same.yaml", &cm("same"));
    site.write(
        "workflows/shop.toml",
        &one_task("path = \"k8s\"\nvars = { replicas = \"2\" }"),
    );
    let (code, out) = site.gantry(&["run", "shop"]).await;
    assert_eq!(code, 0, "{out}");

    site.remove("k8s/old.yaml");
    site.write("k8s/new.yaml", &cm("new"));
    site.write("k8s/web.yaml", &web("1.0.2"));
    site.write(
        "workflows/shop.toml",
        &one_task("path = \"k8s\"\nvars = { replicas = \"3\" }"),
    );
    let (code, out) = site.gantry(&["diff", "shop"]).await;
    // Changes exit 1, as `diff` and `kubectl diff` do.
    assert_eq!(code, 1, "{out}");
    let line = |target: &str| {
        out.lines()
            .find(|l| l.contains(target))
            .unwrap_or_else(|| panic!("no line for {target}:\n{out}"))
            .to_string()
    };
    assert!(line("apps/Deployment/shop/web").contains("update"), "{out}");
    assert!(
        line("apps/Deployment/shop/web").contains("spec.replicas: 2 → 3"),
        "{out}"
    );
    // The one-line summary keeps the difference of long values visible too.
    let summary = line("apps/Deployment/shop/web");
    assert!(
        summary.contains("1.0.1") && summary.contains("1.0.2"),
        "{out}"
    );
    assert!(line(" /Service/shop/web").contains("unchanged"), "{out}");
    assert!(line(" /ConfigMap/shop/same").contains("unchanged"), "{out}");
    assert!(line(" /ConfigMap/shop/new").contains("create"), "{out}");
    assert!(line(" /ConfigMap/shop/old").contains("delete"), "{out}");
    for whole in [
        "--- apps/Deployment/shop/web (now)".to_string(),
        "+++ apps/Deployment/shop/web (after the deploy)".to_string(),
        "-  replicas: 2".to_string(),
        "+  replicas: 3".to_string(),
        format!("-      - image: {long}:1.0.1"),
        format!("+      - image: {long}:1.0.2"),
        "+++ /ConfigMap/shop/new (after the deploy)".to_string(),
        "+  name: new".to_string(),
    ] {
        assert!(
            out.lines().any(|l| l.trim_start() == whole.trim_start()),
            "{whole}:\n{out}"
        );
    }
    let (code, text) = site.gantry(&["diff", "shop", "--json"]).await;
    assert_eq!(code, 1, "{text}");
    let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(v["changed"], true, "{v}");
    let deployment = v["tasks"][0]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["target"] == "apps/Deployment/shop/web")
        .unwrap();
    assert!(
        deployment["diff"]
            .as_str()
            .unwrap()
            .contains(&format!("\n+      - image: {long}:1.0.2\n")),
        "{deployment}"
    );
    let d = site.get("apps/v1", "deployments", "shop", "web").unwrap();
    assert_eq!(d["spec"]["replicas"], 2, "diff changed nothing");
    assert!(site.get("v1", "configmaps", "shop", "new").is_none());

    // Once deployed, nothing is left to change: exit 0.
    let (code, out) = site.gantry(&["run", "shop"]).await;
    assert_eq!(code, 0, "{out}");
    let (code, out) = site.gantry(&["diff", "shop"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("no changes planned"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_the_plugin_was_not_granted_is_denied() {
    let site = site().await;
    site.write(
        "k8s/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: sneaky, namespace: kube-system}\ndata: {k: v}\n",
    );
    site.write("workflows/shop.toml", &one_task("path = \"k8s\""));
    let (code, out) = site.gantry(&["run", "shop"]).await;
    assert_ne!(code, 0, "{out}");
    let line = outcome_line(&out, "app.web");
    assert!(
        line.contains("capability denied") && line.contains("namespace `kube-system`"),
        "{out}"
    );
    assert!(
        site.get("v1", "configmaps", "kube-system", "sneaky")
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_api_errors_are_retried() {
    let site = site().await;
    site.write("k8s/web.yaml", WEB);
    site.write(
        "workflows/shop.toml",
        &one_task("path = \"k8s\"\nvars = { replicas = \"1\" }"),
    );
    for (status, times) in [(503, 2), (429, 1)] {
        site.sim.inject(kubesim::FaultRule {
            method: Some("PATCH".into()),
            path: Some("/deployments/".into()),
            status: Some(status),
            times: Some(times),
            ..Default::default()
        });
    }
    site.sim.inject(kubesim::FaultRule {
        method: Some("GET".into()),
        path: Some("/deployments/web".into()),
        status: Some(500),
        times: Some(1),
        ..Default::default()
    });
    let (code, out) = site.gantry(&["run", "shop"]).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(site.sim.pending_faults(), 0, "every injected fault was hit");
    let log = site.log(&out, "shop", "app.web");
    assert!(log.contains("500 InternalError); retrying"), "{log}");
    assert!(site.get("apps/v1", "deployments", "shop", "web").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destroying_a_removed_task_deletes_its_inventory() {
    let site = site().await;
    site.write("k8s/web.yaml", WEB);
    site.write(
        "workflows/shop.toml",
        &format!(
            "{}\n[app.keep]\nkind = \"exec\"\ncommand = [\"sh\", \"-c\", \"true\"]\n",
            one_task("path = \"k8s\"\nvars = { replicas = \"1\" }")
        ),
    );
    let (code, out) = site.gantry(&["run", "shop"]).await;
    assert_eq!(code, 0, "{out}");
    site.write(
        "workflows/shop.toml",
        "[app.keep]\nkind = \"exec\"\ncommand = [\"sh\", \"-c\", \"true\"]\n",
    );
    let (code, out) = site.gantry(&["run", "shop"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        site.get("apps/v1", "deployments", "shop", "web").is_none(),
        "{out}"
    );
    assert!(site.get("v1", "services", "shop", "web").is_none(), "{out}");
    assert!(
        site.get("v1", "namespaces", "", "shop").is_some(),
        "the namespace was not the task's"
    );
}
