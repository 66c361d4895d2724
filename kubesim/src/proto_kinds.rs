//! Protobuf bodies of the built-in kinds `kubectl create` and typed clients write beyond
//! the few [`crate::proto`] reads by hand: Deployments, Jobs, CronJobs, Services, Ingresses,
//! ServiceAccounts, RBAC objects, PodDisruptionBudgets, PriorityClasses, ResourceQuotas.
//!
//! Each message is described by its field numbers and JSON names (the wire contract of
//! Kubernetes' `generated.proto`), and one generic walk turns a body into the JSON object it
//! stands for. Go's encoder writes every non-pointer field, so zero values are dropped as
//! JSON's `omitempty` would, except for the pointer fields marked `!`, where an explicit
//! zero means something (`replicas: 0`). A field the table does not know, carrying a value,
//! refuses the request rather than losing data.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::{Map, Value, json};

use crate::proto::{Field, fields, object_meta};

/// `Message = number name type, ...`. Types: `string`, `int`, `bool`, `map` (string to
/// string), `qmap` (string to Quantity), `ios` (IntOrString), `meta` (ObjectMeta), `-`
/// (read and ignored: status, which the server sets), or a message; `[]` before a type makes
/// it repeated; `!` after it keeps an explicit zero; the name `~` merges the message into
/// its parent (Go's `json:",inline"`).
const MESSAGES: &str = "
Deployment = 1 metadata meta, 2 spec DeploymentSpec, 3 status -
DeploymentSpec = 1 replicas int!, 2 selector LabelSelector, 3 template PodTemplateSpec, 4 strategy DeploymentStrategy, 5 minReadySeconds int, 6 revisionHistoryLimit int!, 7 paused bool, 9 progressDeadlineSeconds int!
DeploymentStrategy = 1 type string, 2 rollingUpdate RollingUpdateDeployment
RollingUpdateDeployment = 1 maxUnavailable ios!, 2 maxSurge ios!
Job = 1 metadata meta, 2 spec JobSpec, 3 status -
JobSpec = 1 parallelism int!, 2 completions int!, 3 activeDeadlineSeconds int!, 4 selector LabelSelector, 5 manualSelector bool!, 6 template PodTemplateSpec, 7 backoffLimit int!, 8 ttlSecondsAfterFinished int!, 9 completionMode string!, 10 suspend bool!, 12 backoffLimitPerIndex int!, 13 maxFailedIndexes int!, 14 podReplacementPolicy string!, 15 managedBy string!
CronJob = 1 metadata meta, 2 spec CronJobSpec, 3 status -
CronJobSpec = 1 schedule string, 2 startingDeadlineSeconds int!, 3 concurrencyPolicy string, 4 suspend bool!, 5 jobTemplate JobTemplateSpec, 6 successfulJobsHistoryLimit int!, 7 failedJobsHistoryLimit int!, 8 timeZone string!
JobTemplateSpec = 1 metadata meta, 2 spec JobSpec
PodTemplateSpec = 1 metadata meta, 2 spec PodSpec
PodSpec = 2 containers []Container, 3 restartPolicy string, 4 terminationGracePeriodSeconds int!, 5 activeDeadlineSeconds int!, 6 dnsPolicy string, 7 nodeSelector map, 8 serviceAccountName string, 9 serviceAccount string, 10 nodeName string, 11 hostNetwork bool, 15 imagePullSecrets []LocalObjectReference, 16 hostname string, 17 subdomain string, 19 schedulerName string, 20 initContainers []Container, 21 automountServiceAccountToken bool!, 24 priorityClassName string, 25 priority int!, 29 runtimeClassName string!, 30 enableServiceLinks bool!, 31 preemptionPolicy string!
Container = 1 name string, 2 image string, 3 command []string, 4 args []string, 5 workingDir string, 6 ports []ContainerPort, 7 env []EnvVar, 8 resources ResourceRequirements, 13 terminationMessagePath string, 14 imagePullPolicy string, 16 stdin bool, 17 stdinOnce bool, 18 tty bool, 20 terminationMessagePolicy string, 24 restartPolicy string!
ContainerPort = 1 name string, 2 hostPort int, 3 containerPort int, 4 protocol string, 5 hostIP string
EnvVar = 1 name string, 2 value string
ResourceRequirements = 1 limits qmap, 2 requests qmap
LocalObjectReference = 1 name string
LabelSelector = 1 matchLabels map, 2 matchExpressions []LabelSelectorRequirement
LabelSelectorRequirement = 1 key string, 2 operator string, 3 values []string
Service = 1 metadata meta, 2 spec ServiceSpec, 3 status -
ServiceSpec = 1 ports []ServicePort, 2 selector map, 3 clusterIP string, 4 type string, 5 externalIPs []string, 7 sessionAffinity string, 8 loadBalancerIP string, 9 loadBalancerSourceRanges []string, 10 externalName string, 11 externalTrafficPolicy string, 12 healthCheckNodePort int, 13 publishNotReadyAddresses bool, 17 ipFamilyPolicy string!, 18 clusterIPs []string, 19 ipFamilies []string, 20 allocateLoadBalancerNodePorts bool!, 21 loadBalancerClass string!, 22 internalTrafficPolicy string!, 23 trafficDistribution string!
ServicePort = 1 name string, 2 protocol string, 3 port int, 4 targetPort ios, 5 nodePort int, 6 appProtocol string!
Ingress = 1 metadata meta, 2 spec IngressSpec, 3 status -
IngressSpec = 1 defaultBackend IngressBackend, 2 tls []IngressTLS, 3 rules []IngressRule, 4 ingressClassName string!
IngressRule = 1 host string, 2 ~ IngressRuleValue
IngressRuleValue = 1 http HTTPIngressRuleValue
HTTPIngressRuleValue = 1 paths []HTTPIngressPath
HTTPIngressPath = 1 path string, 2 backend IngressBackend, 3 pathType string!
IngressBackend = 4 service IngressServiceBackend
IngressServiceBackend = 1 name string, 2 port ServiceBackendPort
ServiceBackendPort = 1 name string, 2 number int
IngressTLS = 1 hosts []string, 2 secretName string
ServiceAccount = 1 metadata meta, 2 secrets []ObjectReference, 3 imagePullSecrets []LocalObjectReference, 4 automountServiceAccountToken bool!
ObjectReference = 1 kind string, 2 namespace string, 3 name string, 4 uid string, 5 apiVersion string, 6 resourceVersion string, 7 fieldPath string
Role = 1 metadata meta, 2 rules []PolicyRule
ClusterRole = 1 metadata meta, 2 rules []PolicyRule, 3 aggregationRule AggregationRule
AggregationRule = 1 clusterRoleSelectors []LabelSelector
PolicyRule = 1 verbs []string, 2 apiGroups []string, 3 resources []string, 4 resourceNames []string, 5 nonResourceURLs []string
RoleBinding = 1 metadata meta, 2 subjects []Subject, 3 roleRef RoleRef
ClusterRoleBinding = 1 metadata meta, 2 subjects []Subject, 3 roleRef RoleRef
Subject = 1 kind string, 2 apiGroup string, 3 name string, 4 namespace string
RoleRef = 1 apiGroup string, 2 kind string, 3 name string
PodDisruptionBudget = 1 metadata meta, 2 spec PodDisruptionBudgetSpec, 3 status -
PodDisruptionBudgetSpec = 1 minAvailable ios!, 2 selector LabelSelector, 3 maxUnavailable ios!, 4 unhealthyPodEvictionPolicy string!
PriorityClass = 1 metadata meta, 2 value int!, 3 globalDefault bool, 4 description string, 5 preemptionPolicy string!
ResourceQuota = 1 metadata meta, 2 spec ResourceQuotaSpec, 3 status -
ResourceQuotaSpec = 1 hard qmap, 2 scopes []string
";

