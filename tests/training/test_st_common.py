"""Shared steps of the sentence-transformers trainings: split, truncation counts, logging, kwargs."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest

from domainrag.data.formats import Pair
from domainrag.errors import DomainRagError
from domainrag.training.hyperparameters import EmbeddingArgs
from domainrag.training.reporting import MemoryReporter
from domainrag.training.st_common import (
    ReporterCallback,
    count_over_limit,
    finite_stats,
    jsonable_args,
    load_and_split,
    log_eval_metrics,
    split_by_query,
    training_kwargs,
    warn_truncation,
)


def test_split_keeps_each_query_on_one_side() -> None:
    pairs = [Pair(f"q{i % 7}", f"p{i}") for i in range(30)]
    train, evals = split_by_query(pairs, 0.3, seed=1)
    assert {p.query for p in train}.isdisjoint({p.query for p in evals})
    assert len({p.query for p in evals}) == 2 and len(train) + len(evals) == 30
    assert (train, evals) == split_by_query(pairs, 0.3, seed=1)
    assert split_by_query(pairs, 0.0, seed=1) == (pairs, [])


def test_too_few_training_pairs_raise_with_the_hint(tmp_path: Path) -> None:
    data = tmp_path / "pairs.jsonl"
    data.write_text('{"query": "q1", "positive": "p1"}\n{"query": "q2", "positive": "p2"}\n')
    args = EmbeddingArgs(base_model="m", dataset=data, output_dir=tmp_path, eval_fraction=0.5)
    with pytest.raises(DomainRagError, match="only 1 training pair") as err:
        load_and_split(args, MemoryReporter(), hint="add data")
    assert err.value.hint == "add data"


class _Tokenizer:
    """One token per word (plus two special tokens), like a real tokenizer's output shape."""

    def __call__(
        self, a: list[str], b: list[str] | None = None, truncation: bool = False
    ) -> dict[str, list[list[int]]]:
        texts = [x + " " + y for x, y in zip(a, b, strict=True)] if b is not None else a
        return {"input_ids": [[0] * (len(t.split()) + 2) for t in texts]}


def test_count_over_limit_counts_texts_and_pairs() -> None:
    texts = ["one", "one two three", "a b c d e f"]
    assert count_over_limit(_Tokenizer(), texts, limit=4, batch=2) == 2
    assert count_over_limit(_Tokenizer(), [("q", "p"), ("q q", "p p p")], limit=5) == 1


def test_warnings_and_eval_metrics_go_to_the_reporter() -> None:
    r = MemoryReporter()
    warn_truncation(r, 0, 10, 128, "texts")
    log_eval_metrics(r, "before", 0, {})
    assert r.lines == [] and r.metrics == []
    warn_truncation(r, 3, 10, 128, "texts")
    log_eval_metrics(r, "after", 7, {"ndcg@10": 0.5})
    assert "3 of 10 texts exceed the model's limit of 128 tokens" in r.lines[0]
    assert r.lines[1] == "after: ndcg@10=0.500" and r.metrics == [{"step": 7, "eval_ndcg@10": 0.5}]


def test_callback_forwards_numeric_logs_only() -> None:
    r = MemoryReporter()
    ReporterCallback(r).on_log(None, SimpleNamespace(global_step=4), None, logs={"loss": 1, "note": "x"})
    ReporterCallback(r).on_log(None, SimpleNamespace(global_step=5), None, logs={"note": "x"})
    assert r.metrics == [{"step": 4, "loss": 1.0}]


def test_training_kwargs_checkpoint_only_with_a_folder(tmp_path: Path) -> None:
    args = EmbeddingArgs(base_model="m", dataset=tmp_path, output_dir=tmp_path, precision="fp32", seed=7)
    kw = training_kwargs(args, tmp_path)
    assert kw["save_strategy"] == "no" and kw["seed"] == kw["data_seed"] == 7 and kw["bf16"] is False
    with_ckpt = args.model_copy(update={"checkpoint_dir": tmp_path / "ckpt", "save_steps": 5})
    assert training_kwargs(with_ckpt, tmp_path)["save_strategy"] == "steps"
    assert training_kwargs(with_ckpt, tmp_path)["save_steps"] == 5


def test_jsonable_args_and_finite_stats(tmp_path: Path) -> None:
    args = EmbeddingArgs(base_model="m", dataset=tmp_path / "d.jsonl", output_dir=tmp_path, matryoshka_dims=[8, 4])
    as_json = jsonable_args(args)
    assert json.loads(json.dumps(as_json)) == as_json and as_json["dataset"] == str(tmp_path / "d.jsonl")
    assert finite_stats({"a": math.nan, "b": 1.0, "c": "x"}) == {"b": 1.0, "c": "x"}
