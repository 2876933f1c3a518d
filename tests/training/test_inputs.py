"""Input checks before a job is recorded: base model kind, dataset format, document corpus."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from domainrag.errors import DatasetError, DomainRagError
from domainrag.training.inputs import (
    check_chat_model,
    check_corpus,
    check_dataset,
    check_encoder,
    check_model_kind,
    local_dataset,
)


def _model_folder(path: Path, arch: str, **files: str) -> str:
    path.mkdir()
    (path / "config.json").write_text(json.dumps({"architectures": [arch], "model_type": "x"}))
    for name, text in files.items():
        (path / name).write_text(text)
    return str(path)


def test_model_kind_and_unknown_names() -> None:
    check_model_kind("smollm2-135m-instruct", "llm", "sft")
    check_model_kind("org/some-model", "llm", "sft")  # a hub id is left to the loader
    with pytest.raises(DomainRagError, match="needs an llm model"):
        check_model_kind("all-minilm-l6-v2", "llm", "sft")
    with pytest.raises(DomainRagError, match="unknown base model 'nope'"):
        check_model_kind("nope", "embedding", "embedding")


def test_encoder_and_chat_model_folders(tmp_path: Path) -> None:
    llm = _model_folder(tmp_path / "llm", "LlamaForCausalLM", **{"tokenizer_config.json": '{"chat_template": "x"}'})
    bert = _model_folder(tmp_path / "bert", "BertModel")
    check_encoder(bert)
    check_chat_model(llm)
    with pytest.raises(DomainRagError, match="not an encoder"):
        check_encoder(llm)
    with pytest.raises(DomainRagError, match=r"not a causal language model \(BertModel"):
        check_chat_model(bert)
    bare = _model_folder(tmp_path / "bare", "LlamaForCausalLM")
    with pytest.raises(DomainRagError, match="no chat template"):
        check_chat_model(bare)


def test_dataset_is_parsed_as_chats_or_pairs(tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"query": "q", "positive": "p"}\n')
    check_dataset(str(pairs), chat=False)
    with pytest.raises(DatasetError):
        check_dataset(str(pairs), chat=True)
    check_dataset("s3://bucket/remote.jsonl", chat=True)  # remote: checked when the worker fetches it
    assert local_dataset(f"file://{pairs}", tmp_path) == pairs
    with pytest.raises(DatasetError, match="does not exist"):
        local_dataset(str(tmp_path / "missing.jsonl"), tmp_path)


def test_corpus_detection(tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"query": "q", "positive": "p"}\n')
    assert check_corpus(str(pairs), None) is False
    doc = tmp_path / "a.md"
    doc.write_text("# A\n\nProject Zorblat is run from the Berlin office since 1999.")
    assert check_corpus(str(doc), None) is True
    with pytest.raises(DatasetError, match="must be one file"):
        check_corpus(str(tmp_path), "heuristic")
    tiny = tmp_path / "tiny.md"
    tiny.write_text("too short")
    with pytest.raises(DatasetError, match="no passage"):
        check_corpus(str(tiny), None)
