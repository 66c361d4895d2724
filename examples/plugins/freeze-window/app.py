"""freeze-window: a gantry hook that skips or fails deploys inside configured time windows.

    [services.web]
    kind = "manifest"
    path = "k8s/web"
    hooks.pre_deploy = [{ kind = "freeze-window", action = "skip", windows = [
      { from = "2026-12-20T00:00:00Z", until = "2027-01-04T08:00:00Z", reason = "holidays" },
      { days = ["fri"], from = "16:00", until = "24:00", reason = "no Friday afternoon deploys" },
    ] }]

It decides before a deploy (`pre_deploy`) and before a cleanup (`pre_destroy`); in other
phases it lets things proceed.
"""

from datetime import datetime, timezone

import wit_world
from wit_world.imports import types

import freeze
import gantry_plugin as g

PARAMETERS = [
    g.param(
        "windows",
        "list<table>",
        "{ from, until, reason }: RFC 3339 instants, or times of day with optional `days`",
        required=True,
    ),
    g.param("action", "string", "skip or fail the task inside a window", default='"fail"'),
    g.param("utc_offset", "string", "the zone of times of day", default='"+00:00"'),
]

GUARDED = (types.Phase.PRE_DEPLOY, types.Phase.PRE_DESTROY)


def decide(ctx: types.HookContext, now: datetime) -> types.HookDecision:
    if ctx.phase not in GUARDED:
        return g.proceed()
    try:
        found = freeze.verdict(freeze.parse(g.params(ctx)), now)
    except (freeze.ConfigError, g.InvalidParams) as e:
        return g.fail(f"freeze-window: {e.field}: {e.message}" if e.field else e.message)
    if found is None:
        g.debug("no freeze window now", task=ctx.task)
        return g.proceed()
    action, reason = found
    g.info(reason, task=ctx.task, action=action)
    return g.skip(reason) if action == "skip" else g.fail(reason)


class WitWorld(wit_world.WitWorld):
    def describe(self) -> types.PluginInfo:
        return g.plugin_info(
            "freeze-window",
            ["freeze-window"],
            "Skips or fails deploys inside configured freeze windows",
            version="1.0.0",
            parameters=PARAMETERS,
        )

    def validate(self, ctx: types.ValidateContext) -> list:
        issues = g.check_params(ctx.params, PARAMETERS)
        if issues:
            return issues
        try:
            freeze.parse(g.params(ctx))
        except (freeze.ConfigError, g.InvalidParams) as e:
            return [g.issue(e.field, e.message)]
        return []

    def on_phase(self, ctx: types.HookContext) -> types.HookDecision:
        try:
            return decide(ctx, datetime.now(timezone.utc))
        except Exception as e:  # a bug must fail the task with its message, not trap
            return g.fail(f"freeze-window: {type(e).__name__}: {e}")
