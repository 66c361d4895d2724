//! The HTTP API on the Unix socket, versioned under `/v1`, JSON in and out, one error shape.
//! Every request is authorised from the peer's credentials (see [`auth`]).

pub mod auth;
pub mod error;
pub mod server;

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use self::auth::Peer;
use self::error::ApiError;
use crate::engine::plan;
use crate::protocol::{Status, TriggerRequest, TriggerResponse};
use crate::service::Daemon;
use crate::store::RunFilter;

/// Largest request body accepted.
const MAX_BODY: usize = 64 * 1024;

pub fn router(daemon: Arc<Daemon>) -> Router {
    Router::new()
        .route("/v1/runs", post(trigger).get(list_runs))
        .route("/v1/runs/{id}", get(show_run))
        .route("/v1/events", get(all_events))
        .route("/v1/runs/{id}/events", get(events))
        .route("/v1/runs/{id}/logs", get(run_log))
        .route("/v1/runs/{id}/logs/{workflow}/{task}", get(task_log))
        .route("/v1/runs/{id}/cancel", post(cancel))
        .route("/v1/workflows", get(workflows))
        .route("/v1/workflows/{name}/plan", get(plan_workflow))
        .route(
            "/v1/workflows/{name}/deployments/{task}",
            axum::routing::delete(forget),
        )
        .route("/v1/plugins", get(plugins))
        .route("/v1/validate", post(validate))
        .route("/v1/reload", post(reload))
        .route("/v1/status", get(status))
        .route("/metrics", get(metrics))
        .fallback(|| async {
            ApiError::not_found(
                "no such endpoint; see the OpenAPI description in docs/openapi.yaml",
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn_with_state(daemon.clone(), authorise))
        .with_state(daemon)
}

async fn authorise(
    State(d): State<Arc<Daemon>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    req: Request,
    next: Next,
) -> Response {
    let allowed = d.access.read().map(|a| a.allows(&peer)).unwrap_or(false);
    if peer.task_program {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "programs gantry runs for tasks may not use its API",
        )
        .into_response();
    }
    if !allowed {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("uid {} is not allowed to use gantry; add it to [api] allow_uids (or its group to allow_gids) in gantry.toml", peer.uid.map_or("unknown".into(), |u| u.to_string())),
        )
        .into_response();
    }
    next.run(req).await
}

