"""Native unit tests: ./test.sh (generates the bindings, then runs unittest)."""

import unittest

import gantry_plugin as g
from app import PARAMETERS, WitWorld, decide
from wit_world.imports import types


class HookTest(unittest.TestCase):
    def test_allowed_tasks_proceed_and_others_are_skipped_with_the_reason(self):
        with g.capture_logs() as logs:
            self.assertEqual(decide(g.hook_context("{{name}}", {})), g.proceed())
        self.assertEqual(logs[0][:2], ("info", "proceeding"))
        decision = decide(g.hook_context("{{name}}", {"allow": False, "reason": "frozen"}))
        self.assertEqual(decision, types.HookDecision_Skip("frozen"))

    def test_validation_names_the_wrong_parameter(self):
        issues = WitWorld().validate(g.validate_context("{{name}}", {"allow": "yes", "alow": 1}))
        self.assertEqual(sorted(i.field for i in issues), ["allow", "alow"])
        self.assertEqual(g.check_params('{"allow": false}', PARAMETERS), [])


if __name__ == "__main__":
    unittest.main()
