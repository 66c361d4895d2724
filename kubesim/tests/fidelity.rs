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

/// The ReleaseHub migrate Job, as the manifest kind renders it for one version.
fn migrate_job(version: &str) -> String {
    format!(
        "apiVersion: batch/v1\nkind: Job\nmetadata: {{name: migrate, namespace: default}}\nspec:\n  backoffLimit: 2\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n        - name: migrate\n          image: registry.example/releasehub/migrate:{version}\n          args: [\"--to\", \"42\"]\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_sees_422_for_immutable_fields_as_from_a_real_cluster() {
    let Some(kubectl) = tool("kubectl") else {
        return;
    };
    let c = Cluster::start().await;
    let apply = async |file: &str, text: &str, server_side: bool| {
        let path = c.write(file, text);
        let mut args = vec!["apply", "-f", path.to_str().unwrap()];
        if server_side {
            args.extend(["--server-side", "--force-conflicts"]);
        }
        c.run(&kubectl, &args, None).await
    };

    // The Job bump: client-side and server-side apply both get the API server's 422.
    apply("job.yaml", &migrate_job("2.4.1"), false).await.ok();
    let job = c.object("batch/v1", "jobs", "default", "migrate").unwrap();
    assert_eq!(
        job["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"],
        job["metadata"]["uid"],
        "the Job's selector is generated from its uid"
    );
    apply("job.yaml", &migrate_job("2.4.1"), false).await.ok();
    for server_side in [false, true] {
        let bumped = apply("job.yaml", &migrate_job("2.4.2"), server_side).await;
        assert_ne!(bumped.code, 0, "{}", bumped.stdout);
        assert!(
            bumped
                .stderr
                .contains("The Job \"migrate\" is invalid: spec.template: Invalid value: core.PodTemplateSpec{")
                && bumped.stderr.contains("registry.example/releasehub/migrate:2.4.2")
                && bumped.stderr.trim_end().ends_with(": field is immutable"),
            "{}",
            bumped.stderr
        );
    }
    let job = c.object("batch/v1", "jobs", "default", "migrate").unwrap();
    assert_eq!(
        job["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.example/releasehub/migrate:2.4.1"
    );

    // A Deployment's selector may not change, and must match its template.
    let deploy = |app: &str, label: &str| {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web, namespace: default}}\nspec:\n  selector: {{matchLabels: {{app: {app}}}}}\n  template:\n    metadata: {{labels: {{app: {label}}}}}\n    spec:\n      containers: [{{name: web, image: nginx}}]\n"
        )
    };
    let out = apply("d.yaml", &deploy("web", "other"), false).await;
    assert_eq!(
        out.stderr.trim(),
        "The Deployment \"web\" is invalid: spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"other\"}: `selector` does not match template `labels`",
    );
    apply("d.yaml", &deploy("web", "web"), false).await.ok();
    let out = apply("d.yaml", &deploy("web2", "web2"), false).await;
    assert_eq!(
        out.stderr.trim(),
        "The Deployment \"web\" is invalid: spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"web2\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable",
    );

    // Names: a Service must be a DNS-1035 label.
    let out = apply(
        "bad.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: {name: 9lives, namespace: default}\nspec:\n  ports: [{port: 80}]\n",
        false,
    )
    .await;
    assert!(
        out.stderr.contains("The Service \"9lives\" is invalid: metadata.name: Invalid value: \"9lives\": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character"),
        "{}",
        out.stderr
    );

    // A Service keeps the cluster IP it was given; another one is refused.
    let svc = |ip: &str| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: api, namespace: default}}\nspec:\n  selector: {{app: api}}\n  ports: [{{port: 80}}]\n{ip}"
        )
    };
    apply("svc.yaml", &svc(""), false).await.ok();
    apply("svc.yaml", &svc(""), false).await.ok();
    let out = apply("svc.yaml", &svc("  clusterIP: 10.96.200.200\n"), false).await;
    assert_eq!(
        out.stderr.trim(),
        "The Service \"api\" is invalid: spec.clusterIPs[0]: Invalid value: []string{\"10.96.200.200\"}: may not change once set",
    );
}

