"""gantry_plugin: what the Rust SDK does for Rust plugins, for plugins written in Python.

A gantry plugin is a WebAssembly component implementing the `gantry:plugin@2.0.0` contract
(`wit/v2/gantry.wit`). `componentize-py` turns a Python module defining `class WitWorld`
into such a component; this module keeps that class short:

- `plugin_info`, `param` and `exec_capability` / `KUBE` / `WORKSPACE` describe the plugin;
- `params` reads a call's parameters (a JSON object) and `check_params` validates them
  against the declared `param` specs, one issue per problem;
- `debug` / `info` / `warn` / `error` write to the task's log with structured fields;
- `proceed` / `skip` / `fail` are a hook's decisions; `deployment` and `output` are what a
  task returns; `invalid_config` and `internal` are the errors a task raises;
- `capture_logs`, `hook_context`, `task_context` and `validate_context` run the plugin's
  logic natively in unit tests, with the bindings `componentize-py bindings` generates.
"""

import contextlib
import json
import sys
from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

from componentize_py_types import Err
from wit_world.imports import types
from wit_world.imports import log as _log

# Where log lines go: the host's `log` import inside the component, a list while
# `capture_logs` is active, standard error when run natively otherwise.
_captured: Optional[List[Tuple[str, str, Dict[str, str]]]] = None
try:
    import componentize_py_runtime  # noqa: F401  (present only inside the component)

    _NATIVE = False
except ImportError:
    _NATIVE = True

KUBE = types.Capability_Kube()
WORKSPACE = types.Capability_Workspace()


def exec_capability(program: str) -> types.Capability:
    """Asks to run `program` (the operator must grant it under `exec` too)."""
    return types.Capability_Exec(program)


def param(
    name: str,
    type_hint: str,
    description: str,
    required: bool = False,
    default: Optional[str] = None,
) -> types.ParamSpec:
    """One parameter for `describe`: `type_hint` is one of "string", "bool", "int",
    "float", "list<string>", "list<table>", "table" (what `check_params` checks), and
    `default` is written as it would be in TOML."""
    return types.ParamSpec(name, description, required, type_hint, default)


def plugin_info(
    name: str,
    kinds: Iterable[str],
    description: str,
    version: str = "0.1.0",
    parameters: Iterable[types.ParamSpec] = (),
    capabilities: Iterable[types.Capability] = (),
) -> types.PluginInfo:
    """What `describe` returns. Operators grant capabilities under `[plugins.NAME]`."""
    return types.PluginInfo(
        name, list(kinds), version, description, list(capabilities), list(parameters)
    )


