"""Freeze windows: the times deploys must not happen, and why. Pure logic, no host calls,
so every rule is tested natively (test_freeze.py).

A window is either absolute, between two RFC 3339 instants:

    { from = "2026-12-20T00:00:00Z", until = "2027-01-04T08:00:00Z", reason = "holidays" }

or weekly, between two times of day on some days, in the zone `utc_offset`:

    { days = ["fri"], from = "16:00", until = "24:00", reason = "no Friday deploys" }

A weekly window whose `until` is before its `from` runs past midnight into the next day.
"""

from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone
from typing import Any, Dict, List, Optional, Tuple

DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
ACTIONS = ("skip", "fail")
WINDOW_KEYS = {"from", "until", "days", "reason"}


class ConfigError(Exception):
    """Parameters that cannot describe a freeze; `field` is the dotted path at fault."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass
class Window:
    reason: str
    # Absolute windows.
    start: Optional[datetime] = None
    end: Optional[datetime] = None
    # Weekly windows: minutes since midnight, and weekday numbers (Monday is 0).
    days: Tuple[int, ...] = ()
    start_minute: int = 0
    end_minute: int = 0

    def contains(self, now: datetime) -> bool:
        if self.start is not None and self.end is not None:
            return self.start <= now < self.end
        minute = now.hour * 60 + now.minute
        today, yesterday = now.weekday(), (now.weekday() - 1) % 7
        if self.start_minute < self.end_minute:
            return today in self.days and self.start_minute <= minute < self.end_minute
        # Past midnight: the evening part belongs to the listed day, the morning part
        # to the day after it.
        return (today in self.days and minute >= self.start_minute) or (
            yesterday in self.days and minute < self.end_minute
        )

    def until_text(self) -> str:
        if self.end is not None:
            return f" until {self.end.isoformat()}"
        return ""


@dataclass
class Freeze:
    windows: List[Window]
    action: str
    offset: timezone

    def active(self, now: datetime) -> Optional[Window]:
        """The first window `now` falls in, if any; `now` must carry a time zone."""
        local = now.astimezone(self.offset)
        return next((w for w in self.windows if w.contains(local)), None)


def parse_offset(text: str) -> timezone:
    sign = {"+": 1, "-": -1}.get(text[:1])
    try:
        hours, minutes = text[1:].split(":")
        delta = timedelta(hours=int(hours), minutes=int(minutes))
    except ValueError:
        sign = None
    if sign is None or delta > timedelta(hours=14):
        raise ConfigError("utc_offset", f"`{text}` is not a UTC offset; write e.g. \"+01:00\"")
    return timezone(sign * delta)


def parse_minute(field: str, text: Any) -> int:
    if isinstance(text, str) and text == "24:00":
        return 24 * 60
    try:
        t = time.fromisoformat(text)
    except (TypeError, ValueError):
        raise ConfigError(field, f"`{text}` is not a time of day; write e.g. \"16:00\"")
    return t.hour * 60 + t.minute


def parse_instant(field: str, text: Any) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        value = None
    if value is None or value.tzinfo is None:
        raise ConfigError(
            field, f"`{text}` is not an instant with a zone; write e.g. \"2026-12-20T00:00:00Z\""
        )
    return value


def parse_window(i: int, w: Any) -> Window:
    at = f"windows[{i}]"
    if not isinstance(w, dict):
        raise ConfigError(at, "a window is a table: { from = ..., until = ..., reason = ... }")
    unknown = sorted(set(w) - WINDOW_KEYS)
    if unknown:
        raise ConfigError(f"{at}.{unknown[0]}", f"unknown key `{unknown[0]}` (expected from, until, days, reason)")
    for key in ("from", "until", "reason"):
        if not isinstance(w.get(key), str) or not w[key]:
            raise ConfigError(f"{at}.{key}", f"`{key}` is required and must be a string")
    absolute = "T" in w["from"] or "T" in w["until"]
    if absolute:
        if "days" in w:
            raise ConfigError(f"{at}.days", "`days` goes with times of day, not with dates")
        start = parse_instant(f"{at}.from", w["from"])
        end = parse_instant(f"{at}.until", w["until"])
        if end <= start:
            raise ConfigError(f"{at}.until", "`until` must be after `from`")
        return Window(w["reason"], start=start, end=end)
    days = w.get("days", DAYS)
    if not isinstance(days, list) or not days or any(d not in DAYS for d in days):
        raise ConfigError(f"{at}.days", f"`days` lists some of {', '.join(DAYS)}")
    start = parse_minute(f"{at}.from", w["from"])
    end = parse_minute(f"{at}.until", w["until"])
    if start == end or start == 24 * 60:
        raise ConfigError(f"{at}.until", "the window is empty: `from` and `until` are the same time")
    return Window(w["reason"], days=tuple(DAYS.index(d) for d in days), start_minute=start, end_minute=end)


def parse(params: Dict[str, Any]) -> Freeze:
    """The freeze the parameters describe; ConfigError names the first problem."""
    windows = params.get("windows")
    if not isinstance(windows, list) or not windows:
        raise ConfigError("windows", "`windows` is required: a list of { from, until, reason } tables")
    action = params.get("action", "fail")
    if action not in ACTIONS:
        raise ConfigError("action", f"`action` is \"skip\" or \"fail\", not `{action}`")
    offset = parse_offset(params.get("utc_offset", "+00:00"))
    return Freeze([parse_window(i, w) for i, w in enumerate(windows)], action, offset)


def verdict(freeze: Freeze, now: datetime) -> Optional[Tuple[str, str]]:
    """("skip" or "fail", reason) when `now` is frozen; None when deploys may go on."""
    window = freeze.active(now)
    if window is None:
        return None
    return freeze.action, f"freeze window: {window.reason}{window.until_text()}"
