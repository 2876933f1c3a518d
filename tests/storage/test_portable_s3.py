"""A local workspace synced to object storage opens on another machine with ``DOMAINRAG_LAKE=s3://...``.

The lake's folders go to the bucket, the catalogue (and the embedded indexes) to the new workspace
folder; every catalogued path then resolves against the bucket, `doctor` passes, and a registered model
is fetched from the bucket to embed queries against the copied index.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from typer.testing import CliRunner

from domainrag.cli.doctor import doctor
from domainrag.storage.lake import Lake
from domainrag.workspace import Workspace, create_index, ingest

if TYPE_CHECKING:  # fixture value types, defined in conftest.py
    from conftest import S3Server

pytestmark = pytest.mark.integration


def test_workspace_synced_to_s3_opens_with_the_bucket_as_lake(
    s3_env: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli_for
) -> None:
    from domainrag.serving.models import create_model
    from domainrag.zoo import resolve_embedder

    local = tmp_path / "laptop" / "ws"
    ws = Workspace.open(local)  # no DOMAINRAG_LAKE: the lake is the workspace folder
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "pump.md").write_text("# Pump\n\nThe DP-220 dosing pump delivers 12 litres per hour at 10 bar.")
    (docs / "probe.md").write_text("# Probe\n\nCalibrate the PX-12 pH probe every 30 days.")
    ws.upload_dataset(docs, "manuals")
    create_model(ws, "emb", source="path", path=Path(resolve_embedder("all-minilm-l6-v2")))
    create_index(ws, "kb", "emb")
    ingest(ws, "kb", [docs])

    bucket = f"s3://{s3_env.bucket}/synced-{uuid.uuid4().hex[:8]}"
    remote = Lake(bucket)
    for folder in ("raw", "models", "chunks"):  # what `aws s3 sync` of the lake folders would copy
        remote.upload(local / folder, folder)
    server = tmp_path / "server" / "ws"
    server.mkdir(parents=True)
    shutil.copy(local / "catalog.db", server / "catalog.db")
    shutil.copytree(local / "indexes", server / "indexes")
    shutil.rmtree(local)

    monkeypatch.setenv("DOMAINRAG_LAKE", bucket)
    opened = Workspace.open(server)
    assert opened.catalog.require("dataset", "manuals")["uri"] == f"{bucket}/raw/manuals"
    assert opened.catalog.require("model", "emb")["uri"] == f"{bucket}/models/emb/1"
    results = doctor(opened)
    assert len(results) == 4 and all(r.ok for r in results), [(r.url, r.cause, r.detail) for r in results]
    out = CliRunner(env={"COLUMNS": "250"}).invoke(cli_for(opened), ["doctor"])
    assert out.exit_code == 0 and "all 4 checks passed" in out.output

    embedder = opened.index_embedder("kb")  # downloaded from the bucket, checked against its manifest
    hits = opened.store("kb").dense_search(embedder.encode(["DP-220 litres per hour"])[0], 1)
    assert hits[0].doc_id == "pump.md"