fn schemas_or_skip() -> bool {
    if kubesim::schema::available() {
        return true;
    }
    let hint = "the Kubernetes schema bundle is missing: run scripts/setup-kube-schemas.sh";
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{hint}");
    }
    eprintln!("skipping: {hint}");
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_field_validation_follows_the_real_schemas() {
    let Some(kubectl) = tool("kubectl") else {
        return;
    };
    if !schemas_or_skip() {
        return;
    }
    let c = Cluster::start().await;
    let deploy = |extra: &str, replicas: &str| {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web, namespace: default}}\nspec:\n  replicas: {replicas}\n{extra}  selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    spec:\n      containers: [{{name: web, image: nginx}}]\n"
        )
    };
    let file = c.write("d.yaml", &deploy("  foo: bar\n", "1"));
    let file = file.to_str().unwrap();

    // kubectl's default is Strict: an unknown field refuses the request.
    let strict = c.run(&kubectl, &["apply", "-f", file], None).await;
    assert_ne!(strict.code, 0);
    assert!(
        strict.stderr.contains(
            "Deployment in version \"v1\" cannot be handled as a Deployment: strict decoding error: unknown field \"spec.foo\""
        ),
        "{}",
        strict.stderr
    );
    // Warn: created, the field dropped, a warning printed.
    let warn = c
        .run(&kubectl, &["apply", "--validate=warn", "-f", file], None)
        .await;
    assert_eq!(warn.code, 0, "{}", warn.stderr);
    assert!(
        warn.stderr.contains("Warning: unknown field \"spec.foo\""),
        "{}",
        warn.stderr
    );
    let d = c
        .object("apps/v1", "deployments", "default", "web")
        .unwrap();
    assert!(d["spec"].get("foo").is_none(), "unknown fields are dropped");
    // Ignore: no warning.
    let ignore = c
        .run(&kubectl, &["apply", "--validate=false", "-f", file], None)
        .await;
    assert_eq!(ignore.code, 0, "{}", ignore.stderr);
    assert!(
        !ignore.stderr.contains("unknown field"),
        "{}",
        ignore.stderr
    );

    // Wrong types are the decoder's errors.
    let quoted = c.write("q.yaml", &deploy("", "\"3\""));
    let out = c
        .run(&kubectl, &["apply", "-f", quoted.to_str().unwrap()], None)
        .await;
    assert!(
        out.stderr.contains(
            "json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32"
        ),
        "{}",
        out.stderr
    );
    let cm = c.write(
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: numbers, namespace: default}\ndata: {level: 1}\n",
    );
    let out = c
        .run(&kubectl, &["apply", "-f", cm.to_str().unwrap()], None)
        .await;
    assert!(
        out.stderr.contains("ConfigMap in version \"v1\" cannot be handled as a ConfigMap: json: cannot unmarshal number into Go struct field ConfigMap.data of type string"),
        "{}",
        out.stderr
    );
    // Required fields.
    let nameless = c.write(
        "n.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: lonely, namespace: default}\nspec:\n  containers: [{image: busybox}]\n",
    );
    let out = c
        .run(&kubectl, &["apply", "-f", nameless.to_str().unwrap()], None)
        .await;
    assert!(
        out.stderr
            .contains("The Pod \"lonely\" is invalid: spec.containers[0].name: Required value"),
        "{}",
        out.stderr
    );

    // `kubectl explain` reads the real schemas from the OpenAPI v3 documents.
    let out = c.ok(&kubectl, "explain deployment.spec.replicas").await;
    assert!(
        out.contains("FIELD: replicas <integer>") && out.contains("Number of desired pods"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_scale_logs_auth_bare_pods_and_tables() {
    let Some(kubectl) = tool("kubectl") else {
        return;
    };
    let c = Cluster::start().await;
    let app = c.write("app.yaml", APP);
    c.run(&kubectl, &["apply", "-f", app.to_str().unwrap()], None)
        .await
        .ok();
    c.ok(
        &kubectl,
        "-n shop rollout status deployment/web --timeout=30s",
    )
    .await;

    // /scale
    let out = c
        .ok(&kubectl, "-n shop scale deployment/web --replicas=3")
        .await;
    assert!(out.contains("deployment.apps/web scaled"), "{out}");
    c.ok(
        &kubectl,
        "-n shop rollout status deployment/web --timeout=30s",
    )
    .await;
    let ready = c
        .ok(
            &kubectl,
            "-n shop get deployment web -o jsonpath={.status.readyReplicas}",
        )
        .await;
    assert_eq!(ready, "3");

    // Tables with the columns a real server gives.
    let table = c.ok(&kubectl, "-n shop get deployments").await;
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
        "{table}"
    );
    assert!(table.contains("3/3"), "{table}");
    let table = c.ok(&kubectl, "-n shop get services").await;
    assert!(
        table.starts_with("NAME") && table.contains("CLUSTER-IP") && table.contains("80/TCP"),
        "{table}"
    );
    let table = c.ok(&kubectl, "-n shop get pods").await;
    assert!(
        table.contains("1/1") && table.contains("RESTARTS"),
        "{table}"
    );

    // Logs and events.
    let logs = c.ok(&kubectl, "-n shop logs deployment/web").await;
    assert!(logs.contains("simulated"), "{logs}");
    let events = c.ok(&kubectl, "-n shop get events").await;
    assert!(events.contains("ScalingReplicaSet"), "{events}");

    // Access reviews.
    let can = c
        .ok(&kubectl, "auth can-i create deployments -n shop")
        .await;
    assert_eq!(can.trim(), "yes");

    // A bare pod that is not restarted runs to completion, as helm test pods do.
    let pod = c.write(
        "pod.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: once, namespace: shop}\nspec:\n  restartPolicy: Never\n  containers: [{name: c, image: busybox}]\n",
    );
    c.run(&kubectl, &["apply", "-f", pod.to_str().unwrap()], None)
        .await
        .ok();
    let out = c
        .run(
            &kubectl,
            &[
                "-n",
                "shop",
                "wait",
                "--for=jsonpath={.status.phase}=Succeeded",
                "pod/once",
                "--timeout=30s",
            ],
            None,
        )
        .await
        .ok();
    assert!(out.contains("condition met"), "{out}");

    // Groups kubectl's prune allowlist and everyday tools expect.
    let resources = c.ok(&kubectl, "api-resources -o name").await;
    for r in [
        "replicationcontrollers",
        "endpointslices.discovery.k8s.io",
        "leases.coordination.k8s.io",
        "priorityclasses.scheduling.k8s.io",
        "validatingwebhookconfigurations.admissionregistration.k8s.io",
        "events.events.k8s.io",
    ] {
        assert!(resources.lines().any(|l| l == r), "{r} in {resources}");
    }
    let pruned = c
        .run(
            &kubectl,
            &[
                "apply",
                "--prune",
                "-l",
                "app=web",
                "-f",
                app.to_str().unwrap(),
            ],
            None,
        )
        .await;
    assert_eq!(pruned.code, 0, "{}", pruned.stderr);
}

/// A CustomResourceDefinition with a structural schema: a required, bounded integer, an
/// enum with a default, a defaulted object, a preserved free-form field, printer columns.
const WIDGET_CRD: &str = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wd]}
  versions:
    - name: v1
      served: true
      storage: true
      subresources: {status: {}}
      additionalPrinterColumns:
        - {name: Size, type: integer, jsonPath: .spec.size}
        - {name: Color, type: string, jsonPath: .spec.color}
        - {name: Phase, type: string, jsonPath: .status.phase, priority: 1}
        - {name: Age, type: date, jsonPath: .metadata.creationTimestamp}
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              required: [size]
              properties:
                size: {type: integer, minimum: 1}
                color: {type: string, enum: [red, green, blue], default: red}
                limits:
                  type: object
                  default: {}
                  properties:
                    cpu: {type: string, default: 100m}
                config: {type: object, x-kubernetes-preserve-unknown-fields: true}
            status:
              type: object
              properties:
                phase: {type: string}
