//! The helm task kind and the shared apply engine end to end: the real gantry binary renders
//! charts with the real helm 4 (`scripts/setup-kube-tools.sh`) and applies them to a
//! Kubernetes API simulator served by this test; the tests read the simulator's objects and
//! the task logs to check what was done, and in which order.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

mod common;

use common::sim::{SimSite, assert_ordered, copy_dir, outcome_line};

/// The helm binary the setup script installs; under CI=true its absence fails the test.
fn helm_binary() -> Option<PathBuf> {
    let root = common::repo_root();
    let path = root.join("target/tools/helm");
    if !path.is_file() {
        let _ = std::process::Command::new(root.join("scripts/setup-kube-tools.sh")).status();
    }
    if path.is_file() {
        return Some(path.canonicalize().unwrap_or(path));
    }
    let hint = "helm is not installed: run scripts/setup-kube-tools.sh";
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{hint}");
    }
    eprintln!("skipping: {hint}");
    None
}

fn kubectl_binary() -> PathBuf {
    common::repo_root().join("target/tools/kubectl")
}

/// The simulator site, granting helm its binary and the given namespaces.
struct Site {
    base: SimSite,
    helm: PathBuf,
}

impl std::ops::Deref for Site {
    type Target = SimSite;

    fn deref(&self) -> &SimSite {
        &self.base
    }
}

impl Site {
    async fn new(namespaces: &[&str]) -> Option<Site> {
        let helm = helm_binary()?;
        let ns: Vec<String> = namespaces.iter().map(|n| format!("{n:?}")).collect();
        let base = SimSite::new(&format!(
            "[plugins.helm]\nexec = [{:?}]\n# Charts come from a repository on loopback in one test.\nexec_network = true\nkube_namespaces = [{}]\n\n[plugins.manifest]\nkube_namespaces = [{}]\n",
            helm.display().to_string(),
            ns.join(", "),
            ns.join(", ")
        ))
        .await;
        Some(Site { base, helm })
    }

    /// Copies a fixture chart into the configuration directory under `charts/`.
    fn chart(&self, name: &str) {
        let from = common::repo_root()
            .join("daemon/tests/fixtures/charts")
            .join(name);
        copy_dir(&from, &self.config.path().join("files/charts").join(name));
    }
}

