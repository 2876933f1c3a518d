"""Data set loading: BEIR folders, question files, and what dirty data does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from domainrag.errors import DatasetError
from domainrag.evaluation.beir import load_beir, load_questions, load_retrieval_dataset

from .conftest import write_beir


def test_loads_a_beir_folder(beir_dir: Path) -> None:
    ds = load_beir(beir_dir)
    assert ds.format == "beir" and len(ds.corpus or {}) == 6 and len(ds.queries) == 4
    assert ds.qrels["q1"] == {"pumps": 1}
    assert ds.corpus["pumps"].title == "Dosing pumps"
    assert ds.stats.warnings() == []
    assert set(ds.files) == {"corpus.jsonl", "queries.jsonl", "qrels/test.tsv"}


@pytest.mark.parametrize("missing", ["corpus.jsonl", "queries.jsonl", "qrels/test.tsv"])
def test_missing_file_is_named(beir_dir: Path, missing: str) -> None:
    (beir_dir / missing).unlink()
    with pytest.raises(DatasetError, match=missing.replace(".", r"\.")) as err:
        load_beir(beir_dir)
    assert str(beir_dir / missing) in err.value.message


def test_missing_split_names_the_split(beir_dir: Path) -> None:
    with pytest.raises(DatasetError, match=r"qrels/dev\.tsv"):
        load_beir(beir_dir, split="dev")


def test_unknown_qrels_are_counted_and_dropped(tmp_path: Path) -> None:
    extra = "q1\tno-such-doc\t1\nq99\tpumps\t1\nq99\tprobes\t1\n"
    ds = load_beir(write_beir(tmp_path / "b", extra_qrels=extra))
    assert ds.stats.unknown_doc_qrels == 1
    assert ds.stats.unknown_query_qrels == 2
    assert ds.qrels["q1"] == {"pumps": 1}
    warnings = " ".join(ds.stats.warnings())
    assert "1 qrels row(s) name a document not in the corpus" in warnings
    assert "2 qrels row(s) name a query not in the queries file" in warnings


def test_query_whose_only_relevant_doc_is_unknown_is_dropped(tmp_path: Path) -> None:
    ds = load_beir(write_beir(tmp_path / "b", qrels={**{"q1": {"ghost": 1}}, "q2": {"probes": 1}}))
    assert list(ds.queries) == ["q2"] and ds.stats.queries_without_qrels == 1


def test_empty_queries_are_skipped_with_a_warning(tmp_path: Path) -> None:
    ds = load_beir(write_beir(tmp_path / "b", queries={"q1": "  ", "q2": "calibrate probe"},
                              qrels={"q1": {"pumps": 1}, "q2": {"probes": 1}}))
    assert list(ds.queries) == ["q2"]
    assert ds.stats.empty_queries == ["q1"]
    assert any("1 empty query skipped: q1" in w for w in ds.stats.warnings())


def test_bad_qrels_row_names_file_and_line(beir_dir: Path) -> None:
    (beir_dir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\tpumps\n")
    with pytest.raises(DatasetError, match=r"test\.tsv:2"):
        load_beir(beir_dir)


def test_invalid_json_names_the_line(beir_dir: Path) -> None:
    (beir_dir / "queries.jsonl").write_text('{"_id": "q1", "text": "x"}\n{oops\n')
    with pytest.raises(DatasetError, match=r"queries\.jsonl:2"):
        load_beir(beir_dir)


def test_question_format_uses_gold_doc_and_skips_unanswerable(tmp_path: Path, beir_dir: Path) -> None:
    rows = [{"id": "a", "question": "prime the pump?", "doc": "pumps", "answer": "Prime it."},
            {"id": "b", "question": "who is the CEO?", "doc": None, "answer": "not in the knowledge base"},
            {"id": "c", "question": "", "doc": "probes"},
            {"id": "d", "question": "multi", "docs": ["boilers", "towers"]}]
    path = beir_dir / "questions.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ds = load_retrieval_dataset(path)
    assert ds.format == "questions" and ds.corpus is not None  # corpus.jsonl beside it is picked up
    assert ds.qrels == {"a": {"pumps": 1}, "d": {"boilers": 1, "towers": 1}}
    assert ds.stats.empty_queries == ["c"]
    lone = tmp_path / "alone" / "q.jsonl"
    lone.parent.mkdir()
    lone.write_text(json.dumps(rows[0]) + "\n")
    assert load_questions(lone).corpus is None
    (lone.parent / "corpus.jsonl").write_text('{"_id": "pumps", "text": "Prime it."}\n{broken\n')
    with pytest.raises(DatasetError, match=r"corpus\.jsonl:2") as exc:  # a file the user did not name
        load_questions(lone)
    assert "read as the corpus of q.jsonl because it lies in the same folder" in (exc.value.hint or "")


def test_nonexistent_dataset_path() -> None:
    with pytest.raises(DatasetError, match="no such file or folder"):
        load_retrieval_dataset("/nonexistent/dataset")


@pytest.mark.parametrize(("rows", "where", "problem"), [
    ([{"id": "a", "question": "x"}, {"id": "a", "question": "y"}], ":2 (field 'id')", "duplicate id 'a'"),
    ([{"question": "no id here"}], ":1 (field 'id')", "missing id"),
    ([{"id": "a", "question": ["not", "text"]}], ":1 (field 'question')", "question must be a string"),
])
def test_bad_question_rows_name_file_line_field(tmp_path: Path, rows: list[dict], where: str, problem: str) -> None:
    from domainrag.evaluation.beir import read_questions

    path = tmp_path / "q.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DatasetError) as err:
        read_questions(path)
    assert err.value.message == f"{path}{where}: {problem}"


def test_missing_questions_file_is_named(tmp_path: Path) -> None:
    from domainrag.evaluation.beir import read_questions

    with pytest.raises(DatasetError, match="missing questions file") as err:
        read_questions(tmp_path / "nope.jsonl")
    assert str(tmp_path / "nope.jsonl") in err.value.message
