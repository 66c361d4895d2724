//! The translation table, natively: each compose construct and the objects it becomes.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::translate::{Condition, Input, Issue, Translation, translate};

const THREE: &str = r#"
services:
  web:
    image: "shop/web:${TAG:-1.0}"
    ports: ["8080:80"]
    environment:
      DB_HOST: db
    depends_on:
      db: {condition: service_healthy}
      migrate: {condition: service_completed_successfully}
  db:
    image: postgres:16
    environment:
      POSTGRES_PASSWORD: ${DB_PASSWORD:?set it in .env}
    volumes: ["dbdata:/var/lib/postgresql/data"]
    expose: ["5432"]
    healthcheck:
      test: ["CMD", "pg_isready", "-U", "postgres"]
      interval: 5s
      retries: 5
      start_period: 30s
  migrate:
    image: shop/migrate:1
    command: ["migrate", "--up"]
    restart: "no"
    depends_on:
      db: {condition: service_healthy}
volumes:
  dbdata:
"#;

fn run(
    text: &str,
    vars: &[(&str, &str)],
    files: &[(&str, &str)],
) -> Result<Translation, Vec<Issue>> {
    let files: BTreeMap<String, String> = files
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let read = move |p: &str| {
        files
            .get(p)
            .cloned()
            .ok_or_else(|| format!("`{p}`: not found"))
    };
    translate(&Input {
        file: "app/compose.yaml",
        text,
        read: &read,
        vars: vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        profiles: vec![],
        project: "apps.shop".into(),
        node_ports: vec![],
        volume_size: "1Gi".into(),
        volume_sizes: BTreeMap::new(),
        storage_class: None,
    })
}

fn object<'a>(t: &'a Translation, kind: &str, name_prefix: &str) -> &'a Value {
    t.shared
        .iter()
        .chain(t.services.iter().flat_map(|s| s.objects.iter()))
        .find(|o| {
            o["kind"] == kind
                && o["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with(name_prefix))
        })
        .unwrap_or_else(|| panic!("no {kind} {name_prefix}"))
}

#[test]
fn three_services_become_deployments_a_job_a_claim_and_services_in_order() {
    let t = run(THREE, &[("DB_PASSWORD", "pw")], &[]).unwrap();
    let order: Vec<(&str, usize)> = t
        .services
        .iter()
        .map(|s| (s.name.as_str(), s.phase))
        .collect();
    assert_eq!(order, vec![("db", 0), ("migrate", 1), ("web", 2)]);
    let web = object(&t, "Deployment", "web");
    assert_eq!(
        web["spec"]["template"]["spec"]["containers"][0]["image"],
        "shop/web:1.0"
    );
    assert_eq!(web["spec"]["replicas"], 1);
    let svc = object(&t, "Service", "web");
    assert_eq!(svc["spec"]["type"], "ClusterIP");
    assert_eq!(
        svc["spec"]["ports"][0]["port"], 80,
        "in-cluster port is the container's"
    );
    assert_eq!(t.services[2].address, Some(("web".into(), 80)));
    assert_eq!(
        t.services[2].depends,
        vec![
            ("db".into(), Condition::Healthy),
            ("migrate".into(), Condition::Completed)
        ]
    );

    let db = object(&t, "Deployment", "db");
    let c = &db["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        c["env"],
        json!([{"name": "POSTGRES_PASSWORD", "value": "pw"}])
    );
    assert_eq!(
        c["readinessProbe"]["exec"]["command"],
        json!(["pg_isready", "-U", "postgres"])
    );
    assert_eq!(c["readinessProbe"]["periodSeconds"], 5);
    assert_eq!(c["readinessProbe"]["failureThreshold"], 5);
    assert!(
        c["startupProbe"].is_object(),
        "start_period is a startup probe"
    );
    assert_eq!(
        db["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"],
        "dbdata"
    );
    let claim = object(&t, "PersistentVolumeClaim", "dbdata");
    assert_eq!(claim["spec"]["resources"]["requests"]["storage"], "1Gi");
    assert_eq!(
        object(&t, "Service", "db")["spec"]["ports"][0]["port"],
        5432
    );

    let job = object(&t, "Job", "migrate-");
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "Never");
    assert_eq!(pod["containers"][0]["args"], json!(["migrate", "--up"]));
    assert_eq!(job["spec"]["backoffLimit"], 0);
}