async fn trigger(
    State(d): State<Arc<Daemon>>,
    body: Result<Json<TriggerRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body.map_err(|e| ApiError::rejected(e.status(), e.body_text()))?;
    let id = d.start_run(&body.workflows, "api")?;
    let warnings = d.stale(&body.workflows);
    Ok((StatusCode::ACCEPTED, Json(TriggerResponse { id, warnings })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    limit: Option<usize>,
    before: Option<String>,
    state: Option<String>,
    workflow: Option<String>,
}

/// Newest first; `next_before` is the cursor for the next page, absent on the last.
async fn list_runs(
    State(d): State<Arc<Daemon>>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let filter = RunFilter {
        before: q.before,
        state: q.state,
        workflow: q.workflow,
    };
    let runs = d.store.runs(limit, &filter)?;
    let next = (runs.len() == limit)
        .then(|| runs.last().map(|r| r.id.clone()))
        .flatten();
    Ok(Json(json!({ "runs": runs, "next_before": next })))
}

async fn show_run(
    State(d): State<Arc<Daemon>>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let run = find_run(&d, &id)?;
    let tasks = d.store.tasks(&run.id)?;
    Ok(Json(json!({ "run": run, "tasks": tasks })))
}

#[derive(Deserialize)]
struct EventsQuery {
    since: Option<i64>,
    follow: Option<bool>,
}

/// NDJSON: each stored event of the run after `since`, then (unless `follow=false`) live
/// ones until the run finishes. Each line carries `seq` for resuming.
async fn events(
    State(d): State<Arc<Daemon>>,
    Path(id): Path<String>,
    q: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let run = find_run(&d, &id)?;
    let follow = q.follow.unwrap_or(true)
        && !matches!(
            run.state.as_str(),
            "succeeded" | "succeeded_with_errors" | "failed" | "cancelled" | "interrupted"
        );
    stream_events(&d, Some(run.id), q.since.unwrap_or(0), follow)
}

/// The run a path names: its whole id, a prefix of exactly one run's id, or `latest`.
fn find_run(d: &Daemon, name: &str) -> Result<crate::store::RunRow, ApiError> {
    let ids = d.store.runs_named(name)?;
    match ids.as_slice() {
        [id] => d
            .store
            .run(id)?
            .ok_or_else(|| ApiError::not_found(format!("no run `{name}`"))),
        [] => Err(ApiError::not_found(format!("no run `{name}`"))),
        _ => Err(ApiError::bad_request(format!(
            "`{name}` is the start of several runs' ids ({}, ...); give more of it",
            ids.join(", ")
        ))),
    }
}

/// NDJSON of every run's events: those after `since` if given, then live ones for as long as
/// the client stays connected. For dashboards and for tools that react to any run.
async fn all_events(
    State(d): State<Arc<Daemon>>,
    q: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let since = match q.since {
        Some(s) => s,
        None => d.store.last_seq()?,
    };
    stream_events(&d, None, since, q.follow.unwrap_or(true))
}

/// Stored events after `since`, then live ones; a run's stream ends with its `run_finished`.
fn stream_events(
    d: &Arc<Daemon>,
    run: Option<String>,
    since: i64,
    follow: bool,
) -> Result<Response, ApiError> {
    // Subscribe before reading the store, so nothing falls between the two.
    let mut live = d.runs.subscribe();
    let stored = d.store.events(run.as_deref(), since)?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(256);
    let store = d.store.clone();
    tokio::spawn(async move {
        let mut last = since;
        let mut finished = false;
        for (seq, body) in stored {
            last = seq;
            finished |= run.is_some() && body.contains("\"type\":\"run_finished\"");
            if tx.send(line(seq, &body)).await.is_err() {
                return;
            }
        }
        if !follow || finished {
            return;
        }
        loop {
            match live.recv().await {
                Ok(e) if e.seq == 0 && run.as_ref().is_none_or(|r| *r == e.run) => {
                    if tx.send(Bytes::from(format!("{}\n", e.json))).await.is_err() {
                        return;
                    }
                }
                Ok(e) if e.seq > last && run.as_ref().is_none_or(|r| *r == e.run) => {
                    last = e.seq;
                    let end = run.is_some() && e.last;
                    if tx.send(line(e.seq, &e.json)).await.is_err() || end {
                        return;
                    }
                }
                Ok(_) => {}
                // A slow reader fell behind the live feed: catch up from the store.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    let Ok(missed) = store.events(run.as_deref(), last) else {
                        return;
                    };
                    for (seq, body) in missed {
                        last = seq;
                        let end = run.is_some() && body.contains("\"type\":\"run_finished\"");
                        if tx.send(line(seq, &body)).await.is_err() || end {
                            return;
                        }
                    }
                }
                Err(_) => return,
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response())
}

fn line(seq: i64, body: &str) -> Bytes {
    let text = match body.strip_prefix('{') {
        Some(rest) => format!("{{\"seq\":{seq},{rest}\n"),
        None => format!("{body}\n"),
    };
    Bytes::from(text)
}

/// Whether a run, workflow or task name from a request can stand in a path under the state
/// directory.
fn plain_name(s: &str) -> bool {
    !s.is_empty() && !s.contains('/') && s != ".." && s != "."
}

/// What `read` reads of the logs, off the async threads.
async fn read_logs<T: Send + 'static>(
    read: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(read).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(ApiError::internal(format!("reading the run's log: {e}"))),
        Err(e) => Err(ApiError::internal(format!("reading the run's log: {e}"))),
    }
}

fn plain_text(body: impl Into<Body>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body.into(),
    )
        .into_response()
}

/// Every line the run's tasks logged, in the order written: `TIME LEVEL WORKFLOW/TASK message`.
async fn run_log(
    State(d): State<Arc<Daemon>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    if !plain_name(&id) {
        return Err(ApiError::bad_request("the run must be a plain name"));
    }
    let id = find_run(&d, &id)?.id;
    let dir = d.state_dir.join("logs");
    // Streamed: a run's log can be far larger than what is worth holding in memory.
    Ok(
        match read_logs(move || crate::store::logs::RunLog::open(&dir, &id)).await? {
            crate::store::logs::RunLog::File { file, len } => {
                let file = tokio::io::AsyncReadExt::take(tokio::fs::File::from_std(file), len);
                plain_text(Body::from_stream(
                    tokio_util::io::ReaderStream::with_capacity(file, 64 * 1024),
                ))
            }
            crate::store::logs::RunLog::Legacy(text) => plain_text(text),
        },
    )
}

