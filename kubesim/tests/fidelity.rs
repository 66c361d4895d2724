//! Fidelity: the real kubectl 1.35 and helm 4 against kubesim. The binaries come from
//! `scripts/setup-kube-tools.sh` (target/tools); under CI=true a missing one fails the test.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

fn tool(name: &str) -> Option<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/tools")
        .join(name);
    if path.is_file() {
        return Some(path);
    }
    let hint = format!("{name} is not installed: run scripts/setup-kube-tools.sh");
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{hint}");
    }
    eprintln!("skipping: {hint}");
    None
}

struct Cluster {
    sim: kubesim::RunningSim,
    home: tempfile::TempDir,
    kubeconfig: PathBuf,
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    fn ok(self) -> String {
        assert_eq!(
            self.code, 0,
            "stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self.stdout
    }
}

impl Cluster {
    async fn start() -> Cluster {
        let sim = kubesim::start(kubesim::SimOptions {
            controllers: kubesim::ControllerOptions {
                ready_delay: Duration::from_millis(200),
                ..Default::default()
            },
            ..Default::default()
        })
        .await
        .unwrap();
        let home = tempfile::tempdir().unwrap();
        let kubeconfig = home.path().join("kubeconfig");
        sim.write_kubeconfig(&kubeconfig).unwrap();
        Cluster {
            sim,
            home,
            kubeconfig,
        }
    }

    async fn run(&self, program: &Path, args: &[&str], stdin: Option<&str>) -> Out {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .env_clear()
            .env("HOME", self.home.path())
            .env("KUBECONFIG", &self.kubeconfig)
            .env("PATH", "/usr/bin:/bin")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let input = stdin.map(str::to_string);
        tokio::task::spawn_blocking(move || {
            use std::io::Write;
            let mut child = cmd.spawn().expect("start the tool");
            if let Some(text) = input {
                child
                    .stdin
                    .take()
                    .unwrap()
                    .write_all(text.as_bytes())
                    .unwrap();
            }
            drop(child.stdin.take());
            let out = child.wait_with_output().unwrap();
            Out {
                code: out.status.code().unwrap_or(-1),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            }
        })
        .await
        .unwrap()
    }

    /// Runs a command line without quoting (arguments split at spaces) that must succeed.
    async fn ok(&self, program: &Path, line: &str) -> String {
        let args: Vec<&str> = line.split_whitespace().collect();
        self.run(program, &args, None).await.ok()
    }

    fn object(&self, api_version: &str, plural: &str, ns: &str, name: &str) -> Option<Value> {
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let reg = self.sim.store.registry();
        let t = reg.by_plural(group, version, plural).unwrap();
        self.sim.store.get(t, ns, name).ok()
    }

    fn write(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.home.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }
}

const APP: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop, labels: {app: web}}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
        - name: web
          image: nginx:1.27
          ports: [{containerPort: 80}]
          env: [{name: MODE, value: blue}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 80}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: shop}
