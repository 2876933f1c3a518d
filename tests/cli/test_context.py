"""Shared CLI helpers: the workspace handle, tables, JSON options."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from domainrag.cli import _context
from domainrag.errors import DomainRagError
from domainrag.workspace import Workspace


def test_workspace_opens_once_from_the_configured_folder(tmp_path: Path) -> None:
    handle = _context.WorkspaceHandle()
    handle.configure(tmp_path / "a")
    first = handle.get()
    assert handle.get() is first and first.settings.workspace == tmp_path / "a"
    handle.configure(tmp_path / "a")  # same folder: same workspace
    assert handle.get() is first
    handle.configure(tmp_path / "b")
    assert handle.get().settings.workspace == tmp_path / "b"


def test_use_keeps_an_opened_workspace_until_reset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOMAINRAG_HOME", str(tmp_path / "default"))
    ws = Workspace.open(tmp_path / "given")
    handle = _context.WorkspaceHandle()
    handle.use(ws)
    handle.configure(None)  # the root callback without --workspace
    assert handle.get() is ws
    handle.reset()
    assert handle.get().settings.workspace == tmp_path / "default"


def test_print_table_formats_cells(monkeypatch: pytest.MonkeyPatch) -> None:
    console = Console(record=True, width=200)
    monkeypatch.setattr(_context, "console", console)
    _context.print_table([{"name": "a", "created_at": 1.7e9, "spec": {"k": 1}}], ["name", "created_at", "spec", "x"],
                         "things")
    text = console.export_text()
    assert "things" in text and '{"k": 1}' in text and "2023-11-1" in text and " - " in text


def test_load_json_names_the_option() -> None:
    assert _context.load_json('{"a": 1}', "--x") == {"a": 1}
    with pytest.raises(DomainRagError, match=r"--retrieval is not valid JSON: .* \(column 2\)"):
        _context.load_json("{a", "--retrieval")
    assert _context.store_option("embedded") == "embedded"
    assert _context.store_option(' {"type": "opensearch"}') == {"type": "opensearch"}


def test_cli_group_prints_errors_with_their_exit_status() -> None:
    import typer
    from typer.testing import CliRunner

    cli = typer.Typer(cls=_context.CliGroup)

    @cli.command("fail")
    def fail(kind: str) -> None:
        if kind == "option":
            raise _context.OptionError("--x [a] is not valid", hint="use --x b")
        if kind == "os":
            raise FileNotFoundError("[Errno 2] No such file: 'weights.bin'\nlong library detail")
        if kind == "exit":
            raise typer.Exit(3)
        raise DomainRagError("index 'kb' [embedded] not found")

    @cli.command("ok")
    def ok() -> None:
        pass

    runner = CliRunner()
    usage = runner.invoke(cli, ["fail", "option"])
    assert usage.exit_code == 2 and usage.output == "error: --x [a] is not valid\nhint: use --x b\n"  # [a] kept
    failed = runner.invoke(cli, ["fail", "other"])
    assert failed.exit_code == 1 and failed.output == "error: index 'kb' [embedded] not found\n"
    oserror = runner.invoke(cli, ["fail", "os"])
    assert oserror.exit_code == 1
    assert oserror.output == "error: FileNotFoundError: [Errno 2] No such file: 'weights.bin'\n"  # one line
    assert runner.invoke(cli, ["nope"]).exit_code == 2  # click's own usage error
    assert runner.invoke(cli, ["fail", "exit"]).exit_code == 3  # a command's own exit status passes through


def test_an_unexplained_exception_is_one_line_unless_the_traceback_is_asked_for(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import typer
    from typer.testing import CliRunner

    cli = typer.Typer(cls=_context.CliGroup)

    @cli.command("fail")
    def fail() -> None:
        raise ValueError("Failed to load model from file: x.gguf\nlibrary detail")

    @cli.command("ok")
    def ok() -> None:
        pass

    monkeypatch.delenv(_context.TRACEBACK_ENV, raising=False)
    result = CliRunner().invoke(cli, ["fail"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.startswith("error: unexpected ValueError: Failed to load model from file: x.gguf\nhint:")
    assert "library detail" not in result.output and _context.TRACEBACK_ENV in result.output
    monkeypatch.setenv(_context.TRACEBACK_ENV, "0")
    assert CliRunner().invoke(cli, ["fail"]).exit_code == 1  # 0 means off
    monkeypatch.setenv(_context.TRACEBACK_ENV, "1")
    shown = CliRunner().invoke(cli, ["fail"])
    assert isinstance(shown.exception, ValueError)  # raised on, so Python prints where it happened
