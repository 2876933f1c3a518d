"""A workspace folder is portable: moved or copied elsewhere it opens, passes `doctor` and serves its apps.

The catalogue stores paths under the lake and the workspace as root-relative keys; catalogues written
with absolute paths (before this) are converted when opened, also after a move.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from domainrag.cli.doctor import doctor
from domainrag.storage.catalog import Catalog
from domainrag.workspace import Workspace, create_index, ingest

pytestmark = pytest.mark.integration

QUESTION = "How many litres per hour does the DP-220 dosing pump deliver?"


def _raw_rows(db: Path) -> str:
    """Every stored record as the file holds it (not resolved by the catalogue)."""
    con = sqlite3.connect(db)
    try:
        return "\n".join(row[0] for row in con.execute("SELECT data FROM objects"))
    finally:
        con.close()


def _build(ws: Workspace, tmp_path: Path) -> None:
    """A dataset, a registered embedding model, an index filled through it, a job record and an app."""
    from domainrag.serving.apps import AppSpec, create_app
    from domainrag.serving.models import create_model
    from domainrag.training.jobs import create_job
    from domainrag.training.spec import parse_job_spec
    from domainrag.zoo import resolve_embedder

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "pump.md").write_text("# Pump\n\nThe DP-220 dosing pump delivers 12 litres per hour at 10 bar.")
    (docs / "warranty.md").write_text("# Warranty\n\nControllers carry a 36-month warranty on parts.")
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"query": f"q{i}", "positive": f"passage {i}"}) + "\n" for i in range(4)))
    ws.upload_dataset(pairs, "pairs")
    create_model(ws, "emb", source="path", path=Path(resolve_embedder("all-minilm-l6-v2")))
    create_index(ws, "kb", "emb")
    ingest(ws, "kb", [docs])
    spec = parse_job_spec({"name": "emb-job", "algorithm": "embedding", "base_model": "all-minilm-l6-v2",
                           "dataset": "raw/pairs/pairs.jsonl"})
    create_job(ws, spec, start=False)
    create_app(ws, AppSpec.model_validate({"name": "docs", "model": "smollm2-135m-instruct",
                                           "retrieval": {"index": "kb", "top_k": 2}}))


def _check_opens_at(new: Path, old: Path, cli_for) -> None:
    """Everything catalogued resolves inside ``new``; doctor passes all checks; the app retrieves."""
    from domainrag.serving.apps import load_app

    moved = Workspace.open(new)
    assert not old.exists()
    dataset, model = moved.catalog.require("dataset", "pairs"), moved.catalog.require("model", "emb")
    job = moved.catalog.list("job")[0]
    assert dataset["uri"] == f"{new}/raw/pairs" and model["uri"] == f"{new}/models/emb/1"
    assert job["uri"].startswith(f"{new}/jobs/") and job["spec"]["dataset"] == f"{new}/raw/pairs/pairs.jsonl"
    assert str(old) not in _raw_rows(new / "catalog.db")

    results = doctor(moved)
    assert len(results) == 4 and all(r.ok for r in results), [(r.url, r.cause, r.detail) for r in results]
    cli = CliRunner().invoke(cli_for(moved), ["doctor"])
    assert cli.exit_code == 0 and "all 4 checks passed" in cli.output

    assert moved.model_dir("emb") == new / "models/emb/1"  # verified against its manifest there
    hits = load_app(moved, "docs", with_generator=False).retriever.run(QUESTION)
    assert hits[0].doc_id == "pump.md"


def test_copied_workspace_opens_elsewhere_and_passes_doctor(tmp_path: Path, monkeypatch, cli_for) -> None:
    monkeypatch.delenv("DOMAINRAG_LAKE", raising=False)
    original = tmp_path / "machine-a" / "ws"
    ws = Workspace.open(original)
    _build(ws, tmp_path)
    raw = _raw_rows(original / "catalog.db")
    assert str(original) not in raw and "{lake}/raw/pairs" in raw  # stored relative from the start

    copy = tmp_path / "machine-b" / "copied-ws"
    shutil.copytree(original, copy)
    shutil.move(original, tmp_path / "gone")  # the old location no longer exists
    _check_opens_at(copy, original, cli_for)


def test_old_catalogue_with_absolute_paths_is_converted_after_a_move(tmp_path: Path, monkeypatch, cli_for) -> None:
    """A catalogue written before portability (absolute paths, version 0), moved, then opened."""
    monkeypatch.delenv("DOMAINRAG_LAKE", raising=False)
    original = tmp_path / "old" / "ws"
    ws = Workspace.open(original)
    _build(ws, tmp_path)
    db = original / "catalog.db"
    resolved = {(r["name"], kind): r for kind in ("dataset", "model", "job", "index", "app")
                for r in ws.catalog.list(kind)}
    con = sqlite3.connect(db)  # rewrite it as the old code stored it: absolute paths, no version
    with con:
        for (name, kind), record in resolved.items():
            data = {k: v for k, v in record.items() if k not in ("created_at", "updated_at")}
            con.execute("UPDATE objects SET data=? WHERE kind=? AND name=?", (json.dumps(data), kind, name))
        con.execute("PRAGMA user_version=0")
    con.close()
    assert f"{original}/raw/pairs" in _raw_rows(db)

    moved = tmp_path / "new" / "ws"
    shutil.move(original, moved)
    _check_opens_at(moved, original, cli_for)


def test_paths_outside_the_roots_stay_as_given(tmp_path: Path) -> None:
    cat = Catalog(tmp_path / "c.db", roots={"lake": "s3://bucket/lake", "workspace": str(tmp_path / "ws")})
    record = {"a": "s3://bucket/lake/raw/x", "b": "s3://bucket/lake2/raw/x", "c": [str(tmp_path / "ws")],
              "d": {"e": "/elsewhere/file.jsonl"}, "f": "s3://bucket/lake"}
    cat.put("dataset", "x", record)
    assert json.loads(_raw_rows(tmp_path / "c.db")) == {
        "a": "{lake}/raw/x", "b": "s3://bucket/lake2/raw/x", "c": ["{workspace}"], "d": {"e": "/elsewhere/file.jsonl"},
        "f": "{lake}", "name": "x"}
    elsewhere = Catalog(tmp_path / "c.db", roots={"lake": "s3://other/prefix", "workspace": "/srv/ws"})
    got = elsewhere.require("dataset", "x")
    assert (got["a"], got["b"], got["c"], got["f"]) == ("s3://other/prefix/raw/x", "s3://bucket/lake2/raw/x",
                                                        ["/srv/ws"], "s3://other/prefix")