data: {level: "1"}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_client_side_apply_rollout_wait_get_and_delete() {
    let Some(kubectl) = tool("kubectl") else {
        return;
    };
    let c = Cluster::start().await;
    let app = c.write("app.yaml", APP);
    let app = app.to_str().unwrap();

    let out = c.run(&kubectl, &["apply", "-f", app], None).await.ok();
    for line in [
        "namespace/shop created",
        "deployment.apps/web created",
        "service/web created",
        "configmap/settings created",
    ] {
        assert!(out.contains(line), "{out}");
    }
    let out = c
        .ok(
            &kubectl,
            "-n shop rollout status deployment/web --timeout=30s",
        )
        .await;
    assert!(out.contains("successfully rolled out"), "{out}");
    let ready = c
        .ok(
            &kubectl,
            "-n shop get deployment web -o jsonpath={.status.readyReplicas}",
        )
        .await;
    assert_eq!(ready, "2");
    let pods = c.ok(&kubectl, "-n shop get pods -l app=web -o name").await;
    assert_eq!(pods.lines().count(), 2, "{pods}");
    let table = c.ok(&kubectl, "-n shop get pods").await;
    assert!(
        table.starts_with("NAME") && table.contains("Running"),
        "{table}"
    );

    // A change goes through the strategic merge patch kubectl computes.
    let changed = c.write(
        "app.yaml",
        &APP.replace("nginx:1.27", "nginx:1.28")
            .replace("level: \"1\"", "level: \"2\""),
    );
    let out = c
        .run(&kubectl, &["apply", "-f", changed.to_str().unwrap()], None)
        .await
        .ok();
    assert!(
        out.contains("deployment.apps/web configured") && out.contains("namespace/shop unchanged"),
        "{out}"
    );
    let d = c.object("apps/v1", "deployments", "shop", "web").unwrap();
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.28"
    );
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"], "blue",
        "merge kept the rest"
    );
    assert_eq!(d["metadata"]["generation"], 2);
    c.ok(
        &kubectl,
        "-n shop rollout status deployment/web --timeout=30s",
    )
    .await;
    let out = c
        .ok(
            &kubectl,
            "-n shop wait --for=condition=Available deployment/web --timeout=30s",
        )
        .await;
    assert!(out.contains("condition met"), "{out}");
    let out = c
        .run(
            &kubectl,
            &[
                "-n",
                "shop",
                "patch",
                "deployment",
                "web",
                "--type=merge",
                "-p",
                r#"{"spec":{"replicas":3}}"#,
            ],
            None,
        )
        .await
        .ok();
    assert!(out.contains("patched"), "{out}");
    let out = c
        .run(
            &kubectl,
            &[
                "-n",
                "shop",
                "patch",
                "configmap",
                "settings",
                "--type=json",
                "-p",
                r#"[{"op":"add","path":"/data/extra","value":"x"}]"#,
            ],
            None,
        )
        .await
        .ok();
    assert!(out.contains("patched"), "{out}");
    assert_eq!(
        c.object("v1", "configmaps", "shop", "settings").unwrap()["data"],
        serde_json::json!({"level": "2", "extra": "x"})
    );

    let out = c
        .run(
            &kubectl,
            &[
                "delete",
                "-f",
                changed.to_str().unwrap(),
                "--wait=true",
                "--timeout=30s",
            ],
            None,
        )
        .await
        .ok();
    assert!(out.contains("deployment.apps \"web\" deleted"), "{out}");
    let gone = c
        .run(&kubectl, &["-n", "shop", "get", "deployment", "web"], None)
        .await;
    assert_ne!(gone.code, 0);
    assert!(
        gone.stderr.contains("NotFound") || gone.stderr.contains("not found"),
        "{}",
        gone.stderr
    );
    assert!(
        c.object("v1", "namespaces", "", "shop").is_none(),
        "the namespace finished terminating"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_server_side_apply_detects_conflicts_and_waits_for_jobs() {
    let Some(kubectl) = tool("kubectl") else {
        return;
    };
    let c = Cluster::start().await;
    let cm = |v: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: shared, namespace: default}}\ndata: {{owner: \"{v}\"}}\n"
        )
    };
    let a = c.write("a.yaml", &cm("alice"));
    let out = c
        .run(
            &kubectl,
            &[
                "apply",
                "--server-side",
                "--field-manager=alice",
                "-f",
                a.to_str().unwrap(),
            ],
            None,
        )
        .await
        .ok();
    assert!(out.contains("configmap/shared serverside-applied"), "{out}");
    let b = c.write("b.yaml", &cm("bob"));
    let clash = c
        .run(
            &kubectl,
            &[
                "apply",
                "--server-side",
                "--field-manager=bob",
                "-f",
                b.to_str().unwrap(),
            ],
            None,
        )
        .await;
    assert_ne!(clash.code, 0);
    assert!(
        clash.stderr.contains("conflict") && clash.stderr.contains("alice"),
        "{}",
        clash.stderr
    );
    c.run(
        &kubectl,
        &[
            "apply",
            "--server-side",
            "--field-manager=bob",
            "--force-conflicts",
            "-f",
            b.to_str().unwrap(),
        ],
        None,
    )
    .await
    .ok();
    let shared = c.object("v1", "configmaps", "default", "shared").unwrap();
    assert_eq!(shared["data"]["owner"], "bob");
    let managers: Vec<&str> = shared["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["manager"].as_str())
        .collect();
    assert!(managers.contains(&"bob"), "{managers:?}");

    let job = c.write(
        "job.yaml",
        "apiVersion: batch/v1\nkind: Job\nmetadata: {name: once, namespace: default}\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{name: c, image: busybox}]\n",
    );
    c.run(
        &kubectl,
        &["apply", "--server-side", "-f", job.to_str().unwrap()],
        None,
    )
    .await
    .ok();
    let out = c
        .ok(
            &kubectl,
            "wait --for=condition=complete job/once --timeout=30s",
        )
        .await;
    assert!(out.contains("condition met"), "{out}");
    let ns = c.ok(&kubectl, "create namespace typed").await;
    assert!(
        ns.contains("namespace/typed created"),
        "typed clients send protobuf: {ns}"
    );
}