class InvalidParams(Exception):
    """The parameters are not what the plugin declared; the message says how to fix them."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


def params(ctx: Any) -> Dict[str, Any]:
    """The parameters of a task, hook or validate context as a dict."""
    try:
        value = json.loads(ctx.params)
    except ValueError as e:
        raise InvalidParams("", f"parameters are not a JSON object: {e}")
    if not isinstance(value, dict):
        raise InvalidParams("", "parameters are not a table")
    return value


_CHECKS = {
    "string": lambda v: isinstance(v, str),
    "bool": lambda v: isinstance(v, bool),
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "table": lambda v: isinstance(v, dict),
    "list<string>": lambda v: isinstance(v, list) and all(isinstance(i, str) for i in v),
    "list<table>": lambda v: isinstance(v, list) and all(isinstance(i, dict) for i in v),
}


def check_params(raw: str, specs: Iterable[types.ParamSpec]) -> List[types.ValidationIssue]:
    """Validates parameters (JSON text) against `specs`: unknown keys, missing required
    ones and values of the wrong type, one issue each. Type hints it does not know
    ("duration", ...) are left to the plugin."""
    specs = list(specs)
    try:
        value = json.loads(raw)
    except ValueError as e:
        return [issue("", f"parameters are not a JSON object: {e}")]
    if not isinstance(value, dict):
        return [issue("", "parameters are not a table")]
    known = {s.name: s for s in specs}
    issues = []
    for key in value:
        if key not in known:
            names = ", ".join(sorted(known)) or "none"
            issues.append(issue(key, f"unknown parameter `{key}` (expected one of: {names})"))
    for spec in specs:
        if spec.name not in value:
            if spec.required:
                issues.append(issue(spec.name, f"missing parameter `{spec.name}`"))
            continue
        check = _CHECKS.get(spec.type_hint)
        if check is not None and not check(value[spec.name]):
            issues.append(issue(spec.name, f"`{spec.name}` must be a {spec.type_hint}"))
    return issues


def issue(field: str, message: str) -> types.ValidationIssue:
    """A problem with one parameter (dotted path; empty for the whole table)."""
    return types.ValidationIssue(field, message, None)


def _emit(level: _log.Level, message: str, fields: Dict[str, Any]) -> None:
    pairs = [(str(k), str(v)) for k, v in fields.items()]
    if _captured is not None:
        _captured.append((level.name.lower(), message, dict(pairs)))
    elif _NATIVE:
        text = " ".join([message] + [f"{k}={v}" for k, v in pairs])
        print(f"{level.name.lower()}: {text}", file=sys.stderr)
    else:
        _log.log(level, message, pairs)


def debug(message: str, **fields: Any) -> None:
    _emit(_log.Level.DEBUG, message, fields)


def info(message: str, **fields: Any) -> None:
    _emit(_log.Level.INFO, message, fields)


def warn(message: str, **fields: Any) -> None:
    _emit(_log.Level.WARN, message, fields)


def error(message: str, **fields: Any) -> None:
    _emit(_log.Level.ERROR, message, fields)


def proceed() -> types.HookDecision:
    return types.HookDecision_Proceed()


def skip(reason: str) -> types.HookDecision:
    """The task is skipped (counts as done); the reason is recorded on the run."""
    return types.HookDecision_Skip(reason)


def fail(reason: str) -> types.HookDecision:
    return types.HookDecision_Fail(reason)


def output(key: str, value: str, sensitive: bool = False) -> types.Output:
    """A task output, referenced later as `${tasks.GROUP.NAME.outputs.KEY}`; a sensitive one
    reaches later tasks but people see `***`."""
    return types.Output(key, str(value), sensitive)


def deployment(
    outputs: Union[Dict[str, Any], Iterable[types.Output]] = (),
    inventory: Iterable[str] = (),
    state: Optional[str] = None,
) -> types.Deployment:
    """What `apply` returns: outputs (a dict or `output(...)`s), what was created, and
    opaque state handed back on the next call."""
    if isinstance(outputs, dict):
        outputs = [output(k, v) for k, v in outputs.items()]
    return types.Deployment(list(outputs), list(inventory), state)


def invalid_config(message: str) -> Err:
    """Raise it from a task export: `raise invalid_config("...")`."""
    return Err(types.TaskError_InvalidConfig(message))


def internal(message: str) -> Err:
    return Err(types.TaskError_Internal(message))


# Native test support.


@contextlib.contextmanager
def capture_logs():
    """Collects log lines as (level, message, fields) instead of sending them to the host."""
    global _captured
    previous, _captured = _captured, []
    try:
        yield _captured
    finally:
        _captured = previous


def hook_context(
    kind: str,
    params: Dict[str, Any],
    phase: types.Phase = types.Phase.PRE_DEPLOY,
    task: str = "jobs.test",
    outputs: Iterable[types.Output] = (),
    error: Optional[str] = None,
) -> types.HookContext:
    """A hook context as the host builds it."""
    return types.HookContext(
        phase, kind, "test-run", "test", task, "exec", json.dumps(params), list(outputs), error
    )


def task_context(kind: str, params: Dict[str, Any]) -> types.TaskContext:
    """A task context as the host builds it, without a previous deployment."""
    return types.TaskContext(
        "test-run", "test", "jobs.test", kind, json.dumps(params), "/src", "/scratch", None, None
    )


def validate_context(kind: str, params: Dict[str, Any]) -> types.ValidateContext:
    return types.ValidateContext(kind, json.dumps(params), None)
