"""How values are shown to people in reports and the CLI: durations, and settings without JSON syntax."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def format_duration(seconds: float | None) -> str:
    """Seconds as a duration a person reads at a glance: 0.4s, 42s, 1m 23s, 2h 05m ("-" for None)."""
    if seconds is None:
        return "-"
    s = round(seconds)
    if s < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {s % 3600 // 60:02d}m"


def plain(value: Any) -> str:
    """A setting as text: strings bare (no JSON quotes), mappings as "key: value, ...", lists comma-separated,
    None as empty."""
    if value is None:
        return ""
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {plain(v)}" for k, v in value.items() if v is not None)
    if isinstance(value, (list, tuple)):
        return ", ".join(plain(v) for v in value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