const CHART_YAML: &str = "apiVersion: v2\nname: web\nversion: 0.1.0\nappVersion: \"1.0\"\n";
const VALUES: &str = "replicas: 1\nimage: nginx:1.27\nneverReady: false\n";
const TEMPLATE: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}-web
  labels: {app: web}
spec:
  replicas: {{ .Values.replicas }}
  selector:
    matchLabels: {app: web, release: {{ .Release.Name }}}
  template:
    metadata:
      labels: {app: web, release: {{ .Release.Name }}}
      {{- if .Values.neverReady }}
      annotations: {kubesim.gantry.dev/never-ready: "true"}
      {{- end }}
    spec:
      containers:
        - name: web
          image: {{ .Values.image }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ .Release.Name }}-web
spec:
  selector: {app: web, release: {{ .Release.Name }}}
  ports: [{port: 80}]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_install_upgrade_rollback_and_uninstall_with_wait() {
    let Some(helm) = tool("helm") else { return };
    let c = Cluster::start().await;
    c.write("chart/Chart.yaml", CHART_YAML);
    c.write("chart/values.yaml", VALUES);
    c.write("chart/templates/app.yaml", TEMPLATE);
    let chart = c.home.path().join("chart");
    let chart = chart.to_str().unwrap();
    let replicas = |c: &Cluster| {
        c.object("apps/v1", "deployments", "apps", "demo-web")
            .map(|d| d["spec"]["replicas"].clone())
    };

    let out = c
        .run(
            &helm,
            &[
                "install",
                "demo",
                chart,
                "-n",
                "apps",
                "--create-namespace",
                "--wait",
                "--timeout",
                "60s",
            ],
            None,
        )
        .await
        .ok();
    assert!(out.contains("STATUS: deployed"), "{out}");
    let d = c
        .object("apps/v1", "deployments", "apps", "demo-web")
        .unwrap();
    assert_eq!(
        d["status"]["readyReplicas"], 1,
        "--wait waited for the rollout"
    );

    c.run(
        &helm,
        &[
            "upgrade",
            "demo",
            chart,
            "-n",
            "apps",
            "--set",
            "replicas=3",
            "--wait",
            "--timeout",
            "60s",
        ],
        None,
    )
    .await
    .ok();
    assert_eq!(replicas(&c), Some(serde_json::json!(3)));
    let out = c
        .ok(&helm, "rollback demo 1 -n apps --wait --timeout 60s")
        .await;
    assert!(out.contains("Rollback was a success"), "{out}");
    assert_eq!(replicas(&c), Some(serde_json::json!(1)));
    let history = c.ok(&helm, "history demo -n apps -o json").await;
    let history: Value = serde_json::from_str(&history).unwrap();
    assert_eq!(history.as_array().unwrap().len(), 3, "{history}");
    assert_eq!(history[2]["status"], "deployed");

    let stuck = c
        .run(
            &helm,
            &[
                "upgrade",
                "demo",
                chart,
                "-n",
                "apps",
                "--set",
                "neverReady=true",
                "--wait",
                "--timeout",
                "3s",
            ],
            None,
        )
        .await;
    assert_ne!(
        stuck.code, 0,
        "a rollout that never becomes ready fails --wait"
    );
    let status = c
        .run(&helm, &["status", "demo", "-n", "apps", "-o", "json"], None)
        .await
        .ok();
    assert_eq!(
        serde_json::from_str::<Value>(&status).unwrap()["info"]["status"],
        "failed"
    );

    let out = c
        .ok(&helm, "uninstall demo -n apps --wait --timeout 60s")
        .await;
    assert!(out.contains("uninstalled"), "{out}");
    assert!(
        c.object("apps/v1", "deployments", "apps", "demo-web")
            .is_none()
    );
    assert!(c.object("v1", "services", "apps", "demo-web").is_none());
    let releases = c.ok(&helm, "list -n apps -q").await;
    assert!(releases.trim().is_empty(), "{releases}");
}