/// One task's lines of the run's log: `TIME LEVEL message`.
async fn task_log(
    State(d): State<Arc<Daemon>>,
    Path((id, workflow, task)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    if !plain_name(&id) || !plain_name(&workflow) || !plain_name(&task) {
        return Err(ApiError::bad_request(
            "run, workflow and task must be plain names",
        ));
    }
    let id = find_run(&d, &id)?.id;
    let known = d
        .store
        .tasks(&id)?
        .iter()
        .any(|t| t.workflow == workflow && t.task == task);
    if !known {
        return Err(ApiError::not_found(format!(
            "run `{id}` has no task {workflow}/{task}"
        )));
    }
    let dir = d.state_dir.join("logs");
    let text = read_logs(move || crate::store::logs::task_log(&dir, &id, &workflow, &task)).await?;
    Ok(plain_text(text))
}

async fn cancel(
    State(d): State<Arc<Daemon>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let run = find_run(&d, &id)?;
    let id = run.id.clone();
    if d.runs.cancel(&id) {
        Ok((
            StatusCode::ACCEPTED,
            Json(json!({ "id": id, "cancelling": true })),
        )
            .into_response())
    } else {
        Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_running",
            format!("run `{id}` is not running (it is {})", run.state),
        ))
    }
}

async fn workflows(State(d): State<Arc<Daemon>>) -> Json<serde_json::Value> {
    let active = d.active();
    let list: Vec<_> = active
        .config
        .workflows
        .values()
        .map(|w| {
            json!({
                "name": w.name, "file": w.file, "description": w.description, "digest": w.digest,
                "tasks": w.tasks.iter().map(|t| json!({"id": t.id, "kind": t.kind})).collect::<Vec<_>>(),
                "steps": w.steps.iter().map(|s| &s.name).collect::<Vec<_>>(),
                "auto_deploy": w.auto_deploy,
            })
        })
        .collect();
    Json(json!({ "generation": active.generation, "workflows": list }))
}

