"""Native unit tests: ./test.sh."""

import unittest
from datetime import datetime, timezone

import freeze
import gantry_plugin as g
from app import WitWorld, decide
from wit_world.imports import types

HOLIDAYS = {"from": "2026-12-20T00:00:00Z", "until": "2027-01-04T08:00:00Z", "reason": "holidays"}
FRIDAY = {"days": ["fri"], "from": "16:00", "until": "24:00", "reason": "no Friday afternoon deploys"}
NIGHT = {"days": ["mon"], "from": "22:00", "until": "06:00", "reason": "maintenance"}


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def ctx(params, phase=types.Phase.PRE_DEPLOY):
    return g.hook_context("freeze-window", params, phase=phase, task="services.web")


class WindowTest(unittest.TestCase):
    def frozen(self, params, now):
        return freeze.verdict(freeze.parse(params), at(now))

    def test_absolute_windows_include_their_start_and_exclude_their_end(self):
        p = {"windows": [HOLIDAYS]}
        self.assertIsNone(self.frozen(p, "2026-12-19T23:59:59Z"))
        self.assertEqual(self.frozen(p, "2026-12-20T00:00:00Z")[0], "fail")
        self.assertIn("until 2027-01-04T08:00:00+00:00", self.frozen(p, "2027-01-01T12:00:00Z")[1])
        self.assertIsNone(self.frozen(p, "2027-01-04T08:00:00Z"))

    def test_weekly_windows_follow_the_configured_offset(self):
        p = {"windows": [FRIDAY], "utc_offset": "+02:00"}
        # 2026-11-27 is a Friday: 14:30 UTC is 16:30 at +02:00.
        self.assertIsNotNone(self.frozen(p, "2026-11-27T14:30:00Z"))
        self.assertIsNone(self.frozen(p, "2026-11-27T13:30:00Z"))
        self.assertIsNone(self.frozen(p, "2026-11-28T14:30:00Z"))

    def test_a_window_past_midnight_reaches_into_the_next_morning(self):
        p = {"windows": [NIGHT]}
        self.assertIsNotNone(self.frozen(p, "2026-11-23T23:00:00Z"))  # Monday night
        self.assertIsNotNone(self.frozen(p, "2026-11-24T05:59:00Z"))  # Tuesday morning
        self.assertIsNone(self.frozen(p, "2026-11-24T06:00:00Z"))
        self.assertIsNone(self.frozen(p, "2026-11-23T05:00:00Z"))  # Monday morning

    def test_bad_parameters_name_their_field(self):
        cases = [
            ({}, "windows"),
            ({"windows": [HOLIDAYS], "action": "warn"}, "action"),
            ({"windows": [HOLIDAYS], "utc_offset": "CET"}, "utc_offset"),
            ({"windows": [dict(HOLIDAYS, until="2026-12-01T00:00:00Z")]}, "windows[0].until"),
            ({"windows": [dict(FRIDAY, days=["friday"])]}, "windows[0].days"),
            ({"windows": [dict(FRIDAY, until="25:00")]}, "windows[0].until"),
            ({"windows": [dict(FRIDAY, note="x")]}, "windows[0].note"),
            ({"windows": [{"from": "2026-12-20T00:00:00", "until": "2026-12-21T00:00:00Z", "reason": "x"}]}, "windows[0].from"),
        ]
        for params, field in cases:
            with self.subTest(field=field):
                with self.assertRaises(freeze.ConfigError) as e:
                    freeze.parse(params)
                self.assertEqual(e.exception.field, field)


class HookTest(unittest.TestCase):
    def test_inside_a_window_the_task_is_skipped_or_failed_with_the_reason(self):
        now = at("2026-12-24T10:00:00Z")
        with g.capture_logs() as logs:
            decision = decide(ctx({"windows": [HOLIDAYS], "action": "skip"}), now)
        self.assertIsInstance(decision, types.HookDecision_Skip)
        self.assertIn("holidays", decision.value)
        self.assertEqual(logs[0][2]["action"], "skip")
        decision = decide(ctx({"windows": [HOLIDAYS]}), now)
        self.assertIsInstance(decision, types.HookDecision_Fail)

    def test_outside_windows_and_after_deploys_it_proceeds(self):
        self.assertEqual(decide(ctx({"windows": [HOLIDAYS]}), at("2026-11-24T10:00:00Z")), g.proceed())
        post = ctx({"windows": [HOLIDAYS]}, phase=types.Phase.POST_DEPLOY)
        self.assertEqual(decide(post, at("2026-12-24T10:00:00Z")), g.proceed())

    def test_broken_parameters_fail_the_task_and_fail_validation(self):
        decision = decide(ctx({"windows": []}), at("2026-11-24T10:00:00Z"))
        self.assertIsInstance(decision, types.HookDecision_Fail)
        issues = WitWorld().validate(g.validate_context("freeze-window", {"windows": [dict(FRIDAY, days=["x"])]}))
        self.assertEqual([i.field for i in issues], ["windows[0].days"])
        issues = WitWorld().validate(g.validate_context("freeze-window", {"window": []}))
        self.assertEqual(sorted(i.field for i in issues), ["window", "windows"])

    def test_describe_declares_every_parameter(self):
        info = WitWorld().describe()
        self.assertEqual(info.kinds, ["freeze-window"])
        self.assertEqual([p.name for p in info.parameters], ["windows", "action", "utc_offset"])


if __name__ == "__main__":
    unittest.main()
