"""How a training run reports back: log lines and per-step metrics.

Training functions take a :class:`Reporter` so they stay independent of where the job runs:
the job worker writes to the lake (``jobs/<id>/log.txt`` and ``metrics.jsonl``), tests collect
in memory.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Protocol


class Reporter(Protocol):
    def log(self, message: str) -> None:
        """One human-readable log line."""

    def metric(self, step: int, **values: float) -> None:
        """Metrics at a training step (loss, learning_rate, eval_* ...)."""


class MemoryReporter:
    """Collects logs and metrics in lists (tests, notebooks)."""

    def __init__(self, echo: bool = False) -> None:
        self.lines: list[str] = []
        self.metrics: list[dict[str, Any]] = []
        self.echo = echo

    def log(self, message: str) -> None:
        self.lines.append(message)
        if self.echo:
            print(message, flush=True)

    def metric(self, step: int, **values: float) -> None:
        self.metrics.append({"step": step, **values})


class FileReporter:
    """Appends to ``log.txt`` and ``metrics.jsonl`` in a local job folder (synced to the lake)."""

    def __init__(self, folder: Path, echo: bool = True) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.echo = echo

    def log(self, message: str) -> None:
        line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n"
        with (self.folder / "log.txt").open("a", encoding="utf-8") as fh:
            fh.write(line)
        if self.echo:
            print(line, end="", flush=True)

    def metric(self, step: int, **values: float) -> None:
        with (self.folder / "metrics.jsonl").open("a", encoding="utf-8") as fh:
            fh.write(json.dumps({"step": step, "time": time.time(), **values}) + "\n")


class NullReporter:
    """Discards everything: the reporter of the non-main processes of a data-parallel job, whose logs and
    metrics would otherwise appear once per process."""

    def log(self, message: str) -> None:
        pass

    def metric(self, step: int, **values: float) -> None:
        pass
