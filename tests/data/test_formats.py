"""Dataset readers: every supported format converts, every bad input names file, line and field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from domainrag.data.formats import Pair, detect_format, load_pairs, read_chat_dataset, read_pairs
from domainrag.errors import DatasetError


def _jsonl(path: Path, *records: Any) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


EXPECTED = [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}]


@pytest.mark.parametrize(
    ("record", "fmt"),
    [
        ({"messages": EXPECTED}, "openai"),
        ({"conversations": [{"from": "human", "value": "Hi?"}, {"from": "gpt", "value": "Hello."}]}, "sharegpt"),
        ({"instruction": "Hi?", "input": "", "output": "Hello."}, "alpaca"),
        ({"prompt": "Hi?", "completion": " Hello. "}, "prompt-completion"),
    ],
)
def test_every_chat_format_becomes_messages(tmp_path: Path, record: dict[str, Any], fmt: str) -> None:
    path = _jsonl(tmp_path / "chat.jsonl", record, "", record)  # blank lines are skipped
    assert detect_format(path) == fmt
    assert read_chat_dataset(path) == [EXPECTED, EXPECTED]


def test_alpaca_input_and_system_are_kept(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "a.jsonl", {"instruction": "Summarise", "input": "Text.", "output": "Sum.", "system": "S"})
    assert read_chat_dataset(path) == [
        [
            {"role": "system", "content": "S"},
            {"role": "user", "content": "Summarise\n\nText."},
            {"role": "assistant", "content": "Sum."},
        ]
    ]


def _error(path: Path) -> DatasetError:
    with pytest.raises(DatasetError) as info:
        read_chat_dataset(path)
    return info.value


@pytest.mark.parametrize(
    ("bad", "field", "words"),
    [
        ('{"messages": [', None, "invalid JSON"),
        ("[1, 2]", None, "expected a JSON object"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role", "unknown role"),
        ({"messages": [{"role": "user", "content": "  "}, EXPECTED[1]]}, "messages[0].content", "empty"),
        ({"messages": [{"role": "user", "content": "only a question"}]}, "messages", "no assistant turn"),
        ({"messages": [EXPECTED[0], {"role": "system", "content": "s"}, EXPECTED[1]]}, "messages[1]", "system"),
        ({"messages": []}, "messages", "non-empty list"),
        ({"instruction": "Hi?", "output": "Hello."}, "messages", "not in the 'openai' format"),
        ({"conversations": [{"from": "alien", "value": "x"}]}, "messages", "not in the 'openai' format"),
    ],
)
def test_bad_chat_line_is_located(tmp_path: Path, bad: Any, field: str | None, words: str) -> None:
    path = _jsonl(tmp_path / "chat.jsonl", {"messages": EXPECTED}, {"messages": EXPECTED}, bad)
    err = _error(path)
    assert (err.path, err.line, err.field) == (str(path), 3, field)
    assert words in str(err) and err.hint


def test_chat_errors_in_other_formats(tmp_path: Path) -> None:
    alpaca = _jsonl(tmp_path / "a.jsonl", {"instruction": "Q", "output": "A"}, {"instruction": "Q", "output": ""})
    err = _error(alpaca)
    assert (err.line, err.field) == (2, "output")
    sharegpt = _jsonl(tmp_path / "s.jsonl", {"conversations": [{"from": "alien", "value": "x"}]})
    err = _error(sharegpt)
    assert (err.line, err.field) == (1, "conversations[0].from") and "human" in str(err)
    mixed = _jsonl(tmp_path / "m.jsonl", {"prompt": "p", "completion": "c"}, {"prompt": "p"})
    err = _error(mixed)
    assert (err.line, err.field) == (2, "completion")


def test_empty_or_unknown_chat_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    assert "empty" in str(_error(empty))
    unknown = _jsonl(tmp_path / "u.jsonl", {"text": "just text"})
    err = _error(unknown)
    assert err.line == 1 and "['text']" in str(err) and "messages" in (err.hint or "")
    assert "not found" in str(_error(tmp_path / "missing.jsonl"))


# ---------------------------------------------------------------------------------------------
# Pairs


def test_csv_pairs_with_negatives_and_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "pairs.csv"
    path.write_text(
        "\ufeffAnchor,Positive,negative_1,negative_2\n"
        'q1,"p1, with comma",n1,\n'
        "q2,p2,,\n"
        "\n"
        'q1,"p1, with comma",other,\n'
        'q3,"multi\nline",n3a,n3b\n'
    )
    loaded = load_pairs(path)
    assert loaded.format == "pairs-csv" and loaded.duplicates_dropped == 1
    assert loaded.pairs == [
        Pair("q1", "p1, with comma", ("n1",)),
        Pair("q2", "p2", ()),
        Pair("q3", "multi\nline", ("n3a", "n3b")),
    ]
    assert detect_format(path) == "pairs-csv"


def test_jsonl_pairs(tmp_path: Path) -> None:
    path = _jsonl(
        tmp_path / "pairs.jsonl",
        {"query": "q1", "positive": "p1", "negative": "n0", "negative_2": "n2", "negative_1": "n1"},
        {"anchor": "q2", "positive": "p2", "negatives": ["a", "b"]},
        {"query": "q2", "positive": "p2"},
    )
    assert detect_format(path) == "pairs-jsonl"
    assert read_pairs(path) == [Pair("q1", "p1", ("n0", "n1", "n2")), Pair("q2", "p2", ("a", "b"))]
    assert load_pairs(path).duplicates_dropped == 1


def test_wrong_csv_columns_list_expected_and_found(tmp_path: Path) -> None:
    path = tmp_path / "pairs.csv"
    path.write_text("question,answer\nq,a\n")
    with pytest.raises(DatasetError) as info:
        read_pairs(path)
    msg = str(info.value)
    assert info.value.line == 1 and "'query'" in msg and "'positive'" in msg and "['question', 'answer']" in msg


@pytest.mark.parametrize(
    ("content", "line", "field", "words"),
    [
        ("query,positive\nq1,p1\nq2,\n", 3, "positive", "empty"),
        ("query,positive\nq1,p1\n\nq2,p2,extra\n", 4, None, "3 cells"),
        ("query,positive,weird\nq1,p1,x\n", 1, None, "wrong columns"),
    ],
)
def test_bad_csv_rows_are_located(tmp_path: Path, content: str, line: int, field: str | None, words: str) -> None:
    path = tmp_path / "pairs.csv"
    path.write_text(content)
    with pytest.raises(DatasetError) as info:
        read_pairs(path)
    assert (info.value.path, info.value.line, info.value.field) == (str(path), line, field)
    assert words in str(info.value)


def test_bad_jsonl_pairs_are_located(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "p.jsonl", {"query": "q", "positive": "p"}, {"query": "q2", "positive": 3})
    with pytest.raises(DatasetError) as info:
        read_pairs(path)
    assert (info.value.line, info.value.field) == (2, "positive")
    path = _jsonl(tmp_path / "p2.jsonl", {"query": "q", "positive": "p"}, {"question": "q2", "passage": "p"})
    with pytest.raises(DatasetError, match="wrong columns") as info:
        read_pairs(path)
    assert info.value.line == 2


@pytest.mark.parametrize("name", ["empty.csv", "header-only.csv", "empty.jsonl"])
def test_empty_pairs_file(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text("query,positive\n" if name == "header-only.csv" else "")
    with pytest.raises(DatasetError, match="no pairs"):
        read_pairs(path)
