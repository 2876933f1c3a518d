"""domainrag key: per-key limits set at creation and changed later, shown by key list; serve's log setup."""

from __future__ import annotations

import logging.config
from pathlib import Path

from typer.testing import CliRunner

from domainrag.cli import main
from domainrag.cli.serve import log_config


def test_key_limits_are_stored_listed_and_changed(isolated_workspace: Path) -> None:
    from domainrag.serving.keys import verify_key
    from domainrag.workspace import Workspace

    runner = CliRunner(env={"COLUMNS": "200"})
    created = runner.invoke(main.app, ["key", "create", "--app", "*", "--rpm", "30", "--max-streams", "2"])
    assert created.exit_code == 0, created.output
    assert "(rpm 30, max streams 2)" in created.output
    token = created.output.strip().splitlines()[-1]
    ws = Workspace.open(isolated_workspace)
    key = verify_key(ws, token)
    assert key is not None and (key.rpm, key.max_streams) == (30, 2)

    listed = runner.invoke(main.app, ["key", "list"])
    assert listed.exit_code == 0 and "30" in listed.output and key.id in listed.output

    changed = runner.invoke(main.app, ["key", "limits", key.id, "--rpm", "0"])
    assert changed.exit_code == 0, changed.output
    key = verify_key(ws, token)
    assert key is not None and (key.rpm, key.max_streams) == (0, None)  # 0: unlimited; left out: server default
    listed = runner.invoke(main.app, ["key", "list"]).output
    assert "unlimited" in listed and "default" in listed

    refused = runner.invoke(main.app, ["key", "create", "--app", "*", "--rpm", "-1"])
    assert refused.exit_code == 2 and "--rpm" in refused.output
    missing = runner.invoke(main.app, ["key", "limits", "key_000000000000", "--rpm", "5"])
    assert missing.exit_code == 1 and "key_000000000000" in missing.output  # not found: a message, exit 1


def test_serve_log_config_is_valid_and_tags_request_ids() -> None:
    names = ("uvicorn", "domainrag", "domainrag.access")
    saved = [(lg, lg.handlers[:], lg.propagate, lg.level) for lg in map(logging.getLogger, names)]
    try:
        for mode in ("text", "json"):
            config = log_config(mode)
            logging.config.dictConfig(config)  # raises on a malformed config
            assert config["handlers"]["default"]["filters"] == ["request_id"]
    finally:  # the rest of the session logs as before
        for lg, handlers, propagate, level in saved:
            lg.handlers[:], lg.propagate, lg.level = handlers, propagate, level
    assert log_config("json")["formatters"]["access"]["format"] == "%(message)s"  # one JSON object per line