#[test]
fn a_changed_job_gets_a_new_name_and_other_services_stay_the_same() {
    let a = run(THREE, &[("DB_PASSWORD", "pw")], &[]).unwrap();
    let b = run(
        &THREE.replace("shop/migrate:1", "shop/migrate:2"),
        &[("DB_PASSWORD", "pw")],
        &[],
    )
    .unwrap();
    assert_ne!(
        object(&a, "Job", "migrate-")["metadata"]["name"],
        object(&b, "Job", "migrate-")["metadata"]["name"]
    );
    assert_eq!(
        object(&a, "Deployment", "web"),
        object(&b, "Deployment", "web")
    );
}

#[test]
fn required_variables_are_errors_at_their_line() {
    let issues = run(THREE, &[], &[]).unwrap_err();
    assert_eq!(issues.len(), 1, "{issues:?}");
    assert_eq!(issues[0].file, "app/compose.yaml");
    assert_eq!(issues[0].line, 14);
    assert!(
        issues[0].message.contains("DB_PASSWORD") && issues[0].message.contains("set it in .env")
    );
}

#[test]
fn untranslatable_keys_are_reported_at_file_and_line() {
    let text = "services:\n  web:\n    image: nginx\n    network_mode: host\n    volumes:\n      - ./html:/usr/share/nginx/html\n    devices: [\"/dev/fuse\"]\n";
    let issues = run(text, &[], &[]).unwrap_err();
    let at: Vec<(u32, &str)> = issues
        .iter()
        .map(|i| (i.line, i.message.as_str()))
        .collect();
    assert_eq!(at.len(), 3, "{at:?}");
    assert_eq!(at[0].0, 4);
    assert!(at[0].1.contains("network_mode"));
    assert_eq!(at[1].0, 6);
    assert!(at[1].1.contains("host bind mount"));
    assert_eq!(at[2].0, 7);
    assert!(at[2].1.contains("`devices`"));
    assert_eq!(
        issues[0].to_string(),
        format!("app/compose.yaml:4: {}", issues[0].message)
    );
}

#[test]
fn build_without_image_is_refused() {
    let issues = run("services:\n  api:\n    build: ./api\n", &[], &[]).unwrap_err();
    assert_eq!(issues[0].line, 3);
    assert!(
        issues[0].message.contains("`build:` but no `image`"),
        "{}",
        issues[0].message
    );
    let t = run(
        "services:\n  api:\n    build: ./api\n    image: api:1\n",
        &[],
        &[],
    )
    .unwrap();
    assert!(t.notes[0].contains("build"));
}

