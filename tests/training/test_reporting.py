"""Reporters: in memory for tests, files in the job folder for the worker."""

from __future__ import annotations

import json
from pathlib import Path

from domainrag.training.reporting import FileReporter, MemoryReporter


def test_memory_reporter_collects_lines_and_metrics() -> None:
    r = MemoryReporter()
    r.log("hello")
    r.metric(3, loss=0.5)
    assert r.lines == ["hello"] and r.metrics == [{"step": 3, "loss": 0.5}]


def test_file_reporter_appends_log_lines_and_metric_rows(tmp_path: Path) -> None:
    r = FileReporter(tmp_path / "job", echo=False)
    r.log("first")
    r.log("second")
    r.metric(1, loss=2.0)
    r.metric(2, loss=1.5, eval_loss=1.7)
    lines = (tmp_path / "job" / "log.txt").read_text().splitlines()
    assert [line.split(" ", 2)[2] for line in lines] == ["first", "second"]  # after the date and time
    rows = [json.loads(x) for x in (tmp_path / "job" / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["loss"]) for r in rows] == [(1, 2.0), (2, 1.5)] and rows[1]["eval_loss"] == 1.7
    assert all(isinstance(r["time"], float) for r in rows)
