"""Workspace-level guarantees: an index stays pinned to the exact embedding model its vectors came from."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from sentence_transformers import SentenceTransformer

from domainrag.errors import DomainRagError
from domainrag.workspace import Workspace, create_index, ingest
from domainrag.zoo import resolve_embedder

pytestmark = pytest.mark.integration


def _docs(folder: Path) -> Path:
    folder.mkdir()
    (folder / "pump.md").write_text("# Pump\n\nThe DP-220 dosing pump delivers 12 litres per hour.")
    (folder / "warranty.md").write_text("# Warranty\n\nControllers carry a 36-month warranty.")
    return folder


def test_new_weights_with_the_same_dimension_are_refused_until_reembedded(ws: Workspace, tmp_path: Path) -> None:
    model_dir = tmp_path / "embedder"
    st = SentenceTransformer(resolve_embedder("all-minilm-l6-v2"), device="cpu")
    st.save(str(model_dir))
    docs = _docs(tmp_path / "docs")
    record = create_index(ws, "kb", str(model_dir))
    assert record["embedder"]["digest"]  # pinned at creation
    ingest(ws, "kb", [docs])
    before = ws.store("kb").count()

    with torch.no_grad():  # "a new version": same architecture and dimension, other weights
        next(st.parameters()).add_(0.01)
    st.save(str(model_dir))

    with pytest.raises(DomainRagError) as err:
        ingest(ws, "kb", [docs])
    message = str(err.value)
    assert "kb" in message and message.count("digest") == 2 and "--reembed" in (err.value.hint or "")
    with pytest.raises(DomainRagError):
        ws.index_embedder("kb")  # the query path refuses too

    report = ingest(ws, "kb", [docs], reembed=True)
    assert report.written == before and ws.store("kb").count() == before  # rebuilt, nothing doubled
    assert ws.index_embedder("kb").name == str(model_dir)  # pinned to the new weights now
    hits = ws.store("kb").dense_search(ws.index_embedder("kb").encode(["dosing pump litres"])[0], 1)
    assert hits[0].doc_id == "pump.md"


def test_a_workspace_path_that_is_a_file_is_refused_by_name(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("not a workspace")
    with pytest.raises(DomainRagError, match=r"workspace .*afile is a file, not a folder"):
        Workspace.open(afile)
    assert afile.read_text() == "not a workspace"
