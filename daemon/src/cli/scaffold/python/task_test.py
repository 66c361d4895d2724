"""Native unit tests: ./test.sh (generates the bindings, then runs unittest)."""

import unittest

import gantry_plugin as g
from app import WitWorld


class TaskTest(unittest.TestCase):
    def test_apply_greets_and_returns_the_greeting_as_an_output(self):
        with g.capture_logs() as logs:
            d = WitWorld().apply(g.task_context("{{name}}", {"name": "ops", "shout": True}))
        self.assertEqual([(o.key, o.value) for o in d.outputs], [("greeting", "HELLO, OPS")])
        self.assertEqual(logs[0][1], "HELLO, OPS")

    def test_validation_names_the_missing_parameter(self):
        issues = WitWorld().validate(g.validate_context("{{name}}", {}))
        self.assertEqual([i.field for i in issues], ["name"])


if __name__ == "__main__":
    unittest.main()