#[test]
fn env_files_profiles_configs_secrets_tmpfs_and_resources() {
    let text = r#"
services:
  api:
    image: api:${TAG}
    entrypoint: /bin/api --serve "a b"
    env_file: [api.env]
    environment: [MODE=prod, FROM_VARS]
    tmpfs: ["/run:size=64m"]
    configs: [nginx]
    secrets: [{source: token, target: api-token}]
    deploy:
      replicas: 3
      resources: {limits: {cpus: "0.5", memory: 512M}, reservations: {memory: 128m}}
      update_config: {parallelism: 2, order: start-first}
    labels: {com.example.description: "Accounting webapp"}
    user: "1000:1000"
  debug:
    image: busybox
    profiles: [debug]
configs:
  nginx: {file: nginx.conf}
secrets:
  token: {content: s3cret}
"#;
    let t = run(
        text,
        &[("TAG", "7"), ("FROM_VARS", "v")],
        &[
            ("api.env", "MODE=dev\nLOG=${TAG}\n"),
            ("nginx.conf", "server {}\n"),
        ],
    )
    .unwrap();
    assert_eq!(t.services.len(), 1, "the debug profile is not enabled");
    let api = object(&t, "Deployment", "api");
    let c = &api["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["image"], "api:7");
    assert_eq!(c["command"], json!(["/bin/api", "--serve", "a b"]));
    assert_eq!(
        c["env"],
        json!([{"name": "FROM_VARS", "value": "v"}, {"name": "LOG", "value": "7"}, {"name": "MODE", "value": "prod"}])
    );
    assert_eq!(
        c["resources"]["limits"],
        json!({"cpu": "0.5", "memory": "512Mi"})
    );
    assert_eq!(c["resources"]["requests"], json!({"memory": "128Mi"}));
    assert_eq!(
        c["securityContext"],
        json!({"runAsUser": 1000, "runAsGroup": 1000})
    );
    assert_eq!(api["spec"]["replicas"], 3);
    let vols = &api["spec"]["template"]["spec"]["volumes"];
    assert_eq!(
        vols[0]["emptyDir"],
        json!({"medium": "Memory", "sizeLimit": "64Mi"})
    );
    assert_eq!(vols[1]["configMap"]["name"], "nginx");
    assert_eq!(vols[2]["secret"]["secretName"], "token");
    assert_eq!(c["volumeMounts"][2]["mountPath"], "/run/secrets/api-token");
    assert_eq!(
        api["metadata"]["annotations"]["com.example.description"],
        "Accounting webapp"
    );
    let s = t.services[0].strategy.clone().unwrap();
    assert_eq!(
        (s.max_surge, s.max_unavailable),
        (Some(json!(2)), Some(json!(0)))
    );
    assert_eq!(
        object(&t, "ConfigMap", "nginx")["data"]["nginx.conf"],
        "server {}\n"
    );
    assert_eq!(object(&t, "Secret", "token")["data"]["token"], "czNjcmV0");
}

#[test]
fn dependencies_on_missing_or_disabled_services_and_cycles_are_errors() {
    let text = "services:\n  a:\n    image: a\n    depends_on: [b]\n  b:\n    image: b\n    profiles: [x]\n";
    let issues = run(text, &[], &[]).unwrap_err();
    assert!(
        issues[0].message.contains("profiles are not enabled"),
        "{issues:?}"
    );
    let text = "services:\n  a:\n    image: a\n    depends_on: [b]\n  b:\n    image: b\n    depends_on: [a]\n";
    let issues = run(text, &[], &[]).unwrap_err();
    assert!(issues[0].message.contains("cycle"), "{issues:?}");
}

#[test]
fn node_ports_only_when_asked() {
    let text = "services:\n  web:\n    image: w\n    ports: [\"30080:80\"]\n";
    let read = |_: &str| -> Result<String, String> { Err("none".into()) };
    let t = translate(&Input {
        file: "compose.yaml",
        text,
        read: &read,
        vars: BTreeMap::new(),
        profiles: vec![],
        project: "p".into(),
        node_ports: vec!["web".into()],
        volume_size: "1Gi".into(),
        volume_sizes: BTreeMap::new(),
        storage_class: None,
    })
    .unwrap();
    let svc = object(&t, "Service", "web");
    assert_eq!(svc["spec"]["type"], "NodePort");
    assert_eq!(svc["spec"]["ports"][0]["nodePort"], 30080);
}

#[test]
fn waiting_for_a_long_running_service_to_complete_is_an_error() {
    let text = "services:\n  a:\n    image: a\n    depends_on:\n      b: {condition: service_completed_successfully}\n  b:\n    image: b\n";
    let issues = run(text, &[], &[]).unwrap_err();
    assert_eq!(issues[0].line, 5, "{issues:?}");
    assert!(issues[0].message.contains("keeps running"), "{issues:?}");
}
