"""{{name}}: a gantry task kind, used in a workflow as `kind = "{{name}}"`.

Edit PARAMETERS, `apply` and the tests in test_app.py; build with ./build.sh.
"""

import wit_world
from wit_world.imports import types

import gantry_plugin as g

PARAMETERS = [
    g.param("name", "string", "who to greet", required=True),
    g.param("shout", "bool", "greet in capitals", default="false"),
]


def greet(p: dict) -> str:
    """The task's logic: pure, so the tests can call it natively."""
    text = f"hello, {p['name']}"
    return text.upper() if p.get("shout", False) else text


class WitWorld(wit_world.WitWorld):
    def describe(self) -> types.PluginInfo:
        return g.plugin_info("{{name}}", ["{{name}}"], "{{name}} task", parameters=PARAMETERS)

    def validate(self, ctx: types.ValidateContext) -> list:
        return g.check_params(ctx.params, PARAMETERS)

    def plan(self, ctx: types.TaskContext) -> list:
        return []

    def apply(self, ctx: types.TaskContext) -> types.Deployment:
        problems = g.check_params(ctx.params, PARAMETERS)
        if problems:
            raise g.invalid_config(problems[0].message)
        greeting = greet(g.params(ctx))
        g.info(greeting, task=ctx.task)
        return g.deployment({"greeting": greeting})

    def rollback(self, ctx: types.TaskContext) -> types.RollbackOutcome:
        return types.RollbackOutcome_Unsupported("{{name}} has nothing to roll back")

    def destroy(self, ctx: types.TaskContext) -> None:
        return None
