//! Rendering a chart with the real `helm template`, which gets no cluster credentials: the
//! cluster's version and API resources come from gantry's discovery, so charts'
//! `.Capabilities` checks see the cluster they deploy to. The output is split into the
//! chart's CRDs (`crds/`), its hooks, and the objects of the release.

use std::collections::BTreeSet;
use std::path::Path;

use gantry_kube_apply::engine::RESOURCE_POLICY;
use gantry_kube_apply::yaml::{self, Manifest, Origin};
use gantry_sdk::host::{self, Command};
use gantry_sdk::{TaskError, ToolFailure};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::Params;
use crate::chart::{self, Source};

/// Where, under the scratch directory, the chart, values and helm's own files go.
const WORK: &str = "render";
/// `helm` is granted by name; the host resolves it.
pub const HELM: &str = "helm";

/// What discovery says about the cluster, for `--kube-version` and `--api-versions`.
#[derive(Debug, Clone, Default)]
pub struct Capabilities {
    pub kube_version: Option<String>,
    pub api_versions: Vec<String>,
}

/// A hook: an object Helm would create at some point of the release's life, not part of it.
#[derive(Debug, Clone)]
pub struct Hook {
    pub events: Vec<String>,
    pub weight: i64,
    pub delete_policies: Vec<String>,
    pub manifest: Manifest,
}

/// The chart's metadata, for outputs and plans.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChartInfo {
    pub name: String,
    pub version: String,
    pub app_version: String,
}

#[derive(Debug, Clone, Default)]
pub struct Rendered {
    pub crds: Vec<Manifest>,
    pub objects: Vec<Manifest>,
    pub hooks: Vec<Hook>,
    pub chart: ChartInfo,
    /// SHA-256 of what helm printed.
    pub digest: String,
}

/// One `helm template` invocation.
pub struct Template<'a> {
    pub release: &'a str,
    pub chart_ref: &'a [String],
    pub namespace: &'a str,
    pub caps: &'a Capabilities,
    pub is_upgrade: bool,
    pub include_crds: bool,
    pub skip_tests: bool,
    /// Values files in the working directory, in order.
    pub values: &'a [String],
    pub set: &'a [(String, Value)],
}

/// The arguments of `helm template`, in order: values files, then inline values, then `set`.
pub fn template_args(t: &Template) -> Vec<String> {
    let Template {
        release,
        chart_ref,
        namespace,
        caps,
        is_upgrade,
        include_crds,
        skip_tests,
        values,
        set,
    } = *t;
    let mut args: Vec<String> = vec!["template".into(), release.into()];
    args.extend(chart_ref.iter().cloned());
    args.extend(["--namespace".into(), namespace.into()]);
    if let Some(v) = &caps.kube_version {
        args.extend(["--kube-version".into(), v.clone()]);
    }
    if !caps.api_versions.is_empty() {
        args.extend(["--api-versions".into(), caps.api_versions.join(",")]);
    }
    if is_upgrade {
        args.push("--is-upgrade".into());
    }
    if include_crds {
        args.push("--include-crds".into());
    }
    if skip_tests {
        args.push("--skip-tests".into());
    }
    for v in values {
        args.extend(["--values".into(), v.clone()]);
    }
    for (k, v) in set {
        match v {
            // Helm splits `--set-string` on unescaped commas.
            Value::String(s) => args.extend([
                "--set-string".into(),
                format!("{k}={}", s.replace(',', "\\,")),
            ]),
            other => args.extend(["--set-json".into(), format!("{k}={other}")]),
        }
    }
    args
}

pub fn capabilities(kube: &dyn gantry_kube_apply::kube::Kube) -> Result<Capabilities, TaskError> {
    let mut versions = BTreeSet::new();
    for r in kube.api_resources()? {
        versions.insert(r.group_version.clone());
        versions.insert(format!("{}/{}", r.group_version, r.kind));
    }
    Ok(Capabilities {
        kube_version: Some(kube.server_version()?),
        api_versions: versions.into_iter().collect(),
    })
}

