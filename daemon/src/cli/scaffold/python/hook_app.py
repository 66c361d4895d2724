"""{{name}}: a gantry hook, run around tasks as `hooks.pre_deploy = [{ kind = "{{name}}" }]`.

Edit PARAMETERS, `decide` and the tests in test_app.py; build with ./build.sh.
"""

import wit_world
from wit_world.imports import types

import gantry_plugin as g

PARAMETERS = [
    g.param("allow", "bool", "false skips the task", default="true"),
    g.param("reason", "string", "why the task is skipped", default='"not allowed"'),
]


def decide(ctx: types.HookContext) -> types.HookDecision:
    """The hook's logic: pure, so the tests can call it natively."""
    p = g.params(ctx)
    if p.get("allow", True):
        g.info("proceeding", task=ctx.task)
        return g.proceed()
    return g.skip(p.get("reason", "not allowed"))


class WitWorld(wit_world.WitWorld):
    def describe(self) -> types.PluginInfo:
        return g.plugin_info(
            "{{name}}", ["{{name}}"], "{{name}} hook", parameters=PARAMETERS
        )

    def validate(self, ctx: types.ValidateContext) -> list:
        return g.check_params(ctx.params, PARAMETERS)

    def on_phase(self, ctx: types.HookContext) -> types.HookDecision:
        try:
            return decide(ctx)
        except g.InvalidParams as e:
            return g.fail(e.message)
        except Exception as e:  # a bug must fail the task with its message, not trap
            return g.fail(f"{{name}}: {type(e).__name__}: {e}")