async fn plan_workflow(
    State(d): State<Arc<Daemon>>,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let active = d.active();
    let wf = active
        .config
        .workflows
        .get(&name)
        .ok_or_else(|| ApiError::not_found(format!("no workflow `{name}`")))?;
    let plan =
        plan::compile(vec![wf.clone()]).map_err(|e| ApiError::bad_request(format!("{e:?}")))?;
    let nodes: Vec<_> = (0..plan.nodes.len())
        .map(|n| {
            json!({
                "node": plan.describe(n),
                "after": plan.nodes[n].deps.iter().map(|(d, e)| json!({"node": plan.describe(*d), "requires_success": *e == plan::Edge::Requires})).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(Json(json!({ "workflow": name, "nodes": nodes })))
}

/// Stops tracking a removed task's deployment, typically one whose destroy timed out and is
/// pending: it will not be destroyed (nor rolled back) by gantry again.
async fn forget(
    State(d): State<Arc<Daemon>>,
    Path((workflow, task)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let declared = d
        .active()
        .config
        .workflows
        .get(&workflow)
        .is_some_and(|w| w.task(&task).is_some());
    if declared {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "still_declared",
            format!(
                "task `{task}` is still in workflow `{workflow}`; remove it from the workflow first (its next deploy then destroys it)"
            ),
        ));
    }
    if !d.store.forget(&workflow, &task)? {
        return Err(ApiError::not_found(format!(
            "no deployment of `{task}` is recorded for workflow `{workflow}`"
        )));
    }
    tracing::info!(workflow, task, "deployment forgotten");
    Ok(Json(
        json!({ "workflow": workflow, "task": task, "forgotten": true }),
    ))
}

async fn plugins(State(d): State<Arc<Daemon>>) -> Json<serde_json::Value> {
    let active = d.active();
    let list: Vec<_> = active
        .registry
        .plugins()
        .iter()
        .map(|p| json!({
            "name": p.info.name, "world": p.world, "kinds": p.info.kinds, "version": p.info.version,
            "source": p.source, "digest": p.digest, "refused": p.caps.refusals,
        }))
        .collect();
    Json(json!({ "plugins": list, "problems": active.registry.problems }))
}

async fn validate(State(d): State<Arc<Daemon>>) -> Json<serde_json::Value> {
    match d.load().await {
        Ok(loaded) => {
            Json(json!({ "valid": true, "workflows": loaded.config.workflows.len(), "errors": [] }))
        }
        Err(errors) => Json(json!({ "valid": false, "errors": errors })),
    }
}

async fn reload(State(d): State<Arc<Daemon>>) -> Response {
    let status = d.reload_announced().await;
    let code = if status.ok {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    (code, Json(status)).into_response()
}

async fn status(State(d): State<Arc<Daemon>>) -> Json<Status> {
    Json(Status {
        version: env!("CARGO_PKG_VERSION").into(),
        generation: d.active().generation,
        last_reload: d.last_reload(),
        running_runs: d.runs.running(),
        queued_runs: d.runs.queued(),
        accepting_runs: d.accepting(),
        uptime_seconds: d.started_at.elapsed().as_secs(),
        pooling_allocator: d.host().engine().pooling(),
    })
}

/// Only `/metrics`, for `[metrics] listen`: a loopback TCP port Prometheus scrapes directly.
pub fn metrics_router(daemon: Arc<Daemon>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::not_found("only /metrics is served here") })
        .with_state(daemon)
}

/// Label values escaped as the Prometheus text format wants them.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

async fn metrics(State(d): State<Arc<Daemon>>) -> Result<Response, ApiError> {
    let counts = d.store.counts()?;
    let mut text = String::new();
    text.push_str(&format!(
        "# HELP gantry_build_info The running gantry's version.\n# TYPE gantry_build_info gauge\ngantry_build_info{{version=\"{}\"}} 1\n",
        env!("CARGO_PKG_VERSION")
    ));
    text.push_str("# HELP gantry_workflow_runs_total Runs by workflow and state.\n# TYPE gantry_workflow_runs_total counter\n");
    for (workflow, state, n) in &counts.workflow_runs {
        text.push_str(&format!(
            "gantry_workflow_runs_total{{workflow=\"{}\",state=\"{state}\"}} {n}\n",
            label(workflow)
        ));
    }
    text.push_str("# HELP gantry_workflow_last_success_timestamp_seconds When the workflow's last successful run ended.\n# TYPE gantry_workflow_last_success_timestamp_seconds gauge\n");
    for (workflow, at) in &counts.last_success {
        text.push_str(&format!(
            "gantry_workflow_last_success_timestamp_seconds{{workflow=\"{}\"}} {}\n",
            label(workflow),
            *at as f64 / 1000.0
        ));
    }
    text.push_str(
        "# HELP gantry_runs_total Runs by final state.\n# TYPE gantry_runs_total counter\n",
    );
    for (state, n) in &counts.runs {
        text.push_str(&format!("gantry_runs_total{{state=\"{state}\"}} {n}\n"));
    }
    text.push_str("# HELP gantry_tasks_total Tasks by state.\n# TYPE gantry_tasks_total counter\n");
    for (state, n) in &counts.tasks {
        text.push_str(&format!("gantry_tasks_total{{state=\"{state}\"}} {n}\n"));
    }
    text.push_str(&format!(
        "# HELP gantry_runs_running Runs in flight.\n# TYPE gantry_runs_running gauge\ngantry_runs_running {}\n",
        d.runs.running().len()
    ));
    text.push_str(&format!(
        "# HELP gantry_runs_queued Runs waiting for a workflow another run is deploying.\n# TYPE gantry_runs_queued gauge\ngantry_runs_queued {}\n",
        d.runs.queued()
    ));
    text.push_str(&format!(
        "# HELP gantry_config_reloads_total Configuration reloads by result.\n# TYPE gantry_config_reloads_total counter\ngantry_config_reloads_total{{result=\"success\"}} {}\ngantry_config_reloads_total{{result=\"failure\"}} {}\n",
        d.reloads_ok.load(std::sync::atomic::Ordering::Relaxed),
        d.reloads_failed.load(std::sync::atomic::Ordering::Relaxed)
    ));
    text.push_str(&format!(
        "# HELP gantry_config_last_reload_success Whether the last reload succeeded.\n# TYPE gantry_config_last_reload_success gauge\ngantry_config_last_reload_success {}\n",
        u8::from(d.last_reload().ok)
    ));
    d.runs.metrics.render(&mut text);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}