#[derive(Debug)]
struct Spec {
    name: &'static str,
    ty: &'static str,
    repeated: bool,
    keep_zero: bool,
}

type Table = HashMap<&'static str, HashMap<u64, Spec>>;

/// The message table, read once from [`MESSAGES`]; a malformed entry is skipped (the unit
/// tests read every line).
fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = Table::new();
        for line in MESSAGES.lines() {
            let Some((message, entries)) = line.split_once(" = ") else {
                continue;
            };
            let specs = entries.split(", ").filter_map(parse_entry).collect();
            t.insert(message.trim(), specs);
        }
        t
    })
}

fn parse_entry(entry: &'static str) -> Option<(u64, Spec)> {
    let mut parts = entry.split_whitespace();
    let number = parts.next()?.parse().ok()?;
    let name = parts.next()?;
    let ty = parts.next()?;
    let (ty, keep_zero) = match ty.strip_suffix('!') {
        Some(t) => (t, true),
        None => (ty, false),
    };
    let (ty, repeated) = match ty.strip_prefix("[]") {
        Some(t) => (t, true),
        None => (ty, false),
    };
    Some((
        number,
        Spec {
            name,
            ty,
            repeated,
            keep_zero,
        },
    ))
}

/// Whether a kind's body can be read here.
pub fn known(kind: &str) -> bool {
    table().contains_key(kind)
}