"#;

fn widget(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: example.com/v1\nkind: Widget\nmetadata: {{name: {name}, namespace: default}}\nspec:\n{spec}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_custom_resources_follow_their_structural_schema() {
    let Some(kubectl) = tool("kubectl") else {
        return;
    };
    let c = Cluster::start().await;
    let apply = async |file: &str, text: &str, extra: &[&str]| {
        let path = c.write(file, text);
        let mut args = vec!["apply", "-f", path.to_str().unwrap()];
        args.extend(extra);
        c.run(&kubectl, &args, None).await
    };
    apply("crd.yaml", WIDGET_CRD, &[]).await.ok();

    // Defaults fill what is unset; a preserved field keeps whatever it holds.
    apply(
        "a.yaml",
        &widget("a", "  size: 2\n  config: {anything: {goes: 1}}\n"),
        &[],
    )
    .await
    .ok();
    let a = c
        .object("example.com/v1", "widgets", "default", "a")
        .unwrap();
    assert_eq!(a["spec"]["color"], "red");
    assert_eq!(a["spec"]["limits"], serde_json::json!({"cpu": "100m"}));
    assert_eq!(a["spec"]["config"]["anything"]["goes"], 1);

    // Unknown fields: refused under kubectl's default Strict, dropped with a warning under
    // Warn, dropped silently under Ignore.
    let unknown = widget("b", "  size: 1\n  foo: bar\n");
    let strict = apply("b.yaml", &unknown, &[]).await;
    assert_ne!(strict.code, 0);
    assert!(
        strict.stderr.contains(
            "Widget in version \"v1\" cannot be handled as a Widget: strict decoding error: unknown field \"spec.foo\""
        ),
        "{}",
        strict.stderr
    );
    let warn = apply("b.yaml", &unknown, &["--validate=warn"]).await;
    assert_eq!(warn.code, 0, "{}", warn.stderr);
    assert!(
        warn.stderr.contains("Warning: unknown field \"spec.foo\""),
        "{}",
        warn.stderr
    );
    let b = c
        .object("example.com/v1", "widgets", "default", "b")
        .unwrap();
    assert!(b["spec"].get("foo").is_none(), "unknown fields are pruned");
    let ignore = apply("b.yaml", &unknown, &["--validate=false"]).await;
    assert_eq!(ignore.code, 0, "{}", ignore.stderr);
    assert!(
        !ignore.stderr.contains("unknown field"),
        "{}",
        ignore.stderr
    );

    // Types, enums, bounds and required fields: a 422 with one cause per field.
    let bad = apply(
        "bad.yaml",
        &widget("bad", "  size: \"3\"\n  color: purple\n"),
        &[],
    )
    .await;
    assert_ne!(bad.code, 0);
    for part in [
        "The Widget \"bad\" is invalid",
        "spec.color: Unsupported value: \"purple\": supported values: \"red\", \"green\", \"blue\"",
        "spec.size: Invalid value: \"string\": spec.size in body must be of type integer: \"string\"",
    ] {
        assert!(bad.stderr.contains(part), "{part} in {}", bad.stderr);
    }
    let small = apply("small.yaml", &widget("small", "  size: 0\n"), &[]).await;
    assert!(
        small.stderr.contains(
            "The Widget \"small\" is invalid: spec.size: Invalid value: 0: spec.size in body should be greater than or equal to 1"
        ),
        "{}",
        small.stderr
    );
    let missing = apply("m.yaml", &widget("m", "  color: blue\n"), &[]).await;
    assert!(
        missing
            .stderr
            .contains("The Widget \"m\" is invalid: spec.size: Required value"),
        "{}",
        missing.stderr
    );
    assert!(
        c.object("example.com/v1", "widgets", "default", "bad")
            .is_none()
    );

    // The status subresource is held to the same schema.
    let status = c
        .run(
            &kubectl,
            &[
                "patch",
                "widget",
                "a",
                "--subresource=status",
                "--type=merge",
                "-p",
                r#"{"status":{"phase":5}}"#,
            ],
            None,
        )
        .await;
    assert!(
        status.stderr.contains(
            "status.phase: Invalid value: \"integer\": status.phase in body must be of type string: \"integer\""
        ),
        "{}",
        status.stderr
    );
}

/// The fields of one manager's entry in `managedFields` under `f:data`.
fn data_fields_of(obj: &Value, manager: &str) -> Vec<String> {
    let mut keys: Vec<String> = obj["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["manager"] == manager)
        .filter_map(|m| m["fieldsV1"]["f:data"].as_object())
        .flat_map(|d| d.keys().cloned())
        .collect();
    keys.sort();
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_forced_server_side_apply_shares_fields_it_does_not_change() {
    let Some(kubectl) = tool("kubectl") else {
        return;
    };
    let c = Cluster::start().await;
    let apply = async |manager: &str, data: &str| {
        let path = c.write(
            &format!("{manager}.yaml"),
            &format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: shared, namespace: default}}\ndata: {{{data}}}\n"
            ),
        );
        let manager = format!("--field-manager={manager}");
        c.run(
            &kubectl,
            &[
                "apply",
                "--server-side",
                "--force-conflicts",
                &manager,
                "-f",
                path.to_str().unwrap(),
            ],
            None,
        )
        .await
        .ok()
    };
    apply("alice", "owner: alice, region: eu").await;
    // bob takes `owner` (a different value) and sets `region` to the value it has.
    apply("bob", "owner: bob, region: eu").await;
    let cm = c.object("v1", "configmaps", "default", "shared").unwrap();
    assert_eq!(data_fields_of(&cm, "alice"), ["f:region"], "{cm}");
    assert_eq!(data_fields_of(&cm, "bob"), ["f:owner", "f:region"], "{cm}");
    // Co-owned, `region` outlives bob dropping it from his configuration...
    apply("bob", "owner: bob").await;
    let cm = c.object("v1", "configmaps", "default", "shared").unwrap();
    assert_eq!(cm["data"]["region"], "eu", "{cm}");
    assert_eq!(data_fields_of(&cm, "bob"), ["f:owner"], "{cm}");
    // ...and goes once its last owner drops it too.
    apply("alice", "").await;
    let cm = c.object("v1", "configmaps", "default", "shared").unwrap();
    assert!(cm["data"].get("region").is_none(), "{cm}");
    assert_eq!(cm["data"]["owner"], "bob");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_prints_a_custom_resources_printer_columns() {
    let Some(kubectl) = tool("kubectl") else {
        return;
    };
    let c = Cluster::start().await;
    let gadgets = WIDGET_CRD
        .replace("widgets", "gadgets")
        .replace("widget", "gadget")
        .replace("Widget", "Gadget")
        .replace("shortNames: [wd]", "shortNames: [gd]");
    // Gadgets declare one column and no Age: the server adds none.
    let (head, tail) = gadgets
        .split_once("      additionalPrinterColumns:\n")
        .unwrap();
    let (_, rest) = tail.split_once("      schema:\n").unwrap();
    let gadgets = format!(
        "{head}      additionalPrinterColumns:\n        - {{name: Color, type: string, jsonPath: .spec.color}}\n      schema:\n{rest}"
    );
    for (file, text) in [
        ("crd.yaml", WIDGET_CRD.to_string()),
        ("gcrd.yaml", gadgets),
        ("w.yaml", widget("a", "  size: 2\n")),
        (
            "g.yaml",
            "apiVersion: example.com/v1\nkind: Gadget\nmetadata: {name: g, namespace: default}\nspec: {size: 1, color: blue}\n".to_string(),
        ),
    ] {
        let path = c.write(file, &text);
        c.run(&kubectl, &["apply", "-f", path.to_str().unwrap()], None)
            .await
            .ok();
    }
    let header = |table: &str| -> Vec<String> {
        table
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    let table = c.ok(&kubectl, "get widgets").await;
    assert_eq!(header(&table), ["NAME", "SIZE", "COLOR", "AGE"], "{table}");
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row[..3], ["a", "2", "red"], "{table}");
    // A priority-1 column shows with -o wide; a missing value is an empty cell.
    let wide = c.ok(&kubectl, "get wd -o wide").await;
    assert_eq!(
        header(&wide),
        ["NAME", "SIZE", "COLOR", "PHASE", "AGE"],
        "{wide}"
    );
    let row: Vec<&str> = wide.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row.len(), 4, "{wide}");
    let table = c.ok(&kubectl, "get gadgets").await;
    assert_eq!(header(&table), ["NAME", "COLOR"], "{table}");
    assert!(table.contains("blue"), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_create_sends_protobuf_for_every_built_in_kind_it_makes() {
    let Some(kubectl) = tool("kubectl") else {
        return;
    };
    let c = Cluster::start().await;
    for (args, created) in [
        (
            vec!["create", "namespace", "typed"],
            "namespace/typed created",
        ),
        (
            vec![
                "create",
                "deployment",
                "web",
                "--image=nginx",
                "--replicas=2",
                "--port=80",
            ],
            "deployment.apps/web created",
        ),
        (
            vec![
                "create",
                "deployment",
                "idle",
                "--image=nginx",
                "--replicas=0",
            ],
            "deployment.apps/idle created",
        ),
        (
            vec![
                "create",
                "job",
                "once",
                "--image=busybox",
                "--",
                "echo",
                "hi",
            ],
            "job.batch/once created",
        ),
        (
            vec![
                "create",
                "cronjob",
                "nightly",
                "--image=busybox",
                "--schedule=0 3 * * *",
            ],
            "cronjob.batch/nightly created",
        ),
        (
            vec!["create", "job", "manual", "--from=cronjob/nightly"],
            "job.batch/manual created",
        ),
        (
            vec!["create", "service", "clusterip", "api", "--tcp=80:8080"],
            "service/api created",
        ),
        (
            vec!["create", "service", "nodeport", "np", "--tcp=80:8080"],
            "service/np created",
        ),
        (
            vec![
                "create",
                "service",
                "externalname",
                "ext",
                "--external-name=example.com",
            ],
            "service/ext created",
        ),
        (
            vec!["expose", "deployment", "web", "--port=80", "--name=web"],
            "service/web exposed",
        ),
        (
            vec![
                "create",
                "ingress",
                "web",
                "--class=nginx",
                "--rule=shop.example/=web:80",
                "--rule=api.example/v1*=api:http,tls=api-cert",
            ],
            "ingress.networking.k8s.io/web created",
        ),
        (
            vec!["create", "configmap", "cfg", "--from-literal=a=b"],
            "configmap/cfg created",
        ),
        (
            vec!["create", "secret", "generic", "s", "--from-literal=a=b"],
            "secret/s created",
        ),
        (
            vec!["create", "serviceaccount", "robot"],
            "serviceaccount/robot created",
        ),
        (
            vec![
                "create",
                "role",
                "reader",
                "--verb=get,list",
                "--resource=pods",
            ],
            "role.rbac.authorization.k8s.io/reader created",
        ),
        (
            vec![
                "create",
                "rolebinding",
                "reader",
                "--role=reader",
                "--serviceaccount=default:robot",
            ],
            "rolebinding.rbac.authorization.k8s.io/reader created",
        ),
        (
            vec![
                "create",
                "clusterrole",
                "viewer",
                "--verb=get",
                "--resource=nodes",
            ],
            "clusterrole.rbac.authorization.k8s.io/viewer created",
        ),
        (
            vec![
                "create",
                "clusterrolebinding",
                "viewer",
                "--clusterrole=viewer",
                "--group=ops",
            ],
            "clusterrolebinding.rbac.authorization.k8s.io/viewer created",
        ),
        (
            vec![
                "create",
                "poddisruptionbudget",
                "web",
                "--selector=app=web",
                "--min-available=1",
            ],
            "poddisruptionbudget.policy/web created",
        ),
        (
            vec![
                "create",
                "priorityclass",
                "high",
                "--value=1000",
                "--description=urgent",
            ],
            "priorityclass.scheduling.k8s.io/high created",
        ),
        (
            vec!["create", "quota", "small", "--hard=pods=10,cpu=2"],
            "resourcequota/small created",
        ),
    ] {
        let out = c.run(&kubectl, &args, None).await.ok();
        assert!(out.contains(created), "{args:?}: {out}");
    }

    // What arrived is what was meant, explicit zeros included.
    let d = c
        .object("apps/v1", "deployments", "default", "web")
        .unwrap();
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"],
        80
    );
    assert!(
        d["spec"]["template"]["metadata"].get("name").is_none(),
        "{d}"
    );
    let idle = c
        .object("apps/v1", "deployments", "default", "idle")
        .unwrap();
    assert_eq!(idle["spec"]["replicas"], 0);
    c.ok(&kubectl, "rollout status deployment/web --timeout=30s")
        .await;
    let job = c.object("batch/v1", "jobs", "default", "once").unwrap();
    assert_eq!(
        job["spec"]["template"]["spec"]["containers"][0]["command"],
        serde_json::json!(["echo", "hi"])
    );
    let cron = c
        .object("batch/v1", "cronjobs", "default", "nightly")
        .unwrap();
    assert_eq!(cron["spec"]["schedule"], "0 3 * * *");
    let svc = c.object("v1", "services", "default", "api").unwrap();
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 8080);
    let ext = c.object("v1", "services", "default", "ext").unwrap();
    assert_eq!(ext["spec"]["externalName"], "example.com");
    let ing = c
        .object("networking.k8s.io/v1", "ingresses", "default", "web")
        .unwrap();
    assert_eq!(ing["spec"]["ingressClassName"], "nginx");
    assert_eq!(
        ing["spec"]["rules"][1]["http"]["paths"][0],
        serde_json::json!({"path": "/v1", "pathType": "Prefix",
            "backend": {"service": {"name": "api", "port": {"name": "http"}}}})
    );
    assert_eq!(ing["spec"]["tls"][0]["secretName"], "api-cert");
    let rb = c
        .object(
            "rbac.authorization.k8s.io/v1",
            "rolebindings",
            "default",
            "reader",
        )
        .unwrap();
    assert_eq!(rb["subjects"][0]["name"], "robot");
    assert_eq!(rb["roleRef"]["name"], "reader");
    let pdb = c
        .object("policy/v1", "poddisruptionbudgets", "default", "web")
        .unwrap();
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    let pc = c
        .object("scheduling.k8s.io/v1", "priorityclasses", "", "high")
        .unwrap();
    assert_eq!(pc["value"], 1000);
    let quota = c
        .object("v1", "resourcequotas", "default", "small")
        .unwrap();
    assert_eq!(quota["spec"]["hard"]["cpu"], "2");
}
