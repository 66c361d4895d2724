//! Bindings of the frozen `gantry:plugin@1.0.0` (`wit/v1`), and the one place where 1.x
//! values become the host's own (2.x) and back. A 1.x plugin's imports are served by the same
//! capabilities as a 2.x plugin's: each function here converts and delegates.

use wasmtime::component::Resource;

use super::v2;
use crate::host::CallState;
use crate::host::kube::Session;

pub mod task {
    wasmtime::component::bindgen!({
        path: "../wit/v1",
        world: "task-plugin",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "gantry:plugin/kube.session": crate::host::kube::Session,
        },
    });
}

pub mod hook {
    wasmtime::component::bindgen!({
        path: "../wit/v1",
        world: "hook-plugin",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "gantry:plugin/types": super::task::gantry::plugin::types,
            "gantry:plugin/log": super::task::gantry::plugin::log,
            "gantry:plugin/process": super::task::gantry::plugin::process,
        },
    });
}

use task::gantry::plugin::{kube, log, process, types};

/// 1.0 marked an object that will not become ready without a change by this prefix.
const FAILED: &str = "failed: ";

// ---- values the host hands to a 1.x plugin -------------------------------------------------

pub fn task_context(c: &v2::types::TaskContext) -> types::TaskContext {
    types::TaskContext {
        run_id: c.run_id.clone(),
        workflow: c.workflow.clone(),
        task: c.task.clone(),
        kind: c.kind.clone(),
        params: c.params.clone(),
        source_dir: c.source_dir.clone(),
        scratch_dir: c.scratch_dir.clone(),
        previous: c.previous.as_ref().map(deployment_to_v1),
    }
}

pub fn hook_context(c: &v2::types::HookContext) -> types::HookContext {
    use v2::types::Phase as P;
    types::HookContext {
        phase: match c.phase {
            P::PreDeploy => types::Phase::PreDeploy,
            P::PostDeploy => types::Phase::PostDeploy,
            P::OnFailure => types::Phase::OnFailure,
            P::PreDestroy => types::Phase::PreDestroy,
        },
        kind: c.kind.clone(),
        run_id: c.run_id.clone(),
        workflow: c.workflow.clone(),
        task: c.task.clone(),
        task_kind: c.task_kind.clone(),
        params: c.params.clone(),
        outputs: c.outputs.iter().map(output_to_v1).collect(),
        error: c.error.clone(),
    }
}

fn output_to_v1(o: &v2::types::Output) -> types::Output {
    types::Output {
        key: o.key.clone(),
        value: o.value.clone(),
    }
}

fn deployment_to_v1(d: &v2::types::Deployment) -> types::Deployment {
    types::Deployment {
        outputs: d.outputs.iter().map(output_to_v1).collect(),
        inventory: d.inventory.clone(),
        state: d.state.clone(),
    }
}

fn task_error_to_v1(e: v2::types::TaskError) -> types::TaskError {
    use v2::types::TaskError as E;
    match e {
        E::InvalidConfig(m) => types::TaskError::InvalidConfig(m),
        E::CapabilityDenied(m) => types::TaskError::CapabilityDenied(m),
        E::ToolFailed(t) => types::TaskError::ToolFailed(types::ToolFailure {
            program: t.program,
            exit_code: t.exit_code,
            stderr_tail: t.stderr_tail,
        }),
        E::Kube(k) if k.status == 0 => types::TaskError::Kube(k.message),
        E::Kube(k) => types::TaskError::Kube(format!("{} ({} {})", k.message, k.status, k.reason)),
        E::TimedOut(m) => types::TaskError::TimedOut(m),
        E::Cancelled => types::TaskError::Cancelled,
        E::Internal(m) => types::TaskError::Internal(m),
    }
}

fn object_ref_to_v1(r: v2::kube::ObjectRef) -> kube::ObjectRef {
    kube::ObjectRef {
        api_version: r.api_version,
        kind: r.kind,
        namespace: r.namespace,
        name: r.name,
    }
}

// ---- values a 1.x plugin hands to the host -------------------------------------------------