/// The JSON fields of a kind's body (without apiVersion and kind).
pub fn decode(kind: &str, raw: &[u8]) -> Result<Map<String, Value>, String> {
    match message(kind, raw)? {
        Value::Object(m) => Ok(m),
        _ => Ok(Map::new()),
    }
}

fn is_zero(f: &Field) -> bool {
    match f {
        Field::Varint(v) => *v == 0,
        Field::Bytes(b) => b.is_empty(),
    }
}

fn is_zero_json(v: &Value) -> bool {
    match v {
        Value::String(s) => s.is_empty(),
        Value::Number(n) => n.as_i64() == Some(0),
        Value::Bool(b) => !b,
        Value::Null => true,
        _ => false,
    }
}

fn text(f: &Field) -> Result<String, String> {
    match f {
        Field::Bytes(b) => String::from_utf8(b.to_vec()).map_err(|_| "string is not UTF-8".into()),
        Field::Varint(_) => Err("expected a string".into()),
    }
}

fn bytes<'a>(f: &Field<'a>) -> &'a [u8] {
    match f {
        Field::Bytes(b) => b,
        Field::Varint(_) => &[],
    }
}

fn int(f: &Field) -> i64 {
    match f {
        // Negative int32 and int64 values are sign-extended to 64 bits on the wire.
        Field::Varint(v) => *v as i64,
        Field::Bytes(_) => 0,
    }
}

/// `IntOrString`: field 1 says which (0 an int, 1 a string), 2 holds the int, 3 the string.
fn int_or_string(buf: &[u8]) -> Result<Value, String> {
    let (mut is_string, mut number, mut string) = (false, 0, String::new());
    for (n, f) in fields(buf)? {
        match n {
            1 => is_string = int(&f) == 1,
            2 => number = int(&f),
            3 => string = text(&f)?,
            _ => {}
        }
    }
    Ok(if is_string {
        json!(string)
    } else {
        json!(number)
    })
}

/// One entry of a `map<string, V>`: the key (field 1) and the value field (2).
fn map_entry<'a>(f: &Field<'a>) -> Result<(String, Option<Field<'a>>), String> {
    let (mut key, mut value) = (String::new(), None);
    for (n, f) in fields(bytes(f))? {
        match n {
            1 => key = text(&f)?,
            2 => value = Some(f),
            _ => {}
        }
    }
    Ok((key, value))
}

fn quantity(f: Option<&Field>) -> Result<Value, String> {
    let mut q = String::new();
    if let Some(f) = f {
        for (n, f) in fields(bytes(f))? {
            if n == 1 {
                q = text(&f)?;
            }
        }
    }
    Ok(json!(q))
}

