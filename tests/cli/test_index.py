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


def test_index_search_shows_where_each_hit_comes_from(ws, cli_for, docs) -> None:
    import json

    from domainrag.data.blocks import Block, markdown_table
    from domainrag.data.loaders import Document

    report = Document("report.pdf", "", "Annual report", {"source": "file:///r.pdf"}, (
        Block("text", "The DP-220 dosing pump delivers up to 12 litres per hour.", ("Report", "Pumps"), 3),
        Block("table", markdown_table([["Model", "Flow"], ["DP-220", "12 l/h"]]), ("Report", "Pumps"), 4,
              "Table 2: pump flow"),
    ))
    create_index(ws, "kb", "all-minilm-l6-v2")
    ingest_documents([*docs, report], ws.store("kb"), ws.embedder("all-minilm-l6-v2"))
    out = CliRunner().invoke(cli_for(ws), ["index", "search", "kb", "--query", "DP-220 pump flow litres",
                                           "--top-k", "3", "--json"])
    assert out.exit_code == 0, out.output
    hits = json.loads(out.stdout)  # progress lines go to stderr
    mine = [h for h in hits if h["document"] == "report.pdf"]
    assert {(h["page"], h["section"], h["kind"]) for h in mine} == {(3, "Report > Pumps", "text"),
                                                                   (4, "Report > Pumps", "table")}
    assert all(set(h["scores"]) <= {"dense", "bm25"} and h["scores"] for h in hits)
    bad = CliRunner().invoke(cli_for(ws), ["index", "search", "kb", "--query", "x", "--mode", "nope"])
    assert bad.exit_code != 0
    empty = CliRunner().invoke(cli_for(ws), ["index", "search", "kb", "--query", "  ", "--mode", "bm25"])
    assert empty.exit_code == 2 and "--query is empty" in empty.output


def test_an_unloadable_embedding_model_is_one_clear_error_and_nothing_is_recorded(ws, cli_for, tmp_path) -> None:
    empty = tmp_path / "not-a-model"
    empty.mkdir()
    for model in ("nope-model", str(empty)):
        out = CliRunner().invoke(cli_for(ws), ["index", "create", "bad", "--embedding-model", model])
        assert out.exit_code == 1, out.output  # a failed operation, not a usage error
        assert out.output.startswith(f"loading embedding model {model} ...\n")  # said before the slow load
        errors = [line for line in out.output.splitlines() if line.startswith("error:")]
        assert errors == [errors[0]] and f"cannot load embedding model '{model}'" in errors[0]
        assert "hint:" in out.output and "Traceback" not in out.output and len(out.output.splitlines()) <= 4
    assert ws.catalog.get("index", "bad") is None