pub fn plugin_info(i: types::PluginInfo) -> v2::types::PluginInfo {
    v2::types::PluginInfo {
        name: i.name,
        kinds: i.kinds,
        version: i.version,
        description: i.description,
        capabilities: i
            .capabilities
            .into_iter()
            .map(|c| match c {
                types::Capability::Exec(p) => v2::types::Capability::Exec(p),
                types::Capability::Kube => v2::types::Capability::Kube,
            })
            .collect(),
        parameters: i
            .parameters
            .into_iter()
            .map(|p| v2::types::ParamSpec {
                name: p.name,
                description: p.description,
                required: p.required,
                type_hint: p.type_hint,
                default_value: None,
            })
            .collect(),
    }
}

pub fn validation_issues(issues: Vec<types::ValidationIssue>) -> Vec<v2::types::ValidationIssue> {
    issues
        .into_iter()
        .map(|i| v2::types::ValidationIssue {
            field: i.field,
            message: i.message,
            location: None,
        })
        .collect()
}

pub fn deployment(d: types::Deployment) -> v2::types::Deployment {
    v2::types::Deployment {
        outputs: d
            .outputs
            .into_iter()
            .map(|o| v2::types::Output {
                key: o.key,
                value: o.value,
                sensitive: false,
            })
            .collect(),
        inventory: d.inventory,
        state: d.state,
    }
}

pub fn planned_changes(changes: Vec<types::PlannedChange>) -> Vec<v2::types::PlannedChange> {
    changes
        .into_iter()
        .map(|c| v2::types::PlannedChange {
            action: match c.action {
                types::ChangeAction::Create => v2::types::ChangeAction::Create,
                types::ChangeAction::Update => v2::types::ChangeAction::Update,
                types::ChangeAction::Unchanged => v2::types::ChangeAction::Unchanged,
                types::ChangeAction::Delete => v2::types::ChangeAction::Delete,
            },
            target: c.target,
            detail: c.detail,
            before: None,
            after: None,
        })
        .collect()
}

pub fn rollback_outcome(o: types::RollbackOutcome) -> v2::types::RollbackOutcome {
    match o {
        types::RollbackOutcome::RolledBack(d) => {
            v2::types::RollbackOutcome::RolledBack(deployment(d))
        }
        types::RollbackOutcome::Unsupported(r) => v2::types::RollbackOutcome::Unsupported(r),
    }
}

pub fn hook_decision(d: types::HookDecision) -> v2::types::HookDecision {
    match d {
        types::HookDecision::Proceed => v2::types::HookDecision::Proceed,
        types::HookDecision::Skip(r) => v2::types::HookDecision::Skip(r),
        types::HookDecision::Fail(r) => v2::types::HookDecision::Fail(r),
    }
}

pub fn task_error(e: types::TaskError) -> v2::types::TaskError {
    use types::TaskError as E;
    match e {
        E::InvalidConfig(m) => v2::types::TaskError::InvalidConfig(m),
        E::CapabilityDenied(m) => v2::types::TaskError::CapabilityDenied(m),
        E::ToolFailed(t) => v2::types::TaskError::ToolFailed(v2::types::ToolFailure {
            program: t.program,
            exit_code: t.exit_code,
            stderr_tail: t.stderr_tail,
        }),
        E::Kube(message) => v2::types::TaskError::Kube(v2::types::KubeError {
            status: 0,
            reason: String::new(),
            message,
        }),
        E::TimedOut(m) => v2::types::TaskError::TimedOut(m),
        E::Cancelled => v2::types::TaskError::Cancelled,
        E::Internal(m) => v2::types::TaskError::Internal(m),
    }
}

fn level(l: log::Level) -> v2::log::Level {
    match l {
        log::Level::Trace => v2::log::Level::Trace,
        log::Level::Debug => v2::log::Level::Debug,
        log::Level::Info => v2::log::Level::Info,
        log::Level::Warn => v2::log::Level::Warn,
        log::Level::Error => v2::log::Level::Error,
    }
}

fn object_ref(r: kube::ObjectRef) -> v2::kube::ObjectRef {
    v2::kube::ObjectRef {
        api_version: r.api_version,
        kind: r.kind,
        namespace: r.namespace,
        name: r.name,
    }
}

fn converted<T, U>(
    r: wasmtime::Result<Result<T, v2::types::TaskError>>,
    f: impl FnOnce(T) -> U,
) -> wasmtime::Result<Result<U, types::TaskError>> {
    Ok(r?.map(f).map_err(task_error_to_v1))
}