fn web_task(params: &str) -> String {
    format!(
        "[app.web]\nkind = \"helm\"\nchart = \"charts/web\"\nnamespace = \"shop\"\ncreate_namespace = true\nwait_timeout = \"60s\"\n{params}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn installs_a_chart_rendered_against_the_clusters_capabilities() {
    let Some(site) = Site::new(&["shop"]).await else {
        return;
    };
    site.chart("web");
    site.write("values/prod.yaml", "greeting: from-file\nreplicas: 2\n");
    site.write(
        "workflows/shop.toml",
        &web_task("values_files = [\"values/prod.yaml\"]\nvalues = { replicas = 3 }\noutputs = { port = \"Service/web:spec.ports.0.port\" }"),
    );
    let (code, out) = site.gantry(&["run", "shop"]).await;
    assert_eq!(code, 0, "{out}");

    let d = site
        .get("apps/v1", "deployments", "shop", "web")
        .expect("deployment");
    assert_eq!(d["spec"]["replicas"], 3, "inline values win over files");
    assert_eq!(
        d["status"]["readyReplicas"], 3,
        "the task waited for the rollout"
    );
    assert_eq!(d["metadata"]["labels"]["gantry.dev/task"], "app.web");
    let cm = site
        .get("v1", "configmaps", "shop", "web-settings")
        .expect("configmap");
    assert_eq!(cm["data"]["greeting"], "from-file");
    assert_eq!(cm["data"]["upgrade"], "false");
    assert_eq!(
        cm["data"]["deployments"], "served",
        "Capabilities.APIVersions comes from discovery"
    );
    assert!(
        cm["data"]["kubeVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("v1.")),
        "{cm}"
    );
    assert!(
        site.get("v1", "pods", "shop", "web-test").is_none(),
        "tests are not run"
    );
    assert!(
        site.tool(
            &kubectl_binary(),
            &[
                "get",
                "secrets",
                "-n",
                "shop",
                "-l",
                "owner=helm",
                "-o",
                "name"
            ]
        )
        .await
        .1
        .trim()
        .is_empty(),
        "no helm release storage"
    );
    for expected in [
        "output chart=web",
        "output chart_version=1.0.0",
        "output app_version=1.0",
        "output port=80",
        "output manifest_digest=",
    ] {
        assert!(out.contains(expected), "{expected}: {out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrades_with_new_values_and_a_chart_version_bump_and_diffs_first() {
    let Some(site) = Site::new(&["shop"]).await else {
        return;
    };
    site.chart("web");
    site.write(
        "workflows/shop.toml",
        &web_task("values = { replicas = 1 }"),
    );
    let (code, out) = site.gantry(&["run", "shop"]).await;
    assert_eq!(code, 0, "{out}");

    site.edit("charts/web/Chart.yaml", "version: 1.0.0", "version: 1.1.0");
    site.write(
        "workflows/shop.toml",
        &web_task("values = { replicas = 2, extra = true }"),
    );
    let (code, out) = site.gantry(&["diff", "shop"]).await;
    assert_eq!(code, 1, "{out}");
    let line = |target: &str| {
        out.lines()
            .find(|l| l.contains(target))
            .unwrap_or_else(|| panic!("no line for {target}:\n{out}"))
            .to_string()
    };
    assert!(line("chart web 1.1.0").contains("1.0.0 → 1.1.0"), "{out}");
    let deploy = line("apps/Deployment/shop/web");
    assert!(
        deploy.contains("update") && deploy.contains("spec.replicas: 1 → 2"),
        "{out}"
    );
    assert!(
        line(" /ConfigMap/shop/web-extra").contains("create"),
        "{out}"
    );
    assert!(line(" /Service/shop/web").contains("unchanged"), "{out}");
    assert_eq!(
        site.get("apps/v1", "deployments", "shop", "web").unwrap()["spec"]["replicas"],
        1,
        "diff changed nothing"
    );

    let (code, out) = site.gantry(&["run", "shop"]).await;
    assert_eq!(code, 0, "{out}");
    let d = site.get("apps/v1", "deployments", "shop", "web").unwrap();
    assert_eq!(d["spec"]["replicas"], 2);
    let cm = site
        .get("v1", "configmaps", "shop", "web-settings")
        .unwrap();
    assert_eq!(cm["data"]["upgrade"], "true", "rendered with --is-upgrade");
    assert_eq!(cm["data"]["chart"], "1.1.0");
    assert!(site.get("v1", "configmaps", "shop", "web-extra").is_some());
    assert!(out.contains("output chart_version=1.1.0"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_upgrade_puts_the_previous_objects_back() {
    let Some(site) = Site::new(&["shop"]).await else {
        return;
    };
    site.chart("web");
    site.write(
        "workflows/shop.toml",
        &web_task("values = { replicas = 1 }"),
    );
    let (code, out) = site.gantry(&["run", "shop"]).await;
    assert_eq!(code, 0, "{out}");

    site.write(
        "workflows/shop.toml",
        &web_task("wait_timeout = \"3s\"\nvalues = { replicas = 2, neverReady = true, extra = true, greeting = \"new\" }")
            .replace("wait_timeout = \"60s\"\n", ""),
    );
    let (code, out) = site.gantry(&["run", "shop"]).await;
    assert_eq!(code, 3, "{out}");
    let web = outcome_line(&out, "app.web");
    assert!(
        web.contains("not ready after 3 s") && web.contains("previous objects were restored"),
        "{out}"
    );
    let d = site.get("apps/v1", "deployments", "shop", "web").unwrap();
    assert_eq!(d["spec"]["replicas"], 1, "{d}");
    assert!(
        d["spec"]["template"]["metadata"]["annotations"]["kubesim.gantry.dev/never-ready"]
            .is_null(),
        "{d}"
    );
    let cm = site
        .get("v1", "configmaps", "shop", "web-settings")
        .unwrap();
    assert_eq!(cm["data"]["greeting"], "hello");
    assert!(
        site.get("v1", "configmaps", "shop", "web-extra").is_none(),
        "what the failed upgrade created is removed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_run_by_weight_around_the_deploy_and_on_destroy() {
    let Some(site) = Site::new(&["shop"]).await else {
        return;
    };
    site.chart("web");
    let keep = "[app.keep]\nkind = \"exec\"\ncommand = [\"sh\", \"-c\", \"true\"]\n";
    site.write(
        "workflows/shop.toml",
        &format!("{}\n{keep}", web_task("values = { hooks = true }")),
    );
    let (code, out) = site.gantry(&["run", "shop"]).await;
    assert_eq!(code, 0, "{out}");
    let log = site.log(&out, "shop", "app.web");
    assert_ordered(
        &log,
        &[
            "hook pre-install Job shop/web-pre-early (weight -5): succeeded",
            "hook pre-install Job shop/web-pre-late (weight 5): succeeded",
            "applied Deployment shop/web",
            "hook post-install Job shop/web-post (weight 0): succeeded",
        ],
    );
    let job = site
        .get("batch/v1", "jobs", "shop", "web-pre-early")
        .expect("hook job kept");
    assert!(
        job["metadata"]["labels"]["gantry.dev/task"] == "app.web",
        "{job}"
    );
    assert!(
        site.get("batch/v1", "jobs", "shop", "web-pre-delete")
            .is_none()
    );

    let (code, out) = site.gantry(&["run", "shop"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        site.log(&out, "shop", "app.web")
            .contains("hook pre-upgrade Job shop/web-pre-early (weight -5): succeeded"),
        "{out}"
    );

    site.write("workflows/shop.toml", keep);
    let (code, out) = site.gantry(&["run", "shop"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        site.get("apps/v1", "deployments", "shop", "web").is_none(),
        "{out}"
    );
    assert!(
        site.get("batch/v1", "jobs", "shop", "web-pre-delete")
            .is_some(),
        "{out}"
    );
    assert!(
        site.get("batch/v1", "jobs", "shop", "web-post-delete")
            .is_some(),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chart_with_crds_applies_them_first_and_keeps_them_on_destroy() {
    let Some(site) = Site::new(&["*"]).await else {
        return;
    };
    site.chart("operator");
    let keep = "[app.keep]\nkind = \"exec\"\ncommand = [\"sh\", \"-c\", \"true\"]\n";
    let task = "[app.op]\nkind = \"helm\"\nchart = \"charts/operator\"\nnamespace = \"shop\"\ncreate_namespace = true\nrelease = \"op\"\n";
    site.write("workflows/shop.toml", &format!("{task}\n{keep}"));
    let (code, out) = site.gantry(&["diff", "shop"]).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains("example.com/Widget/shop/op-widget") && l.contains("create")),
        "a diff before the CRD exists: {out}"
    );
    let (code, out) = site.gantry(&["run", "shop"]).await;
    assert_eq!(code, 0, "{out}");
    let crd = site
        .get(
            "apiextensions.k8s.io/v1",
            "customresourcedefinitions",
            "",
            "widgets.example.com",
        )
        .expect("crd");
    assert_eq!(
        crd["metadata"]["annotations"]["helm.sh/resource-policy"],
        "keep"
    );
    let w = site
        .get("example.com/v1", "widgets", "shop", "op-widget")
        .expect("widget");
    assert_eq!(w["spec"]["size"], 3);
    let log = site.log(&out, "shop", "app.op");
    assert_ordered(
        &log,
        &[
            "applied CustomResourceDefinition widgets.example.com",
            "applied Widget shop/op-widget",
        ],
    );

    site.write("workflows/shop.toml", keep);
    let (code, out) = site.gantry(&["run", "shop"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        site.get("example.com/v1", "widgets", "shop", "op-widget")
            .is_none(),
        "{out}"
    );
    assert!(
        site.get(
            "apiextensions.k8s.io/v1",
            "customresourcedefinitions",
            "",
            "widgets.example.com"
        )
        .is_some(),
        "CRDs are kept: {out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_subchart_dependency_is_built_and_rendered() {
    let Some(site) = Site::new(&["shop"]).await else {
        return;
    };
    site.chart("app");
    site.chart("common");
    site.write(
        "workflows/shop.toml",
        "[app.app]\nkind = \"helm\"\nchart = \"charts/app\"\nnamespace = \"shop\"\ncreate_namespace = true\n",
    );
    let (code, out) = site.gantry(&["run", "shop"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        site.get("v1", "configmaps", "shop", "app-app").is_some(),
        "{out}"
    );
    let common = site
        .get("v1", "configmaps", "shop", "app-common")
        .expect("subchart object");
    assert_eq!(common["data"]["from"], "common");
    assert!(
        !site.config.path().join("files/charts/app/charts").exists(),
        "the source is not written to"
    );
}

/// Serves the files of `dir` over HTTP on loopback until `requests` were answered or five
/// minutes passed (a loaded machine may take a while to reach the fetch); returns the base URL.
fn serve(dir: PathBuf, requests: usize) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let until = std::time::Instant::now() + Duration::from_secs(300);
        let mut served = 0;
        while served < requests && std::time::Instant::now() < until {
            let Ok((mut stream, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            };
            let _ = stream.set_nonblocking(false);
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut buf = [0u8; 4096];
            let n = stream.read(&mut buf).unwrap_or(0);
            let request = String::from_utf8_lossy(&buf[..n]);
            let path = request
                .split_whitespace()
                .nth(1)
                .unwrap_or("/")
                .trim_start_matches('/')
                .to_string();
            let file = dir.join(&path);
            let (status, body) = match std::fs::read(&file) {
                Ok(b) if !path.contains("..") => ("200 OK", b),
                _ => ("404 Not Found", Vec::new()),
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(&body);
            served += 1;
        }
    });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chart_from_a_repository_on_loopback() {
    let Some(site) = Site::new(&["shop"]).await else {
        return;
    };
    let repo = site.state.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    let chart = common::repo_root().join("daemon/tests/fixtures/charts/web");
    let (code, out) = site
        .tool(
            &site.helm,
            &[
                "package",
                chart.to_str().unwrap(),
                "--destination",
                repo.to_str().unwrap(),
            ],
        )
        .await;
    assert_eq!(code, 0, "{out}");
    let (code, out) = site
        .tool(&site.helm, &["repo", "index", repo.to_str().unwrap()])
        .await;
    assert_eq!(code, 0, "{out}");
    let url = serve(repo, 20);
    site.write(
        "workflows/shop.toml",
        &format!("[app.web]\nkind = \"helm\"\nchart = \"web\"\nrepo = \"{url}\"\nversion = \"1.0.0\"\nnamespace = \"shop\"\ncreate_namespace = true\n"),
    );
    let (code, out) = site.gantry(&["run", "shop"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        site.get("apps/v1", "deployments", "shop", "web").is_some(),
        "{out}"
    );
    assert!(out.contains("output chart_version=1.0.0"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_feed_a_later_task() {
    let Some(site) = Site::new(&["shop"]).await else {
        return;
    };
    site.chart("web");
    site.write(
        "workflows/shop.toml",
        &format!(
            "{}\n[app.smoke]\nkind = \"exec\"\ncommand = [\"sh\", \"-c\", \"echo ::gantry-outputs::; echo target=$R:$P\"]\nenv = {{ R = \"${{tasks.app.web.outputs.release}}\", P = \"${{tasks.app.web.outputs.port}}\" }}\nneeds = [\"app.web\"]\n",
            web_task("values = { port = 8080 }\noutputs = { port = \"Service/web:spec.ports.0.port\" }")
        ),
    );
    let (code, out) = site.gantry(&["run", "shop"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("output target=web:8080"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_version_migration_keeps_the_object() {
    let Some(site) = Site::new(&["shop"]).await else {
        return;
    };
    site.chart("web");
    site.write(
        "workflows/shop.toml",
        &web_task("values = { hpaApiVersion = \"autoscaling/v1\" }"),
    );
    let (code, out) = site.gantry(&["run", "shop"]).await;
    assert_eq!(code, 0, "{out}");
    let before = site
        .get("autoscaling/v2", "horizontalpodautoscalers", "shop", "web")
        .expect("hpa");
    site.write(
        "workflows/shop.toml",
        &web_task("values = { hpaApiVersion = \"autoscaling/v2\" }"),
    );
    let (code, out) = site.gantry(&["run", "shop"]).await;
    assert_eq!(code, 0, "{out}");
    let after = site
        .get("autoscaling/v2", "horizontalpodautoscalers", "shop", "web")
        .expect("the HPA applied as v2 was not pruned");
    assert_eq!(before["metadata"]["uid"], after["metadata"]["uid"]);
    assert!(
        !site.log(&out, "shop", "app.web").contains("pruned"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_strategy_is_enforced_over_the_chart_and_out_of_band_changes() {
    let Some(site) = Site::new(&["shop"]).await else {
        return;
    };
    site.chart("web");
    site.write("workflows/shop.toml", &web_task("max_surge = 1"));
    let (code, out) = site.gantry(&["run", "shop"]).await;
    assert_eq!(code, 0, "{out}");
    let d = site.get("apps/v1", "deployments", "shop", "web").unwrap();
    assert_eq!(
        d["spec"]["strategy"]["rollingUpdate"],
        serde_json::json!({"maxSurge": 1, "maxUnavailable": "25%"}),
        "the chart's 50% / 2 are overwritten"
    );

    let (code, patched) = site
        .tool(
            &kubectl_binary(),
            &[
                "patch",
                "deployment",
                "web",
                "-n",
                "shop",
                "--type",
                "merge",
                "-p",
                r#"{"spec":{"strategy":{"rollingUpdate":{"maxSurge":"90%"}}}}"#,
            ],
        )
        .await;
    assert_eq!(code, 0, "{patched}");
    assert_eq!(
        site.get("apps/v1", "deployments", "shop", "web").unwrap()["spec"]["strategy"]["rollingUpdate"]
            ["maxSurge"],
        "90%"
    );
    let (code, out) = site.gantry(&["run", "shop"]).await;
    assert_eq!(
        code, 0,
        "a value set with kubectl patch is no conflict: {out}"
    );
    let d = site.get("apps/v1", "deployments", "shop", "web").unwrap();
    assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxSurge"], 1);
    let managers: Vec<&str> = d["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["manager"].as_str())
        .collect();
    assert!(managers.contains(&"gantry-rollout"), "{managers:?}");

    site.write("workflows/shop.toml", &web_task("strategy = \"Recreate\""));
    let (code, out) = site.gantry(&["run", "shop"]).await;
    assert_eq!(code, 0, "{out}");
    let d = site.get("apps/v1", "deployments", "shop", "web").unwrap();
    assert_eq!(
        d["spec"]["strategy"],
        serde_json::json!({"type": "Recreate"}),
        "no rollingUpdate left behind"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifests_go_in_kind_order_and_bad_ones_fail_before_anything_is_applied() {
    let Some(site) = Site::new(&["shop"]).await else {
        return;
    };
    site.write(
        "k8s/all.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      serviceAccountName: web\n      containers: [{name: web, image: web, volumeMounts: [{name: c, mountPath: /c}]}]\n      volumes: [{name: c, configMap: {name: web, defaultMode: 0644}}]\n---\napiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {selector: {app: web}, ports: [{port: 80}]}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: web}\ndata: {k: v}\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {name: web}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n",
    );
    site.write(
        "workflows/shop.toml",
        "[app.web]\nkind = \"manifest\"\npath = \"k8s\"\nnamespace = \"shop\"\n",
    );
    let (code, out) = site.gantry(&["run", "shop"]).await;
    assert_eq!(code, 0, "{out}");
    assert_ordered(
        &site.log(&out, "shop", "app.web"),
        &[
            "applied Namespace shop",
            "applied ServiceAccount shop/web",
            "applied ConfigMap shop/web",
            "applied Service shop/web",
            "applied Deployment shop/web",
        ],
    );
    let d = site.get("apps/v1", "deployments", "shop", "web").unwrap();
    assert_eq!(
        d["spec"]["template"]["spec"]["volumes"][0]["configMap"]["defaultMode"], 420,
        "0644 is octal, as kubectl reads it"
    );

    site.write(
        "k8s/more.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: more}\n---\napiVersion: example.com/v1\nkind: Gadget\nmetadata: {name: g}\n",
    );
    let (code, out) = site.gantry(&["run", "shop"]).await;
    assert_eq!(code, 3, "{out}");
    assert!(
        outcome_line(&out, "app.web").contains("k8s/more.yaml:5"),
        "{out}"
    );
    assert!(
        site.get("v1", "configmaps", "shop", "more").is_none(),
        "nothing was applied"
    );

    site.write(
        "k8s/more.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: more\n  labels: [oops\n",
    );
    let (code, out) = site.gantry(&["validate"]).await;
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("k8s/more.yaml:"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_installed_with_the_helm_cli_is_adopted() {
    let Some(site) = Site::new(&["shop"]).await else {
        return;
    };
    site.chart("web");
    let chart = site.config.path().join("files/charts/web");
    let (code, out) = site
        .tool(
            &site.helm,
            &[
                "install",
                "web",
                chart.to_str().unwrap(),
                "-n",
                "shop",
                "--create-namespace",
            ],
        )
        .await;
    assert_eq!(code, 0, "{out}");
    let secrets = || async {
        site.tool(
            &kubectl_binary(),
            &[
                "get",
                "secrets",
                "-n",
                "shop",
                "-l",
                "owner=helm",
                "-o",
                "name",
            ],
        )
        .await
        .1
    };
    assert!(secrets().await.contains("sh.helm.release.v1.web.v1"));

    site.write("workflows/shop.toml", &web_task(""));
    let (code, out) = site.gantry(&["run", "shop"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        site.log(&out, "shop", "app.web")
            .contains("set adopt = true to remove it"),
        "{out}"
    );
    let d = site.get("apps/v1", "deployments", "shop", "web").unwrap();
    assert_eq!(d["metadata"]["labels"]["gantry.dev/task"], "app.web");

    site.write("workflows/shop.toml", &web_task("adopt = true"));
    let (code, out) = site.gantry(&["run", "shop"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        site.log(&out, "shop", "app.web")
            .contains("removed the helm release record shop/sh.helm.release.v1.web.v1"),
        "{out}"
    );
    assert!(!secrets().await.contains("sh.helm.release"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chart_with_many_crds_stays_under_the_output_cap() {
    let Some(site) = Site::new(&["*"]).await else {
        return;
    };
    site.write(
        "charts/big/Chart.yaml",
        "apiVersion: v2\nname: big\nversion: 0.1.0\n",
    );
    // 80 definitions of about 20 KiB each: 1.6 MiB of state as plain JSON.
    let description = "A field of a large operator's API, described at length. ".repeat(350);
    for i in 0..80 {
        site.write(
            &format!("charts/big/crds/kind{i}.yaml"),
            &format!(
                "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: kind{i}s.big.example.com\nspec:\n  group: big.example.com\n  scope: Namespaced\n  names: {{kind: Kind{i}, plural: kind{i}s}}\n  versions:\n    - name: v1\n      served: true\n      storage: true\n      schema:\n        openAPIV3Schema:\n          type: object\n          description: \"{i} {description}\"\n          x-kubernetes-preserve-unknown-fields: true\n"
            ),
        );
    }
    site.write(
        "charts/big/templates/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: big}\ndata: {k: v}\n",
    );
    site.write(
        "workflows/shop.toml",
        "[app.big]\nkind = \"helm\"\nchart = \"charts/big\"\nnamespace = \"shop\"\ncreate_namespace = true\nwait_timeout = \"120s\"\n",
    );
    let (code, out) = site.gantry(&["run", "shop"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("truncated"), "{out}");
    assert!(
        site.get(
            "apiextensions.k8s.io/v1",
            "customresourcedefinitions",
            "",
            "kind79s.big.example.com"
        )
        .is_some()
    );
    let (code, out) = site.gantry(&["run", "shop"]).await;
    assert_eq!(
        code, 0,
        "the recorded state reads back for the upgrade: {out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_validates_and_unstable_templates_are_reported() {
    let Some(site) = Site::new(&["shop"]).await else {
        return;
    };
    let example = common::repo_root().join("examples/helm");
    let (code, out) = site.gantry(&["validate", example.to_str().unwrap()]).await;
    assert_eq!(code, 0, "{out}");

    site.chart("web");
    site.write(
        "charts/web/templates/secret.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: web\nstringData:\n  password: {{ randAlphaNum 16 | quote }}\n",
    );
    site.write("workflows/shop.toml", &web_task(""));
    let (code, out) = site.gantry(&["validate"]).await;
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("charts/web/templates/secret.yaml:6") && out.contains("randAlphaNum"),
        "{out}"
    );
    site.write("workflows/shop.toml", &web_task("allow_unstable = true"));
    let (code, out) = site.gantry(&["validate"]).await;
    assert_eq!(code, 0, "{out}");
}