fn io(what: &str, e: impl std::fmt::Display) -> TaskError {
    TaskError::Internal(format!("{what}: {e}"))
}

fn helm(args: Vec<String>, cwd: &str, timeout_ms: u64) -> Result<Vec<u8>, TaskError> {
    let mut cmd = Command::new(HELM, args);
    cmd.cwd = Some(cwd.to_string());
    cmd.timeout_ms = Some(timeout_ms);
    let out = host::run(&cmd)?;
    if out.exit_code == Some(0) {
        return Ok(out.stdout);
    }
    Err(TaskError::ToolFailed(ToolFailure {
        program: HELM.into(),
        exit_code: out.exit_code,
        stderr_tail: host::tail(&out.stderr, 4096),
    }))
}

/// Where the chart comes from, from the parameters.
pub fn source(p: &Params) -> Result<Source, String> {
    if p.chart.starts_with("oci://") {
        return Ok(Source::Oci(p.chart.clone()));
    }
    if let Some(url) = &p.repo {
        return Ok(Source::Repo {
            url: url.clone(),
            name: p.chart.clone(),
        });
    }
    let rel = chart::relative(&p.chart)?;
    let shown = rel.display().to_string();
    if shown.ends_with(".tgz") || shown.ends_with(".tar.gz") {
        Ok(Source::Archive(shown))
    } else {
        Ok(Source::Dir(shown))
    }
}

/// Renders the chart of `p`, preparing everything under the scratch directory.
pub fn render(
    source_dir: &str,
    scratch_dir: &str,
    p: &Params,
    release: &str,
    caps: &Capabilities,
    is_upgrade: bool,
) -> Result<Rendered, TaskError> {
    let timeout = p.render_timeout_ms();
    let root = Path::new(source_dir);
    let work = Path::new(scratch_dir).join(WORK);
    let work_guest = format!("{scratch_dir}/{WORK}");
    std::fs::create_dir_all(&work).map_err(|e| io("preparing the scratch directory", e))?;

    let src = source(p).map_err(TaskError::InvalidConfig)?;
    let mut chart_ref: Vec<String> = Vec::new();
    let mut info = None;
    match &src {
        Source::Dir(dir) => {
            let tree = work.join("tree");
            let to_build =
                chart::stage(root, Path::new(dir), &tree).map_err(TaskError::InvalidConfig)?;
            for d in to_build {
                host::info(&format!("helm dependency build {}", d.display()));
                helm(
                    vec!["dependency".into(), "build".into(), ".".into()],
                    &format!("{work_guest}/tree/{}", d.display()),
                    timeout,
                )?;
            }
            let yaml =
                chart::read_chart_yaml(root, Path::new(dir)).map_err(TaskError::InvalidConfig)?;
            info = Some(chart_info(&yaml));
            chart_ref.push(format!("tree/{dir}"));
        }
        Source::Archive(file) => {
            let data = std::fs::read(root.join(file))
                .map_err(|e| TaskError::InvalidConfig(format!("chart `{file}`: {e}")))?;
            std::fs::write(work.join("chart.tgz"), data).map_err(|e| io("copying the chart", e))?;
            chart_ref.push("chart.tgz".into());
        }
        Source::Repo { url, name } => {
            chart_ref.extend([name.clone(), "--repo".into(), url.clone()]);
        }
        Source::Oci(reference) => chart_ref.push(reference.clone()),
    }
    if let Some(v) = &p.version
        && !matches!(src, Source::Dir(_) | Source::Archive(_))
    {
        chart_ref.extend(["--version".into(), v.clone()]);
    }

    let mut values = Vec::new();
    for (i, f) in p.values_files.iter().enumerate() {
        let rel = chart::relative(f)
            .map_err(|e| TaskError::InvalidConfig(format!("values_files: {e}")))?;
        let text = std::fs::read(root.join(&rel))
            .map_err(|e| TaskError::InvalidConfig(format!("values file `{f}`: {e}")))?;
        let name = format!("values-{i}.yaml");
        std::fs::write(work.join(&name), text).map_err(|e| io("copying values", e))?;
        values.push(name);
    }
    if let Some(inline) = &p.values {
        std::fs::write(work.join("values-inline.json"), inline.to_string())
            .map_err(|e| io("writing values", e))?;
        values.push("values-inline.json".into());
    }
    let set: Vec<(String, Value)> = p.set.iter().map(|(k, v)| (k.clone(), v.clone())).collect();

    let chart = match info {
        Some(i) => i,
        None => {
            let mut args = vec!["show".to_string(), "chart".to_string()];
            args.extend(chart_ref.iter().cloned());
            let out = helm(args, &work_guest, timeout)?;
            let text = String::from_utf8_lossy(&out).to_string();
            let doc = yaml::documents(&text).into_iter().find(|d| !d.is_empty());
            let yaml = match doc {
                Some(d) => yaml::read_document("Chart.yaml", &d)
                    .map_err(|e| TaskError::Internal(e.to_string()))?,
                None => Value::Null,
            };
            chart_info(&yaml)
        }
    };

    let args = template_args(&Template {
        release,
        chart_ref: &chart_ref,
        namespace: &p.namespace,
        caps,
        is_upgrade,
        include_crds: p.include_crds,
        skip_tests: p.skip_tests,
        values: &values,
        set: &set,
    });
    let out = helm(args, &work_guest, timeout)?;
    let text = String::from_utf8(out)
        .map_err(|_| TaskError::Internal("helm printed something that is not UTF-8".into()))?;
    let mut rendered =
        split(&text, p.delete_crds).map_err(|e| TaskError::InvalidConfig(e.to_string()))?;
    rendered.chart = chart;
    Ok(rendered)
}