// ---- the 1.0 imports, served by the host's capabilities ----------------------------------

impl types::Host for CallState {}

impl log::Host for CallState {
    async fn log(
        &mut self,
        l: log::Level,
        message: String,
        fields: Vec<(String, String)>,
    ) -> wasmtime::Result<()> {
        self.log.write(level(l), &message, &fields);
        Ok(())
    }
}

impl process::Host for CallState {
    async fn run(
        &mut self,
        cmd: process::Command,
    ) -> wasmtime::Result<Result<process::CommandOutput, types::TaskError>> {
        let cmd = v2::process::Command {
            program: cmd.program,
            args: cmd.args,
            env: cmd.env,
            cwd: cmd.cwd,
            stdin: cmd.stdin,
            timeout_ms: cmd.timeout_ms,
            stream_output: false,
            grace_ms: None,
        };
        converted(Ok(self.run_program(cmd).await), |o| {
            process::CommandOutput {
                exit_code: o.exit_code,
                stdout: o.stdout,
                stderr: o.stderr,
                truncated: o.truncated,
            }
        })
    }
}

impl kube::Host for CallState {
    async fn open(
        &mut self,
        cluster: Option<String>,
    ) -> wasmtime::Result<Result<Resource<Session>, types::TaskError>> {
        converted(self.open_session(cluster).await, |s| s)
    }
}

impl kube::HostSession for CallState {
    async fn apply(
        &mut self,
        s: Resource<Session>,
        manifest: String,
        o: kube::ApplyOptions,
    ) -> wasmtime::Result<Result<String, types::TaskError>> {
        let o = v2::kube::ApplyOptions {
            dry_run: o.dry_run,
            force: o.force,
            field_manager: None,
        };
        let r = self
            .with_session(&s, async |session| session.apply(&manifest, o).await)
            .await;
        converted(r, |v| v)
    }

    async fn get(
        &mut self,
        s: Resource<Session>,
        t: kube::ObjectRef,
    ) -> wasmtime::Result<Result<Option<String>, types::TaskError>> {
        let t = object_ref(t);
        let r = self
            .with_session(&s, async |session| session.get(&t).await)
            .await;
        converted(r, |v| v)
    }

    async fn list(
        &mut self,
        s: Resource<Session>,
        api_version: String,
        kind: String,
        namespace: Option<String>,
        selector: String,
    ) -> wasmtime::Result<Result<Vec<String>, types::TaskError>> {
        let r = self
            .with_session(&s, async |session| {
                session
                    .list(&api_version, &kind, namespace.as_deref(), &selector)
                    .await
            })
            .await;
        converted(r, |v| v)
    }

    async fn delete(
        &mut self,
        s: Resource<Session>,
        t: kube::ObjectRef,
    ) -> wasmtime::Result<Result<bool, types::TaskError>> {
        let t = object_ref(t);
        let r = self
            .with_session(&s, async |session| session.delete(&t).await)
            .await;
        converted(r, |v| v)
    }

    async fn wait_ready(
        &mut self,
        s: Resource<Session>,
        targets: Vec<kube::ObjectRef>,
        timeout_ms: u64,
    ) -> wasmtime::Result<Result<Vec<kube::Readiness>, types::TaskError>> {
        let targets: Vec<_> = targets.into_iter().map(object_ref).collect();
        let r = self
            .with_session(&s, async |session| {
                session
                    .wait_ready(&targets, std::time::Duration::from_millis(timeout_ms))
                    .await
            })
            .await;
        converted(r, |states| {
            states
                .into_iter()
                .map(|r| {
                    use v2::kube::ReadinessState as S;
                    let (ready, message) = match r.state {
                        S::Ready => (true, "ready".to_string()),
                        S::Progressing(m) => (false, m),
                        S::Failed(m) => (false, format!("{FAILED}{m}")),
                    };
                    kube::Readiness {
                        target: object_ref_to_v1(r.target),
                        ready,
                        message,
                    }
                })
                .collect()
        })
    }

    async fn drop(&mut self, session: Resource<Session>) -> wasmtime::Result<()> {
        self.close_session(session)
    }
}
