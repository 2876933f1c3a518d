"""domainrag apply -f: creates what a YAML file declares, changes nothing on a second run, names bad fields."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from domainrag.cli import main
from domainrag.workspace import Workspace
from domainrag.workspace_config import ConfigError, load_workspace_config

REPO = Path(__file__).resolve().parents[2]

APP_YAML = """\
version: 1
indexes:
  kb:
    embedding_model: all-minilm-l6-v2
    source: docs
apps:
  docs:
    model: smollm2-135m-instruct
    retrieval:
      index: kb
      top_k: 2
    generation:
      temperature: {temperature}
"""


def _files(tmp_path: Path, temperature: float = 0.2) -> Path:
    docs = tmp_path / "docs"
    docs.mkdir(exist_ok=True)
    (docs / "pump.md").write_text("# Pump\n\nThe DP-220 dosing pump delivers 12 litres per hour at 10 bar.")
    (docs / "probe.md").write_text("# Probe\n\nCalibrate the PX-12 pH probe every 30 days with buffer 7.")
    path = tmp_path / "app.yaml"
    path.write_text(APP_YAML.format(temperature=temperature))
    return path


def _results(output: str) -> dict[tuple[str, str], str]:
    """(kind, name) -> result from the printed table."""
    rows = [line.strip("│ ").split("│") for line in output.splitlines() if line.startswith("│")]
    return {(r[0].strip(), r[1].strip()): r[2].strip() for r in rows if len(r) >= 3}


@pytest.mark.integration
def test_apply_creates_then_leaves_unchanged_then_updates(ws: Workspace, tmp_path: Path, cli_for) -> None:
    from domainrag.serving.apps import load_app

    app_yaml = _files(tmp_path)
    runner = CliRunner(env={"COLUMNS": "200"})
    first = runner.invoke(cli_for(ws), ["apply", "-f", str(app_yaml)])
    assert first.exit_code == 0, first.output
    assert _results(first.output) == {("index", "kb"): "created", ("app", "docs"): "created"}
    assert ws.catalog.require("index", "kb")["documents"] == 2
    app = ws.catalog.require("app", "docs")
    assert app["retrieval"]["top_k"] == 2 and app["generation"]["temperature"] == 0.2
    hits = load_app(ws, "docs", with_generator=False).retriever.run("How much does the DP-220 pump deliver?")
    assert hits[0].doc_id == "pump.md"

    again = runner.invoke(cli_for(ws), ["apply", "-f", str(app_yaml)])
    assert again.exit_code == 0, again.output
    assert _results(again.output) == {("index", "kb"): "unchanged", ("app", "docs"): "unchanged"}
    assert "0 created, 0 updated, 2 unchanged" in again.output
    assert ws.catalog.require("app", "docs")["updated_at"] == app["updated_at"]  # not even rewritten

    (tmp_path / "docs" / "valve.md").write_text("# Valve\n\nThe RV-3 relief valve opens at 12 bar.")
    app_yaml = _files(tmp_path, temperature=0.7)
    plan = runner.invoke(cli_for(ws), ["apply", "-f", str(app_yaml), "--dry-run"])
    assert _results(plan.output)[("app", "docs")] == "would be updated"
    assert ws.catalog.require("app", "docs")["generation"]["temperature"] == 0.2  # a dry run changes nothing
    third = runner.invoke(cli_for(ws), ["apply", "-f", str(app_yaml)])
    assert _results(third.output) == {("index", "kb"): "updated", ("app", "docs"): "updated"}
    assert ws.catalog.require("index", "kb")["documents"] == 3
    assert ws.catalog.require("app", "docs")["generation"]["temperature"] == 0.7


def _apply_error(tmp_path: Path, text: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> str:
    path = tmp_path / "app.yaml"
    path.write_text(text)
    (tmp_path / "docs").mkdir(exist_ok=True)  # the declared source folder
    monkeypatch.setattr(sys, "argv", ["domainrag", "-w", str(tmp_path / "ws"), "apply", "-f", str(path)])
    with pytest.raises(SystemExit) as exc:
        main.main()
    assert exc.value.code != 0
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert Workspace.open(tmp_path / "ws").catalog.list("index") == []  # nothing was created
    return " ".join(err.split())


def test_bad_field_is_named_with_its_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    text = APP_YAML.format(temperature=0.2).replace("      top_k: 2\n", "      top_k: 2\n      top_kk: 3\n")
    err = _apply_error(tmp_path, text, monkeypatch, capsys)
    assert f"{tmp_path / 'app.yaml'}:12 (field 'apps.docs.retrieval.top_kk'): Extra inputs are not permitted" in err

    text = APP_YAML.format(temperature=9)
    err = _apply_error(tmp_path, text, monkeypatch, capsys)
    assert "app.yaml:13 (field 'apps.docs.generation.temperature')" in err and "less than or equal to 2" in err

    text = APP_YAML.format(temperature=0.2).replace("index: kb", "index: nope")
    err = _apply_error(tmp_path, text, monkeypatch, capsys)
    assert "app.yaml:10 (field 'apps.docs.retrieval.index'): index 'nope' is neither declared" in err

    text = APP_YAML.format(temperature=0.2).replace("smollm2-135m-instruct", "no-such-model")
    err = _apply_error(tmp_path, text, monkeypatch, capsys)
    assert "app.yaml:8 (field 'apps.docs.model'): model 'no-such-model' is neither registered" in err

    text = APP_YAML.format(temperature=0.2).replace("source: docs", "source: nodocs")
    err = _apply_error(tmp_path, text, monkeypatch, capsys)  # refused before the index is created (it was left empty)
    assert f"app.yaml:5 (field 'indexes.kb.source'): source {tmp_path / 'nodocs'} does not exist" in err

    text = APP_YAML.format(temperature=0.2).replace("source: docs", "source: gs://bucket/docs")
    err = _apply_error(tmp_path, text, monkeypatch, capsys)
    assert "app.yaml:5 (field 'indexes.kb.source'): unsupported storage scheme" in err


def test_yaml_syntax_and_duplicate_names_are_placed(tmp_path: Path) -> None:
    path = tmp_path / "app.yaml"
    path.write_text("indexes:\n  kb:\n    embedding_model: [unclosed\n")
    with pytest.raises(ConfigError, match=r"app.yaml:\d+: not valid YAML"):
        load_workspace_config(path)
    path.write_text("indexes:\n  kb:\n    embedding_model: a\n  kb:\n    embedding_model: b\n")
    with pytest.raises(ConfigError, match=r"app.yaml:4 \(field 'indexes.kb'\): given twice"):
        load_workspace_config(path)
    path.write_text("indexes:\n  kb:\n    embedding_model: a\n    store: {type: opensearch, m: 1}\n")
    with pytest.raises(ConfigError, match=r"app.yaml:4 \(field 'indexes.kb.store.opensearch.m'\)"):
        load_workspace_config(path)


def test_the_example_file_is_valid(ws: Workspace) -> None:
    from domainrag.cli.apply import plan

    config, located = load_workspace_config(REPO / "examples" / "app.yaml")
    changes, _ = plan(ws, config, located)
    assert [(c.kind, c.name, c.result) for c in changes] == [("index", "quillmere", "created"),
                                                            ("app", "QuillmereRAG", "created")]
    assert (located.path.parent / config.indexes["quillmere"].source).is_dir()


def test_a_declared_source_resolves_like_ingest_reads_it(tmp_path: Path) -> None:
    from domainrag.cli.apply import _source

    assert _source("docs", tmp_path) == str(tmp_path / "docs")  # relative: the YAML file's folder
    assert _source("file:///srv/docs", tmp_path) == "/srv/docs"  # was joined onto the folder as "file:/srv/docs"
    assert _source("local:///srv/docs", tmp_path) == "/srv/docs"
    assert _source("/srv/docs", tmp_path) == "/srv/docs"
    assert _source("s3://bucket/docs", tmp_path) == "s3://bucket/docs"