fn chart_info(yaml: &Value) -> ChartInfo {
    let s = |k: &str| {
        yaml[k]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| yaml[k].as_f64().map(|f| f.to_string()).unwrap_or_default())
    };
    ChartInfo {
        name: s("name"),
        version: s("version"),
        app_version: s("appVersion"),
    }
}

/// Splits what `helm template` printed into CRDs, hooks and release objects. CRDs from the
/// chart's `crds/` directory get `helm.sh/resource-policy: keep` unless `delete_crds`, so
/// that pruning and destroy leave them, as Helm does: deleting a CRD deletes every custom
/// resource of its kind in the cluster, whoever made them.
pub fn split(text: &str, delete_crds: bool) -> Result<Rendered, yaml::ParseError> {
    let mut out = Rendered {
        digest: hex::encode(Sha256::digest(text.as_bytes())),
        ..Rendered::default()
    };
    for doc in yaml::documents(text) {
        if doc.is_empty() {
            continue;
        }
        let file = doc.source_comment().unwrap_or("rendered chart").to_string();
        let value = yaml::read_document(&file, &doc)?;
        let mut objects = Vec::new();
        yaml::collect(
            value,
            Origin {
                file: file.clone(),
                line: 0,
            },
            &mut objects,
        )?;
        for mut m in objects {
            let annotations = &m.object["metadata"]["annotations"];
            let list = |k: &str| -> Vec<String> {
                annotations[k]
                    .as_str()
                    .map(|s| {
                        s.split(',')
                            .map(|e| e.trim().to_string())
                            .filter(|e| !e.is_empty())
                            .collect()
                    })
                    .unwrap_or_default()
            };
            let events = list("helm.sh/hook");
            if !events.is_empty() {
                if events.iter().any(|e| e.starts_with("test")) {
                    continue;
                }
                let weight = annotations["helm.sh/hook-weight"]
                    .as_str()
                    .and_then(|w| w.trim().parse().ok())
                    .unwrap_or(0);
                let mut delete_policies = list("helm.sh/hook-delete-policy");
                if delete_policies.is_empty() {
                    delete_policies.push("before-hook-creation".into());
                }
                out.hooks.push(Hook {
                    events,
                    weight,
                    delete_policies,
                    manifest: m,
                });
                continue;
            }
            let from_crds_dir = file.split('/').nth(1) == Some("crds")
                || file.contains("/crds/") && !file.contains("/templates/");
            if m.object["kind"] == "CustomResourceDefinition" && from_crds_dir {
                if !delete_crds
                    && let Some(md) = m.object.get_mut("metadata").and_then(Value::as_object_mut)
                {
                    let a = md.entry("annotations").or_insert_with(|| json!({}));
                    if let Some(a) = a.as_object_mut() {
                        a.insert(RESOURCE_POLICY.into(), json!("keep"));
                    }
                }
                out.crds.push(m);
            } else {
                out.objects.push(m);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUT: &str = "---\n# Source: web/crds/widgets.yaml\napiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: widgets.example.com\n---\n# Source: web/templates/svc.yaml\napiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  ports: [{port: 80}]\n---\n# Source: web/templates/job.yaml\napiVersion: batch/v1\nkind: Job\nmetadata:\n  name: migrate\n  annotations:\n    helm.sh/hook: pre-install,pre-upgrade\n    helm.sh/hook-weight: \"-5\"\n    helm.sh/hook-delete-policy: hook-succeeded\n---\n# Source: web/templates/tests/t.yaml\napiVersion: v1\nkind: Pod\nmetadata:\n  name: t\n  annotations: {helm.sh/hook: test}\n";

    #[test]
    fn output_is_split_into_crds_hooks_and_objects() {
        let r = split(OUTPUT, false).unwrap();
        assert_eq!(r.crds.len(), 1);
        assert_eq!(
            r.crds[0].object["metadata"]["annotations"][RESOURCE_POLICY],
            "keep"
        );
        assert_eq!(r.objects.len(), 1);
        assert_eq!(r.objects[0].origin.file, "web/templates/svc.yaml");
        assert_eq!(r.hooks.len(), 1, "tests are not run");
        assert_eq!(r.hooks[0].weight, -5);
        assert_eq!(r.hooks[0].events, ["pre-install", "pre-upgrade"]);
        assert_eq!(r.hooks[0].delete_policies, ["hook-succeeded"]);
        assert_eq!(r.digest.len(), 64);
        let r = split(OUTPUT, true).unwrap();
        assert!(r.crds[0].object["metadata"].get("annotations").is_none());
    }

    #[test]
    fn arguments_carry_capabilities_values_and_sets() {
        let caps = Capabilities {
            kube_version: Some("v1.35.2".into()),
            api_versions: vec!["apps/v1".into(), "apps/v1/Deployment".into()],
        };
        let chart_ref = ["tree/charts/web".to_string()];
        let values = [
            "values-0.yaml".to_string(),
            "values-inline.json".to_string(),
        ];
        let set = [
            ("image.tag".to_string(), json!("1.2")),
            ("replicas".to_string(), json!(3)),
        ];
        let args = template_args(&Template {
            release: "web",
            chart_ref: &chart_ref,
            namespace: "shop",
            caps: &caps,
            is_upgrade: true,
            include_crds: true,
            skip_tests: true,
            values: &values,
            set: &set,
        });
        let joined = args.join(" ");
        assert!(joined.starts_with("template web tree/charts/web --namespace shop --kube-version v1.35.2 --api-versions apps/v1,apps/v1/Deployment --is-upgrade --include-crds --skip-tests"), "{joined}");
        assert!(joined.ends_with("--values values-0.yaml --values values-inline.json --set-string image.tag=1.2 --set-json replicas=3"), "{joined}");
    }
}
