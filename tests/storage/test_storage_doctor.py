"""``domainrag doctor`` on a local workspace: table, results and exit code."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from typer.testing import CliRunner

from domainrag.cli.doctor import doctor
from domainrag.storage.preflight import Failure
from domainrag.workspace import Workspace


def test_doctor_reports_each_location(tmp_path: Path) -> None:
    ws = Workspace.open(tmp_path / "ws")
    (tmp_path / "ws" / "raw" / "docs").mkdir(parents=True)
    (tmp_path / "ws" / "raw" / "docs" / "a.md").write_text("# a")
    ws.catalog.put("dataset", "docs", {"uri": ws.lake.url("raw/docs"), "files": 1})
    ws.catalog.put("dataset", "lost", {"uri": str(tmp_path / "elsewhere"), "files": 3})
    console = Console(record=True, width=200)
    results = doctor(ws, console=console)
    by_url = {(r.operation, r.url): r for r in results}
    lake = ws.settings.lake
    assert by_url[("list", lake)].ok and by_url[("write", lake)].ok
    assert by_url[("read", ws.lake.url("raw/docs"))].ok
    lost = by_url[("read", str(tmp_path / "elsewhere"))]
    assert (lost.ok, lost.cause) == (False, Failure.NOT_FOUND)
    text = console.export_text()
    assert "storage checks" in text and "not found" in text and "1 of 4 checks failed" in text


def test_doctor_command_exit_code(tmp_path: Path, cli_for) -> None:
    ws = Workspace.open(tmp_path / "ws")
    cli = cli_for(ws)
    runner = CliRunner(env={"COLUMNS": "250"})
    ws.catalog.put("model", "remote", {"version": 1, "kind": "llm", "key": None, "format": "remote",
                                       "uri": "http://127.0.0.1:9/v1"})  # a server's URL, not a lake folder
    ok = runner.invoke(cli, ["doctor"])
    assert ok.exit_code == 0, ok.output
    assert "all 2 checks passed" in ok.output

    ws.catalog.put("model", "m", {"version": 1, "kind": "llm", "key": "models/m/1",
                                  "uri": ws.lake.url("models/m/1")})
    bad = runner.invoke(cli, ["doctor"])
    assert bad.exit_code == 1
    assert "manifest.json" in bad.output and "not found" in bad.output

    invalid = runner.invoke(cli, ["doctor", "--storage-options", "{not json"])
    assert invalid.exit_code != 0
