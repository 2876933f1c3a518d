"""domainrag index: listings count what the store holds."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from domainrag.index.ingest import ingest_documents
from domainrag.workspace import create_index

pytestmark = pytest.mark.integration


def test_index_list_counts_chunks_written_outside_ingest(ws, cli_for, docs) -> None:
    create_index(ws, "kb", "all-minilm-l6-v2")
    # Evaluation ingests through the index layer directly, so the catalogue's counts stay unset.
    ingest_documents(docs, ws.store("kb"), ws.embedder("all-minilm-l6-v2"))
    assert ws.catalog.get("index", "kb").get("chunks") is None
    out = CliRunner(env={"COLUMNS": "200"}).invoke(cli_for(ws), ["index", "list"])
    assert out.exit_code == 0, out.output
    row = next(line for line in out.output.splitlines() if " kb " in line)
    assert f" {len(docs)} " in row and " - " not in row