fn message(name: &str, buf: &[u8]) -> Result<Value, String> {
    let Some(specs) = table().get(name) else {
        return Err(format!(
            "the simulator reads {name} only as JSON; send it as application/json"
        ));
    };
    let mut out = Map::new();
    for (n, f) in fields(buf)? {
        let Some(spec) = specs.get(&n) else {
            if is_zero(&f) {
                continue;
            }
            return Err(format!(
                "the simulator cannot read field {n} of {name} from protobuf; send it as application/json"
            ));
        };
        let v = match spec.ty {
            "-" => continue,
            "string" => json!(text(&f)?),
            "int" => json!(int(&f)),
            "bool" => json!(int(&f) != 0),
            "meta" => object_meta(bytes(&f))?,
            "ios" => int_or_string(bytes(&f))?,
            "map" | "qmap" => {
                let (k, value) = map_entry(&f)?;
                let value = if spec.ty == "map" {
                    json!(value.as_ref().map(text).transpose()?.unwrap_or_default())
                } else {
                    quantity(value.as_ref())?
                };
                let m = out
                    .entry(spec.name)
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(m) = m {
                    m.insert(k, value);
                }
                continue;
            }
            other if is_zero(&f) && !table().contains_key(other) => continue,
            other => message(other, bytes(&f))?,
        };
        if spec.repeated {
            let list = out.entry(spec.name).or_insert_with(|| json!([]));
            if let Value::Array(a) = list {
                a.push(v);
            }
        } else if spec.name == "~" {
            if let Value::Object(inner) = v {
                out.extend(inner);
            }
        } else if spec.keep_zero || !is_zero_json(&v) {
            out.insert(spec.name.to_string(), v);
        }
    }
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_of_the_table_reads() {
        for line in MESSAGES.lines().filter(|l| !l.trim().is_empty()) {
            let (message, entries) = line.split_once(" = ").expect("Message = entries");
            for entry in entries.split(", ") {
                let (_, spec) = parse_entry(entry).unwrap_or_else(|| panic!("{entry}"));
                let primitive = matches!(
                    spec.ty,
                    "string" | "int" | "bool" | "map" | "qmap" | "ios" | "meta" | "-"
                );
                assert!(
                    primitive || table().contains_key(spec.ty),
                    "{message}: {entry} names an unknown message"
                );
            }
        }
    }

    fn field(n: u64, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![((n << 3) | 2) as u8, payload.len() as u8];
        v.extend_from_slice(payload);
        v
    }

    fn varint(n: u64, value: u8) -> Vec<u8> {
        vec![(n << 3) as u8, value]
    }

    #[test]
    fn reads_a_deployment_keeping_explicit_zeros_and_dropping_empty_strings() {
        let container = [field(1, b"web"), field(2, b"nginx"), field(13, b"")].concat();
        let pod_spec = field(2, &container);
        let template = field(2, &pod_spec);
        let spec = [varint(1, 0), field(3, &template), field(4, b"")].concat();
        let body = [field(1, &field(1, b"web")), field(2, &spec), field(3, b"")].concat();
        let d = decode("Deployment", &body).expect("decodes");
        assert_eq!(d["metadata"]["name"], "web");
        assert_eq!(d["spec"]["replicas"], 0, "an explicit zero is kept");
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"],
            json!([{"name": "web", "image": "nginx"}])
        );
        assert_eq!(d["spec"]["strategy"], json!({}));
        assert!(d.get("status").is_none());
    }

    #[test]
    fn refuses_fields_it_does_not_know_rather_than_dropping_them() {
        // Field 1 of PodSpec (volumes) is not in the table.
        let spec = field(1, b"\x0a\x01x");
        let body = field(2, &field(6, &field(2, &spec)));
        let err = decode("Job", &body).expect_err("unknown field");
        assert!(err.contains("field 1 of PodSpec"), "{err}");
    }
}
