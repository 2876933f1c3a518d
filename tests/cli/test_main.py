"""The assembled CLI: every command is reachable, its help is plain text, user errors exit 2 without a traceback."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from domainrag.cli import main

TIMING = re.compile(r"\b\d+(\.\d+)?\s*(s|ms|sec|seconds|minutes|min)\b|\bthis machine\b|\b\d+-core\b", re.IGNORECASE)


def _commands(group: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for name, cmd in group.commands.items():
        out.append((*prefix, name))
        if hasattr(cmd, "commands"):
            out.extend(_commands(cmd, (*prefix, name)))
    return out


def test_every_group_and_command_is_assembled() -> None:
    commands = set(_commands(typer.main.get_command(main.app)))  # type: ignore[arg-type]
    assert {("dataset", "upload"), ("job", "create"), ("model", "deploy"), ("model", "undeploy"), ("index", "create"),
            ("ingest",), ("app", "invoke"), ("key", "revoke"), ("eval", "retrieval"), ("eval", "render"),
            ("serve",), ("doctor",), ("quickstart",)} <= commands


def test_help_is_plain_text() -> None:
    runner = CliRunner(env={"COLUMNS": "200"})
    paths = [(), *_commands(typer.main.get_command(main.app))]  # type: ignore[arg-type]
    for path in paths:
        res = runner.invoke(main.app, [*path, "--help"])
        assert res.exit_code == 0, (path, res.output)
        assert "``" not in res.output and "╭" not in res.output, path  # no reST markup, no rich panels
        assert not TIMING.search(res.output), (path, TIMING.search(res.output))
    config_help = runner.invoke(main.app, ["eval", "retrieval", "--help"]).output
    # square brackets are not eaten as markup (the long grammar may be wrapped mid-word, so join the lines)
    assert "MODE[:EMBEDDING_MODEL][@INDEX]" in "".join(config_help.split())


def test_every_option_and_argument_has_a_description() -> None:
    """Walk the click command tree: each parameter of each command says what it is for, in plain text."""
    tree = typer.main.get_command(main.app)  # type: ignore[arg-type]
    missing = []
    for path in [(), *_commands(tree)]:
        cmd: Any = tree
        for name in path:
            cmd = cmd.commands[name]
        assert (cmd.help or "").strip(), path
        for param in cmd.params:
            text = getattr(param, "help", None) or ""
            if not text.strip():
                missing.append(f"{' '.join(path)} {param.opts[0]}")
            assert "``" not in text and "`" not in text, (path, param.name, text)
        assert "`" not in (cmd.help or ""), path  # quotes, not reST or Markdown code marks
    assert not missing, missing


def test_user_error_exits_2_with_a_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "argv", ["domainrag", "-w", str(tmp_path / "ws"), "app", "create", "--name", "a",
                                      "--model", "m", "--retrieval", "{not json"])
    with pytest.raises(SystemExit) as exc:
        main.main()
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--retrieval is not valid JSON" in err and "Traceback" not in err


def test_validation_error_names_the_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "argv", ["domainrag", "-w", str(tmp_path / "ws"), "app", "create", "--name", "a",
                                      "--model", "m", "--retrieval", '{"top_k": "many"}'])
    with pytest.raises(SystemExit) as exc:
        main.main()
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "invalid input" in err and "retrieval.top_k" in err
